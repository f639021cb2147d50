//! The sticky rules, checked exactly over several policies.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;
use crate::policy::Candidates;
use crate::{Backend, BuildError, Key, LeastConn, ManualClock, Pool, RoundRobin};

const A: &str = "127.0.0.1:18081";
const B: &str = "127.0.0.1:18082";
const C: &str = "127.0.0.1:18083";
const Z: &str = "127.0.0.1:18084";
const MD5_A: &str = "7f3797d6a7e152c9ae2760fc816c6014";
const MD5_B: &str = "4900f59d6c4a944fb53a6d384b54b275";
const MD5_C: &str = "f67165f3fcc16786d7137ff4b2c94e97";
const MD5_Z: &str = "08c33aaa43f7b250fbdff82a5691d965";

/// A policy driven by the request key: backend `key[0] % n`, or the next
/// available after it. Shows that the key reaches the policy under sticky.
#[derive(Clone)]
struct ByKey;

impl Policy for ByKey {
    type Table = ();
    type State = ();

    fn name(&self) -> &'static str {
        "by_key"
    }

    fn build(&self, _: &[Backend], _: Option<&()>) -> Result<(), BuildError> {
        Ok(())
    }

    fn pick(&self, _: &(), c: &Candidates<'_>, key: Key<'_>, _: &mut ()) -> Option<usize> {
        let n = c.len();
        let start = match key {
            Key::Bytes([first, ..]) => usize::from(*first) % n.max(1),
            _ => 0,
        };
        (0..n).map(|k| (start + k) % n).find(|&i| c.is_available(i))
    }
}

fn pool_of<P: Policy>(policy: P, backends: Vec<Backend>) -> (Pool<P>, ManualClock) {
    let clock = ManualClock::new(1_000);
    let pool = Pool::builder(policy)
        .clock(clock.clone())
        .build(backends)
        .unwrap();
    (pool, clock)
}

/// One single-attempt request: the backend, the affinity, the Set-Cookie.
fn once<P: Policy>(
    pool: &Pool<P>,
    sticky: &Sticky,
    key: Key<'_>,
    input: Option<&str>,
) -> (String, Affinity, Option<String>) {
    let mut request = pool.request(key);
    let pick = sticky.pick(&mut request, input).expect("a backend");
    let cookie = sticky.set_cookie(request.snapshot(), &pick);
    (pick.id().to_string(), pick.affinity(), cookie)
}

fn kept(id: &str, cookie: Option<&str>) -> (String, Affinity, Option<String>) {
    (id.into(), Affinity::Kept, cookie.map(String::from))
}

fn broken(id: &str, why: Broken, cookie: Option<&str>) -> (String, Affinity, Option<String>) {
    (id.into(), Affinity::Broken(why), cookie.map(String::from))
}

/// Binds `session` to backend `id` as a response would.
fn learn_to<P: Policy>(pool: &Pool<P>, sticky: &Sticky, session: &str, id: &str) {
    let mut request = pool.request(Key::None);
    let index = request.snapshot().index_of(id).unwrap();
    let pick = request.take(index).unwrap();
    sticky
        .learn_session(request.snapshot(), session, &pick)
        .unwrap();
}

fn bound<P: Policy>(pool: &Pool<P>, sticky: &Sticky, session: &str) -> Option<String> {
    let now = pool.snapshot().now_ms();
    let store = sticky.store().unwrap();
    store
        .lookup(session, now, LearnConfig::default().timeout_ms())
        .map(|s| s.to_string())
}

/// Primaries a, b and backup z, for the cookie and route methods alike:
/// `value(id)` is the sticky value naming backend `id`.
fn stateless_rules<P: Policy>(policy: P, sticky: Sticky, value: fn(&str) -> &'static str) {
    let cookie = |id: &str| sticky.cookie_name().map(|n| format!("{n}={}", value(id)));
    let backends = vec![
        Backend::new(A).route("ra"),
        Backend::new(B).route("rb"),
        Backend::new(Z).route("rz").backup(true),
    ];
    let (pool, clock) = pool_of(policy, backends);
    let key = Key::Bytes(b"\x01");

    // Bound to b: stays there.
    for _ in 0..3 {
        assert_eq!(
            once(&pool, &sticky, key, Some(value(B))),
            kept(B, cookie(B).as_deref())
        );
    }

    // No value: the policy chooses a primary, and the cookie names it.
    let (id, affinity, set) = once(&pool, &sticky, key, None);
    assert!(id == A || id == B, "{id}");
    assert_eq!((affinity, set), (Affinity::New, cookie(&id)));

    // An unknown value is ignored.
    let (id, affinity, _) = once(&pool, &sticky, key, Some("not-a-server"));
    assert!(id == A || id == B, "{id}");
    assert_eq!(affinity, Affinity::Broken(Broken::Unknown));

    // b down: balanced to a, the only other primary.
    pool.set_down(B, true).unwrap();
    assert_eq!(
        once(&pool, &sticky, key, Some(value(B))),
        broken(A, Broken::Unavailable, cookie(A).as_deref())
    );
    pool.set_down(B, false).unwrap();

    // b draining: its sessions stay, new clients go to a.
    pool.update(|set| set[1].drain = true).unwrap();
    assert_eq!(
        once(&pool, &sticky, key, Some(value(B))),
        kept(B, cookie(B).as_deref())
    );
    for _ in 0..4 {
        assert_eq!(once(&pool, &sticky, key, None).0, A);
    }
    pool.update(|set| set[1].drain = false).unwrap();

    // b failed out: balanced to a until fail_timeout has passed.
    pool.request(Key::None)
        .take(pool.snapshot().index_of(B).unwrap())
        .unwrap()
        .failure();
    assert_eq!(
        once(&pool, &sticky, key, Some(value(B))),
        broken(A, Broken::Unavailable, cookie(A).as_deref())
    );
    clock.advance_ms(10_001);
    let mut probe = pool.request(key);
    let pick = sticky.pick(&mut probe, Some(value(B))).unwrap();
    assert_eq!((pick.id(), pick.affinity()), (B, Affinity::Kept));
    pick.into_pick().success();

    // A retry after the sticky backend failed goes elsewhere.
    let mut request = pool.request(key);
    let first = sticky.pick(&mut request, Some(value(A))).unwrap();
    assert_eq!((first.id(), first.affinity()), (A, Affinity::Kept));
    drop(first);
    let retry = sticky.pick(&mut request, Some(value(A))).unwrap();
    assert_eq!(
        (retry.id(), retry.affinity()),
        (B, Affinity::Broken(Broken::Unavailable))
    );
    assert_eq!(sticky.set_cookie(request.snapshot(), &retry), cookie(B));
    drop(retry);
    let backup = sticky.pick(&mut request, Some(value(A))).unwrap();
    assert_eq!(backup.id(), Z, "primaries tried: the backup serves");
    drop(backup);
    assert!(sticky.pick(&mut request, Some(value(A))).is_none());

    // Primaries down: everyone on the backup, and it stays while they are.
    pool.update(|set| {
        set[0].down = true;
        set[1].down = true;
    })
    .unwrap();
    assert_eq!(
        once(&pool, &sticky, key, None),
        (Z.into(), Affinity::New, cookie(Z))
    );
    assert_eq!(
        once(&pool, &sticky, key, Some(value(Z))),
        kept(Z, cookie(Z).as_deref())
    );
    // A primary is back: the backup binding is dropped at once.
    pool.set_down(B, false).unwrap();
    assert_eq!(
        once(&pool, &sticky, key, Some(value(Z))),
        broken(B, Broken::Backup, cookie(B).as_deref())
    );
    pool.set_down(A, false).unwrap();

    // At max_conns: balanced elsewhere while full.
    pool.update(|set| set[0].max_conns = 1).unwrap();
    let mut holder = pool.request(Key::None);
    let held = holder.take(0).unwrap();
    assert_eq!(
        once(&pool, &sticky, key, Some(value(A))),
        broken(B, Broken::Unavailable, cookie(B).as_deref())
    );
    drop(held);
    assert_eq!(
        once(&pool, &sticky, key, Some(value(A))),
        kept(A, cookie(A).as_deref())
    );

    // A removed backend's value no longer names anything.
    pool.remove(B).unwrap();
    assert_eq!(
        once(&pool, &sticky, key, Some(value(B))),
        broken(A, Broken::Unknown, cookie(A).as_deref())
    );
}

fn md5_of(id: &str) -> &'static str {
    match id {
        A => MD5_A,
        B => MD5_B,
        C => MD5_C,
        _ => MD5_Z,
    }
}

fn route_of(id: &str) -> &'static str {
    match id {
        A => "ra",
        B => "rb",
        _ => "rz",
    }
}

fn cookie_layer() -> Sticky {
    Sticky::cookie(CookieConfig::new("srv")).unwrap()
}

macro_rules! every_policy {
    ($($name:ident: $policy:expr,)*) => {
        mod every_policy {
            use super::*;
            $(
                mod $name {
                    use super::*;

                    #[test]
                    fn cookie() {
                        // Backends with routes: the cookie carries the route.
                        stateless_rules($policy, cookie_layer(), route_of);
                    }

                    #[test]
                    fn route() {
                        stateless_rules($policy, Sticky::route(), route_of);
                    }

                    #[test]
                    fn learn() {
                        learn_rules($policy);
                    }
                }
            )*
        }
    };
}

every_policy! {
    round_robin: RoundRobin,
    least_conn: LeastConn,
    by_key: ByKey,
}

#[test]
fn cookie_carries_md5_of_identity_without_route() {
    let (pool, _) = pool_of(
        RoundRobin,
        vec![Backend::new(A), Backend::new(B), Backend::new(C)],
    );
    let sticky = cookie_layer();
    let expect = |id: &str| Some(format!("srv={}", md5_of(id)));
    // Round robin order for new clients, then each cookie sticks.
    assert_eq!(
        once(&pool, &sticky, Key::None, None),
        (A.into(), Affinity::New, expect(A))
    );
    assert_eq!(
        once(&pool, &sticky, Key::None, None),
        (B.into(), Affinity::New, expect(B))
    );
    for _ in 0..3 {
        assert_eq!(
            once(&pool, &sticky, Key::None, Some(MD5_C)),
            kept(C, expect(C).as_deref())
        );
    }
    assert_eq!(
        once(&pool, &sticky, Key::None, Some("")),
        (C.into(), Affinity::New, expect(C)),
        "an empty value is no value"
    );
}

#[test]
fn set_cookie_follows_nginx_order_and_format() {
    let (pool, _) = pool_of(RoundRobin, vec![Backend::new(A)]);
    let wall = ManualClock::new(1_408_024_973_000);
    let full = CookieConfig::new("srv_id")
        .path("/")
        .samesite(SameSite::Lax)
        .secure(true)
        .httponly(true)
        .domain(".example.com")
        .expires(Expires::After(Duration::from_secs(3600)))
        .wall_clock(wall.clone());
    let set = |config: CookieConfig| {
        let sticky = Sticky::cookie(config).unwrap();
        once(&pool, &sticky, Key::None, None).2.unwrap()
    };
    assert_eq!(
        set(full.clone()),
        "srv_id=7f3797d6a7e152c9ae2760fc816c6014; expires=Thu, 14-Aug-14 15:02:53 GMT; \
         max-age=3600; domain=.example.com; httponly; secure; samesite=lax; path=/"
    );
    wall.advance_ms(1_000);
    assert_eq!(
        set(full
            .clone()
            .expires(Expires::Max)
            .samesite(SameSite::Strict)),
        "srv_id=7f3797d6a7e152c9ae2760fc816c6014; expires=Thu, 31-Dec-37 23:55:55 GMT; \
         max-age=315360000; domain=.example.com; httponly; secure; samesite=strict; path=/"
    );
    // nginx stores max as 2145916555 s; that many seconds reads as max.
    let sentinel = Expires::After(Duration::from_secs(2_145_916_555));
    assert_eq!(
        set(CookieConfig::new("s").expires(sentinel)),
        "s=7f3797d6a7e152c9ae2760fc816c6014; expires=Thu, 31-Dec-37 23:55:55 GMT; \
         max-age=315360000"
    );
    assert_eq!(
        set(CookieConfig::new("s")
            .expires(Expires::After(Duration::ZERO))
            .samesite(SameSite::None)
            .wall_clock(ManualClock::new(0))),
        "s=7f3797d6a7e152c9ae2760fc816c6014; expires=Thu, 01-Jan-70 00:00:00 GMT; \
         max-age=0; samesite=none"
    );
    assert_eq!(
        set(CookieConfig::new("s").path("/app")),
        "s=7f3797d6a7e152c9ae2760fc816c6014; path=/app"
    );
}

#[test]
fn refresh_on_change_sends_the_cookie_only_when_it_changes() {
    let (pool, _) = pool_of(RoundRobin, vec![Backend::new(A), Backend::new(B)]);
    let sticky = Sticky::cookie(CookieConfig::new("srv").refresh(Refresh::OnChange)).unwrap();
    assert_eq!(once(&pool, &sticky, Key::None, Some(MD5_B)), kept(B, None));
    let mut request = pool.request(Key::None);
    let pick = sticky.pick(&mut request, Some(MD5_B)).unwrap();
    assert!(!pick.needs_set_cookie());
    // Not due, but the caller may still write it.
    let mut out = String::from("Set-Cookie: ");
    sticky
        .write_set_cookie(request.snapshot(), &pick, &mut out)
        .unwrap();
    assert_eq!(out, format!("Set-Cookie: srv={MD5_B}"));
    pool.set_down(B, true).unwrap();
    assert_eq!(
        once(&pool, &sticky, Key::None, Some(MD5_B)),
        broken(A, Broken::Unavailable, Some(&format!("srv={MD5_A}")))
    );
}

fn sealed_value(key: &[u8], server_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(b"upstream-sticky-v1\0");
    mac.update(server_id.as_bytes());
    mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn sealed_cookie_hides_the_server_and_refuses_forgeries() {
    let (k1, k2) = (vec![1u8; 32], vec![2u8; 32]);
    let (pool, _) = pool_of(RoundRobin, vec![Backend::new(A), Backend::new(B)]);
    let sealed = |keys: Vec<Vec<u8>>, refresh: Refresh| {
        let keys = SealKeys::new(keys).unwrap();
        Sticky::cookie(CookieConfig::new("srv").seal(keys).refresh(refresh)).unwrap()
    };
    let sticky = sealed(vec![k1.clone()], Refresh::OnChange);
    let a1 = sealed_value(&k1, MD5_A);
    let b1 = sealed_value(&k1, MD5_B);
    assert_eq!(a1.len(), 32);
    assert_ne!(a1, MD5_A);

    // New clients get a sealed value; it leads back to its backend.
    assert_eq!(
        once(&pool, &sticky, Key::None, None),
        (A.into(), Affinity::New, Some(format!("srv={a1}")))
    );
    assert_eq!(once(&pool, &sticky, Key::None, Some(&b1)), kept(B, None));
    assert_eq!(once(&pool, &sticky, Key::None, Some(&a1)), kept(A, None));

    // Tampered, plain and wrong-key values are ignored, not trusted.
    let mut tampered = b1.clone().into_bytes();
    tampered[31] = if tampered[31] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let k3_value = sealed_value(&[3u8; 32], MD5_B);
    for forged in [
        tampered.as_str(),
        MD5_B,
        k3_value.as_str(),
        &b1.to_uppercase(),
    ] {
        let (_, affinity, set) = once(&pool, &sticky, Key::None, Some(forged));
        assert_eq!(affinity, Affinity::Broken(Broken::Unknown), "{forged}");
        assert!(set.is_some());
    }

    // Rotation: sign with the new key, accept the old one and re-sign.
    let rotated = sealed(vec![k2.clone(), k1.clone()], Refresh::OnChange);
    let b2 = sealed_value(&k2, MD5_B);
    assert_eq!(
        once(&pool, &rotated, Key::None, Some(&b1)),
        kept(B, Some(&format!("srv={b2}")))
    );
    assert_eq!(once(&pool, &rotated, Key::None, Some(&b2)), kept(B, None));
    let retired = sealed(vec![k2.clone()], Refresh::OnChange);
    assert_eq!(
        once(&pool, &retired, Key::None, Some(&b1)).1,
        Affinity::Broken(Broken::Unknown)
    );

    // Values do not depend on positions: a change of set moves no session.
    pool.update(|set| set.insert(0, Backend::new(C))).unwrap();
    rotated.prepare(&pool.snapshot());
    assert_eq!(once(&pool, &rotated, Key::None, Some(&b2)), kept(B, None));
    assert_eq!(
        once(&pool, &sticky, Key::None, Some(&b1)),
        kept(B, None),
        "the table is rebuilt for the new generation on first use"
    );
}

#[test]
fn sealed_backends_sharing_a_route_resolve_to_the_first() {
    let (pool, _) = pool_of(
        RoundRobin,
        vec![Backend::new(A).route("r"), Backend::new(B).route("r")],
    );
    let key = vec![5u8; 40];
    let sticky =
        Sticky::cookie(CookieConfig::new("srv").seal(SealKeys::new(vec![key.clone()]).unwrap()))
            .unwrap();
    let value = sealed_value(&key, "r");
    assert_eq!(
        once(&pool, &sticky, Key::None, Some(&value)),
        kept(A, Some(&format!("srv={value}")))
    );
}

fn learn_rules<P: Policy>(policy: P) {
    let backends = vec![
        Backend::new(A),
        Backend::new(B),
        Backend::new(Z).backup(true),
    ];
    let (pool, clock) = pool_of(policy, backends);
    let store = Arc::new(MemoryLearnStore::new(100).unwrap());
    let sticky = Sticky::learn(LearnConfig::default(), store.clone());
    let key = Key::Bytes(b"\x01");

    // No session id: balanced, nothing learned.
    let (id, affinity, set) = once(&pool, &sticky, key, None);
    assert!(id == A || id == B);
    assert_eq!((affinity, set, store.len()), (Affinity::New, None, 0));

    // A first request with an unknown session binds where it lands.
    let (first, affinity, _) = once(&pool, &sticky, key, Some("s1"));
    assert_eq!(affinity, Affinity::New);
    assert_eq!(bound(&pool, &sticky, "s1").as_deref(), Some(md5_of(&first)));
    for _ in 0..3 {
        assert_eq!(once(&pool, &sticky, key, Some("s1")), kept(&first, None));
    }

    // The response names the session: learned, replacing any binding.
    learn_to(&pool, &sticky, "s1", B);
    assert_eq!(once(&pool, &sticky, key, Some("s1")), kept(B, None));

    // Idle for less than the timeout: kept, and the use renews it.
    clock.advance_ms(599_999);
    assert_eq!(once(&pool, &sticky, key, Some("s1")), kept(B, None));
    clock.advance_ms(599_999);
    assert_eq!(once(&pool, &sticky, key, Some("s1")), kept(B, None));
    // Idle for the whole timeout: forgotten, balanced anew.
    clock.advance_ms(600_000);
    assert_eq!(once(&pool, &sticky, key, Some("s1")).1, Affinity::New);

    // Unavailable: balanced to a, and the session now lives there.
    learn_to(&pool, &sticky, "s1", B);
    pool.set_down(B, true).unwrap();
    assert_eq!(
        once(&pool, &sticky, key, Some("s1")),
        broken(A, Broken::Unavailable, None)
    );
    pool.set_down(B, false).unwrap();
    assert_eq!(bound(&pool, &sticky, "s1").as_deref(), Some(MD5_A));
    assert_eq!(once(&pool, &sticky, key, Some("s1")), kept(A, None));

    // Draining keeps the session.
    learn_to(&pool, &sticky, "s1", B);
    pool.update(|set| set[1].drain = true).unwrap();
    assert_eq!(once(&pool, &sticky, key, Some("s1")), kept(B, None));
    pool.update(|set| set[1].drain = false).unwrap();

    // A backup binding lasts only while no primary can serve.
    pool.update(|set| {
        set[0].down = true;
        set[1].down = true;
    })
    .unwrap();
    assert_eq!(once(&pool, &sticky, key, Some("s2")).0, Z);
    assert_eq!(bound(&pool, &sticky, "s2").as_deref(), Some(MD5_Z));
    assert_eq!(once(&pool, &sticky, key, Some("s2")), kept(Z, None));
    pool.set_down(A, false).unwrap();
    assert_eq!(
        once(&pool, &sticky, key, Some("s2")),
        broken(A, Broken::Backup, None)
    );
    assert_eq!(bound(&pool, &sticky, "s2").as_deref(), Some(MD5_A));
    pool.set_down(B, false).unwrap();

    // A binding to a removed backend: unknown, rebound.
    learn_to(&pool, &sticky, "s3", B);
    pool.remove(B).unwrap();
    assert_eq!(
        once(&pool, &sticky, key, Some("s3")),
        broken(A, Broken::Unknown, None)
    );
    assert_eq!(bound(&pool, &sticky, "s3").as_deref(), Some(MD5_A));
}

#[test]
fn learn_session_resolves_a_pick_by_identity_after_a_swap() {
    let (pool, _) = pool_of(
        RoundRobin,
        vec![Backend::new(A), Backend::new(B), Backend::new(C)],
    );
    let sticky = Sticky::learn(
        LearnConfig::default(),
        Arc::new(MemoryLearnStore::default()),
    );
    let mut request = pool.request(Key::None);
    let on_c = request.take(2).unwrap();
    let on_b = request.take(1).unwrap();
    // The response arrives after a's removal moved c to index 1.
    pool.remove(A).unwrap();
    let now = pool.snapshot();
    sticky.learn_session(&now, "late", &on_c).unwrap();
    assert_eq!(bound(&pool, &sticky, "late").as_deref(), Some(MD5_C));
    pool.remove(B).unwrap();
    assert_eq!(
        sticky.learn_session(&pool.snapshot(), "gone", &on_b),
        Err(StickyError::UnknownBackend { id: B.into() })
    );
    assert_eq!(
        sticky.learn_session(&now, "", &on_c),
        Err(StickyError::EmptySession)
    );
    assert_eq!(bound(&pool, &sticky, "gone"), None);
    assert_eq!(
        cookie_layer().learn_session(&now, "s", &on_c),
        Err(StickyError::NotLearn)
    );
    let mut out = String::new();
    assert_eq!(
        sticky.write_set_cookie(&now, &on_c, &mut out),
        Err(StickyError::NotCookie)
    );
    assert_eq!(
        cookie_layer().write_set_cookie(&pool.snapshot(), &on_b, &mut out),
        Err(StickyError::UnknownBackend { id: B.into() })
    );
    assert_eq!(out, "", "nothing written on error");
}

#[test]
fn concurrent_first_requests_of_one_session_land_together() {
    const THREADS: usize = 16;
    let backends: Vec<Backend> = (0..8)
        .map(|i| Backend::new(format!("10.0.0.{i}:80")))
        .collect();
    let pool = Arc::new(Pool::new(RoundRobin, backends).unwrap());
    let store = Arc::new(MemoryLearnStore::new(10_000).unwrap());
    let sticky = Arc::new(Sticky::learn(LearnConfig::default(), store.clone()));
    for round in 0..20 {
        let session = format!("session-{round}");
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (pool, sticky, barrier) = (pool.clone(), sticky.clone(), barrier.clone());
                let session = session.clone();
                std::thread::spawn(move || {
                    let mut request = pool.request(Key::None);
                    barrier.wait();
                    let pick = sticky.pick(&mut request, Some(&session)).unwrap();
                    (pick.id().to_string(), pick.affinity())
                })
            })
            .collect();
        let results: Vec<(String, Affinity)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        let chosen = &results[0].0;
        for (id, affinity) in &results {
            assert_eq!(id, chosen, "round {round}: {results:?}");
            assert!(
                matches!(affinity, Affinity::New | Affinity::Kept),
                "{affinity:?}"
            );
        }
        let snap = pool.snapshot();
        let expected = snap.route_id(snap.index_of(chosen).unwrap()).unwrap();
        let now = snap.now_ms();
        assert_eq!(
            store.lookup(&session, now, 600_000).as_deref(),
            Some(expected)
        );
    }
    assert_eq!(store.len(), 20);
}

#[test]
fn configs_are_validated_with_names() {
    let err = |config: CookieConfig| Sticky::cookie(config).unwrap_err().to_string();
    assert_eq!(
        err(CookieConfig::new("")),
        "sticky cookie: the cookie name is empty"
    );
    assert_eq!(
        err(CookieConfig::new("srv id")),
        "sticky cookie: 'srv id' is not a cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"
    );
    assert_eq!(
        err(CookieConfig::new("srv").domain("example.com;secure")),
        "sticky cookie: domain='example.com;secure' must be non-empty visible text without ';'"
    );
    assert_eq!(
        err(CookieConfig::new("srv").path("")),
        "sticky cookie: path='' must be non-empty visible text without ';'"
    );
    assert_eq!(
        err(CookieConfig::new("srv").path("/a\r\nX-Evil: 1")),
        "sticky cookie: path='/a\r\nX-Evil: 1' must be non-empty visible text without ';'"
    );
    assert!(Sticky::cookie(CookieConfig::new("__Host-srv_id").path("/")).is_ok());
    assert_eq!(
        LearnConfig::new(Duration::ZERO).unwrap_err().to_string(),
        "sticky learn: the timeout must be above 0"
    );
    assert_eq!(Sticky::route().cookie_name(), None);
    assert!(Sticky::route().store().is_none());
}

#[test]
fn the_request_key_reaches_the_policy_and_sticky_wins_over_it() {
    let (pool, _) = pool_of(
        ByKey,
        vec![Backend::new(A), Backend::new(B), Backend::new(C)],
    );
    let sticky = cookie_layer();
    let new = |key: &'static [u8]| once(&pool, &sticky, Key::Bytes(key), None).0;
    assert_eq!(
        (new(b"\x00"), new(b"\x01"), new(b"\x05")),
        (A.into(), B.into(), C.into())
    );
    assert_eq!(
        once(&pool, &sticky, Key::Bytes(b"\x01"), Some(MD5_C)),
        kept(C, Some(&format!("srv={MD5_C}")))
    );
    // Sticky backend down: the key decides where the session goes.
    pool.set_down(C, true).unwrap();
    assert_eq!(
        once(&pool, &sticky, Key::Bytes(b"\x04"), Some(MD5_C)),
        broken(B, Broken::Unavailable, Some(&format!("srv={MD5_B}")))
    );
}

//! Adversarial inputs and update sequences, found by a fresh pair of eyes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use upstream::envoy::{BoundedLoad, Maglev, RingHash};
use upstream::policy::{AnyPolicy, Candidates, Policy};
use upstream::{
    AllDown, Backend, BuildError, HaproxyChash, HaproxyMap, IpHash, Ketama, Key, LeastConn,
    ManualClock, NginxHash, NginxRandom, P2c, PeakEwma, Pool, Random, Rendezvous, RoundRobin,
    SlowStart, StaticRr, RAMP_ONE,
};

fn all_policies() -> Vec<AnyPolicy> {
    vec![
        AnyPolicy::RoundRobin(RoundRobin),
        AnyPolicy::LeastConn(LeastConn),
        AnyPolicy::IpHash(IpHash),
        AnyPolicy::Hash(NginxHash),
        AnyPolicy::Ketama(Ketama),
        AnyPolicy::NginxRandom(NginxRandom::two()),
        AnyPolicy::Random(Random),
        AnyPolicy::P2c(P2c::new()),
        AnyPolicy::PeakEwma(PeakEwma::new()),
        AnyPolicy::Maglev(Maglev::new()),
        AnyPolicy::RingHash(RingHash::new()),
        AnyPolicy::BoundedMaglev(BoundedLoad::new(Maglev::new(), 150).unwrap()),
        AnyPolicy::BoundedRingHash(BoundedLoad::new(RingHash::new(), 150).unwrap()),
        AnyPolicy::Rendezvous(Rendezvous),
        AnyPolicy::HaproxyMap(HaproxyMap::uri()),
        AnyPolicy::HaproxyChash(HaproxyChash::uri()),
        AnyPolicy::StaticRr(StaticRr::default()),
    ]
}

const KEYS: [Key<'static>; 5] = [
    Key::None,
    Key::Bytes(b""),
    Key::Bytes(b"/x"),
    Key::Hash(u64::MAX),
    Key::Ip(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1))),
];

fn ids(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend::new(format!("10.0.{}.{}:80", i / 256, i % 256)))
        .collect()
}

/// Reloading from any policy to any other, through an empty set and back,
/// never panics, and every pick is accounted.
#[test]
fn reload_between_every_pair_of_policies() {
    let clock = ManualClock::new(1);
    for from in all_policies() {
        for to in all_policies() {
            let pool = Pool::builder(from.clone())
                .clock(clock.clone())
                .build(ids(5))
                .unwrap();
            let held: Vec<_> = KEYS.iter().filter_map(|&k| pool.pick(k)).collect();
            pool.reconfigure(to.clone(), Vec::new()).unwrap();
            for k in KEYS {
                assert!(pool.pick(k).is_none(), "{} -> {}", from.name(), to.name());
            }
            pool.reconfigure(to.clone(), ids(3)).unwrap();
            for k in KEYS {
                let mut r = pool.request(k);
                let mut seen = 0;
                while let Some(p) = r.next() {
                    seen += 1;
                    p.failure();
                    assert!(
                        seen <= 3,
                        "{} -> {}: more picks than backends",
                        from.name(),
                        to.name()
                    );
                }
            }
            drop(held);
            assert_eq!(pool.total_active(), 0, "{} -> {}", from.name(), to.name());
        }
    }
}

fn hash_policies() -> Vec<AnyPolicy> {
    vec![
        AnyPolicy::IpHash(IpHash),
        AnyPolicy::Hash(NginxHash),
        AnyPolicy::Ketama(Ketama),
        AnyPolicy::Maglev(Maglev::new()),
        AnyPolicy::RingHash(RingHash::new()),
        AnyPolicy::Rendezvous(Rendezvous),
        AnyPolicy::HaproxyChash(HaproxyChash::uri()),
    ]
}

/// The backend each of 2000 clients or keys lands on.
fn owners(pool: &Pool<AnyPolicy>) -> Vec<String> {
    (0..2000u32)
        .map(|i| {
            let text = format!("/user/{i}");
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(i << 8));
            let key = match pool.snapshot().policy() {
                AnyPolicy::IpHash(_) => Key::Ip(ip),
                AnyPolicy::Maglev(_) | AnyPolicy::RingHash(_) | AnyPolicy::Rendezvous(_) => {
                    Key::Hash(upstream::envoy::source_ip_hash(ip))
                }
                _ => Key::Bytes(text.as_bytes()),
            };
            pool.pick(key).map_or("none".into(), |p| p.id().to_string())
        })
        .collect()
}

/// Keys of backends other than `victim` that moved between `before` and `after`.
fn others_moved(before: &[String], after: &[String], victim: &str) -> usize {
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.as_str() != victim && b != a)
        .count()
}

/// Draining a backend moves its keys and no other, for every hash policy
/// that keeps a drained backend in its table.
#[test]
fn drain_moves_only_the_drained_backends_keys() {
    for policy in hash_policies() {
        let pool = Pool::builder(policy.clone())
            .clock(ManualClock::new(1))
            .build(ids(10))
            .unwrap();
        let before = owners(&pool);
        pool.update(|set| set[3].drain = true).unwrap();
        let after = owners(&pool);
        assert_eq!(
            others_moved(&before, &after, "10.0.0.3:80"),
            0,
            "{}",
            policy.name()
        );
        assert!(
            !after.iter().any(|id| id == "10.0.0.3:80"),
            "{}",
            policy.name()
        );
    }
}

/// `Backend::weight` used to say that weight 0 "keeps its place, so hash keys
/// do not move". Under nginx's modulo hashes the total weight changes, so
/// most other clients move: weight 0 is not a drain there.
#[test]
fn weight_zero_moves_other_keys_under_modulo_hashes() {
    for (policy, moved) in [
        (AnyPolicy::IpHash(IpHash), 1602),
        (AnyPolicy::Hash(NginxHash), 1613),
        (AnyPolicy::Ketama(Ketama), 0),
        (AnyPolicy::Rendezvous(Rendezvous), 0),
    ] {
        let pool = Pool::builder(policy.clone())
            .clock(ManualClock::new(1))
            .build(ids(10))
            .unwrap();
        let before = owners(&pool);
        pool.set_weight("10.0.0.3:80", 0).unwrap();
        let after = owners(&pool);
        assert_eq!(
            others_moved(&before, &after, "10.0.0.3:80"),
            moved,
            "{}",
            policy.name()
        );
    }
}

static SEEN_RAMP: AtomicU32 = AtomicU32::new(u32::MAX);

/// Picks the first available backend and records the ramp factor of the
/// last one.
#[derive(Clone)]
struct RampSpy;

impl Policy for RampSpy {
    type Table = ();
    type State = ();
    fn name(&self) -> &'static str {
        "ramp_spy"
    }
    fn build(&self, _: &[Backend], _: Option<&()>) -> Result<(), BuildError> {
        Ok(())
    }
    fn pick(&self, _: &(), c: &Candidates<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        SEEN_RAMP.store(c.ramp(c.len() - 1), Ordering::SeqCst);
        (0..c.len()).find(|&i| c.is_available(i))
    }
}

/// A backend added while the clock reads 0 must ramp like any other; 0 is
/// also the "warm since the first build" marker, so it used to start at
/// full weight.
#[test]
fn slow_start_ramps_a_backend_added_at_time_zero() {
    let clock = ManualClock::new(0);
    let pool = Pool::builder(RampSpy)
        .clock(clock.clone())
        .slow_start(SlowStart::new(Duration::from_secs(30)))
        .build(vec![Backend::new("a:1")])
        .unwrap();
    pool.add(Backend::new("b:1")).unwrap();
    drop(pool.pick(Key::None));
    assert_eq!(SEEN_RAMP.load(Ordering::SeqCst), 6554, "10% of {RAMP_ONE}");
    clock.advance_ms(30_001);
    drop(pool.pick(Key::None));
    assert_eq!(SEEN_RAMP.load(Ordering::SeqCst), RAMP_ONE);
}

/// Every policy at the end of time, with slow start, panic mode and latency
/// reports of `Duration::MAX`: no panic, no endless retry, counts back to 0.
#[test]
fn clock_at_u64_max_with_every_feature() {
    for policy in all_policies() {
        let clock = ManualClock::new(u64::MAX - 5);
        let pool = Pool::builder(policy.clone())
            .clock(clock.clone())
            .slow_start(SlowStart::new(Duration::from_secs(30)))
            .all_down(AllDown::panic(50))
            .build(ids(4))
            .unwrap();
        pool.add(Backend::new("new:1")).unwrap();
        for k in KEYS {
            if let Some(p) = pool.pick(k) {
                p.report(upstream::Outcome::Failure, Some(Duration::MAX));
            }
        }
        clock.advance_ms(u64::MAX);
        for k in KEYS {
            let mut r = pool.request(k);
            let mut n = 0;
            while let Some(p) = r.next() {
                n += 1;
                p.report(upstream::Outcome::Success, Some(Duration::from_nanos(1)));
                assert!(n <= 5, "{}: a backend twice in one request", policy.name());
            }
            assert_eq!(
                n,
                5,
                "{}: panic mode serves every backend once",
                policy.name()
            );
        }
        assert_eq!(pool.total_active(), 0, "{}", policy.name());
    }
}

/// `Request::take` refuses what is out of range or already tried, and a
/// request stays exhausted once it is.
#[test]
fn take_out_of_range_twice_and_after_exhaustion() {
    let pool = Pool::builder(RoundRobin)
        .clock(ManualClock::new(1))
        .build(vec![Backend::new("a:1"), Backend::new("b:1").backup(true)])
        .unwrap();
    let mut r = pool.request(Key::None);
    assert!(r.take(usize::MAX).is_none());
    assert!(r.take(2).is_none());
    let a = r.take(0).unwrap();
    assert!(r.take(0).is_none());
    let b = r.take(1).unwrap();
    assert_eq!((a.id(), b.id()), ("a:1", "b:1"));
    for _ in 0..3 {
        assert!(r.next().is_none());
    }
    assert_eq!(pool.total_active(), 2);
    drop((a, b));
    assert_eq!(pool.total_active(), 0);
}

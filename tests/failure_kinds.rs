//! The kinds of fault real balancers shipped, each as exact tests.
//!
//! Every section names a kind of fault found in public reports against
//! other balancers, and pins the right value for each policy it concerns.
//! A kind is fixed when no input of that kind can produce it, so the tests
//! run the same case over every policy that could show it.

use std::time::Duration;

use upstream::policy::Policy;
use upstream::{
    Backend, BackendSet, BuildError, Key, LeastConn, ManualClock, Pool, RoundRobin, MAX_WEIGHT,
};

fn named(weights: &[u32]) -> Vec<Backend> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(format!("s{i}")).weight(w))
        .collect()
}

/// A pool over `backends`, or `None` when the policy refuses a weight
/// above its own maximum (HAProxy's 256), naming the first backend.
fn pool_or_refused<P: Policy>(policy: P, backends: Vec<Backend>) -> Option<Pool<P>> {
    let first = backends.first().map(|b| b.id.clone());
    match Pool::builder(policy)
        .clock(ManualClock::new(0))
        .build(backends)
    {
        Ok(pool) => Some(pool),
        Err(BuildError::Unsupported { id, reason, .. }) => {
            assert_eq!(
                (Some(id), reason),
                (first, "HAProxy weights range from 0 to 256")
            );
            None
        }
        Err(other) => panic!("{other}"),
    }
}

fn pool<P: Policy>(policy: P, backends: Vec<Backend>) -> (Pool<P>, ManualClock) {
    let clock = ManualClock::new(0);
    let pool = Pool::builder(policy)
        .clock(clock.clone())
        .build(backends)
        .unwrap();
    (pool, clock)
}

/// `n` picks released at once, as snapshot indices (`None` as `usize::MAX`).
fn picks<P: Policy>(pool: &Pool<P>, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| pool.pick(Key::None).map_or(usize::MAX, |p| p.index()))
        .collect()
}

fn counts(picks: &[usize], n: usize) -> Vec<u32> {
    let mut c = vec![0; n];
    for &p in picks {
        c[p] += 1;
    }
    c
}

/// The unkeyed policies every section runs over; `slow` ones are skipped
/// under miri.
macro_rules! for_unkeyed {
    ($check:ident) => {
        for_unkeyed!(@tests $check, []);
    };
    ($check:ident, slow) => {
        for_unkeyed!(@tests $check, [cfg_attr(miri, ignore)]);
    };
    (@tests $check:ident, [$($attr:meta)*]) => {
        mod $check {
            $(#[$attr])*
            #[test]
            fn round_robin() {
                super::$check(upstream::RoundRobin);
            }
            $(#[$attr])*
            #[test]
            fn least_conn() {
                super::$check(upstream::LeastConn);
            }
            $(#[$attr])*
            #[test]
            fn haproxy_static_rr() {
                super::$check(upstream::haproxy::StaticRr::default());
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Counters at the integer limit.
//
// The round-robin cursor wraps at u64::MAX by design; its exact order across
// the wrap is pinned by a unit test beside it (src/policy/round_robin.rs), as
// no public call reaches 2^64 picks. What the public API can reach is the
// clock at its limit and the largest weights.

/// A clock near u64::MAX: failure windows end, saturate, and never wrap
/// into "long ago".
fn clock_at_the_limit<P: Policy>(policy: P) {
    let clock = ManualClock::new(u64::MAX - 10);
    let a = Backend::new("a").fail_timeout(Duration::from_millis(5));
    let pool = Pool::builder(policy)
        .clock(clock.clone())
        .build(vec![a, Backend::new("b")])
        .unwrap();
    pool.request(Key::None).take(0).unwrap().failure();
    assert_eq!(pool.snapshot().fails(0), 1);
    let ids = |pool: &Pool<P>| -> String {
        (0..4)
            .map(|_| pool.pick(Key::None).unwrap().id().to_string())
            .collect()
    };
    clock.advance_ms(5);
    assert_eq!(
        ids(&pool),
        "bbbb",
        "5 ms after the failure: still in the window"
    );
    clock.advance_ms(1);
    let probe = pool.pick(Key::None).unwrap();
    assert_eq!(probe.id(), "a", "6 ms after: the probe");
    probe.failure();
    // The clock saturates at u64::MAX; the window, 5 ms from u64::MAX - 4,
    // never ends, and nothing wraps to let "a" back in.
    clock.advance_ms(u64::MAX);
    assert_eq!(clock_now(&clock), u64::MAX);
    assert_eq!(ids(&pool), "bbbb");
}
for_unkeyed!(clock_at_the_limit);

fn clock_now(clock: &ManualClock) -> u64 {
    use upstream::Clock;
    clock.now_ms()
}

/// A fail_timeout too long for milliseconds in a u64 keeps the backend out
/// for good, and never overflows.
fn longest_fail_timeout<P: Policy>(policy: P) {
    let a = Backend::new("a").fail_timeout(Duration::MAX);
    let (pool, clock) = pool(policy, vec![a, Backend::new("b")]);
    pool.request(Key::None).take(0).unwrap().failure();
    clock.advance_ms(u64::MAX);
    assert_eq!(picks(&pool, 3), [1, 1, 1]);
}
for_unkeyed!(longest_fail_timeout);

/// The largest weights: least_conn's cross-multiplied loads and round
/// robin's current weights must not overflow, and with every pick released
/// both give nginx's smooth order exactly (round robin's scaled to 2^20
/// slots, which keeps this order: 2^24 and 2^24 - 1 scale to 2^19 and
/// 2^19 - 1).
fn largest_weights<P: Policy>(policy: P) {
    let Some(p) = pool_or_refused(policy, named(&[MAX_WEIGHT, MAX_WEIGHT - 1, 1])) else {
        return;
    };
    let got = picks(&p, 6);
    assert_eq!(got, [0, 1, 0, 1, 0, 1]);
}
for_unkeyed!(largest_weights, slow);

/// least_conn with picks held: loads compare as active × the other's
/// weight, up to 2^32 × 2^24, in u64.
#[test]
#[cfg_attr(miri, ignore)]
fn least_conn_largest_weight_held() {
    let (p, _) = pool(LeastConn, named(&[MAX_WEIGHT, 1]));
    let held: Vec<_> = (0..1_000).map(|_| p.pick(Key::None).unwrap()).collect();
    let c = counts(&held.iter().map(|p| p.index()).collect::<Vec<_>>(), 2);
    assert_eq!(c, [999, 1], "the light one once, at 0 load against 1/2^24");
}

// ---------------------------------------------------------------------------
// Division or remainder by zero: nothing to divide among.

fn empty_set<P: Policy>(policy: P) {
    let (pool, _) = pool(policy, vec![]);
    assert!(pool.pick(Key::None).is_none());
    assert!(pool.request(Key::None).next().is_none());
    assert!(pool.request(Key::None).take(0).is_none());
}
for_unkeyed!(empty_set);

fn all_weights_zero<P: Policy>(policy: P) {
    let mut backends = named(&[0, 0, 0]);
    backends.push(Backend::new("backup").weight(0).backup(true));
    let (pool, _) = pool(policy, backends);
    assert!(pool.pick(Key::None).is_none());
    let mut request = pool.request(Key::None);
    assert!(request.next().is_none());
    // A weight-0 backend still serves a pinned (sticky) request.
    assert_eq!(pool.request(Key::None).take(1).unwrap().id(), "s1");
    // One weight back above zero: it takes everything.
    pool.set_weight("s2", 3).unwrap();
    assert_eq!(picks(&pool, 3), [2, 2, 2]);
}
for_unkeyed!(all_weights_zero);

/// A swap to an empty set serves nothing, and later swaps still apply.
fn swap_to_empty_and_back<P: Policy>(policy: P) {
    let (pool, _) = pool(policy, named(&[1, 1, 1]));
    let held = pool.pick(Key::None).unwrap();
    pool.replace(BackendSet::empty()).unwrap();
    assert!(pool.pick(Key::None).is_none());
    assert_eq!(pool.snapshot().len(), 0);
    assert_eq!(
        pool.total_active(),
        1,
        "the pick made before the swap still counts"
    );
    drop(held);
    assert_eq!(pool.total_active(), 0);
    pool.replace(named(&[0, 0])).unwrap();
    assert!(pool.pick(Key::None).is_none());
    pool.replace(named(&[2, 1])).unwrap();
    assert_eq!(pool.snapshot().generation(), 4);
    assert_eq!(counts(&picks(&pool, 3), 2), [2, 1]);
}
for_unkeyed!(swap_to_empty_and_back);

/// Every backend failed out: nothing until the first window ends.
fn all_failed_out<P: Policy>(policy: P) {
    let (pool, clock) = pool(policy, named(&[1, 1]));
    for i in 0..2 {
        pool.request(Key::None).take(i).unwrap().failure();
    }
    assert!(pool.pick(Key::None).is_none());
    clock.advance_ms(10_001);
    let probe = pool.pick(Key::None).unwrap();
    assert!(pool.pick(Key::None).is_some(), "the other one probes too");
    probe.success();
}
for_unkeyed!(all_failed_out);

// ---------------------------------------------------------------------------
// A huge weight: bounded build, proportional shares.

/// Round robin's schedule holds one slot per unit of the reduced total
/// weight, at most 2^20: 1 000 000 to 1 fits as is, so the shares are
/// exact; 2^24 to 1 is scaled (the documented cap) and the light backend
/// keeps exactly one slot.
#[test]
#[cfg_attr(miri, ignore)]
fn huge_weight_round_robin_is_bounded_and_proportional() {
    let (p, _) = pool(RoundRobin, named(&[1_000_000, 1]));
    let schedule = p.snapshot().primary_table().schedule().to_vec();
    assert_eq!(schedule.len(), 1_000_001);
    assert_eq!(
        counts(&schedule.iter().map(|&i| i as usize).collect::<Vec<_>>(), 2),
        [1_000_000, 1]
    );
    // nginx gives the light one the middle slot of the period.
    assert_eq!(schedule.iter().position(|&i| i == 1), Some(500_000));

    let (p, _) = pool(RoundRobin, named(&[MAX_WEIGHT, 1]));
    let schedule = p.snapshot().primary_table().schedule().to_vec();
    assert_eq!(schedule.len(), 1 << 20);
    assert_eq!(schedule.iter().filter(|&&i| i == 1).count(), 1);

    // Many distinct huge weights still fit the cap.
    let weights: Vec<u32> = (0..64).map(|i| MAX_WEIGHT - i).collect();
    let (p, _) = pool(RoundRobin, named(&weights));
    let schedule = p.snapshot().primary_table().schedule().to_vec();
    assert!(schedule.len() <= 1 << 20, "{}", schedule.len());
    let c = counts(
        &schedule.iter().map(|&i| i as usize).collect::<Vec<_>>(),
        64,
    );
    let (min, max) = (c.iter().min().unwrap(), c.iter().max().unwrap());
    assert!(
        max - min <= 1,
        "near-equal weights, shares within one slot: {min}..{max}"
    );
}

/// Through the pool: one whole period of 1 000 001 picks gives exactly
/// 1 000 000 and 1.
#[test]
#[cfg_attr(miri, ignore)]
fn huge_weight_picks_are_proportional() {
    for policy_picks in [
        picks(&pool(RoundRobin, named(&[1_000_000, 1])).0, 1_000_001),
        picks(&pool(LeastConn, named(&[1_000_000, 1])).0, 1_000_001),
    ] {
        assert_eq!(counts(&policy_picks, 2), [1_000_000, 1]);
    }
}

// ---------------------------------------------------------------------------
// Skipping an unavailable backend must not double its neighbour's traffic.

/// How a backend is made unavailable without moving any policy state
/// (a pinned pick does not touch the cursor or the tie-break).
#[derive(Clone, Copy, Debug)]
enum Out {
    FailedOut,
    AtMaxConns,
}

/// With backend `x` out, every window of (total − w_x) picks gives each
/// other backend exactly its weight: the skipped share is spread in
/// proportion, not handed to the next backend in line.
fn skip_spreads_in_proportion<P: Policy>(policy: P) {
    let cases: [&[u32]; 5] = [
        &[1, 1, 1, 1],
        &[3, 2, 1, 1],
        &[5, 1, 1],
        &[1, 5, 1],
        &[2, 2, 1],
    ];
    for weights in cases {
        for x in 0..weights.len() {
            for out in [Out::FailedOut, Out::AtMaxConns] {
                let mut backends = named(weights);
                backends[x].max_conns = 1;
                let (p, _) = pool(policy.clone(), backends);
                let pin = p.request(Key::None).take(x).unwrap();
                let _held = match out {
                    Out::FailedOut => {
                        pin.failure();
                        None
                    }
                    Out::AtMaxConns => Some(pin),
                };
                let rest: u32 = weights.iter().sum::<u32>() - weights[x];
                let mut want: Vec<u32> = weights.iter().map(|w| w * 3).collect();
                want[x] = 0;
                let got = counts(&picks(&p, 3 * rest as usize), weights.len());
                assert_eq!(got, want, "{weights:?} with {x} {out:?}");
            }
        }
    }
}
for_unkeyed!(skip_spreads_in_proportion);

/// The same through retries: a request whose first pick failed goes on
/// to the next backend in the policy's order, and the next request is not
/// sent there again out of turn.
fn retries_do_not_pile_on_a_neighbour<P: Policy>(policy: P) {
    let (p, _) = pool(policy, named(&[1, 1, 1, 1]));
    let mut seen = Vec::new();
    for _ in 0..8 {
        let mut request = p.request(Key::None);
        let first = request.next().unwrap();
        seen.push(first.index());
        if first.index() == 0 {
            first.failure();
            let retry = request.next().unwrap();
            seen.push(retry.index());
        }
    }
    assert_eq!(seen, [0, 1, 2, 3, 1, 2, 3, 1, 2]);
}
for_unkeyed!(retries_do_not_pile_on_a_neighbour);

// ---------------------------------------------------------------------------
// Equal weights alternate exactly like plain round robin.

fn equal_weights_rotate<P: Policy>(policy: P) {
    for n in 1..=6usize {
        for w in [1, 3, 256, 1_000, MAX_WEIGHT] {
            let Some(p) = pool_or_refused(policy.clone(), named(&vec![w; n])) else {
                continue;
            };
            let want: Vec<usize> = (0..3 * n).map(|k| k % n).collect();
            assert_eq!(picks(&p, 3 * n), want, "n={n} w={w}");
        }
    }
    // With one of four out, the other three alternate in order.
    let (p, _) = pool(policy.clone(), named(&[2, 2, 2, 2]));
    p.request(Key::None).take(1).unwrap().failure();
    assert_eq!(picks(&p, 6), [0, 2, 3, 0, 2, 3]);
    // Down in config: the same.
    let (p, _) = pool(policy, named(&[7, 7, 7, 7]));
    p.set_down("s2", true).unwrap();
    assert_eq!(picks(&p, 6), [0, 1, 3, 0, 1, 3]);
}
for_unkeyed!(equal_weights_rotate);

/// A heavy backend out leaves runs of its slots longer than the skip
/// budget: the picks that fall back are spread by nginx's loop over the
/// available servers, instead of all landing on the first of them.
fn long_runs_of_unavailable_slots<P: Policy>(policy: P) {
    for out in [Out::FailedOut, Out::AtMaxConns] {
        let mut backends = named(&[100, 1, 1]);
        backends[0].max_conns = 1;
        let (p, _) = pool(policy.clone(), backends);
        let pin = p.request(Key::None).take(0).unwrap();
        let _held = match out {
            Out::FailedOut => {
                pin.failure();
                None
            }
            Out::AtMaxConns => Some(pin),
        };
        // Schedule hits and fallbacks interleave; every six picks give
        // three to each (before the fix: four to the first, two to the other).
        let got = picks(&p, 198);
        for chunk in got.chunks(6) {
            assert_eq!(counts(chunk, 3), [0, 3, 3], "{out:?}: {got:?}");
        }
    }
}
for_unkeyed!(long_runs_of_unavailable_slots);

// ---------------------------------------------------------------------------
// The same kinds on the hash policies and rings.

/// `sku-1` to `sku-100000`, made once.
fn skus() -> &'static [String] {
    static SKUS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SKUS.get_or_init(|| (1..=100_000).map(|i| format!("sku-{i}")).collect())
}

/// Key number `i` (0-based) of the kind a policy reads: `sku-(i+1)` as
/// bytes, or for address policies the /24 `i` inside 10.0.0.0/8.
#[derive(Clone, Copy, Debug)]
enum Keys {
    Bytes,
    Ip,
}

impl Keys {
    fn key(self, i: usize) -> Key<'static> {
        match self {
            Keys::Bytes => Key::Bytes(skus()[i].as_bytes()),
            Keys::Ip => {
                let net = u32::try_from(i).unwrap() << 8;
                Key::Ip(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                    0x0a00_0000 | net | 7,
                )))
            }
        }
    }
}

fn hosts(weights: &[u32]) -> Vec<Backend> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(format!("10.0.0.{}:11211", i + 1)).weight(w))
        .collect()
}

/// Over keys `0..n`, each backend's count of keys (picks released).
fn key_counts<P: Policy>(pool: &Pool<P>, keys: Keys, n: usize) -> Vec<usize> {
    let mut counts = vec![0; pool.snapshot().len()];
    for i in 0..n {
        counts[pool.pick(keys.key(i)).expect("a backend").index()] += 1;
    }
    counts
}

/// Each hash policy and the key kind it reads.
macro_rules! hashed_case {
    (ketama) => {
        (upstream::Ketama, Keys::Bytes)
    };
    (nginx_hash) => {
        (upstream::NginxHash, Keys::Bytes)
    };
    (ip_hash) => {
        (upstream::IpHash, Keys::Ip)
    };
    (rendezvous) => {
        (upstream::Rendezvous, Keys::Bytes)
    };
    (maglev) => {
        (upstream::envoy::Maglev::new(), Keys::Bytes)
    };
    (ring_hash) => {
        (upstream::envoy::RingHash::new(), Keys::Bytes)
    };
    (bounded_maglev) => {
        (
            upstream::envoy::BoundedLoad::new(upstream::envoy::Maglev::new(), 150).unwrap(),
            Keys::Bytes,
        )
    };
    (haproxy_chash) => {
        (upstream::haproxy::HaproxyChash::uri(), Keys::Bytes)
    };
    (haproxy_map) => {
        (upstream::haproxy::HaproxyMap::uri(), Keys::Bytes)
    };
}

/// Runs `check` over the hash policies named, or over all of them.
macro_rules! for_hashed {
    ($check:ident) => {
        for_hashed!(
            $check;
            ketama, nginx_hash, ip_hash, rendezvous, maglev, ring_hash, bounded_maglev,
            haproxy_chash, haproxy_map
        );
    };
    ($check:ident; $($policy:ident),+ $(,)?) => {
        mod $check {
            use super::Keys;
            $(
                #[test]
                #[cfg_attr(miri, ignore)]
                fn $policy() {
                    let (policy, keys) = hashed_case!($policy);
                    super::$check(policy, keys);
                }
            )+
        }
    };
}

/// Nothing to divide among: an empty set, all weights zero, a swap to
/// empty, and a ring left with one weight-0 backend. No rebuild panics,
/// nothing is picked, and later swaps still apply.
fn hash_nothing_to_divide<P: Policy>(policy: P, keys: Keys) {
    let key = keys.key(0);
    let (pool, _) = pool(policy, vec![]);
    assert!(pool.pick(key).is_none());
    pool.replace(hosts(&[0, 0, 0])).unwrap();
    assert!(pool.pick(key).is_none());
    pool.replace(hosts(&[1, 1])).unwrap();
    assert!(pool.pick(key).is_some());
    pool.replace(hosts(&[0])).unwrap();
    assert!(pool.pick(key).is_none(), "one weight-0 backend left");
    pool.set_weight("10.0.0.1:11211", 2).unwrap();
    assert_eq!(
        pool.pick(key).unwrap().id(),
        "10.0.0.1:11211",
        "the next swap applies"
    );
    pool.replace(BackendSet::empty()).unwrap();
    assert!(pool.pick(key).is_none());
    pool.replace(hosts(&[1, 1, 1])).unwrap();
    assert_eq!(pool.snapshot().generation(), 7);
    assert_eq!(key_counts(&pool, keys, 300).iter().sum::<usize>(), 300);
}
for_hashed!(hash_nothing_to_divide);

/// One backend of weight 1 000 000 beside one of weight 1: the build stays
/// bounded (or the policy refuses the weight, naming the backend), and the
/// light backend gets at most a few of 100 000 keys (its fair share is 0.1).
fn hash_huge_weight<P: Policy>(policy: P, keys: Keys) {
    let (backends, light) = (hosts(&[1_000_000, 1]), "10.0.0.2:11211");
    let pool = match Pool::new(policy, backends) {
        Ok(pool) => pool,
        Err(e) => {
            assert_eq!(
                e.to_string(),
                "backend '10.0.0.1:11211' cannot be used with haproxy_chash: \
                 HAProxy weights range from 0 to 256"
                    .replace("haproxy_chash", policy_name(&e)),
            );
            return;
        }
    };
    let counts = key_counts(&pool, keys, 100_000);
    let light_at = pool.snapshot().index_of(light).unwrap();
    assert!(
        counts[light_at] <= 10,
        "light backend took {} keys",
        counts[light_at]
    );
}
for_hashed!(hash_huge_weight);

/// The policy name inside an Unsupported error.
fn policy_name(e: &upstream::BuildError) -> &'static str {
    match e {
        upstream::BuildError::Unsupported { policy, .. } => policy,
        other => panic!("unexpected error {other}"),
    }
}

/// Skipping a failed-out backend spreads its keys over the others: none of
/// the nine survivors takes more than 35% of the dead one's keys (a fair
/// share is 11%; taking them all is the fault).
fn hash_skip_spreads<P: Policy>(policy: P, keys: Keys) {
    let (pool, _) = pool(policy, hosts(&[1; 10]));
    let n = 20_000;
    let before: Vec<usize> = (0..n)
        .map(|i| pool.pick(keys.key(i)).unwrap().index())
        .collect();
    let dead = 3;
    pool.request(Key::None).take(dead).unwrap().failure();
    let mut took = [0usize; 10];
    for (i, &was) in before.iter().enumerate() {
        let now = pool.pick(keys.key(i)).unwrap().index();
        if was == dead {
            took[now] += 1;
        }
    }
    let moved: usize = took.iter().sum();
    assert!(moved > n / 20, "the dead backend had {moved} keys");
    let most = *took.iter().max().unwrap();
    assert!(
        most * 100 <= moved * 35,
        "one survivor took {most} of the {moved} keys that moved: {took:?}"
    );
}
for_hashed!(
    hash_skip_spreads;
    ketama, nginx_hash, ip_hash, rendezvous, maglev, ring_hash, bounded_maglev, haproxy_chash,
    haproxy_map
);

/// With no key, nginx's hashes and HAProxy's map balance by round robin:
/// equal weights alternate exactly. (The others do not claim to: `ip_hash`
/// hashes a missing address as 0.0.0, Envoy's tables and HAProxy's tree
/// walk their own order.)
fn unkeyed_fallback_alternates<P: Policy>(policy: P, _: Keys) {
    let (pool, _) = pool(policy, hosts(&[3, 3, 3]));
    let got = picks(&pool, 9);
    let mut firsts = got[..3].to_vec();
    firsts.sort_unstable();
    assert_eq!(firsts, [0, 1, 2], "{got:?}");
    assert_eq!(got[3..6], got[..3], "{got:?}");
    assert_eq!(got[6..], got[..3], "{got:?}");
}
for_hashed!(unkeyed_fallback_alternates; ketama, nginx_hash, haproxy_map);

/// Too few points per backend: with each policy's default ring, keys
/// `sku-1` to `sku-100000` give each of 10 backends 7% to 13%, and each of
/// 2 backends 40% to 60%.
fn default_ring_shares<P: Policy>(policy: P) {
    for (n, low, high) in [(10, 7_000, 13_000), (2, 40_000, 60_000)] {
        let (pool, _) = pool(policy.clone(), hosts(&vec![1; n]));
        let counts = key_counts(&pool, Keys::Bytes, 100_000);
        for (i, &c) in counts.iter().enumerate() {
            assert!(
                (low..=high).contains(&c),
                "{n} backends: backend {i} has {c} of 100000"
            );
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn ketama_default_ring_shares() {
    default_ring_shares(upstream::Ketama);
}

#[test]
#[cfg_attr(miri, ignore)]
fn ring_hash_default_ring_shares() {
    default_ring_shares(upstream::envoy::RingHash::new());
}

#[test]
#[cfg_attr(miri, ignore)]
fn maglev_default_table_shares() {
    default_ring_shares(upstream::envoy::Maglev::new());
}

#[test]
#[cfg_attr(miri, ignore)]
fn rendezvous_shares() {
    default_ring_shares(upstream::Rendezvous);
}

/// Removing one of three backends from a consistent ring: not one key
/// moves between the two that stayed. (Envoy's ring hash and Maglev are
/// left out: both move some keys between survivors by design, as the
/// envoy module documents.)
fn one_of_three_removed<P: Policy>(policy: P, backends: Vec<Backend>) {
    let (pool, _) = pool(policy, backends);
    let n = 100_000;
    let ids = |pool: &Pool<P>| -> Vec<String> {
        (0..n)
            .map(|i| pool.pick(Keys::Bytes.key(i)).unwrap().id().to_string())
            .collect()
    };
    let before = ids(&pool);
    let gone = pool.snapshot().backend(1).unwrap().id.clone();
    pool.remove(&gone).unwrap();
    let after = ids(&pool);
    let mut moved = 0;
    for (was, now) in before.iter().zip(&after) {
        if *was == gone {
            moved += 1;
        } else {
            assert_eq!(was, now, "a key moved between two backends that stayed");
        }
    }
    assert!(moved > 0, "the removed backend had keys");
}

#[test]
#[cfg_attr(miri, ignore)]
fn ketama_removal_moves_only_its_keys() {
    one_of_three_removed(upstream::Ketama, hosts(&[1, 1, 1]));
}

#[test]
#[cfg_attr(miri, ignore)]
fn rendezvous_removal_moves_only_its_keys() {
    one_of_three_removed(upstream::Rendezvous, hosts(&[1, 1, 1]));
}

/// HAProxy numbers servers in config order: with explicit ids (hash keys),
/// removing the second of three moves only its keys.
#[test]
#[cfg_attr(miri, ignore)]
fn haproxy_chash_removal_moves_only_its_keys() {
    let backends = hosts(&[1, 1, 1])
        .into_iter()
        .enumerate()
        .map(|(i, b)| b.hash_key((i + 1).to_string()))
        .collect();
    one_of_three_removed(upstream::haproxy::HaproxyChash::uri(), backends);
}

/// Ketama with 1 000 000 to 1: the ring keeps to `MAX_POINTS` plus one per
/// backend, however large the weight.
#[test]
#[cfg_attr(miri, ignore)]
fn ketama_huge_weight_ring_is_bounded() {
    let (pool, _) = pool(upstream::Ketama, hosts(&[1_000_000, 1]));
    let points = pool.snapshot().primary_table().points();
    let max = usize::try_from(upstream::policy::MAX_POINTS).unwrap() + 2;
    assert!(points <= max, "{points} points");
}

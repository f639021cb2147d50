//! The same behavioural rules, run over every load-aware policy.

use std::collections::BTreeSet;

use upstream::{
    Backend, Key, ManualClock, NginxRandom, P2c, PeakEwma, Policy, Pool, Random, Sequence,
    SplitMix64,
};

fn pool<P: Policy>(policy: P, backends: Vec<Backend>, seed: u64) -> Pool<P> {
    Pool::builder(policy)
        .clock(ManualClock::new(1_000))
        .random(SplitMix64::with_seed(seed))
        .build(backends)
        .unwrap()
}

fn fleet() -> Vec<Backend> {
    vec![
        Backend::new("a"),
        Backend::new("drained").drain(true),
        Backend::new("b").weight(2),
        Backend::new("down").down(true),
        Backend::new("c"),
        Backend::new("zero").weight(0),
    ]
}

/// Every policy: draining, down and weight-0 backends take no new
/// picks; every available backend gets some; a request tries each
/// available backend once and then stops.
fn suite<P: Policy>(policy: P) {
    for seed in 0..20 {
        let p = pool(policy.clone(), fleet(), seed);
        let mut seen = BTreeSet::new();
        let mut held = Vec::new();
        for _ in 0..200 {
            let pick = p.pick(Key::None).unwrap();
            seen.insert(pick.id().to_string());
            // Keep a few in flight so load-aware policies move around.
            held.push(pick);
            if held.len() > 3 {
                drop(held.remove(0));
            }
        }
        let want: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        assert_eq!(seen, want, "{} seed {seed}", policy.name());

        let mut r = p.request(Key::None);
        let mut tried = Vec::new();
        while let Some(pick) = r.next() {
            tried.push(pick.id().to_string());
            pick.failure();
        }
        tried.sort();
        assert_eq!(tried, ["a", "b", "c"], "{} seed {seed}", policy.name());
    }
}

#[test]
fn random_follows_the_rules() {
    suite(Random);
}

#[test]
fn p2c_follows_the_rules() {
    suite(P2c::new());
    suite(P2c::new().choices(3));
}

#[test]
fn peak_ewma_follows_the_rules() {
    suite(PeakEwma::new());
}

#[test]
fn nginx_random_follows_the_rules() {
    suite(NginxRandom::plain());
    suite(NginxRandom::two());
}

#[test]
fn a_drained_backend_keeps_its_pinned_sessions() {
    // Sticky layers pin with Request::take: drain refuses new clients only.
    let p = pool(P2c::new(), fleet(), 1);
    let drained = p.snapshot().index_of("drained").unwrap();
    let pinned = p.request(Key::None).take(drained).unwrap();
    assert_eq!(pinned.id(), "drained");
}

#[test]
fn random_shares_follow_weights() {
    // Weights 1, 2, 1 over 40,000 seeded picks: within 2% of 1/4, 1/2, 1/4.
    let p = pool(Random, fleet(), 7);
    let mut counts = [0u32; 3];
    for _ in 0..40_000 {
        let pick = p.pick(Key::None).unwrap();
        counts[["a", "b", "c"]
            .iter()
            .position(|id| *id == pick.id())
            .unwrap()] += 1;
    }
    assert!((9_200..=10_800).contains(&counts[0]), "{counts:?}");
    assert!((19_200..=20_800).contains(&counts[1]), "{counts:?}");
    assert!((9_200..=10_800).contains(&counts[2]), "{counts:?}");
}

#[test]
fn p2c_balances_in_flight_requests() {
    // 1,000 requests held at once over a, b (2×) and c: active per weight
    // ends within one request of even.
    let p = pool(P2c::new(), fleet(), 3);
    let held: Vec<_> = (0..1_000).map(|_| p.pick(Key::None).unwrap()).collect();
    let snap = p.snapshot();
    let active = |id: &str| snap.active(snap.index_of(id).unwrap());
    let (a, b, c) = (active("a"), active("b"), active("c"));
    assert_eq!(a + b + c, 1_000);
    assert!(
        a.abs_diff(c) <= 2 && (b / 2).abs_diff(a) <= 2,
        "{a} {b} {c}"
    );
    drop(held);
}

#[test]
fn scripted_draws_make_every_policy_exact() {
    let draws = Sequence::new([0, 2]);
    let p = Pool::builder(P2c::new())
        .clock(ManualClock::new(1_000))
        .random(draws.clone())
        .build(vec![
            Backend::new("x"),
            Backend::new("y"),
            Backend::new("z"),
        ])
        .unwrap();
    // Draws 0 (x) and 2 (z), both idle: the tie draw 0 walks to x.
    let first = p.pick(Key::None).unwrap();
    assert_eq!((first.id(), draws.drawn()), ("x", 3));
}

//! Property tests: one generic suite, run over every policy by a macro.
//!
//! Each policy adds one `properties!` line at the bottom of this file. The
//! suite drives a real [`Pool`] and, beside it, a plain model of the pool
//! (tests/model/mod.rs, shared with the `pool_ops` fuzz target): nginx's passive health (`max_fails`,
//! `fail_timeout`, the probe), active counts per backend identity, the swap
//! that carries live state over, and the tier rule (backups only when no
//! primary can serve). Where a policy has a reference version written
//! plainly there (nginx's O(n) loop for round robin, a linear scan for
//! least_conn), the model also predicts the exact pick and the pool must
//! agree with it on every step.
//!
//! # Case counts
//!
//! The defaults keep this file to a few seconds in debug builds. For a long
//! run set `UPSTREAM_PROPTEST_CASES` (it wins) or proptest's own
//! `PROPTEST_CASES`, which then applies to every property of the file:
//!
//! ```sh
//! UPSTREAM_PROPTEST_CASES=20000 cargo test --release --test properties
//! ```

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use upstream::envoy::{BoundedLoad, Maglev, RingHash};
use upstream::haproxy::{HaproxyChash, HaproxyMap, StaticRr};
use upstream::policy::Policy;
use upstream::{
    Backend, IpHash, Ketama, Key, LeastConn, ManualClock, NginxHash, NginxRandom, P2c, PeakEwma,
    Pool, Random, Rendezvous, RoundRobin,
};

mod model;
use model::*;

// ---------------------------------------------------------------------------
// Configuration

/// Cases per property: `UPSTREAM_PROPTEST_CASES`, else `PROPTEST_CASES`,
/// else `default` (a handful under miri, where each case is slow).
fn config(default: u32) -> ProptestConfig {
    let from_env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let fallback = if cfg!(miri) { 2 } else { default };
    let cases = from_env("UPSTREAM_PROPTEST_CASES")
        .or_else(|| from_env("PROPTEST_CASES"))
        .unwrap_or(fallback);
    ProptestConfig {
        cases,
        // The model check is deterministic; shrinking is what makes a
        // failure readable, so keep it, but bounded.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Generators

/// One backend of a generated set, before identities are made unique.
fn backend(backups: bool) -> impl Strategy<Value = Backend> {
    // Under miri, light weights: ring builds grow with them.
    let heavy = if cfg!(miri) { 3 } else { 30 };
    let weight = prop_oneof![1 => Just(0u32), 6 => 1u32..=5, 3 => 1u32..=heavy];
    let max_conns = prop_oneof![4 => Just(0u32), 1 => 1u32..=3];
    let max_fails = prop_oneof![3 => Just(1u32), 1 => Just(0u32), 1 => 2u32..=3];
    let flags = (
        prop::bool::weighted(0.1),
        prop::bool::weighted(if backups { 0.15 } else { 0.0 }),
        prop::bool::weighted(0.05),
    );
    let fail_timeout = prop_oneof![Just(1_000u64), 1u64..=20_000];
    (0u16..250, weight, max_conns, max_fails, fail_timeout, flags).prop_map(
        |(slot, weight, max_conns, max_fails, fail_timeout, (down, backup, drain))| {
            Backend::new(address(slot))
                .weight(weight)
                .max_conns(max_conns)
                .max_fails(max_fails)
                .fail_timeout(Duration::from_millis(fail_timeout))
                .down(down)
                .backup(backup)
                .drain(drain)
        },
    )
}

/// A valid set of 0 to 200 backends, mostly small. Identities are drawn
/// from 250 addresses, so consecutive sets overlap and live state carries.
fn backend_set(backups: bool, max: usize) -> impl Strategy<Value = Vec<Backend>> {
    // Under miri every table build is interpreted: keep sets small there.
    let max = if cfg!(miri) { max.min(8) } else { max };
    let size = prop_oneof![3 => 0..=6usize.min(max), 2 => 0..=40usize.min(max), 1 => 0..=max];
    size.prop_flat_map(move |n| prop::collection::vec(backend(backups), n))
        .prop_map(|mut set| {
            let mut seen = std::collections::HashSet::new();
            set.retain(|b| seen.insert(b.id.clone()));
            set
        })
}
fn op(backups: bool) -> impl Strategy<Value = Op> {
    let report = prop_oneof![
        Just(Report::Success),
        Just(Report::Failure),
        Just(Report::Drop)
    ];
    prop_oneof![
        6 => any::<u16>().prop_map(Op::Pick),
        2 => any::<u16>().prop_map(Op::Begin),
        4 => Just(Op::Next),
        3 => (any::<u16>(), report.clone()).prop_map(|(k, r)| Op::Lookup(k, r)),
        6 => (any::<usize>(), report).prop_map(|(n, r)| Op::Report(n, r)),
        2 => prop_oneof![0u64..=10, Just(1_000), Just(1_001), 0u64..=25_000].prop_map(Op::Advance),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, d)| Op::SetDown(n, d)),
        1 => (any::<usize>(), 0u32..=6).prop_map(|(n, w)| Op::SetWeight(n, w)),
        1 => backend_set(backups, 60).prop_map(Op::Swap),
    ]
}

fn ops(backups: bool) -> impl Strategy<Value = Vec<Op>> {
    let len = if cfg!(miri) { 0..24 } else { 0..80 };
    prop::collection::vec(op(backups), len)
}

// ---------------------------------------------------------------------------
// Properties of unkeyed policies

/// Picks released at once, over one whole period of the total weight:
/// each backend is picked exactly as often as its weight, weight 0 never.
/// Exact, with no tolerance: smooth weighted round robin is periodic with
/// period the total weight, and least_conn with no load held is exactly it.
/// A random number of picks first moves the rotation to any phase.
fn shares_are_exact<P: Policy>(
    policy: P,
    weights: Vec<u32>,
    warmup: usize,
) -> Result<(), TestCaseError> {
    let set: Vec<Backend> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(address(i as u16)).weight(w))
        .collect();
    let pool = Pool::builder(policy)
        .clock(ManualClock::new(0))
        .build(set)
        .unwrap();
    let total: u32 = weights.iter().sum();
    for _ in 0..warmup {
        prop_assert_eq!(pool.pick(Key::None).is_some(), total > 0);
    }
    let mut counts = vec![0u32; weights.len()];
    for _ in 0..total {
        counts[pool.pick(Key::None).unwrap().index()] += 1;
    }
    prop_assert_eq!(counts, weights);
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties of hash policies

/// What the suite knows about a hash policy beyond its [`Spec`].
struct Hashed {
    /// Marking a backend down moves only its keys (nginx, consistent
    /// rings). False where the program rebuilds its whole table instead
    /// (HAProxy's map-based hashing), where only passive failures keep the
    /// other keys in place.
    down_moves_only_its_keys: bool,
    /// Over 20 000 keys, each backend's share is within this fraction of
    /// its weight's share (relative error), with the weights of the cases
    /// multiplied by `share_scale` (rings need many points per backend).
    share_tolerance: f64,
    share_scale: u32,
}

/// For consistent hashing: removing a backend moves only its keys and
/// adding one moves keys only to it, and the fraction moved is at most
/// `bound` times the ideal 1/N, for N from 10 to 40 backends of weight
/// `weight`.
struct Consistent {
    weight: u32,
    bound: f64,
    /// Give backend `i` the hash key `i + 1`: HAProxy numbers servers in
    /// config order, so without explicit ids a removal renumbers the
    /// servers after it and moves their keys, as in HAProxy.
    numeric_ids: bool,
}

/// The backend each key lands on, each pick reported a success.
fn owners<P: Policy>(pool: &Pool<P>, keys: &[Key<'_>]) -> Vec<Option<String>> {
    keys.iter()
        .map(|&key| {
            let pick = pool.pick(key)?;
            let id = pick.id().to_string();
            pick.success();
            Some(id)
        })
        .collect()
}

/// A set for the hash properties: no backups, no limits, some weight 0.
/// None is down to begin with: nginx's hashes fall back to round robin
/// for a key whose rehashes keep landing on a down server (its running
/// hash can reach a fixed point), so such a key has no fixed home while
/// its server is down, in nginx as here.
fn hash_set() -> impl Strategy<Value = Vec<Backend>> {
    let weight = prop_oneof![1 => Just(0u32), 8 => 1u32..=5];
    let backend = (0u16..250, weight).prop_map(|(slot, w)| Backend::new(address(slot)).weight(w));
    let max = if cfg!(miri) { 8 } else { 40 };
    prop::collection::vec(backend, 1..=max).prop_map(|mut set| {
        let mut seen = std::collections::HashSet::new();
        set.retain(|b| seen.insert(b.id.clone()));
        set
    })
}

/// Sticky unless dead: the same key gives the same backend on every pick
/// and across a swap to the same set; when its backend becomes
/// unavailable (down, or failed out) only that backend's keys move, each
/// to an available backend; when it comes back, they return to it.
fn sticky_unless_dead<P: Policy, R>(
    spec: Spec<P, R>,
    hashed: &Hashed,
    set: Vec<Backend>,
    seeds: Vec<u16>,
    victim: usize,
    mark_down: bool,
) -> Result<(), TestCaseError> {
    let keys: Vec<Key<'_>> = seeds.iter().map(|&s| key_of(spec.keys, s)).collect();
    let clock = ManualClock::new(0);
    let pool = Pool::builder(spec.policy)
        .clock(clock.clone())
        .build(set.clone())
        .unwrap();
    let before = owners(&pool, &keys);
    prop_assert_eq!(&owners(&pool, &keys), &before, "same keys, same backends");
    pool.replace(pool.backend_set()).unwrap();
    prop_assert_eq!(
        &owners(&pool, &keys),
        &before,
        "across a swap to the same set"
    );

    let available: Vec<&Backend> = set.iter().filter(|b| b.weight > 0 && !b.down).collect();
    for owner in before.iter() {
        let ok = owner
            .as_ref()
            .is_some_and(|o| available.iter().any(|b| &b.id == o));
        prop_assert_eq!(
            ok,
            !available.is_empty(),
            "owner {:?} must be available",
            owner
        );
    }
    if available.is_empty() || (!mark_down && set.len() == 1) {
        // Nothing to take away; one server alone counts no failure (nginx).
        return Ok(());
    }
    let dead = available[victim % available.len()].id.clone();
    if mark_down {
        if !hashed.down_moves_only_its_keys {
            return Ok(());
        }
        pool.set_down(&dead, true).unwrap();
    } else {
        let index = pool.snapshot().index_of(&dead).unwrap();
        pool.request(Key::None).take(index).unwrap().failure();
    }
    let during = owners(&pool, &keys);
    let others = available.len() > 1;
    for (k, (was, now)) in before.iter().zip(&during).enumerate() {
        if was.as_deref() == Some(dead.as_str()) {
            prop_assert!(
                now.as_deref() != Some(dead.as_str()),
                "key {} stayed on the dead",
                k
            );
            let ok = now
                .as_ref()
                .is_some_and(|o| available.iter().any(|b| &b.id == o));
            prop_assert_eq!(ok, others, "key {} moved to {:?}", k, now);
        } else {
            prop_assert_eq!(was, now, "key {} moved though its backend lives", k);
        }
    }

    if mark_down {
        pool.set_down(&dead, false).unwrap();
    } else {
        clock.advance_ms(10_001);
    }
    prop_assert_eq!(
        owners(&pool, &keys),
        before,
        "keys return when it comes back"
    );
    Ok(())
}

/// Each backend's share of 20 000 keys, against its weight's share.
fn shares_follow_weights<P: Policy, R>(spec: Spec<P, R>, hashed: &Hashed) {
    let keys: Vec<Key<'_>> = (0..20_000).map(|s| key_of(spec.keys, s)).collect();
    let cases: [&[u32]; 5] = [&[1, 1], &[1, 2, 3], &[5, 1, 1, 1], &[1; 10], &[3, 0, 1]];
    for weights in cases {
        let set: Vec<Backend> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new(address(i as u16)).weight(w * hashed.share_scale))
            .collect();
        let pool = Pool::new(spec.policy.clone(), set).unwrap();
        let total: u32 = weights.iter().sum();
        let mut counts = vec![0usize; weights.len()];
        for owner in owners(&pool, &keys) {
            let id = owner.expect("a backend");
            counts[(0..weights.len())
                .find(|&i| address(i as u16) == id)
                .unwrap()] += 1;
        }
        for (i, (&w, &c)) in weights.iter().zip(&counts).enumerate() {
            let want = f64::from(w) / f64::from(total);
            let got = c as f64 / keys.len() as f64;
            assert!(
                (got - want).abs() <= hashed.share_tolerance * want,
                "{weights:?}: backend {i} has {got:.4} of the keys, its weight {want:.4}"
            );
        }
    }
}

/// Removing a backend moves only its keys; adding one moves keys only to
/// the newcomer; either moves at most `bound / N` of the keys. Every N
/// from 10 to 40, so the check is exhaustive, not sampled.
fn consistent_moves<P: Policy, R>(spec: Spec<P, R>, consistent: &Consistent) {
    let keys: Vec<Key<'_>> = (0..10_000).map(|s| key_of(spec.keys, s)).collect();
    for n in 10..=40u16 {
        let backend = |i: u16| {
            let b = Backend::new(address(i)).weight(consistent.weight);
            if consistent.numeric_ids {
                b.hash_key((i + 1).to_string())
            } else {
                b
            }
        };
        let set: Vec<Backend> = (0..n).map(backend).collect();
        let pool = Pool::new(spec.policy.clone(), set).unwrap();
        let before = owners(&pool, &keys);

        let gone = address(n / 2);
        pool.remove(&gone).unwrap();
        let after = owners(&pool, &keys);
        let mut moved = 0;
        for (was, now) in before.iter().zip(&after) {
            if was.as_deref() == Some(gone.as_str()) {
                moved += 1;
            } else {
                assert_eq!(was, now, "n={n}: a key moved between two that stayed");
            }
        }
        let ideal = keys.len() as f64 / f64::from(n);
        assert!(
            moved as f64 <= consistent.bound * ideal,
            "n={n}: removal moved {moved}, ideal {ideal:.0}"
        );

        let newcomer = address(n + 100);
        pool.add(backend(n + 100)).unwrap();
        let added = owners(&pool, &keys);
        let mut moved = 0;
        for (was, now) in after.iter().zip(&added) {
            if was != now {
                assert_eq!(
                    now.as_deref(),
                    Some(newcomer.as_str()),
                    "n={n}: moved elsewhere"
                );
                moved += 1;
            }
        }
        assert!(
            moved as f64 <= consistent.bound * ideal,
            "n={n}: adding moved {moved}, ideal {ideal:.0}"
        );
    }
}

// ---------------------------------------------------------------------------
// The suite, one line per policy

macro_rules! properties {
    (random $name:ident, $spec:expr) => {
        mod $name {
            use super::*;

            proptest! {
                #![proptest_config(config(64))]

                #[test]
                fn operations_never_give_a_wrong_answer(
                    (set, ops) in (backend_set($spec.backups, 200), ops($spec.backups))
                ) {
                    run_ops($spec, set, ops).map_err(TestCaseError::fail)?;
                }
            }
        }
    };
    (hashed $name:ident, $spec:expr, $hashed:expr $(, $consistent:expr)?) => {
        mod $name {
            use super::*;

            proptest! {
                #![proptest_config(config(64))]

                #[test]
                fn operations_never_give_a_wrong_answer(
                    (set, ops) in (backend_set($spec.backups, 200), ops($spec.backups))
                ) {
                    run_ops($spec, set, ops).map_err(TestCaseError::fail)?;
                }
            }

            proptest! {
                #![proptest_config(config(48))]

                #[test]
                fn sticky_unless_dead(
                    set in hash_set(),
                    seeds in prop::collection::vec(any::<u16>(), 1..if cfg!(miri) { 20 } else { 300 }),
                    victim in any::<usize>(),
                    mark_down in any::<bool>(),
                ) {
                    super::sticky_unless_dead($spec, &$hashed, set, seeds, victim, mark_down)?;
                }
            }

            #[test]
            #[cfg_attr(miri, ignore)]
            fn shares_follow_weights() {
                super::shares_follow_weights($spec, &$hashed);
            }

            $(
                #[test]
                #[cfg_attr(miri, ignore)]
                fn consistent_moves() {
                    super::consistent_moves($spec, &$consistent);
                }
            )?
        }
    };
    (unkeyed $name:ident, $spec:expr) => {
        mod $name {
            use super::*;

            proptest! {
                #![proptest_config(config(64))]

                #[test]
                fn operations_never_give_a_wrong_answer(
                    (set, ops) in (backend_set($spec.backups, 200), ops($spec.backups))
                ) {
                    run_ops($spec, set, ops).map_err(TestCaseError::fail)?;
                }
            }

            proptest! {
                #![proptest_config(config(64))]

                #[test]
                fn weights_are_honoured_exactly(
                    weights in prop::collection::vec(0u32..=8, 1..=30),
                    warmup in 0usize..50,
                ) {
                    shares_are_exact($spec.policy, weights, warmup)?;
                }
            }
        }
    };
}

properties!(
    unkeyed round_robin,
    Spec {
        policy: RoundRobin,
        reference: RoundRobinRef,
        backups: true,
        keys: Keys::None,
        picks_drained: false,
    }
);

properties!(
    unkeyed least_conn,
    Spec {
        policy: LeastConn,
        reference: LeastConnRef,
        backups: true,
        keys: Keys::None,
        picks_drained: false,
    }
);

properties!(
    unkeyed haproxy_static_rr,
    Spec {
        policy: StaticRr::default().all_backups(true),
        reference: NoReference,
        backups: true,
        keys: Keys::None,
        picks_drained: false,
    }
);

properties!(
    hashed haproxy_map_uri,
    Spec {
        policy: HaproxyMap::uri().all_backups(true),
        reference: NoReference,
        backups: true,
        keys: Keys::Bytes,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: false,
        // A share of 10% over 20 000 keys has a sampling error of 2.1%
        // (relative, one sigma); 5% is over two sigma. Measured at most 0.7%.
        share_tolerance: 0.05,
        share_scale: 1,
    }
);

properties!(
    hashed haproxy_map_source,
    Spec {
        policy: HaproxyMap::source().all_backups(true),
        reference: NoReference,
        backups: true,
        keys: Keys::Ip,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: false,
        // The test's addresses are not random (IPv4 in sequence, IPv6
        // XOR-folded as HAProxy folds them, with no avalanche by default),
        // so the map's modulo sees patterns: measured at most 11.6%.
        share_tolerance: 0.15,
        share_scale: 1,
    }
);

properties!(
    hashed haproxy_chash_uri,
    Spec {
        policy: HaproxyChash::uri().all_backups(true),
        reference: NoReference,
        backups: true,
        keys: Keys::Bytes,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: true,
        // 16 points per unit of weight: at weight 16 a server holds 256
        // points, and its arc's share varies by about 1/sqrt(256) = 6.25%
        // (one sigma); 20% is about three sigma. Measured at most 12.2%.
        share_tolerance: 0.2,
        share_scale: 16,
    },
    Consistent {
        weight: 64,
        bound: 1.25,
        numeric_ids: true,
    }
);

properties!(
    random random,
    Spec {
        policy: Random,
        reference: NoReference,
        backups: true,
        keys: Keys::None,
        picks_drained: false,
    }
);

properties!(
    random p2c,
    Spec {
        policy: P2c::new(),
        reference: NoReference,
        backups: true,
        keys: Keys::None,
        picks_drained: false,
    }
);

properties!(
    random peak_ewma,
    Spec {
        policy: PeakEwma::new(),
        reference: NoReference,
        backups: true,
        keys: Keys::None,
        picks_drained: false,
    }
);

properties!(
    random nginx_random,
    Spec {
        policy: NginxRandom::plain(),
        reference: NoReference,
        backups: false,
        keys: Keys::None,
        picks_drained: false,
    }
);

properties!(
    random nginx_random_two,
    Spec {
        policy: NginxRandom::two(),
        reference: NoReference,
        backups: false,
        keys: Keys::None,
        picks_drained: false,
    }
);

properties!(
    hashed ip_hash,
    Spec {
        policy: IpHash,
        reference: NoReference,
        backups: false,
        keys: Keys::Ip,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: true,
        // Sampling error of a 10% share over 20 000 keys is 2.1% (relative,
        // one sigma); nginx's 113/6271 hash spreads these addresses evenly:
        // measured at most 1.0%.
        share_tolerance: 0.05,
        share_scale: 1,
    }
);

properties!(
    hashed nginx_hash,
    Spec {
        policy: NginxHash,
        reference: NoReference,
        backups: false,
        keys: Keys::Bytes,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: true,
        // CRC-32 keys: sampling error only (2.1% at a 10% share, one sigma);
        // 10% is near five sigma. Measured at most 3.3%.
        share_tolerance: 0.1,
        share_scale: 1,
    }
);

properties!(
    hashed ketama,
    Spec {
        policy: Ketama,
        reference: NoReference,
        backups: false,
        keys: Keys::Bytes,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: true,
        // 160 points per unit of weight: a server's arc varies by about
        // 1/sqrt(160) = 8%; 30% is the issue's 7%-13% band for 10 servers.
        // Measured at most 13.4%.
        share_tolerance: 0.3,
        share_scale: 1,
    },
    Consistent {
        weight: 1,
        bound: 1.25,
        numeric_ids: false,
    }
);

properties!(
    hashed rendezvous,
    Spec {
        policy: Rendezvous,
        reference: NoReference,
        backups: true,
        keys: Keys::Bytes,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: true,
        // Scores are independent per key: sampling error only (2.1% at a 10%
        // share); measured at most 3.3%.
        share_tolerance: 0.1,
        share_scale: 1,
    },
    Consistent {
        weight: 1,
        bound: 1.25,
        numeric_ids: false,
    }
);

properties!(
    hashed maglev,
    Spec {
        // A smaller prime table than Envoy's default 65 537 keeps debug
        // builds of it fast; the properties do not depend on the size.
        policy: Maglev::with_table_size(4099).unwrap(),
        reference: NoReference,
        backups: true,
        keys: Keys::Hash,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: false,
        // Maglev balances its table's slots to within one slot per host;
        // the rest is sampling error (2.1% at a 10% share, one sigma).
        // Measured at most 3.9%.
        share_tolerance: 0.1,
        share_scale: 1,
    }
);

properties!(
    hashed ring_hash,
    Spec {
        policy: RingHash::new(),
        reference: NoReference,
        backups: true,
        keys: Keys::Bytes,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: false,
        // Envoy's minimum ring of 1024 entries gives 10 hosts about 100 each,
        // so a host's arc varies by about 10%; measured at most 13.5%.
        share_tolerance: 0.3,
        share_scale: 1,
    }
);

properties!(
    hashed bounded_maglev,
    Spec {
        policy: BoundedLoad::new(Maglev::with_table_size(4099).unwrap(), 150).unwrap(),
        reference: NoReference,
        backups: true,
        keys: Keys::Ip,
        picks_drained: false,
    },
    Hashed {
        down_moves_only_its_keys: false,
        // As Maglev: picks are released, so no bound is ever reached.
        // Measured at most 3.9%.
        share_tolerance: 0.1,
        share_scale: 1,
    }
);

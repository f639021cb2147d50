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

use upstream::policy::Policy;
use upstream::{Backend, Key, LeastConn, ManualClock, Pool, RoundRobin};

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
    let weight = prop_oneof![1 => Just(0u32), 6 => 1u32..=5, 3 => 1u32..=100];
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
        6 => (any::<usize>(), report).prop_map(|(n, r)| Op::Report(n, r)),
        2 => prop_oneof![0u64..=10, Just(1_000), Just(1_001), 0u64..=25_000].prop_map(Op::Advance),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, d)| Op::SetDown(n, d)),
        1 => (any::<usize>(), 0u32..=6).prop_map(|(n, w)| Op::SetWeight(n, w)),
        1 => backend_set(backups, 60).prop_map(Op::Swap),
    ]
}

fn ops(backups: bool) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(backups), 0..80)
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
// The suite, one line per policy

macro_rules! properties {
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

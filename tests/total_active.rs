//! `Pool::total_active` gives the same exact count whether the policy keeps
//! the pool-wide counter on its pick path (`COUNTS_TOTAL_ACTIVE`) or leaves
//! it to be summed from the per-backend counts, including picks on backends
//! that a swap removed.

use upstream::policy::{Candidates, Policy};
use upstream::{Backend, BuildError, Key, Pool, RoundRobin};

/// Round robin that keeps the pool-wide counter (the trait's default).
#[derive(Clone)]
struct CountingRoundRobin;

impl Policy for CountingRoundRobin {
    type Table = <RoundRobin as Policy>::Table;
    type State = ();

    fn name(&self) -> &'static str {
        "counting_round_robin"
    }

    fn build(
        &self,
        tier: &[Backend],
        prev: Option<&Self::Table>,
    ) -> Result<Self::Table, BuildError> {
        RoundRobin.build(tier, prev)
    }

    fn pick(&self, t: &Self::Table, c: &Candidates<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        t.pick(c)
    }
}

fn names(ids: &[&str]) -> Vec<Backend> {
    ids.iter().map(|id| Backend::new(*id)).collect()
}

fn counts_through_removals<P: Policy>(policy: P) {
    let pool = Pool::new(policy, names(&["a:1", "b:1", "c:1"])).unwrap();
    let picks: Vec<_> = (0..6).map(|_| pool.pick(Key::None).unwrap()).collect();
    let ids: Vec<&str> = picks.iter().map(|p| p.id()).collect();
    assert_eq!(ids, ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]);
    assert_eq!(pool.total_active(), 6);

    // A request started before the removal keeps its snapshot.
    let mut old = pool.request(Key::None);
    pool.remove("c:1").unwrap();
    assert_eq!(pool.total_active(), 6, "picks on c:1 still count");

    // c:1 is gone from the pool, but the old request may still take it.
    let late = old.take(2).unwrap();
    assert_eq!(late.id(), "c:1");
    assert_eq!(pool.total_active(), 7);

    // Re-added while picks on it are held, c:1 gets its live state back:
    // counted once, in the current snapshot.
    pool.add(Backend::new("c:1")).unwrap();
    let fresh = pool.request(Key::None).take(2).unwrap();
    assert_eq!((fresh.id(), pool.snapshot().active(2)), ("c:1", 4));
    assert_eq!(pool.total_active(), 8);

    drop(late);
    drop(old);
    assert_eq!(pool.total_active(), 7);
    drop(picks);
    assert_eq!(pool.total_active(), 1);
    drop(fresh);
    assert_eq!(pool.total_active(), 0);
}

#[test]
fn summed_from_backends_when_the_policy_keeps_no_counter() {
    const { assert!(!<RoundRobin as Policy>::COUNTS_TOTAL_ACTIVE) };
    counts_through_removals(RoundRobin);
}

#[test]
fn counted_on_the_pick_path_by_default() {
    const { assert!(<CountingRoundRobin as Policy>::COUNTS_TOTAL_ACTIVE) };
    counts_through_removals(CountingRoundRobin);
}

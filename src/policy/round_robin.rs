//! nginx's smooth weighted round robin, without a lock.
//!
//! nginx keeps a `current_weight` per server and, on every pick, adds each
//! server's weight to it, takes the largest (the first in config order on a
//! tie) and subtracts the total. The sequence that produces is periodic with
//! period equal to the total weight, so this policy runs nginx's loop once
//! when the snapshot is built, stores the period as a schedule, and a pick is
//! one atomic increment of a cursor and one table read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};

/// Longest schedule kept; larger total weights are scaled down to fit.
const MAX_SCHEDULE: u64 = 1 << 20;

/// Most (slot × distinct weight) steps one build may take: about 20 ms.
const MAX_BUILD_STEPS: u64 = 1 << 24;

/// How many schedule slots a pick may skip before it falls back to a scan.
const MAX_SKIPS: usize = 16;

/// nginx's default method: smooth weighted round robin.
///
/// For any weights this gives exactly nginx's order: weights 5, 1, 1 give
/// `a a b a c a a`, equal weights give plain rotation. Servers marked
/// `down` are left out of the schedule, as nginx leaves them out of its loop.
/// A server that is unavailable at pick time (failed out, at `max_conns`,
/// tried) is skipped by taking the next slot, so its share is spread over
/// the others in proportion to their weights instead of falling on its
/// neighbour.
///
/// The cursor is shared by consecutive snapshots, so a swap does not restart
/// the rotation.
///
/// # Limitations
///
/// - nginx lowers a server's effective weight for a while after each failure,
///   and its loop shifts the others' current weights while a server is
///   skipped; this policy does neither, so right after failures or skips
///   (at `max_conns`, say) the interleaving can differ from nginx's (the
///   shares do not).
/// - A total weight W (after dividing by the weights' greatest common
///   divisor) above 2^20, or above 2^24 / D with D distinct weights, is scaled
///   down to fit, which rounds each share by at most one slot. Configs with
///   a few distinct weights of ordinary size are never scaled; a thousand
///   servers with a thousand different weights are.
/// - When more than 16 consecutive slots are unavailable, the pick falls back
///   to nginx's O(n) loop over the available servers (its state kept per
///   backend), which keeps picks bounded and spread in proportion to weight,
///   but no longer in exactly the schedule's order.
///
/// # Complexity
///
/// Pick: O(1) with every server available, at most 17 slots then O(n)
/// otherwise. Build: O(W × D) time and O(W) memory, W the total weight and
/// D the number of distinct weights, bounded to 2^24 steps and 2^20 slots as
/// the limitations say.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, Pool, RoundRobin};
///
/// let pool = Pool::new(
///     RoundRobin,
///     vec![Backend::new("a").weight(5), Backend::new("b"), Backend::new("c")],
/// )
/// .unwrap();
/// let order: String = (0..7).map(|_| pool.pick(Key::None).unwrap().id().to_string()).collect();
/// assert_eq!(order, "aabacaa");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundRobin;

/// The prebuilt schedule of [`RoundRobin`].
#[derive(Debug)]
pub struct RoundRobinTable {
    schedule: Box<[u32]>,
    cursor: Arc<AtomicU64>,
}

impl RoundRobinTable {
    /// Builds the schedule for `tier`, continuing the rotation of `prev`
    /// (the table it replaces) when there is one. Policies that fall back to
    /// round robin embed one and pass their previous one here.
    pub fn new(tier: &[Backend], prev: Option<&RoundRobinTable>) -> Self {
        RoundRobinTable {
            schedule: smooth_schedule(tier).into_boxed_slice(),
            cursor: prev.map(|p| Arc::clone(&p.cursor)).unwrap_or_default(),
        }
    }

    /// One period of the schedule, as indices into the tier.
    pub fn schedule(&self) -> &[u32] {
        &self.schedule
    }

    /// Picks the next available server in schedule order.
    #[inline(always)]
    pub fn pick(&self, c: &Candidates<'_>) -> Option<usize> {
        let len = self.schedule.len() as u64;
        if len == 0 {
            return None;
        }
        // Relaxed: the cursor only spreads picks; it guards no other data.
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        let i = self.schedule[(n % len) as usize] as usize;
        if c.is_available(i) {
            return Some(i);
        }
        self.pick_skipping(c, len)
    }

    /// The rest of [`pick`](Self::pick) once its first slot was unavailable:
    /// up to [`MAX_SKIPS`] more slots, then the fallback.
    #[inline(never)]
    fn pick_skipping(&self, c: &Candidates<'_>, len: u64) -> Option<usize> {
        for _ in 0..MAX_SKIPS {
            // Relaxed: as in `pick`.
            let n = self.cursor.fetch_add(1, Ordering::Relaxed);
            let i = self.schedule[(n % len) as usize] as usize;
            if c.is_available(i) {
                return Some(i);
            }
        }
        let fallback = smooth_among_available(c);
        if fallback.is_none() {
            // Give back the slots of a fruitless pass (the first slot and
            // the skipped ones), so that a pass that finds nothing
            // (everything out, then a panic-mode retry) does not shift the
            // rotation by a fixed stride and starve a backend.
            // Relaxed: as above.
            self.cursor
                .fetch_sub(MAX_SKIPS as u64 + 1, Ordering::Relaxed);
        }
        fallback
    }
}

/// nginx's own loop over the servers available now, for when a long run of
/// unavailable slots blocks the schedule. Unlike always taking one fixed
/// server, it spreads those picks in proportion to weight, so the servers
/// next to an unavailable one do not take its share.
fn smooth_among_available(c: &Candidates<'_>) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    let mut total: i64 = 0;
    for i in (0..c.len()).filter(|&i| c.is_available(i)) {
        let w = i64::from(c.weight(i));
        // Relaxed: rotation bookkeeping; a race only perturbs the order.
        let current = c.live(i).current_weight.fetch_add(w, Ordering::Relaxed) + w;
        total += w;
        if best.is_none_or(|(_, b)| current > b) {
            best = Some((i, current));
        }
    }
    let (i, _) = best?;
    // Relaxed: as above.
    c.live(i).current_weight.fetch_sub(total, Ordering::Relaxed);
    Some(i)
}

impl Policy for RoundRobin {
    type Table = RoundRobinTable;
    type State = ();

    // Never reads the pool-wide count: skip keeping it.
    const COUNTS_TOTAL_ACTIVE: bool = false;

    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn build(
        &self,
        tier: &[Backend],
        prev: Option<&RoundRobinTable>,
    ) -> Result<RoundRobinTable, BuildError> {
        Ok(RoundRobinTable::new(tier, prev))
    }

    #[inline(always)]
    fn pick(
        &self,
        table: &RoundRobinTable,
        c: &Candidates<'_>,
        _: Key<'_>,
        _: &mut (),
    ) -> Option<usize> {
        table.pick(c)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The weights nginx would rotate over: servers not down, weight > 0,
/// reduced by their greatest common divisor and scaled to fit the schedule.
fn schedule_weights(tier: &[Backend]) -> Vec<u64> {
    let raw: Vec<u64> = tier
        .iter()
        .map(|b| if b.down { 0 } else { u64::from(b.weight) })
        .collect();
    let g = raw.iter().fold(0, |g, &w| gcd(g, w)).max(1);
    let reduced: Vec<u64> = raw.iter().map(|w| w / g).collect();
    let total: u64 = reduced.iter().sum();
    // The build runs one step per slot over every distinct weight; bound
    // both the schedule and that work.
    let mut distinct: Vec<u64> = reduced.iter().copied().filter(|&w| w > 0).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let limit = MAX_SCHEDULE.min(MAX_BUILD_STEPS / (distinct.len() as u64).max(1));
    if total <= limit {
        return reduced;
    }
    reduced
        .iter()
        .map(|&w| {
            if w == 0 {
                0
            } else {
                (w * limit / total).max(1)
            }
        })
        .collect()
}

/// Runs nginx's smooth weighted round robin for one period.
///
/// Servers of equal weight are picked in index order among themselves, so
/// each weight class is a queue, and a step compares only the heads of the
/// classes: the head with the largest current weight wins, the lowest index
/// on a tie, exactly as nginx's linear scan decides.
fn smooth_schedule(tier: &[Backend]) -> Vec<u32> {
    let weights = schedule_weights(tier);
    let total: u64 = weights.iter().sum();
    let mut classes: Vec<(u64, VecDeque<u32>)> = Vec::new();
    for (i, &w) in weights.iter().enumerate().filter(|(_, &w)| w > 0) {
        let index = u32::try_from(i).expect("set size is bounded by MAX_BACKENDS");
        match classes.iter_mut().find(|(cw, _)| *cw == w) {
            Some((_, queue)) => queue.push_back(index),
            None => classes.push((w, VecDeque::from([index]))),
        }
    }
    // picks[i]: how often server i was chosen so far. Its current weight
    // after k steps is k * w - total * picks[i].
    let mut picks = vec![0u64; tier.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for step in 1..=total {
        let value = |w: u64, i: u32| i128::from(step * w) - i128::from(total * picks[i as usize]);
        let best = classes
            .iter()
            .enumerate()
            .map(|(c, (w, q))| (c, value(*w, q[0]), q[0]))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(c, _, _)| c)
            .expect("total > 0 implies a class");
        let queue = &mut classes[best].1;
        let i = queue.pop_front().expect("classes are never empty");
        picks[i as usize] += 1;
        queue.push_back(i);
        schedule.push(i);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's loop, written plainly, as the reference.
    fn naive(weights: &[u64], steps: usize) -> Vec<u32> {
        let total: i64 = weights.iter().map(|&w| w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        let mut out = Vec::new();
        for _ in 0..steps {
            let mut best: Option<usize> = None;
            for (i, &w) in weights.iter().enumerate().filter(|(_, &w)| w > 0) {
                current[i] += w as i64;
                if best.is_none_or(|b| current[i] > current[b]) {
                    best = Some(i);
                }
            }
            let b = best.unwrap();
            current[b] -= total;
            out.push(b as u32);
        }
        out
    }

    fn tier(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new(format!("s{i}")).weight(w))
            .collect()
    }

    #[test]
    fn schedule_matches_naive_loop() {
        let cases: [&[u32]; 7] = [
            &[5, 1, 1],
            &[21, 11],
            &[100, 10],
            &[1, 1, 1, 1],
            &[3, 0, 2, 7],
            &[4, 6, 8],
            &[1],
        ];
        for weights in cases {
            let w64: Vec<u64> = schedule_weights(&tier(weights));
            let total = w64.iter().sum::<u64>() as usize;
            assert_eq!(
                smooth_schedule(&tier(weights)),
                naive(&w64, total),
                "{weights:?}"
            );
        }
    }

    #[test]
    fn gcd_reduction_keeps_the_order() {
        let plain: Vec<u64> = vec![5, 1, 1];
        let scaled = tier(&[50, 10, 10]);
        assert_eq!(smooth_schedule(&scaled), naive(&plain, 7));
    }

    #[test]
    fn huge_weights_are_scaled_into_bounds() {
        let t = tier(&[MAX_WEIGHT_FOR_TEST, 3]);
        let s = smooth_schedule(&t);
        assert!(s.len() as u64 <= MAX_SCHEDULE);
        assert_eq!(s.iter().filter(|&&i| i == 1).count(), 1);
    }
    const MAX_WEIGHT_FOR_TEST: u32 = crate::backend::MAX_WEIGHT;

    #[test]
    fn many_distinct_weights_are_scaled_to_bound_the_build() {
        let weights: Vec<u32> = (0..1000).map(|i| 1000 + i).collect();
        let w = schedule_weights(&tier(&weights));
        let distinct = 1000u64;
        assert!(w.iter().sum::<u64>() <= MAX_BUILD_STEPS / distinct + 1000);
        // Shares stay in proportion: the heaviest over the lightest is
        // 1999/1000 before scaling.
        let (lo, hi) = (w[0] as f64, w[999] as f64);
        assert!((hi / lo - 1.999).abs() < 0.2, "{lo} {hi}");
        // Few distinct weights of ordinary size are never scaled.
        let plain: Vec<u32> = (0..1000).map(|i| 1 + i % 7).collect();
        assert_eq!(
            schedule_weights(&tier(&plain)),
            plain.iter().map(|&w| u64::from(w)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn cursor_wraps_at_the_integer_limit() {
        let t = RoundRobinTable::new(&tier(&[1, 1, 1]), None);
        t.cursor.store(u64::MAX - 1, Ordering::Relaxed);
        let tried = crate::tried::TriedSet::default();
        let clock = crate::clock::ManualClock::new(0);
        let specs = tier(&[1, 1, 1]);
        let pool = std::sync::Arc::new(crate::live::PoolShared::new(std::sync::Arc::new(
            clock.clone(),
        )));
        let shared: Vec<_> = specs
            .iter()
            .map(|b| crate::live::Shared::new(b, &pool))
            .collect();
        let c = Candidates::new(&specs, &shared, 0, &tried, &clock);
        // u64::MAX - 1 = 3 * 6148914691236517204 + 2, u64::MAX = 0 mod 3, then 0.
        let picks: Vec<usize> = (0..4).map(|_| t.pick(&c).unwrap()).collect();
        assert_eq!(picks, [2, 0, 0, 1]);
    }
}

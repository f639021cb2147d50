//! Random and weighted random.
//!
//! A draw is proportional to weight: the table keeps the running sum of the
//! weights of the backends that can ever be drawn, and a draw `x` in
//! `0..total` lands on the first backend whose running sum exceeds `x`, found
//! by binary search. Equal weights skip the search: the draw indexes the
//! table directly.

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};

/// How many draws may land on unavailable backends before a pick switches to
/// an exact draw over the available ones.
const MAX_DRAWS: usize = 8;

/// Weighted random: each pick draws a backend with probability proportional
/// to its weight among the available ones.
///
/// Backends that are down, draining or of weight 0 are left out of the table,
/// so they are never drawn. A draw that lands on a backend that is
/// unavailable at pick time (failed out, at `max_conns`, already tried for
/// this request) is drawn again, up to 8 times; then the pick draws once
/// over the available backends by a linear walk. Both ways give each
/// available backend exactly its weight's share, so retries choose among the
/// untried backends in proportion to their weights.
///
/// Draws come from the pool's [`RandomSource`](crate::RandomSource): the
/// draw `r` picks the backend whose weight range holds `r % total`, ranges
/// laid out in config order (`r % n` when all weights are equal).
///
/// # Complexity
///
/// Pick: O(1) with equal weights, O(log n) otherwise, while draws land on
/// available backends; O(n) for the exact fallback. Build: O(n).
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, Pool, Random, Sequence};
///
/// // Weights 1 and 3: draws 0 lands on "a", draws 1 to 3 on "b".
/// let pool = Pool::builder(Random)
///     .random(Sequence::new([0, 1, 2, 3]))
///     .build(vec![Backend::new("a"), Backend::new("b").weight(3)])
///     .unwrap();
/// let ids: Vec<String> = (0..4).map(|_| pool.pick(Key::None).unwrap().id().to_string()).collect();
/// assert_eq!(ids, ["a", "b", "b", "b"]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Random;

/// The prebuilt table of [`Random`]: weight ranges in config order.
#[derive(Clone, Debug, Default)]
pub struct RandomTable {
    /// Tier indices of the backends that can be drawn.
    index: Box<[u32]>,
    /// Running sum of weights at the end of each entry; empty when all
    /// weights are equal.
    ends: Box<[u64]>,
    total: u64,
}

impl RandomTable {
    /// Builds the ranges for `tier`, leaving out backends that are down,
    /// draining or of weight 0.
    ///
    /// # Complexity
    ///
    /// O(n) time and memory.
    pub fn new(tier: &[Backend]) -> Self {
        let drawable = |b: &&Backend| !b.down && !b.drain && b.weight > 0;
        let index: Box<[u32]> = (0u32..)
            .zip(tier)
            .filter(|(_, b)| drawable(b))
            .map(|(i, _)| i)
            .collect();
        let weights = || tier.iter().filter(drawable).map(|b| u64::from(b.weight));
        let total: u64 = weights().sum();
        let uniform = weights().all(|w| Some(w) == weights().next());
        let ends = if uniform {
            Box::default()
        } else {
            weights()
                .scan(0u64, |sum, w| {
                    *sum += w;
                    Some(*sum)
                })
                .collect()
        };
        RandomTable { index, ends, total }
    }

    /// The tier index that draw `r` lands on, available or not; `None` when
    /// no backend can be drawn.
    ///
    /// # Complexity
    ///
    /// O(1) with equal weights, O(log n) otherwise.
    #[inline]
    pub fn draw(&self, r: u64) -> Option<usize> {
        let len = self.index.len() as u64;
        if len == 0 {
            return None;
        }
        let entry = if self.ends.is_empty() {
            r % len
        } else {
            let x = r % self.total;
            self.ends.partition_point(|&end| end <= x) as u64
        };
        self.index.get(entry as usize).map(|&i| i as usize)
    }

    /// Draws until an available backend comes up, then falls back to one
    /// exact draw over the available backends.
    #[inline]
    pub fn pick(&self, c: &Candidates<'_>) -> Option<usize> {
        for _ in 0..MAX_DRAWS {
            let i = self.draw(c.random())?;
            if c.is_available(i) {
                return Some(i);
            }
        }
        self.pick_exact(c)
    }

    /// One draw weighted over the backends available now: O(n).
    fn pick_exact(&self, c: &Candidates<'_>) -> Option<usize> {
        let available = || {
            self.index
                .iter()
                .map(|&i| i as usize)
                .filter(|&i| c.is_available(i))
        };
        let total: u64 = available().map(|i| u64::from(c.weight(i))).sum();
        if total == 0 {
            return None;
        }
        let mut x = c.random() % total;
        let mut last = None;
        for i in available() {
            let w = u64::from(c.weight(i));
            if x < w {
                return Some(i);
            }
            x -= w;
            last = Some(i);
        }
        // Another thread took the last slot of a backend between the passes.
        last
    }
}

impl Policy for Random {
    type Table = RandomTable;
    type State = ();

    fn name(&self) -> &'static str {
        "random"
    }

    fn build(&self, tier: &[Backend], _: Option<&RandomTable>) -> Result<RandomTable, BuildError> {
        Ok(RandomTable::new(tier))
    }

    #[inline]
    fn pick(
        &self,
        table: &RandomTable,
        c: &Candidates<'_>,
        _: Key<'_>,
        _: &mut (),
    ) -> Option<usize> {
        table.pick(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, Pool, Sequence};

    fn pool(backends: Vec<Backend>, draws: &[u64]) -> Pool<Random> {
        Pool::builder(Random)
            .clock(ManualClock::new(1_000))
            .random(Sequence::new(draws.iter().copied()))
            .build(backends)
            .unwrap()
    }

    fn ids(pool: &Pool<Random>, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                pool.pick(Key::None)
                    .map_or("none".into(), |p| p.id().to_string())
            })
            .collect()
    }

    #[test]
    fn draws_land_on_weight_ranges_in_config_order() {
        // Weights 1, 2, 1: ranges [0,1) a, [1,3) b, [3,4) c.
        let backends = vec![
            Backend::new("a"),
            Backend::new("b").weight(2),
            Backend::new("c"),
        ];
        let p = pool(backends, &[0, 1, 2, 3, 4, 7, 4_000_000_001]);
        assert_eq!(ids(&p, 7), ["a", "b", "b", "c", "a", "c", "b"]);
    }

    #[test]
    fn equal_weights_index_directly() {
        let backends = vec![Backend::new("a").weight(5), Backend::new("b").weight(5)];
        let t = RandomTable::new(&backends);
        assert!(t.ends.is_empty());
        assert_eq!(
            (t.draw(0), t.draw(1), t.draw(6), t.draw(u64::MAX)),
            (Some(0), Some(1), Some(0), Some(1))
        );
    }

    #[test]
    fn down_draining_and_weightless_backends_are_never_drawn() {
        let backends = vec![
            Backend::new("down").down(true),
            Backend::new("a"),
            Backend::new("drain").drain(true),
            Backend::new("zero").weight(0),
            Backend::new("b").weight(3),
        ];
        let t = RandomTable::new(&backends);
        let drawn: Vec<Option<usize>> = (0..5).map(|r| t.draw(r)).collect();
        assert_eq!(drawn, [Some(1), Some(4), Some(4), Some(4), Some(1)]);
        let p = pool(backends, &[0, 1, 2, 3]);
        assert_eq!(ids(&p, 4), ["a", "b", "b", "b"]);
    }

    #[test]
    fn empty_and_all_unavailable_tiers_pick_none() {
        let p = pool(vec![], &[0]);
        assert_eq!(ids(&p, 1), ["none"]);
        let p = pool(vec![Backend::new("a").down(true)], &[0]);
        assert_eq!(ids(&p, 1), ["none"]);
    }

    #[test]
    fn retries_draw_again_among_untried() {
        // a:1 b:1 c:2 -> ranges [0,1) a, [1,2) b, [2,4) c.
        let backends = vec![
            Backend::new("a"),
            Backend::new("b"),
            Backend::new("c").weight(2),
        ];
        // First attempt draws 2 (c). The retry draws 3 (c again, tried), then
        // 0 (a). The third attempt draws 2, 0 (both tried), then 1 (b).
        let p = pool(backends, &[2, 3, 0, 2, 0, 1]);
        let mut request = p.request(Key::None);
        let order: Vec<String> = (0..3)
            .map(|_| {
                let pick = request.next().unwrap();
                let id = pick.id().to_string();
                pick.failure();
                id
            })
            .collect();
        assert_eq!(order, ["c", "a", "b"]);
        assert!(request.next().is_none());
    }

    #[test]
    fn after_eight_misses_one_exact_draw_over_the_available() {
        // Ranges a [0,1), b [1,3), c [3,5). The request's draw 1 fails b out;
        // the pick's eight draws (1 or 2) all land on b; the script wraps to
        // 1 and the exact draw over a and c (total 3) walks a [0,1), c [1,3).
        let backends = vec![
            Backend::new("a"),
            Backend::new("b").weight(2),
            Backend::new("c").weight(2),
        ];
        let seq = Sequence::new([1, 1, 1, 1, 1, 1, 1, 1, 2]);
        let p = Pool::builder(Random)
            .clock(ManualClock::new(1_000))
            .random(seq.clone())
            .build(backends)
            .unwrap();
        let mut r = p.request(Key::None);
        // Fail b: the first draw of the script (1) lands on it.
        let b = r.next().unwrap();
        assert_eq!(b.id(), "b");
        b.failure();
        let picked = p.pick(Key::None).unwrap();
        assert_eq!((picked.id(), seq.drawn()), ("c", 10));
    }
}

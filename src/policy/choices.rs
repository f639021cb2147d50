//! Power of d choices: draw a few backends, keep the least loaded.
//!
//! Picking the least loaded of two random backends (Mitzenmacher, 2001)
//! spreads load almost as well as scanning all of them, at a constant cost,
//! and it does not herd: concurrent pickers that see the same counts still
//! draw different pairs. [`P2c`] compares active requests per unit of weight;
//! [`PeakEwma`](crate::PeakEwma) compares latency times load. Both share the
//! selection below.

use std::cmp::Ordering;

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy, RampMode};

/// The most choices a pick may draw.
pub const MAX_CHOICES: u8 = 16;

/// Draws per choice before a pick gives up drawing and scans.
const DRAWS_PER_CHOICE: usize = 4;

/// The best of `d` distinct available backends drawn uniformly, or of all
/// available backends when `d` covers the tier or the draws keep missing.
///
/// `cmp(i, j)` orders two backends by cost, `Less` meaning `i` is better.
/// Backends of equal best cost share the pick in proportion to their
/// effective weights (one more draw), so at low load, when every count is
/// 0, weights and slow start still shape the traffic.
pub(crate) fn best_of(
    c: &Candidates<'_>,
    d: usize,
    cmp: impl Fn(usize, usize) -> Ordering,
) -> Option<usize> {
    let n = c.len();
    if d < n {
        let mut drawn = [0usize; MAX_CHOICES as usize];
        let d = d.min(drawn.len());
        let mut k = 0;
        for _ in 0..d * DRAWS_PER_CHOICE {
            let i = (c.random() % n as u64) as usize;
            if c.is_available(i) && !drawn[..k].contains(&i) {
                drawn[k] = i;
                k += 1;
                if k == d {
                    return least(c, drawn[..k].iter().copied(), &cmp);
                }
            }
        }
    }
    least(c, (0..n).filter(|&i| c.is_available(i)), &cmp)
}

/// The cheapest of `set`, ties shared by effective weight.
fn least(
    c: &Candidates<'_>,
    set: impl Iterator<Item = usize> + Clone,
    cmp: &impl Fn(usize, usize) -> Ordering,
) -> Option<usize> {
    let mut best = None;
    let mut ties = 0u32;
    let mut tie_weight = 0u64;
    for i in set.clone() {
        let w = c.effective_weight(i);
        match best.map(|b| cmp(i, b)) {
            None | Some(Ordering::Less) => (best, ties, tie_weight) = (Some(i), 1, w),
            Some(Ordering::Equal) => (ties, tie_weight) = (ties + 1, tie_weight + w),
            Some(Ordering::Greater) => {}
        }
    }
    let b = best?;
    if ties == 1 || tie_weight == 0 {
        return Some(b);
    }
    let mut x = c.random() % tie_weight;
    for i in set.filter(|&i| cmp(i, b) == Ordering::Equal) {
        let w = c.effective_weight(i);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    // Counts moved between the passes; the first pass's best still stands.
    Some(b)
}

/// Orders `i` and `j` by active requests per unit of effective weight,
/// cross-multiplied so that nothing divides.
pub(crate) fn by_active_per_weight(c: &Candidates<'_>, i: usize, j: usize) -> Ordering {
    let load =
        |k: usize, other: usize| u128::from(c.active(k)) * u128::from(c.effective_weight(other));
    load(i, j).cmp(&load(j, i))
}

pub(crate) fn check_choices(policy: &'static str, choices: u8) -> Result<(), BuildError> {
    if (1..=MAX_CHOICES).contains(&choices) {
        return Ok(());
    }
    Err(BuildError::Policy {
        policy,
        reason: format!("choices must be between 1 and {MAX_CHOICES}, not {choices}"),
    })
}

/// Power of d choices over active requests per unit of weight (d = 2 by
/// default).
///
/// A pick draws `d` distinct available backends uniformly and takes the one
/// with the fewest active requests per unit of effective weight (weight
/// scaled by slow start), compared by cross-multiplication. With `d` at
/// least the tier size it scans every available backend instead, so with
/// two backends and two choices the less loaded one wins every time.
/// Backends of equal load share the pick by effective weight, so at low
/// load, when every count is 0, traffic still follows the weights.
///
/// Draws come from the pool's [`RandomSource`](crate::RandomSource): each
/// candidate is `r % n` (n the tier size), drawn again when it is
/// unavailable or already drawn, up to 4 × d draws before the pick falls
/// back to a scan; a tie among k backends of total effective weight W
/// takes one more draw `r % W`, walking the tied backends in order.
///
/// Where nginx's `random two least_conn` differs, see
/// [`NginxRandom`](crate::NginxRandom).
///
/// # Complexity
///
/// Pick: O(d²) expected while draws find available backends; O(n) for a
/// scan. Build: O(1).
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, P2c, Pool};
///
/// let pool = Pool::new(P2c::new(), vec![Backend::new("a"), Backend::new("b")]).unwrap();
/// let first = pool.pick(Key::None).unwrap();
/// // Two backends, two choices: the idle one wins.
/// let second = pool.pick(Key::None).unwrap();
/// assert_ne!(first.id(), second.id());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2c {
    choices: u8,
}

impl P2c {
    /// Two choices.
    pub const fn new() -> Self {
        P2c { choices: 2 }
    }

    /// Draws `choices` backends per pick (1 to 16; checked when the pool is
    /// built). One choice is uniform random.
    pub const fn choices(mut self, choices: u8) -> Self {
        self.choices = choices;
        self
    }
}

impl Default for P2c {
    fn default() -> Self {
        P2c::new()
    }
}

impl Policy for P2c {
    type Table = ();
    type State = ();

    fn name(&self) -> &'static str {
        "p2c"
    }

    fn validate(&self, _: &crate::BackendSet) -> Result<(), BuildError> {
        check_choices(self.name(), self.choices)
    }

    fn build(&self, _: &[Backend], _: Option<&()>) -> Result<(), BuildError> {
        Ok(())
    }

    #[inline]
    fn pick(&self, _: &(), c: &Candidates<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        best_of(c, usize::from(self.choices), |i, j| {
            by_active_per_weight(c, i, j)
        })
    }

    fn ramp_mode(&self) -> RampMode {
        RampMode::Weights
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ManualClock, Pick, Pool, Sequence, SlowStart};

    fn pool(policy: P2c, backends: Vec<Backend>, draws: &Sequence) -> Pool<P2c> {
        Pool::builder(policy)
            .clock(ManualClock::new(1_000))
            .random(draws.clone())
            .build(backends)
            .unwrap()
    }

    fn names(n: usize) -> Vec<Backend> {
        (0..n).map(|i| Backend::new(format!("b{i}"))).collect()
    }

    fn hold(pool: &Pool<P2c>, n: usize) -> Vec<Pick> {
        (0..n).map(|_| pool.pick(Key::None).unwrap()).collect()
    }

    #[test]
    fn two_backends_the_less_loaded_wins_every_time() {
        let draws = Sequence::new([0]);
        let p = pool(P2c::new(), names(2), &draws);
        // Equal at 0: the tie draw 0 % (2 << 16) walks to b0. Then b0 is
        // busier, so b1 wins without a draw; then tie again at 1 each.
        let held = hold(&p, 3);
        let ids: Vec<&str> = held.iter().map(Pick::id).collect();
        assert_eq!(ids, ["b0", "b1", "b0"]);
        assert_eq!(draws.drawn(), 2);
        let busy = hold(&p, 1);
        assert_eq!(busy[0].id(), "b1", "b0 has 2, b1 has 1");
    }

    #[test]
    fn draws_two_distinct_and_keeps_the_lighter() {
        // Five backends; b1 holds two picks, b3 one.
        let draws = Sequence::new([1, 6, 3, 3, 8, 2, 2]);
        let p = pool(P2c::new(), names(5), &draws);
        let keep = |id: &str| p.snapshot().index_of(id).unwrap();
        let mut r1 = p.request(Key::None);
        let mut held = vec![r1.take(keep("b1")).unwrap()];
        let mut r2 = p.request(Key::None);
        held.push(r2.take(keep("b1")).unwrap());
        let mut r3 = p.request(Key::None);
        held.push(r3.take(keep("b3")).unwrap());
        // Draws 1 (b1) and 6 % 5 = 1 (b1 again, redrawn) and 3 (b3): b3 has
        // 1 active against b1's 2.
        assert_eq!(p.pick(Key::None).unwrap().id(), "b3");
        // Draws 3 (b3), 8 % 5 = 3 (again), 2 (b2): b2 is idle.
        assert_eq!(p.pick(Key::None).unwrap().id(), "b2");
        assert_eq!(draws.drawn(), 6);
        drop(held);
    }

    #[test]
    fn weights_scale_the_load() {
        // b0 weight 3 with 2 active (2/3) beats b1 weight 1 with 1 active.
        let draws = Sequence::new([0]);
        let p = pool(
            P2c::new(),
            vec![Backend::new("b0").weight(3), Backend::new("b1")],
            &draws,
        );
        let snap = p.snapshot();
        let (mut r0, mut r1, mut r2) = (
            p.request(Key::None),
            p.request(Key::None),
            p.request(Key::None),
        );
        let _held = [
            r0.take(0).unwrap(),
            r1.take(0).unwrap(),
            r2.take(1).unwrap(),
        ];
        assert_eq!(p.pick(Key::None).unwrap().id(), "b0");
        assert_eq!(draws.drawn(), 0, "no tie, no draw");
        drop(snap);
    }

    #[test]
    fn ties_are_shared_by_weight() {
        // Idle b0 (weight 1) and b1 (weight 3): the tie draw walks b0 for
        // [0, 65536) and b1 for [65536, 262144).
        let draws = Sequence::new([65_535, 65_536, 262_143]);
        let p = pool(
            P2c::new(),
            vec![Backend::new("b0"), Backend::new("b1").weight(3)],
            &draws,
        );
        let ids: Vec<String> = (0..3)
            .map(|_| p.pick(Key::None).unwrap().id().to_string())
            .collect();
        assert_eq!(ids, ["b0", "b1", "b1"]);
    }

    #[test]
    fn more_choices_and_full_scan() {
        // Three choices among four: draws 0, 1, 2 (b0, b1, b2); b0 and b1
        // are busy, so b2 wins.
        let draws = Sequence::new([0, 1, 2]);
        let p = pool(P2c::new().choices(3), names(4), &draws);
        let mut r = p.request(Key::None);
        let _a = r.take(0).unwrap();
        let mut r = p.request(Key::None);
        let _b = r.take(1).unwrap();
        assert_eq!(p.pick(Key::None).unwrap().id(), "b2");
        assert_eq!(draws.drawn(), 3);

        // Four choices cover four backends: a scan, no candidate draws; b2
        // and b3 idle and tied, the tie draw 65536 walks past b2 to b3.
        let draws = Sequence::new([65_536]);
        let p = pool(P2c::new().choices(4), names(4), &draws);
        let mut r = p.request(Key::None);
        let _a = r.take(0).unwrap();
        let mut r = p.request(Key::None);
        let _b = r.take(1).unwrap();
        assert_eq!(p.pick(Key::None).unwrap().id(), "b3");
        assert_eq!(draws.drawn(), 1);
    }

    #[test]
    fn draws_that_keep_missing_fall_back_to_a_scan() {
        // b0..b3 down except b2; every draw lands on b0 (down).
        let mut backends = names(4);
        for (i, b) in backends.iter_mut().enumerate() {
            b.down = i != 2;
        }
        let draws = Sequence::new([0]);
        let p = pool(P2c::new(), backends, &draws);
        assert_eq!(p.pick(Key::None).unwrap().id(), "b2");
        assert_eq!(draws.drawn(), 8, "4 draws per choice, then the scan");
    }

    #[test]
    fn slow_start_scales_the_weight() {
        let clock = ManualClock::new(1_000);
        let draws = Sequence::new([0]);
        let p = Pool::builder(P2c::new())
            .clock(clock.clone())
            .random(draws.clone())
            .slow_start(SlowStart::new(Duration::from_secs(10)))
            .build(vec![Backend::new("old")])
            .unwrap();
        p.add(Backend::new("new").weight(10)).unwrap();
        clock.advance_ms(5_000);
        // new: weight 10 at 50% = 5 units. old: 1 unit with 4 active (4/1);
        // new with 19 active: 19/5 < 4 wins; with 20 active: 20/5 = 4 ties.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(p.request(Key::None).take(0).unwrap());
        }
        for _ in 0..19 {
            held.push(p.request(Key::None).take(1).unwrap());
        }
        assert_eq!(p.pick(Key::None).unwrap().id(), "new");
        held.push(p.request(Key::None).take(1).unwrap());
        // Tie: weights old 65536, new 327680; draw 0 walks to old.
        assert_eq!(p.pick(Key::None).unwrap().id(), "old");
        assert_eq!(draws.drawn(), 1);
    }

    #[test]
    fn choices_out_of_range_are_refused() {
        for bad in [0, 17] {
            let err = Pool::new(P2c::new().choices(bad), names(2)).err().unwrap();
            assert_eq!(
                err.to_string(),
                format!("p2c: choices must be between 1 and 16, not {bad}")
            );
        }
    }
}

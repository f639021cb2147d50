//! Slow start: a backend that comes back takes traffic gradually.
//!
//! A backend that was just added, marked up by an update, or answered the
//! probe that ended its failure timeout, is cold: caches empty, JIT not warm,
//! pools not filled. For a window after that moment its effective weight
//! ramps from a minimum share to its full weight, on Envoy's curve:
//!
//! ```text
//! time_factor = max(elapsed, 1 ms) / window
//! factor      = max(min_weight_percent / 100, time_factor ^ (1 / aggression))
//! effective   = weight × factor
//! ```
//!
//! `aggression` 1 ramps linearly; above 1 it climbs fast early and slowly
//! near the end; below 1 it starts slowly. The factor is kept in fixed point,
//! in units of 1/65536 ([`RAMP_ONE`] is full weight), so a weight-1 backend
//! ramps through 65,536 steps instead of jumping from 0 to 1.
//!
//! # How it reaches the policies
//!
//! The pool owns the setting ([`PoolBuilder::slow_start`]), and every policy
//! picks up the ramp in one of two ways, chosen by
//! [`Policy::ramp_mode`](crate::Policy::ramp_mode):
//!
//! - policies that weigh backends at pick time (power of d choices, peak
//!   EWMA) read [`Candidates::effective_weight`](crate::policy::Candidates::effective_weight);
//! - policies with tables built once per snapshot (round robin, random) are
//!   served by an admission step: when the policy chooses a ramping backend,
//!   the pool draws from its random source and keeps the choice with
//!   probability `factor`, otherwise it asks the policy for its next choice.
//!   The ramping backend then gets `factor` of its usual share, and the rest
//!   falls on the others in the policy's own proportions.
//!
//! [`PoolBuilder::slow_start`]: crate::PoolBuilder::slow_start
//!
//! # Limitations
//!
//! - Backends present when the pool is built are taken as warm: a restarting
//!   proxy does not throttle a warm fleet. Only later arrivals ramp.
//! - A backend whose weight goes from 0 to positive, or that leaves the
//!   drain state, does not ramp; take it out and add it again to ramp it.
//! - Admission skips at most 8 rejected backends per pick; if more ramping
//!   backends come up in a row, the ninth is taken as it comes, so while
//!   most of a tier ramps together their shares are above the curve.

use std::time::Duration;

use crate::error::BuildError;

/// Full weight in the fixed-point unit of ramp factors (1/65536).
pub const RAMP_ONE: u32 = 1 << 16;

/// Slow start settings: Envoy's `slow_start_config`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::{SlowStart, RAMP_ONE};
///
/// let ramp = SlowStart::new(Duration::from_secs(60));
/// assert_eq!(ramp.factor(0), RAMP_ONE / 10 + 1, "10% (6553.6, rounded)");
/// assert_eq!(ramp.factor(30_000), RAMP_ONE / 2, "linear: half way, half weight");
/// assert_eq!(ramp.factor(60_000), RAMP_ONE);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowStart {
    /// How long a backend ramps after it comes back.
    pub window: Duration,
    /// The curve's exponent: 1 is linear, above 1 ramps faster early on.
    pub aggression: f64,
    /// The share of its weight a backend starts with, in percent.
    pub min_weight_percent: f64,
}

impl SlowStart {
    /// A linear ramp over `window` from Envoy's default 10%.
    pub fn new(window: Duration) -> Self {
        SlowStart {
            window,
            aggression: 1.0,
            min_weight_percent: 10.0,
        }
    }

    /// Sets the curve's exponent.
    pub fn aggression(mut self, aggression: f64) -> Self {
        self.aggression = aggression;
        self
    }

    /// Sets the starting share, in percent.
    pub fn min_weight_percent(mut self, percent: f64) -> Self {
        self.min_weight_percent = percent;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`BuildError::Policy`] naming the setting: a zero window, an
    /// aggression that is not a positive finite number, or a minimum outside
    /// 0 to 100 percent.
    pub fn validate(&self) -> Result<(), BuildError> {
        let fail = |reason: String| {
            Err(BuildError::Policy {
                policy: "slow_start",
                reason,
            })
        };
        if self.window_ms() == 0 {
            return fail("the window must be at least 1 ms".into());
        }
        if !(self.aggression.is_finite() && self.aggression > 0.0) {
            return fail(format!(
                "aggression must be a positive number, not {}",
                self.aggression
            ));
        }
        if !(0.0..=100.0).contains(&self.min_weight_percent) {
            return fail(format!(
                "min_weight_percent must be between 0 and 100, not {}",
                self.min_weight_percent
            ));
        }
        Ok(())
    }

    pub(crate) fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }

    /// The ramp factor `elapsed_ms` after the backend came back, in units of
    /// 1/65536 of its weight: [`RAMP_ONE`] once the window is over, and never
    /// below 1, so a ramping backend always keeps some chance.
    ///
    /// # Complexity
    ///
    /// O(1): one division, one `powf` unless aggression is 1.
    pub fn factor(&self, elapsed_ms: u64) -> u32 {
        let window = self.window_ms();
        if elapsed_ms >= window {
            return RAMP_ONE;
        }
        let time_factor = elapsed_ms.max(1) as f64 / window as f64;
        let curve = if self.aggression == 1.0 {
            time_factor
        } else {
            time_factor.powf(1.0 / self.aggression)
        };
        let share = curve.max(self.min_weight_percent / 100.0);
        // In 0..=1 for validated settings; the clamp keeps bad ones in range.
        let fixed = (share * f64::from(RAMP_ONE)).round();
        if fixed >= f64::from(RAMP_ONE) {
            RAMP_ONE
        } else if fixed >= 1.0 {
            fixed as u32
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Candidates, Policy, RampMode};
    use crate::tried::TriedSet;
    use crate::{Backend, Key, ManualClock, Pool, RoundRobin, Sequence};

    fn ramps<P: Policy>(pool: &Pool<P>) -> Vec<u32> {
        let snap = pool.snapshot();
        let tried = TriedSet::default();
        let n = snap.n_primary;
        let c = Candidates::new(
            &snap.specs[..n],
            &snap.shared[..n],
            0,
            &tried,
            &*snap.pool.clock,
        )
        .in_pool(&snap.pool);
        (0..n).map(|i| c.ramp(i)).collect()
    }

    fn effective_weights<P: Policy>(pool: &Pool<P>) -> Vec<u64> {
        let snap = pool.snapshot();
        let tried = TriedSet::default();
        let n = snap.n_primary;
        let c = Candidates::new(
            &snap.specs[..n],
            &snap.shared[..n],
            0,
            &tried,
            &*snap.pool.clock,
        )
        .in_pool(&snap.pool);
        (0..n).map(|i| c.effective_weight(i)).collect()
    }

    fn rr_pool(backends: Vec<Backend>, clock: &ManualClock, draws: &Sequence) -> Pool<RoundRobin> {
        Pool::builder(RoundRobin)
            .clock(clock.clone())
            .random(draws.clone())
            .slow_start(SlowStart::new(Duration::from_secs(10)))
            .build(backends)
            .unwrap()
    }

    fn ids<P: Policy>(pool: &Pool<P>, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                pool.pick(Key::None)
                    .map_or("none".into(), |p| p.id().to_string())
            })
            .collect()
    }

    #[test]
    fn first_build_is_warm_later_arrivals_ramp() {
        let clock = ManualClock::new(1_000);
        let pool = rr_pool(
            vec![Backend::new("a"), Backend::new("b")],
            &clock,
            &Sequence::new([]),
        );
        assert_eq!(ramps(&pool), [RAMP_ONE, RAMP_ONE]);
        pool.add(Backend::new("c").weight(3)).unwrap();
        let at = |ms: u64| {
            clock.set_ms(1_000 + ms);
            ramps(&pool)[2]
        };
        assert_eq!(
            [at(0), at(2_500), at(5_000), at(10_000)],
            [6554, 16384, 32768, RAMP_ONE]
        );
    }

    #[test]
    fn weight_one_effective_weight_is_never_zero_while_ramping() {
        let clock = ManualClock::new(1_000);
        let pool = rr_pool(
            vec![Backend::new("a").weight(4)],
            &clock,
            &Sequence::new([]),
        );
        pool.add(Backend::new("b")).unwrap();
        clock.advance_ms(7_500);
        // a: 4 << 16; b: 1 × 0.75 of a unit.
        assert_eq!(effective_weights(&pool), [4 * 65536, 49152]);
    }

    #[test]
    fn marked_up_and_probe_success_restart_the_ramp() {
        let clock = ManualClock::new(1_000);
        let pool = rr_pool(
            vec![Backend::new("a"), Backend::new("b")],
            &clock,
            &Sequence::new([]),
        );
        pool.set_down("b", true).unwrap();
        clock.advance_ms(60_000);
        pool.set_down("b", false).unwrap();
        clock.advance_ms(5_000);
        assert_eq!(ramps(&pool), [RAMP_ONE, 32768]);

        // "a" fails out (max_fails 1), rests 10 s, then answers its probe.
        clock.advance_ms(5_000);
        let mut r = pool.request(Key::None);
        while let Some(p) = r.next() {
            if p.id() == "a" {
                p.failure();
                break;
            }
        }
        clock.advance_ms(10_001);
        let mut r = pool.request(Key::None);
        let probe = std::iter::from_fn(|| r.next())
            .find(|p| p.id() == "a")
            .unwrap();
        probe.success();
        clock.advance_ms(1_000);
        assert_eq!(ramps(&pool), [6554, RAMP_ONE]);
    }

    #[test]
    fn admission_keeps_a_ramping_choice_with_probability_factor() {
        let clock = ManualClock::new(1_000);
        let draws = Sequence::new([16_384, 16_383]);
        let pool = rr_pool(vec![Backend::new("a"), Backend::new("b")], &clock, &draws);
        pool.add(Backend::new("c")).unwrap();
        clock.advance_ms(2_500); // c at 25%: kept when draw % 65536 < 16384.
                                 // Schedule a b c: the first c is turned down (16384) and the policy's
                                 // next choice, a, serves; the second c is kept (16383).
        assert_eq!(ids(&pool, 5), ["a", "b", "a", "b", "c"]);
        assert_eq!(draws.drawn(), 2, "warm backends draw nothing");
    }

    #[test]
    fn a_tier_of_ramping_backends_still_serves() {
        let clock = ManualClock::new(1_000);
        let draws = Sequence::new([65_535]);
        let pool = rr_pool(vec![Backend::new("old")], &clock, &draws);
        pool.replace(vec![Backend::new("b"), Backend::new("c")])
            .unwrap();
        // Both turned down; the tier is asked again without admission, and
        // round robin resumes where the turned-down slots began.
        assert_eq!(ids(&pool, 1), ["b"]);
        assert_eq!(draws.drawn(), 2);
    }

    #[test]
    fn admission_turns_down_at_most_eight_per_pick() {
        let clock = ManualClock::new(1_000);
        let draws = Sequence::new([65_535]);
        let pool = rr_pool(vec![Backend::new("old")], &clock, &draws);
        let fresh: Vec<Backend> = (0..10).map(|i| Backend::new(format!("b{i}"))).collect();
        pool.replace(fresh).unwrap();
        assert_eq!(ids(&pool, 1), ["b8"]);
        assert_eq!(draws.drawn(), 8);
    }

    #[test]
    fn policies_can_opt_out() {
        #[derive(Clone)]
        struct First;
        impl Policy for First {
            type Table = ();
            type State = ();
            fn name(&self) -> &'static str {
                "first"
            }
            fn build(&self, _: &[Backend], _: Option<&()>) -> Result<(), BuildError> {
                Ok(())
            }
            fn pick(&self, _: &(), c: &Candidates<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
                (0..c.len()).find(|&i| c.is_available(i))
            }
            fn ramp_mode(&self) -> RampMode {
                RampMode::Off
            }
        }
        let clock = ManualClock::new(1_000);
        let draws = Sequence::new([65_535]);
        let pool = Pool::builder(First)
            .clock(clock)
            .random(draws.clone())
            .slow_start(SlowStart::new(Duration::from_secs(10)))
            .build(vec![Backend::new("old")])
            .unwrap();
        pool.replace(vec![Backend::new("new")]).unwrap();
        assert_eq!(ids(&pool, 1), ["new"]);
        assert_eq!(draws.drawn(), 0);
    }

    #[test]
    fn pool_refuses_bad_slow_start() {
        let err = Pool::builder(RoundRobin)
            .slow_start(SlowStart::new(Duration::from_secs(1)).aggression(-1.0))
            .build(vec![Backend::new("a")])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "slow_start: aggression must be a positive number, not -1"
        );
    }

    #[test]
    fn linear_ramp_values() {
        let s = SlowStart::new(Duration::from_secs(10));
        // 10% floor until 1 s, then elapsed / window.
        let got: Vec<u32> = [0, 1, 999, 1_000, 2_500, 5_000, 9_999, 10_000, u64::MAX]
            .iter()
            .map(|&t| s.factor(t))
            .collect();
        // 6553.6 -> 6554; 0.25 -> 16384; 0.5 -> 32768; 0.9999 -> 65529.4464.
        assert_eq!(
            got,
            [6554, 6554, 6554, 6554, 16384, 32768, 65529, 65536, 65536]
        );
    }

    #[test]
    fn aggression_bends_the_curve() {
        let fast = SlowStart::new(Duration::from_secs(100)).aggression(2.0);
        // sqrt(0.25) = 0.5; sqrt(0.01) = 0.1 -> floor 0.1 either way.
        assert_eq!(fast.factor(25_000), 32768);
        assert_eq!(fast.factor(1_000), 6554);
        let slow = SlowStart::new(Duration::from_secs(100))
            .aggression(0.5)
            .min_weight_percent(0.0);
        // 0.5^2 = 0.25; 0.1^2 = 0.01 -> 655.36.
        assert_eq!(slow.factor(50_000), 16384);
        assert_eq!(slow.factor(10_000), 655);
        // 1 ms of 100 s squared is 1e-10 of the weight: clamped to one unit.
        assert_eq!(slow.factor(0), 1);
    }

    #[test]
    fn weight_one_ramps_smoothly() {
        let s = SlowStart::new(Duration::from_millis(65_536)).min_weight_percent(0.0);
        // One unit per ms: every step of the window is a distinct weight.
        assert_eq!(s.factor(1), 1);
        assert_eq!(s.factor(2), 2);
        assert_eq!(s.factor(40_000), 40_000);
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let msg = |s: SlowStart| s.validate().unwrap_err().to_string();
        let base = SlowStart::new(Duration::from_secs(1));
        assert_eq!(
            msg(SlowStart::new(Duration::ZERO)),
            "slow_start: the window must be at least 1 ms"
        );
        assert_eq!(
            msg(base.aggression(0.0)),
            "slow_start: aggression must be a positive number, not 0"
        );
        assert_eq!(
            msg(base.aggression(f64::NAN)),
            "slow_start: aggression must be a positive number, not NaN"
        );
        assert_eq!(
            msg(base.min_weight_percent(101.0)),
            "slow_start: min_weight_percent must be between 0 and 100, not 101"
        );
        assert!(base.validate().is_ok());
    }
}

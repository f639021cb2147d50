//! Peak EWMA: balance by how fast backends answer, times how busy they are.

use std::cmp::Ordering;
use std::time::Duration;

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::choices::{best_of, check_choices};
use crate::policy::{Candidates, Key, Policy, RampMode};

/// Power of d choices over peak EWMA cost (Finagle's and tower's
/// balancer): `cost = latency × (active + 1) / weight`.
///
/// `latency` is the pool's per-backend estimate (see
/// [`LatencyEwma`](crate::LatencyEwma)): it rises at once with a slow
/// response, falls with fast ones at the configured time constant, decays
/// toward 0 while a backend gets no traffic, and counts failures as slow
/// responses (the pool's failure penalty, 1 s by default), so a backend
/// that fails fast does not attract traffic. A backend with no reported
/// response yet is costed at `default_rtt` (30 ms unless set). `weight` is
/// the effective weight, so slow start applies. `active + 1` makes the
/// cost grow with the requests in flight, and keeps an idle backend's cost
/// its latency rather than 0.
///
/// Candidates are drawn as [`P2c`](crate::P2c) draws them (uniformly, `d`
/// distinct, a scan when `d` covers the tier), and equal costs share the
/// pick by effective weight. Costs are compared by cross-multiplication in
/// `f64`.
///
/// Feed it by reporting latencies:
/// [`Pick::report(outcome, Some(latency))`](crate::Pick::report).
///
/// # Complexity
///
/// Pick: O(d²) expected while draws find available backends, O(n) for a
/// scan; one `exp` per candidate cost. Build: O(1).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::{Backend, Key, ManualClock, Outcome, PeakEwma, Pool};
///
/// let pool = Pool::builder(PeakEwma::new())
///     .clock(ManualClock::new(1_000))
///     .build(vec![Backend::new("fast"), Backend::new("slow")])
///     .unwrap();
/// let report = |i: usize, ms: u64| {
///     let pick = pool.request(Key::None).take(i).unwrap();
///     pick.report(Outcome::Success, Some(Duration::from_millis(ms)));
/// };
/// report(0, 5);
/// report(1, 80);
/// assert_eq!(pool.pick(Key::None).unwrap().id(), "fast");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeakEwma {
    choices: u8,
    default_rtt: Duration,
}

impl PeakEwma {
    /// Two choices, and 30 ms for backends not measured yet.
    pub const fn new() -> Self {
        PeakEwma {
            choices: 2,
            default_rtt: Duration::from_millis(30),
        }
    }

    /// Draws `choices` backends per pick (1 to 16; checked when the pool is
    /// built).
    pub const fn choices(mut self, choices: u8) -> Self {
        self.choices = choices;
        self
    }

    /// The latency assumed for a backend before its first reported response.
    pub const fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }

    /// Backend `i`'s latency estimate in ns, or the default.
    fn latency(&self, c: &Candidates<'_>, i: usize) -> f64 {
        c.latency_ns(i)
            .unwrap_or(self.default_rtt.as_nanos() as f64)
    }

    /// Orders `i` and `j` by `latency × (active + 1) / weight`.
    fn cmp(&self, c: &Candidates<'_>, i: usize, j: usize) -> Ordering {
        let load = |k: usize, other: usize| {
            self.latency(c, k) * (f64::from(c.active(k)) + 1.0) * c.effective_weight(other) as f64
        };
        load(i, j).total_cmp(&load(j, i))
    }
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma::new()
    }
}

impl Policy for PeakEwma {
    type Table = ();
    type State = ();

    fn name(&self) -> &'static str {
        "peak_ewma"
    }

    fn validate(&self, _: &crate::BackendSet) -> Result<(), BuildError> {
        check_choices(self.name(), self.choices)
    }

    fn build(&self, _: &[Backend], _: Option<&()>) -> Result<(), BuildError> {
        Ok(())
    }

    #[inline]
    fn pick(&self, _: &(), c: &Candidates<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        best_of(c, usize::from(self.choices), |i, j| self.cmp(c, i, j))
    }

    fn ramp_mode(&self) -> RampMode {
        RampMode::Weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LatencyEwma, ManualClock, Outcome, Pick, Pool, Sequence, SlowStart};

    struct Fixture {
        pool: Pool<PeakEwma>,
        clock: ManualClock,
        draws: Sequence,
    }

    impl Fixture {
        fn new(policy: PeakEwma, backends: Vec<Backend>, draws: &[u64]) -> Self {
            let clock = ManualClock::new(1_000);
            let draws = Sequence::new(draws.iter().copied());
            let pool = Pool::builder(policy)
                .clock(clock.clone())
                .random(draws.clone())
                .slow_start(SlowStart::new(Duration::from_secs(10)))
                .build(backends)
                .unwrap();
            Fixture { pool, clock, draws }
        }

        fn hold(&self, i: usize) -> Pick {
            self.pool.request(Key::None).take(i).unwrap()
        }

        fn report(&self, i: usize, outcome: Outcome, ms: u64) {
            self.hold(i)
                .report(outcome, Some(Duration::from_millis(ms)));
        }

        fn pick(&self) -> String {
            self.pool.pick(Key::None).unwrap().id().to_string()
        }
    }

    /// Two backends that never fail out, so failures act on latency only.
    fn two() -> Vec<Backend> {
        vec![
            Backend::new("a").max_fails(0),
            Backend::new("b").max_fails(0),
        ]
    }

    #[test]
    fn latency_times_load_decides() {
        let f = Fixture::new(PeakEwma::new(), two(), &[]);
        f.report(0, Outcome::Success, 10);
        f.report(1, Outcome::Success, 30);
        assert_eq!(f.pick(), "a", "10 × 1 < 30 × 1");
        let _held: Vec<Pick> = (0..2).map(|_| f.hold(0)).collect();
        // a: 10 × 3 = 30 against b: 30 × 1: a tie, shared by weight; the
        // empty script draws 0, which walks to a.
        assert_eq!(f.pick(), "a");
        let _more = f.hold(0);
        assert_eq!(f.pick(), "b", "10 × 4 > 30");
        assert_eq!(f.draws.drawn(), 1);
    }

    #[test]
    fn unmeasured_backends_cost_the_default_rtt() {
        let f = Fixture::new(
            PeakEwma::new().default_rtt(Duration::from_millis(20)),
            two(),
            &[],
        );
        f.report(0, Outcome::Success, 25);
        assert_eq!(f.pick(), "b", "20 ms assumed < 25 ms measured");
        f.report(1, Outcome::Success, 26);
        assert_eq!(f.pick(), "a");
    }

    #[test]
    fn fast_failures_look_slow() {
        let f = Fixture::new(PeakEwma::new(), two(), &[]);
        f.report(0, Outcome::Success, 50);
        f.report(1, Outcome::Failure, 1);
        assert_eq!(f.pick(), "a", "b's refused connection counts as 1 s");
    }

    #[test]
    fn an_idle_slow_backend_decays_and_is_tried_again() {
        let f = Fixture::new(PeakEwma::new(), two(), &[]);
        f.report(0, Outcome::Success, 10);
        f.report(1, Outcome::Success, 100);
        assert_eq!(f.pick(), "a");
        // Both decay by the same factor: a keeps winning while idle...
        f.clock.advance_ms(30_000);
        assert_eq!(f.pick(), "a");
        // ...until a answers again: 30 s later its 10 ms estimate has
        // decayed to 0.5 ms, so 12 ms replaces it; b's 100 ms is 4.98 ms.
        f.report(0, Outcome::Success, 12);
        assert_eq!(f.pick(), "b");
    }

    #[test]
    fn weights_divide_the_cost() {
        let f = Fixture::new(
            PeakEwma::new(),
            vec![Backend::new("a"), Backend::new("b").weight(3)],
            &[],
        );
        f.report(0, Outcome::Success, 10);
        f.report(1, Outcome::Success, 25);
        assert_eq!(f.pick(), "b", "25 / 3 < 10 / 1");
    }

    #[test]
    fn slow_start_divides_the_cost() {
        let f = Fixture::new(
            PeakEwma::new().default_rtt(Duration::from_millis(5)),
            vec![Backend::new("a")],
            &[],
        );
        f.report(0, Outcome::Success, 10);
        // c joins at weight 3 with the 5 ms default. Ramping at 10%, its
        // weight is 0.3: 5 / 0.3 = 16.7 against 10 for a.
        f.pool.add(Backend::new("c").weight(3)).unwrap();
        assert_eq!(f.pick(), "a");
        // Half way through the window c's weight is 1.5: 5 / 1.5 = 3.3,
        // while a's estimate has decayed from 10 to 6.07 ms.
        f.clock.advance_ms(5_000);
        assert_eq!(f.pick(), "c");
    }
    #[test]
    fn choices_are_checked() {
        let err = Pool::new(PeakEwma::new().choices(0), two()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "peak_ewma: choices must be between 1 and 16, not 0"
        );
    }

    #[test]
    fn ewma_settings_reach_the_policy() {
        let clock = ManualClock::new(1_000);
        let pool = Pool::builder(PeakEwma::new())
            .clock(clock.clone())
            .latency_ewma(LatencyEwma::new().failure_penalty(Duration::from_millis(40)))
            .build(two())
            .unwrap();
        let report = |i: usize, outcome, ms| {
            let pick = pool.request(Key::None).take(i).unwrap();
            pick.report(outcome, Some(Duration::from_millis(ms)));
        };
        report(0, Outcome::Success, 50);
        report(1, Outcome::Failure, 1);
        // With a 40 ms penalty the failed backend looks faster than 50 ms.
        assert_eq!(pool.pick(Key::None).unwrap().id(), "b");
    }
}

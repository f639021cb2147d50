//! A peak-sensitive moving average of each backend's response time.
//!
//! Every pool keeps one estimate per backend, fed by the latencies callers
//! report with [`Pick::report`](crate::Pick::report). The rules, with `τ` the
//! decay time constant:
//!
//! - **Between responses** the estimate decays toward 0:
//!   `v(t) = e × exp(−(t − tₑ) / τ)`. A backend nobody picks looks faster
//!   and faster until it gets traffic again and is measured afresh, so a
//!   backend that was slow once is not starved forever.
//! - **A response at or above the current value** replaces it at once: the
//!   estimate follows a slowdown without delay (the "peak").
//! - **A faster response** moves the value toward it by the fraction
//!   `1 − exp(−Δ / τ)`, Δ the time since the previous response: many fast
//!   answers in a row pull it down quickly, one fast answer right after a
//!   slow one barely moves it.
//! - **A failure** counts as a response of `max(latency, failure_penalty)`
//!   (1 s by default), so a backend that fails fast (connection refused in
//!   a millisecond) looks slow, not fast, and loses traffic.
//! - A success reported without a latency leaves the estimate as it is.
//!
//! After a response the value always lies between the response and the
//! value just before it. Reading the estimate writes nothing, so it depends
//! only on the responses and their times, never on how often pickers look.
//!
//! # Limitations
//!
//! - The estimate and its timestamp are two atomics; two responses recorded
//!   at the same instant on one backend may blend with a slightly wrong Δ.
//!   Neither is lost.

use std::time::Duration;

use crate::error::BuildError;

/// Settings of the latency estimate every pool keeps per backend.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::{Backend, LatencyEwma, ManualClock, Outcome, Pool, Key, P2c};
///
/// let clock = ManualClock::new(1_000);
/// let pool = Pool::builder(P2c::new())
///     .clock(clock.clone())
///     .latency_ewma(LatencyEwma::new().decay(Duration::from_secs(5)))
///     .build(vec![Backend::new("a")])
///     .unwrap();
/// pool.pick(Key::None).unwrap().report(Outcome::Success, Some(Duration::from_millis(80)));
/// assert_eq!(pool.snapshot().latency(0), Some(Duration::from_millis(80)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyEwma {
    /// The time constant τ: after τ without responses the estimate is down
    /// to 37% (1/e); a fast response after τ closes 63% of the gap.
    pub decay: Duration,
    /// The smallest latency a failure counts as.
    pub failure_penalty: Duration,
}

impl Default for LatencyEwma {
    fn default() -> Self {
        LatencyEwma::new()
    }
}

impl LatencyEwma {
    /// τ = 10 s (the decay tower and Finagle use) and a 1 s failure penalty.
    pub const fn new() -> Self {
        LatencyEwma {
            decay: Duration::from_secs(10),
            failure_penalty: Duration::from_secs(1),
        }
    }

    /// Sets the time constant τ.
    pub const fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    /// Sets the smallest latency a failure counts as.
    pub const fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.failure_penalty = penalty;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`BuildError::Policy`] when the decay is below 1 ms.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.decay.as_millis() == 0 {
            return Err(BuildError::Policy {
                policy: "latency_ewma",
                reason: "the decay time constant must be at least 1 ms".into(),
            });
        }
        Ok(())
    }

    fn tau_ms(&self) -> f64 {
        self.decay.as_secs_f64() * 1_000.0
    }

    /// The estimate `elapsed_ms` after it was set to `estimate`.
    pub(crate) fn decayed(&self, estimate: f64, elapsed_ms: u64) -> f64 {
        estimate * (-(elapsed_ms as f64) / self.tau_ms()).exp()
    }

    /// The estimate after a response of `sample`, `elapsed_ms` after the
    /// previous one set it to `estimate`.
    pub(crate) fn observe(&self, estimate: f64, elapsed_ms: u64, sample: f64) -> f64 {
        let now = self.decayed(estimate, elapsed_ms);
        if sample >= now {
            return sample;
        }
        let keep = (-(elapsed_ms as f64) / self.tau_ms()).exp();
        now * keep + sample * (1.0 - keep)
    }

    /// The latency a response counts as, in ns, if it counts at all.
    pub(crate) fn sample_ns(&self, failed: bool, latency: Option<Duration>) -> Option<f64> {
        let ns = |d: Duration| d.as_nanos() as f64;
        match (failed, latency) {
            (false, latency) => latency.map(ns),
            (true, latency) => Some(ns(latency.unwrap_or_default().max(self.failure_penalty))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    #[test]
    fn peaks_apply_at_once_and_decreases_blend_by_elapsed_time() {
        let e = LatencyEwma::new();
        assert_eq!(e.observe(100.0 * MS, 0, 150.0 * MS), 150.0 * MS);
        // 10 s = τ later, 100 ms has decayed to 36.79 ms; 20 ms is below it
        // and closes 1 − 1/e of the gap: 36.79/e + 20 (1 − 1/e) = 26.18 ms.
        let v = e.observe(100.0 * MS, 10_000, 20.0 * MS);
        assert_eq!(v.round(), 26_175_940.0);
        // Right after a slow response a fast one barely moves it.
        assert_eq!(e.observe(100.0 * MS, 1, 1.0 * MS).round(), 99_980_102.0);
        // Long after, any response is above the decayed value: it replaces it.
        assert_eq!(e.observe(100.0 * MS, 100_000, 1.0 * MS), 1.0 * MS);
    }

    #[test]
    fn decay_toward_zero() {
        let e = LatencyEwma::new().decay(Duration::from_secs(1));
        assert_eq!(e.decayed(80.0 * MS, 0), 80.0 * MS);
        assert_eq!(e.decayed(80.0 * MS, 1_000).round(), 29_430_355.0);
        assert_eq!(e.decayed(80.0 * MS, 2_000).round(), 10_826_823.0);
    }

    #[test]
    fn failures_count_as_slow_responses() {
        let e = LatencyEwma::new().failure_penalty(Duration::from_millis(500));
        let ms = Duration::from_millis;
        assert_eq!(e.sample_ns(false, Some(ms(3))), Some(3.0 * MS));
        assert_eq!(e.sample_ns(false, None), None);
        assert_eq!(e.sample_ns(true, Some(ms(3))), Some(500.0 * MS));
        assert_eq!(e.sample_ns(true, None), Some(500.0 * MS));
        assert_eq!(e.sample_ns(true, Some(ms(900))), Some(900.0 * MS));
    }

    #[test]
    fn reports_feed_the_pool_estimate() {
        use crate::{Backend, Key, ManualClock, Outcome, Pool, RoundRobin};
        let clock = ManualClock::new(1_000);
        let pool = Pool::builder(RoundRobin)
            .clock(clock.clone())
            .build(vec![Backend::new("a"), Backend::new("b").max_fails(0)])
            .unwrap();
        let ms = Duration::from_millis;
        let report = |outcome, latency| {
            let pick = pool.request(Key::None).take(1).unwrap();
            pick.report(outcome, latency);
        };
        assert_eq!(pool.snapshot().latency(1), None);
        report(Outcome::Success, Some(ms(100)));
        assert_eq!(pool.snapshot().latency(1), Some(ms(100)));
        clock.advance_ms(10_000);
        assert_eq!(
            pool.snapshot().latency(1),
            Some(Duration::from_nanos(36_787_944))
        );
        report(Outcome::Success, None);
        assert_eq!(
            pool.snapshot().latency(1),
            Some(Duration::from_nanos(36_787_944))
        );
        report(Outcome::Success, Some(ms(20)));
        assert_eq!(
            pool.snapshot().latency(1),
            Some(Duration::from_nanos(26_175_940))
        );
        // A fast failure counts as the 1 s penalty, at once.
        report(Outcome::Failure, Some(ms(2)));
        assert_eq!(pool.snapshot().latency(1), Some(ms(1_000)));
        assert_eq!(pool.snapshot().latency(0), None, "a untouched");
    }

    #[test]
    fn a_single_backend_still_records_latency() {
        use crate::{Backend, Key, ManualClock, Pool, RoundRobin};
        let pool = Pool::builder(RoundRobin)
            .clock(ManualClock::new(5))
            .build(vec![Backend::new("only")])
            .unwrap();
        pool.pick(Key::None).unwrap().failure();
        assert_eq!(pool.snapshot().latency(0), Some(Duration::from_secs(1)));
        assert_eq!(
            pool.snapshot().fails(0),
            0,
            "nginx's single: no failure count"
        );
    }

    #[test]
    fn zero_decay_is_refused() {
        let err = LatencyEwma::new()
            .decay(Duration::from_micros(999))
            .validate();
        assert_eq!(
            err.unwrap_err().to_string(),
            "latency_ewma: the decay time constant must be at least 1 ms"
        );
    }
}

//! What a pool does when its backends are failing: fail closed, or panic.
//!
//! When passive health has failed out most of a tier, the few backends left
//! take all its traffic and may fall over in turn. Envoy's answer is panic
//! mode: below a healthy share (50% by default) it balances over every host
//! again, healthy or not, betting that some requests succeeding beats all of
//! them failing. nginx's default is to return an error for that request.
//! [`AllDown`] makes the choice explicit on the
//! [`PoolBuilder`](crate::PoolBuilder).
//!
//! # When panic applies
//!
//! Lazily: only when a pick found nothing in the primaries and nothing in
//! the backups. Then, for the primaries and then the backups, the pool
//! counts the tier's eligible backends (not `down`, not draining, weight
//! above 0) and the healthy ones among them (not failed out). If healthy ×
//! 100 < threshold × eligible, the tier is balanced again by the same
//! policy with failures ignored: failed-out backends count as available.
//! Nothing else is ignored: `down` is an operator's decision and stays out
//! (Envoy's panic spreads over the hosts it has, and a host the operator
//! took out is not one of them), draining backends take no new clients,
//! `max_conns` holds, and a request never tries a backend twice.
//!
//! # Departure from Envoy
//!
//! Envoy enters panic as soon as the healthy share drops below the
//! threshold, spreading traffic over unhealthy hosts even while healthy
//! ones could take it. Here the healthy backends keep all traffic until
//! they have nothing to give (all tried, full or failed), which costs
//! nothing on the normal path and keeps failures contained while the
//! healthy backends cope; below the threshold, the unhealthy ones are then
//! tried rather than failing the request. The threshold still tells apart
//! "nothing left because backends failed" (below it: panic) from "nothing
//! left because the healthy ones are busy or tried" (at or above it: the
//! pick fails as with [`AllDown::FailClosed`]).

use crate::error::BuildError;

/// The all-down policy of a pool.
///
/// # Examples
///
/// ```
/// use upstream::{AllDown, Backend, Key, ManualClock, Pool, RoundRobin};
///
/// let pool = Pool::builder(RoundRobin)
///     .clock(ManualClock::new(1_000))
///     .all_down(AllDown::panic(50))
///     .build(vec![Backend::new("a"), Backend::new("b")])
///     .unwrap();
/// pool.pick(Key::None).unwrap().failure();
/// pool.pick(Key::None).unwrap().failure();
/// // Both failed out: 0% healthy, below 50%, so the pool still picks.
/// assert!(pool.pick(Key::None).is_some());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AllDown {
    /// No pick when every candidate is failed out (the default, and
    /// nginx's per-request behaviour).
    #[default]
    FailClosed,
    /// Envoy's panic mode, entered when a tier's healthy share in percent
    /// is below `threshold_percent` (0 turns it off; 100 panics whenever
    /// any backend is failed out and nothing else is left).
    Panic {
        /// Healthy share, in percent, below which the tier panics.
        threshold_percent: u8,
    },
}

impl AllDown {
    /// Panic below `threshold_percent` healthy (Envoy's default is 50).
    pub const fn panic(threshold_percent: u8) -> Self {
        AllDown::Panic { threshold_percent }
    }

    /// Checks the threshold.
    ///
    /// # Errors
    ///
    /// [`BuildError::Policy`] for a threshold above 100.
    pub fn validate(&self) -> Result<(), BuildError> {
        match *self {
            AllDown::Panic { threshold_percent } if threshold_percent > 100 => {
                Err(BuildError::Policy {
                    policy: "panic",
                    reason: format!(
                        "the healthy threshold is a percentage, not {threshold_percent}"
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// True when `healthy` of `eligible` backends is below the threshold.
    pub(crate) fn panics(&self, healthy: usize, eligible: usize) -> bool {
        match *self {
            AllDown::FailClosed => false,
            AllDown::Panic { threshold_percent } => {
                eligible > 0
                    && (healthy as u128) * 100 < u128::from(threshold_percent) * eligible as u128
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Key, LeastConn, ManualClock, Pick, Pool, Random, RoundRobin, Sequence};

    /// least_conn: deterministic, and its tie-break rotates over the tied
    /// backends, so panic sequences read plainly.
    fn pool(all_down: AllDown, backends: Vec<Backend>) -> Pool<LeastConn> {
        Pool::builder(LeastConn)
            .clock(ManualClock::new(1_000))
            .all_down(all_down)
            .build(backends)
            .unwrap()
    }

    /// Fails backend `id` out (max_fails 1).
    fn fail(pool: &Pool<LeastConn>, id: &str) {
        let i = pool.snapshot().index_of(id).unwrap();
        pool.request(Key::None).take(i).unwrap().failure();
    }

    fn hold(pool: &Pool<LeastConn>, id: &str) -> Pick {
        let i = pool.snapshot().index_of(id).unwrap();
        pool.request(Key::None).take(i).unwrap()
    }

    fn names(ids: &[&str]) -> Vec<Backend> {
        ids.iter()
            .map(|id| Backend::new(*id).max_conns(1))
            .collect()
    }

    fn pick(pool: &Pool<LeastConn>) -> String {
        pool.pick(Key::None)
            .map_or("none".into(), |p| p.id().to_string())
    }

    #[test]
    fn fail_closed_picks_none() {
        let p = pool(AllDown::FailClosed, names(&["a", "b"]));
        fail(&p, "a");
        fail(&p, "b");
        assert_eq!(pick(&p), "none");
    }

    #[test]
    fn panic_below_the_threshold_balances_over_failed_backends() {
        let p = pool(AllDown::panic(50), names(&["a", "b"]));
        fail(&p, "a");
        fail(&p, "b");
        // 0 of 2 healthy: both serve again, failures ignored.
        assert_eq!([pick(&p), pick(&p), pick(&p)], ["a", "b", "a"]);
        assert_eq!(p.snapshot().fails(0), 1, "panic picks leave health alone");
    }

    #[test]
    fn the_threshold_separates_failed_from_busy() {
        // a, b failed out; c, d healthy but full (max_conns 1).
        let p = pool(AllDown::panic(50), names(&["a", "b", "c", "d"]));
        fail(&p, "a");
        fail(&p, "b");
        let _busy = [hold(&p, "c"), hold(&p, "d")];
        // 2 of 4 healthy is not below 50%: nothing left, no panic.
        assert_eq!(pick(&p), "none");
        // 1 of 4 healthy (25%) is: the failed backends serve.
        let [c, _d] = _busy;
        drop(c);
        fail(&p, "c");
        assert_eq!([pick(&p), pick(&p), pick(&p)], ["a", "b", "c"]);
    }

    #[test]
    fn threshold_zero_is_off_and_one_hundred_panics_on_any_failure() {
        let p = pool(AllDown::panic(0), names(&["a", "b"]));
        fail(&p, "a");
        fail(&p, "b");
        assert_eq!(pick(&p), "none");

        let p = pool(AllDown::panic(100), names(&["a", "b"]));
        fail(&p, "a");
        let _b = hold(&p, "b");
        // 1 of 2 healthy, below 100%; b is full, so a serves in panic.
        assert_eq!(pick(&p), "a");
    }

    #[test]
    fn down_and_draining_backends_stay_out_of_panic() {
        let mut backends = names(&["a", "b", "c", "d"]);
        backends[2].down = true;
        backends[3].drain = true;
        let p = pool(AllDown::panic(50), backends);
        fail(&p, "a");
        fail(&p, "b");
        let picks: Vec<String> = (0..4).map(|_| pick(&p)).collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
    }

    #[test]
    fn backups_serve_before_the_primaries_panic() {
        let mut backends = names(&["a", "b", "x"]);
        backends[2].backup = true;
        let p = pool(AllDown::panic(50), backends);
        fail(&p, "a");
        fail(&p, "b");
        assert_eq!(pick(&p), "x");
        // The backup fails too: the primaries panic first.
        fail(&p, "x");
        assert_eq!(pick(&p), "a");
    }

    #[test]
    fn a_panicking_request_still_tries_each_backend_once() {
        let p = pool(AllDown::panic(50), names(&["a", "b"]));
        fail(&p, "a");
        fail(&p, "b");
        let mut r = p.request(Key::None);
        let first = r.next().unwrap();
        let second = r.next().unwrap();
        assert_ne!(first.id(), second.id());
        assert!(r.next().is_none());
    }

    #[test]
    fn panic_works_with_any_policy() {
        let p = Pool::builder(Random)
            .clock(ManualClock::new(1_000))
            .random(Sequence::new([1]))
            .all_down(AllDown::panic(50))
            .build(vec![Backend::new("a"), Backend::new("b")])
            .unwrap();
        for i in 0..2 {
            p.request(Key::None).take(i).unwrap().failure();
        }
        assert_eq!(p.pick(Key::None).unwrap().id(), "b");
    }

    #[test]
    fn thresholds_above_100_are_refused() {
        let err = Pool::builder(RoundRobin)
            .all_down(AllDown::panic(101))
            .build(names(&["a"]))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "panic: the healthy threshold is a percentage, not 101"
        );
    }
}

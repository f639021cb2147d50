//! Live state: what changes on every pick and outlives any one snapshot.
//!
//! Each backend identity owns one [`Shared`] for as long as it stays in the
//! pool. A snapshot swap that keeps the identity hands the same `Shared` to
//! the new snapshot, so active counts, failure counts and their timestamps
//! carry over, and a [`Pick`](crate::Pick) made on an old snapshot releases
//! its count on the same atomics the new snapshot reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::clock::Clock;
use crate::latency::LatencyEwma;
use crate::panic::AllDown;
use crate::pick::Outcome;
use crate::random::RandomSource;
use crate::slow_start::SlowStart;

/// A change of state worth a log line: never emitted per request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A backend reached `max_fails` and rests for `fail_timeout`.
    MarkedDown {
        /// The backend.
        id: String,
    },
    /// A failed-out backend answered its probe and serves again.
    BackUp {
        /// The backend.
        id: String,
    },
    /// A new snapshot was swapped in.
    Swapped {
        /// The snapshot's generation, counted from 1.
        generation: u64,
        /// How many backends it holds.
        backends: usize,
    },
}

/// A callback told about [`Event`]s, from the thread that caused them.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// State shared by every snapshot of one pool.
pub(crate) struct PoolShared {
    pub(crate) clock: Arc<dyn Clock>,
    /// The random source of every pick of this pool.
    pub(crate) random: Arc<dyn RandomSource>,
    /// How backends that come back ramp up, if they do.
    pub(crate) slow_start: Option<SlowStart>,
    /// How reported latencies feed each backend's estimate.
    pub(crate) latency: LatencyEwma,
    /// Whether and when a failing tier panics.
    pub(crate) all_down: AllDown,
    /// Active picks over the whole pool, kept only by the picks of
    /// policies that count it (`Policy::COUNTS_TOTAL_ACTIVE`).
    pub(crate) total_active: AtomicU64,
    pub(crate) observer: Option<Observer>,
}

impl PoolShared {
    /// Pool state with `clock` and every other setting at its default, for
    /// unit tests that build candidates without a pool.
    #[cfg(test)]
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        PoolShared {
            clock,
            random: Arc::new(crate::random::SplitMix64::new()),
            slow_start: None,
            latency: LatencyEwma::new(),
            all_down: AllDown::FailClosed,
            total_active: AtomicU64::new(0),
            observer: None,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }
}

/// The live counters of one backend. All times are the pool clock's ms.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Picks of this backend not yet released.
    pub(crate) active: AtomicU32,
    /// nginx's `fails`: failures since the count was last cleared.
    pub(crate) fails: AtomicU32,
    /// nginx's `accessed`: time of the last failure.
    pub(crate) accessed: AtomicU64,
    /// nginx's `checked`: start of the current failure window, moved
    /// forward when a pick lands more than `fail_timeout` after it.
    pub(crate) checked: AtomicU64,
    /// Smooth weighted round robin state for policies that keep it per
    /// backend (least_conn's tie-break).
    pub(crate) current_weight: AtomicI64,
    /// When the backend last became able to serve (added, or back up);
    /// 0 for backends of the pool's first build, which slow start takes
    /// as warm.
    pub(crate) up_since: AtomicU64,
    /// The latency estimate in ns, as `f64` bits (see [`LatencyEwma`]).
    pub(crate) latency_bits: AtomicU64,
    /// When the estimate was last set, in ms (at least 1); 0 before the
    /// first response.
    pub(crate) latency_at: AtomicU64,
}

/// One backend identity's shared, long-lived state.
pub(crate) struct Shared {
    pub(crate) id: Box<str>,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) live: Live,
    pub(crate) pool: Arc<PoolShared>,
}

impl Shared {
    pub(crate) fn new(spec: &Backend, pool: &Arc<PoolShared>) -> Arc<Shared> {
        let live = Live::default();
        // Relaxed: the value is published by the Arc that carries it.
        live.up_since
            .store(up_since_now(&*pool.clock), Ordering::Relaxed);
        Arc::new(Shared {
            id: spec.id.clone().into_boxed_str(),
            addr: spec.socket_addr(),
            live,
            pool: Arc::clone(pool),
        })
    }

    /// True while nginx would skip this backend for failures: `max_fails`
    /// reached and the window since `checked` not yet over.
    #[inline]
    pub(crate) fn failed_out(&self, spec: &Backend, now: impl FnOnce() -> u64) -> bool {
        // Relaxed: health is advisory; a stale read delays a decision by one pick.
        let fails = self.live.fails.load(Ordering::Relaxed);
        if spec.max_fails == 0 || fails < spec.max_fails {
            return false;
        }
        let checked = self.live.checked.load(Ordering::Relaxed);
        now().saturating_sub(checked) <= fail_timeout_ms(spec)
    }

    /// Takes one active slot, honouring `max_conns`, and moves the failure
    /// window as nginx does when it picks a peer. Returns false, changing
    /// nothing, when the backend is full or another thread won its probe.
    #[inline]
    pub(crate) fn acquire(&self, spec: &Backend, now: &mut dyn FnMut() -> u64) -> bool {
        if !self.take_slot(spec.max_conns) {
            return false;
        }
        if !self.move_window(spec, now) {
            self.release_slot();
            return false;
        }
        true
    }

    /// Takes one active slot honouring `max_conns` and nothing else: a
    /// panicking pool sends traffic to failed-out backends without touching
    /// their failure window.
    #[inline]
    pub(crate) fn acquire_in_panic(&self, spec: &Backend) -> bool {
        self.take_slot(spec.max_conns)
    }

    /// Takes one active slot below `max` (0: unlimited). Without a limit
    /// this is one `fetch_add`, not a compare-and-swap loop; the count still
    /// never wraps: at `u32::MAX` the increment is undone and refused.
    #[inline]
    fn take_slot(&self, max: u32) -> bool {
        let active = &self.live.active;
        if max == 0 {
            // Relaxed: the count is its own datum; no other memory hangs on it.
            if active.fetch_add(1, Ordering::Relaxed) != u32::MAX {
                return true;
            }
            // Relaxed: as above; undoes the wrap to 0.
            active.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        // Relaxed: as above; the loop keeps the count at or below `max`.
        active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                (a < max).then_some(a + 1)
            })
            .is_ok()
    }

    /// nginx sets `checked = now` when it picks a peer more than
    /// `fail_timeout` after the last check. With no failures counted the
    /// value is never read, so the clock is not even consulted then. When
    /// the backend is failed out, only one picker may win the probe.
    /// Lookups, which take no slot, call it alone.
    #[inline]
    pub(crate) fn move_window(&self, spec: &Backend, now: &mut dyn FnMut() -> u64) -> bool {
        let live = &self.live;
        // Relaxed: see failed_out.
        let fails = live.fails.load(Ordering::Relaxed);
        if fails == 0 {
            return true;
        }
        let now = now();
        let checked = live.checked.load(Ordering::Relaxed);
        if now.saturating_sub(checked) <= fail_timeout_ms(spec) {
            // Inside the window: fine unless failed out (checked before us).
            return spec.max_fails == 0 || fails < spec.max_fails;
        }
        // Relaxed: the CAS itself decides who probes; nothing else is published.
        let won = live
            .checked
            .compare_exchange(checked, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        won || spec.max_fails == 0 || fails < spec.max_fails
    }

    /// Gives back one slot: one `fetch_sub`, not a compare-and-swap loop.
    /// Saturating, so that a bug can never wrap the count: a decrement
    /// from 0 is undone.
    #[inline]
    pub(crate) fn release_slot(&self) {
        // Relaxed: see take_slot.
        if self.live.active.fetch_sub(1, Ordering::Relaxed) == 0 {
            // Relaxed: as above; undoes the wrap to u32::MAX.
            self.live.active.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn active(&self) -> u32 {
        // Relaxed: a gauge.
        self.live.active.load(Ordering::Relaxed)
    }

    /// nginx's failure accounting for one failed attempt.
    pub(crate) fn record_failure(&self, max_fails: u32) {
        let now = self.pool.clock.now_ms();
        let live = &self.live;
        // Relaxed: health is advisory; see failed_out. Saturating, so that
        // a backend failing forever with max_fails 0 never wraps to 0.
        let before = live
            .fails
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(f.saturating_add(1))
            })
            .unwrap_or(u32::MAX);
        live.accessed.store(now, Ordering::Relaxed);
        live.checked.store(now, Ordering::Relaxed);
        if max_fails != 0 && before < max_fails && before.saturating_add(1) >= max_fails {
            self.pool.emit(Event::MarkedDown {
                id: self.id.to_string(),
            });
        }
    }

    /// One attempt's outcome: its latency always, its success or failure
    /// unless failures are not counted (nginx's single server).
    pub(crate) fn report(
        &self,
        outcome: Outcome,
        latency: Option<Duration>,
        max_fails: u32,
        count_failures: bool,
    ) {
        self.record_latency(outcome == Outcome::Failure, latency);
        if !count_failures {
            return;
        }
        match outcome {
            Outcome::Success => self.record_success(max_fails),
            Outcome::Failure => self.record_failure(max_fails),
        }
    }

    /// nginx's success accounting: the count clears only when a pick was
    /// made after the failure window, that is when `accessed < checked`.
    pub(crate) fn record_success(&self, max_fails: u32) {
        let live = &self.live;
        // Relaxed: see failed_out.
        let accessed = live.accessed.load(Ordering::Relaxed);
        let checked = live.checked.load(Ordering::Relaxed);
        if accessed < checked {
            let before = live.fails.swap(0, Ordering::Relaxed);
            if max_fails != 0 && before >= max_fails {
                live.up_since
                    .store(up_since_now(&*self.pool.clock), Ordering::Relaxed);
                self.pool.emit(Event::BackUp {
                    id: self.id.to_string(),
                });
            }
        }
    }
}

impl Shared {
    /// Feeds one reported outcome into the latency estimate.
    pub(crate) fn record_latency(&self, failed: bool, latency: Option<Duration>) {
        let ewma = &self.pool.latency;
        let Some(sample) = ewma.sample_ns(failed, latency) else {
            return;
        };
        let now = self.pool.clock.now_ms().max(1);
        let live = &self.live;
        // Relaxed throughout: the estimate is advisory and carries no other
        // data; the CAS alone keeps concurrent samples from being lost.
        let _ = live
            .latency_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let at = live.latency_at.load(Ordering::Relaxed);
                let next = if at == 0 {
                    sample
                } else {
                    ewma.observe(f64::from_bits(bits), now.saturating_sub(at), sample)
                };
                Some(next.to_bits())
            });
        live.latency_at.fetch_max(now, Ordering::Relaxed);
    }

    /// The latency estimate in ns at time `now`, decayed since the last
    /// response; `None` before the first.
    pub(crate) fn latency_ns(&self, now: u64) -> Option<f64> {
        // Relaxed: advisory, see record_latency.
        let at = self.live.latency_at.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        let estimate = f64::from_bits(self.live.latency_bits.load(Ordering::Relaxed));
        Some(self.pool.latency.decayed(estimate, now.saturating_sub(at)))
    }
}

/// The clock's time as an `up_since` value: at least 1, since 0 marks the
/// warm backends of a pool's first build.
pub(crate) fn up_since_now(clock: &dyn Clock) -> u64 {
    clock.now_ms().max(1)
}

pub(crate) fn fail_timeout_ms(spec: &Backend) -> u64 {
    u64::try_from(spec.fail_timeout.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Mutex;

    #[test]
    fn failure_count_saturates_at_the_integer_limit() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&events);
        let mut pool = PoolShared::new(Arc::new(ManualClock::new(7)));
        pool.observer = Some(Arc::new(move |e: &Event| {
            seen.lock().unwrap().push(e.clone())
        }));
        let pool = Arc::new(pool);
        let shared = Shared::new(&Backend::new("a"), &pool);
        shared.live.fails.store(u32::MAX - 1, Ordering::Relaxed);
        for _ in 0..3 {
            shared.record_failure(u32::MAX);
        }
        assert_eq!(shared.live.fails.load(Ordering::Relaxed), u32::MAX);
        let marked = vec![Event::MarkedDown { id: "a".into() }];
        assert_eq!(
            *events.lock().unwrap(),
            marked,
            "marked down once, not per failure"
        );
    }
}

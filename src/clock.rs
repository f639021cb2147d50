//! Time, injected: a monotonic clock in production, a manual one in tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A source of monotonic time in milliseconds.
///
/// Passive health, slow start and latency averages read time only through
/// this trait, so a test that owns a [`ManualClock`] controls every window
/// to the millisecond.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since an arbitrary fixed origin; never decreases.
    fn now_ms(&self) -> u64;
}

/// The system's monotonic clock, counted from the moment it was made.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        // Starts at 1 so that 0 can mean "never" in timestamps.
        u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// # Examples
///
/// ```
/// use upstream::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// let seen_by_pool = clock.clone();
/// clock.advance_ms(250);
/// assert_eq!(seen_by_pool.now_ms(), 1_250);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves the clock forward by `ms`, saturating at `u64::MAX`.
    pub fn advance_ms(&self, ms: u64) {
        // Relaxed: the value is the only state; readers need no other data.
        let _ = self
            .now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(ms))
            });
    }

    /// Sets the time; a value earlier than now is ignored (time is monotonic).
    pub fn set_ms(&self, ms: u64) {
        // Relaxed: as above.
        self.now.fetch_max(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        // Relaxed: a timestamp carries no other data with it.
        self.now.load(Ordering::Relaxed)
    }
}

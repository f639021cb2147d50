//! Randomness, injected: a fast generator in production, a script in tests.
//!
//! Random balancing, power-of-d choices and slow start's admission draw all
//! read random numbers through one [`RandomSource`] that the pool owns
//! ([`PoolBuilder::random`](crate::PoolBuilder::random)), the way time comes
//! through one [`Clock`](crate::Clock). A test that installs a [`Sequence`]
//! knows every number a pick will draw, so random picks are asserted exactly.
//!
//! # The seed story
//!
//! Randomness is the point of these policies: proxies that start together
//! must not pick in lockstep. So the default, [`SplitMix64::new`], takes its
//! seed from the operating system (through the standard library's randomly
//! keyed hasher) and two processes draw different sequences. For a
//! reproducible run, [`SplitMix64::with_seed`] fixes the seed: the sequence of
//! values the generator hands out is then fixed, though which thread receives
//! which value depends on scheduling.
//!
//! How a policy maps a 64-bit draw to a choice is part of its documentation
//! (usually `draw % n`); the modulo bias is below n / 2^64, far under any
//! measurable share.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// A source of uniformly distributed 64-bit numbers, shared by all threads.
///
/// Called on the pick path: implementations must not lock or allocate.
pub trait RandomSource: Send + Sync + 'static {
    /// The next number.
    fn next_u64(&self) -> u64;
}

/// SplitMix64 over one atomic counter: lock-free, allocation-free, and
/// every call receives a distinct state, so concurrent callers never draw
/// the same value from one step.
///
/// The counter advances by the 64-bit golden ratio and each state goes
/// through SplitMix64's finalizer (Steele, Lea and Flood, 2014), which passes
/// BigCrush. Not for secrets.
///
/// # Examples
///
/// ```
/// use upstream::{RandomSource, SplitMix64};
///
/// let a = SplitMix64::with_seed(7);
/// let b = SplitMix64::with_seed(7);
/// assert_eq!(a.next_u64(), b.next_u64(), "same seed, same sequence");
/// ```
#[derive(Debug)]
pub struct SplitMix64 {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

impl SplitMix64 {
    /// A generator seeded from the operating system: each process draws a
    /// different sequence.
    pub fn new() -> Self {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        SplitMix64::with_seed(seed)
    }

    /// A generator with a fixed seed, for reproducible runs.
    pub const fn with_seed(seed: u64) -> Self {
        SplitMix64 {
            state: AtomicU64::new(seed),
        }
    }
}

impl Default for SplitMix64 {
    fn default() -> Self {
        SplitMix64::new()
    }
}

impl RandomSource for SplitMix64 {
    #[inline]
    fn next_u64(&self) -> u64 {
        // Relaxed: each caller only needs a distinct state; nothing else is
        // published through the counter.
        let z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A scripted source for tests: hands out the given values in order, then
/// starts over. Clones share the position, like
/// [`ManualClock`](crate::ManualClock) clones share the time.
///
/// # Examples
///
/// ```
/// use upstream::{RandomSource, Sequence};
///
/// let seq = Sequence::new([3, 1]);
/// let seen_by_pool = seq.clone();
/// assert_eq!(seq.next_u64(), 3);
/// assert_eq!(seen_by_pool.next_u64(), 1);
/// assert_eq!(seq.next_u64(), 3);
/// assert_eq!(seq.drawn(), 3);
/// ```
#[derive(Clone, Debug)]
pub struct Sequence {
    values: Arc<[u64]>,
    at: Arc<AtomicUsize>,
}

impl Sequence {
    /// A source that cycles through `values`; an empty list yields zeros.
    pub fn new(values: impl IntoIterator<Item = u64>) -> Self {
        Sequence {
            values: values.into_iter().collect(),
            at: Arc::default(),
        }
    }

    /// How many values were drawn so far.
    pub fn drawn(&self) -> usize {
        // Relaxed: a test-side counter read after the draws it counts.
        self.at.load(Ordering::Relaxed)
    }
}

impl RandomSource for Sequence {
    fn next_u64(&self) -> u64 {
        // Relaxed: the position is the only shared datum.
        let n = self.at.fetch_add(1, Ordering::Relaxed);
        match self.values.len() {
            0 => 0,
            len => self.values[n % len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_vector() {
        // Reference outputs of SplitMix64 seeded with 0 (the first three
        // values of Vigna's splitmix64.c).
        let g = SplitMix64::with_seed(0);
        let got: Vec<u64> = (0..3).map(|_| g.next_u64()).collect();
        assert_eq!(
            got,
            [
                0xe220_a839_7b1d_cdaf,
                0x6e78_9e6a_a1b9_65f4,
                0x06c4_5d18_8009_454f
            ]
        );
    }

    #[test]
    fn os_seeded_generators_differ() {
        let (a, b) = (SplitMix64::new(), SplitMix64::new());
        let (x, y): (Vec<u64>, Vec<u64>) = (0..4).map(|_| (a.next_u64(), b.next_u64())).unzip();
        assert_ne!(x, y);
    }

    #[test]
    fn empty_sequence_yields_zero() {
        let s = Sequence::new([]);
        assert_eq!((s.next_u64(), s.next_u64(), s.drawn()), (0, 0, 2));
    }
}

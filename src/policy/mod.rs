//! Balancing policies and the trait they implement.
//!
//! A policy turns a tier of backends (the primaries, or the backups) into a
//! prebuilt table when a snapshot is made, and picks an index from that
//! table on the hot path. Everything that varies per pick — availability,
//! active counts, the time — comes through [`Candidates`], so a policy
//! never sees locks, swaps or accounting.
//!
//! # Choosing a policy
//!
//! | you need | policy | key it reads | mirrors |
//! |---|---|---|---|
//! | even spread, no affinity | [`RoundRobin`] | none | nginx default (smooth WRR) |
//! | long or uneven requests | [`LeastConn`], [`P2c`] | none | nginx `least_conn`; power of d choices |
//! | latency-aware spread | [`PeakEwma`] | none | Finagle / tower peak EWMA |
//! | random spread | [`Random`], [`NginxRandom`] | none | nginx `random [two]` |
//! | a client stays on one backend | [`IpHash`] | [`Key::Ip`] | nginx `ip_hash` |
//! | a key stays on one backend, set rarely changes | [`NginxHash`] | [`Key::Bytes`] | nginx `hash $key` |
//! | a key stays put while the set changes | [`Ketama`], [`Rendezvous`], [`Maglev`](crate::envoy::Maglev), [`RingHash`](crate::envoy::RingHash) | bytes / [`Key::Hash`] | nginx `hash … consistent`; Envoy |
//! | affinity without hot spots | [`BoundedLoad`](crate::envoy::BoundedLoad), [`HaproxyChash`](crate::haproxy::HaproxyChash) with a balance factor | [`Key::Hash`] / bytes | Envoy / HAProxy bounded loads |
//! | HAProxy's exact answers | [`haproxy`](crate::haproxy) policies | IP or bytes | `balance source/uri/hdr`, `static-rr` |
//! | a session, not an address | a [`Sticky`](crate::sticky::Sticky) layer over any policy | cookie, route or session id | nginx `sticky` |
//!
//! What moves when the set changes, for 10 backends (measured over many
//! keys; the ideal is 10 %):
//!
//! | policy | one backend marked `down` | one backend removed |
//! |---|---|---|
//! | `IpHash`, `NginxHash` | only its keys | most keys (the modulus changes) |
//! | `Ketama`, `Rendezvous`, HAProxy consistent | only its keys | only its keys (≈ 10 %) |
//! | `Maglev` | ≈ only its keys | ≈ 10.4 % |
//! | `RingHash` (Envoy sizing) | ≈ only its keys | ≈ 17.6 %: Envoy re-sizes the ring |
//!
//! A `drain`ed backend takes no new clients but keeps its place, so no other
//! key moves; weight 0 also takes no new clients, but under the modulo hashes
//! it changes the total weight and moves other keys. Slow start applies to
//! the unkeyed policies only: ramping a hash policy would move keys.
//! Costs per pick and per build are in `BENCHMARKS.md` at the repository root.
//!
//! # Writing a policy
//!
//! ```
//! use upstream::policy::{Candidates, Policy};
//! use upstream::{Backend, BuildError, Key, Pool};
//!
//! /// Always the first available backend, in config order.
//! #[derive(Clone)]
//! struct FirstAvailable;
//!
//! impl Policy for FirstAvailable {
//!     type Table = ();
//!     type State = ();
//!
//!     fn name(&self) -> &'static str {
//!         "first"
//!     }
//!
//!     fn build(&self, _tier: &[Backend], _prev: Option<&()>) -> Result<(), BuildError> {
//!         Ok(())
//!     }
//!
//!     fn pick(&self, _: &(), c: &Candidates<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
//!         (0..c.len()).find(|&i| c.is_available(i))
//!     }
//! }
//!
//! let pool = Pool::new(FirstAvailable, vec![Backend::new("a:1"), Backend::new("b:1")]).unwrap();
//! assert_eq!(pool.pick(Key::None).unwrap().id(), "a:1");
//! ```

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::Backend;
use crate::clock::Clock;
use crate::error::BuildError;
use crate::live::{PoolShared, Shared};
use crate::random::{RandomSource, SplitMix64};
use crate::slow_start::RAMP_ONE;
use crate::tried::TriedSet;

mod any;
mod choices;
mod hash;
mod ip_hash;
mod ketama;
mod least_conn;
mod nginx_common;
mod nginx_random;
mod peak_ewma;
mod random;
mod rendezvous;
mod round_robin;

pub use any::{AnyPolicy, AnyState, AnyTable};
pub use choices::{P2c, MAX_CHOICES};
pub use hash::{HashState, HashTable, NginxHash};
pub use ip_hash::{IpHash, IpHashState, IpHashTable};
pub use ketama::{Ketama, KetamaState, KetamaTable, MAX_POINTS, POINTS_PER_WEIGHT};
pub use least_conn::LeastConn;
pub use nginx_random::{NginxRandom, NginxRandomTable, Tries};
pub use peak_ewma::PeakEwma;
pub use random::{Random, RandomTable};
pub use rendezvous::{Rendezvous, RendezvousTable};
pub use round_robin::{RoundRobin, RoundRobinTable};

/// A balancing policy: a table built per snapshot, and a pick from it.
///
/// Implementations are called with static dispatch by [`Pool`](crate::Pool),
/// so a built-in policy costs nothing for being pluggable.
pub trait Policy: Clone + Send + Sync + 'static {
    /// What [`build`](Policy::build) prepares for one tier of backends.
    type Table: Send + Sync + 'static;

    /// Per-request state kept between the attempts of one request (a
    /// running hash, a position on a ring). Reset when the request moves
    /// from the primaries to the backups.
    type State: Default;

    /// Whether every pick keeps the pool-wide count of active picks up to
    /// date (one atomic add on the pick, one subtract on its drop, both on a
    /// cache line every core shares). A policy that reads that count while
    /// picking (bounded loads) must leave this `true`, the default. A policy
    /// that never does sets it to `false`: its picks then skip both
    /// operations, and [`Pool::total_active`](crate::Pool::total_active)
    /// adds up the per-backend counts instead.
    const COUNTS_TOTAL_ACTIVE: bool = true;

    /// A short name used in error messages, such as `"ip_hash"`.
    fn name(&self) -> &'static str;

    /// Checks that the whole set suits this policy (for example, nginx
    /// refuses backup servers with hash methods).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the backend at fault.
    fn validate(&self, set: &crate::BackendSet) -> Result<(), BuildError> {
        let _ = set;
        Ok(())
    }

    /// Builds the table for one tier, in config order. `prev` is the table
    /// the previous snapshot built for the same tier, so that positions and
    /// cursors can carry over a swap.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when the tier cannot be served by this policy.
    fn build(
        &self,
        tier: &[Backend],
        prev: Option<&Self::Table>,
    ) -> Result<Self::Table, BuildError>;

    /// Picks an index into the tier, or `None` when no candidate suits.
    ///
    /// The index must satisfy [`Candidates::is_available`] (or
    /// [`Candidates::is_usable`] for sticky policies); the pool skips an
    /// index that does not and asks again, at most once per backend.
    fn pick(
        &self,
        table: &Self::Table,
        candidates: &Candidates<'_>,
        key: Key<'_>,
        state: &mut Self::State,
    ) -> Option<usize>;

    /// How the pool's [slow start](crate::SlowStart) reaches this policy.
    /// The default, [`RampMode::Admission`], suits any policy; policies that
    /// weigh backends at pick time read
    /// [`Candidates::effective_weight`] and say [`RampMode::Weights`].
    fn ramp_mode(&self) -> RampMode {
        RampMode::Admission
    }
}

/// How slow start reaches a policy's picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RampMode {
    /// The pool keeps the policy's choice of a ramping backend with
    /// probability equal to its ramp factor (one draw from the pool's random
    /// source), and otherwise asks the policy again with that backend
    /// skipped for this pick. For policies with static tables.
    Admission,
    /// The policy reads [`Candidates::effective_weight`] itself.
    Weights,
    /// Slow start does not apply: for hash policies, where moving a key
    /// even for one request would break affinity.
    Off,
}

/// What a request is keyed by.
///
/// Each policy documents which variant it reads; the others are treated as
/// "no key" by hash policies (nginx's `hash` with an empty key balances by
/// round robin; `ip_hash` with a non-IP client uses the key 0.0.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Key<'a> {
    /// No key: unkeyed policies, or a client without an address.
    #[default]
    None,
    /// A client address (`ip_hash`, HAProxy `source`, Envoy source IP).
    Ip(IpAddr),
    /// Key bytes (`hash $request_uri`, a header value, a session id).
    Bytes(&'a [u8]),
    /// A precomputed 64-bit hash (Envoy's Maglev and ring hash).
    Hash(u64),
}

impl From<IpAddr> for Key<'_> {
    fn from(ip: IpAddr) -> Self {
        Key::Ip(ip)
    }
}

impl<'a> From<&'a [u8]> for Key<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Key::Bytes(bytes)
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(text: &'a str) -> Self {
        Key::Bytes(text.as_bytes())
    }
}

impl From<u64> for Key<'_> {
    fn from(hash: u64) -> Self {
        Key::Hash(hash)
    }
}

/// The tier a policy picks from, as seen at the moment of one pick.
///
/// Indices run from 0 to `len() - 1` in config order within the tier.
pub struct Candidates<'a> {
    specs: &'a [Backend],
    shared: &'a [Arc<Shared>],
    offset: usize,
    /// `None` on a request's first attempt, which has tried nothing.
    tried: Option<&'a TriedSet>,
    clock: &'a dyn Clock,
    now: Cell<Option<u64>>,
    pool: Option<&'a PoolShared>,
    /// Backends slow start's admission turned down during this pick.
    skipped: &'a [usize],
    /// The tier panics: failed-out backends count as available.
    panic: bool,
    /// The last index [`is_usable`](Self::is_usable) found usable, so that
    /// the pool does not check the policy's choice a second time.
    usable: Cell<usize>,
}

/// The source of candidates built outside a pool (unit tests of tables).
static DETACHED_RANDOM: SplitMix64 = SplitMix64::with_seed(0);

impl<'a> Candidates<'a> {
    #[inline]
    pub(crate) fn new(
        specs: &'a [Backend],
        shared: &'a [Arc<Shared>],
        offset: usize,
        tried: &'a TriedSet,
        clock: &'a dyn Clock,
    ) -> Self {
        Candidates {
            tried: Some(tried),
            ..Candidates::untried(specs, shared, offset, clock)
        }
    }

    /// Candidates of a request's first attempt, or of a question about one
    /// backend: nothing tried.
    #[inline]
    pub(crate) fn untried(
        specs: &'a [Backend],
        shared: &'a [Arc<Shared>],
        offset: usize,
        clock: &'a dyn Clock,
    ) -> Self {
        Candidates {
            specs,
            shared,
            offset,
            tried: None,
            clock,
            now: Cell::new(None),
            pool: None,
            skipped: &[],
            panic: false,
            usable: Cell::new(usize::MAX),
        }
    }

    /// The same candidates with failures ignored (panic mode).
    #[inline]
    pub(crate) fn panicking(mut self, panic: bool) -> Self {
        self.panic = panic;
        self
    }

    /// True while the pool panics over this tier (see
    /// [`AllDown`](crate::AllDown)): failed-out backends count as usable.
    #[inline]
    pub fn is_panicking(&self) -> bool {
        self.panic
    }

    /// The same candidates with `skipped` (tier indices) treated as tried.
    #[inline]
    pub(crate) fn skipping(mut self, skipped: &'a [usize]) -> Self {
        self.skipped = skipped;
        self
    }

    /// The same candidates, drawing randomness (and later slow start and
    /// panic settings) from `pool`.
    #[inline]
    pub(crate) fn in_pool(mut self, pool: &'a PoolShared) -> Self {
        self.pool = Some(pool);
        self
    }

    /// A uniformly distributed number from the pool's
    /// [`RandomSource`].
    ///
    /// # Complexity
    ///
    /// One call of the source: one atomic add for the default generator.
    #[inline]
    pub fn random(&self) -> u64 {
        match self.pool {
            Some(pool) => pool.random.next_u64(),
            None => DETACHED_RANDOM.next_u64(),
        }
    }

    /// Number of backends in the tier, available or not.
    #[inline]
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when the tier has no backend.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The configuration of backend `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    #[inline]
    pub fn backend(&self, i: usize) -> &'a Backend {
        &self.specs[i]
    }

    /// The configured weight of backend `i` (0 if `i` is out of range).
    #[inline]
    pub fn weight(&self, i: usize) -> u32 {
        self.specs.get(i).map_or(0, |b| b.weight)
    }

    /// Active (unreleased) picks of backend `i` (0 if out of range).
    #[inline]
    pub fn active(&self, i: usize) -> u32 {
        self.shared.get(i).map_or(0, |s| s.active())
    }

    /// Active (unreleased) picks over the whole pool, every tier included
    /// (0 when this tier is empty). Envoy's bounded loads compare a host's
    /// count with this cluster-wide total. Kept only for policies that leave
    /// [`Policy::COUNTS_TOTAL_ACTIVE`] at `true`, as a policy that reads it must.
    #[inline]
    pub fn total_active(&self) -> u64 {
        // Relaxed: a gauge; a stale read shifts one load bound by a request.
        self.shared.first().map_or(0, |s| {
            s.pool
                .total_active
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    pub(crate) fn live(&self, i: usize) -> &crate::live::Live {
        &self.shared[i].live
    }

    /// True when backend `i` was already tried for this request (or, within
    /// one pick, turned down by slow start's admission).
    #[inline]
    pub fn is_tried(&self, i: usize) -> bool {
        self.tried.is_some_and(|t| t.contains(self.offset + i))
            || (!self.skipped.is_empty() && self.skipped.contains(&i))
    }

    /// Backend `i`'s latency estimate in ns now (see
    /// [`LatencyEwma`](crate::LatencyEwma)), or `None` before its first
    /// reported response (and when `i` is out of range).
    ///
    /// # Complexity
    ///
    /// O(1): two atomic loads, the pick's clock read and one `exp`.
    #[inline]
    pub fn latency_ns(&self, i: usize) -> Option<f64> {
        self.shared.get(i)?.latency_ns(self.now_ms())
    }

    /// Backend `i`'s slow start factor now, in units of 1/65536 of its
    /// weight: [`RAMP_ONE`] for a warm backend or when the pool has no slow
    /// start (0 if `i` is out of range).
    ///
    /// # Complexity
    ///
    /// O(1): one atomic load, and for a ramping backend the pick's clock
    /// read and [`SlowStart::factor`](crate::SlowStart::factor).
    #[inline]
    pub fn ramp(&self, i: usize) -> u32 {
        let Some(shared) = self.shared.get(i) else {
            return 0;
        };
        let Some(slow_start) = self.pool.and_then(|p| p.slow_start.as_ref()) else {
            return RAMP_ONE;
        };
        // Relaxed: a timestamp read alone; a stale value shifts one ramp step.
        let up_since = shared.live.up_since.load(Ordering::Relaxed);
        if up_since == 0 {
            return RAMP_ONE;
        }
        slow_start.factor(self.now_ms().saturating_sub(up_since))
    }

    /// Backend `i`'s weight as slow start scales it, in units of 1/65536:
    /// `weight × ramp(i)`. Equal to `weight << 16` for a warm backend, and
    /// positive for any ramping backend of positive weight, so even a
    /// weight-1 backend ramps smoothly. Policies that compare loads against
    /// weights at pick time read this instead of [`weight`](Self::weight).
    ///
    /// # Complexity
    ///
    /// That of [`ramp`](Self::ramp).
    #[inline]
    pub fn effective_weight(&self, i: usize) -> u64 {
        u64::from(self.weight(i)) * u64::from(self.ramp(i))
    }

    /// Backend `i` can serve this request: in range, not down, not failed
    /// out (unless the tier panics), below `max_conns` and not yet tried. A
    /// draining or weight-0 backend is usable, so that sticky sessions bound
    /// to it stay.
    #[inline(always)]
    pub fn is_usable(&self, i: usize) -> bool {
        let (Some(spec), Some(shared)) = (self.specs.get(i), self.shared.get(i)) else {
            return false;
        };
        let usable = !spec.down
            && !self.is_tried(i)
            && (spec.max_conns == 0 || shared.active() < spec.max_conns)
            && (self.panic || !shared.failed_out(spec, || self.now_ms()));
        if usable {
            self.usable.set(i);
        }
        usable
    }

    /// [`is_usable`](Self::is_usable), answered without a second look when
    /// `i` is the last index found usable: nothing the pick path does in
    /// between changes it.
    #[inline(always)]
    pub(crate) fn is_still_usable(&self, i: usize) -> bool {
        self.usable.get() == i || self.is_usable(i)
    }

    /// Backend `i` can take a new client: usable, not draining, and of
    /// positive weight.
    #[inline]
    pub fn is_available(&self, i: usize) -> bool {
        self.specs.get(i).is_some_and(|s| s.weight > 0 && !s.drain) && self.is_usable(i)
    }

    /// The pool clock's time in ms, read at most once per pick.
    pub fn now_ms(&self) -> u64 {
        if let Some(now) = self.now.get() {
            return now;
        }
        let now = self.clock.now_ms();
        self.now.set(Some(now));
        now
    }
}

//! Balancing policies and the trait they implement.
//!
//! A policy turns a tier of backends (the primaries, or the backups) into a
//! prebuilt table when a snapshot is made, and picks an index from that
//! table on the hot path. Everything that varies per pick — availability,
//! active counts, the time — comes through [`Candidates`], so a policy
//! never sees locks, swaps or accounting.
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
use std::sync::Arc;

use crate::backend::Backend;
use crate::clock::Clock;
use crate::error::BuildError;
use crate::live::Shared;
use crate::tried::TriedSet;

mod any;
mod least_conn;
mod round_robin;

pub use any::{AnyPolicy, AnyState, AnyTable};

pub use least_conn::LeastConn;
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
    tried: &'a TriedSet,
    clock: &'a dyn Clock,
    now: Cell<Option<u64>>,
}

impl<'a> Candidates<'a> {
    pub(crate) fn new(
        specs: &'a [Backend],
        shared: &'a [Arc<Shared>],
        offset: usize,
        tried: &'a TriedSet,
        clock: &'a dyn Clock,
    ) -> Self {
        Candidates {
            specs,
            shared,
            offset,
            tried,
            clock,
            now: Cell::new(None),
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

    pub(crate) fn live(&self, i: usize) -> &crate::live::Live {
        &self.shared[i].live
    }

    /// True when backend `i` was already tried for this request.
    #[inline]
    pub fn is_tried(&self, i: usize) -> bool {
        self.tried.contains(self.offset + i)
    }

    /// Backend `i` can serve this request: in range, not down, not failed
    /// out, below `max_conns` and not yet tried. A draining or weight-0
    /// backend is usable, so that sticky sessions bound to it stay.
    #[inline]
    pub fn is_usable(&self, i: usize) -> bool {
        let (Some(spec), Some(shared)) = (self.specs.get(i), self.shared.get(i)) else {
            return false;
        };
        !spec.down
            && !self.is_tried(i)
            && (spec.max_conns == 0 || shared.active() < spec.max_conns)
            && !shared.failed_out(spec, || self.now_ms())
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

//! Per-thread readers of a pool, and lookups that do not count themselves.
//!
//! [`Pool::pick`] loads the current snapshot through `arc-swap` on every
//! call: two locked instructions, a few nanoseconds each, paid by every
//! request. A [`Reader`] keeps its own reference to the current snapshot
//! and only checks, with one plain atomic load, that the pool has not moved
//! on since; it is what a proxy's worker thread (or a long-lived task)
//! holds.
//!
//! A [`Choice`], from [`Reader::lookup`] or [`Snapshot::lookup`], is a pick
//! that counts no connection: the backend the pool's policy chooses, by
//! the same health rules, without touching the backend's active count. It
//! is for callers that do not hold a connection per pick, such as a cache
//! client mapping keys to servers, or that count connections themselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Cache};

use crate::backend::Backend;
use crate::live::Shared;
use crate::pick::{self, Outcome, Pick, Request};
use crate::policy::{Key, Policy};
use crate::pool::Snapshot;

/// A pool's snapshot, cached for one thread or task.
///
/// Made by [`Pool::reader`](crate::Pool::reader). Each call checks that the
/// cached snapshot is still the pool's current one (one atomic load, no
/// locked instruction) and takes the new one when the pool was updated, so
/// a reader never picks from a stale set. Its methods take `&mut self`:
/// give each thread or task its own (readers are `Send` and cheap to
/// clone).
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, Pool, RoundRobin};
///
/// let pool = Pool::new(RoundRobin, vec![Backend::new("a:80"), Backend::new("b:80")]).unwrap();
/// let mut reader = pool.reader();
/// assert_eq!(reader.pick(Key::None).unwrap().id(), "a:80");
///
/// pool.set_down("a:80", true).unwrap();
/// // The reader sees the update on its next call.
/// assert_eq!(reader.pick(Key::None).unwrap().id(), "b:80");
/// ```
///
/// # Limitations
///
/// A reader keeps the last snapshot it saw alive until its next call or its
/// drop, so an idle reader holds the memory of a replaced backend set.
pub struct Reader<P: Policy> {
    cache: Cache<Arc<ArcSwap<Snapshot<P>>>, Arc<Snapshot<P>>>,
}

impl<P: Policy> Reader<P> {
    pub(crate) fn new(current: Arc<ArcSwap<Snapshot<P>>>) -> Self {
        Reader {
            cache: Cache::new(current),
        }
    }

    /// The pool's current snapshot.
    #[inline]
    pub fn snapshot(&mut self) -> &Arc<Snapshot<P>> {
        self.cache.load()
    }

    /// Picks a backend for one attempt, as [`Pool::pick`](crate::Pool::pick)
    /// does: the returned [`Pick`] counts as one active connection until it
    /// is dropped.
    ///
    /// # Complexity
    ///
    /// The policy's pick and one atomic increment (two for policies that
    /// keep the pool-wide count, [`Policy::COUNTS_TOTAL_ACTIVE`], which an
    /// [`AnyPolicy`](crate::policy::AnyPolicy) pool always does); no
    /// allocation, no lock, and no locked instruction for the snapshot.
    #[inline]
    pub fn pick(&mut self, key: Key<'_>) -> Option<Pick> {
        self.cache.load().pick(key)
    }

    /// The backend the policy chooses for `key`, counting no connection.
    /// See [`Snapshot::lookup`].
    ///
    /// The [`Choice`] borrows the reader; to hold several at once, look up
    /// on a snapshot: `let snap = Arc::clone(reader.snapshot());`.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::{Backend, Key, Ketama, Pool};
    ///
    /// let servers = vec![Backend::new("10.0.0.1:11211"), Backend::new("10.0.0.2:11211")];
    /// let pool = Pool::new(Ketama, servers).unwrap();
    /// let mut reader = pool.reader();
    /// let server = reader.lookup(Key::Bytes(b"user:42")).unwrap();
    /// assert_eq!(server.id(), "10.0.0.2:11211");
    /// assert_eq!(pool.total_active(), 0, "nothing counted");
    /// ```
    ///
    /// # Complexity
    ///
    /// The policy's pick; no allocation, no lock, and no locked instruction
    /// but the policy's own (round robin's cursor, for one).
    #[inline]
    pub fn lookup(&mut self, key: Key<'_>) -> Option<Choice<'_>> {
        self.cache.load().lookup(key)
    }

    /// Starts a request on the current snapshot, as
    /// [`Pool::request`](crate::Pool::request) does.
    pub fn request<'k>(&mut self, key: Key<'k>) -> Request<'k, P> {
        Request::new(Arc::clone(self.cache.load()), key)
    }
}

impl<P: Policy> Clone for Reader<P> {
    fn clone(&self) -> Self {
        Reader {
            cache: self.cache.clone(),
        }
    }
}

impl<P: Policy> std::fmt::Debug for Reader<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl<P: Policy> Snapshot<P> {
    /// Picks a backend on this snapshot, even if the pool has been updated
    /// since it was taken; the [`Pick`] counts as one active connection
    /// until dropped.
    ///
    /// # Complexity
    ///
    /// The policy's pick and one atomic increment (two for policies that
    /// keep the pool-wide count); no allocation, no lock.
    #[inline]
    pub fn pick(&self, key: Key<'_>) -> Option<Pick> {
        pick::choose_first::<P, true>(self, key).map(|i| pick::new_pick(self, i))
    }

    /// The backend the policy chooses for `key` on this snapshot, counting
    /// no connection.
    ///
    /// The choice follows the same rules as [`pick`](Self::pick): primaries
    /// before backups, down and failed-out backends skipped, a backend at
    /// `max_conns` (as counted by picks) skipped, and one caller let through
    /// to probe a failed-out backend once its `fail_timeout` has passed.
    /// What it does not do is count itself: the backend's active count,
    /// which `least_conn`, `max_conns` and the other load-aware policies
    /// read, is left alone. Report failures with [`Choice::failure`] so
    /// that passive health works as it does for picks.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::{Backend, Key, NginxHash, Pool};
    ///
    /// let pool = Pool::new(NginxHash, vec![Backend::new("a:1"), Backend::new("b:1")]).unwrap();
    /// let snap = pool.snapshot();
    /// let choice = snap.lookup(Key::Bytes(b"/index.html")).unwrap();
    /// assert_eq!(choice.id(), "a:1");
    /// choice.failure(); // a:1 reaches max_fails 1 and rests
    /// assert_eq!(snap.lookup(Key::Bytes(b"/index.html")).unwrap().id(), "b:1");
    /// ```
    ///
    /// # Complexity
    ///
    /// The policy's pick; no allocation, no lock.
    #[inline]
    pub fn lookup(&self, key: Key<'_>) -> Option<Choice<'_>> {
        let index = pick::choose_first::<P, false>(self, key)?;
        Some(Choice {
            backend: &self.specs[index],
            shared: &self.shared[index],
            index,
            generation: self.generation,
            count_failures: !self.single,
        })
    }
}

/// A backend chosen by a lookup, counting no connection.
///
/// It borrows the snapshot it was chosen on; copy out what outlives it
/// ([`id`](Choice::id), [`addr`](Choice::addr)). Reporting the outcome is
/// optional but keeps passive health working. A lookup that was let through
/// to probe a failed-out backend and is never reported leaves that backend
/// out for another `fail_timeout`, as an unreported [`Pick`] does.
#[derive(Clone, Copy)]
pub struct Choice<'s> {
    backend: &'s Backend,
    shared: &'s Shared,
    index: usize,
    generation: u64,
    count_failures: bool,
}

impl<'s> Choice<'s> {
    /// The backend, as configured.
    pub fn backend(&self) -> &'s Backend {
        self.backend
    }

    /// The backend's identity, exactly as configured.
    pub fn id(&self) -> &'s str {
        &self.backend.id
    }

    /// The identity parsed as a socket address, when it is one.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.shared.addr
    }

    /// The backend's position in the snapshot (primaries first, then
    /// backups).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The generation of the snapshot the choice was made on.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Reports a success.
    pub fn success(self) {
        self.report(Outcome::Success, None);
    }

    /// Reports a failure: with `max_fails` failures the backend rests for
    /// `fail_timeout`, as after a failed [`Pick`].
    pub fn failure(self) {
        self.report(Outcome::Failure, None);
    }

    /// Reports an outcome, optionally with the attempt's latency, as
    /// [`Pick::report`] does.
    pub fn report(self, outcome: Outcome, latency: Option<Duration>) {
        self.shared.report(
            outcome,
            latency,
            self.backend.max_fails,
            self.count_failures,
        );
    }
}

impl std::fmt::Debug for Choice<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Choice")
            .field("id", &self.id())
            .field("index", &self.index)
            .finish()
    }
}

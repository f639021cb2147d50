//! `sticky learn`: a table from the application's own session id to the
//! backend that holds the session.
//!
//! The application creates its session cookie itself; the proxy sees it
//! first in a response (`Set-Cookie: sid=...`, nginx's
//! `create=$upstream_cookie_sid`) and learns which backend sent it, then
//! finds the binding again from the request's cookie (nginx's
//! `lookup=$cookie_sid`). Bindings expire after a timeout that every use
//! renews.
//!
//! The table sits behind [`LearnStore`], so a deployment can share it
//! between proxies; [`MemoryLearnStore`] keeps it in process.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::sticky::StickyError;

/// nginx's default `timeout=` for `sticky learn`: 10 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The default capacity of a [`MemoryLearnStore`].
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Capacities from this size up are split over [`SHARDS`] locks.
const SHARDED_FROM: usize = 1_024;

/// Number of shards of a large [`MemoryLearnStore`].
const SHARDS: usize = 16;

/// nginx's `sticky learn` parameters that belong to the layer (the table's
/// size belongs to the store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnConfig {
    timeout_ms: u64,
}

impl LearnConfig {
    /// Bindings unused for `timeout` expire.
    ///
    /// # Errors
    ///
    /// [`StickyError::ZeroTimeout`] for a zero timeout, as nginx refuses it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use upstream::sticky::LearnConfig;
    ///
    /// let config = LearnConfig::new(Duration::from_secs(60)).unwrap();
    /// assert_eq!(config.timeout(), Duration::from_secs(60));
    /// assert_eq!(LearnConfig::default().timeout(), Duration::from_secs(600));
    /// assert!(LearnConfig::new(Duration::ZERO).is_err());
    /// ```
    pub fn new(timeout: Duration) -> Result<Self, StickyError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        if timeout_ms == 0 {
            return Err(StickyError::ZeroTimeout);
        }
        Ok(LearnConfig { timeout_ms })
    }

    /// The idle time after which a binding expires.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub(crate) fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            timeout_ms: 600_000,
        }
    }
}

/// What [`LearnStore::bind_if_absent`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// The session had no live binding; it is now bound to the backend given.
    Inserted,
    /// The session was already bound (its timeout is renewed): to this
    /// backend.
    Existing(Arc<str>),
}

/// A table from session ids to backend server ids.
///
/// Times are the pool clock's milliseconds; a binding whose last use is
/// `timeout_ms` or more before `now_ms` is expired and behaves as absent.
/// Implementations must make [`bind_if_absent`](LearnStore::bind_if_absent)
/// atomic: of two concurrent calls for one session, exactly one inserts and
/// the other sees its binding (a shared store does this with a
/// set-if-absent command).
pub trait LearnStore: Send + Sync + 'static {
    /// The backend bound to `session`, renewing the binding's timeout.
    fn lookup(&self, session: &str, now_ms: u64, timeout_ms: u64) -> Option<Arc<str>>;

    /// Binds `session` to `backend` unless a live binding exists.
    fn bind_if_absent(&self, session: &str, backend: &str, now_ms: u64, timeout_ms: u64) -> Bind;

    /// Binds `session` to `backend`, replacing any binding.
    fn learn(&self, session: &str, backend: &str, now_ms: u64, timeout_ms: u64);

    /// Removes the binding of `session`; true if there was one.
    fn forget(&self, session: &str) -> bool;

    /// Bindings held, expired ones not yet purged included.
    fn len(&self) -> usize;

    /// True when no binding is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The in-process [`LearnStore`]: a hash map split over shards, each behind
/// a `parking_lot` mutex held for one map operation.
///
/// # Capacity and eviction
///
/// At most `capacity` bindings are held. A new session in a full shard
/// evicts the least recently used binding, approximately: the shard's queue
/// is in insertion order, and the first binding in it that has expired or
/// was not used since it was queued goes; a binding used since gets a
/// second chance (it is queued again, the CLOCK policy).
/// Expired bindings are also dropped when looked up. Capacities of 1,024 and
/// more are split over 16 shards of `capacity / 16` bindings each, so that
/// one shard may fill (and evict) while others have room.
///
/// # Complexity
///
/// Lookup: O(1) expected under one shard lock. Insertion: O(1) amortized;
/// a shard whose queue of stale entries grows past twice its size is
/// compacted in O(s log s).
///
/// # Examples
///
/// ```
/// use upstream::sticky::{Bind, LearnStore, MemoryLearnStore};
///
/// let store = MemoryLearnStore::new(100).unwrap();
/// assert_eq!(store.bind_if_absent("s1", "a", 0, 1_000), Bind::Inserted);
/// assert_eq!(store.bind_if_absent("s1", "b", 10, 1_000), Bind::Existing("a".into()));
/// assert_eq!(store.lookup("s1", 1_009, 1_000).as_deref(), Some("a"));
/// assert_eq!(store.lookup("s1", 2_009, 1_000), None, "idle for the whole timeout");
/// ```
pub struct MemoryLearnStore {
    shards: Box<[Mutex<Shard>]>,
    /// Fixed seeds, so that shard choice (and with it eviction) is the same
    /// in every run.
    hasher: ahash::RandomState,
}

struct Shard {
    map: ahash::AHashMap<Arc<str>, Entry>,
    /// Keys in the order they are due for eviction, with the `seq` and last
    /// use they were queued with.
    queue: VecDeque<Queued>,
    capacity: usize,
    next_seq: u64,
}

struct Entry {
    backend: Arc<str>,
    last_ms: u64,
    /// Tells this binding's queue item apart from those of an earlier
    /// binding of the same session.
    seq: u64,
}

struct Queued {
    session: Arc<str>,
    seq: u64,
    last_ms: u64,
}

impl MemoryLearnStore {
    /// A store holding at most `capacity` bindings.
    ///
    /// # Errors
    ///
    /// [`StickyError::ZeroCapacity`] for a capacity of 0.
    pub fn new(capacity: usize) -> Result<Self, StickyError> {
        if capacity == 0 {
            return Err(StickyError::ZeroCapacity);
        }
        Ok(MemoryLearnStore::build(capacity))
    }

    fn build(capacity: usize) -> Self {
        let shards = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        let per_shard = capacity / shards;
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    map: ahash::AHashMap::new(),
                    queue: VecDeque::new(),
                    capacity: per_shard,
                    next_seq: 0,
                })
            })
            .collect();
        MemoryLearnStore {
            shards,
            hasher: ahash::RandomState::with_seeds(
                0x5eed_0001,
                0x5eed_0002,
                0x5eed_0003,
                0x5eed_0004,
            ),
        }
    }

    /// The most bindings this store holds.
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|s| s.lock().capacity).sum()
    }

    fn shard(&self, session: &str) -> &Mutex<Shard> {
        let n = u64::try_from(self.shards.len()).unwrap_or(1);
        let i = self.hasher.hash_one(session) % n.max(1);
        // `i < n`, which came from a usize.
        &self.shards[usize::try_from(i).unwrap_or(0)]
    }
}

impl Default for MemoryLearnStore {
    /// A store of [`DEFAULT_CAPACITY`] bindings.
    fn default() -> Self {
        MemoryLearnStore::build(DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for MemoryLearnStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLearnStore")
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .finish()
    }
}

fn expired(last_ms: u64, now_ms: u64, timeout_ms: u64) -> bool {
    now_ms.saturating_sub(last_ms) >= timeout_ms
}

impl Shard {
    /// The live entry of `session`, dropping it if expired.
    fn live(&mut self, session: &str, now_ms: u64, timeout_ms: u64) -> Option<&mut Entry> {
        let is_expired = expired(self.map.get(session)?.last_ms, now_ms, timeout_ms);
        if is_expired {
            self.map.remove(session);
            self.compact_if_stale();
            return None;
        }
        self.map.get_mut(session)
    }

    fn insert(&mut self, session: &str, backend: &str, now_ms: u64, timeout_ms: u64) {
        if self.map.len() >= self.capacity {
            self.evict_one(now_ms, timeout_ms);
        }
        let key: Arc<str> = Arc::from(session);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Queued {
            session: Arc::clone(&key),
            seq,
            last_ms: now_ms,
        });
        self.map.insert(
            key,
            Entry {
                backend: Arc::from(backend),
                last_ms: now_ms,
                seq,
            },
        );
        self.compact_if_stale();
    }

    /// Drops expired bindings at the head of the queue, then evicts one
    /// binding not used since it was queued (second chance for the others).
    fn evict_one(&mut self, now_ms: u64, timeout_ms: u64) {
        // Each binding is queued again at most once per call (its queued
        // time then equals its last use), so this ends within two passes.
        while let Some(item) = self.queue.pop_front() {
            let Some(entry) = self.map.get(&item.session) else {
                continue;
            };
            if entry.seq != item.seq {
                continue;
            }
            if expired(entry.last_ms, now_ms, timeout_ms) || entry.last_ms == item.last_ms {
                self.map.remove(&item.session);
                return;
            }
            let last_ms = entry.last_ms;
            self.queue.push_back(Queued { last_ms, ..item });
        }
    }

    /// Rebuilds the queue when removed bindings left it over twice the map.
    fn compact_if_stale(&mut self) {
        if self.queue.len() <= 2 * self.map.len() + 16 {
            return;
        }
        let mut live: Vec<Queued> = self
            .map
            .iter()
            .map(|(k, e)| Queued {
                session: Arc::clone(k),
                seq: e.seq,
                last_ms: e.last_ms,
            })
            .collect();
        live.sort_by_key(|q| (q.last_ms, q.seq));
        self.queue = live.into();
    }
}

impl LearnStore for MemoryLearnStore {
    fn lookup(&self, session: &str, now_ms: u64, timeout_ms: u64) -> Option<Arc<str>> {
        let mut shard = self.shard(session).lock();
        let entry = shard.live(session, now_ms, timeout_ms)?;
        entry.last_ms = entry.last_ms.max(now_ms);
        Some(Arc::clone(&entry.backend))
    }

    fn bind_if_absent(&self, session: &str, backend: &str, now_ms: u64, timeout_ms: u64) -> Bind {
        let mut shard = self.shard(session).lock();
        if let Some(entry) = shard.live(session, now_ms, timeout_ms) {
            entry.last_ms = entry.last_ms.max(now_ms);
            return Bind::Existing(Arc::clone(&entry.backend));
        }
        shard.insert(session, backend, now_ms, timeout_ms);
        Bind::Inserted
    }

    fn learn(&self, session: &str, backend: &str, now_ms: u64, timeout_ms: u64) {
        let mut shard = self.shard(session).lock();
        if let Some(entry) = shard.live(session, now_ms, timeout_ms) {
            entry.last_ms = entry.last_ms.max(now_ms);
            if &*entry.backend != backend {
                entry.backend = Arc::from(backend);
            }
            return;
        }
        shard.insert(session, backend, now_ms, timeout_ms);
    }

    fn forget(&self, session: &str) -> bool {
        let mut shard = self.shard(session).lock();
        let removed = shard.map.remove(session).is_some();
        shard.compact_if_stale();
        removed
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000;

    #[test]
    fn timeout_is_renewed_by_use() {
        let s = MemoryLearnStore::new(10).unwrap();
        s.learn("a", "x", 0, T);
        assert_eq!(s.lookup("a", 999, T).as_deref(), Some("x"));
        // Renewed at 999: alive until 1998 inclusive.
        assert_eq!(s.lookup("a", 1_998, T).as_deref(), Some("x"));
        assert_eq!(s.lookup("a", 2_998, T), None);
        assert_eq!(s.len(), 0, "an expired binding is dropped when met");
    }

    #[test]
    fn learn_replaces_and_bind_keeps() {
        let s = MemoryLearnStore::new(10).unwrap();
        assert_eq!(s.bind_if_absent("a", "x", 0, T), Bind::Inserted);
        assert_eq!(s.bind_if_absent("a", "y", 5, T), Bind::Existing("x".into()));
        s.learn("a", "y", 6, T);
        assert_eq!(s.lookup("a", 7, T).as_deref(), Some("y"));
        // An expired binding does not block a new one.
        assert_eq!(s.bind_if_absent("a", "z", 1_007, T), Bind::Inserted);
        assert_eq!(s.lookup("a", 1_008, T).as_deref(), Some("z"));
        assert!(s.forget("a"));
        assert!(!s.forget("a"));
        assert!(s.is_empty());
    }

    #[test]
    fn full_store_evicts_least_recently_used_with_second_chance() {
        let s = MemoryLearnStore::new(3).unwrap();
        s.learn("a", "x", 0, T);
        s.learn("b", "x", 1, T);
        s.learn("c", "x", 2, T);
        // "a" is used again: "b" is now the least recently used.
        assert!(s.lookup("a", 3, T).is_some());
        s.learn("d", "x", 4, T);
        assert_eq!(s.len(), 3);
        assert_eq!(s.lookup("b", 5, T), None);
        assert!(s.lookup("a", 5, T).is_some());
        assert!(s.lookup("c", 5, T).is_some());
        assert!(s.lookup("d", 5, T).is_some());
        // Queue order is c, a, d, all used at 5: each gets a second
        // chance, then c, first in line again, goes.
        s.learn("e", "x", 6, T);
        assert_eq!(s.lookup("c", 7, T), None);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn full_store_evicts_an_expired_binding_before_a_live_one() {
        let s = MemoryLearnStore::new(2).unwrap();
        s.learn("a", "x", 0, T);
        s.learn("b", "x", 500, T);
        assert!(s.lookup("a", 600, T).is_some());
        // At 1550 "b" has expired and "a" (used at 600) has not.
        s.learn("c", "x", 1_550, T);
        assert_eq!(s.lookup("b", 1_551, T), None);
        assert!(s.lookup("a", 1_551, T).is_some());
        assert!(s.lookup("c", 1_551, T).is_some());
    }

    #[test]
    fn queue_stays_bounded_under_churn() {
        let s = MemoryLearnStore::new(4).unwrap();
        for i in 0..1_000u64 {
            let id = format!("s{}", i % 3);
            s.learn(&id, "x", i * T, T); // each earlier binding has expired
            assert_eq!(s.lookup(&id, i * T, T).as_deref(), Some("x"));
            assert!(s.forget(&id));
        }
        let shard = s.shards[0].lock();
        assert!(shard.queue.len() <= 16, "queue {}", shard.queue.len());
    }

    #[test]
    fn capacity_is_split_over_shards_when_large() {
        assert_eq!(MemoryLearnStore::new(1_000).unwrap().capacity(), 1_000);
        assert_eq!(MemoryLearnStore::new(1_000).unwrap().shards.len(), 1);
        assert_eq!(MemoryLearnStore::new(1_030).unwrap().capacity(), 1_024);
        assert_eq!(MemoryLearnStore::default().capacity(), DEFAULT_CAPACITY);
        assert_eq!(
            MemoryLearnStore::new(0).unwrap_err(),
            StickyError::ZeroCapacity
        );
    }
}

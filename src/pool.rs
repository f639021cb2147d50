//! The live pool: one immutable snapshot behind one swap.
//!
//! A [`Pool`] is shared by every thread of a proxy. Picks read the current
//! [`Snapshot`] through `arc-swap` and touch only atomics. Updates take a
//! writer-side mutex, build a complete new snapshot (backends, their live
//! state carried over by identity, and the policy's tables) and swap it in
//! with one store, so a reader never sees new backends with old tables.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::backend::{Backend, BackendSet, IntoBackendSet};
use crate::clock::{Clock, MonotonicClock};
use crate::error::BuildError;
use crate::latency::LatencyEwma;
use crate::live::{up_since_now, Event, Observer, PoolShared, Shared};
use crate::panic::AllDown;
use crate::pick::{Pick, Request};
use crate::policy::{Candidates, Key, Policy};
use crate::random::{RandomSource, SplitMix64};
use crate::reader::Reader;
use crate::slow_start::SlowStart;

/// One immutable view of the pool: backends, live state, policy tables.
///
/// Backends are stored primaries first, then backups, each group in config
/// order; [`Pick::index`] and [`Snapshot::backend`] use that order.
pub struct Snapshot<P: Policy> {
    pub(crate) policy: P,
    pub(crate) specs: Box<[Backend]>,
    pub(crate) shared: Box<[Arc<Shared>]>,
    pub(crate) n_primary: usize,
    pub(crate) primary: P::Table,
    pub(crate) backup: Option<P::Table>,
    /// nginx's `single`: one primary and no backup; failures not counted.
    pub(crate) single: bool,
    pub(crate) generation: u64,
    pub(crate) pool: Arc<PoolShared>,
    /// Identity to index, for O(1) lookups by tools and sticky layers.
    by_id: ahash::AHashMap<Box<str>, usize>,
    /// Sticky server id of each backend: its route, or the MD5 of its id.
    route_ids: Box<[Box<str>]>,
    by_route: ahash::AHashMap<Box<str>, usize>,
}

impl<P: Policy> Snapshot<P> {
    /// The policy this snapshot was built with.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// Number of backends, primaries and backups.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when the snapshot holds no backend.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Backend `i` in snapshot order (primaries, then backups).
    pub fn backend(&self, i: usize) -> Option<&Backend> {
        self.specs.get(i)
    }

    /// All backends in snapshot order.
    pub fn backends(&self) -> &[Backend] {
        &self.specs
    }

    /// The position of backend `id` in snapshot order.
    ///
    /// # Complexity
    ///
    /// O(1) expected: one hash-map lookup.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The sticky server id of backend `i`: its `route` if it has one, else
    /// the lowercase hex MD5 of its identity, as nginx's `sticky` computes it.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::{Backend, Pool, RoundRobin};
    ///
    /// let pool = Pool::new(RoundRobin, vec![Backend::new("127.0.0.1:18081")]).unwrap();
    /// assert_eq!(pool.snapshot().route_id(0), Some("7f3797d6a7e152c9ae2760fc816c6014"));
    /// ```
    pub fn route_id(&self, i: usize) -> Option<&str> {
        self.route_ids.get(i).map(|r| &**r)
    }

    /// The backend whose sticky server id is `route`.
    ///
    /// # Complexity
    ///
    /// O(1) expected: one hash-map lookup.
    pub fn index_of_route(&self, route: &str) -> Option<usize> {
        self.by_route.get(route).copied()
    }

    /// Unreleased picks of backend `i`, whichever snapshot made them.
    pub fn active(&self, i: usize) -> u32 {
        self.shared.get(i).map_or(0, |s| s.active())
    }

    /// Backend `i`'s latency estimate now (see [`LatencyEwma`]), or `None`
    /// before its first reported response.
    pub fn latency(&self, i: usize) -> Option<Duration> {
        let now = self.pool.clock.now_ms();
        let ns = self.shared.get(i)?.latency_ns(now)?;
        Some(Duration::from_nanos(ns.round() as u64))
    }

    /// nginx's failure count of backend `i`.
    pub fn fails(&self, i: usize) -> u32 {
        // Relaxed: a gauge for inspection.
        self.shared
            .get(i)
            .map_or(0, |s| s.live.fails.load(Ordering::Relaxed))
    }

    /// The primary tier's prebuilt table.
    pub fn primary_table(&self) -> &P::Table {
        &self.primary
    }

    /// Counts from 1, one per swap.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of primary backends; backups follow them.
    pub fn primaries(&self) -> usize {
        self.n_primary
    }

    /// True when backend `i` can take a new client now: not down, not
    /// failed out, below `max_conns`, not draining, of positive weight.
    /// Sticky layers use it to see whether a primary serves again.
    ///
    /// # Complexity
    ///
    /// O(1); reads the clock only when the backend has failures counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::{Backend, Key, ManualClock, Pool, RoundRobin};
    ///
    /// let pool = Pool::builder(RoundRobin)
    ///     .clock(ManualClock::new(5))
    ///     .build(vec![Backend::new("a:1"), Backend::new("b:1").drain(true)])
    ///     .unwrap();
    /// let snap = pool.snapshot();
    /// assert_eq!((snap.is_available(0), snap.is_available(1)), (true, false));
    /// assert!(!snap.is_available(2), "out of range");
    /// pool.pick(Key::None).unwrap().failure(); // a:1 reaches max_fails 1
    /// assert!(!snap.is_available(0));
    /// assert_eq!(snap.now_ms(), 5);
    /// ```
    pub fn is_available(&self, i: usize) -> bool {
        if i >= self.specs.len() {
            return false;
        }
        let range = if i < self.n_primary {
            0..self.n_primary
        } else {
            self.n_primary..self.specs.len()
        };
        let cands = Candidates::untried(
            &self.specs[range.clone()],
            &self.shared[range.clone()],
            range.start,
            &*self.pool.clock,
        );
        cands.is_available(i - range.start)
    }

    /// The pool clock's time in ms, as failure windows and sticky tables
    /// read it.
    pub fn now_ms(&self) -> u64 {
        self.pool.clock.now_ms()
    }

    fn build(
        policy: P,
        set: &BackendSet,
        prev: Option<&Snapshot<P>>,
        retired: &Retired,
        pool: &Arc<PoolShared>,
        generation: u64,
    ) -> Result<Self, BuildError> {
        policy.validate(set)?;

        // Carry live state over by identity.
        let old: ahash::AHashMap<&str, &Arc<Shared>> = prev
            .map(|p| {
                p.specs
                    .iter()
                    .map(|b| b.id.as_str())
                    .zip(p.shared.iter())
                    .collect()
            })
            .unwrap_or_default();
        let ordered: Vec<&Backend> = set
            .backends()
            .iter()
            .filter(|b| !b.backup)
            .chain(set.backends().iter().filter(|b| b.backup))
            .collect();
        let shared: Box<[Arc<Shared>]> = ordered
            .iter()
            .map(|b| match old.get(b.id.as_str()) {
                Some(s) => Arc::clone(s),
                None => retired
                    .get(b.id.as_str())
                    .and_then(Weak::upgrade)
                    .unwrap_or_else(|| Shared::new(b, pool)),
            })
            .collect();
        let specs: Box<[Backend]> = ordered.into_iter().cloned().collect();
        let n_primary = specs.iter().take_while(|b| !b.backup).count();
        let by_id = specs
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.clone().into_boxed_str(), i))
            .collect();
        let route_ids: Box<[Box<str>]> = specs.iter().map(sticky_server_id).collect();
        let mut by_route = ahash::AHashMap::with_capacity(specs.len());
        for (i, r) in route_ids.iter().enumerate() {
            // Two backends may share a route; the first in snapshot order wins.
            by_route.entry(r.clone()).or_insert(i);
        }

        let primary = policy.build(&specs[..n_primary], prev.map(|p| &p.primary))?;
        let backup = if n_primary < specs.len() {
            let prev_backup = prev.and_then(|p| p.backup.as_ref());
            Some(policy.build(&specs[n_primary..], prev_backup)?)
        } else {
            None
        };
        Ok(Snapshot {
            single: n_primary == 1 && specs.len() == 1,
            policy,
            specs,
            shared,
            n_primary,
            primary,
            backup,
            generation,
            pool: Arc::clone(pool),
            by_id,
            route_ids,
            by_route,
        })
    }
}

/// nginx's sticky server id: the route, else the hex MD5 of the identity.
fn sticky_server_id(b: &Backend) -> Box<str> {
    use md5::Digest;
    if let Some(route) = &b.route {
        return route.clone().into_boxed_str();
    }
    let digest = md5::Md5::digest(b.id.as_bytes());
    digest
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()
        .into_boxed_str()
}

/// Live state of removed backends, kept while picks on them are held.
type Retired = ahash::AHashMap<Box<str>, Weak<Shared>>;

/// A pool of backends shared across threads, balanced by policy `P`.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, Pool, RoundRobin};
///
/// let pool = Pool::new(
///     RoundRobin,
///     vec![Backend::new("a:80").weight(2), Backend::new("b:80")],
/// )
/// .unwrap();
/// let picks: Vec<String> =
///     (0..3).map(|_| pool.pick(Key::None).unwrap().id().to_string()).collect();
/// assert_eq!(picks, ["a:80", "b:80", "a:80"]);
///
/// // Live updates: no reload, no lock on the pick path.
/// pool.set_down("a:80", true).unwrap();
/// assert_eq!(pool.pick(Key::None).unwrap().id(), "b:80");
/// ```
pub struct Pool<P: Policy> {
    /// Behind an `Arc` so that [`Reader`]s can hold it.
    current: Arc<ArcSwap<Snapshot<P>>>,
    /// Serializes writers and holds the set as configured (config order).
    writer: Mutex<BackendSet>,
    /// Removed backends, by identity, while a pick on them is still held.
    /// Locked under `writer` by swaps, and alone by `total_active`.
    retired: Mutex<Retired>,
    shared: Arc<PoolShared>,
    generation: AtomicU64,
}

/// Builds a [`Pool`] with a chosen clock and observer.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, ManualClock, Pool, RoundRobin};
///
/// let clock = ManualClock::new(0);
/// let pool = Pool::builder(RoundRobin)
///     .clock(clock.clone())
///     .observer(|event| eprintln!("{event:?}"))
///     .build(vec![Backend::new("a:80")])
///     .unwrap();
/// assert_eq!(pool.snapshot().len(), 1);
/// ```
pub struct PoolBuilder<P: Policy> {
    policy: P,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    slow_start: Option<SlowStart>,
    latency: LatencyEwma,
    all_down: AllDown,
    observer: Option<Observer>,
}

impl<P: Policy> PoolBuilder<P> {
    /// Uses `clock` for failure windows and every other time-based rule.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses `random` for every random draw of the pool's picks (random
    /// policies, power-of-d choices, slow start's admission). The default is
    /// an OS-seeded [`SplitMix64`]; tests install a
    /// [`Sequence`](crate::Sequence) to know every draw.
    pub fn random(mut self, random: impl RandomSource) -> Self {
        self.random = Arc::new(random);
        self
    }

    /// Ramps backends that come back (added after the pool was built,
    /// marked up again, or back from a failure timeout) from a minimum share
    /// to full weight over a window, for every policy: see [`SlowStart`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use upstream::{Backend, ManualClock, Pool, RoundRobin, SlowStart};
    ///
    /// let pool = Pool::builder(RoundRobin)
    ///     .clock(ManualClock::new(1_000))
    ///     .slow_start(SlowStart::new(Duration::from_secs(30)).aggression(1.5))
    ///     .build(vec![Backend::new("a:80")])
    ///     .unwrap();
    /// pool.add(Backend::new("b:80")).unwrap(); // "b:80" ramps for 30 s
    /// ```
    pub fn slow_start(mut self, slow_start: SlowStart) -> Self {
        self.slow_start = Some(slow_start);
        self
    }

    /// Sets how reported latencies feed each backend's estimate (decay time
    /// constant, failure penalty): see [`LatencyEwma`]. Every pool keeps the
    /// estimate; [`PeakEwma`](crate::PeakEwma) balances by it.
    pub fn latency_ewma(mut self, latency: LatencyEwma) -> Self {
        self.latency = latency;
        self
    }

    /// Sets what happens when backends fail: [`AllDown::FailClosed`] (the
    /// default: no pick once every candidate is failed out) or Envoy's panic
    /// mode below a healthy share ([`AllDown::panic`]).
    pub fn all_down(mut self, all_down: AllDown) -> Self {
        self.all_down = all_down;
        self
    }

    /// Calls `observer` on each [`Event`] (backend marked down or back up,
    /// set swapped), on the thread that caused it. Never called per pick.
    pub fn observer(mut self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Validates `backends` and builds the pool.
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the backend at fault, or the slow start
    /// setting that is out of range.
    pub fn build(self, backends: impl IntoBackendSet) -> Result<Pool<P>, BuildError> {
        let set = backends.into_backend_set()?;
        if let Some(slow_start) = &self.slow_start {
            slow_start.validate()?;
        }
        self.latency.validate()?;
        self.all_down.validate()?;
        let shared = Arc::new(PoolShared {
            clock: self.clock,
            random: self.random,
            slow_start: self.slow_start,
            latency: self.latency,
            all_down: self.all_down,
            total_active: AtomicU64::new(0),
            observer: self.observer,
        });
        let snap = Snapshot::build(self.policy, &set, None, &Retired::default(), &shared, 1)?;
        for backend in snap.shared.iter() {
            // Relaxed: published with the snapshot by the pool's creation.
            // The first build's backends are warm: slow start skips them.
            backend.live.up_since.store(0, Ordering::Relaxed);
        }
        Ok(Pool {
            current: Arc::new(ArcSwap::from_pointee(snap)),
            writer: Mutex::new(set),
            retired: Mutex::new(Retired::default()),
            shared,
            generation: AtomicU64::new(1),
        })
    }
}

impl<P: Policy> Pool<P> {
    /// A pool over `backends` with the system clock.
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the backend at fault.
    ///
    /// # Complexity
    ///
    /// One table build: see the policy's documentation.
    pub fn new(policy: P, backends: impl IntoBackendSet) -> Result<Self, BuildError> {
        Pool::builder(policy).build(backends)
    }

    /// A builder, to choose the clock and an observer.
    pub fn builder(policy: P) -> PoolBuilder<P> {
        PoolBuilder {
            policy,
            clock: Arc::new(MonotonicClock::new()),
            random: Arc::new(SplitMix64::new()),
            slow_start: None,
            latency: LatencyEwma::new(),
            all_down: AllDown::FailClosed,
            observer: None,
        }
    }

    /// Picks a backend for one attempt, with no retries.
    ///
    /// Returns `None` when no backend can take the request. The returned
    /// [`Pick`] counts as one active connection until it is dropped.
    ///
    /// # Complexity
    ///
    /// One snapshot load, the policy's pick, one atomic increment (two for
    /// policies that keep the pool-wide count); no allocation and no lock.
    ///
    /// A thread that picks often does better with its own [`Reader`],
    /// which skips the snapshot load's two locked instructions.
    #[inline]
    pub fn pick(&self, key: Key<'_>) -> Option<Pick> {
        self.current.load().pick(key)
    }

    /// A reader for one thread or task: the same picks, plus
    /// [`lookup`](Reader::lookup)s that count no connection, with the
    /// snapshot cached and revalidated by one atomic load per call.
    pub fn reader(&self) -> Reader<P> {
        Reader::new(Arc::clone(&self.current))
    }

    /// Starts a request that may need several attempts. Each
    /// [`Request::next`] returns a backend not yet tried for it, following
    /// nginx's `proxy_next_upstream`, until the candidates run out. The
    /// request keeps the snapshot it started on.
    pub fn request<'k>(&self, key: Key<'k>) -> Request<'k, P> {
        Request::new(self.current.load_full(), key)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot<P>> {
        self.current.load_full()
    }

    /// The backend set as configured, in config order.
    pub fn backend_set(&self) -> BackendSet {
        self.writer.lock().clone()
    }

    /// Replaces the whole backend set, keeping the policy.
    ///
    /// Live state carries over for every identity in both sets.
    ///
    /// # Errors
    ///
    /// [`BuildError`]; the pool then keeps its current snapshot.
    ///
    /// # Complexity
    ///
    /// O(n) plus one table build per tier, all off the pick path.
    pub fn replace(&self, backends: impl IntoBackendSet) -> Result<(), BuildError> {
        let set = backends.into_backend_set()?;
        let mut writer = self.writer.lock();
        let policy = self.current.load().policy.clone();
        self.install(&mut writer, set, policy)
    }

    /// Replaces the policy and the backend set together, in one swap.
    ///
    /// # Errors
    ///
    /// [`BuildError`]; the pool then keeps its current snapshot.
    pub fn reconfigure(&self, policy: P, backends: impl IntoBackendSet) -> Result<(), BuildError> {
        let set = backends.into_backend_set()?;
        let mut writer = self.writer.lock();
        self.install(&mut writer, set, policy)
    }

    /// Edits the configured set in place, then validates and swaps it in.
    ///
    /// # Errors
    ///
    /// [`BuildError`]; the edit is then discarded and nothing changes.
    pub fn update(&self, edit: impl FnOnce(&mut Vec<Backend>)) -> Result<(), BuildError> {
        let mut writer = self.writer.lock();
        let mut backends = writer.clone().into_vec();
        edit(&mut backends);
        let set = BackendSet::new(backends)?;
        let policy = self.current.load().policy.clone();
        self.install(&mut writer, set, policy)
    }

    /// Adds one backend at the end of the set.
    ///
    /// # Errors
    ///
    /// [`BuildError::Duplicate`] if the identity is already present, or any
    /// other validation error.
    pub fn add(&self, backend: Backend) -> Result<(), BuildError> {
        self.update(|set| set.push(backend))
    }

    /// Removes backend `id`. Picks already made on it stay accounted.
    ///
    /// # Errors
    ///
    /// [`BuildError::NotFound`] when no backend has that identity.
    pub fn remove(&self, id: &str) -> Result<(), BuildError> {
        self.edit_one(id, |set, i| {
            set.remove(i);
        })
    }

    /// Marks backend `id` down or up.
    ///
    /// # Errors
    ///
    /// [`BuildError::NotFound`] when no backend has that identity.
    pub fn set_down(&self, id: &str, down: bool) -> Result<(), BuildError> {
        self.edit_one(id, |set, i| set[i].down = down)
    }

    /// Changes the weight of backend `id`.
    ///
    /// # Errors
    ///
    /// [`BuildError::NotFound`], or [`BuildError::WeightTooLarge`].
    pub fn set_weight(&self, id: &str, weight: u32) -> Result<(), BuildError> {
        self.edit_one(id, |set, i| set[i].weight = weight)
    }

    fn edit_one(
        &self,
        id: &str,
        edit: impl FnOnce(&mut Vec<Backend>, usize),
    ) -> Result<(), BuildError> {
        let mut found = true;
        let result = self.update(|set| match set.iter().position(|b| b.id == id) {
            Some(i) => edit(set, i),
            None => found = false,
        });
        if !found {
            return Err(BuildError::NotFound { id: id.to_string() });
        }
        result
    }

    fn install(
        &self,
        writer: &mut BackendSet,
        set: BackendSet,
        policy: P,
    ) -> Result<(), BuildError> {
        let prev = self.current.load_full();
        // Relaxed: generations are only compared for equality and order
        // under the writer lock.
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let mut retired = self.retired.lock();
        let snap = Snapshot::build(
            policy,
            &set,
            Some(&prev),
            &retired,
            &self.shared,
            generation,
        )?;
        // Backends removed while picks on them are held keep their live
        // state here, so that adding one back does not reset its counts.
        retired.retain(|id, weak| weak.strong_count() > 0 && snap.index_of(id).is_none());
        for (spec, shared) in prev.specs.iter().zip(prev.shared.iter()) {
            if snap.index_of(&spec.id).is_none() {
                retired.insert(spec.id.clone().into_boxed_str(), Arc::downgrade(shared));
            }
        }
        let backends = snap.len();
        let was_down: ahash::AHashSet<&str> = prev
            .specs
            .iter()
            .filter(|b| b.down)
            .map(|b| b.id.as_str())
            .collect();
        for (spec, shared) in snap.specs.iter().zip(snap.shared.iter()) {
            if !spec.down && was_down.contains(spec.id.as_str()) {
                // Relaxed: published with the snapshot by the swap below.
                shared
                    .live
                    .up_since
                    .store(up_since_now(&*self.shared.clock), Ordering::Relaxed);
            }
        }
        // Swapped under the retired map's lock, so that total_active never
        // sees a removed backend in both places or in neither.
        self.current.store(Arc::new(snap));
        drop(retired);
        self.generation.store(generation, Ordering::Relaxed);
        *writer = set;
        self.shared.emit(Event::Swapped {
            generation,
            backends,
        });
        Ok(())
    }

    /// Unreleased picks over the whole pool, on backends of the current set
    /// and on backends removed since they were picked.
    ///
    /// # Complexity
    ///
    /// O(1) for policies that keep the pool-wide count
    /// ([`Policy::COUNTS_TOTAL_ACTIVE`]). For the others, which leave that
    /// count off the pick path, O(n + r) for r removed backends still held
    /// by picks or snapshots, under the lock of the removed backends' map
    /// (never taken by picks).
    pub fn total_active(&self) -> u64 {
        if P::COUNTS_TOTAL_ACTIVE {
            // Relaxed: a gauge.
            return self.shared.total_active.load(Ordering::Relaxed);
        }
        // The retired map's lock keeps a swap from moving a backend between
        // the current snapshot and the map while they are summed.
        let retired = self.retired.lock();
        let current: u64 = self
            .current
            .load()
            .shared
            .iter()
            .map(|s| u64::from(s.active()))
            .sum();
        let removed: u64 = retired
            .values()
            .filter_map(Weak::upgrade)
            .map(|s| u64::from(s.active()))
            .sum();
        current + removed
    }
}

//! Picks that account for themselves, and requests that retry.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::live::Shared;
use crate::panic::AllDown;
use crate::policy::{Candidates, Key, Policy, RampMode};
use crate::pool::Snapshot;
use crate::slow_start::RAMP_ONE;
use crate::tried::TriedSet;

/// The outcome of one attempt, as the caller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered.
    Success,
    /// The attempt failed in a way that counts against the backend
    /// (connect error, timeout, a 502/504 the caller treats as failure).
    Failure,
}

/// One chosen backend. While it lives it counts as one active connection
/// on that backend; dropping it releases the count, whichever snapshot is
/// current by then.
///
/// Report how the attempt went with [`success`](Pick::success) or
/// [`failure`](Pick::failure); a pick dropped without a report releases
/// its count and leaves health untouched.
#[must_use = "a pick counts as an active connection until dropped"]
pub struct Pick {
    shared: Arc<Shared>,
    index: usize,
    generation: u64,
    max_fails: u32,
    count_failures: bool,
    /// Whether this pick added itself to the pool-wide count.
    counted_in_total: bool,
}

impl Pick {
    /// The backend's identity, exactly as configured.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The identity parsed as a socket address, when it is one.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.shared.addr
    }

    /// The backend's position in the snapshot the pick was made on
    /// (primaries first, then backups).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The generation of the snapshot the pick was made on.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Reports a success and releases the pick.
    pub fn success(self) {
        self.report(Outcome::Success, None);
    }

    /// Reports a failure and releases the pick. With `max_fails` failures
    /// the backend rests for `fail_timeout` (nginx's passive health).
    pub fn failure(self) {
        self.report(Outcome::Failure, None);
    }

    /// Reports an outcome, optionally with the attempt's latency, and
    /// releases the pick.
    ///
    /// The latency feeds the backend's
    /// [latency estimate](crate::LatencyEwma): a success without a latency
    /// leaves it alone; a failure counts as a response at least as slow as
    /// the pool's failure penalty.
    pub fn report(self, outcome: Outcome, latency: Option<Duration>) {
        self.shared
            .report(outcome, latency, self.max_fails, self.count_failures);
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.shared.release_slot();
        if self.counted_in_total {
            // Relaxed: a gauge; see new_pick.
            self.shared
                .pool
                .total_active
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Pick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pick")
            .field("id", &self.id())
            .field("index", &self.index)
            .finish()
    }
}

/// Which group of backends a request is picking from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    Primary,
    Backup,
    /// The primaries again, failures ignored (see [`AllDown`](crate::AllDown)).
    PanicPrimary,
    /// The backups again, failures ignored.
    PanicBackup,
    Exhausted,
}

impl Tier {
    fn panics(self) -> bool {
        matches!(self, Tier::PanicPrimary | Tier::PanicBackup)
    }
}

/// The tier after `from` that applies to `snap`: backups only if there are
/// some, panic tiers only below the pool's healthy threshold.
fn advance<P: Policy>(snap: &Snapshot<P>, from: Tier) -> Tier {
    let backups = snap.n_primary..snap.specs.len();
    let mut tier = from;
    loop {
        tier = match tier {
            Tier::Primary => Tier::Backup,
            Tier::Backup => Tier::PanicPrimary,
            Tier::PanicPrimary => Tier::PanicBackup,
            Tier::PanicBackup | Tier::Exhausted => return Tier::Exhausted,
        };
        let applies = match tier {
            Tier::Backup => snap.backup.is_some(),
            Tier::PanicPrimary => panics(snap, 0..snap.n_primary),
            Tier::PanicBackup => snap.backup.is_some() && panics(snap, backups.clone()),
            Tier::Primary | Tier::Exhausted => true,
        };
        if applies {
            return tier;
        }
    }
}

/// True when the healthy share of the tier `range` is below the pool's
/// panic threshold. O(n), only once the normal tiers gave nothing.
fn panics<P: Policy>(snap: &Snapshot<P>, range: std::ops::Range<usize>) -> bool {
    let all_down = snap.pool.all_down;
    if all_down == AllDown::FailClosed {
        return false;
    }
    let now = snap.pool.clock.now_ms();
    let (mut eligible, mut healthy) = (0, 0);
    for (spec, shared) in snap.specs[range.clone()].iter().zip(&snap.shared[range]) {
        if spec.down || spec.drain || spec.weight == 0 {
            continue;
        }
        eligible += 1;
        if !shared.failed_out(spec, || now) {
            healthy += 1;
        }
    }
    all_down.panics(healthy, eligible)
}

/// Slow start applies by admission to `snap`'s picks. Not kept in the
/// snapshot: for policies that never admit, the compiler folds it to false.
#[inline(always)]
fn admits<P: Policy>(snap: &Snapshot<P>) -> bool {
    snap.policy.ramp_mode() == RampMode::Admission && snap.pool.slow_start.is_some()
}

/// Most ramping backends slow start's admission may turn down in one pick.
const MAX_SKIPPED: usize = 8;

/// Picks the next untried backend: primaries first, then backups.
///
/// With slow start and a policy in [`RampMode::Admission`], a ramping
/// backend the policy chooses is kept with probability equal to its ramp
/// factor; otherwise it is skipped for this pick (not marked tried) and the
/// policy chooses again. If a tier runs out with backends skipped, it is
/// asked once more without admission, so slow start never fails a pick.
#[inline]
pub(crate) fn next<P: Policy>(
    snap: &Snapshot<P>,
    key: Key<'_>,
    tried: &mut TriedSet,
    tier: &mut Tier,
    state: &mut P::State,
) -> Option<Pick> {
    choose::<P, true>(snap, key, tried, tier, state).map(|i| new_pick(snap, i))
}

/// [`next`]'s search, returning the backend's index (snapshot order).
///
/// With `TAKE`, the chosen backend's slot is taken (one active connection,
/// honouring `max_conns`). Without it nothing is counted: the backend must
/// only be usable (below `max_conns` as counted by others), and a probe of
/// a failed-out backend still moves its failure window, so that unaccounted
/// lookups follow nginx's passive health exactly as picks do.
#[inline]
pub(crate) fn choose<P: Policy, const TAKE: bool>(
    snap: &Snapshot<P>,
    key: Key<'_>,
    tried: &mut TriedSet,
    tier: &mut Tier,
    state: &mut P::State,
) -> Option<usize> {
    let clock = &*snap.pool.clock;
    let admission = admits(snap);
    let mut admit = admission;
    let mut skipped = [0usize; MAX_SKIPPED];
    let mut n_skipped = 0;
    loop {
        let (range, table) = match *tier {
            Tier::Primary | Tier::PanicPrimary => (0..snap.n_primary, &snap.primary),
            Tier::Backup | Tier::PanicBackup => match &snap.backup {
                Some(table) => (snap.n_primary..snap.specs.len(), table),
                None => return None,
            },
            Tier::Exhausted => return None,
        };
        let panic = tier.panics();
        let offset = range.start;
        let specs = &snap.specs[range.clone()];
        let shared = &snap.shared[range];
        let cands = Candidates::new(specs, shared, offset, tried, clock)
            .in_pool(&snap.pool)
            .skipping(&skipped[..n_skipped])
            .panicking(panic);
        let chosen = snap.policy.pick(table, &cands, key, state);
        // An index out of range or already tried means the policy has nothing
        // left in this tier; anything else is tried at most once, so the loop
        // ends after at most one pass over the backends.
        let Some(i) = chosen.filter(|&i| i < specs.len() && !cands.is_tried(i)) else {
            if n_skipped > 0 {
                // Only ramping backends were left: take them as they come.
                n_skipped = 0;
                admit = false;
            } else {
                *tier = advance(snap, *tier);
                admit = admission;
            }
            *state = P::State::default();
            continue;
        };
        if admit && n_skipped < MAX_SKIPPED {
            let ramp = cands.ramp(i);
            if ramp < RAMP_ONE && cands.random() % u64::from(RAMP_ONE) >= u64::from(ramp) {
                skipped[n_skipped] = i;
                n_skipped += 1;
                continue;
            }
        }
        // The policy's own candidates check and take the slot, so the clock
        // is read at most once per tier.
        let acquired = take::<TAKE>(&cands, &specs[i], &shared[i], i, panic);
        tried.insert(offset + i);
        if acquired {
            return Some(offset + i);
        }
    }
}

/// Takes (with `TAKE`) or admits tier-local backend `i` if it is usable.
#[inline(always)]
fn take<const TAKE: bool>(
    cands: &Candidates<'_>,
    spec: &Backend,
    shared: &Shared,
    i: usize,
    panic: bool,
) -> bool {
    cands.is_still_usable(i)
        && match (TAKE, panic) {
            (true, true) => shared.acquire_in_panic(spec),
            (true, false) => shared.acquire(spec, &mut || cands.now_ms()),
            (false, true) => true,
            (false, false) => shared.move_window(spec, &mut || cands.now_ms()),
        }
}

/// A request's first attempt: what [`choose`] gives from a fresh start,
/// with the common case (no slow start admission, the policy's first
/// choice usable) free of the tried set and the tier loop.
#[inline]
pub(crate) fn choose_first<P: Policy, const TAKE: bool>(
    snap: &Snapshot<P>,
    key: Key<'_>,
) -> Option<usize> {
    let mut state = P::State::default();
    let tier = Tier::Primary;
    if admits(snap) {
        // Slow start asks the general loop every time: not a cold path.
        return choose_admitting::<P, TAKE>(snap, key);
    }
    let n = snap.n_primary;
    let (specs, shared) = (&snap.specs[..n], &snap.shared[..n]);
    let cands = Candidates::untried(specs, shared, 0, &*snap.pool.clock).in_pool(&snap.pool);
    match snap
        .policy
        .pick(&snap.primary, &cands, key, &mut state)
        .filter(|&i| i < n)
    {
        Some(i) if take::<TAKE>(&cands, &specs[i], &shared[i], i, false) => Some(i),
        // As `choose` goes on after a backend it could not take.
        Some(i) => choose_on::<P, TAKE>(snap, key, Some(i), tier, state),
        // As `choose` goes on after a tier with nothing left.
        None => choose_on::<P, TAKE>(snap, key, None, advance(snap, tier), P::State::default()),
    }
}

/// [`choose`] from a fresh start, for pools whose slow start admits
/// ramping backends (out of line, so that the tried set is built only here).
#[inline(never)]
fn choose_admitting<P: Policy, const TAKE: bool>(
    snap: &Snapshot<P>,
    key: Key<'_>,
) -> Option<usize> {
    let mut state = P::State::default();
    choose::<P, TAKE>(
        snap,
        key,
        &mut TriedSet::default(),
        &mut Tier::Primary,
        &mut state,
    )
}

/// [`choose_first`]'s way on when its first choice fails, kept out of line
/// so that the tried set is built only then.
#[cold]
#[inline(never)]
fn choose_on<P: Policy, const TAKE: bool>(
    snap: &Snapshot<P>,
    key: Key<'_>,
    tried_first: Option<usize>,
    mut tier: Tier,
    mut state: P::State,
) -> Option<usize> {
    let mut tried = TriedSet::default();
    if let Some(i) = tried_first {
        tried.insert(i);
    }
    choose::<P, TAKE>(snap, key, &mut tried, &mut tier, &mut state)
}

/// The handle of a slot just taken on backend `index` (snapshot order).
#[inline]
pub(crate) fn new_pick<P: Policy>(snap: &Snapshot<P>, index: usize) -> Pick {
    let shared = &snap.shared[index];
    if P::COUNTS_TOTAL_ACTIVE {
        // Relaxed: a pool-wide gauge read only for load ratios.
        shared.pool.total_active.fetch_add(1, Ordering::Relaxed);
    }
    Pick {
        shared: Arc::clone(shared),
        index,
        generation: snap.generation,
        max_fails: snap.specs[index].max_fails,
        count_failures: !snap.single,
        counted_in_total: P::COUNTS_TOTAL_ACTIVE,
    }
}

/// Acquires tier-local backend `i` of the tier `range` if it is usable, and
/// marks it tried either way.
fn acquire<P: Policy>(
    snap: &Snapshot<P>,
    tried: &mut TriedSet,
    range: std::ops::Range<usize>,
    i: usize,
) -> Option<Pick> {
    let offset = range.start;
    let specs = &snap.specs[range.clone()];
    let shared = &snap.shared[range];
    let cands =
        Candidates::new(specs, shared, offset, tried, &*snap.pool.clock).in_pool(&snap.pool);
    let acquired = take::<true>(&cands, &specs[i], &shared[i], i, false);
    tried.insert(offset + i);
    acquired.then(|| new_pick(snap, offset + i))
}

/// One request that may try several backends, never the same one twice.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, Pool, RoundRobin};
///
/// let pool = Pool::new(RoundRobin, vec![Backend::new("a:80"), Backend::new("b:80")]).unwrap();
/// let mut request = pool.request(Key::None);
/// let first = request.next().unwrap();
/// let first_id = first.id().to_string();
/// first.failure();
/// let second = request.next().unwrap();
/// assert_ne!(second.id(), first_id);
/// drop(second);
/// assert!(request.next().is_none(), "both tried");
/// ```
pub struct Request<'k, P: Policy> {
    snap: Arc<Snapshot<P>>,
    key: Key<'k>,
    tried: TriedSet,
    tier: Tier,
    state: P::State,
}

impl<'k, P: Policy> Request<'k, P> {
    pub(crate) fn new(snap: Arc<Snapshot<P>>, key: Key<'k>) -> Self {
        Request {
            snap,
            key,
            tried: TriedSet::default(),
            tier: Tier::Primary,
            state: P::State::default(),
        }
    }

    /// The next backend to try, or `None` when every candidate was tried or
    /// is unavailable.
    ///
    /// # Complexity
    ///
    /// The policy's pick; no allocation unless a backend at index 256 or
    /// above was tried, no lock.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Pick> {
        next(
            &self.snap,
            self.key,
            &mut self.tried,
            &mut self.tier,
            &mut self.state,
        )
    }

    /// Takes backend `index` (snapshot order) for the next attempt, if it can
    /// serve: not down, not failed out, below `max_conns`, not yet tried.
    /// Draining and weight-0 backends are accepted, so that a sticky session
    /// bound to one stays there. This is how sticky layers pin a request.
    ///
    /// # Complexity
    ///
    /// O(1); no allocation below index 256, no lock.
    pub fn take(&mut self, index: usize) -> Option<Pick> {
        let snap = &*self.snap;
        if index >= snap.specs.len() || self.tier == Tier::Exhausted {
            return None;
        }
        let offset = if index < snap.n_primary {
            0
        } else {
            snap.n_primary
        };
        let end = if index < snap.n_primary {
            snap.n_primary
        } else {
            snap.specs.len()
        };
        acquire(snap, &mut self.tried, offset..end, index - offset)
    }

    /// The snapshot this request picks from.
    pub fn snapshot(&self) -> &Snapshot<P> {
        &self.snap
    }

    /// True when backend `index` (snapshot order) was tried already.
    pub fn was_tried(&self, index: usize) -> bool {
        self.tried.contains(index)
    }
}

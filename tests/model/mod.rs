//! A plain model of the pool, shared by the property tests and the
//! `pool_ops` fuzz target (which includes this file by path).
//!
//! It keeps nginx's passive health (`max_fails`, `fail_timeout`, the
//! probe), active counts per backend identity, the swap that carries live
//! state over, and the tier rule (backups only when no primary can serve),
//! each written plainly. Where a policy has a reference version here
//! (nginx's O(n) loop for round robin, a linear scan for least_conn), the
//! model also predicts the exact pick.

#![allow(dead_code)] // Each includer uses its own part.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::sync::Arc;

use upstream::policy::Policy;
use upstream::{Backend, Key, ManualClock, Pick, Pool, Request, Snapshot};

/// Returns `Err` with a message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Returns `Err` naming both sides unless they are equal.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{}: {:?} != {:?}", format!($($msg)+), left, right));
        }
    }};
}

// ---------------------------------------------------------------------------
// What the suite knows about each policy

/// Which variant of [`Key`] a policy reads.
#[derive(Clone, Copy, Debug)]
pub enum Keys {
    None,
    Bytes,
    Ip,
    Hash,
}

/// How the suite exercises one policy.
pub struct Spec<P, R> {
    pub policy: P,
    /// The plain version of the algorithm, or [`NoReference`].
    pub reference: R,
    /// nginx refuses backups with its hash methods.
    pub backups: bool,
    pub keys: Keys,
    /// A weight-0 or draining backend may be picked (sticky policies keep
    /// sessions there); otherwise only available backends are.
    pub picks_drained: bool,
}

/// The identity of address slot `slot`.
pub fn address(slot: u16) -> String {
    format!("10.0.{}.{}:80", slot / 100, slot % 100)
}

#[derive(Clone, Copy, Debug)]
pub enum Report {
    Success,
    Failure,
    Drop,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// `Pool::pick`, holding the pick.
    Pick(u16),
    /// Starts a request (dropping the open one), holding its key.
    Begin(u16),
    /// `Request::next` on the open request, holding the pick.
    Next,
    /// `Reader::lookup` through one reader kept for the whole run, then
    /// the report (a drop reports nothing).
    Lookup(u16, Report),
    /// Reports (or just drops) held pick number `n % held`.
    Report(usize, Report),
    Advance(u64),
    SetDown(usize, bool),
    SetWeight(usize, u32),
    Swap(Vec<Backend>),
}

/// The key a policy of kind `keys` reads for seed `seed`. Byte keys are
/// `key-0` to `key-65535`, made once per process.
pub fn key_of(keys: Keys, seed: u16) -> Key<'static> {
    match keys {
        Keys::None => Key::None,
        Keys::Bytes => {
            let texts = key_texts();
            Key::Bytes(texts[usize::from(seed) % texts.len()].as_bytes())
        }
        Keys::Ip if seed % 4 == 0 => Key::Ip(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            seed,
            seed.rotate_left(7),
        ))),
        Keys::Ip => {
            let [a, b] = seed.to_be_bytes();
            Key::Ip(IpAddr::V4(Ipv4Addr::new(192, a, b, a ^ b)))
        }
        Keys::Hash => Key::Hash(u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    }
}

fn key_texts() -> &'static [String] {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    // Under miri, a sample: each key is interpreted, not run.
    let count = if cfg!(miri) { 512 } else { 1 << 16 };
    TEXTS.get_or_init(|| (0..count).map(|i| format!("key-{i}")).collect())
}

// ---------------------------------------------------------------------------
// The model: nginx's passive health and the pool's accounting, plainly

/// One backend identity's live state, as nginx keeps it per peer.
#[derive(Debug, Default)]
pub struct Live {
    pub active: u32,
    pub fails: u32,
    pub accessed: u64,
    pub checked: u64,
    /// least_conn's smooth round-robin tie-break state.
    pub current_weight: i64,
}

pub type LiveRef = Rc<RefCell<Live>>;

/// One snapshot: backends (primaries, then backups), their live state by
/// identity, and the reference's tables for each tier.
pub struct ModelSnap<T> {
    pub generation: u64,
    pub specs: Vec<Backend>,
    pub live: Vec<LiveRef>,
    pub n_primary: usize,
    pub primary: T,
    pub backup: Option<T>,
}

impl<T> ModelSnap<T> {
    /// nginx's single-server rule: one primary and no backup counts no failure.
    pub fn single(&self) -> bool {
        self.n_primary == 1 && self.specs.len() == 1
    }
}

pub fn fail_timeout_ms(b: &Backend) -> u64 {
    u64::try_from(b.fail_timeout.as_millis()).unwrap_or(u64::MAX)
}

/// nginx skips a peer while `fails >= max_fails` within `fail_timeout` of
/// the last check.
pub fn failed_out(b: &Backend, live: &Live, now: u64) -> bool {
    b.max_fails != 0
        && live.fails >= b.max_fails
        && now.saturating_sub(live.checked) <= fail_timeout_ms(b)
}

/// The tier a reference policy picks from, at one moment.
pub struct View<'a> {
    pub specs: &'a [Backend],
    pub live: &'a [LiveRef],
    pub tried: &'a [bool],
    pub now: u64,
}

impl View<'_> {
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn usable(&self, i: usize) -> bool {
        let (b, live) = (&self.specs[i], self.live[i].borrow());
        !b.down
            && !self.tried[i]
            && (b.max_conns == 0 || live.active < b.max_conns)
            && !failed_out(b, &live, self.now)
    }

    pub fn available(&self, i: usize) -> bool {
        self.specs[i].weight > 0 && !self.specs[i].drain && self.usable(i)
    }

    pub fn weight(&self, i: usize) -> u64 {
        u64::from(self.specs[i].weight)
    }

    pub fn active(&self, i: usize) -> u64 {
        u64::from(self.live[i].borrow().active)
    }
}

/// A policy's algorithm written plainly, to predict the pool's every pick.
pub trait Reference {
    type Table;
    type State: Default;
    /// False for [`NoReference`]: the suite then checks validity only.
    const EXACT: bool = true;

    fn build(&self, tier: &[Backend], prev: Option<&Self::Table>) -> Self::Table;

    fn pick(
        &self,
        table: &Self::Table,
        view: &View<'_>,
        key: Key<'_>,
        state: &mut Self::State,
    ) -> Option<usize>;
}

/// For policies with no plain version here: only validity is checked.
#[allow(dead_code)] // Used by the policies that land without a reference.
pub struct NoReference;

impl Reference for NoReference {
    type Table = ();
    type State = ();
    const EXACT: bool = false;

    fn build(&self, _: &[Backend], _: Option<&()>) {}

    fn pick(&self, _: &(), _: &View<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Primary,
    Backup,
    Exhausted,
}

/// The model of one request: its snapshot, what it tried, where it is.
pub struct ModelRequest<R: Reference> {
    pub snap: Rc<ModelSnap<R::Table>>,
    pub tried: Vec<bool>,
    pub tier: Tier,
    pub state: R::State,
}

/// A held pick: which identity's state it releases and reports into.
pub struct Held {
    pub live: LiveRef,
    pub count_failures: bool,
}

pub struct Model<R: Reference> {
    pub reference: R,
    pub now: u64,
    /// The set as configured, in config order.
    pub config: Vec<Backend>,
    pub snap: Rc<ModelSnap<R::Table>>,
    /// Removed identities whose live state something still holds (a pick,
    /// or a request's snapshot): adding one back revives that state.
    pub retired: std::collections::HashMap<String, std::rc::Weak<RefCell<Live>>>,
}

impl<R: Reference> Model<R> {
    pub fn new(reference: R, set: Vec<Backend>) -> Self {
        let empty = ModelSnap {
            generation: 0,
            specs: Vec::new(),
            live: Vec::new(),
            n_primary: 0,
            primary: reference.build(&[], None),
            backup: None,
        };
        let mut model = Model {
            reference,
            now: 0,
            config: Vec::new(),
            snap: Rc::new(empty),
            retired: Default::default(),
        };
        model.swap(set);
        model
    }

    /// Builds the next snapshot, carrying live state over by identity.
    pub fn swap(&mut self, set: Vec<Backend>) {
        let prev = &self.snap;
        let primaries = set.iter().filter(|b| !b.backup);
        let specs: Vec<Backend> = primaries
            .chain(set.iter().filter(|b| b.backup))
            .cloned()
            .collect();
        let live = specs
            .iter()
            .map(|b| match prev.specs.iter().position(|p| p.id == b.id) {
                Some(i) => Rc::clone(&prev.live[i]),
                None => self
                    .retired
                    .get(&b.id)
                    .and_then(std::rc::Weak::upgrade)
                    .unwrap_or_default(),
            })
            .collect();
        let n_primary = specs.iter().filter(|b| !b.backup).count();
        // A pool starts from no snapshot: its first tables have no `prev`.
        let first = prev.generation == 0;
        let primary = self
            .reference
            .build(&specs[..n_primary], (!first).then_some(&prev.primary));
        let backup = (n_primary < specs.len()).then(|| {
            let prev_backup = if first { None } else { prev.backup.as_ref() };
            self.reference.build(&specs[n_primary..], prev_backup)
        });
        let kept = |id: &str| specs.iter().any(|b| b.id == id);
        self.retired
            .retain(|id, weak| weak.strong_count() > 0 && !kept(id));
        for (spec, live) in prev.specs.iter().zip(&prev.live) {
            if !kept(&spec.id) {
                self.retired.insert(spec.id.clone(), Rc::downgrade(live));
            }
        }
        self.snap = Rc::new(ModelSnap {
            generation: prev.generation + 1,
            specs,
            live,
            n_primary,
            primary,
            backup,
        });
        self.config = set;
    }

    pub fn request(&self) -> ModelRequest<R> {
        ModelRequest {
            snap: Rc::clone(&self.snap),
            tried: vec![false; self.snap.specs.len()],
            tier: Tier::Primary,
            state: R::State::default(),
        }
    }

    /// The range of snapshot indices a request in `tier` picks from.
    pub fn range<T>(snap: &ModelSnap<T>, tier: Tier) -> std::ops::Range<usize> {
        match tier {
            Tier::Primary => 0..snap.n_primary,
            Tier::Backup => snap.n_primary..snap.specs.len(),
            Tier::Exhausted => 0..0,
        }
    }

    pub fn view<'a, T>(&self, snap: &'a ModelSnap<T>, tried: &'a [bool], tier: Tier) -> View<'a> {
        let range = Self::range(snap, tier);
        View {
            specs: &snap.specs[range.clone()],
            live: &snap.live[range.clone()],
            tried: &tried[range],
            now: self.now,
        }
    }

    /// True when some backend of `tier` or a later tier could take a pick.
    pub fn anything_available(&self, req: &ModelRequest<R>) -> bool {
        let tiers: &[Tier] = match req.tier {
            Tier::Primary => &[Tier::Primary, Tier::Backup],
            Tier::Backup => &[Tier::Backup],
            Tier::Exhausted => &[],
        };
        tiers.iter().any(|&t| {
            let view = self.view(&req.snap, &req.tried, t);
            (0..view.len()).any(|i| view.available(i))
        })
    }

    /// The reference's next pick, mirroring the pool: primaries until the
    /// policy has none, then backups; each index tried at most once.
    pub fn next(&self, req: &mut ModelRequest<R>, key: Key<'_>) -> Option<usize> {
        loop {
            let table = match req.tier {
                Tier::Primary => &req.snap.primary,
                Tier::Backup => req.snap.backup.as_ref()?,
                Tier::Exhausted => return None,
            };
            let range = Self::range(&req.snap, req.tier);
            let view = self.view(&req.snap, &req.tried, req.tier);
            let chosen = self.reference.pick(table, &view, key, &mut req.state);
            let chosen = chosen.filter(|&i| i < view.len() && !view.tried[i]);
            let usable = chosen.is_some_and(|i| view.usable(i));
            let Some(i) = chosen else {
                req.tier = match req.tier {
                    Tier::Primary => Tier::Backup,
                    _ => Tier::Exhausted,
                };
                req.state = R::State::default();
                continue;
            };
            let index = range.start + i;
            req.tried[index] = true;
            if usable {
                return Some(index);
            }
        }
    }

    /// nginx's accounting when a peer is picked: one more active, and the
    /// failure window moves to now once the last check is older than it.
    pub fn acquire(&self, req: &ModelRequest<R>, index: usize) -> Held {
        let spec = &req.snap.specs[index];
        let live = Rc::clone(&req.snap.live[index]);
        {
            let mut l = live.borrow_mut();
            l.active += 1;
            if l.fails > 0 && self.now.saturating_sub(l.checked) > fail_timeout_ms(spec) {
                l.checked = self.now;
            }
        }
        Held {
            live,
            count_failures: !req.snap.single(),
        }
    }

    /// A lookup: nginx's window move when a peer is chosen, nothing counted.
    pub fn admit(&self, req: &ModelRequest<R>, index: usize) -> Held {
        let held = self.acquire(req, index);
        held.live.borrow_mut().active -= 1;
        held
    }

    /// The report of a lookup: as a pick's, with no count to release.
    pub fn report_lookup(&self, held: Held, report: &Report) {
        held.live.borrow_mut().active += 1;
        self.report(held, report);
    }

    pub fn report(&self, held: Held, report: &Report) {
        let mut l = held.live.borrow_mut();
        l.active -= 1;
        if !held.count_failures {
            return;
        }
        match report {
            Report::Success if l.accessed < l.checked => l.fails = 0,
            Report::Failure => {
                l.fails = l.fails.saturating_add(1);
                l.accessed = self.now;
                l.checked = self.now;
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The op-sequence driver

/// Runs `ops` on a pool and on the model side by side, checking after each
/// step that the pool gave no wrong answer, agreed with the reference (if
/// exact), and keeps the same counts.
pub fn run_ops<P: Policy, R: Reference>(
    spec: Spec<P, R>,
    set: Vec<Backend>,
    ops: Vec<Op>,
) -> Result<(), String> {
    let clock = ManualClock::new(0);
    let pool = Pool::builder(spec.policy.clone())
        .clock(clock.clone())
        .build(set.clone())
        .map_err(|e| format!("valid set refused: {e}"))?;
    let mut model = Model::new(spec.reference, set);
    let mut held: Vec<(Pick, Held)> = Vec::new();
    let mut reader = pool.reader();
    // The reader keeps the snapshot of its last call alive, and with it the
    // live state of backends removed since: the model keeps its view alike.
    let mut _reader_view = model.request();
    let mut open: Option<(Request<'_, P>, ModelRequest<R>, Key<'_>)> = None;
    let ctx = Checker {
        picks_drained: spec.picks_drained,
    };

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Pick(seed) => {
                let key = key_of(spec.keys, seed);
                let mut req = model.request();
                let snap = pool.snapshot();
                let pick = pool.pick(key);
                let answer = pick.as_ref().map(Answer::of);
                let index = ctx.check(&model, &mut req, &snap, None, answer, key)?;
                if let (Some(pick), Some(index)) = (pick, index) {
                    held.push((pick, model.acquire(&req, index)));
                }
            }
            Op::Begin(seed) => {
                let key = key_of(spec.keys, seed);
                open = Some((pool.request(key), model.request(), key));
            }
            Op::Lookup(seed, report) => {
                let key = key_of(spec.keys, seed);
                let mut req = model.request();
                let snap = Arc::clone(reader.snapshot());
                let choice = reader.lookup(key);
                let answer = choice.map(|c| Answer {
                    index: c.index(),
                    id: c.id(),
                    generation: c.generation(),
                });
                let index = ctx.check(&model, &mut req, &snap, None, answer, key)?;
                if let (Some(choice), Some(index)) = (choice, index) {
                    let h = model.admit(&req, index);
                    match report {
                        Report::Success => choice.success(),
                        Report::Failure => choice.failure(),
                        Report::Drop => {}
                    }
                    model.report_lookup(h, &report);
                }
                _reader_view = req;
            }
            Op::Next => {
                if let Some((request, req, key)) = open.as_mut() {
                    let pick = request.next();
                    let snap = request.snapshot();
                    let answer = pick.as_ref().map(Answer::of);
                    let index = ctx.check(&model, req, snap, Some(request), answer, *key)?;
                    if let (Some(pick), Some(index)) = (pick, index) {
                        held.push((pick, model.acquire(req, index)));
                    }
                }
            }
            Op::Report(n, report) => {
                if !held.is_empty() {
                    let (pick, h) = held.swap_remove(n % held.len());
                    match report {
                        Report::Success => pick.success(),
                        Report::Failure => pick.failure(),
                        Report::Drop => drop(pick),
                    }
                    model.report(h, &report);
                }
            }
            Op::Advance(ms) => {
                clock.advance_ms(ms);
                model.now = model.now.saturating_add(ms);
            }
            Op::SetDown(n, down) => {
                if !model.config.is_empty() {
                    let mut set = model.config.clone();
                    let i = n % set.len();
                    set[i].down = down;
                    pool.set_down(&set[i].id, down).unwrap();
                    model.swap(set);
                }
            }
            Op::SetWeight(n, weight) => {
                if !model.config.is_empty() {
                    let mut set = model.config.clone();
                    let i = n % set.len();
                    set[i].weight = weight;
                    pool.set_weight(&set[i].id, weight).unwrap();
                    model.swap(set);
                }
            }
            Op::Swap(set) => {
                pool.replace(set.clone()).unwrap();
                model.swap(set);
            }
        }
        check_counts(&pool, &model, held.len()).map_err(|e| format!("after step {step}: {e}"))?;
    }

    // Every handle released: every count is back to zero.
    drop(open);
    for (pick, h) in held.drain(..) {
        drop(pick);
        model.report(h, &Report::Drop);
    }
    ensure_eq!(pool.total_active(), 0, "total_active at the end");
    let snap = pool.snapshot();
    for i in 0..snap.len() {
        ensure_eq!(snap.active(i), 0, "backend {} still active", i);
    }
    Ok(())
}

/// The model and the pool hold the same backends in the same order, with
/// the same active and failure counts; the pool-wide gauge counts the
/// handles alive.
pub fn check_counts<P: Policy, R: Reference>(
    pool: &Pool<P>,
    model: &Model<R>,
    held: usize,
) -> Result<(), String> {
    let snap = pool.snapshot();
    let ids: Vec<&str> = snap.backends().iter().map(|b| b.id.as_str()).collect();
    let model_ids: Vec<&str> = model.snap.specs.iter().map(|b| b.id.as_str()).collect();
    if ids != model_ids {
        return Err(format!("snapshot order {ids:?}, model {model_ids:?}"));
    }
    if snap.generation() != model.snap.generation {
        return Err(format!(
            "generation {} vs model {}",
            snap.generation(),
            model.snap.generation
        ));
    }
    for (i, live) in model.snap.live.iter().enumerate() {
        let live = live.borrow();
        if (snap.active(i), snap.fails(i)) != (live.active, live.fails) {
            return Err(format!(
                "{}: active/fails {:?}, model {:?}",
                ids[i],
                (snap.active(i), snap.fails(i)),
                (live.active, live.fails)
            ));
        }
    }
    if pool.total_active() != held as u64 {
        return Err(format!(
            "total_active {} with {held} handles",
            pool.total_active()
        ));
    }
    Ok(())
}

/// What the pool answered: a pick's or a lookup's backend.
#[derive(Clone, Copy)]
pub struct Answer<'a> {
    pub index: usize,
    pub id: &'a str,
    pub generation: u64,
}

impl<'a> Answer<'a> {
    pub fn of(pick: &'a Pick) -> Self {
        Answer {
            index: pick.index(),
            id: pick.id(),
            generation: pick.generation(),
        }
    }
}

pub struct Checker {
    pub picks_drained: bool,
}

impl Checker {
    /// Checks one answer of the pool against the model, and returns the
    /// index the model accounts for. With an exact reference, the answer
    /// must be the reference's; otherwise it must be one a correct policy
    /// may give, and the model follows it.
    pub fn check<P: Policy, R: Reference>(
        &self,
        model: &Model<R>,
        req: &mut ModelRequest<R>,
        snap: &Snapshot<P>,
        request: Option<&Request<'_, P>>,
        pick: Option<Answer<'_>>,
        key: Key<'_>,
    ) -> Result<Option<usize>, String> {
        let index = pick.map(|p| p.index);

        // The pick names a backend of the snapshot it was made on.
        if let Some(pick) = pick {
            let named = snap.backend(pick.index).map(|b| b.id.as_str());
            ensure_eq!(named, Some(pick.id), "pick outside its snapshot");
            ensure_eq!(
                pick.generation,
                snap.generation(),
                "pick from another snapshot"
            );
            ensure_eq!(snap.generation(), req.snap.generation, "request snapshot");
        }

        // Validity against the state before the pick.
        let tier_before = req.tier;
        let anything = model.anything_available(req);
        match index {
            None => ensure!(
                !anything,
                "none, though a backend was available (tier {:?})",
                tier_before
            ),
            Some(i) => {
                let in_backups = i >= req.snap.n_primary;
                let tier = if in_backups {
                    Tier::Backup
                } else {
                    Tier::Primary
                };
                let view = model.view(&req.snap, &req.tried, tier);
                let local = if in_backups {
                    i - req.snap.n_primary
                } else {
                    i
                };
                let b = &req.snap.specs[i];
                ensure!(!b.down, "picked {} which is down", b.id);
                ensure!(!req.tried[i], "picked {} twice for one request", b.id);
                let live = req.snap.live[i].borrow();
                ensure!(
                    b.max_conns == 0 || live.active < b.max_conns,
                    "picked {} at max_conns",
                    b.id
                );
                ensure!(
                    !failed_out(b, &live, model.now),
                    "picked {} failed out",
                    b.id
                );
                drop(live);
                ensure!(view.usable(local), "picked {} unusable", b.id);
                if !self.picks_drained {
                    ensure!(
                        view.available(local),
                        "picked {} (weight 0 or draining)",
                        b.id
                    );
                }
                ensure!(tier_before != Tier::Exhausted, "a pick after none");
                if in_backups && tier_before == Tier::Primary {
                    let primaries = model.view(&req.snap, &req.tried, Tier::Primary);
                    let p = (0..primaries.len()).find(|&p| primaries.available(p));
                    ensure!(
                        p.is_none(),
                        "backup {} picked while primary {:?} available",
                        b.id,
                        p
                    );
                }
                ensure!(
                    in_backups || tier_before != Tier::Backup,
                    "back to primaries after backups"
                );
            }
        }

        if R::EXACT {
            let expected = model.next(req, key);
            ensure_eq!(index, expected, "the reference picks otherwise");
        } else {
            req.tier = match index {
                None => Tier::Exhausted,
                Some(i) if i >= req.snap.n_primary => Tier::Backup,
                Some(_) => req.tier,
            };
            if let Some(i) = index {
                req.tried[i] = true;
            }
        }

        // The request's tried set: the model's, or at least no usable
        // backend burned without being handed out.
        if let Some(request) = request {
            for i in 0..req.tried.len() {
                let tried = request.was_tried(i);
                if R::EXACT {
                    ensure_eq!(tried, req.tried[i], "tried set differs at {}", i);
                } else if tried && !req.tried[i] {
                    let tier = if i >= req.snap.n_primary {
                        Tier::Backup
                    } else {
                        Tier::Primary
                    };
                    let local = if i >= req.snap.n_primary {
                        i - req.snap.n_primary
                    } else {
                        i
                    };
                    let usable = model.view(&req.snap, &req.tried, tier).usable(local);
                    ensure!(!usable, "usable backend {} marked tried, not picked", i);
                    req.tried[i] = true;
                }
            }
        }
        Ok(index)
    }
}

// ---------------------------------------------------------------------------
// References

/// nginx's smooth weighted round robin, its O(n) loop run for one period
/// (down servers left out), read at a cursor shared across swaps; a slot
/// whose server cannot serve is skipped by taking the next one, at most
/// 17 slots, then nginx's loop over the available servers; a pass that
/// finds nothing gives its 17 slots back (the crate's documented rules).
pub struct RoundRobinRef;

pub struct RrTable {
    pub period: Vec<usize>,
    pub cursor: Rc<std::cell::Cell<u64>>,
}

impl Reference for RoundRobinRef {
    type Table = RrTable;
    type State = ();

    fn build(&self, tier: &[Backend], prev: Option<&RrTable>) -> RrTable {
        let weights: Vec<i64> = tier
            .iter()
            .map(|b| if b.down { 0 } else { i64::from(b.weight) })
            .collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; tier.len()];
        let mut period = Vec::new();
        for _ in 0..total {
            let mut best: Option<usize> = None;
            for i in 0..tier.len() {
                if weights[i] == 0 {
                    continue;
                }
                current[i] += weights[i];
                if best.is_none() || current[i] > current[best.unwrap()] {
                    best = Some(i);
                }
            }
            let best = best.unwrap();
            current[best] -= total;
            period.push(best);
        }
        RrTable {
            period,
            cursor: prev.map(|p| Rc::clone(&p.cursor)).unwrap_or_default(),
        }
    }

    fn pick(&self, t: &RrTable, view: &View<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        if t.period.is_empty() {
            return None;
        }
        for _ in 0..=16 {
            let n = t.cursor.get();
            t.cursor.set(n.wrapping_add(1));
            let i = t.period[(n % t.period.len() as u64) as usize];
            if view.available(i) {
                return Some(i);
            }
        }
        let available: Vec<usize> = (0..view.len()).filter(|&i| view.available(i)).collect();
        let fallback = smooth_round_robin(view, &available);
        if fallback.is_none() {
            // A fruitless pass gives its 17 slots back.
            t.cursor.set(t.cursor.get().wrapping_sub(17));
        }
        fallback
    }
}

/// nginx's loop for one pick over `among`, with its state kept per backend.
pub fn smooth_round_robin(view: &View<'_>, among: &[usize]) -> Option<usize> {
    let mut total = 0i64;
    let mut chosen: Option<usize> = None;
    for &i in among {
        let w = i64::try_from(view.weight(i)).unwrap();
        view.live[i].borrow_mut().current_weight += w;
        total += w;
        let cw = |j: usize| view.live[j].borrow().current_weight;
        if chosen.is_none_or(|c| cw(i) > cw(c)) {
            chosen = Some(i);
        }
    }
    let chosen = chosen?;
    view.live[chosen].borrow_mut().current_weight -= total;
    Some(chosen)
}

/// nginx's least_conn as a plain scan: the available servers with the
/// lowest active/weight, and among several, nginx's smooth weighted round
/// robin over the tied ones.
pub struct LeastConnRef;

impl Reference for LeastConnRef {
    type Table = ();
    type State = ();

    fn build(&self, _: &[Backend], _: Option<&()>) {}

    fn pick(&self, _: &(), view: &View<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        let available: Vec<usize> = (0..view.len()).filter(|&i| view.available(i)).collect();
        // a/wa < b/wb  <=>  a*wb < b*wa, weights positive.
        let lighter =
            |a: usize, b: usize| view.active(a) * view.weight(b) < view.active(b) * view.weight(a);
        let mut best = *available.first()?;
        for &i in &available {
            if lighter(i, best) {
                best = i;
            }
        }
        let tied: Vec<usize> = available
            .into_iter()
            .filter(|&i| !lighter(best, i))
            .collect();
        if tied.len() == 1 {
            return Some(best);
        }
        smooth_round_robin(view, &tied)
    }
}

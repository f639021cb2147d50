//! HAProxy's server map: `hash-type map-based` and `balance static-rr`.
//!
//! HAProxy divides every weight by the weights' greatest common divisor and
//! fills an array with one slot per remaining unit of weight. It fills it
//! by a weighted round robin of its own: at each slot every server adds its
//! weight to a score, the score is bucketed as `(score + total) / total`,
//! the first server (in config order) of the highest bucket takes the slot
//! and gives back `total`. A hash then picks `map[hash % total]`, and
//! static round robin walks the map in order.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::hash::full_hash;
use super::{check_tier, check_weights, serving, Balance, HashFunction, Hasher};
use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};
use crate::BackendSet;

/// `hash-type map-based`: the server at `map[hash % total weight]`.
///
/// Defaults are HAProxy's for map-based hashing: `sdbm`, no avalanche.
/// Which key is read depends on the [`Balance`]; a missing key falls back to
/// round robin over the map, as in HAProxy. See the
/// [module documentation](super) for keys, server ids and limits.
///
/// # Complexity
///
/// Pick: O(key length) to hash, then O(1) while the chosen server is
/// available; a walk over the map otherwise. Build: O(W log n) time and
/// O(W) memory (4 bytes per slot), W the total weight after dividing by the
/// weights' greatest common divisor (at most 256 per server).
///
/// # Examples
///
/// ```
/// use upstream::haproxy::{HashFunction, HaproxyMap};
/// use upstream::{Backend, Key, Pool};
///
/// // balance uri + hash-type map-based djb2, servers of weight 1, 1, 2.
/// let pool = Pool::new(
///     HaproxyMap::uri().hash(HashFunction::Djb2, false),
///     vec![Backend::new("s1"), Backend::new("s2"), Backend::new("s3").weight(2)],
/// )
/// .unwrap();
/// // The map is [s1, s3, s2, s3]; djb2("/a") = 5_861_557, and 5_861_557 % 4 = 1.
/// // HAProxy 2.6 sends `GET /a?x=1` to s3 as well.
/// assert_eq!(pool.pick(Key::from("/a?x=1")).unwrap().id(), "s3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaproxyMap {
    hasher: Hasher,
    all_backups: bool,
}

impl HaproxyMap {
    /// Map-based hashing of `balance`, with `sdbm` and no avalanche.
    pub fn new(balance: Balance) -> Self {
        HaproxyMap {
            hasher: Hasher {
                balance,
                function: HashFunction::Sdbm,
                avalanche: false,
            },
            all_backups: false,
        }
    }

    /// `balance source`.
    pub fn source() -> Self {
        Self::new(Balance::Source)
    }

    /// `balance uri`.
    pub fn uri() -> Self {
        Self::new(Balance::Uri)
    }

    /// `balance hdr(<name>)`; the caller reads the header.
    pub fn hdr() -> Self {
        Self::new(Balance::Hdr)
    }

    /// `hash-type map-based <function> [avalanche]`.
    pub fn hash(mut self, function: HashFunction, avalanche: bool) -> Self {
        self.hasher.function = function;
        self.hasher.avalanche = avalanche;
        self
    }

    /// `option allbackups`: balance over every usable backup instead of
    /// sending everything to the first one.
    pub fn all_backups(mut self, on: bool) -> Self {
        self.all_backups = on;
        self
    }

    /// HAProxy's 32-bit hash of `key`, or `None` for round robin.
    pub fn key_hash(&self, key: Key<'_>) -> Option<u32> {
        self.hasher.hash(key)
    }
}

impl Policy for HaproxyMap {
    type Table = MapTable;
    type State = ();
    // Never reads the pool-wide count: skip keeping it.
    const COUNTS_TOTAL_ACTIVE: bool = false;

    fn name(&self) -> &'static str {
        "haproxy_map"
    }

    /// Slow start would move hashed keys for a while; HAProxy does not ramp
    /// hash-balanced servers either.
    fn ramp_mode(&self) -> crate::policy::RampMode {
        crate::policy::RampMode::Off
    }

    fn validate(&self, set: &BackendSet) -> Result<(), BuildError> {
        check_weights(set, self.name())
    }

    fn build(&self, tier: &[Backend], prev: Option<&MapTable>) -> Result<MapTable, BuildError> {
        check_tier(tier, self.name())?;
        Ok(MapTable::new(tier, self.all_backups, prev))
    }

    #[inline]
    fn pick(
        &self,
        table: &MapTable,
        c: &Candidates<'_>,
        key: Key<'_>,
        _: &mut (),
    ) -> Option<usize> {
        match self.hasher.hash(key) {
            Some(hash) => table.pick_hash(c, hash),
            None => table.pick_next(c),
        }
    }
}

/// `balance static-rr`: HAProxy's server map walked in order.
///
/// Weights 1, 1, 2 give `s1 s3 s2 s3`, then again; a server that cannot
/// take the request is skipped and the walk continues after the server
/// chosen, as in HAProxy. The position survives snapshot swaps.
///
/// # Complexity
///
/// Pick: O(1) while servers are available. Build: as [`HaproxyMap`].
///
/// # Examples
///
/// ```
/// use upstream::haproxy::StaticRr;
/// use upstream::{Backend, Key, Pool};
///
/// let pool = Pool::new(
///     StaticRr::default(),
///     vec![Backend::new("s1"), Backend::new("s2"), Backend::new("s3").weight(2)],
/// )
/// .unwrap();
/// let order: Vec<String> = (0..5).map(|_| pool.pick(Key::None).unwrap().id().into()).collect();
/// assert_eq!(order, ["s1", "s3", "s2", "s3", "s1"]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StaticRr {
    all_backups: bool,
}

impl StaticRr {
    /// `option allbackups`, as for [`HaproxyMap::all_backups`].
    pub fn all_backups(mut self, on: bool) -> Self {
        self.all_backups = on;
        self
    }
}

impl Policy for StaticRr {
    type Table = MapTable;
    type State = ();
    // Never reads the pool-wide count: skip keeping it.
    const COUNTS_TOTAL_ACTIVE: bool = false;

    fn name(&self) -> &'static str {
        "haproxy_static_rr"
    }

    fn validate(&self, set: &BackendSet) -> Result<(), BuildError> {
        check_weights(set, self.name())
    }

    fn build(&self, tier: &[Backend], prev: Option<&MapTable>) -> Result<MapTable, BuildError> {
        check_tier(tier, self.name())?;
        Ok(MapTable::new(tier, self.all_backups, prev))
    }

    #[inline]
    fn pick(&self, table: &MapTable, c: &Candidates<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        table.pick_next(c)
    }
}

/// Rehashes a key makes before walking the map when its server cannot take it.
const REHASHES: usize = 8;

/// HAProxy's server map for one tier, and the round-robin position in it.
#[derive(Debug)]
pub struct MapTable {
    map: Box<[u32]>,
    cursor: Arc<AtomicU64>,
}

impl MapTable {
    fn new(tier: &[Backend], all_backups: bool, prev: Option<&MapTable>) -> Self {
        MapTable {
            map: server_map(tier, all_backups).into_boxed_slice(),
            cursor: prev.map(|p| Arc::clone(&p.cursor)).unwrap_or_default(),
        }
    }

    /// The map: one tier index per slot. Its length is HAProxy's total
    /// weight, the divisor of `hash % total`.
    pub fn slots(&self) -> &[u32] {
        &self.map
    }

    /// The server at `map[hash % total]`. When it cannot take the request,
    /// the key is rehashed (HAProxy's avalanche over the running hash) up to
    /// [`REHASHES`] times, so the keys of a failed server spread over the
    /// others in proportion to their slots instead of all falling on the
    /// server of the next slot; then the map is walked from the last slot.
    #[inline]
    fn pick_hash(&self, c: &Candidates<'_>, hash: u32) -> Option<usize> {
        let len = self.map.len() as u64;
        if len == 0 {
            return None;
        }
        let mut slot = u64::from(hash) % len;
        let first = self.map[slot as usize] as usize;
        if c.is_available(first) {
            return Some(first);
        }
        let mut h = hash;
        for _ in 0..REHASHES {
            h = full_hash(h.wrapping_add(1));
            slot = u64::from(h) % len;
            let i = self.map[slot as usize] as usize;
            if c.is_available(i) {
                return Some(i);
            }
        }
        self.walk(c, slot).map(|(i, _)| i)
    }

    /// The next available server in map order, moving the shared position
    /// past it.
    #[inline]
    fn pick_next(&self, c: &Candidates<'_>) -> Option<usize> {
        let len = self.map.len() as u64;
        if len == 0 {
            return None;
        }
        // Relaxed: the cursor only spreads picks; it guards no other data.
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        let (i, skipped) = self.walk(c, n % len)?;
        if skipped > 0 {
            // Continue after the server chosen, as HAProxy does; if another
            // thread moved the cursor meanwhile, its move wins.
            // Relaxed: as above.
            let _ = self.cursor.compare_exchange(
                n + 1,
                n + 1 + skipped,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        Some(i)
    }

    /// The first available server from `slot` on, wrapping, and how many
    /// slots were passed over to reach it.
    fn walk(&self, c: &Candidates<'_>, slot: u64) -> Option<(usize, u64)> {
        let len = self.map.len() as u64;
        (0..len).find_map(|skipped| {
            let at = ((slot + skipped) % len) as usize;
            let i = self.map[at] as usize;
            c.is_available(i).then_some((i, skipped))
        })
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// HAProxy's map for a tier: weights divided by their greatest common
/// divisor (over every server of the tier, usable or not), then one slot per
/// unit of weight of each serving server, in the order of HAProxy's loop.
pub(crate) fn server_map(tier: &[Backend], all_backups: bool) -> Vec<u32> {
    let divisor = tier.iter().fold(0, |g, b| gcd(g, b.weight)).max(1);
    let servers: Vec<(u32, u64)> = serving(tier, all_backups)
        .into_iter()
        .map(|i| {
            let index = u32::try_from(i).expect("set size is bounded by MAX_BACKENDS");
            (index, u64::from(tier[i].weight / divisor))
        })
        .collect();
    fill_map(&servers)
}

/// Runs HAProxy's map-filling loop over `(tier index, weight)` pairs.
///
/// At slot `o` a server of weight `e` that was picked `p` times has score
/// `(o + 1) e - p T`, T the total weight, and HAProxy compares
/// `(score + T) / T = floor((o + 1) e / T) + 1 - p`. The score never falls
/// to `-T` (the server picked always had the highest, non-negative, score),
/// so C's truncating division is this floor. That bucket changes only when
/// `floor((o + 1) e / T)` steps up, `e` times per period, or when the
/// server is picked, so the loop keeps servers ordered by (bucket desc,
/// config order) and updates only those that change: O(T log n) in all,
/// instead of HAProxy's O(T n).
fn fill_map(servers: &[(u32, u64)]) -> Vec<u32> {
    let total: u64 = servers.iter().map(|&(_, e)| e).sum();
    let Ok(slots) = usize::try_from(total) else {
        return Vec::new();
    };
    if total <= 1 {
        // HAProxy's own special case: the first server takes the one slot.
        return servers
            .first()
            .map(|&(i, _)| vec![i; slots])
            .unwrap_or_default();
    }

    // bucket[k] = floor((o + 1) e_k / T) + 1 - picks_k, ordered by
    // (bucket desc, position); steps[k] counts the floor's increments so far.
    let mut bucket: Vec<i64> = vec![1; servers.len()];
    let mut steps: Vec<u64> = vec![0; servers.len()];
    let mut order: BTreeSet<(Reverse<i64>, usize)> =
        (0..servers.len()).map(|k| (Reverse(1), k)).collect();
    // Next slot at which each server's floor steps up: the k-th step is at
    // the first o with (o + 1) e >= k T.
    let next_step = |k: u64, e: u64| (k * total).div_ceil(e) - 1;
    let mut events: BinaryHeap<Reverse<(u64, usize)>> = servers
        .iter()
        .enumerate()
        .filter(|(_, &(_, e))| e > 0)
        .map(|(k, &(_, e))| Reverse((next_step(1, e), k)))
        .collect();

    let mut map = Vec::with_capacity(slots);
    for o in 0..total {
        while let Some(&Reverse((at, k))) = events.peek() {
            if at != o {
                break;
            }
            events.pop();
            order.remove(&(Reverse(bucket[k]), k));
            bucket[k] += 1;
            order.insert((Reverse(bucket[k]), k));
            steps[k] += 1;
            let e = servers[k].1;
            if steps[k] < e {
                events.push(Reverse((next_step(steps[k] + 1, e), k)));
            }
        }
        let &(Reverse(b), k) = order.first().expect("total > 1 implies a server");
        order.remove(&(Reverse(b), k));
        bucket[k] = b - 1;
        order.insert((Reverse(b - 1), k));
        map.push(servers[k].0);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy's loop, written plainly, as the reference.
    fn naive(servers: &[(u32, u64)]) -> Vec<u32> {
        let tot: i64 = servers.iter().map(|&(_, e)| e as i64).sum();
        let mut score = vec![0i64; servers.len()];
        let mut map = Vec::new();
        for _ in 0..tot {
            let mut best: Option<usize> = None;
            let mut max = 0;
            for (k, &(_, e)) in servers.iter().enumerate() {
                if tot == 1 {
                    best = Some(k);
                    break;
                }
                score[k] += e as i64;
                let v = (score[k] + tot) / tot;
                if best.is_none() || v > max {
                    max = v;
                    best = Some(k);
                }
            }
            let b = best.unwrap();
            score[b] -= tot;
            map.push(servers[b].0);
        }
        map
    }

    fn tier(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new(format!("s{}", i + 1)).weight(w))
            .collect()
    }

    #[test]
    fn fills_like_haproxy_for_small_weights() {
        assert_eq!(server_map(&tier(&[1, 1, 2]), false), [0, 2, 1, 2]);
        assert_eq!(server_map(&tier(&[2, 2, 4]), false), [0, 2, 1, 2]);
        assert_eq!(server_map(&tier(&[3]), false), [0]);
        assert_eq!(server_map(&tier(&[1, 3]), false), [0, 1, 1, 1]);
        assert!(server_map(&tier(&[0, 0]), false).is_empty());
    }

    #[test]
    fn down_servers_leave_the_map_but_keep_the_divisor() {
        let mut t = tier(&[2, 4, 6]);
        t[2].down = true;
        // gcd stays 2 (over all three), so weights 1 and 2.
        assert_eq!(server_map(&t, false), [0, 1, 1]);
    }

    #[test]
    fn fast_fill_matches_the_naive_loop() {
        let cases: [&[u64]; 8] = [
            &[1, 1],
            &[5, 1, 1],
            &[256, 1, 3],
            &[7, 11, 13, 17],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            &[100, 100, 1],
            &[0, 3, 0, 2],
            &[255, 254, 253],
        ];
        for weights in cases {
            let servers: Vec<(u32, u64)> = weights
                .iter()
                .enumerate()
                .filter(|(_, &e)| e > 0)
                .map(|(i, &e)| (i as u32, e))
                .collect();
            assert_eq!(fill_map(&servers), naive(&servers), "{weights:?}");
        }
    }

    #[test]
    fn static_rr_skips_a_full_server_and_continues_after_the_pick() {
        let mut servers = tier(&[1, 1, 2]);
        servers[2].max_conns = 1;
        let pool = crate::Pool::new(StaticRr::default(), servers).unwrap();
        let id = |p: Option<crate::Pick>| p.unwrap().id().to_string();
        assert_eq!(id(pool.pick(Key::None)), "s1");
        let held = pool.pick(Key::None).unwrap();
        assert_eq!(held.id(), "s3");
        // Map [s1, s3, s2, s3]: s3 is full, so slots 3 and 1 pass to the
        // next slot, and the walk resumes after the server taken.
        let order: Vec<String> = (0..4).map(|_| id(pool.pick(Key::None))).collect();
        assert_eq!(order, ["s2", "s1", "s2", "s1"]);
    }

    #[test]
    fn a_hash_on_an_unavailable_server_takes_the_next_slot() {
        let policy = HaproxyMap::uri();
        let pool = crate::Pool::new(policy, tier(&[1, 1, 2])).unwrap();
        // sdbm("a") = 97, 97 % 4 = 1: map[1] = s3, then map[2] = s2.
        let mut request = pool.request(Key::from("a"));
        let first = request.next().unwrap();
        assert_eq!(first.id(), "s3");
        drop(first);
        assert_eq!(request.next().unwrap().id(), "s2");
        assert_eq!(request.next().unwrap().id(), "s1");
        assert!(request.next().is_none());
    }

    #[test]
    fn weights_above_256_are_refused() {
        let err = crate::Pool::new(HaproxyMap::uri(), tier(&[1, 257]))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "backend 's2' cannot be used with haproxy_map: HAProxy weights range from 0 to 256"
        );
        assert!(StaticRr::default().build(&tier(&[300]), None).is_err());
    }

    proptest::proptest! {
        #[test]
        fn fast_fill_matches_the_naive_loop_for_any_weights(
            weights in proptest::collection::vec(1u64..=40, 1..12)
        ) {
            let servers: Vec<(u32, u64)> =
                weights.iter().enumerate().map(|(i, &e)| (i as u32, e)).collect();
            proptest::prop_assert_eq!(fill_map(&servers), naive(&servers));
        }
    }
}

//! HAProxy's consistent hashing: `hash-type consistent`.
//!
//! Every usable server gets 16 points per unit of weight on a 32-bit ring.
//! Point `k` of the server with id `id` sits at `full_hash(id × 4096 + k)`.
//! A request hash is served by the point closest to it on either side (the
//! earlier one on a tie), and when `hash-balance-factor` is set, by the
//! first point from there on whose server is below its share of the load.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{
    check_tier, check_weights, full_hash, serving, Balance, HashFunction, Hasher, ID_SPACING,
    POINTS_PER_WEIGHT,
};
use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};
use crate::BackendSet;

/// `hash-type consistent`, with HAProxy's optional bounded loads.
///
/// Defaults are HAProxy's for consistent hashing: `sdbm` with avalanche
/// (what `hash-type consistent` alone means), no balance factor. Which key
/// is read depends on the [`Balance`]; a missing key falls back to HAProxy's
/// round robin over the points. See the [module documentation](super) for
/// keys, server ids and limits.
///
/// # Limitations
///
/// - With a balance factor, HAProxy counts the load of the whole backend;
///   this policy counts the active picks of the tier it picks from, which
///   is the same while the backups carry no traffic. HAProxy computes the
///   slots in 32-bit arithmetic, which wraps once (load + 1) × factor
///   reaches 2^32; this policy computes them exactly.
/// - Two points with the same key (a 32-bit collision) are ordered by
///   server, then point index, which is HAProxy's insertion order.
///
/// # Complexity
///
/// Pick: O(key length + log P), P the number of points (16 per unit of
/// weight); with a balance factor, O(n) more to total the load, and a walk
/// over the points while servers are over their share. Build: O(P log P)
/// time, 8 bytes per point.
///
/// # Examples
///
/// ```
/// use upstream::haproxy::HaproxyChash;
/// use upstream::{Backend, Key, Pool};
///
/// // balance source + hash-type consistent, three servers with ids 1, 2, 3.
/// let pool = Pool::new(
///     HaproxyChash::source(),
///     vec![Backend::new("s1"), Backend::new("s2"), Backend::new("s3")],
/// )
/// .unwrap();
/// // HAProxy 2.6 sends these two clients to the same servers.
/// let client: std::net::IpAddr = "10.0.0.1".parse().unwrap();
/// assert_eq!(pool.pick(Key::Ip(client)).unwrap().id(), "s1");
/// let client: std::net::IpAddr = "1.2.3.4".parse().unwrap();
/// assert_eq!(pool.pick(Key::Ip(client)).unwrap().id(), "s2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaproxyChash {
    hasher: Hasher,
    all_backups: bool,
    balance_factor: u32,
}

impl HaproxyChash {
    /// Consistent hashing of `balance`, with `sdbm` and avalanche.
    pub fn new(balance: Balance) -> Self {
        HaproxyChash {
            hasher: Hasher {
                balance,
                function: HashFunction::Sdbm,
                avalanche: true,
            },
            all_backups: false,
            balance_factor: 0,
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

    /// `hash-type consistent <function> [avalanche]`. Naming a function
    /// without `avalanche` turns avalanche off, as in HAProxy.
    pub fn hash(mut self, function: HashFunction, avalanche: bool) -> Self {
        self.hasher.function = function;
        self.hasher.avalanche = avalanche;
        self
    }

    /// `hash-balance-factor`: 0 (off) or above 100, a percentage of the
    /// average load no server may exceed. Checked when the pool is built.
    pub fn balance_factor(mut self, factor: u32) -> Self {
        self.balance_factor = factor;
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

impl Policy for HaproxyChash {
    type Table = ChashTable;
    type State = ();

    fn name(&self) -> &'static str {
        "haproxy_chash"
    }

    /// Slow start would move hashed keys for a while; HAProxy does not ramp
    /// hash-balanced servers either.
    fn ramp_mode(&self) -> crate::policy::RampMode {
        crate::policy::RampMode::Off
    }

    fn validate(&self, set: &BackendSet) -> Result<(), BuildError> {
        if self.balance_factor != 0 && self.balance_factor <= 100 {
            return Err(BuildError::Policy {
                policy: self.name(),
                reason: format!(
                    "hash-balance-factor must be 0 or greater than 100, not {}",
                    self.balance_factor
                ),
            });
        }
        check_weights(set, self.name())
    }

    fn build(&self, tier: &[Backend], prev: Option<&ChashTable>) -> Result<ChashTable, BuildError> {
        check_tier(tier, self.name())?;
        ChashTable::new(tier, self.all_backups, prev)
    }

    #[inline]
    fn pick(
        &self,
        table: &ChashTable,
        c: &Candidates<'_>,
        key: Key<'_>,
        _: &mut (),
    ) -> Option<usize> {
        match self.hasher.hash(key) {
            Some(hash) => table.pick_hash(c, hash, self.balance_factor),
            None => table.pick_next(c),
        }
    }
}

/// HAProxy's tree of points for one tier, as two sorted arrays.
#[derive(Debug)]
pub struct ChashTable {
    keys: Box<[u32]>,
    servers: Box<[u32]>,
    /// Per tier index: 16 × weight when serving, else 0 (HAProxy's eweight).
    eweight: Box<[u64]>,
    /// Per tier index: the eweights of the serving servers before it.
    cumulative: Box<[u64]>,
    total_weight: u64,
    cursor: Arc<AtomicU64>,
}

impl ChashTable {
    fn new(
        tier: &[Backend],
        all_backups: bool,
        prev: Option<&ChashTable>,
    ) -> Result<Self, BuildError> {
        let ids = server_ids(tier)?;
        let mut eweight = vec![0u64; tier.len()];
        let mut cumulative = vec![0u64; tier.len()];
        let mut total_weight = 0;
        let mut points: Vec<(u32, u32)> = Vec::new();
        for i in serving(tier, all_backups) {
            let index = u32::try_from(i).expect("set size is bounded by MAX_BACKENDS");
            let count = tier[i].weight * POINTS_PER_WEIGHT;
            let base = ids[i].wrapping_mul(ID_SPACING);
            points.extend((0..count).map(|k| (full_hash(base.wrapping_add(k)), index)));
            eweight[i] = u64::from(count);
            cumulative[i] = total_weight;
            total_weight += u64::from(count);
        }
        // Stable: equal keys keep HAProxy's insertion order.
        points.sort_by_key(|&(key, _)| key);
        let (keys, servers) = points.into_iter().unzip::<_, _, Vec<_>, Vec<_>>();
        Ok(ChashTable {
            keys: keys.into_boxed_slice(),
            servers: servers.into_boxed_slice(),
            eweight: eweight.into_boxed_slice(),
            cumulative: cumulative.into_boxed_slice(),
            total_weight,
            cursor: prev.map(|p| Arc::clone(&p.cursor)).unwrap_or_default(),
        })
    }

    /// The point keys, ascending.
    pub fn keys(&self) -> &[u32] {
        &self.keys
    }

    /// The tier index of each point, in the order of [`keys`](Self::keys).
    pub fn servers(&self) -> &[u32] {
        &self.servers
    }

    /// The point HAProxy starts from: the closest to `hash` on either side,
    /// the earlier one on a tie.
    fn closest(&self, hash: u32) -> Option<usize> {
        let len = self.keys.len();
        if len == 0 {
            return None;
        }
        let next = self.keys.partition_point(|&k| k < hash) % len;
        let prev = if next == 0 { len - 1 } else { next - 1 };
        let before = hash.wrapping_sub(self.keys[prev]);
        let after = self.keys[next].wrapping_sub(hash);
        Some(if before <= after { prev } else { next })
    }

    #[inline]
    fn pick_hash(&self, c: &Candidates<'_>, hash: u32, factor: u32) -> Option<usize> {
        let start = self.closest(hash)?;
        let first = self.servers[start] as usize;
        if factor == 0 && c.is_available(first) {
            return Some(first);
        }
        let load = if factor == 0 {
            0
        } else {
            (0..c.len()).map(|i| u64::from(c.active(i))).sum()
        };
        let mut fallback = None;
        for step in 0..self.keys.len() {
            let i = self.servers[(start + step) % self.keys.len()] as usize;
            if !c.is_available(i) {
                continue;
            }
            if factor == 0 || self.has_room(c, i, load, factor) {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback
    }

    /// HAProxy's bounded-load test: the server's share of
    /// `ceil((load + 1) × factor / 100)` slots, whole slots per unit of
    /// weight and the remainder spread by cumulative weight, never below 1.
    fn has_room(&self, c: &Candidates<'_>, i: usize, load: u64, factor: u32) -> bool {
        let total = self.total_weight.max(1);
        // Saturating: only absurd factors come near the limit, and a
        // saturated share still means "room".
        let slots = load
            .saturating_add(1)
            .saturating_mul(u64::from(factor))
            .div_ceil(100);
        let (per_weight, remainder) = (slots / total, slots % total);
        let (weight, before) = (self.eweight[i], self.cumulative[i]);
        // Both products stay below 2^64: weights total at most 2^32 and the
        // remainder is below the total.
        let spread = (before + weight) * remainder / total - before * remainder / total;
        let share = weight.saturating_mul(per_weight).saturating_add(spread);
        u64::from(c.active(i)) < share.max(1)
    }

    /// HAProxy's round robin over the points, for requests without a key.
    #[inline]
    fn pick_next(&self, c: &Candidates<'_>) -> Option<usize> {
        let len = self.keys.len() as u64;
        if len == 0 {
            return None;
        }
        // Relaxed: the cursor only spreads picks; it guards no other data.
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        let (i, skipped) = (0..len).find_map(|skipped| {
            let i = self.servers[((n + skipped) % len) as usize] as usize;
            c.is_available(i).then_some((i, skipped))
        })?;
        if skipped > 0 {
            // Continue after the point chosen; a concurrent move wins.
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
}

/// HAProxy's server ids for a tier: explicit ones from `hash_key`, the
/// others numbered from 1 in config order, each taking the first free id at
/// or after its position's counter, as HAProxy's configuration check does.
fn server_ids(tier: &[Backend]) -> Result<Vec<u32>, BuildError> {
    let mut explicit = vec![None; tier.len()];
    let mut used = HashSet::new();
    for (i, b) in tier.iter().enumerate() {
        let Some(key) = &b.hash_key else { continue };
        let id = key
            .parse::<u32>()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| BuildError::Unsupported {
                id: b.id.clone(),
                policy: "haproxy_chash",
                reason: "its hash_key is HAProxy's server id and must be a positive integer",
            })?;
        if !used.insert(id) {
            return Err(BuildError::Unsupported {
                id: b.id.clone(),
                policy: "haproxy_chash",
                reason: "its hash_key (HAProxy server id) is taken by another server",
            });
        }
        explicit[i] = Some(id);
    }
    let mut next: u32 = 1;
    let mut ids = Vec::with_capacity(tier.len());
    for given in explicit {
        let id = match given {
            Some(id) => id,
            None => {
                while used.contains(&next) {
                    next = next.wrapping_add(1);
                }
                used.insert(next);
                next
            }
        };
        ids.push(id);
        next = next.wrapping_add(1);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(n: usize) -> Vec<Backend> {
        (1..=n).map(|i| Backend::new(format!("s{i}"))).collect()
    }

    #[test]
    fn ids_follow_haproxy_numbering() {
        let mut t = tier(4);
        assert_eq!(server_ids(&t).unwrap(), [1, 2, 3, 4]);
        t[1].hash_key = Some("1".into());
        // s1 finds 1 taken and takes 2; the counter still steps once per
        // server, s2 included, so s3 starts looking at 4.
        assert_eq!(server_ids(&t).unwrap(), [2, 1, 4, 5]);
        t[3].hash_key = Some("3".into());
        assert_eq!(server_ids(&t).unwrap(), [2, 1, 4, 3]);
    }

    #[test]
    fn bad_ids_are_refused() {
        let mut t = tier(2);
        t[0].hash_key = Some("web".into());
        assert_eq!(
            server_ids(&t).unwrap_err().to_string(),
            "backend 's1' cannot be used with haproxy_chash: its hash_key is HAProxy's server id \
             and must be a positive integer"
        );
        t[0].hash_key = Some("5".into());
        t[1].hash_key = Some("5".into());
        assert!(matches!(server_ids(&t), Err(BuildError::Unsupported { id, .. }) if id == "s2"));
    }

    #[test]
    fn points_are_sixteen_per_weight_unit() {
        let mut t = tier(3);
        t[1].weight = 3;
        t[2].down = true;
        let table = ChashTable::new(&t, false, None).unwrap();
        assert_eq!(table.keys().len(), 16 + 48);
        assert!(table.keys().windows(2).all(|w| w[0] <= w[1]));
        let first = full_hash(4096);
        let at = table.keys().iter().position(|&k| k == first).unwrap();
        assert_eq!(table.servers()[at], 0);
        assert_eq!(table.total_weight, 64);
        assert_eq!((table.cumulative[1], table.eweight[1]), (16, 48));
    }

    #[test]
    fn closest_point_wins_and_ties_go_to_the_earlier() {
        let table = ChashTable {
            keys: vec![100, 200, 300].into(),
            servers: vec![0, 1, 2].into(),
            eweight: vec![16; 3].into(),
            cumulative: vec![0, 16, 32].into(),
            total_weight: 48,
            cursor: Arc::default(),
        };
        assert_eq!(table.closest(149), Some(0));
        assert_eq!(table.closest(150), Some(0));
        assert_eq!(table.closest(151), Some(1));
        assert_eq!(table.closest(300), Some(2));
        // Past the last point: 350 is 50 after 300 and 2^32 - 250 before 100.
        assert_eq!(table.closest(350), Some(2));
        assert_eq!(table.closest(u32::MAX), Some(0));
        assert_eq!(table.closest(0), Some(0));
    }

    /// The servers met walking the points from the one closest to `hash`.
    fn walk_from(table: &ChashTable, hash: u32) -> Vec<usize> {
        let start = table.closest(hash).unwrap();
        let len = table.keys().len();
        (0..len)
            .map(|s| table.servers()[(start + s) % len] as usize)
            .collect()
    }

    #[test]
    fn a_retry_moves_to_the_next_server_along_the_points() {
        let policy = HaproxyChash::uri();
        for path in ["/a", "/b", "/c/d", "/e?f"] {
            // A fresh pool each time: a failure rests the server pool-wide.
            let pool = crate::Pool::new(policy, tier(4)).unwrap();
            let hash = policy.key_hash(Key::from(path)).unwrap();
            let walk = walk_from(pool.snapshot().primary_table(), hash);
            let second = *walk.iter().find(|&&i| i != walk[0]).unwrap();
            let mut request = pool.request(Key::from(path));
            let first = request.next().unwrap();
            assert_eq!(first.index(), walk[0]);
            first.failure();
            assert_eq!(request.next().unwrap().index(), second, "{path}");
        }
    }

    #[test]
    fn a_loaded_server_passes_keys_on_under_a_balance_factor() {
        let policy = HaproxyChash::uri().balance_factor(150);
        let pool = crate::Pool::new(policy, tier(3)).unwrap();
        let hash = policy.key_hash(Key::from("/k")).unwrap();
        let walk = walk_from(pool.snapshot().primary_table(), hash);
        // Load 0: ceil(1 × 1.5) = 2 slots over weights 16, 16, 16 give the
        // servers 0, 1 and 1 slot; with one request held, ceil(2 × 1.5) = 3
        // slots give 1 each, so the holder is full and the next server takes
        // the key; with two held on different servers, ceil(3 × 1.5) = 5 give
        // 1, 2, 2.
        let held = pool.pick(Key::from("/k")).unwrap();
        assert_eq!(held.index(), walk[0]);
        let next = pool.pick(Key::from("/k")).unwrap();
        let second = *walk.iter().find(|&&i| i != walk[0]).unwrap();
        assert_eq!(next.index(), second);
        let third = pool.pick(Key::from("/k")).unwrap();
        let expected = if walk[0] == 0 { second } else { walk[0] };
        assert_eq!(third.index(), expected);
    }

    #[test]
    fn refuses_bad_factors_and_weights() {
        let err = crate::Pool::new(HaproxyChash::uri().balance_factor(100), tier(2));
        assert_eq!(
            err.err().unwrap().to_string(),
            "haproxy_chash: hash-balance-factor must be 0 or greater than 100, not 100"
        );
        let heavy = vec![Backend::new("h").weight(257)];
        assert_eq!(
            crate::Pool::new(HaproxyChash::uri(), heavy.clone())
                .err()
                .unwrap()
                .to_string(),
            "backend 'h' cannot be used with haproxy_chash: HAProxy weights range from 0 to 256"
        );
        assert!(HaproxyChash::uri().build(&heavy, None).is_err());
    }

    #[test]
    fn keyless_requests_walk_the_points_in_order() {
        let pool = crate::Pool::new(HaproxyChash::hdr(), tier(3)).unwrap();
        let order: Vec<usize> = pool.snapshot().primary_table().servers()[..8]
            .iter()
            .map(|&i| i as usize)
            .collect();
        let picks: Vec<usize> = (0..8)
            .map(|_| pool.pick(Key::None).unwrap().index())
            .collect();
        assert_eq!(picks, order);
    }
}

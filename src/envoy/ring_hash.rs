//! Envoy's ring hash: each host hashed onto a 64-bit ring as many times as
//! its weight earns; a key goes to the first entry at or after its hash.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::Backend;
use crate::envoy::bounded::ConsistentHash;
use crate::envoy::hash::{key_hash, murmur2_64, xxh64, MURMUR2_SEED};
use crate::envoy::hosts::{normalized, Indices, WeightedHost};
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};

/// The hash Envoy's ring hash puts hosts on the ring with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RingHashFunction {
    /// XXH64 with seed 0 (Envoy's default, `XX_HASH`).
    #[default]
    XxHash,
    /// 64-bit MurmurHash2 with libstdc++'s seed (`MURMUR_HASH_2`); see
    /// [`murmur2_64`](crate::envoy::murmur2_64).
    MurmurHash2,
}

/// Envoy's `RING_HASH` load balancer, entry for entry.
///
/// The ring is built as Envoy builds it. Hosts (not down, weight > 0) get
/// normalized weights `w`; the ring is scaled so that the lightest host gets
/// a whole number of entries, `scale = min(ceil(w_min × min_ring) / w_min,
/// max_ring)`; then, walking the hosts in tier order with running sums
/// `target += scale × w`, a host adds entries while `current < target`,
/// entry `i` hashed from the text `"<key>_<i>"` ([`Backend::hash_name`] as
/// the key). Entries are sorted by hash. A pick takes the first entry whose
/// hash is at or above the key's hash, wrapping to the first, with Envoy's
/// (ketama's) binary search.
///
/// A retry takes the next entry on the ring whose backend has not been
/// tried and can serve, so retries visit distinct backends in ring order.
/// While the backends met are distinct, this is Envoy's attempt `k` (the
/// entry `k` places further on).
///
/// # Limitations
///
/// - `down` and weight-0 backends are left out of the ring at build time, as
///   Envoy leaves out unhealthy hosts; panic mode and locality weights are
///   not modelled.
/// - Envoy's retry attempt `k` may land on a host already tried (a later
///   entry of the same host); this policy skips such entries instead.
/// - Entries with equal hashes are ordered by tier index; Envoy's order for
///   them is unspecified.
/// - As in Envoy, removing a host can add entries to the others when the
///   per-host count `ceil(w_min × min_ring)` grows, which moves some keys
///   between hosts that stayed.
///
/// # Complexity
///
/// Pick: O(log R) for a ring of R entries; a retry walks the ring, O(R) in
/// the worst case when most backends are unavailable. Build: O(R log R)
/// time, R × 10 bytes (R × 12 past 65,536 backends).
///
/// # Examples
///
/// ```
/// use upstream::envoy::RingHash;
/// use upstream::{Backend, Key, Pool};
///
/// let hosts: Vec<Backend> = (90..96).map(|p| Backend::new(format!("127.0.0.1:{p}"))).collect();
/// let ring = RingHash::new().with_ring_size(12, RingHash::MAX_RING_SIZE).unwrap();
/// let pool = Pool::new(ring, hosts).unwrap();
/// // Envoy's own test vectors.
/// assert_eq!(pool.pick(Key::Hash(0)).unwrap().id(), "127.0.0.1:94");
/// assert_eq!(pool.pick(Key::Hash(3551244743356806947)).unwrap().id(), "127.0.0.1:95");
/// assert_eq!(pool.pick(Key::Hash(3551244743356806948)).unwrap().id(), "127.0.0.1:93");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingHash {
    min_ring_size: u64,
    max_ring_size: u64,
    function: RingHashFunction,
}

impl Default for RingHash {
    fn default() -> Self {
        RingHash {
            min_ring_size: RingHash::DEFAULT_MIN_RING_SIZE,
            max_ring_size: RingHash::MAX_RING_SIZE,
            function: RingHashFunction::XxHash,
        }
    }
}

impl RingHash {
    /// Envoy's default minimum ring size.
    pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;

    /// Envoy's default and largest maximum ring size.
    pub const MAX_RING_SIZE: u64 = 8_388_608;

    /// Ring hash with Envoy's defaults: rings of 1024 to 8388608 entries,
    /// XXH64.
    pub fn new() -> Self {
        RingHash::default()
    }

    /// Sets the minimum and maximum ring sizes.
    ///
    /// # Errors
    ///
    /// [`BuildError::Policy`] when `min` is 0, `min > max`, or `max` is above
    /// [`MAX_RING_SIZE`](RingHash::MAX_RING_SIZE) (Envoy's bound).
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::envoy::RingHash;
    ///
    /// let err = RingHash::new().with_ring_size(2048, 1024).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "ring_hash: minimum_ring_size (2048) > maximum_ring_size (1024)"
    /// );
    /// ```
    pub fn with_ring_size(self, min: u64, max: u64) -> Result<Self, BuildError> {
        let reason = if min == 0 {
            Some("minimum_ring_size is 0: the ring would be empty".to_string())
        } else if min > max {
            Some(format!(
                "minimum_ring_size ({min}) > maximum_ring_size ({max})"
            ))
        } else if max > RingHash::MAX_RING_SIZE {
            Some(format!(
                "maximum_ring_size ({max}) is above {}",
                RingHash::MAX_RING_SIZE
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(BuildError::Policy {
                policy: "ring_hash",
                reason,
            }),
            None => Ok(RingHash {
                min_ring_size: min,
                max_ring_size: max,
                ..self
            }),
        }
    }

    /// Sets the hash function entries are placed with.
    pub fn hash_function(self, function: RingHashFunction) -> Self {
        RingHash { function, ..self }
    }
}

/// The prebuilt ring of [`RingHash`] for one tier.
#[derive(Debug)]
pub struct RingTable {
    hashes: Box<[u64]>,
    owners: Indices,
    hosts: Box<[WeightedHost]>,
    /// Walks the ring for requests without a key.
    cursor: AtomicU64,
}

impl RingTable {
    /// Builds the ring for `tier` with the settings of `ring`.
    ///
    /// # Complexity
    ///
    /// See [`RingHash`].
    pub fn new(tier: &[Backend], ring: &RingHash) -> Self {
        let (hosts, min_weight, _) = normalized(tier);
        let mut entries = Vec::new();
        if !hosts.is_empty() {
            let scale = ((min_weight * ring.min_ring_size as f64).ceil() / min_weight)
                .min(ring.max_ring_size as f64);
            entries.reserve(scale.ceil() as usize);
            let (mut current, mut target) = (0.0f64, 0.0f64);
            let mut text = String::new();
            for h in &hosts {
                let key = tier[h.index as usize].hash_name();
                target += scale * h.weight;
                let mut i = 0u64;
                while current < target {
                    text.clear();
                    // Writing to a String cannot fail.
                    let _ = write!(text, "{key}_{i}");
                    let hash = match ring.function {
                        RingHashFunction::XxHash => xxh64(text.as_bytes(), 0),
                        RingHashFunction::MurmurHash2 => murmur2_64(text.as_bytes(), MURMUR2_SEED),
                    };
                    entries.push((hash, h.index));
                    i += 1;
                    current += 1.0;
                }
            }
        }
        entries.sort_unstable();
        let (hashes, owners): (Vec<u64>, Vec<u32>) = entries.into_iter().unzip();
        RingTable {
            hashes: hashes.into_boxed_slice(),
            owners: Indices::new(owners, tier.len()),
            hosts: hosts.into_boxed_slice(),
            cursor: AtomicU64::new(0),
        }
    }

    /// Number of entries on the ring.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when the ring has no entry: every pick returns `None`.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Entry `i`: its hash and the tier index it belongs to.
    pub fn entry(&self, i: usize) -> Option<(u64, usize)> {
        Some((*self.hashes.get(i)?, self.owners.get(i)?))
    }

    /// The hosts the ring was built over, in tier order.
    pub fn hosts(&self) -> &[WeightedHost] {
        &self.hosts
    }

    /// Bytes used by the ring's entries.
    pub fn memory(&self) -> usize {
        self.hashes.len() * 8 + self.owners.bytes()
    }

    /// The position of the first entry at or above `hash`, wrapping to 0:
    /// Envoy's port of ketama's binary search, signed bounds included.
    ///
    /// # Complexity
    ///
    /// O(log R).
    pub fn position(&self, hash: u64) -> Option<usize> {
        let ring = &self.hashes;
        let len = i64::try_from(ring.len()).ok().filter(|&l| l > 0)?;
        let (mut low, mut high) = (0i64, len);
        loop {
            let mid = (low + high) / 2;
            if mid == len {
                return Some(0);
            }
            let at = mid as usize;
            let value = ring[at];
            let before = if at == 0 { 0 } else { ring[at - 1] };
            if hash <= value && hash > before {
                return Some(at);
            }
            if value < hash {
                low = mid + 1;
            } else {
                high = mid - 1;
            }
            if low > high {
                return Some(0);
            }
        }
    }

    /// Envoy's `chooseHost(hash, attempt)`: the entry `attempt` places after
    /// the hash's position, as a tier index.
    pub fn choose(&self, hash: u64, attempt: u32) -> Option<usize> {
        let at = self.position(hash)?;
        self.owners.get((at + attempt as usize) % self.hashes.len())
    }

    fn spread(&self) -> u64 {
        // Relaxed: the cursor only spreads unkeyed picks.
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        let len = self.hashes.len() as u64;
        if len == 0 {
            return 0;
        }
        // The hash of entry n: an unkeyed pick lands on that entry.
        self.hashes[(n % len) as usize]
    }
}

/// Per-request state of [`RingHash`]: where the walk along the ring is.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingState {
    next: usize,
    walked: usize,
    started: bool,
}

impl Policy for RingHash {
    type Table = RingTable;
    type State = RingState;

    fn name(&self) -> &'static str {
        "ring_hash"
    }

    /// Slow start would move hashed keys for a while; Envoy does not ramp
    /// hash-balanced hosts either.
    fn ramp_mode(&self) -> crate::policy::RampMode {
        crate::policy::RampMode::Off
    }

    fn build(&self, tier: &[Backend], _: Option<&RingTable>) -> Result<RingTable, BuildError> {
        Ok(RingTable::new(tier, self))
    }

    #[inline]
    fn pick(
        &self,
        table: &RingTable,
        c: &Candidates<'_>,
        key: Key<'_>,
        state: &mut RingState,
    ) -> Option<usize> {
        let len = table.len();
        if !state.started {
            let hash = key_hash(key).unwrap_or_else(|| table.spread());
            state.next = table.position(hash)?;
            state.started = true;
        }
        while state.walked < len {
            let i = table.owners.get(state.next)?;
            state.next = (state.next + 1) % len;
            state.walked += 1;
            if c.is_available(i) {
                return Some(i);
            }
        }
        None
    }
}

impl ConsistentHash for RingHash {
    fn choose(&self, table: &RingTable, hash: u64, attempt: u32) -> Option<usize> {
        table.choose(hash, attempt)
    }

    fn hosts<'t>(&self, table: &'t RingTable) -> &'t [WeightedHost] {
        &table.hosts
    }

    fn spread(&self, table: &RingTable) -> u64 {
        table.spread()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, Pool};

    fn ports(range: std::ops::Range<u16>) -> Vec<Backend> {
        range
            .map(|p| Backend::new(format!("127.0.0.1:{p}")))
            .collect()
    }

    fn ring_of(tier: &[Backend], table: &RingTable) -> Vec<(u64, String)> {
        (0..table.len())
            .map(|i| {
                let (h, o) = table.entry(i).unwrap();
                (h, tier[o].hash_name().to_string())
            })
            .collect()
    }

    fn small(min: u64, max: u64) -> RingHash {
        RingHash::new().with_ring_size(min, max).unwrap()
    }

    /// The first entry at or above the hash, by a linear scan.
    fn naive_position(hashes: &[u64], hash: u64) -> usize {
        hashes.iter().position(|&h| h >= hash).unwrap_or(0)
    }

    #[test]
    fn envoy_golden_ring_of_six() {
        let tier = ports(90..96);
        let table = RingTable::new(&tier, &small(12, RingHash::MAX_RING_SIZE));
        let want: Vec<(u64, String)> = [
            (833437586790550860, 94),
            (928266305478181108, 92),
            (1033482794131418490, 90),
            (3551244743356806947, 95),
            (3851675632748031481, 93),
            (5583722120771150861, 91),
            (6311230543546372928, 91),
            (7700377290971790572, 93),
            (13144177310400110813, 95),
            (13444792449719432967, 92),
            (15516499411664133160, 94),
            (16117243373044804889, 90),
        ]
        .iter()
        .map(|&(h, p)| (h, format!("127.0.0.1:{p}")))
        .collect();
        assert_eq!(ring_of(&tier, &table), want);

        let pick = |h| tier[table.choose(h, 0).unwrap()].id.clone();
        assert_eq!(pick(0), "127.0.0.1:94");
        assert_eq!(pick(u64::MAX), "127.0.0.1:94");
        assert_eq!(pick(3551244743356806947), "127.0.0.1:95");
        assert_eq!(pick(3551244743356806948), "127.0.0.1:93");
        assert_eq!(pick(16117243373044804880), "127.0.0.1:90");
    }

    #[test]
    fn envoy_golden_murmur2_ring() {
        let tier = ports(80..86);
        let ring = small(12, RingHash::MAX_RING_SIZE).hash_function(RingHashFunction::MurmurHash2);
        let table = RingTable::new(&tier, &ring);
        let want: Vec<u64> = vec![
            1358027074129602068,
            4361834613929391114,
            7224494972555149682,
            7701421856454313576,
            8649315368077433379,
            8739448859063030639,
            9887544217113020895,
            10150910876324007731,
            15168472011420622455,
            15427156902705414897,
            16375050414328759093,
            17613279263364193813,
        ];
        let got: Vec<u64> = (0..table.len())
            .map(|i| table.entry(i).unwrap().0)
            .collect();
        assert_eq!(got, want);
        let owner = |h| tier[table.choose(h, 0).unwrap()].id.clone();
        assert_eq!(owner(0), "127.0.0.1:85");
        assert_eq!(owner(1358027074129602069), "127.0.0.1:83");
        assert_eq!(owner(10150910876324007730), "127.0.0.1:82");
    }

    #[test]
    fn envoy_golden_hash_keys() {
        let tier: Vec<Backend> = (90..96)
            .map(|p| Backend::new(format!("127.0.0.1:{p}")).hash_key(p.to_string()))
            .collect();
        let table = RingTable::new(&tier, &small(12, RingHash::MAX_RING_SIZE));
        let first = table.entry(0).unwrap();
        assert_eq!(
            (first.0, tier[first.1].hash_name()),
            (1975508444536362413, "95")
        );
        let owner = |h| tier[table.choose(h, 0).unwrap()].hash_name().to_string();
        assert_eq!(owner(7225015537174310577), "92");
        assert_eq!(owner(6803900775736438537), "93");
        assert_eq!(owner(u64::MAX), "95");
    }

    #[test]
    fn envoy_golden_uneven_and_weighted_rings() {
        // UnevenHosts: 2 hosts, minimum 3 → 2 entries each, 4 in all.
        let tier = ports(80..82);
        let table = RingTable::new(&tier, &small(3, RingHash::MAX_RING_SIZE));
        let got: Vec<u64> = (0..4).map(|i| table.entry(i).unwrap().0).collect();
        assert_eq!(
            got,
            [
                5454692015285649509,
                7859399908942313493,
                13838424394637650569,
                16064866803292627174
            ]
        );
        // HostWeightedTinyRing: weights 1, 2, 3 on a ring of exactly 6.
        let tier = vec![
            Backend::new("127.0.0.1:90"),
            Backend::new("127.0.0.1:91").weight(2),
            Backend::new("127.0.0.1:92").weight(3),
        ];
        let table = RingTable::new(&tier, &small(6, 6));
        assert_eq!(table.len(), 6);
        let expected = [
            (928266305478181108u64, 2usize),
            (4443673547860492590, 2),
            (5583722120771150861, 1),
            (6311230543546372928, 1),
            (13444792449719432967, 2),
            (16117243373044804889, 0),
        ];
        for (hash, owner) in expected {
            assert_eq!(table.choose(hash, 0), Some(owner), "{hash}");
        }
    }

    #[test]
    fn envoy_golden_retries() {
        // BasicWithRetryHostPredicate: hash 0 → :94, then :92, then :90.
        let tier = ports(90..96);
        let ring = small(12, RingHash::MAX_RING_SIZE);
        let table = RingTable::new(&tier, &ring);
        assert_eq!(table.choose(0, 1), Some(2));
        assert_eq!(table.choose(0, 2), Some(0));
        assert_eq!(table.choose(0, 13), Some(2));

        let pool = Pool::new(ring, tier).unwrap();
        let mut request = pool.request(Key::Hash(0));
        let order: Vec<String> =
            std::iter::from_fn(|| request.next().map(|p| p.id().to_string())).collect();
        // Ring order from :94, each backend once.
        assert_eq!(
            order,
            [
                "127.0.0.1:94",
                "127.0.0.1:92",
                "127.0.0.1:90",
                "127.0.0.1:95",
                "127.0.0.1:93",
                "127.0.0.1:91"
            ]
        );
    }

    #[test]
    fn ketama_search_matches_linear_scan() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed
        };
        for len in [1usize, 2, 3, 7, 64, 1000] {
            let tier = ports(0..1);
            let mut table = RingTable::new(&tier, &small(1, 1));
            let mut hashes: Vec<u64> = (0..len).map(|_| next()).collect();
            hashes.sort_unstable();
            table.hashes = hashes.clone().into_boxed_slice();
            table.owners = Indices::new(vec![0; len], 1);
            let mut probes: Vec<u64> = (0..500).map(|_| next()).collect();
            probes.extend(hashes.iter().copied());
            probes.extend(hashes.iter().map(|h| h.wrapping_add(1)));
            probes.extend([0, 1, u64::MAX]);
            for h in probes {
                assert_eq!(
                    table.position(h),
                    Some(naive_position(&hashes, h)),
                    "len {len} h {h}"
                );
            }
        }
    }

    #[test]
    fn ring_size_settings_are_checked() {
        assert!(RingHash::new().with_ring_size(0, 10).is_err());
        assert!(RingHash::new().with_ring_size(5, 4).is_err());
        assert!(RingHash::new()
            .with_ring_size(1, RingHash::MAX_RING_SIZE + 1)
            .is_err());
        assert!(RingHash::new().with_ring_size(1, 1).is_ok());
    }

    #[test]
    fn max_ring_size_caps_the_ring() {
        // Weights 1:10000:10000 would want 20001 entries; the maximum of 5000
        // caps the scale, and Envoy's running sums give 1, 2500, 2499.
        let tier = vec![
            Backend::new("a").weight(1),
            Backend::new("b").weight(10_000),
            Backend::new("c").weight(10_000),
        ];
        let table = RingTable::new(&tier, &small(1024, 5000));
        let mut per_host = [0; 3];
        for i in 0..table.len() {
            per_host[table.entry(i).unwrap().1] += 1;
        }
        assert_eq!(per_host, [1, 2500, 2499]);
    }

    #[test]
    fn default_ring_has_envoy_size() {
        let tier = ports(0..10);
        let table = RingTable::new(&tier, &RingHash::new());
        // ceil(0.1 × 1024) = 103 entries per host.
        assert_eq!(table.len(), 1030);
    }

    #[test]
    fn removal_moves_keys_only_off_the_removed_host_or_onto_new_entries() {
        // The ring's guarantee: an entry that stays keeps its keys. Envoy
        // may add entries to survivors when the scale changes (here some
        // hosts go from 11 to 12 entries through rounding of the running
        // sums), and only those new entries take keys from survivors.
        let tier = ports(1000..1100);
        let ring = RingHash::new();
        let before = RingTable::new(&tier, &ring);
        let mut smaller = tier.clone();
        smaller.remove(37);
        let after = RingTable::new(&smaller, &ring);
        let old_hashes: std::collections::HashSet<u64> = (0..before.len())
            .map(|i| before.entry(i).unwrap().0)
            .collect();
        let (mut from_removed, mut to_new_entries) = (0, 0);
        for k in 0..20_000u64 {
            let h = xxh64(&k.to_le_bytes(), 0);
            let old = &tier[before.choose(h, 0).unwrap()].id;
            let (entry_hash, owner) = after.entry(after.position(h).unwrap()).unwrap();
            let new = &smaller[owner].id;
            if old == new {
                continue;
            }
            if old == &tier[37].id {
                from_removed += 1;
            } else {
                assert!(
                    !old_hashes.contains(&entry_hash),
                    "key {k} moved to an old entry"
                );
                to_new_entries += 1;
            }
        }
        assert!(from_removed > 0);
        assert!(to_new_entries > 0, "this case does add entries");
    }

    #[test]
    fn removal_with_unchanged_entry_counts_moves_only_its_keys() {
        // With weights that keep every survivor's entry count (a ring of
        // exactly 4 entries per host, normalized weights powers of two), only
        // the removed host's keys move.
        let tier = ports(0..4);
        let ring = small(16, 16);
        let before = RingTable::new(&tier, &ring);
        let smaller: Vec<Backend> = tier[..2].iter().cloned().chain([tier[3].clone()]).collect();
        let after = RingTable::new(&smaller, &small(12, 12));
        assert_eq!((before.len(), after.len()), (16, 12));
        let mut moved = 0;
        for k in 0..20_000u64 {
            let h = xxh64(&k.to_le_bytes(), 0);
            let old = &tier[before.choose(h, 0).unwrap()].id;
            let new = &smaller[after.choose(h, 0).unwrap()].id;
            if old != new {
                assert_eq!(old, &tier[2].id);
                moved += 1;
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn empty_down_and_weight_zero_never_panic() {
        let pool = Pool::new(RingHash::new(), Vec::<Backend>::new()).unwrap();
        assert!(pool.pick(Key::Hash(1)).is_none());
        assert!(pool.pick(Key::None).is_none());
        let tier = vec![Backend::new("a").weight(0), Backend::new("b").down(true)];
        let pool = Pool::new(RingHash::new(), tier).unwrap();
        assert!(pool.pick(Key::Hash(1)).is_none());
        let tier = vec![
            Backend::new("a").weight(0),
            Backend::new("b"),
            Backend::new("c").down(true),
        ];
        let pool = Pool::new(RingHash::new(), tier).unwrap();
        for h in [0, 1, u64::MAX] {
            assert_eq!(pool.pick(Key::Hash(h)).unwrap().id(), "b");
        }
    }

    #[test]
    fn unkeyed_requests_walk_the_ring() {
        let tier = ports(90..96);
        let ring = small(12, RingHash::MAX_RING_SIZE);
        let pool = Pool::new(ring, tier.clone()).unwrap();
        let table = RingTable::new(&tier, &ring);
        let got: Vec<usize> = (0..24)
            .map(|_| pool.pick(Key::None).unwrap().index())
            .collect();
        let want: Vec<usize> = (0..24).map(|i| table.entry(i % 12).unwrap().1).collect();
        assert_eq!(got, want);
    }
}

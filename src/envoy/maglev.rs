//! Envoy's Maglev: a prime-sized lookup table filled from per-host
//! permutations, so a pick is one table read.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::Backend;
use crate::envoy::bounded::ConsistentHash;
use crate::envoy::hash::{key_hash, xxh64};
use crate::envoy::hosts::{normalized, Indices, WeightedHost};
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};

/// Attempts (`hash ^ (2^64 - k)`) one pick makes before it falls back to a
/// scan of the tier.
const MAX_ATTEMPTS: u32 = 32;

/// Envoy's `MAGLEV` load balancer, table for table.
///
/// The table is built as Envoy builds it: hosts (not down, weight > 0) sorted
/// by their key string ([`Backend::hash_name`]: the identity, or the hash key
/// when set), each with `offset = XXH64(key, 0) % M` and
/// `skip = XXH64(key, 1) % (M - 1) + 1`; then rounds over the hosts in
/// that order, where a host of normalized weight `w` takes its next free
/// permutation slot in round `r` only when `r × w` has caught up with its
/// running target (which grows by the largest normalized weight each time it
/// takes a slot). So a host of the largest weight takes a slot every round,
/// one of a third of that weight every third round.
///
/// A pick reads `table[hash % M]` for [`Key::Hash`] (see
/// [`key_hash`](crate::envoy::key_hash) for the other keys). If that backend
/// cannot serve (failed out, at `max_conns`, already tried), attempt `k`
/// reads `table[(hash ^ (2^64 - k)) % M]`, as Envoy's retry host predicate
/// does; the attempt count lives in the request's [`MaglevState`].
///
/// # Limitations
///
/// - Envoy puts only healthy hosts in the table and rebuilds it when health
///   changes (falling back to all hosts in panic mode); here `down` and
///   weight-0 backends are left out at build time, and passive failures are
///   handled by the retry attempts, without a rebuild. Panic mode and
///   locality weights are not modelled.
/// - After 32 attempts that all hit unavailable backends, a pick takes the
///   first available backend in tier order from `hash % n`, which Envoy
///   never does (it returns the last host it checked).
/// - Hosts whose keys are equal are ordered by tier index; Envoy's order for
///   them is unspecified.
///
/// # Complexity
///
/// Pick: O(1) (a table read) while the first choices are available. Build:
/// O(M log M) expected time for the permutation walks, plus O(M log n) for
/// the rounds; memory M × 2 bytes for at most 65,536 backends, M × 4 bytes
/// beyond.
///
/// # Examples
///
/// ```
/// use upstream::envoy::Maglev;
/// use upstream::{Backend, Key, Pool};
///
/// let hosts: Vec<Backend> = (90..96).map(|p| Backend::new(format!("127.0.0.1:{p}"))).collect();
/// let pool = Pool::new(Maglev::with_table_size(7).unwrap(), hosts).unwrap();
/// // Envoy's own test: slot 0 of the 7-slot table is 127.0.0.1:92.
/// assert_eq!(pool.pick(Key::Hash(0)).unwrap().id(), "127.0.0.1:92");
/// assert_eq!(pool.pick(Key::Hash(7)).unwrap().id(), "127.0.0.1:92");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Maglev {
    table_size: u64,
}

impl Default for Maglev {
    fn default() -> Self {
        Maglev {
            table_size: Maglev::DEFAULT_TABLE_SIZE,
        }
    }
}

impl Maglev {
    /// Envoy's default table size, the prime the Maglev paper recommends.
    pub const DEFAULT_TABLE_SIZE: u64 = 65537;

    /// The largest table size Envoy accepts.
    pub const MAX_TABLE_SIZE: u64 = 5_000_011;

    /// Maglev with the default table size, 65537.
    pub fn new() -> Self {
        Maglev::default()
    }

    /// Maglev with a table of `table_size` slots.
    ///
    /// # Errors
    ///
    /// [`BuildError::Policy`] unless `table_size` is a prime no larger than
    /// [`MAX_TABLE_SIZE`](Maglev::MAX_TABLE_SIZE), as Envoy requires.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::envoy::Maglev;
    ///
    /// assert!(Maglev::with_table_size(17).is_ok());
    /// let err = Maglev::with_table_size(65536).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "maglev: table size 65536 is not a prime number between 2 and 5000011"
    /// );
    /// ```
    pub fn with_table_size(table_size: u64) -> Result<Self, BuildError> {
        if table_size > Maglev::MAX_TABLE_SIZE || !is_prime(table_size) {
            return Err(BuildError::Policy {
                policy: "maglev",
                reason: format!(
                    "table size {table_size} is not a prime number between 2 and {}",
                    Maglev::MAX_TABLE_SIZE
                ),
            });
        }
        Ok(Maglev { table_size })
    }

    /// The number of slots, M.
    pub fn table_size(&self) -> u64 {
        self.table_size
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// The prebuilt table of [`Maglev`] for one tier.
#[derive(Debug)]
pub struct MaglevTable {
    slots: Indices,
    hosts: Box<[WeightedHost]>,
    /// Walks the table for requests without a key.
    cursor: AtomicU64,
}

impl MaglevTable {
    /// Builds the table for `tier` with `table_size` slots (a prime; see
    /// [`Maglev::with_table_size`]).
    ///
    /// # Complexity
    ///
    /// See [`Maglev`].
    pub fn new(tier: &[Backend], table_size: u64) -> Self {
        let (hosts, _, max_weight) = normalized(tier);
        let slots = if hosts.is_empty() {
            Vec::new()
        } else {
            populate(tier, &hosts, max_weight, table_size)
        };
        MaglevTable {
            slots: Indices::new(slots, tier.len()),
            hosts: hosts.into_boxed_slice(),
            cursor: AtomicU64::new(0),
        }
    }

    /// Number of slots (0 when no backend could be placed).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the table has no slot: every pick returns `None`.
    pub fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }

    /// The tier index in slot `i`.
    pub fn slot(&self, i: usize) -> Option<usize> {
        self.slots.get(i)
    }

    /// The hosts the table was built over, in tier order.
    pub fn hosts(&self) -> &[WeightedHost] {
        &self.hosts
    }

    /// Bytes used by the slots.
    pub fn memory(&self) -> usize {
        self.slots.bytes()
    }

    /// Envoy's `chooseHost(hash, attempt)`: the tier index in slot
    /// `hash % M`, with `hash ^ (2^64 - attempt)` for attempts after the
    /// first. `None` only for an empty table.
    ///
    /// # Complexity
    ///
    /// O(1).
    #[inline]
    pub fn choose(&self, hash: u64, attempt: u32) -> Option<usize> {
        let size = self.slots.len() as u64;
        if size == 0 {
            return None;
        }
        let hash = if attempt > 0 {
            hash ^ 0u64.wrapping_sub(u64::from(attempt))
        } else {
            hash
        };
        self.slots.get((hash % size) as usize)
    }

    fn spread(&self) -> u64 {
        // Relaxed: the cursor only spreads unkeyed picks over the slots.
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }
}

/// One host while the table is filled: its permutation position and its
/// progress towards its weighted share.
struct Filler {
    index: u32,
    position: u64,
    skip: u64,
    weight: f64,
    target: f64,
}

/// Fills the table exactly as Envoy's nested loop does (rounds in order,
/// hosts in key order within a round), but visits only the hosts eligible
/// in a round, through a heap ordered by (round, position in key order).
fn populate(tier: &[Backend], hosts: &[WeightedHost], max_weight: f64, size: u64) -> Vec<u32> {
    let mut sorted: Vec<&WeightedHost> = hosts.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |h: &WeightedHost| tier[h.index as usize].hash_name();
        key(a).cmp(key(b)).then(a.index.cmp(&b.index))
    });
    let mut fillers: Vec<Filler> = sorted
        .iter()
        .map(|h| {
            let key = tier[h.index as usize].hash_name().as_bytes();
            Filler {
                index: h.index,
                position: xxh64(key, 0) % size,
                skip: xxh64(key, 1) % (size - 1).max(1) + 1,
                weight: h.weight,
                target: 0.0,
            }
        })
        .collect();

    let mut slots = vec![0u32; size as usize];
    // One bit per slot: 8 KiB for the default size, so the probes of the
    // permutation walks stay in the first-level cache.
    let mut taken = vec![0u64; (size as usize).div_ceil(64)];
    let is_taken = |taken: &[u64], c: u64| taken[(c / 64) as usize] & (1 << (c % 64)) != 0;
    // Every host is eligible in round 1: 1 × w >= 0.
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        (0..fillers.len()).map(|i| Reverse((1, i))).collect();
    let mut filled = 0;
    while filled < size {
        let Some(Reverse((round, i))) = heap.pop() else {
            break;
        };
        let f = &mut fillers[i];
        f.target += max_weight;
        // Position and skip are below size: a subtraction replaces `% size`.
        let step = |c: u64| {
            if c + f.skip >= size {
                c + f.skip - size
            } else {
                c + f.skip
            }
        };
        let mut c = f.position;
        while is_taken(&taken, c) {
            c = step(c);
        }
        slots[c as usize] = f.index;
        taken[(c / 64) as usize] |= 1 << (c % 64);
        f.position = step(c);
        filled += 1;
        heap.push(Reverse((next_round(f.weight, f.target, round + 1), i)));
    }
    slots
}

/// The first round `r >= from` in which Envoy's test `r × w < target`
/// fails, that is in which the host takes a slot. Computed from
/// `target / w`, then corrected with the very comparison Envoy makes, so
/// that floating-point rounding cannot shift a host by a round.
fn next_round(weight: f64, target: f64, from: u64) -> u64 {
    let takes = |r: u64| (r as f64) * weight >= target;
    let estimate = (target / weight).ceil();
    let mut r = if estimate.is_finite() && estimate > from as f64 {
        estimate as u64
    } else {
        from
    };
    while r > from && takes(r - 1) {
        r -= 1;
    }
    while !takes(r) {
        r += 1;
    }
    r
}

/// Per-request state of [`Maglev`]: the next attempt number, and the hash
/// an unkeyed request was given.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaglevState {
    attempt: u32,
    spread: Option<u64>,
}

impl Policy for Maglev {
    type Table = MaglevTable;
    type State = MaglevState;

    fn name(&self) -> &'static str {
        "maglev"
    }

    /// Slow start would move hashed keys for a while; Envoy does not ramp
    /// hash-balanced hosts either.
    fn ramp_mode(&self) -> crate::policy::RampMode {
        crate::policy::RampMode::Off
    }

    fn build(&self, tier: &[Backend], _: Option<&MaglevTable>) -> Result<MaglevTable, BuildError> {
        Ok(MaglevTable::new(tier, self.table_size))
    }

    #[inline]
    fn pick(
        &self,
        table: &MaglevTable,
        c: &Candidates<'_>,
        key: Key<'_>,
        state: &mut MaglevState,
    ) -> Option<usize> {
        if table.is_empty() {
            return None;
        }
        let hash =
            key_hash(key).unwrap_or_else(|| *state.spread.get_or_insert_with(|| table.spread()));
        while state.attempt < MAX_ATTEMPTS {
            let attempt = state.attempt;
            state.attempt += 1;
            let i = table.choose(hash, attempt)?;
            if c.is_available(i) {
                return Some(i);
            }
        }
        first_available_from(&table.hosts, c, hash)
    }
}

impl ConsistentHash for Maglev {
    fn choose(&self, table: &MaglevTable, hash: u64, attempt: u32) -> Option<usize> {
        table.choose(hash, attempt)
    }

    fn hosts<'t>(&self, table: &'t MaglevTable) -> &'t [WeightedHost] {
        &table.hosts
    }

    fn spread(&self, table: &MaglevTable) -> u64 {
        table.spread()
    }
}

/// The first available host in tier order, starting at `hash % n`.
pub(crate) fn first_available_from(
    hosts: &[WeightedHost],
    c: &Candidates<'_>,
    hash: u64,
) -> Option<usize> {
    let n = hosts.len();
    if n == 0 {
        return None;
    }
    let start = (hash % n as u64) as usize;
    (0..n)
        .map(|k| hosts[(start + k) % n].index as usize)
        .find(|&i| c.is_available(i))
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

    fn table_ports(tier: &[Backend], table: &MaglevTable) -> Vec<u16> {
        (0..table.len())
            .map(|s| tier[table.slot(s).unwrap()].socket_addr().unwrap().port())
            .collect()
    }

    /// Envoy's loop, written plainly: rounds over all hosts, permutation
    /// recomputed from `next` each time.
    fn naive(tier: &[Backend], size: u64) -> Vec<u32> {
        let (hosts, _, max) = normalized(tier);
        let mut sorted: Vec<_> = hosts.iter().collect();
        sorted.sort_by_key(|h| tier[h.index as usize].hash_name());
        struct E {
            index: u32,
            offset: u64,
            skip: u64,
            weight: f64,
            target: f64,
            next: u64,
        }
        let mut entries: Vec<E> = sorted
            .iter()
            .map(|h| {
                let key = tier[h.index as usize].hash_name().as_bytes();
                E {
                    index: h.index,
                    offset: xxh64(key, 0) % size,
                    skip: xxh64(key, 1) % (size - 1) + 1,
                    weight: h.weight,
                    target: 0.0,
                    next: 0,
                }
            })
            .collect();
        let mut table: Vec<Option<u32>> = vec![None; size as usize];
        let mut filled = 0;
        let mut round = 1u32;
        while filled < size {
            for e in entries.iter_mut() {
                if filled == size {
                    break;
                }
                if f64::from(round) * e.weight < e.target {
                    continue;
                }
                e.target += max;
                let mut c = (e.offset + e.skip * e.next) % size;
                while table[c as usize].is_some() {
                    e.next += 1;
                    c = (e.offset + e.skip * e.next) % size;
                }
                table[c as usize] = Some(e.index);
                e.next += 1;
                filled += 1;
            }
            round += 1;
        }
        table.into_iter().map(Option::unwrap).collect()
    }

    #[test]
    fn envoy_golden_seven_slots() {
        let tier = ports(90..96);
        let table = MaglevTable::new(&tier, 7);
        assert_eq!(table_ports(&tier, &table), [92, 94, 90, 91, 95, 90, 93]);
    }

    #[test]
    fn envoy_golden_weighted_seventeen_slots() {
        let tier = vec![
            Backend::new("127.0.0.1:90"),
            Backend::new("127.0.0.1:91").weight(2),
        ];
        let table = MaglevTable::new(&tier, 17);
        assert_eq!(
            table_ports(&tier, &table),
            [91, 90, 90, 91, 90, 91, 91, 90, 91, 91, 91, 91, 91, 90, 91, 90, 91]
        );
    }

    #[test]
    fn envoy_golden_hash_keys() {
        // Envoy's BasicWithMetadataHashKey: keys "90".."95".
        let tier: Vec<Backend> = (90..96)
            .map(|p| Backend::new(format!("127.0.0.1:{p}")).hash_key(p.to_string()))
            .collect();
        let table = MaglevTable::new(&tier, 7);
        assert_eq!(table_ports(&tier, &table), [92, 95, 90, 93, 94, 91, 90]);
    }

    #[test]
    fn envoy_golden_retries() {
        // Envoy's BasicWithRetryHostPredicate: hash 10 is slot 3 (:91),
        // attempt 1 slot 5 (:90), attempt 2 slot 4 (:95).
        let tier = ports(90..96);
        let table = MaglevTable::new(&tier, 7);
        assert_eq!(table.choose(10, 0), Some(1));
        assert_eq!(table.choose(10, 1), Some(0));
        assert_eq!(table.choose(10, 2), Some(5));

        let pool = Pool::new(Maglev::with_table_size(7).unwrap(), tier).unwrap();
        let mut request = pool.request(Key::Hash(10));
        let order: Vec<String> = (0..3)
            .map(|_| request.next().unwrap().id().to_string())
            .collect();
        assert_eq!(order, ["127.0.0.1:91", "127.0.0.1:90", "127.0.0.1:95"]);
    }

    #[test]
    fn lopsided_weights_fill_as_envoy_does() {
        // Envoy's LocalityWeightedLopsided shape without localities: one
        // heavy host, 1023 light ones; every light host gets exactly one slot.
        let mut tier = vec![Backend::new("127.0.0.1:0").weight(127 * 1023)];
        tier.extend((1..1024).map(|p| Backend::new(format!("127.0.0.1:{p}"))));
        let table = MaglevTable::new(&tier, Maglev::DEFAULT_TABLE_SIZE);
        let mut counts = vec![0u32; tier.len()];
        for s in 0..table.len() {
            counts[table.slot(s).unwrap()] += 1;
        }
        assert!(counts[1..].iter().all(|&c| c == 1));
        assert_eq!(counts[0], 65537 - 1023);
    }

    #[test]
    fn heap_fill_matches_the_plain_loop() {
        let cases: Vec<Vec<Backend>> = vec![
            ports(90..96),
            (0..40)
                .map(|i| Backend::new(format!("10.0.0.{i}:80")).weight(1 + i % 7))
                .collect(),
            (0..5)
                .map(|i| Backend::new(format!("h{i}")).weight([1, 100, 3, 1000, 7][i]))
                .collect(),
            vec![Backend::new("only")],
        ];
        for tier in &cases {
            for size in [7u64, 17, 101, 1009, 65537] {
                let table = MaglevTable::new(tier, size);
                let got: Vec<u32> = (0..table.len())
                    .map(|s| table.slot(s).unwrap() as u32)
                    .collect();
                assert_eq!(got, naive(tier, size), "n={} M={size}", tier.len());
            }
        }
    }

    #[test]
    fn more_hosts_than_slots_fill_the_table() {
        let tier = ports(0..50);
        let table = MaglevTable::new(&tier, 7);
        let got: Vec<u32> = (0..7).map(|s| table.slot(s).unwrap() as u32).collect();
        assert_eq!(got, naive(&tier, 7));
    }

    #[test]
    fn table_size_must_be_a_prime_in_range() {
        for bad in [0, 1, 4, 65536, 5_000_012, 5_000_017, u64::MAX] {
            assert!(Maglev::with_table_size(bad).is_err(), "{bad}");
        }
        for good in [2, 3, 7, 65537, 5_000_011] {
            assert_eq!(Maglev::with_table_size(good).unwrap().table_size(), good);
        }
    }

    #[test]
    fn two_slot_table_works() {
        let tier = ports(90..93);
        let table = MaglevTable::new(&tier, 2);
        assert_eq!(table.len(), 2);
        let got: Vec<u32> = (0..2).map(|s| table.slot(s).unwrap() as u32).collect();
        assert_eq!(got, naive(&tier, 2));
    }

    #[test]
    fn empty_down_and_weight_zero_never_panic() {
        let maglev = Maglev::with_table_size(7).unwrap();
        let pool = Pool::new(maglev, Vec::<Backend>::new()).unwrap();
        assert!(pool.pick(Key::Hash(1)).is_none());
        assert!(pool.pick(Key::None).is_none());

        let tier = vec![Backend::new("a").weight(0), Backend::new("b").down(true)];
        let pool = Pool::new(maglev, tier).unwrap();
        assert!(pool.snapshot().primary_table().is_empty());
        assert!(pool.pick(Key::Hash(3)).is_none());

        let tier = vec![
            Backend::new("a").weight(0),
            Backend::new("b"),
            Backend::new("c").down(true),
        ];
        let pool = Pool::new(maglev, tier).unwrap();
        for h in 0..50 {
            assert_eq!(pool.pick(Key::Hash(h)).unwrap().id(), "b");
        }
    }

    #[test]
    fn retries_reach_every_backend_once() {
        let pool = Pool::new(Maglev::with_table_size(17).unwrap(), ports(0..5)).unwrap();
        for h in 0..20 {
            let mut request = pool.request(Key::Hash(h));
            let mut seen: Vec<usize> =
                std::iter::from_fn(|| request.next().map(|p| p.index())).collect();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn unkeyed_requests_walk_the_table() {
        let tier = ports(90..96);
        let pool = Pool::new(Maglev::with_table_size(7).unwrap(), tier.clone()).unwrap();
        let table = MaglevTable::new(&tier, 7);
        let got: Vec<usize> = (0..14)
            .map(|_| pool.pick(Key::None).unwrap().index())
            .collect();
        let expected: Vec<usize> = (0..14).map(|s| table.slot(s % 7).unwrap()).collect();
        assert_eq!(got, expected);
    }
}

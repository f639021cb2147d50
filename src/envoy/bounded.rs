//! Envoy's bounded loads (`hash_balance_factor`) over Maglev or ring hash.

use rand_mt::Mt;

use crate::backend::Backend;
use crate::envoy::hash::key_hash;
use crate::envoy::hosts::{weight_of, WeightedHost};
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};

/// A consistent-hash policy whose table answers Envoy's
/// `chooseHost(hash, attempt)`, so that [`BoundedLoad`] can wrap it.
pub trait ConsistentHash: Policy {
    /// Envoy's `chooseHost(hash, attempt)` on `table`, as a tier index,
    /// whether or not that backend is available. `None` for an empty table.
    fn choose(&self, table: &Self::Table, hash: u64, attempt: u32) -> Option<usize>;

    /// The hosts `table` was built over with their normalized weights,
    /// sorted by tier index.
    fn hosts<'t>(&self, table: &'t Self::Table) -> &'t [WeightedHost];

    /// A hash for a request without a key (Envoy draws a random one; this
    /// crate walks a cursor, so runs are reproducible).
    fn spread(&self, table: &Self::Table) -> u64;
}

/// Steps of the seeded shuffle one pick may take before it scans the hosts
/// in order instead.
const MAX_PROBES: usize = 128;

/// Envoy's bounded-load consistent hashing over Maglev or ring hash
/// (`hash_balance_factor`, from "Consistent Hashing with Bounded Loads").
///
/// A backend of normalized weight `w` is taken only while its active
/// requests fit its share of the pool's active requests, exactly as Envoy
/// computes it:
///
/// ```text
/// total_slots = ceil((total_active + 1) × factor / 100)   (integers)
/// slots       = max(ceil(total_slots × w), 1)
/// overload    = active / slots            taken while overload <= 1
/// ```
///
/// `total_active` is the pool's count of unreleased picks, all tiers
/// included (Envoy's cluster-wide `upstream_rq_active`), and `active` the
/// backend's own. When the hashed backend is over its bound, the others are
/// probed in a shuffle seeded by the hash (a 32-bit Mersenne Twister seeded
/// with the low 32 bits of the hash, Fisher-Yates with Envoy's draw), so the
/// same key always probes in the same order; the first that fits is taken,
/// and when none fits, the least overloaded (the hashed one on a tie).
///
/// `factor` is in percent and at least 100, as in Envoy: 150 lets a backend
/// take up to 1.5 times its share.
///
/// # Limitations
///
/// - After 128 shuffle steps without a fit, the remaining hosts are scanned
///   in tier order rather than in Envoy's shuffle order.
/// - Envoy computes `total_slots` in 32-bit arithmetic; this uses 64 bits,
///   so the two differ only past about 42 million active requests at
///   factor 100.
/// - Backends that cannot serve (failed out, tried, at `max_conns`) are
///   skipped while probing; Envoy has only healthy hosts in the list.
///
/// # Complexity
///
/// Pick: the inner pick's cost when the hashed backend fits; otherwise
/// O(p²) for p ≤ 128 shuffle steps plus the Mersenne Twister's 2.5 KiB state set-up,
/// then O(n) if no probe fits. No allocation.
///
/// # Examples
///
/// ```
/// use upstream::envoy::{BoundedLoad, Maglev};
/// use upstream::{Backend, Key, Pool};
///
/// let hosts: Vec<Backend> = (0..4).map(|i| Backend::new(format!("10.0.0.{i}:80"))).collect();
/// let pool = Pool::new(BoundedLoad::new(Maglev::new(), 150).unwrap(), hosts).unwrap();
/// // A host's bound is max(ceil(ceil((total + 1) × 1.5) × 0.25), 1):
/// // 1, 1, 2 with 0, 1, 2 requests active, so the first three picks of
/// // one key land together...
/// let held: Vec<_> = (0..3).map(|_| pool.pick(Key::Hash(42)).unwrap()).collect();
/// assert!(held.iter().all(|p| p.id() == held[0].id()));
/// // ...and with 3 active, its bound is 2 < 3: the key moves elsewhere.
/// let fourth = pool.pick(Key::Hash(42)).unwrap();
/// assert_ne!(fourth.id(), held[0].id());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundedLoad<P> {
    inner: P,
    factor: u32,
}

impl<P: ConsistentHash> BoundedLoad<P> {
    /// Wraps `inner` with Envoy's `hash_balance_factor` in percent.
    ///
    /// # Errors
    ///
    /// [`BuildError::Policy`] when `factor` is below 100 (Envoy's
    /// validation: a bound below the mean cannot hold every request).
    pub fn new(inner: P, factor: u32) -> Result<Self, BuildError> {
        if factor < 100 {
            return Err(BuildError::Policy {
                policy: "bounded_load",
                reason: format!("hash_balance_factor {factor} is below the minimum 100 (percent)"),
            });
        }
        Ok(BoundedLoad { inner, factor })
    }

    /// The wrapped policy.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The balance factor in percent.
    pub fn factor(&self) -> u32 {
        self.factor
    }

    /// Envoy's overload factor of a backend with `active` requests and
    /// normalized weight `weight`, while the pool holds `total_active`.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::envoy::{BoundedLoad, Maglev};
    ///
    /// let b = BoundedLoad::new(Maglev::new(), 150).unwrap();
    /// // total_slots = ceil(10 × 1.5) = 15, slots = ceil(15 × 0.25) = 4.
    /// assert_eq!(b.overload(3, 0.25, 9), 0.75);
    /// assert_eq!(b.overload(5, 0.25, 9), 1.25);
    /// ```
    pub fn overload(&self, active: u32, weight: f64, total_active: u64) -> f64 {
        let total_slots = total_active
            .saturating_add(1)
            .saturating_mul(u64::from(self.factor))
            .saturating_add(99)
            / 100;
        let slots = ((total_slots as f64) * weight).ceil().max(1.0);
        f64::from(active) / slots
    }
}

/// Per-request state of [`BoundedLoad`]: the next attempt number, and the
/// hash an unkeyed request was given.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoundedState {
    attempt: u32,
    spread: Option<u64>,
}

impl<P: ConsistentHash> Policy for BoundedLoad<P> {
    type Table = P::Table;
    type State = BoundedState;

    fn name(&self) -> &'static str {
        "bounded_load"
    }

    /// Slow start would move hashed keys for a while; Envoy does not ramp
    /// hash-balanced hosts either.
    fn ramp_mode(&self) -> crate::policy::RampMode {
        crate::policy::RampMode::Off
    }

    fn validate(&self, set: &crate::BackendSet) -> Result<(), BuildError> {
        self.inner.validate(set)
    }

    fn build(&self, tier: &[Backend], prev: Option<&P::Table>) -> Result<P::Table, BuildError> {
        self.inner.build(tier, prev)
    }

    fn pick(
        &self,
        table: &P::Table,
        c: &Candidates<'_>,
        key: Key<'_>,
        state: &mut BoundedState,
    ) -> Option<usize> {
        let hosts = self.inner.hosts(table);
        if hosts.is_empty() {
            return None;
        }
        let hash = key_hash(key)
            .unwrap_or_else(|| *state.spread.get_or_insert_with(|| self.inner.spread(table)));
        let attempt = state.attempt;
        state.attempt = state.attempt.saturating_add(1);
        let total = c.total_active();
        let load = |i: usize, w: f64| self.overload(c.active(i), w, total);

        // The hashed backend, when it can serve and fits.
        let hashed = self.inner.choose(table, hash, attempt)?;
        let mut least: Option<(usize, f64)> = None;
        if c.is_available(hashed) {
            let of = load(hashed, weight_of(hosts, hashed).unwrap_or(0.0));
            if of <= 1.0 {
                return Some(hashed);
            }
            least = Some((hashed, of));
        }

        // Envoy's seeded shuffle, kept sparse so it needs no allocation.
        let mut shuffle = SparseShuffle::new(hash, hosts.len());
        while let Some(k) = shuffle.next() {
            let alt = hosts[k];
            let i = alt.index as usize;
            if i == hashed || !c.is_available(i) {
                continue;
            }
            let of = load(i, alt.weight);
            if of <= 1.0 {
                return Some(i);
            }
            if least.is_none_or(|(_, l)| l > of) {
                least = Some((i, of));
            }
        }
        if shuffle.step < hosts.len() {
            return scan(hosts, c, hashed, least, &load);
        }
        least.map(|(i, _)| i)
    }
}

/// The rest of a probe, in tier order: the first host that fits, else the
/// least overloaded of everything seen.
fn scan(
    hosts: &[WeightedHost],
    c: &Candidates<'_>,
    hashed: usize,
    mut least: Option<(usize, f64)>,
    load: &dyn Fn(usize, f64) -> f64,
) -> Option<usize> {
    for h in hosts {
        let i = h.index as usize;
        if i == hashed || !c.is_available(i) {
            continue;
        }
        let of = load(i, h.weight);
        if of <= 1.0 {
            return Some(i);
        }
        if least.is_none_or(|(_, l)| l > of) {
            least = Some((i, of));
        }
    }
    least.map(|(i, _)| i)
}

/// Envoy's Fisher-Yates over `0..n` drawn from `std::mt19937(hash)`, with
/// only the displaced positions remembered (at most one per step taken, and
/// at most [`MAX_PROBES`] steps).
struct SparseShuffle {
    rng: Mt,
    n: usize,
    step: usize,
    moved: [(u32, u32); MAX_PROBES],
    len: usize,
}

impl SparseShuffle {
    fn new(hash: u64, n: usize) -> Self {
        SparseShuffle {
            // std::mt19937 reduces its seed modulo 2^32.
            rng: Mt::new(hash as u32),
            n,
            step: 0,
            moved: [(0, 0); MAX_PROBES],
            len: 0,
        }
    }

    /// Envoy's draw in `[0, k)`: divide by `2^32 / k`, redraw when too big.
    fn uniform(&mut self, k: usize) -> usize {
        let bucket = (1u64 << 32) / k as u64;
        loop {
            let x = u64::from(self.rng.next_u32()) / bucket;
            if x < k as u64 {
                return x as usize;
            }
        }
    }

    fn value_at(&self, pos: usize) -> usize {
        self.moved[..self.len]
            .iter()
            .find(|(p, _)| *p as usize == pos)
            .map_or(pos, |(_, v)| *v as usize)
    }

    fn set(&mut self, pos: usize, value: usize) {
        let (pos, value) = (pos as u32, value as u32);
        if let Some(slot) = self.moved[..self.len].iter_mut().find(|(p, _)| *p == pos) {
            slot.1 = value;
        } else if self.len < self.moved.len() {
            self.moved[self.len] = (pos, value);
            self.len += 1;
        }
    }

    fn forget(&mut self, pos: usize) {
        if let Some(at) = self.moved[..self.len]
            .iter()
            .position(|(p, _)| *p as usize == pos)
        {
            self.len -= 1;
            self.moved.swap(at, self.len);
        }
    }

    /// The host list position the next shuffle step lands on.
    fn next(&mut self) -> Option<usize> {
        let i = self.step;
        if i >= self.n || i == MAX_PROBES {
            return None;
        }
        let j = self.uniform(self.n - i);
        let here = self.value_at(i);
        let there = self.value_at(i + j);
        self.forget(i);
        if j != 0 {
            self.set(i + j, here);
        }
        self.step += 1;
        Some(there)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::{Maglev, RingHash};
    use crate::{Key, Pool};

    #[test]
    fn mersenne_twister_is_std_mt19937() {
        // The C++ standard's check: the 10000th draw of a default-seeded
        // std::mt19937 is 4123659995; its first is 3499211612.
        let mut mt = Mt::new(5489);
        assert_eq!(mt.next_u32(), 3499211612);
        let last = (1..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(last, Some(4123659995));
    }

    /// Envoy's shuffle with a full index vector, as the reference.
    fn naive_order(hash: u64, n: usize) -> Vec<usize> {
        let mut mt = Mt::new(hash as u32);
        let mut index: Vec<usize> = (0..n).collect();
        let mut out = Vec::new();
        for i in 0..n {
            let k = (n - i) as u64;
            let j = loop {
                let x = u64::from(mt.next_u32()) / ((1u64 << 32) / k);
                if x < k {
                    break x as usize;
                }
            };
            index.swap(i, i + j);
            out.push(index[i]);
        }
        out
    }

    #[test]
    fn sparse_shuffle_matches_full_shuffle() {
        for (hash, n) in [
            (0u64, 1usize),
            (7, 5),
            (42, 100),
            (u64::MAX, 60),
            (99, 3),
            (5, 1000),
        ] {
            let mut s = SparseShuffle::new(hash, n);
            let got: Vec<usize> = std::iter::from_fn(|| s.next()).collect();
            let want = naive_order(hash, n);
            assert_eq!(got, want[..n.min(MAX_PROBES)], "hash={hash} n={n}");
        }
    }

    #[test]
    fn factor_below_100_is_refused() {
        let err = BoundedLoad::new(Maglev::new(), 99).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bounded_load: hash_balance_factor 99 is below the minimum 100 (percent)"
        );
    }

    #[test]
    fn overload_follows_envoy_integer_rounding() {
        let b = BoundedLoad::new(Maglev::new(), 125).unwrap();
        // ceil(1 × 1.25) = 2 total slots; a host of weight 0.1 still gets 1.
        assert_eq!(b.overload(1, 0.1, 0), 1.0);
        assert_eq!(b.overload(2, 0.1, 0), 2.0);
        // (7 + 1) × 125 = 1000 → 10 total slots; weight 0.25 → ceil(2.5) = 3.
        assert_eq!(b.overload(3, 0.25, 7), 1.0);
        assert_eq!(b.overload(0, 0.25, u64::MAX), 0.0);
    }

    fn hosts(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend::new(format!("10.0.0.{i}:80")))
            .collect()
    }

    /// The bounded-load rule applied by brute force, as the reference.
    fn expected_pick(
        policy: &BoundedLoad<Maglev>,
        table: &crate::envoy::MaglevTable,
        active: &[u32],
        hash: u64,
    ) -> usize {
        let total: u64 = active.iter().map(|&a| u64::from(a)).sum();
        let n = table.hosts().len();
        let w = 1.0 / n as f64;
        let hashed = table.choose(hash, 0).unwrap();
        let of = |i: usize| policy.overload(active[i], w, total);
        if of(hashed) <= 1.0 {
            return hashed;
        }
        let mut least = (hashed, of(hashed));
        for k in naive_order(hash, n) {
            if k == hashed {
                continue;
            }
            if of(k) <= 1.0 {
                return k;
            }
            if least.1 > of(k) {
                least = (k, of(k));
            }
        }
        least.0
    }

    #[test]
    fn picks_match_the_rule_as_load_builds_up() {
        let policy = BoundedLoad::new(Maglev::with_table_size(101).unwrap(), 125).unwrap();
        let pool = Pool::new(policy, hosts(8)).unwrap();
        let snap = pool.snapshot();
        let mut held = Vec::new();
        let mut active = vec![0u32; 8];
        for step in 0..200u64 {
            // Few distinct keys, so that some hosts overflow.
            let hash = (step % 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let want = expected_pick(&policy, snap.primary_table(), &active, hash);
            let pick = pool.pick(Key::Hash(hash)).unwrap();
            assert_eq!(pick.index(), want, "step {step}");
            active[want] += 1;
            held.push(pick);
        }
        let max = *active.iter().max().unwrap();
        // Bound: ceil(ceil(200 × 1.25) / 8) = 32 (plus the last pick's own).
        assert!(max <= 33, "{active:?}");
    }

    #[test]
    fn unloaded_picks_are_the_inner_picks() {
        let ring = RingHash::new().with_ring_size(12, 12).unwrap();
        let tier: Vec<Backend> = (90..96)
            .map(|p| Backend::new(format!("127.0.0.1:{p}")))
            .collect();
        let bounded = Pool::new(BoundedLoad::new(ring, 200).unwrap(), tier.clone()).unwrap();
        let plain = Pool::new(ring, tier).unwrap();
        for h in [0, u64::MAX, 3551244743356806947, 3551244743356806948] {
            assert_eq!(
                bounded.pick(Key::Hash(h)).unwrap().id(),
                plain.pick(Key::Hash(h)).unwrap().id()
            );
        }
    }

    #[test]
    fn empty_and_all_unavailable_never_panic() {
        let policy = BoundedLoad::new(Maglev::with_table_size(7).unwrap(), 100).unwrap();
        let pool = Pool::new(policy, Vec::<Backend>::new()).unwrap();
        assert!(pool.pick(Key::Hash(1)).is_none());
        let pool = Pool::new(policy, vec![Backend::new("a").max_conns(1)]).unwrap();
        let _held = pool.pick(Key::Hash(1)).unwrap();
        assert!(pool.pick(Key::Hash(1)).is_none());
        assert!(pool.pick(Key::None).is_none());
    }

    #[test]
    fn retries_visit_distinct_backends() {
        let policy = BoundedLoad::new(Maglev::with_table_size(17).unwrap(), 150).unwrap();
        let pool = Pool::new(policy, hosts(4)).unwrap();
        let mut request = pool.request(Key::Hash(5));
        let mut seen: Vec<usize> =
            std::iter::from_fn(|| request.next().map(|p| p.index())).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3]);
    }
}

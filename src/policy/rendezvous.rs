//! Weighted rendezvous (highest random weight) hashing.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::Backend;
use crate::envoy::{key_hash, xxh64};
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};

/// Weighted rendezvous hashing: every backend scores the key, the highest
/// score wins.
///
/// The score is fixed and documented, so every process agrees:
///
/// 1. the key's 64-bit hash `k`: [`key_hash`] ([`Key::Hash`] as is, XXH64
///    seed 0 of [`Key::Bytes`], XXH64 of the address text of [`Key::Ip`]);
/// 2. per backend, `s = XXH64(hash_name, 0)`, computed at build time;
/// 3. `x = fmix64(k ^ s)`, MurmurHash3's 64-bit finalizer;
/// 4. `u = ((x >> 11) + 0.5) / 2^53`, in (0, 1);
/// 5. score `-w / ln(u)` for weight `w`, with a natural logarithm computed
///    by this crate from `+ - × ÷` only (so no platform's `libm` can
///    change a result).
///
/// When all positive weights are equal, step 5 is replaced by its limit:
/// the largest `x` wins. Ties go to the lower tier index.
///
/// Each pick is one scan over the tier with no sort and no allocation.
/// Retries on the same request take the next-best score among backends not
/// yet tried, so [`Request::next`](crate::Request::next) yields the ordered
/// list of distinct fallbacks. Removing a backend moves only the keys it
/// held; adding one takes keys only from others in proportion to weight.
///
/// Backends marked `down` keep their place (they are skipped at pick time,
/// so their keys come back when they do); weight-0 backends never win.
///
/// # Complexity
///
/// Pick: O(n), about one multiply-xorshift per backend (plus a logarithm
/// with unequal weights); availability is checked only for backends that
/// beat the best score so far. Build: O(n) hashes of the backend names; 16
/// bytes per backend.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, Pool, Rendezvous};
///
/// let pool = Pool::new(
///     Rendezvous,
///     vec![Backend::new("a:80"), Backend::new("b:80").weight(3), Backend::new("c:80")],
/// )
/// .unwrap();
/// let mut request = pool.request(Key::Bytes(b"user-42"));
/// let first = request.next().unwrap().id().to_string();
/// let second = request.next().unwrap().id().to_string();
/// assert_ne!(first, second);
/// // Same key, same order, in every process.
/// assert_eq!(pool.pick(Key::Bytes(b"user-42")).unwrap().id(), first);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rendezvous;

#[derive(Clone, Copy, Debug)]
struct Scored {
    seed: u64,
    /// `1 / w`, or infinity for weight 0.
    inverse_weight: f64,
}

/// The prebuilt per-backend seeds of [`Rendezvous`].
#[derive(Debug)]
pub struct RendezvousTable {
    hosts: Box<[Scored]>,
    equal_weights: bool,
    /// Spreads requests without a key.
    cursor: AtomicU64,
}

impl RendezvousTable {
    /// Builds the table for `tier`.
    pub fn new(tier: &[Backend]) -> Self {
        let hosts = tier
            .iter()
            .map(|b| Scored {
                seed: xxh64(b.hash_name().as_bytes(), 0),
                inverse_weight: if b.weight == 0 {
                    f64::INFINITY
                } else {
                    1.0 / f64::from(b.weight)
                },
            })
            .collect();
        let mut positive = tier.iter().map(|b| b.weight).filter(|&w| w > 0);
        let first = positive.next();
        let equal_weights = positive.all(|w| Some(w) == first);
        RendezvousTable {
            hosts,
            equal_weights,
            cursor: AtomicU64::new(0),
        }
    }

    /// The best `out.len()` backends for `hash`, best first, written to
    /// `out`; returns how many were written (fewer when the tier is
    /// smaller or has weight-0 backends). Availability is not considered.
    ///
    /// # Complexity
    ///
    /// O(n × k) for k = `out.len()`; no allocation.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::policy::RendezvousTable;
    /// use upstream::Backend;
    ///
    /// let tier = [Backend::new("a"), Backend::new("b"), Backend::new("c")];
    /// let table = RendezvousTable::new(&tier);
    /// let mut order = [0usize; 3];
    /// assert_eq!(table.ranked(7, &mut order), 3);
    /// let mut sorted = order;
    /// sorted.sort();
    /// assert_eq!(sorted, [0, 1, 2]);
    /// ```
    pub fn ranked(&self, hash: u64, out: &mut [usize]) -> usize {
        let mut written = 0;
        while written < out.len() {
            let taken = &out[..written];
            match self.best(hash, |i| !taken.contains(&i)) {
                Some(i) => {
                    out[written] = i;
                    written += 1;
                }
                None => break,
            }
        }
        written
    }

    /// The winning index among those `allowed` accepts. `allowed` is asked
    /// only about a backend that beats the best so far, so a pick usually
    /// checks availability a handful of times, not n.
    #[inline]
    fn best(&self, hash: u64, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        if self.equal_weights {
            let mut best: Option<(usize, u64)> = None;
            for (i, h) in self.hosts.iter().enumerate() {
                let x = fmix64(hash ^ h.seed);
                if best.is_some_and(|(_, b)| x <= b) || h.inverse_weight.is_infinite() {
                    continue;
                }
                if allowed(i) {
                    best = Some((i, x));
                }
            }
            return best.map(|(i, _)| i);
        }
        // Highest -w / ln(u) is lowest -ln(u) / w.
        let mut best: Option<(usize, f64)> = None;
        for (i, h) in self.hosts.iter().enumerate() {
            if h.inverse_weight.is_infinite() {
                continue;
            }
            let cost = -ln(unit(fmix64(hash ^ h.seed))) * h.inverse_weight;
            if best.is_some_and(|(_, b)| cost >= b) {
                continue;
            }
            if allowed(i) {
                best = Some((i, cost));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// MurmurHash3's 64-bit finalizer: a fixed bijection that spreads every
/// input bit over the whole output.
#[inline]
pub(crate) fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The top 53 bits of `x` as a number in (0, 1), never 0 or 1.
#[inline]
fn unit(x: u64) -> f64 {
    ((x >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// Natural logarithm of a positive, finite, normal `v`, from basic IEEE
/// operations only: `v = m × 2^e` with `m` in [√½, √2), then
/// `ln m = 2 atanh(s)`, `s = (m - 1) / (m + 1)`, by its series to s^23.
#[inline]
fn ln(v: f64) -> f64 {
    const MANTISSA: u64 = (1 << 52) - 1;
    let bits = v.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & MANTISSA) | (1023 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // 1 + s²/3 + s⁴/5 + ... + s²²/23, by Horner's rule.
    let mut series = 1.0 / 23.0;
    for k in (0..11).rev() {
        series = series * s2 + 1.0 / f64::from(2 * k + 1);
    }
    e as f64 * std::f64::consts::LN_2 + 2.0 * s * series
}

impl Policy for Rendezvous {
    type Table = RendezvousTable;
    type State = ();

    fn name(&self) -> &'static str {
        "rendezvous"
    }

    /// Slow start would move hashed keys for a while; Envoy does not ramp
    /// hash-balanced hosts either.
    fn ramp_mode(&self) -> crate::policy::RampMode {
        crate::policy::RampMode::Off
    }

    fn build(
        &self,
        tier: &[Backend],
        _: Option<&RendezvousTable>,
    ) -> Result<RendezvousTable, BuildError> {
        Ok(RendezvousTable::new(tier))
    }

    #[inline]
    fn pick(
        &self,
        table: &RendezvousTable,
        c: &Candidates<'_>,
        key: Key<'_>,
        _: &mut (),
    ) -> Option<usize> {
        let hash = key_hash(key).unwrap_or_else(|| {
            // Relaxed: the cursor only spreads unkeyed picks.
            fmix64(table.cursor.fetch_add(1, Ordering::Relaxed))
        });
        table.best(hash, |i| c.is_available(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pool;

    fn tier(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new(format!("10.0.0.{i}:80")).weight(w))
            .collect()
    }

    /// Every score computed with the platform's `ln`, then fully sorted.
    fn naive_order(tier: &[Backend], hash: u64) -> Vec<usize> {
        let equal = tier
            .iter()
            .filter(|b| b.weight > 0)
            .all(|b| b.weight == tier.iter().find(|b| b.weight > 0).unwrap().weight);
        let mut scored: Vec<(usize, f64, u64)> = tier
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .map(|(i, b)| {
                let x = fmix64(hash ^ xxh64(b.hash_name().as_bytes(), 0));
                let score = -f64::from(b.weight) / unit(x).ln();
                (i, score, x)
            })
            .collect();
        scored.sort_by(|a, b| {
            let by = if equal {
                b.2.cmp(&a.2)
            } else {
                b.1.partial_cmp(&a.1).unwrap()
            };
            by.then(a.0.cmp(&b.0))
        });
        scored.into_iter().map(|(i, _, _)| i).collect()
    }

    #[test]
    fn golden_scores_are_frozen() {
        // fmix64 is MurmurHash3's finalizer: known values.
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        let t = RendezvousTable::new(&tier(&[1, 1, 1, 1]));
        let mut out = [0; 4];
        t.ranked(xxh64(b"user-42", 0), &mut out);
        assert_eq!(out, [3, 2, 0, 1]);
        let t = RendezvousTable::new(&tier(&[1, 2, 3, 4]));
        t.ranked(xxh64(b"user-42", 0), &mut out);
        assert_eq!(out, [3, 2, 1, 0]);
    }

    #[test]
    fn ln_matches_the_platform_closely() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        for _ in 0..100_000 {
            x = fmix64(x.wrapping_add(0x9e37_79b9_7f4a_7c15));
            let u = unit(x);
            let (ours, libm) = (ln(u), u.ln());
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm.abs(),
                "{u}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
        assert!((ln(0.5) + std::f64::consts::LN_2).abs() < 1e-16);
    }

    #[test]
    fn picks_and_retries_follow_the_full_ranking() {
        for weights in [&[1u32, 1, 1, 1, 1][..], &[1, 5, 2, 0, 9, 3], &[7; 40]] {
            let t = tier(weights);
            let pool = Pool::new(Rendezvous, t.clone()).unwrap();
            for k in 0..200u64 {
                let hash = xxh64(&k.to_le_bytes(), 0);
                let want = naive_order(&t, hash);
                let mut request = pool.request(Key::Hash(hash));
                let got: Vec<usize> =
                    std::iter::from_fn(|| request.next().map(|p| p.index())).collect();
                assert_eq!(got, want, "weights {weights:?} key {k}");
                let mut ranked = vec![0; t.len()];
                let n = pool.snapshot().primary_table().ranked(hash, &mut ranked);
                assert_eq!(&ranked[..n], &want[..]);
            }
        }
    }

    #[test]
    fn shares_follow_weights() {
        let t = tier(&[1, 2, 3, 4]);
        let table = RendezvousTable::new(&t);
        let mut counts = [0u32; 4];
        for k in 0..100_000u64 {
            counts[table.best(xxh64(&k.to_le_bytes(), 0), |_| true).unwrap()] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let expected = 10_000.0 * (i + 1) as f64;
            assert!(
                (f64::from(c) - expected).abs() < expected * 0.05,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn removal_moves_only_the_removed_hosts_keys() {
        let before = tier(&[1, 3, 1, 2, 5, 1, 1, 4]);
        let mut after = before.clone();
        after.remove(4);
        let (tb, ta) = (RendezvousTable::new(&before), RendezvousTable::new(&after));
        let mut moved = 0;
        for k in 0..20_000u64 {
            let h = xxh64(&k.to_le_bytes(), 0);
            let old = &before[tb.best(h, |_| true).unwrap()].id;
            let new = &after[ta.best(h, |_| true).unwrap()].id;
            if old != new {
                assert_eq!(old, &before[4].id);
                moved += 1;
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn down_keeps_its_place_and_empty_never_panics() {
        let pool = Pool::new(Rendezvous, Vec::<Backend>::new()).unwrap();
        assert!(pool.pick(Key::Hash(1)).is_none());
        assert!(pool.pick(Key::None).is_none());
        let pool = Pool::new(Rendezvous, tier(&[0, 0])).unwrap();
        assert!(pool.pick(Key::Hash(1)).is_none());

        let t = tier(&[1, 1, 1]);
        let pool = Pool::new(Rendezvous, t.clone()).unwrap();
        let key = Key::Bytes(b"k");
        let winner = pool.pick(key).unwrap().id().to_string();
        pool.set_down(&winner, true).unwrap();
        assert_ne!(pool.pick(key).unwrap().id(), winner);
        pool.set_down(&winner, false).unwrap();
        assert_eq!(pool.pick(key).unwrap().id(), winner);
    }
}

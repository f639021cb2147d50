//! nginx's `hash $key consistent`: a ketama ring of CRC-32 points.
//!
//! Adding or removing a server should move only the keys that server gains
//! or loses. nginx places `160 × weight` points per server on a 32-bit
//! circle and sends a key to the first point at or after the key's CRC-32.
//! This module builds exactly nginx's circle, stores it in 8 bytes or less
//! per point (directory included), and finds a key's point through a
//! directory over the sorted points and one branch-free comparison of the
//! next 8 points, so a lookup reads three cache lines (directory, values,
//! owner), without a binary search or a division.

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::nginx_common::{refuse_backup, MAX_TRIES};
use crate::policy::{Candidates, Key, Policy, RampMode, RoundRobinTable};
use crate::BackendSet;

/// nginx's points per unit of weight.
pub const POINTS_PER_WEIGHT: u64 = 160;

/// The most points a ring is built with before weights are scaled down:
/// 160 points for each unit of a total weight of 32,768.
pub const MAX_POINTS: u64 = POINTS_PER_WEIGHT << 15;

/// Points per directory bucket, on average: 2 to 4 (the directory has a
/// power-of-two size), so that a directory entry costs 1 to 2 bytes per
/// point.
const BUCKET_POINTS: usize = 2;

/// Points compared at once from the start of a bucket.
const SCAN: usize = 8;

/// Rings of at most this many backends store owners in 16 bits.
const NARROW_OWNERS: usize = 1 << 16;

/// nginx's `hash $key consistent` (ketama), giving exactly nginx's backend
/// for every key.
///
/// Reads [`Key::Bytes`]: the value nginx would compute for the key
/// expression. Each server's [hash name](Backend::hash_name) (the server
/// string exactly as written) is split into host and port at the last `:`
/// followed only by digits (`unix:` names have no port). The CRC-32 of
/// `host`, one NUL byte and `port` is continued, for each of the server's
/// `160 × weight` points, with the previous point's value as four
/// little-endian bytes (0 for the first) and finalized. Points are sorted and
/// duplicate values dropped, the earlier server in config order keeping a
/// shared value (what nginx's stable sort on glibc gives). A key goes to the
/// first point at or above its CRC-32, wrapping at the top; if that server
/// is unavailable (down, failed out, at `max_conns`, already tried) the next
/// point is tried, and after more than 20 such steps the request is balanced
/// by round robin. An empty key or any other kind of key, and a tier of one
/// server, are balanced by round robin, as in nginx.
///
/// `down` servers keep their points, so marking a server down moves only
/// its keys; a weight-0 (drained) server has no points.
///
/// # Limitations
///
/// - A ring is bounded to [`MAX_POINTS`] (5,242,880) points plus one per
///   backend: about 33 MiB with 65,536 backends or fewer, 48 MiB beyond.
///   When `160 × total weight` is larger (total weight above 32,768, such as
///   one backend of weight 1,000,000), each backend gets its proportional
///   share of `MAX_POINTS`, rounded down, and at least 1 point. Its points
///   are then the first ones of its nginx chain, but the ring is no longer
///   nginx's (which would need over 2 GiB for that weight).
/// - Backends sharing a hash name (through [`Backend::hash_key`]) share
///   points in nginx, which balances between them; here the first of them in
///   config order owns those points and the others are reached only on
///   failover.
/// - nginx refuses `backup` only when `hash` comes before the `server`
///   lines; this policy refuses a backup server in every case.
///
/// # Complexity
///
/// Pick: one CRC-32 of the key, one directory read and 8 comparisons
/// (O(1); a binary search in the rare bucket with 8 points or more below
/// the key, and over the whole ring with more than 65,536 backends), plus
/// one step per unavailable point (at most 21). Build: O(p log p) for p
/// points. Memory: at most 8 bytes per point, directory included: 6 (a
/// 4-byte value, a 2-byte owner) plus 1 to 2 for the directory (7.5 with
/// 100 backends of weights 1 to 10, 7.2 with 1000) with 65,536 backends or
/// fewer; 8 (a 4-byte owner, no directory) beyond.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, Ketama, Pool};
///
/// let pool = Pool::new(
///     Ketama,
///     vec![Backend::new("10.0.0.1:11211"), Backend::new("10.0.0.2:11211")],
/// )
/// .unwrap();
/// let before = pool.pick(Key::from("user:42")).unwrap().id().to_string();
/// pool.add(Backend::new("10.0.0.3:11211")).unwrap();
/// let after = pool.pick(Key::from("user:42")).unwrap().id().to_string();
/// // A key moves only if it moves to the new backend.
/// assert!(after == before || after == "10.0.0.3:11211");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ketama;

/// The prebuilt ring of [`Ketama`], with its round-robin fallback.
#[derive(Debug)]
pub struct KetamaTable {
    ring: Ring,
    fallback: RoundRobinTable,
}

/// Per-request state of [`Ketama`]: the current point and the count of
/// unavailable ones, carried across the attempts of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KetamaState {
    point: Option<usize>,
    tries: u32,
}

impl KetamaTable {
    /// Number of points on the ring, after duplicates are dropped.
    pub fn points(&self) -> usize {
        self.ring.len()
    }

    /// Point `i` in ring order: its value and its owner's index in the tier.
    #[inline]
    pub fn point(&self, i: usize) -> Option<(u32, usize)> {
        self.ring.point(i)
    }

    /// The first point at or above `hash`, wrapping to point 0; `None` for
    /// an empty ring.
    ///
    /// # Complexity
    ///
    /// O(1): one directory read and 8 comparisons, as in a pick.
    #[inline]
    pub fn find(&self, hash: u32) -> Option<usize> {
        let len = self.points();
        (len > 0).then(|| match self.ring.find(hash) {
            i if i == len => 0,
            i => i,
        })
    }
}

/// The ring: sorted distinct point values, their owners in a parallel
/// array, and a directory from the top bits of a value to the first point
/// that has them.
#[derive(Debug)]
struct Ring {
    values: Box<[u32]>,
    owners: Owners,
    /// `dir[b]`: the first point whose value's top bits are `b` or more;
    /// empty when the ring is small or wide.
    dir: Box<[u32]>,
    /// `32 - log2(dir.len())`, for a non-empty directory.
    shift: u32,
}

/// Point owners, in ring order.
#[derive(Debug)]
enum Owners {
    /// Tiers of at most [`NARROW_OWNERS`] backends.
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

impl Ring {
    fn len(&self) -> usize {
        self.values.len()
    }

    /// The value and owner of point `i`.
    #[inline]
    fn point(&self, i: usize) -> Option<(u32, usize)> {
        Some((*self.values.get(i)?, self.owner(i)?))
    }

    #[inline]
    fn owner(&self, i: usize) -> Option<usize> {
        match &self.owners {
            Owners::Narrow(o) => o.get(i).map(|&o| usize::from(o)),
            Owners::Wide(o) => o.get(i).map(|&o| o as usize),
        }
    }

    /// nginx's point search: the first point at or above `hash`, or the
    /// number of points when every point is below it.
    ///
    /// The directory gives the first point of the hash's bucket; the
    /// answer is then the count of points below the hash among the next
    /// [`SCAN`], compared all at once without a branch. A bucket rarely
    /// holds that many points below the hash (or the scan would run past
    /// the end): then a binary search finishes.
    #[inline]
    fn find(&self, hash: u32) -> usize {
        if self.dir.is_empty() {
            return self.values.partition_point(|&v| v < hash);
        }
        let lo = self.dir[(hash >> self.shift) as usize] as usize;
        let rest = &self.values[lo..];
        if let Some(window) = rest.first_chunk::<SCAN>() {
            let below: usize = window.iter().map(|&v| usize::from(v < hash)).sum();
            if below < SCAN {
                return lo + below;
            }
        }
        lo + rest.partition_point(|&v| v < hash)
    }

    fn build(tier: &[Backend]) -> Ring {
        let counts = point_counts(tier);
        let total: u64 = counts.iter().sum();
        // Bounded by MAX_POINTS plus one point per backend.
        let mut points: Vec<u64> = Vec::with_capacity(total as usize);
        for (owner, (b, &count)) in tier.iter().zip(&counts).enumerate() {
            push_points(&mut points, b.hash_name().as_bytes(), owner as u64, count);
        }
        // Equal values stay in config order, as nginx's stable sort leaves
        // them, and the first of them is kept.
        sort_by_value(&mut points);
        points.dedup_by_key(|p| *p >> 32);

        let values = points.iter().map(|&p| (p >> 32) as u32).collect();
        if tier.len() > NARROW_OWNERS {
            return Ring {
                values,
                owners: Owners::Wide(points.iter().map(|&p| p as u32).collect()),
                dir: Box::new([]),
                shift: 0,
            };
        }
        let bits = (points.len() / BUCKET_POINTS).checked_ilog2().unwrap_or(0);
        let (dir, shift) = directory(&points, bits);
        // Owners are below NARROW_OWNERS here, so 16 bits hold them.
        let owners = Owners::Narrow(points.iter().map(|&p| p as u16).collect());
        Ring {
            values,
            owners,
            dir,
            shift,
        }
    }
}

/// Sorts points packed as `value << 32 | owner` by value, keeping points of
/// equal value in their order (which is config order).
///
/// Large rings take two stable counting passes over 16 bits of the value;
/// small ones a comparison sort on the whole word, which orders equal values
/// by owner, the same order.
fn sort_by_value(points: &mut Vec<u64>) {
    const DIGITS: usize = 1 << 16;
    if points.len() < DIGITS {
        points.sort_unstable();
        return;
    }
    let mut out = vec![0u64; points.len()];
    let mut starts = vec![0usize; DIGITS];
    for shift in [32, 48] {
        let digit = |p: u64| ((p >> shift) & 0xffff) as usize;
        starts.fill(0);
        for &p in points.iter() {
            starts[digit(p)] += 1;
        }
        let mut sum = 0;
        for s in starts.iter_mut() {
            (*s, sum) = (sum, sum + *s);
        }
        for &p in points.iter() {
            let at = &mut starts[digit(p)];
            out[*at] = p;
            *at += 1;
        }
        std::mem::swap(points, &mut out);
    }
}

/// Points per backend: 160 per unit of weight, scaled down to fit
/// [`MAX_POINTS`] when the total weight is too large.
fn point_counts(tier: &[Backend]) -> Vec<u64> {
    let nginx: Vec<u64> = tier
        .iter()
        .map(|b| POINTS_PER_WEIGHT * u64::from(b.weight))
        .collect();
    let total: u64 = nginx.iter().sum();
    if total <= MAX_POINTS {
        return nginx;
    }
    nginx
        .iter()
        .map(|&p| match p {
            0 => 0,
            // In u128 the product cannot overflow; the quotient is below p.
            p => (u128::from(p) * u128::from(MAX_POINTS) / u128::from(total)).max(1) as u64,
        })
        .collect()
}

/// Splits a server string as nginx does: host and port at the last `:`
/// followed only by digits; `unix:` names (any case) are all host.
fn split_server(name: &[u8]) -> (&[u8], &[u8]) {
    if name.len() >= 5 && name[..5].eq_ignore_ascii_case(b"unix:") {
        return (&name[5..], b"");
    }
    let digits = name.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let colon = name.len() - digits;
    match colon.checked_sub(1) {
        Some(at) if name[at] == b':' => (&name[..at], &name[colon..]),
        _ => (name, b""),
    }
}

/// Appends `count` chained points of one server, each as
/// `value << 32 | owner`.
fn push_points(points: &mut Vec<u64>, name: &[u8], owner: u64, count: u64) {
    let (host, port) = split_server(name);
    let mut base = crc32fast::Hasher::new();
    base.update(host);
    base.update(&[0]);
    base.update(port);
    let mut prev = 0u32;
    for _ in 0..count {
        let mut point = base.clone();
        point.update(&prev.to_le_bytes());
        prev = point.finalize();
        points.push(u64::from(prev) << 32 | owner);
    }
}

/// The directory over `2^bits` buckets of the top value bits, for points
/// packed as `value << 32 | owner`.
fn directory(points: &[u64], bits: u32) -> (Box<[u32]>, u32) {
    if bits == 0 {
        return (Box::new([]), 0);
    }
    let shift = 32 - bits;
    let buckets = 1usize << bits;
    let mut dir = Vec::with_capacity(buckets);
    let mut i = 0;
    for b in 0..buckets {
        while i < points.len() && ((points[i] >> 32 >> shift) as usize) < b {
            i += 1;
        }
        // Rings hold at most MAX_POINTS + MAX_BACKENDS points: fits in u32.
        dir.push(i as u32);
    }
    (dir.into_boxed_slice(), shift)
}

impl Policy for Ketama {
    type Table = KetamaTable;
    type State = KetamaState;
    // Never reads the pool-wide count: skip keeping it.
    const COUNTS_TOTAL_ACTIVE: bool = false;

    fn name(&self) -> &'static str {
        "hash consistent"
    }

    /// Slow start would move hashed keys for a while: it does not apply.
    fn ramp_mode(&self) -> RampMode {
        RampMode::Off
    }

    /// Refuses backup servers, with nginx's reason.
    fn validate(&self, set: &BackendSet) -> Result<(), BuildError> {
        refuse_backup(self.name(), set)
    }

    /// # Complexity
    ///
    /// O(p log p) for p points (160 per unit of weight, at most
    /// [`MAX_POINTS`] plus one per backend).
    fn build(
        &self,
        tier: &[Backend],
        prev: Option<&KetamaTable>,
    ) -> Result<KetamaTable, BuildError> {
        Ok(KetamaTable {
            ring: Ring::build(tier),
            fallback: RoundRobinTable::new(tier, prev.map(|p| &p.fallback)),
        })
    }

    #[inline(always)]
    fn pick(
        &self,
        table: &KetamaTable,
        c: &Candidates<'_>,
        key: Key<'_>,
        state: &mut KetamaState,
    ) -> Option<usize> {
        let len = table.points();
        let key = match key {
            Key::Bytes(k) if !k.is_empty() => k,
            _ => return table.fallback.pick(c),
        };
        if state.tries > MAX_TRIES || c.len() < 2 || len == 0 {
            return table.fallback.pick(c);
        }
        let mut point = match state.point {
            Some(p) => p,
            None => table.ring.find(crc32fast::hash(key)),
        };
        loop {
            if point >= len {
                // Past the last point (or a state from a larger ring):
                // wrap, without a division on the common path.
                point = point.checked_rem(len)?;
            }
            let i = table.ring.owner(point)?;
            if c.is_available(i) {
                state.point = Some(point);
                return Some(i);
            }
            point += 1;
            state.tries += 1;
            if state.tries > MAX_TRIES {
                return table.fallback.pick(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, Pool};

    fn backends(weights: &[u32], down: &[usize]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Backend::new(format!("127.0.0.1:{}", 19001 + i))
                    .weight(w)
                    .down(down.contains(&i))
            })
            .collect()
    }

    fn pool(weights: &[u32], down: &[usize]) -> Pool<Ketama> {
        Pool::builder(Ketama)
            .clock(ManualClock::new(0))
            .build(backends(weights, down))
            .unwrap()
    }

    /// nginx's ring, written plainly: whole-string CRC-32s, a stable sort.
    fn naive_ring(tier: &[Backend]) -> Vec<(u32, usize)> {
        let mut points = Vec::new();
        for (owner, b) in tier.iter().enumerate() {
            let (host, port) = split_server(b.hash_name().as_bytes());
            let mut prev = 0u32;
            for _ in 0..160 * b.weight {
                let mut text = host.to_vec();
                text.push(0);
                text.extend_from_slice(port);
                text.extend_from_slice(&prev.to_le_bytes());
                prev = crc32fast::hash(&text);
                points.push((prev, owner));
            }
        }
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        points
    }

    fn naive_find(ring: &[(u32, usize)], hash: u32) -> usize {
        // A plain binary search over the whole ring, wrapping at the top.
        ring.partition_point(|p| p.0 < hash) % ring.len()
    }

    #[test]
    fn radix_sort_is_stable_by_value() {
        let mut h = 7u64;
        let mut points: Vec<u64> = (0..200_000u64)
            .map(|i| {
                h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Few distinct values, so that many are equal.
                (h >> 52) << 32 | i
            })
            .collect();
        let mut want = points.clone();
        want.sort_by_key(|p| p >> 32);
        sort_by_value(&mut points);
        assert_eq!(points, want);
    }

    #[test]
    fn split_server_like_nginx() {
        let cases: [(&str, &str, &str); 8] = [
            ("127.0.0.1:19001", "127.0.0.1", "19001"),
            ("backend.internal", "backend.internal", ""),
            ("[::1]:8080", "[::1]", "8080"),
            ("unix:/run/app.sock", "/run/app.sock", ""),
            ("UNIX:/x:80", "/x:80", ""),
            ("host:", "host", ""),
            ("8080", "8080", ""),
            ("a:b1", "a:b1", ""),
        ];
        for (name, host, port) in cases {
            assert_eq!(
                split_server(name.as_bytes()),
                (host.as_bytes(), port.as_bytes()),
                "{name}"
            );
        }
    }

    #[test]
    fn ring_and_lookup_match_naive() {
        // The last mix has 72,000 points: sorted by the radix passes.
        let mixes: [&[u32]; 5] = [
            &[1, 1, 1],
            &[5, 1, 3, 1, 2],
            &[1, 0, 4],
            &[2; 40],
            &[100, 200, 150],
        ];
        for weights in mixes {
            let tier = backends(weights, &[]);
            let table = Ketama.build(&tier, None).unwrap();
            let naive = naive_ring(&tier);
            assert_eq!(table.points(), naive.len(), "{weights:?}");
            for (i, &p) in naive.iter().enumerate() {
                assert_eq!(table.point(i), Some(p));
            }
            let mut h = 0x9e37_79b9u32;
            for _ in 0..5000 {
                h = h.wrapping_mul(0x0019_660d).wrapping_add(0x3c6e_f35f);
                assert_eq!(
                    table.find(h),
                    Some(naive_find(&naive, h)),
                    "{weights:?} {h}"
                );
            }
            for &(value, _) in &naive {
                for probe in [value.wrapping_sub(1), value, value.wrapping_add(1)] {
                    assert_eq!(table.find(probe), Some(naive_find(&naive, probe)));
                }
            }
            assert_eq!(table.find(u32::MAX), Some(naive_find(&naive, u32::MAX)));
            assert_eq!(table.find(0), Some(0));
        }
    }

    #[test]
    fn crowded_buckets_and_memory_per_point() {
        let tier = backends(&[100, 200, 150], &[]);
        let ring = Ring::build(&tier);
        let len = ring.len();
        // 72,000 points less one duplicate, 2^15 buckets: 2.2 points a
        // bucket on average.
        assert_eq!((len, ring.dir.len(), ring.shift), (71_999, 1 << 15, 17));
        let ends: Vec<usize> = ring.dir[1..]
            .iter()
            .map(|&d| d as usize)
            .chain([len])
            .collect();
        let mut crowded = 0;
        for (&lo, &hi) in ring.dir.iter().zip(&ends) {
            let lo = lo as usize;
            if hi - lo > SCAN {
                // The points past the scan window are found by the binary
                // search, and so is a probe just above the last one.
                crowded += 1;
                for i in lo..hi {
                    assert_eq!(ring.find(ring.values[i]), i);
                }
                if let Some(above) = ring.values[hi - 1].checked_add(1) {
                    assert_eq!(ring.find(above), hi);
                }
            }
        }
        assert!(crowded > 0);
        // Values, 16-bit owners, directory: 7.82 bytes a point.
        let bytes = len * 4 + len * 2 + ring.dir.len() * 4;
        assert_eq!(bytes, 563_066);
        assert!(bytes <= 8 * len);
    }

    #[test]
    fn picks_and_retries_match_naive_walk() {
        let weights = [2, 1, 4, 1, 3];
        let p = pool(&weights, &[2]);
        let naive = naive_ring(&backends(&weights, &[]));
        let mut rounds_robin = 0;
        for k in 0..300 {
            let key = format!("/page/{k}");
            // nginx's walk: each unavailable point counts as a try, and
            // after more than 20 the request goes to round robin.
            let mut want = Vec::new();
            let mut point = naive_find(&naive, crc32fast::hash(key.as_bytes()));
            let mut tries = 0;
            while want.len() < 4 && tries <= 20 {
                let owner = naive[point].1;
                if owner != 2 && !want.contains(&owner) {
                    want.push(owner);
                    continue;
                }
                point = (point + 1) % naive.len();
                tries += 1;
            }
            let mut request = p.request(Key::from(key.as_str()));
            let got: Vec<usize> = (0..4).map(|_| request.next().unwrap().index()).collect();
            assert_eq!(got[..want.len()], want[..], "{key}");
            rounds_robin += usize::from(want.len() < 4);
        }
        // Both paths were exercised.
        assert!(rounds_robin > 0 && rounds_robin < 300, "{rounds_robin}");
    }

    #[test]
    fn huge_weight_is_scaled_to_the_bound() {
        let mut tier = vec![Backend::new("big:1").weight(1_000_000)];
        tier.extend((0..3).map(|i| Backend::new(format!("small:{i}"))));
        let counts = point_counts(&tier);
        // 160 * 1_000_003 points wanted; MAX_POINTS kept in proportion.
        // (Building it takes seconds in a debug build; the bench
        // build/ketama_heavy builds this tier.)
        assert_eq!(counts, [5_242_864, 5, 5, 5]);
        assert!(counts.iter().sum::<u64>() <= MAX_POINTS);
    }

    #[test]
    fn wide_rings_search_without_directory() {
        // Weight 0 keeps the ring small while the tier needs wide owners.
        let mut tier: Vec<Backend> = (0..NARROW_OWNERS)
            .map(|i| Backend::new(format!("s{i}:80")).weight(0))
            .collect();
        tier.extend(backends(&[1, 2, 1], &[]));
        let ring = Ring::build(&tier);
        assert!(matches!(ring.owners, Owners::Wide(_)) && ring.dir.is_empty());
        let naive = naive_ring(&tier);
        assert_eq!(ring.len(), naive.len());
        for (i, &(value, owner)) in naive.iter().enumerate() {
            assert_eq!(ring.point(i), Some((value, owner)));
            assert_eq!(ring.find(value), i);
        }
        assert_eq!(ring.find(u32::MAX), naive.len());
    }

    #[test]
    fn empty_key_and_single_server_use_round_robin() {
        let p = pool(&[1, 1], &[]);
        let seq: Vec<String> = (0..3)
            .map(|_| p.pick(Key::from("")).unwrap().id().to_string())
            .collect();
        assert_eq!(
            seq,
            ["127.0.0.1:19001", "127.0.0.1:19002", "127.0.0.1:19001"]
        );
        let one = pool(&[1], &[]);
        assert_eq!(one.pick(Key::from("k")).unwrap().id(), "127.0.0.1:19001");
    }

    #[test]
    fn backup_refused() {
        let err = Pool::new(
            Ketama,
            vec![Backend::new("a:1"), Backend::new("b:1").backup(true)],
        );
        assert_eq!(
            err.err().unwrap().to_string(),
            "backend 'b:1' cannot be used with hash consistent: \
             balancing method does not support parameter \"backup\""
        );
    }

    /// Recorded from nginx 1.22.1 (Debian 12): `hash $arg_k consistent` over
    /// `127.0.0.1:19001..19003`, then over weights 2, 1, 4 (down), 1, 3.
    #[test]
    fn golden_vectors_from_nginx() {
        let equal: &[(&str, u16)] = &[
            ("a", 19002),
            ("hello", 19003),
            ("/index.html", 19003),
            ("user:42", 19002),
            ("12345", 19001),
            ("session-0001", 19003),
            ("ZZZ", 19001),
        ];
        let weighted: &[(&str, u16)] = &[
            ("a", 19005),
            ("hello", 19001),
            ("/index.html", 19005),
            ("user:42", 19002),
            ("12345", 19004),
            ("session-0001", 19005),
            ("ZZZ", 19001),
        ];
        for (servers, vectors) in [
            (&[(1, false); 3][..], equal),
            (
                &[(2, false), (1, false), (4, true), (1, false), (3, false)],
                weighted,
            ),
        ] {
            let pool = nginx_pool(servers);
            for &(key, port) in vectors {
                let pick = pool.pick(Key::from(key)).unwrap();
                assert_eq!(pick.addr().unwrap().port(), port, "{key} over {servers:?}");
            }
        }
    }

    /// A pool of `127.0.0.1:19001..` with `(weight, down)` per server.
    fn nginx_pool(servers: &[(u32, bool)]) -> Pool<Ketama> {
        crate::policy::nginx_common::test_pools::servers(Ketama, servers)
    }
}

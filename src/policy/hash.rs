//! nginx's `hash $key`, compatible with Cache::Memcached.

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::nginx_common::{refuse_backup, WeightWalk, MAX_TRIES};
use crate::policy::{Candidates, Key, Policy, RampMode, RoundRobinTable};
use crate::BackendSet;

/// nginx's `hash $key` (without `consistent`), giving exactly nginx's
/// backend for every key.
///
/// Reads [`Key::Bytes`]: the value nginx would compute for the key
/// expression (`$request_uri`, `$arg_user`...). Attempt `n` of a request
/// (from 0) takes the CRC-32 of the decimal digits of `n` (none when `n` is
/// 0) followed by the key, adds `(crc >> 16) & 0x7fff` to a running sum,
/// and walks the weights in config order with `sum % total_weight`, `down`
/// servers counted. When that server is unavailable (down, failed out, at
/// `max_conns`, already tried) the next attempt number is hashed; after
/// more than 20 unavailable picks, or for an empty key or any other kind of
/// key, the request is balanced by round robin, as nginx does. A tier of one
/// server is always balanced by round robin.
///
/// The running sum, the attempt number and the count of misses live in the
/// request's [`HashState`], so retries continue as nginx's do.
///
/// # Limitations
///
/// - As in nginx, a key whose rehashes keep landing on unavailable servers
///   falls back to round robin after 20 tries, so while its server is down
///   such a key has no fixed backend; it returns to its own when that
///   server is back.
/// - nginx refuses `backup` only when `hash` comes before the `server` lines;
///   this policy refuses a backup server in every case.
/// - The crate does not evaluate nginx variables: the caller passes the key's
///   value.
///
/// # Complexity
///
/// Pick: O(k × (|key| + log n)) for k attempts (at most 21). Build: O(n)
/// plus the round-robin fallback's schedule.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, NginxHash, Pool};
///
/// let pool = Pool::new(
///     NginxHash,
///     vec![Backend::new("10.0.0.1:80"), Backend::new("10.0.0.2:80").weight(2)],
/// )
/// .unwrap();
/// let first = pool.pick(Key::from("/videos/42")).unwrap().id().to_string();
/// // The same key always reaches the same backend.
/// assert_eq!(pool.pick(Key::from("/videos/42")).unwrap().id(), first);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NginxHash;

/// The prebuilt table of [`NginxHash`]: the weighted walk and the round-robin
/// fallback.
#[derive(Debug)]
pub struct HashTable {
    walk: WeightWalk,
    fallback: RoundRobinTable,
}

/// Per-request state of [`NginxHash`]: the running sum, the next attempt number
/// and the count of unavailable picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashState {
    sum: u32,
    rehash: u64,
    tries: u32,
}

/// `(crc32(digits(attempt) ++ key) >> 16) & 0x7fff`, digits omitted for
/// attempt 0.
#[inline]
fn attempt_hash(attempt: u64, key: &[u8]) -> u32 {
    if attempt == 0 {
        return (crc32fast::hash(key) >> 16) & 0x7fff;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = attempt;
    while n > 0 {
        at -= 1;
        // n % 10 < 10, so the cast keeps the whole digit.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&digits[at..]);
    crc.update(key);
    (crc.finalize() >> 16) & 0x7fff
}

impl Policy for NginxHash {
    type Table = HashTable;
    type State = HashState;
    // Never reads the pool-wide count: skip keeping it.
    const COUNTS_TOTAL_ACTIVE: bool = false;

    fn name(&self) -> &'static str {
        "hash"
    }

    /// Slow start would move hashed keys for a while: it does not apply.
    fn ramp_mode(&self) -> RampMode {
        RampMode::Off
    }

    /// Refuses backup servers, with nginx's reason.
    fn validate(&self, set: &BackendSet) -> Result<(), BuildError> {
        refuse_backup(self.name(), set)
    }

    fn build(&self, tier: &[Backend], prev: Option<&HashTable>) -> Result<HashTable, BuildError> {
        Ok(HashTable {
            walk: WeightWalk::new(tier),
            fallback: RoundRobinTable::new(tier, prev.map(|p| &p.fallback)),
        })
    }

    #[inline(always)]
    fn pick(
        &self,
        table: &HashTable,
        c: &Candidates<'_>,
        key: Key<'_>,
        state: &mut HashState,
    ) -> Option<usize> {
        let key = match key {
            Key::Bytes(k) if !k.is_empty() => k,
            _ => return table.fallback.pick(c),
        };
        if state.tries > MAX_TRIES || c.len() < 2 {
            return table.fallback.pick(c);
        }
        loop {
            state.sum = state.sum.wrapping_add(attempt_hash(state.rehash, key));
            state.rehash += 1;
            let i = table.walk.find(u64::from(state.sum))?;
            if c.is_available(i) {
                return Some(i);
            }
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
    use crate::Pool;

    fn pool(weights: &[u32], down: &[usize]) -> Pool<NginxHash> {
        crate::policy::nginx_common::test_pools::weighted(NginxHash, weights, down)
    }

    fn pick(pool: &Pool<NginxHash>, key: &str) -> String {
        pool.pick(Key::from(key))
            .map_or("none".into(), |p| p.id().to_string())
    }

    #[test]
    fn attempt_hash_prefixes_decimal_digits() {
        // CRC-32 check value: crc32("123456789") = 0xCBF43926.
        assert_eq!(attempt_hash(0, b"123456789"), 0xCBF4 & 0x7fff);
        assert_eq!(attempt_hash(12, b"3456789"), 0xCBF4 & 0x7fff);
        assert_eq!(attempt_hash(123_456_789, b""), 0xCBF4 & 0x7fff);
    }

    /// nginx's request loop, written plainly over availability flags.
    fn naive(weights: &[u32], up: &[bool], key: &[u8], attempts: usize) -> Vec<usize> {
        let total: u32 = weights.iter().sum();
        let mut tried = vec![false; weights.len()];
        let (mut sum, mut rehash, mut tries, mut out) = (0u32, 0u32, 0, Vec::new());
        'attempt: for _ in 0..attempts {
            loop {
                let mut text = if rehash > 0 {
                    rehash.to_string().into_bytes()
                } else {
                    vec![]
                };
                text.extend_from_slice(key);
                sum += (crc32fast::hash(&text) >> 16) & 0x7fff;
                rehash += 1;
                let mut w = sum % total;
                let mut p = 0;
                while w >= weights[p] {
                    w -= weights[p];
                    p += 1;
                }
                if up[p] && !tried[p] {
                    tried[p] = true;
                    out.push(p);
                    continue 'attempt;
                }
                tries += 1;
                if tries > 20 {
                    return out;
                }
            }
        }
        out
    }

    #[test]
    fn picks_and_retries_match_naive_loop() {
        let weights = [2, 1, 4, 1, 3, 1];
        let p = pool(&weights, &[2, 5]);
        let up = [true, true, false, true, true, false];
        for k in 0..300 {
            let key = format!("key-{k}");
            let want = naive(&weights, &up, key.as_bytes(), 4);
            let mut request = p.request(Key::from(key.as_str()));
            let got: Vec<usize> = (0..want.len())
                .map(|_| request.next().unwrap().index())
                .collect();
            assert_eq!(got, want, "{key}");
        }
    }

    #[test]
    fn empty_or_missing_key_goes_round_robin() {
        let p = pool(&[1, 1, 1], &[]);
        let seq: Vec<String> = (0..4).map(|_| pick(&p, "")).collect();
        assert_eq!(
            seq,
            [
                "127.0.0.1:19001",
                "127.0.0.1:19002",
                "127.0.0.1:19003",
                "127.0.0.1:19001"
            ]
        );
        assert_eq!(p.pick(Key::None).unwrap().id(), "127.0.0.1:19002");
    }

    #[test]
    fn backup_refused() {
        let err = Pool::new(
            NginxHash,
            vec![Backend::new("a:1").backup(true), Backend::new("b:1")],
        );
        assert_eq!(
            err.err().unwrap().to_string(),
            "backend 'a:1' cannot be used with hash: \
             balancing method does not support parameter \"backup\""
        );
    }

    /// Recorded from nginx 1.22.1 (Debian 12): `hash $arg_k` over
    /// `127.0.0.1:19001..19003`, then over weights 2, 1, 4 (down), 1, 3.
    #[test]
    fn golden_vectors_from_nginx() {
        let equal: &[(&str, u16)] = &[
            ("a", 19003),
            ("hello", 19002),
            ("/index.html", 19003),
            ("user:42", 19002),
            ("12345", 19003),
            ("session-0001", 19003),
            ("ZZZ", 19001),
        ];
        let weighted: &[(&str, u16)] = &[
            ("a", 19001),
            ("hello", 19002),
            ("/index.html", 19001),
            ("user:42", 19005),
            ("12345", 19005),
            ("session-0001", 19001),
            ("ZZZ", 19005),
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
    fn nginx_pool(servers: &[(u32, bool)]) -> Pool<NginxHash> {
        crate::policy::nginx_common::test_pools::servers(NginxHash, servers)
    }
}

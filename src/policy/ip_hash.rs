//! nginx's `ip_hash`: a client keeps its backend by its address.

use std::net::IpAddr;

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::nginx_common::{refuse_backup, WeightWalk, MAX_TRIES};
use crate::policy::{Candidates, Key, Policy, RampMode, RoundRobinTable};
use crate::BackendSet;

/// Where nginx starts the hash of every client.
const SEED: u32 = 89;

/// nginx's `ip_hash`, giving exactly nginx's backend for every client.
///
/// Reads [`Key::Ip`]. The key is the first three octets of an IPv4 address
/// (so a whole /24 shares a backend) or all 16 bytes of an IPv6 address,
/// IPv4-mapped ones included. Any other key (a unix-socket client, no key)
/// is the three bytes `0, 0, 0`, as nginx treats a non-IP client.
///
/// The hash starts at 89 and takes each key byte `b` as
/// `h = (h * 113 + b) % 6271`; `h % total_weight` then walks the servers in
/// config order. The total counts `down` servers, so marking a server down
/// moves only the clients it had. When the chosen server is unavailable
/// (down, failed out, at `max_conns`, already tried by this request) the key
/// is fed through the running hash again; after more than 20 such rehashes
/// in one request, the rest of the request is balanced by round robin. A
/// tier of one server is always balanced by round robin, as in nginx.
///
/// The running hash and the count of rehashes live in the request's
/// [`IpHashState`], so a retry with [`Request::next`](crate::Request::next)
/// continues exactly where nginx's next attempt would.
///
/// # Limitations
///
/// - As in nginx, a key whose rehashes keep landing on unavailable servers
///   falls back to round robin after 20 tries, so while its server is down
///   such a key has no fixed backend; it returns to its own when that
///   server is back.
/// - nginx refuses `backup` only when `ip_hash` comes before the `server`
///   lines, and otherwise accepts backups it may then use through round
///   robin; this policy refuses a backup server in every case.
/// - A weight-0 backend keeps no share of the hash space, and the total
///   weight shrinks, so its clients move and so do most others'; nginx has
///   no weight 0. [`drain`](crate::Backend::drain) moves only its clients.
///
/// # Complexity
///
/// Pick: O(k × log n) for k rehashes (k = 1 when the first choice is
/// available, at most 21). Build: O(n) plus the round-robin fallback's
/// schedule.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, IpHash, Key, Pool};
///
/// let pool = Pool::new(
///     IpHash,
///     vec![
///         Backend::new("127.0.0.1:19001"),
///         Backend::new("127.0.0.1:19002"),
///         Backend::new("127.0.0.1:19003"),
///     ],
/// )
/// .unwrap();
/// let pick = |ip: &str| pool.pick(Key::Ip(ip.parse().unwrap())).unwrap().id().to_string();
/// assert_eq!(pick("192.0.2.1"), "127.0.0.1:19001");
/// assert_eq!(pick("192.0.2.254"), "127.0.0.1:19001"); // same /24
/// assert_eq!(pick("2001:db8::1"), "127.0.0.1:19003");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpHash;

/// The prebuilt table of [`IpHash`]: the weighted walk and the round-robin
/// fallback.
#[derive(Debug)]
pub struct IpHashTable {
    walk: WeightWalk,
    fallback: RoundRobinTable,
}

/// Per-request state of [`IpHash`]: the running hash and the rehash count,
/// carried across the attempts of one request as nginx carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHashState {
    hash: u32,
    tries: u32,
}

impl Default for IpHashState {
    fn default() -> Self {
        IpHashState {
            hash: SEED,
            tries: 0,
        }
    }
}

/// The bytes nginx hashes for a client, and how many of them count.
fn key_bytes(key: Key<'_>) -> ([u8; 16], usize) {
    match key {
        Key::Ip(IpAddr::V4(v4)) => {
            let o = v4.octets();
            let mut bytes = [0; 16];
            bytes[..3].copy_from_slice(&o[..3]);
            (bytes, 3)
        }
        Key::Ip(IpAddr::V6(v6)) => (v6.octets(), 16),
        _ => ([0; 16], 3),
    }
}

/// One round of nginx's hash over the key bytes.
#[inline]
fn feed(mut hash: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        hash = (hash * 113 + u32::from(b)) % 6271;
    }
    hash
}

impl Policy for IpHash {
    type Table = IpHashTable;
    type State = IpHashState;
    // Never reads the pool-wide count: skip keeping it.
    const COUNTS_TOTAL_ACTIVE: bool = false;

    fn name(&self) -> &'static str {
        "ip_hash"
    }

    /// Slow start would move hashed keys for a while: it does not apply.
    fn ramp_mode(&self) -> RampMode {
        RampMode::Off
    }

    /// Refuses backup servers, with nginx's reason.
    fn validate(&self, set: &BackendSet) -> Result<(), BuildError> {
        refuse_backup(self.name(), set)
    }

    fn build(
        &self,
        tier: &[Backend],
        prev: Option<&IpHashTable>,
    ) -> Result<IpHashTable, BuildError> {
        Ok(IpHashTable {
            walk: WeightWalk::new(tier),
            fallback: RoundRobinTable::new(tier, prev.map(|p| &p.fallback)),
        })
    }

    #[inline]
    fn pick(
        &self,
        table: &IpHashTable,
        c: &Candidates<'_>,
        key: Key<'_>,
        state: &mut IpHashState,
    ) -> Option<usize> {
        if state.tries > MAX_TRIES || c.len() < 2 {
            return table.fallback.pick(c);
        }
        let (bytes, len) = key_bytes(key);
        let bytes = &bytes[..len];
        let mut hash = state.hash;
        loop {
            hash = feed(hash, bytes);
            let i = table.walk.find(u64::from(hash))?;
            if c.is_available(i) {
                // nginx keeps the hash of the server it settles on; a retry
                // rehashes from there.
                state.hash = hash;
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

    fn pool(weights: &[u32], down: &[usize]) -> Pool<IpHash> {
        crate::policy::nginx_common::test_pools::weighted(IpHash, weights, down)
    }

    fn pick(pool: &Pool<IpHash>, ip: &str) -> String {
        pool.pick(Key::Ip(ip.parse().unwrap()))
            .map_or("none".into(), |p| p.id().to_string())
    }

    /// Observed on nginx 1.22.1 (the issue's values).
    #[test]
    fn golden_three_equal_servers() {
        let p = pool(&[1, 1, 1], &[]);
        for (ip, want) in [
            ("192.0.2.1", "127.0.0.1:19001"),
            ("192.0.2.77", "127.0.0.1:19001"),
            ("192.0.2.254", "127.0.0.1:19001"),
            ("2001:db8::1", "127.0.0.1:19003"),
            ("2001:db8::2", "127.0.0.1:19001"),
        ] {
            assert_eq!(pick(&p, ip), want, "{ip}");
        }
    }

    #[test]
    fn hash_of_known_keys() {
        // 89 -> (89*113+192)%6271 = 3978 -> (3978*113+0)%6271 = 4273
        // -> (4273*113+2)%6271 = 6255, and 6255 % 3 = 0: the first server.
        assert_eq!(feed(SEED, &[192, 0, 2]), 6255);
        assert_eq!(key_bytes(Key::None), ([0; 16], 3));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(key_bytes(Key::Ip(mapped)).1, 16);
        assert_eq!(key_bytes(Key::Bytes(b"192.0.2.1")), ([0; 16], 3));
    }

    #[test]
    fn down_server_moves_only_its_clients() {
        let all = pool(&[1, 1, 1], &[]);
        let down = pool(&[1, 1, 1], &[2]);
        for a in 0..=255u8 {
            let ip = format!("10.{a}.7.1");
            let before = pick(&all, &ip);
            let after = pick(&down, &ip);
            if before != "127.0.0.1:19003" {
                assert_eq!(before, after, "{ip}");
            } else {
                assert_ne!(after, "127.0.0.1:19003", "{ip}");
            }
        }
    }

    /// nginx's request loop, written plainly over availability flags.
    fn naive(weights: &[u32], up: &[bool], key: &[u8], attempts: usize) -> Vec<usize> {
        let total: u32 = weights.iter().sum();
        let mut tried = vec![false; weights.len()];
        let (mut hash, mut tries, mut out) = (SEED, 0, Vec::new());
        'attempt: for _ in 0..attempts {
            let mut h = hash;
            loop {
                for &b in key {
                    h = (h * 113 + u32::from(b)) % 6271;
                }
                let mut w = h % total;
                let mut p = 0;
                while w >= weights[p] {
                    w -= weights[p];
                    p += 1;
                }
                if up[p] && !tried[p] {
                    tried[p] = true;
                    hash = h;
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
    fn retries_follow_nginx_running_hash() {
        let weights = [5, 1, 3, 1, 2];
        let p = pool(&weights, &[3]);
        let up = [true, true, true, false, true];
        for a in 0..200u8 {
            let ip: IpAddr = format!("198.51.{a}.9").parse().unwrap();
            let IpAddr::V4(v4) = ip else { unreachable!() };
            let want = naive(&weights, &up, &v4.octets()[..3], 4);
            let mut request = p.request(Key::Ip(ip));
            let got: Vec<usize> = (0..want.len())
                .map(|_| request.next().unwrap().index())
                .collect();
            assert_eq!(got, want, "{ip}");
        }
    }

    #[test]
    fn falls_back_to_round_robin_after_21_rehashes() {
        // Every key lands on the heavy down server nearly always; a client
        // whose hash keeps hitting it is served by round robin.
        let p = pool(&[1, 1000], &[1]);
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let naive_pick = naive(&[1, 1000], &[true, false], &[203, 0, 113], 1);
        let got = pick(&p, "203.0.113.5");
        assert_eq!(got, "127.0.0.1:19001");
        // The naive loop gives up: nginx reached round robin, which here
        // has only the first server to offer.
        assert!(naive_pick.is_empty(), "{ip} hashed to an up server");
    }

    #[test]
    fn single_server_uses_round_robin() {
        let p = pool(&[1], &[]);
        assert_eq!(pick(&p, "192.0.2.1"), "127.0.0.1:19001");
        let p = pool(&[1], &[0]);
        assert_eq!(pick(&p, "192.0.2.1"), "none");
    }

    #[test]
    fn backup_refused() {
        let err = Pool::new(
            IpHash,
            vec![Backend::new("a:1"), Backend::new("b:1").backup(true)],
        );
        assert!(matches!(err, Err(BuildError::Unsupported { .. })));
    }

    /// Recorded from nginx 1.22.1 (Debian 12) through the realip module:
    /// `ip_hash` over `127.0.0.1:19001..19003`, then over weights 5, 1
    /// (down), 3, 1, 2.
    #[test]
    fn golden_vectors_from_nginx() {
        let equal: &[(&str, u16)] = &[
            ("192.0.2.1", 19001),
            ("10.0.0.1", 19001),
            ("172.16.5.4", 19002),
            ("203.0.113.9", 19001),
            ("::ffff:192.0.2.1", 19001),
            ("::1", 19003),
            ("2001:db8::3", 19002),
            ("fe80::1", 19001),
        ];
        let weighted: &[(&str, u16)] = &[
            ("192.0.2.1", 19001),
            ("192.0.2.254", 19001),
            ("10.0.0.1", 19004),
            ("172.16.5.4", 19005),
            ("203.0.113.9", 19001),
            ("::ffff:192.0.2.1", 19001),
            ("::1", 19001),
            ("2001:db8::1", 19003),
            ("2001:db8::2", 19004),
            ("2001:db8::3", 19005),
            ("fe80::1", 19001),
        ];
        for (servers, vectors) in [
            (&[(1, false); 3][..], equal),
            (
                &[(5, false), (1, true), (3, false), (1, false), (2, false)],
                weighted,
            ),
        ] {
            let pool = nginx_pool(servers);
            for &(ip, port) in vectors {
                let pick = pool.pick(Key::Ip(ip.parse().unwrap())).unwrap();
                assert_eq!(pick.addr().unwrap().port(), port, "{ip} over {servers:?}");
            }
        }
    }

    /// A pool of `127.0.0.1:19001..` with `(weight, down)` per server.
    fn nginx_pool(servers: &[(u32, bool)]) -> Pool<IpHash> {
        crate::policy::nginx_common::test_pools::servers(IpHash, servers)
    }
}

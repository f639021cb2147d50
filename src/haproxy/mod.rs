//! HAProxy's hash-based balancing, giving the server HAProxy 2.6 would pick.
//!
//! A team moving from HAProxy to a proxy built on this crate wants every
//! session to land where it landed before. HAProxy's choice depends on more
//! than the hash: the weighted map it builds for `hash-type map-based`, the
//! tree of points it builds for `hash-type consistent`, the server ids, the
//! way `balance source` folds an address, and the round-robin fallback when
//! the key is missing. This module rebuilds each of them exactly:
//!
//! | HAProxy configuration | Policy |
//! |---|---|
//! | `balance source` / `uri` / `hdr(<name>)` + `hash-type map-based [<fn>] [avalanche]` | [`HaproxyMap`] |
//! | `balance source` / `uri` / `hdr(<name>)` + `hash-type consistent [<fn>] [avalanche]` + `hash-balance-factor` | [`HaproxyChash`] |
//! | `balance static-rr` | [`StaticRr`] |
//!
//! The version followed is the one Debian 12 packages, HAProxy 2.6.12, and
//! every answer is checked against that binary by `tests/haproxy_interop.rs`.
//!
//! # Keys
//!
//! | `balance` | [`Balance`] | Key given to the pick | What is hashed |
//! |---|---|---|---|
//! | `source` | [`Balance::Source`] | [`Key::Ip`] | IPv4: the address as one 32-bit word; IPv6: its four words XOR-ed. The hash function is not used. |
//! | `uri` | [`Balance::Uri`] | [`Key::Bytes`], the request target as on the request line | the part before the first `?` |
//! | `hdr(<name>)` | [`Balance::Hdr`] | [`Key::Bytes`], the value of the first `<name>` header line | its first comma-separated value, without surrounding blanks |
//!
//! With `avalanche`, the 32-bit result goes through [`full_hash`]. A
//! [`Key::Hash`] is taken as an already computed HAProxy hash (its low 32
//! bits, no avalanche applied), for `balance hash <expr>` set-ups that
//! compute the hash themselves.
//!
//! When the key is missing ([`Key::None`], an empty header, a key of the
//! wrong kind), HAProxy balances by round robin over the same map or tree;
//! these policies do the same.
//!
//! # Servers
//!
//! A server is in the map or tree when its weight is positive and it is
//! neither `down` nor draining, as HAProxy leaves out servers that are not
//! usable. The backup tier is served by its first such server only, unless
//! `all_backups(true)` (`option allbackups`). Weights range from 0 to 256,
//! as in HAProxy.
//!
//! Consistent hashing places points from each server's numeric id (`id` on
//! the `server` line). By default ids are numbered as HAProxy numbers them:
//! 1, 2, 3... in config order, skipping ids taken explicitly. To give a
//! server an explicit id, set its [`Backend::hash_key`] to the number.
//!
//! # Versions
//!
//! Followed: HAProxy 2.6 as Debian 12 packages it (2.6.12). Consistent hashing
//! places points from the server id only: the `hash-key` server option
//! (points from the address) and the `none` hash function of later versions
//! do not exist in 2.6, which refuses both. Lookups take the closest point
//! on either side of the hash, not the next one at or after it, as every
//! version since 1.5 does.
//!
//! # Performance
//!
//! Measured with `cargo bench --bench haproxy` on a shared 2-core VM, weights
//! 1 to 7, `balance uri` keys of about 30 bytes. A pick includes the pool's
//! own work (snapshot load, accounting) and hashing the key.
//!
//! | | n = 10 | n = 100 | n = 1000 |
//! |---|---|---|---|
//! | pick, [`HaproxyMap`] | 205 ns | 222 ns | 278 ns |
//! | pick, [`HaproxyChash`] | 378 ns | 525 ns | 741 ns |
//! | pick, [`HaproxyChash`] with a balance factor | 491 ns | 1.1 µs | 4.3 µs |
//! | build, [`HaproxyMap`] | 8.1 µs | 144 µs | 3.0 ms |
//! | build, [`HaproxyChash`] | 13.5 µs | 139 µs | 2.9 ms |
//!
//! Memory: the map takes 4 bytes per unit of weight (after dividing by the
//! weights' common divisor, at most 256 per server); the tree 8 bytes per
//! point, 16 points per unit of weight (up to 32 KiB for a server of weight
//! 256). Removing a server moves only its own keys with consistent hashing,
//! and most keys with the map, as in HAProxy.
//!
//! # Limitations
//!
//! - Only the defaults of `balance uri` (no `whole`, `len`, `depth` or
//!   `path-only`) and of `balance hdr` (no `use_domain_only`) are modelled.
//! - Backup servers are numbered within the backup tier. HAProxy numbers
//!   them after the servers declared before them, so with consistent
//!   hashing and `all_backups(true)`, give backups explicit ids.
//! - HAProxy divides map weights by the greatest common divisor of all the
//!   backend's weights, backups included; here each tier uses its own. The
//!   maps differ only when backup weights share fewer factors than the
//!   primaries' weights do.
//! - A server that fails at pick time (passive failures, `max_conns`, a
//!   retry that excludes it) is skipped: map-based hashing rehashes the key
//!   (up to 8 times, then walks the map) so the failed server's keys spread
//!   over the others, and the consistent tree moves to the next point.
//!   HAProxy instead rebuilds its map or tree when a health check takes a
//!   server down. To get HAProxy's exact answer for a server that is down,
//!   mark it down ([`Pool::set_down`](crate::Pool::set_down)): the tables are
//!   rebuilt as HAProxy rebuilds them.
//! - With a balance factor, each pick totals the tier's active picks, O(n).
//!
//! [`Key::Ip`]: crate::Key::Ip
//! [`Key::Bytes`]: crate::Key::Bytes
//! [`Key::Hash`]: crate::Key::Hash
//! [`Key::None`]: crate::Key::None
//! [`Backend::hash_key`]: crate::Backend::hash_key

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::Key;
use crate::BackendSet;

mod chash;
#[cfg(test)]
mod golden;
mod hash;
mod map;

pub use chash::{ChashTable, HaproxyChash};
pub use hash::{full_hash, HashFunction};
pub use map::{HaproxyMap, MapTable, StaticRr};

/// The largest server weight HAProxy accepts.
pub const MAX_HAPROXY_WEIGHT: u32 = 256;

/// HAProxy's `BE_WEIGHT_SCALE`: consistent hashing gives each server this
/// many points per unit of weight.
pub const POINTS_PER_WEIGHT: u32 = 16;

/// HAProxy's `SRV_EWGHT_RANGE` (256 × 16): the spacing of server ids in the
/// keys of consistent-hash points.
const ID_SPACING: u32 = MAX_HAPROXY_WEIGHT * POINTS_PER_WEIGHT;

/// What `balance` hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// `balance source`: the client address, from [`Key::Ip`].
    #[default]
    Source,
    /// `balance uri`: the request target before `?`, from
    /// [`Key::Bytes`].
    Uri,
    /// `balance hdr(<name>)`: the first value of the header, from
    /// [`Key::Bytes`].
    Hdr,
}

/// How a key becomes HAProxy's 32-bit hash: `balance` and `hash-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hasher {
    pub(crate) balance: Balance,
    pub(crate) function: HashFunction,
    pub(crate) avalanche: bool,
}

impl Hasher {
    /// HAProxy's hash of `key`, or `None` when it would fall back to round
    /// robin.
    #[inline]
    pub(crate) fn hash(&self, key: Key<'_>) -> Option<u32> {
        let raw = match (self.balance, key) {
            (_, Key::Hash(h)) => return Some(low_32_bits(h)),
            (Balance::Source, Key::Ip(ip)) => fold_address(ip),
            (Balance::Uri, Key::Bytes(uri)) => self.function.hash(before_query(uri)),
            (Balance::Hdr, Key::Bytes(value)) => {
                let value = first_value(value);
                if value.is_empty() {
                    return None;
                }
                self.function.hash(value)
            }
            _ => return None,
        };
        Some(if self.avalanche { full_hash(raw) } else { raw })
    }
}

fn low_32_bits(h: u64) -> u32 {
    let [a, b, c, d, ..] = h.to_le_bytes();
    u32::from_le_bytes([a, b, c, d])
}

/// The address as HAProxy folds it for `balance source`.
fn fold_address(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            o.chunks_exact(4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .fold(0, |h, w| h ^ w)
        }
    }
}

fn before_query(uri: &[u8]) -> &[u8] {
    match uri.iter().position(|&c| c == b'?') {
        Some(end) => &uri[..end],
        None => uri,
    }
}

/// The first comma-separated element of a header value, trimmed of spaces
/// and tabs, as HAProxy's header lookup returns it.
fn first_value(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|&c| c == b',').unwrap_or(value.len());
    let blank = |c: &u8| *c == b' ' || *c == b'\t';
    let value = &value[..end];
    let start = value.iter().position(|c| !blank(c)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|c| !blank(c))
        .map_or(start, |e| e + 1);
    &value[start..end]
}

/// Refuses weights HAProxy would refuse.
pub(crate) fn check_weights(set: &BackendSet, policy: &'static str) -> Result<(), BuildError> {
    check_tier(set.backends(), policy)
}

/// Refuses weights HAProxy would refuse, in a tier given to `build` directly.
pub(crate) fn check_tier(tier: &[Backend], policy: &'static str) -> Result<(), BuildError> {
    match tier.iter().find(|b| b.weight > MAX_HAPROXY_WEIGHT) {
        Some(b) => Err(BuildError::Unsupported {
            id: b.id.clone(),
            policy,
            reason: "HAProxy weights range from 0 to 256",
        }),
        None => Ok(()),
    }
}

/// True when HAProxy would put the server in its map or tree.
fn serves(b: &Backend) -> bool {
    b.weight > 0 && !b.down && !b.drain
}

/// The tier positions of the servers HAProxy balances over: every usable
/// server, or for a backup tier without `allbackups`, the first one only.
pub(crate) fn serving(tier: &[Backend], all_backups: bool) -> Vec<usize> {
    let usable = tier.iter().enumerate().filter(|(_, b)| serves(b));
    let is_backup_tier = tier.first().is_some_and(|b| b.backup);
    if is_backup_tier && !all_backups {
        usable.map(|(i, _)| i).take(1).collect()
    } else {
        usable.map(|(i, _)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(balance: Balance, function: HashFunction, avalanche: bool) -> Hasher {
        Hasher {
            balance,
            function,
            avalanche,
        }
    }

    #[test]
    fn source_folds_the_address_words() {
        let h = hasher(Balance::Source, HashFunction::Djb2, false);
        assert_eq!(
            h.hash(Key::Ip("1.2.3.4".parse().unwrap())),
            Some(0x0102_0304)
        );
        let v6 = "2001:db8:0:1:0:0:0:ff".parse().unwrap();
        assert_eq!(
            h.hash(Key::Ip(v6)),
            Some(0x2001_0db8 ^ 0x0000_0001 ^ 0x0000_00ff)
        );
        let aval = hasher(Balance::Source, HashFunction::Sdbm, true);
        assert_eq!(
            aval.hash(Key::Ip("0.0.0.97".parse().unwrap())),
            Some(1_830_748_055)
        );
        assert_eq!(h.hash(Key::Bytes(b"1.2.3.4")), None);
        assert_eq!(h.hash(Key::None), None);
    }

    #[test]
    fn uri_stops_at_the_query() {
        let h = hasher(Balance::Uri, HashFunction::Sdbm, false);
        assert_eq!(h.hash(Key::Bytes(b"a?x=1")), Some(97));
        assert_eq!(h.hash(Key::Bytes(b"?x")), Some(0));
        assert_eq!(h.hash(Key::Ip("1.2.3.4".parse().unwrap())), None);
    }

    #[test]
    fn header_takes_the_first_trimmed_value() {
        let h = hasher(Balance::Hdr, HashFunction::Sdbm, false);
        assert_eq!(h.hash(Key::Bytes(b" a , b")), Some(97));
        assert_eq!(h.hash(Key::Bytes(b"\ta")), Some(97));
        assert_eq!(h.hash(Key::Bytes(b",b")), None);
        assert_eq!(h.hash(Key::Bytes(b"  ")), None);
    }

    #[test]
    fn a_precomputed_hash_is_used_as_is() {
        let h = hasher(Balance::Uri, HashFunction::Sdbm, true);
        assert_eq!(h.hash(Key::Hash(0xdead_beef_0000_0007)), Some(7));
    }

    #[test]
    fn backup_tier_serves_its_first_usable_server() {
        let tier = vec![
            Backend::new("b1").backup(true).down(true),
            Backend::new("b2").backup(true),
            Backend::new("b3").backup(true),
        ];
        assert_eq!(serving(&tier, false), [1]);
        assert_eq!(serving(&tier, true), [1, 2]);
        let primaries = vec![Backend::new("a").weight(0), Backend::new("b")];
        assert_eq!(serving(&primaries, false), [1]);
    }
}

//! Envoy's consistent hashing, answer for answer: Maglev, ring hash, bounded
//! loads and the request hash policies.
//!
//! A team moving traffic between Envoy and a proxy built on this crate wants
//! every session to stay where it is. That needs the same table from the
//! same hosts, and the same 64-bit hash from the same request. This module
//! rebuilds Envoy's tables exactly (checked against the tables Envoy's own
//! unit tests assert) and computes Envoy's request hashes:
//!
//! - [`Maglev`]: Envoy's `MAGLEV`, a prime-sized lookup table;
//! - [`RingHash`]: Envoy's `RING_HASH`, XXH64 or murmur2-64 ring;
//! - [`BoundedLoad`]: Envoy's `hash_balance_factor` over either of them;
//! - [`HashPolicy`] and the functions beside it: Envoy's route
//!   `hash_policy` (source IP, header, cookie, query parameter), producing
//!   the [`Key::Hash`](crate::Key::Hash) the tables look up.
//!
//! [`Rendezvous`](crate::Rendezvous) (in [`policy`](crate::policy)) is not
//! Envoy's but answers the same need, and is compared below.
//!
//! ```
//! use upstream::envoy::{HashMethod, HashPolicy, HttpRequest, Maglev};
//! use upstream::{Backend, Pool};
//!
//! let hosts: Vec<Backend> = (1..=3).map(|i| Backend::new(format!("10.0.0.{i}:80"))).collect();
//! let pool = Pool::new(Maglev::new(), hosts).unwrap();
//! let policy = HashPolicy::new().method(HashMethod::Header("x-user".into()), false);
//! let headers = [("x-user", "alice")];
//! let request = HttpRequest { headers: &headers, ..Default::default() };
//! let first = pool.pick(policy.key(&request)).unwrap().id().to_string();
//! assert_eq!(pool.pick(policy.key(&request)).unwrap().id(), first);
//! ```
//!
//! # Choosing a method
//!
//! Measured on the 2-core development VM (release build, criterion medians;
//! balance and movement over 100,000 keys, equal weights), see
//! `benches/envoy.rs` and `examples/compare_hashing.rs`:
//!
//! | method | balance: busiest / mean (n=100, n=1000) | keys moved when 1 of 100 is removed | memory (n=1000) | build (n=1000) | pick (n=10, 100, 1000) |
//! |---|---|---|---|---|---|
//! | Maglev, M = 65537 | 1.01, 1.02 | 1.17 % (ideal 1 %) | 128 KiB | 2.6 ms | 24, 24, 26 ns |
//! | ring hash, min 1024 | 1.50, 1.94 | 1.00 % | 20 KiB (2048 entries) | 0.37 ms | 31, 36, 43 ns |
//! | rendezvous | 1.03, 1.11 | 1.00 % | 16 KiB | 0.03 ms | 30, 140, 1280 ns |
//!
//! - **Maglev** balances best and picks in constant time, but a removal also
//!   moves a few keys between hosts that stayed, and the table is large.
//! - **Ring hash** keeps keys put on removal while the per-host entry count
//!   stays the same (see [`RingHash`]'s limitations), but balances poorly
//!   unless the ring is large compared with the host count.
//! - **Rendezvous** moves only the removed host's keys, balances well and
//!   needs no table, at O(n) per pick: fine for tens of hosts, slow for
//!   thousands.
//! - **Bounded loads** cap every host at `factor` times its share of the
//!   live requests whichever table is under them, at the price of moving
//!   keys while hosts are busy.

mod bounded;
mod hash;
mod hosts;
mod maglev;
mod ring_hash;

pub use bounded::{BoundedLoad, BoundedState, ConsistentHash};
pub use hash::{
    combine, cookie_value, generated_cookie_value, header_hash, key_hash, murmur2_64,
    query_parameter, source_ip_hash, xxh64, HashMethod, HashPolicy, HttpRequest, MURMUR2_SEED,
};
pub use hosts::WeightedHost;
pub use maglev::{Maglev, MaglevState, MaglevTable};
pub use ring_hash::{RingHash, RingHashFunction, RingState, RingTable};

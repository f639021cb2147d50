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
//! Measured on the shared 2-core development VM (release build). Balance and
//! keys moved come from `examples/compare_hashing.rs` (equal weights; Maglev
//! by slot counts, ring hash by exact arc lengths, rendezvous over 10^6
//! sampled keys; moved keys over 10^5 keys when the middle host of n is
//! removed). Times are criterion medians from `benches/envoy.rs`; a pick is
//! a whole [`Pool::pick`](crate::Pool::pick) with its accounting, and the
//! VM's noise is about ±30 %.
//!
//! | | Maglev (M = 65537) | ring hash (min 1024) | rendezvous |
//! |---|---|---|---|
//! | balance, busiest / mean, n = 10, 100, 1000 | 1.000, 1.001, 1.007 | 1.12, 1.77, 4.49 | 1.007, 1.035, 1.095 |
//! | keys moved removing 1 of 10 (ideal 10 %) | 10.35 % | 17.55 % | 10.02 % |
//! | keys moved removing 1 of 100 (ideal 1 %) | 1.48 % | 1.13 % | 0.98 % |
//! | keys moved removing 1 of 1000 (ideal 0.1 %) | 0.68 % | 0.05 % | 0.10 % |
//! | memory, n = 1000 | 128 KiB (u16 slots) | 20 KB (2000 entries) | 16 KB |
//! | build, n = 10, 100, 1000 | 2.8, 4.5, 4.2 ms | 63, 78, 168 µs | 0.16, 1.2, 14.5 µs |
//! | pick, n = 10, 100, 1000 | 87, 73, 163 ns | 127, 233, 119 ns | 102, 364, 2730 ns |
//!
//! - **Maglev** balances best and picks in constant time; a removal also
//!   moves some keys between hosts that stayed (most visibly with many
//!   hosts), and the table costs M slots whatever the host count.
//! - **Ring hash** balances poorly unless the ring is large compared with
//!   the host count (raise the minimum ring size), and Envoy's sizing rule
//!   adds entries to the survivors when a host leaves a small set, which
//!   moves extra keys (17.55 % for 1 of 10).
//! - **Rendezvous** moves only the removed host's keys, balances well and
//!   builds in microseconds, at O(n) per pick: fine for tens or hundreds of
//!   hosts, slow for thousands.
//! - **Bounded loads** ([`BoundedLoad`]) cap every host at `factor` times its
//!   share of the live requests whichever table is under them, at the price
//!   of moving keys while hosts are busy; an unloaded pick costs what the
//!   inner pick costs.

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

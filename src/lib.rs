//! Load-balancing and session-affinity primitives for proxies.
//!
//! A proxy decides, for each request or connection, which backend serves
//! it, and keeps a client on the same backend for its whole session unless
//! that backend dies. This crate gives it those decisions as a library:
//!
//! - a live [`Pool`] shared by every thread: picks take no lock and do not
//!   allocate, and the backend set changes at runtime by swapping one
//!   immutable [`Snapshot`], with live state (active connections, failures)
//!   carried over for every backend that stays;
//! - picks that account for themselves: a [`Pick`] counts as an active
//!   connection until dropped, and reports feed nginx's passive health
//!   (`max_fails`, `fail_timeout`, backups);
//! - retries over distinct backends with [`Pool::request`], following
//!   nginx's `proxy_next_upstream`;
//! - a [`Reader`] per worker thread for the fastest picks, and
//!   [`Reader::lookup`] for callers that hold no connection per pick
//!   (cache clients): the same choice, nothing counted;
//! - balancing [policies](policy) that give exactly nginx's answers, and a
//!   [`Policy`] trait for your own.
//!
//! # Example
//!
//! ```
//! use upstream::{Backend, Key, Pool, RoundRobin};
//!
//! let pool = Pool::new(
//!     RoundRobin,
//!     vec![
//!         Backend::new("10.0.0.1:8080").weight(2),
//!         Backend::new("10.0.0.2:8080"),
//!         Backend::new("10.0.0.3:8080").backup(true),
//!     ],
//! )
//! .unwrap();
//!
//! let mut request = pool.request(Key::None);
//! let pick = request.next().expect("a backend is available");
//! assert_eq!(pick.id(), "10.0.0.1:8080");
//! pick.failure(); // connect refused: counts against the backend
//! let retry = request.next().expect("another backend");
//! assert_eq!(retry.id(), "10.0.0.2:8080");
//! retry.success();
//! ```
//!
//! # Limitations
//!
//! - Health is passive only (what the caller reports); active health checks
//!   belong to the proxy, which can mark backends down with
//!   [`Pool::set_down`].
//! - See each policy for where it departs from the program it mirrors.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod clock;
pub mod config;
pub mod envoy;
mod error;
pub mod haproxy;
mod latency;
mod live;
mod panic;
mod pick;
pub mod policy;
mod pool;
mod random;
mod reader;
mod slow_start;
pub mod sticky;
pub mod time;
mod tried;

pub use backend::{Backend, BackendSet, IntoBackendSet, MAX_BACKENDS, MAX_WEIGHT};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{ConfigError, UpstreamConfig};
pub use error::BuildError;
pub use haproxy::{HaproxyChash, HaproxyMap, StaticRr};
pub use latency::LatencyEwma;
pub use live::{Event, Observer};
pub use panic::AllDown;
pub use pick::{Outcome, Pick, Request};
pub use policy::{
    IpHash, Ketama, Key, LeastConn, NginxHash, NginxRandom, P2c, PeakEwma, Policy, RampMode,
    Random, Rendezvous, RoundRobin,
};
pub use pool::{Pool, PoolBuilder, Snapshot};
pub use random::{RandomSource, Sequence, SplitMix64};
pub use reader::{Choice, Reader};
pub use slow_start::{SlowStart, RAMP_ONE};
pub use sticky::{Affinity, Sticky, StickyError, StickyPick};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

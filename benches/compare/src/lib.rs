//! The rows of the comparison: one closure per subject (upstream, a peer,
//! the bare algorithm), each built before timing and run in batches.
//!
//! Every subject of a row sees the same backends (same addresses, same mixed
//! weights) and the same keys, in the same order.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::SocketAddr;

use futures::FutureExt;
use pingora_ketama::{Bucket, Continuum};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::{discovery, Backends, LoadBalancer};
use upstream::{Key, Pool};

/// Backend counts of every row.
pub const SIZES: [usize; 3] = [10, 100, 1000];

/// Distinct keys cycled through by keyed subjects.
pub const KEYS: usize = 4096;

/// pingora's `select(key, max_iterations)` bound, as its examples use.
pub const MAX_ITERATIONS: usize = 256;

/// Runs a subject `iters` times.
pub type Batch = Box<dyn FnMut(u64)>;

/// One subject of a row.
pub struct Subject {
    /// Who is measured: `Pool::pick`, `Reader::pick`, `Reader::lookup`,
    /// `pingora select()`, `Continuum::node`, `bare`.
    pub name: &'static str,
    /// The timed work.
    pub batch: Batch,
}

/// One line of the table: a policy at one backend count.
pub struct Row {
    /// The policy, as named in both crates.
    pub policy: &'static str,
    /// Backends in the set.
    pub n: usize,
    /// `upstream` first, then the peers, then the bare algorithm.
    pub subjects: Vec<Subject>,
}

/// Backend `i` of a set of `n`: an address and a weight from 1 to 10.
pub fn backend(i: usize) -> (SocketAddr, u32) {
    let addr = format!("10.{}.{}.{}:8080", i >> 16, (i >> 8) & 255, i & 255);
    (
        addr.parse().expect("a valid address"),
        1 + (i as u32 * 7) % 10,
    )
}

/// The upstream backends of a set of `n`.
pub fn upstream_backends(n: usize) -> Vec<upstream::Backend> {
    (0..n)
        .map(|i| {
            let (addr, weight) = backend(i);
            upstream::Backend::new(addr.to_string()).weight(weight)
        })
        .collect()
}

fn pingora_lb<S>(n: usize) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let set: BTreeSet<pingora_load_balancing::Backend> = (0..n)
        .map(|i| {
            let (addr, weight) = backend(i);
            pingora_load_balancing::Backend::new_with_weight(&addr.to_string(), weight as usize)
                .expect("a valid address")
        })
        .collect();
    let lb = LoadBalancer::<S>::from_backends(Backends::new(discovery::Static::new(set)));
    lb.update()
        .now_or_never()
        .expect("static discovery does not block")
        .expect("static discovery does not fail");
    lb
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 16
}

/// 24-byte lowercase keys, the same for every subject.
pub fn keys() -> Vec<[u8; 24]> {
    let mut s = 2;
    (0..KEYS)
        .map(|_| {
            let mut key = [0u8; 24];
            for b in &mut key {
                *b = b'a' + (lcg(&mut s) % 26) as u8;
            }
            key
        })
        .collect()
}

/// A batch that picks with `pick` on each key in turn.
fn keyed(mut pick: impl FnMut(&[u8]) + 'static) -> Batch {
    let keys = keys();
    let mut k = 0usize;
    Box::new(move |iters| {
        // The position lives in a register during the batch, not in the
        // closure's heap state, so that no subject waits on its store.
        let mut at = k;
        for _ in 0..iters {
            pick(&keys[at % KEYS]);
            at = at.wrapping_add(1);
        }
        k = at;
    })
}

/// How an `upstream` subject reaches the pool.
#[derive(Clone, Copy)]
enum Via {
    /// `Pool::pick`: an arc-swap load per call, a counted `Pick`.
    Pool,
    /// `Reader::pick`: the cached snapshot, a counted `Pick`.
    Reader,
    /// `Reader::lookup`: the cached snapshot, nothing counted.
    Lookup,
}

fn upstream_subject<P: upstream::Policy>(pool: Pool<P>, keyed_by_bytes: bool, via: Via) -> Subject {
    // One closure per way in, each compiled on its own, so that no subject
    // pays for a branch on `via` or loses inlining to the others.
    let name = match via {
        Via::Pool => "Pool::pick",
        Via::Reader => "Reader::pick",
        Via::Lookup => "Reader::lookup",
    };
    let batch = match (via, keyed_by_bytes) {
        (Via::Pool, true) => keyed(move |key| {
            black_box(pool.pick(Key::Bytes(black_box(key))).map(|p| p.index()));
        }),
        (Via::Reader, true) => {
            let mut reader = pool.reader();
            keyed(move |key| {
                black_box(reader.pick(Key::Bytes(black_box(key))).map(|p| p.index()));
            })
        }
        (Via::Lookup, true) => {
            let mut reader = pool.reader();
            keyed(move |key| {
                black_box(reader.lookup(Key::Bytes(black_box(key))).map(|c| c.index()));
            })
        }
        (Via::Pool, false) => unkeyed(move || {
            black_box(pool.pick(Key::None).map(|p| p.index()));
        }),
        (Via::Reader, false) => {
            let mut reader = pool.reader();
            unkeyed(move || {
                black_box(reader.pick(Key::None).map(|p| p.index()));
            })
        }
        (Via::Lookup, false) => {
            let mut reader = pool.reader();
            unkeyed(move || {
                black_box(reader.lookup(Key::None).map(|c| c.index()));
            })
        }
    };
    Subject { name, batch }
}

/// A batch that calls `pick` with no key.
fn unkeyed(mut pick: impl FnMut() + 'static) -> Batch {
    Box::new(move |iters| {
        for _ in 0..iters {
            pick();
        }
    })
}

/// The three ways in to an `upstream` pool of policy `P` over `n` backends.
fn upstream_subjects<P: upstream::Policy>(
    policy: P,
    n: usize,
    keyed_by_bytes: bool,
) -> Vec<Subject> {
    [Via::Pool, Via::Reader, Via::Lookup]
        .into_iter()
        .map(|via| upstream_subject(pool(policy.clone(), n), keyed_by_bytes, via))
        .collect()
}

fn pingora_select<S>(lb: LoadBalancer<S>) -> Subject
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    Subject {
        name: "pingora select()",
        batch: keyed(move |key| {
            black_box(lb.select(black_box(key), MAX_ITERATIONS));
        }),
    }
}

fn continuum_node(n: usize) -> Subject {
    let buckets: Vec<Bucket> = (0..n)
        .map(|i| {
            let (addr, weight) = backend(i);
            Bucket::new(addr, weight)
        })
        .collect();
    let ring = Continuum::new(&buckets);
    Subject {
        name: "Continuum::node",
        batch: keyed(move |key| {
            black_box(ring.node(black_box(key)));
        }),
    }
}

/// Round robin: one shared cursor and a read of the prebuilt schedule.
fn bare_round_robin(n: usize) -> Subject {
    let pool = Pool::new(upstream::RoundRobin, upstream_backends(n)).expect("a valid set");
    let schedule: Box<[u32]> = pool.snapshot().primary_table().schedule().into();
    let cursor = std::sync::atomic::AtomicU64::new(0);
    Subject {
        name: "bare",
        batch: Box::new(move |iters| {
            let len = schedule.len() as u64;
            for _ in 0..iters {
                // Relaxed: as upstream's own cursor.
                let c = cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                black_box(schedule[(c % len) as usize]);
            }
        }),
    }
}

/// nginx's consistent hash alone: the key's CRC-32 and the ring search of
/// upstream's own table, without the pool around it.
fn bare_ketama(n: usize) -> Subject {
    use upstream::policy::Policy;
    let table = upstream::Ketama
        .build(&upstream_backends(n), None)
        .expect("a valid set");
    Subject {
        name: "bare",
        batch: keyed(move |key| {
            let point = table.find(crc32fast::hash(black_box(key)));
            black_box(point.and_then(|p| table.point(p)));
        }),
    }
}

/// nginx's `hash` alone, written here: `(crc32(key) >> 16) & 0x7fff`
/// modulo the total weight, and a binary search over the weights' prefix
/// sums.
fn bare_hash(n: usize) -> Subject {
    let mut ends = Vec::with_capacity(n);
    let mut total = 0u64;
    for i in 0..n {
        total += u64::from(backend(i).1);
        ends.push(total);
    }
    Subject {
        name: "bare",
        batch: keyed(move |key| {
            let h = u64::from((crc32fast::hash(black_box(key)) >> 16) & 0x7fff) % total;
            black_box(ends.partition_point(|&end| end <= h));
        }),
    }
}

fn pool<P: upstream::Policy>(policy: P, n: usize) -> Pool<P> {
    Pool::new(policy, upstream_backends(n)).expect("a valid set")
}

/// Every row, in table order. `filter` keeps rows whose policy contains it.
pub fn rows(filter: &str) -> Vec<Row> {
    use pingora_load_balancing::selection::{Consistent, FNVHash, RoundRobin as PRoundRobin};

    let mut rows = Vec::new();
    let mut row = |policy: &'static str, n: usize, make: &dyn Fn() -> Vec<Subject>| {
        if policy.contains(filter) {
            rows.push(Row {
                policy,
                n,
                subjects: make(),
            });
        }
    };
    for n in SIZES {
        row("round_robin", n, &|| {
            let mut subjects = upstream_subjects(upstream::RoundRobin, n, false);
            subjects.push(pingora_select(pingora_lb::<PRoundRobin>(n)));
            subjects.push(bare_round_robin(n));
            subjects
        });
    }
    for n in SIZES {
        row("ketama", n, &|| {
            let mut subjects = upstream_subjects(upstream::Ketama, n, true);
            subjects.push(pingora_select(pingora_lb::<Consistent>(n)));
            subjects.push(continuum_node(n));
            subjects.push(bare_ketama(n));
            subjects
        });
    }
    for n in SIZES {
        row("hash", n, &|| {
            let mut subjects = upstream_subjects(upstream::NginxHash, n, true);
            subjects.push(pingora_select(pingora_lb::<FNVHash>(n)));
            subjects.push(bare_hash(n));
            subjects
        });
    }
    rows
}

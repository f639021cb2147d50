//! Pick and build costs through the public pool API: the full matrix for
//! the core policies, and for every other policy the failover and contended
//! picks (their plain picks and builds are in their own bench files).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use upstream::envoy::{Maglev, RingHash};
use upstream::policy::Policy;
use upstream::{
    Backend, HaproxyChash, HaproxyMap, IpHash, Ketama, Key, LeastConn, NginxHash, NginxRandom, P2c,
    PeakEwma, Pool, Random, Reader, Rendezvous, RoundRobin, StaticRr,
};

const SIZES: [usize; 3] = [10, 100, 1000];

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            Backend::new(format!("10.1.{}.{}:8080", i / 256, i % 256)).weight(1 + (i % 7) as u32)
        })
        .collect()
}

fn pick_group<P: Policy>(c: &mut Criterion, policy: P) {
    let mut group = c.benchmark_group(format!("pick/{}", policy.name()));
    for n in SIZES {
        let pool = Pool::new(policy.clone(), backends(n)).unwrap();
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| black_box(pool.pick(Key::None)).map(|p| p.index()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("pick_failover/{}", policy.name()));
    for n in SIZES {
        let set: Vec<Backend> = backends(n)
            .into_iter()
            .enumerate()
            .map(|(i, b)| b.down(i % 2 == 0))
            .collect();
        let pool = Pool::new(policy.clone(), set).unwrap();
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| black_box(pool.pick(Key::None)).map(|p| p.index()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("build/{}", policy.name()));
    for n in SIZES {
        let pool = Pool::new(policy.clone(), backends(n)).unwrap();
        let set = pool.backend_set();
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter_batched(
                || set.clone(),
                |set| pool.replace(set).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn pick_contended<P: Policy>(c: &mut Criterion, policy: P) {
    let pool = Pool::new(policy.clone(), backends(100)).unwrap();
    two_threads(
        c,
        &format!("pick_contended/{}", policy.name()),
        |iters, _| {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                black_box(pool.pick(Key::None));
            }
            start.elapsed()
        },
    );
}

/// What each policy is keyed by: 4096 keys built before timing.
#[derive(Clone, Copy)]
enum Keys {
    None,
    Ip,
    Bytes,
    Hash,
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 16
}

fn keys(kind: Keys) -> Vec<Key<'static>> {
    let mut s = 7;
    (0..4096)
        .map(|_| match kind {
            Keys::None => Key::None,
            Keys::Ip => Key::Ip(IpAddr::V4(Ipv4Addr::from(lcg(&mut s) as u32))),
            Keys::Hash => Key::Hash(lcg(&mut s) << 16 ^ lcg(&mut s)),
            Keys::Bytes => {
                let key: Vec<u8> = (0..24).map(|_| b'a' + (lcg(&mut s) % 26) as u8).collect();
                // Leaked once per bench run, so that keys are plain `Key<'static>`.
                Key::Bytes(Box::leak(key.into_boxed_slice()))
            }
        })
        .collect()
}

/// `pick_failover/<name>/n=…` (half of the backends down) and
/// `pick_contended/<name>` (two threads on one pool of 100).
fn failover_and_contended<P: Policy>(c: &mut Criterion, name: &str, policy: P, kind: Keys) {
    let keys = keys(kind);
    let mut group = c.benchmark_group(format!("pick_failover/{name}"));
    for n in SIZES {
        let set: Vec<Backend> = backends(n)
            .into_iter()
            .enumerate()
            .map(|(i, b)| b.down(i % 2 == 0))
            .collect();
        let pool = Pool::new(policy.clone(), set).unwrap();
        let mut at = 0;
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| {
                at = (at + 1) & 4095;
                black_box(pool.pick(keys[at])).map(|p| p.index())
            })
        });
    }
    group.finish();

    let pool = Pool::new(policy, backends(100)).unwrap();
    two_threads(c, &format!("pick_contended/{name}"), |iters, first| {
        let start = std::time::Instant::now();
        for k in 0..iters as usize {
            black_box(pool.pick(keys[(first + k) & 4095]));
        }
        start.elapsed()
    });
}

/// A bench of `run(iters, first key)` on two threads at once, reporting
/// the wall time per pick over both.
fn two_threads(
    c: &mut Criterion,
    id: &str,
    run: impl Fn(u64, usize) -> std::time::Duration + Sync,
) {
    c.bench_function(id, |b| {
        b.iter_custom(|iters| {
            std::thread::scope(|s| {
                let other = s.spawn(|| run(iters, 2048));
                let mine = run(iters, 0);
                // Two picks per iteration: report the time per pick.
                (mine + other.join().unwrap()) / 4
            })
        })
    });
}

/// `pick_reader/<name>/n=…`: a pick through a [`Reader`](upstream::Reader)
/// (snapshot revalidated, policy's pick, slot taken, pick dropped), and
/// `lookup/<name>/n=…`: a lookup that counts nothing.
fn reader_group<P: Policy>(c: &mut Criterion, name: &str, policy: P, kind: Keys) {
    let keys = keys(kind);
    keyed_reader_group(
        c,
        &format!("pick_reader/{name}"),
        &policy,
        &keys,
        |r, key| r.pick(key).map(|p| p.index()),
    );
    keyed_reader_group(c, &format!("lookup/{name}"), &policy, &keys, |r, key| {
        r.lookup(key).map(|c| c.index())
    });
}

/// One group of `choose` through a reader at every size, keys in turn.
fn keyed_reader_group<P: Policy>(
    c: &mut Criterion,
    group: &str,
    policy: &P,
    keys: &[Key<'static>],
    choose: impl Fn(&mut Reader<P>, Key<'static>) -> Option<usize>,
) {
    let mut group = c.benchmark_group(group);
    for n in SIZES {
        let pool = Pool::new(policy.clone(), backends(n)).unwrap();
        let mut reader = pool.reader();
        let mut at = 0;
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| {
                at = (at + 1) & 4095;
                black_box(choose(&mut reader, keys[at]))
            })
        });
    }
    group.finish();
}

/// `pick_contended_reader/<name>`: two threads, each with its own reader,
/// picking from one pool of 100 at once; wall time per pick over both.
fn reader_contended<P: Policy>(c: &mut Criterion, name: &str, policy: P, kind: Keys) {
    let keys = keys(kind);
    let pool = Pool::new(policy, backends(100)).unwrap();
    two_threads(
        c,
        &format!("pick_contended_reader/{name}"),
        |iters, first| {
            let mut reader = pool.reader();
            let start = std::time::Instant::now();
            for k in 0..iters as usize {
                black_box(reader.pick(keys[(first + k) & 4095]).map(|p| p.index()));
            }
            start.elapsed()
        },
    );
}

fn readers(c: &mut Criterion) {
    reader_contended(c, "round_robin", RoundRobin, Keys::None);
    reader_contended(c, "hash", NginxHash, Keys::Bytes);
    reader_contended(c, "ketama", Ketama, Keys::Bytes);
    reader_contended(c, "random", Random, Keys::None);
    reader_contended(c, "least_conn", LeastConn, Keys::None);
    reader_group(c, "round_robin", RoundRobin, Keys::None);
    reader_group(c, "least_conn", LeastConn, Keys::None);
    reader_group(c, "ip_hash", IpHash, Keys::Ip);
    reader_group(c, "hash", NginxHash, Keys::Bytes);
    reader_group(c, "ketama", Ketama, Keys::Bytes);
    reader_group(c, "nginx_random", NginxRandom::plain(), Keys::None);
    reader_group(c, "nginx_random_two", NginxRandom::two(), Keys::None);
    reader_group(c, "random", Random, Keys::None);
    reader_group(c, "p2c", P2c::new(), Keys::None);
    reader_group(c, "peak_ewma", PeakEwma::new(), Keys::None);
    reader_group(c, "maglev", Maglev::new(), Keys::Hash);
    reader_group(c, "ring_hash", RingHash::new(), Keys::Hash);
    reader_group(c, "rendezvous", Rendezvous, Keys::Hash);
    reader_group(c, "haproxy_map", HaproxyMap::uri(), Keys::Bytes);
    reader_group(c, "haproxy_chash", HaproxyChash::uri(), Keys::Bytes);
    reader_group(c, "static_rr", StaticRr::default(), Keys::None);
}

fn core(c: &mut Criterion) {
    pick_group(c, RoundRobin);
    pick_group(c, LeastConn);
    pick_contended(c, RoundRobin);
    pick_contended(c, LeastConn);
}

fn others(c: &mut Criterion) {
    failover_and_contended(c, "ip_hash", IpHash, Keys::Ip);
    failover_and_contended(c, "hash", NginxHash, Keys::Bytes);
    failover_and_contended(c, "ketama", Ketama, Keys::Bytes);
    failover_and_contended(c, "nginx_random", NginxRandom::plain(), Keys::None);
    failover_and_contended(c, "nginx_random_two", NginxRandom::two(), Keys::None);
    failover_and_contended(c, "random", Random, Keys::None);
    failover_and_contended(c, "p2c", P2c::new(), Keys::None);
    failover_and_contended(c, "peak_ewma", PeakEwma::new(), Keys::None);
    failover_and_contended(c, "maglev", Maglev::new(), Keys::Hash);
    failover_and_contended(c, "ring_hash", RingHash::new(), Keys::Hash);
    failover_and_contended(c, "rendezvous", Rendezvous, Keys::Hash);
    failover_and_contended(c, "haproxy_map", HaproxyMap::uri(), Keys::Bytes);
    failover_and_contended(c, "haproxy_chash", HaproxyChash::uri(), Keys::Bytes);
    failover_and_contended(c, "static_rr", StaticRr::default(), Keys::None);
}

criterion_group!(benches, core, others, readers);
criterion_main!(benches);

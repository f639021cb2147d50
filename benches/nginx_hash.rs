//! Picks of nginx's hash methods through `Pool::pick`, and ketama builds.
//!
//! Keys are built before timing: client addresses for `ip_hash`, 24-byte
//! strings for `hash` and `hash consistent`. Each timed call picks one
//! backend and drops the pick, as a request that completes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use upstream::{Backend, IpHash, Ketama, Key, NginxHash, Policy, Pool};

const SIZES: [usize; 3] = [10, 100, 1000];
const KEYS: usize = 4096;

/// Mixed weights 1 to 10, as a fleet of unequal machines.
fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            Backend::new(format!(
                "10.{}.{}.{}:8080",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ))
            .weight(1 + (i as u32 * 7) % 10)
        })
        .collect()
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 16
}

fn clients() -> Vec<IpAddr> {
    let mut s = 1;
    (0..KEYS)
        .map(|i| {
            if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(lcg(&mut s) as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(
                    u128::from(lcg(&mut s)) << 64 | u128::from(lcg(&mut s)),
                ))
            }
        })
        .collect()
}

fn strings() -> Vec<[u8; 24]> {
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

fn bench_picks<P: Policy>(c: &mut Criterion, name: &str, policy: P, keys: &[Key<'_>]) {
    assert_eq!(keys.len(), KEYS, "the loop below masks with KEYS - 1");
    let mut group = c.benchmark_group(format!("pick/{name}"));
    for n in SIZES {
        let pool = Pool::new(policy.clone(), backends(n)).unwrap();
        let mut i = 0;
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            // The same loop as benches/pick.rs: a mask, not a division, to
            // step through the keys.
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                black_box(pool.pick(black_box(keys[i]))).map(|p| p.index())
            })
        });
    }
    group.finish();
}

fn picks(c: &mut Criterion) {
    let clients = clients();
    let ip_keys: Vec<Key<'_>> = clients.iter().map(|&ip| Key::Ip(ip)).collect();
    bench_picks(c, "ip_hash", IpHash, &ip_keys);
    let strings = strings();
    let byte_keys: Vec<Key<'_>> = strings.iter().map(|k| Key::Bytes(k)).collect();
    bench_picks(c, "hash", NginxHash, &byte_keys);
    bench_picks(c, "ketama", Ketama, &byte_keys);
}

fn builds(c: &mut Criterion) {
    let mut group = c.benchmark_group("build/ketama");
    group.sample_size(20);
    for n in SIZES {
        let tier = backends(n);
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| Ketama.build(black_box(&tier), None).unwrap())
        });
    }
    group.finish();

    // One backend of weight 1,000,000: the ring is scaled to MAX_POINTS.
    let mut heavy = vec![Backend::new("10.0.0.1:8080").weight(1_000_000)];
    heavy.extend((2..5).map(|i| Backend::new(format!("10.0.0.{i}:8080"))));
    let mut group = c.benchmark_group("build/ketama_heavy");
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter("n=4"), |b| {
        b.iter(|| Ketama.build(black_box(&heavy), None).unwrap())
    });
    group.finish();
}

/// The ring lookup alone (key CRC-32 and point search), without the pool.
fn ring(c: &mut Criterion) {
    let strings = strings();
    let mut group = c.benchmark_group("pick/ketama_ring");
    for n in SIZES {
        let table = Ketama.build(&backends(n), None).unwrap();
        let mut i = 0;
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| {
                i = (i + 1) % strings.len();
                let point = table.find(crc32fast::hash(black_box(&strings[i])));
                black_box(point.and_then(|p| table.point(p)))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, picks, ring, builds);
criterion_main!(benches);

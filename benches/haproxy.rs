//! Pick and build costs of the HAProxy policies.
//!
//! Picks go through the public pool API with `balance uri` keys (sdbm, as
//! HAProxy's default), cycling over 1024 prebuilt URIs; builds time the
//! policy's table build alone over a prebuilt tier.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use upstream::haproxy::{HaproxyChash, HaproxyMap};
use upstream::policy::Policy;
use upstream::{Backend, Key, Pool};

const SIZES: [usize; 3] = [10, 100, 1000];

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            Backend::new(format!("10.1.{}.{}:8080", i / 256, i % 256)).weight(1 + (i % 7) as u32)
        })
        .collect()
}

fn uris() -> Vec<String> {
    (0..1024)
        .map(|i| format!("/static/{i}/asset-{}.js?v=3", i * 7919))
        .collect()
}

fn pick_group<P: Policy>(c: &mut Criterion, name: &str, policy: P) {
    let keys = uris();
    let mut group = c.benchmark_group(format!("pick/{name}"));
    for n in SIZES {
        let pool = Pool::new(policy.clone(), backends(n)).unwrap();
        let mut at = 0;
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| {
                at = (at + 1) % keys.len();
                black_box(pool.pick(Key::from(keys[at].as_str()))).map(|p| p.index())
            })
        });
    }
    group.finish();
}

fn build_group<P: Policy>(c: &mut Criterion, policy: P) {
    let mut group = c.benchmark_group(format!("build/{}", policy.name()));
    for n in SIZES {
        let tier = backends(n);
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| black_box(policy.build(&tier, None).unwrap()))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    pick_group(c, "haproxy_map", HaproxyMap::uri());
    pick_group(c, "haproxy_chash", HaproxyChash::uri());
    // Bounded loads with nothing in flight: the cost of totalling the load.
    pick_group(
        c,
        "haproxy_chash_bounded",
        HaproxyChash::uri().balance_factor(125),
    );
    build_group(c, HaproxyMap::uri());
    build_group(c, HaproxyChash::uri());
}

criterion_group!(haproxy, benches);
criterion_main!(haproxy);

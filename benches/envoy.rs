//! Picks and table builds of Envoy's Maglev and ring hash, and rendezvous.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use upstream::envoy::{xxh64, BoundedLoad, Maglev, RingHash};
use upstream::{Backend, Key, Policy, Pool, Rendezvous};

const SIZES: [usize; 3] = [10, 100, 1000];

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            Backend::new(format!(
                "10.{}.{}.{}:8080",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ))
        })
        .collect()
}

fn keys() -> Vec<u64> {
    (0..4096u64).map(|k| xxh64(&k.to_le_bytes(), 0)).collect()
}

fn bench_pick<P: Policy>(c: &mut Criterion, name: &str, policy: P) {
    let keys = keys();
    for n in SIZES {
        let pool = Pool::new(policy.clone(), backends(n)).expect("valid set");
        let mut at = 0;
        c.bench_function(&format!("pick/{name}/n={n}"), |b| {
            b.iter(|| {
                at = (at + 1) & 4095;
                black_box(pool.pick(Key::Hash(keys[at])))
            })
        });
    }
}

fn picks(c: &mut Criterion) {
    bench_pick(c, "maglev", Maglev::new());
    bench_pick(c, "ring_hash", RingHash::new());
    bench_pick(c, "rendezvous", Rendezvous);
    bench_pick(
        c,
        "maglev_bounded",
        BoundedLoad::new(Maglev::new(), 150).expect("valid factor"),
    );
}

fn bench_build<P: Policy>(c: &mut Criterion, name: &str, policy: P) {
    for n in SIZES {
        let tier = backends(n);
        c.bench_function(&format!("build/{name}/n={n}"), |b| {
            b.iter(|| black_box(policy.build(&tier, None)))
        });
    }
}

fn builds(c: &mut Criterion) {
    bench_build(c, "maglev", Maglev::new());
    bench_build(c, "ring_hash", RingHash::new());
    bench_build(c, "rendezvous", Rendezvous);
}

criterion_group!(benches, picks, builds);
criterion_main!(benches);

//! Pick and build costs of the core policies, through the public pool API.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use upstream::policy::Policy;
use upstream::{Backend, Key, LeastConn, Pool, RoundRobin};

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
    c.bench_function(&format!("pick_contended/{}", policy.name()), |b| {
        b.iter_custom(|iters| {
            std::thread::scope(|s| {
                let other = s.spawn(|| {
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        black_box(pool.pick(Key::None));
                    }
                    start.elapsed()
                });
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    black_box(pool.pick(Key::None));
                }
                // Two picks per iteration: report the time per pick.
                (start.elapsed() + other.join().unwrap()) / 4
            })
        })
    });
}

fn core(c: &mut Criterion) {
    pick_group(c, RoundRobin);
    pick_group(c, LeastConn);
    pick_contended(c, RoundRobin);
    pick_contended(c, LeastConn);
}

criterion_group!(benches, core);
criterion_main!(benches);

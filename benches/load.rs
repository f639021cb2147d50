//! Pick cost of the load-aware policies through `Pool::pick`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use upstream::{Backend, Key, Outcome, P2c, PeakEwma, Policy, Pool, Random};

const SIZES: [usize; 3] = [10, 100, 1000];

/// Weights 1 to 4, so weighted paths (binary search, weight ratios) run.
fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            Backend::new(format!("10.0.{}.{}:80", i / 256, i % 256)).weight(1 + (i % 4) as u32)
        })
        .collect()
}

fn bench_policy<P: Policy>(c: &mut Criterion, name: &str, policy: P, feed: bool) {
    let mut group = c.benchmark_group(format!("pick/{name}"));
    for n in SIZES {
        let pool = Pool::new(policy.clone(), backends(n)).unwrap();
        if feed {
            for i in 0..n {
                let pick = pool.request(Key::None).take(i).unwrap();
                let ms = 1 + (i % 7) as u64;
                pick.report(Outcome::Success, Some(Duration::from_millis(ms)));
            }
        }
        group.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| black_box(pool.pick(Key::None)))
        });
    }
    group.finish();
}

fn picks(c: &mut Criterion) {
    bench_policy(c, "random", Random, false);
    bench_policy(c, "p2c", P2c::new(), false);
    bench_policy(c, "peak_ewma", PeakEwma::new(), true);
}

criterion_group!(benches, picks);
criterion_main!(benches);

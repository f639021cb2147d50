//! The same rows as the table printer, as criterion groups
//! `compare/<policy>/n=<n>/<subject>`, for criterion's statistics.

use criterion::{criterion_group, criterion_main, Criterion};
use upstream_compare::rows;

fn compare(c: &mut Criterion) {
    for row in rows("") {
        let mut group = c.benchmark_group(format!("compare/{}/n={}", row.policy, row.n));
        for mut s in row.subjects {
            group.bench_function(s.name, |b| {
                b.iter_custom(|iters| {
                    let start = std::time::Instant::now();
                    (s.batch)(iters);
                    start.elapsed()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, compare);
criterion_main!(benches);

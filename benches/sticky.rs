//! Sticky picks through the public API: one request, one sticky pick.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use upstream::sticky::{CookieConfig, LearnConfig, MemoryLearnStore, SealKeys, Sticky};
use upstream::{Backend, Key, Pool, RoundRobin};

const SIZES: [usize; 3] = [10, 100, 1000];

/// Sessions in the learn table, spread over the backends.
const SESSIONS: usize = 10_000;

fn pool(n: usize) -> Pool<RoundRobin> {
    let backends: Vec<Backend> = (0..n)
        .map(|i| Backend::new(format!("10.0.{}.{}:8080", i / 256, i % 256)))
        .collect();
    Pool::new(RoundRobin, backends).unwrap()
}

/// Picks with each value in turn, one request per pick.
fn bench_values(c: &mut Criterion, group: &str, sticky: &Sticky, n: usize, values: &[String]) {
    let pool = pool(n);
    sticky.prepare(&pool.snapshot());
    let mut g = c.benchmark_group(format!("pick/{group}"));
    let mut next = 0usize;
    g.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
        b.iter(|| {
            next = (next + 1) % values.len();
            let mut request = pool.request(Key::None);
            black_box(sticky.pick(&mut request, Some(&values[next])))
        })
    });
    g.finish();
}

fn sticky_cookie(c: &mut Criterion) {
    let sticky = Sticky::cookie(CookieConfig::new("srv_id")).unwrap();
    for n in SIZES {
        let snap = pool(n).snapshot();
        let values: Vec<String> = (0..n).map(|i| snap.route_id(i).unwrap().into()).collect();
        bench_values(c, "sticky_cookie", &sticky, n, &values);
    }
}

fn sticky_cookie_sealed(c: &mut Criterion) {
    let keys = SealKeys::new(vec![vec![0x42; 32]]).unwrap();
    let sticky = Sticky::cookie(CookieConfig::new("srv_id").seal(keys)).unwrap();
    for n in SIZES {
        let pool = pool(n);
        let snap = pool.snapshot();
        // The sealed value of each backend, as Set-Cookie carried it.
        let values: Vec<String> = (0..n)
            .map(|i| {
                let mut request = pool.request(Key::None);
                let pick = request.take(i).unwrap();
                let mut out = String::new();
                sticky.write_set_cookie(&snap, &pick, &mut out).unwrap();
                out["srv_id=".len()..].to_string()
            })
            .collect();
        bench_values(c, "sticky_cookie_sealed", &sticky, n, &values);
    }
}

fn sticky_learn(c: &mut Criterion) {
    for n in SIZES {
        let pool = pool(n);
        let store = Arc::new(MemoryLearnStore::default());
        let sticky = Sticky::learn(LearnConfig::default(), store);
        let snap = pool.snapshot();
        let sessions: Vec<String> = (0..SESSIONS).map(|s| format!("session-{s:08}")).collect();
        for (s, session) in sessions.iter().enumerate() {
            let mut request = pool.request(Key::None);
            let pick = request.take(s % n).unwrap();
            sticky.learn_session(&snap, session, &pick).unwrap();
        }
        bench_values(c, "sticky_learn", &sticky, n, &sessions);
    }
}

fn no_value(c: &mut Criterion) {
    // The fallback path: no sticky value, the policy picks.
    let sticky = Sticky::cookie(CookieConfig::new("srv_id")).unwrap();
    for n in SIZES {
        let pool = pool(n);
        let mut g = c.benchmark_group("pick/sticky_cookie_new");
        g.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
            b.iter(|| {
                let mut request = pool.request(Key::None);
                black_box(sticky.pick(&mut request, None))
            })
        });
        g.finish();
    }
}

criterion_group!(
    benches,
    sticky_cookie,
    sticky_cookie_sealed,
    sticky_learn,
    no_value
);
criterion_main!(benches);

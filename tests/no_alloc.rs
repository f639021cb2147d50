//! The pick path does no heap allocation, for every policy.
//!
//! A counting global allocator (the `allocation-counter` crate) wraps each
//! measured closure; the pool, keys and warm-up happen outside it.

use upstream::policy::Policy;
use upstream::{Backend, Key, LeastConn, Pool, RoundRobin};

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            Backend::new(format!("10.1.{}.{}:8080", i / 256, i % 256))
                .weight(1 + (i % 5) as u32)
                .max_fails(0)
        })
        .collect()
}

fn assert_pick_allocates_nothing<P: Policy>(policy: P, key: Key<'_>) {
    for n in [1, 10, 300] {
        let pool = Pool::new(policy.clone(), backends(n)).unwrap();
        drop(pool.pick(key));
        let info = allocation_counter::measure(|| {
            for _ in 0..100 {
                let pick = pool.pick(key).expect("a backend");
                pick.success();
                let mut request = pool.request(key);
                let first = request.next().expect("a backend");
                first.failure();
                drop(request.next());
            }
        });
        assert_eq!(info.count_total, 0, "{} allocated at n={n}", policy.name());
        // With everything failed out, the fruitless pick allocates nothing either.
        for b in pool.backend_set().backends() {
            pool.set_down(&b.id, true).unwrap();
        }
        let info = allocation_counter::measure(|| assert!(pool.pick(key).is_none()));
        assert_eq!(
            info.count_total,
            0,
            "{} allocated with all down at n={n}",
            policy.name()
        );
    }
}

#[test]
fn round_robin() {
    assert_pick_allocates_nothing(RoundRobin, Key::None);
}

#[test]
fn least_conn() {
    assert_pick_allocates_nothing(LeastConn, Key::None);
}

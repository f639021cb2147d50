//! Two threads pick and release while a third swaps sets thousands of times.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use upstream::policy::Policy;
use upstream::{Backend, Key, LeastConn, Pool, RoundRobin};

fn set(round: usize) -> Vec<Backend> {
    // Sizes 1..=6, overlapping identities, some down, some backups.
    let n = round % 6 + 1;
    (0..n)
        .map(|i| {
            let id = format!("10.0.{}.{}:80", (round + i) % 4, i);
            Backend::new(id)
                .weight((i % 3) as u32)
                .down(i == 3)
                .backup(i == 5)
        })
        .collect()
}

fn stress<P: Policy>(policy: P) {
    let pool = Arc::new(Pool::new(policy, set(0)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let pickers: Vec<_> = (0..2)
        .map(|t| {
            let (pool, stop) = (Arc::clone(&pool), Arc::clone(&stop));
            thread::spawn(move || {
                let mut picks = 0u64;
                // Relaxed: a stop flag; the join below synchronizes the rest.
                while !stop.load(Ordering::Relaxed) {
                    let mut request = pool.request(Key::None);
                    let mut held = Vec::new();
                    while let Some(pick) = request.next() {
                        let snap = request.snapshot();
                        let named = snap.backend(pick.index()).map(|b| b.id.as_str());
                        assert_eq!(named, Some(pick.id()), "pick outside the snapshot it read");
                        assert_eq!(pick.generation(), snap.generation());
                        assert!(!snap.backend(pick.index()).unwrap().down);
                        picks += 1;
                        if (picks + t) % 3 == 0 {
                            pick.failure();
                        } else {
                            held.push(pick);
                        }
                        if held.len() > 2 {
                            break;
                        }
                    }
                }
                picks
            })
        })
        .collect();
    for round in 1..3_000 {
        pool.replace(set(round)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = pickers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0, "the pickers ran");
    assert_eq!(pool.total_active(), 0);
    let snap = pool.snapshot();
    assert!((0..snap.len()).all(|i| snap.active(i) == 0));
}

#[test]
fn round_robin_under_swaps() {
    stress(RoundRobin);
}

#[test]
fn least_conn_under_swaps() {
    stress(LeastConn);
}

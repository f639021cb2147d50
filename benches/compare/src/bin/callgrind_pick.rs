//! A driver for `valgrind --tool=callgrind`: runs `ITERS` picks of one
//! policy inside `timed_picks`, so that `--toggle-collect` counts the pick
//! path alone (snapshot load, pick, drop of the `Pick`), free of set-up.
//!
//! Usage: `callgrind_pick POLICY N ITERS [failover]`, POLICY one of
//! `round_robin`, `least_conn`, `ketama`, `hash`, `ip_hash`
//! (unkeyed here: its round-robin fallback), `bare_round_robin`.
//! `VIA=reader` or `VIA=lookup` go through a `Reader` instead of `Pool::pick`.

use std::hint::black_box;

use upstream::{Key, Pool};
use upstream_compare::{keys, upstream_backends};

#[inline(never)]
fn timed_picks<P: upstream::Policy>(pool: &Pool<P>, keys: &[[u8; 24]], iters: usize, keyed: bool) {
    // VIA=reader picks through a `Reader`, VIA=lookup looks up through one.
    let via = match std::env::var("VIA").as_deref() {
        Ok("reader") => 1,
        Ok("lookup") => 2,
        _ => 0,
    };
    let mut reader = pool.reader();
    for k in 0..iters {
        let key = if keyed {
            Key::Bytes(&keys[k % keys.len()])
        } else {
            Key::None
        };
        let key = black_box(key);
        let index = match via {
            1 => reader.pick(key).map(|p| p.index()),
            2 => reader.lookup(key).map(|c| c.index()),
            _ => pool.pick(key).map(|p| p.index()),
        };
        black_box(index);
    }
}

#[inline(never)]
fn timed_bare(schedule: &[u32], cursor: &std::sync::atomic::AtomicU64, iters: usize) {
    for _ in 0..iters {
        // Relaxed: as upstream's cursor.
        let c = cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        black_box(schedule[(c % schedule.len() as u64) as usize]);
    }
}

fn run<P: upstream::Policy>(policy: P, n: usize, iters: usize, failover: bool, keyed: bool) {
    let set: Vec<upstream::Backend> = upstream_backends(n)
        .into_iter()
        .enumerate()
        .map(|(i, b)| b.down(failover && i % 2 == 0))
        .collect();
    let pool = Pool::new(policy, set).expect("a valid set");
    let keys = keys();
    timed_picks(&pool, &keys, 1000, keyed);
    // THREADS=2 runs the same picks on that many threads at once, for
    // timing contention with `perf stat` or `time` (not under callgrind).
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(|| timed_picks(&pool, &keys, iters, keyed));
        }
        timed_picks(&pool, &keys, iters, keyed);
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let policy = args.get(1).map_or("round_robin", |s| s.as_str());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let failover = args.get(4).is_some_and(|s| s == "failover");
    match policy {
        "round_robin" => run(upstream::RoundRobin, n, iters, failover, false),
        "least_conn" => run(upstream::LeastConn, n, iters, failover, false),
        "ketama" => run(upstream::Ketama, n, iters, failover, true),
        "hash" => run(upstream::NginxHash, n, iters, failover, true),
        "ip_hash" => run(upstream::IpHash, n, iters, failover, false),
        "bare_round_robin" => {
            let pool = Pool::new(upstream::RoundRobin, upstream_backends(n)).expect("valid");
            let schedule: Vec<u32> = pool.snapshot().primary_table().schedule().to_vec();
            let cursor = std::sync::atomic::AtomicU64::new(0);
            timed_bare(&schedule, &cursor, 1000);
            timed_bare(&schedule, &cursor, iters);
        }
        other => eprintln!("unknown policy {other}"),
    }
}

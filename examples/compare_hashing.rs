//! Prints, for Maglev, ring hash and rendezvous: how evenly they spread
//! keys, how many keys move when one host of n is removed, and table memory.
//!
//! Run with `cargo run --release --example compare_hashing`.

use upstream::envoy::{xxh64, MaglevTable, RingHash, RingTable};
use upstream::policy::RendezvousTable;
use upstream::Backend;

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

/// Busiest host's share divided by the mean share.
fn peak(shares: &[f64]) -> f64 {
    let total: f64 = shares.iter().sum();
    let max = shares.iter().cloned().fold(0.0, f64::max);
    max / (total / shares.len() as f64)
}

fn key(k: u64) -> u64 {
    xxh64(&k.to_le_bytes(), 0)
}

const KEYS: u64 = 1_000_000;

fn moved(
    before: &[Backend],
    after: &[Backend],
    old: impl Fn(u64) -> usize,
    new: impl Fn(u64) -> usize,
) -> f64 {
    let moved = (0..KEYS / 10)
        .filter(|&k| before[old(key(k))].id != after[new(key(k))].id)
        .count();
    moved as f64 / (KEYS / 10) as f64 * 100.0
}

fn main() {
    for n in [10, 100, 1000] {
        let tier = backends(n);
        let mut smaller = tier.clone();
        smaller.remove(n / 2);

        let m = MaglevTable::new(&tier, 65537);
        let mut slots = vec![0.0; n];
        (0..m.len()).for_each(|s| slots[m.slot(s).unwrap()] += 1.0);
        let m2 = MaglevTable::new(&smaller, 65537);
        let mv = moved(
            &tier,
            &smaller,
            |h| m.choose(h, 0).unwrap(),
            |h| m2.choose(h, 0).unwrap(),
        );
        println!(
            "maglev     n={n:4}: peak/mean {:.3}, moved {mv:.2}% (ideal {:.2}%), {} bytes",
            peak(&slots),
            100.0 / n as f64,
            m.memory()
        );

        let ring = RingHash::new();
        let r = RingTable::new(&tier, &ring);
        let mut arcs = vec![0.0; n];
        for i in 0..r.len() {
            let (h, owner) = r.entry(i).unwrap();
            let prev = if i == 0 {
                r.entry(r.len() - 1).unwrap().0
            } else {
                r.entry(i - 1).unwrap().0
            };
            arcs[owner] += h.wrapping_sub(prev) as f64;
        }
        let r2 = RingTable::new(&smaller, &ring);
        let mv = moved(
            &tier,
            &smaller,
            |h| r.choose(h, 0).unwrap(),
            |h| r2.choose(h, 0).unwrap(),
        );
        println!(
            "ring_hash  n={n:4}: peak/mean {:.3}, moved {mv:.2}%, {} entries, {} bytes",
            peak(&arcs),
            r.len(),
            r.memory()
        );

        let v = RendezvousTable::new(&tier);
        let v2 = RendezvousTable::new(&smaller);
        let best = |t: &RendezvousTable, h: u64| {
            let mut out = [0usize; 1];
            t.ranked(h, &mut out);
            out[0]
        };
        let mut counts = vec![0.0; n];
        (0..KEYS).for_each(|k| counts[best(&v, key(k))] += 1.0);
        let mv = moved(&tier, &smaller, |h| best(&v, h), |h| best(&v2, h));
        println!(
            "rendezvous n={n:4}: peak/mean {:.3} (sampled, {KEYS} keys), moved {mv:.2}%, {} bytes",
            peak(&counts),
            n * 16
        );
    }
}

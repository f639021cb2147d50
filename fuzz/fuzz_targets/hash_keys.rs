//! The key paths of the hash policies on arbitrary bytes and addresses:
//! no panic, a key that hashes gives the same backend twice (a key that
//! does not is balanced by round robin), and the backend given is one that
//! can serve.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use upstream::envoy::{BoundedLoad, Maglev, RingHash};
use upstream::haproxy::{HaproxyChash, HaproxyMap, HashFunction};
use upstream::policy::Policy;
use upstream::{Backend, IpHash, Ketama, Key, ManualClock, NginxHash, Pool, Rendezvous};

/// Picks `key` twice (released at once) and checks both answers.
fn check<P: Policy>(pool: &Pool<P>, key: Key<'_>, hashes: bool) {
    let first = pool.pick(key).map(|p| p.index());
    let second = pool.pick(key).map(|p| p.index());
    if hashes {
        assert_eq!(first, second, "{key:?} is not sticky");
    }
    let snap = pool.snapshot();
    if let Some(i) = first {
        let b = snap.backend(i).expect("in the snapshot");
        assert!(!b.down && b.weight > 0, "{key:?} picked {}", b.id);
    } else {
        assert!(
            snap.backends().iter().all(|b| b.down || b.weight == 0),
            "{key:?} picked none though a backend serves"
        );
    }
}

/// A pool of `policy` over `set` (nginx's hashes refuse none of these
/// sets: no backups), checked on every key.
fn check_all<P: Policy>(
    policy: P,
    set: &[Backend],
    keys: &[Key<'_>],
    hashes: impl Fn(Key<'_>) -> bool,
) {
    let pool = Pool::builder(policy)
        .clock(ManualClock::new(0))
        .build(set.to_vec())
        .unwrap();
    keys.iter().for_each(|&k| check(&pool, k, hashes(k)));
}

fn keys(data: &[u8]) -> Vec<Key<'_>> {
    let mut keys = vec![Key::None, Key::Bytes(data)];
    if let Ok(v4) = <[u8; 4]>::try_from(data.get(..4).unwrap_or_default()) {
        keys.push(Key::Ip(IpAddr::V4(Ipv4Addr::from(v4))));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(data.get(..16).unwrap_or_default()) {
        keys.push(Key::Ip(IpAddr::V6(Ipv6Addr::from(v6))));
    }
    if let Ok(h) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) {
        keys.push(Key::Hash(u64::from_le_bytes(h)));
    }
    keys
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, data)) = data.split_first() else {
        return;
    };
    // A set shaped by the first byte: 1 to 16 backends, some down, weights
    // 0 to 7, or HAProxy's largest, 256 (kept rare: rings grow with weight).
    let n = usize::from(shape % 16) + 1;
    let set: Vec<Backend> = (0..n)
        .map(|i| {
            let w = data.get(i).copied().unwrap_or(1);
            Backend::new(format!("10.1.0.{i}:80"))
                .weight(if w == 255 { 256 } else { u32::from(w % 8) })
                .down(shape & 0x80 != 0 && i % 3 == 0)
        })
        .collect();
    let function = [
        HashFunction::Sdbm,
        HashFunction::Djb2,
        HashFunction::Wt6,
        HashFunction::Crc32,
    ][usize::from(shape >> 4 & 3)];
    let avalanche = shape & 0x40 != 0;
    let keys = keys(data);

    let clock = ManualClock::new(0);
    for policy in [HaproxyMap::uri(), HaproxyMap::hdr(), HaproxyMap::source()] {
        let policy = policy.hash(function, avalanche);
        let pool = Pool::builder(policy.clone())
            .clock(clock.clone())
            .build(set.clone())
            .unwrap();
        keys.iter()
            .for_each(|&k| check(&pool, k, policy.key_hash(k).is_some()));
    }
    for policy in [
        HaproxyChash::uri(),
        HaproxyChash::hdr(),
        HaproxyChash::source(),
    ] {
        let policy = policy.hash(function, avalanche);
        let pool = Pool::builder(policy)
            .clock(clock.clone())
            .build(set.clone())
            .unwrap();
        keys.iter()
            .for_each(|&k| check(&pool, k, policy.key_hash(k).is_some()));
    }

    // nginx's hashes rehash past a down server and, when the rehashes keep
    // landing on it, fall back to round robin: sticky only with none down.
    let none_down = set.iter().all(|b| !b.down);
    let bytes = |k: Key<'_>| matches!(k, Key::Bytes(b) if !b.is_empty());
    check_all(IpHash, &set, &keys, |_| none_down);
    check_all(NginxHash, &set, &keys, |k| none_down && bytes(k));
    check_all(Ketama, &set, &keys, |k| none_down && bytes(k));
    // Envoy's tables and rendezvous hash every key but `None`.
    let some = |k: Key<'_>| !matches!(k, Key::None);
    check_all(Rendezvous, &set, &keys, some);
    let maglev = Maglev::with_table_size(251).unwrap();
    check_all(maglev, &set, &keys, some);
    let ring = RingHash::new().with_ring_size(64, 1024).unwrap();
    check_all(ring, &set, &keys, some);
    // Bounded loads: every pick is released, so no bound is reached.
    check_all(BoundedLoad::new(maglev, 150).unwrap(), &set, &keys, some);
});

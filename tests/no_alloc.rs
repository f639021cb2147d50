//! The pick path does no heap allocation, for every policy.
//!
//! A counting global allocator (the `allocation-counter` crate) wraps each
//! measured closure; the pool, keys and warm-up happen outside it.

use std::net::{IpAddr, Ipv6Addr};
use upstream::policy::Policy;

use upstream::envoy::{BoundedLoad, Maglev, RingHash};
use upstream::{
    Backend, HaproxyChash, HaproxyMap, IpHash, Ketama, Key, LeastConn, NginxHash, NginxRandom, P2c,
    PeakEwma, Pool, Random, Rendezvous, RoundRobin,
};

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
        let mut reader = pool.reader();
        drop(pool.pick(key));
        drop(reader.pick(key));
        let info = allocation_counter::measure(|| {
            for _ in 0..100 {
                let pick = pool.pick(key).expect("a backend");
                pick.success();
                let mut request = pool.request(key);
                let first = request.next().expect("a backend");
                first.failure();
                drop(request.next());
                reader.pick(key).expect("a backend").success();
                reader.lookup(key).expect("a backend").failure();
                drop(reader.request(key).next());
            }
        });
        assert_eq!(info.count_total, 0, "{} allocated at n={n}", policy.name());
        // With everything failed out, the fruitless pick allocates nothing either.
        pool.update(|set| set.iter_mut().for_each(|b| b.down = true))
            .unwrap();
        let info = allocation_counter::measure(|| {
            assert!(pool.pick(key).is_none());
            assert!(reader.pick(key).is_none());
            assert!(reader.lookup(key).is_none());
        });
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

const CLIENT: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));

#[test]
fn ip_hash() {
    assert_pick_allocates_nothing(IpHash, Key::Ip(CLIENT));
}

#[test]
fn nginx_hash() {
    assert_pick_allocates_nothing(NginxHash, Key::Bytes(b"user-000000000000000042"));
}

#[test]
fn ketama() {
    assert_pick_allocates_nothing(Ketama, Key::Bytes(b"user-000000000000000042"));
}

#[test]
fn nginx_random() {
    assert_pick_allocates_nothing(NginxRandom::two(), Key::None);
}

#[test]
fn random_p2c_and_peak_ewma() {
    assert_pick_allocates_nothing(Random, Key::None);
    assert_pick_allocates_nothing(P2c::new(), Key::None);
    assert_pick_allocates_nothing(PeakEwma::new(), Key::None);
}

#[test]
fn haproxy() {
    assert_pick_allocates_nothing(HaproxyMap::uri(), Key::Bytes(b"/cart?id=1"));
    assert_pick_allocates_nothing(HaproxyChash::source(), Key::Ip(CLIENT));
}

#[test]
fn envoy_and_rendezvous() {
    assert_pick_allocates_nothing(Maglev::new(), Key::Hash(0x9e37_79b9_7f4a_7c15));
    assert_pick_allocates_nothing(RingHash::new(), Key::Hash(0x9e37_79b9_7f4a_7c15));
    let bounded = BoundedLoad::new(Maglev::new(), 150).unwrap();
    assert_pick_allocates_nothing(bounded, Key::Hash(7));
    assert_pick_allocates_nothing(Rendezvous, Key::Bytes(b"session-42"));
}

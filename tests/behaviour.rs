//! One behavioural suite, run over every policy.
//!
//! Each policy adds one `suite!` line. The cases are the contract every
//! policy keeps, whatever its algorithm.

use std::net::{IpAddr, Ipv4Addr};
use upstream::policy::Policy;

use upstream::envoy::{BoundedLoad, Maglev, RingHash};
use upstream::{
    Backend, BuildError, HaproxyChash, HaproxyMap, IpHash, Ketama, Key, LeastConn, ManualClock,
    NginxHash, NginxRandom, P2c, PeakEwma, Pool, Random, Rendezvous, RoundRobin, SplitMix64,
    StaticRr,
};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

/// How a policy is exercised by the suite.
struct Case<P: Policy> {
    policy: P,
    key: Key<'static>,
    /// nginx refuses backups with hash methods.
    backups: bool,
}

fn names(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend::new(format!("10.0.0.{i}:80")))
        .collect()
}

fn build<P: Policy>(case: &Case<P>, backends: Vec<Backend>) -> Pool<P> {
    Pool::builder(case.policy.clone())
        .clock(ManualClock::new(0))
        .build(backends)
        .unwrap()
}

fn empty_set_picks_none<P: Policy>(case: Case<P>) {
    let pool = build(&case, vec![]);
    assert!(pool.pick(case.key).is_none());
    assert!(pool.request(case.key).next().is_none());
}

fn all_weights_zero_pick_none<P: Policy>(case: Case<P>) {
    let pool = build(&case, names(3).into_iter().map(|b| b.weight(0)).collect());
    assert!(pool.pick(case.key).is_none());
}

fn one_backend_is_always_picked<P: Policy>(case: Case<P>) {
    let pool = build(&case, names(1));
    for _ in 0..5 {
        assert_eq!(pool.pick(case.key).unwrap().id(), "10.0.0.0:80");
    }
}

fn all_down_pick_none<P: Policy>(case: Case<P>) {
    let pool = build(&case, names(4).into_iter().map(|b| b.down(true)).collect());
    assert!(pool.pick(case.key).is_none());
    let mut r = pool.request(case.key);
    assert!(r.next().is_none());
}

fn backups_only_when_no_primary<P: Policy>(case: Case<P>) {
    let mut backends = names(3);
    backends[2].backup = true;
    if !case.backups {
        let err = Pool::new(case.policy.clone(), backends).err().unwrap();
        assert!(
            matches!(err, BuildError::Unsupported { ref id, .. } if id == "10.0.0.2:80"),
            "{err}"
        );
        return;
    }
    let pool = build(&case, backends);
    for _ in 0..6 {
        assert_ne!(pool.pick(case.key).unwrap().id(), "10.0.0.2:80");
    }
    pool.set_down("10.0.0.0:80", true).unwrap();
    pool.set_down("10.0.0.1:80", true).unwrap();
    assert_eq!(pool.pick(case.key).unwrap().id(), "10.0.0.2:80");
}

fn duplicates_are_rejected<P: Policy>(case: Case<P>) {
    let err = Pool::new(
        case.policy.clone(),
        vec![Backend::new("x:1"), Backend::new("x:1")],
    )
    .err();
    assert_eq!(err, Some(BuildError::Duplicate { id: "x:1".into() }));
    let pool = build(&case, names(2));
    assert_eq!(
        pool.add(Backend::new("10.0.0.1:80")),
        Err(BuildError::Duplicate {
            id: "10.0.0.1:80".into()
        })
    );
    assert_eq!(
        pool.snapshot().generation(),
        1,
        "a refused update changes nothing"
    );
}

fn swap_keeps_live_state<P: Policy>(case: Case<P>) {
    let pool = build(&case, names(3));
    let held = pool.pick(case.key).unwrap();
    let id = held.id().to_string();
    let mut r = pool.request(case.key);
    let snap = pool.snapshot();
    let other = (0..3).find(|&i| snap.backend(i).unwrap().id != id).unwrap();
    let other_id = snap.backend(other).unwrap().id.clone();
    r.take(other).unwrap().failure();
    pool.update(|set| set.reverse()).unwrap();
    let snap = pool.snapshot();
    assert_eq!(
        snap.active(snap.index_of(&id).unwrap()),
        1,
        "active count carried over"
    );
    assert_eq!(
        snap.fails(snap.index_of(&other_id).unwrap()),
        1,
        "failure count carried over"
    );
    drop(held);
    assert_eq!(snap.active(snap.index_of(&id).unwrap()), 0);
}

fn handles_release_after_a_swap<P: Policy>(case: Case<P>) {
    let pool = build(&case, names(3));
    let picks: Vec<_> = (0..6).filter_map(|_| pool.pick(case.key)).collect();
    assert_eq!(picks.len(), 6);
    assert_eq!(pool.total_active(), 6);
    pool.replace(names(2)).unwrap();
    drop(picks);
    assert_eq!(pool.total_active(), 0);
    let snap = pool.snapshot();
    assert_eq!((snap.active(0), snap.active(1)), (0, 0));
}

fn never_picks_down_or_removed<P: Policy>(case: Case<P>) {
    let pool = build(&case, names(5));
    pool.set_down("10.0.0.1:80", true).unwrap();
    pool.remove("10.0.0.3:80").unwrap();
    for _ in 0..50 {
        let p = pool.pick(case.key).unwrap();
        assert!(
            p.id() != "10.0.0.1:80" && p.id() != "10.0.0.3:80",
            "{}",
            p.id()
        );
    }
    let mut r = pool.request(case.key);
    let mut seen = Vec::new();
    while let Some(p) = r.next() {
        seen.push(p.id().to_string());
    }
    seen.sort();
    assert_eq!(
        seen,
        ["10.0.0.0:80", "10.0.0.2:80", "10.0.0.4:80"],
        "retries cover the rest once"
    );
}

fn weight_zero_gets_nothing<P: Policy>(case: Case<P>) {
    let mut backends = names(3);
    backends[1].weight = 0;
    let pool = build(&case, backends);
    for _ in 0..50 {
        assert_ne!(pool.pick(case.key).unwrap().id(), "10.0.0.1:80");
    }
}

/// A lookup chooses exactly what a pick would, and counts nothing.
fn lookups_choose_as_picks_and_count_nothing<P: Policy>(case: Case<P>) {
    let setup = |pool: &Pool<P>| {
        pool.set_down("10.0.0.1:80", true).unwrap();
        let mut r = pool.request(case.key);
        r.take(2).unwrap().failure();
    };
    // The same seed for both, so that random policies draw alike.
    let seeded = || {
        Pool::builder(case.policy.clone())
            .clock(ManualClock::new(0))
            .random(SplitMix64::with_seed(7))
            .build(names(6))
            .unwrap()
    };
    let picked = seeded();
    setup(&picked);
    let looked_up = seeded();
    setup(&looked_up);
    let mut reader = looked_up.reader();
    for round in 0..40 {
        let pick = picked.pick(case.key).map(|p| p.index());
        let choice = reader.lookup(case.key).map(|c| c.index());
        assert_eq!(choice, pick, "{} round {round}", case.policy.name());
        assert!(!matches!(choice, Some(1 | 2)), "down or failed out");
    }
    assert_eq!(looked_up.total_active(), 0);
    let snap = looked_up.snapshot();
    assert!((0..6).all(|i| snap.active(i) == 0));
}

/// A reader made before updates follows them.
fn readers_follow_updates<P: Policy>(case: Case<P>) {
    let pool = build(&case, names(5));
    let mut reader = pool.reader();
    let first = reader.lookup(case.key).unwrap().index();
    assert!(first < 5);
    pool.set_down("10.0.0.1:80", true).unwrap();
    pool.remove("10.0.0.3:80").unwrap();
    for _ in 0..50 {
        let id = reader.lookup(case.key).unwrap().id().to_string();
        assert!(id != "10.0.0.1:80" && id != "10.0.0.3:80", "{id}");
        let p = reader.pick(case.key).unwrap();
        assert!(p.id() != "10.0.0.1:80" && p.id() != "10.0.0.3:80");
    }
    assert_eq!(reader.snapshot().generation(), pool.snapshot().generation());
    assert_eq!(reader.snapshot().len(), 4);
}

macro_rules! suite {
    ($name:ident, $case:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn empty_set() {
                empty_set_picks_none($case);
            }
            #[test]
            fn all_weights_zero() {
                all_weights_zero_pick_none($case);
            }
            #[test]
            fn one_backend() {
                one_backend_is_always_picked($case);
            }
            #[test]
            fn all_down() {
                all_down_pick_none($case);
            }
            #[test]
            fn backups() {
                backups_only_when_no_primary($case);
            }
            #[test]
            fn duplicates() {
                duplicates_are_rejected($case);
            }
            #[test]
            fn swap_keeps_state() {
                swap_keeps_live_state($case);
            }
            #[test]
            fn release_after_swap() {
                handles_release_after_a_swap($case);
            }
            #[test]
            fn no_down_or_removed() {
                never_picks_down_or_removed($case);
            }
            #[test]
            fn weight_zero() {
                weight_zero_gets_nothing($case);
            }
            #[test]
            fn lookups() {
                lookups_choose_as_picks_and_count_nothing($case);
            }
            #[test]
            fn readers() {
                readers_follow_updates($case);
            }
        }
    };
}

suite!(
    round_robin,
    Case {
        policy: RoundRobin,
        key: Key::None,
        backups: true
    }
);
suite!(
    least_conn,
    Case {
        policy: LeastConn,
        key: Key::None,
        backups: true
    }
);
suite!(
    haproxy_map_uri,
    Case {
        policy: HaproxyMap::uri(),
        key: Key::Bytes(b"/cart?id=1"),
        backups: true
    }
);
suite!(
    haproxy_chash_source,
    Case {
        policy: HaproxyChash::source(),
        key: Key::Ip(CLIENT),
        backups: true
    }
);
suite!(
    haproxy_static_rr,
    Case {
        policy: StaticRr::default(),
        key: Key::None,
        backups: true
    }
);
suite!(
    random,
    Case {
        policy: Random,
        key: Key::None,
        backups: true
    }
);
suite!(
    p2c,
    Case {
        policy: P2c::new(),
        key: Key::None,
        backups: true
    }
);
suite!(
    peak_ewma,
    Case {
        policy: PeakEwma::new(),
        key: Key::None,
        backups: true
    }
);
suite!(
    nginx_random_two,
    Case {
        policy: NginxRandom::two(),
        key: Key::None,
        backups: false
    }
);
suite!(
    ip_hash,
    Case {
        policy: IpHash,
        key: Key::Ip(CLIENT),
        backups: false
    }
);
suite!(
    nginx_hash,
    Case {
        policy: NginxHash,
        key: Key::Bytes(b"/cart?id=1"),
        backups: false
    }
);
suite!(
    ketama,
    Case {
        policy: Ketama,
        key: Key::Bytes(b"/cart?id=1"),
        backups: false
    }
);
suite!(
    maglev,
    Case {
        policy: Maglev::new(),
        key: Key::Hash(0x9e37_79b9_7f4a_7c15),
        backups: true
    }
);
suite!(
    ring_hash,
    Case {
        policy: RingHash::new(),
        key: Key::Hash(0x9e37_79b9_7f4a_7c15),
        backups: true
    }
);
suite!(
    bounded_maglev,
    Case {
        policy: BoundedLoad::new(Maglev::new(), 150).unwrap(),
        key: Key::Hash(42),
        backups: true
    }
);
suite!(
    rendezvous,
    Case {
        policy: Rendezvous,
        key: Key::Bytes(b"session-42"),
        backups: true
    }
);

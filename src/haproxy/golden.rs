//! Picks recorded from HAProxy 2.6.12 (Debian 12), frozen so that no change
//! here can move a session silently.
//!
//! Every backend had servers `s1`..`s4` of weights 1, 2, 3, 4 (ids 1..4),
//! and the answers are HAProxy's `srv_name` for each request.

use super::{HaproxyChash, HaproxyMap, HashFunction};
use crate::{Backend, Key, Policy, Pool};

const URIS: [&str; 6] = [
    "/a",
    "/b/c",
    "/index.html",
    "/img/logo.png?v=2",
    "/api/v1/users/42",
    "/x",
];
const CLIENTS: [&str; 6] = [
    "10.0.0.1",
    "192.168.1.20",
    "172.16.5.4",
    "8.8.8.8",
    "2001:db8::1",
    "fe80::1:2:3:4",
];

fn weighted() -> Vec<Backend> {
    (1..=4)
        .map(|w| Backend::new(format!("s{w}")).weight(w))
        .collect()
}

fn picks<P: Policy>(policy: P, keys: impl Iterator<Item = Key<'static>>) -> String {
    let pool = Pool::new(policy, weighted()).unwrap();
    let ids: Vec<String> = keys
        .map(|k| pool.pick(k).unwrap().id().to_string())
        .collect();
    ids.join(" ")
}

fn uris() -> impl Iterator<Item = Key<'static>> {
    URIS.iter().map(|u| Key::from(*u))
}

fn clients() -> impl Iterator<Item = Key<'static>> {
    CLIENTS.iter().map(|c| Key::Ip(c.parse().unwrap()))
}

/// `balance uri` + `hash-type <method> <function> [avalanche]`.
#[test]
fn uri_hashing_matches_haproxy() {
    use HashFunction::*;
    let map: [(HashFunction, bool, &str); 8] = [
        (Sdbm, false, "s1 s4 s3 s4 s4 s3"),
        (Sdbm, true, "s3 s1 s4 s3 s3 s4"),
        (Djb2, false, "s4 s3 s4 s3 s3 s1"),
        (Djb2, true, "s3 s1 s3 s3 s4 s3"),
        (Wt6, false, "s2 s3 s3 s2 s3 s4"),
        (Wt6, true, "s4 s4 s2 s2 s1 s4"),
        (Crc32, false, "s4 s4 s4 s4 s2 s4"),
        (Crc32, true, "s4 s4 s3 s2 s3 s3"),
    ];
    for (f, aval, want) in map {
        assert_eq!(
            picks(HaproxyMap::uri().hash(f, aval), uris()),
            want,
            "map-based {f:?} {aval}"
        );
    }
    let consistent: [(HashFunction, bool, &str); 8] = [
        (Sdbm, false, "s3 s4 s2 s4 s4 s3"),
        (Sdbm, true, "s4 s2 s4 s4 s2 s4"),
        (Djb2, false, "s3 s3 s4 s4 s4 s3"),
        (Djb2, true, "s4 s4 s1 s2 s4 s3"),
        (Wt6, false, "s4 s4 s2 s4 s1 s4"),
        (Wt6, true, "s1 s1 s4 s1 s4 s1"),
        (Crc32, false, "s3 s4 s3 s3 s2 s4"),
        (Crc32, true, "s2 s4 s3 s2 s4 s4"),
    ];
    for (f, aval, want) in consistent {
        assert_eq!(
            picks(HaproxyChash::uri().hash(f, aval), uris()),
            want,
            "consistent {f:?} {aval}"
        );
    }
}

/// `balance source`, IPv4 and IPv6 clients.
#[test]
fn source_hashing_matches_haproxy() {
    let sdbm = HashFunction::Sdbm;
    assert_eq!(picks(HaproxyMap::source(), clients()), "s2 s3 s4 s4 s2 s1");
    assert_eq!(
        picks(HaproxyMap::source().hash(sdbm, true), clients()),
        "s3 s1 s2 s3 s4 s4"
    );
    assert_eq!(
        picks(HaproxyChash::source().hash(sdbm, false), clients()),
        "s3 s3 s4 s4 s1 s4"
    );
    assert_eq!(
        picks(HaproxyChash::source(), clients()),
        "s4 s1 s4 s4 s4 s4"
    );
}

/// `balance hdr(x-k)` + `hash-type consistent` over `s1`, `s2 id 7`,
/// `s3 weight 2`.
#[test]
fn explicit_ids_match_haproxy() {
    let servers = vec![
        Backend::new("s1"),
        Backend::new("s2").hash_key("7"),
        Backend::new("s3").weight(2),
    ];
    let pool = Pool::new(HaproxyChash::hdr(), servers).unwrap();
    let got: Vec<String> = ["alice", "bob", "carol", "dave", "erin", "frank"]
        .iter()
        .map(|k| pool.pick(Key::from(*k)).unwrap().id().to_string())
        .collect();
    assert_eq!(got.join(" "), "s3 s1 s2 s2 s1 s2");
}

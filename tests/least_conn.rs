//! nginx's least_conn, with ties broken by smooth weighted round robin.

use upstream::{Backend, Key, LeastConn, ManualClock, Pool};

fn pool(weights: &[u32]) -> Pool<LeastConn> {
    let names = ["a", "b", "c"];
    let backends: Vec<_> = weights
        .iter()
        .zip(names)
        .map(|(&w, n)| Backend::new(n).weight(w))
        .collect();
    Pool::builder(LeastConn)
        .clock(ManualClock::new(0))
        .build(backends)
        .unwrap()
}

#[test]
fn idle_backends_tie_and_rotate_like_round_robin() {
    let p = pool(&[5, 1, 1]);
    let s: String = (0..7)
        .map(|_| p.pick(Key::None).unwrap().id().to_string())
        .collect();
    assert_eq!(s, "aabacaa");
}

#[test]
fn held_connections_steer_picks() {
    let p = pool(&[1, 1]);
    let mut held = Vec::new();
    let mut s = String::new();
    for _ in 0..4 {
        let pick = p.pick(Key::None).unwrap();
        s.push_str(pick.id());
        held.push(pick);
    }
    assert_eq!(s, "abba");
}

#[test]
fn ratios_compare_by_weight() {
    let p = pool(&[3, 1]);
    let mut held = Vec::new();
    let mut s = String::new();
    for _ in 0..5 {
        let pick = p.pick(Key::None).unwrap();
        s.push_str(pick.id());
        held.push(pick);
    }
    assert_eq!(s, "abaaa");
    assert_eq!((p.snapshot().active(0), p.snapshot().active(1)), (4, 1));
}

//! nginx's passive health, to the millisecond, with the clock under test control.

use std::time::Duration;

use upstream::{Backend, Key, LeastConn, ManualClock, Pool, RoundRobin};

fn pool_with(backends: Vec<Backend>) -> (Pool<RoundRobin>, ManualClock) {
    let clock = ManualClock::new(0);
    let pool = Pool::builder(RoundRobin)
        .clock(clock.clone())
        .build(backends)
        .unwrap();
    (pool, clock)
}

fn pick_id(pool: &Pool<RoundRobin>) -> Option<String> {
    pool.pick(Key::None).map(|p| p.id().to_string())
}

/// Fails "a" once through a request that starts on it.
fn fail_a(pool: &Pool<RoundRobin>) {
    let snap = pool.snapshot();
    let a = snap.index_of("a").unwrap();
    let mut request = pool.request(Key::None);
    request.take(a).expect("a is usable").failure();
}

#[test]
fn max_fails_opens_a_window_of_fail_timeout() {
    let (pool, clock) = pool_with(vec![Backend::new("a"), Backend::new("b")]);
    fail_a(&pool);
    assert_eq!(pool.snapshot().fails(0), 1);
    // Unavailable while now - checked <= fail_timeout (10 000 ms).
    for t in [0, 1, 5_000, 10_000] {
        clock.set_ms(t);
        assert_eq!(pick_id(&pool).as_deref(), Some("b"), "at {t} ms");
    }
    clock.set_ms(10_001);
    let probe = pool.pick(Key::None).unwrap();
    assert_eq!(probe.id(), "a", "first pick after the window probes");
    // While the probe is out, "a" is not handed out again.
    assert_eq!(pick_id(&pool).as_deref(), Some("b"));
    assert_eq!(pick_id(&pool).as_deref(), Some("b"));
    probe.success();
    assert_eq!(
        pool.snapshot().fails(0),
        0,
        "a successful probe clears the count"
    );
    let s: Vec<_> = (0..4).map(|_| pick_id(&pool).unwrap()).collect();
    assert_eq!(s, ["a", "b", "a", "b"]);
}

#[test]
fn a_failed_probe_closes_the_window_again() {
    let (pool, clock) = pool_with(vec![Backend::new("a"), Backend::new("b")]);
    fail_a(&pool);
    clock.set_ms(10_001);
    let probe = pool.pick(Key::None).unwrap();
    assert_eq!(probe.id(), "a");
    probe.failure();
    assert_eq!(pool.snapshot().fails(0), 2);
    clock.set_ms(20_001);
    assert_eq!(
        pick_id(&pool).as_deref(),
        Some("b"),
        "window restarts at the probe failure"
    );
    clock.set_ms(20_002);
    assert_eq!(pick_id(&pool).as_deref(), Some("a"));
}

#[test]
fn successes_inside_the_window_do_not_clear_the_count() {
    let a = Backend::new("a").max_fails(2);
    let (pool, clock) = pool_with(vec![a, Backend::new("b")]);
    let snap = pool.snapshot();
    let mut r1 = pool.request(Key::None);
    let mut r2 = pool.request(Key::None);
    let early = r1.take(0).unwrap();
    let failing = r2.take(0).unwrap();
    failing.failure();
    clock.set_ms(3_000);
    early.success();
    assert_eq!(
        snap.fails(0),
        1,
        "a success inside the window keeps the count"
    );
    fail_a(&pool);
    assert_eq!(snap.fails(0), 2);
    assert_eq!(pick_id(&pool).as_deref(), Some("b"));
    assert_eq!(pick_id(&pool).as_deref(), Some("b"));
}

#[test]
fn a_success_after_the_window_clears_the_count() {
    let a = Backend::new("a")
        .max_fails(3)
        .fail_timeout(Duration::from_secs(5));
    let (pool, clock) = pool_with(vec![a, Backend::new("b")]);
    fail_a(&pool);
    clock.set_ms(5_001);
    let mut r = pool.request(Key::None);
    let pick = r.take(0).unwrap();
    pick.success();
    assert_eq!(pool.snapshot().fails(0), 0);
}

#[test]
fn a_single_primary_counts_no_failures() {
    let (pool, _clock) = pool_with(vec![Backend::new("a")]);
    for _ in 0..5 {
        pool.pick(Key::None).unwrap().failure();
    }
    assert_eq!(pool.snapshot().fails(0), 0);
    assert_eq!(pick_id(&pool).as_deref(), Some("a"));
}

#[test]
fn one_primary_with_a_backup_counts_failures() {
    let (pool, _clock) = pool_with(vec![Backend::new("a"), Backend::new("z").backup(true)]);
    pool.pick(Key::None).unwrap().failure();
    assert_eq!(pool.snapshot().fails(0), 1);
    assert_eq!(pick_id(&pool).as_deref(), Some("z"));
}

#[test]
fn max_fails_zero_never_fails_out() {
    let (pool, _clock) = pool_with(vec![Backend::new("a").max_fails(0), Backend::new("b")]);
    for _ in 0..3 {
        fail_a(&pool);
    }
    let s: Vec<_> = (0..4).map(|_| pick_id(&pool).unwrap()).collect();
    assert_eq!(s, ["a", "b", "a", "b"]);
}

#[test]
fn max_conns_is_skipped_until_released() {
    let (pool, _clock) = pool_with(vec![Backend::new("a").max_conns(1), Backend::new("b")]);
    let held = pool.pick(Key::None).unwrap();
    assert_eq!(held.id(), "a");
    let s: Vec<_> = (0..3).map(|_| pick_id(&pool).unwrap()).collect();
    assert_eq!(s, ["b", "b", "b"]);
    drop(held);
    let s: Vec<_> = (0..2).map(|_| pick_id(&pool).unwrap()).collect();
    assert_eq!(s, ["a", "b"]);
}

#[test]
fn backups_serve_only_when_no_primary_is_available() {
    let backends = vec![
        Backend::new("a"),
        Backend::new("y").backup(true),
        Backend::new("b"),
        Backend::new("z").backup(true),
    ];
    let (pool, clock) = pool_with(backends);
    let s: Vec<_> = (0..4).map(|_| pick_id(&pool).unwrap()).collect();
    assert_eq!(s, ["a", "b", "a", "b"]);
    pool.set_down("a", true).unwrap();
    let snap = pool.snapshot();
    let b = snap.index_of("b").unwrap();
    pool.request(Key::None).take(b).unwrap().failure();
    let s: Vec<_> = (0..4).map(|_| pick_id(&pool).unwrap()).collect();
    assert_eq!(s, ["y", "z", "y", "z"], "backups rotate among themselves");
    clock.set_ms(10_001);
    assert_eq!(
        pick_id(&pool).as_deref(),
        Some("b"),
        "the primary is probed again first"
    );
}

#[test]
fn nothing_available_picks_none() {
    let (pool, _clock) = pool_with(vec![
        Backend::new("a").down(true),
        Backend::new("b").down(true),
    ]);
    assert_eq!(pick_id(&pool), None);
    let mut r = pool.request(Key::None);
    assert!(r.next().is_none());
    assert!(r.next().is_none());
}

#[test]
fn retries_never_repeat_and_fall_to_backups() {
    let backends = vec![
        Backend::new("a"),
        Backend::new("b"),
        Backend::new("c"),
        Backend::new("z").backup(true),
    ];
    let (pool, _clock) = pool_with(backends);
    let mut r = pool.request(Key::None);
    let mut seen = Vec::new();
    while let Some(p) = r.next() {
        seen.push(p.id().to_string());
        p.failure();
    }
    assert_eq!(seen, ["a", "b", "c", "z"]);
}

#[test]
fn events_report_state_changes() {
    use std::sync::{Arc, Mutex};
    use upstream::Event;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let clock = ManualClock::new(0);
    let pool = Pool::builder(LeastConn)
        .clock(clock.clone())
        .observer(move |e| sink.lock().unwrap().push(e.clone()))
        .build(vec![Backend::new("a"), Backend::new("b")])
        .unwrap();
    pool.request(Key::None).take(0).unwrap().failure();
    clock.set_ms(10_001);
    pool.request(Key::None).take(0).unwrap().success();
    pool.remove("b").unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            Event::MarkedDown { id: "a".into() },
            Event::BackUp { id: "a".into() },
            Event::Swapped {
                generation: 2,
                backends: 1
            },
        ]
    );
}

#[test]
fn removing_and_adding_back_keeps_held_counts() {
    let (pool, _clock) = pool_with(vec![Backend::new("a").max_conns(1), Backend::new("b")]);
    let held = pool.pick(Key::None).unwrap();
    assert_eq!(held.id(), "a");
    pool.remove("a").unwrap();
    pool.add(Backend::new("a").max_conns(1)).unwrap();
    let snap = pool.snapshot();
    assert_eq!(
        snap.active(snap.index_of("a").unwrap()),
        1,
        "the held pick still counts"
    );
    let s: Vec<_> = (0..3).map(|_| pick_id(&pool).unwrap()).collect();
    assert_eq!(s, ["b", "b", "b"], "a is still at max_conns");
    drop(held);
    assert_eq!(snap.active(snap.index_of("a").unwrap()), 0);
    // Once nothing holds it, a removed backend comes back fresh.
    pool.remove("a").unwrap();
    pool.add(Backend::new("a")).unwrap();
    let snap = pool.snapshot();
    assert_eq!(snap.active(snap.index_of("a").unwrap()), 0);
}

//! Readers and lookups: the same choices as picks, the same health rules,
//! nothing counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use upstream::{Backend, Key, ManualClock, NginxHash, Outcome, Pool, RoundRobin};

fn ids<'a>(picks: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    picks.into_iter().collect()
}

/// Readers move to the thread or task that uses them, and clone.
#[test]
fn readers_are_send_and_clone() {
    fn send_and_clone<T: Send + Clone>() {}
    send_and_clone::<upstream::Reader<RoundRobin>>();
    send_and_clone::<upstream::Reader<upstream::policy::AnyPolicy>>();
}

#[test]
fn readers_and_the_pool_share_one_rotation() {
    let pool = Pool::new(
        RoundRobin,
        vec![
            Backend::new("a").weight(5),
            Backend::new("b"),
            Backend::new("c"),
        ],
    )
    .unwrap();
    let mut reader = pool.reader();
    let mut other = reader.clone();
    let mut seen = Vec::new();
    for i in 0..14 {
        let id = match i % 4 {
            0 => pool.pick(Key::None).unwrap().id().to_string(),
            1 => reader.pick(Key::None).unwrap().id().to_string(),
            2 => reader.lookup(Key::None).unwrap().id().to_string(),
            _ => other.lookup(Key::None).unwrap().id().to_string(),
        };
        seen.push(id);
    }
    // nginx's smooth weighted order for 5, 1, 1, twice.
    assert_eq!(
        ids(seen.iter().map(String::as_str)),
        ["a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"]
    );
}

#[test]
fn a_lookup_skips_a_backend_at_max_conns_without_taking_a_slot() {
    let pool = Pool::new(
        RoundRobin,
        vec![Backend::new("a").max_conns(1), Backend::new("b")],
    )
    .unwrap();
    let mut reader = pool.reader();
    let held = reader.pick(Key::None).unwrap();
    assert_eq!(held.id(), "a");
    // Schedule slots 1, 2, 3, ...: b, then a (full, so the next slot, b).
    assert_eq!(reader.lookup(Key::None).unwrap().id(), "b");
    assert_eq!(reader.lookup(Key::None).unwrap().id(), "b");
    assert_eq!(reader.snapshot().active(0), 1);
    assert_eq!(reader.snapshot().active(1), 0, "lookups took nothing");
    drop(held);
    // Slots 4 and 5.
    assert_eq!(reader.lookup(Key::None).unwrap().id(), "a");
    assert_eq!(reader.lookup(Key::None).unwrap().id(), "b");
}

#[test]
fn lookups_follow_passive_health_and_probe_once() {
    let clock = ManualClock::new(1_000);
    let pool = Pool::builder(NginxHash)
        .clock(clock.clone())
        .build(vec![
            Backend::new("a:1").fail_timeout(Duration::from_secs(10)),
            Backend::new("b:1"),
        ])
        .unwrap();
    let key = Key::Bytes(b"/index.html");
    let mut reader = pool.reader();
    let first = reader.lookup(key).unwrap();
    assert_eq!(first.id(), "a:1");
    first.failure();
    assert_eq!(reader.snapshot().fails(0), 1);
    assert_eq!(reader.lookup(key).unwrap().id(), "b:1", "a:1 rests");

    clock.set_ms(11_000);
    assert_eq!(
        reader.lookup(key).unwrap().id(),
        "b:1",
        "10 s to the ms: still resting"
    );
    clock.set_ms(11_001);
    // Two choices held at once: look up on the snapshot itself.
    let snap = Arc::clone(reader.snapshot());
    let probe = snap.lookup(key).unwrap();
    assert_eq!(
        probe.id(),
        "a:1",
        "the first lookup after fail_timeout probes"
    );
    assert_eq!(
        reader.lookup(key).unwrap().id(),
        "b:1",
        "one probe at a time"
    );
    probe.report(Outcome::Success, Some(Duration::from_millis(3)));
    assert_eq!(
        reader.snapshot().fails(0),
        0,
        "the probe's success restores it"
    );
    assert_eq!(reader.lookup(key).unwrap().id(), "a:1");
    assert_eq!(pool.total_active(), 0);
}

#[test]
fn a_lone_backend_never_fails_out_through_lookups() {
    let pool = Pool::new(RoundRobin, vec![Backend::new("only")]).unwrap();
    let mut reader = pool.reader();
    for _ in 0..3 {
        reader.lookup(Key::None).unwrap().failure();
    }
    assert_eq!(reader.snapshot().fails(0), 0, "nginx's single-server rule");
    assert_eq!(reader.lookup(Key::None).unwrap().id(), "only");
}

#[test]
fn snapshot_lookups_stay_on_their_snapshot() {
    let pool = Pool::new(RoundRobin, vec![Backend::new("a"), Backend::new("b")]).unwrap();
    let old = pool.snapshot();
    pool.replace(vec![Backend::new("c")]).unwrap();
    let choice = old.lookup(Key::None).unwrap();
    assert_eq!((choice.id(), choice.generation()), ("a", 1));
    let mut reader = pool.reader();
    let choice = reader.lookup(Key::None).unwrap();
    assert_eq!(
        (choice.id(), choice.index(), choice.generation()),
        ("c", 0, 2)
    );
    assert_eq!(choice.backend().weight, 1);
}

#[test]
fn readers_on_threads_across_swaps_leave_no_count_behind() {
    let pool = Arc::new(
        Pool::new(
            RoundRobin,
            vec![Backend::new("a"), Backend::new("b"), Backend::new("c")],
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let mut reader = pool.reader();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut looked_up = 0u64;
                // Relaxed: a stop flag; the join publishes the rest.
                while !stop.load(Ordering::Relaxed) {
                    let pick = reader.pick(Key::None).expect("a, b or c is always there");
                    let choice = reader.lookup(Key::None).expect("a backend");
                    assert!(["a", "b", "c", "d"].contains(&choice.id()));
                    drop(pick);
                    looked_up += 1;
                }
                looked_up
            })
        })
        .collect();
    for i in 0..300 {
        if i % 2 == 0 {
            pool.add(Backend::new("d")).unwrap();
        } else {
            pool.remove("d").unwrap();
        }
    }
    // Relaxed: see the workers.
    stop.store(true, Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total > 0);
    assert_eq!(pool.total_active(), 0);
    let snap = pool.snapshot();
    assert_eq!(snap.len(), 3);
    assert!((0..3).all(|i| snap.active(i) == 0));
}

//! A differential check: on identical pools driven through the same
//! steps, a pick through the first-attempt fast path (`Pool::pick`), a
//! lookup through a reader, and a request's first attempt through the
//! general loop (`Request::next`) choose the same backend every time, under
//! slow start, panic mode, backups, `max_conns`, failed-out backends past
//! `fail_timeout`, a single backend and `AnyPolicy` from a config.

use std::time::Duration;

use upstream::policy::{AnyPolicy, Policy};
use upstream::{
    AllDown, Backend, IpHash, Ketama, Key, LeastConn, ManualClock, NginxHash, Pool, RoundRobin,
    SlowStart, SplitMix64, UpstreamConfig,
};

/// Which API a pool in the comparison is driven through.
#[derive(Clone, Copy, Debug)]
enum Via {
    Pick,
    Lookup,
    Request,
}

struct Setup<P: Policy> {
    policy: P,
    backends: Vec<Backend>,
    slow_start: Option<SlowStart>,
    all_down: AllDown,
    /// Backends added after the first build (they ramp under slow start).
    added: Vec<Backend>,
    /// Snapshot indices each pool holds one pick on for the whole run.
    held: Vec<usize>,
    key: Key<'static>,
}

/// Runs `rounds` steps on three identically seeded pools and returns the
/// sequence of chosen indices of each (they must be equal).
fn run<P: Policy>(setup: &Setup<P>, rounds: usize) -> Vec<Vec<Option<usize>>> {
    [Via::Pick, Via::Lookup, Via::Request]
        .into_iter()
        .map(|via| {
            let clock = ManualClock::new(1_000);
            let mut builder = Pool::builder(setup.policy.clone())
                .clock(clock.clone())
                .random(SplitMix64::with_seed(11))
                .all_down(setup.all_down);
            if let Some(s) = setup.slow_start {
                builder = builder.slow_start(s);
            }
            let pool = builder.build(setup.backends.clone()).unwrap();
            clock.advance_ms(10);
            for b in &setup.added {
                pool.add(b.clone()).unwrap();
            }
            let mut held = Vec::new();
            for &i in &setup.held {
                let mut request = pool.request(setup.key);
                held.push(request.take(i).expect("a slot to hold"));
            }
            let mut reader = pool.reader();
            let mut seen = Vec::new();
            for round in 0..rounds {
                // Fail three attempts in five, so that backends fail out, rest,
                // get probed and come back.
                let fail = round % 5 < 3;
                let index = match via {
                    Via::Pick => pool.pick(setup.key).map(|p| {
                        let i = p.index();
                        if fail {
                            p.failure()
                        } else {
                            p.success()
                        }
                        i
                    }),
                    Via::Lookup => reader.lookup(setup.key).map(|c| {
                        let i = c.index();
                        if fail {
                            c.failure()
                        } else {
                            c.success()
                        }
                        i
                    }),
                    Via::Request => pool.request(setup.key).next().map(|p| {
                        let i = p.index();
                        if fail {
                            p.failure()
                        } else {
                            p.success()
                        }
                        i
                    }),
                };
                seen.push(index);
                clock.advance_ms(450);
            }
            drop(held);
            assert_eq!(pool.total_active(), 0, "{via:?}");
            seen
        })
        .collect()
}

fn assert_all_agree<P: Policy>(setup: Setup<P>) {
    let runs = run(&setup, 120);
    assert!(
        runs[0].iter().any(Option::is_some),
        "the run picks something"
    );
    assert_eq!(runs[1], runs[0], "lookup vs pick, {}", setup.policy.name());
    assert_eq!(runs[2], runs[0], "request vs pick, {}", setup.policy.name());
}

fn flaky(id: &str) -> Backend {
    Backend::new(id)
        .max_fails(1)
        .fail_timeout(Duration::from_secs(2))
}

fn base<P: Policy>(policy: P, backends: Vec<Backend>) -> Setup<P> {
    Setup {
        policy,
        backends,
        slow_start: None,
        all_down: AllDown::FailClosed,
        added: Vec::new(),
        held: Vec::new(),
        key: Key::None,
    }
}

#[test]
fn round_robin_with_backups_and_panic_mode() {
    let mut s = base(
        RoundRobin,
        vec![
            flaky("a").weight(3),
            flaky("b"),
            flaky("c"),
            flaky("x").backup(true),
            flaky("y").backup(true),
        ],
    );
    s.all_down = AllDown::panic(50);
    assert_all_agree(s);
}

#[test]
fn round_robin_with_backups_fail_closed() {
    let s = base(
        RoundRobin,
        vec![flaky("a"), flaky("b"), flaky("x").backup(true)],
    );
    assert_all_agree(s);
}

#[test]
fn round_robin_with_slow_start_admission() {
    let mut s = base(RoundRobin, vec![flaky("a"), flaky("b")]);
    s.slow_start = Some(SlowStart::new(Duration::from_secs(30)));
    s.added = vec![flaky("c").weight(4), flaky("d").weight(2)];
    assert_all_agree(s);
}

#[test]
fn least_conn_with_slow_start_and_max_conns() {
    let mut s = base(
        LeastConn,
        vec![flaky("a").max_conns(1), flaky("b").max_conns(2), flaky("c")],
    );
    s.slow_start = Some(SlowStart::new(Duration::from_secs(30)));
    s.added = vec![flaky("d")];
    s.held = vec![0, 1];
    assert_all_agree(s);
}

#[test]
fn round_robin_with_a_full_first_choice() {
    let mut s = base(
        RoundRobin,
        vec![flaky("a").weight(5).max_conns(1), flaky("b"), flaky("c")],
    );
    s.held = vec![0];
    assert_all_agree(s);
}

#[test]
fn hash_policies_with_failures() {
    let names = || (0..5).map(|i| flaky(&format!("10.0.0.{i}:80"))).collect();
    let mut s = base(NginxHash, names());
    s.key = Key::Bytes(b"/some/uri");
    assert_all_agree(s);
    let mut s = base(Ketama, names());
    s.key = Key::Bytes(b"/some/uri");
    assert_all_agree(s);
    let mut s = base(IpHash, names());
    s.key = Key::Ip("192.0.2.7".parse().unwrap());
    assert_all_agree(s);
}

#[test]
fn a_single_backend() {
    assert_all_agree(base(RoundRobin, vec![flaky("only")]));
    let mut s = base(Ketama, vec![flaky("only")]);
    s.key = Key::Bytes(b"k");
    assert_all_agree(s);
}

#[test]
fn any_policy_from_a_config() {
    let text =
        "upstream u {\n    least_conn;\n    server 10.0.0.1:80 max_fails=1 fail_timeout=2s;\n    \
                server 10.0.0.2:80 weight=3 max_fails=1 fail_timeout=2s;\n    \
                server 10.0.0.3:80 backup;\n}\n";
    let config: UpstreamConfig = upstream::config::parse_nginx(text).unwrap();
    let policy = AnyPolicy::for_method(config.method());
    let mut s = base(policy, config.backends().backends().to_vec());
    s.all_down = AllDown::panic(100);
    assert_all_agree(s);
}

#[test]
fn a_reader_moves_to_another_thread_and_clones() {
    fn send<T: Send>(t: T) -> T {
        t
    }
    let pool = Pool::new(RoundRobin, vec![Backend::new("a"), Backend::new("b")]).unwrap();
    let reader = send(pool.reader());
    let mut other = reader.clone();
    let id = std::thread::spawn(move || {
        let mut reader = reader;
        reader.pick(Key::None).map(|p| p.id().to_string())
    })
    .join()
    .unwrap();
    assert_eq!(id.as_deref(), Some("a"));
    assert_eq!(other.lookup(Key::None).unwrap().id(), "b", "one rotation");
    assert_eq!(pool.total_active(), 0);
}

//! The self-contained demonstration run by `cargo run --example proxy`.
//!
//! Everything happens on loopback: four demo backends (the fourth joins
//! later), the proxy in front with `ip_hash`, and a few hundred simulated
//! clients, each with its own keep-alive connection and its own address in
//! `X-Forwarded-For` (trusted from loopback only). Every number printed is
//! measured from the answers the clients got, the backends' own counters
//! and the proxy's counters; none is computed from what should happen.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::oneshot;
use upstream::{Backend, BackendSet, Event, Policy, Pool};

use crate::demo_backend::DemoBackend;
use crate::demo_client::Session;
use crate::key::KeySpec;
use crate::server::{self, Proxy, Settings, Stats};
use crate::trust::TrustList;

/// Simulated clients.
const CLIENTS: usize = 300;
/// Requests in one client's session.
const SESSION: usize = 10;
/// Pause between two requests of a session, so that sessions overlap the
/// moment a backend dies or the pool changes.
const PAUSE: Duration = Duration::from_millis(20);
/// The demo backends' `fail_timeout`: how long a dead backend is skipped
/// before the next request probes it again.
const FAIL_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the demo with `sticky` (`ip_hash`) in front, comparing it with
/// `consistent` keyed by `consistent_key` when a backend is added.
///
/// # Errors
///
/// A setup failure (a port that cannot be bound), or a run in which a
/// request failed or a client moved that should have stayed.
pub async fn run_with<S, C>(sticky: S, consistent: C, consistent_key: &str) -> Result<(), String>
where
    S: Policy,
    S::State: Send,
    C: Policy,
    C::State: Send,
{
    let started = Instant::now();
    let mut backends = Vec::new();
    for name in ["b1", "b2", "b3", "b4"] {
        let backend = DemoBackend::start(name, loopback())
            .await
            .map_err(|e| format!("cannot start demo backend {name}: {e}"))?;
        backends.push(backend);
    }
    let names: Arc<BTreeMap<String, String>> = Arc::new(
        backends
            .iter()
            .map(|b| (b.addr().to_string(), b.name().to_string()))
            .collect(),
    );
    let three = set_of(&backends[..3])?;
    let four = set_of(&backends)?;
    let clients: Vec<IpAddr> = (0..CLIENTS).map(client_ip).collect();

    let front = Front::start(sticky, KeySpec::ClientIp, three.clone(), &names).await?;
    let listed = |bs: &[DemoBackend]| {
        let each: Vec<String> = bs
            .iter()
            .map(|b| format!("{} {}", b.name(), b.addr()))
            .collect();
        each.join(", ")
    };
    println!(
        "upstream demo: a reverse proxy on {}, {} over {}",
        front.addr,
        front.proxy.pool().snapshot().policy().name(),
        listed(&backends[..3])
    );
    println!(
        "(max_fails=1 fail_timeout={}s; {} joins later). {CLIENTS} clients, {SESSION} requests \
         each\non one keep-alive connection, named by X-Forwarded-For (trusted from loopback \
         only).\n",
        FAIL_TIMEOUT.as_secs(),
        listed(&backends[3..])
    );

    // 1. Steady traffic: every client stays where ip_hash put it.
    let before = served(&backends);
    let steady = drive(front.addr, &clients, "1/4 steady traffic", async {}).await;
    let home: Vec<Option<String>> = steady.iter().map(|t| t.only_backend()).collect();
    println!("1. Steady traffic");
    print_served(&backends, &before, &[]);
    let stayed = home.iter().filter(|h| h.is_some()).count();
    println!("   clients that stayed on one backend: {stayed} of {CLIENTS}");
    println!("   requests failed: {}\n", failures(&steady));

    // 2. b2 dies in the middle of the traffic.
    let dead = backends[1].name().to_string();
    let before = served(&backends);
    let retries_before = Stats::get(&front.proxy.stats().retries);
    let killed = {
        let victim = &mut backends[1];
        drive(
            front.addr,
            &clients,
            "2/4 b2 stops mid-traffic",
            victim.stop(),
        )
        .await
    };
    let retried = Stats::get(&front.proxy.stats().retries) - retries_before;
    let moves = Moves::count(&home, &killed);
    let dead_clients = home.iter().filter(|h| h.as_deref() == Some(&dead)).count();
    let moved_dead = moves.moved_from(&home, &dead);
    let moved_other = moves.moved - moved_dead;
    println!("2. {dead} stops in the middle of the traffic");
    print_served(&backends, &before, &[&dead]);
    println!(
        "   clients moved: {} ({moved_dead} of {dead}'s {dead_clients} clients, \
         {moved_other} of the {} others)",
        moves.moved,
        CLIENTS - dead_clients
    );
    println!("   requests retried on another backend: {retried}");
    println!("   requests failed: {}", failures(&killed));

    // b2 comes back on the same address: its clients return to it.
    backends[1]
        .restart()
        .await
        .map_err(|e| format!("cannot restart {dead}: {e}"))?;
    let probe_from = home.iter().position(|h| h.as_deref() == Some(&dead));
    let back_after = wait_until_back(front.addr, probe_from.map(|i| clients[i]), &dead).await;
    let returned = drive_once(front.addr, &clients).await;
    let home_again = home
        .iter()
        .zip(&returned)
        .filter(|(h, r)| h.is_some() && h == r)
        .count();
    println!(
        "   {dead} restarted: serving again after {:.1} s; clients back on their first \
         backend: {home_again} of {CLIENTS}\n",
        back_after.as_secs_f64()
    );

    // 3. b4 joins: the pool is swapped live, under traffic, for both hashes.
    let second = Front::start(
        consistent,
        KeySpec::parse(consistent_key)?,
        three.clone(),
        &names,
    )
    .await?;
    let new = backends[3].name();
    let compared = [
        swap_under_traffic(&front, &clients, &four, "3/4 b4 joins (ip_hash)", new).await,
        swap_under_traffic(&second, &clients, &four, "4/4 b4 joins (consistent)", new).await,
    ];
    println!(
        "3. {} joins: the pool is swapped live, in the middle of the traffic",
        backends[3].name()
    );
    let hash_label = format!("hash {consistent_key} consistent");
    println!("   {:<30} {:>12}   {hash_label}", "", "ip_hash");
    let row = |label: &str, f: &dyn Fn(&Swap) -> String| {
        println!(
            "   {label:<30} {:>12}   {}",
            f(&compared[0]),
            f(&compared[1])
        );
    };
    row("clients moved", &|s| {
        format!("{} ({}%)", s.moved, s.moved * 100 / CLIENTS)
    });
    row("  to the new backend", &|s| s.to_new.to_string());
    row("  between the old backends", &|s| s.between_old.to_string());
    row("requests failed", &|s| s.failed.to_string());
    row("connections dropped", &|s| s.dropped.to_string());
    println!();

    // Verdict.
    let sessions = [&steady, &killed];
    let kept = sessions
        .iter()
        .flat_map(|p| p.iter())
        .filter(|t| t.only_backend().is_some())
        .count()
        + compared.iter().map(|s| CLIENTS - s.moved).sum::<usize>();
    let moved = moves.moved + compared.iter().map(|s| s.moved).sum::<usize>();
    let failed = failures(&steady)
        + failures(&killed)
        + compared.iter().map(|s| s.failed).sum::<usize>()
        + returned.iter().filter(|r| r.is_none()).count();
    println!(
        "Verdict: {} sessions, {kept} kept their backend, {moved} moved ({} because their \
         backend died, {} because the pool changed), {failed} requests failed. ({:.1} s)",
        kept + moved,
        moves.moved,
        moved - moves.moved,
        started.elapsed().as_secs_f64()
    );

    if failed > 0 || moved_other > 0 {
        return Err(format!(
            "the demo saw {failed} failed requests and {moved_other} clients moved off a live backend"
        ));
    }
    Ok(())
}

/// Where each client lands, then a session for every client with the pool
/// swapped to `set` halfway through; what the swap did.
async fn swap_under_traffic<P>(
    front: &Front<P>,
    clients: &[IpAddr],
    set: &BackendSet,
    label: &str,
    new: &str,
) -> Swap
where
    P: Policy,
    P::State: Send,
{
    let start = drive_once(front.addr, clients).await;
    let swap = async {
        if let Err(e) = front.proxy.pool().replace(set.clone()) {
            tracing::error!("swap refused: {e}");
        }
    };
    let traces = drive(front.addr, clients, label, swap).await;
    Swap::measure(&start, &traces, new)
}

/// A proxy serving on loopback until dropped.
struct Front<P: Policy> {
    proxy: Arc<Proxy<P>>,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl<P: Policy> Front<P>
where
    P::State: Send,
{
    async fn start(
        policy: P,
        key: KeySpec,
        set: BackendSet,
        names: &Arc<BTreeMap<String, String>>,
    ) -> Result<Front<P>, String> {
        let names = Arc::clone(names);
        let pool = Pool::builder(policy)
            .observer(move |event| log_event(&names, event))
            .build(set)
            .map_err(|e| e.to_string())?;
        let settings = Settings {
            trust: TrustList::parse(&["127.0.0.0/8", "::1/128"])?,
            ..Settings::default()
        };
        let proxy = Arc::new(Proxy::new(pool, key, settings));
        let listener =
            server::listen(loopback()).map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(server::serve(
            listener,
            Arc::clone(&proxy),
            shutdown,
            Duration::ZERO,
        ));
        Ok(Front {
            proxy,
            addr,
            _stop: stop,
        })
    }
}

/// The demo's log lines name backends as the tables do.
fn log_event(names: &BTreeMap<String, String>, event: &Event) {
    let name = |id: &str| names.get(id).map_or_else(|| id.to_string(), Clone::clone);
    match event {
        Event::MarkedDown { id } => tracing::warn!("backend {} ({id}) marked down", name(id)),
        Event::BackUp { id } => tracing::info!("backend {} ({id}) back up", name(id)),
        Event::Swapped {
            generation,
            backends,
        } => tracing::info!("pool swapped: generation {generation}, {backends} backends"),
        other => tracing::info!("{other:?}"),
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Client `i`'s address. `ip_hash` keys on the first three octets, so each
/// client gets its own /24, scattered by an odd multiplier (a bijection on
/// 16 bits, so no two clients share one).
fn client_ip(i: usize) -> IpAddr {
    let scattered = (i as u32).wrapping_mul(40_503).wrapping_add(12_345) & 0xffff;
    let [_, _, hi, lo] = scattered.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, hi, lo, 1 + (i % 250) as u8))
}

fn set_of(backends: &[DemoBackend]) -> Result<BackendSet, String> {
    let set = backends
        .iter()
        .map(|b| Backend::new(b.addr().to_string()).fail_timeout(FAIL_TIMEOUT))
        .collect();
    BackendSet::new(set).map_err(|e| e.to_string())
}

fn served(backends: &[DemoBackend]) -> Vec<u64> {
    backends.iter().map(DemoBackend::served).collect()
}

fn print_served(backends: &[DemoBackend], before: &[u64], stopped: &[&str]) {
    println!("   backend  requests served");
    for (b, was) in backends.iter().zip(before) {
        let count = b.served() - was;
        if count == 0 && b.name() == "b4" {
            continue;
        }
        let note = if stopped.contains(&b.name()) {
            "  (stopped)"
        } else {
            ""
        };
        println!("   {:<8} {count:>8}{note}", b.name());
    }
}

/// What one client saw during one session.
#[derive(Debug, Default)]
struct Trace {
    /// The backend that answered each request; `None` for a failure.
    answers: Vec<Option<String>>,
    /// Times the connection to the proxy broke.
    dropped: usize,
}

impl Trace {
    /// The one backend that answered every request, if there was one.
    fn only_backend(&self) -> Option<String> {
        let first = self.answers.first()?.clone()?;
        self.answers
            .iter()
            .all(|a| a.as_deref() == Some(&first))
            .then_some(first)
    }

    fn failed(&self) -> usize {
        self.answers.iter().filter(|a| a.is_none()).count()
    }
}

fn failures(traces: &[Trace]) -> usize {
    traces.iter().map(Trace::failed).sum()
}

/// Clients whose session went to another backend than their home.
struct Moves {
    moved: usize,
    who: Vec<bool>,
}

impl Moves {
    fn count(home: &[Option<String>], traces: &[Trace]) -> Moves {
        let who: Vec<bool> = home
            .iter()
            .zip(traces)
            .map(|(h, t)| t.answers.iter().flatten().any(|a| Some(a) != h.as_ref()))
            .collect();
        Moves {
            moved: who.iter().filter(|m| **m).count(),
            who,
        }
    }

    fn moved_from(&self, home: &[Option<String>], backend: &str) -> usize {
        self.who
            .iter()
            .zip(home)
            .filter(|(m, h)| **m && h.as_deref() == Some(backend))
            .count()
    }
}

/// What a live swap did to the clients of one proxy.
struct Swap {
    moved: usize,
    to_new: usize,
    between_old: usize,
    failed: usize,
    dropped: usize,
}

impl Swap {
    /// Compares where each client was just before the swap with where its
    /// session ended.
    fn measure(start: &[Option<String>], traces: &[Trace], new: &str) -> Swap {
        let mut swap = Swap {
            moved: 0,
            to_new: 0,
            between_old: 0,
            failed: failures(traces) + start.iter().filter(|s| s.is_none()).count(),
            dropped: traces.iter().map(|t| t.dropped).sum(),
        };
        for (was, trace) in start.iter().zip(traces) {
            let last = trace.answers.iter().rev().flatten().next();
            if last.is_none() || last == was.as_ref() {
                continue;
            }
            swap.moved += 1;
            if last.map(String::as_str) == Some(new) {
                swap.to_new += 1;
            } else {
                swap.between_old += 1;
            }
        }
        swap
    }
}

/// Every client runs one session at once; `midpoint` runs when half the
/// requests are done, while the other half is still to come.
async fn drive(
    proxy: SocketAddr,
    clients: &[IpAddr],
    label: &str,
    midpoint: impl Future<Output = ()>,
) -> Vec<Trace> {
    let total = (clients.len() * SESSION) as u64;
    let bar = ProgressBar::new(total).with_message(label.to_string());
    if let Ok(style) = ProgressStyle::with_template("{msg:28} [{bar:40}] {pos}/{len}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let tasks: Vec<_> = clients
        .iter()
        .map(|&ip| tokio::spawn(session(proxy, ip, bar.clone())))
        .collect();
    while bar.position() < total / 2 && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    midpoint.await;
    let mut traces = Vec::with_capacity(tasks.len());
    for task in tasks {
        traces.push(task.await.unwrap_or_default());
    }
    bar.finish_and_clear();
    traces
}

/// One client's session: `SESSION` requests on one keep-alive connection,
/// reconnecting if the proxy ever drops it (which is counted).
async fn session(proxy: SocketAddr, ip: IpAddr, bar: ProgressBar) -> Trace {
    let mut trace = Trace::default();
    let mut conn = Session::connect(proxy, ip).await.ok();
    for i in 0..SESSION {
        if i > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        let answer = match conn.as_mut() {
            Some(s) => s.get("/").await,
            None => Err("not connected".into()),
        };
        match answer {
            Ok((status, name)) if status.is_success() => trace.answers.push(Some(name)),
            Ok(_) => trace.answers.push(None),
            Err(_) => {
                trace.answers.push(None);
                trace.dropped += 1;
                conn = Session::connect(proxy, ip).await.ok();
            }
        }
        bar.inc(1);
    }
    trace
}

/// One request per client, all at once: where each client lands now.
async fn drive_once(proxy: SocketAddr, clients: &[IpAddr]) -> Vec<Option<String>> {
    let tasks: Vec<_> = clients
        .iter()
        .map(|&ip| {
            tokio::spawn(async move {
                let mut s = Session::connect(proxy, ip).await.ok()?;
                match s.get("/").await {
                    Ok((status, name)) if status.is_success() => Some(name),
                    _ => None,
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.ok().flatten());
    }
    out
}

/// Sends one of `backend`'s clients every 50 ms until `backend` answers it
/// (at most 5 s), and says how long that took.
async fn wait_until_back(proxy: SocketAddr, client: Option<IpAddr>, backend: &str) -> Duration {
    let start = Instant::now();
    let Some(ip) = client else {
        return Duration::ZERO;
    };
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(mut s) = Session::connect(proxy, ip).await {
            if matches!(s.get("/").await, Ok((_, name)) if name == backend) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

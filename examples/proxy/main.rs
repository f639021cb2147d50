//! A reverse proxy built on `upstream`, and a demonstration of it.
//!
//! With no arguments it runs a self-contained demo on loopback: three
//! backends, a proxy with `ip_hash` in front, a few hundred simulated
//! clients, a backend that dies mid-traffic and one added live.
//!
//! ```text
//! cargo run --release --example proxy
//! cargo run --release --example proxy -- --listen 0.0.0.0:8080 --upstream app.toml \
//!     --trust-proxy 10.0.0.0/8
//! ```
//!
//! The serving code is in `server.rs`, generic over the balancing policy;
//! `reload.rs` swaps the pool when the file changes or on SIGHUP.

mod conf;
mod demo;
mod demo_backend;
mod demo_client;
mod key;
mod reload;
mod server;
mod trust;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use upstream::{Event, IpHash, Ketama, Pool};

use crate::server::{Proxy, Settings};
use crate::trust::TrustList;

/// An HTTP/1.1 reverse proxy balancing with the `upstream` crate.
///
/// Without --listen and --upstream it runs the self-contained demo.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on, such as 0.0.0.0:8080.
    #[arg(long, requires = "upstream")]
    listen: Option<SocketAddr>,
    /// The upstream file; reloaded when it changes or on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "listen")]
    upstream: Option<PathBuf>,
    /// Believe X-Forwarded-For from peers in this network (repeatable).
    #[arg(long = "trust-proxy", value_name = "CIDR")]
    trust_proxy: Vec<String>,
    /// Longest wait for a backend to accept a connection (nginx syntax).
    #[arg(long, value_name = "TIME", default_value = "2s", value_parser = nginx_time)]
    connect_timeout: Duration,
    /// Longest wait for a backend's response headers (nginx syntax).
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = nginx_time)]
    read_timeout: Duration,
}

fn nginx_time(text: &str) -> Result<Duration, String> {
    upstream::time::parse_nginx_time(text)
        .ok_or_else(|| format!("'{text}' is not a time such as 500ms, 2s or 1m30s"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let demo = args.listen.is_none();
    let logs = tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if demo {
        // The demo's output is read as a whole: log lines without clocks.
        logs.without_time().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match (&args.listen, &args.upstream) {
            (Some(listen), Some(path)) => run(*listen, path.clone(), &args).await,
            _ => demo::run_with(IpHash, Ketama, "$remote_addr").await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(listen: SocketAddr, path: PathBuf, args: &Args) -> Result<(), String> {
    let settings = Settings {
        trust: TrustList::parse(&args.trust_proxy)?,
        connect_timeout: args.connect_timeout,
        response_timeout: args.read_timeout,
    };
    let upstream = conf::load(&path)?;
    let policy = conf::policy_for(&upstream.method);
    let key = conf::key_spec(&upstream.method).map_err(|e| format!("{}: {e}", path.display()))?;
    let backends = upstream.backends.len();
    let pool = Pool::builder(policy)
        .observer(log_event)
        .build(upstream.backends)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let proxy = Arc::new(Proxy::new(pool, key, settings));
    let listener = server::listen(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(
        "listening on {listen}: upstream '{}', {} over {backends} backends, from {}",
        upstream.name,
        conf::method_text(&upstream.method),
        path.display()
    );
    let watcher = tokio::spawn(reload::watch(
        Arc::clone(&proxy),
        path,
        Duration::from_secs(1),
    ));
    server::serve(listener, proxy, stop_signal(), Duration::from_secs(10)).await;
    watcher.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// One log line per change of state, never per request.
fn log_event(event: &Event) {
    match event {
        Event::MarkedDown { id } => tracing::warn!("backend {id} marked down"),
        Event::BackUp { id } => tracing::info!("backend {id} back up"),
        Event::Swapped {
            generation,
            backends,
        } => tracing::info!(
            "pool reloaded: generation {generation}, {backends} backend{}",
            if *backends == 1 { "" } else { "s" }
        ),
        other => tracing::info!("{other:?}"),
    }
}

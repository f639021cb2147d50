//! A tiny HTTP backend for the demo and the tests: it answers with its own
//! name, counts what it served, and can be stopped like a crash (listener
//! and every open connection closed at once) and started again.
//!
//! Routes: `/status/CODE` answers that status; `?delay_ms=N` waits first;
//! an `Upgrade` request gets a `101` and then a line-echo tunnel that
//! starts with the backend's name and prefixes every echoed line with it.
//! Anything else gets `200` and the name.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// One running demo backend.
pub struct DemoBackend {
    name: Arc<str>,
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl DemoBackend {
    /// Starts a backend called `name` on `addr` (port 0 picks a free one).
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn start(name: &str, addr: SocketAddr) -> io::Result<DemoBackend> {
        let listener = crate::server::listen(addr)?;
        let addr = listener.local_addr()?;
        let name: Arc<str> = name.into();
        let served = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept(
            listener,
            Arc::clone(&name),
            Arc::clone(&served),
            stopped,
        ));
        Ok(DemoBackend {
            name,
            addr,
            served,
            stop,
            task: Some(task),
        })
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far (upgrades included).
    pub fn served(&self) -> u64 {
        // Relaxed: a statistic read after the traffic it counts.
        self.served.load(Ordering::Relaxed)
    }

    /// Stops like a crash: the listener and every connection close now.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Starts again on the same address after [`stop`](Self::stop),
    /// keeping the count.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop().await;
        let listener = crate::server::listen(self.addr)?;
        let (stop, stopped) = watch::channel(false);
        self.stop = stop;
        self.task = Some(tokio::spawn(accept(
            listener,
            Arc::clone(&self.name),
            Arc::clone(&self.served),
            stopped,
        )));
        Ok(())
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept(
    listener: TcpListener,
    name: Arc<str>,
    served: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) {
    // Dropping the set when the loop ends aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (name, served) = (Arc::clone(&name), Arc::clone(&served));
                let tunnels_stop = stopped.clone();
                let service = service_fn(move |req| {
                    answer(req, Arc::clone(&name), Arc::clone(&served), tunnels_stop.clone())
                });
                conns.spawn(async move {
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let _ = conn.await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn answer(
    mut req: Request<Incoming>,
    name: Arc<str>,
    served: Arc<AtomicU64>,
    stopped: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Relaxed: a statistic.
    served.fetch_add(1, Ordering::Relaxed);
    if let Some(ms) = query_number(&req, "delay_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if req.headers().contains_key(UPGRADE) {
        let upgraded = hyper::upgrade::on(&mut req);
        tokio::spawn(echo(upgraded, Arc::clone(&name), stopped));
        let mut resp = Response::new(Full::default());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        headers.insert(UPGRADE, req.headers()[UPGRADE].clone());
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        return Ok(resp);
    }
    let code = req
        .uri()
        .path()
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Full::new(Bytes::from(name.to_string())));
    *resp.status_mut() = code;
    Ok(resp)
}

/// The tunnel after a `101`: the name, then every line echoed back with the
/// name in front, until the peer closes or the backend stops.
async fn echo(
    upgraded: hyper::upgrade::OnUpgrade,
    name: Arc<str>,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(io) = upgraded.await else { return };
    let (read, mut write) = tokio::io::split(TokioIo::new(io));
    let mut lines = BufReader::new(read).lines();
    let session = async {
        write.write_all(format!("{name}\n").as_bytes()).await?;
        while let Some(line) = lines.next_line().await? {
            write
                .write_all(format!("{name}: {line}\n").as_bytes())
                .await?;
        }
        io::Result::Ok(())
    };
    tokio::select! {
        _ = session => {}
        _ = stopped.changed() => {}
    }
}

fn query_number<B>(req: &Request<B>, name: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

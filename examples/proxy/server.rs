//! The proxy core: HTTP/1.1 in, HTTP/1.1 out, one pool picking the backend.
//!
//! Everything here is generic over the [`Policy`], so the same serving code
//! runs `ip_hash`, `hash ... consistent`, round robin or a policy of your
//! own. Per request the proxy works out the client (the socket peer, or
//! `X-Forwarded-For` from a trusted peer), turns it into a key, and walks
//! [`Pool::request`]: each attempt that cannot connect, times out or gets a
//! 502/504 is reported as a failure and, for idempotent methods, retried on
//! the next candidate. Everything else is reported as a success.
//!
//! `Upgrade` requests (WebSocket) go through the same pick; on a `101` both
//! sides are upgraded and spliced together, so the session stays on the
//! backend it was picked for until one side closes, whatever reloads happen
//! meanwhile.
//!
//! # Limitations
//!
//! - HTTP/1.1 on both sides, plain TCP: no HTTP/2, no TLS, and backends
//!   must be `host:port` (a `unix:` socket is reported as a failed attempt).
//! - A request body is kept for a retry only when it is at most
//!   [`MAX_REPLAY_BODY`] bytes with a known length; a larger or chunked body
//!   is streamed to the first backend and never retried.
//! - Non-idempotent requests get one attempt, even when it failed before a
//!   byte was sent (nginx would try the next server after a failed
//!   connect).
//! - On reload the pool is swapped first and the key expression right
//!   after, so a request arriving in between is keyed the old way.
//! - Health is passive only: a dead backend is found by the requests that
//!   fail on it.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::http::request::Parts;
use hyper::http::uri::{Scheme, Uri};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use upstream::{BackendSet, BuildError, Key, Pick, Policy, Pool};

use crate::key::KeySpec;
use crate::trust::{TrustList, FORWARDED_FOR};

/// The body type the proxy sends both ways.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Request bodies up to this size are kept so that an idempotent request
/// can be sent again; a larger or chunked body is streamed, once.
pub const MAX_REPLAY_BODY: u64 = 1 << 20;

/// What the proxy counts. Read by the demo and the tests; never logged.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests received from clients.
    pub requests: AtomicU64,
    /// Attempts beyond the first one of a request.
    pub retries: AtomicU64,
    /// Requests answered with an error status because no backend could
    /// serve them (502 or 504).
    pub failed: AtomicU64,
    /// Upgraded connections spliced to a backend.
    pub upgrades: AtomicU64,
}

impl Stats {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        // Relaxed: a statistic, read after the traffic it counts.
        counter.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64) {
        // Relaxed: a statistic; no other memory depends on it.
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How the proxy treats clients and backends.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Peers whose `X-Forwarded-For` is believed.
    pub trust: TrustList,
    /// Longest wait for a backend to accept a connection.
    pub connect_timeout: Duration,
    /// Longest wait for a backend's response headers.
    pub response_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trust: TrustList::default(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(30),
        }
    }
}

/// A reverse proxy in front of one pool.
pub struct Proxy<P: Policy> {
    pool: Pool<P>,
    key: ArcSwap<KeySpec>,
    trust: TrustList,
    client: Client<HttpConnector, Body>,
    response_timeout: Duration,
    stats: Stats,
}

impl<P: Policy> Proxy<P>
where
    P::State: Send,
{
    /// A proxy picking from `pool`, keying requests by `key`.
    ///
    /// Call from inside a Tokio runtime: the backend client spawns its
    /// connection tasks there.
    pub fn new(pool: Pool<P>, key: KeySpec, settings: Settings) -> Proxy<P> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Proxy {
            pool,
            key: ArcSwap::from_pointee(key),
            trust: settings.trust,
            client,
            response_timeout: settings.response_timeout,
            stats: Stats::default(),
        }
    }

    /// The pool the proxy picks from.
    pub fn pool(&self) -> &Pool<P> {
        &self.pool
    }

    /// The proxy's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Swaps in a new policy, key and backend set. Requests in flight finish
    /// on the snapshot they started on; new requests see the new one.
    ///
    /// # Errors
    ///
    /// The pool's [`BuildError`]; nothing changes then.
    pub fn reconfigure(&self, policy: P, key: KeySpec, set: BackendSet) -> Result<(), BuildError> {
        self.pool.reconfigure(policy, set)?;
        self.key.store(Arc::new(key));
        Ok(())
    }

    /// Serves one request from `peer`.
    ///
    /// # Errors
    ///
    /// Never: every failure becomes a response (502, 504, 400).
    pub async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        Stats::bump(&self.stats.requests);
        let client = self.trust.client_ip(peer.ip(), req.headers());
        let key = self.key.load().eval(&req, client);
        let upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        Ok(self.forward(req, peer.ip(), key.as_key(), upgrade).await)
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
        key: Key<'_>,
        upgrade: Option<OnUpgrade>,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let retryable = is_idempotent(&parts.method);
        let Ok(mut body) = Replay::new(body, retryable).await else {
            return status(StatusCode::BAD_REQUEST);
        };
        prepare_request(&mut parts, peer, upgrade.is_some());

        let mut attempts = self.pool.request(key);
        let mut last = StatusCode::BAD_GATEWAY;
        let mut last_response = None;
        let mut tried = 0u32;
        while let Some(pick) = attempts.next() {
            // A streamed body went out with the first attempt: no retry.
            let Some(out_body) = body.take() else {
                break;
            };
            if tried > 0 {
                Stats::bump(&self.stats.retries);
            }
            tried += 1;
            let Some(out) = outgoing(&parts, pick.id(), out_body) else {
                pick.failure();
                continue;
            };
            match self.send(out).await {
                Ok(resp) if is_gateway_failure(resp.status()) => {
                    pick.failure();
                    last_response = Some(resp);
                }
                Ok(resp) => return self.answer(resp, pick, upgrade),
                Err(code) => {
                    pick.failure();
                    last = code;
                    last_response = None;
                }
            }
            if !retryable {
                break;
            }
        }

        // Nothing could serve it: pass the last 502/504 on, or make one.
        Stats::bump(&self.stats.failed);
        match last_response {
            Some(resp) => finish_response(resp).map(|b| b.boxed()),
            None => status(last),
        }
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, StatusCode> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(StatusCode::BAD_GATEWAY),
            Err(_elapsed) => Err(StatusCode::GATEWAY_TIMEOUT),
        }
    }

    /// Passes a backend's answer on; a `101` to an upgrade request splices
    /// the two connections, holding the pick for the tunnel's lifetime.
    fn answer(
        &self,
        mut resp: Response<Incoming>,
        pick: Pick,
        upgrade: Option<OnUpgrade>,
    ) -> Response<Body> {
        if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_side)) = (resp.status(), upgrade) {
            Stats::bump(&self.stats.upgrades);
            let backend_side = hyper::upgrade::on(&mut resp);
            tokio::spawn(splice(client_side, backend_side, pick));
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, empty());
        }
        finish_response(resp).map(|body| Tracked::new(body, pick).boxed())
    }
}

/// Connections that may wait to be accepted. Tokio's `TcpListener::bind`
/// asks for 128, which a burst of a few hundred clients overflows: the
/// kernel drops their SYNs and they retry a second later.
pub const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-deep accept queue.
///
/// # Errors
///
/// The socket, bind or listen error.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts connections until `shutdown` resolves, then stops accepting and
/// gives open connections `grace` to finish their current request.
pub async fn serve<P>(
    listener: TcpListener,
    proxy: Arc<Proxy<P>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    P: Policy,
    P::State: Send,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(connection(stream, peer, Arc::clone(&proxy), stop_rx.clone()));
                }
                Err(e) => {
                    // Out of descriptors, usually: let some connections end.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(grace, drained).await;
}

async fn connection<P>(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy<P>>,
    mut stop: watch::Receiver<bool>,
) where
    P: Policy,
    P::State: Send,
{
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| Arc::clone(&proxy).handle(peer, req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

async fn splice(client: OnUpgrade, backend: OnUpgrade, pick: Pick) {
    let (Ok(client), Ok(backend)) = tokio::join!(client, backend) else {
        return;
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    pick.success();
}

/// The methods nginx retries on another backend once the request was sent.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn is_gateway_failure(status: StatusCode) -> bool {
    status == StatusCode::BAD_GATEWAY || status == StatusCode::GATEWAY_TIMEOUT
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(UPGRADE)
        && has_token(req.headers(), "upgrade")
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Drops hop-by-hop headers, keeping `Connection: upgrade` and `Upgrade`
/// when the connection is being upgraded.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    let listed: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !(t.is_empty() || (upgrading && t == "upgrade")))
        .collect();
    for name in listed.iter().map(String::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove(CONNECTION);
    if upgrading {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// Readies the client's request for a backend: HTTP/1.1, no hop-by-hop
/// headers, the peer appended to `X-Forwarded-For` (nginx's
/// `$proxy_add_x_forwarded_for`).
fn prepare_request(parts: &mut Parts, peer: IpAddr, upgrading: bool) {
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgrading);
    let peer = peer.to_canonical().to_string();
    let chain: Vec<&str> = parts
        .headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = if chain.is_empty() {
        peer
    } else {
        format!("{}, {peer}", chain.join(", "))
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        parts.headers.insert(FORWARDED_FOR, value);
    }
}

/// The request for one attempt on backend `id` (its address as written).
fn outgoing(parts: &Parts, id: &str, body: Body) -> Option<Request<Body>> {
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(id)
        .path_and_query(path)
        .build()
        .ok()?;
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = parts.headers.clone();
    Some(req)
}

fn finish_response(mut resp: Response<Incoming>) -> Response<Incoming> {
    strip_hop_by_hop(resp.headers_mut(), false);
    resp
}

fn status(code: StatusCode) -> Response<Body> {
    let text = format!("{code}\n");
    let mut resp = Response::new(full(Bytes::from(text)));
    *resp.status_mut() = code;
    resp
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request body, kept for replay when it may be sent more than once.
enum Replay {
    Kept(Bytes),
    Once(Option<Incoming>),
}

impl Replay {
    async fn new(body: Incoming, retryable: bool) -> Result<Replay, hyper::Error> {
        let fits = body
            .size_hint()
            .upper()
            .is_some_and(|n| n <= MAX_REPLAY_BODY);
        if retryable && fits {
            return Ok(Replay::Kept(body.collect().await?.to_bytes()));
        }
        Ok(Replay::Once(Some(body)))
    }

    fn take(&mut self) -> Option<Body> {
        match self {
            Replay::Kept(bytes) if bytes.is_empty() => Some(empty()),
            Replay::Kept(bytes) => Some(full(bytes.clone())),
            Replay::Once(body) => body.take().map(|b| b.boxed()),
        }
    }
}

/// A backend's response body that holds its pick until it is done: the
/// backend counts one active connection meanwhile, an error while reading
/// counts against it, and the end (or the client leaving) is a success.
struct Tracked {
    inner: Incoming,
    pick: Option<Pick>,
}

impl Tracked {
    fn new(inner: Incoming, pick: Pick) -> Tracked {
        Tracked {
            inner,
            pick: Some(pick),
        }
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            if let Some(pick) = self.pick.take() {
                pick.failure();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(pick) = self.pick.take() {
            pick.success();
        }
    }
}

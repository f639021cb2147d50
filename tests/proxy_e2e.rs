//! End to end: real backends on loopback, the example proxy in front, and
//! clients talking HTTP/1.1 to it. The expected backend of every request is
//! the pool's own pick for the client's address, so each assertion is exact.

#[allow(dead_code)]
#[path = "../examples/proxy/affinity.rs"]
mod affinity;
#[allow(dead_code)]
#[path = "../examples/proxy/conf.rs"]
mod conf;
#[allow(dead_code)]
#[path = "../examples/proxy/demo_backend.rs"]
mod demo_backend;
#[allow(dead_code)]
#[path = "../examples/proxy/demo_client.rs"]
mod demo_client;
#[allow(dead_code)]
#[path = "../examples/proxy/key.rs"]
mod key;
#[allow(dead_code)]
#[path = "../examples/proxy/reload.rs"]
mod reload;
#[allow(dead_code)]
#[path = "../examples/proxy/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../examples/proxy/trust.rs"]
mod trust;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderMap, COOKIE, HOST, SET_COOKIE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use upstream::policy::AnyPolicy;
use upstream::{Backend, BackendSet, BuildError, IpHash, Ketama, Key, Policy, Pool, RoundRobin};

use conf::PolicyName;
use demo_backend::DemoBackend;
use demo_client::Session;
use key::{KeyBuf, KeySpec, Part};
use server::{Proxy, Rules, Settings, Stats};
use trust::TrustList;

/// Every test finishes well within this, or fails.
const DEADLINE: Duration = Duration::from_secs(20);

struct Fixture<P: Policy> {
    backends: Vec<DemoBackend>,
    proxy: Arc<Proxy<P>>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl<P: Policy> Fixture<P>
where
    P::State: Send,
{
    async fn start(policy: P, names: &[&str], key: KeySpec, trust: &[&str]) -> Fixture<P> {
        let backends = start_backends(names).await;
        let set: Vec<Backend> = backends
            .iter()
            .map(|b| Backend::new(b.addr().to_string()))
            .collect();
        let pool = Pool::new(policy, set).unwrap();
        Fixture::launch(backends, pool, key.into(), trust)
    }

    fn launch(backends: Vec<DemoBackend>, pool: Pool<P>, rules: Rules, trust: &[&str]) -> Self {
        let settings = Settings {
            trust: TrustList::parse(trust).unwrap(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(5),
        };
        let proxy = Arc::new(Proxy::new(pool, rules, settings));
        let listener = server::listen(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(server::serve(
            listener,
            Arc::clone(&proxy),
            shutdown,
            Duration::from_secs(1),
        ));
        Fixture {
            backends,
            proxy,
            addr,
            stop: Some(stop),
        }
    }

    /// The name of the backend the pool picks for `ip` right now.
    fn oracle(&self, ip: IpAddr) -> String {
        let pick = self
            .proxy
            .pool()
            .pick(Key::Ip(ip))
            .expect("a backend is available");
        self.name_of(pick.id())
    }

    fn name_of(&self, id: &str) -> String {
        let backend = self.backends.iter().find(|b| b.addr().to_string() == id);
        backend.map_or_else(|| format!("unknown {id}"), |b| b.name().to_string())
    }

    fn backend(&self, name: &str) -> &DemoBackend {
        self.backends.iter().find(|b| b.name() == name).unwrap()
    }

    fn set_of(&self, names: &[&str]) -> BackendSet {
        let set = names
            .iter()
            .map(|n| Backend::new(self.backend(n).addr().to_string()));
        BackendSet::new(set.collect()).unwrap()
    }

    fn stat(&self, counter: impl Fn(&Stats) -> &std::sync::atomic::AtomicU64) -> u64 {
        Stats::get(counter(self.proxy.stats()))
    }
}

impl Fixture<AnyPolicy> {
    /// Backends `names`, and a proxy loaded from an upstream file listing
    /// them: `directives` first, then one `server` line per backend with
    /// its `params`; `chosen` as `--policy` gives it.
    async fn from_file(
        names: &[&str],
        directives: &str,
        params: &[&str],
        chosen: Option<PolicyName>,
    ) -> (Fixture<AnyPolicy>, ScratchFile) {
        let backends = start_backends(names).await;
        let mut text = format!("upstream app {{\n    {directives}\n");
        for (i, b) in backends.iter().enumerate() {
            let params = params.get(i).copied().unwrap_or("");
            text.push_str(&format!("    server {} {params};\n", b.addr()));
        }
        text.push_str("}\n");
        let file = ScratchFile::new(&format!("{}.conf", names.join("-")));
        file.write(&text);
        let upstream = conf::load(&file.0).unwrap();
        let (policy, rules) = reload::plan(&upstream, &file.0, chosen, None).unwrap();
        let pool = Pool::new(policy, upstream.backends).unwrap();
        (Fixture::launch(backends, pool, rules, &[]), file)
    }
}

async fn start_backends(names: &[&str]) -> Vec<DemoBackend> {
    let mut backends = Vec::new();
    for name in names {
        backends.push(DemoBackend::start(name, loopback()).await.unwrap());
    }
    backends
}

impl<P: Policy> Drop for Fixture<P> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Client `i`'s address: a distinct /24 each, as `ip_hash` keys on those.
fn client(i: usize) -> IpAddr {
    let [_, _, hi, lo] = u32::try_from(i).unwrap().to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, hi, lo, 7))
}

async fn within<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(DEADLINE, test)
        .await
        .expect("test took too long")
}

/// `n` clients, one request each; the backend name each was answered by.
async fn one_round(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let mut session = Session::connect(addr, client(i)).await.unwrap();
        let (status, body) = session.get("/").await.unwrap();
        assert_eq!(status, StatusCode::OK, "client {i}");
        names.push(body);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_stays_on_the_backend_the_pool_picks() {
    within(async {
        let fx = Fixture::start(
            IpHash,
            &["b1", "b2", "b3"],
            KeySpec::ClientIp,
            &["127.0.0.0/8"],
        )
        .await;
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..30 {
            let expected = fx.oracle(client(i));
            let mut session = Session::connect(fx.addr, client(i)).await.unwrap();
            for _ in 0..5 {
                assert_eq!(
                    session.get("/").await.unwrap(),
                    (StatusCode::OK, expected.clone())
                );
            }
            seen.insert(expected);
        }
        assert_eq!(seen.len(), 3, "the clients spread over every backend");
        assert_eq!(fx.stat(|s| &s.requests), 150);
        assert_eq!(fx.stat(|s| &s.retries), 0);
        assert_eq!(fx.stat(|s| &s.failed), 0);
        let served: u64 = fx.backends.iter().map(DemoBackend::served).sum();
        assert_eq!(served, 150);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_key_is_built_from_the_request() {
    within(async {
        let key = KeySpec::parse("$request_uri").unwrap();
        let fx = Fixture::start(Ketama, &["b1", "b2", "b3"], key, &[]).await;
        let mut session = Session::connect(fx.addr, client(0)).await.unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..40 {
            let uri = format!("/item/{i}?v=1");
            let pick = fx.proxy.pool().pick(Key::from(uri.as_str())).unwrap();
            let expected = fx.name_of(pick.id());
            drop(pick);
            assert_eq!(
                session.get(&uri).await.unwrap(),
                (StatusCode::OK, expected.clone())
            );
            seen.insert(expected);
        }
        assert_eq!(seen.len(), 3, "the keys spread over every backend");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    within(async {
        let fx = Fixture::start(
            IpHash,
            &["b1", "b2", "b3"],
            KeySpec::ClientIp,
            &["192.0.2.0/24"],
        )
        .await;
        let peer = fx.oracle(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let names = one_round(fx.addr, 12).await;
        assert_eq!(
            names,
            vec![peer; 12],
            "every client is keyed by the socket peer"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_dead_backends_clients_move_and_no_request_fails() {
    within(async {
        let mut fx = Fixture::start(
            IpHash,
            &["b1", "b2", "b3"],
            KeySpec::ClientIp,
            &["127.0.0.1"],
        )
        .await;
        let before = one_round(fx.addr, 30).await;
        let dead = before[0].clone();
        let index = fx.backends.iter().position(|b| b.name() == dead).unwrap();
        fx.backends[index].stop().await;

        let after = one_round(fx.addr, 30).await;
        for (i, (was, is)) in before.iter().zip(&after).enumerate() {
            if *was == dead {
                assert_ne!(is, was, "client {i} left the dead backend");
                assert_eq!(
                    *is,
                    fx.oracle(client(i)),
                    "client {i} went where the pool says"
                );
            } else {
                assert_eq!(is, was, "client {i} stayed");
            }
        }
        // The first request for the dead backend failed once and was retried;
        // with max_fails 1 the backend was then skipped without a try.
        assert_eq!(fx.stat(|s| &s.retries), 1);
        assert_eq!(fx.stat(|s| &s.failed), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_picks_without_failing_a_request_in_flight() {
    within(async {
        let fx = Fixture::start(
            IpHash,
            &["b1", "b2", "b3"],
            KeySpec::ClientIp,
            &["127.0.0.1"],
        )
        .await;
        let slow_client = (0..30).find(|&i| fx.oracle(client(i)) != "b3").unwrap();
        let slow_backend = fx.oracle(client(slow_client));
        let mut session = Session::connect(fx.addr, client(slow_client))
            .await
            .unwrap();
        let in_flight = tokio::spawn(async move { session.get("/?delay_ms=400").await });
        tokio::time::sleep(Duration::from_millis(100)).await;

        fx.proxy
            .reconfigure(IpHash, KeySpec::ClientIp, fx.set_of(&["b3"]))
            .unwrap();
        assert_eq!(fx.proxy.pool().snapshot().generation(), 2);
        assert_eq!(one_round(fx.addr, 10).await, vec!["b3".to_string(); 10]);

        let answered = in_flight.await.unwrap().unwrap();
        assert_eq!(
            answered,
            (StatusCode::OK, slow_backend),
            "finished where it started"
        );
        assert_eq!(fx.stat(|s| &s.failed), 0);
    })
    .await;
}

/// A scratch upstream file, removed on drop.
struct ScratchFile(PathBuf);

impl ScratchFile {
    fn new(name: &str) -> ScratchFile {
        // Tests run in parallel in one process: a number of its own each.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir();
        ScratchFile(dir.join(format!("upstream-e2e-{}-{n}-{name}", std::process::id())))
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn upstream_block(method: &str, servers: &[SocketAddr]) -> String {
    let mut text = format!("upstream app {{\n    {method}\n");
    for addr in servers {
        text.push_str(&format!("    server {addr};\n"));
    }
    text.push_str("}\n");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_refused_and_the_old_pool_keeps_serving() {
    within(async {
        let fx = Fixture::start(
            AnyPolicy::from(RoundRobin),
            &["b1", "b2"],
            KeySpec::None,
            &[],
        )
        .await;
        let file = ScratchFile::new("reload.conf");
        let b2 = fx.backend("b2").addr();

        file.write(&upstream_block("", &[b2]));
        reload::reload(&fx.proxy, &file.0, None).unwrap();
        assert_eq!(one_round(fx.addr, 4).await, vec!["b2".to_string(); 4]);

        file.write(&upstream_block("", &[b2, b2]));
        let err = reload::reload(&fx.proxy, &file.0, None).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}: 4:12: {}",
                file.0.display(),
                BuildError::Duplicate { id: b2.to_string() }
            ),
            "line 4, column 12: the second server line's address"
        );
        file.write("upstream app {\n    server 10.0.0.1 weight=0;\n}\n");
        let err = reload::reload(&fx.proxy, &file.0, None).unwrap_err();
        assert_eq!(
            err,
            format!("{}: 2:21: invalid parameter \"weight=0\"", file.0.display())
        );
        file.write("upstream app {\n    sticky route $route_cookie;\n    server 10.0.0.1;\n}\n");
        let err = reload::reload(&fx.proxy, &file.0, None).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}: sticky route: cannot evaluate '$route_cookie'; this proxy knows \
                 $cookie_NAME, $arg_NAME, $http_NAME, $uri, $request_uri, $args, $host, \
                 $remote_addr",
                file.0.display()
            )
        );
        assert_eq!(
            fx.proxy.pool().snapshot().generation(),
            2,
            "nothing swapped"
        );
        assert_eq!(one_round(fx.addr, 4).await, vec!["b2".to_string(); 4]);

        // The method may change with the servers, in the same swap.
        let b1 = fx.backend("b1").addr();
        file.write(&upstream_block("least_conn;", &[b1, b2]));
        reload::reload(&fx.proxy, &file.0, None).unwrap();
        let snapshot = fx.proxy.pool().snapshot();
        assert_eq!(snapshot.policy().name(), "least_conn");
        assert_eq!(snapshot.generation(), 3);
        // Ties among idle backends go round robin, as in nginx.
        assert_eq!(one_round(fx.addr, 2).await, ["b1", "b2"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_is_retried_for_idempotent_methods_only() {
    within(async {
        let fx = Fixture::start(RoundRobin, &["b1", "b2", "b3"], KeySpec::None, &[]).await;
        let mut session = Session::connect(fx.addr, client(0)).await.unwrap();
        let (status, _) = session.get("/status/502").await.unwrap();
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(fx.stat(|s| &s.retries), 2, "every backend tried once");
        assert_eq!(fx.stat(|s| &s.failed), 1);

        let fx = Fixture::start(RoundRobin, &["b1", "b2", "b3"], KeySpec::None, &[]).await;
        let mut stream = TcpStream::connect(fx.addr).await.unwrap();
        let post = "POST /status/502 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
        stream.write_all(post.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
        assert_eq!(fx.stat(|s| &s.retries), 0, "POST is not retried");
        let served: u64 = fx.backends.iter().map(DemoBackend::served).sum();
        assert_eq!(served, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_stays_on_its_backend_across_a_reload() {
    within(async {
        let fx = Fixture::start(
            IpHash,
            &["b1", "b2", "b3"],
            KeySpec::ClientIp,
            &["127.0.0.1"],
        )
        .await;
        let ip = client(4);
        let home = fx.oracle(ip);

        let mut stream = TcpStream::connect(fx.addr).await.unwrap();
        let handshake = format!(
            "GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             X-Forwarded-For: {ip}\r\n\r\n"
        );
        stream.write_all(handshake.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            lines.read_line(&mut line).await.unwrap();
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("upgrade: websocket"),
            "{head}"
        );
        let mut line = String::new();
        lines.read_line(&mut line).await.unwrap();
        assert_eq!(line, format!("{home}\n"));

        // Move the client's key elsewhere: the tunnel stays where it is.
        let others: Vec<&str> = ["b1", "b2", "b3"]
            .into_iter()
            .filter(|n| *n != home)
            .collect();
        fx.proxy
            .reconfigure(IpHash, KeySpec::ClientIp, fx.set_of(&others))
            .unwrap();
        assert_ne!(fx.oracle(ip), home);
        let mut fresh = Session::connect(fx.addr, ip).await.unwrap();
        assert_eq!(
            fresh.get("/").await.unwrap(),
            (StatusCode::OK, fx.oracle(ip))
        );

        lines.get_mut().write_all(b"still there?\n").await.unwrap();
        line.clear();
        lines.read_line(&mut line).await.unwrap();
        assert_eq!(line, format!("{home}: still there?\n"));
        assert_eq!(fx.stat(|s| &s.upgrades), 1);
    })
    .await;
}

#[test]
fn trust_list_reads_forwarded_for_only_from_trusted_peers() {
    let trust = TrustList::parse(&["127.0.0.0/8", "10.1.0.0/16", "::1"]).unwrap();
    let mut headers = HeaderMap::new();
    headers.append(
        "x-forwarded-for",
        "203.0.113.9, 198.51.100.1".parse().unwrap(),
    );
    headers.append("x-forwarded-for", "10.1.2.3".parse().unwrap());
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();

    // Rightmost untrusted hop, skipping the trusted 10.1.2.3.
    assert_eq!(
        trust.client_ip(ip("127.0.0.1"), &headers),
        ip("198.51.100.1")
    );
    assert_eq!(
        trust.client_ip(ip("::ffff:127.0.0.1"), &headers),
        ip("198.51.100.1")
    );
    assert_eq!(trust.client_ip(ip("::1"), &headers), ip("198.51.100.1"));
    assert_eq!(trust.client_ip(ip("192.0.2.1"), &headers), ip("192.0.2.1"));

    let mut all_trusted = HeaderMap::new();
    all_trusted.insert("x-forwarded-for", "10.1.0.1, 10.1.0.2".parse().unwrap());
    assert_eq!(
        trust.client_ip(ip("127.0.0.1"), &all_trusted),
        ip("10.1.0.1")
    );

    let mut garbage = HeaderMap::new();
    garbage.insert("x-forwarded-for", "nonsense, 10.1.0.2".parse().unwrap());
    assert_eq!(trust.client_ip(ip("127.0.0.1"), &garbage), ip("10.1.0.2"));
    assert_eq!(
        trust.client_ip(ip("127.0.0.1"), &HeaderMap::new()),
        ip("127.0.0.1")
    );

    assert_eq!(
        TrustList::parse(&["10.0.0.0/33"]).unwrap_err(),
        "'10.0.0.0/33' is neither a CIDR (10.0.0.0/8) nor an IP address"
    );
}

#[test]
fn key_expressions_follow_nginx_variables() {
    let req = Request::get("http://ignored/a/b?x=1&sid=zz")
        .header("host", "Example.COM:8080")
        .header("cookie", "lang=en; sid=abc")
        .header("x-user", "u1")
        .body(())
        .unwrap();
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let eval = |expr: &str| KeySpec::parse(expr).unwrap().eval(&req, client);
    let bytes = |s: &str| KeyBuf::Bytes(s.as_bytes().to_vec());

    assert_eq!(eval("$request_uri"), bytes("/a/b?x=1&sid=zz"));
    assert_eq!(eval("$uri|$args"), bytes("/a/b|x=1&sid=zz"));
    assert_eq!(eval("$host"), bytes("example.com"));
    assert_eq!(eval("u-${cookie_sid}-$arg_sid"), bytes("u-abc-zz"));
    assert_eq!(eval("$http_x_user@$remote_addr"), bytes("u1@192.0.2.7"));
    assert_eq!(
        eval("$binary_remote_addr"),
        KeyBuf::Bytes(vec![192, 0, 2, 7])
    );
    assert_eq!(eval("$cookie_none"), KeyBuf::Bytes(Vec::new()));
    assert_eq!(
        eval("$cookie_none").as_key(),
        Key::None,
        "an empty key is no key"
    );
    assert_eq!(
        KeySpec::ClientIp.eval(&req, client).as_key(),
        Key::Ip(client)
    );

    assert_eq!(
        KeySpec::parse("$request_uri"),
        Ok(KeySpec::Template(vec![Part::RequestUri]))
    );
    assert_eq!(
        KeySpec::parse("$nope"),
        Err("unknown variable '$nope' in hash key '$nope'".to_string())
    );
    assert_eq!(
        KeySpec::parse("${uri"),
        Err("'${' without '}' in hash key '${uri'".to_string())
    );
}

/// One answer as a browser sees it.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: StatusCode,
    set_cookie: Vec<String>,
    body: String,
}

/// `GET path` on a connection of its own, with `cookie` as the `Cookie`
/// header if given.
async fn fetch(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header(HOST, addr.to_string());
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        set_cookie,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// nginx's server id of a backend written as `addr`: the hex MD5 of it.
fn server_id(addr: SocketAddr) -> String {
    let digest = Md5::digest(addr.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const COOKIE_RULE: &str =
    "sticky cookie srv_id expires=max domain=.example.com path=/ httponly samesite=lax;";

/// The `Set-Cookie` nginx sends for `COOKIE_RULE` and backend `addr`.
fn nginx_set_cookie(addr: SocketAddr) -> String {
    format!(
        "srv_id={}; expires=Thu, 31-Dec-37 23:55:55 GMT; max-age=315360000; \
         domain=.example.com; httponly; samesite=lax; path=/",
        server_id(addr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_cookie_session_keeps_its_backend() {
    within(async {
        let (fx, _file) = Fixture::from_file(&["b1", "b2", "b3"], COOKIE_RULE, &[], None).await;
        let (b1, b2, b3) = (
            fx.backend("b1").addr(),
            fx.backend("b2").addr(),
            fx.backend("b3").addr(),
        );
        assert_eq!(fx.proxy.pool().snapshot().policy().name(), "round_robin");

        // No cookie: balanced (round robin starts at b1), and bound there.
        let first = fetch(fx.addr, "/", None).await;
        let expected = |body: &str, addr| Reply {
            status: StatusCode::OK,
            set_cookie: vec![nginx_set_cookie(addr)],
            body: body.to_string(),
        };
        assert_eq!(first, expected("b1", b1));

        // The cookie brings the session back to b1 every time, and nginx
        // refreshes it on every answer.
        let cookie = format!("theme=dark; srv_id={}", server_id(b1));
        for _ in 0..5 {
            assert_eq!(fetch(fx.addr, "/", Some(&cookie)).await, expected("b1", b1));
        }

        // Another client without a cookie gets a new one, for the backend
        // the policy picks next; its own session then stays there.
        let second = fetch(fx.addr, "/", None).await;
        assert_eq!(second, expected("b2", b2));
        let cookie2 = format!("srv_id={}", server_id(b2));
        assert_eq!(
            fetch(fx.addr, "/", Some(&cookie2)).await,
            expected("b2", b2)
        );

        // A tampered or unknown id is not trusted: rebalanced, reissued.
        let mut tampered = server_id(b1);
        tampered.replace_range(31.., "x");
        let tampered = format!("srv_id={tampered}");
        assert_eq!(
            fetch(fx.addr, "/", Some(&tampered)).await,
            expected("b3", b3)
        );
        let unknown = "srv_id=10.0.0.1:80";
        assert_eq!(fetch(fx.addr, "/", Some(unknown)).await, expected("b1", b1));

        assert_eq!(fx.stat(|s| &s.sticky_broken), 2);
        assert_eq!(fx.stat(|s| &s.retries), 0);
        assert_eq!(fx.stat(|s| &s.requests), 10);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sticky_backend_is_replaced_and_the_cookie_rewritten() {
    within(async {
        let (mut fx, _file) = Fixture::from_file(&["b1", "b2", "b3"], COOKIE_RULE, &[], None).await;
        let (b1, b2) = (fx.backend("b1").addr(), fx.backend("b2").addr());
        let cookie = format!("srv_id={}", server_id(b1));
        assert_eq!(fetch(fx.addr, "/", Some(&cookie)).await.body, "b1");

        fx.backends[0].stop().await;
        // The connect to b1 fails; the retry goes through the sticky layer,
        // which finds b1 tried, balances, and rebinds the session.
        let moved = fetch(fx.addr, "/", Some(&cookie)).await;
        assert_eq!(
            moved,
            Reply {
                status: StatusCode::OK,
                set_cookie: vec![nginx_set_cookie(b2)],
                body: "b2".to_string(),
            }
        );
        assert_eq!(fx.stat(|s| &s.retries), 1);
        assert_eq!(fx.stat(|s| &s.sticky_broken), 1);
        assert_eq!(fx.stat(|s| &s.failed), 0);

        // The rewritten cookie holds.
        let cookie = format!("srv_id={}", server_id(b2));
        for _ in 0..3 {
            assert_eq!(fetch(fx.addr, "/", Some(&cookie)).await.body, "b2");
        }
        assert_eq!(fx.stat(|s| &s.retries), 1);
        assert_eq!(fx.stat(|s| &s.sticky_broken), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_route_follows_the_first_variable_set() {
    within(async {
        let (fx, _file) = Fixture::from_file(
            &["b1", "b2", "b3"],
            "sticky route $arg_route $cookie_route;",
            &["route=a", "route=b", "route=c"],
            None,
        )
        .await;
        let body = |path: &'static str, cookie: Option<&'static str>| {
            let addr = fx.addr;
            async move {
                let reply = fetch(addr, path, cookie).await;
                assert_eq!(reply.status, StatusCode::OK);
                assert_eq!(
                    reply.set_cookie,
                    Vec::<String>::new(),
                    "route sets no cookie"
                );
                reply.body
            }
        };
        assert_eq!(body("/?route=c", None).await, "b3");
        assert_eq!(body("/", Some("route=b")).await, "b2");
        assert_eq!(
            body("/?route=a", Some("route=b")).await,
            "b1",
            "first set wins"
        );
        assert_eq!(fx.stat(|s| &s.sticky_broken), 0);
        // No route, or an unknown one: round robin.
        assert_eq!(body("/", None).await, "b1");
        assert_eq!(body("/?route=zz", None).await, "b2");
        assert_eq!(fx.stat(|s| &s.sticky_broken), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_learn_binds_the_apps_session_and_survives_a_reload() {
    within(async {
        let rule = "sticky learn create=$upstream_cookie_sid lookup=$cookie_sid \
                    zone=client_sessions:1m;";
        let (fx, file) = Fixture::from_file(&["b1", "b2", "b3"], rule, &[], None).await;
        let store = |fx: &Fixture<AnyPolicy>| {
            let rules = fx.proxy.rules();
            let layer = rules.sticky.as_ref().unwrap().layer();
            Arc::clone(layer.store().unwrap())
        };

        // The application logs the client in on b2 and sets its cookie.
        assert_eq!(fetch(fx.addr, "/", None).await.body, "b1");
        let login = fetch(fx.addr, "/?sid=u42", None).await;
        assert_eq!(
            (login.body.as_str(), login.set_cookie),
            ("b2", vec!["sid=u42; path=/".to_string()])
        );
        let b2 = fx.backend("b2").addr().to_string();
        let now = fx.proxy.pool().snapshot().now_ms();
        assert_eq!(
            store(&fx).lookup("u42", now, 600_000).as_deref(),
            Some(server_id(fx.backend("b2").addr()).as_str()),
            "bound to {b2}"
        );
        for _ in 0..4 {
            assert_eq!(fetch(fx.addr, "/", Some("sid=u42")).await.body, "b2");
        }

        // The same directive after a reload: the same table, the session holds.
        let before = store(&fx);
        reload::reload(&fx.proxy, &file.0, None).unwrap();
        assert!(Arc::ptr_eq(&before, &store(&fx)));
        assert_eq!(fetch(fx.addr, "/", Some("sid=u42")).await.body, "b2");

        // A changed directive starts a new table.
        let text = std::fs::read_to_string(&file.0).unwrap();
        file.write(&text.replace(
            "zone=client_sessions:1m;",
            "zone=client_sessions:1m timeout=1h;",
        ));
        reload::reload(&fx.proxy, &file.0, None).unwrap();
        let fresh = store(&fx);
        assert!(!Arc::ptr_eq(&before, &fresh));
        assert_eq!(fresh.len(), 0);
        assert_eq!(fx.stat(|s| &s.sticky_broken), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_p2c_sends_new_requests_to_the_idle_backend() {
    within(async {
        let chosen = PolicyName::from_str("p2c", false).unwrap();
        let (fx, _file) = Fixture::from_file(&["b1", "b2"], "least_conn;", &[], Some(chosen)).await;
        assert_eq!(fx.proxy.pool().snapshot().policy().name(), "p2c");

        // One slow request holds a backend.
        let addr = fx.addr;
        let slow = tokio::spawn(async move { fetch(addr, "/?delay_ms=1500", None).await });
        let served = || {
            fx.backends
                .iter()
                .map(DemoBackend::served)
                .collect::<Vec<_>>()
        };
        while served().iter().sum::<u64>() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let busy = if served() == [1, 0] { "b1" } else { "b2" };
        let idle = if busy == "b1" { "b2" } else { "b1" };

        // With two backends P2C compares both: the idle one wins each time.
        for _ in 0..8 {
            assert_eq!(fetch(fx.addr, "/", None).await.body, idle);
        }
        assert_eq!(fx.backend(busy).served(), 1);
        assert_eq!(slow.await.unwrap().body, busy);
    })
    .await;
}

#[test]
fn policy_names_map_to_the_crates_policies() {
    let names = [
        ("round_robin", "round_robin"),
        ("least_conn", "least_conn"),
        ("ip_hash", "ip_hash"),
        ("random", "random"),
        ("p2c", "p2c"),
        ("peak_ewma", "peak_ewma"),
        ("maglev", "maglev"),
        ("ring_hash", "ring_hash"),
        ("rendezvous", "rendezvous"),
    ];
    for (flag, policy) in names {
        let chosen = PolicyName::from_str(flag, false).unwrap();
        assert_eq!(chosen.policy().name(), policy, "--policy {flag}");
    }
    assert!(PolicyName::from_str("two", false).is_err());

    let hash = upstream::config::Method::Hash {
        key: "$request_uri".into(),
        consistent: true,
    };
    let method = upstream::config::Method::LeastConn;
    let key = |m, c| conf::key_spec(m, c).unwrap();
    assert_eq!(
        key(&hash, Some(PolicyName::Maglev)),
        KeySpec::Template(vec![Part::RequestUri])
    );
    assert_eq!(key(&method, Some(PolicyName::Maglev)), KeySpec::ClientIp);
    assert_eq!(key(&hash, Some(PolicyName::IpHash)), KeySpec::ClientIp);
    assert_eq!(key(&hash, Some(PolicyName::P2c)), KeySpec::None);
    assert_eq!(key(&hash, None), KeySpec::Template(vec![Part::RequestUri]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_maglev_serves_a_request_whose_key_is_empty() {
    within(async {
        let chosen = PolicyName::from_str("maglev", false).unwrap();
        let (fx, _file) = Fixture::from_file(
            &["b1", "b2"],
            "hash $cookie_session consistent;",
            &[],
            Some(chosen),
        )
        .await;
        assert_eq!(fx.proxy.pool().snapshot().policy().name(), "maglev");
        // No session cookie: the key is empty, and Maglev spreads such
        // requests instead of refusing them.
        for _ in 0..4 {
            let reply = fetch(fx.addr, "/", None).await;
            assert_eq!(reply.status, 200);
            assert!(reply.body == "b1" || reply.body == "b2", "{}", reply.body);
        }
    })
    .await;
}

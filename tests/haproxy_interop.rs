//! Proves against a real HAProxy that the `haproxy` policies pick the server
//! HAProxy picks.
//!
//! Runs when `haproxy` is on PATH and prints a skip line otherwise; it
//! installs nothing. One HAProxy (the Debian 12 package, 2.6) runs in the
//! foreground on loopback with one backend per case. A front end routes each
//! request to the backend named in `x-be` and takes the client address from
//! `x-client` (`http-request set-src`), so the test chooses each request's
//! key. Every server points at a responder front end of the same HAProxy, and
//! the backend names the server it chose in an `x-srv` response header. For
//! every request the test asks a [`Pool`] with the same servers, and the
//! names must agree. The bounded-load case uses a responder of the test's own
//! that holds one request open, so that one server carries a load.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use upstream::haproxy::{HaproxyChash, HaproxyMap, HashFunction, StaticRr};
use upstream::{Backend, Key, Policy, Pool};

const FUNCTIONS: [HashFunction; 4] = [
    HashFunction::Sdbm,
    HashFunction::Djb2,
    HashFunction::Wt6,
    HashFunction::Crc32,
];

/// Weight mixes, cycled through the cases; 0 means `weight 0`.
const WEIGHTS: [&[u32]; 9] = [
    &[1, 1],
    &[1, 1, 2],
    &[3, 1, 4, 1],
    &[1, 1, 1, 1, 1],
    &[2, 0, 3, 1, 5, 1],
    &[10, 20, 30, 40, 50, 60, 70],
    &[1, 2, 3, 4, 5, 6, 7, 8],
    &[256, 1, 17, 3, 64, 1, 1, 2, 9],
    &[4, 4, 2, 6, 8, 1, 3, 5, 7, 9],
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Source,
    Uri,
    Hdr,
}

/// One server line: weight, `disabled`, `backup`, explicit `id`.
#[derive(Clone, Copy, Debug, Default)]
struct Server {
    weight: u32,
    disabled: bool,
    backup: bool,
    id: Option<u32>,
}

fn plain(weights: &[u32]) -> Vec<Server> {
    weights
        .iter()
        .map(|&weight| Server {
            weight,
            ..Server::default()
        })
        .collect()
}

/// One backend section and the policy that should match it.
struct Case {
    name: String,
    kind: Kind,
    lines: String,
    servers: Vec<Server>,
    check: Check,
}

enum Check {
    Map(HaproxyMap),
    Chash(HaproxyChash),
    /// Requests without a key, in order, from a fresh backend.
    RoundRobin(fn(&[Backend]) -> Vec<String>),
}

fn backends(servers: &[Server]) -> Vec<Backend> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let b = Backend::new(format!("s{}", i + 1))
                .weight(s.weight)
                .down(s.disabled)
                .backup(s.backup);
            match s.id {
                Some(id) => b.hash_key(id.to_string()),
                None => b,
            }
        })
        .collect()
}

fn balance_line(kind: Kind) -> &'static str {
    match kind {
        Kind::Source => "balance source",
        Kind::Uri => "balance uri",
        Kind::Hdr => "balance hdr(x-k)",
    }
}

fn hash_line(method: &str, function: Option<HashFunction>, avalanche: bool) -> String {
    let mut line = format!("hash-type {method}");
    if let Some(f) = function {
        line.push(' ');
        line.push_str(f.name());
    }
    if avalanche {
        line.push_str(" avalanche");
    }
    line
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut n = 0;
    // Every balance × method × function × avalanche, over the weight mixes.
    for kind in [Kind::Source, Kind::Uri, Kind::Hdr] {
        for consistent in [false, true] {
            for function in FUNCTIONS {
                for avalanche in [false, true] {
                    let servers = plain(WEIGHTS[n % WEIGHTS.len()]);
                    let method = if consistent {
                        "consistent"
                    } else {
                        "map-based"
                    };
                    let lines = format!(
                        "{}\n  {}",
                        balance_line(kind),
                        hash_line(method, Some(function), avalanche)
                    );
                    let check = if consistent {
                        Check::Chash(chash(kind).hash(function, avalanche))
                    } else {
                        Check::Map(map(kind).hash(function, avalanche))
                    };
                    cases.push(Case {
                        name: format!("c{n}"),
                        kind,
                        lines,
                        servers,
                        check,
                    });
                    n += 1;
                }
            }
        }
    }
    // The defaults: map-based is sdbm, consistent is sdbm + avalanche.
    for kind in [Kind::Source, Kind::Uri, Kind::Hdr] {
        for consistent in [false, true] {
            let method = if consistent {
                "consistent"
            } else {
                "map-based"
            };
            let check = if consistent {
                Check::Chash(chash(kind))
            } else {
                Check::Map(map(kind))
            };
            cases.push(Case {
                name: format!("d{n}"),
                kind,
                lines: format!("{}\n  hash-type {method}", balance_line(kind)),
                servers: plain(&[1, 2, 1, 3]),
                check,
            });
            n += 1;
        }
    }
    // Down servers leave the map and the tree; explicit ids move points.
    let mut mixed = plain(&[2, 4, 6, 1, 3]);
    mixed[1].disabled = true;
    mixed[3].disabled = true;
    for consistent in [false, true] {
        let check = if consistent {
            Check::Chash(HaproxyChash::uri())
        } else {
            Check::Map(HaproxyMap::uri())
        };
        let method = if consistent {
            "consistent"
        } else {
            "map-based"
        };
        cases.push(Case {
            name: format!("down{n}"),
            kind: Kind::Uri,
            lines: format!("balance uri\n  hash-type {method}"),
            servers: mixed.clone(),
            check,
        });
        n += 1;
    }
    let mut ids = plain(&[1, 1, 2, 1]);
    ids[1].id = Some(1);
    ids[3].id = Some(9);
    cases.push(Case {
        name: format!("ids{n}"),
        kind: Kind::Hdr,
        lines: "balance hdr(x-k)\n  hash-type consistent".into(),
        servers: ids,
        check: Check::Chash(HaproxyChash::hdr()),
    });
    n += 1;
    // Backups: primaries all down, so the first usable backup takes all,
    // or with `option allbackups`, every usable backup shares.
    let mut backups = plain(&[1, 1, 1, 2, 3]);
    backups[0].disabled = true;
    backups[1].disabled = true;
    // Backups carry explicit ids: HAProxy numbers them after the primaries,
    // while a pool numbers each tier from 1 (a documented limitation).
    for (s, id) in backups[2..].iter_mut().zip(10..) {
        s.backup = true;
        s.id = Some(id);
    }
    backups[2].disabled = true;
    for all in [false, true] {
        for consistent in [false, true] {
            let method = if consistent {
                "consistent"
            } else {
                "map-based"
            };
            let mut lines = format!("balance uri\n  hash-type {method}");
            if all {
                lines.push_str("\n  option allbackups");
            }
            let check = if consistent {
                Check::Chash(HaproxyChash::uri().all_backups(all))
            } else {
                Check::Map(HaproxyMap::uri().all_backups(all))
            };
            cases.push(Case {
                name: format!("bk{n}"),
                kind: Kind::Uri,
                lines,
                servers: backups.clone(),
                check,
            });
            n += 1;
        }
    }
    // static-rr, and the round robin that hdr falls back to without a header.
    for weights in [
        &[1, 1, 2][..],
        &[3, 1, 0, 2, 5],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    ] {
        cases.push(Case {
            name: format!("rr{n}"),
            kind: Kind::Hdr,
            lines: "balance static-rr".into(),
            servers: plain(weights),
            check: Check::RoundRobin(|b| sequence(StaticRr::default(), b)),
        });
        n += 1;
        cases.push(Case {
            name: format!("fbm{n}"),
            kind: Kind::Hdr,
            lines: "balance hdr(x-k)\n  hash-type map-based".into(),
            servers: plain(weights),
            check: Check::RoundRobin(|b| sequence(HaproxyMap::hdr(), b)),
        });
        n += 1;
        cases.push(Case {
            name: format!("fbc{n}"),
            kind: Kind::Hdr,
            lines: "balance hdr(x-k)\n  hash-type consistent".into(),
            servers: plain(weights),
            check: Check::RoundRobin(|b| sequence(HaproxyChash::hdr(), b)),
        });
        n += 1;
    }
    cases
}

fn map(kind: Kind) -> HaproxyMap {
    match kind {
        Kind::Source => HaproxyMap::source(),
        Kind::Uri => HaproxyMap::uri(),
        Kind::Hdr => HaproxyMap::hdr(),
    }
}

fn chash(kind: Kind) -> HaproxyChash {
    match kind {
        Kind::Source => HaproxyChash::source(),
        Kind::Uri => HaproxyChash::uri(),
        Kind::Hdr => HaproxyChash::hdr(),
    }
}

/// The picks of a fresh pool for requests without a key.
fn sequence<P: Policy>(policy: P, backends: &[Backend]) -> Vec<String> {
    let pool = Pool::new(policy, backends.to_vec()).unwrap();
    (0..rr_requests(backends))
        .map(|_| {
            pool.pick(Key::None)
                .map_or("-".into(), |p| p.id().to_string())
        })
        .collect()
}

/// Two rounds of the map, and at least 40 requests.
fn rr_requests(backends: &[Backend]) -> usize {
    let total: u32 = backends.iter().map(|b| b.weight).sum();
    (2 * total as usize).max(40)
}

/// A small deterministic generator for keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~";
        let len = 1 + (self.next() % 24) as usize;
        (0..len)
            .map(|_| CHARS[(self.next() % CHARS.len() as u64) as usize] as char)
            .collect()
    }

    fn ip(&mut self) -> IpAddr {
        let x = self.next();
        if x % 4 == 0 {
            let w = [self.next(), self.next()];
            let s: Vec<u16> = (0..8)
                .map(|i| (w[i / 4] >> (16 * (i % 4))) as u16)
                .collect();
            IpAddr::V6(Ipv6Addr::new(
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from((x >> 8) as u32))
        }
    }
}

/// One request: its key for the pool and the header lines and path for
/// HAProxy.
struct Request {
    path: String,
    headers: String,
    ip: Option<IpAddr>,
    bytes: Option<String>,
}

fn request(kind: Kind, rng: &mut Rng) -> Request {
    match kind {
        Kind::Source => {
            let ip = rng.ip();
            Request {
                path: "/".into(),
                headers: format!("x-client: {ip}\r\n"),
                ip: Some(ip),
                bytes: None,
            }
        }
        Kind::Uri => {
            let path = format!(
                "/{}/{}?{}={}",
                rng.word(),
                rng.word(),
                rng.word(),
                rng.word()
            );
            Request {
                path: path.clone(),
                headers: String::new(),
                ip: None,
                bytes: Some(path),
            }
        }
        Kind::Hdr => {
            let word = rng.word();
            // Now and then a list or padding: HAProxy hashes the first value.
            let value = match rng.next() % 5 {
                0 => format!("{word}, {}", rng.word()),
                1 => format!("  {word}"),
                _ => word,
            };
            Request {
                path: "/".into(),
                headers: format!("x-k: {value}\r\n"),
                ip: None,
                bytes: Some(value),
            }
        }
    }
}

fn expected<P: Policy>(pool: &Pool<P>, r: &Request) -> String {
    let key = match (&r.ip, &r.bytes) {
        (Some(ip), _) => Key::Ip(*ip),
        (None, Some(b)) => Key::Bytes(b.as_bytes()),
        (None, None) => Key::None,
    };
    pool.pick(key).map_or("-".into(), |p| p.id().to_string())
}

/// HAProxy in the foreground, killed and its files removed on drop.
struct Haproxy {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: impl Fn(u16, u16) -> String) -> Haproxy {
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("upstream-haproxy-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (front, responder) = (free_port(), free_port());
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config(front, responder)).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let hap = Haproxy {
        child,
        dir,
        port: front,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", front)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        thread::sleep(Duration::from_millis(20));
    }
    hap
}

const HEAD: &str = "global\n  nbthread 1\n\ndefaults\n  mode http\n  timeout connect 2s\n  \
                    timeout client 20s\n  timeout server 20s\n";

fn front_end(front: u16, responder: u16) -> String {
    format!(
        "{HEAD}\nfrontend front\n  bind 127.0.0.1:{front}\n  \
         http-request set-src hdr(x-client) if {{ req.hdr(x-client) -m found }}\n  \
         use_backend %[req.hdr(x-be)]\n\n\
         frontend responder\n  bind 127.0.0.1:{responder}\n  \
         http-request return status 200 content-type text/plain string ok\n\n\
         backend hashes\n  http-request return status 200 content-type text/plain lf-string \
         \"%[req.fhdr(x-k),sdbm] %[req.fhdr(x-k),sdbm(1)] %[req.fhdr(x-k),djb2] \
         %[req.fhdr(x-k),djb2(1)] %[req.fhdr(x-k),wt6] %[req.fhdr(x-k),wt6(1)] \
         %[req.fhdr(x-k),crc32] %[req.fhdr(x-k),crc32(1)]\"\n"
    )
}

fn backend_section(name: &str, lines: &str, servers: &[Server], target: u16) -> String {
    let mut s =
        format!("\nbackend {name}\n  {lines}\n  http-response set-header x-srv %[srv_name]\n");
    for (i, srv) in servers.iter().enumerate() {
        write!(
            s,
            "  server s{} 127.0.0.1:{target} weight {}",
            i + 1,
            srv.weight
        )
        .unwrap();
        if let Some(id) = srv.id {
            write!(s, " id {id}").unwrap();
        }
        if srv.disabled {
            s.push_str(" disabled");
        }
        if srv.backup {
            s.push_str(" backup");
        }
        s.push('\n');
    }
    s
}

/// Sends one request; returns the response's `x-srv` (or `-`) and body.
fn get(port: u16, backend: &str, path: &str, headers: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: test\r\nx-be: {backend}\r\n{headers}connection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let server = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-srv")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "-".into());
    (server, body.to_string())
}

fn haproxy_missing() -> bool {
    if Command::new("haproxy").arg("-v").output().is_ok() {
        return false;
    }
    assert!(
        std::env::var_os("UPSTREAM_REQUIRE_INTEROP").is_none(),
        "UPSTREAM_REQUIRE_INTEROP is set but `haproxy` is not on PATH"
    );
    println!("skipping haproxy interop: no `haproxy` on PATH");
    true
}

#[test]
fn picks_match_haproxy() {
    if haproxy_missing() {
        return;
    }
    let cases = cases();
    let hap = start(|front, responder| {
        let mut cfg = front_end(front, responder);
        for c in &cases {
            cfg.push_str(&backend_section(&c.name, &c.lines, &c.servers, responder));
        }
        cfg
    });

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut failures = Vec::new();
    let mut checked = 0;

    // The hash functions themselves, through HAProxy's converters.
    for _ in 0..200 {
        let key = rng.word();
        let (_, body) = get(hap.port, "hashes", "/", &format!("x-k: {key}\r\n"));
        let ours: Vec<String> = FUNCTIONS
            .iter()
            .flat_map(|f| {
                let h = f.hash(key.as_bytes());
                [h, upstream::haproxy::full_hash(h)]
            })
            .map(|h| h.to_string())
            .collect();
        if body.split_whitespace().collect::<Vec<_>>() != ours {
            failures.push(format!(
                "hashes of {key:?}: haproxy {body:?}, ours {ours:?}"
            ));
        }
        checked += 1;
    }

    for case in &cases {
        let backends = backends(&case.servers);
        match &case.check {
            Check::Map(p) => {
                let pool = Pool::new(*p, backends).unwrap();
                checked += compare(&hap, case, &mut rng, &mut failures, |r| expected(&pool, r));
            }
            Check::Chash(p) => {
                let pool = Pool::new(*p, backends).unwrap();
                checked += compare(&hap, case, &mut rng, &mut failures, |r| expected(&pool, r));
            }
            Check::RoundRobin(ours) => {
                let ours = ours(&backends);
                let theirs: Vec<String> = (0..ours.len())
                    .map(|_| get(hap.port, &case.name, "/", "").0)
                    .collect();
                if theirs != ours {
                    failures.push(format!(
                        "{} ({}): haproxy {theirs:?}, ours {ours:?}",
                        case.name, case.lines
                    ));
                }
                checked += ours.len();
            }
        }
    }
    drop(hap);
    assert!(
        failures.is_empty(),
        "{} of {checked} answers differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Sends 60 keyed requests (each twice) and compares HAProxy's picks with
/// `ours`.
fn compare(
    hap: &Haproxy,
    case: &Case,
    rng: &mut Rng,
    failures: &mut Vec<String>,
    ours: impl Fn(&Request) -> String,
) -> usize {
    let mut checked = 0;
    for _ in 0..60 {
        let r = request(case.kind, rng);
        let want = ours(&r);
        for _ in 0..2 {
            let (got, _) = get(hap.port, &case.name, &r.path, &r.headers);
            if got != want {
                failures.push(format!(
                    "{} ({}), {} {}: haproxy {got}, ours {want}",
                    case.name,
                    case.lines.replace("\n  ", "; "),
                    r.path,
                    r.headers.trim_end()
                ));
            }
            checked += 1;
        }
    }
    checked
}

/// A responder that answers at once, except `/hold` requests, which it
/// answers when `release` is set (or after 15 s, so that it stops by itself).
fn holding_responder(release: Arc<AtomicBool>, held: mpsc::Sender<()>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (release, held) = (Arc::clone(&release), held.clone());
            thread::spawn(move || serve_one(stream, &release, &held));
        }
    });
    port
}

fn serve_one(mut stream: TcpStream, release: &AtomicBool, held: &mpsc::Sender<()>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let hold = line.starts_with("GET /hold");
        while !matches!(line.as_str(), "\r\n" | "") {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
        }
        if hold {
            let _ = held.send(());
            let deadline = Instant::now() + Duration::from_secs(15);
            while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// `hash-balance-factor`: while one request is held on a server, keys that
/// hash to it go on to the next server with room, in HAProxy and here.
#[test]
fn bounded_loads_match_haproxy() {
    if haproxy_missing() {
        return;
    }
    let release = Arc::new(AtomicBool::new(false));
    let (held_tx, held_rx) = mpsc::channel();
    let target = holding_responder(Arc::clone(&release), held_tx);
    let servers = plain(&[1, 1, 1]);
    let lines = "balance uri\n  hash-type consistent\n  hash-balance-factor 150";
    let hap = start(|front, responder| {
        let mut cfg = front_end(front, responder);
        cfg.push_str(&backend_section("bounded", lines, &servers, target));
        cfg.push_str(&backend_section(
            "unbounded",
            "balance uri\n  hash-type consistent",
            &servers,
            target,
        ));
        cfg
    });
    let policy = HaproxyChash::uri().balance_factor(150);
    let pool = Pool::new(policy, backends(&servers)).unwrap();

    // Hold one request; the pool holds the same pick.
    let port = hap.port;
    let holder = thread::spawn(move || get(port, "bounded", "/hold", "").0);
    held_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the held request arrived");
    let held = pool.pick(Key::from("/hold")).unwrap();

    let mut rng = Rng(42);
    let mut failures = Vec::new();
    let mut moved = 0;
    for _ in 0..120 {
        let path = format!("/{}", rng.word());
        let want = pool
            .pick(Key::from(path.as_str()))
            .unwrap()
            .id()
            .to_string();
        let (got, _) = get(hap.port, "bounded", &path, "");
        let (free, _) = get(hap.port, "unbounded", &path, "");
        if free != got {
            moved += 1;
        }
        if got != want {
            failures.push(format!(
                "{path}: haproxy {got}, ours {want} (unbounded: {free})"
            ));
        }
    }
    release.store(true, Ordering::SeqCst);
    let held_by = holder.join().unwrap();
    assert_eq!(
        held_by,
        held.id(),
        "the held request went to the same server"
    );
    drop(held);
    drop(hap);
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The test proves something only if some keys were pushed off their server.
    assert!(moved > 10, "only {moved} keys moved off the loaded server");
}

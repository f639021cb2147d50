//! Proves against a real nginx that `upstream` picks the backend nginx picks.
//!
//! Runs when `nginx` is on PATH and prints a skip line otherwise; it installs
//! nothing. One nginx, started in the foreground on loopback, serves every
//! backend (each answers with its own port) and a front server that proxies
//! `/uN` to upstream block `uN`. The realip module takes the client address
//! from `X-Real-IP`, so the test chooses each request's client. For every
//! request the test asks a [`Pool`] with the same servers, and the port nginx
//! answered with must be the one the pool picked.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use upstream::{Backend, IpHash, Ketama, Key, NginxHash, Policy, Pool, RoundRobin};

#[derive(Clone, Copy, Debug)]
enum Method {
    IpHash,
    Hash,
    Consistent,
    RoundRobin,
}

impl Method {
    fn directive(self) -> &'static str {
        match self {
            Method::IpHash => "ip_hash;",
            Method::Hash => "hash $arg_k;",
            Method::Consistent => "hash $arg_k consistent;",
            Method::RoundRobin => "",
        }
    }
}

/// One upstream block: its method and `(weight, down)` per server.
struct Case {
    method: Method,
    servers: &'static [(u32, bool)],
    requests: usize,
}

const CASES: &[Case] = &[
    // ip_hash: the three equal servers, then weights and downs.
    Case {
        method: Method::IpHash,
        servers: &[(1, false), (1, false), (1, false)],
        requests: 250,
    },
    // Mostly down: many requests rehash more than 20 times and reach
    // nginx's round robin over the two servers left.
    Case {
        method: Method::IpHash,
        servers: &[(1, false), (30, true), (1, false)],
        requests: 200,
    },
    Case {
        method: Method::IpHash,
        servers: &[(5, false), (1, true), (3, false), (1, false), (2, false)],
        requests: 250,
    },
    Case {
        method: Method::IpHash,
        servers: &[
            (1, false),
            (2, false),
            (3, false),
            (1, true),
            (1, false),
            (4, false),
            (1, false),
            (2, true),
            (1, false),
            (3, false),
        ],
        requests: 250,
    },
    Case {
        method: Method::IpHash,
        servers: &[(1, false), (4, true)],
        requests: 250,
    },
    // hash $arg_k.
    Case {
        method: Method::Hash,
        servers: &[(1, false), (1, false), (1, false)],
        requests: 250,
    },
    // Mostly down: many requests rehash more than 20 times and reach
    // nginx's round robin over the two servers left.
    Case {
        method: Method::Hash,
        servers: &[(1, false), (30, true), (1, false)],
        requests: 200,
    },
    Case {
        method: Method::Hash,
        servers: &[
            (2, false),
            (1, false),
            (4, true),
            (1, false),
            (3, false),
            (1, true),
        ],
        requests: 250,
    },
    Case {
        method: Method::Hash,
        servers: &[
            (3, false),
            (1, false),
            (1, true),
            (2, false),
            (5, false),
            (1, false),
            (1, false),
            (2, false),
            (1, true),
            (1, false),
        ],
        requests: 250,
    },
    Case {
        method: Method::Hash,
        servers: &[(1, false), (9, true)],
        requests: 250,
    },
    // hash $arg_k consistent.
    Case {
        method: Method::Consistent,
        servers: &[(1, false), (1, false), (1, false)],
        requests: 250,
    },
    // Mostly down: many requests rehash more than 20 times and reach
    // nginx's round robin over the two servers left.
    Case {
        method: Method::Consistent,
        servers: &[(1, false), (30, true), (1, false)],
        requests: 200,
    },
    Case {
        method: Method::Consistent,
        servers: &[(2, false), (1, false), (4, true), (1, false), (3, false)],
        requests: 250,
    },
    Case {
        method: Method::Consistent,
        servers: &[
            (1, false),
            (3, false),
            (1, false),
            (2, true),
            (1, false),
            (1, false),
            (5, false),
            (1, true),
            (2, false),
            (1, false),
        ],
        requests: 250,
    },
    Case {
        method: Method::Consistent,
        servers: &[(1, false), (5, true)],
        requests: 250,
    },
    // Round robin.
    Case {
        method: Method::RoundRobin,
        servers: &[(1, false), (1, false), (1, false)],
        requests: 250,
    },
    Case {
        method: Method::RoundRobin,
        servers: &[(5, false), (1, false), (1, false)],
        requests: 250,
    },
    Case {
        method: Method::RoundRobin,
        servers: &[(5, false), (1, true), (3, false), (1, false), (2, false)],
        requests: 250,
    },
    Case {
        method: Method::RoundRobin,
        servers: &[
            (1, false),
            (2, false),
            (3, true),
            (1, false),
            (4, false),
            (1, false),
            (2, false),
            (1, false),
            (3, false),
            (7, false),
        ],
        requests: 250,
    },
];

/// A deterministic generator for client addresses and keys.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }

    fn client(&mut self) -> IpAddr {
        let r = self.next();
        if r % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from((self.next() as u32).max(1)))
        } else {
            let segs = [
                0x2001,
                0xdb8,
                self.next() as u16,
                self.next() as u16,
                0,
                0,
                0,
                self.next() as u16,
            ];
            IpAddr::V6(Ipv6Addr::from(segs))
        }
    }

    /// A URL-safe key of 0 to 24 characters; empty about once in 40.
    fn key(&mut self) -> String {
        const ALPHABET: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
        if self.next() % 40 == 0 {
            return String::new();
        }
        let len = 1 + self.next() as usize % 24;
        (0..len)
            .map(|_| ALPHABET[self.next() as usize % ALPHABET.len()] as char)
            .collect()
    }
}

/// nginx in the foreground, stopped when dropped, even on a failed assert.
struct Nginx {
    child: Child,
    prefix: PathBuf,
    conf: PathBuf,
}

impl Nginx {
    fn start(prefix: &Path, conf: &Path, front: u16) -> Nginx {
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            child,
            prefix: prefix.to_path_buf(),
            conf: conf.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", front)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                panic!("nginx exited with {status}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A graceful stop lets the master take its worker down with it.
        let _ = Command::new("nginx")
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.prefix);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// Free loopback ports, held until the caller drops the listeners.
fn free_ports(n: usize) -> (Vec<u16>, Vec<TcpListener>) {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    (ports, listeners)
}

fn config(prefix: &Path, front: u16, upstreams: &[Vec<u16>], backend_ports: &[u16]) -> String {
    let p = prefix.display();
    let mut conf = format!(
        "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n\
         client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n\
         scgi_temp_path {p}/scgi;\n\
         set_real_ip_from 127.0.0.1;\n  real_ip_header X-Real-IP;\n"
    );
    for (n, (case, ports)) in CASES.iter().zip(upstreams).enumerate() {
        let _ = writeln!(conf, "  upstream u{n} {{\n    {}", case.method.directive());
        for (&(weight, down), port) in case.servers.iter().zip(ports) {
            let down = if down { " down" } else { "" };
            let _ = writeln!(conf, "    server 127.0.0.1:{port} weight={weight}{down};");
        }
        conf.push_str("  }\n");
    }
    let _ = writeln!(conf, "  server {{\n    listen 127.0.0.1:{front};");
    for n in 0..CASES.len() {
        let _ = writeln!(conf, "    location = /u{n} {{ proxy_pass http://u{n}; }}");
    }
    conf.push_str("  }\n");
    for port in backend_ports {
        let _ = writeln!(
            conf,
            "  server {{ listen 127.0.0.1:{port}; return 200 \"{port}\"; }}"
        );
    }
    conf.push_str("}\n");
    conf
}

/// One HTTP/1.0 request; returns the body of a 200 answer.
fn get(front: u16, path: &str, client: Option<IpAddr>) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", front)).expect("connect to nginx");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n");
    if let Some(ip) = client {
        let _ = write!(request, "X-Real-IP: {ip}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_string()
}

fn pool_for<P: Policy>(policy: P, case: &Case, ports: &[u16]) -> Pool<P> {
    let backends: Vec<Backend> = case
        .servers
        .iter()
        .zip(ports)
        .map(|(&(weight, down), port)| {
            Backend::new(format!("127.0.0.1:{port}"))
                .weight(weight)
                .down(down)
        })
        .collect();
    Pool::new(policy, backends).expect("a valid pool")
}

/// The port the pool picks, released at once as the request completes.
fn expected<P: Policy>(pool: &Pool<P>, key: Key<'_>) -> String {
    let pick = pool.pick(key).expect("an available backend");
    let port = pick.addr().expect("a socket address").port().to_string();
    pick.success();
    port
}

/// Sends every request of case `n` and returns the mismatches.
fn run_case<P: Policy>(policy: P, n: usize, case: &Case, ports: &[u16], front: u16) -> Vec<String> {
    let pool = pool_for(policy, case, ports);
    let mut rng = Lcg(0x5eed_0000 + n as u64);
    let mut mismatches = Vec::new();
    for r in 0..case.requests {
        let (path, client, want) = match case.method {
            Method::IpHash => {
                let ip = rng.client();
                (format!("/u{n}"), Some(ip), expected(&pool, Key::Ip(ip)))
            }
            Method::Hash | Method::Consistent => {
                let key = rng.key();
                let want = expected(&pool, Key::from(key.as_str()));
                (format!("/u{n}?k={key}"), None, want)
            }
            Method::RoundRobin => (format!("/u{n}"), None, expected(&pool, Key::None)),
        };
        let got = get(front, &path, client);
        if got != want {
            mismatches.push(format!(
                "u{n} ({:?}) request {r} {path} client {client:?}: nginx {got}, upstream {want}",
                case.method
            ));
        }
    }
    mismatches
}

#[test]
fn picks_match_nginx() {
    let found = Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("UPSTREAM_REQUIRE_INTEROP").is_none(),
            "UPSTREAM_REQUIRE_INTEROP is set but `nginx` is not on PATH"
        );
        eprintln!("skipping nginx interop test: `nginx` is not on PATH");
        return;
    }

    let prefix = std::env::temp_dir().join(format!(
        "upstream-nginx-interop-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&prefix).unwrap();
    let backend_count: usize = CASES.iter().map(|c| c.servers.len()).sum();
    let (ports, listeners) = free_ports(backend_count + 1);
    let front = ports[0];
    let mut upstreams = Vec::new();
    let mut next = 1;
    for case in CASES {
        upstreams.push(ports[next..next + case.servers.len()].to_vec());
        next += case.servers.len();
    }
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config(&prefix, front, &upstreams, &ports[1..])).unwrap();
    drop(listeners);
    let _nginx = Nginx::start(&prefix, &conf, front);

    let mut mismatches = Vec::new();
    let mut sent = [0usize; 4];
    for (n, (case, ports)) in CASES.iter().zip(&upstreams).enumerate() {
        mismatches.extend(match case.method {
            Method::IpHash => run_case(IpHash, n, case, ports, front),
            Method::Hash => run_case(NginxHash, n, case, ports, front),
            Method::Consistent => run_case(Ketama, n, case, ports, front),
            Method::RoundRobin => run_case(RoundRobin, n, case, ports, front),
        });
        sent[case.method as usize] += case.requests;
    }
    assert!(
        sent.iter().all(|&s| s >= 1000),
        "requests per method: {sent:?}"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} picks differ from nginx; first ones:\n{}",
        mismatches.len(),
        sent.iter().sum::<usize>(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

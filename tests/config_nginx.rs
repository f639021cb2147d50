//! The nginx block parser against the real program: every block here is
//! given to `nginx -t`, and this crate must accept what nginx accepts and
//! refuse what nginx refuses, with nginx's message on nginx's line.
//!
//! Runs when `nginx` is on PATH (nginx 1.22 has no `sticky`, `route=` or
//! `drain`, so those are covered by unit tests only); installs nothing.

use std::path::PathBuf;
use std::process::Command;

use upstream::config::parse_nginx;
use upstream::ConfigError;

/// The block goes inside `http { }` on this line of the generated file.
const FIRST_LINE: u32 = 5;

/// What `nginx -t` said: `Ok` or its first message and line.
#[derive(Debug, PartialEq)]
enum Verdict {
    Accepted,
    Refused {
        line: u32,
        reason: String,
    },
    /// nginx accepted with a warning, which this crate turns into a refusal.
    Warned {
        line: u32,
        reason: String,
    },
}

fn nginx_available() -> bool {
    Command::new("nginx").arg("-v").output().is_ok()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upstream-config-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn nginx_verdict(dir: &std::path::Path, block: &str) -> Verdict {
    let conf = dir.join("nginx.conf");
    let text = format!(
        "pid {}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n{block}\n}}\n",
        dir.display()
    );
    std::fs::write(&conf, text).unwrap();
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg("stderr")
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr
        .lines()
        .find(|l| l.contains("[emerg]") || l.contains("[warn]"));
    let Some(first) = first else {
        assert!(out.status.success(), "{stderr}");
        return Verdict::Accepted;
    };
    // "2026/01/01 00:00:00 [emerg] 1#1: MESSAGE in /path/nginx.conf:LINE"
    let message = first.split_once("]: ").map_or(first, |(_, m)| m);
    let message = message.split_once(": ").map_or(message, |(_, m)| m);
    let (reason, line) = message.rsplit_once(" in ").unwrap();
    let line: u32 = line.rsplit(':').next().unwrap().parse().unwrap();
    let line = line - FIRST_LINE + 1;
    let reason = reason.to_string();
    if out.status.success() {
        Verdict::Warned { line, reason }
    } else {
        Verdict::Refused { line, reason }
    }
}

fn our_verdict(block: &str, warned: bool) -> Verdict {
    match parse_nginx(block) {
        Ok(_) => Verdict::Accepted,
        Err(ConfigError::Nginx { line, reason, .. }) if warned => Verdict::Warned { line, reason },
        Err(ConfigError::Nginx { line, reason, .. }) => Verdict::Refused { line, reason },
        Err(e) => panic!("{block}: not an nginx refusal: {e}"),
    }
}

const ACCEPTED: &[&str] = &[
    "upstream u { server 10.0.0.1:80; }",
    "upstream u { server 10.0.0.1 weight=5 max_fails=3 fail_timeout=30s max_conns=7 down; }",
    "upstream u { server 10.0.0.1 weight=007 max_fails=0 max_conns=0; }",
    "upstream u { server 10.0.0.1 fail_timeout=1m30; server 10.0.0.2 \"fail_timeout=1h 1s\"; }",
    "upstream u { server 10.0.0.1 fail_timeout=s5; server 10.0.0.2 fail_timeout=100y; }",
    "upstream u { server 10.0.0.1 weight=2 weight=3; }",
    "upstream u { server 10.0.0.1; server 10.0.0.2 backup; }",
    "upstream u { least_conn; server 10.0.0.1; server 10.0.0.2 backup; }",
    "upstream u { server 10.0.0.1; server 10.0.0.2 backup; ip_hash; }",
    "upstream u { server 10.0.0.1; server 10.0.0.2 backup; hash $remote_addr; }",
    "upstream u { server 10.0.0.1; server 10.0.0.2 backup; random; }",
    "upstream u { ip_hash; server 10.0.0.1 weight=2 max_fails=2 fail_timeout=2 max_conns=2 down; }",
    "upstream u { hash $request_uri consistent; server 10.0.0.1 weight=2 down; }",
    "upstream u { hash \"\"; server 10.0.0.1; }",
    "upstream u { hash x; server 10.0.0.1; }",
    "upstream u { random two least_conn; server 10.0.0.1 weight=2 max_conns=3; }",
    "upstream u { random two; server 10.0.0.1; }",
    "upstream u { server 10.0.0.1 down; }",
    "upstream u { server 10.0.0.1 down; server 10.0.0.2 backup; }",
    "upstream \"\" { server 10.0.0.1; }",
    "upstream u { server [::1]:80; server [::2]; server 127.0.0.1:65535; }",
    "upstream u { server unix:/tmp/x.sock weight=2; }",
    "# lead\nupstream\t'u'  # c\n{\r\n server 10.0.0.1 #x\n;server \"10.0.0.2\" 'weight=2';}\n",
];

const REFUSED: &[&str] = &[
    "upstream u { server 10.0.0.1 weight=0; }",
    "upstream u { server 10.0.0.1 weight=; }",
    "upstream u { server 10.0.0.1 weight=+1; }",
    "upstream u { server 10.0.0.1 weight=1x; }",
    "upstream u { server 10.0.0.1 max_fails=x; }",
    "upstream u { server 10.0.0.1 max_conns=-1; }",
    "upstream u { server 10.0.0.1 fail_timeout=500ms; }",
    "upstream u { server 10.0.0.1 fail_timeout=1s500ms; }",
    "upstream u { server 10.0.0.1 fail_timeout=; }",
    "upstream u { server 10.0.0.1 foo; }",
    "upstream u { server 10.0.0.1 backupx; }",
    "upstream u { server 10.0.0.1 down=1; }",
    "upstream u { server 10.0.0.1 WEIGHT=2; }",
    "upstream u { server 10.0.0.1 weight=2}; }",
    "upstream u { server \"\"; }",
    "upstream u { server :80; }",
    "upstream u { server 10.0.0.1:; }",
    "upstream u { server 10.0.0.1:0; }",
    "upstream u { server 10.0.0.1:65536; }",
    "upstream u { server 10.0.0.1:x; }",
    "upstream u { server ::1; }",
    "upstream u { server [::3; }",
    "upstream u { server 10.0.0.1/x; }",
    "upstream u { server http://x; }",
    "upstream u { server unix:; }",
    "upstream u { server 10.0.0.1:0 foo; }",
    "upstream u {\nip_hash;\nserver 10.0.0.1;\nserver 10.0.0.2 backup;\n}",
    "upstream u {\nhash $remote_addr;\nserver 10.0.0.1;\nserver 10.0.0.2 backup;\n}",
    "upstream u {\nhash $remote_addr consistent;\nserver 10.0.0.2 backup;\n}",
    "upstream u {\nrandom two;\nserver 10.0.0.1;\nserver 10.0.0.2 backup;\n}",
    "upstream u { hash; server 10.0.0.1; }",
    "upstream u { hash $remote_addr b c; server 10.0.0.1; }",
    "upstream u { hash $remote_addr foo; server 10.0.0.1; }",
    "upstream u { ip_hash x; server 10.0.0.1; }",
    "upstream u { least_conn x; server 10.0.0.1; }",
    "upstream u { random foo; server 10.0.0.1; }",
    "upstream u { random least_conn; server 10.0.0.1; }",
    "upstream u { random two foo; server 10.0.0.1; }",
    "upstream u { random two least_conn x; server 10.0.0.1; }",
    "upstream u { server; }",
    "upstream u {\n}",
    "upstream u {\n server 10.0.0.1 backup;\n}",
    "upstream u { server 10.0.0.1 backup; server 10.0.0.2 backup; ip_hash; }",
    "upstream u {\n server 10.0.0.1\n}",
    "upstream u { server \"10.0.0.1\"x; }",
    "upstream u { server 10.0.0.1 ;; }",
    "upstream u { ; server 10.0.0.1; }",
    "upstream u { server 10.0.0.1; { } }",
    "upstream u { foo; server 10.0.0.1; }",
    "upstream u { SERVER 10.0.0.1; }",
    "upstream u { server 10.0.0.1 {} }",
    "upstream u { upstream v { server 10.0.0.1; } server 10.0.0.1; }",
    "upstream u v { server 10.0.0.1; }",
    "upstream { server 10.0.0.1; }",
    "upstream u;",
];

/// NGINX Plus (and nginx 1.29) syntax that nginx 1.22 does not know: this
/// crate accepts it so that such configs carry over.
const PLUS_ONLY: &[(&str, &str)] = &[
    (
        "upstream u { server 10.0.0.1 route=a; }",
        "invalid parameter \"route=a\"",
    ),
    (
        "upstream u { server 10.0.0.1 drain; }",
        "invalid parameter \"drain\"",
    ),
    (
        "upstream u { sticky cookie s; server 10.0.0.1; }",
        "unknown directive \"sticky\"",
    ),
];

const WARNED: &[&str] = &[
    "upstream u { ip_hash;\n least_conn; server 10.0.0.1; }",
    "upstream u { random two; random; server 10.0.0.1; }",
    "upstream u { hash $remote_addr; hash $request_uri consistent; server 10.0.0.1; }",
];

#[test]
fn nginx_agrees() {
    if !nginx_available() {
        assert!(
            std::env::var_os("UPSTREAM_REQUIRE_INTEROP").is_none(),
            "UPSTREAM_REQUIRE_INTEROP is set but `nginx` is not on PATH"
        );
        eprintln!("nginx is not on PATH; skipping the comparison with nginx");
        return;
    }
    let dir = scratch();
    let mut disagreements = Vec::new();
    for block in ACCEPTED {
        let theirs = nginx_verdict(&dir, block);
        let ours = our_verdict(block, false);
        assert_eq!(theirs, Verdict::Accepted, "nginx refused a sample: {block}");
        if ours != theirs {
            disagreements.push(format!("{block}\n  nginx: {theirs:?}\n  ours:  {ours:?}"));
        }
        // What this crate writes back, nginx accepts too.
        let rendered = parse_nginx(block).unwrap().to_nginx();
        assert_eq!(
            nginx_verdict(&dir, &rendered),
            Verdict::Accepted,
            "{rendered}"
        );
    }
    for block in REFUSED {
        let theirs = nginx_verdict(&dir, block);
        assert!(
            matches!(theirs, Verdict::Refused { .. }),
            "nginx accepted {block}"
        );
        let ours = our_verdict(block, false);
        if ours != theirs {
            disagreements.push(format!("{block}\n  nginx: {theirs:?}\n  ours:  {ours:?}"));
        }
    }
    for (block, reason) in PLUS_ONLY {
        let theirs = nginx_verdict(&dir, block);
        let expected = Verdict::Refused {
            line: 1,
            reason: reason.to_string(),
        };
        assert_eq!(theirs, expected, "{block}");
        assert_eq!(our_verdict(block, false), Verdict::Accepted, "{block}");
    }
    for block in WARNED {
        let theirs = nginx_verdict(&dir, block);
        assert!(
            matches!(theirs, Verdict::Warned { .. }),
            "nginx did not warn: {block}"
        );
        let ours = our_verdict(block, true);
        if ours != theirs {
            disagreements.push(format!("{block}\n  nginx: {theirs:?}\n  ours:  {ours:?}"));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

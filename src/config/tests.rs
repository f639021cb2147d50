//! Parser, renderer and serde tests. Refusal messages were checked
//! against `nginx -t` (1.22.1); tests/config_nginx.rs re-checks them when
//! nginx is installed.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::BuildError;

fn parse(text: &str) -> UpstreamConfig {
    match parse_nginx(text) {
        Ok(cfg) => cfg,
        Err(e) => panic!("{text:?}: {e}"),
    }
}

fn refuse(text: &str) -> String {
    match parse_nginx(text) {
        Ok(cfg) => panic!("{text:?} accepted as {cfg:?}"),
        Err(e) => e.to_string(),
    }
}

/// The one server of `upstream u { server ADDRESS PARAMS; }`.
fn server(params: &str) -> Backend {
    let cfg = parse(&format!(
        "upstream u {{ server 10.0.0.1:80 {params}; server 10.0.0.9:80; }}"
    ));
    cfg.backends().backends()[0].clone()
}

fn set(backends: Vec<Backend>) -> BackendSet {
    BackendSet::new(backends).unwrap()
}

fn config(method: Method, sticky: Option<Sticky>, backends: Vec<Backend>) -> UpstreamConfig {
    UpstreamConfig::new("u", method, sticky, set(backends)).unwrap()
}

// ---- directives ----------------------------------------------------------

#[test]
fn no_method_directive_is_round_robin() {
    let cfg = parse("upstream app {\n    server 10.0.0.1:80;\n}\n");
    assert_eq!(
        cfg,
        config(Method::RoundRobin, None, vec![Backend::new("10.0.0.1:80")]).with_name("app")
    );
}

#[test]
fn method_directives() {
    let cases = [
        ("ip_hash;", Method::IpHash),
        ("least_conn;", Method::LeastConn),
        (
            "hash $request_uri;",
            Method::Hash {
                key: "$request_uri".into(),
                consistent: false,
            },
        ),
        (
            "hash \"$host$uri\" consistent;",
            Method::Hash {
                key: "$host$uri".into(),
                consistent: true,
            },
        ),
        (
            "hash '';",
            Method::Hash {
                key: String::new(),
                consistent: false,
            },
        ),
        (
            "random;",
            Method::Random {
                two: false,
                least_conn: false,
            },
        ),
        (
            "random two;",
            Method::Random {
                two: true,
                least_conn: false,
            },
        ),
        (
            "random two least_conn;",
            Method::Random {
                two: true,
                least_conn: true,
            },
        ),
    ];
    for (directive, method) in cases {
        let cfg = parse(&format!("upstream u {{ {directive} server a:1; }}"));
        assert_eq!(cfg.method(), &method, "{directive}");
    }
}

#[test]
fn server_parameters() {
    assert_eq!(server(""), Backend::new("10.0.0.1:80"));
    assert_eq!(server("weight=5").weight, 5);
    assert_eq!(server("weight=007").weight, 7);
    assert_eq!(server("max_fails=0").max_fails, 0);
    assert_eq!(server("max_fails=3").max_fails, 3);
    assert_eq!(server("max_conns=100").max_conns, 100);
    assert_eq!(
        server("fail_timeout=30s").fail_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(
        server("fail_timeout=1m30").fail_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(
        server("fail_timeout=2").fail_timeout,
        Duration::from_secs(2)
    );
    assert_eq!(
        server("\"fail_timeout=1h 1s\"").fail_timeout,
        Duration::from_secs(3601)
    );
    assert!(server("backup").backup);
    assert!(server("down").down);
    assert!(server("drain").drain);
    assert_eq!(server("route=a1").route.as_deref(), Some("a1"));
    // Repeats are allowed and the last one wins, as in nginx.
    assert_eq!(server("weight=2 weight=3").weight, 3);
    let all = server("weight=2 max_fails=4 fail_timeout=1m max_conns=9 down drain route=r");
    assert_eq!(
        all,
        Backend::new("10.0.0.1:80")
            .weight(2)
            .max_fails(4)
            .fail_timeout(Duration::from_secs(60))
            .max_conns(9)
            .down(true)
            .drain(true)
            .route("r")
    );
}

#[test]
fn server_addresses_are_kept_as_written() {
    let cfg = parse(
        "upstream u {
            server 10.0.0.1;
            server app.internal:8080;
            server [2001:db8::1]:443;
            server [::1];
            server unix:/run/app.sock;
            server 'quoted:81';
        }",
    );
    let ids: Vec<&str> = cfg
        .backends()
        .backends()
        .iter()
        .map(|b| b.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "10.0.0.1",
            "app.internal:8080",
            "[2001:db8::1]:443",
            "[::1]",
            "unix:/run/app.sock",
            "quoted:81"
        ]
    );
}

#[test]
fn backup_is_allowed_where_nginx_allows_it() {
    // Round robin and least_conn take backups.
    let cfg = parse("upstream u { least_conn; server a:1; server b:1 backup; }");
    assert!(cfg.backends().backends()[1].backup);
    // nginx checks each server against the method declared above it, so
    // a backup declared before a hash method passes.
    let cfg = parse("upstream u { server a:1; server b:1 backup; ip_hash; }");
    assert_eq!(cfg.method(), &Method::IpHash);
    assert!(cfg.backends().backends()[1].backup);
}

#[test]
fn sticky_cookie() {
    let cfg = parse(
        "upstream u {
            sticky cookie srv_id expires=1h domain=.example.com httponly samesite=Strict
                secure path=/app;
            server a:1;
        }",
    );
    let mut c = StickyCookie::new("srv_id");
    c.expires = Some(CookieExpires::After(Duration::from_secs(3600)));
    c.domain = Some(".example.com".into());
    c.httponly = true;
    c.samesite = Some(SameSite::Strict);
    c.secure = true;
    c.path = Some("/app".into());
    assert_eq!(cfg.sticky(), Some(&Sticky::Cookie(c)));

    let cfg = parse("upstream u { sticky cookie s expires=max samesite=none; server a:1; }");
    let mut c = StickyCookie::new("s");
    c.expires = Some(CookieExpires::Max);
    c.samesite = Some(SameSite::None);
    assert_eq!(cfg.sticky(), Some(&Sticky::Cookie(c)));

    let cfg = parse("upstream u { sticky cookie s samesite=lax; server a:1; }");
    let Some(Sticky::Cookie(c)) = cfg.sticky() else {
        panic!("not a cookie")
    };
    assert_eq!(c.samesite, Some(SameSite::Lax));
}

#[test]
fn sticky_route() {
    let cfg = parse(
        "upstream u { sticky route $route_cookie $route_uri; server a:1 route=a; server b:1 route=b; }",
    );
    assert_eq!(
        cfg.sticky(),
        Some(&Sticky::Route(vec![
            "$route_cookie".into(),
            "$route_uri".into()
        ]))
    );
    let routes: Vec<_> = cfg
        .backends()
        .backends()
        .iter()
        .map(|b| b.route.clone())
        .collect();
    assert_eq!(routes, [Some("a".to_string()), Some("b".to_string())]);
}

#[test]
fn sticky_learn() {
    let cfg = parse(
        "upstream u {
            sticky learn create=$upstream_cookie_sid lookup=$cookie_sid
                zone=client_sessions:1m timeout=1h header sync;
            server a:1;
        }",
    );
    let mut l = StickyLearn::new(
        vec!["$upstream_cookie_sid".into()],
        vec!["$cookie_sid".into()],
        "client_sessions",
        1 << 20,
    );
    l.timeout = Duration::from_secs(3600);
    l.header = true;
    l.sync = true;
    assert_eq!(cfg.sticky(), Some(&Sticky::Learn(l)));

    let cfg = parse(
        "upstream u {
            sticky learn lookup=$a create=$b create=$c lookup=$d zone=z:32k;
            server a:1;
        }",
    );
    let l = StickyLearn::new(
        vec!["$b".into(), "$c".into()],
        vec!["$a".into(), "$d".into()],
        "z",
        32 * 1024,
    );
    assert_eq!(cfg.sticky(), Some(&Sticky::Learn(l)));
}

#[test]
fn sticky_after_a_method() {
    let cfg = parse("upstream u { hash $x; sticky route $r; server a:1; }");
    assert_eq!(
        cfg.method(),
        &Method::Hash {
            key: "$x".into(),
            consistent: false
        }
    );
    assert_eq!(cfg.sticky(), Some(&Sticky::Route(vec!["$r".into()])));
}

#[test]
fn comments_whitespace_and_quotes() {
    let cfg = parse(
        "# the app pool\n\
         upstream\t\"app\"   # name\n\
         {\r\n\
           server   b#not-a-comment:80\n\
             weight=2 ;# comment\n\
           server 'b:80' \"max_conns=3\";}\n\
         # trailing\n",
    );
    assert_eq!(cfg.name(), "app");
    assert_eq!(
        cfg.backends().backends(),
        [
            Backend::new("b#not-a-comment:80").weight(2),
            Backend::new("b:80").max_conns(3),
        ]
    );
}

// ---- refusals ------------------------------------------------------------

#[test]
fn refused_server_parameters() {
    let cases = [
        ("weight=0", "1:33: invalid parameter \"weight=0\""),
        ("weight=", "1:33: invalid parameter \"weight=\""),
        ("weight=+1", "1:33: invalid parameter \"weight=+1\""),
        ("weight=1x", "1:33: invalid parameter \"weight=1x\""),
        ("max_fails=x", "1:33: invalid parameter \"max_fails=x\""),
        ("max_conns=-1", "1:33: invalid parameter \"max_conns=-1\""),
        (
            "fail_timeout=500ms",
            "1:33: invalid parameter \"fail_timeout=500ms\"",
        ),
        (
            "fail_timeout=1s500ms",
            "1:33: invalid parameter \"fail_timeout=1s500ms\"",
        ),
        ("fail_timeout=", "1:33: invalid parameter \"fail_timeout=\""),
        ("foo", "1:33: invalid parameter \"foo\""),
        ("backupx", "1:33: invalid parameter \"backupx\""),
        ("down=1", "1:33: invalid parameter \"down=1\""),
        ("WEIGHT=2", "1:33: invalid parameter \"WEIGHT=2\""),
        ("route=", "1:33: invalid parameter \"route=\""),
        ("weight=2}", "1:33: invalid parameter \"weight=2}\""),
        (
            "weight=4294967296",
            "1:33: invalid parameter \"weight=4294967296\": above 4294967295, \
             the largest this crate supports",
        ),
    ];
    for (params, msg) in cases {
        let text = format!("upstream u {{ server 10.0.0.1:80 {params}; }}");
        assert_eq!(refuse(&text), msg, "{params}");
    }
}

#[test]
fn refused_addresses() {
    let cases = [
        ("\"\"", "1:21: no host in upstream \"\""),
        (":80", "1:21: no host in upstream \":80\""),
        ("1.1.1.1:", "1:21: invalid port in upstream \"1.1.1.1:\""),
        ("1.1.1.1:0", "1:21: invalid port in upstream \"1.1.1.1:0\""),
        (
            "1.1.1.1:65536",
            "1:21: invalid port in upstream \"1.1.1.1:65536\"",
        ),
        ("1.1.1.1:x", "1:21: invalid port in upstream \"1.1.1.1:x\""),
        ("::1", "1:21: invalid port in upstream \"::1\""),
        ("[::3", "1:21: invalid host in upstream \"[::3\""),
        ("1.1.1.1/x", "1:21: invalid host in upstream \"1.1.1.1/x\""),
        ("http://x", "1:21: invalid host in upstream \"http://x\""),
        (
            "unix:",
            "1:21: no path in the unix domain socket in upstream \"unix:\"",
        ),
    ];
    for (addr, msg) in cases {
        let text = format!("upstream u {{ server {addr}; }}");
        assert_eq!(refuse(&text), msg, "{addr}");
    }
    // Parameters are checked before the address, as nginx does.
    assert_eq!(
        refuse("upstream u { server 1.1.1.1:0 foo; }"),
        "1:31: invalid parameter \"foo\""
    );
    assert_eq!(parse("upstream u { server a:65535; }").backends().len(), 1);
}

#[test]
fn refused_backup_under_hash_methods() {
    for method in [
        "ip_hash;",
        "hash $remote_addr;",
        "hash $a consistent;",
        "random;",
    ] {
        let text = format!("upstream u {{\n{method}\nserver a:1;\nserver b:1 backup;\n}}");
        assert_eq!(
            refuse(&text),
            "4:12: balancing method does not support parameter \"backup\"",
            "{method}"
        );
    }
}

#[test]
fn refused_method_arguments() {
    let cases = [
        (
            "hash;",
            "1:14: invalid number of arguments in \"hash\" directive",
        ),
        (
            "hash $a b c;",
            "1:14: invalid number of arguments in \"hash\" directive",
        ),
        ("hash $x foo;", "1:22: invalid parameter \"foo\""),
        (
            "ip_hash x;",
            "1:14: invalid number of arguments in \"ip_hash\" directive",
        ),
        (
            "least_conn x;",
            "1:14: invalid number of arguments in \"least_conn\" directive",
        ),
        ("random foo;", "1:21: invalid parameter \"foo\""),
        (
            "random least_conn;",
            "1:21: invalid parameter \"least_conn\"",
        ),
        ("random two foo;", "1:25: invalid parameter \"foo\""),
        (
            "random two least_conn x;",
            "1:14: invalid number of arguments in \"random\" directive",
        ),
        (
            "server;",
            "1:14: invalid number of arguments in \"server\" directive",
        ),
    ];
    for (directive, msg) in cases {
        let text = format!("upstream u {{ {directive} server a:1; }}");
        assert_eq!(refuse(&text), msg, "{directive}");
    }
}

#[test]
fn refused_redefined_method() {
    // nginx warns and keeps the last; a library has no warning channel,
    // and the earlier line would be dead, so it is refused.
    assert_eq!(
        refuse("upstream u { ip_hash;\n least_conn; server a:1; }"),
        "2:2: load balancing method redefined"
    );
    assert_eq!(
        refuse("upstream u { random two; random; server a:1; }"),
        "1:26: load balancing method redefined"
    );
    assert_eq!(
        refuse("upstream u { sticky route $r; hash $x; server a:1; }"),
        "1:31: load balancing method redefined"
    );
}

#[test]
fn refused_blocks_and_syntax() {
    let cases = [
        ("upstream u { }", "1:14: no servers are inside upstream"),
        (
            "upstream u { server a:1 backup; }",
            "1:1: no servers in upstream \"u\"",
        ),
        ("upstream u { server a:1 }", "1:25: unexpected \"}\""),
        (
            "upstream u { server a:1; ",
            "1:26: unexpected end of file, expecting \"}\"",
        ),
        (
            "upstream u { server a:1",
            "1:24: unexpected end of file, expecting \";\" or \"}\"",
        ),
        ("upstream u { server a:1; } }", "1:28: unexpected \"}\""),
        ("upstream u { server \"a:1\"x; }", "1:26: unexpected \"x\""),
        ("upstream u { server a:1 ;; }", "1:26: unexpected \";\""),
        ("upstream u { ; server a:1; }", "1:14: unexpected \";\""),
        ("upstream u { server a:1; { } }", "1:26: unexpected \"{\""),
        (
            "upstream u { foo; server a:1; }",
            "1:14: unknown directive \"foo\"",
        ),
        (
            "upstream u { SERVER a:1; }",
            "1:14: unknown directive \"SERVER\"",
        ),
        (
            "upstream u { keepalive 8; server a:1; }",
            "1:14: unknown directive \"keepalive\"",
        ),
        (
            "upstream u { server a:1 {} }",
            "1:14: directive \"server\" is not terminated by \";\"",
        ),
        (
            "upstream u { upstream v { server a:1; } server a:1; }",
            "1:14: \"upstream\" directive is not allowed here",
        ),
        (
            "upstream u v { server a:1; }",
            "1:1: invalid number of arguments in \"upstream\" directive",
        ),
        (
            "upstream { server a:1; }",
            "1:1: invalid number of arguments in \"upstream\" directive",
        ),
        (
            "upstream u;",
            "1:1: directive \"upstream\" has no opening \"{\"",
        ),
        ("}", "1:1: unexpected \"}\""),
        ("", "1:1: expected an \"upstream\" block, found none"),
        (
            "# nothing\n",
            "2:1: expected an \"upstream\" block, found none",
        ),
        (
            "server a:1;",
            "1:1: expected an \"upstream\" block, found \"server\"",
        ),
        (
            "upstream u { server a:1; }\nupstream v { server a:1; }",
            "2:1: expected one \"upstream\" block, found a second one",
        ),
    ];
    for (text, msg) in cases {
        assert_eq!(refuse(text), msg, "{text}");
    }
}

#[test]
fn refused_sticky() {
    let s = |directive: &str| refuse(&format!("upstream u {{ {directive} server a:1; }}"));
    let cases = [
        (
            "sticky cookie;",
            "1:14: invalid number of arguments in \"sticky\" directive",
        ),
        ("sticky foo bar;", "1:21: unknown parameter \"foo\""),
        (
            "sticky cookie \"\";",
            "1:14: \"sticky\" directive empty cookie name",
        ),
        ("sticky cookie s bad;", "1:30: unknown parameter \"bad\""),
        (
            "sticky cookie s domain=a domain=b;",
            "1:39: \"sticky\" directive parameter \"domain\" is duplicate",
        ),
        (
            "sticky cookie s domain=;",
            "1:30: \"sticky\" directive no value for \"domain\"",
        ),
        (
            "sticky cookie s path=;",
            "1:30: \"sticky\" directive no value for \"path\"",
        ),
        (
            "sticky cookie s path=/ path=/x;",
            "1:37: \"sticky\" directive parameter \"path\" is duplicate",
        ),
        (
            "sticky cookie s expires=1h expires=max;",
            "1:41: \"sticky\" directive parameter \"expires\" is duplicate",
        ),
        (
            "sticky cookie s expires=500ms;",
            "1:30: \"sticky\" directive invalid \"expires\" parameter value",
        ),
        (
            "sticky cookie s httponly httponly;",
            "1:39: \"sticky\" directive parameter \"httponly\" is duplicate",
        ),
        (
            "sticky cookie s secure secure;",
            "1:37: \"sticky\" directive parameter \"secure\" is duplicate",
        ),
        (
            "sticky cookie s samesite=lax samesite=lax;",
            "1:43: \"sticky\" directive parameter \"samesite\" is duplicate",
        ),
        (
            "sticky cookie s samesite=bad;",
            "1:30: \"sticky\" directive invalid \"samesite\" parameter value",
        ),
        ("sticky route x;", "1:27: invalid variable name \"x\""),
        ("sticky route $a $;", "1:30: invalid variable name \"$\""),
        (
            "sticky learn lookup=$a zone=z:1m;",
            "1:14: \"sticky\" directive \"create\" parameter is not specified",
        ),
        (
            "sticky learn create=$a zone=z:1m;",
            "1:14: \"sticky\" directive \"lookup\" parameter is not specified",
        ),
        (
            "sticky learn create=$a lookup=$b;",
            "1:14: \"sticky\" directive \"zone\" parameter is not specified",
        ),
        (
            "sticky learn create=a lookup=$b zone=z:1m;",
            "1:27: \"sticky\" directive missing variable in the \"create\" parameter",
        ),
        (
            "sticky learn create=$a lookup=b zone=z:1m;",
            "1:37: \"sticky\" directive missing variable in the \"lookup\" parameter",
        ),
        (
            "sticky learn create=$a lookup=$b zone=z:1m zone=y:1m;",
            "1:57: \"sticky\" directive duplicate zone",
        ),
        (
            "sticky learn create=$a lookup=$b zone=z;",
            "1:47: \"sticky\" directive zone size is not specified",
        ),
        (
            "sticky learn create=$a lookup=$b zone=:1m;",
            "1:47: \"sticky\" directive zone name is not specified",
        ),
        (
            "sticky learn create=$a lookup=$b zone=z:1x;",
            "1:47: \"sticky\" directive invalid zone size",
        ),
        (
            "sticky learn create=$a lookup=$b zone=z:16k;",
            "1:47: \"sticky\" directive zone is too small",
        ),
        (
            "sticky learn create=$a lookup=$b zone=z:1m timeout=0;",
            "1:57: \"sticky\" directive invalid timeout",
        ),
        (
            "sticky learn create=$a lookup=$b zone=z:1m timeout=1y;",
            "1:57: \"sticky\" directive invalid timeout",
        ),
        (
            "sticky learn create=$a lookup=$b zone=z:1m timeout=1m timeout=2m;",
            "1:68: \"sticky\" directive duplicate timeout",
        ),
        (
            "sticky learn create=$a lookup=$b zone=z:1m bad;",
            "1:57: unknown parameter \"bad\"",
        ),
        (
            "sticky route $a; sticky route $b;",
            "1:31: \"sticky\" directive is duplicate",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(d, msg)| s(d) != *msg)
        .map(|(d, _)| format!("{d} => {}", s(d)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn refused_by_the_backend_set() {
    let err = parse_nginx("upstream u {\n server a:1;\n server a:1;\n}").unwrap_err();
    assert_eq!(err.to_string(), "3:9: duplicate backend 'a:1'");
    let ConfigError::Backend {
        line,
        column,
        server,
        source,
    } = err
    else {
        panic!("not a backend error")
    };
    assert_eq!((line, column, server.as_str()), (3, 9, "a:1"));
    assert_eq!(source, BuildError::Duplicate { id: "a:1".into() });

    assert_eq!(
        refuse("upstream u { server a:1; server b:1 weight=16777217; }"),
        "1:33: backend 'b:1' has weight 16777217, above the maximum 16777216"
    );
    assert_eq!(
        parse("upstream u { server a:1 fail_timeout=0; }")
            .backends()
            .backends()[0]
            .fail_timeout,
        Duration::ZERO
    );
}

#[test]
fn error_fields_name_the_word() {
    let err =
        parse_nginx("upstream u {\n\tserver a:1 backup;\n\tip_hash;\n\tserver b:1 backup;\n}")
            .unwrap_err();
    let ConfigError::Nginx {
        line,
        column,
        word,
        reason,
    } = err
    else {
        panic!("not an nginx error")
    };
    assert_eq!((line, column, word.as_str()), (4, 13, "backup"));
    assert_eq!(
        reason,
        "balancing method does not support parameter \"backup\""
    );
}

// ---- round trips ---------------------------------------------------------

#[test]
fn renders_each_part() {
    let mut cookie = StickyCookie::new("srv id");
    cookie.expires = Some(CookieExpires::Max);
    cookie.domain = Some(".example.com".into());
    cookie.httponly = true;
    cookie.samesite = Some(SameSite::Lax);
    cookie.secure = true;
    cookie.path = Some("/a b".into());
    let cfg = config(
        Method::Hash {
            key: "$cookie_a b".into(),
            consistent: true,
        },
        Some(Sticky::Cookie(cookie)),
        vec![
            Backend::new("10.0.0.1:80")
                .weight(3)
                .max_fails(0)
                .fail_timeout(Duration::from_secs(90))
                .max_conns(7)
                .route("r1")
                .down(true)
                .drain(true),
            Backend::new("unix:/run/x.sock"),
        ],
    );
    assert_eq!(
        cfg.to_nginx(),
        "upstream u {
    hash \"$cookie_a b\" consistent;
    sticky cookie \"srv id\" expires=max domain=.example.com httponly samesite=lax secure \"path=/a b\";
    server 10.0.0.1:80 weight=3 max_fails=0 fail_timeout=90s max_conns=7 route=r1 down drain;
    server unix:/run/x.sock;
}
"
    );
    assert_eq!(parse(&cfg.to_nginx()), cfg);
}

#[test]
fn renders_backups_above_a_hash_method() {
    let cfg = parse("upstream u { server a:1; server b:1 backup; random two least_conn; }");
    assert_eq!(
        cfg.to_nginx(),
        "upstream u {\n    server a:1;\n    server b:1 backup;\n    random two least_conn;\n}\n"
    );
    assert_eq!(parse(&cfg.to_nginx()), cfg);
}

#[test]
fn round_trips_every_sample() {
    let samples = [
        "upstream a { server 10.0.0.1; }",
        "upstream \"\" { server x:1; }",
        "upstream 'a b' { ip_hash; server 10.0.0.1 weight=2 down; server 10.0.0.2; }",
        "upstream a { hash \"\"; server x:1; }",
        "upstream a { hash \"a\\\\b\\\"c\"; server x:1; }",
        "upstream a { random two; server x:1 max_conns=5; }",
        "upstream a { least_conn; server x:1 backup; server y:2 fail_timeout=1y; }",
        "upstream a { sticky learn create=$a lookup=$b zone=z:33k timeout=1500ms; server x:1; }",
        "upstream a { sticky learn create=$a lookup=$b zone=z:100000; server x:1; }",
        "upstream a { sticky cookie c expires=1m30; server x:1; }",
        "upstream a { sticky route $a; server x:1 \"route=a;b\"; }",
        "upstream a { server 'we ird{}#;' weight=16777216; }",
    ];
    for text in samples {
        let cfg = parse(text);
        let rendered = cfg.to_nginx();
        assert_eq!(parse(&rendered), cfg, "{text}\n{rendered}");
    }
}

// ---- TOML and JSON -------------------------------------------------------

fn sample() -> UpstreamConfig {
    let mut learn = StickyLearn::new(
        vec!["$upstream_cookie_sid".into()],
        vec!["$cookie_sid".into()],
        "sessions",
        1 << 20,
    );
    learn.timeout = Duration::from_secs(3600);
    UpstreamConfig::new(
        "app",
        Method::Hash {
            key: "$request_uri".into(),
            consistent: true,
        },
        Some(Sticky::Learn(learn)),
        set(vec![
            Backend::new("10.0.0.1:8080").weight(2),
            Backend::new("10.0.0.2:8080")
                .fail_timeout(Duration::from_secs(90))
                .max_fails(3)
                .down(true),
        ]),
    )
    .unwrap()
}

#[test]
fn toml_sample() {
    let text = r#"
        name = "app"
        method = { hash = { key = "$request_uri", consistent = true } }

        [sticky.learn]
        create = ["$upstream_cookie_sid"]
        lookup = ["$cookie_sid"]
        zone = "sessions"
        zone_size = "1m"
        timeout = "1h"

        [[backends]]
        id = "10.0.0.1:8080"
        weight = 2

        [[backends]]
        id = "10.0.0.2:8080"
        max_fails = 3
        fail_timeout = "1m30s"
        down = true
    "#;
    let cfg = from_str_with_format(text, Format::Toml).unwrap();
    assert_eq!(cfg, sample());
    let written = toml::to_string(&cfg).unwrap();
    assert_eq!(from_str_with_format(&written, Format::Toml).unwrap(), cfg);
}

#[test]
fn json_sample() {
    let text = r#"{
        "name": "app",
        "method": {"hash": {"key": "$request_uri", "consistent": true}},
        "sticky": {"learn": {"create": ["$upstream_cookie_sid"], "lookup": ["$cookie_sid"],
                             "zone": "sessions", "zone_size": 1048576, "timeout": "60m"}},
        "backends": [
            {"id": "10.0.0.1:8080", "weight": 2},
            {"id": "10.0.0.2:8080", "max_fails": 3, "fail_timeout": 90, "down": true}
        ]
    }"#;
    let cfg = from_str_with_format(text, Format::Json).unwrap();
    assert_eq!(cfg, sample());
    let written = serde_json::to_string(&cfg).unwrap();
    assert_eq!(
        written,
        r#"{"name":"app","method":{"hash":{"key":"$request_uri","consistent":true}},"sticky":{"learn":{"create":["$upstream_cookie_sid"],"lookup":["$cookie_sid"],"zone":"sessions","zone_size":"1m","timeout":"3600s","header":false,"sync":false}},"backends":[{"id":"10.0.0.1:8080","weight":2,"max_fails":1,"fail_timeout":"10s","max_conns":0,"down":false,"backup":false,"drain":false},{"id":"10.0.0.2:8080","weight":1,"max_fails":3,"fail_timeout":"90s","max_conns":0,"down":true,"backup":false,"drain":false}]}"#
    );
    assert_eq!(from_str_with_format(&written, Format::Json).unwrap(), cfg);
}

#[test]
fn serde_shapes_of_methods_and_sticky() {
    let m = |json: &str| serde_json::from_str::<Method>(json).unwrap();
    assert_eq!(m(r#""round_robin""#), Method::RoundRobin);
    assert_eq!(m(r#""least_conn""#), Method::LeastConn);
    assert_eq!(m(r#""ip_hash""#), Method::IpHash);
    assert_eq!(
        m(r#"{"random":{}}"#),
        Method::Random {
            two: false,
            least_conn: false
        }
    );
    assert_eq!(
        m(r#"{"random":{"two":true,"least_conn":true}}"#),
        Method::Random {
            two: true,
            least_conn: true
        }
    );
    let cfg = from_str_with_format(
        r#"
        name = "a"
        backends = [{ id = "x:1", route = "r" }]
        [sticky.cookie]
        name = "srv"
        expires = "max"
        samesite = "strict"
        httponly = true
        "#,
        Format::Toml,
    )
    .unwrap();
    let mut c = StickyCookie::new("srv");
    c.expires = Some(CookieExpires::Max);
    c.samesite = Some(SameSite::Strict);
    c.httponly = true;
    assert_eq!(cfg.sticky(), Some(&Sticky::Cookie(c)));
    assert_eq!(cfg.method(), &Method::RoundRobin);
    let cfg = from_str_with_format(
        r#"{"name":"a","sticky":{"route":["$r"]},"backends":[{"id":"x:1"}]}"#,
        Format::Json,
    )
    .unwrap();
    assert_eq!(cfg.sticky(), Some(&Sticky::Route(vec!["$r".into()])));
}

#[test]
fn documents_get_the_nginx_rules() {
    let json = |text: &str| {
        from_str_with_format(text, Format::Json)
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            r#"{"name":"a","backends":[{"id":"x:1","weight":0}]}"#,
            "JSON upstream \"a\": server \"x:1\" has weight 0, which nginx refuses; \
             mark it down or drain instead",
        ),
        (
            r#"{"name":"a","backends":[{"id":"x:1","fail_timeout":"1500ms"}]}"#,
            "JSON upstream \"a\": server \"x:1\": fail_timeout 1.5s is not a whole number of \
             seconds nginx can hold",
        ),
        (
            r#"{"name":"a","backends":[{"id":"x:1","hash_key":"k"}]}"#,
            "JSON upstream \"a\": server \"x:1\": hash_key has no nginx equivalent; \
             the address is what nginx hashes",
        ),
        (
            r#"{"name":"a","backends":[{"id":"x:0"}]}"#,
            "JSON upstream \"a\": invalid port in upstream \"x:0\"",
        ),
        (
            r#"{"name":"a","backends":[{"id":"x:1","backup":true}]}"#,
            "JSON upstream \"a\": no servers in upstream \"a\"",
        ),
        (
            r#"{"name":"a","method":{"random":{"least_conn":true}},"backends":[{"id":"x:1"}]}"#,
            "JSON upstream \"a\": random: least_conn needs two (\"random two least_conn\")",
        ),
        (
            r#"{"name":"a","sticky":{"route":["r"]},"backends":[{"id":"x:1"}]}"#,
            "JSON upstream \"a\": invalid variable name \"r\"",
        ),
        (
            r#"{"name":"a","backends":[{"id":"x:1"}],"extra":1}"#,
            "JSON unknown field `extra`, expected one of `name`, `method`, `sticky`, `backends` \
             at line 1 column 45",
        ),
        (
            r#"{"name":"a","backends":[{"id":"x:1"},{"id":"x:1"}]}"#,
            "JSON duplicate backend 'x:1' at line 1 column 51",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(text, msg)| json(text) != *msg)
        .map(|(text, _)| format!("{text} => {}", json(text)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    let toml_err = from_str_with_format("name = \"a\"\nbackends = 3\n", Format::Toml)
        .unwrap_err()
        .to_string();
    assert!(
        toml_err.starts_with("TOML TOML parse error at line 2, column 12"),
        "{toml_err}"
    );
}

#[test]
fn new_checks_sticky_rules() {
    let backends = || set(vec![Backend::new("x:1")]);
    let err = |sticky: Sticky| {
        UpstreamConfig::new("a", Method::RoundRobin, Some(sticky), backends())
            .unwrap_err()
            .to_string()
    };
    let mut c = StickyCookie::new("c");
    c.expires = Some(CookieExpires::After(Duration::from_millis(1500)));
    assert_eq!(
        err(Sticky::Cookie(c)),
        "upstream \"a\": \"sticky\" directive invalid \"expires\" parameter value"
    );
    assert_eq!(
        err(Sticky::Cookie(StickyCookie::new(""))),
        "upstream \"a\": \"sticky\" directive empty cookie name"
    );
    assert_eq!(
        err(Sticky::Route(vec![])),
        "upstream \"a\": sticky route needs at least one variable"
    );
    let learn = |zone: &str, size: u64| {
        Sticky::Learn(StickyLearn::new(
            vec!["$a".into()],
            vec!["$b".into()],
            zone,
            size,
        ))
    };
    assert_eq!(
        err(learn("z:1", 1 << 20)),
        "upstream \"a\": sticky learn zone name \"z:1\" contains ':', which nginx reads as the size"
    );
    assert_eq!(
        err(learn("z", 1024)),
        "upstream \"a\": \"sticky\" directive zone is too small"
    );
    let Sticky::Learn(mut l) = learn("z", 1 << 20) else {
        unreachable!()
    };
    l.timeout = Duration::ZERO;
    assert_eq!(
        err(Sticky::Learn(l)),
        "upstream \"a\": \"sticky\" directive invalid timeout"
    );
}

#[test]
fn formats_and_files() {
    let dir = std::env::temp_dir().join(format!("upstream-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nginx_path = dir.join("pool.conf");
    std::fs::write(&nginx_path, "upstream app { ip_hash; server 10.0.0.1:80; }").unwrap();
    let toml_path = dir.join("pool.TOML");
    std::fs::write(
        &toml_path,
        "name = \"app\"\nmethod = \"ip_hash\"\nbackends = [{ id = \"10.0.0.1:80\" }]\n",
    )
    .unwrap();
    let json_path = dir.join("pool.json");
    std::fs::write(
        &json_path,
        r#"{"name":"app","method":"ip_hash","backends":[{"id":"10.0.0.1:80"}]}"#,
    )
    .unwrap();
    let expected = config(Method::IpHash, None, vec![Backend::new("10.0.0.1:80")]).with_name("app");
    assert_eq!(load_file(&nginx_path).unwrap(), expected);
    assert_eq!(load_file(&toml_path).unwrap(), expected);
    assert_eq!(load_file(&json_path).unwrap(), expected);

    let missing = dir.join("missing.conf");
    let err = load_file(&missing).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Io { path, source }
            if *path == missing && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("cannot read {}: ", missing.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

impl UpstreamConfig {
    fn with_name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
}

// ---- properties ----------------------------------------------------------

/// Words that exercise the tokenizer: specials, quotes, escapes, unicode.
fn word() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z0-9:.$ {};#'\"\\\\\t\né-]{0,12}").unwrap()
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u8..=254, 1u16..=65535).prop_map(|(a, p)| format!("10.0.0.{a}:{p}")),
        "[a-z][a-z0-9.-]{0,10}".prop_map(|h| h.to_string()),
        "[a-z0-9/ ;{}#'\"]{1,10}".prop_map(|p| format!("unix:{p}")),
    ]
}

fn backend(backup: bool) -> impl Strategy<Value = Backend> {
    (
        address(),
        1u32..=crate::MAX_WEIGHT,
        0u32..5,
        0u64..100_000,
        0u32..3,
        (any::<bool>(), any::<bool>(), prop::option::of(word())),
    )
        .prop_map(
            move |(id, weight, max_fails, ft, max_conns, (down, drain, route))| {
                let mut b = Backend::new(id)
                    .weight(weight)
                    .max_fails(max_fails)
                    .fail_timeout(Duration::from_secs(ft + u64::from(max_fails > 0)))
                    .max_conns(max_conns)
                    .down(down)
                    .drain(drain)
                    .backup(backup);
                b.route = route.filter(|r| !r.is_empty());
                b
            },
        )
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::RoundRobin),
        Just(Method::LeastConn),
        Just(Method::IpHash),
        (word(), any::<bool>()).prop_map(|(key, consistent)| Method::Hash { key, consistent }),
        (any::<bool>(), any::<bool>()).prop_map(|(two, lc)| Method::Random {
            two,
            least_conn: two && lc
        }),
    ]
}

fn variable() -> impl Strategy<Value = String> {
    word().prop_map(|w| format!("${w}x"))
}

fn sticky() -> impl Strategy<Value = Option<Sticky>> {
    let cookie = (
        word().prop_map(|w| format!("c{w}")),
        prop::option::of(prop_oneof![
            Just(CookieExpires::Max),
            (0u64..1_000_000).prop_map(|s| CookieExpires::After(Duration::from_secs(s)))
        ]),
        prop::option::of(word().prop_map(|w| format!("d{w}"))),
        (any::<bool>(), any::<bool>()),
        prop::option::of(prop_oneof![
            Just(SameSite::Strict),
            Just(SameSite::Lax),
            Just(SameSite::None)
        ]),
        prop::option::of(word().prop_map(|w| format!("/{w}"))),
    )
        .prop_map(
            |(name, expires, domain, (httponly, secure), samesite, path)| {
                let mut c = StickyCookie::new(name);
                c.expires = expires;
                c.domain = domain;
                c.httponly = httponly;
                c.secure = secure;
                c.samesite = samesite;
                c.path = path;
                Sticky::Cookie(c)
            },
        );
    let route = prop::collection::vec(variable(), 1..3).prop_map(Sticky::Route);
    let learn = (
        prop::collection::vec(variable(), 1..3),
        prop::collection::vec(variable(), 1..3),
        "[a-z_]{1,8}",
        32_768u64..10_000_000,
        1u64..10_000_000,
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(|(create, lookup, zone, size, ms, (header, sync))| {
            let mut l = StickyLearn::new(create, lookup, zone, size);
            l.timeout = Duration::from_millis(ms);
            l.header = header;
            l.sync = sync;
            Sticky::Learn(l)
        });
    prop::option::of(prop_oneof![cookie, route, learn])
}

proptest! {
    #[test]
    fn generated_configs_round_trip(
        name in word(),
        method in method(),
        sticky in sticky(),
        primaries in prop::collection::vec(backend(false), 1..5),
        backups in prop::collection::vec(backend(true), 0..3),
    ) {
        let mut all = primaries;
        all.extend(backups);
        let mut seen = std::collections::HashSet::new();
        all.retain(|b| seen.insert(b.id.clone()));
        let cfg = UpstreamConfig::new(name, method, sticky, set(all)).unwrap();
        let text = cfg.to_nginx();
        prop_assert_eq!(parse_nginx(&text).unwrap(), cfg.clone(), "{}", text);
        let toml_text = toml::to_string(&cfg).unwrap();
        prop_assert_eq!(from_str_with_format(&toml_text, Format::Toml).unwrap(), cfg.clone());
        let json_text = serde_json::to_string(&cfg).unwrap();
        prop_assert_eq!(from_str_with_format(&json_text, Format::Json).unwrap(), cfg);
    }

    #[test]
    fn any_text_is_parsed_or_refused_and_accepted_text_round_trips(
        text in prop::string::string_regex(
            "(upstream|server|hash|random|sticky|cookie|learn|route|ip_hash|two|least_conn|\
              backup|down|drain|weight=[0-9]|fail_timeout=[0-9]+[smh]?|zone=z:1m|create=\\$a|\
              lookup=\\$b|[a-z0-9:.$]{1,4}|[ \t\n;{}#'\"\\\\]){0,40}"
        ).unwrap()
    ) {
        if let Ok(cfg) = parse_nginx(&text) {
            prop_assert_eq!(parse_nginx(&cfg.to_nginx()).unwrap(), cfg);
        }
    }

    #[test]
    fn arbitrary_unicode_never_panics(text in "\\PC{0,200}") {
        let _ = parse_nginx(&text);
    }
}

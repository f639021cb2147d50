//! The nginx `upstream` block: parsing and rendering.
//!
//! The parser reads statements with nginx's tokenizer and applies each
//! directive's rules in the order nginx does, so a refused block gets the
//! message `nginx -t` prints for it (checked against nginx 1.22, and for
//! `sticky` against the module's source). Where this crate refuses more
//! than nginx, the message says so.

use std::time::Duration;

use super::error::ConfigError;
use super::lexer::{quote, End, Lexer, Pos, Statement, Word};
use super::units::{format_size, parse_int, parse_size, parse_time, TimeUnit};
use super::{CookieExpires, Method, SameSite, Sticky, StickyCookie, StickyLearn, UpstreamConfig};
use crate::time::format_nginx_time;
use crate::{Backend, BackendSet, BuildError};

/// The smallest learn zone nginx accepts: eight 4 KiB pages.
pub(crate) const MIN_ZONE_SIZE: u64 = 8 * 4096;

/// Parses one nginx `upstream name { ... }` block.
///
/// The text holds the block alone, with comments and whitespace around
/// it as nginx allows. Directives: `server`, `ip_hash`, `hash`,
/// `least_conn`, `random` and `sticky`; `server` takes nginx's
/// `weight= max_fails= fail_timeout= max_conns= backup down` and NGINX
/// Plus's `route=` and `drain`.
///
/// # Errors
///
/// [`ConfigError::Nginx`] at the first word nginx would refuse, with
/// nginx's message; [`ConfigError::Backend`] when the servers do not make
/// a valid [`BackendSet`] (a repeated address, a weight above
/// [`MAX_WEIGHT`](crate::MAX_WEIGHT)). See the [module
/// docs](crate::config#limitations) for what this parser refuses beyond
/// nginx.
///
/// # Complexity
///
/// O(n) in the length of the text, plus O(s) expected for `s` servers.
///
/// # Examples
///
/// ```
/// use upstream::config::{parse_nginx, Method};
///
/// let cfg = parse_nginx(
///     "upstream app {
///         hash $request_uri consistent;   # ketama
///         server 10.0.0.1:8080 weight=2;
///         server 10.0.0.2:8080 max_fails=3 fail_timeout=1m30;
///         server 10.0.0.3:8080 down;
///     }",
/// )
/// .unwrap();
/// assert_eq!(cfg.name(), "app");
/// assert_eq!(
///     cfg.method(),
///     &Method::Hash { key: "$request_uri".into(), consistent: true }
/// );
/// assert_eq!(cfg.backends().backends()[1].fail_timeout.as_secs(), 90);
/// ```
pub fn parse_nginx(text: &str) -> Result<UpstreamConfig, ConfigError> {
    let mut lexer = Lexer::new(text);
    let mut found: Option<UpstreamConfig> = None;
    loop {
        let st = lexer.statement()?;
        match st.end {
            End::Eof => break,
            End::BlockDone => {
                return Err(ConfigError::at(st.end_pos, "}", "unexpected \"}\"".into()))
            }
            End::Semicolon | End::BlockStart => {}
        }
        let Some(first) = st.words.first() else {
            break;
        };
        if first.text != "upstream" {
            return Err(ConfigError::at(
                first.pos,
                first.text.clone(),
                format!("expected an \"upstream\" block, found \"{}\"", first.text),
            ));
        }
        if found.is_some() {
            return Err(ConfigError::at(
                first.pos,
                first.text.clone(),
                "expected one \"upstream\" block, found a second one".into(),
            ));
        }
        found = Some(upstream_block(&mut lexer, &st)?);
    }
    found.ok_or_else(|| {
        ConfigError::at(
            lexer.pos(),
            "",
            "expected an \"upstream\" block, found none".into(),
        )
    })
}

/// Whether servers may still be marked `backup`: nginx checks each
/// `server` line against the method declared above it.
fn backup_allowed(method: &Method) -> bool {
    matches!(method, Method::RoundRobin | Method::LeastConn)
}

/// What the block has declared so far.
struct Block {
    method: Method,
    /// Set once a method or `sticky` has taken the balancer slot; nginx
    /// warns "load balancing method redefined" after that.
    balancer_set: bool,
    sticky: Option<Sticky>,
    servers: Vec<(Backend, Pos)>,
}

fn upstream_block(lexer: &mut Lexer<'_>, st: &Statement) -> Result<UpstreamConfig, ConfigError> {
    let head = &st.words[0];
    if st.end != End::BlockStart {
        return Err(err(head, "directive \"upstream\" has no opening \"{\""));
    }
    if st.words.len() != 2 {
        return Err(arity(head));
    }
    let name = st.words[1].text.clone();
    let mut block = Block {
        method: Method::RoundRobin,
        balancer_set: false,
        sticky: None,
        servers: Vec::new(),
    };
    let close = loop {
        let st = lexer.statement()?;
        match st.end {
            End::BlockDone => break st.end_pos,
            End::Eof => {
                return Err(ConfigError::at(
                    st.end_pos,
                    "",
                    "unexpected end of file, expecting \"}\"".into(),
                ))
            }
            End::Semicolon | End::BlockStart => directive(&mut block, &st)?,
        }
    };
    if block.servers.is_empty() {
        return Err(ConfigError::at(
            close,
            "}",
            "no servers are inside upstream".into(),
        ));
    }
    if block.servers.iter().all(|(b, _)| b.backup) {
        return Err(err(head, &format!("no servers in upstream \"{name}\"")));
    }
    let positions: Vec<(String, Pos)> = block
        .servers
        .iter()
        .map(|(b, p)| (b.id.clone(), *p))
        .collect();
    let backends = block.servers.into_iter().map(|(b, _)| b).collect();
    let backends = BackendSet::new(backends).map_err(|e| at_backend(e, &positions))?;
    let cfg = UpstreamConfig {
        name,
        method: block.method,
        sticky: block.sticky,
        backends,
    };
    // The directives above enforce every shared rule; this keeps the two
    // paths from drifting apart silently.
    cfg.check().map_err(|reason| err(head, &reason))?;
    Ok(cfg)
}

/// Places a backend-set error on the server line it is about.
fn at_backend(e: BuildError, positions: &[(String, Pos)]) -> ConfigError {
    let pos = match &e {
        // The second of two equal addresses is the one at fault.
        BuildError::Duplicate { id } => positions.iter().rev().find(|(i, _)| i == id),
        BuildError::WeightTooLarge { id, .. }
        | BuildError::Conflict { id, .. }
        | BuildError::Unsupported { id, .. }
        | BuildError::NotFound { id } => positions.iter().find(|(i, _)| i == id),
        BuildError::TooMany { max, .. } => positions.get(*max),
        _ => None,
    };
    let (server, pos) = pos
        .or(positions.first())
        .cloned()
        .unwrap_or((String::new(), Pos { line: 1, column: 1 }));
    ConfigError::Backend {
        line: pos.line,
        column: pos.column,
        server,
        source: e,
    }
}

fn directive(block: &mut Block, st: &Statement) -> Result<(), ConfigError> {
    let head = &st.words[0];
    let known = [
        "server",
        "ip_hash",
        "hash",
        "least_conn",
        "random",
        "sticky",
    ];
    if head.text == "upstream" {
        return Err(err(head, "\"upstream\" directive is not allowed here"));
    }
    if !known.contains(&head.text.as_str()) {
        return Err(err(head, &format!("unknown directive \"{}\"", head.text)));
    }
    if st.end != End::Semicolon {
        return Err(err(
            head,
            &format!("directive \"{}\" is not terminated by \";\"", head.text),
        ));
    }
    let args = &st.words[1..];
    match head.text.as_str() {
        "server" => {
            if args.is_empty() {
                return Err(arity(head));
            }
            let backend = server(args, &block.method)?;
            block.servers.push((backend, args[0].pos));
            Ok(())
        }
        "sticky" => {
            if args.len() < 2 {
                return Err(arity(head));
            }
            if block.sticky.is_some() {
                return Err(err(head, "\"sticky\" directive is duplicate"));
            }
            block.sticky = Some(sticky(head, args)?);
            block.balancer_set = true;
            Ok(())
        }
        _ => {
            let method = method(head, args)?;
            if block.balancer_set {
                return Err(err(head, "load balancing method redefined"));
            }
            block.method = method;
            block.balancer_set = true;
            Ok(())
        }
    }
}

/// `ip_hash`, `least_conn`, `hash KEY [consistent]`, `random [two
/// [least_conn]]`.
fn method(head: &Word, args: &[Word]) -> Result<Method, ConfigError> {
    match (head.text.as_str(), args) {
        ("ip_hash", []) => Ok(Method::IpHash),
        ("least_conn", []) => Ok(Method::LeastConn),
        ("hash", [key]) => Ok(Method::Hash {
            key: key.text.clone(),
            consistent: false,
        }),
        ("hash", [key, flag]) => {
            if flag.text != "consistent" {
                return Err(invalid(flag));
            }
            Ok(Method::Hash {
                key: key.text.clone(),
                consistent: true,
            })
        }
        ("random", []) => Ok(Method::Random {
            two: false,
            least_conn: false,
        }),
        ("random", [two, rest @ ..]) if rest.len() <= 1 => {
            if two.text != "two" {
                return Err(invalid(two));
            }
            if let Some(lc) = rest.first() {
                if lc.text != "least_conn" {
                    return Err(invalid(lc));
                }
            }
            Ok(Method::Random {
                two: true,
                least_conn: !rest.is_empty(),
            })
        }
        _ => Err(arity(head)),
    }
}

/// `server ADDRESS [parameters]`: parameters first, then the address, as
/// nginx checks them.
fn server(args: &[Word], method: &Method) -> Result<Backend, ConfigError> {
    let address = &args[0];
    let mut b = Backend::new(address.text.clone());
    for w in &args[1..] {
        let t = w.text.as_str();
        if let Some(v) = t.strip_prefix("weight=") {
            b.weight = match parse_int(v) {
                Some(0) | None => return Err(invalid(w)),
                Some(n) => to_u32(w, n)?,
            };
        } else if let Some(v) = t.strip_prefix("max_conns=") {
            b.max_conns = to_u32(w, parse_int(v).ok_or_else(|| invalid(w))?)?;
        } else if let Some(v) = t.strip_prefix("max_fails=") {
            b.max_fails = to_u32(w, parse_int(v).ok_or_else(|| invalid(w))?)?;
        } else if let Some(v) = t.strip_prefix("fail_timeout=") {
            let secs = parse_time(v, TimeUnit::Seconds).ok_or_else(|| invalid(w))?;
            b.fail_timeout = Duration::from_secs(secs);
        } else if t == "backup" {
            if !backup_allowed(method) {
                return Err(err(
                    w,
                    "balancing method does not support parameter \"backup\"",
                ));
            }
            b.backup = true;
        } else if t == "down" {
            b.down = true;
        } else if t == "drain" {
            b.drain = true;
        } else if let Some(v) = t.strip_prefix("route=") {
            if v.is_empty() {
                return Err(invalid(w));
            }
            b.route = Some(v.to_string());
        } else {
            return Err(invalid(w));
        }
    }
    check_address(&address.text).map_err(|reason| err(address, &reason))?;
    Ok(b)
}

fn to_u32(w: &Word, n: u64) -> Result<u32, ConfigError> {
    u32::try_from(n).map_err(|_| {
        err(
            w,
            &format!(
                "invalid parameter \"{}\": above {}, the largest this crate supports",
                w.text,
                u32::MAX
            ),
        )
    })
}

/// The address checks nginx makes without resolving names: a unix path,
/// a bracketed IPv6 address, or a host with an optional port 1-65535.
pub(crate) fn check_address(text: &str) -> Result<(), String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!(
                "no path in the unix domain socket in upstream \"{text}\""
            ));
        }
        return Ok(());
    }
    let invalid_host = || format!("invalid host in upstream \"{text}\"");
    let invalid_port = || format!("invalid port in upstream \"{text}\"");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(invalid_host());
        };
        let after = &rest[close + 1..];
        match after.strip_prefix(':') {
            Some(port) => (&text[..close + 2], Some(port)),
            None if after.is_empty() => (text, None),
            None => return Err(invalid_host()),
        }
    } else {
        if text.contains('/') {
            return Err(invalid_host());
        }
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if let Some(port) = port {
        match parse_int(port) {
            Some(1..=65535) => {}
            _ => return Err(invalid_port()),
        }
    }
    if host.is_empty() {
        return Err(format!("no host in upstream \"{text}\""));
    }
    Ok(())
}

/// `sticky cookie|route|learn ...`.
fn sticky(head: &Word, args: &[Word]) -> Result<Sticky, ConfigError> {
    let kind = &args[0];
    match kind.text.as_str() {
        "cookie" => sticky_cookie(head, &args[1], &args[2..]).map(Sticky::Cookie),
        "route" => {
            for v in &args[1..] {
                if !is_variable(&v.text) {
                    return Err(err(v, &format!("invalid variable name \"{}\"", v.text)));
                }
            }
            Ok(Sticky::Route(
                args[1..].iter().map(|w| w.text.clone()).collect(),
            ))
        }
        "learn" => sticky_learn(head, &args[1..]).map(Sticky::Learn),
        _ => Err(err(kind, &format!("unknown parameter \"{}\"", kind.text))),
    }
}

/// A `$name` with a non-empty name.
pub(crate) fn is_variable(text: &str) -> bool {
    text.len() > 1 && text.starts_with('$')
}

/// nginx prefixes the reasons `sticky` returns with the directive's name.
fn sticky_err(w: &Word, reason: &str) -> ConfigError {
    err(w, &format!("\"sticky\" directive {reason}"))
}

fn sticky_cookie(head: &Word, name: &Word, params: &[Word]) -> Result<StickyCookie, ConfigError> {
    if name.text.is_empty() {
        return Err(sticky_err(head, "empty cookie name"));
    }
    let mut c = StickyCookie::new(name.text.clone());
    let dup = |w: &Word, p: &str| sticky_err(w, &format!("parameter \"{p}\" is duplicate"));
    let empty = |w: &Word, p: &str| sticky_err(w, &format!("no value for \"{p}\""));
    for w in params {
        let t = w.text.as_str();
        if let Some(v) = t.strip_prefix("domain=") {
            if c.domain.is_some() {
                return Err(dup(w, "domain"));
            }
            if v.is_empty() {
                return Err(empty(w, "domain"));
            }
            c.domain = Some(v.to_string());
        } else if let Some(v) = t.strip_prefix("path=") {
            if c.path.is_some() {
                return Err(dup(w, "path"));
            }
            if v.is_empty() {
                return Err(empty(w, "path"));
            }
            c.path = Some(v.to_string());
        } else if let Some(v) = t.strip_prefix("expires=") {
            if c.expires.is_some() {
                return Err(dup(w, "expires"));
            }
            c.expires = Some(if v == "max" {
                CookieExpires::Max
            } else {
                let secs = parse_time(v, TimeUnit::Seconds)
                    .ok_or_else(|| sticky_err(w, "invalid \"expires\" parameter value"))?;
                CookieExpires::After(Duration::from_secs(secs))
            });
        } else if t == "httponly" {
            if c.httponly {
                return Err(dup(w, "httponly"));
            }
            c.httponly = true;
        } else if t == "secure" {
            if c.secure {
                return Err(dup(w, "secure"));
            }
            c.secure = true;
        } else if let Some(v) = t.strip_prefix("samesite=") {
            if c.samesite.is_some() {
                return Err(dup(w, "samesite"));
            }
            let s = SameSite::parse(v)
                .ok_or_else(|| sticky_err(w, "invalid \"samesite\" parameter value"))?;
            c.samesite = Some(s);
        } else {
            return Err(err(w, &format!("unknown parameter \"{t}\"")));
        }
    }
    Ok(c)
}

fn sticky_learn(head: &Word, params: &[Word]) -> Result<StickyLearn, ConfigError> {
    let mut create = Vec::new();
    let mut lookup = Vec::new();
    let mut zone: Option<(String, u64)> = None;
    let mut timeout: Option<Duration> = None;
    let mut header = false;
    let mut sync = false;
    for w in params {
        let t = w.text.as_str();
        if let Some(v) = t.strip_prefix("zone=") {
            if zone.is_some() {
                return Err(sticky_err(w, "duplicate zone"));
            }
            let Some((name, size)) = v.split_once(':') else {
                return Err(sticky_err(w, "zone size is not specified"));
            };
            if name.is_empty() {
                return Err(sticky_err(w, "zone name is not specified"));
            }
            let size = parse_size(size).ok_or_else(|| sticky_err(w, "invalid zone size"))?;
            if size < MIN_ZONE_SIZE {
                return Err(sticky_err(w, "zone is too small"));
            }
            zone = Some((name.to_string(), size));
        } else if let Some(v) = t.strip_prefix("timeout=") {
            if timeout.is_some() {
                return Err(sticky_err(w, "duplicate timeout"));
            }
            match parse_time(v, TimeUnit::Millis) {
                Some(ms) if ms > 0 => timeout = Some(Duration::from_millis(ms)),
                _ => return Err(sticky_err(w, "invalid timeout")),
            }
        } else if let Some(v) = t.strip_prefix("create=") {
            if !is_variable(v) {
                return Err(sticky_err(
                    w,
                    "missing variable in the \"create\" parameter",
                ));
            }
            create.push(v.to_string());
        } else if let Some(v) = t.strip_prefix("lookup=") {
            if !is_variable(v) {
                return Err(sticky_err(
                    w,
                    "missing variable in the \"lookup\" parameter",
                ));
            }
            lookup.push(v.to_string());
        } else if t == "header" {
            header = true;
        } else if t == "sync" {
            sync = true;
        } else {
            return Err(err(w, &format!("unknown parameter \"{t}\"")));
        }
    }
    if lookup.is_empty() {
        return Err(sticky_err(head, "\"lookup\" parameter is not specified"));
    }
    if create.is_empty() {
        return Err(sticky_err(head, "\"create\" parameter is not specified"));
    }
    let Some((zone, zone_size)) = zone else {
        return Err(sticky_err(head, "\"zone\" parameter is not specified"));
    };
    let mut learn = StickyLearn::new(create, lookup, zone, zone_size);
    if let Some(t) = timeout {
        learn.timeout = t;
    }
    learn.header = header;
    learn.sync = sync;
    Ok(learn)
}

fn err(w: &Word, reason: &str) -> ConfigError {
    ConfigError::at(w.pos, w.text.clone(), reason.to_string())
}

fn invalid(w: &Word) -> ConfigError {
    err(w, &format!("invalid parameter \"{}\"", w.text))
}

fn arity(head: &Word) -> ConfigError {
    err(
        head,
        &format!("invalid number of arguments in \"{}\" directive", head.text),
    )
}

/// Renders `cfg` as an nginx block that [`parse_nginx`] reads back equal.
pub(crate) fn render(cfg: &UpstreamConfig) -> String {
    let mut out = format!("upstream {} {{\n", quote(&cfg.name));
    let mut head = String::new();
    if let Some(m) = render_method(&cfg.method) {
        head.push_str(&format!("    {m};\n"));
    }
    if let Some(s) = &cfg.sticky {
        head.push_str(&format!("    {};\n", render_sticky(s)));
    }
    let servers: String = cfg
        .backends
        .backends()
        .iter()
        .map(|b| format!("    {};\n", render_server(b)))
        .collect();
    // nginx accepts backups under a hash method only when they are
    // declared above it, so such blocks keep that order.
    let backups_first =
        !backup_allowed(&cfg.method) && cfg.backends.backends().iter().any(|b| b.backup);
    if backups_first {
        out.push_str(&servers);
        out.push_str(&head);
    } else {
        out.push_str(&head);
        out.push_str(&servers);
    }
    out.push_str("}\n");
    out
}

fn render_method(m: &Method) -> Option<String> {
    Some(match m {
        Method::RoundRobin => return None,
        Method::LeastConn => "least_conn".into(),
        Method::IpHash => "ip_hash".into(),
        Method::Hash { key, consistent } => {
            let flag = if *consistent { " consistent" } else { "" };
            format!("hash {}{flag}", quote(key))
        }
        Method::Random { two, least_conn } => match (two, least_conn) {
            (false, _) => "random".into(),
            (true, false) => "random two".into(),
            (true, true) => "random two least_conn".into(),
        },
    })
}

fn render_server(b: &Backend) -> String {
    let mut words = vec!["server".to_string(), quote(&b.id)];
    let mut param = |p: String| words.push(quote(&p));
    if b.weight != 1 {
        param(format!("weight={}", b.weight));
    }
    if b.max_fails != 1 {
        param(format!("max_fails={}", b.max_fails));
    }
    if b.fail_timeout != Duration::from_secs(10) {
        param(format!("fail_timeout={}s", b.fail_timeout.as_secs()));
    }
    if b.max_conns != 0 {
        param(format!("max_conns={}", b.max_conns));
    }
    if let Some(route) = &b.route {
        param(format!("route={route}"));
    }
    if b.backup {
        param("backup".into());
    }
    if b.down {
        param("down".into());
    }
    if b.drain {
        param("drain".into());
    }
    words.join(" ")
}

fn render_sticky(s: &Sticky) -> String {
    let mut words: Vec<String> = vec!["sticky".into()];
    match s {
        Sticky::Cookie(c) => {
            words.push("cookie".into());
            words.push(quote(&c.name));
            if let Some(e) = &c.expires {
                words.push(quote(&format!("expires={e}")));
            }
            if let Some(d) = &c.domain {
                words.push(quote(&format!("domain={d}")));
            }
            if c.httponly {
                words.push("httponly".into());
            }
            if let Some(s) = &c.samesite {
                words.push(format!("samesite={s}"));
            }
            if c.secure {
                words.push("secure".into());
            }
            if let Some(p) = &c.path {
                words.push(quote(&format!("path={p}")));
            }
        }
        Sticky::Route(vars) => {
            words.push("route".into());
            words.extend(vars.iter().map(|v| quote(v)));
        }
        Sticky::Learn(l) => {
            words.push("learn".into());
            words.extend(l.create.iter().map(|v| quote(&format!("create={v}"))));
            words.extend(l.lookup.iter().map(|v| quote(&format!("lookup={v}"))));
            words.push(quote(&format!(
                "zone={}:{}",
                l.zone,
                format_size(l.zone_size)
            )));
            words.push(format!("timeout={}", format_nginx_time(l.timeout)));
            if l.header {
                words.push("header".into());
            }
            if l.sync {
                words.push("sync".into());
            }
        }
    }
    words.join(" ")
}

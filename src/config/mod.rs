//! Upstream configuration: nginx `upstream` blocks, TOML and JSON.
//!
//! Teams moving off nginx keep their `upstream` blocks. [`parse_nginx`]
//! reads one block into an [`UpstreamConfig`]: the balancing
//! [`Method`], the [`Sticky`] session rule and the [`BackendSet`], and
//! refuses what nginx refuses with nginx's own message, placed at the
//! line and column of the word at fault. [`UpstreamConfig::to_nginx`]
//! writes the block back, and the same configuration reads and writes as
//! TOML or JSON through serde; [`load_file`] picks the format from the
//! file's extension.
//!
//! ```
//! use upstream::config::{from_str_with_format, Format, Method};
//!
//! let toml = r#"
//!     name = "app"
//!     method = { hash = { key = "$request_uri", consistent = true } }
//!
//!     [[backends]]
//!     id = "10.0.0.1:8080"
//!     weight = 2
//!
//!     [[backends]]
//!     id = "10.0.0.2:8080"
//!     fail_timeout = "1m"
//! "#;
//! let cfg = from_str_with_format(toml, Format::Toml).unwrap();
//! assert_eq!(
//!     cfg.to_nginx(),
//!     "upstream app {
//!     hash $request_uri consistent;
//!     server 10.0.0.1:8080 weight=2;
//!     server 10.0.0.2:8080 fail_timeout=60s;
//! }
//! "
//! );
//! ```
//!
//! # The serde shape
//!
//! Field for field the Rust types: `name`, `method`, an optional
//! `sticky` and `backends` (each a [`Backend`] with nginx's defaults, its
//! times in nginx's syntax). Enums are externally tagged in snake case:
//! `method = "ip_hash"`, `method = { random = { two = true } }`,
//! `sticky = { cookie = { name = "srv_id", expires = "1h" } }`. A missing
//! `method` is round robin. Every format goes through the same checks as
//! the nginx text, so anything loaded can be written as a block nginx
//! accepts.
//!
//! # Limitations
//!
//! - Names are not resolved: a host name is one backend, where nginx
//!   makes one server per address the name resolves to; nginx's checks
//!   that need DNS or a running server (unknown `$variables`, sticky
//!   zones shared between blocks) are not made.
//! - Directives that do not choose a backend (`keepalive`, `zone`,
//!   `keepalive_timeout`, ...) are refused as unknown, as are NGINX Plus
//!   parameters other than `sticky`, `route=` and `drain`.
//! - Refused here although nginx accepts them: a method declared twice
//!   or after `sticky` (nginx only warns "load balancing method
//!   redefined" and drops the earlier one), two servers with the same
//!   address, a weight above [`MAX_WEIGHT`](crate::MAX_WEIGHT), a count
//!   above `u32::MAX`, `samesite=` values given by a variable, and
//!   `route=` with no value.
//! - `fail_timeout` and cookie `expires` are whole seconds, as in nginx;
//!   a [`Backend`] built in code with a fraction of a second is refused.
//! - The smallest learn zone is 32 KiB, nginx's limit with 4 KiB pages.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Backend, BackendSet};

mod error;
mod lexer;
mod nginx;
mod units;

pub use error::ConfigError;
pub use nginx::parse_nginx;

use units::{parse_time, TimeUnit};

/// One upstream: a name, a balancing method, an optional sticky rule and
/// the backends in config order.
///
/// Built by [`parse_nginx`], by serde from TOML or JSON, or by
/// [`UpstreamConfig::new`]; each checks the same rules, so every value of
/// this type renders with [`to_nginx`](UpstreamConfig::to_nginx) to a
/// block that parses back equal.
///
/// # Examples
///
/// ```
/// use upstream::config::{parse_nginx, Method};
///
/// let cfg = parse_nginx("upstream app { least_conn; server 10.0.0.1:80 backup; server b:80; }")
///     .unwrap();
/// assert_eq!(cfg.method(), &Method::LeastConn);
/// assert!(cfg.backends().backends()[0].backup);
/// assert_eq!(parse_nginx(&cfg.to_nginx()).unwrap(), cfg);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamConfig {
    name: String,
    method: Method,
    #[serde(skip_serializing_if = "Option::is_none")]
    sticky: Option<Sticky>,
    backends: BackendSet,
}

/// How nginx chooses among the servers of an upstream.
///
/// # Examples
///
/// ```
/// use upstream::config::Method;
///
/// let m: Method = serde_json::from_str(r#"{"hash":{"key":"$remote_addr"}}"#).unwrap();
/// assert_eq!(m, Method::Hash { key: "$remote_addr".into(), consistent: false });
/// assert_eq!(Method::default(), Method::RoundRobin);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Method {
    /// No method directive: nginx's smooth weighted round robin.
    #[default]
    RoundRobin,
    /// `least_conn;`
    LeastConn,
    /// `ip_hash;`
    IpHash,
    /// `hash KEY [consistent];`
    Hash {
        /// The key expression exactly as written (`$request_uri`,
        /// `$cookie_id$arg_x`); the caller evaluates it per request.
        key: String,
        /// `consistent`: ketama rather than nginx's remapping hash.
        #[serde(default)]
        consistent: bool,
    },
    /// `random [two [least_conn]];`
    Random {
        /// `two`: pick two at random and keep the better one.
        #[serde(default)]
        two: bool,
        /// `least_conn` after `two`: the better one has fewer active
        /// connections. Needs `two`.
        #[serde(default)]
        least_conn: bool,
    },
}

/// nginx's `sticky` directive: how a client is bound to a backend.
///
/// # Examples
///
/// ```
/// use upstream::config::{parse_nginx, Sticky};
///
/// let cfg = parse_nginx(
///     "upstream app { sticky route $route_cookie $route_uri; server a:80 route=a; }",
/// )
/// .unwrap();
/// assert_eq!(
///     cfg.sticky(),
///     Some(&Sticky::Route(vec!["$route_cookie".into(), "$route_uri".into()]))
/// );
/// assert_eq!(cfg.backends().backends()[0].route.as_deref(), Some("a"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Sticky {
    /// `sticky cookie NAME ...`: the backend's route goes into a cookie.
    Cookie(StickyCookie),
    /// `sticky route $var ...`: the first non-empty variable holds the
    /// route of the backend to use.
    Route(Vec<String>),
    /// `sticky learn ...`: sessions learned from responses.
    Learn(StickyLearn),
}

/// The parameters of `sticky cookie`.
///
/// # Examples
///
/// ```
/// use upstream::config::{SameSite, StickyCookie};
///
/// let mut c = StickyCookie::new("srv_id");
/// c.samesite = Some(SameSite::Lax);
/// assert_eq!(c.name, "srv_id");
/// assert!(c.expires.is_none() && !c.secure);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StickyCookie {
    /// The cookie's name.
    pub name: String,
    /// `expires=TIME` or `expires=max`; none makes a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<CookieExpires>,
    /// `domain=`, as written (it may hold variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `httponly`
    #[serde(default)]
    pub httponly: bool,
    /// `samesite=strict|lax|none`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samesite: Option<SameSite>,
    /// `secure`
    #[serde(default)]
    pub secure: bool,
    /// `path=`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl StickyCookie {
    /// A session cookie named `name` with no other attribute.
    pub fn new(name: impl Into<String>) -> Self {
        StickyCookie {
            name: name.into(),
            expires: None,
            domain: None,
            httponly: false,
            samesite: None,
            secure: false,
            path: None,
        }
    }
}

/// When a sticky cookie expires.
///
/// Serialized as `"max"` or a time in whole seconds (`"1h"`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::config::CookieExpires;
///
/// let e: CookieExpires = serde_json::from_str(r#""1h""#).unwrap();
/// assert_eq!(e, CookieExpires::After(Duration::from_secs(3600)));
/// assert_eq!(e.to_string(), "3600s");
/// assert_eq!(CookieExpires::Max.to_string(), "max");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieExpires {
    /// `expires=max`: the end of 2037.
    Max,
    /// A lifetime in whole seconds.
    After(Duration),
}

impl fmt::Display for CookieExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CookieExpires::Max => f.write_str("max"),
            CookieExpires::After(d) => write!(f, "{}s", d.as_secs()),
        }
    }
}

impl Serialize for CookieExpires {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CookieExpires {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "max" {
            return Ok(CookieExpires::Max);
        }
        parse_time(&text, TimeUnit::Seconds)
            .map(|s| CookieExpires::After(Duration::from_secs(s)))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "expires '{text}' is neither \"max\" nor a time in seconds such as 1h or 30m"
                ))
            })
    }
}

/// The `SameSite` attribute of a sticky cookie.
///
/// # Examples
///
/// ```
/// use upstream::config::SameSite;
///
/// assert_eq!(SameSite::Strict.to_string(), "strict");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameSite {
    /// `samesite=strict`
    Strict,
    /// `samesite=lax`
    Lax,
    /// `samesite=none`
    None,
}

impl SameSite {
    /// nginx compares the value without regard to case.
    fn parse(text: &str) -> Option<Self> {
        [SameSite::Strict, SameSite::Lax, SameSite::None]
            .into_iter()
            .find(|s| s.to_string().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for SameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SameSite::Strict => "strict",
            SameSite::Lax => "lax",
            SameSite::None => "none",
        })
    }
}

/// The parameters of `sticky learn`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::config::StickyLearn;
///
/// let l = StickyLearn::new(
///     vec!["$upstream_cookie_sid".into()],
///     vec!["$cookie_sid".into()],
///     "sessions",
///     1 << 20,
/// );
/// assert_eq!(l.timeout, Duration::from_secs(600));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StickyLearn {
    /// `create=$var`, in order: where a new session id is found in a
    /// response.
    pub create: Vec<String>,
    /// `lookup=$var`, in order: where a known session id is found in a
    /// request.
    pub lookup: Vec<String>,
    /// The zone's name, from `zone=NAME:SIZE`.
    pub zone: String,
    /// The zone's size in bytes, from `zone=NAME:SIZE` (`"1m"` or a
    /// number in TOML and JSON).
    #[serde(with = "size_serde")]
    pub zone_size: u64,
    /// `timeout=`: how long an unused session is kept; 10 minutes when
    /// not written.
    #[serde(default = "default_learn_timeout", with = "msec_serde")]
    pub timeout: Duration,
    /// `header`: learn as soon as the response headers arrive.
    #[serde(default)]
    pub header: bool,
    /// `sync` (NGINX Plus): share sessions across a cluster.
    #[serde(default)]
    pub sync: bool,
}

fn default_learn_timeout() -> Duration {
    Duration::from_secs(600)
}

impl StickyLearn {
    /// A learn rule with nginx's defaults: 10 minute timeout, neither
    /// `header` nor `sync`.
    pub fn new(
        create: Vec<String>,
        lookup: Vec<String>,
        zone: impl Into<String>,
        zone_size: u64,
    ) -> Self {
        StickyLearn {
            create,
            lookup,
            zone: zone.into(),
            zone_size,
            timeout: default_learn_timeout(),
            header: false,
            sync: false,
        }
    }
}

/// The text formats a configuration is read from.
///
/// # Examples
///
/// ```
/// use upstream::config::Format;
///
/// assert_eq!(Format::from_path("pool.toml".as_ref()), Format::Toml);
/// assert_eq!(Format::from_path("pool.json".as_ref()), Format::Json);
/// assert_eq!(Format::from_path("upstream.conf".as_ref()), Format::Nginx);
/// assert_eq!(Format::from_path("pool".as_ref()), Format::Nginx);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// An nginx `upstream` block.
    Nginx,
    /// TOML, in the [serde shape](self#the-serde-shape).
    Toml,
    /// JSON, in the [serde shape](self#the-serde-shape).
    Json,
}

impl Format {
    /// The format a file's extension names: `.toml` and `.json` (in any
    /// case), and nginx for every other name, `.conf` included, since
    /// nginx files carry no fixed extension.
    pub fn from_path(path: &Path) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("toml") => Format::Toml,
            Some("json") => Format::Json,
            _ => Format::Nginx,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Nginx => "nginx",
            Format::Toml => "TOML",
            Format::Json => "JSON",
        })
    }
}

/// Reads a configuration in the given format.
///
/// # Errors
///
/// [`ConfigError::Nginx`] or [`ConfigError::Backend`] for nginx text (see
/// [`parse_nginx`]); [`ConfigError::Document`] for TOML or JSON that does
/// not parse, does not have the [serde shape](self#the-serde-shape) or
/// breaks a rule of [`UpstreamConfig::new`].
///
/// # Examples
///
/// ```
/// use upstream::config::{from_str_with_format, Format, Method};
///
/// let json = r#"{"name":"app","method":"ip_hash","backends":[{"id":"10.0.0.1:80"}]}"#;
/// let cfg = from_str_with_format(json, Format::Json).unwrap();
/// assert_eq!(cfg.method(), &Method::IpHash);
///
/// let err = from_str_with_format(r#"{"name":"app","backends":[]}"#, Format::Json);
/// assert_eq!(
///     err.unwrap_err().to_string(),
///     "JSON upstream \"app\": no servers are inside upstream"
/// );
/// ```
pub fn from_str_with_format(text: &str, format: Format) -> Result<UpstreamConfig, ConfigError> {
    let document = |message: String| ConfigError::Document { format, message };
    match format {
        Format::Nginx => parse_nginx(text),
        Format::Toml => toml::from_str(text).map_err(|e| document(e.to_string())),
        Format::Json => serde_json::from_str(text).map_err(|e| document(e.to_string())),
    }
}

/// Reads a configuration file, in the format its extension names (see
/// [`Format::from_path`]).
///
/// # Errors
///
/// [`ConfigError::Io`] naming the path when the file cannot be read or is
/// not UTF-8; otherwise as [`from_str_with_format`].
pub fn load_file(path: impl AsRef<Path>) -> Result<UpstreamConfig, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_str_with_format(&text, Format::from_path(path))
}

impl UpstreamConfig {
    /// Checks the parts against nginx's rules and joins them.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the rule: no servers, only backup
    /// servers, a weight of 0, a fraction of a second in `fail_timeout`, a
    /// `hash_key` (nginx has none), an address nginx refuses, `random
    /// least_conn` without `two`, or a sticky parameter nginx refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::config::{Method, UpstreamConfig};
    /// use upstream::{Backend, BackendSet};
    ///
    /// let set = BackendSet::new(vec![Backend::new("10.0.0.1:80").weight(0)]).unwrap();
    /// let err = UpstreamConfig::new("app", Method::IpHash, None, set).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "upstream \"app\": server \"10.0.0.1:80\" has weight 0, which nginx refuses; \
    ///      mark it down or drain instead"
    /// );
    /// ```
    pub fn new(
        name: impl Into<String>,
        method: Method,
        sticky: Option<Sticky>,
        backends: BackendSet,
    ) -> Result<Self, ConfigError> {
        let cfg = UpstreamConfig {
            name: name.into(),
            method,
            sticky,
            backends,
        };
        cfg.check().map_err(|reason| ConfigError::Invalid {
            name: cfg.name.clone(),
            reason,
        })?;
        Ok(cfg)
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The balancing method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The sticky rule, if any.
    pub fn sticky(&self) -> Option<&Sticky> {
        self.sticky.as_ref()
    }

    /// The backends in config order.
    pub fn backends(&self) -> &BackendSet {
        &self.backends
    }

    /// The parts: name, method, sticky rule and backends.
    pub fn into_parts(self) -> (String, Method, Option<Sticky>, BackendSet) {
        (self.name, self.method, self.sticky, self.backends)
    }

    /// Writes the configuration as an nginx `upstream` block that
    /// [`parse_nginx`] reads back equal and nginx accepts (given NGINX
    /// Plus or nginx 1.29 for `sticky`, `route=` and `drain`).
    ///
    /// Parameters at their defaults are left out. Servers come after the
    /// method directive, except when backups are used with a method that
    /// refuses them: nginx accepts those only above the method, so there
    /// the servers come first.
    ///
    /// # Complexity
    ///
    /// O(s) for `s` servers.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::config::parse_nginx;
    ///
    /// let cfg = parse_nginx("upstream  app{server 10.0.0.1  weight=1;ip_hash;}").unwrap();
    /// assert_eq!(cfg.to_nginx(), "upstream app {\n    ip_hash;\n    server 10.0.0.1;\n}\n");
    /// ```
    pub fn to_nginx(&self) -> String {
        nginx::render(self)
    }

    /// The rules every format shares; the nginx parser meets them by
    /// construction, serde and [`new`](Self::new) check them here.
    fn check(&self) -> Result<(), String> {
        let backends = self.backends.backends();
        if backends.is_empty() {
            return Err("no servers are inside upstream".into());
        }
        if backends.iter().all(|b| b.backup) {
            return Err(format!("no servers in upstream \"{}\"", self.name));
        }
        for b in backends {
            check_backend(b)?;
        }
        if let Method::Random {
            two: false,
            least_conn: true,
        } = self.method
        {
            return Err("random: least_conn needs two (\"random two least_conn\")".into());
        }
        match &self.sticky {
            Some(Sticky::Cookie(c)) => check_cookie(c),
            Some(Sticky::Route(vars)) => check_route(vars),
            Some(Sticky::Learn(l)) => check_learn(l),
            None => Ok(()),
        }
    }
}

fn check_backend(b: &Backend) -> Result<(), String> {
    let id = &b.id;
    nginx::check_address(id)?;
    if b.weight == 0 {
        return Err(format!(
            "server \"{id}\" has weight 0, which nginx refuses; mark it down or drain instead"
        ));
    }
    if b.fail_timeout.subsec_nanos() != 0 || i64::try_from(b.fail_timeout.as_secs()).is_err() {
        return Err(format!(
            "server \"{id}\": fail_timeout {:?} is not a whole number of seconds nginx can hold",
            b.fail_timeout
        ));
    }
    if b.hash_key.is_some() {
        return Err(format!(
            "server \"{id}\": hash_key has no nginx equivalent; the address is what nginx hashes"
        ));
    }
    if b.route.as_deref() == Some("") {
        return Err(format!("server \"{id}\": route is empty"));
    }
    Ok(())
}

fn check_cookie(c: &StickyCookie) -> Result<(), String> {
    if c.name.is_empty() {
        return Err("\"sticky\" directive empty cookie name".into());
    }
    if c.domain.as_deref() == Some("") {
        return Err("\"sticky\" directive no value for \"domain\"".into());
    }
    if c.path.as_deref() == Some("") {
        return Err("\"sticky\" directive no value for \"path\"".into());
    }
    if let Some(CookieExpires::After(d)) = c.expires {
        if d.subsec_nanos() != 0 || i64::try_from(d.as_secs()).is_err() {
            return Err("\"sticky\" directive invalid \"expires\" parameter value".into());
        }
    }
    Ok(())
}

fn check_route(vars: &[String]) -> Result<(), String> {
    if vars.is_empty() {
        return Err("sticky route needs at least one variable".into());
    }
    match vars.iter().find(|v| !nginx::is_variable(v)) {
        Some(v) => Err(format!("invalid variable name \"{v}\"")),
        None => Ok(()),
    }
}

fn check_learn(l: &StickyLearn) -> Result<(), String> {
    let s = |reason: &str| Err(format!("\"sticky\" directive {reason}"));
    if l.lookup.is_empty() {
        return s("\"lookup\" parameter is not specified");
    }
    if l.create.is_empty() {
        return s("\"create\" parameter is not specified");
    }
    if !l.create.iter().all(|v| nginx::is_variable(v)) {
        return s("missing variable in the \"create\" parameter");
    }
    if !l.lookup.iter().all(|v| nginx::is_variable(v)) {
        return s("missing variable in the \"lookup\" parameter");
    }
    if l.zone.is_empty() {
        return s("zone name is not specified");
    }
    if l.zone.contains(':') {
        return Err(format!(
            "sticky learn zone name \"{}\" contains ':', which nginx reads as the size",
            l.zone
        ));
    }
    if l.zone_size < nginx::MIN_ZONE_SIZE || i64::try_from(l.zone_size).is_err() {
        return s("zone is too small");
    }
    let ms = l.timeout.as_millis();
    if ms == 0 || l.timeout.subsec_nanos() % 1_000_000 != 0 || i64::try_from(ms).is_err() {
        return s("invalid timeout");
    }
    Ok(())
}

/// The serde form before the rules are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    #[serde(default)]
    method: Method,
    #[serde(default)]
    sticky: Option<Sticky>,
    backends: BackendSet,
}

impl<'de> Deserialize<'de> for UpstreamConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawConfig::deserialize(d)?;
        UpstreamConfig::new(raw.name, raw.method, raw.sticky, raw.backends)
            .map_err(serde::de::Error::custom)
    }
}

/// Serde glue: a learn timeout as an nginx time in milliseconds mode.
mod msec_serde {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer, Serializer};

    use super::units::{parse_time, TimeUnit};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::format_nginx_time(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_time(&text, TimeUnit::Millis)
            .map(Duration::from_millis)
            .ok_or_else(|| {
                de::Error::custom(format!("'{text}' is not a time such as 10m or 500ms"))
            })
    }
}

/// Serde glue: a zone size as bytes or nginx's size syntax.
mod size_serde {
    use serde::{de, Deserialize, Deserializer, Serializer};

    use super::units::{format_size, parse_size};

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(*n))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(n),
            Raw::Text(t) => parse_size(&t)
                .ok_or_else(|| de::Error::custom(format!("'{t}' is not a size such as 1m or 32k"))),
        }
    }
}

#[cfg(test)]
mod tests;

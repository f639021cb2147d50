//! The upstream file: which backends, balanced how.
//!
//! The file is read by the crate's [`upstream::config`]: an nginx
//! `upstream` block, or the same in TOML or JSON (chosen by extension).
//!
//! ```nginx
//! upstream app {
//!     ip_hash;
//!     server 10.0.0.1:8080 weight=2;
//!     server 10.0.0.2:8080 max_fails=3 fail_timeout=30s;
//!     sticky cookie srv_id expires=1h path=/;
//! }
//! ```
//!
//! The file's method can be overridden with `--policy` ([`PolicyName`]),
//! which also offers the crate's policies nginx has no directive for
//! (power of two choices, peak EWMA, Maglev...).

use std::path::Path;

use upstream::config::{self, Method};
use upstream::envoy::{Maglev, RingHash};
use upstream::policy::AnyPolicy;
use upstream::{
    BackendSet, IpHash, LeastConn, P2c, PeakEwma, Policy, Random, Rendezvous, RoundRobin,
};

use crate::key::KeySpec;

/// A balancing policy chosen on the command line, overriding the file's
/// method.
///
/// Under Maglev, ring hash and rendezvous, a `hash` key that evaluates to
/// empty (a missing cookie) is spread by the policy, where nginx's hash
/// methods fall back to round robin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyName {
    /// nginx's smooth weighted round robin.
    #[value(name = "round_robin")]
    RoundRobin,
    /// nginx's least_conn: fewest active requests per weight.
    #[value(name = "least_conn")]
    LeastConn,
    /// nginx's ip_hash, keyed by the client address.
    #[value(name = "ip_hash")]
    IpHash,
    /// Weighted random.
    #[value(name = "random")]
    Random,
    /// Power of two choices over active requests per weight.
    #[value(name = "p2c")]
    P2c,
    /// Power of two choices over peak-EWMA latency × load.
    #[value(name = "peak_ewma")]
    PeakEwma,
    /// Envoy's Maglev, keyed by the file's hash key or the client address.
    #[value(name = "maglev")]
    Maglev,
    /// Envoy's ring hash, keyed as maglev.
    #[value(name = "ring_hash")]
    RingHash,
    /// Weighted rendezvous hashing, keyed as maglev.
    #[value(name = "rendezvous")]
    Rendezvous,
}

impl PolicyName {
    /// The policy.
    pub fn policy(self) -> AnyPolicy {
        match self {
            PolicyName::RoundRobin => AnyPolicy::RoundRobin(RoundRobin),
            PolicyName::LeastConn => AnyPolicy::LeastConn(LeastConn),
            PolicyName::IpHash => AnyPolicy::IpHash(IpHash),
            PolicyName::Random => AnyPolicy::Random(Random),
            PolicyName::P2c => AnyPolicy::P2c(P2c::new()),
            PolicyName::PeakEwma => AnyPolicy::PeakEwma(PeakEwma::new()),
            PolicyName::Maglev => AnyPolicy::Maglev(Maglev::new()),
            PolicyName::RingHash => AnyPolicy::RingHash(RingHash::new()),
            PolicyName::Rendezvous => AnyPolicy::Rendezvous(Rendezvous),
        }
    }

    /// True for the policies that pick by a key.
    fn is_keyed(self) -> bool {
        matches!(
            self,
            PolicyName::IpHash | PolicyName::Maglev | PolicyName::RingHash | PolicyName::Rendezvous
        )
    }
}

/// One upstream block, loaded and validated.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The block's name.
    pub name: String,
    /// Its balancing method.
    pub method: Method,
    /// Its servers, in file order.
    pub backends: BackendSet,
    /// Its `sticky` directive, if any.
    pub sticky: Option<config::Sticky>,
}

/// Reads and validates the upstream file at `path`.
///
/// # Errors
///
/// The file cannot be read or does not parse; the message names the file
/// and the fault, on one line.
pub fn load(path: &Path) -> Result<Upstream, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {}", path.display(), one_line(e));
    let cfg = config::load_file(path).map_err(|e| at(&e))?;
    let (name, method, sticky, backends) = cfg.into_parts();
    Ok(Upstream {
        name,
        method,
        backends,
        sticky,
    })
}

/// A message on one line: parser errors can span several, with a caret
/// under the fault, which a log line should not.
fn one_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_snippet(l))
        .collect();
    lines.join(" ")
}

/// A quoted source line or caret line of a parser message (`3 | text`,
/// `  |  ^^^`).
fn is_snippet(line: &str) -> bool {
    line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
        .starts_with('|')
}

/// The method as nginx writes it.
pub fn method_text(method: &Method) -> String {
    match method {
        Method::RoundRobin => "round robin".into(),
        Method::LeastConn => "least_conn".into(),
        Method::IpHash => "ip_hash".into(),
        Method::Hash { key, consistent } => {
            format!("hash {key}{}", if *consistent { " consistent" } else { "" })
        }
        Method::Random { two, least_conn } => format!(
            "random{}{}",
            if *two { " two" } else { "" },
            if *least_conn { " least_conn" } else { "" }
        ),
        other => format!("{other:?}"),
    }
}

/// The policy: `chosen` if given, else the file's `method`. Chosen at
/// runtime so that a reload may change the method too.
pub fn policy_for(method: &Method, chosen: Option<PolicyName>) -> AnyPolicy {
    match chosen {
        Some(name) => name.policy(),
        None => AnyPolicy::for_method(method),
    }
}

/// The policy as the log names it.
pub fn policy_text(method: &Method, chosen: Option<PolicyName>) -> String {
    match chosen {
        Some(name) => format!("{} (--policy)", name.policy().name()),
        None => method_text(method),
    }
}

/// How requests are keyed: by the file's `method`, or for a `chosen`
/// policy that picks by key, by the file's `hash` key if it has one, else
/// by the client address.
///
/// # Errors
///
/// A hash key expression that does not parse.
pub fn key_spec(method: &Method, chosen: Option<PolicyName>) -> Result<KeySpec, String> {
    match (chosen, method) {
        (Some(name), _) if !name.is_keyed() => Ok(KeySpec::None),
        (Some(PolicyName::IpHash), _) => Ok(KeySpec::ClientIp),
        (Some(_), Method::Hash { key, .. }) => KeySpec::parse(key),
        (Some(_), _) => Ok(KeySpec::ClientIp),
        (None, Method::IpHash) => Ok(KeySpec::ClientIp),
        (None, Method::Hash { key, .. }) => KeySpec::parse(key),
        (None, _) => Ok(KeySpec::None),
    }
}

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
//! }
//! ```

use std::path::Path;

use upstream::config::{self, Method};
use upstream::policy::AnyPolicy;
use upstream::BackendSet;

use crate::key::KeySpec;

/// One upstream block, loaded and validated.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The block's name.
    pub name: String,
    /// Its balancing method.
    pub method: Method,
    /// Its servers, in file order.
    pub backends: BackendSet,
}

/// Reads and validates the upstream file at `path`.
///
/// # Errors
///
/// The file cannot be read, does not parse, or asks for what this proxy
/// does not do (`sticky`); the message names the file and the fault, on
/// one line.
pub fn load(path: &Path) -> Result<Upstream, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {}", path.display(), one_line(e));
    let cfg = config::load_file(path).map_err(|e| at(&e))?;
    let (name, method, sticky, backends) = cfg.into_parts();
    if sticky.is_some() {
        return Err(at(&"the sticky directive is not supported by this proxy"));
    }
    Ok(Upstream {
        name,
        method,
        backends,
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

/// How requests are keyed under `method`.
///
/// # Errors
///
/// A hash key expression that does not parse.
pub fn key_spec(method: &Method) -> Result<KeySpec, String> {
    match method {
        Method::IpHash => Ok(KeySpec::ClientIp),
        Method::Hash { key, .. } => KeySpec::parse(key),
        _ => Ok(KeySpec::None),
    }
}

/// The policy for `method`, chosen at runtime so that a reload may change
/// the method too.
pub fn policy_for(method: &Method) -> AnyPolicy {
    AnyPolicy::for_method(method)
}

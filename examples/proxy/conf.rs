//! The upstream file: which backends, balanced how.
//!
//! Until the crate's `upstream::config` module lands this reads a small
//! TOML or JSON form of an nginx upstream block:
//!
//! ```toml
//! name = "app"
//! method = "ip_hash"     # round_robin, least_conn, ip_hash, "hash $request_uri consistent"
//! [[server]]
//! id = "127.0.0.1:8081"
//! weight = 2
//! ```

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use upstream::{Backend, BackendSet, LeastConn, Policy, RoundRobin};

use crate::key::KeySpec;

/// nginx's balancing method of an upstream block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// No directive: smooth weighted round robin.
    RoundRobin,
    /// `least_conn`.
    LeastConn,
    /// `ip_hash`.
    IpHash,
    /// `hash KEY [consistent]`.
    Hash {
        /// The key expression, such as `$request_uri`.
        key: String,
        /// `consistent`: the ketama ring instead of the modulo-style hash.
        consistent: bool,
    },
}

impl Method {
    /// Parses the method as nginx writes it.
    ///
    /// # Errors
    ///
    /// An unknown method, quoted.
    pub fn parse(text: &str) -> Result<Method, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [] | ["round_robin"] => Ok(Method::RoundRobin),
            ["least_conn"] => Ok(Method::LeastConn),
            ["ip_hash"] => Ok(Method::IpHash),
            ["hash", key] => Ok(Method::Hash {
                key: (*key).to_string(),
                consistent: false,
            }),
            ["hash", key, "consistent"] => Ok(Method::Hash {
                key: (*key).to_string(),
                consistent: true,
            }),
            _ => Err(format!("unknown balancing method '{text}'")),
        }
    }

    /// How requests are keyed under this method.
    ///
    /// # Errors
    ///
    /// A hash key expression that does not parse.
    pub fn key_spec(&self) -> Result<KeySpec, String> {
        match self {
            Method::RoundRobin | Method::LeastConn => Ok(KeySpec::None),
            Method::IpHash => Ok(KeySpec::ClientIp),
            Method::Hash { key, .. } => KeySpec::parse(key),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::RoundRobin => f.write_str("round_robin"),
            Method::LeastConn => f.write_str("least_conn"),
            Method::IpHash => f.write_str("ip_hash"),
            Method::Hash { key, consistent } => {
                write!(
                    f,
                    "hash {key}{}",
                    if *consistent { " consistent" } else { "" }
                )
            }
        }
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    name: String,
    #[serde(default)]
    method: String,
    server: Vec<Backend>,
}

/// Reads and validates the upstream file at `path` (`.json`, else TOML).
///
/// # Errors
///
/// The file cannot be read, does not parse, or names backends a pool
/// refuses; the message names the file and the fault.
pub fn load(path: &Path) -> Result<Upstream, String> {
    let at = |e: &dyn fmt::Display| format!("{}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(&e))?;
    let file: File = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| at(&e))?
    } else {
        toml::from_str(&text).map_err(|e| at(&toml_error(&text, &e)))?
    };
    Ok(Upstream {
        name: file.name,
        method: Method::parse(&file.method).map_err(|e| at(&e))?,
        backends: BackendSet::new(file.server).map_err(|e| at(&e))?,
    })
}

/// A TOML error on one line: where, then what.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_string(),
    }
}

/// A policy that a [`Method`] selects.
pub trait FromMethod: Policy + Sized {
    /// The policy for `method`, or `None` when `method` needs another type
    /// (a change the running proxy cannot make without a restart).
    fn from_method(method: &Method) -> Option<Self>;
}

impl FromMethod for RoundRobin {
    fn from_method(method: &Method) -> Option<Self> {
        matches!(method, Method::RoundRobin).then_some(RoundRobin)
    }
}

impl FromMethod for LeastConn {
    fn from_method(method: &Method) -> Option<Self> {
        matches!(method, Method::LeastConn).then_some(LeastConn)
    }
}

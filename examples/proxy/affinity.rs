//! Sticky sessions: the upstream file's `sticky` directive, applied per
//! request.
//!
//! The crate's [`Sticky`] layer decides; this module finds what it decides
//! by. For `sticky cookie NAME` that is the request's cookie, and the
//! layer's `Set-Cookie` goes back with the response. For `sticky route
//! $var ...` it is the first non-empty variable, evaluated as hash keys
//! are (`$cookie_NAME`, `$arg_NAME`, `$http_NAME`...). For `sticky learn`
//! it is the `lookup=` variable of the request, and a session is learned
//! from the response's `Set-Cookie` named by `create=$upstream_cookie_NAME`.
//!
//! # Limitations
//!
//! - `sticky route` and `lookup=` take the variables hash keys take; a
//!   variable set by an nginx `map` block (`$route_cookie` in nginx's
//!   examples) is refused when the file loads. `create=` takes only
//!   `$upstream_cookie_NAME`.
//! - The learn table lives in this process (the crate's in-memory store, of
//!   its default capacity); `zone=` sizes and `sync` are not used. It
//!   survives a reload that leaves the directive as it was, and is emptied
//!   by one that changes it.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::header::{HeaderMap, COOKIE, SET_COOKIE};
use hyper::Request;
use upstream::config;
use upstream::sticky::{find_cookie, LearnConfig, Sticky};

use crate::key::{KeyBuf, KeySpec};

/// The variables hash keys and sticky rules may use, for error messages.
const KNOWN_VARIABLES: &str =
    "$cookie_NAME, $arg_NAME, $http_NAME, $uri, $request_uri, $args, $host, $remote_addr";

/// A file's `sticky` directive, ready to serve requests.
pub struct StickyRule {
    layer: Sticky,
    directive: config::Sticky,
    input: Input,
}

/// Where a request's sticky value comes from.
enum Input {
    /// `sticky cookie NAME`: that cookie.
    Cookie(String),
    /// `sticky route`, `sticky learn lookup=`: the first non-empty variable.
    Variables(Vec<KeySpec>),
}

impl std::fmt::Debug for StickyRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyRule")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl StickyRule {
    /// The rule for `directive`. A `sticky learn` directive equal to the
    /// `previous` rule's keeps its session table, so that sessions survive
    /// a reload.
    ///
    /// # Errors
    ///
    /// A variable this proxy cannot evaluate, or the crate's refusal of the
    /// cookie's attributes.
    pub fn new(
        directive: &config::Sticky,
        previous: Option<&StickyRule>,
    ) -> Result<StickyRule, String> {
        let layer = match (directive, previous) {
            (config::Sticky::Learn(learn), Some(prev)) if prev.directive == *directive => {
                let store = prev.layer.store().map(Arc::clone);
                match store {
                    Some(store) => {
                        let config = LearnConfig::new(learn.timeout).map_err(|e| e.to_string())?;
                        Sticky::learn(config, store)
                    }
                    None => Sticky::from_config(directive).map_err(|e| e.to_string())?,
                }
            }
            _ => Sticky::from_config(directive).map_err(|e| e.to_string())?,
        };
        let input = match directive {
            config::Sticky::Cookie(cookie) => Input::Cookie(cookie.name.clone()),
            config::Sticky::Route(vars) => Input::Variables(parse_all("sticky route", vars)?),
            config::Sticky::Learn(learn) => {
                create_cookies(&learn.create)?;
                Input::Variables(parse_all("sticky learn lookup", &learn.lookup)?)
            }
            other => return Err(format!("this proxy does not apply {other:?}")),
        };
        Ok(StickyRule {
            layer,
            directive: directive.clone(),
            input,
        })
    }

    /// The crate's layer.
    pub fn layer(&self) -> &Sticky {
        &self.layer
    }

    /// The directive as the log names it.
    pub fn describe(&self) -> String {
        match &self.directive {
            config::Sticky::Cookie(c) => format!("sticky cookie {}", c.name),
            config::Sticky::Route(vars) => format!("sticky route {}", vars.join(" ")),
            config::Sticky::Learn(l) => format!("sticky learn {}", l.lookup.join(" ")),
            other => format!("{other:?}"),
        }
    }

    /// The request's sticky value, if it has one.
    pub fn input<B>(&self, req: &Request<B>, client: IpAddr) -> Option<String> {
        match &self.input {
            Input::Cookie(name) => req
                .headers()
                .get_all(COOKIE)
                .iter()
                .filter_map(|h| h.to_str().ok())
                .find_map(|h| find_cookie(h, name))
                .map(str::to_string),
            Input::Variables(vars) => vars.iter().find_map(|var| match var.eval(req, client) {
                KeyBuf::Bytes(bytes) if !bytes.is_empty() => String::from_utf8(bytes).ok(),
                _ => None,
            }),
        }
    }

    /// The session a response creates (`sticky learn`): the value of the
    /// first `create=` cookie it sets.
    pub fn created_session<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let config::Sticky::Learn(learn) = &self.directive else {
            return None;
        };
        let names = create_cookies(&learn.create).ok()?;
        names
            .iter()
            .find_map(|name| set_cookie_value(headers, name))
    }
}

/// Parses each sticky variable as a key expression.
fn parse_all(what: &str, vars: &[String]) -> Result<Vec<KeySpec>, String> {
    vars.iter()
        .map(|var| {
            KeySpec::parse(var).map_err(|_| {
                format!("{what}: cannot evaluate '{var}'; this proxy knows {KNOWN_VARIABLES}")
            })
        })
        .collect()
}

/// The cookie names of `create=$upstream_cookie_NAME` variables.
fn create_cookies(vars: &[String]) -> Result<Vec<&str>, String> {
    vars.iter()
        .map(|var| {
            var.strip_prefix("$upstream_cookie_")
                .filter(|name| !name.is_empty())
                .ok_or_else(|| {
                    format!(
                        "sticky learn create: cannot evaluate '{var}'; \
                         this proxy knows $upstream_cookie_NAME"
                    )
                })
        })
        .collect()
}

/// The value a response's `Set-Cookie` headers give cookie `name`.
fn set_cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .filter_map(|h| h.split(';').next()?.split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

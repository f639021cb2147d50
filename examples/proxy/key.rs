//! What a request is balanced by: the client address (`ip_hash`) or a key
//! built from nginx variables (`hash $request_uri`, `hash $cookie_sid`).
//!
//! The expression is parsed once, when the upstream is loaded, into parts;
//! each request only fills them in.

use std::net::IpAddr;

use hyper::header::{HeaderName, COOKIE, HOST};
use hyper::Request;
use upstream::Key;

/// How a request becomes a [`Key`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KeySpec {
    /// Unkeyed policies (round robin, least connections).
    #[default]
    None,
    /// The client address, for `ip_hash`.
    ClientIp,
    /// nginx's `hash KEY`: text and variables.
    Template(Vec<Part>),
}

/// One piece of a key expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Text written as is.
    Literal(String),
    /// `$remote_addr`: the client address (after `--trust-proxy`).
    RemoteAddr,
    /// `$binary_remote_addr`: the client address as 4 or 16 bytes.
    BinaryRemoteAddr,
    /// `$request_uri`: path and query as the client sent them.
    RequestUri,
    /// `$uri`: the path alone.
    Uri,
    /// `$args`: the query string.
    Args,
    /// `$host`: the `Host` header without its port.
    Host,
    /// `$http_NAME`: a request header, `_` standing for `-`.
    Header(HeaderName),
    /// `$cookie_NAME`: one cookie's value.
    Cookie(String),
    /// `$arg_NAME`: one query argument's raw value.
    Arg(String),
}

/// A key computed for one request, owning its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyBuf {
    /// No key.
    None,
    /// A client address.
    Ip(IpAddr),
    /// Key bytes.
    Bytes(Vec<u8>),
}

impl KeyBuf {
    /// The key as the pool takes it; an empty byte key is no key, which
    /// hash policies balance by round robin as nginx does.
    pub fn as_key(&self) -> Key<'_> {
        match self {
            KeyBuf::None => Key::None,
            KeyBuf::Ip(ip) => Key::Ip(*ip),
            KeyBuf::Bytes(bytes) if bytes.is_empty() => Key::None,
            KeyBuf::Bytes(bytes) => Key::Bytes(bytes),
        }
    }
}

impl KeySpec {
    /// Parses an nginx key expression such as `$request_uri` or
    /// `user-${cookie_sid}`.
    ///
    /// # Errors
    ///
    /// An unknown variable, a `${` without its `}`, or an empty expression.
    pub fn parse(expr: &str) -> Result<KeySpec, String> {
        if expr.is_empty() {
            return Err("the hash key is empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = expr;
        while let Some(dollar) = rest.find('$') {
            if dollar > 0 {
                parts.push(Part::Literal(rest[..dollar].to_string()));
            }
            let after = &rest[dollar + 1..];
            let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("'${{' without '}}' in hash key '{expr}'"))?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            parts.push(
                variable(name)
                    .ok_or_else(|| format!("unknown variable '${name}' in hash key '{expr}'"))?,
            );
            rest = tail;
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(KeySpec::Template(parts))
    }

    /// The key of one request from `client`.
    pub fn eval<B>(&self, req: &Request<B>, client: IpAddr) -> KeyBuf {
        let parts = match self {
            KeySpec::None => return KeyBuf::None,
            KeySpec::ClientIp => return KeyBuf::Ip(client),
            KeySpec::Template(parts) => parts,
        };
        let mut out = Vec::new();
        for part in parts {
            match part {
                Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Part::RemoteAddr => out.extend_from_slice(client.to_string().as_bytes()),
                Part::BinaryRemoteAddr => match client {
                    IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
                    IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
                },
                Part::RequestUri => {
                    let uri = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
                    out.extend_from_slice(uri.as_bytes());
                }
                Part::Uri => out.extend_from_slice(req.uri().path().as_bytes()),
                Part::Args => out.extend_from_slice(req.uri().query().unwrap_or("").as_bytes()),
                Part::Host => out.extend_from_slice(host(req).as_bytes()),
                Part::Header(name) => {
                    let values: Vec<&[u8]> = req
                        .headers()
                        .get_all(name)
                        .iter()
                        .map(|v| v.as_bytes())
                        .collect();
                    out.extend_from_slice(&values.join(&b", "[..]));
                }
                Part::Cookie(name) => out.extend_from_slice(cookie(req, name).as_bytes()),
                Part::Arg(name) => out.extend_from_slice(arg(req, name).as_bytes()),
            }
        }
        KeyBuf::Bytes(out)
    }
}

fn variable(name: &str) -> Option<Part> {
    let part = match name {
        "remote_addr" => Part::RemoteAddr,
        "binary_remote_addr" => Part::BinaryRemoteAddr,
        "request_uri" => Part::RequestUri,
        "uri" | "document_uri" => Part::Uri,
        "args" | "query_string" => Part::Args,
        "host" => Part::Host,
        _ => {
            if let Some(header) = name.strip_prefix("http_") {
                let header = header.replace('_', "-").to_ascii_lowercase();
                Part::Header(HeaderName::from_bytes(header.as_bytes()).ok()?)
            } else if let Some(cookie) = name.strip_prefix("cookie_") {
                Part::Cookie(cookie.to_string())
            } else if let Some(arg) = name.strip_prefix("arg_") {
                Part::Arg(arg.to_string())
            } else {
                return None;
            }
        }
    };
    Some(part)
}

fn host<B>(req: &Request<B>) -> String {
    let raw = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    let without_port = match raw.rfind(':') {
        Some(colon) if !raw.ends_with(']') => &raw[..colon],
        _ => raw,
    };
    without_port.to_ascii_lowercase()
}

fn cookie<'r, B>(req: &'r Request<B>, name: &str) -> &'r str {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v)
}

fn arg<'r, B>(req: &'r Request<B>, name: &str) -> &'r str {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v)
}

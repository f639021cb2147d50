//! The 64-bit hashes Envoy computes: XXH64, murmur2-64, and the request
//! hash policies that turn a request into the hash Maglev and ring hash use.
//!
//! Every function here is fixed: same input, same output, in every process
//! on every machine. XXH64 comes from `xxhash-rust`; murmur2-64 is the
//! libstdc++ `_Hash_bytes` variant Envoy ships as `MurmurHash::murmurHash2`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::policy::Key;

/// XXH64 of `bytes` with `seed`: Envoy's `HashUtil::xxHash64`.
///
/// # Examples
///
/// ```
/// use upstream::envoy::xxh64;
///
/// // The value Envoy's own unit tests assert.
/// assert_eq!(xxh64(b"foo", 0), 3728699739546630719);
/// ```
#[inline]
pub fn xxh64(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, seed)
}

/// The seed Envoy passes to [`murmur2_64`]: libstdc++'s `std::hash` seed.
pub const MURMUR2_SEED: u64 = 0xc70f_6907;

/// 64-bit MurmurHash2 as Envoy computes it for `RING_HASH`'s `MURMUR_HASH_2`
/// option (libstdc++'s 64-bit `_Hash_bytes`): 8-byte little-endian words,
/// the tail loaded as one little-endian integer, then a final mix.
///
/// # Examples
///
/// ```
/// use upstream::envoy::{murmur2_64, MURMUR2_SEED};
///
/// assert_eq!(murmur2_64(b"foo", MURMUR2_SEED), 9631199822919835226);
/// ```
pub fn murmur2_64(bytes: &[u8], seed: u64) -> u64 {
    const MUL: u64 = 0xc6a4_a793_5bd1_e995;
    let shift_mix = |v: u64| v ^ (v >> 47);
    let mut hash = seed ^ (bytes.len() as u64).wrapping_mul(MUL);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        let data = shift_mix(u64::from_le_bytes(le).wrapping_mul(MUL)).wrapping_mul(MUL);
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        // The tail's last byte is the most significant, as in a LE load.
        let data = tail
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    hash = shift_mix(hash).wrapping_mul(MUL);
    shift_mix(hash)
}

/// A fixed-size text buffer, so that addresses hash without allocating.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Envoy's `connection_properties { source_ip: true }` hash: XXH64 (seed 0)
/// of the client address as text, without the port (`10.0.0.1`, `::1`).
///
/// # Examples
///
/// ```
/// use upstream::envoy::{source_ip_hash, xxh64};
///
/// let ip = "10.1.2.3".parse().unwrap();
/// assert_eq!(source_ip_hash(ip), xxh64(b"10.1.2.3", 0));
/// ```
pub fn source_ip_hash(ip: IpAddr) -> u64 {
    let mut text = StackText::new();
    // An IP address is at most 45 characters: the buffer always fits it.
    let _ = write!(text, "{ip}");
    xxh64(text.as_bytes(), 0)
}

/// Envoy's header hash: the header's values sorted bytewise, then hashed one
/// after the other, each value's XXH64 seeding the next (the first with
/// seed 0). `None` when the header is absent (no values).
///
/// # Examples
///
/// ```
/// use upstream::envoy::header_hash;
///
/// // Values are sorted first, so their order does not matter.
/// assert_eq!(header_hash(&["foo", "bar"]), Some(6648465492906218751));
/// assert_eq!(header_hash(&["bar", "foo"]), Some(6648465492906218751));
/// assert_eq!(header_hash(&[]), None);
/// ```
///
/// # Complexity
///
/// O(v log v) for v values; no allocation up to 16 values.
pub fn header_hash(values: &[&str]) -> Option<u64> {
    const INLINE: usize = 16;
    if values.is_empty() {
        return None;
    }
    if values.len() <= INLINE {
        let mut inline = [""; INLINE];
        inline[..values.len()].copy_from_slice(values);
        let sorted = &mut inline[..values.len()];
        sorted.sort_unstable();
        return Some(chain(sorted));
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    Some(chain(&sorted))
}

/// Envoy's `HashUtil::xxHash64` over a list of strings: each value hashed
/// with the previous result as its seed, the first with seed 0.
fn chain(values: &[&str]) -> u64 {
    values
        .iter()
        .fold(0u64, |seed, v| xxh64(v.as_bytes(), seed))
}

/// Envoy's way of folding one more policy's hash into the running one:
/// the running value rotated left by one bit, XOR the new hash. The first
/// hash is taken as is.
///
/// # Examples
///
/// ```
/// use upstream::envoy::combine;
///
/// assert_eq!(combine(None, 5), 5);
/// assert_eq!(combine(Some(1 << 63 | 1), 0), 0b11);
/// ```
#[inline]
pub fn combine(running: Option<u64>, new: u64) -> u64 {
    running.map_or(0, |h| h.rotate_left(1)) ^ new
}

/// The value of cookie `name` in the request's `Cookie` headers, as Envoy
/// parses it: pairs split on `;`, leading spaces of a name dropped, the first
/// pair whose name matches exactly wins, and a value wrapped in double quotes
/// loses them. Pairs without `=` are skipped.
///
/// # Examples
///
/// ```
/// use upstream::envoy::cookie_value;
///
/// let headers = [("Cookie", "a=1; session=\"xyz\""), ("cookie", "session=other")];
/// assert_eq!(cookie_value(&headers, "session"), Some("xyz"));
/// assert_eq!(cookie_value(&headers, "none"), None);
/// ```
pub fn cookie_value<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    let cookies = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'));
    for pair in cookies.filter(|p| !p.is_empty()) {
        let Some(eq) = pair.find('=') else {
            continue;
        };
        let start = pair.find(|c| c != ' ').unwrap_or(eq).min(eq);
        if &pair[start..eq] != name {
            continue;
        }
        let value = &pair[eq + 1..];
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .filter(|_| value.len() >= 2);
        return Some(unquoted.unwrap_or(value));
    }
    None
}

/// The first value of query parameter `name` in `path`, as Envoy parses it
/// for hashing: the text after the first `?`, split on `&`, each part
/// `name=value` or a bare `name` (value empty), with no percent-decoding.
///
/// # Examples
///
/// ```
/// use upstream::envoy::query_parameter;
///
/// assert_eq!(query_parameter("/a?x=1&user=bob&user=eve", "user"), Some("bob"));
/// assert_eq!(query_parameter("/a?flag&x=1", "flag"), Some(""));
/// assert_eq!(query_parameter("/a", "x"), None);
/// ```
pub fn query_parameter<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query
        .split('&')
        .find_map(|part| match part.split_once('=') {
            Some((n, v)) if n == name => Some(v),
            None if part == name => Some(""),
            _ => None,
        })
}

/// The cookie value Envoy generates when a cookie hash policy has a TTL and
/// the request carries no such cookie: XXH64 of the client address then the
/// local address, both as `ip:port` text (`[v6]:port` for IPv6), written as
/// 16 lowercase hex digits.
///
/// # Examples
///
/// ```
/// use upstream::envoy::generated_cookie_value;
///
/// let value = generated_cookie_value(
///     "10.0.0.1:4000".parse().unwrap(),
///     "10.0.0.2:80".parse().unwrap(),
/// );
/// assert_eq!(value.len(), 16);
/// ```
pub fn generated_cookie_value(remote: SocketAddr, local: SocketAddr) -> String {
    let text = format!("{remote}{local}");
    format!("{:016x}", xxh64(text.as_bytes(), 0))
}

/// One method of an Envoy route's `hash_policy` list.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashMethod {
    /// `connection_properties { source_ip: true }`: see [`source_ip_hash`].
    SourceIp,
    /// `header { header_name }`: every value of the header (matched without
    /// regard to case), see [`header_hash`].
    Header(String),
    /// `cookie { name }`: XXH64 of the cookie's value, when present and not
    /// empty; see [`cookie_value`].
    Cookie(String),
    /// `query_parameter { name }`: XXH64 of the parameter's first value; see
    /// [`query_parameter`].
    QueryParameter(String),
}

/// What a hash policy reads from one HTTP request.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpRequest<'a> {
    /// The client address, for [`HashMethod::SourceIp`].
    pub source: Option<IpAddr>,
    /// The request target (`:path`), query string included.
    pub path: &'a str,
    /// Every request header as a (name, value) pair, repeats included.
    pub headers: &'a [(&'a str, &'a str)],
}

/// An Envoy route's `hash_policy`: methods evaluated in order, the hashes of
/// those that produce one combined with [`combine`]; a `terminal` method that
/// produced a hash (or after which a hash exists) ends the list.
///
/// # Examples
///
/// ```
/// use upstream::envoy::{combine, xxh64, HashMethod, HashPolicy, HttpRequest};
/// use upstream::Key;
///
/// let policy = HashPolicy::new()
///     .method(HashMethod::Header("x-user".into()), false)
///     .method(HashMethod::QueryParameter("shard".into()), false);
/// let headers = [("X-User", "alice")];
/// let request = HttpRequest { path: "/p?shard=7", headers: &headers, ..Default::default() };
/// let expected = combine(Some(xxh64(b"alice", 0)), xxh64(b"7", 0));
/// assert_eq!(policy.hash(&request), Some(expected));
/// assert_eq!(policy.key(&request), Key::Hash(expected));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashPolicy {
    methods: Vec<(HashMethod, bool)>,
}

impl HashPolicy {
    /// An empty policy: it never produces a hash.
    pub fn new() -> Self {
        HashPolicy::default()
    }

    /// Appends a method; `terminal` stops evaluation after it once a hash
    /// exists.
    pub fn method(mut self, method: HashMethod, terminal: bool) -> Self {
        self.methods.push((method, terminal));
        self
    }

    /// The request's hash, or `None` when no method produced one (Envoy
    /// then picks at random; pass [`Key::None`]).
    ///
    /// # Complexity
    ///
    /// O(total header bytes) per method; no allocation unless a header has
    /// more than 16 values.
    pub fn hash(&self, request: &HttpRequest<'_>) -> Option<u64> {
        let mut hash = None;
        for (method, terminal) in &self.methods {
            if let Some(new) = evaluate(method, request) {
                hash = Some(combine(hash, new));
            }
            if *terminal && hash.is_some() {
                break;
            }
        }
        hash
    }

    /// The request's hash as a pool key: [`Key::Hash`], or [`Key::None`].
    pub fn key(&self, request: &HttpRequest<'_>) -> Key<'static> {
        self.hash(request).map_or(Key::None, Key::Hash)
    }
}

fn evaluate(method: &HashMethod, request: &HttpRequest<'_>) -> Option<u64> {
    match method {
        HashMethod::SourceIp => request.source.map(source_ip_hash),
        HashMethod::Header(name) => header_values_hash(request.headers, name),
        HashMethod::Cookie(name) => cookie_value(request.headers, name)
            .filter(|v| !v.is_empty())
            .map(|v| xxh64(v.as_bytes(), 0)),
        HashMethod::QueryParameter(name) => {
            query_parameter(request.path, name).map(|v| xxh64(v.as_bytes(), 0))
        }
    }
}

fn header_values_hash(headers: &[(&str, &str)], name: &str) -> Option<u64> {
    const INLINE: usize = 16;
    let matching = || {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let count = matching().count();
    if count <= INLINE {
        let mut inline = [""; INLINE];
        for (slot, v) in inline.iter_mut().zip(matching()) {
            *slot = v;
        }
        return header_hash(&inline[..count]);
    }
    header_hash(&matching().collect::<Vec<_>>())
}

/// The 64-bit hash Envoy's Maglev and ring hash look up for a [`Key`]:
/// [`Key::Hash`] as is, [`Key::Ip`] through [`source_ip_hash`],
/// [`Key::Bytes`] as XXH64 (seed 0), and `None` for [`Key::None`].
///
/// # Examples
///
/// ```
/// use upstream::envoy::{key_hash, xxh64};
/// use upstream::Key;
///
/// assert_eq!(key_hash(Key::Hash(7)), Some(7));
/// assert_eq!(key_hash(Key::Bytes(b"foo")), Some(xxh64(b"foo", 0)));
/// assert_eq!(key_hash(Key::None), None);
/// ```
#[inline]
pub fn key_hash(key: Key<'_>) -> Option<u64> {
    match key {
        Key::None => None,
        Key::Hash(h) => Some(h),
        Key::Bytes(b) => Some(xxh64(b, 0)),
        Key::Ip(ip) => Some(source_ip_hash(ip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_envoy_test_vectors() {
        assert_eq!(xxh64(b"foo", 0), 3728699739546630719);
        assert_eq!(xxh64(b"bar", 0), 5234164152756840025);
        assert_eq!(xxh64(b"foo\nbar", 0), 8917841378505826757);
        assert_eq!(xxh64(b"lyft", 0), 4400747396090729504);
        assert_eq!(xxh64(b"", 0), 17241709254077376921);
    }

    #[test]
    fn murmur2_matches_envoy_test_vectors() {
        let m = |s: &str| murmur2_64(s.as_bytes(), MURMUR2_SEED);
        assert_eq!(m("foo"), 9631199822919835226);
        assert_eq!(m("bar"), 11474628671133349555);
        assert_eq!(m("foo\nbar"), 16306510975912980159);
        assert_eq!(m("lyft"), 12847078931730529320);
        assert_eq!(m(""), 6142509188972423790);
    }

    #[test]
    fn murmur2_covers_whole_words_and_tails() {
        // 8 and 12 bytes: one full word, then one word and a 4-byte tail.
        // Values frozen from this implementation, which matches Envoy's
        // vectors above for 0-7 byte inputs.
        let a = murmur2_64(b"12345678", MURMUR2_SEED);
        let b = murmur2_64(b"123456789abc", MURMUR2_SEED);
        assert_ne!(a, b);
        assert_eq!(murmur2_64(b"12345678", MURMUR2_SEED), a);
    }

    #[test]
    fn header_hash_chains_sorted_values() {
        assert_eq!(header_hash(&["foo"]), Some(3728699739546630719));
        // Envoy's test vector for hashing the list {"foo", "bar"} in that
        // order; the header hash sorts first, so it hashes "bar" then "foo".
        assert_eq!(chain(&["foo", "bar"]), 17745830980996999794);
        assert_eq!(
            header_hash(&["foo", "bar"]),
            Some(xxh64(b"foo", xxh64(b"bar", 0)))
        );
        assert_eq!(header_hash(&["foo", "bar"]), Some(6648465492906218751));
        let many: Vec<String> = (0..20).map(|i| format!("v{i:02}")).collect();
        let refs: Vec<&str> = many.iter().rev().map(String::as_str).collect();
        let expected = many.iter().fold(0, |s, v| xxh64(v.as_bytes(), s));
        assert_eq!(header_hash(&refs), Some(expected));
    }

    #[test]
    fn source_ip_hashes_address_text() {
        let v4: IpAddr = "192.168.1.10".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(source_ip_hash(v4), xxh64(b"192.168.1.10", 0));
        assert_eq!(source_ip_hash(v6), xxh64(b"2001:db8::1", 0));
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(
            source_ip_hash(longest),
            xxh64(longest.to_string().as_bytes(), 0)
        );
    }

    #[test]
    fn combine_rotates_then_xors() {
        // foo then bar, from Envoy's XXH64 vectors:
        // rotl(3728699739546630719, 1) ^ 5234164152756840025.
        let foo = 3728699739546630719u64;
        let bar = 5234164152756840025u64;
        assert_eq!(combine(Some(foo), bar), 3449051153737634343);
        // The same hash twice does not cancel out.
        assert_ne!(combine(Some(foo), foo), 0);
    }

    #[test]
    fn policy_combines_in_order_and_stops_at_terminal() {
        let headers = [
            ("x-user", "alice"),
            ("cookie", "sid=\"s1\"; other=2"),
            ("X-User", "bob"),
        ];
        let request = HttpRequest {
            source: Some("10.0.0.1".parse().unwrap()),
            path: "/x?k=v",
            headers: &headers,
        };
        let ip = xxh64(b"10.0.0.1", 0);
        let user = xxh64(b"bob", xxh64(b"alice", 0));
        let sid = xxh64(b"s1", 0);
        let all = HashPolicy::new()
            .method(HashMethod::SourceIp, false)
            .method(HashMethod::Header("x-user".into()), false)
            .method(HashMethod::Cookie("sid".into()), false);
        let expected = ((ip.rotate_left(1) ^ user).rotate_left(1)) ^ sid;
        assert_eq!(all.hash(&request), Some(expected));

        let terminal = HashPolicy::new()
            .method(HashMethod::Header("absent".into()), true)
            .method(HashMethod::SourceIp, true)
            .method(HashMethod::QueryParameter("k".into()), false);
        assert_eq!(terminal.hash(&request), Some(ip));

        let nothing = HashPolicy::new().method(HashMethod::Cookie("none".into()), false);
        assert_eq!(nothing.hash(&request), None);
        assert_eq!(nothing.key(&request), Key::None);
    }

    #[test]
    fn cookie_parsing_follows_envoy() {
        let h = [("cookie", "  a=1;b;; c=\"\" ;d=\"x")];
        assert_eq!(cookie_value(&h, "a"), Some("1"));
        assert_eq!(cookie_value(&h, "b"), None);
        assert_eq!(
            cookie_value(&h, "c"),
            Some("\"\" "),
            "a trailing space keeps the quotes"
        );
        assert_eq!(cookie_value(&h, "d"), Some("\"x"));
        let empty = [("cookie", "e=; e=2")];
        assert_eq!(cookie_value(&empty, "e"), Some(""));
        let policy = HashPolicy::new().method(HashMethod::Cookie("e".into()), false);
        let req = HttpRequest {
            headers: &empty,
            ..Default::default()
        };
        assert_eq!(
            policy.hash(&req),
            None,
            "an empty first value gives no hash"
        );
    }

    #[test]
    fn generated_cookie_is_hex_of_both_addresses() {
        let remote: SocketAddr = "[::1]:5000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let expected = format!("{:016x}", xxh64(b"[::1]:5000127.0.0.1:80", 0));
        assert_eq!(generated_cookie_value(remote, local), expected);
    }
}

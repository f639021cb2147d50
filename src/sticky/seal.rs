//! Sealed sticky cookies: a value a client can neither read nor forge.
//!
//! # Design
//!
//! An unsealed cookie carries the backend's server id: its `route`, or the
//! MD5 of its address, which anyone can match against a list of likely
//! addresses. A sealed cookie carries instead
//!
//! ```text
//! hex( HMAC-SHA256(key, "upstream-sticky-v1" 0x00 server_id)[..16] )
//! ```
//!
//! 32 lowercase hex digits, the same length as an MD5 id.
//!
//! - **Nothing to learn.** HMAC with a secret key is a pseudo-random
//!   function: the value says nothing about the server id, hence nothing
//!   about the address, without the key. No address is in the cookie, so
//!   there is nothing to encrypt, and a MAC alone suffices.
//! - **Nothing to forge.** Without the key a client cannot compute the
//!   value for a backend it was never sent to; a changed value matches no
//!   backend and is ignored (the request is balanced as if it carried no
//!   cookie, and the result says affinity broke). Values are compared in
//!   constant time.
//! - **Stable across changes.** The value depends on the key and the server
//!   id only, not on the backend's position or the pool's generation, so
//!   adding or removing other backends moves no session.
//! - **Rotation.** [`SealKeys`] is a list: new cookies are signed with the
//!   first key, cookies signed with any key are accepted, and a cookie
//!   signed with an older key is re-sent signed with the first.
//! - **Truncation** to 128 bits follows RFC 2104 §5 (at least half the
//!   output and at least 80 bits).
//!
//! Reading a value costs one hash-map probe and one 16-byte constant-time
//! compare: the values of every backend under every key are computed once
//! per pool generation into a table.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::policy::Policy;
use crate::pool::Snapshot;
use crate::sticky::StickyError;

/// Bytes of the truncated MAC in a sealed value.
const TAG_LEN: usize = 16;

/// Domain separation: these MACs mean "sticky server id, version 1".
const CONTEXT: &[u8] = b"upstream-sticky-v1\0";

/// The shortest key accepted: HMAC-SHA256's output length (RFC 2104 §3).
pub const MIN_KEY_LEN: usize = 32;

/// The operator's sealing keys, newest first.
///
/// # Examples
///
/// ```
/// use upstream::sticky::SealKeys;
///
/// let keys = SealKeys::new(vec![[7u8; 32].to_vec(), [9u8; 32].to_vec()]).unwrap();
/// assert_eq!(keys.len(), 2);
/// assert!(SealKeys::new(vec![b"short".to_vec()]).is_err());
/// ```
#[derive(Clone)]
pub struct SealKeys {
    /// One keyed HMAC state per key; cloned per use, never re-keyed.
    macs: Arc<[Hmac<Sha256>]>,
}

impl std::fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SealKeys")
            .field("keys", &self.macs.len())
            .finish()
    }
}

impl SealKeys {
    /// Keys for sealing: the first signs, all verify.
    ///
    /// # Errors
    ///
    /// [`StickyError::NoSealKey`] for an empty list,
    /// [`StickyError::WeakSealKey`] for a key shorter than
    /// [`MIN_KEY_LEN`] bytes.
    pub fn new(keys: Vec<Vec<u8>>) -> Result<Self, StickyError> {
        if keys.is_empty() {
            return Err(StickyError::NoSealKey);
        }
        let mut macs = Vec::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            if key.len() < MIN_KEY_LEN {
                return Err(StickyError::WeakSealKey {
                    index,
                    len: key.len(),
                });
            }
            let mac =
                Hmac::<Sha256>::new_from_slice(key).map_err(|_| StickyError::WeakSealKey {
                    index,
                    len: key.len(),
                })?;
            macs.push(mac);
        }
        Ok(SealKeys { macs: macs.into() })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.macs.len()
    }

    /// Always false: a key list is never empty.
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }

    /// The sealed value of `server_id` under key `key` (0 = the signing key).
    fn tag(&self, key: usize, server_id: &str) -> Option<[u8; TAG_LEN]> {
        let mut mac = self.macs.get(key)?.clone();
        mac.update(CONTEXT);
        mac.update(server_id.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        Some(tag)
    }

    /// The cookie value for `server_id`, signed with the first key.
    pub(crate) fn seal(&self, server_id: &str, out: &mut String) {
        if let Some(tag) = self.tag(0, server_id) {
            push_hex(&tag, out);
        }
    }
}

/// Where a sealed value points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unsealed {
    /// The backend, in snapshot order.
    pub(crate) index: usize,
    /// Signed with a key other than the first: send it again.
    pub(crate) stale_key: bool,
}

/// Every backend's sealed value under every key, for one pool generation.
struct SealTable {
    generation: u64,
    len: usize,
    /// Keyed by the value's first 8 bytes; the full value is compared in
    /// constant time after the probe.
    by_prefix: ahash::AHashMap<u64, Slot>,
}

struct Slot {
    tag: [u8; TAG_LEN],
    index: usize,
    key: usize,
}

impl SealTable {
    fn build<P: Policy>(keys: &SealKeys, snap: &Snapshot<P>) -> SealTable {
        let mut by_prefix = ahash::AHashMap::with_capacity(snap.len() * keys.len());
        for key in 0..keys.len() {
            for index in 0..snap.len() {
                let Some(tag) = snap.route_id(index).and_then(|id| keys.tag(key, id)) else {
                    continue;
                };
                // Backends sharing a server id share a value; the first in
                // snapshot order wins, as with unsealed ids.
                by_prefix
                    .entry(prefix(&tag))
                    .or_insert(Slot { tag, index, key });
            }
        }
        SealTable {
            generation: snap.generation(),
            len: snap.len(),
            by_prefix,
        }
    }

    fn matches<P: Policy>(&self, snap: &Snapshot<P>) -> bool {
        self.generation == snap.generation() && self.len == snap.len()
    }

    fn find(&self, tag: &[u8; TAG_LEN]) -> Option<Unsealed> {
        let slot = self.by_prefix.get(&prefix(tag))?;
        bool::from(slot.tag.ct_eq(tag)).then_some(Unsealed {
            index: slot.index,
            stale_key: slot.key != 0,
        })
    }
}

/// Sealing keys and the table of the generation last seen.
pub(crate) struct Sealer {
    keys: SealKeys,
    table: ArcSwapOption<SealTable>,
}

impl Sealer {
    pub(crate) fn new(keys: SealKeys) -> Self {
        Sealer {
            keys,
            table: ArcSwapOption::empty(),
        }
    }

    pub(crate) fn keys(&self) -> &SealKeys {
        &self.keys
    }

    /// The backend a sealed cookie value points to, if it is genuine and
    /// the backend is in `snap`.
    pub(crate) fn open<P: Policy>(&self, snap: &Snapshot<P>, value: &str) -> Option<Unsealed> {
        let tag = parse_hex(value)?;
        let current = self.table.load();
        if let Some(table) = current.as_ref().filter(|t| t.matches(snap)) {
            return table.find(&tag);
        }
        drop(current);
        self.current(snap).find(&tag)
    }

    /// Builds the table for `snap` unless it is current.
    pub(crate) fn prepare<P: Policy>(&self, snap: &Snapshot<P>) {
        self.current(snap);
    }

    fn current<P: Policy>(&self, snap: &Snapshot<P>) -> Arc<SealTable> {
        if let Some(table) = self.table.load_full().filter(|t| t.matches(snap)) {
            return table;
        }
        let table = Arc::new(SealTable::build(&self.keys, snap));
        // Two threads may both build after a swap; either table is right.
        self.table.store(Some(Arc::clone(&table)));
        table
    }
}

fn prefix(tag: &[u8; TAG_LEN]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag[..8]);
    u64::from_le_bytes(first)
}

fn parse_hex(value: &str) -> Option<[u8; TAG_LEN]> {
    let bytes = value.as_bytes();
    if bytes.len() != TAG_LEN * 2 {
        return None;
    }
    let mut tag = [0u8; TAG_LEN];
    for (out, pair) in tag.iter_mut().zip(bytes.chunks_exact(2)) {
        *out = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(tag)
}

/// Lowercase hex only: the form this crate writes.
fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn push_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_hmac_sha256_truncated() {
        // RFC 4231 test case 2 checks the primitive: key "Jefe".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let mut hex = String::new();
        push_hex(&mac.finalize().into_bytes(), &mut hex);
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );

        // The sealed value is its first 16 bytes over the context + id.
        let keys = SealKeys::new(vec![vec![0x0b; 32]]).unwrap();
        let mut sealed = String::new();
        keys.seal("7f3797d6a7e152c9ae2760fc816c6014", &mut sealed);
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0x0b; 32]).unwrap();
        mac.update(b"upstream-sticky-v1\0");
        mac.update(b"7f3797d6a7e152c9ae2760fc816c6014");
        let mut expected = String::new();
        push_hex(&mac.finalize().into_bytes()[..16], &mut expected);
        assert_eq!(sealed, expected);
        assert_eq!(sealed.len(), 32);
    }

    #[test]
    fn hex_is_strict() {
        let good = "00112233445566778899aabbccddeeff";
        assert_eq!(
            parse_hex(good),
            Some([
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ])
        );
        assert_eq!(parse_hex("00112233445566778899AABBCCDDEEFF"), None);
        assert_eq!(parse_hex("00112233445566778899aabbccddeef"), None);
        assert_eq!(parse_hex("00112233445566778899aabbccddeeffa"), None);
        assert_eq!(parse_hex("0011223344556677889９aabbccddeef"), None);
        assert_eq!(parse_hex(""), None);
    }

    #[test]
    fn keys_must_be_long_enough() {
        assert_eq!(SealKeys::new(vec![]).unwrap_err(), StickyError::NoSealKey);
        assert_eq!(
            SealKeys::new(vec![vec![1; 32], vec![2; 31]])
                .unwrap_err()
                .to_string(),
            "sticky cookie: seal key #1 is 31 bytes; use at least 32 random bytes"
        );
        assert_eq!(
            format!("{:?}", SealKeys::new(vec![vec![1; 32]]).unwrap()),
            "SealKeys { keys: 1 }"
        );
    }
}

//! HAProxy's hash functions, bit for bit.
//!
//! HAProxy hashes the key bytes with one of four 32-bit functions chosen by
//! `hash-type ... <function>`, and optionally mixes the result with Bob
//! Jenkins' 32-bit integer hash (`avalanche`). Consistent hashing also uses
//! that integer hash to place every server's points on the ring.
//!
//! The values here were checked against HAProxy 2.6's own `sdbm`, `djb2`,
//! `wt6` and `crc32` converters (see the unit tests).

use serde::{Deserialize, Serialize};

/// The function named in `hash-type <method> <function>`.
///
/// # Examples
///
/// ```
/// use upstream::haproxy::HashFunction;
///
/// assert_eq!(HashFunction::Sdbm.hash(b"a"), 97);
/// assert_eq!(HashFunction::Djb2.hash(b"a"), 177_670);
/// assert_eq!(HashFunction::Crc32.hash(b"a"), 0xe8b7_be43);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashFunction {
    /// `sdbm`, HAProxy's default: `h = c + (h << 6) + (h << 16) - h`, from 0.
    #[default]
    Sdbm,
    /// `djb2`: `h = h * 33 + c`, from 5381.
    Djb2,
    /// `wt6`: HAProxy's own two-word rotating hash.
    Wt6,
    /// `crc32`: the common CRC-32 (IEEE 802.3, as in gzip and PNG).
    Crc32,
}

impl HashFunction {
    /// Hashes `bytes` the way HAProxy's function of the same name does.
    ///
    /// # Complexity
    ///
    /// O(len), no allocation.
    #[inline]
    pub fn hash(self, bytes: &[u8]) -> u32 {
        match self {
            HashFunction::Sdbm => sdbm(bytes),
            HashFunction::Djb2 => djb2(bytes),
            HashFunction::Wt6 => wt6(bytes),
            HashFunction::Crc32 => crc32fast::hash(bytes),
        }
    }

    /// The name HAProxy's configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            HashFunction::Sdbm => "sdbm",
            HashFunction::Djb2 => "djb2",
            HashFunction::Wt6 => "wt6",
            HashFunction::Crc32 => "crc32",
        }
    }
}

fn sdbm(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |h, &c| {
        u32::from(c)
            .wrapping_add(h << 6)
            .wrapping_add(h << 16)
            .wrapping_sub(h)
    })
}

fn djb2(bytes: &[u8]) -> u32 {
    bytes.iter().fold(5381u32, |h, &c| {
        (h << 5).wrapping_add(h).wrapping_add(u32::from(c))
    })
}

fn wt6(bytes: &[u8]) -> u32 {
    let (mut h0, mut h1) = (0xa53c_965a_u32, 0x5ca6_953a_u32);
    let (mut step0, mut step1) = (6u32, 18u32);
    for &c in bytes {
        let t = u32::from(c);
        h0 = !(h0 ^ t);
        h1 = !(h1.wrapping_add(t));
        // C's `(x << s) | (x >> (32 - s))` with s = 0 shifts by 32, which
        // x86 reduces to 0: the result is x either way, as rotate_left gives.
        let rotated = h1.rotate_left(step0);
        h1 = h0.rotate_left(step1);
        h0 = rotated;
        let mix = ((h0 >> 16) ^ h1) & 0xffff;
        step0 = mix & 0x1f;
        step1 = mix >> 11;
    }
    h0 ^ h1
}

/// Bob Jenkins' 32-bit full-avalanche integer hash, times 3221225473, as
/// HAProxy applies it for `avalanche` and to place consistent-hash points.
///
/// # Examples
///
/// ```
/// assert_eq!(upstream::haproxy::full_hash(97), 1_830_748_055);
/// ```
#[inline]
pub fn full_hash(a: u32) -> u32 {
    let a = a.wrapping_add(0x7ed5_5d16).wrapping_add(a << 12);
    let a = (a ^ 0xc761_c23c) ^ (a >> 19);
    let a = a.wrapping_add(0x1656_67b1).wrapping_add(a << 5);
    let a = a.wrapping_add(0xd3a2_646c) ^ (a << 9);
    let a = a.wrapping_add(0xfd70_46c5).wrapping_add(a << 3);
    let a = (a ^ 0xb55a_4f09) ^ (a >> 16);
    a.wrapping_mul(3_221_225_473)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by HAProxy 2.6.12 for
    /// `%[req.hdr(x-k),sdbm] %[req.hdr(x-k),sdbm(1)] %[req.hdr(x-k),djb2]
    /// %[req.hdr(x-k),wt6] %[req.hdr(x-k),crc32]`.
    #[test]
    fn golden_values_from_haproxy() {
        let cases: [(&[u8], [u32; 5]); 3] = [
            (
                b"a",
                [97, 1_830_748_055, 177_670, 1_900_802_597, 3_904_355_907],
            ),
            (
                b"abc",
                [
                    807_794_786,
                    659_243_622,
                    193_485_963,
                    2_483_038_440,
                    891_568_578,
                ],
            ),
            (
                b"hello",
                [
                    684_824_882,
                    2_061_535_398,
                    261_238_937,
                    3_538_347_703,
                    907_060_870,
                ],
            ),
        ];
        for (key, [sdbm, sdbm_aval, djb2, wt6, crc]) in cases {
            assert_eq!(HashFunction::Sdbm.hash(key), sdbm);
            assert_eq!(full_hash(HashFunction::Sdbm.hash(key)), sdbm_aval);
            assert_eq!(HashFunction::Djb2.hash(key), djb2);
            assert_eq!(HashFunction::Wt6.hash(key), wt6);
            assert_eq!(HashFunction::Crc32.hash(key), crc);
        }
    }

    #[test]
    fn empty_input_gives_each_seed() {
        assert_eq!(HashFunction::Sdbm.hash(b""), 0);
        assert_eq!(HashFunction::Djb2.hash(b""), 5381);
        assert_eq!(HashFunction::Wt6.hash(b""), 0xa53c_965a ^ 0x5ca6_953a);
        assert_eq!(HashFunction::Crc32.hash(b""), 0);
    }
}

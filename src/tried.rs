//! The set of backends already tried for one request.

/// Indices tried for one request, without allocating in any common case:
/// indices below 256 live in inline bits, and up to eight larger ones in an
/// inline list; only a request that tries more than eight backends at index
/// 256 or above spills to a heap bitset. Lookups are O(1) in every case.
#[derive(Clone, Debug, Default)]
pub(crate) struct TriedSet {
    bits: [u64; 4],
    far: [usize; 8],
    far_len: usize,
    /// Bits for indices from 256 up, once the inline list is full.
    spill: Vec<u64>,
}

impl TriedSet {
    const INLINE_BITS: usize = 256;

    #[inline]
    pub(crate) fn contains(&self, i: usize) -> bool {
        if i < Self::INLINE_BITS {
            return self.bits[i / 64] & (1 << (i % 64)) != 0;
        }
        // The spill fills only once `far` is full: an empty `far` means none.
        self.far_len != 0 && self.contains_far(i)
    }

    /// The indices at or above `INLINE_BITS`, kept out of line so that the
    /// common case inlines to one bit test.
    #[inline(never)]
    fn contains_far(&self, i: usize) -> bool {
        let bit = i - Self::INLINE_BITS;
        let spilled = self
            .spill
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0);
        spilled || self.far[..self.far_len].contains(&i)
    }

    #[inline]
    pub(crate) fn insert(&mut self, i: usize) {
        if i < Self::INLINE_BITS {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.insert_far(i);
        }
    }

    #[inline(never)]
    fn insert_far(&mut self, i: usize) {
        if self.contains_far(i) {
            return;
        }
        if self.far_len < self.far.len() {
            self.far[self.far_len] = i;
            self.far_len += 1;
        } else {
            let bit = i - Self::INLINE_BITS;
            if self.spill.len() <= bit / 64 {
                self.spill.resize(bit / 64 + 1, 0);
            }
            self.spill[bit / 64] |= 1 << (bit % 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_far_and_spilled() {
        let mut t = TriedSet::default();
        let many: Vec<usize> = (0..12).map(|k| 300 + 7 * k).collect();
        for &i in [0, 63, 64, 255].iter().chain(&many) {
            assert!(!t.contains(i));
            t.insert(i);
            t.insert(i);
            assert!(t.contains(i));
        }
        assert_eq!(t.far_len, 8);
        assert_eq!(t.spill.iter().map(|w| w.count_ones()).sum::<u32>(), 4);
        assert!(!t.contains(1) && !t.contains(256) && !t.contains(301));
    }
}

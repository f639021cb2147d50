//! The set of backends already tried for one request.

/// Indices tried for one request, without allocating in any common case:
/// indices below 256 live in inline bits, and up to eight larger ones in an
/// inline list; only a request that tries more than eight backends at index
/// 256 or above spills to the heap.
#[derive(Clone, Debug, Default)]
pub(crate) struct TriedSet {
    bits: [u64; 4],
    far: [usize; 8],
    far_len: usize,
    spill: Vec<usize>,
}

impl TriedSet {
    const INLINE_BITS: usize = 256;

    pub(crate) fn contains(&self, i: usize) -> bool {
        if i < Self::INLINE_BITS {
            return self.bits[i / 64] & (1 << (i % 64)) != 0;
        }
        self.far[..self.far_len].contains(&i) || self.spill.contains(&i)
    }

    pub(crate) fn insert(&mut self, i: usize) {
        if i < Self::INLINE_BITS {
            self.bits[i / 64] |= 1 << (i % 64);
        } else if !self.contains(i) {
            if self.far_len < self.far.len() {
                self.far[self.far_len] = i;
                self.far_len += 1;
            } else {
                self.spill.push(i);
            }
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
        assert_eq!((t.far_len, t.spill.len()), (8, 4));
        assert!(!t.contains(1) && !t.contains(256) && !t.contains(301));
    }
}

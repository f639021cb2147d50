//! The set of backends already tried for one request.

/// Indices tried for one request: 256 inline bits, spilling to the heap only
/// when a request has tried a backend at index 256 or above.
#[derive(Clone, Debug, Default)]
pub(crate) struct TriedSet {
    inline: [u64; 4],
    spill: Vec<u64>,
}

impl TriedSet {
    const INLINE_BITS: usize = 256;

    pub(crate) fn contains(&self, i: usize) -> bool {
        let (word, bit) = (i / 64, i % 64);
        let w = if i < Self::INLINE_BITS {
            self.inline[word]
        } else {
            self.spill.get(word - 4).copied().unwrap_or(0)
        };
        w & (1 << bit) != 0
    }

    pub(crate) fn insert(&mut self, i: usize) {
        let (word, bit) = (i / 64, i % 64);
        if i < Self::INLINE_BITS {
            self.inline[word] |= 1 << bit;
            return;
        }
        let at = word - 4;
        if self.spill.len() <= at {
            self.spill.resize(at + 1, 0);
        }
        self.spill[at] |= 1 << bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_spilled_bits() {
        let mut t = TriedSet::default();
        for i in [0, 63, 64, 255, 256, 1000, 70_000] {
            assert!(!t.contains(i));
            t.insert(i);
            assert!(t.contains(i));
        }
        assert!(!t.contains(1) && !t.contains(257) && !t.contains(69_999));
    }
}

//! What Maglev and ring hash share: the hosts a table is built over, their
//! normalized weights, and compact host indices.

use crate::backend::Backend;

/// One host a consistent-hash table was built over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightedHost {
    /// Index of the backend in its tier.
    pub index: u32,
    /// The weight divided by the sum of the weights of the table's hosts, in
    /// `f64` exactly as Envoy computes it.
    pub weight: f64,
}

/// The hosts Envoy would build a table over, in tier order: those not
/// marked down and of positive weight (Envoy builds over healthy hosts and
/// refuses weight 0), with their normalized weights.
///
/// Returns the hosts, the smallest and the largest normalized weight
/// (`1.0` and `0.0` when there is no host, Envoy's starting values).
pub(crate) fn normalized(tier: &[Backend]) -> (Vec<WeightedHost>, f64, f64) {
    let eligible = || {
        tier.iter()
            .enumerate()
            .filter(|(_, b)| !b.down && b.weight > 0)
    };
    let sum: u64 = eligible().map(|(_, b)| u64::from(b.weight)).sum();
    let (mut min, mut max) = (1.0f64, 0.0f64);
    let hosts = eligible()
        .map(|(i, b)| {
            let weight = f64::from(b.weight) * 1.0 / sum as f64;
            min = min.min(weight);
            max = max.max(weight);
            let index = u32::try_from(i).expect("tiers hold at most MAX_BACKENDS");
            WeightedHost { index, weight }
        })
        .collect();
    (hosts, min, max)
}

/// The normalized weight of tier index `i`, or `None` if the table has no
/// such host. `hosts` is sorted by index.
pub(crate) fn weight_of(hosts: &[WeightedHost], i: usize) -> Option<f64> {
    hosts
        .binary_search_by_key(&i, |h| h.index as usize)
        .ok()
        .map(|at| hosts[at].weight)
}

/// Tier indices stored in 16 bits when the tier allows it, else in 32.
#[derive(Debug)]
pub(crate) enum Indices {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

impl Indices {
    /// Packs `indices`, all below `tier_len`.
    pub(crate) fn new(indices: Vec<u32>, tier_len: usize) -> Self {
        if tier_len <= usize::from(u16::MAX) + 1 {
            let narrow = indices
                .into_iter()
                .map(|i| u16::try_from(i).expect("checked against the tier length"))
                .collect();
            Indices::Narrow(narrow)
        } else {
            Indices::Wide(indices.into_boxed_slice())
        }
    }

    #[inline]
    pub(crate) fn get(&self, at: usize) -> Option<usize> {
        match self {
            Indices::Narrow(v) => v.get(at).map(|&i| usize::from(i)),
            Indices::Wide(v) => v.get(at).map(|&i| i as usize),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Indices::Narrow(v) => v.len(),
            Indices::Wide(v) => v.len(),
        }
    }

    /// Bytes used by the packed indices.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Indices::Narrow(v) => v.len() * 2,
            Indices::Wide(v) => v.len() * 4,
        }
    }
}

//! What nginx's three hash methods share: the weighted walk over servers in
//! config order, the limit on rehashing, and the refusal of backups.

use crate::backend::Backend;
use crate::error::BuildError;
use crate::BackendSet;

/// nginx gives up hashing after this many unavailable picks in one request
/// and balances the rest of the request by round robin.
pub(crate) const MAX_TRIES: u32 = 20;

/// nginx's refusal, word for word, of `backup` under a hash method.
const BACKUP_REASON: &str = "balancing method does not support parameter \"backup\"";

/// Refuses a set with a backup server, as nginx refuses `backup` under
/// `ip_hash` and `hash`.
pub(crate) fn refuse_backup(policy: &'static str, set: &BackendSet) -> Result<(), BuildError> {
    match set.backends().iter().find(|b| b.backup) {
        Some(b) => Err(BuildError::Unsupported {
            id: b.id.clone(),
            policy,
            reason: BACKUP_REASON,
        }),
        None => Ok(()),
    }
}

/// nginx's walk from a hash value to a server: `w = value % total_weight`,
/// then subtract each server's weight in config order until `w` falls
/// inside one.
///
/// The walk is prebuilt as prefix sums, so it is a binary search instead of
/// nginx's linear scan. Servers marked `down` keep their weight in the total,
/// as in nginx, so marking one down moves no other key; a weight-0 server
/// (drained in this crate) spans nothing and is never reached.
#[derive(Debug)]
pub(crate) struct WeightWalk {
    /// `ends[i]`: the sum of the weights of servers `0..=i`.
    ends: Box<[u64]>,
}

impl WeightWalk {
    pub(crate) fn new(tier: &[Backend]) -> Self {
        let ends = tier
            .iter()
            .scan(0u64, |sum, b| {
                *sum += u64::from(b.weight);
                Some(*sum)
            })
            .collect();
        WeightWalk { ends }
    }

    /// The sum of all weights, `down` servers included.
    pub(crate) fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The server whose span holds `value % total`; `None` when the total
    /// weight is 0.
    #[inline]
    pub(crate) fn find(&self, value: u64) -> Option<usize> {
        let w = value.checked_rem(self.total())?;
        // The first server whose span ends above w; it exists because w < total.
        Some(self.ends.partition_point(|&end| end <= w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's loop, written plainly.
    fn naive(weights: &[u32], value: u64) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut w = value % total;
        let mut p = 0;
        while w >= u64::from(weights[p]) {
            w -= u64::from(weights[p]);
            p += 1;
        }
        p
    }

    #[test]
    fn walk_matches_nginx_loop() {
        let cases: [&[u32]; 5] = [&[1, 1, 1], &[5, 1, 3, 1, 2], &[1, 0, 4], &[0, 7], &[3]];
        for weights in cases {
            let tier: Vec<Backend> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Backend::new(format!("s{i}")).weight(w))
                .collect();
            let walk = WeightWalk::new(&tier);
            for value in 0..200 {
                assert_eq!(
                    walk.find(value),
                    Some(naive(weights, value)),
                    "{weights:?} {value}"
                );
            }
        }
    }

    #[test]
    fn zero_total_finds_nothing() {
        assert_eq!(WeightWalk::new(&[]).find(5), None);
        assert_eq!(
            WeightWalk::new(&[Backend::new("a").weight(0)]).find(5),
            None
        );
    }

    #[test]
    fn backup_is_refused_with_nginx_reason() {
        let set =
            BackendSet::new(vec![Backend::new("a:1"), Backend::new("b:1").backup(true)]).unwrap();
        assert_eq!(
            refuse_backup("ip_hash", &set).unwrap_err().to_string(),
            "backend 'b:1' cannot be used with ip_hash: \
             balancing method does not support parameter \"backup\""
        );
        let plain = BackendSet::new(vec![Backend::new("a:1")]).unwrap();
        assert_eq!(refuse_backup("hash", &plain), Ok(()));
    }
}

/// Test pools over `127.0.0.1:19001..`, shared by the nginx policies' tests.
#[cfg(test)]
pub(crate) mod test_pools {
    use crate::policy::Policy;
    use crate::{Backend, ManualClock, Pool};

    /// A pool with one server per `(weight, down)`, on a manual clock at 0.
    pub(crate) fn servers<P: Policy>(policy: P, servers: &[(u32, bool)]) -> Pool<P> {
        let backends: Vec<Backend> = servers
            .iter()
            .enumerate()
            .map(|(i, &(w, down))| {
                Backend::new(format!("127.0.0.1:{}", 19001 + i))
                    .weight(w)
                    .down(down)
            })
            .collect();
        Pool::builder(policy)
            .clock(ManualClock::new(0))
            .build(backends)
            .unwrap()
    }

    /// The same from weights and the indices of the down servers.
    pub(crate) fn weighted<P: Policy>(policy: P, weights: &[u32], down: &[usize]) -> Pool<P> {
        let spec: Vec<(u32, bool)> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (w, down.contains(&i)))
            .collect();
        servers(policy, &spec)
    }
}

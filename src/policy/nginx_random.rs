//! nginx's `random` and `random two [least_conn]`.

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy, RoundRobinTable};

/// Draws per request after which nginx gives up drawing and balances by
/// round robin for the rest of the request.
const MAX_TRIES: u8 = 20;

/// nginx's `random` method, with or without `two` (`least_conn` is the only
/// method `two` takes, and its default).
///
/// The rules, as nginx 1.22 applies them:
///
/// - **Ranges.** Every server of the tier, `down` ones included, owns a
///   range of its weight, laid out in config order; a draw `r` lands on the
///   server whose range holds `r % total_weight` (binary search). Down
///   servers thus keep their ranges, and a draw that lands on one is a miss.
/// - **Plain `random`.** Draw until the server drawn is available (not down,
///   not failed out, below `max_conns`, not tried for this request).
/// - **`random two`.** Draw a first available server, then draw again until
///   a second available server that is not the first comes up; keep the
///   second unless it has more active connections per unit of weight than
///   the first (`conns₂ × weight₁ > conns₁ × weight₂`): a tie goes to the
///   second. Weights are as configured; slow start does not enter the
///   comparison (it reaches this policy through admission).
/// - **Tries.** Every draw that does not end the pick counts one try —
///   misses, repeats of the first server, and, with `two`, the first
///   server's own draw. Tries add up over the whole request, retries
///   included; once they pass 20, and for tiers of fewer than two servers,
///   the request is balanced by round robin instead.
///
/// # How it differs from [`P2c`](crate::P2c)
///
/// | | nginx `random two` | `P2c` |
/// |---|---|---|
/// | candidates drawn | by weight | uniformly |
/// | load compared | active / configured weight | active / effective weight |
/// | tie | the second draw | shared by effective weight |
/// | misses | count toward 20, then round robin | 4 × d draws, then a scan |
/// | backups | refused, as nginx refuses them | served after the primaries |
///
/// Weighted draws plus a tie that goes to the second draw make nginx's
/// `two` favour light servers at low load: with weights 2 and 1 and one
/// request at a time, the second draw is the weight-1 server two times in
/// three, and it wins every tie.
///
/// # Limitations
///
/// - nginx draws with the C library's `random()` seeded per worker process,
///   so no run can reproduce nginx's own sequence; the same draws give the
///   same picks, and shares match nginx's.
/// - nginx counts connections per worker process unless the upstream has a
///   `zone`; this crate counts them over the whole pool, like a `zone`.
/// - The round-robin fallback is this crate's [`RoundRobin`](crate::RoundRobin)
///   schedule, whose interleaving can differ from nginx's right after
///   failures.
///
/// # Complexity
///
/// Pick: O(log n) per draw, at most 21 draws, then the round-robin pick.
/// Build: O(W × D) for the round-robin fallback (see
/// [`RoundRobin`](crate::RoundRobin)), O(n) for the ranges.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, NginxRandom, Pool, Sequence};
///
/// // random two least_conn; weights 1 and 3: ranges a [0,1), b [1,4).
/// let pool = Pool::builder(NginxRandom::two())
///     .random(Sequence::new([0, 1]))
///     .build(vec![Backend::new("a"), Backend::new("b").weight(3)])
///     .unwrap();
/// // Draws a, then b; both idle, so the second draw wins.
/// assert_eq!(pool.pick(Key::None).unwrap().id(), "b");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NginxRandom {
    two: bool,
}

impl NginxRandom {
    /// `random;`
    pub const fn plain() -> Self {
        NginxRandom { two: false }
    }

    /// `random two;` or `random two least_conn;`
    pub const fn two() -> Self {
        NginxRandom { two: true }
    }

    /// True for `random two`.
    pub const fn is_two(&self) -> bool {
        self.two
    }
}

/// The prebuilt table of [`NginxRandom`]: ranges and the round-robin
/// fallback.
#[derive(Debug)]
pub struct NginxRandomTable {
    /// Where each server's range starts, in config order (nginx's `range`).
    starts: Box<[u64]>,
    total: u64,
    fallback: RoundRobinTable,
}

impl NginxRandomTable {
    /// The server whose range holds `r % total`, or `None` when the total
    /// weight is 0.
    ///
    /// # Complexity
    ///
    /// O(log n).
    pub fn draw(&self, r: u64) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let x = r % self.total;
        // The last server whose range starts at or before x; weight-0
        // servers own empty ranges and are passed over.
        Some(self.starts.partition_point(|&s| s <= x).saturating_sub(1))
    }
}

/// Draws counted over one request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tries(u8);

impl Tries {
    /// Counts one try; true once the request has used more than 20.
    fn spend(&mut self) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0 > MAX_TRIES
    }

    fn exhausted(self) -> bool {
        self.0 > MAX_TRIES
    }
}

impl Policy for NginxRandom {
    type Table = NginxRandomTable;
    type State = Tries;
    // Never reads the pool-wide count: skip keeping it.
    const COUNTS_TOTAL_ACTIVE: bool = false;

    fn name(&self) -> &'static str {
        "random"
    }

    fn validate(&self, set: &crate::BackendSet) -> Result<(), BuildError> {
        match set.backends().iter().find(|b| b.backup) {
            Some(b) => Err(BuildError::Unsupported {
                id: b.id.clone(),
                policy: self.name(),
                reason: "nginx's random method has no backup servers",
            }),
            None => Ok(()),
        }
    }

    fn build(
        &self,
        tier: &[Backend],
        prev: Option<&NginxRandomTable>,
    ) -> Result<NginxRandomTable, BuildError> {
        let mut total = 0u64;
        let starts = tier
            .iter()
            .map(|b| {
                let start = total;
                total += u64::from(b.weight);
                start
            })
            .collect();
        Ok(NginxRandomTable {
            starts,
            total,
            fallback: RoundRobinTable::new(tier, prev.map(|p| &p.fallback)),
        })
    }

    fn pick(
        &self,
        table: &NginxRandomTable,
        c: &Candidates<'_>,
        _: Key<'_>,
        tries: &mut Tries,
    ) -> Option<usize> {
        if tries.exhausted() || c.len() < 2 {
            return table.fallback.pick(c);
        }
        let mut first = None;
        loop {
            let i = table.draw(c.random())?;
            if first != Some(i) && c.is_available(i) {
                match first {
                    None if self.two => first = Some(i),
                    None => return Some(i),
                    Some(f) => return Some(lighter(c, f, i)),
                }
            }
            if tries.spend() {
                return table.fallback.pick(c);
            }
        }
    }
}

/// nginx's comparison: the second server unless it is strictly busier per
/// unit of weight.
fn lighter(c: &Candidates<'_>, first: usize, second: usize) -> usize {
    let load = |i: usize, other: usize| u64::from(c.active(i)) * u64::from(c.weight(other));
    if load(second, first) > load(first, second) {
        first
    } else {
        second
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, Pool, Sequence};

    fn pool(policy: NginxRandom, backends: Vec<Backend>, draws: &Sequence) -> Pool<NginxRandom> {
        Pool::builder(policy)
            .clock(ManualClock::new(1_000))
            .random(draws.clone())
            .build(backends)
            .unwrap()
    }

    fn abc() -> Vec<Backend> {
        // Ranges a [0,1), b [1,3), c [3,6).
        vec![
            Backend::new("a"),
            Backend::new("b").weight(2),
            Backend::new("c").weight(3),
        ]
    }

    #[test]
    fn ranges_follow_config_order_with_down_servers_included() {
        let mut backends = abc();
        backends.insert(1, Backend::new("z").weight(0));
        backends.insert(2, Backend::new("d").down(true).weight(4));
        let t = NginxRandom::plain().build(&backends, None).unwrap();
        // a [0,1), z empty, d [1,5), b [5,7), c [7,10).
        assert_eq!(&*t.starts, [0, 1, 1, 5, 7]);
        let drawn: Vec<usize> = [0, 1, 4, 5, 6, 7, 9, 10]
            .iter()
            .map(|&r| t.draw(r).unwrap())
            .collect();
        assert_eq!(drawn, [0, 2, 2, 3, 3, 4, 4, 0]);
    }

    #[test]
    fn plain_random_redraws_misses() {
        let mut backends = abc();
        backends[1].down = true;
        // 1 lands on b (down): a miss; 3 lands on c.
        let draws = Sequence::new([1, 3, 0]);
        let p = pool(NginxRandom::plain(), backends, &draws);
        assert_eq!(p.pick(Key::None).unwrap().id(), "c");
        assert_eq!(p.pick(Key::None).unwrap().id(), "a");
        assert_eq!(draws.drawn(), 3);
    }

    fn held(p: &Pool<NginxRandom>, ids: &[&str]) -> Vec<crate::Pick> {
        let snap = p.snapshot();
        ids.iter()
            .map(|id| {
                p.request(Key::None)
                    .take(snap.index_of(id).unwrap())
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn two_ties_go_to_the_second_draw() {
        // c then a, both idle: a.
        let p = pool(NginxRandom::two(), abc(), &Sequence::new([3, 0]));
        assert_eq!(p.pick(Key::None).unwrap().id(), "a");
        // b (2 of weight 2) then c (3 of weight 3): equal per weight: c.
        let p = pool(NginxRandom::two(), abc(), &Sequence::new([1, 3]));
        let _h = held(&p, &["b", "b", "c", "c", "c"]);
        assert_eq!(p.pick(Key::None).unwrap().id(), "c");
    }

    #[test]
    fn two_keeps_the_first_only_when_strictly_lighter() {
        // a (1 conn, weight 1) then c (idle): c.
        let p = pool(NginxRandom::two(), abc(), &Sequence::new([0, 3]));
        let _h = held(&p, &["a"]);
        assert_eq!(p.pick(Key::None).unwrap().id(), "c");
        // b (1 of 2) then c (3 of 3): 3 × 2 > 1 × 3, b.
        let p = pool(NginxRandom::two(), abc(), &Sequence::new([1, 3]));
        let _h = held(&p, &["b", "c", "c", "c"]);
        assert_eq!(p.pick(Key::None).unwrap().id(), "b");
    }

    #[test]
    fn two_counts_the_first_draw_and_repeats_as_tries() {
        // Every draw is a: the first server, then 20 repeats: 21 tries, so
        // round robin (nginx's schedule for 1, 2, 3 is c b a c b c) serves c.
        let draws = Sequence::new([0]);
        let p = pool(NginxRandom::two(), abc(), &draws);
        let mut r = p.request(Key::None);
        assert_eq!((r.next().unwrap().id(), draws.drawn()), ("c", 21));
        // Tries are spent for the whole request: no more draws.
        assert_eq!((r.next().unwrap().id(), draws.drawn()), ("b", 21));
        // A new request starts from zero tries.
        let plain = pool(NginxRandom::plain(), abc(), &draws);
        assert_eq!(
            (plain.pick(Key::None).unwrap().id(), draws.drawn()),
            ("a", 22)
        );
    }

    #[test]
    fn after_twenty_tries_round_robin_takes_over() {
        // Only c is up; every draw hits a (down): 21 tries, then round robin
        // (whose schedule leaves down servers out) serves c.
        let mut backends = abc();
        backends[0].down = true;
        backends[1].down = true;
        let draws = Sequence::new([0]);
        let p = pool(NginxRandom::plain(), backends, &draws);
        let mut r = p.request(Key::None);
        let c = r.next().unwrap();
        assert_eq!((c.id(), draws.drawn()), ("c", 21));
        c.failure();
        // The request's tries are spent: the retry goes straight to round
        // robin without drawing, and finds nothing left.
        assert!(r.next().is_none());
        assert_eq!(draws.drawn(), 21);
    }

    #[test]
    fn single_server_tiers_use_round_robin() {
        let draws = Sequence::new([0]);
        let p = pool(NginxRandom::two(), vec![Backend::new("a")], &draws);
        assert_eq!(p.pick(Key::None).unwrap().id(), "a");
        assert_eq!(draws.drawn(), 0);
    }

    #[test]
    fn backup_servers_are_refused() {
        let err = Pool::new(
            NginxRandom::plain(),
            vec![Backend::new("a"), Backend::new("b").backup(true)],
        )
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "backend 'b' cannot be used with random: nginx's random method has no backup servers"
        );
    }
}

//! nginx's `least_conn`.

use std::sync::atomic::Ordering;

use crate::backend::Backend;
use crate::error::BuildError;
use crate::policy::{Candidates, Key, Policy};

/// nginx's `least_conn`: the available backend with the fewest active
/// connections per unit of weight; ties broken by smooth weighted round
/// robin among the tied backends, starting from the first of them.
///
/// Ratios are compared by cross-multiplication, so weights never divide.
/// The round-robin state of the tie-break lives with each backend's live
/// state, so it survives swaps.
///
/// # Complexity
///
/// Pick: O(n), like nginx's. Build: O(1).
///
/// # Examples
///
/// ```
/// use upstream::{Backend, Key, LeastConn, Pool};
///
/// let pool = Pool::new(LeastConn, vec![Backend::new("a"), Backend::new("b")]).unwrap();
/// let first = pool.pick(Key::None).unwrap();
/// assert_eq!(first.id(), "a");
/// // "a" is busy, so "b" has the lower load.
/// assert_eq!(pool.pick(Key::None).unwrap().id(), "b");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeastConn;

impl Policy for LeastConn {
    type Table = ();
    type State = ();

    // Never reads the pool-wide count: skip keeping it.
    const COUNTS_TOTAL_ACTIVE: bool = false;

    fn name(&self) -> &'static str {
        "least_conn"
    }

    fn build(&self, _: &[Backend], _: Option<&()>) -> Result<(), BuildError> {
        Ok(())
    }

    fn pick(&self, _: &(), c: &Candidates<'_>, _: Key<'_>, _: &mut ()) -> Option<usize> {
        least_conn(c)
    }
}

/// The least-loaded available index, nginx's way.
pub(crate) fn least_conn(c: &Candidates<'_>) -> Option<usize> {
    // First pass: the best ratio, and whether several share it.
    let mut best: Option<(usize, u64, u64)> = None;
    let mut many = false;
    for i in 0..c.len() {
        if !c.is_available(i) {
            continue;
        }
        let (active, weight) = (u64::from(c.active(i)), u64::from(c.weight(i)));
        match best {
            Some((_, ba, bw)) if active * bw > ba * weight => {}
            Some((_, ba, bw)) if active * bw == ba * weight => many = true,
            _ => {
                best = Some((i, active, weight));
                many = false;
            }
        }
    }
    let (first, ba, bw) = best?;
    if !many {
        return Some(first);
    }

    // Second pass: smooth weighted round robin over the tied backends.
    let mut chosen: Option<(usize, i64)> = None;
    let mut total: i64 = 0;
    for i in first..c.len() {
        if !c.is_available(i) {
            continue;
        }
        let (active, weight) = (u64::from(c.active(i)), u64::from(c.weight(i)));
        if active * bw != ba * weight {
            continue;
        }
        let w = i64::from(c.weight(i));
        // Relaxed: tie-break bookkeeping; races only perturb the order.
        let current = c.live(i).current_weight.fetch_add(w, Ordering::Relaxed) + w;
        total += w;
        if chosen.is_none_or(|(_, cw)| current > cw) {
            chosen = Some((i, current));
        }
    }
    let (i, _) = chosen?;
    // Relaxed: as above.
    c.live(i).current_weight.fetch_sub(total, Ordering::Relaxed);
    Some(i)
}

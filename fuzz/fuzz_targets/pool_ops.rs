//! A pool driven by an arbitrary sequence of operations, checked after
//! every step against the plain model the property tests use
//! (tests/model/mod.rs): no pick of a backend that is down, failed out, at
//! `max_conns`, removed or from another snapshot (picks and lookups through
//! a reader alike); none only when nothing
//! can serve; the exact pick of the reference where there is one; counts
//! equal to the model's after every step and zero at the end.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use upstream::envoy::{BoundedLoad, Maglev, RingHash};
use upstream::haproxy::{HaproxyChash, HaproxyMap, StaticRr};
use upstream::policy::Policy;
use upstream::{
    Backend, IpHash, Ketama, LeastConn, NginxHash, NginxRandom, P2c, Random, Rendezvous, RoundRobin,
};

#[path = "../../tests/model/mod.rs"]
mod model;

use model::{
    address, run_ops, Keys, LeastConnRef, NoReference, Op, Reference, Report, RoundRobinRef, Spec,
};

/// Reads the input a byte at a time; past its end, every read is 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One backend: an address slot, a weight and its flags, in 3 bytes.
    fn backend(&mut self, backups: bool) -> Backend {
        let slot = u16::from(self.byte() % 64);
        let weight = match self.byte() {
            w @ 0..=199 => u32::from(w % 6),
            // Up to 255: HAProxy's policies take weights up to 256.
            w => u32::from(w),
        };
        let flags = self.byte();
        let max_fails = u32::from(flags >> 6);
        let fail_timeout = [1, 1_000, 5_000, 10_000][usize::from(flags >> 4 & 3)];
        Backend::new(address(slot))
            .weight(weight)
            .down(flags & 1 != 0)
            .backup(backups && flags & 2 != 0)
            .drain(flags & 4 != 0 && flags & 8 != 0)
            .max_conns(u32::from(flags & 8 != 0 && flags & 4 == 0))
            .max_fails(max_fails)
            .fail_timeout(Duration::from_millis(fail_timeout))
    }

    /// A set of up to 15 backends, identities made unique.
    fn set(&mut self, backups: bool) -> Vec<Backend> {
        let n = self.byte() % 16;
        let mut set: Vec<Backend> = (0..n).map(|_| self.backend(backups)).collect();
        let mut seen = std::collections::HashSet::new();
        set.retain(|b| seen.insert(b.id.clone()));
        set
    }

    fn op(&mut self, backups: bool) -> Op {
        let code = self.byte();
        let arg = self.byte();
        match code % 12 {
            0 | 1 => Op::Pick(u16::from(arg)),
            10 | 11 => {
                let report =
                    [Report::Success, Report::Failure, Report::Drop][usize::from(code / 12 % 3)];
                Op::Lookup(u16::from(arg), report)
            }
            2 => Op::Begin(u16::from(arg)),
            3 | 4 => Op::Next,
            5 | 6 => {
                let report =
                    [Report::Success, Report::Failure, Report::Drop][usize::from(code / 10 % 3)];
                Op::Report(usize::from(arg), report)
            }
            7 => Op::Advance(
                [0, 1, 999, 1_000, 1_001, 5_000, 10_001, u64::MAX][usize::from(arg % 8)],
            ),
            8 => match arg % 3 {
                0 => Op::SetDown(usize::from(arg / 3), arg & 1 == 0),
                1 => Op::SetWeight(usize::from(arg / 3), u32::from(arg / 3 % 5)),
                _ => Op::Swap(self.set(backups)),
            },
            _ => Op::Swap(self.set(backups)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let which = input.byte() % 17;
    // nginx's hash methods and random refuse backup servers.
    let backups = !matches!(which, 6..=8 | 14 | 15);
    let set = input.set(backups);
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < 400 {
        ops.push(input.op(backups));
    }
    // Policies with a reference are checked pick for pick; the others
    // for validity only.
    let maglev = Maglev::with_table_size(251).unwrap();
    let result = match which {
        0 => run(RoundRobin, RoundRobinRef, Keys::None, set, ops),
        1 => run(LeastConn, LeastConnRef, Keys::None, set, ops),
        2 => run(
            StaticRr::default().all_backups(true),
            NoReference,
            Keys::None,
            set,
            ops,
        ),
        3 => run(
            HaproxyMap::uri().all_backups(true),
            NoReference,
            Keys::Bytes,
            set,
            ops,
        ),
        4 => run(
            HaproxyChash::uri().all_backups(true),
            NoReference,
            Keys::Bytes,
            set,
            ops,
        ),
        5 => run(
            HaproxyMap::source().all_backups(true),
            NoReference,
            Keys::Ip,
            set,
            ops,
        ),
        6 => run(IpHash, NoReference, Keys::Ip, set, ops),
        7 => run(NginxHash, NoReference, Keys::Bytes, set, ops),
        8 => run(Ketama, NoReference, Keys::Bytes, set, ops),
        9 => run(Rendezvous, NoReference, Keys::Bytes, set, ops),
        10 => run(maglev, NoReference, Keys::Hash, set, ops),
        11 => run(RingHash::new(), NoReference, Keys::Bytes, set, ops),
        12 => run(
            BoundedLoad::new(maglev, 150).unwrap(),
            NoReference,
            Keys::Ip,
            set,
            ops,
        ),
        13 => run(Random, NoReference, Keys::None, set, ops),
        14 => run(NginxRandom::plain(), NoReference, Keys::None, set, ops),
        15 => run(NginxRandom::two(), NoReference, Keys::None, set, ops),
        _ => run(P2c::new(), NoReference, Keys::None, set, ops),
    };
    if let Err(e) = result {
        panic!("{e}");
    }
});

fn run<P: Policy, R: Reference>(
    policy: P,
    reference: R,
    keys: Keys,
    set: Vec<Backend>,
    ops: Vec<Op>,
) -> Result<(), String> {
    let spec = Spec {
        policy,
        reference,
        backups: true,
        keys,
        picks_drained: false,
    };
    run_ops(spec, set, ops)
}

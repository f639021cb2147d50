//! A policy chosen at runtime, such as the method of a config file.

use crate::backend::{Backend, BackendSet};
use crate::config::{Method, UpstreamConfig};
use crate::error::BuildError;
use crate::policy::{
    Candidates, IpHash, Ketama, Key, LeastConn, NginxHash, NginxRandom, P2c, PeakEwma, Policy,
    RampMode, Random, RoundRobin,
};
use crate::pool::Pool;

/// Defines `AnyPolicy`, its table and its state over a list of policies,
/// each arm forwarding to the policy's own implementation.
macro_rules! any_policy {
    ($($(#[$doc:meta])* $variant:ident($ty:ty)),* $(,)?) => {
        /// One of the built-in policies, chosen at runtime.
        ///
        /// Static dispatch through a `match`: each pick costs one branch more
        /// than the policy alone. Use the policy type directly when it is
        /// known at compile time.
        ///
        /// # Examples
        ///
        /// ```
        /// use upstream::config::parse_nginx;
        /// use upstream::policy::{AnyPolicy, Policy};
        /// use upstream::{Key, Pool};
        ///
        /// let cfg = parse_nginx("upstream app { least_conn; server a:1; server b:1; }").unwrap();
        /// let pool = Pool::from_config(&cfg).unwrap();
        /// assert_eq!(pool.snapshot().policy().name(), "least_conn");
        /// assert_eq!(pool.pick(Key::None).unwrap().id(), "a:1");
        /// ```
        #[derive(Clone, Debug)]
        #[non_exhaustive]
        pub enum AnyPolicy {
            $($(#[$doc])* $variant($ty),)*
        }

        /// The table of an [`AnyPolicy`].
        #[non_exhaustive]
        pub enum AnyTable {
            $(#[doc = concat!("The table of [`", stringify!($variant), "`](AnyPolicy::", stringify!($variant), ").")]
            $variant(<$ty as Policy>::Table),)*
        }

        /// The per-request state of an [`AnyPolicy`].
        #[derive(Default)]
        #[non_exhaustive]
        pub enum AnyState {
            /// Not yet used.
            #[default]
            Fresh,
            $(#[doc = concat!("The state of [`", stringify!($variant), "`](AnyPolicy::", stringify!($variant), ").")]
            $variant(<$ty as Policy>::State),)*
        }

        impl Policy for AnyPolicy {
            type Table = AnyTable;
            type State = AnyState;

            fn name(&self) -> &'static str {
                match self {
                    $(AnyPolicy::$variant(p) => p.name(),)*
                }
            }

            fn validate(&self, set: &BackendSet) -> Result<(), BuildError> {
                match self {
                    $(AnyPolicy::$variant(p) => p.validate(set),)*
                }
            }

            fn ramp_mode(&self) -> RampMode {
                match self {
                    $(AnyPolicy::$variant(p) => p.ramp_mode(),)*
                }
            }

            fn build(&self, tier: &[Backend], prev: Option<&AnyTable>) -> Result<AnyTable, BuildError> {
                match self {
                    $(AnyPolicy::$variant(p) => {
                        let prev = match prev {
                            Some(AnyTable::$variant(t)) => Some(t),
                            _ => None,
                        };
                        p.build(tier, prev).map(AnyTable::$variant)
                    })*
                }
            }

            #[inline]
            fn pick(&self, table: &AnyTable, c: &Candidates<'_>, key: Key<'_>, state: &mut AnyState) -> Option<usize> {
                match (self, table) {
                    $((AnyPolicy::$variant(p), AnyTable::$variant(t)) => {
                        if !matches!(state, AnyState::$variant(_)) {
                            *state = AnyState::$variant(Default::default());
                        }
                        let AnyState::$variant(s) = state else { return None };
                        p.pick(t, c, key, s)
                    })*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

any_policy! {
    /// nginx's smooth weighted round robin.
    RoundRobin(RoundRobin),
    /// nginx's `least_conn`.
    LeastConn(LeastConn),
    /// nginx's `ip_hash`.
    IpHash(IpHash),
    /// nginx's `hash $key`.
    Hash(NginxHash),
    /// nginx's `hash $key consistent` (ketama).
    Ketama(Ketama),
    /// nginx's `random [two [least_conn]]`.
    NginxRandom(NginxRandom),
    /// Weighted random.
    Random(Random),
    /// Power of d choices over active requests per weight.
    P2c(P2c),
    /// Power of d choices over peak-EWMA latency.
    PeakEwma(PeakEwma),
    /// Envoy's Maglev.
    Maglev(crate::envoy::Maglev),
    /// Envoy's ring hash.
    RingHash(crate::envoy::RingHash),
    /// Envoy's Maglev with bounded loads.
    BoundedMaglev(crate::envoy::BoundedLoad<crate::envoy::Maglev>),
    /// Envoy's ring hash with bounded loads.
    BoundedRingHash(crate::envoy::BoundedLoad<crate::envoy::RingHash>),
    /// Weighted rendezvous hashing.
    Rendezvous(crate::policy::Rendezvous),
    /// HAProxy's `hash-type map-based`.
    HaproxyMap(crate::haproxy::HaproxyMap),
    /// HAProxy's `hash-type consistent`.
    HaproxyChash(crate::haproxy::HaproxyChash),
    /// HAProxy's `balance static-rr`.
    StaticRr(crate::haproxy::StaticRr),
}

impl From<RoundRobin> for AnyPolicy {
    fn from(p: RoundRobin) -> Self {
        AnyPolicy::RoundRobin(p)
    }
}

impl From<LeastConn> for AnyPolicy {
    fn from(p: LeastConn) -> Self {
        AnyPolicy::LeastConn(p)
    }
}

impl AnyPolicy {
    /// The policy for a config file's load-balancing method.
    pub fn for_method(method: &Method) -> AnyPolicy {
        match method {
            Method::RoundRobin => RoundRobin.into(),
            Method::LeastConn => LeastConn.into(),
            Method::IpHash => AnyPolicy::IpHash(IpHash),
            Method::Hash {
                consistent: false, ..
            } => AnyPolicy::Hash(NginxHash),
            Method::Hash {
                consistent: true, ..
            } => AnyPolicy::Ketama(Ketama),
            // nginx's `two least_conn` picks exactly as `two` does.
            Method::Random { two: false, .. } => AnyPolicy::NginxRandom(NginxRandom::plain()),
            Method::Random { two: true, .. } => AnyPolicy::NginxRandom(NginxRandom::two()),
        }
    }
}

impl Pool<AnyPolicy> {
    /// A pool with the method and backends of an `upstream` config.
    ///
    /// Two parts of a config are for the caller, since this crate evaluates
    /// no nginx variables: the `hash` key expression (`$request_uri`), which
    /// the caller computes per request and passes as [`Key::Bytes`], and the
    /// `sticky` directive, which becomes a layer with
    /// [`Sticky::from_config`](crate::sticky::Sticky::from_config).
    ///
    /// # Errors
    ///
    /// [`BuildError`] when the policy refuses the set (for example, backup
    /// servers with a hash method).
    pub fn from_config(config: &UpstreamConfig) -> Result<Self, BuildError> {
        Pool::new(
            AnyPolicy::for_method(config.method()),
            config.backends().clone(),
        )
    }

    /// Swaps in a new config's method and backends in one step; live state
    /// carries over for every backend that stays.
    ///
    /// # Errors
    ///
    /// [`BuildError`]; the pool then keeps serving from its current snapshot.
    pub fn reload(&self, config: &UpstreamConfig) -> Result<(), BuildError> {
        self.reconfigure(
            AnyPolicy::for_method(config.method()),
            config.backends().clone(),
        )
    }
}

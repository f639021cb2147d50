//! Sticky sessions, as nginx's `sticky` directive keeps them: `cookie`,
//! `route` and `learn`, over any balancing policy.
//!
//! Hash affinity keeps a client where its address or key points; a session
//! needs more. Users behind one NAT share an address, mobile clients change
//! theirs, and a session must survive the set of backends changing. A
//! [`Sticky`] layer sits in front of a pool's policy: a request that carries
//! a sticky value goes to the backend the value names, and any other request
//! is balanced by the policy and becomes bound to where it landed.
//!
//! # Server ids
//!
//! A backend's sticky id is its `route` if it has one, else the lowercase
//! hex MD5 of its identity as written ([`Snapshot::route_id`]), so cookies
//! set by nginx for the same servers carry over.
//!
//! # Methods
//!
//! - [`Sticky::cookie`]: the id travels in a cookie this layer sets
//!   ([`CookieConfig`], optionally sealed with [`SealKeys`]).
//! - [`Sticky::route`]: the id is a value the caller extracts (a cookie, a
//!   URL segment; see [`route_suffix`] for the `JSESSIONID=xxx.route` form).
//! - [`Sticky::learn`]: the application's own session id, learned from its
//!   responses ([`Sticky::learn_session`]) into a [`LearnStore`].
//!
//! # Rules
//!
//! - A request whose sticky backend cannot serve (down, failed out, at
//!   `max_conns`, removed, already tried by this request) is balanced by the
//!   policy; the new backend becomes the session's, and the result says
//!   affinity broke ([`Affinity::Broken`]) so the application can resync.
//! - A session bound to a backup is moved back as soon as a primary can
//!   take new clients ([`Broken::Backup`]).
//! - A draining (or weight-0) backend keeps its sessions and takes no new
//!   ones.
//! - Sticky composes with every [`Policy`]: the request's [`Key`](crate::Key)
//!   reaches the policy unchanged.
//!
//! # Example
//!
//! ```
//! use upstream::sticky::{find_cookie, Affinity, CookieConfig, Sticky};
//! use upstream::{Backend, Key, LeastConn, Pool};
//!
//! let pool = Pool::new(
//!     LeastConn,
//!     vec![Backend::new("127.0.0.1:18081"), Backend::new("127.0.0.1:18082")],
//! )
//! .unwrap();
//! let sticky = Sticky::cookie(CookieConfig::new("srv_id").path("/")).unwrap();
//!
//! // First request: no cookie, balanced, a cookie to set.
//! let mut request = pool.request(Key::None);
//! let first = sticky.pick(&mut request, None).unwrap();
//! assert_eq!(first.affinity(), Affinity::New);
//! let set_cookie = sticky.set_cookie(request.snapshot(), &first).unwrap();
//! assert_eq!(set_cookie, "srv_id=7f3797d6a7e152c9ae2760fc816c6014; path=/");
//!
//! // Next request: the browser sends the cookie back.
//! let header = "theme=dark; srv_id=7f3797d6a7e152c9ae2760fc816c6014";
//! let mut request = pool.request(Key::None);
//! let next = sticky.pick(&mut request, find_cookie(header, "srv_id")).unwrap();
//! assert_eq!((next.id(), next.affinity()), ("127.0.0.1:18081", Affinity::Kept));
//! ```
//!
//! # Limitations
//!
//! - nginx's `sticky_strict`-like "fail rather than rebalance" is not
//!   offered: an unavailable sticky backend always falls back to the policy.
//! - A sealed layer accepts only sealed values: turning sealing on breaks
//!   the affinity of cookies set unsealed, once.
//! - A client can replay any cookie it was once given, sealed or not, and so
//!   choose among the backends it has already been sent to.
//! - The sealed-value table is built by the first pick after each pool
//!   update (O(n × keys) HMACs; [`Sticky::prepare`] moves that off the
//!   request path), and is keyed by generation: use one layer per pool.

use std::sync::Arc;

use crate::pick::{Pick, Request};
use crate::policy::Policy;
use crate::pool::Snapshot;

mod cookie;
mod learn;
mod seal;
#[cfg(test)]
mod tests;

pub use cookie::{
    find_cookie, CookieConfig, Expires, Refresh, SameSite, SystemWallClock, WallClock,
};
pub use learn::{
    Bind, LearnConfig, LearnStore, MemoryLearnStore, DEFAULT_CAPACITY, DEFAULT_TIMEOUT,
};
pub use seal::{SealKeys, MIN_KEY_LEN};

use seal::Sealer;

/// Why a sticky layer could not be built or used. Nothing changes when one
/// is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StickyError {
    /// The cookie name is empty.
    #[error("sticky cookie: the cookie name is empty")]
    EmptyCookieName,
    /// The cookie name has a character a cookie name cannot have.
    #[error(
        "sticky cookie: '{name}' is not a cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"
    )]
    InvalidCookieName {
        /// The name given.
        name: String,
    },
    /// A `domain` or `path` value is empty or could break the header.
    #[error("sticky cookie: {attribute}='{value}' must be non-empty visible text without ';'")]
    InvalidAttribute {
        /// `domain` or `path`.
        attribute: &'static str,
        /// The value given.
        value: String,
    },
    /// An `expires` value is neither `max` nor whole seconds.
    #[error(
        "sticky cookie: expires='{value}' is not 'max' or a whole number of seconds such as 1h"
    )]
    InvalidExpires {
        /// The value given.
        value: String,
    },
    /// Sealing was asked for with no key.
    #[error("sticky cookie: sealing needs at least one key")]
    NoSealKey,
    /// A sealing key is too short to be a secret.
    #[error("sticky cookie: seal key #{index} is {len} bytes; use at least 32 random bytes")]
    WeakSealKey {
        /// Its position in the list, from 0.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// A learn timeout of zero.
    #[error("sticky learn: the timeout must be above 0")]
    ZeroTimeout,
    /// A learn store with room for nothing.
    #[error("sticky learn: the store's capacity must be at least 1")]
    ZeroCapacity,
    /// A session was offered to a layer that is not `sticky learn`.
    #[error("this sticky layer is not 'sticky learn'; only learn tables take sessions")]
    NotLearn,
    /// A cookie was asked of a layer that is not `sticky cookie`.
    #[error("this sticky layer is not 'sticky cookie'; it sets no cookie")]
    NotCookie,
    /// An empty session id.
    #[error("sticky learn: the session id is empty")]
    EmptySession,
    /// The pick's backend is not in the snapshot given.
    #[error("backend '{id}' is not in this snapshot")]
    UnknownBackend {
        /// The backend's identity.
        id: String,
    },
}

/// What became of a request's affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    /// The request went to the backend its sticky value names.
    Kept,
    /// The request had no binding; the policy chose, and the session is
    /// bound there now (for `learn`, once the response names the session).
    New,
    /// The request was bound, but could not go there; the policy chose and
    /// the session is bound to the new backend.
    Broken(Broken),
}

/// Why affinity broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The value names no backend: removed, or a forged or tampered value.
    Unknown,
    /// The backend is down, failed out, at `max_conns`, or already tried by
    /// this request.
    Unavailable,
    /// The backend is a backup and a primary can take clients again.
    Backup,
}

/// A pick made by a sticky layer: the backend, what happened to affinity,
/// and whether a `Set-Cookie` is due. Derefs to the [`Pick`].
#[derive(Debug)]
#[must_use = "a pick counts as an active connection until dropped"]
pub struct StickyPick {
    pick: Pick,
    affinity: Affinity,
    set_cookie: bool,
}

impl StickyPick {
    /// What became of the request's affinity.
    pub fn affinity(&self) -> Affinity {
        self.affinity
    }

    /// True when the response must carry the sticky cookie
    /// ([`Sticky::set_cookie`] builds it).
    pub fn needs_set_cookie(&self) -> bool {
        self.set_cookie
    }

    /// The pick, to report its outcome.
    pub fn into_pick(self) -> Pick {
        self.pick
    }
}

impl std::ops::Deref for StickyPick {
    type Target = Pick;

    fn deref(&self) -> &Pick {
        &self.pick
    }
}

/// A sticky-session layer over any pool: sticky first, the policy otherwise.
///
/// One layer serves one pool, from every thread.
pub struct Sticky {
    mode: Mode,
}

enum Mode {
    Cookie(CookieMode),
    Route,
    Learn(LearnMode),
}

struct CookieMode {
    config: CookieConfig,
    sealer: Option<Sealer>,
}

struct LearnMode {
    config: LearnConfig,
    store: Arc<dyn LearnStore>,
}

impl std::fmt::Debug for Sticky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mode {
            Mode::Cookie(c) => f.debug_tuple("Sticky::Cookie").field(&c.config).finish(),
            Mode::Route => f.write_str("Sticky::Route"),
            Mode::Learn(l) => f.debug_tuple("Sticky::Learn").field(&l.config).finish(),
        }
    }
}

impl Sticky {
    /// nginx's `sticky cookie NAME ...`.
    ///
    /// # Errors
    ///
    /// [`StickyError`] naming the cookie name or attribute at fault.
    pub fn cookie(config: CookieConfig) -> Result<Self, StickyError> {
        config.validate()?;
        let sealer = config.seal.clone().map(Sealer::new);
        Ok(Sticky {
            mode: Mode::Cookie(CookieMode { config, sealer }),
        })
    }

    /// The sticky layer for a config file's `sticky` directive.
    ///
    /// The directive's variables (`$cookie_sid`, `$route_cookie`) name what
    /// the caller extracts per request and passes to [`Sticky::pick`]; a
    /// `learn` directive gets an in-memory store of the default capacity,
    /// `domain`, `path` and the other cookie attributes carry over as written.
    ///
    /// # Errors
    ///
    /// [`StickyError`] naming the attribute at fault (for example a
    /// `domain` holding an nginx variable, which this crate does not evaluate).
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::config::parse_nginx;
    /// use upstream::sticky::Sticky;
    ///
    /// let cfg = parse_nginx(
    ///     "upstream app { server a:1; server b:1; sticky cookie srv_id expires=1h path=/; }",
    /// )
    /// .unwrap();
    /// let sticky = Sticky::from_config(cfg.sticky().unwrap()).unwrap();
    /// assert_eq!(sticky.cookie_name(), Some("srv_id"));
    /// ```
    pub fn from_config(directive: &crate::config::Sticky) -> Result<Self, StickyError> {
        use crate::config::Sticky as Directive;
        match directive {
            Directive::Cookie(c) => {
                let mut config = CookieConfig::new(c.name.clone())
                    .httponly(c.httponly)
                    .secure(c.secure);
                if let Some(expires) = c.expires {
                    config = config.expires(expires);
                }
                if let Some(domain) = &c.domain {
                    config = config.domain(domain.clone());
                }
                if let Some(path) = &c.path {
                    config = config.path(path.clone());
                }
                if let Some(samesite) = c.samesite {
                    config = config.samesite(samesite);
                }
                Sticky::cookie(config)
            }
            Directive::Route(_) => Ok(Sticky::route()),
            Directive::Learn(l) => {
                let store = MemoryLearnStore::default();
                Ok(Sticky::learn(LearnConfig::new(l.timeout)?, Arc::new(store)))
            }
        }
    }

    /// nginx's `sticky route $variable ...`: the caller passes the first
    /// non-empty value, which must equal a backend's server id exactly.
    ///
    /// # Examples
    ///
    /// ```
    /// use upstream::sticky::{route_suffix, Affinity, Sticky};
    /// use upstream::{Backend, Key, Pool, RoundRobin};
    ///
    /// let pool = Pool::new(
    ///     RoundRobin,
    ///     vec![Backend::new("10.0.0.1:80").route("a"), Backend::new("10.0.0.2:80").route("b")],
    /// )
    /// .unwrap();
    /// let sticky = Sticky::route();
    /// let route = route_suffix("E1F3A6B0C9D2.b");
    /// let pick = sticky.pick(&mut pool.request(Key::None), route).unwrap();
    /// assert_eq!((pick.id(), pick.affinity()), ("10.0.0.2:80", Affinity::Kept));
    /// ```
    pub fn route() -> Self {
        Sticky { mode: Mode::Route }
    }

    /// nginx's `sticky learn`: sessions bound in `store`, which may be
    /// shared with other layers or processes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use upstream::sticky::{Affinity, LearnConfig, MemoryLearnStore, Sticky};
    /// use upstream::{Backend, Key, Pool, RoundRobin};
    ///
    /// let pool = Pool::new(RoundRobin, vec![Backend::new("a:80"), Backend::new("b:80")]).unwrap();
    /// let sticky = Sticky::learn(LearnConfig::default(), Arc::new(MemoryLearnStore::default()));
    ///
    /// // The application answers with `Set-Cookie: sid=u42`: learn it.
    /// let mut request = pool.request(Key::None);
    /// let pick = sticky.pick(&mut request, None).unwrap();
    /// assert_eq!(pick.id(), "a:80");
    /// sticky.learn_session(request.snapshot(), "u42", &pick).unwrap();
    ///
    /// // Later requests with `Cookie: sid=u42` stay on a:80.
    /// for _ in 0..3 {
    ///     let pick = sticky.pick(&mut pool.request(Key::None), Some("u42")).unwrap();
    ///     assert_eq!((pick.id(), pick.affinity()), ("a:80", Affinity::Kept));
    /// }
    /// ```
    pub fn learn(config: LearnConfig, store: Arc<dyn LearnStore>) -> Self {
        Sticky {
            mode: Mode::Learn(LearnMode { config, store }),
        }
    }

    /// Picks the backend for the next attempt of `request`.
    ///
    /// `input` is the request's sticky value: the cookie's value (see
    /// [`find_cookie`]), the route, or the session id, by method; `None` or
    /// empty when the request has none. Call it once per attempt: when a
    /// retry follows a failed sticky backend, that backend was tried, so the
    /// retry is balanced and reported as [`Broken::Unavailable`].
    ///
    /// Returns `None` when no backend can take the request.
    ///
    /// # Complexity
    ///
    /// One O(1) lookup of the value (a hash probe; for sealed cookies, plus a
    /// 16-byte compare), then the policy's pick if affinity cannot be kept.
    /// Cookie and route layers take no lock and do not allocate, except for
    /// the first sealed pick after a pool update (see the module's
    /// limitations). A learn layer calls its store: in memory, one shard
    /// lock held for one map operation, and one allocation when a session is
    /// bound for the first time. A value naming a backup scans the
    /// primaries, O(primaries).
    pub fn pick<P: Policy>(
        &self,
        request: &mut Request<'_, P>,
        input: Option<&str>,
    ) -> Option<StickyPick> {
        let input = input.filter(|value| !value.is_empty());
        match &self.mode {
            Mode::Cookie(cookie) => cookie.pick(request, input),
            Mode::Route => route_pick(request, input),
            Mode::Learn(learn) => learn.pick(request, input),
        }
    }

    /// The `Set-Cookie` header value to send with the response, when
    /// `pick` needs one; `None` otherwise or when this is not a cookie layer.
    ///
    /// `snapshot` is the request's ([`Request::snapshot`]) or any later one
    /// that still holds the backend.
    ///
    /// # Complexity
    ///
    /// Builds one string of about 100 bytes (one HMAC when sealed).
    pub fn set_cookie<P: Policy>(
        &self,
        snapshot: &Snapshot<P>,
        pick: &StickyPick,
    ) -> Option<String> {
        if !pick.set_cookie {
            return None;
        }
        let mut out = String::with_capacity(160);
        self.write_set_cookie(snapshot, &pick.pick, &mut out).ok()?;
        Some(out)
    }

    /// Appends the `Set-Cookie` value binding a client to `pick`'s backend
    /// to `out`, whether or not one is due, so that a proxy can reuse a
    /// buffer.
    ///
    /// # Errors
    ///
    /// [`StickyError::NotCookie`] for a route or learn layer,
    /// [`StickyError::UnknownBackend`] when the backend is not in
    /// `snapshot`. `out` is unchanged then.
    pub fn write_set_cookie<P: Policy>(
        &self,
        snapshot: &Snapshot<P>,
        pick: &Pick,
        out: &mut String,
    ) -> Result<(), StickyError> {
        let Mode::Cookie(cookie) = &self.mode else {
            return Err(StickyError::NotCookie);
        };
        let server_id = server_id_of(snapshot, pick)?;
        cookie
            .config
            .write_set_cookie(out, |out| match &cookie.sealer {
                Some(sealer) => sealer.keys().seal(server_id, out),
                None => out.push_str(server_id),
            });
        Ok(())
    }

    /// Learns from a response that `session` lives on `pick`'s backend
    /// (nginx's `create=$upstream_cookie_NAME`), replacing any binding.
    ///
    /// # Errors
    ///
    /// [`StickyError::NotLearn`] for a cookie or route layer,
    /// [`StickyError::EmptySession`], or [`StickyError::UnknownBackend`]
    /// when the backend is not in `snapshot`. Nothing is stored then.
    ///
    /// # Complexity
    ///
    /// One store write: O(1) amortized under one shard lock in memory.
    pub fn learn_session<P: Policy>(
        &self,
        snapshot: &Snapshot<P>,
        session: &str,
        pick: &Pick,
    ) -> Result<(), StickyError> {
        let Mode::Learn(learn) = &self.mode else {
            return Err(StickyError::NotLearn);
        };
        if session.is_empty() {
            return Err(StickyError::EmptySession);
        }
        let server_id = server_id_of(snapshot, pick)?;
        learn.store.learn(
            session,
            server_id,
            snapshot.now_ms(),
            learn.config.timeout_ms(),
        );
        Ok(())
    }

    /// The session table of a learn layer.
    pub fn store(&self) -> Option<&Arc<dyn LearnStore>> {
        match &self.mode {
            Mode::Learn(learn) => Some(&learn.store),
            _ => None,
        }
    }

    /// The cookie's name, for a cookie layer.
    pub fn cookie_name(&self) -> Option<&str> {
        match &self.mode {
            Mode::Cookie(cookie) => Some(cookie.config.name()),
            _ => None,
        }
    }

    /// Builds what the layer needs for `snapshot` ahead of the first pick
    /// (the sealed-value table); call it after each pool update to keep that
    /// work off the request path. Does nothing for other layers.
    ///
    /// # Complexity
    ///
    /// O(n × keys) HMACs for a sealed cookie layer whose table is stale.
    pub fn prepare<P: Policy>(&self, snapshot: &Snapshot<P>) {
        if let Mode::Cookie(CookieMode {
            sealer: Some(sealer),
            ..
        }) = &self.mode
        {
            sealer.prepare(snapshot);
        }
    }
}

/// The route in a value of the form `SESSION.ROUTE`, as Tomcat's
/// `JSESSIONID` carries it: the word characters after the last `.`, when
/// something precedes it. This is what nginx's documentation extracts with
/// `map $cookie_jsessionid $route_cookie { ~.+\.(?P<route>\w+)$ $route; }`;
/// nginx itself compares the variable's whole value with the server ids.
///
/// # Examples
///
/// ```
/// use upstream::sticky::route_suffix;
///
/// assert_eq!(route_suffix("9A1C0F.node_2"), Some("node_2"));
/// assert_eq!(route_suffix("a.b.c"), Some("c"));
/// assert_eq!(route_suffix(".b"), None);
/// assert_eq!(route_suffix("a.b-c"), None);
/// assert_eq!(route_suffix("nodot"), None);
/// ```
pub fn route_suffix(value: &str) -> Option<&str> {
    let (head, route) = value.rsplit_once('.')?;
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    (!head.is_empty() && !route.is_empty() && route.bytes().all(word)).then_some(route)
}

impl StickyPick {
    fn new(pick: Pick, affinity: Affinity, set_cookie: bool) -> Self {
        StickyPick {
            pick,
            affinity,
            set_cookie,
        }
    }
}

/// The server id of `pick`'s backend in `snapshot`, found by position when
/// the snapshot is the pick's, else by identity.
fn server_id_of<'s, P: Policy>(
    snapshot: &'s Snapshot<P>,
    pick: &Pick,
) -> Result<&'s str, StickyError> {
    let same = snapshot
        .backend(pick.index())
        .is_some_and(|b| b.id == pick.id());
    let index = if same {
        Some(pick.index())
    } else {
        snapshot.index_of(pick.id())
    };
    index
        .and_then(|i| snapshot.route_id(i))
        .ok_or_else(|| StickyError::UnknownBackend {
            id: pick.id().to_string(),
        })
}

/// True when a primary not yet tried by `request` can take new clients.
fn primary_available<P: Policy>(request: &Request<'_, P>) -> bool {
    let snap = request.snapshot();
    (0..snap.primaries()).any(|i| !request.was_tried(i) && snap.is_available(i))
}

/// Takes the sticky backend `index`, or says why it cannot serve.
fn follow<P: Policy>(request: &mut Request<'_, P>, index: Option<usize>) -> Result<Pick, Broken> {
    let index = index.ok_or(Broken::Unknown)?;
    if index >= request.snapshot().primaries() && primary_available(request) {
        return Err(Broken::Backup);
    }
    request.take(index).ok_or(Broken::Unavailable)
}

/// Follows the sticky backend, or balances and says why affinity broke.
fn follow_or_balance<P: Policy>(
    request: &mut Request<'_, P>,
    index: Option<usize>,
) -> Option<(Pick, Affinity)> {
    match follow(request, index) {
        Ok(pick) => Some((pick, Affinity::Kept)),
        Err(why) => request.next().map(|pick| (pick, Affinity::Broken(why))),
    }
}

fn balance<P: Policy>(request: &mut Request<'_, P>, set_cookie: bool) -> Option<StickyPick> {
    request
        .next()
        .map(|pick| StickyPick::new(pick, Affinity::New, set_cookie))
}

fn route_pick<P: Policy>(request: &mut Request<'_, P>, route: Option<&str>) -> Option<StickyPick> {
    let Some(route) = route else {
        return balance(request, false);
    };
    let index = request.snapshot().index_of_route(route);
    let (pick, affinity) = follow_or_balance(request, index)?;
    Some(StickyPick::new(pick, affinity, false))
}

impl CookieMode {
    fn pick<P: Policy>(
        &self,
        request: &mut Request<'_, P>,
        value: Option<&str>,
    ) -> Option<StickyPick> {
        let Some(value) = value else {
            return balance(request, true);
        };
        let (index, stale_key) = self.resolve(request.snapshot(), value);
        let (pick, affinity) = follow_or_balance(request, index)?;
        let set_cookie = match affinity {
            Affinity::Kept => self.config.refresh == Refresh::Always || stale_key,
            Affinity::New | Affinity::Broken(_) => true,
        };
        Some(StickyPick::new(pick, affinity, set_cookie))
    }

    /// The backend a cookie value names, and whether it was sealed with an
    /// older key.
    fn resolve<P: Policy>(&self, snap: &Snapshot<P>, value: &str) -> (Option<usize>, bool) {
        match &self.sealer {
            None => (snap.index_of_route(value), false),
            Some(sealer) => match sealer.open(snap, value) {
                Some(found) => (Some(found.index), found.stale_key),
                None => (None, false),
            },
        }
    }
}

impl LearnMode {
    fn pick<P: Policy>(
        &self,
        request: &mut Request<'_, P>,
        session: Option<&str>,
    ) -> Option<StickyPick> {
        let Some(session) = session else {
            return balance(request, false);
        };
        let now = request.snapshot().now_ms();
        let timeout = self.config.timeout_ms();
        if let Some(bound) = self.store.lookup(session, now, timeout) {
            let index = request.snapshot().index_of_route(&bound);
            let (pick, affinity) = follow_or_balance(request, index)?;
            if affinity != Affinity::Kept {
                self.rebind(request.snapshot(), session, &pick, now);
            }
            return Some(StickyPick::new(pick, affinity, false));
        }
        self.first_request(request, session, now)
    }

    /// A session with no binding: balance, then bind unless a concurrent
    /// request bound it first, in which case follow that binding.
    fn first_request<P: Policy>(
        &self,
        request: &mut Request<'_, P>,
        session: &str,
        now: u64,
    ) -> Option<StickyPick> {
        let timeout = self.config.timeout_ms();
        let candidate = request.next()?;
        let Some(server_id) = request.snapshot().route_id(candidate.index()) else {
            return Some(StickyPick::new(candidate, Affinity::New, false));
        };
        let winner = match self.store.bind_if_absent(session, server_id, now, timeout) {
            Bind::Inserted => return Some(StickyPick::new(candidate, Affinity::New, false)),
            Bind::Existing(winner) if *winner == *server_id => {
                return Some(StickyPick::new(candidate, Affinity::New, false))
            }
            Bind::Existing(winner) => winner,
        };
        let index = request.snapshot().index_of_route(&winner);
        match follow(request, index) {
            Ok(pick) => Some(StickyPick::new(pick, Affinity::New, false)),
            Err(why) => {
                self.rebind(request.snapshot(), session, &candidate, now);
                Some(StickyPick::new(candidate, Affinity::Broken(why), false))
            }
        }
    }

    fn rebind<P: Policy>(&self, snap: &Snapshot<P>, session: &str, pick: &Pick, now: u64) {
        if let Some(server_id) = snap.route_id(pick.index()) {
            self.store
                .learn(session, server_id, now, self.config.timeout_ms());
        }
    }
}

//! Backends and the validated set a pool is built from.
//!
//! A [`Backend`] is what an operator writes on one `server` line: an identity
//! string exactly as written, a weight and nginx's server parameters. A
//! [`BackendSet`] is an ordered list of them that has passed validation, so a
//! pool never sees a duplicate identity, an empty one or an absurd weight.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::BuildError;
use crate::time;

/// The largest weight a backend may have.
///
/// Large enough for any weight nginx, HAProxy or Envoy configs use in
/// practice, small enough that the sum of the weights of [`MAX_BACKENDS`]
/// backends fits comfortably in a `u64`.
pub const MAX_WEIGHT: u32 = 1 << 24;

/// The largest number of backends one set may hold.
pub const MAX_BACKENDS: usize = 1 << 20;

/// One backend: an identity and nginx's `server` parameters.
///
/// The identity is the address or name exactly as the user wrote it
/// (`10.0.0.1:8080`, `app-2.internal:3000`, `unix:/run/app.sock`). Hash
/// policies hash this string, so it is never normalized.
///
/// Defaults are nginx's: weight 1, `max_fails` 1, `fail_timeout` 10 s,
/// `max_conns` 0 (unlimited), neither `down` nor `backup`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::Backend;
///
/// let b = Backend::new("10.0.0.1:8080")
///     .weight(3)
///     .max_fails(2)
///     .fail_timeout(Duration::from_secs(30));
/// assert_eq!(b.id, "10.0.0.1:8080");
/// assert_eq!(b.weight, 3);
/// assert_eq!(b.max_conns, 0);
/// assert!(!b.backup);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Backend {
    /// The address or name exactly as written.
    pub id: String,
    /// Relative share of traffic. 0 means the backend takes no new traffic.
    /// A weight change reshapes the hash tables: under `ip_hash`, `hash`,
    /// HAProxy's map and Envoy's tables other backends' keys move too. To
    /// take a backend out without moving other keys, set
    /// [`drain`](Backend::drain) instead.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Failures within `fail_timeout` that make the backend unavailable.
    /// 0 turns failure accounting off for this backend.
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    /// How long failures are counted, and how long a failed-out backend
    /// rests before it is probed again. Written in nginx's time syntax in
    /// config files (`10s`, `1m30s`, `500ms`).
    #[serde(default = "default_fail_timeout", with = "time::serde_duration")]
    pub fail_timeout: Duration,
    /// Most connections at once; 0 means unlimited.
    #[serde(default)]
    pub max_conns: u32,
    /// Marked down by the operator: never picked. nginx's hashes,
    /// rendezvous and HAProxy's consistent hashing keep its place, so no
    /// other key moves; Envoy's Maglev and ring hash and HAProxy's map leave
    /// it out of their tables, as those programs do, which moves some.
    #[serde(default)]
    pub down: bool,
    /// Serves only when no primary backend is available.
    #[serde(default)]
    pub backup: bool,
    /// Draining: takes no new clients, but sticky sessions already bound
    /// to it stay (nginx's `drain`).
    #[serde(default)]
    pub drain: bool,
    /// The sticky route id (nginx's `route=`). When absent, sticky
    /// sessions identify the backend by the MD5 of its identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The string hash policies hash instead of the identity (Envoy's
    /// `hash_key`); when absent the identity is hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
}

fn default_weight() -> u32 {
    1
}

fn default_max_fails() -> u32 {
    1
}

fn default_fail_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Backend {
    /// A backend with nginx's default parameters.
    pub fn new(id: impl Into<String>) -> Self {
        Backend {
            id: id.into(),
            weight: default_weight(),
            max_fails: default_max_fails(),
            fail_timeout: default_fail_timeout(),
            max_conns: 0,
            down: false,
            backup: false,
            drain: false,
            route: None,
            hash_key: None,
        }
    }

    /// Sets the weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets `max_fails`.
    pub fn max_fails(mut self, max_fails: u32) -> Self {
        self.max_fails = max_fails;
        self
    }

    /// Sets `fail_timeout`.
    pub fn fail_timeout(mut self, fail_timeout: Duration) -> Self {
        self.fail_timeout = fail_timeout;
        self
    }

    /// Sets `max_conns`.
    pub fn max_conns(mut self, max_conns: u32) -> Self {
        self.max_conns = max_conns;
        self
    }

    /// Marks the backend down (or up again).
    pub fn down(mut self, down: bool) -> Self {
        self.down = down;
        self
    }

    /// Makes the backend a backup.
    pub fn backup(mut self, backup: bool) -> Self {
        self.backup = backup;
        self
    }

    /// Sets the drain state.
    pub fn drain(mut self, drain: bool) -> Self {
        self.drain = drain;
        self
    }

    /// Sets the sticky route id.
    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// Sets the hash key used instead of the identity by hash policies.
    pub fn hash_key(mut self, key: impl Into<String>) -> Self {
        self.hash_key = Some(key.into());
        self
    }

    /// The string that hash policies hash for this backend: the hash key
    /// if one is set, else the identity.
    pub fn hash_name(&self) -> &str {
        self.hash_key.as_deref().unwrap_or(&self.id)
    }

    /// The identity parsed as a socket address, when it is one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.id.parse().ok()
    }

    fn validate(&self) -> Result<(), BuildError> {
        if self.id.is_empty() {
            return Err(BuildError::EmptyId);
        }
        if self.weight > MAX_WEIGHT {
            return Err(BuildError::WeightTooLarge {
                id: self.id.clone(),
                weight: self.weight,
                max: MAX_WEIGHT,
            });
        }
        Ok(())
    }
}

/// An ordered, validated set of backends.
///
/// Order matters: nginx's hash methods walk servers in config order, so the
/// order of the set is the order of the `server` lines.
///
/// # Examples
///
/// ```
/// use upstream::{Backend, BackendSet, BuildError};
///
/// let set = BackendSet::new(vec![Backend::new("a:80"), Backend::new("b:80")]).unwrap();
/// assert_eq!(set.len(), 2);
///
/// let dup = BackendSet::new(vec![Backend::new("a:80"), Backend::new("a:80")]);
/// assert_eq!(dup.unwrap_err(), BuildError::Duplicate { id: "a:80".into() });
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct BackendSet {
    backends: Vec<Backend>,
}

impl BackendSet {
    /// Validates `backends` and keeps them in the given order.
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the first backend at fault: an empty identity,
    /// a duplicate identity, a weight above [`MAX_WEIGHT`], or more than
    /// [`MAX_BACKENDS`] backends.
    ///
    /// # Complexity
    ///
    /// O(n) expected time and O(n) extra memory.
    pub fn new(backends: Vec<Backend>) -> Result<Self, BuildError> {
        if backends.len() > MAX_BACKENDS {
            return Err(BuildError::TooMany {
                count: backends.len(),
                max: MAX_BACKENDS,
            });
        }
        let mut seen = ahash::AHashSet::with_capacity(backends.len());
        for b in &backends {
            b.validate()?;
            if !seen.insert(b.id.as_str()) {
                return Err(BuildError::Duplicate { id: b.id.clone() });
            }
        }
        Ok(BackendSet { backends })
    }

    /// An empty set: valid, and every pick from it returns `None`.
    pub fn empty() -> Self {
        BackendSet::default()
    }

    /// The backends in config order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// True when the set has no backend.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The backend with identity `id`.
    pub fn get(&self, id: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.id == id)
    }

    /// The backends as a vector, to edit and validate again.
    pub fn into_vec(self) -> Vec<Backend> {
        self.backends
    }
}

impl<'de> Deserialize<'de> for BackendSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let backends = Vec::<Backend>::deserialize(d)?;
        BackendSet::new(backends).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<Vec<Backend>> for BackendSet {
    type Error = BuildError;

    fn try_from(backends: Vec<Backend>) -> Result<Self, BuildError> {
        BackendSet::new(backends)
    }
}

/// Anything a pool can be built from: a validated [`BackendSet`], or
/// backends to validate (a `Vec`, an array or a slice of [`Backend`]).
pub trait IntoBackendSet {
    /// Validates (if needed) and returns the set.
    ///
    /// # Errors
    ///
    /// As [`BackendSet::new`].
    fn into_backend_set(self) -> Result<BackendSet, BuildError>;
}

impl IntoBackendSet for BackendSet {
    fn into_backend_set(self) -> Result<BackendSet, BuildError> {
        Ok(self)
    }
}

impl IntoBackendSet for Vec<Backend> {
    fn into_backend_set(self) -> Result<BackendSet, BuildError> {
        BackendSet::new(self)
    }
}

impl<const N: usize> IntoBackendSet for [Backend; N] {
    fn into_backend_set(self) -> Result<BackendSet, BuildError> {
        BackendSet::new(self.into())
    }
}

impl IntoBackendSet for &[Backend] {
    fn into_backend_set(self) -> Result<BackendSet, BuildError> {
        BackendSet::new(self.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_nginx_defaults() {
        let b = Backend::new("x:1");
        assert_eq!(
            (
                b.weight,
                b.max_fails,
                b.fail_timeout,
                b.max_conns,
                b.down,
                b.backup
            ),
            (1, 1, Duration::from_secs(10), 0, false, false)
        );
    }

    #[test]
    fn rejects_empty_duplicate_heavy_and_conflicting() {
        assert_eq!(
            BackendSet::new(vec![Backend::new("")]),
            Err(BuildError::EmptyId)
        );
        let heavy = Backend::new("h:1").weight(MAX_WEIGHT + 1);
        assert_eq!(
            BackendSet::new(vec![heavy]).unwrap_err().to_string(),
            "backend 'h:1' has weight 16777217, above the maximum 16777216"
        );
        // nginx accepts fail_timeout=0: a failure then rests the backend
        // only within the same clock tick.
        let zero = Backend::new("z:1").fail_timeout(Duration::ZERO);
        assert!(BackendSet::new(vec![zero]).is_ok());
    }

    #[test]
    fn serde_applies_defaults_and_validates() {
        let set: BackendSet = serde_json::from_str(
            r#"[{"id":"a:1"},{"id":"b:2","weight":5,"fail_timeout":"1m30s"}]"#,
        )
        .unwrap();
        assert_eq!(set.backends()[0], Backend::new("a:1"));
        assert_eq!(set.backends()[1].fail_timeout, Duration::from_secs(90));
        let err = serde_json::from_str::<BackendSet>(r#"[{"id":"a:1"},{"id":"a:1"}]"#);
        assert_eq!(err.unwrap_err().to_string(), "duplicate backend 'a:1'");
        let back = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<BackendSet>(&back).unwrap(), set);
    }
}

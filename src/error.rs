//! Errors returned when a backend set or a pool is built.

/// Why a backend set, a policy table or a pool update was refused.
///
/// Every message names the backend and the field at fault. A refused
/// update changes nothing: the pool keeps serving from its previous
/// snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A backend has an empty identity string.
    #[error("a backend has an empty identity; write its address or name")]
    EmptyId,
    /// Two backends in one set share an identity.
    #[error("duplicate backend '{id}'")]
    Duplicate {
        /// The repeated identity.
        id: String,
    },
    /// A weight is above [`MAX_WEIGHT`](crate::MAX_WEIGHT).
    #[error("backend '{id}' has weight {weight}, above the maximum {max}")]
    WeightTooLarge {
        /// The backend.
        id: String,
        /// Its weight.
        weight: u32,
        /// The largest weight allowed.
        max: u32,
    },
    /// More backends than [`MAX_BACKENDS`](crate::MAX_BACKENDS).
    #[error("{count} backends in one set, above the maximum {max}")]
    TooMany {
        /// How many were given.
        count: usize,
        /// The largest number allowed.
        max: usize,
    },
    /// A backend's parameters contradict each other.
    #[error("backend '{id}': {reason}")]
    Conflict {
        /// The backend.
        id: String,
        /// What contradicts what.
        reason: &'static str,
    },
    /// The policy cannot use this backend as configured.
    #[error("backend '{id}' cannot be used with {policy}: {reason}")]
    Unsupported {
        /// The backend.
        id: String,
        /// The policy's name.
        policy: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A policy parameter is out of range.
    #[error("{policy}: {reason}")]
    Policy {
        /// The policy's name.
        policy: &'static str,
        /// What is wrong with its parameters.
        reason: String,
    },
    /// An update named a backend that is not in the set.
    #[error("no backend '{id}' in the pool")]
    NotFound {
        /// The identity asked for.
        id: String,
    },
}

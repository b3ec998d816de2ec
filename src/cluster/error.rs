//! What can go wrong talking to the shared store. A refusal is not an error (see
//! [`Admission::Refused`](super::Admission::Refused)).

use std::time::Duration;

/// A cluster operation that did not complete. After an error from `admit` the outcome is unknown
/// (the script may have run before the reply was lost): retry with the same call key, or
/// `release` it; both are idempotent.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `redis_url` is not a Redis URL.
    #[error("invalid redis url: {source}")]
    Url {
        /// Why the client refused it.
        source: redis::RedisError,
    },
    /// The node name is empty or contains `#` (the epoch separator of members).
    #[error("invalid cluster node name {0:?}: must be non-empty and without '#'")]
    NodeName(String),
    /// An admission with no alternative at all.
    #[error("admission without any alternative")]
    NoAlternative,
    /// No reply within the command timeout.
    #[error("redis {op} timed out after {after:?}")]
    Timeout {
        /// The operation (`admit`, `release`, `heartbeat`, ...).
        op: &'static str,
        /// The configured bound.
        after: Duration,
    },
    /// Redis answered with an error or the connection failed.
    #[error("redis {op} failed: {source}")]
    Redis {
        /// The operation.
        op: &'static str,
        /// What the client reported.
        source: redis::RedisError,
    },
    /// A reply the scripts never produce (another writer under our keys, or a version mismatch).
    #[error("unexpected reply to redis {op}: {reply}")]
    Reply {
        /// The operation.
        op: &'static str,
        /// The reply, as debug text.
        reply: String,
    },
    /// This node's lease was still lost after joining again (another process took the name?).
    #[error("node lease lost")]
    LeaseLost,
}

//! Exact concurrent-call counters shared by several callgate nodes through Redis
//! (`[counters] backend = "redis"`, issue 18).
//!
//! Owns the Redis side of the counters: the Lua scripts (admit, release, heartbeat, join,
//! republish), node leases and epochs, freeing a dead node's units, republishing after Redis
//! lost its data, and the names counters have across nodes ([`CounterKey`]). Does not own which
//! counters a call takes (`limits::Path`), the limits themselves (each node's TOML, passed with
//! every admission), nor the failure policy (`on_backend_error`: the daemon decides from
//! [`ClusterError`], [`RedisCounters::is_healthy`] and [`RedisCounters::can_admit`]).
//!
//! ```text
//! let keys = CounterKeys::new(&generation);                    // once per generation
//! let alts = vec![keys.alternative(&generation, &path_via_trunk_a),
//!                 keys.alternative(&generation, &path_via_trunk_b)];
//! match counters.admit(CallKey(n), &alts).await? {             // one round trip
//!     Admission::Admitted { index } => { /* route via alternative `index` */ }
//!     Admission::Refused(refusal) => { /* the same Refusal the memory backend gives */ }
//! }
//! counters.release(CallKey(n)).await;                          // when the call ends; idempotent
//! ```
//!
//! Guarantees, each checked by `tests/cluster_props.rs` or `tests/cluster_redis.rs`:
//! - no counter exceeds the admitting node's limit, under any concurrency (one script at a time);
//! - admission is all or nothing per alternative, and idempotent by call key, as is release;
//! - a node that stops renewing has its units freed after its lease by the scripts the other
//!   nodes run anyway (a bounded part per run), with no reaper process and no operator action;
//! - a node that joins again (restart, or lease lost) gets a new epoch; its older epochs end at
//!   once, so a restarted node never counts its previous life's calls;
//! - after Redis restarts empty, each node's next heartbeat joins again and republishes the calls
//!   it holds in memory, so the counts are exact again within a third of a lease.
//!
//! Leases are measured on Redis's clock by default (`TIME` inside the scripts), so node clocks
//! need not agree; tests use a [`ManualClock`].

pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod key;
pub(crate) mod scripts;

pub use config::{ClusterClock, ClusterConfig, ManualClock};
pub use error::ClusterError;
pub use key::{Alternative, CounterKey, CounterKeys, CounterLimit};
// The Redis client does I/O, so it lives with the daemon's tasks (the layer rule); its API is
// the cluster's.
pub use crate::daemon::cluster::{
    Admission, CounterUsage, RedisCounters, Renewal, RECONNECT_TRIES,
};

#[cfg(test)]
mod tests;

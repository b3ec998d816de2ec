//! How a node reaches the cluster: URL, its name, the lease, the bounds, the clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::model::CounterBackend;

/// Settings of one node's [`RedisCounters`](super::RedisCounters).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db` (`[counters] redis_url`).
    pub redis_url: String,
    /// This node's name, unique per running process (no `#`): a process joining under a name ends
    /// the leases of that name's earlier epochs at once.
    pub node: String,
    /// Hash tag of every key (`{name}:...`): one slot, so Redis Cluster works; several callgate
    /// clusters can share one Redis under different names.
    pub cluster: String,
    /// How long a node's units outlive its last renewal (`[counters] lease`). Renew every third.
    pub lease: Duration,
    /// Bound on each Redis command, connection attempts included.
    pub command_timeout: Duration,
    /// Calls of a dead member freed per script run (about: `HSCAN`'s count), bounding each
    /// script's extra work.
    pub reap_budget: u32,
    /// Whose clock leases are measured on.
    pub clock: ClusterClock,
}

impl ClusterConfig {
    /// Defaults: cluster `callgate`, lease 30 s, 200 ms per command, 128 calls reaped per
    /// script, Redis's clock.
    pub fn new(redis_url: impl Into<String>, node: impl Into<String>) -> Self {
        ClusterConfig {
            redis_url: redis_url.into(),
            node: node.into(),
            cluster: "callgate".to_owned(),
            lease: Duration::from_secs(30),
            command_timeout: Duration::from_millis(200),
            reap_budget: 128,
            clock: ClusterClock::Redis,
        }
    }

    /// The settings `[counters]` gives node `node` (`redis_url`, `lease`); `None` for the memory
    /// backend. The node name is not in the TOML yet: the daemon passes it (e.g. the host name).
    pub fn from_backend(backend: &CounterBackend, node: impl Into<String>) -> Option<Self> {
        match backend {
            CounterBackend::Memory => None,
            CounterBackend::Redis {
                url,
                lease,
                cluster,
                ..
            } => {
                let mut cfg = ClusterConfig::new(url.clone(), node);
                cfg.lease = *lease;
                cfg.cluster = cluster.clone();
                Some(cfg)
            }
        }
    }
}

/// The time lease expiries are compared with.
#[derive(Debug, Clone, Default)]
pub enum ClusterClock {
    /// Redis `TIME` inside the scripts: one clock for every node, so node clock skew cannot
    /// shorten or stretch a lease.
    #[default]
    Redis,
    /// Milliseconds set by the caller (tests advance time without sleeping).
    Manual(ManualClock),
}

impl ClusterClock {
    /// The `now` argument of the scripts: 0 tells them to read Redis `TIME`.
    pub(crate) fn arg_ms(&self) -> u64 {
        match self {
            ClusterClock::Redis => 0,
            ClusterClock::Manual(c) => c.now_ms(),
        }
    }
}

/// A hand-advanced clock in milliseconds, shared by clones (all nodes of a test).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `start_ms` (must be > 0: 0 means "Redis clock" to the scripts).
    pub fn new(start_ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start_ms.max(1))))
    }

    /// Now, in ms.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

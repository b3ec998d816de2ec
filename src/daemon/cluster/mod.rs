//! The Redis client of [`crate::cluster`]: the connection, the scripts' invocations and the node
//! lease's heartbeat task. Kept with the daemon's other tasks, since it does I/O; the keys, the
//! scripts and the configuration it runs are in `src/cluster`.

mod lease;
mod node;
mod store;

pub use lease::Renewal;
pub use node::{Answers, ClusterNode, ShardLink};
pub use store::{Admission, CounterUsage, RedisCounters, RECONNECT_TRIES};

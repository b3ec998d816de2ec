//! The tokio shell around the sans-IO cores: the receive side's dispatcher, one driver thread per
//! engine shard, signals, reload, shutdown and systemd notification. Everything here is thin:
//! decisions live in the cores (the engine included).

mod admin_server;
pub mod cluster;
pub mod dispatch;
pub mod driver;
pub mod fuzzing;
pub mod health;
mod housekeeping;
mod reload;
mod run;
pub mod shards;
pub mod systemd;
pub mod trunks;

pub use run::{run, Daemon, DaemonError};

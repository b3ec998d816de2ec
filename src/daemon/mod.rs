//! The tokio shell around the sans-IO cores: the driver task, signals, reload, shutdown and
//! systemd notification. Everything here is thin: decisions live in the cores.

mod bad_request;
pub mod driver;
pub mod engine;
pub mod fuzzing;
mod rport;
mod run;
pub mod systemd;

pub use run::{run, Daemon, DaemonError};

//! The tokio shell around the sans-IO cores: drivers, timers, signals, shutdown and systemd.
//!
//! So far only the systemd notification wrapper lives here.

pub mod systemd;

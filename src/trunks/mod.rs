//! Trunks towards providers, as callgate keeps them working: outbound registration of
//! `register` trunks ([`registration`]), OPTIONS health probes ([`health`]) and the shared
//! table the call path and the admin API read ([`status`]).
//!
//! Sans-IO like the other cores: the machines take the time as an argument and return what to
//! send. The tokio driver that builds and sends the requests is `daemon::trunks`.

pub mod health;
pub mod registration;
pub mod status;

pub use status::{HealthState, TrunkStates, TrunkStatus};

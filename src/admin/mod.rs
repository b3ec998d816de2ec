//! The operations surface: the admin HTTP API, the metrics registry and the `callgate status` and
//! `callgate reload` clients (spec operations.md, "Admin HTTP API" and "Metrics").
//!
//! Owns: the JSON views of calls, counters and registrations; the [`AdminBackend`] trait the daemon
//! implements to answer them; the HTTP server ([`serve`]); the live admin page it serves at `/`;
//! the metric names ([`Metrics`]).
//! Does not own: what a call, a counter or a registration is (the daemon maps its own state into
//! the views here), nor the reload logic itself (the backend runs it).

mod api;
mod backend;
pub mod client;
pub mod metrics;
mod page;
pub mod reload;
pub mod status;

pub use api::{serve, AdminError, AdminState, AdminToken};
pub use backend::{
    AdminBackend, BanView, CallView, CounterRef, CounterView, LegView, RegistrationView,
    ReloadResult, TrunkRegistrationView, TrunkView,
};
pub use metrics::{Direction, Metrics, Outcome};
pub use status::{status, StatusError};

//! What the admin API asks of the daemon ([`AdminBackend`]) and the JSON views it answers with.
//!
//! The views are plain owned data: the daemon copies its state into them on each request, so the
//! API never holds a lock of the call engine while it serializes or writes to a socket.

use serde::{Deserialize, Serialize};

/// The daemon, as seen by the admin API. Implemented by the daemon; a fake in tests.
///
/// Every method but [`AdminBackend::reload`] is called on a tokio worker and must not block
/// (copy a snapshot, send a command on a channel).
pub trait AdminBackend: Send + Sync {
    /// True when every listener is bound and serving (`GET /health`).
    fn health(&self) -> bool;
    /// The calls in progress (`GET /calls`).
    fn calls(&self) -> Vec<CallView>;
    /// Every limit counter with its current use (`GET /counters`, and the counter gauges of
    /// `GET /metrics`).
    fn counters(&self) -> Vec<CounterView>;
    /// The valid registration bindings (`GET /registrations`).
    fn registrations(&self) -> Vec<RegistrationView>;
    /// Reloads the configuration file, exactly as SIGHUP does (`POST /reload`). Run on a blocking
    /// thread, so it may read the file and build the snapshot synchronously. The backend records
    /// `Metrics::config_reload` itself, because SIGHUP reloads do not pass through the API.
    fn reload(&self) -> ReloadResult;
    /// Ends the call `id` (BYE on both legs, units released). False when no such call exists
    /// (`DELETE /calls/{id}`).
    fn end_call(&self, id: &str) -> bool;
    /// Sources banned for repeated authentication failures (`GET /bans`).
    fn bans(&self) -> Vec<BanView> {
        Vec::new()
    }
    /// Lifts the ban of `ip`; false when it was not banned or is no IP (`DELETE /bans/{ip}`).
    fn unban(&self, ip: &str) -> bool {
        let _ = ip;
        false
    }
}

/// A source banned after repeated authentication failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanView {
    /// The source IP.
    pub ip: String,
    /// Seconds until the ban lapses.
    pub seconds_left: u64,
    /// Why (which threshold).
    pub reason: String,
}

/// One call in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallView {
    /// callgate's id of the call (the handle for `DELETE /calls/{id}`).
    pub id: String,
    /// When the call was received, in seconds since the Unix epoch.
    pub started_at_unix_secs: u64,
    /// The A leg, then the B leg once it exists.
    pub legs: Vec<LegView>,
    /// The counters the call holds a unit on (its admission path).
    pub counters: Vec<CounterRef>,
}

/// One leg (dialog) of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegView {
    /// `a` (towards the caller) or `b` (towards the callee).
    pub leg: String,
    /// The leg's own SIP Call-ID.
    pub call_id: String,
    /// The From URI of the leg.
    pub from: String,
    /// The To URI of the leg.
    pub to: String,
    /// Dialog state, e.g. `trying`, `early`, `confirmed`, `terminating`.
    pub state: String,
}

/// A counter named by its place in the limit tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterRef {
    /// `server`, `service_provider`, `organization`, `user`, `extension` or `trunk`.
    pub level: String,
    /// The entity's name in the configuration (`[server] name` for `server`).
    pub name: String,
    /// The counter kind: `public`, `internal`, `max_calls`, `max_outgoing`, ...
    pub counter: String,
}

/// One counter and its use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterView {
    /// `server`, `service_provider`, `organization`, `user`, `extension` or `trunk`.
    pub level: String,
    /// The entity's name in the configuration (`[server] name` for `server`).
    pub name: String,
    /// The counter kind: `public`, `internal`, `max_calls`, `max_outgoing`, ...
    pub counter: String,
    /// Units held now.
    pub used: u32,
    /// The limit; `None` is unlimited.
    pub limit: Option<u32>,
}

/// One registration binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationView {
    /// The registered extension's AoR, `number@domain`; absent for a trunk's gateway.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub extension: String,
    /// The `accept-register` trunk whose gateway registered; absent for an extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// The Contact URI of the binding.
    pub contact: String,
    /// Source address of the REGISTER, `ip:port`.
    pub source: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// Seconds until the binding expires.
    pub expires_secs: u64,
}

/// The result of a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// True when the new configuration is now in force.
    pub accepted: bool,
    /// When accepted: what changed, one line each.
    #[serde(default)]
    pub summary: Vec<String>,
    /// When refused: every issue, with its entity.
    #[serde(default)]
    pub errors: Vec<String>,
}

impl ReloadResult {
    /// An accepted reload with a summary of the changes.
    pub fn accepted(summary: Vec<String>) -> Self {
        ReloadResult {
            accepted: true,
            summary,
            errors: Vec::new(),
        }
    }

    /// A refused reload with every issue.
    pub fn refused(errors: Vec<String>) -> Self {
        ReloadResult {
            accepted: false,
            summary: Vec::new(),
            errors,
        }
    }
}

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
    /// Every trunk's health and registration (`GET /trunks`, and the trunk gauges of
    /// `GET /metrics`).
    fn trunks(&self) -> Vec<TrunkView> {
        Vec::new()
    }
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
    /// The counter kind: `public`, `internal`, `max_calls`, `max_outgoing`, ..., `cps`.
    pub counter: String,
    /// Units held now; for `cps`, the tokens spent and not yet refilled (`used = limit`: the next
    /// new call is refused; it falls by one every `1 s / limit`).
    pub used: u32,
    /// The limit; `None` is unlimited.
    pub limit: Option<u32>,
    /// The entity one level up the tenancy tree (a service provider's server, an organization's
    /// provider, a user's organization, an extension's user, an owned trunk's organization);
    /// absent for the server and for trunks the server owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// With Redis counters: the units this node holds (then `used` is the cluster's, or this
    /// node's while Redis does not answer). Absent with in-memory counters and for `cps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_used: Option<u32>,
    /// With Redis counters: the units every node holds together, as Redis last said (read
    /// twice a second); absent while Redis does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_used: Option<u32>,
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

/// One trunk's health and registration (`GET /trunks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkView {
    /// The trunk's name.
    pub name: String,
    /// `ip`, `register` or `accept-register`.
    pub kind: String,
    /// The provider's address, `ip:port`.
    pub address: Option<String>,
    /// `up`, `down` or `unprobed` (no `probe_interval`).
    pub health: String,
    /// Probes unanswered in a row.
    pub misses: u32,
    /// Seconds since the last probe went out.
    pub last_probe_secs_ago: Option<u64>,
    /// Whether outbound routing may use it (not down; registered when of kind `register`).
    pub available: bool,
    /// Register trunks only.
    pub registration: Option<TrunkRegistrationView>,
}

/// The registration of a `register` trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkRegistrationView {
    /// `registered`, `failing` or `idle`.
    pub state: String,
    /// Seconds until the binding lapses (registered only).
    pub expires_in_secs: Option<u64>,
    /// The last final status from the registrar.
    pub last_status: Option<u16>,
    /// Why the last attempt failed (`timeout`, `refused`, `credentials refused`, ...).
    pub reason: Option<String>,
    /// Seconds until the next REGISTER (`None`: one is in flight).
    pub next_attempt_in_secs: Option<u64>,
}

impl TrunkView {
    /// The view of `s` at `now`.
    pub fn of(s: &crate::trunks::TrunkStatus, now: std::time::Instant) -> TrunkView {
        use crate::config::model::TrunkKind;
        let secs_until = |at: std::time::Instant| at.saturating_duration_since(now).as_secs();
        TrunkView {
            name: s.name.clone(),
            kind: match s.kind {
                TrunkKind::Ip => "ip",
                TrunkKind::Register => "register",
                TrunkKind::AcceptRegister => "accept-register",
            }
            .into(),
            address: s.address.map(|a| a.to_string()),
            health: s.health.as_str().into(),
            misses: s.misses,
            last_probe_secs_ago: s
                .last_probe
                .map(|at| now.saturating_duration_since(at).as_secs()),
            available: s.is_available(),
            registration: s.registration.as_ref().map(|r| TrunkRegistrationView {
                state: r.state.as_str().into(),
                expires_in_secs: r.registered_until.map(secs_until),
                last_status: r.last_status,
                reason: r.failure.map(|f| f.as_str().into()),
                next_attempt_in_secs: r.next_attempt.map(secs_until),
            }),
        }
    }
}

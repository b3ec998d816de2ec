//! The TOML file as written (spec/config.md), before any name is resolved.
//!
//! Every struct mirrors one table of the spec key for key and refuses unknown keys, so a typo is an
//! error rather than a silent default. Values stay as written (addresses, DIDs, durations are
//! strings) so that validation can report every bad value with its entity instead of serde stopping at
//! the first one. Defaults are explicit functions named after what they give.

use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) license: RawLicense,
    #[serde(default)]
    pub(crate) listen: Vec<RawListen>,
    pub(crate) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(crate) counters: RawCounters,
    #[serde(default)]
    pub(crate) service_provider: Vec<RawServiceProvider>,
    #[serde(default)]
    pub(crate) organization: Vec<RawOrganization>,
    #[serde(default)]
    pub(crate) user: Vec<RawUser>,
    #[serde(default)]
    pub(crate) extension: Vec<RawExtension>,
    #[serde(default)]
    pub(crate) trunk: Vec<RawTrunk>,
    #[serde(default)]
    pub(crate) did_pool: Vec<RawDidPool>,
    #[serde(default)]
    pub(crate) inbound_rule: Vec<RawInboundRule>,
    #[serde(default)]
    pub(crate) outbound_rule: Vec<RawOutboundRule>,
    #[serde(default)]
    pub(crate) ring_rule: Vec<RawRingRule>,
}

/// `limits = { public = N, internal = N }`; an absent key is unlimited.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) public: Option<u32>,
    pub(crate) internal: Option<u32>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    #[serde(default = "default_server_name")]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    /// New calls per second; absent = unlimited, 0 = no new calls.
    pub(crate) cps: Option<u32>,
    #[serde(default = "default_reject_code")]
    pub(crate) reject_code: u16,
    /// A duration, or `"none"`; absent = [`DEFAULT_MAX_CALL_DURATION`].
    pub(crate) max_call_duration: Option<String>,
    pub(crate) session_expires: Option<String>,
    /// In-dialog OPTIONS probe interval, or `"none"`; absent = [`DEFAULT_DIALOG_PROBE_INTERVAL`].
    pub(crate) dialog_probe_interval: Option<String>,
    /// Where registrar bindings are kept across restarts; absent = not kept.
    pub(crate) state_file: Option<String>,
    /// Call detail records: a file (JSON lines), `"-"` for standard output; absent = none.
    pub(crate) cdr_file: Option<String>,
    /// Offer SHA-256 digest challenges (before MD5) in every organization that does not say.
    #[serde(default)]
    pub(crate) digest_sha256: bool,
    /// Engine shards; absent = one per available core.
    pub(crate) workers: Option<u32>,
    /// A TCP connection silent this long (and carrying no held dialog) is closed.
    #[serde(default = "default_tcp_idle_timeout")]
    pub(crate) tcp_idle_timeout: String,
    /// Once a message's first byte arrived, its header section must be complete within this.
    #[serde(default = "default_tcp_header_timeout")]
    pub(crate) tcp_header_timeout: String,
    /// Open TCP connections, inbound and outbound together.
    #[serde(default = "default_max_tcp_connections")]
    pub(crate) max_tcp_connections: u32,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            name: default_server_name(),
            limits: RawLimits::default(),
            cps: None,
            reject_code: default_reject_code(),
            max_call_duration: None,
            session_expires: None,
            dialog_probe_interval: None,
            state_file: None,
            cdr_file: None,
            digest_sha256: false,
            workers: None,
            tcp_idle_timeout: default_tcp_idle_timeout(),
            tcp_header_timeout: default_tcp_header_timeout(),
            max_tcp_connections: default_max_tcp_connections(),
        }
    }
}

/// A call is ended after this unless `max_call_duration` says otherwise: a backstop for a call
/// whose both ends vanished without a BYE (the probes catch one end gone).
pub(crate) const DEFAULT_MAX_CALL_DURATION: &str = "4h";

/// How often each leg of an answered call is probed with an in-dialog OPTIONS by default.
pub(crate) const DEFAULT_DIALOG_PROBE_INTERVAL: &str = "60s";

fn default_server_name() -> String {
    "callgate".to_owned()
}

/// Ten minutes: longer than any keep-alive interval a client uses (RFC 5626 suggests 95-120 s).
fn default_tcp_idle_timeout() -> String {
    "600s".to_owned()
}

/// Five seconds: a real client writes a header section in one go; a slowloris dribbles it.
fn default_tcp_header_timeout() -> String {
    "5s".to_owned()
}

/// Well below the file-descriptor limit of the systemd unit (`LimitNOFILE=65536`).
fn default_max_tcp_connections() -> u32 {
    10_000
}

/// `486 Busy Here` (spec call-control 3).
fn default_reject_code() -> u16 {
    486
}

/// `[license]`; absent means no SIP trunking channel is licensed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLicense {
    #[serde(default)]
    pub(crate) sip_trunking_channels: u32,
}

/// SIP transport as written: `udp` (the default), `tcp` or `tls`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

/// `[[listen]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    #[serde(default)]
    pub(crate) transport: RawTransport,
    pub(crate) address: String,
    pub(crate) advertise: Option<String>,
    /// PEM certificate chain of a `tls` listener (leaf first).
    pub(crate) certificate: Option<String>,
    /// PEM private key of a `tls` listener.
    pub(crate) private_key: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) address: String,
    pub(crate) token: Option<String>,
}

/// `counters.backend`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawBackend {
    #[default]
    Memory,
    Redis,
}

/// `[counters]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCounters {
    #[serde(default)]
    pub(crate) backend: RawBackend,
    pub(crate) redis_url: Option<String>,
    #[serde(default = "default_lease")]
    pub(crate) lease: String,
    #[serde(default)]
    pub(crate) on_backend_error: RawBackendErrorPolicy,
    pub(crate) cluster: Option<String>,
}

/// `counters.on_backend_error`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawBackendErrorPolicy {
    #[default]
    Reject,
    Local,
}

impl Default for RawCounters {
    fn default() -> Self {
        RawCounters {
            backend: RawBackend::Memory,
            redis_url: None,
            lease: default_lease(),
            on_backend_error: RawBackendErrorPolicy::Reject,
            cluster: None,
        }
    }
}

fn default_lease() -> String {
    "30s".to_owned()
}

/// `[[service_provider]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServiceProvider {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    /// New calls per second; absent = unlimited, 0 = no new calls.
    pub(crate) cps: Option<u32>,
}

/// `[[organization]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOrganization {
    pub(crate) name: String,
    pub(crate) service_provider: String,
    pub(crate) domain: String,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    /// New calls per second; absent = unlimited, 0 = no new calls.
    pub(crate) cps: Option<u32>,
    /// Offer SHA-256 challenges before MD5; absent = `[server] digest_sha256`.
    pub(crate) digest_sha256: Option<bool>,
}

/// `[[user]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) name: String,
    pub(crate) organization: String,
    #[serde(default)]
    pub(crate) limits: RawLimits,
}

/// `pbx = { address, transport, authenticate }` of a SIP trunking extension.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPbx {
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) transport: RawTransport,
    #[serde(default)]
    pub(crate) authenticate: bool,
}

/// `[[extension]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtension {
    pub(crate) number: String,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
    pub(crate) ha1: Option<String>,
    pub(crate) ha1_sha256: Option<String>,
    pub(crate) max_calls: Option<u32>,
    pub(crate) max_outgoing: Option<u32>,
    pub(crate) outbound_caller_id: Option<String>,
    #[serde(default)]
    pub(crate) allowed_networks: Vec<String>,
    pub(crate) pbx: Option<RawPbx>,
}

/// `trunk.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawTrunkKind {
    Ip,
    Register,
    AcceptRegister,
}

/// `[[trunk]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunk {
    pub(crate) name: String,
    pub(crate) kind: RawTrunkKind,
    pub(crate) address: Option<String>,
    #[serde(default)]
    pub(crate) transport: RawTransport,
    #[serde(default)]
    pub(crate) associated_ips: Vec<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) register_expires: Option<String>,
    /// First delay after a failed registration (register); doubles per failure.
    pub(crate) register_retry: Option<String>,
    /// Out-of-dialog OPTIONS every this long (ip, register); absent = no probes.
    pub(crate) probe_interval: Option<String>,
    /// Consecutive unanswered probes that mark the trunk down.
    pub(crate) probe_misses: Option<u32>,
    pub(crate) organization: Option<String>,
    pub(crate) max_calls: Option<u32>,
    pub(crate) max_inbound: Option<u32>,
    pub(crate) max_outbound: Option<u32>,
    /// New calls per second; absent = unlimited, 0 = no new calls.
    pub(crate) cps: Option<u32>,
    /// Whether the provider's P-Asserted-Identity and Privacy are believed (RFC 3325 trust).
    #[serde(default)]
    pub(crate) trusted: bool,
}

/// `[[did_pool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDidPool {
    pub(crate) trunk: String,
    pub(crate) organization: String,
    pub(crate) dids: Vec<String>,
}

/// `destination = { extension = "101" }` or `{ ring_rule = "sales" }`: exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestination {
    pub(crate) extension: Option<String>,
    pub(crate) ring_rule: Option<String>,
}

/// `[[inbound_rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInboundRule {
    pub(crate) organization: String,
    pub(crate) trunk: String,
    pub(crate) dids: String,
    pub(crate) destination: RawDestination,
}

/// `[[outbound_rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutboundRule {
    pub(crate) organization: String,
    pub(crate) pattern: String,
    pub(crate) trunks: Vec<String>,
    #[serde(default)]
    pub(crate) strip: usize,
    #[serde(default)]
    pub(crate) prepend: String,
}

/// `[[ring_rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRingRule {
    pub(crate) name: String,
    pub(crate) organization: String,
    pub(crate) targets: Vec<String>,
    /// The extension whose calls follow the rule (VoipNow's incoming-call rules of an
    /// extension); absent: the rule is reached only from an inbound rule.
    pub(crate) extension: Option<String>,
    #[serde(default = "default_ring_time")]
    pub(crate) ring_time: String,
}

fn default_ring_time() -> String {
    "30s".to_owned()
}

/// Parses a duration written as a whole number and a unit: `ms`, `s`, `m` or `h`
/// (`"500ms"`, `"30s"`, `"30m"`, `"4h"`). Zero and anything else is refused (`None`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    let millis = n.checked_mul(millis_per_unit)?;
    (millis > 0).then(|| Duration::from_millis(millis))
}

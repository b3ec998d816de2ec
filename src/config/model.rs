//! The resolved, indexed configuration the daemon runs on (a `Snapshot`).
//!
//! Built by `config::load` from the TOML text after every validation rule passed: names are
//! resolved to ids (indexes into the entity vectors), DID ranges are numeric intervals, regexes are
//! compiled and networks parsed. Nothing here is re-validated on the hot path. A snapshot is
//! immutable; a reload builds a new one and swaps it in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

/// A concurrent-call limit: `None` is unlimited, `Some(0)` allows no call at all.
pub type Limit = Option<u32>;

/// The two tenancy limits every level from server to user carries (spec call-control 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent calls with a trunk at one end.
    pub public: Limit,
    /// Concurrent calls between two local extensions.
    pub internal: Limit,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            /// The index of the entity in its `Snapshot` vector.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id_type!(
    /// Index into `Snapshot::service_providers`.
    SpId
);
id_type!(
    /// Index into `Snapshot::organizations`.
    OrgId
);
id_type!(
    /// Index into `Snapshot::users`.
    UserId
);
id_type!(
    /// Index into `Snapshot::extensions`.
    ExtId
);
id_type!(
    /// Index into `Snapshot::trunks`.
    TrunkId
);
id_type!(
    /// Index into `Snapshot::ring_rules`.
    RingRuleId
);

/// SIP transport of a listener, PBX or trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// TCP stream.
    Tcp,
    /// TLS over a TCP stream (RFC 3261 26.2; `sips:` URIs).
    Tls,
}

impl Transport {
    /// A stream transport (TCP or TLS): framed by Content-Length, nothing retransmitted,
    /// connections kept by peer address and held by dialogs.
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// The lower-case name of the configuration file, logs and metrics (`udp`, `tcp`, `tls`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Node name in logs, metrics, cluster keys.
    pub name: String,
    /// Server-wide limits.
    pub limits: Limits,
    /// New calls per second, all calls together (`None` = unlimited).
    pub cps: Limit,
    /// Final response code when a counter is full (default 486).
    pub reject_code: u16,
    /// A call past this is ended with BYE on both legs (default 4 h; `"none"` = never).
    pub max_call_duration: Option<Duration>,
    /// Each leg of an answered call gets an in-dialog OPTIONS this often; 408, 481 or no answer
    /// ends the call (default 60 s; `"none"` = no probes).
    pub dialog_probe_interval: Option<Duration>,
    /// Registrar bindings are written here every 30 s and at shutdown, and read at start.
    /// Read at start only.
    pub state_file: Option<std::path::PathBuf>,
    /// Call detail records go here, one JSON line per call; `"-"` is standard output. A reload
    /// reopens it (logrotate), a changed path moves the records there.
    pub cdr_file: Option<std::path::PathBuf>,
    /// RFC 4028 session interval offered/accepted on both legs.
    pub session_expires: Option<Duration>,
    /// Engine shards (threads); `None` = one per available core. Read at start only.
    pub workers: Option<usize>,
    /// TCP connection limits (`tcp_idle_timeout`, `tcp_header_timeout`, `max_tcp_connections`).
    pub tcp: TcpLimits,
}

/// The `[server]` keys that bound TCP connections; applied at start and on every reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// A connection with no traffic for this long, and no dialog held on it, is closed.
    pub idle_timeout: Duration,
    /// Time a message's header section may take to arrive once its first byte did.
    pub header_timeout: Duration,
    /// Open connections, inbound and outbound together.
    pub max_connections: usize,
}

impl Default for TcpLimits {
    /// The defaults of the `[server]` keys.
    fn default() -> Self {
        TcpLimits {
            idle_timeout: Duration::from_secs(600),
            header_timeout: Duration::from_secs(5),
            max_connections: 10_000,
        }
    }
}

/// `[license]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct License {
    /// 0 = SIP trunking extensions not licensed.
    pub sip_trunking_channels: u32,
}

/// One `[[listen]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// udp, tcp or tls.
    pub transport: Transport,
    /// Address to bind.
    pub address: SocketAddr,
    /// Host written in Via/Contact when behind NAT.
    pub advertise: Option<String>,
    /// Certificate and key of a `tls` listener (`None` for udp and tcp).
    pub tls: Option<TlsFiles>,
}

impl Listen {
    /// Whether `other` is the same socket (transport, address and what the engine writes for
    /// it): a reload keeps such a listener bound and only re-reads its certificate.
    pub fn same_socket(&self, other: &Listen) -> bool {
        self.transport == other.transport
            && self.address == other.address
            && self.advertise == other.advertise
    }
}

/// The PEM files of a `tls` listener, as written (a relative path is relative to the daemon's
/// working directory). Read when the listener is bound and again on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub certificate: std::path::PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: std::path::PathBuf,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct Admin {
    /// HTTP listen address.
    pub address: SocketAddr,
    /// Bearer token required on every request but /health, when set.
    pub token: Option<String>,
}

/// `[counters]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterBackend {
    /// In-process counters (one node).
    Memory,
    /// Counters shared through Redis.
    Redis {
        /// e.g. `redis://127.0.0.1:6379`.
        url: String,
        /// A node that stops renewing loses its units after this.
        lease: Duration,
        /// What a new call gets while Redis cannot answer.
        on_error: BackendErrorPolicy,
        /// Name of the cluster: the hash tag of every key, so several callgate clusters can
        /// share one Redis.
        cluster: String,
    },
}

/// `[counters] on_backend_error`: admission while the shared backend cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendErrorPolicy {
    /// Refuse new calls with 503 and a Reason naming the backend (calls in progress go on).
    #[default]
    Reject,
    /// Admit on this node's own counters and limits, as if it were alone.
    Local,
}

/// `[[service_provider]]`.
#[derive(Debug, Clone)]
pub struct ServiceProvider {
    /// Unique name.
    pub name: String,
    /// Its limits.
    pub limits: Limits,
    /// New calls per second of its organizations together (`None` = unlimited).
    pub cps: Limit,
}

/// `[[organization]]`.
#[derive(Debug, Clone)]
pub struct Organization {
    /// Unique name.
    pub name: String,
    /// Parent service provider.
    pub service_provider: SpId,
    /// SIP domain of its extensions (Request-URI/To host, digest realm).
    pub domain: String,
    /// Its limits.
    pub limits: Limits,
    /// New calls per second to or from its extensions (`None` = unlimited).
    pub cps: Limit,
    /// Digest challenges offer SHA-256 first, then MD5 (RFC 8760); else MD5 alone (what older
    /// phone stacks and SIPp read: they take the first challenge).
    pub digest_sha256: bool,
}

/// `[[user]]`.
#[derive(Debug, Clone)]
pub struct User {
    /// Unique name.
    pub name: String,
    /// Parent organization.
    pub organization: OrgId,
    /// Its limits.
    pub limits: Limits,
}

/// Digest credentials of an extension or a PBX.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Clear-text password (any digest algorithm).
    Password(String),
    /// Stored hashes instead of a password: hex `MD5(number:domain:password)` (`ha1`, answers
    /// MD5 challenges) and hex `SHA-256(number:domain:password)` (`ha1_sha256`, answers SHA-256
    /// ones); at least one is set.
    Ha1 {
        /// The MD5 HA1, lowercase.
        md5: Option<String>,
        /// The SHA-256 HA1, lowercase.
        sha256: Option<String>,
    },
}

impl std::fmt::Debug for Credentials {
    // Never print secrets, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password(_) => f.write_str("Password(<redacted>)"),
            Credentials::Ha1 { .. } => f.write_str("Ha1(<redacted>)"),
        }
    }
}

/// The PBX behind a SIP trunking extension (spec call-control 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pbx {
    /// Fixed address of the PBX.
    pub address: SocketAddr,
    /// Transport to reach it.
    pub transport: Transport,
    /// Whether the PBX must answer digest challenges.
    pub authenticate: bool,
}

/// `[[extension]]`.
#[derive(Debug, Clone)]
pub struct Extension {
    /// Number, unique within its organization; digest username.
    pub number: String,
    /// Owning user.
    pub user: UserId,
    /// Owning organization (the user's), denormalised for the hot path.
    pub organization: OrgId,
    /// Digest credentials, if any.
    pub credentials: Option<Credentials>,
    /// All concurrent calls of the extension.
    pub max_calls: Limit,
    /// Concurrent outgoing calls of the extension.
    pub max_outgoing: Limit,
    /// DID presented on the trunk side for outbound calls.
    pub outbound_caller_id: Option<String>,
    /// Source networks allowed to register or call (each no wider than /24).
    pub allowed_networks: Vec<IpNet>,
    /// Set for a SIP trunking extension (a PBX at a fixed address).
    pub pbx: Option<Pbx>,
}

/// How a trunk is reached and recognised (spec call-control 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkKind {
    /// Recognised by source IP, no registration.
    Ip,
    /// The daemon registers to the provider.
    Register,
    /// The provider's gateway registers to the daemon.
    AcceptRegister,
}

/// Out-of-dialog OPTIONS health probes of a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Time between probes; a probe unanswered by the next one (at most 32 s) is a miss.
    pub interval: Duration,
    /// Consecutive misses that mark the trunk down (default 3).
    pub misses: u32,
}

/// `[[trunk]]`.
#[derive(Debug, Clone)]
pub struct Trunk {
    /// Unique name.
    pub name: String,
    /// ip | register | accept-register.
    pub kind: TrunkKind,
    /// Provider gateway (ip, register).
    pub address: Option<SocketAddr>,
    /// Transport towards the gateway.
    pub transport: Transport,
    /// Other source IPs of the provider (ip).
    pub associated_ips: Vec<IpAddr>,
    /// Registration username (register, accept-register).
    pub username: Option<String>,
    /// Registration password (register, accept-register).
    pub password: Option<String>,
    /// Registration refresh interval (register).
    pub register_expires: Option<Duration>,
    /// First delay after a failed registration (register; default 30 s), doubled per
    /// consecutive failure.
    pub register_retry: Option<Duration>,
    /// Health probes (`probe_interval`, `probe_misses`); `None` = never probed, always up.
    pub probe: Option<Probe>,
    /// Owner organization; `None` = the server owns it and may share it.
    pub organization: Option<OrgId>,
    /// Concurrent calls, both directions.
    pub max_calls: Limit,
    /// Concurrent inbound calls.
    pub max_inbound: Limit,
    /// Concurrent outbound calls.
    pub max_outbound: Limit,
    /// New calls per second through it, both directions together (`None` = unlimited).
    pub cps: Limit,
    /// P-Asserted-Identity and Privacy from this trunk cross to the callee (RFC 3325 trust
    /// domain); from an untrusted trunk they are dropped.
    pub trusted: bool,
}

/// An inclusive numeric DID interval. DIDs never start with `0` or `+` (validated), so the digit
/// string and its number are interchangeable; `digits` keeps the length so `2000-2999` does not
/// match `200`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DidRange {
    /// First DID.
    pub start: u64,
    /// Last DID (inclusive).
    pub end: u64,
}

impl DidRange {
    /// True when `did` (a digit string) lies in the range.
    pub fn contains_str(&self, did: &str) -> bool {
        !did.starts_with('0')
            && did.bytes().all(|b| b.is_ascii_digit())
            && did.parse::<u64>().is_ok_and(|n| self.contains(n))
    }
    /// True when `n` lies in the range.
    pub fn contains(&self, n: u64) -> bool {
        self.start <= n && n <= self.end
    }
    /// True when the two ranges share a DID.
    pub fn overlaps(&self, other: &DidRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// `[[did_pool]]`.
#[derive(Debug, Clone)]
pub struct DidPool {
    /// Trunk the DIDs arrive on.
    pub trunk: TrunkId,
    /// Organization owning them.
    pub organization: OrgId,
    /// The DIDs (single numbers are one-element ranges).
    pub ranges: Vec<DidRange>,
}

/// Where an inbound call or a ring-rule target goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An extension (phone or PBX) of the rule's organization.
    Extension(ExtId),
    /// An incoming-call rule (forking).
    RingRule(RingRuleId),
}

/// `[[inbound_rule]]`.
#[derive(Debug, Clone)]
pub struct InboundRule {
    /// Owning organization.
    pub organization: OrgId,
    /// Trunk the call arrives on.
    pub trunk: TrunkId,
    /// DIDs it applies to (inside the organization's pool on that trunk).
    pub dids: DidRange,
    /// Destination.
    pub destination: Destination,
}

/// `[[outbound_rule]]`.
#[derive(Debug, Clone)]
pub struct OutboundRule {
    /// Whose extensions it applies to.
    pub organization: OrgId,
    /// Pattern on the dialled number.
    pub pattern: Regex,
    /// Trunks tried in order.
    pub trunks: Vec<TrunkId>,
    /// Leading digits removed before sending.
    pub strip: usize,
    /// Digits prepended after stripping.
    pub prepend: String,
}

/// One target of a ring rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingTarget {
    /// A local extension of the rule's organization.
    Extension(ExtId),
    /// A public number, sent out by the organization's outbound rules.
    Public(String),
}

/// `[[ring_rule]]`.
#[derive(Debug, Clone)]
pub struct RingRule {
    /// Unique name within its organization.
    pub name: String,
    /// Owning organization.
    pub organization: OrgId,
    /// Targets rung at once, started in this order.
    pub targets: Vec<RingTarget>,
    /// How long the targets ring.
    pub ring_time: Duration,
    /// The extension whose calls follow this rule (and whose user a public target's leg is
    /// counted on); `None`: the rule belongs to its organization.
    pub extension: Option<ExtId>,
}

/// The validated, resolved configuration. Entity ids index the vectors.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `[server]`.
    pub server: Server,
    /// `[license]`.
    pub license: License,
    /// `[[listen]]`.
    pub listen: Vec<Listen>,
    /// `[admin]`, if present.
    pub admin: Option<Admin>,
    /// `[counters]`.
    pub counters: CounterBackend,
    /// `[[service_provider]]`.
    pub service_providers: Vec<ServiceProvider>,
    /// `[[organization]]`.
    pub organizations: Vec<Organization>,
    /// `[[user]]`.
    pub users: Vec<User>,
    /// `[[extension]]`.
    pub extensions: Vec<Extension>,
    /// `[[trunk]]`.
    pub trunks: Vec<Trunk>,
    /// `[[did_pool]]`.
    pub did_pools: Vec<DidPool>,
    /// `[[inbound_rule]]`.
    pub inbound_rules: Vec<InboundRule>,
    /// `[[outbound_rule]]`.
    pub outbound_rules: Vec<OutboundRule>,
    /// `[[ring_rule]]`.
    pub ring_rules: Vec<RingRule>,
    /// Lookup indexes built once at load.
    pub index: Index,
}

/// Lookup tables over a `Snapshot`, built once at load so the hot path never scans.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// (organization, extension number) -> extension.
    pub extension_by_number: HashMap<(OrgId, String), ExtId>,
    /// Organization domain, lower-case -> organization.
    pub organization_by_domain: HashMap<String, OrgId>,
    /// PBX source address -> SIP trunking extensions at it (several only when all authenticate).
    pub pbx_by_address: HashMap<SocketAddr, Vec<ExtId>>,
    /// PBX source IP -> SIP trunking extensions at it (for PBXs that send from another port).
    pub pbx_by_ip: HashMap<IpAddr, Vec<ExtId>>,
    /// Trunk gateway IP or associated IP -> trunk.
    pub trunk_by_ip: HashMap<IpAddr, TrunkId>,
    /// `accept-register` trunks, in file order (whose live bindings identify callers).
    pub accept_register_trunks: Vec<TrunkId>,
    /// `accept-register` trunk username -> trunk (validated unique): whose REGISTER it is.
    pub accept_register_by_username: HashMap<String, TrunkId>,
    /// Organization -> its outbound rules, in file order.
    pub outbound_rules_by_org: HashMap<OrgId, Vec<usize>>,
    /// Trunk -> its inbound rules, in file order.
    pub inbound_rules_by_trunk: HashMap<TrunkId, Vec<usize>>,
    /// Name lookups used by reload (entity identity) and the admin API.
    pub sp_by_name: HashMap<String, SpId>,
    /// Organization name -> id.
    pub org_by_name: HashMap<String, OrgId>,
    /// User name -> id.
    pub user_by_name: HashMap<String, UserId>,
    /// Trunk name -> id.
    pub trunk_by_name: HashMap<String, TrunkId>,
    /// Extension -> the ring rule its calls follow.
    pub ring_rule_by_extension: HashMap<ExtId, RingRuleId>,
}

impl Snapshot {
    /// The extension `number` of the organization whose domain is `domain` (any case), if both
    /// exist: who a REGISTER's To, or a phone's From, claims to be.
    pub fn extension_at(&self, domain: &str, number: &str) -> Option<ExtId> {
        let org = self
            .index
            .organization_by_domain
            .get(&domain.to_ascii_lowercase())?;
        self.index
            .extension_by_number
            .get(&(*org, number.to_owned()))
            .copied()
    }

    /// The chain above an extension: (user, organization, service provider).
    pub fn chain(&self, ext: ExtId) -> (UserId, OrgId, SpId) {
        let e = &self.extensions[ext.index()];
        let org = e.organization;
        (
            e.user,
            org,
            self.organizations[org.index()].service_provider,
        )
    }
}

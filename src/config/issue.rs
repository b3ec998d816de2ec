//! One problem found in a configuration file, with the entity that causes it.
//!
//! Validation never stops at the first problem: it returns every [`ConfigIssue`], so an operator fixes
//! a file in one pass. The `Display` of an issue is the line `check-config` prints, e.g.
//! `extension 200 (organization acme): pbx: SIP trunking extension has no finite public limit on its
//! chain (user, organization or service provider)`.

use std::fmt;
use std::net::SocketAddr;

/// Whether an issue refuses the file or is only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file is accepted; the operator should look.
    Warning,
}

/// The configuration entity an issue is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// A place in the file (TOML syntax, unknown key, wrong value type).
    Location {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// `[server]`.
    Server,
    /// `[license]`.
    License,
    /// The `[[listen]]` entries as a whole (e.g. none at all).
    Listeners,
    /// One `[[listen]]` entry (1-based position in the file).
    Listen(usize),
    /// `[admin]`.
    Admin,
    /// `[counters]`.
    Counters,
    /// `[[service_provider]]` by name.
    ServiceProvider(String),
    /// `[[organization]]` by name.
    Organization(String),
    /// `[[user]]` by name.
    User(String),
    /// `[[extension]]` by number, with its organization when the user resolves.
    Extension {
        /// Extension number.
        number: String,
        /// Organization name, when known.
        organization: Option<String>,
    },
    /// `[[trunk]]` by name.
    Trunk(String),
    /// `[[did_pool]]` (1-based position) with its trunk and organization.
    DidPool {
        /// 1-based position in the file.
        position: usize,
        /// Trunk name as written.
        trunk: String,
        /// Organization name as written.
        organization: String,
    },
    /// `[[inbound_rule]]` (1-based position).
    InboundRule {
        /// 1-based position in the file.
        position: usize,
        /// Organization name as written.
        organization: String,
    },
    /// `[[outbound_rule]]` (1-based position).
    OutboundRule {
        /// 1-based position in the file.
        position: usize,
        /// Organization name as written.
        organization: String,
    },
    /// `[[ring_rule]]` by name within its organization.
    RingRule {
        /// Rule name.
        name: String,
        /// Organization name as written.
        organization: String,
    },
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Location { line, column } => write!(f, "line {line} column {column}"),
            Entity::Server => f.write_str("server"),
            Entity::License => f.write_str("license"),
            Entity::Listeners => f.write_str("listen"),
            Entity::Listen(n) => write!(f, "listen #{n}"),
            Entity::Admin => f.write_str("admin"),
            Entity::Counters => f.write_str("counters"),
            Entity::ServiceProvider(n) => write!(f, "service_provider {n}"),
            Entity::Organization(n) => write!(f, "organization {n}"),
            Entity::User(n) => write!(f, "user {n}"),
            Entity::Extension {
                number,
                organization: Some(org),
            } => write!(f, "extension {number} (organization {org})"),
            Entity::Extension { number, .. } => write!(f, "extension {number}"),
            Entity::Trunk(n) => write!(f, "trunk {n}"),
            Entity::DidPool {
                position,
                trunk,
                organization,
            } => write!(
                f,
                "did_pool #{position} (trunk {trunk}, organization {organization})"
            ),
            Entity::InboundRule {
                position,
                organization,
            } => write!(f, "inbound_rule #{position} (organization {organization})"),
            Entity::OutboundRule {
                position,
                organization,
            } => write!(f, "outbound_rule #{position} (organization {organization})"),
            Entity::RingRule { name, organization } => {
                write!(f, "ring_rule {name} (organization {organization})")
            }
        }
    }
}

/// What is wrong. Each validation rule of spec/config.md has its own variant; `Display` states the
/// rule in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// TOML syntax error, unknown key or wrong value type (message from the TOML parser).
    Syntax(String),
    /// A name that no entity of that kind has.
    UnknownReference {
        /// Kind referred to (`organization`, `trunk`, ...).
        kind: &'static str,
        /// The name as written.
        name: String,
    },
    /// A name used by two entities of one kind.
    DuplicateName {
        /// The duplicated name.
        name: String,
    },
    /// Two extensions of one organization with the same number.
    DuplicateExtensionNumber {
        /// The duplicated number.
        number: String,
    },
    /// Two organizations with the same SIP domain.
    DuplicateDomain {
        /// The domain (lower-cased).
        domain: String,
        /// The organization that has it first.
        other: String,
    },
    /// Two listeners on the same transport and address.
    DuplicateListener,
    /// A value that must not be empty is.
    Empty,
    /// An extension number with characters a SIP user part cannot carry plainly.
    InvalidExtensionNumber(String),
    /// A DID starting with `+`, `0` or `00`.
    DidPrefix(String),
    /// A DID that is not all digits (or too long to be a phone number).
    DidNotDigits(String),
    /// A range whose start is above its end.
    DidRangeReversed(String),
    /// A range whose ends have different digit counts.
    DidRangeDigitCount(String),
    /// Pools of two organizations overlap on one trunk.
    PoolOverlap {
        /// The DIDs of this pool that overlap.
        dids: String,
        /// The other organization.
        other: String,
    },
    /// A pool or rule on a trunk owned by another organization.
    TrunkNotShared {
        /// The trunk.
        trunk: String,
        /// Its owner.
        owner: String,
    },
    /// Inbound rule DIDs not inside the organization's pool on that trunk.
    InboundOutsidePool {
        /// The DIDs as written.
        dids: String,
        /// The trunk.
        trunk: String,
    },
    /// An inbound destination that is neither exactly one extension nor one ring rule.
    DestinationNotExactlyOne,
    /// A ring-rule target neither an extension number of the organization nor a public number.
    RingTargetUnknown(String),
    /// A SIP trunking extension without a finite `public` limit on its chain.
    PbxWithoutPublicLimit,
    /// A SIP trunking extension while `license.sip_trunking_channels = 0`.
    PbxNotLicensed,
    /// Several extensions on one PBX IP where this one does not authenticate.
    SharedPbxAddressWithoutAuth {
        /// The IP.
        ip: String,
        /// Another extension at that IP.
        other: String,
    },
    /// `pbx.authenticate = true` without a password or ha1.
    AuthenticateWithoutCredentials,
    /// A phone (no `pbx`) without password or ha1 could never register.
    PhoneWithoutCredentials,
    /// Both `password` and `ha1`.
    PasswordAndHa1,
    /// `ha1` not 32 hexadecimal characters.
    InvalidHa1,
    /// `ha1_sha256` not 64 hexadecimal characters.
    InvalidHa1Sha256,
    /// Only `ha1_sha256`, in an organization that sends no SHA-256 challenge.
    Sha256HashNeverChallenged,
    /// An `allowed_networks` entry that is not a network or address.
    InvalidNetwork(String),
    /// An `allowed_networks` entry wider than /24 (IPv4) or /64 (IPv6).
    NetworkTooWide(String),
    /// `outbound_caller_id` not a DID in the organization's pools.
    CallerIdNotInPool(String),
    /// `max_outgoing > max_calls` (a warning: it can never be reached).
    MaxOutgoingAboveMaxCalls {
        /// `max_outgoing`.
        max_outgoing: u32,
        /// `max_calls`.
        max_calls: u32,
    },
    /// An outbound rule pattern that is not a valid regular expression.
    InvalidRegex(String),
    /// A duration without a unit, zero or malformed.
    InvalidDuration(String),
    /// `reject_code` outside 400..=699.
    RejectCodeOutOfRange(u16),
    /// `workers` outside 1..=256.
    WorkersOutOfRange(u32),
    /// `cps` above [`MAX_CPS`](super::validate::MAX_CPS).
    CpsOutOfRange(u32),
    /// A count that must be at least 1 is 0.
    Zero,
    /// No `[[listen]]` entry.
    NoListener,
    /// A `tls` listener without its `certificate` or `private_key`.
    TlsRequires,
    /// `certificate` or `private_key` on a udp or tcp listener.
    TlsKeyOnPlainListener,
    /// `transport = "tls"` on a PBX or trunk: callgate opens no TLS connection of its own.
    OutboundTls,
    /// Not an `IP:port` socket address.
    InvalidSocketAddress(String),
    /// Not an IP address.
    InvalidIp(String),
    /// `probe_misses` without `probe_interval`.
    ProbeMissesWithoutInterval,
    /// `probe_interval` on an `accept-register` trunk: it has no address to probe.
    ProbeWithoutAddress,
    /// `register_retry` on a trunk that is not of kind `register`.
    RegisterRetryWithoutRegister,
    /// A trunk kind requires a key that is missing.
    TrunkKindRequires {
        /// `ip`, `register` or `accept-register`.
        kind: &'static str,
    },
    /// Two trunks recognised by the same source IP.
    TrunkIpShared {
        /// The IP.
        ip: String,
        /// The trunk that has it first.
        other: String,
    },
    /// Two `accept-register` trunks with one `username`: a gateway's REGISTER names its trunk by
    /// the To user alone, so it would be ambiguous.
    TrunkUsernameShared {
        /// The username.
        username: String,
        /// The trunk that has it first.
        other: String,
    },
    /// An `accept-register` trunk's `username` has a character a SIP URI's user part carries
    /// only escaped (RFC 3261 25.1), or `;`/`?`, so a REGISTER's To would not name it as written.
    TrunkUsernameNotUserPart {
        /// The username.
        username: String,
    },
    /// `counters.backend = "redis"` without `redis_url`.
    RedisWithoutUrl,
    /// `counters.cluster` empty, not ASCII, or with a brace (it is a Redis hash tag).
    BadClusterName(String),
    /// A reload would change where the counters live (backend, Redis URL, lease, cluster, or the
    /// node's name in a cluster).
    CounterStoreChanged {
        /// Running.
        from: String,
        /// In the file.
        to: String,
    },
    /// `[admin] address` is not a loopback address and no `token` is set.
    PublicAdminWithoutToken(SocketAddr),
    /// A reload would change the address callgate writes in Via and Contact for a transport,
    /// which the running engine shards cannot take without a restart.
    EngineAddressChanged {
        /// `udp`, `tcp` or `tls`.
        transport: &'static str,
        /// What the running engine writes (`none` when the transport had no listener).
        from: String,
        /// What the new file asks for.
        to: String,
    },
    /// A reload removes a trunk that rules of the running configuration reference.
    ReferencedTrunkRemoved {
        /// How many running rules reference it.
        rules: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Problem::*;
        match self {
            Syntax(m) => write!(f, "{m}"),
            UnknownReference { kind, name } => write!(f, "refers to unknown {kind} `{name}`"),
            DuplicateName { name } => write!(f, "duplicate name `{name}`"),
            DuplicateExtensionNumber { number } => {
                write!(f, "duplicate extension number `{number}` in its organization")
            }
            DuplicateDomain { domain, other } => {
                write!(f, "domain `{domain}` is already the domain of organization {other}")
            }
            DuplicateListener => f.write_str("duplicate listener (same transport and address)"),
            Empty => f.write_str("must not be empty"),
            InvalidExtensionNumber(n) => write!(
                f,
                "extension number `{n}` must be letters, digits, `.`, `-` or `_`"
            ),
            DidPrefix(d) => write!(f, "DID `{d}` must not start with `+`, `0` or `00`"),
            DidNotDigits(d) => write!(f, "DID `{d}` must be digits only (at most 19)"),
            DidRangeReversed(d) => write!(f, "DID range `{d}` starts after it ends"),
            DidRangeDigitCount(d) => {
                write!(f, "DID range `{d}` has ends with different digit counts")
            }
            PoolOverlap { dids, other } => write!(
                f,
                "DIDs `{dids}` overlap the pool of organization {other} on the same trunk"
            ),
            TrunkNotShared { trunk, owner } => write!(
                f,
                "trunk {trunk} is owned by organization {owner} and cannot be used by another"
            ),
            InboundOutsidePool { dids, trunk } => write!(
                f,
                "DIDs `{dids}` are not inside the organization's pool on trunk {trunk}"
            ),
            DestinationNotExactlyOne => {
                f.write_str("destination must be exactly one of `extension` or `ring_rule`")
            }
            RingTargetUnknown(t) => write!(
                f,
                "target `{t}` is neither an extension number of the organization nor a public \
                 number (digits, optionally after a `+`)"
            ),
            PbxWithoutPublicLimit => f.write_str(
                "SIP trunking extension has no finite public limit on its chain (user, \
                 organization or service provider)",
            ),
            PbxNotLicensed => f.write_str(
                "SIP trunking extension but the licence allows none (license.sip_trunking_channels = 0)",
            ),
            SharedPbxAddressWithoutAuth { ip, other } => write!(
                f,
                "PBX IP {ip} is shared with extension {other}; extensions may share an IP only if \
                 every one authenticates"
            ),
            AuthenticateWithoutCredentials => {
                f.write_str("pbx.authenticate = true needs a `password` or `ha1`")
            }
            PhoneWithoutCredentials => f.write_str(
                "an extension without `pbx` registers and needs a `password` or `ha1`",
            ),
            PasswordAndHa1 => {
                f.write_str("`password` and `ha1` / `ha1_sha256` are exclusive; set one")
            }
            InvalidHa1 => f.write_str("ha1 must be 32 hexadecimal characters (an MD5 digest)"),
            Sha256HashNeverChallenged => f.write_str(
                "only `ha1_sha256` is stored but the organization sends MD5 challenges only: set \
                 `digest_sha256 = true` on it (or [server]) or add `ha1`",
            ),
            InvalidHa1Sha256 => {
                f.write_str("ha1_sha256 must be 64 hexadecimal characters (a SHA-256 digest)")
            }
            InvalidNetwork(n) => write!(f, "`{n}` is not a network (e.g. 198.51.100.0/24)"),
            NetworkTooWide(n) => {
                write!(f, "network `{n}` is wider than /24 (IPv4) or /64 (IPv6)")
            }
            CallerIdNotInPool(d) => write!(
                f,
                "outbound caller ID `{d}` is not a DID in the organization's pools"
            ),
            MaxOutgoingAboveMaxCalls {
                max_outgoing,
                max_calls,
            } => write!(
                f,
                "max_outgoing {max_outgoing} > max_calls {max_calls} can never be reached"
            ),
            InvalidRegex(m) => write!(f, "invalid regular expression: {m}"),
            InvalidDuration(d) => write!(
                f,
                "`{d}` is not a duration (a whole number > 0 with a unit: ms, s, m, h)"
            ),
            RejectCodeOutOfRange(c) => write!(f, "reject code {c} is not in 400..=699"),
            WorkersOutOfRange(n) => write!(f, "{n} workers: between 1 and 256 engine shards"),
            CpsOutOfRange(n) => write!(
                f,
                "{n} calls per second: at most {} (0 = no new calls, absent = unlimited)",
                super::validate::MAX_CPS
            ),
            Zero => f.write_str("must be at least 1"),
            NoListener => f.write_str("at least one [[listen]] entry is required"),
            TlsRequires => f.write_str("required for a listener with transport = \"tls\""),
            TlsKeyOnPlainListener => {
                f.write_str("only a listener with transport = \"tls\" takes a certificate or key")
            }
            OutboundTls => f.write_str(
                "transport = \"tls\" is for listeners only: callgate opens no TLS connection of \
                 its own yet (phones may register over TLS); use udp or tcp",
            ),
            InvalidSocketAddress(a) => write!(f, "`{a}` is not an IP:port address"),
            InvalidIp(a) => write!(f, "`{a}` is not an IP address"),
            ProbeMissesWithoutInterval => write!(f, "needs probe_interval (no probes without it)"),
            ProbeWithoutAddress => write!(
                f,
                "an accept-register trunk has no address to probe (it registers to callgate)"
            ),
            RegisterRetryWithoutRegister => write!(f, "only a trunk of kind `register` registers"),
            TrunkKindRequires { kind } => write!(f, "required for a trunk of kind `{kind}`"),
            TrunkIpShared { ip, other } => write!(
                f,
                "source IP {ip} already identifies trunk {other}; an ip trunk needs its own IPs"
            ),
            TrunkUsernameShared { username, other } => write!(
                f,
                "username `{username}` is already the username of accept-register trunk \
                 {other}; a gateway's REGISTER names its trunk by it"
            ),
            TrunkUsernameNotUserPart { username } => write!(
                f,
                "username `{username}` cannot be written unescaped in a SIP URI's user part \
                 (use letters, digits and -_.!~*'()&=+$,/)"
            ),
            RedisWithoutUrl => f.write_str("backend = \"redis\" needs `redis_url`"),
            CounterStoreChanged { from, to } => write!(
                f,
                "where the counters live changes only at restart (running: {from}; file: {to})"
            ),
            BadClusterName(name) => write!(
                f,
                "cluster name `{name}` must be non-empty ASCII without braces (it is a Redis hash tag)"
            ),
            ReferencedTrunkRemoved { rules } => write!(
                f,
                "trunk is referenced by {rules} rule(s) of the running configuration and cannot \
                 be removed"
            ),
            PublicAdminWithoutToken(addr) => write!(
                f,
                "admin API on {addr} is reachable from other hosts: set a token, or bind it to \
                 a loopback address"
            ),
            EngineAddressChanged {
                transport,
                from,
                to,
            } => write!(
                f,
                "the address callgate writes in Via/Contact for {transport} would change from \
                 {from} to {to}; engine shards keep theirs until a restart (restart callgate to \
                 apply)"
            ),
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The entity causing it.
    pub entity: Entity,
    /// The key of that entity (empty for file-level problems).
    pub field: &'static str,
    /// What is wrong.
    pub problem: Problem,
    /// Error (refuses the file) or warning.
    pub severity: Severity,
}

impl ConfigIssue {
    /// An error.
    pub fn error(entity: Entity, field: &'static str, problem: Problem) -> Self {
        ConfigIssue {
            entity,
            field,
            problem,
            severity: Severity::Error,
        }
    }

    /// A warning.
    pub fn warning(entity: Entity, field: &'static str, problem: Problem) -> Self {
        ConfigIssue {
            entity,
            field,
            problem,
            severity: Severity::Warning,
        }
    }

    /// True for an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.entity, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.entity, self.field, self.problem)
        }
    }
}

//! Raw file -> [`Snapshot`]: every rule of spec/config.md, collecting every issue.
//!
//! The work is split by seam: this file drives the stages and checks the server-wide sections;
//! `tenancy.rs` checks service providers, organizations, users and extensions; `rules.rs` checks
//! trunks, DID pools and the inbound, outbound and ring rules; `index.rs` builds the lookup tables.
//! References that do not resolve are reported once and recorded as `None`, so the checks that
//! depend on them are skipped instead of piling up consequential errors.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::did::merge;
use super::issue::{ConfigIssue, Entity, Problem};
use super::model::{
    Admin, BackendErrorPolicy, CounterBackend, DidRange, ExtId, License, Limit, Limits, Listen,
    OrgId, RingRuleId, Server, Snapshot, SpId, TcpLimits, TlsFiles, Transport, TrunkId, UserId,
};
use super::schema::{
    parse_duration, RawBackend, RawBackendErrorPolicy, RawConfig, RawLimits, RawListen,
    RawTransport,
};
use super::{index, rules, tenancy};

/// Validates a parsed file. Returns the snapshot when no issue is an error, and every issue
/// (errors and warnings) in file order of the checks.
pub(crate) fn validate(raw: &RawConfig) -> (Option<Snapshot>, Vec<ConfigIssue>) {
    let mut b = Build::new(raw);
    let server = b.server();
    let license = License {
        sip_trunking_channels: raw.license.sip_trunking_channels,
    };
    let listen = b.listeners();
    let admin = b.admin();
    let counters = b.counters();
    let service_providers = tenancy::service_providers(&mut b);
    let organizations = tenancy::organizations(&mut b);
    let users = tenancy::users(&mut b);
    let trunks = rules::trunks(&mut b);
    let did_pools = rules::did_pools(&mut b);
    let extensions = tenancy::extensions(&mut b);
    let ring_rules = rules::ring_rules(&mut b);
    let inbound_rules = rules::inbound_rules(&mut b);
    let outbound_rules = rules::outbound_rules(&mut b);
    if b.issues.iter().any(ConfigIssue::is_error) {
        return (None, b.issues);
    }
    let mut snapshot = Snapshot {
        server,
        license,
        listen,
        admin,
        counters,
        service_providers,
        organizations,
        users,
        extensions,
        trunks,
        did_pools,
        inbound_rules,
        outbound_rules,
        ring_rules,
        index: Default::default(),
    };
    snapshot.index = index::build(&snapshot);
    (Some(snapshot), b.issues)
}

/// State shared by the stages: issues found so far and names resolved so far.
pub(crate) struct Build<'r> {
    pub(crate) raw: &'r RawConfig,
    pub(crate) issues: Vec<ConfigIssue>,
    pub(crate) sp_by_name: HashMap<&'r str, SpId>,
    pub(crate) org_by_name: HashMap<&'r str, OrgId>,
    pub(crate) user_by_name: HashMap<&'r str, UserId>,
    pub(crate) trunk_by_name: HashMap<&'r str, TrunkId>,
    /// Per organization, its service provider when that resolved.
    pub(crate) org_sp: Vec<Option<SpId>>,
    /// Per user, its organization when that resolved.
    pub(crate) user_org: Vec<Option<OrgId>>,
    /// Per trunk, its owner organization when set and resolved.
    pub(crate) trunk_owner: Vec<Option<OrgId>>,
    /// (organization, number) -> extension.
    pub(crate) ext_by_number: HashMap<(OrgId, &'r str), ExtId>,
    /// Merged pool intervals per (organization, trunk).
    pub(crate) pools_by_org_trunk: HashMap<(OrgId, TrunkId), Vec<DidRange>>,
    /// Merged pool intervals per organization, all trunks together.
    pub(crate) pools_by_org: HashMap<OrgId, Vec<DidRange>>,
    /// (organization, name) -> ring rule.
    pub(crate) ring_by_name: HashMap<(OrgId, &'r str), RingRuleId>,
}

impl<'r> Build<'r> {
    fn new(raw: &'r RawConfig) -> Self {
        Build {
            raw,
            issues: Vec::new(),
            sp_by_name: HashMap::new(),
            org_by_name: HashMap::new(),
            user_by_name: HashMap::new(),
            trunk_by_name: HashMap::new(),
            org_sp: Vec::new(),
            user_org: Vec::new(),
            trunk_owner: Vec::new(),
            ext_by_number: HashMap::new(),
            pools_by_org_trunk: HashMap::new(),
            pools_by_org: HashMap::new(),
            ring_by_name: HashMap::new(),
        }
    }

    /// Records an error.
    pub(crate) fn error(&mut self, entity: Entity, field: &'static str, problem: Problem) {
        self.issues.push(ConfigIssue::error(entity, field, problem));
    }

    /// Records a warning.
    pub(crate) fn warning(&mut self, entity: Entity, field: &'static str, problem: Problem) {
        self.issues
            .push(ConfigIssue::warning(entity, field, problem));
    }

    /// Parses a duration or records why not.
    pub(crate) fn duration(
        &mut self,
        entity: impl FnOnce() -> Entity,
        field: &'static str,
        text: &str,
    ) -> Duration {
        parse_duration(text).unwrap_or_else(|| {
            self.error(entity(), field, Problem::InvalidDuration(text.to_owned()));
            Duration::ZERO
        })
    }

    /// Parses `IP:port` or records why not (the placeholder is never used: errors refuse the file).
    pub(crate) fn socket_addr(
        &mut self,
        entity: impl FnOnce() -> Entity,
        field: &'static str,
        text: &str,
    ) -> SocketAddr {
        text.parse().unwrap_or_else(|_| {
            self.error(
                entity(),
                field,
                Problem::InvalidSocketAddress(text.to_owned()),
            );
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    /// Parses an IP address or records why not.
    pub(crate) fn ip(
        &mut self,
        entity: impl FnOnce() -> Entity,
        field: &'static str,
        text: &str,
    ) -> Option<IpAddr> {
        let ip = text.parse().ok();
        if ip.is_none() {
            self.error(entity(), field, Problem::InvalidIp(text.to_owned()));
        }
        ip
    }

    /// A `[server]` duration that has a default and can be switched off with `"none"`.
    /// A `cps` value: absent is unlimited, 0 admits no new call, above [`MAX_CPS`] is refused.
    pub(crate) fn cps(&mut self, entity: impl FnOnce() -> Entity, raw: Option<u32>) -> Limit {
        if let Some(n) = raw.filter(|n| *n > MAX_CPS) {
            self.error(entity(), "cps", Problem::CpsOutOfRange(n));
        }
        raw
    }

    fn optional_duration(
        &mut self,
        field: &'static str,
        text: Option<&str>,
        default: &str,
    ) -> Option<Duration> {
        match text.unwrap_or(default) {
            "none" => None,
            d => Some(self.duration(|| Entity::Server, field, d)),
        }
    }

    fn server(&mut self) -> Server {
        let raw = &self.raw.server;
        if !(400..=699).contains(&raw.reject_code) {
            let problem = Problem::RejectCodeOutOfRange(raw.reject_code);
            self.error(Entity::Server, "reject_code", problem);
        }
        if raw.name.is_empty() {
            self.error(Entity::Server, "name", Problem::Empty);
        }
        let max_call_duration = self.optional_duration(
            "max_call_duration",
            raw.max_call_duration.as_deref(),
            super::schema::DEFAULT_MAX_CALL_DURATION,
        );
        let dialog_probe_interval = self.optional_duration(
            "dialog_probe_interval",
            raw.dialog_probe_interval.as_deref(),
            super::schema::DEFAULT_DIALOG_PROBE_INTERVAL,
        );
        let session_expires = raw
            .session_expires
            .as_deref()
            .map(|d| self.duration(|| Entity::Server, "session_expires", d));
        if let Some(n) = raw.workers.filter(|n| !(1..=256).contains(n)) {
            self.error(Entity::Server, "workers", Problem::WorkersOutOfRange(n));
        }
        let tcp = self.tcp_limits();
        let cps = self.cps(|| Entity::Server, raw.cps);
        Server {
            name: raw.name.clone(),
            limits: limits(raw.limits),
            cps,
            reject_code: raw.reject_code,
            max_call_duration,
            session_expires,
            dialog_probe_interval,
            state_file: raw.state_file.as_ref().map(std::path::PathBuf::from),
            cdr_file: raw.cdr_file.as_ref().map(std::path::PathBuf::from),
            workers: raw.workers.map(|n| n.clamp(1, 256) as usize),
            tcp,
        }
    }

    fn tcp_limits(&mut self) -> TcpLimits {
        let raw = &self.raw.server;
        let (idle, header) = (&raw.tcp_idle_timeout, &raw.tcp_header_timeout);
        let max_connections = raw.max_tcp_connections;
        if max_connections == 0 {
            self.error(Entity::Server, "max_tcp_connections", Problem::Zero);
        }
        TcpLimits {
            idle_timeout: self.duration(|| Entity::Server, "tcp_idle_timeout", idle),
            header_timeout: self.duration(|| Entity::Server, "tcp_header_timeout", header),
            max_connections: max_connections as usize,
        }
    }

    fn listeners(&mut self) -> Vec<Listen> {
        if self.raw.listen.is_empty() {
            self.error(Entity::Listeners, "", Problem::NoListener);
        }
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(self.raw.listen.len());
        for (i, l) in self.raw.listen.iter().enumerate() {
            let address = self.socket_addr(|| Entity::Listen(i + 1), "address", &l.address);
            let transport = transport(l.transport);
            // TCP and TLS listeners are both TCP sockets: one address cannot take both (but
            // port 0 is a new port for each).
            let tls_on_any_port = transport == Transport::Tls && address.port() == 0;
            let socket = (transport.is_stream(), tls_on_any_port, address);
            if seen.insert(socket, i).is_some() {
                self.error(Entity::Listen(i + 1), "address", Problem::DuplicateListener);
            }
            let tls = self.tls_files(i, l, transport);
            out.push(Listen {
                transport,
                address,
                advertise: l.advertise.clone(),
                tls,
            });
        }
        out
    }

    /// `certificate` and `private_key`: both required on a `tls` listener, refused on others
    /// (a key that does nothing would let an operator believe a plain listener is encrypted).
    fn tls_files(&mut self, i: usize, l: &RawListen, transport: Transport) -> Option<TlsFiles> {
        let keys = [
            ("certificate", &l.certificate),
            ("private_key", &l.private_key),
        ];
        if transport != Transport::Tls {
            for (field, value) in keys {
                if value.is_some() {
                    self.error(Entity::Listen(i + 1), field, Problem::TlsKeyOnPlainListener);
                }
            }
            return None;
        }
        let mut path = |field, value: &Option<String>| match value.as_deref() {
            None => {
                self.error(Entity::Listen(i + 1), field, Problem::TlsRequires);
                None
            }
            Some("") => {
                self.error(Entity::Listen(i + 1), field, Problem::Empty);
                None
            }
            Some(p) => Some(std::path::PathBuf::from(p)),
        };
        let certificate = path("certificate", &l.certificate);
        let private_key = path("private_key", &l.private_key);
        Some(TlsFiles {
            certificate: certificate?,
            private_key: private_key?,
        })
    }

    /// The transport of a PBX or trunk: callgate opens no TLS connection of its own (it would
    /// need server certificate verification), so `tls` is refused there.
    pub(crate) fn outbound_transport(
        &mut self,
        entity: impl Fn() -> Entity,
        field: &'static str,
        raw: RawTransport,
    ) -> Transport {
        let t = transport(raw);
        if t == Transport::Tls {
            self.error(entity(), field, Problem::OutboundTls);
        }
        t
    }

    fn admin(&mut self) -> Option<Admin> {
        let raw = self.raw.admin.as_ref()?;
        let address = self.socket_addr(|| Entity::Admin, "address", &raw.address);
        if raw.token.as_deref() == Some("") {
            self.error(Entity::Admin, "token", Problem::Empty);
        }
        // The API can end calls and reload the file: reachable from other hosts only behind a
        // token. An address that failed to parse is reported once, above.
        let parsed = raw.address.parse::<SocketAddr>().is_ok();
        if parsed && !address.ip().is_loopback() && raw.token.is_none() {
            self.error(
                Entity::Admin,
                "token",
                Problem::PublicAdminWithoutToken(address),
            );
        }
        Some(Admin {
            address,
            token: raw.token.clone(),
        })
    }

    fn counters(&mut self) -> CounterBackend {
        let raw = &self.raw.counters;
        let lease = self.duration(|| Entity::Counters, "lease", &raw.lease);
        match (raw.backend, &raw.redis_url) {
            (RawBackend::Memory, _) => CounterBackend::Memory,
            (RawBackend::Redis, Some(url)) if !url.is_empty() => CounterBackend::Redis {
                url: url.clone(),
                lease,
                on_error: match raw.on_backend_error {
                    RawBackendErrorPolicy::Reject => BackendErrorPolicy::Reject,
                    RawBackendErrorPolicy::Local => BackendErrorPolicy::Local,
                },
                cluster: self.cluster_name(),
            },
            (RawBackend::Redis, _) => {
                self.error(Entity::Counters, "redis_url", Problem::RedisWithoutUrl);
                CounterBackend::Memory
            }
        }
    }

    /// `counters.cluster`: a Redis hash tag, so no braces (they would split the slot).
    fn cluster_name(&mut self) -> String {
        let name = self.raw.counters.cluster.clone();
        match name {
            None => "callgate".to_owned(),
            Some(n) if !n.is_empty() && !n.contains(['{', '}']) && n.is_ascii() => n,
            Some(n) => {
                self.error(Entity::Counters, "cluster", Problem::BadClusterName(n));
                "callgate".to_owned()
            }
        }
    }

    /// Records a duplicate for every name seen before; returns name -> first id.
    pub(crate) fn unique_names<Id: Copy>(
        &mut self,
        names: impl Iterator<Item = &'r str>,
        entity: impl Fn(&str) -> Entity,
        id: impl Fn(u32) -> Id,
    ) -> HashMap<&'r str, Id> {
        let mut map = HashMap::new();
        for (i, name) in names.enumerate() {
            if name.is_empty() {
                self.error(entity(name), "name", Problem::Empty);
            } else if map.contains_key(name) {
                let problem = Problem::DuplicateName {
                    name: name.to_owned(),
                };
                self.error(entity(name), "name", problem);
            } else {
                map.insert(name, id(to_u32(i)));
            }
        }
        map
    }

    /// Merges the pool intervals recorded per (organization, trunk) and per organization.
    pub(crate) fn set_pools(&mut self, ranges: HashMap<(OrgId, TrunkId), Vec<DidRange>>) {
        let mut by_org: HashMap<OrgId, Vec<DidRange>> = HashMap::new();
        for ((org, _), v) in &ranges {
            by_org.entry(*org).or_default().extend_from_slice(v);
        }
        self.pools_by_org = by_org.into_iter().map(|(k, v)| (k, merge(v))).collect();
        self.pools_by_org_trunk = ranges.into_iter().map(|(k, v)| (k, merge(v))).collect();
    }
}

/// Entity ids are `u32`; more than 4 billion entities is not a configuration anyone loads.
/// The highest `cps`: the bucket refills one token per `1 s / cps` in whole nanoseconds, exact up
/// to here; a million new calls a second is far past what one node sets up.
pub(crate) const MAX_CPS: u32 = 1_000_000;

pub(crate) fn to_u32(i: usize) -> u32 {
    u32::try_from(i).expect("invariant: fewer than 2^32 entities of one kind")
}

/// Raw limits are already in model shape: absent is unlimited.
pub(crate) fn limits(raw: RawLimits) -> Limits {
    Limits {
        public: raw.public,
        internal: raw.internal,
    }
}

/// Raw transport -> model transport.
pub(crate) fn transport(raw: RawTransport) -> Transport {
    match raw {
        RawTransport::Udp => Transport::Udp,
        RawTransport::Tcp => Transport::Tcp,
        RawTransport::Tls => Transport::Tls,
    }
}

//! A small builder of [`Snapshot`] values for tests and benches of the limiter (and of its users),
//! independent of the TOML loader. Only the fields the limiter reads are meaningful; the others get
//! neutral values.

use crate::config::model::{
    CounterBackend, ExtId, Extension, Index, License, Limit, Limits, OrgId, Organization, Server,
    ServiceProvider, Snapshot, SpId, Transport, Trunk, TrunkId, TrunkKind, User, UserId,
};

/// Builds a tenancy tree and trunks; ids are returned in creation order.
#[derive(Debug)]
pub struct TreeBuilder {
    snapshot: Snapshot,
}

impl Default for TreeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// `Limits { public, internal }` in one call.
pub fn limits(public: Limit, internal: Limit) -> Limits {
    Limits { public, internal }
}

impl TreeBuilder {
    /// An empty configuration with an unlimited server named `node1`.
    pub fn new() -> Self {
        let server = Server {
            name: "node1".to_owned(),
            limits: Limits::default(),
            cps: None,
            reject_code: 486,
            max_call_duration: None,
            session_expires: None,
            dialog_probe_interval: None,
            state_file: None,
            cdr_file: None,
            workers: None,
            tcp: Default::default(),
        };
        TreeBuilder {
            snapshot: Snapshot {
                server,
                license: License::default(),
                listen: Vec::new(),
                admin: None,
                counters: CounterBackend::Memory,
                service_providers: Vec::new(),
                organizations: Vec::new(),
                users: Vec::new(),
                extensions: Vec::new(),
                trunks: Vec::new(),
                did_pools: Vec::new(),
                inbound_rules: Vec::new(),
                outbound_rules: Vec::new(),
                ring_rules: Vec::new(),
                index: Index::default(),
            },
        }
    }

    /// Sets the server's limits.
    pub fn server(&mut self, limits: Limits) -> &mut Self {
        self.snapshot.server.limits = limits;
        self
    }

    /// Adds a service provider.
    pub fn service_provider(&mut self, name: &str, limits: Limits) -> SpId {
        let s = &mut self.snapshot;
        let id = SpId(next(s.service_providers.len()));
        s.service_providers.push(ServiceProvider {
            name: name.to_owned(),
            limits,
            cps: None,
        });
        s.index.sp_by_name.insert(name.to_owned(), id);
        id
    }

    /// Adds an organization under `sp` (domain `<name>.example`).
    pub fn organization(&mut self, name: &str, sp: SpId, limits: Limits) -> OrgId {
        let s = &mut self.snapshot;
        let id = OrgId(next(s.organizations.len()));
        let domain = format!("{name}.example");
        s.organizations.push(Organization {
            name: name.to_owned(),
            service_provider: sp,
            domain: domain.clone(),
            limits,
            cps: None,
            digest_sha256: false,
        });
        s.index.org_by_name.insert(name.to_owned(), id);
        s.index.organization_by_domain.insert(domain, id);
        id
    }

    /// Adds a user under `org`.
    pub fn user(&mut self, name: &str, org: OrgId, limits: Limits) -> UserId {
        let s = &mut self.snapshot;
        let id = UserId(next(s.users.len()));
        s.users.push(User {
            name: name.to_owned(),
            organization: org,
            limits,
        });
        s.index.user_by_name.insert(name.to_owned(), id);
        id
    }

    /// Adds an extension of `user` (in the user's organization).
    pub fn extension(
        &mut self,
        number: &str,
        user: UserId,
        max_calls: Limit,
        max_outgoing: Limit,
    ) -> ExtId {
        let s = &mut self.snapshot;
        let id = ExtId(next(s.extensions.len()));
        let organization = s.users[user.index()].organization;
        s.extensions.push(Extension {
            number: number.to_owned(),
            user,
            organization,
            credentials: None,
            max_calls,
            max_outgoing,
            outbound_caller_id: None,
            allowed_networks: Vec::new(),
            pbx: None,
        });
        s.index
            .extension_by_number
            .insert((organization, number.to_owned()), id);
        id
    }

    /// Adds a server-owned IP trunk.
    pub fn trunk(
        &mut self,
        name: &str,
        max_calls: Limit,
        max_inbound: Limit,
        max_outbound: Limit,
    ) -> TrunkId {
        let s = &mut self.snapshot;
        let id = TrunkId(next(s.trunks.len()));
        s.trunks.push(Trunk {
            name: name.to_owned(),
            kind: TrunkKind::Ip,
            address: None,
            transport: Transport::Udp,
            associated_ips: Vec::new(),
            username: None,
            password: None,
            register_expires: None,
            register_retry: None,
            probe: None,
            organization: None,
            max_calls,
            max_inbound,
            max_outbound,
            cps: None,
            trusted: false,
        });
        s.index.trunk_by_name.insert(name.to_owned(), id);
        id
    }

    /// Sets the server's calls per second.
    pub fn server_cps(&mut self, cps: Limit) -> &mut Self {
        self.snapshot.server.cps = cps;
        self
    }

    /// Sets the calls per second of service provider `id`.
    pub fn service_provider_cps(&mut self, id: SpId, cps: Limit) -> &mut Self {
        self.snapshot.service_providers[id.index()].cps = cps;
        self
    }

    /// Sets the calls per second of organization `id`.
    pub fn organization_cps(&mut self, id: OrgId, cps: Limit) -> &mut Self {
        self.snapshot.organizations[id.index()].cps = cps;
        self
    }

    /// Sets the concurrent-call limits of organization `id`.
    pub fn organization_limits(&mut self, id: OrgId, limits: Limits) -> &mut Self {
        self.snapshot.organizations[id.index()].limits = limits;
        self
    }

    /// Sets the calls per second of trunk `id`.
    pub fn trunk_cps(&mut self, id: TrunkId, cps: Limit) -> &mut Self {
        self.snapshot.trunks[id.index()].cps = cps;
        self
    }

    /// The configuration built so far.
    pub fn build(&self) -> Snapshot {
        self.snapshot.clone()
    }
}

fn next(len: usize) -> u32 {
    u32::try_from(len).expect("invariant: test trees have fewer than 2^32 entities")
}

/// A shared backend for tests of two-step admission: the generation's cells count the node's
/// share (as with Redis), `try_acquire` is the local fallback, and every release is recorded.
#[derive(Debug, Default)]
pub struct SharedBackend {
    released: std::sync::Mutex<Vec<super::CallKey>>,
}

impl SharedBackend {
    /// The calls released so far, in order.
    pub fn released(&self) -> Vec<super::CallKey> {
        self.released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl super::CounterBackend for SharedBackend {
    fn try_acquire(
        &self,
        generation: &super::Generation,
        call: super::CallKey,
        path: &super::Path,
    ) -> Result<(), super::Refusal> {
        super::MemoryBackend.try_acquire(generation, call, path)
    }

    fn release(&self, generation: &super::Generation, call: super::CallKey, path: &super::Path) {
        super::MemoryBackend.release(generation, call, path);
        self.released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    fn is_shared(&self) -> bool {
        true
    }
}

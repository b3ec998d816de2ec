//! Counter cells, their identity, and the dense layout of one configuration generation.
//!
//! Every counter of the tenancy tree (spec call-control 1) is one [`Cell`]. A [`Generation`] holds
//! the cells of one configuration, indexed by a [`CounterId`] computed from the snapshot's entity
//! ids, so building a path is arithmetic, not lookups. A reload builds a new generation that reuses
//! the cells of surviving entities (matched by name, never by index), so units held by calls in
//! progress move with their entity.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::config::model::ExtId;
use crate::config::model::{Limit, OrgId, Snapshot, SpId, TrunkId, UserId};

use super::admit::CounterBackend;
use super::rate::Rates;
use super::refusal::Refusal;

/// Encoded limit meaning "unlimited": such a counter still counts but never refuses.
const UNLIMITED: u32 = u32::MAX;

/// A level of the tenancy tree, or a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// The whole server.
    Server,
    /// A service provider.
    ServiceProvider,
    /// An organization (tenant).
    Organization,
    /// A user.
    User,
    /// An extension.
    Extension,
    /// A trunk (channel).
    Trunk,
}

impl Level {
    /// The name used as metric label value and in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Server => "server",
            Level::ServiceProvider => "service_provider",
            Level::Organization => "organization",
            Level::User => "user",
            Level::Extension => "extension",
            Level::Trunk => "trunk",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which limit of an entity a counter enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CounterKind {
    /// Calls with a trunk at one end (server to user).
    Public,
    /// Calls between two local extensions (server to user).
    Internal,
    /// All calls of an extension or a trunk.
    MaxCalls,
    /// Outgoing calls of an extension.
    MaxOutgoing,
    /// Inbound calls of a trunk.
    MaxInbound,
    /// Outbound calls of a trunk.
    MaxOutbound,
    /// New calls per second (a rate, not units held: see `rate.rs`).
    Cps,
}

impl CounterKind {
    /// The name used as metric label value and in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            CounterKind::Public => "public",
            CounterKind::Internal => "internal",
            CounterKind::MaxCalls => "max_calls",
            CounterKind::MaxOutgoing => "max_outgoing",
            CounterKind::MaxInbound => "max_inbound",
            CounterKind::MaxOutbound => "max_outbound",
            CounterKind::Cps => "cps",
        }
    }
}

impl fmt::Display for CounterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Index of a counter inside one [`Generation`]; meaningless in another generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CounterId(pub u32);

impl CounterId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// One counter: units in use and its limit. Shared by every generation in which its entity exists.
#[derive(Debug)]
pub(crate) struct Cell {
    used: AtomicU32,
    /// Encoded: [`UNLIMITED`] for no limit. Updated in place by a reload.
    limit: AtomicU32,
    level: Level,
    kind: CounterKind,
    /// Entity name as shown to operators (`number@organization` for an extension).
    name: String,
}

// Each counter is one independent atomic: the "never above the limit" invariant only needs the
// modification order of that one variable, which every atomic RMW has whatever its ordering, and
// no other memory is published through a counter. Relaxed is therefore enough.
impl Cell {
    fn new(level: Level, kind: CounterKind, name: String, limit: Limit) -> Self {
        Cell {
            used: AtomicU32::new(0),
            limit: AtomicU32::new(encode(limit)),
            level,
            kind,
            name,
        }
    }

    /// Takes one unit if `used < limit`; otherwise returns the refusal naming this counter.
    pub(crate) fn try_acquire(&self) -> Result<(), Refusal> {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used >= limit {
                return Err(Refusal {
                    level: self.level,
                    name: self.name.clone(),
                    counter: self.kind,
                    used,
                    limit,
                });
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Takes one unit whatever the limit: a shared backend already checked it against every
    /// node's units, and this cell only counts this node's share.
    pub(crate) fn force_acquire(&self) {
        self.used.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives back one unit taken by [`Cell::try_acquire`].
    pub(crate) fn release(&self) {
        let before = self.used.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "invariant: a release matches an acquire");
    }

    pub(crate) fn used(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> Limit {
        decode(self.limit.load(Ordering::Relaxed))
    }

    pub(crate) fn level(&self) -> Level {
        self.level
    }

    pub(crate) fn kind(&self) -> CounterKind {
        self.kind
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Identity across reloads. The server is one entity whatever its configured name.
    fn key(&self) -> CellKey {
        let name = if self.level == Level::Server {
            String::new()
        } else {
            self.name.clone()
        };
        (self.level, name, self.kind)
    }
}

type CellKey = (Level, String, CounterKind);

fn encode(limit: Limit) -> u32 {
    limit.unwrap_or(UNLIMITED)
}

fn decode(limit: u32) -> Limit {
    (limit != UNLIMITED).then_some(limit)
}

/// The two tenancy counters of a level, as offsets inside the level's pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Public = 0,
    Internal = 1,
}

/// Where each entity's counters start in the dense cell vector.
///
/// Order: server (public, internal), each service provider (public, internal), each organization,
/// each user, each extension (max_calls, max_outgoing), each trunk (max_calls, max_inbound,
/// max_outbound).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    sp: u32,
    org: u32,
    user: u32,
    ext: u32,
    trunk: u32,
    total: u32,
}

impl Layout {
    fn of(s: &Snapshot) -> Self {
        let n = |len: usize| u32::try_from(len).expect("invariant: entity counts fit in u32");
        let sp = 2;
        let org = sp + 2 * n(s.service_providers.len());
        let user = org + 2 * n(s.organizations.len());
        let ext = user + 2 * n(s.users.len());
        let trunk = ext + 2 * n(s.extensions.len());
        let total = trunk + 3 * n(s.trunks.len());
        Layout {
            sp,
            org,
            user,
            ext,
            trunk,
            total,
        }
    }

    pub(crate) fn server(&self, scope: Scope) -> CounterId {
        CounterId(scope as u32)
    }
    pub(crate) fn service_provider(&self, id: SpId, scope: Scope) -> CounterId {
        CounterId(self.sp + 2 * id.0 + scope as u32)
    }
    pub(crate) fn organization(&self, id: OrgId, scope: Scope) -> CounterId {
        CounterId(self.org + 2 * id.0 + scope as u32)
    }
    pub(crate) fn user(&self, id: UserId, scope: Scope) -> CounterId {
        CounterId(self.user + 2 * id.0 + scope as u32)
    }
    pub(crate) fn ext_max_calls(&self, id: ExtId) -> CounterId {
        CounterId(self.ext + 2 * id.0)
    }
    pub(crate) fn ext_max_outgoing(&self, id: ExtId) -> CounterId {
        CounterId(self.ext + 2 * id.0 + 1)
    }
    pub(crate) fn trunk_max_calls(&self, id: TrunkId) -> CounterId {
        CounterId(self.trunk + 3 * id.0)
    }
    pub(crate) fn trunk_max_inbound(&self, id: TrunkId) -> CounterId {
        CounterId(self.trunk + 3 * id.0 + 1)
    }
    pub(crate) fn trunk_max_outbound(&self, id: TrunkId) -> CounterId {
        CounterId(self.trunk + 3 * id.0 + 2)
    }
}

/// What a reload did to the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Counters in the new configuration.
    pub counters: usize,
    /// Counters whose entity survived: they keep their units (and take the new limit).
    pub kept: usize,
    /// Counters of new entities, starting at 0.
    pub added: usize,
    /// Counters of removed entities.
    pub removed: usize,
    /// Units still held on removed counters; their calls release them when they end.
    pub removed_units_in_use: u64,
}

/// The counters of one configuration: cells in dense [`CounterId`] order, the snapshot they were
/// built from (paths take entity ids from it), and the backend admitting on them.
///
/// A [`super::Permit`] keeps its generation alive, so a call keeps the configuration it was admitted
/// under until it ends (and can always release what it took).
pub struct Generation {
    config: Arc<Snapshot>,
    layout: Layout,
    cells: Vec<Arc<Cell>>,
    /// Calls-per-second buckets, beside the counters (node-local whatever the backend).
    pub(crate) rates: Rates,
    pub(crate) backend: Arc<dyn CounterBackend>,
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generation")
            .field("counters", &self.cells.len())
            .field("backend", &self.backend)
            .finish()
    }
}

impl Generation {
    /// Builds the cells of `config`, reusing `previous`' cells for entities that still exist.
    pub(crate) fn build(
        config: Arc<Snapshot>,
        previous: Option<&Generation>,
        backend: Arc<dyn CounterBackend>,
    ) -> (Generation, ReloadSummary) {
        let layout = Layout::of(&config);
        let mut old: HashMap<CellKey, &Arc<Cell>> = previous
            .map(|p| p.cells.iter().map(|c| (c.key(), c)).collect())
            .unwrap_or_default();
        let mut summary = ReloadSummary::default();
        let mut cells = Vec::with_capacity(layout.total as usize);
        for fresh in fresh_cells(&config) {
            let cell = match old.remove(&fresh.key()) {
                Some(kept) => {
                    kept.limit
                        .store(fresh.limit.load(Ordering::Relaxed), Ordering::Relaxed);
                    summary.kept += 1;
                    Arc::clone(kept)
                }
                None => {
                    summary.added += 1;
                    Arc::new(fresh)
                }
            };
            cells.push(cell);
        }
        debug_assert_eq!(cells.len(), layout.total as usize);
        summary.counters = cells.len();
        summary.removed = old.len();
        summary.removed_units_in_use = old.values().map(|c| u64::from(c.used())).sum();
        let rates = Rates::build(&config, previous.map(|p| &p.rates));
        let generation = Generation {
            config,
            layout,
            cells,
            rates,
            backend,
        };
        (generation, summary)
    }

    /// The configuration this generation was built from. Entity ids given to
    /// [`Generation::try_admit`] must come from it.
    pub fn config(&self) -> &Arc<Snapshot> {
        &self.config
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn cell(&self, id: CounterId) -> &Cell {
        &self.cells[id.index()]
    }

    pub(crate) fn cells(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().map(|c| &**c)
    }

    /// Level, entity name and kind of a counter of this generation (admin API, logs).
    pub fn describe(&self, id: CounterId) -> (Level, String, CounterKind) {
        let c = self.cell(id);
        (c.level(), c.name().to_owned(), c.kind())
    }

    /// Units in use over all counters of this generation (0 when no call holds anything).
    pub fn in_use(&self) -> u64 {
        self.cells().map(|c| u64::from(c.used())).sum()
    }
}

/// The cells of a configuration in [`Layout`] order, all at 0.
fn fresh_cells(s: &Snapshot) -> Vec<Cell> {
    use CounterKind::*;
    let mut out = Vec::new();
    let mut tenancy = |level: Level, name: &str, l: &crate::config::model::Limits| {
        out.push(Cell::new(level, Public, name.to_owned(), l.public));
        out.push(Cell::new(level, Internal, name.to_owned(), l.internal));
    };
    tenancy(Level::Server, &s.server.name, &s.server.limits);
    for sp in &s.service_providers {
        tenancy(Level::ServiceProvider, &sp.name, &sp.limits);
    }
    for org in &s.organizations {
        tenancy(Level::Organization, &org.name, &org.limits);
    }
    for user in &s.users {
        tenancy(Level::User, &user.name, &user.limits);
    }
    for ext in &s.extensions {
        let org = &s.organizations[ext.organization.index()].name;
        let name = format!("{}@{}", ext.number, org);
        out.push(Cell::new(
            Level::Extension,
            MaxCalls,
            name.clone(),
            ext.max_calls,
        ));
        out.push(Cell::new(
            Level::Extension,
            MaxOutgoing,
            name,
            ext.max_outgoing,
        ));
    }
    for t in &s.trunks {
        out.push(Cell::new(
            Level::Trunk,
            MaxCalls,
            t.name.clone(),
            t.max_calls,
        ));
        out.push(Cell::new(
            Level::Trunk,
            MaxInbound,
            t.name.clone(),
            t.max_inbound,
        ));
        out.push(Cell::new(
            Level::Trunk,
            MaxOutbound,
            t.name.clone(),
            t.max_outbound,
        ));
    }
    out
}

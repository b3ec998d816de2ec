//! Counter identity across nodes and generations, and the limits sent with an admission.
//!
//! A [`CounterId`] is an index into one generation, so it changes on reload and differs between
//! nodes; the cluster names a counter by what it counts: `level:entity:kind` (the server is one
//! entity whatever its configured name, so its entity is empty: `server::public`).

use std::fmt;
use std::sync::Arc;

use crate::limits::{CounterId, CounterKind, Generation, Level, Path};

/// A counter as the cluster names it: stable across reloads, restarts and nodes.
///
/// Cheap to clone (one `Arc`); build a [`CounterKeys`] table once per generation rather than a
/// key per admission.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey(Arc<Inner>);

#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Inner {
    /// `level:name:kind`; first so that ordering and hashing follow the wire form.
    wire: Box<str>,
    level: Level,
    kind: CounterKind,
    name_at: (usize, usize),
}

const LEVELS: [Level; 6] = [
    Level::Server,
    Level::ServiceProvider,
    Level::Organization,
    Level::User,
    Level::Extension,
    Level::Trunk,
];

const KINDS: [CounterKind; 6] = [
    CounterKind::Public,
    CounterKind::Internal,
    CounterKind::MaxCalls,
    CounterKind::MaxOutgoing,
    CounterKind::MaxInbound,
    CounterKind::MaxOutbound,
];

impl CounterKey {
    /// The key of `kind` on entity `name` at `level`. The server's name is ignored. A NUL in the
    /// name (the scripts' field separator) becomes U+FFFD.
    pub fn new(level: Level, name: &str, kind: CounterKind) -> Self {
        let name = if level == Level::Server { "" } else { name };
        let name = name.replace('\0', "\u{fffd}");
        let start = level.as_str().len() + 1;
        let wire = format!("{}:{name}:{}", level.as_str(), kind.as_str());
        CounterKey(Arc::new(Inner {
            wire: wire.into_boxed_str(),
            level,
            kind,
            name_at: (start, start + name.len()),
        }))
    }

    /// Parses the wire form back (as read from Redis); `None` for anything callgate did not write.
    pub fn parse(wire: &str) -> Option<Self> {
        let (level, rest) = wire.split_once(':')?;
        let (name, kind) = rest.rsplit_once(':')?;
        let level = LEVELS.into_iter().find(|l| l.as_str() == level)?;
        let kind = KINDS.into_iter().find(|k| k.as_str() == kind)?;
        Some(Self::new(level, name, kind))
    }

    /// The string stored in Redis.
    pub fn as_str(&self) -> &str {
        &self.0.wire
    }

    /// Level of the entity.
    pub fn level(&self) -> Level {
        self.0.level
    }

    /// Entity name (empty for the server).
    pub fn name(&self) -> &str {
        &self.0.wire[self.0.name_at.0..self.0.name_at.1]
    }

    /// Which counter of the entity.
    pub fn kind(&self) -> CounterKind {
        self.0.kind
    }
}

impl fmt::Debug for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CounterKey({})", self.as_str())
    }
}

impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One counter of an alternative with the limit this node enforces on it (`None`: unlimited,
/// counted but never refusing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterLimit {
    /// The counter.
    pub key: CounterKey,
    /// This node's limit for it, from its TOML.
    pub limit: Option<u32>,
}

/// The counters of one way to place a call (e.g. one trunk of a failover list), one unit each; a
/// counter may appear twice (an ancestor shared by both ends of a local call).
pub type Alternative = Vec<CounterLimit>;

/// The [`CounterKey`] of every counter of a generation, indexed by [`CounterId`]: built once per
/// generation (start and reload) so admissions only clone `Arc`s.
#[derive(Debug, Clone)]
pub struct CounterKeys {
    keys: Vec<CounterKey>,
}

impl CounterKeys {
    /// Names every counter of `generation`.
    pub fn new(generation: &Generation) -> Self {
        let keys = generation
            .cells()
            .map(|c| CounterKey::new(c.level(), c.name(), c.kind()))
            .collect();
        CounterKeys { keys }
    }

    /// The key of `id`.
    ///
    /// # Panics
    /// If `id` is not of the generation this table was built from.
    pub fn key(&self, id: CounterId) -> &CounterKey {
        &self.keys[id.0 as usize]
    }

    /// The alternative for `path`, with the limits `generation` holds now (a reload changes them
    /// in place, so they are read at each admission).
    pub fn alternative(&self, generation: &Generation, path: &Path) -> Alternative {
        path.ids()
            .iter()
            .map(|id| CounterLimit {
                key: self.key(*id).clone(),
                limit: generation.cell(*id).limit(),
            })
            .collect()
    }
}

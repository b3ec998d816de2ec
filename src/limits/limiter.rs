//! The limiter the daemon shares: the current [`Generation`] behind an `ArcSwap`, reload, and
//! read access for the admin API and metrics.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::config::model::Snapshot;

use super::admit::{CallKey, CounterBackend, MemoryBackend, Permit};
use super::path::PathSpec;
use super::refusal::Refusal;
use super::tree::{CounterKind, Generation, Level, ReloadSummary};

/// Hierarchical concurrent-call limiter (spec call-control 1-4, 8).
///
/// Admission reads the current generation with one lock-free load and never waits for a reload;
/// a reload builds the next generation aside and swaps it in.
#[derive(Debug)]
pub struct Limiter {
    current: ArcSwap<Generation>,
    backend: Arc<dyn CounterBackend>,
    /// Serialises reloads only (two reloads must not both reuse the same previous generation's
    /// cells while missing each other's); admission never takes it.
    reload: Mutex<()>,
}

/// One counter as the admin API and metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterView {
    /// Level of the entity.
    pub level: Level,
    /// Entity name (`number@organization` for an extension).
    pub name: String,
    /// Which counter of the entity.
    pub kind: CounterKind,
    /// Units in use (for `cps`: tokens spent and not yet refilled).
    pub used: u32,
    /// Its limit, `None` when unlimited.
    pub limit: Option<u32>,
}

impl Limiter {
    /// A limiter over `config` with in-memory counters, every counter at 0.
    pub fn new(config: Arc<Snapshot>) -> Self {
        Self::with_backend(config, Arc::new(MemoryBackend))
    }

    /// A limiter over `config` whose units live in `backend`.
    pub fn with_backend(config: Arc<Snapshot>, backend: Arc<dyn CounterBackend>) -> Self {
        let (generation, _) = Generation::build(config, None, Arc::clone(&backend));
        Limiter {
            current: ArcSwap::from_pointee(generation),
            backend,
            reload: Mutex::new(()),
        }
    }

    /// The current generation: take entity ids from its [`Generation::config`] and admit on it, so
    /// ids and counters always belong to the same configuration.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Admits `spec` at `now` on the current generation. `spec`'s ids must come from the current
    /// configuration; a caller that routed on an older `Snapshot` uses that snapshot's
    /// generation (`Limiter::current` taken before routing) instead.
    pub fn try_admit(
        &self,
        call: CallKey,
        spec: PathSpec,
        now: Instant,
    ) -> Result<Permit, Refusal> {
        self.current().try_admit(call, spec, now)
    }

    /// Switches to `config` for new admissions (spec call-control 8). Counters of entities that
    /// still exist (same name; an extension is `(organization, number)`) keep their units and take
    /// the new limit, which applies to new admissions only; counters of removed entities stay
    /// reachable only from the permits holding them, which release them when their calls end.
    pub fn reload(&self, config: Arc<Snapshot>) -> ReloadSummary {
        let _serial = self
            .reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = self.current.load_full();
        let (next, summary) = Generation::build(config, Some(&previous), Arc::clone(&self.backend));
        self.current.store(Arc::new(next));
        summary
    }

    /// Every concurrent counter of the current configuration with its use and limit (lock-free
    /// reads). Calls-per-second buckets need the time: [`Limiter::snapshot_at`].
    pub fn snapshot(&self) -> Vec<CounterView> {
        self.current()
            .cells()
            .map(|c| CounterView {
                level: c.level(),
                name: c.name().to_owned(),
                kind: c.kind(),
                used: c.used(),
                limit: c.limit(),
            })
            .collect()
    }

    /// [`Limiter::snapshot`], then every limited calls-per-second bucket (kind `cps`) with the
    /// tokens spent and not yet refilled at `now` as `used` (it falls by one every `1 s / limit`;
    /// `used = limit` means the next new call is refused).
    pub fn snapshot_at(&self, now: Instant) -> Vec<CounterView> {
        let generation = self.current();
        let mut out = self.snapshot();
        out.extend(generation.rates.limited(now).map(|(b, used)| CounterView {
            level: b.level(),
            name: b.name().to_owned(),
            kind: CounterKind::Cps,
            used,
            limit: b.limit(),
        }));
        out
    }

    /// Units in use over all counters of the current configuration.
    pub fn in_use(&self) -> u64 {
        self.current().in_use()
    }
}

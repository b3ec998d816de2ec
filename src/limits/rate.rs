//! Calls-per-second limits (`cps = N` on the server, a service provider, an organization or a
//! trunk): one token bucket per entity, of capacity N, refilled at N tokens per second.
//!
//! Owns the buckets, which of them a call charges (its [`RatePath`]) and the bucket arithmetic.
//! Does not own the concurrent counters (`tree.rs`), nor the clock: `now` is passed in and turned
//! into nanoseconds since an epoch, the first `now` the limiter saw.
//!
//! **Bucket.** A generic cell rate algorithm (GCRA), the token bucket as one atomic: `full_at` is
//! the instant (ns since the epoch) at which the bucket is full again. With `t = 1 s / N` (rounded
//! up, so the rate never exceeds N/s), a call at `now` is admitted if
//! `max(full_at, now) - now <= (N - 1) * t`, and then pushes `full_at` by `t`. After an idle second
//! N calls pass at once, then one every `t`: over any interval of length `d`, at most
//! `N + floor(d / t)` calls. Tokens spent and not yet refilled (`used`) are
//! `ceil((full_at - now) / t)`, falling by one every `t`; the bucket is empty at `used = N`.
//! `cps = 0` admits no new call (like a limit of 0 elsewhere).
//!
//! **Charging.** A bucket is charged once per new call for its entity (a call between two
//! extensions of one organization is one new call for the organization, its provider and the
//! server). A forking leg is a leg of a call already counted, except that a public leg is a new
//! call towards its trunk; a fail-over to the next trunk likewise charges only that trunk.
//! Releasing a call gives no token back (it is a rate, not a count).
//!
//! **All or nothing.** Tokens are taken with a CAS per bucket; when a later bucket or a concurrent
//! counter refuses, the tokens taken are given back (`full_at` moved back by what was added), so a
//! refused call spends nothing. Between taking and giving back, a competing call may be refused
//! for a token that then comes back: conservative, never above N.
//!
//! **Reload.** Buckets are matched by (level, name): a surviving bucket keeps `full_at`, so it is
//! full again at the same instant as before, and takes the new N for new calls.
//!
//! The buckets are local to this node, also with a shared counter backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::config::model::{Limit, OrgId, Snapshot, TrunkId};

use super::path::PathSpec;
use super::refusal::Refusal;
use super::tree::{CounterKind, Level};

/// Encoded `cps` meaning "unlimited": such a bucket is never put on a path.
const UNLIMITED: u32 = u32::MAX;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Which calls-per-second buckets an admission charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// A new call (or a forking leg): every bucket of its path (see the module doc).
    NewCall,
    /// The same call tried on the next trunk after one failed: only that trunk's bucket (the
    /// caller's side counted the call when its first trunk was admitted).
    FailOver,
}

/// One entity's token bucket. Shared by every generation in which its entity exists.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Ns since the epoch at which the bucket is full again (in the past: full).
    full_at: AtomicU64,
    /// N, or [`UNLIMITED`]. Updated in place by a reload.
    limit: AtomicU32,
    level: Level,
    name: String,
}

/// Refill interval of one token at `limit` per second (`limit > 0`), rounded up.
fn interval(limit: u32) -> u64 {
    NANOS_PER_SEC.div_ceil(u64::from(limit))
}

// Like the counter cells, each bucket is one independent atomic and publishes no other memory:
// Relaxed is enough for "never above N", which only needs that variable's modification order.
impl Bucket {
    fn new(level: Level, name: String, cps: Limit) -> Self {
        Bucket {
            full_at: AtomicU64::new(0),
            limit: AtomicU32::new(cps.unwrap_or(UNLIMITED)),
            level,
            name,
        }
    }

    fn limited(&self) -> bool {
        self.limit.load(Ordering::Relaxed) != UNLIMITED
    }

    /// Takes one token at `now` (ns), returning the interval added (to give it back), or the
    /// refusal naming this bucket.
    pub(crate) fn try_take(&self, now: u64) -> Result<u64, Refusal> {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            return Err(self.refusal(0, 0));
        }
        let t = interval(limit);
        let tolerance = t * u64::from(limit - 1);
        let mut full_at = self.full_at.load(Ordering::Relaxed);
        loop {
            let start = full_at.max(now);
            if start - now > tolerance {
                return Err(self.refusal(used(full_at, now, limit), limit));
            }
            match self.full_at.compare_exchange_weak(
                full_at,
                start + t,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(t),
                Err(current) => full_at = current,
            }
        }
    }

    /// Gives back a token taken by [`Bucket::try_take`], which added `t`.
    pub(crate) fn give_back(&self, t: u64) {
        // Never below 0: `full_at` is only ever raised, and each give-back removes exactly what
        // its own take added.
        let before = self.full_at.fetch_sub(t, Ordering::Relaxed);
        debug_assert!(before >= t, "invariant: a give-back matches a take");
    }

    /// Tokens spent and not yet refilled at `now` (ns), at most N.
    pub(crate) fn used(&self, now: u64) -> u32 {
        let limit = self.limit.load(Ordering::Relaxed);
        used(self.full_at.load(Ordering::Relaxed), now, limit)
    }

    /// N, or `None` when unlimited.
    pub(crate) fn limit(&self) -> Limit {
        let limit = self.limit.load(Ordering::Relaxed);
        (limit != UNLIMITED).then_some(limit)
    }

    pub(crate) fn level(&self) -> Level {
        self.level
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn refusal(&self, used: u32, limit: u32) -> Refusal {
        Refusal {
            level: self.level,
            name: self.name.clone(),
            counter: CounterKind::Cps,
            used,
            limit,
        }
    }

    /// Identity across reloads. The server is one entity whatever its configured name.
    fn key(&self) -> (Level, String) {
        let name = if self.level == Level::Server {
            String::new()
        } else {
            self.name.clone()
        };
        (self.level, name)
    }
}

fn used(full_at: u64, now: u64, limit: u32) -> u32 {
    if limit == 0 || limit == UNLIMITED || full_at <= now {
        return 0;
    }
    let tokens = (full_at - now).div_ceil(interval(limit));
    u32::try_from(tokens).unwrap_or(u32::MAX).min(limit)
}

/// Index of a bucket inside one generation's [`Rates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BucketId(u32);

/// The buckets a call charges, one token each. Fixed size, so admitting allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RatePath {
    ids: [BucketId; RatePath::CAPACITY],
    len: u8,
}

impl RatePath {
    /// Two organizations and two providers (a call between organizations) and the server.
    const CAPACITY: usize = 5;

    fn new() -> Self {
        RatePath {
            ids: [BucketId::default(); RatePath::CAPACITY],
            len: 0,
        }
    }

    fn ids(&self) -> &[BucketId] {
        &self.ids[..usize::from(self.len)]
    }

    /// Adds `id` unless it is unlimited or already there (charged once per call).
    fn push(&mut self, rates: &Rates, id: BucketId) {
        if rates.bucket(id).limited() && !self.ids().contains(&id) {
            self.ids[usize::from(self.len)] = id;
            self.len += 1;
        }
    }
}

/// The tokens one admission took: the interval added per bucket of its [`RatePath`].
#[derive(Debug)]
pub(crate) struct Taken([u64; RatePath::CAPACITY]);

/// Where the epoch of the nanosecond clock is: the first `now` seen. Shared by all generations.
#[derive(Debug, Default)]
struct Epoch(OnceLock<Instant>);

impl Epoch {
    /// `now` as ns since the epoch; a `now` slightly earlier (another shard's reading) is 0.
    fn nanos(&self, now: Instant) -> u64 {
        let epoch = *self.0.get_or_init(|| now);
        u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The buckets of one configuration, in dense order: server, service providers, organizations,
/// trunks (every entity has one; unlimited ones are never charged).
#[derive(Debug)]
pub(crate) struct Rates {
    org: u32,
    trunk: u32,
    buckets: Vec<Arc<Bucket>>,
    epoch: Arc<Epoch>,
}

impl Rates {
    /// The buckets of `config`, reusing `previous`' for entities that still exist.
    pub(crate) fn build(config: &Snapshot, previous: Option<&Rates>) -> Rates {
        let mut old: HashMap<(Level, String), &Arc<Bucket>> = previous
            .map(|p| p.buckets.iter().map(|b| (b.key(), b)).collect())
            .unwrap_or_default();
        let buckets = fresh_buckets(config)
            .into_iter()
            .map(|fresh| match old.remove(&fresh.key()) {
                Some(kept) => {
                    let limit = fresh.limit.load(Ordering::Relaxed);
                    kept.limit.store(limit, Ordering::Relaxed);
                    Arc::clone(kept)
                }
                None => Arc::new(fresh),
            })
            .collect();
        let n = |len: usize| u32::try_from(len).expect("invariant: entity counts fit in u32");
        let org = 1 + n(config.service_providers.len());
        Rates {
            org,
            trunk: org + n(config.organizations.len()),
            buckets,
            epoch: previous.map(|p| Arc::clone(&p.epoch)).unwrap_or_default(),
        }
    }

    fn bucket(&self, id: BucketId) -> &Bucket {
        &self.buckets[id.0 as usize]
    }

    fn org_id(&self, org: OrgId) -> BucketId {
        BucketId(self.org + org.0)
    }

    fn trunk_id(&self, trunk: TrunkId) -> BucketId {
        BucketId(self.trunk + trunk.0)
    }

    /// `org`, then its service provider.
    fn push_org(&self, p: &mut RatePath, config: &Snapshot, org: OrgId) {
        p.push(self, self.org_id(org));
        let sp = config.organizations[org.index()].service_provider;
        p.push(self, BucketId(1 + sp.0));
    }

    /// Level, entity name and limit of every limited bucket a new call on `spec` charges
    /// (`callgate explain`, which decides over numbers without taking tokens).
    pub(crate) fn describe_path(
        &self,
        config: &Snapshot,
        spec: PathSpec,
    ) -> Vec<(Level, String, Limit)> {
        self.path(config, spec, Charge::NewCall)
            .ids()
            .iter()
            .map(|id| {
                let b = self.bucket(*id);
                (b.level(), b.name().to_owned(), b.limit())
            })
            .collect()
    }

    /// The buckets `spec` charges (see the module doc for the decisions).
    pub(crate) fn path(&self, config: &Snapshot, spec: PathSpec, charge: Charge) -> RatePath {
        let mut p = RatePath::new();
        let org_of = |e: crate::config::model::ExtId| config.extensions[e.index()].organization;
        let server = BucketId(0);
        match (charge, spec) {
            (_, PathSpec::ForkLocalLeg { .. }) => {}
            (Charge::FailOver, PathSpec::LocalToLocal { .. }) => {}
            (_, PathSpec::ForkPublicLeg { trunk, .. })
            | (Charge::FailOver, PathSpec::LocalToPublic { trunk, .. })
            | (Charge::FailOver, PathSpec::PublicToLocal { trunk, .. })
            | (Charge::FailOver, PathSpec::PublicToOrganization { trunk, .. }) => {
                p.push(self, self.trunk_id(trunk));
            }
            (Charge::NewCall, PathSpec::LocalToLocal { caller, callee }) => {
                self.push_org(&mut p, config, org_of(caller));
                self.push_org(&mut p, config, org_of(callee));
                p.push(self, server);
            }
            (Charge::NewCall, PathSpec::LocalToPublic { caller, trunk }) => {
                self.push_org(&mut p, config, org_of(caller));
                p.push(self, server);
                p.push(self, self.trunk_id(trunk));
            }
            (Charge::NewCall, PathSpec::PublicToLocal { trunk, callee }) => {
                p.push(self, self.trunk_id(trunk));
                self.push_org(&mut p, config, org_of(callee));
                p.push(self, server);
            }
            (
                Charge::NewCall,
                PathSpec::PublicToOrganization {
                    trunk,
                    organization,
                },
            ) => {
                p.push(self, self.trunk_id(trunk));
                self.push_org(&mut p, config, organization);
                p.push(self, server);
            }
        }
        p
    }

    /// Takes one token from every bucket of `path` at `now`, or none at all.
    pub(crate) fn try_take(&self, path: &RatePath, now: Instant) -> Result<Taken, Refusal> {
        let mut taken = Taken([0; RatePath::CAPACITY]);
        if path.len == 0 {
            return Ok(taken);
        }
        let now = self.epoch.nanos(now);
        for (i, id) in path.ids().iter().enumerate() {
            match self.bucket(*id).try_take(now) {
                Ok(t) => taken.0[i] = t,
                Err(refusal) => {
                    self.give_back(path, &taken);
                    return Err(refusal);
                }
            }
        }
        Ok(taken)
    }

    /// Gives back what [`Rates::try_take`] took (entries still 0 were not taken).
    pub(crate) fn give_back(&self, path: &RatePath, taken: &Taken) {
        for (id, t) in path.ids().iter().zip(taken.0) {
            if t > 0 {
                self.bucket(*id).give_back(t);
            }
        }
    }

    /// The limited buckets with their tokens in use at `now`.
    pub(crate) fn limited(&self, now: Instant) -> impl Iterator<Item = (&Bucket, u32)> {
        let now = self.epoch.nanos(now);
        self.buckets
            .iter()
            .filter(|b| b.limited())
            .map(move |b| (&**b, b.used(now)))
    }
}

/// The buckets of a configuration in [`Rates`] order, all full.
fn fresh_buckets(s: &Snapshot) -> Vec<Bucket> {
    let mut out = Vec::with_capacity(1 + s.service_providers.len() + s.organizations.len());
    out.push(Bucket::new(
        Level::Server,
        s.server.name.clone(),
        s.server.cps,
    ));
    for sp in &s.service_providers {
        out.push(Bucket::new(Level::ServiceProvider, sp.name.clone(), sp.cps));
    }
    for org in &s.organizations {
        out.push(Bucket::new(Level::Organization, org.name.clone(), org.cps));
    }
    for t in &s.trunks {
        out.push(Bucket::new(Level::Trunk, t.name.clone(), t.cps));
    }
    out
}

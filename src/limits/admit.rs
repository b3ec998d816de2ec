//! All-or-nothing admission of a path, the backend boundary, and the RAII [`Permit`].
//!
//! **Backend boundary.** [`CounterBackend`] is where units live. The in-memory backend
//! ([`MemoryBackend`]) uses the generation's own cells. A cluster backend (Redis, a later issue)
//! gets the same two calls, shaped so that:
//! - one admission is one round trip: the whole [`Path`] is passed at once (a script checks and
//!   increments every key atomically, keys and limits read from the [`Generation`]'s cells);
//! - a call's units can be released by call id after a crash: admission carries the [`CallKey`], so
//!   the backend can record `call -> counters` under a lease next to the counts.
//!
//! **Two steps for a shared backend.** The in-memory backend answers in line: [`Generation::
//! try_admit`] is one call. A backend across the network ([`CounterBackend::is_shared`], the
//! Redis counters) must not block a shard for a round trip, so admission there is split:
//! [`Generation::reserve`] takes the call's calls-per-second tokens (local, so a flood a rate
//! refuses never reaches the network) and names the counters; the daemon asks the backend; the
//! answer turns the [`Reservation`] into a [`Permit`] ([`Reservation::granted`], or
//! [`Reservation::admit_locally`] when the backend failed and the policy says "local"), or drops
//! it, which gives the tokens back. In a shared backend the generation's own cells count this
//! node's share of the units; releasing a permit gives those back and tells the backend, which
//! cannot await in Drop and so only enqueues the release (idempotent by call id).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::path::{Path, PathSpec};
use super::rate::{Charge, RatePath, Taken};
use super::refusal::Refusal;
use super::tree::Generation;

/// Identifies a call to the backend, so a store shared by several nodes can release a crashed
/// call's units by id. Unique per node (the b2bua's call sequence); a cluster backend prefixes the
/// node name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// Where the units of the counters live.
pub trait CounterBackend: Send + Sync + fmt::Debug {
    /// Takes one unit on every counter of `path` for `call`, or none at all: on refusal nothing
    /// stays acquired. Never lets a counter exceed its limit, under any concurrency.
    fn try_acquire(
        &self,
        generation: &Generation,
        call: CallKey,
        path: &Path,
    ) -> Result<(), Refusal>;

    /// Gives back the units `call` took on `path` with a successful `try_acquire` (or, in a
    /// shared backend, that a granted [`Reservation`] counted).
    fn release(&self, generation: &Generation, call: CallKey, path: &Path);

    /// Whether the units live across the network, so admission is two-step: reserve, ask the
    /// backend, then grant (see the module doc). `try_acquire` is then the local fallback.
    fn is_shared(&self) -> bool {
        false
    }

    /// A shared backend could not answer and `call` was admitted on `path` with this node's
    /// counters alone ([`Reservation::admit_locally`]): the backend may count it once it is back.
    fn admitted_locally(&self, _generation: &Generation, _call: CallKey, _path: &Path) {}
}

/// Counters in process memory: each counter one atomic, acquired by a compare-and-swap that only
/// increments below the limit; a refusal rolls back the units already taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBackend;

impl CounterBackend for MemoryBackend {
    fn try_acquire(
        &self,
        generation: &Generation,
        _call: CallKey,
        path: &Path,
    ) -> Result<(), Refusal> {
        let ids = path.ids();
        for (taken, id) in ids.iter().enumerate() {
            if let Err(refusal) = generation.cell(*id).try_acquire() {
                for id in &ids[..taken] {
                    generation.cell(*id).release();
                }
                return Err(refusal);
            }
        }
        Ok(())
    }

    fn release(&self, generation: &Generation, _call: CallKey, path: &Path) {
        for id in path.ids() {
            generation.cell(*id).release();
        }
    }
}

/// Units held by one admitted call or leg. Dropping it releases exactly those units, once.
///
/// Keeps its [`Generation`] alive, so it releases the very cells it acquired even after a reload
/// (surviving entities share their cells with the new generation; removed ones are only reachable
/// from here).
#[derive(Debug)]
#[must_use = "dropping a Permit releases the call's units at once"]
pub struct Permit {
    generation: Arc<Generation>,
    call: CallKey,
    path: Path,
}

impl Permit {
    /// The call holding the units.
    pub fn call(&self) -> CallKey {
        self.call
    }

    /// The counters held.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation the call was admitted under.
    pub fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }

    /// Releases the units now (same as dropping).
    pub fn release(self) {}
}

impl Drop for Permit {
    fn drop(&mut self) {
        let g = &self.generation;
        g.backend.release(g, self.call, &self.path);
    }
}

/// The local half of a two-step admission: the calls-per-second tokens are taken, the counters
/// are named but not acquired. Dropping it gives the tokens back.
#[derive(Debug)]
#[must_use = "dropping a Reservation gives its tokens back"]
pub struct Reservation {
    generation: Arc<Generation>,
    call: CallKey,
    path: Path,
    rates: RatePath,
    taken: Option<Taken>,
}

impl Reservation {
    /// The call asking.
    pub fn call(&self) -> CallKey {
        self.call
    }

    /// The counters it needs, one unit each.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation it was reserved on (its counters' names and limits).
    pub fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }

    /// The shared backend acquired every counter: counts them as this node's share (whatever the
    /// local limit: the backend checked the cluster's) and keeps the tokens.
    pub fn granted(mut self) -> Permit {
        self.taken = None;
        for id in self.path.ids() {
            self.generation.cell(*id).force_acquire();
        }
        self.into_permit()
    }

    /// The shared backend could not answer and the policy is to admit on this node's counters
    /// alone: acquires them against the local limits, all or nothing, for `call` (a key of its
    /// own: the failed request's key may still be released), and tells the backend, which counts
    /// the call once it answers again.
    pub fn admit_locally(mut self, call: CallKey) -> Result<Permit, Refusal> {
        MemoryBackend.try_acquire(&self.generation, call, &self.path)?;
        self.generation
            .backend
            .admitted_locally(&self.generation, call, &self.path);
        self.taken = None;
        self.call = call;
        Ok(self.into_permit())
    }

    /// The permit for the same units; `self` then drops with no tokens left to give back.
    fn into_permit(self) -> Permit {
        Permit {
            generation: Arc::clone(&self.generation),
            call: self.call,
            path: self.path,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(taken) = self.taken.take() {
            self.generation.rates.give_back(&self.rates, &taken);
        }
    }
}

impl Generation {
    /// Admits `spec` for `call` at `now` as a new call: a token from every calls-per-second bucket
    /// of its path and a unit on every counter, or nothing at all.
    ///
    /// # Panics
    /// If an id in `spec` is out of range: ids must come from [`Generation::config`].
    pub fn try_admit(
        self: &Arc<Self>,
        call: CallKey,
        spec: PathSpec,
        now: Instant,
    ) -> Result<Permit, Refusal> {
        self.try_admit_charging(call, spec, Charge::NewCall, now)
    }

    /// [`Generation::try_admit`], charging the buckets `charge` says (a fail-over charges only
    /// its trunk's). Buckets are tried first: they are local and cheap, so a flood refused by a
    /// rate never reaches a shared counter backend; a counter's refusal gives the tokens back.
    ///
    /// # Panics
    /// If an id in `spec` is out of range: ids must come from [`Generation::config`].
    pub fn try_admit_charging(
        self: &Arc<Self>,
        call: CallKey,
        spec: PathSpec,
        charge: Charge,
        now: Instant,
    ) -> Result<Permit, Refusal> {
        let path = self.path(spec);
        let rates = self.rates.path(self.config(), spec, charge);
        let taken = self.rates.try_take(&rates, now)?;
        if let Err(refusal) = self.backend.try_acquire(self, call, &path) {
            self.rates.give_back(&rates, &taken);
            return Err(refusal);
        }
        Ok(Permit {
            generation: Arc::clone(self),
            call,
            path,
        })
    }

    /// The first step of a shared backend's admission: takes the tokens `charge` says from the
    /// buckets of `spec`, or refuses naming the spent bucket; the counters are left to the
    /// backend.
    ///
    /// # Panics
    /// If an id in `spec` is out of range: ids must come from [`Generation::config`].
    pub fn reserve(
        self: &Arc<Self>,
        call: CallKey,
        spec: PathSpec,
        charge: Charge,
        now: Instant,
    ) -> Result<Reservation, Refusal> {
        let path = self.path(spec);
        let rates = self.rates.path(self.config(), spec, charge);
        let taken = self.rates.try_take(&rates, now)?;
        Ok(Reservation {
            generation: Arc::clone(self),
            call,
            path,
            rates,
            taken: Some(taken),
        })
    }

    /// Whether admission on this generation is two-step ([`CounterBackend::is_shared`]).
    pub fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }
}

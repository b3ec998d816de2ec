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
//! The trait is synchronous because the only backend today is a few lock-free atomics, in line on
//! the admission path; making every caller `await` for it would cost every call a future. A network
//! backend will not block inside these methods: it will be driven by the daemon's driver, which
//! sends the same `(CallKey, Path)` request, awaits the reply, and then builds the permit; `release`
//! then only enqueues the release (Drop cannot await), and the lease by call id covers a release
//! lost in a crash. The arguments stay the same, so b2bua code does not change.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::path::{Path, PathSpec};
use super::rate::Charge;
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

    /// Gives back the units `call` took on `path` with a successful `try_acquire`.
    fn release(&self, generation: &Generation, call: CallKey, path: &Path);
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
}

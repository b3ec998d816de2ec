//! The registrar (RFC 3261 section 10): who is reachable where.
//!
//! Owns, so far, the location service's store: [`LocationStore`], the [`Binding`]s of each
//! address-of-record ([`Aor`]) with their expiry, the Call-ID/CSeq ordering of RFC 3261 10.3
//! steps 6 and 7, the `max_contacts` eviction policy, and dropping the bindings of a closed
//! connection. One store is shared by every engine shard; it is lock-free at the store level
//! (sharded map, per-AoR critical sections) and never reads the clock.
//!
//! The registrar issue adds REGISTER handling on top: parsing Contact/Expires into bindings
//! (canonical contact URIs, expiry clamped to the configured range, `423 Interval Too Brief`),
//! authorization of the AoR, the `200 OK` listing the current bindings, and the periodic
//! [`LocationStore::expire`] sweep in the daemon. It does not own digest authentication
//! (`auth`), nor which binding a call is sent to (routing, from [`LocationStore::lookup`]).

mod location;
pub mod persist;
mod register;

pub use location::{Aor, Binding, BindingError, Flow, LocationStore, UpsertOutcome};
pub use register::{register, Policy, Reply};

#[cfg(test)]
mod tests;

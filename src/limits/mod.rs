//! Hierarchical concurrent-call limits (spec call-control 1-4 and 8) and calls-per-second limits.
//!
//! Owns the counters of every level (server, service provider, organization, user: `public` and
//! `internal`; extension: `max_calls`, `max_outgoing`; trunk: `max_calls`, `max_inbound`,
//! `max_outbound`), the `cps` token buckets (server, service provider, organization, trunk: see
//! `rate.rs` for which a call charges), which counters a call occupies (its [`Path`]),
//! all-or-nothing admission over both, and the [`Permit`] that releases a call's units when
//! dropped, however the call ends (a rate's tokens are not given back). Does not own routing
//! (which trunk, which extension), the SIP response a [`Refusal`] becomes (b2bua), nor the metrics
//! registry (admin reads [`Limiter::snapshot_at`]).
//!
//! Pure logic: no tokio, no clock (`now` is passed in), no locks on the admission path.
//!
//! Spec decisions applied: a local -> local call counts `internal`; an ancestor shared by both ends
//! is counted once per end (two units); a public forking leg counts `public` from the rule owner
//! (the forked extension's user, else the organization) upwards (see `path.rs`). On reload
//! ([`Limiter::reload`]) counters are matched by entity name: surviving ones keep their units and
//! take the new limit for new admissions; removed ones live on only in the permits holding them.
//!
//! ```text
//! let generation = limiter.current();           // one lock-free load
//! // route with generation.config(), then:
//! let permit = generation.try_admit(CallKey(n), PathSpec::LocalToPublic { caller, trunk }, now)?;
//! // keep `permit` in the call; dropping it releases the units.
//! ```
//!
//! - counters: [`Level`], [`CounterKind`], [`CounterId`], [`Generation`].
//! - paths: [`PathSpec`], [`RuleOwner`], [`Path`] (see `path.rs` for the forking-leg decision).
//! - admission: [`CounterBackend`], [`MemoryBackend`], [`CallKey`], [`Permit`], [`Charge`].

mod admit;
mod limiter;
mod path;
mod rate;
mod refusal;
pub mod testing;
mod tree;

pub use admit::{CallKey, CounterBackend, MemoryBackend, Permit, Reservation};
pub use limiter::{CounterView, Limiter};
pub use path::{Path, PathSpec, RuleOwner};
pub use rate::Charge;
pub use refusal::Refusal;
pub use tree::{CounterId, CounterKind, Generation, Level, ReloadSummary};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rate;

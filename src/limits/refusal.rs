//! Why a call was not admitted: the first counter of its path that was full.

use std::fmt;

use super::tree::{CounterKind, Level};

/// A call refused because one counter of its path was at its limit (spec call-control 3).
///
/// Refusing is a decision, not an error: the b2bua turns it into the configured final response with a
/// `Reason`/`Warning` header carrying the [`Display`](fmt::Display) text, e.g.
/// `organization acme: public 50/50`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Level of the refusing counter.
    pub level: Level,
    /// Entity name (`number@organization` for an extension; the server's configured name).
    pub name: String,
    /// Which of the entity's counters refused.
    pub counter: CounterKind,
    /// Units in use when it refused.
    pub used: u32,
    /// Its limit (always finite: an unlimited counter never refuses).
    pub limit: u32,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} {}/{}",
            self.level, self.name, self.counter, self.used, self.limit
        )
    }
}

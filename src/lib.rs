//! callgate: a SIP B2BUA call-control daemon with hierarchical concurrent-call limits.
//!
//! A request flows in one direction through the modules:
//!
//! ```text
//! transport -> transaction -> b2bua -> limits / routing -> transaction -> transport
//! ```
//!
//! - [`sip`]: message model and codec over `bytes::Bytes` (no I/O, no clock).
//! - [`transaction`]: RFC 3261 section 17 client and server transactions, sans-IO.
//! - [`b2bua`]: a call as two dialogs, what crosses between them, every way a call ends.
//! - [`limits`]: the hierarchical concurrent-call counters and their permits.
//! - [`cluster`]: the same counters shared exactly by several nodes through Redis (leases,
//!   epochs, scripts).
//! - [`config`]: the TOML schema, its validation and the resolved `Snapshot`.
//! - [`routing`]: caller identification and the route decision.
//! - [`registrar`]: the location store every shard reads (REGISTER handling is next).
//! - [`auth`]: digest authentication: nonces, challenges, verifying credentials, the nonce-count
//!   table and the brute-force guard every shard shares.
//! - [`transport`]: UDP and TCP sockets, framing, connection reuse.
//! - [`trunks`]: trunks towards providers: outbound registration, OPTIONS health probes and
//!   the availability table outbound routing reads.
//! - [`split_map`]: the hash map of the shards' big tables, whose growth never stalls a shard.
//! - [`telemetry`]: the tracing subscriber (text or JSON).
//! - [`engine`]: one shard's sans-IO engine: the method dispatcher, the transaction layer and the
//!   B2BUA glued together; [`engine::shard`] says which shard a received message belongs to.
//! - [`daemon`]: the tokio shell around the cores: the receive side's dispatcher, one driver
//!   thread per shard, signals, reload, shutdown, systemd notification.
//! - [`admin`]: the admin HTTP API, the metrics and the `callgate status` client.
//! - [`explain`]: `callgate explain`, what would happen to one call (identification, route,
//!   the counters of its path, the verdict), decided over numbers without acquiring anything.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod admin;
pub mod auth;
pub mod b2bua;
pub mod cdr;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod explain;
pub mod limits;
pub(crate) mod log_limit;
pub mod registrar;
pub mod routing;
pub mod sip;
pub mod split_map;
pub mod telemetry;
#[cfg(test)]
mod test_clock;
pub mod transaction;
pub mod transport;
pub mod trunks;

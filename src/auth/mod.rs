//! Digest authentication (RFC 3261 section 22, RFC 7616): who a request comes from.
//!
//! Owns, so far, the nonce-count replay table, [`NonceCounts`]: per nonce, the highest `nc`
//! accepted, bounded in size, shared by every engine shard and recorded atomically so one
//! captured request cannot be accepted twice. No clock reads: time is passed in.
//!
//! The digest auth issue adds the rest on top: stateless nonces (expiry under a keyed MAC),
//! the `401`/`407` challenge (`realm`, `qop=auth`, `stale=true` for [`NcVerdict::Expired`]),
//! parsing and verifying `Authorization` / `Proxy-Authorization` (MD5 and SHA-256, HA1 from the
//! config, constant-time comparison), and failure rate limiting. It does not own which requests
//! must be authenticated (the REGISTER and INVITE handlers decide), nor the credentials
//! (config).

mod nonce_count;

pub use nonce_count::{NcVerdict, NonceCounts};

#[cfg(test)]
mod tests;

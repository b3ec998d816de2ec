//! Digest authentication (RFC 3261 section 22, RFC 2617, RFC 7616, RFC 8760): who a request
//! comes from, and who is guessing.
//!
//! Owns, all pure (no I/O, no clock reads: time is passed in):
//! - stateless nonces: expiry and issue counter under a keyed MAC ([`NonceKey`]);
//! - the digest arithmetic: the `WWW-Authenticate` / `Proxy-Authenticate` value ([`challenge`]),
//!   parsing `Authorization` / `Proxy-Authorization` values ([`parse_credentials`]) and checking
//!   their response ([`verify`]: MD5 and SHA-256, password or configured HA1, constant-time);
//! - the nonce-count replay table, [`NonceCounts`]: per nonce, the highest `nc` accepted, bounded
//!   in size, shared by every engine shard and recorded atomically so one captured request cannot
//!   be accepted twice;
//! - [`authenticate`]: what a request's credentials amount to (authenticated, challenge again,
//!   or a failure that counts against brute force);
//! - [`Guard`]: failure counting and bans per source address and per extension, shared by every
//!   shard.
//!
//! It does not own which requests must be authenticated (the REGISTER and INVITE handlers
//! decide), building the `401`/`407` responses, nor the credentials (config).

mod digest;
mod guard;
mod nonce;
mod nonce_count;
mod verifier;

pub use digest::{
    authorization, challenge, parse_credentials, verify, Algorithm, AuthError, ClientAnswer,
    ClientChallenge, DigestCredentials, Qop, Secret, MAX_CREDENTIALS_LEN,
};
pub use guard::{Ban, BanReason, Guard, GuardConfig};
pub use nonce::{NonceKey, NonceState, NONCE_LIFETIME_SECS};
pub use nonce_count::{NcVerdict, NonceCounts};
pub use verifier::{authenticate, AuthOutcome};

#[cfg(test)]
mod tests;

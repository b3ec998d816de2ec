//! What a request's digest credentials amount to: authenticated, challenge again (and whether
//! `stale=true`), or a failure, and whether that failure counts against brute force.
//!
//! Pure: the caller passes the header values, the realm it challenges for, a credentials lookup,
//! the nonce key, the shared nonce-count table and the time. Does not own building the `401` /
//! `407` (the handler does, from [`super::challenge`]) nor counting failures ([`super::Guard`]).

use super::digest::{parse_credentials, verify, Algorithm, DigestCredentials, Secret};
use super::nonce::{NonceKey, NonceState};
use super::nonce_count::{NcVerdict, NonceCounts};

/// `Authorization` headers examined per request: a client sends one per realm, and a request
/// carrying dozens must not buy dozens of parses.
const MAX_HEADERS: usize = 8;

/// What unknown usernames are checked against, so that they cost the work of a known one and
/// response timing does not enumerate extensions. A password (not an HA1) because the check
/// hashes one either way.
const UNKNOWN_USER: Secret<'static> = Secret::Password("callgate: no such user");

/// The verdict on a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The response is right, for a nonce of ours, with a fresh nonce count.
    Authenticated {
        /// The digest username (an extension number).
        username: String,
    },
    /// Answer with a new challenge; no failure is counted. `stale=true` tells the phone to retry
    /// with the new nonce without asking its user (RFC 7616 section 3.3).
    Challenge {
        /// Whether the challenge carries `stale=true`.
        stale: bool,
    },
    /// A wrong response, or an unknown username, for a valid nonce.
    Failed {
        /// The username the client claimed (unknown ones included).
        username: String,
        /// Whether the failure counts against brute force ([`super::Guard::record_failure`]):
        /// `false` only for a SHA-256 answer against an extension configured with an MD5 HA1,
        /// which no password can pass (a configuration mismatch, not a guess).
        counts: bool,
    },
}

/// Decides what the `Authorization` / `Proxy-Authorization` `header_values` of a `method` request
/// amount to for `realm`.
///
/// - No parseable digest credentials for `realm` (none, other realms, malformed): challenge.
/// - A nonce not issued by `key` (forged, or from before a restart): challenge, not counted.
/// - A stale nonce: challenge with `stale=true`, not counted, whatever the response. Checking the
///   response first (RFC 7616's advice for `stale`) would let a guesser test passwords against
///   stale nonces uncounted, reading the answer from the `stale` flag.
/// - A valid nonce with a wrong response or an unknown username: [`AuthOutcome::Failed`]; the
///   only outcome that counts. Unknown usernames are checked against a dummy secret, the same
///   work as a known one.
/// - A right response: its nonce count is recorded in `nonces` only now (a wrong one must not
///   use up a count): fresh is [`AuthOutcome::Authenticated`]; a replayed count is a challenge
///   with `stale=true` (the answer verified); a nonce overtaken in the table by newer ones is a challenge with
///   `stale=true` (the client knows the password; it only needs a new nonce). An RFC 2069 answer (no `qop`,
///   no `nc`) is recorded as `nc=1`: such a nonce serves one request.
///
/// The digest `uri` is hashed into the response but not compared with the Request-URI (RFC 2617
/// 3.2.2.5 says SHOULD): every accepted `(nonce, nc)` serves one request, so a captured answer
/// cannot be replayed on another URI anyway, and SIPp (the load tool operators test us with)
/// sends the server's address as `uri` whatever the request names.
///
/// `now_unix` is the time in seconds on the nonces' clock.
pub fn authenticate<'h, 's>(
    header_values: impl Iterator<Item = &'h str>,
    method: &str,
    realm: &str,
    secret_for: impl Fn(&str, Algorithm) -> Option<Secret<'s>>,
    key: &NonceKey,
    nonces: &NonceCounts,
    now_unix: u64,
) -> AuthOutcome {
    let Some(creds) = credentials_for(header_values, realm) else {
        return AuthOutcome::Challenge { stale: false };
    };
    let counter = match key.check(creds.nonce, now_unix) {
        NonceState::Valid { counter, .. } => counter,
        NonceState::Stale => return AuthOutcome::Challenge { stale: true },
        NonceState::Forged => return AuthOutcome::Challenge { stale: false },
    };
    let secret = secret_for(&creds.username, creds.algorithm);
    let verified = verify(&creds, method, secret.unwrap_or(UNKNOWN_USER));
    if secret.is_none() || !verified {
        let unanswerable = secret.is_some_and(|s| !s.answers(creds.algorithm));
        return AuthOutcome::Failed {
            username: creds.username.into_owned(),
            counts: !unanswerable,
        };
    }
    record_count(&creds, counter, key.issued(), nonces)
}

/// The first header value that parses as digest credentials for `realm`.
fn credentials_for<'h>(
    header_values: impl Iterator<Item = &'h str>,
    realm: &str,
) -> Option<DigestCredentials<'h>> {
    header_values
        .take(MAX_HEADERS)
        .filter_map(|value| parse_credentials(value).ok())
        .find(|creds| creds.realm == realm)
}

/// Records the verified answer's nonce count; the outcome follows from the verdict.
fn record_count(
    creds: &DigestCredentials<'_>,
    counter: u64,
    issued: u64,
    nonces: &NonceCounts,
) -> AuthOutcome {
    let nc = creds.nc.unwrap_or(1);
    match nonces.check_and_record(counter, nc, issued) {
        NcVerdict::Fresh => AuthOutcome::Authenticated {
            username: creds.username.clone().into_owned(),
        },
        // The response verified: this is the client itself (a retransmission after a lost 200,
        // REGISTER being stateless) or a replay of its request. `stale=true` lets the phone retry
        // with a new nonce without treating it as a wrong password; a replayer learns nothing.
        NcVerdict::Replay | NcVerdict::Overtaken => AuthOutcome::Challenge { stale: true },
    }
}

#[cfg(test)]
mod tests;

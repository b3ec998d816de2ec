//! Stateless nonces (RFC 7616 section 3.3, `nonce`; RFC 3261 section 22.4): each carries its
//! expiry under an HMAC, so checking one needs no table. The only per-nonce state is the
//! nonce-count table ([`super::NonceCounts`]), filled once a response verified.
//!
//! Pure: time comes in as seconds since the Unix epoch; the secret comes from the caller (the
//! daemon draws it from the OS RNG at start).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::digest::HEX_DIGITS;

/// How long an issued nonce stays valid (then `stale=true`): long enough for a phone to answer the
/// challenge and reuse the nonce for a few requests, short enough to bound a captured request.
pub const NONCE_LIFETIME_SECS: u64 = 300;

/// Bytes of HMAC-SHA256 kept in a nonce: 128 bits is far beyond guessing within its lifetime.
const MAC_LEN: usize = 16;
/// `expiry (16 hex) | issue counter (16 hex) | MAC (32 hex)`.
const NONCE_LEN: usize = 16 + 16 + 2 * MAC_LEN;

/// What [`NonceKey::check`] makes of a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Issued by this key and not yet expired.
    Valid {
        /// When it lapses, seconds since the Unix epoch.
        expires_unix: u64,
        /// Its issue counter: its slot in the nonce-count table ([`super::NonceCounts`]).
        counter: u64,
    },
    /// Issued by this key, but lapsed: challenge again with `stale=true`.
    Stale,
    /// Not issued by this key (bad MAC, malformed, or from before a restart).
    Forged,
}

/// The key under which nonces are issued and checked, without storing them.
///
/// A nonce is lowercase hex of `expiry (u64 BE) | issue counter (u64 BE) | HMAC-SHA256(secret,
/// expiry | counter)[..16]`. The expiry makes it self-describing, the MAC makes it unforgeable,
/// and the counter makes every challenge distinct: the nonce-count table is keyed by nonce, so
/// two phones challenged in the same second must not share one. Not `Clone` (a copy would repeat
/// counter values); share it by reference or `Arc`.
pub struct NonceKey {
    mac: Hmac<Sha256>,
    issued: AtomicU64,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

impl NonceKey {
    /// A key from a 32-byte secret (the daemon draws it from the OS RNG at start, so nonces do not
    /// survive a restart).
    pub fn new(secret: [u8; 32]) -> NonceKey {
        NonceKey {
            mac: Hmac::new_from_slice(&secret).expect("HMAC-SHA256 takes a key of any length"),
            issued: AtomicU64::new(0),
        }
    }

    /// A fresh nonce valid for [`NONCE_LIFETIME_SECS`] from `now_unix`.
    pub fn issue(&self, now_unix: u64) -> String {
        let expires = now_unix.saturating_add(NONCE_LIFETIME_SECS);
        let counter = self.issued.fetch_add(1, Ordering::Relaxed);
        let mut nonce = String::with_capacity(NONCE_LEN);
        push_hex(&mut nonce, &expires.to_be_bytes());
        push_hex(&mut nonce, &counter.to_be_bytes());
        push_hex(&mut nonce, &self.tag(expires, counter));
        nonce
    }

    /// How many nonces this key has issued so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Whether `nonce` is one of ours, and still valid at `now_unix`.
    pub fn check(&self, nonce: &str, now_unix: u64) -> NonceState {
        let Some((expires, counter, tag)) = decode_nonce(nonce) else {
            return NonceState::Forged;
        };
        if !bool::from(self.tag(expires, counter).ct_eq(&tag)) {
            return NonceState::Forged;
        }
        if now_unix >= expires {
            NonceState::Stale
        } else {
            NonceState::Valid {
                expires_unix: expires,
                counter,
            }
        }
    }

    fn tag(&self, expires: u64, counter: u64) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(&expires.to_be_bytes());
        mac.update(&counter.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0; MAC_LEN];
        tag.copy_from_slice(&full[..MAC_LEN]);
        tag
    }
}

/// Splits a nonce into expiry, counter and MAC; `None` unless it has exactly our shape (lowercase
/// hex only, so one nonce has one spelling and one entry in the nonce-count table).
fn decode_nonce(nonce: &str) -> Option<(u64, u64, [u8; MAC_LEN])> {
    let b = nonce.as_bytes();
    if b.len() != NONCE_LEN {
        return None;
    }
    let mut bytes = [0u8; NONCE_LEN / 2];
    for (out, pair) in bytes.iter_mut().zip(b.chunks_exact(2)) {
        *out = (lower_hex_value(pair[0])? << 4) | lower_hex_value(pair[1])?;
    }
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        u64::from_be_bytes(w)
    };
    let mut tag = [0; MAC_LEN];
    tag.copy_from_slice(&bytes[16..]);
    Some((word(0), word(8), tag))
}

fn lower_hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests;

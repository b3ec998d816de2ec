//! Digest access authentication, the arithmetic: the challenge value, parsing `Authorization` /
//! `Proxy-Authorization` credentials and verifying their `response` (RFC 3261 section 22.4;
//! RFC 2617 section 3.2 with its RFC 2069 fallback; RFC 7616 section 3.4; SHA-256 for SIP:
//! RFC 8760).
//!
//! Pure: no I/O, no clock. Does not own issuing or checking nonces ([`super::NonceKey`]), the
//! nonce-count replay table ([`super::NonceCounts`]), the decision of what a request's
//! credentials amount to ([`super::authenticate`]), failure rate limiting ([`super::Guard`]), nor
//! where credentials are stored (config).
//!
//! Secrets never reach a log: [`Secret`] and [`DigestCredentials`] print redacted `Debug` output,
//! and digests are compared in constant time.

use std::borrow::Cow;
use std::fmt;

use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::model::Credentials;
use crate::sip::headers::Credentials as CredentialsView;

/// Longest credentials value parsed; longer ones are refused before any scan, so the work per
/// header is bounded whatever the transport allows. Real ones are under 500 bytes.
pub const MAX_CREDENTIALS_LEN: usize = 4096;

/// Lowercase hex of the longest digest (SHA-256).
const MAX_HEX: usize = 64;

/// A digest algorithm of RFC 7616 section 3.5 that callgate offers.
///
/// The `-sess` variants are not offered: SIP clients rarely implement them and RFC 8760 does not
/// require them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, the RFC 2617 default and what every SIP phone speaks.
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The header token: `MD5` or `SHA-256`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The algorithm a header token names (case-insensitive, RFC 7616 section 3.3).
    pub fn from_token(token: &str) -> Option<Algorithm> {
        [Algorithm::Md5, Algorithm::Sha256]
            .into_iter()
            .find(|a| a.token().eq_ignore_ascii_case(token))
    }

    /// Lowercase hex of H(parts joined by `:`), the `H(data)` / `KD` of RFC 7616 section 3.4.
    fn hash(self, parts: &[&[u8]]) -> Hex {
        match self {
            Algorithm::Md5 => hex_digest::<Md5>(parts),
            Algorithm::Sha256 => hex_digest::<Sha256>(parts),
        }
    }
}

/// The secret a username is checked against, borrowed from the config.
#[derive(Clone, Copy)]
pub enum Secret<'a> {
    /// The clear-text password: usable with every algorithm.
    Password(&'a str),
    /// Hex `MD5(username:realm:password)`: usable with MD5 only.
    Ha1(&'a str),
    /// Hex `SHA-256(username:realm:password)`: usable with SHA-256 only.
    Ha1Sha256(&'a str),
}

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::Ha1(_) => f.write_str("Ha1(<redacted>)"),
            Secret::Ha1Sha256(_) => f.write_str("Ha1Sha256(<redacted>)"),
        }
    }
}

impl<'a> Secret<'a> {
    /// The secret of `credentials` to check an `algorithm` answer against: the password, or the
    /// HA1 stored for that algorithm, else the other algorithm's (which no answer passes: the
    /// verifier tells that configuration mismatch from a wrong password, [`Secret::answers`]).
    pub fn for_algorithm(credentials: &'a Credentials, algorithm: Algorithm) -> Option<Self> {
        let (md5, sha256) = match credentials {
            Credentials::Password(p) => return Some(Secret::Password(p)),
            Credentials::Ha1 { md5, sha256 } => (
                md5.as_deref().map(Secret::Ha1),
                sha256.as_deref().map(Secret::Ha1Sha256),
            ),
        };
        match algorithm {
            Algorithm::Md5 => md5.or(sha256),
            Algorithm::Sha256 => sha256.or(md5),
        }
    }

    /// Whether an answer in `algorithm` can match this secret at all.
    pub fn answers(&self, algorithm: Algorithm) -> bool {
        match self {
            Secret::Password(_) => true,
            Secret::Ha1(_) => algorithm == Algorithm::Md5,
            Secret::Ha1Sha256(_) => algorithm == Algorithm::Sha256,
        }
    }
}

/// The `WWW-Authenticate` / `Proxy-Authenticate` header value challenging for `realm`.
///
/// `qop="auth"` only: `auth-int` would need the body hashed, and no SIP phone in use needs it.
/// When SHA-256 is enabled the caller emits one SHA-256 challenge before the MD5 one (RFC 8760
/// section 2.4: the client takes the first it supports).
pub fn challenge(realm: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    let mut value = String::with_capacity(64 + realm.len() + nonce.len());
    value.push_str("Digest realm=\"");
    push_quoted_content(&mut value, realm);
    value.push_str("\", nonce=\"");
    push_quoted_content(&mut value, nonce);
    value.push_str("\", algorithm=");
    value.push_str(algorithm.token());
    value.push_str(", qop=\"auth\"");
    if stale {
        value.push_str(", stale=true");
    }
    value
}

/// Appends `s` as the inside of a quoted string: `"` and `\` escaped, CR and LF dropped (a realm
/// comes from the config, but a header must never be split by one).
fn push_quoted_content(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            _ => out.push(c),
        }
    }
}

/// Why an `Authorization` / `Proxy-Authorization` value is not usable digest credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Longer than [`MAX_CREDENTIALS_LEN`].
    #[error("credentials longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Not `scheme name=value, ...` with token or quoted-string values.
    #[error("malformed credentials")]
    Malformed,
    /// A scheme other than `Digest`.
    #[error("authorization scheme is not Digest")]
    NotDigest,
    /// A parameter given twice.
    #[error("duplicate {field} parameter")]
    DuplicateField {
        /// The parameter's name.
        field: &'static str,
    },
    /// A mandatory parameter absent (`cnonce` and `nc` are mandatory with `qop`).
    #[error("missing {field} parameter")]
    MissingField {
        /// The parameter's name.
        field: &'static str,
    },
    /// An algorithm callgate does not offer.
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    /// A `qop` other than `auth`.
    #[error("unsupported qop")]
    UnsupportedQop,
    /// An `nc` that is not 8 hex digits.
    #[error("nc is not 8 hex digits")]
    BadNonceCount,
}

/// The quality of protection of RFC 7616 section 3.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// `auth`: authentication of the request line, with `cnonce` and `nc`.
    Auth,
}

/// Digest credentials of one `Authorization` / `Proxy-Authorization` header, borrowed from it.
///
/// Quoted values are unescaped (a copy only when they hold a `\`). `nonce` and `response` are hex
/// as sent: an escape in them only makes them wrong. `Debug` redacts `response`.
#[derive(Clone)]
pub struct DigestCredentials<'a> {
    /// The digest username (an extension number).
    pub username: Cow<'a, str>,
    /// The realm the client answers (the organization's domain).
    pub realm: Cow<'a, str>,
    /// The nonce the client answers.
    pub nonce: &'a str,
    /// The `digest-uri`, hashed into HA2.
    pub uri: Cow<'a, str>,
    /// The client's request digest, hex.
    pub response: &'a str,
    /// The algorithm (`MD5` when absent).
    pub algorithm: Algorithm,
    /// The client nonce; `Some` exactly when `qop` is.
    pub cnonce: Option<Cow<'a, str>>,
    /// The nonce count; `Some` exactly when `qop` is.
    pub nc: Option<u32>,
    /// `Some(Qop::Auth)`, or `None` for an RFC 2069 client.
    pub qop: Option<Qop>,
    /// Echoed `opaque`, if any (callgate sends none).
    pub opaque: Option<Cow<'a, str>>,
    /// `nc` as sent: the response hashes the client's spelling.
    nc_text: &'a str,
}

impl fmt::Debug for DigestCredentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestCredentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("uri", &self.uri)
            .field("algorithm", &self.algorithm)
            .field("nc", &self.nc)
            .field("qop", &self.qop)
            .field("response", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The parameters [`parse_credentials`] reads, in the order of `Fields::values`.
const FIELDS: [&str; 10] = [
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "nc",
    "qop",
    "opaque",
];

/// Raw values (unquoted, escapes kept) of the known parameters, each set at most once.
#[derive(Default)]
struct Fields<'a> {
    values: [Option<&'a str>; FIELDS.len()],
}

impl<'a> Fields<'a> {
    /// Records `name=value`; unknown parameters are ignored (RFC 7616 section 3.4).
    fn set(&mut self, name: &str, value: &'a str) -> Result<(), AuthError> {
        let Some(i) = FIELDS.iter().position(|f| f.eq_ignore_ascii_case(name)) else {
            return Ok(());
        };
        // A second value is an attempt to make two readers disagree: refuse it.
        if self.values[i].replace(value).is_some() {
            return Err(AuthError::DuplicateField { field: FIELDS[i] });
        }
        Ok(())
    }

    fn get(&self, field: &'static str) -> Option<&'a str> {
        let i = FIELDS.iter().position(|f| *f == field)?;
        self.values[i]
    }

    fn required(&self, field: &'static str) -> Result<&'a str, AuthError> {
        self.get(field).ok_or(AuthError::MissingField { field })
    }

    fn finish(self) -> Result<DigestCredentials<'a>, AuthError> {
        let username = unescape(self.required("username")?);
        let realm = unescape(self.required("realm")?);
        let nonce = self.required("nonce")?;
        let uri = unescape(self.required("uri")?);
        let response = self.required("response")?;
        let algorithm = match self.get("algorithm") {
            None => Algorithm::Md5,
            Some(token) => Algorithm::from_token(token).ok_or(AuthError::UnsupportedAlgorithm)?,
        };
        let qop = match self.get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(_) => return Err(AuthError::UnsupportedQop),
        };
        // Without qop (RFC 2069) cnonce and nc are not hashed; a stray one is ignored rather
        // than refused, so an old phone that sends one still registers.
        let (cnonce, nc, nc_text) = match qop {
            None => (None, None, ""),
            Some(Qop::Auth) => {
                let cnonce = self.required("cnonce")?;
                let nc_text = self.required("nc")?;
                (Some(unescape(cnonce)), Some(parse_nc(nc_text)?), nc_text)
            }
        };
        Ok(DigestCredentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            nc,
            qop,
            opaque: self.get("opaque").map(unescape),
            nc_text,
        })
    }
}

/// Parses an `Authorization` / `Proxy-Authorization` header value as digest credentials.
///
/// Network input: never panics, refuses values over [`MAX_CREDENTIALS_LEN`], a repeated
/// parameter, a missing mandatory one (`username`, `realm`, `nonce`, `uri`, `response`; `cnonce`
/// and `nc` with `qop=auth`), and algorithms or qops callgate does not offer.
pub fn parse_credentials(value: &str) -> Result<DigestCredentials<'_>, AuthError> {
    if value.len() > MAX_CREDENTIALS_LEN {
        return Err(AuthError::TooLong {
            max: MAX_CREDENTIALS_LEN,
        });
    }
    let view = CredentialsView::parse(value).map_err(|()| AuthError::Malformed)?;
    if !view.scheme().eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let mut fields = Fields::default();
    for (name, value) in view.params() {
        fields.set(name, value)?;
    }
    fields.finish()
}

/// `nc`: exactly 8 hex digits (RFC 7616 section 3.4, `8LHEX`; either case accepted).
fn parse_nc(text: &str) -> Result<u32, AuthError> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::BadNonceCount);
    }
    u32::from_str_radix(text, 16).map_err(|_| AuthError::BadNonceCount)
}

/// The content of a quoted string with its `\` escapes resolved (RFC 3261 25.1 `quoted-pair`).
fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `creds` answer their nonce for a request with `method`, knowing `secret`.
///
/// HA1 = H(username:realm:password), or the configured HA1 of the answer's algorithm (an answer
/// in the other algorithm than the stored HA1's is `false`). HA2 = H(method:uri). With `qop=auth` the response is
/// H(HA1:nonce:nc:cnonce:auth:HA2); without qop, the RFC 2069 H(HA1:nonce:HA2) (SIPp and old
/// phones send no qop). Every secret costs the same work (a password hash is computed even for an
/// HA1 secret), and the responses are compared in constant time. This checks the arithmetic only:
/// the nonce's validity and its count are the caller's ([`super::authenticate`]).
pub fn verify(creds: &DigestCredentials<'_>, method: &str, secret: Secret<'_>) -> bool {
    let (password, configured_ha1) = match secret {
        Secret::Password(p) => (p, None),
        Secret::Ha1(h) => ("", Some((Algorithm::Md5, h))),
        Secret::Ha1Sha256(h) => ("", Some((Algorithm::Sha256, h))),
    };
    let from_password = creds.algorithm.hash(&[
        creds.username.as_bytes(),
        creds.realm.as_bytes(),
        password.as_bytes(),
    ]);
    let (ha1, usable) = match configured_ha1 {
        None => (from_password, true),
        Some((alg, h)) => match Hex::parse_configured(h, alg) {
            Some(ha1) if alg == creds.algorithm => (ha1, true),
            _ => (from_password, false),
        },
    };
    let expected = expected_response(creds, method, &ha1);
    let matches = expected.ct_eq_client(creds.response);
    usable & matches
}

/// The request digest a client knowing `ha1` sends (RFC 7616 section 3.4.1, RFC 2069 without qop).
fn expected_response(creds: &DigestCredentials<'_>, method: &str, ha1: &Hex) -> Hex {
    let alg = creds.algorithm;
    let ha2 = alg.hash(&[method.as_bytes(), creds.uri.as_bytes()]);
    match (creds.qop, &creds.cnonce) {
        (Some(Qop::Auth), Some(cnonce)) => alg.hash(&[
            ha1.as_bytes(),
            creds.nonce.as_bytes(),
            creds.nc_text.as_bytes(),
            cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ]),
        _ => alg.hash(&[ha1.as_bytes(), creds.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// The response a client knowing `password` sends, for tests that build answers.
#[cfg(test)]
pub(crate) fn client_response(
    creds: &DigestCredentials<'_>,
    method: &str,
    password: &str,
) -> String {
    let ha1 = creds.algorithm.hash(&[
        creds.username.as_bytes(),
        creds.realm.as_bytes(),
        password.as_bytes(),
    ]);
    let response = expected_response(creds, method, &ha1);
    String::from_utf8(response.as_bytes().to_vec()).expect("hex digits are ASCII")
}

/// Lowercase hex of a digest, on the stack. No `Debug`: it holds HA1s and responses.
struct Hex {
    buf: [u8; MAX_HEX],
    len: usize,
}

impl Hex {
    fn encode(bytes: &[u8]) -> Hex {
        let mut hex = Hex {
            buf: [0; MAX_HEX],
            len: 0,
        };
        for &b in bytes.iter().take(MAX_HEX / 2) {
            hex.buf[hex.len] = HEX_DIGITS[usize::from(b >> 4)];
            hex.buf[hex.len + 1] = HEX_DIGITS[usize::from(b & 0xf)];
            hex.len += 2;
        }
        hex
    }

    /// A configured HA1 of `alg` (32 hex digits for MD5, 64 for SHA-256) of either case, kept
    /// lowercase (what the response hashes).
    fn parse_configured(s: &str, alg: Algorithm) -> Option<Hex> {
        let digits = match alg {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        };
        if s.len() != digits || digits > MAX_HEX || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut hex = Hex {
            buf: [0; MAX_HEX],
            len: digits,
        };
        for (out, b) in hex.buf.iter_mut().zip(s.bytes()) {
            *out = b.to_ascii_lowercase();
        }
        Some(hex)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Constant-time equality with a client's hex digest, ignoring its case (some clients send
    /// upper case). Only the length may leak, and it is public (the algorithm's).
    fn ct_eq_client(&self, client: &str) -> bool {
        if client.len() != self.len {
            return false;
        }
        let mut lower = [0u8; MAX_HEX];
        for (out, b) in lower.iter_mut().zip(client.bytes()) {
            *out = b.to_ascii_lowercase();
        }
        bool::from(self.as_bytes().ct_eq(&lower[..self.len]))
    }
}

pub(super) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_digest<D: Digest>(parts: &[&[u8]]) -> Hex {
    let mut d = D::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(part);
    }
    Hex::encode(&d.finalize())
}

mod client;

pub use client::{authorization, ClientAnswer, ClientChallenge};

#[cfg(test)]
mod tests;

//! Phones at the edge: REGISTER (digest, then the registrar) and the digest challenge of a
//! phone's INVITE; and the REGISTERs of `accept-register` trunks' gateways, checked by the same
//! code with the trunk's credentials. Glue between the `auth` core (nonces, credentials, brute-force guard), the
//! `registrar` core and the configuration; the decisions are theirs.
//!
//! No enumeration: a REGISTER or INVITE for an extension that does not exist gets the same
//! challenge, and after credentials the same 403, as a wrong password for one that does (the
//! verifier spends the same work on an unknown user).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::auth::{self, Algorithm, AuthOutcome, Guard, GuardConfig, NonceKey, Secret};
use crate::config::model::{ExtId, Snapshot, TrunkId};
use crate::registrar::{self, Aor, Flow, Policy, Reply};
use crate::sip::uri::Uri;
use crate::sip::{self, Request};

/// What every shard shares for digest authentication.
pub struct AuthShared {
    /// Signs and checks the stateless nonces (a per-process secret).
    pub key: NonceKey,
    /// Failures per source and per extension, and the bans they lead to.
    pub guard: Guard,
    /// The origin of the seconds counter nonces and bans use (one for every shard).
    pub epoch: Instant,
}

impl AuthShared {
    /// Shared state with a secret from the caller (the daemon draws it from the OS).
    pub fn new(secret: [u8; 32], epoch: Instant) -> Self {
        AuthShared {
            key: NonceKey::new(secret),
            guard: Guard::new(GuardConfig::default()),
            epoch,
        }
    }

    /// Seconds since the epoch at `now`.
    pub fn secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }
}

/// Who a request claims to be: the extension of `user@host` in To (REGISTER) or From (a phone's
/// INVITE), or one of the PBX extensions at the request's address.
pub(super) struct Claim {
    /// The realm: the host the request named, or the PBX's organization's domain.
    pub(super) realm: String,
    /// The extensions the credentials may be for: the phone extension when it exists and has
    /// credentials, the PBX extensions at the address; empty for an unknown extension.
    pub(super) exts: Vec<ExtId>,
}

/// The claim of a PBX that must authenticate, from the extensions at its address.
pub(super) fn pbx_claim(snapshot: &Snapshot, exts: &[ExtId]) -> Option<Claim> {
    let first = snapshot.extensions.get(exts.first()?.index())?;
    let realm = snapshot.organizations[first.organization.index()]
        .domain
        .to_ascii_lowercase();
    Some(Claim {
        realm,
        exts: exts.to_vec(),
    })
}

/// The claim of a `sip:` URI, or `None` for another scheme or a URI without user.
pub(super) fn claim(snapshot: &Snapshot, uri: &str) -> Option<Claim> {
    let Some(Uri::Sip(sip)) = Uri::parse(uri) else {
        return None;
    };
    let user = sip.user?;
    let ext = snapshot.extension_at(sip.host, user).filter(|e| {
        let e = &snapshot.extensions[e.index()];
        e.pbx.is_none() && e.credentials.is_some()
    });
    Some(Claim {
        realm: sip.host.to_ascii_lowercase(),
        exts: ext.into_iter().collect(),
    })
}

/// The `accept-register` trunk whose gateway a REGISTER's To (`sip:user@host`) names: `user` is
/// the trunk's `username` and `host` is no organization's domain (an organization's domain names
/// its extensions, so a phone's REGISTER is never taken for a gateway's). Returns the realm to
/// challenge with (the host, lower-cased) and the trunk.
pub(super) fn trunk_claim(snapshot: &Snapshot, uri: &str) -> Option<(String, TrunkId)> {
    let Some(Uri::Sip(sip)) = Uri::parse(uri) else {
        return None;
    };
    let realm = sip.host.to_ascii_lowercase();
    if snapshot.index.organization_by_domain.contains_key(&realm) {
        return None;
    }
    let trunk = *snapshot.index.accept_register_by_username.get(sip.user?)?;
    Some((realm, trunk))
}

/// The verdict on a request's credentials; `A` is who they authenticate (an extension, or an
/// `accept-register` trunk).
pub(super) enum Verdict<A = ExtId> {
    /// Authenticated as this extension or trunk.
    Ok(A),
    /// Send this response (a challenge, or a refusal).
    Respond(u16, Bytes),
    /// Wrong credentials (`callgate_auth_failures_total` counts these, not refusals of a banned
    /// source): send this 403; `banned` when this failure banned the source
    /// (`callgate_auth_bans_total`).
    Failed {
        /// The 403.
        response: Bytes,
        /// Whether the source is banned from now on.
        banned: bool,
    },
}

/// Checks `req`'s digest credentials (`Authorization` for REGISTER, `Proxy-Authorization` for
/// the rest) for `claim`, from `source`.
pub(super) fn check(
    shared: &Arc<AuthShared>,
    nonces: &auth::NonceCounts,
    snapshot: &Snapshot,
    req: &Request,
    claim: &Claim,
    source: IpAddr,
    now: Instant,
) -> Verdict {
    let named = |username: &str| {
        claim
            .exts
            .iter()
            .copied()
            .find(|e| snapshot.extensions[e.index()].number == username)
    };
    let account = Account {
        named,
        secret: |ext: ExtId, algorithm| {
            let e = &snapshot.extensions[ext.index()];
            Secret::for_algorithm(e.credentials.as_ref()?, algorithm)
        },
        allowed: |ext| allowed_from(snapshot, ext, source),
    };
    let at = At {
        realm: &claim.realm,
        source,
        now,
    };
    check_account(shared, nonces, snapshot, req, at, account)
}

/// Checks the credentials of a gateway's REGISTER for `accept-register` trunk `trunk` (see
/// [`trunk_claim`]): the trunk's `username` and `password`, with the nonces, replay rules and
/// brute-force guard of the phones.
pub(super) fn check_trunk(
    shared: &Arc<AuthShared>,
    nonces: &auth::NonceCounts,
    snapshot: &Snapshot,
    req: &Request,
    (realm, trunk): (&str, TrunkId),
    source: IpAddr,
    now: Instant,
) -> Verdict<TrunkId> {
    let t = &snapshot.trunks[trunk.index()];
    let account = Account {
        named: |username: &str| (t.username.as_deref() == Some(username)).then_some(trunk),
        secret: |_, _| t.password.as_deref().map(Secret::Password),
        allowed: |_| true,
    };
    let at = At { realm, source, now };
    check_account(shared, nonces, snapshot, req, at, account)
}

/// Where and when a request is checked: the realm it is challenged in, its source IP, the time.
struct At<'a> {
    realm: &'a str,
    source: IpAddr,
    now: Instant,
}

/// Who a digest username may be: `named` finds the account, `secret` its secret for an
/// algorithm, `allowed` whether it may be used from the request's source.
struct Account<N, S, P> {
    named: N,
    secret: S,
    allowed: P,
}

/// The digest check shared by extensions and trunks.
fn check_account<'s, A: Copy>(
    shared: &Arc<AuthShared>,
    nonces: &auth::NonceCounts,
    snapshot: &Snapshot,
    req: &Request,
    at: At<'_>,
    account: Account<
        impl Fn(&str) -> Option<A>,
        impl Fn(A, Algorithm) -> Option<Secret<'s>>,
        impl Fn(A) -> bool,
    >,
) -> Verdict<A> {
    let At { realm, source, now } = at;
    let secs = shared.secs(now);
    let register = *req.method() == sip::Method::Register;
    if shared.guard.is_banned(source, secs) {
        return Verdict::Respond(403, forbidden(req));
    }
    let header = if register {
        "Authorization"
    } else {
        "Proxy-Authorization"
    };
    let values: Vec<&str> = req
        .parts()
        .headers_raw(header)
        .filter_map(|h| h.value_str())
        .collect();
    let secret_for = |username: &str, algorithm| -> Option<Secret<'s>> {
        (account.secret)((account.named)(username)?, algorithm)
    };
    let outcome = auth::authenticate(
        values.into_iter(),
        req.method().as_str(),
        realm,
        secret_for,
        &shared.key,
        nonces,
        secs,
    );
    match outcome {
        AuthOutcome::Authenticated { username } => match (account.named)(&username) {
            Some(who) if (account.allowed)(who) => {
                shared.guard.record_success(source, &username);
                Verdict::Ok(who)
            }
            _ => {
                tracing::warn!(peer.ip = %source, extension = %username, "extension used from outside its allowed_networks");
                Verdict::Respond(403, forbidden(req))
            }
        },
        AuthOutcome::Challenge { stale } => {
            let sha256 = offers_sha256(snapshot, realm);
            let how = How {
                stale,
                sha256,
                register,
            };
            let (status, bytes) = challenge(shared, req, realm, how, secs);
            Verdict::Respond(status, bytes)
        }
        AuthOutcome::Failed { username, counts } => {
            // One line per failure, in a form fail2ban matches; never the hash.
            tracing::warn!(peer.ip = %source, extension = %username, realm = %realm, "digest authentication failed");
            // An answer no stored secret could match is a configuration mismatch only where the
            // realm offered that algorithm; where only MD5 was offered, the client answered a
            // challenge never sent (a guesser), and not counting it would tell it which
            // extensions store an MD5 HA1.
            let counts = counts || !offers_sha256(snapshot, realm);
            let ban = counts
                .then(|| shared.guard.record_failure(source, &username, secs))
                .flatten();
            if let Some(ban) = &ban {
                tracing::warn!(peer.ip = %ban.ip, extension = %username, for_secs = ban.until_unix.saturating_sub(secs), "source banned after repeated authentication failures");
            }
            Verdict::Failed {
                response: forbidden(req),
                banned: ban.is_some(),
            }
        }
    }
}

/// Whether the organization of `realm` sends SHA-256 challenges.
fn offers_sha256(snapshot: &Snapshot, realm: &str) -> bool {
    snapshot
        .index
        .organization_by_domain
        .get(realm)
        .is_some_and(|o| snapshot.organizations[o.index()].digest_sha256)
}

/// Whether `ext` may be used from `source` (its `allowed_networks`, spec 5; empty = anywhere).
fn allowed_from(snapshot: &Snapshot, ext: ExtId, source: IpAddr) -> bool {
    let nets = &snapshot.extensions[ext.index()].allowed_networks;
    nets.is_empty() || nets.iter().any(|n| n.contains(&source))
}

/// How to challenge.
struct How {
    stale: bool,
    /// SHA-256 first, then MD5 (RFC 8760 8: a client takes the first it supports).
    sha256: bool,
    register: bool,
}

/// 401 (REGISTER) or 407 with a fresh nonce: MD5 alone (what every phone stack and SIPp read),
/// or SHA-256 then MD5 where the organization opted in.
fn challenge(shared: &AuthShared, req: &Request, realm: &str, how: How, secs: u64) -> (u16, Bytes) {
    let nonce = shared.key.issue(secs);
    let md5 = auth::challenge(realm, &nonce, Algorithm::Md5, how.stale);
    let sha = how
        .sha256
        .then(|| auth::challenge(realm, &nonce, Algorithm::Sha256, how.stale));
    let (status, reason, header) = if how.register {
        (401, "Unauthorized", "WWW-Authenticate")
    } else {
        (407, "Proxy Authentication Required", "Proxy-Authenticate")
    };
    let mut extra: Vec<(&str, &str)> = Vec::with_capacity(2);
    if let Some(sha) = &sha {
        extra.push((header, sha));
    }
    extra.push((header, &md5));
    let bytes = sip::response_to(req, status, reason, Some("cg-auth"), &extra);
    (status, bytes)
}

fn forbidden(req: &Request) -> Bytes {
    sip::response_to(req, 403, "Forbidden", Some("cg-auth"), &[])
}

/// A REGISTER from an authenticated phone, applied to the location store.
pub(super) fn register(
    location: &registrar::LocationStore,
    snapshot: &Snapshot,
    ext: ExtId,
    req: &Request,
    flow: Flow,
    now: Instant,
) -> (u16, Bytes) {
    let e = &snapshot.extensions[ext.index()];
    let domain = &snapshot.organizations[e.organization.index()].domain;
    let aor = Aor::new(domain, &e.number);
    let reply = registrar::register(location, &aor, req, flow, &Policy::default(), now);
    answer(req, &reply)
}

/// A REGISTER from the authenticated gateway of `accept-register` trunk `trunk`, applied to the
/// location store under the trunk's AoR ([`Aor::trunk`]), with the phones' lifetimes, contact
/// limit and `Expires: 0` / `Contact: *` rules.
pub(super) fn register_trunk(
    location: &registrar::LocationStore,
    snapshot: &Snapshot,
    trunk: TrunkId,
    req: &Request,
    flow: Flow,
    now: Instant,
) -> (u16, Bytes) {
    let name = &snapshot.trunks[trunk.index()].name;
    let aor = Aor::trunk(name);
    let reply = registrar::register(location, &aor, req, flow, &Policy::default(), now);
    tracing::debug!(trunk = %name, peer.addr = %flow.source, status = reply.status(), "trunk gateway REGISTER");
    answer(req, &reply)
}

/// The response to a REGISTER the registrar decided.
fn answer(req: &Request, reply: &Reply) -> (u16, Bytes) {
    let status = reply.status();
    let bytes = match reply {
        Reply::Ok { contacts } => {
            let values: Vec<String> = contacts
                .iter()
                .map(|(uri, left)| format!("<{uri}>;expires={left}"))
                .collect();
            let extra: Vec<(&str, &str)> = values.iter().map(|v| ("Contact", v.as_str())).collect();
            sip::response_to(req, 200, "OK", Some("cg-reg"), &extra)
        }
        Reply::TooBrief { min_expires } => {
            let min = min_expires.to_string();
            let extra = [("Min-Expires", min.as_str())];
            sip::response_to(req, 423, "Interval Too Brief", Some("cg-reg"), &extra)
        }
        Reply::Bad(why) => sip::response_to(req, 400, why, Some("cg-reg"), &[]),
        Reply::OutOfOrder => {
            let extra = [("Retry-After", "5")];
            sip::response_to(req, 500, "Server Internal Error", Some("cg-reg"), &extra)
        }
    };
    (status, bytes)
}

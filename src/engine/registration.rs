//! REGISTER, answered without a transaction and off the shards: the dispatcher calls [`Front`]
//! for every REGISTER it parses (like out-of-dialog OPTIONS), and an engine fed a REGISTER
//! directly answers it the same way ([`answer`]).
//!
//! Why stateless: everything a registration touches is shared by every shard already (the
//! location store, the nonce-count table, the brute-force guard), so a REGISTER needs no shard;
//! handing each one to a shard thread and back cost several times the registration's own work
//! (`scripts/bench-register`). A retransmitted REGISTER is answered again: one without credentials
//! gets a new challenge; one with credentials reuses its nonce count, so it gets a new challenge
//! too and the phone answers it, as with Kamailio's stateless registrar. Nothing is kept per
//! request, so a flood of REGISTERs costs no memory.
//!
//! A REGISTER whose To is `username@host` of an `accept-register` trunk, at a host that is no
//! organization's domain, is the provider's gateway: it is challenged and checked with the
//! trunk's credentials (same nonces, replay rule and brute-force guard as the phones) and bound
//! under the trunk's AoR ([`crate::registrar::Aor::trunk`]) in the same location store.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{access, checks, rport, Shared};
use crate::admin::{Direction, Metrics};
use crate::b2bua::Dest;
use crate::config::model::Snapshot;
use crate::limits::Limiter;
use crate::sip::{self, Request};

/// What the dispatcher needs to answer REGISTERs: the running configuration, the shared stores and
/// the metrics.
pub struct Front {
    limiter: Arc<Limiter>,
    shared: Shared,
    metrics: Arc<Metrics>,
}

impl Front {
    /// A front over the daemon's limiter (its generation carries the configuration), stores and
    /// metrics.
    pub fn new(limiter: Arc<Limiter>, shared: Shared, metrics: Arc<Metrics>) -> Self {
        Front {
            limiter,
            shared,
            metrics,
        }
    }

    /// Where the answer to `req` from `source` goes, and the answer.
    pub fn answer(&self, req: Request, source: Dest, now: Instant) -> (Dest, Bytes) {
        self.metrics.sip_request("REGISTER", Direction::In);
        let generation = self.limiter.current();
        answer(
            generation.config(),
            &self.shared,
            &self.metrics,
            req,
            source,
            now,
        )
    }
}

/// Answers a REGISTER: where the response goes (RFC 3261 18.2.2, RFC 3581) and the response (its
/// status counted in `metrics`, like a wrong password).
pub(super) fn answer(
    snapshot: &Snapshot,
    shared: &Shared,
    metrics: &Metrics,
    req: Request,
    source: Dest,
    now: Instant,
) -> (Dest, Bytes) {
    let (req, reply_to) = rport::stamp(req, source);
    let (status, bytes) = if let Some(refusal) = checks::check(&req) {
        (refusal.status, refusal.response(&req))
    } else if req.parts().max_forwards() == Some(0) {
        (483, sip::response_to(&req, 483, "Too Many Hops", None, &[]))
    } else {
        reply(snapshot, shared, metrics, &req, source, now)
    };
    metrics.sip_response(status, Direction::Out);
    (reply_to, bytes)
}

/// A challenge, a refusal, or the registrar's answer.
fn reply(
    snapshot: &Snapshot,
    shared: &Shared,
    metrics: &Metrics,
    req: &Request,
    source: Dest,
    now: Instant,
) -> (u16, Bytes) {
    let to = req.parts().to().uri;
    let ip = source.addr.ip();
    let flow = crate::registrar::Flow {
        transport: source.transport,
        source: source.addr,
        local: None,
    };
    if let Some((realm, trunk)) = access::trunk_claim(snapshot, to) {
        let claim = (realm.as_str(), trunk);
        let verdict =
            access::check_trunk(&shared.auth, &shared.nonces, snapshot, req, claim, ip, now);
        return match settle(metrics, verdict) {
            Ok(trunk) => access::register_trunk(&shared.location, snapshot, trunk, req, flow, now),
            Err(answered) => answered,
        };
    }
    let Some(claim) = access::claim(snapshot, to) else {
        // A To that is no sip: user@host is malformed for REGISTER (never a 404: that would tell
        // a scanner something).
        return (
            400,
            sip::response_to(req, 400, "Bad To", Some("cg-reg"), &[]),
        );
    };
    let verdict = access::check(&shared.auth, &shared.nonces, snapshot, req, &claim, ip, now);
    match settle(metrics, verdict) {
        Ok(ext) => access::register(&shared.location, snapshot, ext, req, flow, now),
        Err(answered) => answered,
    }
}

/// Who authenticated, or the answer (a challenge or a refusal; wrong credentials counted).
fn settle<A>(metrics: &Metrics, verdict: access::Verdict<A>) -> Result<A, (u16, Bytes)> {
    match verdict {
        access::Verdict::Ok(who) => Ok(who),
        access::Verdict::Respond(status, bytes) => Err((status, bytes)),
        access::Verdict::Failed {
            response: bytes,
            banned,
        } => {
            metrics.auth_failure();
            if banned {
                metrics.auth_ban();
            }
            Err((403, bytes))
        }
    }
}

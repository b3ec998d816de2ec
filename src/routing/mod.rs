//! Pure routing decisions over a configuration [`Snapshot`]: who is calling (caller
//! identification) and where the call goes (the route decision), spec/config.md "Routing in one
//! paragraph" and spec/call-control.md 5 and 7.
//!
//! This module owns the decisions only; it does not admit calls (that is `limits`), build messages
//! or touch sockets. The registrar's bindings take part through [`identify_with`] (a request from
//! the live binding of an `accept-register` trunk's gateway is from that trunk) and [`trunk_dest`]
//! (calls to such a trunk go to its binding); the store and the time are passed in.

use std::net::SocketAddr;
use std::time::Instant;

use crate::config::model::{
    Destination, ExtId, OrgId, RingRuleId, Snapshot, Transport, TrunkId, TrunkKind,
};
use crate::registrar::{Aor, LocationStore};
use crate::sip::uri::Uri;

pub mod caller_id;
pub mod plan;
#[cfg(test)]
mod tests;

/// Who sent an initial request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A local extension (today: a SIP trunking extension recognised by its fixed address).
    Extension(ExtId),
    /// A provider trunk recognised by source IP, or by its gateway's live binding.
    Trunk(TrunkId),
}

/// Why a request cannot be routed. Each maps to one SIP response in the B2BUA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The source is neither a known extension nor a trunk (403; digest comes with the registrar).
    #[error("source {0} is not a known extension or trunk")]
    UnknownSource(SocketAddr),
    /// The extensions at this address must authenticate: the engine challenges their INVITEs
    /// and passes the authenticated caller on; one that gets here unauthenticated gets 403.
    #[error("extension at {0} must authenticate")]
    AuthenticationRequired(SocketAddr),
    /// No extension, outbound rule or inbound rule matches (404).
    #[error("no route for {0}")]
    NoRoute(String),
    /// The destination is a registered phone with no binding (480).
    #[error("extension {0} is not reachable")]
    Unreachable(String),
}

/// Where an admitted call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Local extension to local extension (counted `internal`).
    Internal {
        /// Caller.
        caller: ExtId,
        /// Callee.
        callee: ExtId,
    },
    /// Local extension to the public network: trunks in the order to try.
    Outbound {
        /// Caller.
        caller: ExtId,
        /// Trunks tried in order (spec 7: the next one when a trunk's counters are full).
        trunks: Vec<TrunkId>,
        /// Number to send to the trunk (after strip/prepend).
        number: String,
    },
    /// Public network to a local extension, or to a ring rule.
    Inbound {
        /// Trunk the call arrived on.
        trunk: TrunkId,
        /// Destination of the inbound rule.
        target: InboundTarget,
        /// The dialled DID, kept in the Request-URI and To for a PBX.
        did: String,
    },
}

/// Destination of an inbound call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundTarget {
    /// One extension (phone or PBX).
    Extension(ExtId),
    /// A ring rule (forking, spec 4).
    RingRule(RingRuleId),
}

/// Identifies the sender of an initial request by its source address: a PBX extension at that
/// exact address (then by IP), else a trunk by gateway or associated IP.
pub fn identify(snapshot: &Snapshot, source: SocketAddr) -> Result<Caller, RouteError> {
    let idx = &snapshot.index;
    // A PBX at this exact address wins; then trunks by IP (providers send from many ports);
    // then a PBX by IP alone (PBXs that send from another port than the one they listen on).
    if let Some(exts) = idx.pbx_by_address.get(&source) {
        return pbx_caller(snapshot, exts, source);
    }
    if let Some(trunk) = idx.trunk_by_ip.get(&source.ip()) {
        return Ok(Caller::Trunk(*trunk));
    }
    if let Some(exts) = idx.pbx_by_ip.get(&source.ip()) {
        return pbx_caller(snapshot, exts, source);
    }
    Err(RouteError::UnknownSource(source))
}

/// [`identify`], and then the registrar's bindings: a source that is no PBX and no trunk by its
/// configured IPs is the `accept-register` trunk one of whose live bindings it sends from. The
/// binding's exact address (IP and port) wins over its IP alone (a provider sends from several
/// ports, TCP from a new connection's); among trunks, the first in file order.
///
/// Cost: one store lookup (and the AoR's short string) per `accept-register` trunk, and only for
/// a source the configuration does not know (phones' INVITEs, scanners); a deployment with very
/// many such trunks would want an index by source IP in the store instead.
pub fn identify_with(
    snapshot: &Snapshot,
    location: &LocationStore,
    source: SocketAddr,
    now: Instant,
) -> Result<Caller, RouteError> {
    match identify(snapshot, source) {
        Err(RouteError::UnknownSource(_)) => {}
        known => return known,
    }
    let trunks = &snapshot.index.accept_register_trunks;
    let bound = |exact: bool| {
        trunks.iter().copied().find(|t| {
            let aor = Aor::trunk(&snapshot.trunks[t.index()].name);
            location.any_live(&aor, now, |b| {
                b.flow.source == source || (!exact && b.flow.source.ip() == source.ip())
            })
        })
    };
    bound(true)
        .or_else(|| bound(false))
        .map(Caller::Trunk)
        .ok_or(RouteError::UnknownSource(source))
}

/// Where a call to a trunk goes ([`trunk_dest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkDest {
    /// Transport towards the gateway: the configured one, or the binding's flow.
    pub transport: Transport,
    /// The gateway: its configured `address`, or the source of its REGISTER (after NAT).
    pub addr: SocketAddr,
    /// For a registered gateway, the registered Contact URI, whose host, port and transport
    /// the Request-URI keeps ([`TrunkDest::request_uri`]).
    pub contact: Option<String>,
}

impl TrunkDest {
    /// The Request-URI for `number`: `None` for a fixed gateway (the caller writes
    /// `number@addr`); for a registered one, `sip:number@` the registered contact's host and
    /// port, with its `transport` parameter and `sips:` scheme kept (what the gateway said it
    /// answers at; phones get their contact verbatim, a gateway must see the dialled number).
    pub fn request_uri(&self, number: &str) -> Option<String> {
        let contact = self.contact.as_deref()?;
        let Some(Uri::Sip(c)) = Uri::parse(contact) else {
            // Stored contacts were parsed at REGISTER; keep the flow's address if one is not.
            return Some(format!("sip:{number}@{}", self.addr));
        };
        let scheme = if c.secure { "sips" } else { "sip" };
        let mut uri = format!("{scheme}:{number}@{}", c.host);
        if let Some(port) = c.port {
            uri.push_str(&format!(":{port}"));
        }
        if let Some(Some(t)) = c.params.get("transport") {
            uri.push_str(&format!(";transport={t}"));
        }
        Some(uri)
    }
}

/// Where a call to `trunk` goes: its configured `address` (`ip` and `register` trunks), or for
/// an `accept-register` trunk the flow of its gateway's most recent live binding. `None` when
/// there is none (no address, or a gateway not registered now): the trunk is unavailable and an
/// outbound rule passes to its next trunk.
pub fn trunk_dest(
    snapshot: &Snapshot,
    location: &LocationStore,
    trunk: TrunkId,
    now: Instant,
) -> Option<TrunkDest> {
    let t = snapshot.trunks.get(trunk.index())?;
    if t.kind != TrunkKind::AcceptRegister {
        return t.address.map(|addr| TrunkDest {
            transport: t.transport,
            addr,
            contact: None,
        });
    }
    let binding = location.latest(&Aor::trunk(&t.name), now)?;
    Some(TrunkDest {
        transport: binding.flow.transport,
        addr: binding.flow.source,
        contact: Some(binding.contact),
    })
}

fn pbx_caller(
    snapshot: &Snapshot,
    exts: &[ExtId],
    source: SocketAddr,
) -> Result<Caller, RouteError> {
    // Several extensions share an address only when all authenticate (validated): without
    // digest we cannot tell which one is calling, so refuse rather than guess.
    match exts {
        [one] if !pbx_authenticates(snapshot, *one) => Ok(Caller::Extension(*one)),
        _ => Err(RouteError::AuthenticationRequired(source)),
    }
}

fn pbx_authenticates(snapshot: &Snapshot, ext: ExtId) -> bool {
    snapshot.extensions[ext.index()]
        .pbx
        .as_ref()
        .is_some_and(|p| p.authenticate)
}

/// Decides the route of an initial INVITE from `caller` for Request-URI user `dialled`.
pub fn route(snapshot: &Snapshot, caller: &Caller, dialled: &str) -> Result<Route, RouteError> {
    match *caller {
        Caller::Extension(ext) => route_from_extension(snapshot, ext, dialled),
        Caller::Trunk(trunk) => route_from_trunk(snapshot, trunk, dialled),
    }
}

fn route_from_extension(
    snapshot: &Snapshot,
    caller: ExtId,
    dialled: &str,
) -> Result<Route, RouteError> {
    let org = snapshot.extensions[caller.index()].organization;
    if let Some(callee) = extension_in(snapshot, org, dialled) {
        return Ok(Route::Internal { caller, callee });
    }
    let rules = snapshot.index.outbound_rules_by_org.get(&org);
    for &i in rules.into_iter().flatten() {
        let rule = &snapshot.outbound_rules[i];
        if rule.pattern.is_match(dialled) {
            let kept = dialled.get(rule.strip..).unwrap_or("");
            let number = format!("{}{}", rule.prepend, kept);
            return Ok(Route::Outbound {
                caller,
                trunks: rule.trunks.clone(),
                number,
            });
        }
    }
    Err(RouteError::NoRoute(dialled.to_owned()))
}

fn route_from_trunk(snapshot: &Snapshot, trunk: TrunkId, did: &str) -> Result<Route, RouteError> {
    let rules = snapshot.index.inbound_rules_by_trunk.get(&trunk);
    for &i in rules.into_iter().flatten() {
        let rule = &snapshot.inbound_rules[i];
        if rule.dids.contains_str(did) {
            let target = match rule.destination {
                Destination::Extension(e) => InboundTarget::Extension(e),
                Destination::RingRule(r) => InboundTarget::RingRule(r),
            };
            return Ok(Route::Inbound {
                trunk,
                target,
                did: did.to_owned(),
            });
        }
    }
    Err(RouteError::NoRoute(did.to_owned()))
}

/// The extension `number` of organization `org`, if any.
pub fn extension_in(snapshot: &Snapshot, org: OrgId, number: &str) -> Option<ExtId> {
    // One allocation per lookup; the key type is (OrgId, String) so the index stays simple.
    snapshot
        .index
        .extension_by_number
        .get(&(org, number.to_owned()))
        .copied()
}

//! The identification and route steps of an explanation, in operators' names (no entity ids).

use std::net::SocketAddr;
use std::time::Instant;

use serde::Serialize;

use super::{extension_name, trunk_name, Verdict};
use crate::config::model::{RingTarget, Snapshot, TrunkId, TrunkKind};
use crate::registrar::{Aor, LocationStore};
use crate::routing::plan::Reach;
use crate::routing::{Caller, InboundTarget, Route, RouteError};

/// Who the source of the call is (spec config "Routing in one paragraph").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identification {
    /// A SIP trunking extension (a PBX at a fixed address).
    Extension {
        /// `number@organization`.
        extension: String,
        /// The PBX's configured address.
        pbx: String,
        /// How the source matched: `address` (IP and port) or `ip`.
        matched: String,
    },
    /// A provider trunk.
    Trunk {
        /// Its name.
        trunk: String,
        /// How the source matched: `gateway address`, `associated ip` or `registration`.
        matched: String,
    },
    /// Taken to have authenticated as this extension (`--as`; credentials are not checked): a
    /// phone, or a PBX extension sharing its address with others.
    Authenticated {
        /// `number@organization`.
        extension: String,
    },
    /// PBX extensions at this address that must authenticate: the INVITE is challenged.
    MustAuthenticate {
        /// The extensions sharing the address (`number@organization`).
        extensions: Vec<String>,
    },
    /// Nobody callgate knows: the call is refused.
    Unknown {
        /// Why, in words.
        reason: String,
    },
}

/// Where the call goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouteView {
    /// To an extension of the caller's organization.
    Internal {
        /// The callee, `number@organization`.
        callee: String,
    },
    /// To the public network through an outbound rule.
    Outbound {
        /// The rule's pattern.
        pattern: String,
        /// Its position among the organization's outbound rules (1-based).
        rule: usize,
        /// Leading digits removed from the dialled number.
        strip: usize,
        /// Digits put in front after stripping.
        prepend: String,
        /// The number sent to the trunk (after strip/prepend).
        number: String,
        /// Trunks in the order they are tried.
        trunks: Vec<String>,
    },
    /// From a trunk through an inbound rule.
    Inbound {
        /// The trunk the call arrives on.
        trunk: String,
        /// The rule's DID or DID range.
        dids: String,
        /// Where the rule sends it.
        destination: Destination,
    },
    /// No extension or rule matches (404).
    None,
}

/// An inbound rule's destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Destination {
    /// One extension (a phone or a PBX).
    Extension {
        /// `number@organization`.
        extension: String,
    },
    /// A ring rule: its targets ring at once.
    RingRule {
        /// The rule's name.
        name: String,
        /// Its targets in order: extension numbers or public numbers.
        targets: Vec<String>,
        /// How long they ring, in seconds.
        ring_time_secs: u64,
    },
}

/// The caller named, with how its source matched.
pub(super) fn identified(
    s: &Snapshot,
    location: &LocationStore,
    source: SocketAddr,
    caller: &Caller,
    now: Instant,
) -> Identification {
    match *caller {
        Caller::Extension(ext) => {
            let pbx = s.extensions[ext.index()].pbx.as_ref();
            let exact = s.index.pbx_by_address.contains_key(&source);
            Identification::Extension {
                extension: extension_name(s, ext),
                pbx: pbx.map(|p| p.address.to_string()).unwrap_or_default(),
                matched: if exact { "address" } else { "ip" }.to_owned(),
            }
        }
        Caller::Trunk(t) => {
            let trunk = &s.trunks[t.index()];
            let by_binding = trunk.kind == TrunkKind::AcceptRegister
                && location.any_live(&Aor::trunk(&trunk.name), now, |b| {
                    b.flow.source.ip() == source.ip()
                });
            let matched = if trunk.address.is_some_and(|a| a.ip() == source.ip()) {
                "gateway address"
            } else if trunk.associated_ips.contains(&source.ip()) {
                "associated ip"
            } else if by_binding {
                "registration"
            } else {
                "ip"
            };
            Identification::Trunk {
                trunk: trunk_name(s, t),
                matched: matched.to_owned(),
            }
        }
    }
}

/// A source that is not let in: who it is taken for and the verdict (boxed: it is large and rare).
pub(super) type Unidentified = Box<(Identification, Verdict)>;

/// The caller a source that routing does not know by address is when it authenticates as
/// `who` (`number@domain`), with the engine's rules (`engine::access`): one of the PBX extensions
/// at that address, else a phone with credentials; either used from inside its
/// `allowed_networks`. Refused with 403 otherwise.
pub(super) fn authenticated(
    s: &Snapshot,
    source: SocketAddr,
    who: &str,
    err: &RouteError,
) -> Result<(Caller, Identification), Unidentified> {
    let refuse = |reason: String| {
        let id = Identification::Unknown {
            reason: reason.clone(),
        };
        Box::new((id, Verdict::refused(403, reason)))
    };
    let (number, domain) = who.rsplit_once('@').unwrap_or((who, ""));
    let Some(ext) = s.extension_at(domain, number) else {
        return Err(refuse(format!("--as {who}: no such extension")));
    };
    let e = &s.extensions[ext.index()];
    let name = extension_name(s, ext);
    let allowed = match err {
        RouteError::AuthenticationRequired(_) => {
            let ix = &s.index;
            let at = ix
                .pbx_by_address
                .get(&source)
                .or_else(|| ix.pbx_by_ip.get(&source.ip()));
            at.is_some_and(|exts| exts.contains(&ext))
        }
        _ => e.pbx.is_none() && e.credentials.is_some(),
    };
    if !allowed {
        return Err(refuse(format!(
            "{name} cannot authenticate from {source}: only a phone with credentials, or a \
             PBX extension at this address that must authenticate, can"
        )));
    }
    let nets = &e.allowed_networks;
    if !nets.is_empty() && !nets.iter().any(|n| n.contains(&source.ip())) {
        return Err(refuse(format!(
            "{name} may not be used from {} (allowed_networks)",
            source.ip()
        )));
    }
    let id = Identification::Authenticated { extension: name };
    Ok((Caller::Extension(ext), id))
}

/// The identification and verdict of a source routing does not accept.
pub(super) fn unidentified(
    s: &Snapshot,
    source: SocketAddr,
    err: &RouteError,
) -> (Identification, Verdict) {
    if let RouteError::AuthenticationRequired(_) = err {
        let ix = &s.index;
        let exts = ix
            .pbx_by_address
            .get(&source)
            .or_else(|| ix.pbx_by_ip.get(&source.ip()));
        let names: Vec<String> = exts
            .into_iter()
            .flatten()
            .map(|e| extension_name(s, *e))
            .collect();
        let reason = format!(
            "PBX extension(s) {} at {source} must authenticate: the INVITE is challenged and \
             the call goes on as the extension whose credentials it answers with",
            names.join(", ")
        );
        let id = Identification::MustAuthenticate { extensions: names };
        return (id, Verdict::refused(407, reason));
    }
    let reason = format!(
        "{source} is no PBX extension's address or IP, no trunk's gateway or associated IP, and \
         no accept-register trunk's gateway is registered from it (from the file alone none is); \
         a phone is recognised by its digest credentials, not by its address"
    );
    let id = Identification::Unknown {
        reason: reason.clone(),
    };
    (id, Verdict::refused(403, reason))
}

/// Why `number` has no route from `caller`, in words.
pub(super) fn no_route_why(s: &Snapshot, caller: &Caller, number: &str) -> String {
    match *caller {
        Caller::Extension(ext) => {
            let org_id = s.extensions[ext.index()].organization;
            let org = &s.organizations[org_id.index()].name;
            let rules = s
                .index
                .outbound_rules_by_org
                .get(&org_id)
                .map_or(0, Vec::len);
            format!("{number} is no extension of {org} and none of its {rules} outbound rule(s) matches it")
        }
        Caller::Trunk(t) => {
            let ranges: Vec<String> = s
                .index
                .inbound_rules_by_trunk
                .get(&t)
                .into_iter()
                .flatten()
                .map(|&i| did_range(&s.inbound_rules[i].dids))
                .collect();
            let listed = if ranges.is_empty() {
                "it has none".to_owned()
            } else {
                ranges.join(", ")
            };
            format!(
                "DID {number} is in no inbound rule of trunk {} ({listed})",
                trunk_name(s, t)
            )
        }
    }
}

/// The route of the call to `dialled`, in names.
pub(super) fn route(s: &Snapshot, route: &Route, dialled: &str) -> RouteView {
    match route {
        Route::Internal { callee, .. } => RouteView::Internal {
            callee: extension_name(s, *callee),
        },
        Route::Outbound {
            caller,
            trunks,
            number,
        } => {
            let org = s.extensions[caller.index()].organization;
            // The rule routing took: the organization's first whose pattern matches.
            let rules = s.index.outbound_rules_by_org.get(&org);
            let matched = rules
                .into_iter()
                .flatten()
                .enumerate()
                .find(|(_, &i)| s.outbound_rules[i].pattern.is_match(dialled));
            let (rule, r) = match matched {
                Some((n, &i)) => (n + 1, Some(&s.outbound_rules[i])),
                None => (0, None),
            };
            RouteView::Outbound {
                pattern: r.map(|r| r.pattern.as_str().to_owned()).unwrap_or_default(),
                rule,
                strip: r.map_or(0, |r| r.strip),
                prepend: r.map(|r| r.prepend.clone()).unwrap_or_default(),
                number: number.clone(),
                trunks: trunks.iter().map(|t| trunk_name(s, *t)).collect(),
            }
        }
        Route::Inbound { trunk, target, did } => inbound(s, *trunk, *target, did),
    }
}

fn inbound(
    s: &Snapshot,
    trunk: crate::config::model::TrunkId,
    target: InboundTarget,
    did: &str,
) -> RouteView {
    let rule = s
        .index
        .inbound_rules_by_trunk
        .get(&trunk)
        .into_iter()
        .flatten()
        .map(|&i| &s.inbound_rules[i])
        .find(|r| r.dids.contains_str(did));
    let destination = match target {
        InboundTarget::Extension(e) => Destination::Extension {
            extension: extension_name(s, e),
        },
        InboundTarget::RingRule(r) => {
            let rule = &s.ring_rules[r.index()];
            Destination::RingRule {
                name: rule.name.clone(),
                targets: rule
                    .targets
                    .iter()
                    .map(|t| match t {
                        RingTarget::Extension(e) => s.extensions[e.index()].number.clone(),
                        RingTarget::Public(n) => n.clone(),
                    })
                    .collect(),
                ring_time_secs: rule.ring_time.as_secs(),
            }
        }
    };
    RouteView::Inbound {
        trunk: trunk_name(s, trunk),
        dids: rule.map(|r| did_range(&r.dids)).unwrap_or_default(),
        destination,
    }
}

fn did_range(r: &crate::config::model::DidRange) -> String {
    if r.start == r.end {
        r.start.to_string()
    } else {
        format!("{}-{}", r.start, r.end)
    }
}

/// The trunks outbound routing passes over: unavailable (health probes, registration), or an
/// `accept-register` trunk whose gateway has no live binding.
fn skipped_trunks(s: &Snapshot, trunks: &[TrunkId], reach: &Reach<'_>) -> Vec<String> {
    trunks
        .iter()
        .filter_map(|&t| {
            let name = trunk_name(s, t);
            if !reach.trunks.is_available(&name) {
                return Some(format!(
                    "trunk {name}: unavailable (probes down or not registered)"
                ));
            }
            let dest = crate::routing::trunk_dest(s, reach.location, t, reach.now);
            dest.is_none()
                .then(|| format!("trunk {name}: its gateway is not registered"))
        })
        .collect()
}

/// What the plan of `route` leaves out: for a ring rule, phones with no live binding and public
/// numbers no outbound rule of the organization matches; for an outbound call, the trunks passed
/// over ([`skipped_trunks`]).
pub(super) fn skipped_targets(s: &Snapshot, route: &Route, reach: &Reach<'_>) -> Vec<String> {
    let (location, now) = (reach.location, reach.now);
    let rule = match route {
        Route::Inbound {
            target: InboundTarget::RingRule(r),
            ..
        } => Some(*r),
        Route::Inbound {
            target: InboundTarget::Extension(e),
            ..
        }
        | Route::Internal { callee: e, .. } => s.index.ring_rule_by_extension.get(e).copied(),
        Route::Outbound { trunks, .. } => return skipped_trunks(s, trunks, reach),
    };
    let Some(rule) = rule.map(|r| &s.ring_rules[r.index()]) else {
        return Vec::new();
    };
    let outbound = s.index.outbound_rules_by_org.get(&rule.organization);
    rule.targets
        .iter()
        .filter_map(|t| match t {
            RingTarget::Extension(e) => {
                let ext = &s.extensions[e.index()];
                let domain = &s.organizations[ext.organization.index()].domain;
                let bound = ext.pbx.is_some()
                    || !location
                        .lookup(&Aor::new(domain, &ext.number), now)
                        .is_empty();
                (!bound).then(|| format!("ring target {}: not registered", extension_name(s, *e)))
            }
            RingTarget::Public(n) => {
                let number = n.trim_start_matches('+');
                let matched = outbound
                    .into_iter()
                    .flatten()
                    .any(|&i| s.outbound_rules[i].pattern.is_match(number));
                (!matched).then(|| format!("ring target {n}: no outbound rule matches"))
            }
        })
        .collect()
}

//! What a routed call becomes (spec call-control 4 and 7): the units the call itself holds, and
//! the callee targets to ring, each with its ways to be reached and the units each way holds.
//! Pure over the snapshot, the registrar's bindings and the trunks' availability: the B2BUA admits
//! and starts what this returns.
//!
//! A call rings one [`Target`] (an extension, a trunk for a dialled number) or, through a ring
//! rule, several at once. A target's [`Choice`]s are tried one after another: a choice whose units
//! are full is skipped at admission, and one whose legs all fail with 408, 5xx or a timeout gives
//! way to the next (outbound failover). A choice rings all its legs at once: a phone with several
//! bindings forks to each of them on the target's units.

use std::time::{Duration, Instant};

use super::{InboundTarget, Route, RouteError};
use crate::b2bua::Dest;
use crate::config::model::{ExtId, RingRule, RingTarget, Snapshot, TrunkId};
use crate::limits::{PathSpec, RuleOwner};
use crate::registrar::{Aor, LocationStore};
use crate::sip::Request;

/// Whether a trunk may carry a call now (its health probes answer, it is registered). Keyed by
/// name: ids change with every reload.
pub trait TrunkAvailability: Send + Sync {
    /// False when outbound rules must skip the trunk.
    fn is_available(&self, trunk: &str) -> bool;
}

/// Every trunk is available (no health probing).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllAvailable;

impl TrunkAvailability for AllAvailable {
    fn is_available(&self, _trunk: &str) -> bool {
        true
    }
}

/// What routing may look at besides the snapshot.
pub struct Reach<'a> {
    /// Registered phones' bindings.
    pub location: &'a LocationStore,
    /// The time bindings are judged at.
    pub now: Instant,
    /// Trunks' availability.
    pub trunks: &'a dyn TrunkAvailability,
}

/// P-Asserted-Identity and Privacy on a callee leg (RFC 3325: an identity is asserted only inside
/// a trust domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// From a trusted trunk: the provider's PAI and Privacy cross.
    Trusted,
    /// From an untrusted trunk: neither crosses (anyone can write them).
    Untrusted,
    /// From a PBX or phone: its PAI is dropped (a tenant must not claim any number), callgate
    /// asserts this number when it has one, and the caller's Privacy request crosses so the
    /// provider withholds the asserted number when asked to (RFC 3323).
    Extension(Option<String>),
}

/// One callee leg to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegPlan {
    /// Where its INVITE goes.
    pub dest: Dest,
    /// User part of its Request-URI and To.
    pub user: String,
    /// The Request-URI when it is not `user@dest` (a phone's registered contact).
    pub request_uri: Option<String>,
    /// User part of its From.
    pub from_user: String,
    /// What it asserts about the caller.
    pub identity: Identity,
}

/// One way to reach a target: the units it holds and the legs rung at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The units this way holds on top of the call's own (`None`: the call's cover it).
    pub spec: Option<PathSpec>,
    /// The trunk it goes through, for failover logs and `/calls`.
    pub trunk: Option<TrunkId>,
    /// Its legs (several for a phone with several bindings).
    pub legs: Vec<LegPlan>,
}

/// One callee: its ways to be reached, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Tried in order (spec 7: the next trunk when one is full or failing).
    pub choices: Vec<Choice>,
}

/// A routed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The units the call itself holds (`None`: only its legs' units, an outbound call).
    pub incoming: Option<PathSpec>,
    /// The targets rung at once, started in this order.
    pub targets: Vec<Target>,
    /// How long they ring (a ring rule's `ring_time`); `None`: the server's ring timeout.
    pub ring_time: Option<Duration>,
}

/// The plan of `route` for the caller's INVITE `req`.
pub fn plan(
    s: &Snapshot,
    route: &Route,
    reach: &Reach<'_>,
    req: &Request,
) -> Result<Plan, RouteError> {
    match route {
        Route::Internal { caller, callee } => {
            let from_user = s.extensions[caller.index()].number.clone();
            let incoming = PathSpec::LocalToLocal {
                caller: *caller,
                callee: *callee,
            };
            let caller_id = CallerId {
                from_user,
                identity: Identity::Extension(None),
            };
            let plan = to_extension(s, reach, incoming, *callee, None, &caller_id);
            // A colleague's rule that lists the caller does not ring the caller back.
            plan.map(|p| without_caller(p, *caller))
        }
        Route::Outbound {
            caller,
            trunks,
            number,
        } => outbound(s, reach, *caller, trunks, number),
        Route::Inbound { trunk, target, did } => {
            let trusted = s.trunks[trunk.index()].trusted;
            let identity = if trusted && !super::caller_id::asks_privacy(req) {
                Identity::Trusted
            } else {
                Identity::Untrusted
            };
            match *target {
                InboundTarget::Extension(callee) => {
                    let caller_id = CallerId {
                        from_user: inbound_caller(s, callee, req, trusted),
                        identity,
                    };
                    let incoming = PathSpec::PublicToLocal {
                        trunk: *trunk,
                        callee,
                    };
                    to_extension(s, reach, incoming, callee, Some(did), &caller_id)
                }
                InboundTarget::RingRule(r) => {
                    let rule = &s.ring_rules[r.index()];
                    let incoming = match rule.extension {
                        Some(callee) => PathSpec::PublicToLocal {
                            trunk: *trunk,
                            callee,
                        },
                        None => PathSpec::PublicToOrganization {
                            trunk: *trunk,
                            organization: rule.organization,
                        },
                    };
                    let owner_ext = rule.extension.or_else(|| first_extension(rule));
                    let from_user = match owner_ext {
                        Some(e) => inbound_caller(s, e, req, trusted),
                        None => super::caller_id::inbound_from_user(req, trusted),
                    };
                    let caller_id = CallerId {
                        from_user,
                        identity,
                    };
                    fork(s, reach, incoming, rule, &caller_id, did)
                }
            }
        }
    }
}

/// Who the callee legs say is calling.
struct CallerId {
    from_user: String,
    identity: Identity,
}

/// A call to one extension: its ring rule when it owns one, else its legs.
fn to_extension(
    s: &Snapshot,
    reach: &Reach<'_>,
    incoming: PathSpec,
    callee: ExtId,
    did: Option<&String>,
    caller: &CallerId,
) -> Result<Plan, RouteError> {
    if let Some(r) = s.index.ring_rule_by_extension.get(&callee) {
        let did = did.cloned().unwrap_or_default();
        return fork(s, reach, incoming, &s.ring_rules[r.index()], caller, &did);
    }
    let legs = extension_legs(s, reach, callee, did, caller);
    if legs.is_empty() {
        return Err(RouteError::Unreachable(
            s.extensions[callee.index()].number.clone(),
        ));
    }
    Ok(Plan {
        incoming: Some(incoming),
        targets: vec![Target {
            choices: vec![Choice {
                spec: None,
                trunk: None,
                legs,
            }],
        }],
        ring_time: None,
    })
}

/// An extension's legs: a PBX at its fixed address (the DID kept in Request-URI and To), a phone
/// at each live binding over the flow it came in on (symmetric signalling through its NAT), the
/// most recent first; none for a phone without a binding.
fn extension_legs(
    s: &Snapshot,
    reach: &Reach<'_>,
    ext: ExtId,
    did: Option<&String>,
    caller: &CallerId,
) -> Vec<LegPlan> {
    let e = &s.extensions[ext.index()];
    let leg = |dest: Dest, user: String, request_uri: Option<String>| LegPlan {
        dest,
        user,
        request_uri,
        from_user: caller.from_user.clone(),
        identity: caller.identity.clone(),
    };
    if let Some(pbx) = &e.pbx {
        let dest = Dest {
            transport: pbx.transport,
            addr: pbx.address,
        };
        let user = did.filter(|d| !d.is_empty()).cloned();
        return vec![leg(dest, user.unwrap_or_else(|| e.number.clone()), None)];
    }
    let domain = &s.organizations[e.organization.index()].domain;
    let mut bindings = reach
        .location
        .lookup(&Aor::new(domain, &e.number), reach.now);
    bindings.sort_by_key(|b| std::cmp::Reverse(b.registered_at));
    bindings
        .into_iter()
        .map(|b| {
            let dest = Dest {
                transport: b.flow.transport,
                addr: b.flow.source,
            };
            leg(dest, e.number.clone(), Some(b.contact))
        })
        .collect()
}

/// An extension's call to a public number: one target, the rule's trunks in order.
fn outbound(
    s: &Snapshot,
    reach: &Reach<'_>,
    caller: ExtId,
    trunks: &[TrunkId],
    number: &str,
) -> Result<Plan, RouteError> {
    let ext = &s.extensions[caller.index()];
    let caller_id = CallerId {
        from_user: ext
            .outbound_caller_id
            .clone()
            .unwrap_or_else(|| ext.number.clone()),
        identity: Identity::Extension(ext.outbound_caller_id.clone()),
    };
    let choices = trunk_choices(s, reach, trunks, number, &caller_id, |trunk| {
        PathSpec::LocalToPublic { caller, trunk }
    });
    if choices.is_empty() {
        return Err(RouteError::Unreachable(number.to_owned()));
    }
    Ok(Plan {
        incoming: None,
        targets: vec![Target { choices }],
        ring_time: None,
    })
}

/// One choice per available trunk with somewhere to send to, in the rule's order.
fn trunk_choices(
    s: &Snapshot,
    reach: &Reach<'_>,
    trunks: &[TrunkId],
    number: &str,
    caller: &CallerId,
    spec: impl Fn(TrunkId) -> PathSpec,
) -> Vec<Choice> {
    trunks
        .iter()
        .filter(|t| reach.trunks.is_available(&s.trunks[t.index()].name))
        .filter_map(|&trunk| {
            let to = super::trunk_dest(s, reach.location, trunk, reach.now)?;
            let dest = Dest {
                transport: to.transport,
                addr: to.addr,
            };
            Some(Choice {
                spec: Some(spec(trunk)),
                trunk: Some(trunk),
                legs: vec![LegPlan {
                    dest,
                    user: number.to_owned(),
                    request_uri: to.request_uri(number),
                    from_user: caller.from_user.clone(),
                    identity: caller.identity.clone(),
                }],
            })
        })
        .collect()
}

/// A ring rule's targets (spec 4): each local target on its own `ForkLocalLeg` units, each public
/// target through the organization's outbound rules on `ForkPublicLeg` units of the rule's owner.
/// A target that cannot be reached (a phone without a binding, a number no rule matches) is
/// skipped; with none left the call is unreachable.
fn fork(
    s: &Snapshot,
    reach: &Reach<'_>,
    incoming: PathSpec,
    rule: &RingRule,
    caller: &CallerId,
    did: &str,
) -> Result<Plan, RouteError> {
    let owner = match rule.extension {
        Some(e) => RuleOwner::User(s.extensions[e.index()].user),
        None => RuleOwner::Organization(rule.organization),
    };
    let mut targets = Vec::with_capacity(rule.targets.len());
    for t in &rule.targets {
        let choices = match t {
            RingTarget::Extension(e) => {
                let legs = extension_legs(s, reach, *e, None, caller);
                let spec = Some(PathSpec::ForkLocalLeg { target: *e });
                let choice = Choice {
                    spec,
                    trunk: None,
                    legs,
                };
                if choice.legs.is_empty() {
                    Vec::new()
                } else {
                    vec![choice]
                }
            }
            RingTarget::Public(number) => public_choices(s, reach, rule, owner, number, caller),
        };
        if !choices.is_empty() {
            targets.push(Target { choices });
        }
    }
    if targets.is_empty() {
        return Err(RouteError::Unreachable(did.to_owned()));
    }
    Ok(Plan {
        incoming: Some(incoming),
        targets,
        ring_time: Some(rule.ring_time),
    })
}

/// A public ring target: the first outbound rule of the rule's organization matching the number
/// gives the trunks (after strip/prepend). The leg shows the original caller in From and asserts
/// the owner extension's outbound caller ID (the number the provider bills).
fn public_choices(
    s: &Snapshot,
    reach: &Reach<'_>,
    rule: &RingRule,
    owner: RuleOwner,
    number: &str,
    caller: &CallerId,
) -> Vec<Choice> {
    let number = number.trim_start_matches('+');
    let rules = s.index.outbound_rules_by_org.get(&rule.organization);
    let Some(out) = rules
        .into_iter()
        .flatten()
        .map(|&i| &s.outbound_rules[i])
        .find(|r| r.pattern.is_match(number))
    else {
        return Vec::new();
    };
    let sent = format!("{}{}", out.prepend, number.get(out.strip..).unwrap_or(""));
    let asserted = rule
        .extension
        .and_then(|e| s.extensions[e.index()].outbound_caller_id.clone());
    let caller = CallerId {
        from_user: caller.from_user.clone(),
        identity: Identity::Extension(asserted),
    };
    trunk_choices(s, reach, &out.trunks, &sent, &caller, |trunk| {
        PathSpec::ForkPublicLeg { owner, trunk }
    })
}

/// `plan` without the ring target that is `caller` itself, unless that would leave nothing to
/// ring.
fn without_caller(mut plan: Plan, caller: ExtId) -> Plan {
    if plan.targets.len() < 2 {
        return plan;
    }
    let own =
        |c: &Choice| matches!(c.spec, Some(PathSpec::ForkLocalLeg { target }) if target == caller);
    let kept: Vec<Target> = plan
        .targets
        .iter()
        .filter(|t| !t.choices.iter().any(own))
        .cloned()
        .collect();
    if !kept.is_empty() {
        plan.targets = kept;
    }
    plan
}

fn first_extension(rule: &RingRule) -> Option<ExtId> {
    rule.targets.iter().find_map(|t| match t {
        RingTarget::Extension(e) => Some(*e),
        RingTarget::Public(_) => None,
    })
}

/// The From user the callee of an inbound call sees. A caller presenting a number that is an
/// extension of the callee's organization is shown as anonymous: an internal call from that
/// extension looks the same, so a spoofed From would pass for a colleague (a voicemail PIN
/// prompt skipped, a social-engineering call).
fn inbound_caller(s: &Snapshot, callee: ExtId, req: &Request, trusted: bool) -> String {
    let user = super::caller_id::inbound_from_user(req, trusted);
    let org = &s.organizations[s.extensions[callee.index()].organization.index()];
    if s.extension_at(&org.domain, &user).is_some() {
        tracing::info!(call_id = %req.parts().call_id(), caller = %user, "inbound caller presents an internal extension number; shown as anonymous");
        return super::caller_id::ANONYMOUS.to_owned();
    }
    user
}

//! Validation of trunks, DID pools and the inbound, outbound and ring rules (spec call-control 7).

use std::collections::HashMap;
use std::net::IpAddr;

use regex::Regex;

use super::did::{covers, cross_org_overlaps, is_public_number, parse_dids, range_text, PoolRange};
use super::issue::{Entity, Problem};
use super::model::{
    Destination, DidPool, DidRange, ExtId, InboundRule, OrgId, OutboundRule, Probe, RingRule,
    RingRuleId, RingTarget, Trunk, TrunkId, TrunkKind,
};
use super::schema::{RawTrunk, RawTrunkKind};
use super::validate::{to_u32, Build};

pub(crate) fn trunks(b: &mut Build<'_>) -> Vec<Trunk> {
    let raw = b.raw;
    b.trunk_by_name = b.unique_names(
        raw.trunk.iter().map(|t| t.name.as_str()),
        |n| Entity::Trunk(n.to_owned()),
        TrunkId,
    );
    let mut out = Vec::with_capacity(raw.trunk.len());
    for t in &raw.trunk {
        let ent = || Entity::Trunk(t.name.clone());
        let kind = kind_requirements(b, t);
        let address = t
            .address
            .as_deref()
            .map(|a| b.socket_addr(ent, "address", a));
        let associated_ips = t
            .associated_ips
            .iter()
            .filter_map(|ip| b.ip(ent, "associated_ips", ip))
            .collect();
        let register_expires = t
            .register_expires
            .as_deref()
            .map(|d| b.duration(ent, "register_expires", d));
        let register_retry = t
            .register_retry
            .as_deref()
            .map(|d| b.duration(ent, "register_retry", d));
        if register_retry.is_some() && kind != TrunkKind::Register {
            b.error(
                ent(),
                "register_retry",
                Problem::RegisterRetryWithoutRegister,
            );
        }
        let owner = t.organization.as_deref().and_then(|o| {
            let id = b.org_by_name.get(o).copied();
            if id.is_none() {
                b.error(ent(), "organization", unknown("organization", o));
            }
            id
        });
        b.trunk_owner.push(owner);
        out.push(Trunk {
            name: t.name.clone(),
            kind,
            address,
            transport: b.outbound_transport(ent, "transport", t.transport),
            associated_ips,
            username: t.username.clone(),
            password: t.password.clone(),
            register_expires,
            register_retry,
            probe: probe(b, t),
            organization: owner,
            max_calls: t.max_calls,
            max_inbound: t.max_inbound,
            max_outbound: t.max_outbound,
            cps: b.cps(ent, t.cps),
            trusted: t.trusted,
        });
    }
    shared_trunk_ips(b, &out);
    shared_accept_register_usernames(b, &out);
    out
}

/// An `accept-register` trunk's REGISTER is recognised by its To user (the trunk's `username`)
/// at a host that is no organization's domain, so the username must name one trunk. It cannot be
/// confused with an extension: an extension's REGISTER names its organization's domain.
fn shared_accept_register_usernames(b: &mut Build<'_>, trunks: &[Trunk]) {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for t in trunks
        .iter()
        .filter(|t| t.kind == TrunkKind::AcceptRegister)
    {
        let Some(username) = t.username.as_deref().filter(|u| !u.is_empty()) else {
            continue;
        };
        if !username.bytes().all(is_user_unescaped) {
            let problem = Problem::TrunkUsernameNotUserPart {
                username: username.to_owned(),
            };
            b.error(Entity::Trunk(t.name.clone()), "username", problem);
        }
        if let Some(other) = owner.get(username) {
            let problem = Problem::TrunkUsernameShared {
                username: username.to_owned(),
                other: (*other).to_owned(),
            };
            b.error(Entity::Trunk(t.name.clone()), "username", problem);
        } else {
            owner.insert(username, &t.name);
        }
    }
}

/// ip needs an address; register needs address, username and password; accept-register needs
/// username and password.
fn kind_requirements(b: &mut Build<'_>, t: &RawTrunk) -> TrunkKind {
    let (kind, name, needs_address, needs_credentials) = match t.kind {
        RawTrunkKind::Ip => (TrunkKind::Ip, "ip", true, false),
        RawTrunkKind::Register => (TrunkKind::Register, "register", true, true),
        RawTrunkKind::AcceptRegister => (TrunkKind::AcceptRegister, "accept-register", false, true),
    };
    let missing = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
    let mut require = |field, absent: bool| {
        if absent {
            let problem = Problem::TrunkKindRequires { kind: name };
            b.error(Entity::Trunk(t.name.clone()), field, problem);
        }
    };
    require("address", needs_address && t.address.is_none());
    require("username", needs_credentials && missing(&t.username));
    require("password", needs_credentials && missing(&t.password));
    kind
}

/// Whether `b` may stand unescaped in a SIP URI's user part (RFC 3261 25.1: `unreserved` and
/// `user-unreserved`), less `;` and `?`, which many parsers take for the start of URI
/// parameters or headers.
fn is_user_unescaped(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,/".contains(&b)
}

/// Default `probe_misses`: one lost datagram is no outage, three in a row are (Kamailio's
/// dispatcher defaults to the same threshold).
pub(crate) const DEFAULT_PROBE_MISSES: u32 = 3;

/// `probe_interval` / `probe_misses`: only on kinds with an address to probe.
fn probe(b: &mut Build<'_>, t: &RawTrunk) -> Option<Probe> {
    let ent = || Entity::Trunk(t.name.clone());
    if t.probe_misses == Some(0) {
        b.error(ent(), "probe_misses", Problem::Zero);
    }
    if t.probe_misses.is_some() && t.probe_interval.is_none() {
        b.error(ent(), "probe_misses", Problem::ProbeMissesWithoutInterval);
    }
    let interval = b.duration(ent, "probe_interval", t.probe_interval.as_deref()?);
    if t.kind == RawTrunkKind::AcceptRegister {
        b.error(ent(), "probe_interval", Problem::ProbeWithoutAddress);
    }
    Some(Probe {
        interval,
        misses: t.probe_misses.unwrap_or(DEFAULT_PROBE_MISSES).max(1),
    })
}

/// An `ip` trunk is recognised only by source IP, so its IPs must be its own.
fn shared_trunk_ips(b: &mut Build<'_>, trunks: &[Trunk]) {
    let mut owner: HashMap<IpAddr, usize> = HashMap::new();
    for (i, t) in trunks.iter().enumerate() {
        if t.kind != TrunkKind::Ip {
            continue;
        }
        let ips = t.address.map(|a| a.ip()).into_iter();
        for ip in ips.chain(t.associated_ips.iter().copied()) {
            match owner.get(&ip) {
                Some(&other) if other != i => {
                    let problem = Problem::TrunkIpShared {
                        ip: ip.to_string(),
                        other: trunks[other].name.clone(),
                    };
                    b.error(Entity::Trunk(t.name.clone()), "address", problem);
                }
                Some(_) => {}
                None => {
                    owner.insert(ip, i);
                }
            }
        }
    }
}

pub(crate) fn did_pools(b: &mut Build<'_>) -> Vec<DidPool> {
    let raw = b.raw;
    let mut out = Vec::with_capacity(raw.did_pool.len());
    let mut sweep = Vec::new();
    let mut by_org_trunk: HashMap<(OrgId, TrunkId), Vec<DidRange>> = HashMap::new();
    for (i, p) in raw.did_pool.iter().enumerate() {
        let ent = || Entity::DidPool {
            position: i + 1,
            trunk: p.trunk.clone(),
            organization: p.organization.clone(),
        };
        let org = org_ref(b, ent, &p.organization);
        let trunk = trunk_ref(b, ent, "trunk", &p.trunk, org);
        if p.dids.is_empty() {
            b.error(ent(), "dids", Problem::Empty);
        }
        let mut ranges = Vec::with_capacity(p.dids.len());
        for text in &p.dids {
            match parse_dids(text) {
                Ok(r) => ranges.push(r),
                Err(problem) => b.error(ent(), "dids", problem),
            }
        }
        if let (Some(org), Some(trunk)) = (org, trunk) {
            for &range in &ranges {
                sweep.push(PoolRange {
                    trunk,
                    range,
                    org,
                    pool: i,
                });
            }
            by_org_trunk
                .entry((org, trunk))
                .or_default()
                .extend_from_slice(&ranges);
        }
        out.push(DidPool {
            trunk: trunk.unwrap_or(TrunkId(0)),
            organization: org.unwrap_or(OrgId(0)),
            ranges,
        });
    }
    for (p, other) in cross_org_overlaps(sweep) {
        let rp = &raw.did_pool[p.pool];
        let ent = Entity::DidPool {
            position: p.pool + 1,
            trunk: rp.trunk.clone(),
            organization: rp.organization.clone(),
        };
        let problem = Problem::PoolOverlap {
            dids: range_text(p.range),
            other: raw.organization[other.index()].name.clone(),
        };
        b.error(ent, "dids", problem);
    }
    b.set_pools(by_org_trunk);
    out
}

pub(crate) fn ring_rules(b: &mut Build<'_>) -> Vec<RingRule> {
    let raw = b.raw;
    let mut out = Vec::with_capacity(raw.ring_rule.len());
    let mut owners = std::collections::HashSet::new();
    for (i, r) in raw.ring_rule.iter().enumerate() {
        let ent = || Entity::RingRule {
            name: r.name.clone(),
            organization: r.organization.clone(),
        };
        let org = org_ref(b, ent, &r.organization);
        if r.name.is_empty() {
            b.error(ent(), "name", Problem::Empty);
        } else if let Some(org) = org {
            let id = RingRuleId(to_u32(i));
            if b.ring_by_name.insert((org, r.name.as_str()), id).is_some() {
                let problem = Problem::DuplicateName {
                    name: r.name.clone(),
                };
                b.error(ent(), "name", problem);
            }
        }
        if r.targets.is_empty() {
            b.error(ent(), "targets", Problem::Empty);
        }
        let mut targets = Vec::with_capacity(r.targets.len());
        for t in &r.targets {
            // An extension number wins over a public number (spec config: routing).
            let ext = org.and_then(|o| b.ext_by_number.get(&(o, t.as_str())).copied());
            match ext {
                Some(e) => targets.push(RingTarget::Extension(e)),
                None if is_public_number(t) => targets.push(RingTarget::Public(t.clone())),
                None if org.is_none() => {}
                None => b.error(ent(), "targets", Problem::RingTargetUnknown(t.clone())),
            }
        }
        let ring_time = b.duration(ent, "ring_time", &r.ring_time);
        let extension = ring_owner(b, ent, org, r.extension.as_deref(), &mut owners);
        out.push(RingRule {
            name: r.name.clone(),
            organization: org.unwrap_or(OrgId(0)),
            targets,
            ring_time,
            extension,
        });
    }
    out
}

/// The extension a ring rule belongs to: one of the rule's organization, owning at most one rule
/// (its calls could follow only one).
fn ring_owner(
    b: &mut Build<'_>,
    ent: impl Fn() -> Entity,
    org: Option<OrgId>,
    number: Option<&str>,
    owners: &mut std::collections::HashSet<ExtId>,
) -> Option<ExtId> {
    let (number, org) = (number?, org?);
    let Some(ext) = b.ext_by_number.get(&(org, number)).copied() else {
        b.error(ent(), "extension", unknown("extension", number));
        return None;
    };
    if !owners.insert(ext) {
        let problem = Problem::DuplicateName {
            name: number.to_owned(),
        };
        b.error(ent(), "extension", problem);
        return None;
    }
    Some(ext)
}

pub(crate) fn inbound_rules(b: &mut Build<'_>) -> Vec<InboundRule> {
    let raw = b.raw;
    let mut out = Vec::with_capacity(raw.inbound_rule.len());
    for (i, r) in raw.inbound_rule.iter().enumerate() {
        let ent = || Entity::InboundRule {
            position: i + 1,
            organization: r.organization.clone(),
        };
        let org = org_ref(b, ent, &r.organization);
        let trunk = trunk_ref(b, ent, "trunk", &r.trunk, org);
        let dids = match parse_dids(&r.dids) {
            Ok(d) => Some(d),
            Err(problem) => {
                b.error(ent(), "dids", problem);
                None
            }
        };
        if let (Some(org), Some(trunk), Some(d)) = (org, trunk, dids) {
            let inside = b
                .pools_by_org_trunk
                .get(&(org, trunk))
                .is_some_and(|pools| covers(pools, d));
            if !inside {
                let problem = Problem::InboundOutsidePool {
                    dids: r.dids.clone(),
                    trunk: r.trunk.clone(),
                };
                b.error(ent(), "dids", problem);
            }
        }
        let destination = destination(b, ent, r, org);
        out.push(InboundRule {
            organization: org.unwrap_or(OrgId(0)),
            trunk: trunk.unwrap_or(TrunkId(0)),
            dids: dids.unwrap_or(DidRange { start: 0, end: 0 }),
            destination: destination.unwrap_or(Destination::RingRule(RingRuleId(0))),
        });
    }
    out
}

fn destination(
    b: &mut Build<'_>,
    ent: impl Fn() -> Entity,
    r: &super::schema::RawInboundRule,
    org: Option<OrgId>,
) -> Option<Destination> {
    let d = &r.destination;
    match (&d.extension, &d.ring_rule) {
        (Some(number), None) => {
            let org = org?;
            let ext = b.ext_by_number.get(&(org, number.as_str())).copied();
            if ext.is_none() {
                b.error(ent(), "destination", unknown("extension", number));
            }
            ext.map(Destination::Extension)
        }
        (None, Some(name)) => {
            let org = org?;
            let rule = b.ring_by_name.get(&(org, name.as_str())).copied();
            if rule.is_none() {
                b.error(ent(), "destination", unknown("ring_rule", name));
            }
            rule.map(Destination::RingRule)
        }
        _ => {
            b.error(ent(), "destination", Problem::DestinationNotExactlyOne);
            None
        }
    }
}

pub(crate) fn outbound_rules(b: &mut Build<'_>) -> Vec<OutboundRule> {
    let raw = b.raw;
    let mut out = Vec::with_capacity(raw.outbound_rule.len());
    // Stands in for an invalid pattern; the file is refused then, so it never matches anything.
    let placeholder = Regex::new("$^").expect("invariant: valid regex");
    for (i, r) in raw.outbound_rule.iter().enumerate() {
        let ent = || Entity::OutboundRule {
            position: i + 1,
            organization: r.organization.clone(),
        };
        let org = org_ref(b, ent, &r.organization);
        let pattern = match Regex::new(&r.pattern) {
            Ok(re) => Some(re),
            Err(e) => {
                b.error(ent(), "pattern", Problem::InvalidRegex(e.to_string()));
                None
            }
        };
        if r.trunks.is_empty() {
            b.error(ent(), "trunks", Problem::Empty);
        }
        let trunks = r
            .trunks
            .iter()
            .filter_map(|t| trunk_ref(b, ent, "trunks", t, org))
            .collect();
        out.push(OutboundRule {
            organization: org.unwrap_or(OrgId(0)),
            pattern: pattern.unwrap_or_else(|| placeholder.clone()),
            trunks,
            strip: r.strip,
            prepend: r.prepend.clone(),
        });
    }
    out
}

fn unknown(kind: &'static str, name: &str) -> Problem {
    Problem::UnknownReference {
        kind,
        name: name.to_owned(),
    }
}

fn org_ref(b: &mut Build<'_>, ent: impl Fn() -> Entity, name: &str) -> Option<OrgId> {
    let id = b.org_by_name.get(name).copied();
    if id.is_none() {
        b.error(ent(), "organization", unknown("organization", name));
    }
    id
}

/// Resolves a trunk used by `org`: it must exist and be server-owned or owned by `org`.
fn trunk_ref(
    b: &mut Build<'_>,
    ent: impl Fn() -> Entity,
    field: &'static str,
    name: &str,
    org: Option<OrgId>,
) -> Option<TrunkId> {
    let Some(id) = b.trunk_by_name.get(name).copied() else {
        b.error(ent(), field, unknown("trunk", name));
        return None;
    };
    if let (Some(owner), Some(org)) = (b.trunk_owner[id.index()], org) {
        if owner != org {
            let problem = Problem::TrunkNotShared {
                trunk: name.to_owned(),
                owner: b.raw.organization[owner.index()].name.clone(),
            };
            b.error(ent(), field, problem);
        }
    }
    Some(id)
}

//! Validation of the tenancy tree: service providers, organizations, users and extensions,
//! including the SIP trunking extension rules of spec call-control 5.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::did::{covers, parse_dids};
use super::issue::{Entity, Problem};
use super::model::{
    Credentials, ExtId, Extension, OrgId, Organization, Pbx, ServiceProvider, SpId, User, UserId,
};
use super::schema::RawExtension;
use super::validate::{limits, to_u32, Build};

/// Widest `allowed_networks` entry: a /24 for IPv4. For IPv6 the equivalent chosen is a /64, the
/// smallest subnet IPv6 hosts are numbered in (SLAAC and privacy addresses roam within it, so a
/// narrower bound would refuse ordinary sites).
const MIN_PREFIX_V4: u8 = 24;
const MIN_PREFIX_V6: u8 = 64;

pub(crate) fn service_providers(b: &mut Build<'_>) -> Vec<ServiceProvider> {
    let raw = b.raw;
    b.sp_by_name = b.unique_names(
        raw.service_provider.iter().map(|s| s.name.as_str()),
        |n| Entity::ServiceProvider(n.to_owned()),
        SpId,
    );
    raw.service_provider
        .iter()
        .map(|s| ServiceProvider {
            name: s.name.clone(),
            limits: limits(s.limits),
            cps: b.cps(|| Entity::ServiceProvider(s.name.clone()), s.cps),
        })
        .collect()
}

pub(crate) fn organizations(b: &mut Build<'_>) -> Vec<Organization> {
    let raw = b.raw;
    b.org_by_name = b.unique_names(
        raw.organization.iter().map(|o| o.name.as_str()),
        |n| Entity::Organization(n.to_owned()),
        OrgId,
    );
    let mut domains: HashMap<String, &str> = HashMap::new();
    let mut out = Vec::with_capacity(raw.organization.len());
    for o in &raw.organization {
        let entity = || Entity::Organization(o.name.clone());
        let sp = b.sp_by_name.get(o.service_provider.as_str()).copied();
        if sp.is_none() {
            let problem = unknown("service_provider", &o.service_provider);
            b.error(entity(), "service_provider", problem);
        }
        b.org_sp.push(sp);
        // Domains compare case-insensitively (RFC 3261 19.1.4: hosts are case-insensitive).
        let domain = o.domain.to_ascii_lowercase();
        if domain.is_empty() {
            b.error(entity(), "domain", Problem::Empty);
        } else if let Some(other) = domains.get(&domain) {
            let problem = Problem::DuplicateDomain {
                domain: domain.clone(),
                other: (*other).to_owned(),
            };
            b.error(entity(), "domain", problem);
        } else {
            domains.insert(domain.clone(), &o.name);
        }
        out.push(Organization {
            name: o.name.clone(),
            service_provider: sp.unwrap_or(SpId(0)),
            domain,
            limits: limits(o.limits),
            cps: b.cps(entity, o.cps),
            digest_sha256: o.digest_sha256.unwrap_or(b.raw.server.digest_sha256),
        });
    }
    out
}

pub(crate) fn users(b: &mut Build<'_>) -> Vec<User> {
    let raw = b.raw;
    b.user_by_name = b.unique_names(
        raw.user.iter().map(|u| u.name.as_str()),
        |n| Entity::User(n.to_owned()),
        UserId,
    );
    let mut out = Vec::with_capacity(raw.user.len());
    for u in &raw.user {
        let org = b.org_by_name.get(u.organization.as_str()).copied();
        if org.is_none() {
            let problem = unknown("organization", &u.organization);
            b.error(Entity::User(u.name.clone()), "organization", problem);
        }
        b.user_org.push(org);
        out.push(User {
            name: u.name.clone(),
            organization: org.unwrap_or(OrgId(0)),
            limits: limits(u.limits),
        });
    }
    out
}

pub(crate) fn extensions(b: &mut Build<'_>) -> Vec<Extension> {
    let raw = b.raw;
    let mut out = Vec::with_capacity(raw.extension.len());
    // PBX IP -> (extension position, authenticates), to check sharing once all are known.
    let mut pbx_ips: Vec<(IpAddr, usize, bool)> = Vec::new();
    for (i, e) in raw.extension.iter().enumerate() {
        let user = b.user_by_name.get(e.user.as_str()).copied();
        let org = user.and_then(|u| b.user_org[u.index()]);
        // Built only when an issue is recorded: most extensions have none.
        let ent = &|| ext_entity(raw, e, org);
        if user.is_none() {
            b.error(ent(), "user", unknown("user", &e.user));
        }
        number(b, ent, e, org, i);
        let credentials = credentials(b, ent, e);
        if let Some(Credentials::Ha1 {
            md5: None,
            sha256: Some(_),
        }) = &credentials
        {
            // Only a SHA-256 answer can match, and only organizations that opted in send a
            // SHA-256 challenge: every REGISTER of this extension would be refused.
            let server = raw.server.digest_sha256;
            let offered = org
                .and_then(|o| raw.organization.get(o.index()))
                .map_or(server, |o| o.digest_sha256.unwrap_or(server));
            if !offered {
                b.error(ent(), "ha1_sha256", Problem::Sha256HashNeverChallenged);
            }
        }
        if let (Some(out), Some(calls)) = (e.max_outgoing, e.max_calls) {
            if out > calls {
                let problem = Problem::MaxOutgoingAboveMaxCalls {
                    max_outgoing: out,
                    max_calls: calls,
                };
                b.warning(ent(), "max_outgoing", problem);
            }
        }
        let allowed_networks = networks(b, ent, &e.allowed_networks);
        if let (Some(id), Some(org)) = (&e.outbound_caller_id, org) {
            caller_id(b, ent, org, id);
        }
        let pbx = e.pbx.as_ref().map(|p| Pbx {
            address: b.socket_addr(ent, "pbx", &p.address),
            transport: b.outbound_transport(ent, "pbx", p.transport),
            authenticate: p.authenticate,
        });
        if let Some(pbx) = &pbx {
            sip_trunking(b, ent, user);
            pbx_ips.push((pbx.address.ip(), i, pbx.authenticate));
        }
        out.push(Extension {
            number: e.number.clone(),
            user: user.unwrap_or(UserId(0)),
            organization: org.unwrap_or(OrgId(0)),
            credentials,
            max_calls: e.max_calls,
            max_outgoing: e.max_outgoing,
            outbound_caller_id: e.outbound_caller_id.clone(),
            allowed_networks,
            pbx,
        });
    }
    shared_pbx_ips(b, &out, pbx_ips);
    out
}

/// Builds the entity of the extension being checked, only when an issue needs it.
type Ent<'a> = &'a dyn Fn() -> Entity;

fn unknown(kind: &'static str, name: &str) -> Problem {
    Problem::UnknownReference {
        kind,
        name: name.to_owned(),
    }
}

fn ext_entity(raw: &super::schema::RawConfig, e: &RawExtension, org: Option<OrgId>) -> Entity {
    Entity::Extension {
        number: e.number.clone(),
        organization: org.map(|o| raw.organization[o.index()].name.clone()),
    }
}

/// Number syntax and uniqueness within the organization.
fn number<'r>(b: &mut Build<'r>, ent: Ent<'_>, e: &'r RawExtension, org: Option<OrgId>, i: usize) {
    let n = e.number.as_str();
    if n.is_empty() {
        b.error(ent(), "number", Problem::Empty);
        return;
    }
    let plain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_');
    if !n.bytes().all(plain) {
        let problem = Problem::InvalidExtensionNumber(n.to_owned());
        b.error(ent(), "number", problem);
    }
    if let Some(org) = org {
        match b.ext_by_number.entry((org, n)) {
            Entry::Occupied(_) => {
                let problem = Problem::DuplicateExtensionNumber {
                    number: n.to_owned(),
                };
                b.error(ent(), "number", problem);
            }
            Entry::Vacant(v) => {
                v.insert(ExtId(to_u32(i)));
            }
        }
    }
}

fn credentials(b: &mut Build<'_>, ent: Ent<'_>, e: &RawExtension) -> Option<Credentials> {
    let hashed = e.ha1.is_some() || e.ha1_sha256.is_some();
    let creds = match &e.password {
        Some(_) if hashed => {
            let key = if e.ha1.is_some() { "ha1" } else { "ha1_sha256" };
            b.error(ent(), key, Problem::PasswordAndHa1);
            None
        }
        Some(p) if p.is_empty() => {
            b.error(ent(), "password", Problem::Empty);
            None
        }
        Some(p) => Some(Credentials::Password(p.clone())),
        None if hashed => Some(Credentials::Ha1 {
            md5: hex_digest(b, ent, "ha1", e.ha1.as_deref(), 32),
            sha256: hex_digest(b, ent, "ha1_sha256", e.ha1_sha256.as_deref(), 64),
        }),
        None => None,
    };
    let has_secret = e.password.is_some() || hashed;
    match &e.pbx {
        Some(p) if p.authenticate && !has_secret => {
            b.error(ent(), "pbx", Problem::AuthenticateWithoutCredentials)
        }
        None if !has_secret => b.error(ent(), "password", Problem::PhoneWithoutCredentials),
        _ => {}
    }
    creds
}

/// A configured HA1 of `digits` hex digits, lowercase (what the response hashes); an issue
/// otherwise.
fn hex_digest(
    b: &mut Build<'_>,
    ent: Ent<'_>,
    key: &'static str,
    value: Option<&str>,
    digits: usize,
) -> Option<String> {
    let h = value?;
    if h.len() != digits || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        let problem = if digits == 32 {
            Problem::InvalidHa1
        } else {
            Problem::InvalidHa1Sha256
        };
        b.error(ent(), key, problem);
    }
    Some(h.to_ascii_lowercase())
}

/// Each entry is a network or a single address, no wider than a /24 (IPv4) or /64 (IPv6).
fn networks(b: &mut Build<'_>, ent: Ent<'_>, raw: &[String]) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(raw.len());
    for text in raw {
        let net = text
            .parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
        let Some(net) = net else {
            let problem = Problem::InvalidNetwork(text.clone());
            b.error(ent(), "allowed_networks", problem);
            continue;
        };
        let min = match net {
            IpNet::V4(_) => MIN_PREFIX_V4,
            IpNet::V6(_) => MIN_PREFIX_V6,
        };
        if net.prefix_len() < min {
            let problem = Problem::NetworkTooWide(text.clone());
            b.error(ent(), "allowed_networks", problem);
        }
        out.push(net.trunc());
    }
    out
}

fn caller_id(b: &mut Build<'_>, ent: Ent<'_>, org: OrgId, id: &str) {
    let in_pool = match parse_dids(id) {
        Ok(r) if r.start == r.end => b
            .pools_by_org
            .get(&org)
            .is_some_and(|pools| covers(pools, r)),
        _ => false,
    };
    if !in_pool {
        let problem = Problem::CallerIdNotInPool(id.to_owned());
        b.error(ent(), "outbound_caller_id", problem);
    }
}

/// Spec call-control 5: a finite public limit on the chain, and a licence.
fn sip_trunking(b: &mut Build<'_>, ent: Ent<'_>, user: Option<UserId>) {
    if b.raw.license.sip_trunking_channels == 0 {
        b.error(ent(), "pbx", Problem::PbxNotLicensed);
    }
    let Some(user) = user else { return };
    let raw = b.raw;
    let user_limit = raw.user[user.index()].limits.public;
    let Some(org) = b.user_org[user.index()] else {
        return;
    };
    let org_limit = raw.organization[org.index()].limits.public;
    let Some(sp) = b.org_sp[org.index()] else {
        return;
    };
    let sp_limit = raw.service_provider[sp.index()].limits.public;
    if user_limit.is_none() && org_limit.is_none() && sp_limit.is_none() {
        b.error(ent(), "pbx", Problem::PbxWithoutPublicLimit);
    }
}

/// Several PBXs may share an IP only if every one of them authenticates.
fn shared_pbx_ips(b: &mut Build<'_>, exts: &[Extension], mut ips: Vec<(IpAddr, usize, bool)>) {
    ips.sort_unstable_by_key(|&(ip, i, _)| (ip, i));
    for group in ips.chunk_by(|x, y| x.0 == y.0) {
        if group.len() < 2 {
            continue;
        }
        for &(ip, i, authenticates) in group {
            if authenticates {
                continue;
            }
            let other = group
                .iter()
                .find(|g| g.1 != i)
                .expect("invariant: a group of two or more has another member");
            let raw = b.raw;
            let ent = ext_entity(raw, &raw.extension[i], b.user_org_of_ext(&raw.extension[i]));
            let problem = Problem::SharedPbxAddressWithoutAuth {
                ip: ip.to_string(),
                other: exts[other.1].number.clone(),
            };
            b.error(ent, "pbx", problem);
        }
    }
}

impl Build<'_> {
    fn user_org_of_ext(&self, e: &RawExtension) -> Option<OrgId> {
        let user = self.user_by_name.get(e.user.as_str())?;
        self.user_org[user.index()]
    }
}

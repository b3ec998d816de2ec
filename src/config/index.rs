//! Builds [`Index`], the lookup tables of a validated snapshot, so the hot path never scans.

use std::collections::HashMap;

use super::model::{ExtId, Index, OrgId, Snapshot, SpId, TrunkId, TrunkKind, UserId};
use super::validate::to_u32;

/// Builds every table of [`Index`] from a snapshot that passed validation (names and numbers are
/// unique, so no insert here overwrites another).
pub(crate) fn build(s: &Snapshot) -> Index {
    let mut ix = Index {
        extension_by_number: HashMap::with_capacity(s.extensions.len()),
        ..Index::default()
    };
    for (i, e) in s.extensions.iter().enumerate() {
        let id = ExtId(to_u32(i));
        ix.extension_by_number
            .insert((e.organization, e.number.clone()), id);
        if let Some(pbx) = &e.pbx {
            ix.pbx_by_address.entry(pbx.address).or_default().push(id);
            ix.pbx_by_ip.entry(pbx.address.ip()).or_default().push(id);
        }
    }
    for (i, o) in s.organizations.iter().enumerate() {
        let id = OrgId(to_u32(i));
        // Host names compare case-insensitively (RFC 3261 19.1.4): keyed lower-case.
        ix.organization_by_domain
            .insert(o.domain.to_ascii_lowercase(), id);
        ix.org_by_name.insert(o.name.clone(), id);
    }
    for (i, sp) in s.service_providers.iter().enumerate() {
        ix.sp_by_name.insert(sp.name.clone(), SpId(to_u32(i)));
    }
    for (i, u) in s.users.iter().enumerate() {
        ix.user_by_name.insert(u.name.clone(), UserId(to_u32(i)));
    }
    trunks(s, &mut ix);
    for (i, r) in s.outbound_rules.iter().enumerate() {
        ix.outbound_rules_by_org
            .entry(r.organization)
            .or_default()
            .push(i);
    }
    for (i, r) in s.ring_rules.iter().enumerate() {
        if let Some(ext) = r.extension {
            ix.ring_rule_by_extension
                .insert(ext, super::model::RingRuleId(to_u32(i)));
        }
    }
    for (i, r) in s.inbound_rules.iter().enumerate() {
        ix.inbound_rules_by_trunk
            .entry(r.trunk)
            .or_default()
            .push(i);
    }
    ix
}

/// `ip` trunks own their IPs (validated unique); a `register` trunk's gateway IP is added only where
/// no `ip` trunk claims it, and the first such trunk in file order wins.
fn trunks(s: &Snapshot, ix: &mut Index) {
    for pass_ip_kind in [true, false] {
        for (i, t) in s.trunks.iter().enumerate() {
            if (t.kind == TrunkKind::Ip) != pass_ip_kind {
                continue;
            }
            let id = TrunkId(to_u32(i));
            let ips = t.address.map(|a| a.ip()).into_iter();
            for ip in ips.chain(t.associated_ips.iter().copied()) {
                ix.trunk_by_ip.entry(ip).or_insert(id);
            }
        }
    }
    for (i, t) in s.trunks.iter().enumerate() {
        let id = TrunkId(to_u32(i));
        ix.trunk_by_name.insert(t.name.clone(), id);
        if t.kind == TrunkKind::AcceptRegister {
            ix.accept_register_trunks.push(id);
            if let Some(username) = &t.username {
                ix.accept_register_by_username
                    .entry(username.clone())
                    .or_insert(id);
            }
        }
    }
}

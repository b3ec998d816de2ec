//! Rules that compare the running snapshot with the one a reload would install (spec call-control 7
//! and 8): a reload is refused as a whole if any of them fails.

use std::collections::BTreeMap;

use super::issue::{ConfigIssue, Entity, Problem};
use super::model::Snapshot;

/// Checks that `new` may replace `old`: a trunk referenced by any inbound or outbound rule of `old`
/// cannot be removed. Returns the errors (empty: the reload may proceed).
pub fn check_reload(old: &Snapshot, new: &Snapshot) -> Vec<ConfigIssue> {
    // BTreeMap: issues come out in name order, stable for logs and tests.
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    let inbound = old.inbound_rules.iter().map(|r| r.trunk);
    let outbound = old
        .outbound_rules
        .iter()
        .flat_map(|r| r.trunks.iter().copied());
    for trunk in inbound.chain(outbound) {
        *uses
            .entry(old.trunks[trunk.index()].name.as_str())
            .or_default() += 1;
    }
    uses.into_iter()
        .filter(|(name, _)| !new.index.trunk_by_name.contains_key(*name))
        .map(|(name, rules)| {
            ConfigIssue::error(
                Entity::Trunk(name.to_owned()),
                "",
                Problem::ReferencedTrunkRemoved { rules },
            )
        })
        .collect()
}

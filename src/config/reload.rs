//! Rules that compare the running snapshot with the one a reload would install (spec call-control 7
//! and 8): a reload is refused as a whole if any of them fails.
//!
//! What a reload cannot apply is refused here rather than ignored: the address callgate writes in
//! Via and Contact is fixed in each engine shard at start (`b2bua::Settings::local`), so a file that
//! would change it is refused with "restart to apply".

use std::collections::BTreeMap;

use super::issue::{ConfigIssue, Entity, Problem};
use super::model::{Listen, Snapshot, Transport};

/// Checks that `new` may replace `old`: a trunk referenced by any inbound or outbound rule of `old`
/// cannot be removed, and the address written in Via/Contact per transport cannot change. Returns
/// the errors (empty: the reload may proceed).
pub fn check_reload(old: &Snapshot, new: &Snapshot) -> Vec<ConfigIssue> {
    let mut issues = removed_trunks(old, new);
    issues.extend(engine_addresses(old, new));
    issues.extend(counter_store(old, new));
    issues
}

/// Where the units live is fixed at start (the limiter's backend, this node's cluster lease):
/// a reload may change `on_backend_error`, nothing else of `[counters]`, nor the node's name
/// while it is in a cluster.
fn counter_store(old: &Snapshot, new: &Snapshot) -> Option<ConfigIssue> {
    use super::model::CounterBackend;
    let store = |s: &Snapshot| match &s.counters {
        CounterBackend::Memory => "memory".to_owned(),
        CounterBackend::Redis {
            url,
            lease,
            cluster,
            ..
        } => format!(
            "redis {url} lease {lease:?} cluster {cluster} node {}",
            s.server.name
        ),
    };
    let (was, now) = (store(old), store(new));
    (was != now).then(|| {
        ConfigIssue::error(
            Entity::Counters,
            "",
            Problem::CounterStoreChanged { from: was, to: now },
        )
    })
}

fn removed_trunks(old: &Snapshot, new: &Snapshot) -> Vec<ConfigIssue> {
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

/// The engine writes the first listener of each transport in Via/Contact (its `advertise` host,
/// else its bound address). A listener entry kept as it is keeps its socket and port, so comparing
/// the entries is enough; any other change to that first entry needs a restart. A TLS
/// listener's certificate files are no part of that: a reload re-reads them.
fn engine_addresses(old: &Snapshot, new: &Snapshot) -> Vec<ConfigIssue> {
    [Transport::Udp, Transport::Tcp, Transport::Tls]
        .into_iter()
        .filter_map(|transport| {
            let name = transport.as_str();
            let first = |s: &Snapshot| s.listen.iter().position(|l| l.transport == transport);
            let (was, now) = (first(old), first(new));
            let (was_l, now_l) = (was.map(|i| &old.listen[i]), now.map(|i| &new.listen[i]));
            let same = match (was_l, now_l) {
                (Some(a), Some(b)) => a.same_socket(b),
                (a, b) => a.is_none() && b.is_none(),
            };
            if same {
                return None;
            }
            let entity = now.map_or(Entity::Listeners, |i| Entity::Listen(i + 1));
            let problem = Problem::EngineAddressChanged {
                transport: name,
                from: written(was_l),
                to: written(now_l),
            };
            Some(ConfigIssue::error(entity, "", problem))
        })
        .collect()
}

/// What the engine would write for a listener: `advertise` (with the listener's port) or the
/// address; `none` for no listener.
fn written(l: Option<&Listen>) -> String {
    match l {
        None => "none".into(),
        Some(l) => match &l.advertise {
            Some(host) => format!("{host} (advertised, port {})", l.address.port()),
            None => l.address.to_string(),
        },
    }
}

use std::sync::Arc;

use super::testing::{limits, TreeBuilder};
use super::*;
use crate::config::model::{ExtId, Snapshot, TrunkId, UserId};

/// Admission where time does not matter (no `cps` in these trees).
trait AdmitNow {
    fn admit(&self, call: CallKey, spec: PathSpec) -> Result<Permit, Refusal>;
}

impl AdmitNow for Limiter {
    fn admit(&self, call: CallKey, spec: PathSpec) -> Result<Permit, Refusal> {
        self.try_admit(call, spec, crate::test_clock::origin())
    }
}

fn limiter(b: &TreeBuilder) -> Limiter {
    Limiter::new(Arc::new(b.build()))
}

type Named = (Level, String, CounterKind);

fn n(level: Level, name: &str, kind: CounterKind) -> Named {
    (level, name.to_owned(), kind)
}

fn describe(g: &Generation, spec: PathSpec) -> Vec<Named> {
    let path = g.path(spec);
    path.ids()
        .iter()
        .map(|id| {
            let c = g.cell(*id);
            (c.level(), c.name().to_owned(), c.kind())
        })
        .collect()
}

fn used(l: &Limiter, level: Level, name: &str, kind: CounterKind) -> u32 {
    l.snapshot()
        .into_iter()
        .find(|v| v.level == level && v.name == name && v.kind == kind)
        .map(|v| v.used)
        .expect("counter exists")
}

/// Two organizations under one provider; acme has users alice (ext 100, 101) and bob (ext 200),
/// globex has carol (ext 300); one trunk `pstn`. Everything unlimited.
struct Tree {
    b: TreeBuilder,
    alice: UserId,
    e100: ExtId,
    e101: ExtId,
    e200: ExtId,
    e300: ExtId,
    pstn: TrunkId,
}

fn tree() -> Tree {
    let mut b = TreeBuilder::new();
    let sp = b.service_provider("sp1", limits(None, None));
    let acme = b.organization("acme", sp, limits(None, None));
    let globex = b.organization("globex", sp, limits(None, None));
    let alice = b.user("alice", acme, limits(None, None));
    let bob = b.user("bob", acme, limits(None, None));
    let carol = b.user("carol", globex, limits(None, None));
    let e100 = b.extension("100", alice, None, None);
    let e101 = b.extension("101", alice, None, None);
    let e200 = b.extension("200", bob, None, None);
    let e300 = b.extension("300", carol, None, None);
    let pstn = b.trunk("pstn", None, None, None);
    Tree {
        b,
        alice,
        e100,
        e101,
        e200,
        e300,
        pstn,
    }
}

use CounterKind::*;
use Level::*;

#[test]
fn level_and_counter_names_are_the_metric_label_values() {
    let levels = [
        Server,
        ServiceProvider,
        Organization,
        User,
        Extension,
        Trunk,
    ];
    let names: Vec<_> = levels.iter().map(|l| l.as_str()).collect();
    assert_eq!(
        names,
        [
            "server",
            "service_provider",
            "organization",
            "user",
            "extension",
            "trunk"
        ]
    );
    let kinds = [
        Public,
        Internal,
        MaxCalls,
        MaxOutgoing,
        MaxInbound,
        MaxOutbound,
    ];
    let names: Vec<_> = kinds.iter().map(|k| k.to_string()).collect();
    assert_eq!(
        names,
        [
            "public",
            "internal",
            "max_calls",
            "max_outgoing",
            "max_inbound",
            "max_outbound"
        ]
    );
}

#[test]
fn local_to_local_path_counts_internal_on_both_chains() {
    let t = tree();
    let l = limiter(&t.b);
    let g = l.current();
    let got = describe(
        &g,
        PathSpec::LocalToLocal {
            caller: t.e100,
            callee: t.e300,
        },
    );
    let want = vec![
        n(Extension, "100@acme", MaxCalls),
        n(Extension, "100@acme", MaxOutgoing),
        n(User, "alice", Internal),
        n(Organization, "acme", Internal),
        n(ServiceProvider, "sp1", Internal),
        n(Server, "node1", Internal),
        n(User, "carol", Internal),
        n(Organization, "globex", Internal),
        n(ServiceProvider, "sp1", Internal),
        n(Server, "node1", Internal),
        n(Extension, "300@globex", MaxCalls),
    ];
    assert_eq!(got, want);
}

#[test]
fn local_to_public_path_counts_public_and_trunk_outbound() {
    let t = tree();
    let l = limiter(&t.b);
    let got = describe(
        &l.current(),
        PathSpec::LocalToPublic {
            caller: t.e200,
            trunk: t.pstn,
        },
    );
    let want = vec![
        n(Extension, "200@acme", MaxCalls),
        n(Extension, "200@acme", MaxOutgoing),
        n(User, "bob", Public),
        n(Organization, "acme", Public),
        n(ServiceProvider, "sp1", Public),
        n(Server, "node1", Public),
        n(Trunk, "pstn", MaxCalls),
        n(Trunk, "pstn", MaxOutbound),
    ];
    assert_eq!(got, want);
}

#[test]
fn public_to_local_path_counts_trunk_inbound_and_public() {
    let t = tree();
    let l = limiter(&t.b);
    let got = describe(
        &l.current(),
        PathSpec::PublicToLocal {
            trunk: t.pstn,
            callee: t.e300,
        },
    );
    let want = vec![
        n(Trunk, "pstn", MaxCalls),
        n(Trunk, "pstn", MaxInbound),
        n(User, "carol", Public),
        n(Organization, "globex", Public),
        n(ServiceProvider, "sp1", Public),
        n(Server, "node1", Public),
        n(Extension, "300@globex", MaxCalls),
    ];
    assert_eq!(got, want);
}

#[test]
fn fork_legs_count_target_or_owner_chain() {
    let t = tree();
    let l = limiter(&t.b);
    let g = l.current();
    let local = describe(&g, PathSpec::ForkLocalLeg { target: t.e101 });
    assert_eq!(
        local,
        vec![
            n(Extension, "101@acme", MaxCalls),
            n(User, "alice", Internal),
            n(Organization, "acme", Internal),
            n(ServiceProvider, "sp1", Internal),
            n(Server, "node1", Internal),
        ]
    );
    let user_owned = PathSpec::ForkPublicLeg {
        owner: RuleOwner::User(t.alice),
        trunk: t.pstn,
    };
    let mut want = vec![
        n(User, "alice", Public),
        n(Organization, "acme", Public),
        n(ServiceProvider, "sp1", Public),
        n(Server, "node1", Public),
        n(Trunk, "pstn", MaxCalls),
        n(Trunk, "pstn", MaxOutbound),
    ];
    assert_eq!(describe(&g, user_owned), want);
    let acme = g.config().extensions[t.e100.index()].organization;
    let org_owned = PathSpec::ForkPublicLeg {
        owner: RuleOwner::Organization(acme),
        trunk: t.pstn,
    };
    want.remove(0);
    assert_eq!(describe(&g, org_owned), want);
}

#[test]
fn shared_ancestor_counts_once_per_end() {
    let mut t = tree();
    t.b.server(limits(None, Some(1)));
    let l = limiter(&t.b);
    let r = l
        .admit(
            CallKey(1),
            PathSpec::LocalToLocal {
                caller: t.e100,
                callee: t.e200,
            },
        )
        .expect_err("the server's single internal unit cannot cover both ends");
    assert_eq!(r.to_string(), "server node1: internal 1/1");
    assert_eq!(l.in_use(), 0, "a refusal leaves no trace");

    t.b.server(limits(None, Some(2)));
    l.reload(Arc::new(t.b.build()));
    let p = l
        .admit(
            CallKey(2),
            PathSpec::LocalToLocal {
                caller: t.e100,
                callee: t.e200,
            },
        )
        .expect("two units cover both ends");
    assert_eq!(used(&l, Organization, "acme", Internal), 2);
    assert_eq!(used(&l, Server, "node1", Internal), 2);
    drop(p);
    assert_eq!(l.in_use(), 0);
}

#[test]
fn unlimited_counters_count_but_never_refuse() {
    let t = tree();
    let l = limiter(&t.b);
    let permits: Vec<_> = (0..1000)
        .map(|i| {
            l.admit(
                CallKey(i),
                PathSpec::PublicToLocal {
                    trunk: t.pstn,
                    callee: t.e100,
                },
            )
        })
        .collect::<Result<_, _>>()
        .expect("nothing is limited");
    assert_eq!(used(&l, Trunk, "pstn", MaxInbound), 1000);
    assert_eq!(used(&l, Extension, "100@acme", MaxCalls), 1000);
    let view = l.snapshot();
    let ext = view.iter().find(|v| v.name == "100@acme").expect("listed");
    assert_eq!(ext.limit, None);
    drop(permits);
    assert_eq!(l.in_use(), 0);
}

#[test]
fn refusal_rolls_back_units_already_taken_and_names_the_counter() {
    let mut b = TreeBuilder::new();
    let sp = b.service_provider("sp1", limits(None, None));
    let acme = b.organization("acme", sp, limits(Some(50), None));
    let u = b.user("u", acme, limits(None, None));
    let e = b.extension("100", u, None, None);
    let t = b.trunk("pstn", None, None, None);
    let l = limiter(&b);
    let spec = PathSpec::LocalToPublic {
        caller: e,
        trunk: t,
    };
    let held: Vec<_> = (0..50)
        .map(|i| l.admit(CallKey(i), spec).expect("below 50"))
        .collect();
    let before = l.snapshot();
    let r = l.admit(CallKey(50), spec).expect_err("acme is full");
    assert_eq!(r.to_string(), "organization acme: public 50/50");
    assert_eq!(
        (r.level, r.counter, r.used, r.limit),
        (Organization, Public, 50, 50)
    );
    assert_eq!(
        l.snapshot(),
        before,
        "the ext and user units taken first were rolled back"
    );
    drop(held);
    assert_eq!(l.in_use(), 0);
}

/// E1: provider public=200 over five users at public=100, one PBX extension each.
#[test]
fn e1_provider_caps_the_sum_of_oversold_users() {
    let mut b = TreeBuilder::new();
    let sp = b.service_provider("voice-sp", limits(Some(200), None));
    let org = b.organization("acme", sp, limits(None, None));
    let exts: Vec<_> = (0..5)
        .map(|i| {
            let u = b.user(&format!("u{i}"), org, limits(Some(100), None));
            b.extension(&format!("pbx{i}"), u, None, None)
        })
        .collect();
    let trunk = b.trunk("pstn", None, None, None);
    let l = limiter(&b);
    let mut held = Vec::new();
    // 100 from u0, 80 from u1, 20 from u2: 200 in all.
    for (ext, count) in [(exts[0], 100), (exts[1], 80), (exts[2], 20)] {
        for _ in 0..count {
            let key = CallKey(held.len() as u64);
            let spec = PathSpec::LocalToPublic { caller: ext, trunk };
            held.push(l.admit(key, spec).expect("within both limits"));
        }
    }
    assert_eq!(used(&l, User, "u2", Public), 20);
    for ext in &exts {
        let r = l
            .admit(
                CallKey(999),
                PathSpec::LocalToPublic {
                    caller: *ext,
                    trunk,
                },
            )
            .expect_err("the provider carries 200");
        let want = if *ext == exts[0] {
            // u0 is itself full; it is refused first, by its own user counter.
            "user u0: public 100/100"
        } else {
            "service_provider voice-sp: public 200/200"
        };
        assert_eq!(r.to_string(), want);
    }
    let r = l
        .admit(
            CallKey(1000),
            PathSpec::PublicToLocal {
                trunk,
                callee: exts[2],
            },
        )
        .expect_err("inbound counts on the same public counters");
    assert_eq!(r.level, ServiceProvider);
    drop(held);
    assert_eq!(l.in_use(), 0);
}

/// E2: a trunk with max_inbound=0, max_outbound=10.
#[test]
fn e2_trunk_inbound_closed_outbound_capped_at_ten() {
    let mut t = tree();
    let trunk = t.b.trunk("out-only", None, Some(0), Some(10));
    let l = limiter(&t.b);
    let r = l
        .admit(
            CallKey(0),
            PathSpec::PublicToLocal {
                trunk,
                callee: t.e100,
            },
        )
        .expect_err("no inbound calls");
    assert_eq!(r.to_string(), "trunk out-only: max_inbound 0/0");
    let held: Vec<_> = (1..=10)
        .map(|i| {
            l.admit(
                CallKey(i),
                PathSpec::LocalToPublic {
                    caller: t.e200,
                    trunk,
                },
            )
            .expect("ten outbound calls fit")
        })
        .collect();
    let r = l
        .admit(
            CallKey(11),
            PathSpec::LocalToPublic {
                caller: t.e300,
                trunk,
            },
        )
        .expect_err("the 11th is refused");
    assert_eq!(r.to_string(), "trunk out-only: max_outbound 10/10");
    drop(held);
    assert_eq!(l.in_use(), 0);
}

/// E2b: an extension with max_calls=0 can neither call nor be called.
#[test]
fn e2b_extension_with_zero_max_calls_neither_calls_nor_is_called() {
    let mut t = tree();
    let dead = t.b.extension("999", t.alice, Some(0), None);
    let l = limiter(&t.b);
    let specs = [
        PathSpec::LocalToLocal {
            caller: dead,
            callee: t.e200,
        },
        PathSpec::LocalToLocal {
            caller: t.e200,
            callee: dead,
        },
        PathSpec::LocalToPublic {
            caller: dead,
            trunk: t.pstn,
        },
        PathSpec::PublicToLocal {
            trunk: t.pstn,
            callee: dead,
        },
        PathSpec::ForkLocalLeg { target: dead },
    ];
    for spec in specs {
        let r = l.admit(CallKey(0), spec).expect_err("max_calls = 0");
        assert_eq!(r.to_string(), "extension 999@acme: max_calls 0/0");
    }
    assert_eq!(l.in_use(), 0);
}

/// E3 set-up: a user with the given public/internal limits, extensions 002 and 011, one trunk.
fn e3(public: u32, internal: u32) -> (Limiter, UserId, ExtId, ExtId, TrunkId) {
    let mut b = TreeBuilder::new();
    let sp = b.service_provider("sp1", limits(None, None));
    let org = b.organization("acme", sp, limits(None, None));
    let user = b.user("u", org, limits(Some(public), Some(internal)));
    let e002 = b.extension("002", user, None, None);
    let e011 = b.extension("011", user, None, None);
    let trunk = b.trunk("pstn", None, None, None);
    (limiter(&b), user, e002, e011, trunk)
}

/// Starts the legs of 002's rule in order (002, 011, public 0804993222); returns the started ones.
fn start_legs(l: &Limiter, user: UserId, e002: ExtId, e011: ExtId, trunk: TrunkId) -> Vec<Permit> {
    let legs = [
        PathSpec::ForkLocalLeg { target: e002 },
        PathSpec::ForkLocalLeg { target: e011 },
        PathSpec::ForkPublicLeg {
            owner: RuleOwner::User(user),
            trunk,
        },
    ];
    legs.iter()
        .enumerate()
        .filter_map(|(i, leg)| l.admit(CallKey(10 + i as u64), *leg).ok())
        .collect()
}

#[test]
fn e3_one_public_one_internal_unit_rings_only_the_first_listed_target() {
    let (l, user, e002, e011, trunk) = e3(1, 1);
    let call = l
        .admit(
            CallKey(1),
            PathSpec::PublicToLocal {
                trunk,
                callee: e002,
            },
        )
        .expect("the public unit is free");
    let legs = start_legs(&l, user, e002, e011, trunk);
    assert_eq!(legs.len(), 1, "only one target rings");
    let g = l.current();
    let first = g.path(PathSpec::ForkLocalLeg { target: e002 });
    assert_eq!(
        legs[0].path(),
        &first,
        "the ringing target is 002, the first listed"
    );
    drop(legs);
    drop(call);
    assert_eq!(l.in_use(), 0);
}

#[test]
fn e3_two_units_each_ring_all_targets_and_release_at_the_end() {
    let (l, user, e002, e011, trunk) = e3(2, 2);
    let call = l
        .admit(
            CallKey(1),
            PathSpec::PublicToLocal {
                trunk,
                callee: e002,
            },
        )
        .expect("the public unit is free");
    let mut legs = start_legs(&l, user, e002, e011, trunk);
    assert_eq!(legs.len(), 3, "all three ring");
    assert_eq!(used(&l, User, "u", Public), 2);
    assert_eq!(used(&l, User, "u", Internal), 2);
    // 011 answers: the other legs are cancelled, the answered one lives with the call.
    let answered = legs.remove(1);
    drop(legs);
    assert_eq!(used(&l, User, "u", Internal), 1);
    drop(answered);
    drop(call);
    assert_eq!(l.in_use(), 0);
}

fn reload_tree(acme_public: u32, with_globex: bool) -> Snapshot {
    let mut b = TreeBuilder::new();
    let sp = b.service_provider("sp1", limits(None, None));
    // Globex first so that removing it shifts every later index: identity is by name.
    let globex = with_globex.then(|| b.organization("globex", sp, limits(None, None)));
    let acme = b.organization("acme", sp, limits(Some(acme_public), None));
    if let Some(globex) = globex {
        let carol = b.user("carol", globex, limits(None, None));
        b.extension("300", carol, None, None);
    }
    let alice = b.user("alice", acme, limits(None, None));
    b.extension("100", alice, None, None);
    b.trunk("pstn", None, None, None);
    b.build()
}

fn ext(s: &Snapshot, org: &str, number: &str) -> ExtId {
    let org = s.index.org_by_name[org];
    s.index.extension_by_number[&(org, number.to_owned())]
}

#[test]
fn reload_moves_units_with_surviving_entities_and_releases_removed_ones_harmlessly() {
    let first = Arc::new(reload_tree(5, true));
    let l = Limiter::new(Arc::clone(&first));
    let trunk = TrunkId(0);
    let in_acme = PathSpec::PublicToLocal {
        trunk,
        callee: ext(&first, "acme", "100"),
    };
    let in_globex = PathSpec::PublicToLocal {
        trunk,
        callee: ext(&first, "globex", "300"),
    };
    let acme_calls: Vec<_> = (0..4)
        .map(|i| l.admit(CallKey(i), in_acme).expect("<5"))
        .collect();
    let globex_call = l.admit(CallKey(9), in_globex).expect("unlimited");

    // Acme lowered to 2 while it carries 4; globex removed.
    let second = Arc::new(reload_tree(2, false));
    let summary = l.reload(Arc::clone(&second));
    assert_eq!(summary.removed, 2 + 2 + 2, "globex, carol, 300@globex");
    assert_eq!(
        summary.removed_units_in_use, 3,
        "globex public, carol public, 300 max_calls"
    );
    assert_eq!(summary.added, 0);
    assert_eq!(summary.kept, summary.counters);
    assert_eq!(
        used(&l, Organization, "acme", Public),
        4,
        "units moved with acme"
    );
    assert_eq!(used(&l, Trunk, "pstn", MaxCalls), 5);
    assert_eq!(used(&l, Server, "node1", Public), 5);

    let in_acme_now = PathSpec::PublicToLocal {
        trunk,
        callee: ext(&second, "acme", "100"),
    };
    let r = l
        .admit(CallKey(20), in_acme_now)
        .expect_err("lowered limit applies to new calls");
    assert_eq!(r.to_string(), "organization acme: public 4/2");

    let old_generation = Arc::clone(globex_call.generation());
    drop(globex_call);
    assert_eq!(
        old_generation.in_use(),
        4 * 7,
        "only acme's calls remain, on shared cells"
    );
    assert_eq!(
        used(&l, Trunk, "pstn", MaxCalls),
        4,
        "the removed call released the trunk"
    );
    assert_eq!(
        used(&l, Organization, "acme", Public),
        4,
        "and nothing else"
    );

    let mut acme_calls = acme_calls;
    acme_calls.truncate(1);
    let again = l.admit(CallKey(21), in_acme_now);
    assert!(again.is_ok(), "acme back below its new limit admits again");
    drop(again);
    drop(acme_calls);
    assert_eq!(l.in_use(), 0);
    assert_eq!(old_generation.in_use(), 0);
}

#[test]
fn reload_gives_a_new_entity_a_fresh_counter() {
    let first = Arc::new(reload_tree(5, false));
    let l = Limiter::new(first);
    let summary = l.reload(Arc::new(reload_tree(5, true)));
    assert_eq!(summary.added, 6);
    assert_eq!(summary.removed, 0);
    assert_eq!(used(&l, Organization, "globex", Public), 0);
}

#[test]
fn permit_releases_exactly_its_own_units_once() {
    let t = tree();
    let l = limiter(&t.b);
    let a = l.admit(
        CallKey(1),
        PathSpec::LocalToPublic {
            caller: t.e100,
            trunk: t.pstn,
        },
    );
    let b = l.admit(
        CallKey(2),
        PathSpec::LocalToLocal {
            caller: t.e100,
            callee: t.e300,
        },
    );
    let (a, b) = (a.expect("unlimited"), b.expect("unlimited"));
    assert_eq!(a.call(), CallKey(1));
    assert_eq!(l.in_use(), 8 + 11);
    a.release();
    assert_eq!(l.in_use(), 11);
    assert_eq!(used(&l, Extension, "100@acme", MaxCalls), 1);
    drop(b);
    assert_eq!(l.in_use(), 0);
}

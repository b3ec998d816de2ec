//! Property tests of the limiter over random trees, limits, admissions, releases and reloads.
//!
//! - Sequential: every step is replayed on a simple reference model (counters in a `BTreeMap`,
//!   keyed by entity identity, written independently of the limiter's dense layout); admission
//!   results, the refusing counter and every counter's use must match exactly.
//! - Concurrent: threads admit and release at random while reloads change limits; no counter is
//!   ever seen above the largest limit it was given, and everything is 0 at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use callgate::config::model::{ExtId, Limit, OrgId, Snapshot, TrunkId, UserId};
use callgate::limits::testing::{limits, TreeBuilder};
use callgate::limits::{CallKey, CounterKind, Level, Limiter, PathSpec, Permit, RuleOwner};
use proptest::prelude::*;

const SPS: usize = 2;
const ORGS: usize = 3;
const USERS: usize = 4;
const EXTS: usize = 6;
const TRUNKS: usize = 2;

/// Parents of every entity of the universe (fixed sizes; shape varies through the parents).
#[derive(Debug, Clone)]
struct Universe {
    org_sp: Vec<usize>,
    user_org: Vec<usize>,
    ext_user: Vec<usize>,
}

/// One configuration: limits of every entity and which entities exist.
#[derive(Debug, Clone)]
struct Config {
    server: [Limit; 2],
    sp: Vec<[Limit; 2]>,
    org: Vec<[Limit; 2]>,
    user: Vec<[Limit; 2]>,
    ext: Vec<[Limit; 2]>,
    trunk: Vec<[Limit; 3]>,
    org_on: Vec<bool>,
    user_on: Vec<bool>,
    ext_on: Vec<bool>,
    trunk_on: Vec<bool>,
}

#[derive(Debug, Clone)]
enum Op {
    Admit { kind: u8, a: usize, b: usize },
    Release(usize),
    Reload(Box<Config>),
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![1 => Just(None), 3 => (0u32..4).prop_map(Some)]
}

fn config(all_on: bool) -> impl Strategy<Value = Config> {
    let on = move |n| {
        prop::collection::vec(
            if all_on {
                Just(true).boxed()
            } else {
                prop::bool::weighted(0.8).boxed()
            },
            n,
        )
    };
    (
        [limit(), limit()],
        prop::collection::vec([limit(), limit()], SPS),
        prop::collection::vec([limit(), limit()], ORGS),
        prop::collection::vec([limit(), limit()], USERS),
        prop::collection::vec([limit(), limit()], EXTS),
        prop::collection::vec([limit(), limit(), limit()], TRUNKS),
        (on(ORGS), on(USERS), on(EXTS), on(TRUNKS)),
    )
        .prop_map(
            |(server, sp, org, user, ext, trunk, (org_on, user_on, ext_on, trunk_on))| Config {
                server,
                sp,
                org,
                user,
                ext,
                trunk,
                org_on,
                user_on,
                ext_on,
                trunk_on,
            },
        )
}

fn universe() -> impl Strategy<Value = Universe> {
    (
        prop::collection::vec(0..SPS, ORGS),
        prop::collection::vec(0..ORGS, USERS),
        prop::collection::vec(0..USERS, EXTS),
    )
        .prop_map(|(org_sp, user_org, ext_user)| Universe {
            org_sp,
            user_org,
            ext_user,
        })
}

fn op(all_on: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0..EXTS, 0..EXTS).prop_map(|(kind, a, b)| Op::Admit { kind, a, b }),
        3 => (0usize..64).prop_map(Op::Release),
        1 => config(all_on).prop_map(|c| Op::Reload(Box::new(c))),
    ]
}

/// The configuration as a `Snapshot`, with universe index -> id maps (`None`: not present).
struct Built {
    snapshot: Arc<Snapshot>,
    org: Vec<Option<OrgId>>,
    user: Vec<Option<UserId>>,
    ext: Vec<Option<ExtId>>,
    trunk: Vec<Option<TrunkId>>,
}

fn build(u: &Universe, c: &Config) -> Built {
    let mut b = TreeBuilder::new();
    b.server(limits(c.server[0], c.server[1]));
    let sps: Vec<_> = (0..SPS)
        .map(|i| b.service_provider(&format!("sp{i}"), limits(c.sp[i][0], c.sp[i][1])))
        .collect();
    let org: Vec<_> = (0..ORGS)
        .map(|i| {
            c.org_on[i].then(|| {
                b.organization(
                    &format!("o{i}"),
                    sps[u.org_sp[i]],
                    limits(c.org[i][0], c.org[i][1]),
                )
            })
        })
        .collect();
    let user: Vec<_> = (0..USERS)
        .map(|i| {
            let parent = org[u.user_org[i]].filter(|_| c.user_on[i])?;
            Some(b.user(&format!("u{i}"), parent, limits(c.user[i][0], c.user[i][1])))
        })
        .collect();
    let ext: Vec<_> = (0..EXTS)
        .map(|i| {
            let parent = user[u.ext_user[i]].filter(|_| c.ext_on[i])?;
            Some(b.extension(&format!("e{i}"), parent, c.ext[i][0], c.ext[i][1]))
        })
        .collect();
    let trunk: Vec<_> = (0..TRUNKS)
        .map(|i| {
            c.trunk_on[i].then(|| {
                b.trunk(
                    &format!("t{i}"),
                    c.trunk[i][0],
                    c.trunk[i][1],
                    c.trunk[i][2],
                )
            })
        })
        .collect();
    Built {
        snapshot: Arc::new(b.build()),
        org,
        user,
        ext,
        trunk,
    }
}

type Key = (Level, String, CounterKind);

fn key(level: Level, name: String, kind: CounterKind) -> Key {
    (level, name, kind)
}

/// Every counter of the configuration with its limit, by identity (the reference's view).
fn model_limits(u: &Universe, c: &Config, b: &Built) -> BTreeMap<Key, Limit> {
    use CounterKind::*;
    let mut m = BTreeMap::new();
    let mut pair = |level, name: String, l: [Limit; 2]| {
        m.insert(key(level, name.clone(), Public), l[0]);
        m.insert(key(level, name, Internal), l[1]);
    };
    pair(Level::Server, "node1".into(), c.server);
    (0..SPS).for_each(|i| pair(Level::ServiceProvider, format!("sp{i}"), c.sp[i]));
    (0..ORGS)
        .filter(|i| b.org[*i].is_some())
        .for_each(|i| pair(Level::Organization, format!("o{i}"), c.org[i]));
    (0..USERS)
        .filter(|i| b.user[*i].is_some())
        .for_each(|i| pair(Level::User, format!("u{i}"), c.user[i]));
    for i in (0..EXTS).filter(|i| b.ext[*i].is_some()) {
        m.insert(key(Level::Extension, ext_name(u, i), MaxCalls), c.ext[i][0]);
        m.insert(
            key(Level::Extension, ext_name(u, i), MaxOutgoing),
            c.ext[i][1],
        );
    }
    for i in (0..TRUNKS).filter(|i| b.trunk[*i].is_some()) {
        m.insert(key(Level::Trunk, format!("t{i}"), MaxCalls), c.trunk[i][0]);
        m.insert(
            key(Level::Trunk, format!("t{i}"), MaxInbound),
            c.trunk[i][1],
        );
        m.insert(
            key(Level::Trunk, format!("t{i}"), MaxOutbound),
            c.trunk[i][2],
        );
    }
    m
}

fn ext_name(u: &Universe, i: usize) -> String {
    format!("e{i}@o{}", u.user_org[u.ext_user[i]])
}

/// `scope` on user (if any), organization, provider, server: spec call-control 3, written anew.
fn chain(u: &Universe, user: Option<usize>, org: usize, scope: CounterKind) -> Vec<Key> {
    let mut v = Vec::new();
    if let Some(user) = user {
        v.push(key(Level::User, format!("u{user}"), scope));
    }
    v.push(key(Level::Organization, format!("o{org}"), scope));
    v.push(key(
        Level::ServiceProvider,
        format!("sp{}", u.org_sp[org]),
        scope,
    ));
    v.push(key(Level::Server, "node1".into(), scope));
    v
}

/// The limiter spec and the reference path of an `Op::Admit`, or `None` if an entity is absent.
fn admission(
    u: &Universe,
    b: &Built,
    kind: u8,
    a: usize,
    bi: usize,
) -> Option<(PathSpec, Vec<Key>)> {
    use CounterKind::*;
    let ext_chain =
        |i: usize, scope| chain(u, Some(u.ext_user[i]), u.user_org[u.ext_user[i]], scope);
    let e = |i: usize, k| key(Level::Extension, ext_name(u, i), k);
    let t = |i: usize, k| key(Level::Trunk, format!("t{i}"), k);
    let ti = bi % TRUNKS;
    Some(match kind {
        0 => {
            let spec = PathSpec::LocalToLocal {
                caller: b.ext[a]?,
                callee: b.ext[bi]?,
            };
            let mut p = vec![e(a, MaxCalls), e(a, MaxOutgoing)];
            p.extend(ext_chain(a, Internal));
            p.extend(ext_chain(bi, Internal));
            p.push(e(bi, MaxCalls));
            (spec, p)
        }
        1 => {
            let spec = PathSpec::LocalToPublic {
                caller: b.ext[a]?,
                trunk: b.trunk[ti]?,
            };
            let mut p = vec![e(a, MaxCalls), e(a, MaxOutgoing)];
            p.extend(ext_chain(a, Public));
            p.extend([t(ti, MaxCalls), t(ti, MaxOutbound)]);
            (spec, p)
        }
        2 => {
            let spec = PathSpec::PublicToLocal {
                trunk: b.trunk[ti]?,
                callee: b.ext[a]?,
            };
            let mut p = vec![t(ti, MaxCalls), t(ti, MaxInbound)];
            p.extend(ext_chain(a, Public));
            p.push(e(a, MaxCalls));
            (spec, p)
        }
        3 => {
            let spec = PathSpec::ForkLocalLeg { target: b.ext[a]? };
            let mut p = vec![e(a, MaxCalls)];
            p.extend(ext_chain(a, Internal));
            (spec, p)
        }
        4 => {
            let ui = a % USERS;
            let owner = RuleOwner::User(b.user[ui]?);
            let spec = PathSpec::ForkPublicLeg {
                owner,
                trunk: b.trunk[ti]?,
            };
            let mut p = chain(u, Some(ui), u.user_org[ui], Public);
            p.extend([t(ti, MaxCalls), t(ti, MaxOutbound)]);
            (spec, p)
        }
        _ => {
            let oi = a % ORGS;
            let owner = RuleOwner::Organization(b.org[oi]?);
            let spec = PathSpec::ForkPublicLeg {
                owner,
                trunk: b.trunk[ti]?,
            };
            let mut p = chain(u, None, oi, Public);
            p.extend([t(ti, MaxCalls), t(ti, MaxOutbound)]);
            (spec, p)
        }
    })
}

/// Reference: counter cells in an arena (so a removed-then-re-added entity gets a new cell),
/// the current configuration's key -> cell map, and its limits.
struct Model {
    used: Vec<u32>,
    current: BTreeMap<Key, usize>,
    limits: BTreeMap<Key, Limit>,
}

impl Model {
    fn reload(&mut self, limits: BTreeMap<Key, Limit>) {
        let mut next = BTreeMap::new();
        for k in limits.keys() {
            let cell = self.current.get(k).copied().unwrap_or_else(|| {
                self.used.push(0);
                self.used.len() - 1
            });
            next.insert(k.clone(), cell);
        }
        self.current = next;
        self.limits = limits;
    }

    /// Sequential all-or-nothing acquisition; on refusal, the first key that was full.
    fn admit(&mut self, path: &[Key]) -> Result<Vec<usize>, Key> {
        let mut taken = Vec::new();
        for k in path {
            let cell = self.current[k];
            if self.limits[k].is_some_and(|l| self.used[cell] >= l) {
                taken.iter().for_each(|c: &usize| self.used[*c] -= 1);
                return Err(k.clone());
            }
            self.used[cell] += 1;
            taken.push(cell);
        }
        Ok(taken)
    }
}

fn observed(l: &Limiter) -> BTreeMap<Key, (u32, Limit)> {
    l.snapshot()
        .into_iter()
        .map(|v| ((v.level, v.name, v.kind), (v.used, v.limit)))
        .collect()
}

fn run_sequential(u: Universe, first: Config, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut built = build(&u, &first);
    let limiter = Limiter::new(Arc::clone(&built.snapshot));
    let mut model = Model {
        used: Vec::new(),
        current: BTreeMap::new(),
        limits: BTreeMap::new(),
    };
    model.reload(model_limits(&u, &first, &built));
    let mut held: Vec<(Permit, Vec<usize>)> = Vec::new();
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Admit { kind, a, b } => {
                let Some((spec, path)) = admission(&u, &built, kind, a, b) else {
                    continue;
                };
                let got = limiter.try_admit(CallKey(n as u64), spec, Instant::now());
                match (got, model.admit(&path)) {
                    (Ok(p), Ok(cells)) => {
                        prop_assert_eq!(p.path().ids().len(), path.len());
                        held.push((p, cells));
                    }
                    (Err(r), Err(k)) => prop_assert_eq!((r.level, r.name, r.counter), k),
                    (got, want) => {
                        prop_assert!(false, "limiter {:?}, model {:?}", got.map(|_| ()), want)
                    }
                }
            }
            Op::Release(i) if !held.is_empty() => {
                let (permit, cells) = held.remove(i % held.len());
                drop(permit);
                cells.iter().for_each(|c| model.used[*c] -= 1);
            }
            Op::Release(_) => {}
            Op::Reload(c) => {
                built = build(&u, &c);
                limiter.reload(Arc::clone(&built.snapshot));
                model.reload(model_limits(&u, &c, &built));
            }
        }
        let want: BTreeMap<_, _> = model
            .current
            .iter()
            .map(|(k, c)| (k.clone(), (model.used[*c], model.limits[k])))
            .collect();
        prop_assert_eq!(observed(&limiter), want);
    }
    drop(held);
    prop_assert_eq!(limiter.in_use(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sequential_admissions_match_the_reference_model(
        u in universe(),
        first in config(false),
        ops in prop::collection::vec(op(false), 1..120),
    ) {
        run_sequential(u, first, ops)?;
    }
}

/// Concurrent: limits change on reload but no entity disappears, so every counter keeps its
/// identity; none may ever be seen above the largest limit it had.
fn run_concurrent(
    u: Universe,
    configs: Vec<Config>,
    per_thread: Vec<Vec<Op>>,
) -> Result<(), TestCaseError> {
    let builds: Vec<_> = configs.iter().map(|c| build(&u, c)).collect();
    let mut ceiling: BTreeMap<Key, Limit> = BTreeMap::new();
    for (c, b) in configs.iter().zip(&builds) {
        for (k, l) in model_limits(&u, c, b) {
            let e = ceiling.entry(k).or_insert(l);
            *e = match (*e, l) {
                (Some(x), Some(y)) => Some(x.max(y)),
                _ => None,
            };
        }
    }
    let limiter = Arc::new(Limiter::new(Arc::clone(&builds[0].snapshot)));
    let snapshots: Vec<_> = builds.iter().map(|b| Arc::clone(&b.snapshot)).collect();
    let ceiling = Arc::new(ceiling);
    let workers: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(t, ops)| {
            let (limiter, ceiling, snapshots, u) = (
                limiter.clone(),
                ceiling.clone(),
                snapshots.clone(),
                u.clone(),
            );
            thread::spawn(move || -> Result<(), String> {
                let mut held = Vec::new();
                for (n, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Admit { kind, a, b } => {
                            // Every configuration has the same entities, so ids are valid in all.
                            let g = limiter.current();
                            let b0 = Built {
                                snapshot: Arc::clone(g.config()),
                                ..build_ids(&u)
                            };
                            if let Some((spec, _)) = admission(&u, &b0, kind, a, b) {
                                if let Ok(p) = g.try_admit(
                                    CallKey((t as u64) << 32 | n as u64),
                                    spec,
                                    Instant::now(),
                                ) {
                                    held.push(p);
                                }
                            }
                        }
                        Op::Release(i) if !held.is_empty() => drop(held.remove(i % held.len())),
                        Op::Release(_) => {}
                        Op::Reload(_) => {
                            limiter.reload(Arc::clone(&snapshots[n % snapshots.len()]));
                        }
                    }
                    for ((l, name, k), (used, _)) in observed(&limiter) {
                        if let Some(Some(max)) = ceiling.get(&(l, name.clone(), k)) {
                            if used > *max {
                                return Err(format!("{l} {name} {k}: {used} > {max}"));
                            }
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        let r = w
            .join()
            .map_err(|_| TestCaseError::fail("worker panicked"))?;
        r.map_err(TestCaseError::fail)?;
    }
    prop_assert_eq!(limiter.in_use(), 0);
    Ok(())
}

/// Ids of a configuration where every entity exists (universe index == id).
fn build_ids(_u: &Universe) -> Built {
    let id = |n: usize| (0..n as u32).map(Some);
    Built {
        snapshot: Arc::new(TreeBuilder::new().build()),
        org: id(ORGS).map(|i| i.map(OrgId)).collect(),
        user: id(USERS).map(|i| i.map(UserId)).collect(),
        ext: id(EXTS).map(|i| i.map(ExtId)).collect(),
        trunk: id(TRUNKS).map(|i| i.map(TrunkId)).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn concurrent_admissions_never_exceed_any_limit_and_end_at_zero(
        u in universe(),
        configs in prop::collection::vec(config(true), 1..4),
        per_thread in prop::collection::vec(prop::collection::vec(op(true), 1..200), 2..4),
    ) {
        run_concurrent(u, configs, per_thread)?;
    }
}

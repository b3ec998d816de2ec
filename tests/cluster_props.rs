//! Property test of the cluster scripts against a model: random admit / batched admits / retry /
//! release / batched releases / double release / heartbeat / node death / restart / time advance
//! over three nodes on one real redis-server, with the clock in the test's hands. After every
//! step Redis's counts, members, per-member usage and calls equal the model's; no count is
//! negative; an admission never takes a counter above its limit; and once every call is released
//! and the leases run out, every count is 0. Run alone with `cargo test --test cluster_props`.

mod cluster_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use callgate::cluster::{
    Admission, Alternative, CounterKey, CounterLimit, ManualClock, RedisCounters,
};
use callgate::limits::{CallKey, CounterKind, Level};
use cluster_support::{node_config, RedisServer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const NODES: usize = 3;
const COUNTERS: usize = 4;
const LEASE_MS: u64 = 3_000;

#[derive(Debug, Clone)]
enum Op {
    /// A new call on `node` with these alternatives (counter indexes, repeats allowed).
    Admit {
        node: usize,
        alts: Vec<Vec<usize>>,
    },
    /// The same admission again for one of the node's held calls (a lost reply).
    Retry {
        node: usize,
        which: usize,
    },
    /// Several new calls on `node` in one script run (a shard's turn).
    AdmitMany {
        node: usize,
        calls: Vec<Vec<Vec<usize>>>,
    },
    Release {
        node: usize,
        which: usize,
    },
    /// Several held calls released in one script run, repeats allowed.
    ReleaseMany {
        node: usize,
        which: Vec<usize>,
    },
    /// Releasing a call that was already released.
    DoubleRelease {
        node: usize,
        which: usize,
    },
    Heartbeat {
        node: usize,
    },
    /// The process dies: no release, no renewal.
    Kill {
        node: usize,
    },
    /// A new process under the same node name (after a kill, or crashing and restarting now).
    Restart {
        node: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    let alt = prop::collection::vec(0..COUNTERS, 1..4);
    prop_oneof![
        6 => (node.clone(), prop::collection::vec(alt.clone(), 1..3)).prop_map(|(node, alts)| Op::Admit { node, alts }),
        2 => (node.clone(), prop::collection::vec(prop::collection::vec(alt, 1..3), 2..6)).prop_map(|(node, calls)| Op::AdmitMany { node, calls }),
        2 => (node.clone(), any::<usize>()).prop_map(|(node, which)| Op::Retry { node, which }),
        4 => (node.clone(), any::<usize>()).prop_map(|(node, which)| Op::Release { node, which }),
        1 => (node.clone(), any::<usize>()).prop_map(|(node, which)| Op::DoubleRelease { node, which }),
        2 => (node.clone(), prop::collection::vec(any::<usize>(), 2..6)).prop_map(|(node, which)| Op::ReleaseMany { node, which }),
        3 => node.clone().prop_map(|node| Op::Heartbeat { node }),
        1 => node.clone().prop_map(|node| Op::Kill { node }),
        1 => node.prop_map(|node| Op::Restart { node }),
        2 => (0..4_000u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Limits per counter (`None` unlimited), then the steps.
fn case() -> impl Strategy<Value = (Vec<Option<u32>>, Vec<Op>)> {
    let limit = prop_oneof![1 => Just(None), 4 => (0..5u32).prop_map(Some)];
    (
        prop::collection::vec(limit, COUNTERS),
        prop::collection::vec(op(), 1..60),
    )
}

fn key(c: usize) -> CounterKey {
    CounterKey::new(Level::Organization, &format!("o{c}"), CounterKind::Public)
}

/// What the model answers for an admission.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Admitted(usize),
    Refused {
        counter: usize,
        used: u32,
        limit: u32,
    },
}

#[derive(Debug, Default)]
struct MemberModel {
    score: u64,
    usage: BTreeMap<usize, i64>,
    calls: BTreeMap<u64, (usize, Vec<usize>)>,
}

/// A running node process as the model sees it.
#[derive(Debug, Default)]
struct ProcModel {
    member: Option<String>,
    held: BTreeMap<u64, (usize, Vec<usize>)>,
    released: Vec<u64>,
}

/// Redis's state as the scripts must leave it, and each node's client state.
#[derive(Debug, Default)]
struct Model {
    now: u64,
    limits: Vec<Option<u32>>,
    used: BTreeMap<usize, i64>,
    members: BTreeMap<String, MemberModel>,
    epochs: HashMap<usize, u64>,
    procs: Vec<Option<ProcModel>>,
    /// A node that lost its lease republished calls: those exist, so counts may pass limits.
    overcommit: bool,
}

impl Model {
    /// The prelude's `reap`: frees the first member (lowest score, then name) whose lease ended.
    fn reap(&mut self) {
        let dead = self
            .members
            .iter()
            .filter(|(_, m)| m.score < self.now)
            .min_by(|a, b| (a.1.score, a.0).cmp(&(b.1.score, b.0)))
            .map(|(name, _)| name.clone());
        if let Some(name) = dead {
            let m = self.members.remove(&name).expect("found above");
            for (c, n) in m.usage {
                *self.used.entry(c).or_default() -= n;
            }
            self.used.retain(|_, n| *n != 0);
        }
    }

    fn alive(&self, m: &str) -> bool {
        self.members.get(m).is_some_and(|m| m.score >= self.now)
    }

    fn hold(&mut self, m: &str, call: u64, index: usize, counters: &[usize]) {
        let member = self.members.get_mut(m).expect("alive member");
        for c in counters {
            *self.used.entry(*c).or_default() += 1;
            *member.usage.entry(*c).or_default() += 1;
        }
        member.calls.insert(call, (index, counters.to_vec()));
    }

    /// One admit script run over `calls`, decided in order: `None` = lost.
    fn admit_run(&mut self, m: &str, calls: &[(u64, Vec<Vec<usize>>)]) -> Option<Vec<Answer>> {
        self.reap();
        if !self.alive(m) {
            return None;
        }
        Some(
            calls
                .iter()
                .map(|(call, alts)| self.decide(m, *call, alts))
                .collect(),
        )
    }

    /// One call of an admit run (its counts are the earlier calls' of the run).
    fn decide(&mut self, m: &str, call: u64, alts: &[Vec<usize>]) -> Answer {
        if let Some((index, _)) = self.members[m].calls.get(&call) {
            return Answer::Admitted(*index);
        }
        let mut refused = None;
        for (index, alt) in alts.iter().enumerate() {
            let mut need: Vec<(usize, i64)> = Vec::new();
            for c in alt {
                match need.iter_mut().find(|(k, _)| k == c) {
                    Some((_, n)) => *n += 1,
                    None => need.push((*c, 1)),
                }
            }
            refused = need.iter().find_map(|(c, n)| {
                let used = self.used.get(c).copied().unwrap_or(0);
                let limit = self.limits[*c]?;
                (used + n > i64::from(limit)).then_some(Answer::Refused {
                    counter: *c,
                    used: used as u32,
                    limit,
                })
            });
            if refused.is_none() {
                self.hold(m, call, index, alt);
                return Answer::Admitted(index);
            }
        }
        refused.expect("at least one alternative")
    }

    /// One release script run over `calls`.
    fn release_run(&mut self, m: &str, calls: &[u64]) {
        self.reap();
        if !self.alive(m) {
            return;
        }
        let member = self.members.get_mut(m).expect("alive member");
        for call in calls {
            let Some((_, counters)) = member.calls.remove(call) else {
                continue;
            };
            for c in counters {
                *member.usage.get_mut(&c).expect("held counter") -= 1;
                *self.used.get_mut(&c).expect("held counter") -= 1;
            }
        }
        member.usage.retain(|_, n| *n != 0);
        self.used.retain(|_, n| *n != 0);
    }

    /// One heartbeat script run: false = lost.
    fn heartbeat_run(&mut self, m: &str) -> bool {
        self.reap();
        if !self.alive(m) {
            return false;
        }
        self.members.get_mut(m).expect("alive member").score = self.now + LEASE_MS;
        true
    }

    fn join_run(&mut self, node: usize) -> String {
        self.reap();
        let epoch = self.epochs.entry(node).or_default();
        *epoch += 1;
        let name = format!("n{node}#{epoch}");
        let mine = format!("n{node}#");
        for (other, m) in self.members.iter_mut() {
            if other.starts_with(&mine) {
                m.score = 0;
            }
        }
        let member = MemberModel {
            score: self.now + LEASE_MS,
            ..MemberModel::default()
        };
        self.members.insert(name.clone(), member);
        name
    }

    /// `RedisCounters::rejoin`: join, then republish the held calls (no run when none).
    fn rejoin(&mut self, node: usize) {
        let name = self.join_run(node);
        let held: Vec<(u64, (usize, Vec<usize>))> = self.procs[node]
            .as_ref()
            .expect("running")
            .held
            .clone()
            .into_iter()
            .collect();
        if !held.is_empty() {
            self.reap();
            self.overcommit = true;
            for (call, (index, counters)) in held {
                if !self.members[&name].calls.contains_key(&call) {
                    self.hold(&name, call, index, &counters);
                }
            }
        }
        self.procs[node].as_mut().expect("running").member = Some(name);
    }

    /// `RedisCounters::admit`.
    fn admit(&mut self, node: usize, call: u64, alts: &[Vec<usize>]) -> Answer {
        let mut one = self.admit_many(node, &[(call, alts.to_vec())]);
        one.pop().expect("one answer")
    }

    /// `RedisCounters::admit_many_on`.
    fn admit_many(&mut self, node: usize, calls: &[(u64, Vec<Vec<usize>>)]) -> Vec<Answer> {
        for _ in 0..2 {
            let m = self.procs[node].as_ref().expect("running").member.clone();
            let Some(m) = m else {
                self.rejoin(node);
                continue;
            };
            match self.admit_run(&m, calls) {
                Some(answers) => {
                    let p = self.procs[node].as_mut().expect("running");
                    for ((call, alts), answer) in calls.iter().zip(&answers) {
                        if let Answer::Admitted(index) = answer {
                            p.held.insert(*call, (*index, alts[*index].clone()));
                        }
                    }
                    return answers;
                }
                None => self.rejoin(node),
            }
        }
        panic!("model: lease lost twice in one admission");
    }

    /// `RedisCounters::release_many_on` (and `release`, with one call).
    fn release(&mut self, node: usize, calls: &[u64]) {
        let p = self.procs[node].as_mut().expect("running");
        for call in calls {
            p.held.remove(call);
            p.released.push(*call);
        }
        let m = p.member.clone().expect("joined");
        self.release_run(&m, calls);
    }

    fn heartbeat(&mut self, node: usize) {
        let m = self.procs[node]
            .as_ref()
            .expect("running")
            .member
            .clone()
            .expect("joined");
        if !self.heartbeat_run(&m) {
            self.rejoin(node);
        }
    }
}

/// The system under test: one `RedisCounters` per running node.
struct Real {
    clock: ManualClock,
    server_url: String,
    cluster: String,
    limits: Vec<Option<u32>>,
    procs: Vec<Option<Arc<RedisCounters>>>,
}

impl Real {
    async fn start(&mut self, server: &RedisServer, node: usize) {
        let lease = Duration::from_millis(LEASE_MS);
        let mut cfg = node_config(
            server,
            &self.cluster,
            &format!("n{node}"),
            lease,
            Some(&self.clock),
        );
        cfg.redis_url = self.server_url.clone();
        let counters = RedisCounters::connect(cfg).await.expect("node joins");
        self.procs[node] = Some(Arc::new(counters));
    }

    fn alternatives(&self, alts: &[Vec<usize>]) -> Vec<Alternative> {
        alts.iter()
            .map(|alt| {
                alt.iter()
                    .map(|c| CounterLimit {
                        key: key(*c),
                        limit: self.limits[*c],
                    })
                    .collect()
            })
            .collect()
    }
}

fn answer(a: Admission) -> Answer {
    match a {
        Admission::Admitted { index } => Answer::Admitted(index),
        Admission::Refused(r) => Answer::Refused {
            counter: (0..COUNTERS)
                .find(|c| key(*c).name() == r.name)
                .expect("a counter of the universe"),
            used: r.used,
            limit: r.limit,
        },
    }
}

type Hash = HashMap<String, i64>;

/// Redis's state in model terms.
fn observe(
    conn: &mut redis::Connection,
    cluster: &str,
) -> (BTreeMap<usize, i64>, BTreeMap<String, MemberModel>) {
    let p = format!("{{{cluster}}}:");
    let parse = |h: Hash| -> BTreeMap<usize, i64> {
        h.into_iter()
            .map(|(k, v)| {
                let c = (0..COUNTERS)
                    .find(|c| key(*c).as_str() == k)
                    .expect("our counter");
                (c, v)
            })
            .collect()
    };
    let used: Hash = redis::cmd("HGETALL")
        .arg(format!("{p}used"))
        .query(conn)
        .expect("used");
    let nodes: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(format!("{p}nodes"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(conn)
        .expect("nodes");
    let mut members = BTreeMap::new();
    for (name, score) in nodes {
        let records: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(format!("{p}calls:{name}"))
            .query(conn)
            .expect("calls");
        // A member's units are its call records' counters ("index\0counter\0...").
        let mut usage = Hash::new();
        for record in records.values() {
            for c in record.split(|b| *b == 0).skip(1) {
                *usage
                    .entry(String::from_utf8(c.to_vec()).expect("a UTF-8 counter"))
                    .or_default() += 1;
            }
        }
        let calls = records
            .into_keys()
            .map(|c| (c.parse().expect("numeric call key"), (0, Vec::new())))
            .collect();
        members.insert(
            name,
            MemberModel {
                score,
                usage: parse(usage),
                calls,
            },
        );
    }
    (parse(used), members)
}

fn check(
    model: &Model,
    conn: &mut redis::Connection,
    cluster: &str,
    step: &Op,
) -> Result<(), TestCaseError> {
    let (used, members) = observe(conn, cluster);
    prop_assert_eq!(&used, &model.used, "used after {:?}", step);
    prop_assert!(
        used.values().all(|n| *n > 0),
        "a zero or negative count: {:?}",
        used
    );
    let names: Vec<_> = members.keys().collect();
    prop_assert_eq!(
        names,
        model.members.keys().collect::<Vec<_>>(),
        "members after {:?}",
        step
    );
    for (name, m) in &members {
        let want = &model.members[name];
        prop_assert_eq!(m.score, want.score, "score of {}", name);
        prop_assert_eq!(&m.usage, &want.usage, "usage of {} after {:?}", name, step);
        let calls: Vec<_> = m.calls.keys().collect();
        prop_assert_eq!(
            calls,
            want.calls.keys().collect::<Vec<_>>(),
            "calls of {}",
            name
        );
    }
    if !model.overcommit {
        for (c, n) in &used {
            if let Some(limit) = model.limits[*c] {
                prop_assert!(*n <= i64::from(limit), "counter {} at {} > {}", c, n, limit);
            }
        }
    }
    Ok(())
}

#[test]
fn scripts_match_the_model_under_random_sequences() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let conn = std::cell::RefCell::new(server.conn());
    let case_no = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let result = runner.run(&case(), |(limits, ops)| {
        case_no.set(case_no.get() + 1);
        let cluster = format!("prop{}", case_no.get());
        let clock = ManualClock::new(1_000_000);
        let mut model = Model {
            now: clock.now_ms(),
            limits: limits.clone(),
            procs: (0..NODES).map(|_| None).collect(),
            ..Model::default()
        };
        let mut real = Real {
            clock: clock.clone(),
            server_url: server.url(),
            cluster: cluster.clone(),
            limits,
            procs: (0..NODES).map(|_| None).collect(),
        };
        for n in 0..NODES {
            rt.block_on(real.start(&server, n));
            model.procs[n] = Some(ProcModel::default());
            model.rejoin(n);
        }
        let mut next_call = 0u64;
        for step in &ops {
            apply(step, &mut model, &mut real, &rt, &server, &mut next_call)?;
            check(&model, &mut conn.borrow_mut(), &cluster, step)?;
        }
        drain(&mut model, &mut real, &rt, &server);
        let (used, _) = observe(&mut conn.borrow_mut(), &cluster);
        prop_assert!(used.is_empty(), "left after every call ended: {:?}", used);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn apply(
    step: &Op,
    model: &mut Model,
    real: &mut Real,
    rt: &tokio::runtime::Runtime,
    server: &RedisServer,
    next_call: &mut u64,
) -> Result<(), TestCaseError> {
    match step.clone() {
        Op::Admit { node, alts } => {
            let Some(p) = real.procs[node].clone() else {
                return Ok(());
            };
            *next_call += 1;
            let call = *next_call;
            let got = answer(
                rt.block_on(p.admit(CallKey(call), &real.alternatives(&alts)))
                    .expect("admit"),
            );
            let want = model.admit(node, call, &alts);
            prop_assert_eq!(got, want, "admission of call {}", call);
        }
        Op::AdmitMany { node, calls } => {
            let Some(p) = real.procs[node].clone() else {
                return Ok(());
            };
            let calls: Vec<(u64, Vec<Vec<usize>>)> = calls
                .into_iter()
                .map(|alts| {
                    *next_call += 1;
                    (*next_call, alts)
                })
                .collect();
            let alts: Vec<Vec<Alternative>> =
                calls.iter().map(|(_, a)| real.alternatives(a)).collect();
            let batch: Vec<(CallKey, &[Alternative])> = calls
                .iter()
                .zip(&alts)
                .map(|((call, _), a)| (CallKey(*call), a.as_slice()))
                .collect();
            let got: Vec<Answer> = rt
                .block_on(async { p.admit_many_on(&p.connection()?, &batch).await })
                .expect("admit many")
                .into_iter()
                .map(answer)
                .collect();
            let want = model.admit_many(node, &calls);
            prop_assert_eq!(got, want, "admission of calls {:?}", calls);
        }
        Op::ReleaseMany { node, which } => {
            let Some(p) = real.procs[node].clone() else {
                return Ok(());
            };
            let held = &model.procs[node].as_ref().expect("running").held;
            let calls: Vec<u64> = which
                .iter()
                .filter_map(|w| held.keys().nth(w % held.len().max(1)).copied())
                .collect();
            if calls.is_empty() {
                return Ok(());
            }
            let keys: Vec<CallKey> = calls.iter().map(|c| CallKey(*c)).collect();
            rt.block_on(async { p.release_many_on(&p.connection()?, &keys).await })
                .expect("release many");
            model.release(node, &calls);
        }
        Op::Retry { node, which } => {
            let Some(p) = real.procs[node].clone() else {
                return Ok(());
            };
            let held = &model.procs[node].as_ref().expect("running").held;
            let Some((&call, (index, alt))) = held.iter().nth(which % held.len().max(1)) else {
                return Ok(());
            };
            let (index, alts) = (*index, vec![alt.clone(); index + 1]);
            let got = answer(
                rt.block_on(p.admit(CallKey(call), &real.alternatives(&alts)))
                    .expect("retry"),
            );
            prop_assert_eq!(&got, &Answer::Admitted(index), "retry of call {}", call);
            prop_assert_eq!(model.admit(node, call, &alts), got);
        }
        Op::Release { node, which } => {
            let Some(p) = real.procs[node].clone() else {
                return Ok(());
            };
            let held = &model.procs[node].as_ref().expect("running").held;
            let Some(&call) = held.keys().nth(which % held.len().max(1)) else {
                return Ok(());
            };
            rt.block_on(p.release(CallKey(call))).expect("release");
            model.release(node, &[call]);
        }
        Op::DoubleRelease { node, which } => {
            let Some(p) = real.procs[node].clone() else {
                return Ok(());
            };
            let released = &model.procs[node].as_ref().expect("running").released;
            let Some(&call) = released.get(which % released.len().max(1)) else {
                return Ok(());
            };
            rt.block_on(p.release(CallKey(call))).expect("release");
            model.release(node, &[call]);
        }
        Op::Heartbeat { node } => {
            let Some(p) = real.procs[node].clone() else {
                return Ok(());
            };
            rt.block_on(p.heartbeat()).expect("heartbeat");
            model.heartbeat(node);
        }
        Op::Kill { node } => {
            real.procs[node] = None;
            model.procs[node] = None;
        }
        Op::Restart { node } => {
            real.procs[node] = None;
            rt.block_on(real.start(server, node));
            model.procs[node] = Some(ProcModel::default());
            model.rejoin(node);
        }
        Op::Advance { ms } => {
            real.clock.advance(Duration::from_millis(ms));
            model.now += ms;
        }
    }
    Ok(())
}

/// Ends every call: running nodes release theirs, then every lease runs out and one fresh node's
/// heartbeats reap each dead member in turn.
fn drain(model: &mut Model, real: &mut Real, rt: &tokio::runtime::Runtime, server: &RedisServer) {
    for node in 0..NODES {
        let Some(p) = real.procs[node].clone() else {
            continue;
        };
        let calls: Vec<u64> = model.procs[node]
            .as_ref()
            .expect("running")
            .held
            .keys()
            .copied()
            .collect();
        for call in calls {
            rt.block_on(p.release(CallKey(call))).expect("release");
            model.release(node, &[call]);
        }
        real.procs[node] = None;
        model.procs[node] = None;
    }
    real.clock.advance(Duration::from_millis(LEASE_MS + 1));
    model.now += LEASE_MS + 1;
    rt.block_on(real.start(server, 0));
    let p = real.procs[0].clone().expect("just started");
    for _ in 0..(model.members.len() + 2) {
        rt.block_on(p.heartbeat()).expect("heartbeat");
    }
}

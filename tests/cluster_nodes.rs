//! Two `callgate` processes sharing every concurrent-call counter through one real redis-server
//! (`[counters] backend = "redis"`), driven by SIPp: one organization limit enforced across both
//! nodes, a node killed with SIGKILL while it holds calls (its units freed by the other node's
//! script runs after the lease), a node restarted under its name (new epoch, no double counting),
//! Redis stopped and restarted empty under calls in progress (503 or local admission meanwhile,
//! republish afterwards). Run alone with `cargo test --test cluster_nodes`.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 215..=219 here.
//! Every process (redis-server, callgate, SIPp) is started by the test and killed by its PID.

mod cluster_support;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callgate::admin::client::{self, AdminUrl};
use cluster_support::RedisServer;
use serde_json::Value;
use support::ops::{admin_json, binary_config, scrape, tenancy, DaemonProcess};
use support::{
    free_addr, header, wait_until_async, Net, Sipp, SippOpts, SippRun, PUBLIC_NUMBER, WAIT,
};

/// The organization's public counter, as the cluster names it in Redis.
const ORG_KEY: &str = "organization:acme:public";
/// The cluster-wide used hash of the default cluster name.
const USED_KEY: &str = "{callgate}:used";
/// The live members of the default cluster.
const NODES_KEY: &str = "{callgate}:nodes";
/// Bound of every SIPp run of these tests (the UAS runs last a whole test).
const SIPP_TIMEOUT: Duration = Duration::from_secs(90);

/// One node of a test cluster: its name, addresses and configuration, kept to restart it.
struct NodeSpec {
    sip: SocketAddr,
    admin: SocketAddr,
    toml: String,
}

/// How a node is configured besides its addresses.
struct Cluster<'a> {
    redis: &'a RedisServer,
    org_limit: u32,
    lease: &'a str,
    on_backend_error: &'a str,
}

impl NodeSpec {
    /// Node `name` with its SIP listener and admin API on hosts `host` and `host + 1` of `net`,
    /// extension 200's PBX at `pbx` (identified by its IP: any port of it) and the trunk at
    /// `trunk`.
    fn new(
        name: &'static str,
        net: Net,
        host: u8,
        pbx: SocketAddr,
        trunk: SocketAddr,
        c: &Cluster<'_>,
    ) -> Self {
        let (sip, admin) = (free_addr(net.ip(host)), free_addr(net.ip(host + 1)));
        let counters = format!(
            "[counters]\nbackend = \"redis\"\nredis_url = \"{}\"\nlease = \"{}\"\non_backend_error = \"{}\"\n",
            c.redis.url(),
            c.lease,
            c.on_backend_error
        );
        let tenancy = tenancy(pbx, trunk, Some(c.org_limit));
        let toml = binary_config(sip, admin, &format!("{counters}{tenancy}"))
            .replace("name = \"ops\"", &format!("name = \"{name}\""));
        NodeSpec { sip, admin, toml }
    }

    /// Runs the binary; returns once it is ready (it has tried to join the cluster by then).
    async fn start(&self) -> DaemonProcess {
        DaemonProcess::start(&self.toml, self.sip, self.admin, "2s").await
    }
}

// --- Redis, read directly ---------------------------------------------------------------------

/// Every counter's cluster-wide count.
fn redis_used(redis: &RedisServer) -> HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg(USED_KEY)
        .query(&mut redis.conn())
        .expect("read the used hash")
}

/// The organization's cluster-wide count.
fn redis_org(redis: &RedisServer) -> i64 {
    redis_used(redis).get(ORG_KEY).copied().unwrap_or(0)
}

/// The organization's units held by member `member` (`node#epoch`).
fn redis_member_org(redis: &RedisServer, member: &str) -> i64 {
    // A member's units are its call records ("index\0counter\0counter...").
    let records: Vec<Vec<u8>> = redis::cmd("HVALS")
        .arg(format!("{{callgate}}:calls:{member}"))
        .query(&mut redis.conn())
        .expect("read a member's calls");
    let units = records
        .iter()
        .flat_map(|r| r.split(|b| *b == 0).skip(1))
        .filter(|c| *c == ORG_KEY.as_bytes())
        .count();
    i64::try_from(units).expect("a count")
}

/// The members of the live set, lowest lease expiry first.
fn redis_members(redis: &RedisServer) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(NODES_KEY)
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn())
        .expect("read the nodes set")
}

/// Polls `cond` every 20 ms for up to `within`; the time it took, or `None`.
async fn poll(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if cond() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().then(|| started.elapsed())
}

// --- The admin API ----------------------------------------------------------------------------

/// acme's public counter in `GET /counters`.
async fn org_counter(admin: &AdminUrl) -> Value {
    let all = admin_json(admin, "/counters").await;
    all.as_array()
        .expect("GET /counters is a JSON array")
        .iter()
        .find(|c| c["level"] == "organization" && c["name"] == "acme" && c["counter"] == "public")
        .cloned()
        .unwrap_or_else(|| panic!("no organization acme public counter in {all}"))
}

/// (`used`, `node_used`, `cluster_used`) of acme's public counter.
async fn org_view(admin: &AdminUrl) -> (u64, Option<u64>, Option<u64>) {
    let c = org_counter(admin).await;
    (
        c["used"].as_u64().expect("`used` is a number"),
        c["node_used"].as_u64(),
        c["cluster_used"].as_u64(),
    )
}

/// Waits until acme's public counter reads `want` on `d`.
async fn wait_org_view(d: &DaemonProcess, label: &str, want: (u64, Option<u64>, Option<u64>)) {
    let seen = wait_until_async(WAIT, || async { org_view(&d.admin).await == want }).await;
    assert!(
        seen,
        "{label}: acme public (used, node_used, cluster_used) = {:?}, expected {want:?}",
        org_view(&d.admin).await
    );
}

/// Ids of the calls `GET /calls` lists, each with its A leg's state.
async fn calls(admin: &AdminUrl) -> Vec<(String, String)> {
    let list = admin_json(admin, "/calls").await;
    list.as_array()
        .expect("GET /calls is a JSON array")
        .iter()
        .map(|c| {
            let id = c["id"].as_str().expect("a call has an id").to_owned();
            let state = c["legs"][0]["state"].as_str().unwrap_or("").to_owned();
            (id, state)
        })
        .collect()
}

/// Ends call `id` through the admin API (BYE on both legs).
async fn end_call(admin: &AdminUrl, id: &str) {
    let path = format!("/calls/{id}");
    let resp = client::request(admin, "DELETE", &path, None)
        .await
        .expect("admin request");
    assert!(resp.status < 300, "DELETE {path}: {}", resp.status);
}

/// Ends every call of a node; how many there were.
async fn end_all_calls(admin: &AdminUrl) -> usize {
    let ids = calls(admin).await;
    for (id, _) in &ids {
        end_call(admin, id).await;
    }
    ids.len()
}

/// Waits until every counter of `d` is at 0: `used`, `node_used` and `cluster_used` (Redis
/// answers again: acme's `cluster_used` must be there and 0).
async fn wait_all_zero(d: &DaemonProcess, label: &str) {
    let zero = |c: &Value, field: &str| c[field].is_null() || c[field] == 0;
    let settled = wait_until_async(WAIT, || async {
        let all = admin_json(&d.admin, "/counters").await;
        let all = all.as_array().cloned().unwrap_or_default();
        !all.is_empty()
            && all
                .iter()
                .all(|c| zero(c, "used") && zero(c, "node_used") && zero(c, "cluster_used"))
            && org_view(&d.admin).await == (0, Some(0), Some(0))
    })
    .await;
    if !settled {
        let all = admin_json(&d.admin, "/counters").await;
        let held: Vec<&Value> = all
            .as_array()
            .expect("GET /counters is a JSON array")
            .iter()
            .filter(|c| !(zero(c, "used") && zero(c, "node_used") && zero(c, "cluster_used")))
            .collect();
        panic!(
            "{label}: counters not back at 0 (or acme's cluster_used absent): {held:?}, acme {:?}",
            org_view(&d.admin).await
        );
    }
    assert!(calls(&d.admin).await.is_empty(), "{label}: calls left");
}

/// `callgate_cluster_backend_errors_total` of a node.
async fn backend_errors(admin: &AdminUrl) -> f64 {
    scrape(admin)
        .await
        .value("callgate_cluster_backend_errors_total", &[])
        .unwrap_or(0.0)
}

// --- SIPp ---------------------------------------------------------------------------------------

/// Options of a long SIPp run.
fn opts(calls: u32) -> SippOpts {
    SippOpts {
        calls,
        timeout: SIPP_TIMEOUT,
        ..SippOpts::default()
    }
}

/// The trunk's callee: answers every call and holds it until a BYE (`uas.xml`).
async fn trunk_callee(at: SocketAddr, calls: u32) -> Sipp {
    Sipp::uas("uas.xml", at, opts(calls)).await
}

/// `n` calls from the PBX's IP (a fresh port) through node `d`, each held until callgate sends
/// BYE (`uac-hold.xml`).
fn held_calls(pbx: SocketAddr, d: &DaemonProcess, n: u32) -> Sipp {
    let o = opts(n).arg(&["-l", &n.to_string(), "-r", "20"]);
    Sipp::uac("uac-hold.xml", free_addr(pbx.ip()), d.sip, PUBLIC_NUMBER, o)
}

/// One call from the PBX's IP through node `d` that must fail (`uac-fail.xml`).
async fn failed_call(pbx: SocketAddr, d: &DaemonProcess) -> SippRun {
    let uac = Sipp::uac(
        "uac-fail.xml",
        free_addr(pbx.ip()),
        d.sip,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    let run = uac.finish().await;
    run.assert_ok("uac-fail");
    run
}

/// The one final response `status` (e.g. `SIP/2.0 486`) of a `uac-fail.xml` run, with its
/// `Reason` header.
fn one_final<'r>(run: &'r SippRun, status: &str) -> (&'r str, String) {
    let finals: BTreeSet<&str> = run
        .received(status)
        .into_iter()
        .filter_map(|m| header(m, "Call-ID"))
        .collect();
    assert_eq!(
        finals.len(),
        1,
        "expected one `{status}`:\n{}",
        run.messages
    );
    let message = run.received(status)[0];
    let reason = header(message, "Reason").unwrap_or("").to_owned();
    (message, reason)
}

/// Asserts a `uac-fail.xml` run got 486 from the organization's full public counter.
fn assert_org_full(run: &SippRun, limit: u32) {
    let (message, reason) = one_final(run, "SIP/2.0 486");
    let text = format!("SIP;cause=486;text=\"organization acme: public {limit}/{limit}\"");
    assert_eq!(reason, text, "in\n{message}");
}

/// Call-IDs of the received responses to INVITE whose status line starts with `status`
/// (retransmissions counted once).
fn invite_finals(run: &SippRun, status: &str) -> BTreeSet<String> {
    run.received(status)
        .into_iter()
        .filter(|m| header(m, "CSeq").is_some_and(|c| c.ends_with("INVITE")))
        .filter_map(|m| header(m, "Call-ID").map(str::to_owned))
        .collect()
}

/// Call-IDs of the received requests starting with `method` (e.g. `INVITE `).
fn requests(run: &SippRun, method: &str) -> BTreeSet<String> {
    run.received(method)
        .into_iter()
        .filter_map(|m| header(m, "Call-ID").map(str::to_owned))
        .collect()
}

// --- Tests ------------------------------------------------------------------------------------

/// The largest values sampled while both nodes took calls.
#[derive(Debug, Default)]
struct Samples {
    rounds: usize,
    redis: i64,
    used: [u64; 2],
    node_used: [u64; 2],
    cluster_used: [u64; 2],
    /// Samples above the limit, as `what=value`.
    over: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_organization_limit_and_never_exceed_it() {
    const LIMIT: u32 = 6;
    const CALLS: u32 = 40;
    let net = Net(215);
    let (pbx_a, pbx_b, trunk) = (net.addr(1), net.addr(2), net.addr(3));
    let redis = RedisServer::start();
    let cluster = Cluster {
        redis: &redis,
        org_limit: LIMIT,
        lease: "3s",
        on_backend_error: "reject",
    };
    let spec_a = NodeSpec::new("node-a", net, 250, pbx_a, trunk, &cluster);
    let spec_b = NodeSpec::new("node-b", net, 252, pbx_b, trunk, &cluster);
    let (a, b) = (spec_a.start().await, spec_b.start().await);
    assert_eq!(redis_members(&redis).len(), 2, "both nodes joined");
    let callee = trunk_callee(trunk, 1000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, url) = (stop.clone(), redis.url());
        let admins = [a.admin.clone(), b.admin.clone()];
        tokio::spawn(async move {
            let mut conn = redis::Client::open(url)
                .and_then(|c| c.get_connection())
                .expect("sampler connects to Redis");
            let mut s = Samples::default();
            let limit = u64::from(LIMIT);
            while !stop.load(Ordering::Relaxed) {
                let n: Option<i64> = redis::cmd("HGET")
                    .arg(USED_KEY)
                    .arg(ORG_KEY)
                    .query(&mut conn)
                    .expect("HGET the organization's count");
                let n = n.unwrap_or(0);
                s.redis = s.redis.max(n);
                if n > i64::from(LIMIT) {
                    s.over.push(format!("redis={n}"));
                }
                for (i, admin) in admins.iter().enumerate() {
                    let (used, node_used, cluster_used) = org_view(admin).await;
                    let (node_used, cluster_used) =
                        (node_used.expect("node_used"), cluster_used.unwrap_or(0));
                    s.used[i] = s.used[i].max(used);
                    s.node_used[i] = s.node_used[i].max(node_used);
                    s.cluster_used[i] = s.cluster_used[i].max(cluster_used);
                    for (what, v) in [
                        ("used", used),
                        ("node_used", node_used),
                        ("cluster_used", cluster_used),
                    ] {
                        if v > limit {
                            s.over.push(format!("node {i} {what}={v}"));
                        }
                    }
                }
                s.rounds += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            s
        })
    };

    // 40 calls a node over 5 s, each held 1 s: about 8 wanted at once on each node, against 6
    // for both together; the units freed are taken again at once, from either node.
    let caller = |pbx, d: &DaemonProcess| {
        let o = opts(CALLS).arg(&["-d", "1000", "-r", "8", "-l", &CALLS.to_string()]);
        Sipp::uac("uac-or-busy.xml", pbx, d.sip, PUBLIC_NUMBER, o)
    };
    let (uac_a, uac_b) = (caller(pbx_a, &a), caller(pbx_b, &b));
    let started = Instant::now();
    let (run_a, run_b) = tokio::join!(
        uac_a.finish_within(SIPP_TIMEOUT),
        uac_b.finish_within(SIPP_TIMEOUT)
    );
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("sampler task");
    run_a.assert_ok("uac-or-busy via node-a");
    run_b.assert_ok("uac-or-busy via node-b");

    let mut admitted = [0usize; 2];
    let mut refused = [0usize; 2];
    for (i, run) in [&run_a, &run_b].into_iter().enumerate() {
        let ok = invite_finals(run, "SIP/2.0 200");
        let busy = invite_finals(run, "SIP/2.0 486");
        assert_eq!(
            ok.len() + busy.len(),
            CALLS as usize,
            "node {i}: every call answered or refused"
        );
        for m in run.received("SIP/2.0 486") {
            assert_eq!(
                header(m, "Reason"),
                Some(
                    format!("SIP;cause=486;text=\"organization acme: public {LIMIT}/{LIMIT}\"")
                        .as_str()
                ),
                "a refusal names the organization's full public counter:\n{m}"
            );
        }
        (admitted[i], refused[i]) = (ok.len(), busy.len());
    }
    eprintln!(
        "{} calls in {:?}: admitted {admitted:?}, refused {refused:?}; {samples:?}",
        2 * CALLS,
        started.elapsed()
    );
    assert!(
        samples.over.is_empty(),
        "above the limit: {:?}",
        samples.over
    );
    assert!(
        samples.rounds >= 20,
        "only {} sample rounds",
        samples.rounds
    );
    assert_eq!(
        samples.redis,
        i64::from(LIMIT),
        "Redis' count reached the limit"
    );
    assert_eq!(
        samples.used.iter().max().copied(),
        Some(u64::from(LIMIT)),
        "/counters' used reached the limit"
    );
    assert!(
        refused.iter().sum::<usize>() > 0,
        "some calls were refused by the limit"
    );
    assert!(
        admitted.iter().all(|&n| n > 0) && samples.node_used.iter().all(|&n| n > 0),
        "both nodes admitted calls: {admitted:?}, node_used max {:?}",
        samples.node_used
    );

    // The trunk saw exactly the admitted calls, each ended with BYE.
    let trunk_run = callee.stop();
    let total = admitted.iter().sum::<usize>();
    assert_eq!(requests(&trunk_run, "INVITE ").len(), total);
    assert_eq!(requests(&trunk_run, "BYE ").len(), total);

    wait_all_zero(&a, "node-a").await;
    wait_all_zero(&b, "node-b").await;
    assert!(
        redis_used(&redis).is_empty(),
        "Redis still counts {:?}",
        redis_used(&redis)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_calls_up_has_its_units_freed_after_the_lease() {
    const LIMIT: u32 = 5;
    const K: u32 = 3; // node-a's calls
    const J: u32 = 2; // node-b's calls
    let lease = Duration::from_secs(2);
    let net = Net(216);
    let (pbx_a, pbx_b) = (net.addr(1), net.addr(2));
    let (trunk_a, trunk_b) = (net.addr(3), net.addr(4));
    let redis = RedisServer::start();
    let cluster = Cluster {
        redis: &redis,
        org_limit: LIMIT,
        lease: "2s",
        on_backend_error: "reject",
    };
    let spec_a = NodeSpec::new("node-a", net, 250, pbx_a, trunk_a, &cluster);
    let spec_b = NodeSpec::new("node-b", net, 252, pbx_b, trunk_b, &cluster);
    let (mut a, b) = (spec_a.start().await, spec_b.start().await);
    let callee_a = trunk_callee(trunk_a, K).await;
    // node-b's callee takes its J calls and LIMIT - J more once node-a's units are freed.
    let callee_b = trunk_callee(trunk_b, LIMIT).await;

    let held_a = held_calls(pbx_a, &a, K);
    a.wait_confirmed(K as usize).await;
    let held_b = held_calls(pbx_b, &b, J);
    b.wait_confirmed(J as usize).await;
    assert_eq!(redis_org(&redis), i64::from(K + J));
    assert_eq!(redis_member_org(&redis, "node-a#1"), i64::from(K));
    assert_eq!(redis_member_org(&redis, "node-b#1"), i64::from(J));
    let full = Some(u64::from(LIMIT));
    wait_org_view(&a, "node-a", (u64::from(LIMIT), Some(u64::from(K)), full)).await;
    wait_org_view(&b, "node-b", (u64::from(LIMIT), Some(u64::from(J)), full)).await;
    // The cluster is full: node-b refuses, naming the shared count.
    assert_org_full(&failed_call(pbx_b, &b).await, LIMIT);

    // SIGKILL: node-a releases nothing; its units outlive it until its lease ends.
    a.signal("-KILL");
    let killed = Instant::now();
    assert!(
        a.wait_exit(Duration::from_secs(5)).await.is_some(),
        "node-a exits on SIGKILL"
    );
    assert_eq!(
        redis_org(&redis),
        i64::from(LIMIT),
        "the units outlive the process"
    );
    // Nobody but node-b's heartbeat runs a script now.
    let freed = poll(Duration::from_secs(6), || redis_org(&redis) == i64::from(J)).await;
    let took = killed.elapsed();
    eprintln!("node-a's units freed {took:?} after SIGKILL (lease {lease:?})");
    assert!(
        freed.is_some(),
        "Redis still counts {} after {took:?}: {:?}",
        redis_org(&redis),
        redis_used(&redis)
    );
    assert!(
        took >= lease / 2,
        "freed after {took:?}: before the lease could end"
    );
    assert_eq!(
        redis_members(&redis),
        ["node-b#1"],
        "the dead member is gone"
    );
    assert_eq!(redis_member_org(&redis, "node-a#1"), 0);
    wait_org_view(
        &b,
        "node-b",
        (u64::from(J), Some(u64::from(J)), Some(u64::from(J))),
    )
    .await;

    // node-b keeps serving: the freed room is its own now, exactly LIMIT - J calls of it.
    let more_b = held_calls(pbx_b, &b, LIMIT - J);
    b.wait_confirmed(LIMIT as usize).await;
    assert_eq!(redis_org(&redis), i64::from(LIMIT));
    assert_org_full(&failed_call(pbx_b, &b).await, LIMIT);

    // node-a comes back under its name: a new epoch holding nothing, and the cluster count is
    // still node-b's alone.
    let stale = (held_a.stop(), callee_a.stop());
    assert_eq!(stale.1.received("BYE ").len(), 0, "node-a died: no BYE");
    let a = spec_a.start().await;
    let members = redis_members(&redis);
    assert!(
        members.contains(&"node-a#2".to_owned()) && members.len() == 2,
        "{members:?}"
    );
    wait_org_view(
        &a,
        "restarted node-a",
        (u64::from(LIMIT), Some(0), Some(u64::from(LIMIT))),
    )
    .await;
    assert!(calls(&a.admin).await.is_empty());
    // An admission through node-a runs its script against the shared count: full, not 8.
    assert_org_full(&failed_call(pbx_a, &a).await, LIMIT);
    assert_eq!(redis_org(&redis), i64::from(LIMIT));
    assert_eq!(redis_member_org(&redis, "node-a#2"), 0);

    // node-b's calls end with BYE on both legs; everything is back at 0.
    assert_eq!(end_all_calls(&b.admin).await, LIMIT as usize);
    let first = held_b.finish_within(WAIT).await;
    first.assert_ok("node-b's first calls");
    let second = more_b.finish_within(WAIT).await;
    second.assert_ok("node-b's later calls");
    let trunk = callee_b.finish_within(WAIT).await;
    trunk.assert_ok("node-b's callee");
    assert_eq!(requests(&trunk, "BYE ").len(), LIMIT as usize);
    wait_all_zero(&b, "node-b").await;
    wait_all_zero(&a, "restarted node-a").await;
    assert!(redis_used(&redis).is_empty(), "{:?}", redis_used(&redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_name_ends_its_previous_epoch_at_once() {
    const LIMIT: u32 = 5;
    let net = Net(219);
    let (pbx_a, pbx_b) = (net.addr(1), net.addr(2));
    let (trunk_a, trunk_b) = (net.addr(3), net.addr(4));
    let redis = RedisServer::start();
    // A lease far longer than the test: only the new epoch's join can end the old one.
    let cluster = Cluster {
        redis: &redis,
        org_limit: LIMIT,
        lease: "60s",
        on_backend_error: "reject",
    };
    let spec_a = NodeSpec::new("node-a", net, 250, pbx_a, trunk_a, &cluster);
    let spec_b = NodeSpec::new("node-b", net, 252, pbx_b, trunk_b, &cluster);
    let (mut a, b) = (spec_a.start().await, spec_b.start().await);
    let callee_a = trunk_callee(trunk_a, 3).await;
    let callee_b = trunk_callee(trunk_b, 2).await;
    let held_a = held_calls(pbx_a, &a, 3);
    a.wait_confirmed(3).await;
    let held_b = held_calls(pbx_b, &b, 2);
    b.wait_confirmed(2).await;
    assert_eq!(redis_org(&redis), 5);

    a.signal("-KILL");
    assert!(a.wait_exit(Duration::from_secs(5)).await.is_some());
    drop((held_a.stop(), callee_a.stop()));
    let restarted = Instant::now();
    let a = spec_a.start().await;
    // The join ended node-a#1's lease; the next script run (node-a's own next heartbeat, right
    // after the start) frees its units.
    let freed = poll(Duration::from_secs(5), || redis_org(&redis) == 2).await;
    eprintln!(
        "old epoch's units freed {:?} after the restart began",
        restarted.elapsed()
    );
    assert!(
        freed.is_some(),
        "Redis still counts {:?} (members {:?})",
        redis_used(&redis),
        redis_members(&redis)
    );
    let members: BTreeSet<String> = redis_members(&redis).into_iter().collect();
    assert_eq!(
        members,
        BTreeSet::from(["node-a#2".to_owned(), "node-b#1".to_owned()])
    );
    wait_org_view(&a, "restarted node-a", (2, Some(0), Some(2))).await;

    // Room for 3 again: the new epoch's calls count once.
    let callee_a = trunk_callee(trunk_a, 3).await;
    let held_a = held_calls(pbx_a, &a, 3);
    a.wait_confirmed(3).await;
    assert_eq!(redis_org(&redis), 5);
    assert_eq!(redis_member_org(&redis, "node-a#2"), 3);
    assert_org_full(&failed_call(pbx_b, &b).await, LIMIT);

    assert_eq!(end_all_calls(&a.admin).await, 3);
    assert_eq!(end_all_calls(&b.admin).await, 2);
    for (run, label) in [
        (held_a.finish_within(WAIT).await, "node-a's calls"),
        (held_b.finish_within(WAIT).await, "node-b's calls"),
        (callee_a.finish_within(WAIT).await, "node-a's callee"),
        (callee_b.finish_within(WAIT).await, "node-b's callee"),
    ] {
        run.assert_ok(label);
    }
    wait_all_zero(&a, "node-a").await;
    wait_all_zero(&b, "node-b").await;
    assert!(redis_used(&redis).is_empty(), "{:?}", redis_used(&redis));
}

/// What the Redis-outage tests share: two nodes holding two calls each, then Redis killed.
struct Outage {
    redis: RedisServer,
    port: u16,
    a: DaemonProcess,
    b: DaemonProcess,
    pbx: [SocketAddr; 2],
    held: Vec<Sipp>,
    callees: Vec<Sipp>,
    /// Call ids up on each node when Redis went away.
    ids: [BTreeSet<String>; 2],
    /// When Redis was killed.
    down_at: Instant,
}

const OUTAGE_LIMIT: u32 = 10;

/// Two nodes of `net` with `on_backend_error`, lease 3 s, two calls held through each (their
/// callees take `callee_calls` calls each), then Redis killed.
async fn outage(net: Net, on_backend_error: &str, callee_calls: u32) -> Outage {
    let (pbx_a, pbx_b) = (net.addr(1), net.addr(2));
    let (trunk_a, trunk_b) = (net.addr(3), net.addr(4));
    let mut redis = RedisServer::start();
    let port = redis.addr.port();
    let cluster = Cluster {
        redis: &redis,
        org_limit: OUTAGE_LIMIT,
        lease: "3s",
        on_backend_error,
    };
    let spec_a = NodeSpec::new("node-a", net, 250, pbx_a, trunk_a, &cluster);
    let spec_b = NodeSpec::new("node-b", net, 252, pbx_b, trunk_b, &cluster);
    let (a, b) = (spec_a.start().await, spec_b.start().await);
    let callees = vec![
        trunk_callee(trunk_a, callee_calls).await,
        trunk_callee(trunk_b, callee_calls).await,
    ];
    let held = vec![held_calls(pbx_a, &a, 2), held_calls(pbx_b, &b, 2)];
    a.wait_confirmed(2).await;
    b.wait_confirmed(2).await;
    assert_eq!(redis_org(&redis), 4);
    wait_org_view(&a, "node-a", (4, Some(2), Some(4))).await;
    wait_org_view(&b, "node-b", (4, Some(2), Some(4))).await;
    let mut ids = [BTreeSet::new(), BTreeSet::new()];
    for (i, d) in [&a, &b].into_iter().enumerate() {
        ids[i] = calls(&d.admin)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    }

    redis.kill();
    let down_at = Instant::now();
    Outage {
        redis,
        port,
        a,
        b,
        pbx: [pbx_a, pbx_b],
        held,
        callees,
        ids,
        down_at,
    }
}

impl Outage {
    /// Both nodes noticed: the heartbeat failed (logged) and `/counters` shows each node's own
    /// share with no `cluster_used`.
    async fn wait_noticed(&mut self, share: [u64; 2]) {
        for (d, label, own) in [
            (&mut self.a, "node-a", share[0]),
            (&mut self.b, "node-b", share[1]),
        ] {
            d.wait_log("cannot renew the cluster lease", 1, Duration::from_secs(5))
                .await;
            wait_org_view(d, label, (own, Some(own), None)).await;
        }
    }

    /// The calls up on each node: still confirmed, the ones listed at the outage still there.
    async fn assert_calls_kept(&self, left: [usize; 2]) {
        for (i, d) in [&self.a, &self.b].into_iter().enumerate() {
            let now = calls(&d.admin).await;
            assert_eq!(now.len(), left[i], "node {i}: {now:?}");
            assert!(
                now.iter()
                    .all(|(id, state)| state == "confirmed" && self.ids[i].contains(id)),
                "node {i}: {now:?}, before the outage {:?}",
                self.ids[i]
            );
        }
    }

    /// Restarts Redis empty on its port; how long until Redis counts `want` for the
    /// organization again (the nodes joined again and republished).
    async fn restart_redis(&mut self, want: i64) -> Duration {
        self.redis = RedisServer::start_on(self.port);
        let restarted = Instant::now();
        let redis = &self.redis;
        let back = poll(Duration::from_secs(10), || redis_org(redis) == want).await;
        assert!(
            back.is_some(),
            "after Redis restarted empty: {:?}, members {:?}, expected {want}",
            redis_used(redis),
            redis_members(redis)
        );
        restarted.elapsed()
    }

    /// Ends every call, checks both callers and callees completed, and every counter is 0 on
    /// both nodes and in Redis.
    async fn end(self) {
        end_all_calls(&self.a.admin).await;
        end_all_calls(&self.b.admin).await;
        for sipp in self.held.into_iter().chain(self.callees) {
            sipp.finish_within(WAIT)
                .await
                .assert_ok("held calls ended by BYE");
        }
        wait_all_zero(&self.a, "node-a").await;
        wait_all_zero(&self.b, "node-b").await;
        assert!(
            redis_used(&self.redis).is_empty(),
            "{:?}",
            redis_used(&self.redis)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_refuses_new_calls_keeps_calls_up_and_republishes_when_back() {
    let lease = Duration::from_secs(3);
    // Each callee: two calls before the outage, one after.
    let mut o = outage(Net(217), "reject", 3).await;

    // New calls through either node: 503 naming the backend, nothing sent to the trunk.
    for (i, d) in [&o.a, &o.b].into_iter().enumerate() {
        let run = failed_call(o.pbx[i], d).await;
        let (message, reason) = one_final(&run, "SIP/2.0 503");
        assert_eq!(
            reason, "SIP;cause=503;text=\"counter backend unavailable (redis)\"",
            "node {i}:\n{message}"
        );
        assert!(
            backend_errors(&d.admin).await >= 1.0,
            "node {i} counts the backend failure"
        );
    }
    o.wait_noticed([2, 2]).await;
    // The calls in progress are never dropped.
    o.assert_calls_kept([2, 2]).await;
    assert!(
        o.held.iter_mut().all(|s| !s.exited()),
        "no caller got a BYE"
    );

    // A call ends during the outage: its release cannot reach Redis and waits for it.
    let ended = o.ids[0].first().cloned().expect("node-a holds calls");
    end_call(&o.a.admin, &ended).await;
    o.ids[0].remove(&ended);
    let gone = wait_until_async(WAIT, || async { calls(&o.a.admin).await.len() == 1 }).await;
    assert!(gone, "node-a's call ended");
    wait_org_view(&o.a, "node-a", (1, Some(1), None)).await;
    o.assert_calls_kept([1, 2]).await;

    // Past a whole lease without renewal (the lease is a time span: nothing to await but the
    // clock): the calls are still up, and a node stops even trying Redis for new calls.
    tokio::time::sleep_until((o.down_at + lease + Duration::from_millis(200)).into()).await;
    o.assert_calls_kept([1, 2]).await;
    let run = failed_call(o.pbx[1], &o.b).await;
    assert_eq!(
        one_final(&run, "SIP/2.0 503").1,
        "SIP;cause=503;text=\"counter backend unavailable (redis)\""
    );
    let stale = o.b.log_lines("lease not renewed for half a lease");
    assert_eq!(stale.len(), 1, "{stale:?}");

    // Redis comes back empty: each node's next heartbeat joins again and republishes exactly
    // the calls it holds (the release queued meanwhile frees nothing twice).
    let took = o.restart_redis(3).await;
    eprintln!("Redis counts the calls held again {took:?} after its restart");
    assert!(
        took <= lease / 3 + Duration::from_secs(2),
        "republished after {took:?}"
    );
    assert_eq!(redis_member_org(&o.redis, "node-a#1"), 1);
    assert_eq!(redis_member_org(&o.redis, "node-b#1"), 2);
    wait_org_view(&o.a, "node-a", (3, Some(1), Some(3))).await;
    wait_org_view(&o.b, "node-b", (3, Some(2), Some(3))).await;
    o.assert_calls_kept([1, 2]).await;

    // New calls are admitted again and counted once each.
    let (pbx_a, pbx_b) = (o.pbx[0], o.pbx[1]);
    let again_a = held_calls(pbx_a, &o.a, 1);
    let again_b = held_calls(pbx_b, &o.b, 1);
    o.a.wait_confirmed(2).await;
    o.b.wait_confirmed(3).await;
    assert_eq!(redis_org(&o.redis), 5);
    o.held.extend([again_a, again_b]);
    o.end().await;
}

/// With `local`, a call admitted on the node's own counters during the outage is counted in
/// Redis once it is back (republished with the calls Redis admitted), so the cluster's count is
/// exact again and no node admits past the limit. (Before the fix, Redis counted 4 of the 6
/// calls up for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_with_local_policy_admits_on_the_nodes_own_counters() {
    // Each callee: two calls before the outage, one during it.
    let mut o = outage(Net(218), "local", 3).await;
    o.wait_noticed([2, 2]).await;

    // A new call through each node is admitted on its own counters while Redis is down.
    let (pbx_a, pbx_b) = (o.pbx[0], o.pbx[1]);
    let during_a = held_calls(pbx_a, &o.a, 1);
    let during_b = held_calls(pbx_b, &o.b, 1);
    o.a.wait_confirmed(3).await;
    o.b.wait_confirmed(3).await;
    for d in [&o.a, &o.b] {
        assert!(
            !d.log_lines("admitting on this node's counters").is_empty(),
            "the local admission is logged"
        );
        assert!(backend_errors(&d.admin).await >= 1.0);
    }
    wait_org_view(&o.a, "node-a", (3, Some(3), None)).await;
    wait_org_view(&o.b, "node-b", (3, Some(3), None)).await;
    o.held.extend([during_a, during_b]);

    // Redis comes back empty: the counts are exact again, the calls admitted during the outage
    // included (each node republishes every call it holds).
    let took = o.restart_redis(6).await;
    eprintln!("Redis counts the calls held again {took:?} after its restart");
    wait_org_view(&o.a, "node-a", (6, Some(3), Some(6))).await;
    wait_org_view(&o.b, "node-b", (6, Some(3), Some(6))).await;
    o.end().await;
}

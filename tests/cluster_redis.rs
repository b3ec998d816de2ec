//! The cluster counters against a real redis-server (started and killed by each test, on a free
//! loopback port): concurrency across two nodes, a node that dies, a node that restarts, Redis
//! itself restarting empty. Run alone with `cargo test --test cluster_redis`.

mod cluster_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callgate::cluster::{
    Admission, Alternative, ClusterError, CounterKey, CounterLimit, ManualClock, RedisCounters,
    RECONNECT_TRIES,
};
use callgate::limits::{CallKey, CounterKind, Level};
use cluster_support::{node, node_config, RedisServer};

fn org(limit: u32) -> CounterLimit {
    CounterLimit {
        key: CounterKey::new(Level::Organization, "acme", CounterKind::Public),
        limit: Some(limit),
    }
}

fn ext(n: u32) -> CounterLimit {
    CounterLimit {
        key: CounterKey::new(
            Level::Extension,
            &format!("{n}@acme"),
            CounterKind::MaxCalls,
        ),
        limit: None,
    }
}

/// An outgoing call of extension `n` under the organization's public limit.
fn call_path(n: u32, limit: u32) -> Vec<Alternative> {
    vec![vec![ext(n), org(limit)]]
}

/// Every counter's cluster-wide count, straight from Redis.
fn used(server: &RedisServer, cluster: &str) -> HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg(format!("{{{cluster}}}:used"))
        .query(&mut server.conn())
        .expect("read the used hash")
}

fn org_used(server: &RedisServer, cluster: &str) -> i64 {
    used(server, cluster)
        .get("organization:acme:public")
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_admitting_concurrently_never_exceed_the_limit_and_end_at_zero() {
    const LIMIT: u32 = 25;
    let server = RedisServer::start();
    let lease = Duration::from_secs(30);
    let a = node(node_config(&server, "conc", "a", lease, None)).await;
    let b = node(node_config(&server, "conc", "b", lease, None)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_seen, url) = (stop.clone(), max_seen.clone(), server.url());
        std::thread::spawn(move || {
            let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let n: Option<u64> = redis::cmd("HGET")
                    .arg("{conc}:used")
                    .arg("organization:acme:public")
                    .query(&mut conn)
                    .unwrap();
                max_seen.fetch_max(n.unwrap_or(0), Ordering::Relaxed);
            }
        })
    };
    let (admitted, refused) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let n = if t % 2 == 0 { a.clone() } else { b.clone() };
        let (admitted, refused) = (admitted.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40u64 {
                let call = CallKey(t * 1000 + i);
                match n
                    .admit(call, &call_path((t % 8) as u32, LIMIT))
                    .await
                    .unwrap()
                {
                    Admission::Admitted { index: 0 } => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        n.release(call).await.unwrap();
                    }
                    Admission::Refused(r) => {
                        assert_eq!(
                            (r.level, r.name.as_str(), r.limit),
                            (Level::Organization, "acme", LIMIT)
                        );
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let max = max_seen.load(Ordering::Relaxed);
    println!(
        "admitted {}, refused {}, max organization usage sampled {max}",
        admitted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    assert!(max <= u64::from(LIMIT), "sampled {max} > {LIMIT}");
    assert!(admitted.load(Ordering::Relaxed) > 0);
    assert!(
        used(&server, "conc").is_empty(),
        "left: {:?}",
        used(&server, "conc")
    );
    assert!(a.usage().await.unwrap().is_empty());
}

/// Admissions sent together (a shard's turn) are decided in order, each against the counts the
/// earlier ones left, as if one by one: past the limit the rest are refused with the count then;
/// a call listed twice counts once; a failover alternative is taken per call.
#[tokio::test]
async fn a_batch_of_admissions_is_decided_in_order_against_the_running_counts() {
    let (server, a) = server_and_node("abatch").await;
    let conn = a.connection().unwrap();
    let (one, two) = (call_path(1, 2), call_path(2, 2));
    // Call 4 fails over from its full first alternative (extension 2 under the organization) to
    // one without the organization.
    let fallback = vec![two[0].clone(), vec![ext(3)]];
    let batch: Vec<(CallKey, &[Alternative])> = vec![
        (CallKey(1), &one),
        (CallKey(2), &two),
        (CallKey(2), &two),
        (CallKey(3), &one),
        (CallKey(4), &fallback),
    ];
    let answers = a.admit_many_on(&conn, &batch).await.unwrap();
    let admitted = |index| Admission::Admitted { index };
    assert_eq!(answers[0], admitted(0));
    assert_eq!(answers[1], admitted(0));
    assert_eq!(answers[2], admitted(0), "the same call again");
    match &answers[3] {
        Admission::Refused(r) => {
            assert_eq!((r.name.as_str(), r.used, r.limit), ("acme", 2, 2), "{r:?}")
        }
        other => panic!("call 3: {other:?}"),
    }
    assert_eq!(answers[4], admitted(1), "call 4 fails over");
    let now = used(&server, "abatch");
    assert_eq!(now.get("organization:acme:public"), Some(&2), "{now:?}");
    assert_eq!(now.get("extension:3@acme:max_calls"), Some(&1), "{now:?}");
    // A retry of the whole batch answers the same and counts nothing more.
    assert_eq!(a.admit_many_on(&conn, &batch).await.unwrap(), answers);
    assert_eq!(org_used(&server, "abatch"), 2);
    a.release_many_on(&conn, &[CallKey(1), CallKey(2), CallKey(4)])
        .await
        .unwrap();
    assert!(used(&server, "abatch").is_empty());
}

/// Releases sent together (a shard's turn): each held call gives back its units once, a call
/// listed twice or never admitted frees nothing more, and the calls not listed stay counted.
#[tokio::test]
async fn a_batch_of_releases_frees_each_held_call_once() {
    let (server, a) = server_and_node("batch").await;
    for i in 0..5u32 {
        // Calls 0..3 share extension 1; call 4 is extension 2's.
        a.admit(
            CallKey(u64::from(i)),
            &call_path(if i < 4 { 1 } else { 2 }, 10),
        )
        .await
        .unwrap();
    }
    let conn = a.connection().unwrap();
    let batch = [CallKey(0), CallKey(1), CallKey(1), CallKey(4), CallKey(99)];
    a.release_many_on(&conn, &batch).await.unwrap();
    let now = used(&server, "batch");
    assert_eq!(now.get("organization:acme:public"), Some(&2), "{now:?}");
    assert_eq!(now.get("extension:1@acme:max_calls"), Some(&2), "{now:?}");
    assert_eq!(now.get("extension:2@acme:max_calls"), None, "{now:?}");
    // Again, with the rest: the calls already released free nothing twice.
    a.release_many_on(&conn, &[CallKey(0), CallKey(2), CallKey(3)])
        .await
        .unwrap();
    assert!(used(&server, "batch").is_empty());
    assert_eq!(a.held_calls(), 0);
}

#[tokio::test]
async fn a_retried_admission_counts_once_and_a_double_release_decrements_once() {
    let (server, a) = server_and_node("idem").await;
    let first = a.admit(CallKey(1), &call_path(1, 5)).await.unwrap();
    let again = a.admit(CallKey(1), &call_path(1, 5)).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(org_used(&server, "idem"), 1);
    a.admit(CallKey(2), &call_path(2, 5)).await.unwrap();
    a.release(CallKey(1)).await.unwrap();
    a.release(CallKey(1)).await.unwrap();
    assert_eq!(
        org_used(&server, "idem"),
        1,
        "the second release must be a no-op"
    );
    a.release(CallKey(2)).await.unwrap();
    assert!(used(&server, "idem").is_empty());
}

#[tokio::test]
async fn failover_takes_the_first_alternative_that_fits_and_refuses_naming_the_last() {
    let (server, a) = server_and_node("alts").await;
    let trunk = |name: &str, limit| CounterLimit {
        key: CounterKey::new(Level::Trunk, name, CounterKind::MaxOutbound),
        limit: Some(limit),
    };
    let alts = vec![vec![ext(1), trunk("t1", 1)], vec![ext(1), trunk("t2", 1)]];
    assert_eq!(
        a.admit(CallKey(1), &alts).await.unwrap(),
        Admission::Admitted { index: 0 }
    );
    assert_eq!(
        a.admit(CallKey(2), &alts).await.unwrap(),
        Admission::Admitted { index: 1 }
    );
    let Admission::Refused(r) = a.admit(CallKey(3), &alts).await.unwrap() else {
        panic!("both trunks are full");
    };
    assert_eq!(r.to_string(), "trunk t2: max_outbound 1/1");
    // Nothing of the refused call stays: extension 1 holds exactly the two admitted calls.
    assert_eq!(
        used(&server, "alts").get("extension:1@acme:max_calls"),
        Some(&2)
    );
}

#[tokio::test]
async fn a_node_that_stops_renewing_has_its_units_freed_after_the_lease() {
    let server = RedisServer::start();
    let clock = ManualClock::new(1_000_000);
    let lease = Duration::from_secs(3);
    let a = node(node_config(&server, "dead", "a", lease, Some(&clock))).await;
    let b = node(node_config(&server, "dead", "b", lease, Some(&clock))).await;
    for i in 0..5 {
        assert!(matches!(
            a.admit(CallKey(i), &call_path(1, 5)).await.unwrap(),
            Admission::Admitted { .. }
        ));
    }
    assert!(matches!(
        b.admit(CallKey(100), &call_path(2, 5)).await.unwrap(),
        Admission::Refused(_)
    ));
    // a dies (stops renewing); b keeps renewing and keeps being refused until a's lease ends.
    for _ in 0..2 {
        clock.advance(Duration::from_millis(1400));
        b.heartbeat().await.unwrap();
        assert!(matches!(
            b.admit(CallKey(100), &call_path(2, 5)).await.unwrap(),
            Admission::Refused(_)
        ));
    }
    clock.advance(Duration::from_millis(300)); // 3.1 s since a's last renewal
    b.heartbeat().await.unwrap();
    assert_eq!(
        org_used(&server, "dead"),
        0,
        "a's units are freed by b's own script runs"
    );
    for i in 0..5 {
        assert!(matches!(
            b.admit(CallKey(200 + i), &call_path(2, 5)).await.unwrap(),
            Admission::Admitted { .. }
        ));
    }
    assert_eq!(org_used(&server, "dead"), 5);
}

#[tokio::test]
async fn a_restarted_node_comes_back_under_a_new_epoch_and_does_not_double_count() {
    let server = RedisServer::start();
    let lease = Duration::from_secs(30);
    let first = node(node_config(&server, "restart", "a", lease, None)).await;
    for i in 0..3 {
        first.admit(CallKey(i), &call_path(1, 10)).await.unwrap();
    }
    let old_epoch = first.epoch().await.unwrap();
    drop(first); // the process dies holding three calls
    let second = node(node_config(&server, "restart", "a", lease, None)).await;
    assert!(second.epoch().await.unwrap() > old_epoch);
    // Call keys restart from 0 in the new process: the same key is a new call, not a retry.
    second.admit(CallKey(0), &call_path(1, 10)).await.unwrap();
    assert_eq!(
        org_used(&server, "restart"),
        1,
        "the old epoch's calls are gone at once"
    );
    let usage = second.usage().await.unwrap();
    assert!(
        usage.iter().all(|u| u.cluster == 1 && u.node == 1),
        "{usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_errors_are_bounded_then_republish_restores_the_counts() {
    let mut server = RedisServer::start();
    let port = server.addr.port();
    let lease = Duration::from_secs(30);
    let a = node(node_config(&server, "loss", "a", lease, None)).await;
    let b = node(node_config(&server, "loss", "b", lease, None)).await;
    for i in 0..4 {
        a.admit(CallKey(i), &call_path(1, 10)).await.unwrap();
    }
    for i in 0..2 {
        b.admit(CallKey(i), &call_path(2, 10)).await.unwrap();
    }
    server.kill();
    let started = Instant::now();
    let err = a.admit(CallKey(9), &call_path(1, 10)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            ClusterError::Timeout { .. } | ClusterError::Redis { .. }
        ),
        "{err}"
    );
    assert!(!a.is_healthy());
    // The unknown outcome of call 9 and the end of call 3 are both released; Redis cannot hear
    // it now, so both stay queued for the heartbeat.
    assert!(a.release(CallKey(9)).await.is_err());
    assert!(a.release(CallKey(3)).await.is_err());

    let server = RedisServer::start_on(port);
    for n in [&a, &b] {
        eventually(|| async { n.heartbeat().await.is_ok() }).await;
    }
    assert!(a.is_healthy());
    let used_now = used(&server, "loss");
    assert_eq!(
        used_now.get("organization:acme:public"),
        Some(&5),
        "{used_now:?}"
    );
    assert_eq!(used_now.get("extension:1@acme:max_calls"), Some(&3));
    assert_eq!(used_now.get("extension:2@acme:max_calls"), Some(&2));
    // The explicit republish is idempotent.
    let again: Vec<_> = (0..2)
        .map(|i| (CallKey(i), vec![ext(2).key, org(10).key]))
        .collect();
    b.republish(&again).await.unwrap();
    assert_eq!(org_used(&server, "loss"), 5);
    let shares: HashMap<String, (u64, u64)> = a
        .usage()
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.key.to_string(), (u.cluster, u.node)))
        .collect();
    assert_eq!(shares["organization:acme:public"], (5, 3));
    for i in 0..3 {
        a.release(CallKey(i)).await.unwrap();
    }
    for i in 0..2 {
        b.release(CallKey(i)).await.unwrap();
    }
    assert!(used(&server, "loss").is_empty());
}

/// A connection left idle through an outage longer than its reconnection attempts (an engine
/// shard's, when no call comes its way) admits on its first command once Redis is back: the
/// first call after an outage gets no 503. (It did: CI saw it in `tests/cluster_nodes`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_admits_at_once_after_a_long_outage() {
    let (mut server, a) = server_and_node("idle").await;
    let port = server.addr.port();
    let shard = a.connection().unwrap();
    a.admit_on(&shard, CallKey(1), &call_path(1, 10))
        .await
        .unwrap();
    server.kill();
    assert!(a
        .admit_on(&shard, CallKey(2), &call_path(1, 10))
        .await
        .is_err());
    // Past the connection's background attempts (a span of time: there is no event to await).
    tokio::time::sleep(Duration::from_millis(300 * RECONNECT_TRIES as u64 + 700)).await;

    let server = RedisServer::start_on(port);
    eventually(|| async { a.heartbeat().await.is_ok() }).await;
    let first = a.admit_on(&shard, CallKey(3), &call_path(1, 10)).await;
    assert!(
        matches!(first, Ok(Admission::Admitted { index: 0 })),
        "{first:?}"
    );
    // Call 1 republished by the heartbeat and call 3 admitted (call 2 never reached Redis).
    assert_eq!(org_used(&server, "idle"), 2);
}

/// A fresh redis-server and node `a` of `cluster` on it (lease 30 s, Redis's clock).
async fn server_and_node(cluster: &str) -> (RedisServer, Arc<RedisCounters>) {
    let server = RedisServer::start();
    let a = node(node_config(
        &server,
        cluster,
        "a",
        Duration::from_secs(30),
        None,
    ))
    .await;
    (server, a)
}

/// Polls `f` every 50 ms for up to 10 s.
async fn eventually<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within 10 s");
}

/// Admissions per second against the local redis-server, 1 and 2 nodes, 8-counter paths:
/// `cargo test --release --test cluster_redis -- --ignored --nocapture admission_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints admissions/s"]
async fn admission_rate() {
    let server = RedisServer::start();
    for nodes in [1usize, 2] {
        let cluster = format!("bench{nodes}");
        let mut handles: Vec<Arc<RedisCounters>> = Vec::new();
        for i in 0..nodes {
            let cfg = node_config(
                &server,
                &cluster,
                &format!("n{i}"),
                Duration::from_secs(30),
                None,
            );
            handles.push(node(cfg).await);
        }
        let per_task = 2_000u64;
        let tasks = 64u64;
        let retries = Arc::new(AtomicU32::new(0));
        let started = Instant::now();
        let mut joins = Vec::new();
        for t in 0..tasks {
            let n = handles[t as usize % nodes].clone();
            let retries = retries.clone();
            joins.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let alt = [bench_path((t * per_task + i) % 500)];
                    // A timeout on a loaded machine is retried: admission is idempotent.
                    while n.admit(CallKey(t * per_task + i), &alt).await.is_err() {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for j in joins {
            j.await.unwrap();
        }
        let rate = (tasks * per_task) as f64 / started.elapsed().as_secs_f64();
        println!(
            "{nodes} node(s): {rate:.0} admissions/s ({} admissions, {} retried after a timeout)",
            tasks * per_task,
            retries.load(Ordering::Relaxed)
        );
    }
}

/// Redis's own CPU per admission and per release of 8-counter calls (`INFO commandstats`,
/// microseconds per `EVALSHA`), 500 calls up at once on one path:
/// `cargo test --release --test cluster_redis -- --ignored --nocapture script_cost`.
/// With `CG_REDIS_PORT=p` it uses a redis-server already running there (for instructions per
/// script: run that one under `valgrind --tool=callgrind --toggle-collect=evalShaCommand`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints Redis microseconds per script"]
async fn script_cost() {
    let server = match std::env::var("CG_REDIS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        Some(port) => RedisServer::external(port),
        None => RedisServer::start(),
    };
    let n = node(node_config(
        &server,
        "cost",
        "n0",
        Duration::from_secs(30),
        None,
    ))
    .await;
    let evalsha_us = || {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut server.conn())
            .unwrap();
        let line = stats
            .lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .unwrap_or_default()
            .to_owned();
        let field = |name: &str| -> f64 {
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0.0)
        };
        (field("calls"), field("usec_per_call"))
    };
    for round in 0..5u64 {
        let keys: Vec<u64> = (round * 500..(round + 1) * 500).collect();
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .exec(&mut server.conn())
            .unwrap();
        for &k in &keys {
            // As in scripts/bench: every call on the same counters (one PBX extension).
            n.admit(CallKey(k), &[bench_path(0)]).await.unwrap();
        }
        let admit = evalsha_us();
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .exec(&mut server.conn())
            .unwrap();
        for &k in &keys {
            n.release(CallKey(k)).await.unwrap();
        }
        let release = evalsha_us();
        println!(
            "round {round}: admit {:.1} us ({} runs), release {:.1} us ({} runs)",
            admit.1, admit.0, release.1, release.0
        );
    }
}

/// A local -> public path: extension (2), user, organization, provider, server (public), trunk (2).
fn bench_path(e: u64) -> Alternative {
    let c = |level, name: String, kind| CounterLimit {
        key: CounterKey::new(level, &name, kind),
        limit: Some(1_000_000),
    };
    vec![
        c(Level::Extension, format!("{e}@acme"), CounterKind::MaxCalls),
        c(
            Level::Extension,
            format!("{e}@acme"),
            CounterKind::MaxOutgoing,
        ),
        c(Level::User, format!("u{e}"), CounterKind::Public),
        c(Level::Organization, "acme".into(), CounterKind::Public),
        c(Level::ServiceProvider, "sp".into(), CounterKind::Public),
        c(Level::Server, String::new(), CounterKind::Public),
        c(Level::Trunk, "t1".into(), CounterKind::MaxCalls),
        c(Level::Trunk, "t1".into(), CounterKind::MaxOutbound),
    ]
}

#[tokio::test]
async fn a_large_dead_node_is_freed_a_bounded_part_per_script_run() {
    let server = RedisServer::start();
    let clock = ManualClock::new(1_000_000);
    let lease = Duration::from_secs(3);
    let a = node(node_config(&server, "big", "a", lease, Some(&clock))).await;
    let mut cfg = node_config(&server, "big", "b", lease, Some(&clock));
    cfg.reap_budget = 16;
    let b = node(cfg).await;
    // 700 extensions: past the small-hash (listpack, 512 fields) encoding that HSCAN returns
    // whole, so the reap really walks it in steps.
    for i in 0..700 {
        a.admit(CallKey(i as u64), &call_path(i, 1_000))
            .await
            .unwrap();
    }
    drop(a);
    clock.advance(Duration::from_millis(2_000));
    b.heartbeat().await.unwrap();
    clock.advance(Duration::from_millis(1_001)); // a's lease is over, b's is not
    b.heartbeat().await.unwrap();
    let after_one = used(&server, "big").len();
    assert!(
        after_one > 0 && after_one < 701,
        "one run freed {} of 701 counters",
        701 - after_one
    );
    let mut runs = 1;
    while !used(&server, "big").is_empty() {
        b.heartbeat().await.unwrap();
        runs += 1;
        assert!(
            runs < 200,
            "still {:?} counters left",
            used(&server, "big").len()
        );
    }
    println!("701 counters of a dead node freed in {runs} runs of budget 16");
    let nodes: Vec<String> = redis::cmd("ZRANGE")
        .arg("{big}:nodes")
        .arg(0)
        .arg(-1)
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(nodes, ["b#1"]);
}

#[tokio::test]
async fn a_node_that_cannot_renew_for_half_a_lease_stops_admitting() {
    let mut server = RedisServer::start();
    let a = node(node_config(
        &server,
        "half",
        "a",
        Duration::from_millis(600),
        None,
    ))
    .await;
    assert!(a.can_admit(tokio::time::Instant::now()));
    assert!(a.is_healthy());
    server.kill();
    assert!(a.heartbeat().await.is_err());
    let renewed = a.last_renewal().expect("renewed when it joined");
    assert!(a.can_admit(renewed + Duration::from_millis(299)));
    assert!(!a.can_admit(renewed + Duration::from_millis(300)));
    assert!(!a.is_healthy());
}

#[tokio::test]
async fn nodes_disagreeing_on_a_limit_each_enforce_their_own_against_the_shared_count() {
    let server = RedisServer::start();
    let lease = Duration::from_secs(30);
    let a = node(node_config(&server, "disagree", "a", lease, None)).await;
    let b = node(node_config(&server, "disagree", "b", lease, None)).await;
    for i in 0..2 {
        assert!(matches!(
            a.admit(CallKey(i), &call_path(1, 2)).await.unwrap(),
            Admission::Admitted { .. }
        ));
    }
    let Admission::Refused(r) = a.admit(CallKey(2), &call_path(1, 2)).await.unwrap() else {
        panic!("a's limit is 2");
    };
    assert_eq!((r.used, r.limit), (2, 2));
    // b's TOML says 3: it admits one more against the same count (and logs the disagreement).
    assert!(matches!(
        b.admit(CallKey(0), &call_path(2, 3)).await.unwrap(),
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        b.admit(CallKey(1), &call_path(2, 3)).await.unwrap(),
        Admission::Refused(_)
    ));
    let recorded: Option<String> = redis::cmd("HGET")
        .arg("{disagree}:limit")
        .arg("organization:acme:public")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(
        recorded.as_deref(),
        Some("3"),
        "the last admitting node's limit is recorded"
    );
    assert_eq!(org_used(&server, "disagree"), 3);
}

#[tokio::test]
async fn the_spawned_heartbeat_keeps_a_short_lease_alive_until_stopped() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(600);
    let a = node(node_config(&server, "beat", "a", lease, None)).await;
    let epoch = a.epoch().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let beat = a.clone().spawn_heartbeat(stop.clone());
    a.admit(CallKey(1), &call_path(1, 5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await; // two and a half leases
    assert!(a.can_admit(tokio::time::Instant::now()));
    assert_eq!(
        a.epoch().await,
        epoch,
        "renewed in time: never lost the lease"
    );
    assert_eq!(org_used(&server, "beat"), 1);
    stop.cancel();
    beat.await.unwrap();
}

//! One callgate (in this process) with `[counters] backend = "redis"` against a real
//! redis-server, over real SIP: a call is counted in Redis while it is up and released when it
//! ends; a failover asks Redis anew and leaves nothing behind; with Redis down the policy
//! applies (503 naming the backend, or this node's own limits). Two processes, kill -9 and Redis
//! restarts are in `tests/cluster_nodes.rs`.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 220..=223 here.

mod cluster_support;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use cluster_support::{free_port, RedisServer};
use serde_json::Value;
use support::{acme, config, wait_until, wait_until_async, Harness, Net, Sipp, SippOpts};

/// [`acme`] with Redis counters at `url`.
fn redis_config(
    pbx: std::net::SocketAddr,
    trunk: std::net::SocketAddr,
    url: &str,
    policy: &str,
) -> String {
    let tenancy = acme(pbx, "udp", trunk);
    format!(
        "{}\n[counters]\nbackend = \"redis\"\nredis_url = \"{url}\"\nlease = \"3s\"\non_backend_error = \"{policy}\"\n",
        config(&tenancy)
    )
}

/// Redis' cluster-wide units per counter.
fn redis_used(server: &RedisServer) -> HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg("{callgate}:used")
        .query(&mut server.conn())
        .expect("read the used hash")
}

fn positive(used: &HashMap<String, i64>) -> Vec<(&String, &i64)> {
    used.iter().filter(|(_, n)| **n != 0).collect()
}

/// acme's public counter as `/counters` shows it.
async fn acme_public(h: &Harness) -> Value {
    let list = h.get_json("/counters").await;
    list.as_array()
        .and_then(|l| {
            l.iter()
                .find(|c| {
                    c["level"] == "organization" && c["name"] == "acme" && c["counter"] == "public"
                })
                .cloned()
        })
        .expect("acme public is listed")
}

/// Waits until Redis holds no unit and `/counters` (its cached cluster view included) is all
/// zero, then checks every counter of the node is released.
async fn assert_released_everywhere(h: &Harness, server: &RedisServer) {
    let clean = wait_until(Duration::from_secs(10), || {
        positive(&redis_used(server)).is_empty()
    })
    .await;
    assert!(clean, "Redis still holds units: {:?}", redis_used(server));
    let shown = wait_until_async(Duration::from_secs(10), || async {
        let list = h.get_json("/counters").await;
        list.as_array()
            .is_some_and(|l| l.iter().all(|c| c["used"] == 0))
    })
    .await;
    assert!(shown, "GET /counters still shows units");
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_counted_in_redis_while_up_and_released_when_it_ends() {
    let net = Net(220);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let server = RedisServer::start();
    let h = Harness::start(&redis_config(pbx, trunk, &server.url(), "reject")).await;
    let callee = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let caller = Sipp::uac(
        "uac.xml",
        pbx,
        h.udp,
        support::PUBLIC_NUMBER,
        SippOpts::default().arg(&["-d", "3000"]),
    );
    h.wait_confirmed(1).await;
    let counted = wait_until(Duration::from_secs(5), || {
        redis_used(&server).get("organization:acme:public") == Some(&1)
    })
    .await;
    assert!(counted, "Redis counts the call: {:?}", redis_used(&server));
    let used = redis_used(&server);
    for key in [
        "server::public",
        "service_provider:sp:public",
        "user:alice:public",
        "extension:200@acme:max_calls",
        "trunk:carrier:max_outbound",
    ] {
        assert_eq!(used.get(key), Some(&1), "{key} in {used:?}");
    }
    let shown = wait_until_async(Duration::from_secs(5), || async {
        acme_public(&h).await["cluster_used"] == 1
    })
    .await;
    let view = acme_public(&h).await;
    assert!(shown, "{view}");
    assert_eq!(
        (view["used"].clone(), view["node_used"].clone()),
        (1.into(), 1.into()),
        "{view}"
    );
    caller.finish().await.assert_ok("caller");
    callee.finish().await.assert_ok("callee");
    assert_released_everywhere(&h, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_through_redis_takes_the_next_trunk_and_leaves_nothing_held() {
    let net = Net(221);
    let (pbx, first, second) = (net.addr(1), net.addr(2), net.addr(3));
    let server = RedisServer::start();
    let tenancy = support::acme_with_backup(pbx, first, second, "");
    let toml = format!(
        "{}\n[counters]\nbackend = \"redis\"\nredis_url = \"{}\"\nlease = \"3s\"\n",
        config(&tenancy),
        server.url()
    );
    let h = Harness::start(&toml).await;
    let failing = Sipp::uas("uas-unavailable.xml", first, SippOpts::default()).await;
    let answering = Sipp::uas("uas.xml", second, SippOpts::default()).await;
    let caller = Sipp::uac(
        "uac.xml",
        pbx,
        h.udp,
        support::PUBLIC_NUMBER,
        SippOpts::default().arg(&["-d", "2000"]),
    );
    h.wait_confirmed(1).await;
    let on_backup = wait_until(Duration::from_secs(5), || {
        let used = redis_used(&server);
        used.get("trunk:backup:max_outbound") == Some(&1)
            && used.get("trunk:carrier:max_outbound").copied().unwrap_or(0) == 0
    })
    .await;
    assert!(
        on_backup,
        "the backup trunk holds the call: {:?}",
        redis_used(&server)
    );
    caller.finish().await.assert_ok("caller");
    failing.finish().await.assert_ok("first trunk (503)");
    answering.finish().await.assert_ok("second trunk");
    assert_released_everywhere(&h, &server).await;
}

/// A caller whose one call must fail; returns the final response it got.
async fn one_failing_call(h: &Harness, pbx: std::net::SocketAddr) -> String {
    let caller = Sipp::uac(
        "uac-fail.xml",
        pbx,
        h.udp,
        support::PUBLIC_NUMBER,
        SippOpts::default(),
    );
    let run = caller.finish().await;
    run.assert_ok("caller");
    run.received("SIP/2.0 ")
        .into_iter()
        .find(|m| !m.starts_with("SIP/2.0 100"))
        .expect("a final response")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_unreachable_reject_answers_503_naming_the_backend() {
    let net = Net(222);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    // Nothing listens there: the daemon starts anyway and every admission fails.
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let h = Harness::start(&redis_config(pbx, trunk, &url, "reject")).await;
    let answer = one_failing_call(&h, pbx).await;
    assert!(answer.starts_with("SIP/2.0 503"), "{answer}");
    assert!(
        answer.contains("Reason: SIP;cause=503;text=\"counter backend unavailable (redis)\""),
        "{answer}"
    );
    let resp = callgate::admin::client::request(&h.admin, "GET", "/metrics", None)
        .await
        .expect("admin request");
    let metrics = String::from_utf8_lossy(&resp.body).into_owned();
    let errors = metrics
        .lines()
        .find_map(|l| l.strip_prefix("callgate_cluster_backend_errors_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(errors.is_some_and(|n| n >= 1.0), "{metrics}");
    // Counted as a rejected call, like a limit's refusal.
    assert!(
        metrics
            .lines()
            .any(|l| l == "callgate_calls_total{outcome=\"rejected\"} 1"),
        "{metrics}"
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_unreachable_local_admits_on_the_nodes_own_limits() {
    let net = Net(223);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let h = Harness::start(&redis_config(pbx, trunk, &url, "local")).await;
    let callee = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let caller = Sipp::uac(
        "uac.xml",
        pbx,
        h.udp,
        support::PUBLIC_NUMBER,
        SippOpts::default(),
    );
    caller
        .finish()
        .await
        .assert_ok("caller admitted on local limits");
    callee.finish().await.assert_ok("callee");
    h.assert_all_released().await;
}

//! Metrics and the admin API against real calls (spec operations "Admin HTTP API", "Metrics"):
//! a known mix of calls through SIPp, then `GET /metrics` parsed and checked name by name and
//! value by value; held calls listed by `GET /calls` and `GET /counters` along the path of spec
//! call-control 3, one ended by `DELETE /calls/{id}`.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 64..=65 here.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use support::ops::{scrape, tenancy, tenancy_with};
use support::{config, wait_until, Harness, Net, Sipp, SippOpts, DID, PUBLIC_NUMBER, WAIT};

/// Every metric name of spec operations.md.
const SPEC_METRICS: [&str; 13] = [
    "callgate_calls_active",
    "callgate_calls_total",
    "callgate_admission_rejections_total",
    "callgate_counter_used",
    "callgate_counter_limit",
    "callgate_sip_requests_total",
    "callgate_sip_responses_total",
    "callgate_sip_parse_errors_total",
    "callgate_transaction_timeouts_total",
    "callgate_registrations_active",
    "callgate_auth_failures_total",
    "callgate_config_reloads_total",
    "callgate_cluster_backend_errors_total",
];

/// One run of `calls` calls of `caller` from `from` to `dialled`, answered by `callee` at `to`.
async fn calls(
    h: &Harness,
    (caller, from, dialled): (&str, SocketAddr, &str),
    callee: Option<(&str, SocketAddr)>,
    calls: u32,
) {
    let uas = match callee {
        Some((scenario, at)) => Some(Sipp::uas(scenario, at, SippOpts::calls(calls)).await),
        None => None,
    };
    let opts = SippOpts::calls(calls).arg(&["-r", "10"]);
    Sipp::uac(caller, from, h.udp, dialled, opts)
        .finish()
        .await
        .assert_ok(caller);
    if let Some(uas) = uas {
        uas.finish().await.assert_ok("callee");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_known_call_mix() {
    let net = Net(64);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    // The trunk takes no inbound call: a call to a DID is refused at admission.
    let toml = config(&tenancy_with(pbx, trunk, "", "max_inbound = 0"));
    let h = Harness::start(&toml).await;
    // Before any call: a zero rejection series for every counter, so alerts can be written on it.
    let before = scrape(&h.admin).await;
    let inbound = [
        ("level", "trunk"),
        ("name", "carrier"),
        ("counter", "max_inbound"),
    ];
    assert_eq!(
        before.value("callgate_admission_rejections_total", &inbound),
        Some(0.0)
    );
    assert_eq!(
        before
            .matching("callgate_admission_rejections_total", &[])
            .count(),
        before.matching("callgate_counter_used", &[]).count(),
        "one rejection series per counter"
    );
    calls(
        &h,
        ("uac.xml", pbx, PUBLIC_NUMBER),
        Some(("uas.xml", trunk)),
        5,
    )
    .await;
    // The provider calls from another port of the trunk's IP.
    calls(&h, ("uac-fail.xml", net.addr(2), DID), None, 2).await;
    let busy = Some(("uas-busy.xml", trunk));
    calls(&h, ("uac-fail.xml", pbx, PUBLIC_NUMBER), busy, 1).await;
    let ringing = Some(("uas-ring.xml", trunk));
    calls(&h, ("uac-cancel.xml", pbx, PUBLIC_NUMBER), ringing, 1).await;
    h.assert_all_released().await;
    // No file to read: POST /reload is refused (and counted).
    let resp = callgate::admin::client::request(&h.admin, "POST", "/reload", None)
        .await
        .expect("admin request");
    assert_eq!(resp.status, 422);

    let m = scrape(&h.admin).await;
    for name in SPEC_METRICS {
        assert!(m.declares(name), "no `# TYPE` for {name}: {:?}", m.types);
    }
    assert!(
        m.matching("callgate_admission_rejections_total", &[])
            .count()
            > 0
    );
    let outcome = |o: &str| m.value("callgate_calls_total", &[("outcome", o)]);
    assert_eq!(outcome("answered"), Some(5.0));
    assert_eq!(outcome("rejected"), Some(2.0));
    assert_eq!(outcome("failed"), Some(1.0));
    assert_eq!(outcome("cancelled"), Some(1.0));
    assert_eq!(m.value("callgate_calls_active", &[]), Some(0.0));
    let refusing = [
        ("level", "trunk"),
        ("name", "carrier"),
        ("counter", "max_inbound"),
    ];
    assert_eq!(
        m.value("callgate_admission_rejections_total", &refusing),
        Some(2.0)
    );
    assert_eq!(m.sum("callgate_admission_rejections_total"), 2.0);
    // Every counter is back at 0, and each has a `used` series.
    assert_eq!(m.sum("callgate_counter_used"), 0.0);
    let org = [
        ("level", "organization"),
        ("name", "acme"),
        ("counter", "public"),
    ];
    assert_eq!(m.value("callgate_counter_used", &org), Some(0.0));
    // Limits: the trunk's 0, the provider's 1000; unlimited counters have no limit series.
    assert_eq!(m.value("callgate_counter_limit", &refusing), Some(0.0));
    let sp = [
        ("level", "service_provider"),
        ("name", "sp"),
        ("counter", "public"),
    ];
    assert_eq!(m.value("callgate_counter_limit", &sp), Some(1000.0));
    assert_eq!(m.value("callgate_counter_limit", &org), None);
    // 9 INVITEs in; the 7 admitted went on to the trunk.
    let invites = |d: &str| {
        let labels = [("method", "INVITE"), ("direction", d)];
        m.value("callgate_sip_requests_total", &labels)
            .expect("INVITE series")
    };
    assert!(invites("in") >= 9.0, "{}", invites("in"));
    assert_eq!(invites("out"), 7.0);
    let responses = |class: &str, d: &str| {
        let labels = [("class", class), ("direction", d)];
        m.value("callgate_sip_responses_total", &labels)
            .expect("response class series")
    };
    assert!(responses("2xx", "out") >= 5.0);
    assert!(responses("4xx", "out") >= 4.0, "2 refused, 486, 487");
    assert!(responses("4xx", "in") >= 2.0, "486, 487 from the callee");
    let reloads = |r: &str| m.value("callgate_config_reloads_total", &[("result", r)]);
    assert_eq!(reloads("accepted"), Some(0.0));
    assert_eq!(reloads("refused"), Some(1.0));
    assert_eq!(m.sum("callgate_sip_parse_errors_total"), 0.0);
    assert_eq!(m.value("callgate_registrations_active", &[]), Some(0.0));
}

/// The path of an outbound call from the PBX extension (spec call-control 3).
fn outbound_path() -> BTreeSet<(String, String, String)> {
    [
        ("extension", "200@acme", "max_calls"),
        ("extension", "200@acme", "max_outgoing"),
        ("user", "alice", "public"),
        ("organization", "acme", "public"),
        ("service_provider", "sp", "public"),
        ("server", "e2e", "public"),
        ("trunk", "carrier", "max_calls"),
        ("trunk", "carrier", "max_outbound"),
    ]
    .into_iter()
    .map(|(l, n, c)| (l.to_owned(), n.to_owned(), c.to_owned()))
    .collect()
}

fn key(v: &serde_json::Value) -> (String, String, String) {
    let s = |f: &str| v[f].as_str().unwrap_or_default().to_owned();
    (s("level"), s("name"), s("counter"))
}

/// Every counter of `GET /counters`: `expected` on the outbound path, 0 elsewhere.
async fn assert_counters(h: &Harness, expected: u64) {
    let path = outbound_path();
    let counters = h.get_json("/counters").await;
    for c in counters.as_array().expect("GET /counters is a JSON array") {
        let want = if path.contains(&key(c)) { expected } else { 0 };
        assert_eq!(c["used"].as_u64(), Some(want), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_counters_show_held_calls_and_delete_ends_one() {
    let net = Net(65);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&tenancy(pbx, trunk, None))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(3)).await;
    // Three callers on three distinct ports of the PBX's IP, one held call each (a port is
    // only known free when picked: two picks in a row can return the same one).
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let a = net.addr(1);
        if !ports.contains(&a) {
            ports.push(a);
        }
    }
    let mut callers: Vec<Sipp> = ports
        .into_iter()
        .map(|from| {
            Sipp::uac(
                "uac-hold.xml",
                from,
                h.udp,
                PUBLIC_NUMBER,
                SippOpts::default(),
            )
        })
        .collect();
    h.wait_confirmed(3).await;

    let list = h.get_json("/calls").await;
    let list = list.as_array().expect("GET /calls is a JSON array");
    assert_eq!(list.len(), 3);
    for call in list {
        let legs = call["legs"].as_array().expect("legs");
        let names: Vec<&str> = legs.iter().filter_map(|l| l["leg"].as_str()).collect();
        assert_eq!(names, ["a", "b"], "{call}");
        for leg in legs {
            assert!(!leg["call_id"].as_str().unwrap_or_default().is_empty());
            assert_eq!(leg["state"], "confirmed", "{call}");
            assert!(
                leg["to"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(PUBLIC_NUMBER),
                "{call}"
            );
        }
        assert_ne!(legs[0]["call_id"], legs[1]["call_id"]);
        let held: BTreeSet<_> = call["counters"]
            .as_array()
            .expect("counters")
            .iter()
            .map(key)
            .collect();
        assert_eq!(held, outbound_path(), "{call}");
        assert!(call["started_at_unix_secs"].as_u64().unwrap_or(0) > 0);
    }
    assert_counters(&h, 3).await;

    let ended = &list[0];
    let id = ended["id"].as_str().expect("call id");
    let b_call_id = ended["legs"][1]["call_id"].as_str().expect("B Call-ID");
    let resp = callgate::admin::client::request(&h.admin, "DELETE", &format!("/calls/{id}"), None)
        .await
        .expect("admin request");
    assert_eq!(resp.status, 204);
    // Exactly the caller of that call got its BYE and ended.
    let one_ended = wait_until(WAIT, || callers.iter_mut().any(Sipp::exited)).await;
    assert!(one_ended, "no caller got a BYE");
    let done = callers
        .iter_mut()
        .position(Sipp::exited)
        .expect("one caller ended");
    callers.remove(done).finish().await.assert_ok("ended call");
    assert!(!callers.iter_mut().any(Sipp::exited), "one call only");
    h.wait_in_use(2 * 8).await;
    assert_counters(&h, 2).await;
    let left = h.get_json("/calls").await;
    let left = left.as_array().expect("GET /calls is a JSON array");
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|c| c["id"] != id));

    assert_eq!(h.end_all_calls().await, 2);
    for caller in callers {
        caller.finish().await.assert_ok("held call");
    }
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    let byes = callee.received("BYE ");
    assert_eq!(byes.len(), 3);
    assert!(
        byes.iter()
            .any(|b| b.contains(&format!("Call-ID: {b_call_id}"))),
        "the callee got the BYE of the deleted call"
    );
    h.assert_all_released().await;
}

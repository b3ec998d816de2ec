//! Calls-per-second limits end to end: a trunk with `cps = 5`, a burst of six calls from a PBX to
//! public numbers through it: five reach the callee on the trunk, the sixth is refused with the
//! configured code and a `Reason`/`Warning` naming the trunk's `cps` counter; once the bucket has
//! refilled a call passes again. `GET /counters` and `/metrics` show the bucket and the refusal,
//! and every counter is back at 0 at the end.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 200 here.

mod support;

use std::time::Duration;

use support::{acme, config, wait_until_async, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER};

/// The `cps` row of trunk `carrier` in `GET /counters`: (used, limit).
async fn trunk_cps(h: &Harness) -> (u64, u64) {
    let counters = h.get_json("/counters").await;
    let row = counters
        .as_array()
        .expect("GET /counters is a JSON array")
        .iter()
        .find(|c| c["level"] == "trunk" && c["name"] == "carrier" && c["counter"] == "cps")
        .cloned()
        .expect("a cps row for the trunk");
    let n = |k: &str| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}"));
    (n("used"), n("limit"))
}

async fn metrics(h: &Harness) -> String {
    let resp = callgate::admin::client::request(&h.admin, "GET", "/metrics", None)
        .await
        .expect("admin request");
    assert_eq!(resp.status, 200);
    String::from_utf8(resp.body.to_vec()).expect("UTF-8 exposition")
}

/// Waits (bounded) until the trunk's bucket shows `used` at most `most`.
async fn wait_cps_used_at_most(h: &Harness, most: u64) {
    let ok = wait_until_async(Duration::from_secs(5), || async {
        trunk_cps(h).await.0 <= most
    })
    .await;
    assert!(
        ok,
        "the bucket never refilled to {most}: {:?}",
        trunk_cps(h).await
    );
}

const REJECTIONS: &str =
    r#"callgate_admission_rejections_total{level="trunk",name="carrier",counter="cps"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_at_five_cps_refuses_the_sixth_call_of_a_burst_then_admits_again() {
    let net = Net(200);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let tenancy = acme(pbx, "udp", trunk).replace(
        "name = \"carrier\"\nkind = \"ip\"",
        "name = \"carrier\"\nkind = \"ip\"\ncps = 5",
    );
    let h = Harness::start(&config(&tenancy)).await;
    assert_eq!(trunk_cps(&h).await, (0, 5));
    let scrape = metrics(&h).await;
    assert!(
        scrape.contains(&format!("{REJECTIONS} 0")),
        "zero series from the start"
    );
    let limit = r#"callgate_counter_limit{level="trunk",name="carrier",counter="cps"} 5"#;
    assert!(scrape.contains(limit), "no `{limit}` in\n{scrape}");

    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(6)).await;
    // Six calls in ~6 ms, far inside the 200 ms one token takes to come back.
    let opts = SippOpts::calls(6).arg(&["-r", "1000", "-l", "6"]);
    let burst = Sipp::uac("uac-or-busy.xml", pbx, h.udp, PUBLIC_NUMBER, opts)
        .finish()
        .await;
    burst.assert_ok("burst");
    let refusals = burst.received("SIP/2.0 486 Busy Here");
    assert_eq!(refusals.len(), 1, "exactly one refused\n{}", burst.messages);
    let counter = "trunk carrier: cps 5/5";
    let reason = format!("Reason: SIP;cause=486;text=\"{counter}\"");
    let warning = format!("Warning: 399 callgate \"{counter}\"");
    assert!(
        refusals[0].contains(&reason),
        "no `{reason}` in\n{}",
        refusals[0]
    );
    assert!(
        refusals[0].contains(&warning),
        "no `{warning}` in\n{}",
        refusals[0]
    );
    assert_eq!(
        burst.received("SIP/2.0 200 OK").len(),
        10,
        "5 INVITEs and 5 BYEs answered"
    );
    assert!(metrics(&h).await.contains(&format!("{REJECTIONS} 1")));

    // One token back (200 ms at 5 cps) is enough for the next call.
    wait_cps_used_at_most(&h, 4).await;
    let again = Sipp::uac("uac.xml", pbx, h.udp, PUBLIC_NUMBER, SippOpts::default());
    again.finish().await.assert_ok("after the refill");
    let callee = uas.finish().await;
    callee.assert_ok("trunk");
    assert_eq!(
        callee.received("INVITE ").len(),
        6,
        "the refused call never reached B"
    );

    // A rate holds no units; its `used` falls to 0 within a second of the last call.
    wait_cps_used_at_most(&h, 0).await;
    h.assert_all_released().await;
}

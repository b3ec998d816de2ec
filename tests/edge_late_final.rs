//! A callee that answers, waits past Timer M and then sends 486 for the INVITE it answered must
//! not end the call nor free its counters: before the fix callgate released every unit of the
//! call and forgot it while both legs went on, uncounted (issue 15, item 1).
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 106 here.

mod support;

use std::time::Duration;

use support::{acme, config, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER};

/// Units an outbound call from the PBX holds (see call_flow.rs).
const OUTBOUND_UNITS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_486_after_the_answer_leaves_the_call_up_and_counted() {
    let net = Net(106);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let callee = SippOpts {
        timeout: Duration::from_secs(60),
        ..SippOpts::default()
    };
    let uas = Sipp::uas("uas-late-486.xml", trunk, callee).await;
    let caller = SippOpts {
        timeout: Duration::from_secs(60),
        ..SippOpts::default()
    };
    let uac = Sipp::uac("uac-hold.xml", pbx, h.udp, PUBLIC_NUMBER, caller);
    h.wait_confirmed(1).await;
    h.wait_in_use(OUTBOUND_UNITS).await;
    // The 486 comes 34 s after the ACK. Wait for it to have been received, then check the call.
    let responses = || h.daemon.metrics.encode(Vec::new()).unwrap_or_default();
    let late = support::wait_until(Duration::from_secs(45), || {
        responses().lines().any(|l| {
            l.starts_with("callgate_sip_responses_total{class=\"4xx\",direction=\"in\"} 1")
        })
    })
    .await;
    assert!(late, "the callee's late 486 reached callgate");
    assert_eq!(h.in_use(), OUTBOUND_UNITS, "the call still holds its units");
    h.wait_confirmed(1).await;
    // It ends the normal way: DELETE /calls/{id} sends BYE on both legs.
    assert_eq!(h.end_all_calls().await, 1);
    uac.finish().await.assert_ok("uac-hold");
    uas.finish().await.assert_ok("uas-late-486");
    h.assert_all_released().await;
}

//! Calls bridged end to end between SIPp processes: a PBX extension (SIPp UAC or UAS) on one side,
//! an `ip` trunk (SIPp UAS or UAC) on the other, callgate in between. Every test ends with every
//! counter back at 0 (the limiter and `GET /counters`).
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 11..=29 here.

mod support;

use std::time::Duration;

use support::{acme, config, Harness, Net, Sipp, SippOpts, DID, PUBLIC_NUMBER};

/// Units an outbound call from the PBX holds: extension max_calls and max_outgoing, user,
/// organization, provider and server public, trunk max_calls and max_outbound.
const OUTBOUND_UNITS: u64 = 8;

/// The 64*T1 limits (Timer B, no ACK) with the default T1 of 500 ms, plus margin.
const SLOW: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_set_up_and_hung_up_by_the_caller_over_udp() {
    let net = Net(11);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(20)).await;
    let uac = Sipp::uac(
        "uac.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::calls(20).arg(&["-r", "50", "-l", "5"]),
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert_eq!(callee.received("INVITE ").len(), 20);
    assert_eq!(callee.received("BYE ").len(), 20);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_call_to_a_did_reaches_the_pbx_with_the_did_kept() {
    let net = Net(12);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas.xml", pbx, SippOpts::default()).await;
    let uac = Sipp::uac("uac.xml", trunk, h.udp, DID, SippOpts::default());
    uac.finish().await.assert_ok("uac");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    let invite = callee.received("INVITE ");
    assert!(
        invite[0].starts_with(&format!("INVITE sip:{DID}@")),
        "{}",
        invite[0]
    );
    assert!(
        invite[0].contains(&format!("To: <sip:{DID}@")),
        "{}",
        invite[0]
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_hangs_up_and_the_caller_gets_the_bye() {
    let net = Net(13);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas-bye.xml", trunk, SippOpts::calls(3)).await;
    let uac = Sipp::uac(
        "uac-hold.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::calls(3),
    );
    uas.finish().await.assert_ok("uas-bye");
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), 3);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels_a_ringing_call() {
    let net = Net(14);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas-ring.xml", trunk, SippOpts::calls(3)).await;
    let uac = Sipp::uac(
        "uac-cancel.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::calls(3),
    );
    uac.finish().await.assert_ok("uac-cancel");
    let callee = uas.finish().await;
    callee.assert_ok("uas-ring");
    assert_eq!(callee.received("CANCEL ").len(), 3);
    h.assert_all_released().await;
}

/// B refuses with `status`; the caller must get the same code.
async fn callee_refusal_is_relayed(net: Net, callee: &str, status: &str, reason: &str) {
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas(callee, trunk, SippOpts::default()).await;
    let uac = Sipp::uac(
        "uac-fail.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac-fail");
    uas.finish().await.assert_ok(callee);
    let finals = caller.received("SIP/2.0 ");
    let last = finals.last().expect("a final response");
    assert!(
        last.starts_with(&format!("SIP/2.0 {status} {reason}")),
        "caller got {last}"
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_486_from_the_callee_is_relayed_to_the_caller() {
    callee_refusal_is_relayed(Net(15), "uas-busy.xml", "486", "Busy Here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_503_from_the_callee_is_relayed_to_the_caller() {
    callee_refusal_is_relayed(Net(16), "uas-unavailable.xml", "503", "Service Unavailable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_callee_gives_the_caller_408_after_timer_b() {
    let net = Net(17);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    // A callee that reads nothing and answers nothing (the port is open: no ICMP error).
    let _silent = std::net::UdpSocket::bind(trunk).expect("bind the silent callee");
    let opts = SippOpts {
        timeout: SLOW,
        ..SippOpts::default()
    };
    let uac = Sipp::uac("uac-fail.xml", pbx, h.udp, PUBLIC_NUMBER, opts);
    h.wait_in_use(OUTBOUND_UNITS).await;
    let caller = uac.finish_within(SLOW).await;
    caller.assert_ok("uac-fail");
    let finals = caller.received("SIP/2.0 408");
    assert_eq!(finals.len(), 1, "{}", caller.messages);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_that_never_acks_is_hung_up_on_both_legs_after_64_t1() {
    let net = Net(18);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let slow = SippOpts {
        timeout: SLOW,
        ..SippOpts::default()
    };
    let uas = Sipp::uas("uas.xml", trunk, slow.clone()).await;
    let uac = Sipp::uac("uac-noack.xml", pbx, h.udp, PUBLIC_NUMBER, slow);
    h.wait_in_use(OUTBOUND_UNITS).await;
    let caller = uac.finish_within(SLOW).await;
    caller.assert_ok("uac-noack");
    let callee = uas.finish_within(SLOW).await;
    callee.assert_ok("uas");
    assert_eq!(caller.received("BYE ").len(), 1);
    assert_eq!(callee.received("BYE ").len(), 1);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_invite_from_the_caller_is_relayed_and_answered() {
    let net = Net(19);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas-reinvite.xml", trunk, SippOpts::default()).await;
    let uac = Sipp::uac(
        "uac-reinvite.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac-reinvite");
    let callee = uas.finish().await;
    callee.assert_ok("uas-reinvite");
    let invites = callee.received("INVITE ");
    assert_eq!(invites.len(), 2);
    // The new offer crossed byte-exact; the callee's new answer came back to the caller.
    assert!(invites[1].contains("2353687638"), "{}", invites[1]);
    let answers = caller.received("SIP/2.0 200");
    assert!(answers
        .iter()
        .any(|a| a.contains("o=user2 53655765 2353687638")));
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_caller_to_udp_callee() {
    let net = Net(20);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "tcp", trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(5)).await;
    let tcp = SippOpts {
        transport: "t1",
        ..SippOpts::calls(5)
    };
    let uac = Sipp::uac("uac.xml", pbx, h.tcp, PUBLIC_NUMBER, tcp);
    uac.finish().await.assert_ok("uac over tcp");
    uas.finish().await.assert_ok("uas");
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_caller_dropping_its_connection_gets_the_callee_hung_up() {
    let net = Net(21);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "tcp", trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(2)).await;
    let tcp = SippOpts {
        transport: "t1",
        ..SippOpts::calls(2)
    };
    let mut uac = Sipp::uac("uac-hold.xml", pbx, h.tcp, PUBLIC_NUMBER, tcp);
    h.wait_in_use(2 * OUTBOUND_UNITS).await;
    h.wait_confirmed(2).await;
    uac.kill();
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert_eq!(callee.received("BYE ").len(), 2);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_held_calls_with_bye_on_both_legs() {
    let net = Net(22);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(5)).await;
    let five = SippOpts::calls(5).arg(&["-l", "5", "-r", "50"]);
    let uac = Sipp::uac("uac-hold.xml", pbx, h.udp, PUBLIC_NUMBER, five);
    h.wait_confirmed(5).await;
    h.wait_in_use(5 * OUTBOUND_UNITS).await;
    let (left, limiter) = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(left, 0, "calls still up after the drain");
    assert_eq!(limiter.in_use(), 0, "{:?}", limiter.snapshot());
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), 5);
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert_eq!(callee.received("BYE ").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_hangs_up_on_a_tcp_caller() {
    let net = Net(23);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "tcp", trunk))).await;
    let uas = Sipp::uas("uas-bye.xml", trunk, SippOpts::calls(2)).await;
    let tcp = SippOpts {
        transport: "t1",
        ..SippOpts::calls(2)
    };
    let uac = Sipp::uac("uac-hold.xml", pbx, h.tcp, PUBLIC_NUMBER, tcp);
    uas.finish().await.assert_ok("uas-bye");
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold over tcp");
    assert_eq!(caller.received("BYE ").len(), 2);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_call_between_two_pbx_extensions_counts_internal_units() {
    let net = Net(24);
    let (pbx, other, trunk) = (net.addr(1), net.addr(3), net.addr(2));
    let second = format!(
        r#"
[[extension]]
number = "300"
user = "alice"
pbx = {{ address = "{other}", transport = "udp", authenticate = false }}
"#
    );
    let h = Harness::start(&config(&(acme(pbx, "udp", trunk) + &second))).await;
    let uas = Sipp::uas("uas.xml", other, SippOpts::default()).await;
    let uac = Sipp::uac("uac-hold.xml", pbx, h.udp, "300", SippOpts::default());
    h.wait_confirmed(1).await;
    // One organization on both ends: each shared ancestor is counted once per end (spec 3).
    assert_eq!(h.counter_used("organization", "acme", "internal").await, 2);
    assert_eq!(h.counter_used("organization", "acme", "public").await, 0);
    assert_eq!(
        h.counter_used("extension", "300@acme", "max_calls").await,
        1
    );
    assert_eq!(h.end_all_calls().await, 1);
    uac.finish().await.assert_ok("uac-hold");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    let invite = callee.received("INVITE ");
    assert!(invite[0].starts_with("INVITE sip:300@"), "{}", invite[0]);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_offer_answer_in_the_ack_reaches_the_callee() {
    let net = Net(25);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let uac = Sipp::uac(
        "uac-late-offer.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    uac.finish().await.assert_ok("uac-late-offer");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    let invite = callee.received("INVITE ");
    assert!(invite[0].contains("Content-Length: 0"), "{}", invite[0]);
    let ack = callee.received("ACK ");
    assert_eq!(ack.len(), 1);
    assert!(ack[0].contains("o=user1 53655765 2353687637"), "{}", ack[0]);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_ending_a_ringing_call_cancels_the_callee() {
    let net = Net(27);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas-ring.xml", trunk, SippOpts::default()).await;
    let uac = Sipp::uac(
        "uac-fail.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    h.wait_state(1, "early").await;
    assert_eq!(h.end_all_calls().await, 1);
    let caller = uac.finish().await;
    caller.assert_ok("uac-fail");
    assert_eq!(caller.received("SIP/2.0 480").len(), 1);
    let callee = uas.finish().await;
    callee.assert_ok("uas-ring");
    assert_eq!(callee.received("CANCEL ").len(), 1);
    h.assert_all_released().await;
}

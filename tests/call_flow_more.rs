//! More call flows end to end between SIPp processes through callgate: a re-INVITE from the
//! callee, re-INVITE glare (491 Request Pending to the second one callgate sees), RFC 4028 session
//! timer expiry and refresh, `max_call_duration`, and TCP towards the callee. Every test ends with
//! every counter back at 0 (the limiter and `GET /counters`).
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 81..=89 here.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{
    acme, config, config_with_server, header, Harness, Net, Sipp, SippOpts, DID, PUBLIC_NUMBER,
};

/// The SDP origin line of the re-INVITE offers and answers in the scenarios (version 2353687638).
const CALLER_NEW_SDP: &str = "o=user1 53655765 2353687638";
const CALLEE_NEW_SDP: &str = "o=user2 53655765 2353687638";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_invite_from_the_callee_is_relayed_to_the_caller_and_answered() {
    let net = Net(81);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas-sends-reinvite.xml", trunk, SippOpts::default()).await;
    let uac = Sipp::uac(
        "uac-answer-reinvite.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac-answer-reinvite");
    let callee = uas.finish().await;
    callee.assert_ok("uas-sends-reinvite");
    // The callee's new offer reached the caller; the caller's answer went back to the callee,
    // and callgate ACKed the caller's 200 itself (the callee's ACK ends at callgate).
    let invites = caller.received("INVITE ");
    assert_eq!(invites.len(), 1, "{}", caller.messages);
    assert!(invites[0].contains(CALLEE_NEW_SDP), "{}", invites[0]);
    let answers = callee.received("SIP/2.0 200");
    assert!(
        answers.iter().any(|a| a.contains(CALLER_NEW_SDP)),
        "{}",
        callee.messages
    );
    assert_eq!(caller.received("ACK ").len(), 1, "{}", caller.messages);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_the_callee_s_re_invite_crossing_the_caller_s_gets_491() {
    let net = Net(82);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    // The caller's re-INVITE reaches callgate first and is relayed; the callee sends its own
    // before answering it, so callgate sees the callee's while the caller's is pending.
    let uas = Sipp::uas("uas-glare.xml", trunk, SippOpts::default()).await;
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
    callee.assert_ok("uas-glare");
    let refused = callee.received("SIP/2.0 491");
    assert_eq!(refused.len(), 1, "{}", callee.messages);
    assert!(refused[0].contains("CSeq: 1 INVITE"), "{}", refused[0]);
    assert!(caller.received("SIP/2.0 491").is_empty());
    assert!(
        caller.received("INVITE ").is_empty(),
        "the refused re-INVITE never reached the caller"
    );
    // The pending re-INVITE completed: the callee's answer reached the caller.
    let answers = caller.received("SIP/2.0 200");
    assert!(
        answers.iter().any(|a| a.contains(CALLEE_NEW_SDP)),
        "{}",
        caller.messages
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_the_caller_s_re_invite_crossing_the_callee_s_gets_491() {
    let net = Net(83);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    // The mirror image: the callee's re-INVITE is relayed first, the caller's crosses it.
    let uas = Sipp::uas("uas-sends-reinvite.xml", trunk, SippOpts::default()).await;
    let uac = Sipp::uac(
        "uac-glare.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac-glare");
    let callee = uas.finish().await;
    callee.assert_ok("uas-sends-reinvite");
    let refused = caller.received("SIP/2.0 491");
    assert_eq!(refused.len(), 1, "{}", caller.messages);
    assert!(refused[0].contains("CSeq: 2 INVITE"), "{}", refused[0]);
    assert!(callee.received("SIP/2.0 491").is_empty());
    assert_eq!(
        callee.received("INVITE ").len(),
        1,
        "only the initial INVITE reached the callee"
    );
    let answers = callee.received("SIP/2.0 200");
    assert!(
        answers.iter().any(|a| a.contains(CALLER_NEW_SDP)),
        "{}",
        callee.messages
    );
    h.assert_all_released().await;
}

/// callgate's session interval in the timer tests.
const SESSION: Duration = Duration::from_secs(6);
/// When callgate, the non-refresher, ends an unrefreshed session: N - min(32 s, N/3).
const SESSION_END: Duration = Duration::from_secs(4);

fn session_config(pbx: SocketAddr, trunk: SocketAddr) -> String {
    let keys = format!("session_expires = \"{}s\"", SESSION.as_secs());
    config_with_server(&keys, &acme(pbx, "udp", trunk))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrefreshed_session_ends_with_bye_on_both_legs_before_it_expires() {
    let net = Net(84);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&session_config(pbx, trunk)).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let started = Instant::now();
    let uac = Sipp::uac(
        "uac-timer.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    h.wait_confirmed(1).await;
    h.wait_in_use(0).await;
    let lasted = started.elapsed();
    // The answer came after `started`, so the end cannot be earlier than SESSION_END from it.
    assert!(
        lasted >= SESSION_END && lasted < SESSION,
        "the session ended after {lasted:?}"
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac-timer");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert_eq!(caller.received("BYE ").len(), 1);
    assert_eq!(callee.received("BYE ").len(), 1);
    // The caller asked for 1800 s and got callgate's interval, with itself as the refresher.
    let answer = caller.received("SIP/2.0 200");
    let se = format!("{};refresher=uac", SESSION.as_secs());
    assert_eq!(
        header(answer[0], "Session-Expires"),
        Some(se.as_str()),
        "{}",
        answer[0]
    );
    assert_eq!(header(answer[0], "Require"), Some("timer"), "{}", answer[0]);
    let invite = callee.received("INVITE ");
    assert_eq!(
        header(invite[0], "Session-Expires"),
        Some(se.as_str()),
        "{}",
        invite[0]
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_session_outlives_its_first_deadline() {
    let net = Net(85);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&session_config(pbx, trunk)).await;
    let uas = Sipp::uas("uas-refresh.xml", trunk, SippOpts::default()).await;
    let started = Instant::now();
    // Refreshes by re-INVITE at 2 s and by UPDATE at 4 s, BYE from the caller at 7 s: past the
    // unrefreshed deadline (4 s) and past the one after the re-INVITE alone (6 s).
    let uac = Sipp::uac(
        "uac-timer-refresh.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac-timer-refresh");
    assert!(started.elapsed() >= Duration::from_secs(7));
    let callee = uas.finish().await;
    callee.assert_ok("uas-refresh");
    assert!(
        caller.received("BYE ").is_empty(),
        "callgate ended a refreshed session"
    );
    assert_eq!(callee.received("INVITE ").len(), 2);
    assert_eq!(callee.received("UPDATE ").len(), 1);
    assert_eq!(callee.received("BYE ").len(), 1);
    // RFC 4028 9: each 2xx to a refresh carries the interval (the callee, which was not asked,
    // answered without one); a refresher seeing none would conclude the timer is off and stop.
    let se = format!("{};refresher=uac", SESSION.as_secs());
    let oks = caller.received("SIP/2.0 200");
    let refreshes: Vec<&&str> = oks
        .iter()
        .filter(|m| matches!(header(m, "CSeq"), Some("2 INVITE" | "3 UPDATE")))
        .collect();
    assert_eq!(refreshes.len(), 2, "{}", caller.messages);
    for ok in refreshes {
        assert_eq!(header(ok, "Session-Expires"), Some(se.as_str()), "{ok}");
        assert_eq!(header(ok, "Require"), Some("timer"), "{ok}");
    }
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_without_timer_support_gets_no_session_timer_on_either_leg() {
    let net = Net(89);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&session_config(pbx, trunk)).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let uac = Sipp::uac("uac.xml", pbx, h.udp, PUBLIC_NUMBER, SippOpts::default());
    let caller = uac.finish().await;
    caller.assert_ok("uac");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    // Callgate only relays the caller's refreshes; a caller that cannot send any must not leave
    // the callee expecting them (a compliant callee would hang up when they do not come).
    let invite = callee.received("INVITE ");
    assert_eq!(header(invite[0], "Session-Expires"), None, "{}", invite[0]);
    let answer = caller.received("SIP/2.0 200");
    assert_eq!(header(answer[0], "Session-Expires"), None, "{}", answer[0]);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_call_duration_ends_an_answered_call_with_bye_on_both_legs() {
    let net = Net(86);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let max = Duration::from_secs(2);
    let keys = format!("max_call_duration = \"{}s\"", max.as_secs());
    let h = Harness::start(&config_with_server(&keys, &acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let started = Instant::now();
    let uac = Sipp::uac(
        "uac-hold.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    h.wait_confirmed(1).await;
    h.wait_in_use(0).await;
    let lasted = started.elapsed();
    assert!(
        lasted >= max && lasted < max + Duration::from_secs(3),
        "the call ended after {lasted:?}"
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert_eq!(caller.received("BYE ").len(), 1);
    assert_eq!(callee.received("BYE ").len(), 1);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_caller_to_a_tcp_trunk() {
    let net = Net(87);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let udp_trunk = format!("address = \"{trunk}\"\ntransport = \"udp\"");
    let tcp_trunk = format!("address = \"{trunk}\"\ntransport = \"tcp\"");
    let tenancy = acme(pbx, "udp", trunk);
    assert!(tenancy.contains(&udp_trunk));
    let h = Harness::start(&config(&tenancy.replace(&udp_trunk, &tcp_trunk))).await;
    // callgate connects out to the callee over TCP; the caller hangs up (BYE over TCP to B).
    let uas = Sipp::uas_tcp("uas.xml", trunk, SippOpts::calls(3)).await;
    let uac = Sipp::uac("uac.xml", pbx, h.udp, PUBLIC_NUMBER, SippOpts::calls(3));
    uac.finish().await.assert_ok("uac");
    let callee = uas.finish().await;
    callee.assert_ok("uas over tcp");
    let invites = callee.received("INVITE ");
    assert_eq!(invites.len(), 3);
    assert!(invites[0].contains("Via: SIP/2.0/TCP "), "{}", invites[0]);
    assert_eq!(callee.received("BYE ").len(), 3);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pbx_called_on_a_did_hangs_up_on_a_udp_caller() {
    let net = Net(88);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "tcp", trunk))).await;
    // The PBX (callee, over a TCP connection callgate opens) answers and sends BYE itself.
    let uas = Sipp::uas_tcp("uas-bye.xml", pbx, SippOpts::calls(2)).await;
    let uac = Sipp::uac("uac-hold.xml", trunk, h.udp, DID, SippOpts::calls(2));
    uas.finish().await.assert_ok("uas-bye over tcp");
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), 2);
    h.assert_all_released().await;
}

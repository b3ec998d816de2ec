//! Real softphones through the daemon (issue 16, "Checked by"): baresip instances register to
//! callgate with digest (UDP and TCP) and call each other through it (the caller answers a 407,
//! the callee is reached at the flow it registered from), put the call on hold and back, answer
//! callgate's in-dialog probes, take a call from a SIPp PBX, and end calls every way a phone
//! does (either side's BYE, the caller's CANCEL, the callee's 486); a phone that unregisters,
//! or dies with its TCP connection, gets no more calls (480). Every call releases every counter. The phones are driven over
//! baresip's `ctrl_tcp` (see `support::baresip`).
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 155..=159 here
//! (over TCP baresip connects from 127.0.0.1, whatever its SIP address).

mod support;

use std::net::SocketAddr;

use serde_json::Value;
use support::baresip::{Account, AnswerMode, Phone};
use support::{config, Harness, Net, Sipp, SippOpts};
use AnswerMode::{Auto, Manual};

/// The account of extension `user` (password `pw<user>`, as in [`support::acme_phones`]) at
/// callgate's UDP listener.
fn account(user: &str, h: &Harness, answer: AnswerMode) -> Account<'static> {
    let (user, password): (&'static str, &'static str) = match user {
        "101" => ("101", "pw101"),
        "102" => ("102", "pw102"),
        other => panic!("no phone {other} in acme_phones"),
    };
    Account {
        user,
        password,
        domain: "acme.example",
        proxy: h.udp,
        transport: "udp",
        answer,
    }
}

/// callgate with the phones 101 and 102 of [`support::acme_phones`], the PBX at host 1.
async fn start(net: Net) -> (Harness, SocketAddr) {
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&support::acme_phones(pbx, trunk))).await;
    (h, pbx)
}

/// Both phones registered (101 at host 11, 102 at host 12), as `GET /registrations` shows.
async fn two_phones(h: &Harness, net: Net, callee: AnswerMode) -> (Phone, Phone) {
    let a = Phone::registered("101", net.addr(11), &account("101", h, Manual)).await;
    let b = Phone::registered("102", net.addr(12), &account("102", h, callee)).await;
    let regs = h.get_json("/registrations").await;
    let mut list: Vec<(String, String, String)> = regs
        .as_array()
        .expect("GET /registrations is a JSON array")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("extension"), s("source"), s("transport"))
        })
        .collect();
    list.sort();
    let want = |ext: &str, p: &Phone| (ext.to_owned(), p.sip.to_string(), "udp".to_owned());
    assert_eq!(
        list,
        vec![want("101@acme.example", &a), want("102@acme.example", &b)],
        "{regs}"
    );
    (a, b)
}

/// Waits until `GET /registrations` lists no binding of `extension` (`102@acme.example`).
async fn wait_unbound(h: &Harness, extension: &str) {
    let gone = support::wait_until_async(support::WAIT, || async {
        let regs = h.get_json("/registrations").await;
        regs.as_array()
            .is_some_and(|l| l.iter().all(|r| r["extension"] != extension))
    })
    .await;
    assert!(gone, "{}", h.get_json("/registrations").await);
}

/// The one call of `GET /calls`.
async fn the_call(h: &Harness) -> Value {
    let calls = h.get_json("/calls").await;
    let list = calls.as_array().expect("GET /calls is a JSON array");
    assert_eq!(list.len(), 1, "{calls}");
    list[0].clone()
}

/// `by` puts the call on hold and takes it back; `other` receives both offers and `by` both
/// answers.
async fn hold_and_resume(by: &mut Phone, other: &mut Phone) {
    by.hold().await;
    other.wait_remote_sdp("offer").await;
    by.wait_remote_sdp("answer").await;
    by.resume().await;
    other.wait_remote_sdp("offer").await;
    by.wait_remote_sdp("answer").await;
}

/// One internal call between two extensions of acme holds a unit per end on every shared
/// counter (spec: an ancestor of both ends counts twice) and nothing public.
async fn assert_one_internal_call(h: &Harness) {
    assert_eq!(h.counter_used("organization", "acme", "internal").await, 2);
    assert_eq!(h.counter_used("server", "e2e", "internal").await, 2);
    assert_eq!(h.counter_used("organization", "acme", "public").await, 0);
    assert_eq!(h.counter_used("server", "e2e", "public").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_baresip_phones_register_and_call_each_other_through_callgate() {
    let net = Net(155);
    let (h, _pbx) = start(net).await;
    let (mut a, mut b) = two_phones(&h, net, Manual).await;
    a.dial("sip:102@acme.example").await;
    let incoming = b.wait_incoming().await;
    let from = incoming["peeruri"].as_str().unwrap_or_default();
    assert!(
        from.starts_with("sip:101@"),
        "102 sees the caller's extension: {incoming}"
    );
    b.accept().await;
    a.wait_established().await;
    b.wait_established().await;
    h.wait_confirmed(1).await;
    let call = the_call(&h).await;
    assert_eq!(call["legs"][0]["from"], "sip:101@acme.example", "{call}");
    assert_eq!(call["legs"][0]["to"], "sip:102@acme.example", "{call}");
    assert_one_internal_call(&h).await;
    assert_eq!(
        h.counter_used("extension", "101@acme", "max_outgoing")
            .await,
        1
    );
    assert_eq!(
        h.counter_used("extension", "102@acme", "max_calls").await,
        1
    );
    // Hold and resume, by the caller then by the callee: each re-INVITE crosses callgate to
    // the other phone and its answer comes back.
    a.forget_events();
    b.forget_events();
    hold_and_resume(&mut a, &mut b).await;
    hold_and_resume(&mut b, &mut a).await;
    h.wait_confirmed(1).await;
    a.hangup().await;
    a.wait_closed().await;
    let closed = b.wait_closed().await;
    assert_eq!(
        closed["param"], "Connection reset by peer",
        "102 got the BYE: {closed}"
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baresip_phone_takes_a_call_from_the_pbx_and_the_pbx_hangs_up() {
    let net = Net(156);
    let (h, pbx) = start(net).await;
    let mut phone = Phone::registered("101", net.addr(11), &account("101", &h, Manual)).await;
    // uac.xml holds the answered call for -d before its BYE: long enough to look at it.
    let opts = SippOpts::default().arg(&["-d", "1500"]);
    let uac = Sipp::uac("uac.xml", pbx, h.udp, "101", opts);
    let incoming = phone.wait_incoming().await;
    assert!(
        incoming["peeruri"]
            .as_str()
            .is_some_and(|p| p.starts_with("sip:200@")),
        "the phone sees the PBX extension: {incoming}"
    );
    phone.accept().await;
    phone.wait_established().await;
    h.wait_confirmed(1).await;
    assert_one_internal_call(&h).await;
    let closed = phone.wait_closed().await;
    assert_eq!(closed["param"], "Connection reset by peer", "{closed}");
    uac.finish().await.assert_ok("uac");
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_phones_on_tcp_call_the_called_one_hangs_up_then_dies() {
    let net = Net(157);
    let (h, _pbx) = start(net).await;
    let tcp = |a: Account<'static>| Account {
        proxy: h.tcp,
        transport: "tcp",
        ..a
    };
    let mut a = Phone::registered("101", net.addr(11), &tcp(account("101", &h, Manual))).await;
    // 102 answers by itself (answermode=auto: no CALL_INCOMING, straight to established).
    let mut b = Phone::registered("102", net.addr(12), &tcp(account("102", &h, Auto))).await;
    // Bound to the connections the phones opened (baresip connects from an ephemeral port).
    let regs = h.get_json("/registrations").await;
    let list = regs.as_array().expect("GET /registrations is a JSON array");
    assert_eq!(list.len(), 2, "{regs}");
    assert!(list.iter().all(|r| r["transport"] == "tcp"), "{regs}");
    a.dial("sip:102@acme.example").await;
    b.wait_established().await;
    a.wait_established().await;
    h.wait_confirmed(1).await;
    assert_one_internal_call(&h).await;
    // The BYE comes from the callee's dialog (callgate's B leg) and must reach the caller.
    b.hangup().await;
    b.wait_closed().await;
    let closed = a.wait_closed().await;
    assert_eq!(closed["param"], "Connection reset by peer", "{closed}");
    h.assert_all_released().await;
    // 102 dies (its process killed, the kernel closes its connection): the binding goes with
    // the connection, and a call to 102 gets 480 at once instead of dialling a dead flow.
    drop(b);
    wait_unbound(&h, "102@acme.example").await;
    // No connection, no binding, no call.
    assert_closed_with(&a.dial_and_wait_closed("sip:102@acme.example").await, "480");
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baresip_caller_cancels_a_callee_refuses_then_unregisters_and_gets_no_call() {
    let net = Net(158);
    let (h, _pbx) = start(net).await;
    let (mut a, mut b) = two_phones(&h, net, Manual).await;
    // The caller gives up while 102 rings: CANCEL to callgate, CANCEL on to 102.
    a.dial("sip:102@acme.example").await;
    b.wait_incoming().await;
    h.wait_state(1, "early").await;
    a.hangup().await;
    a.wait_closed().await;
    b.wait_closed().await;
    h.assert_all_released().await;
    // 102 refuses the next call while it rings (baresip answers 486): the caller hears it.
    a.dial("sip:102@acme.example").await;
    b.wait_incoming().await;
    b.hangup().await;
    b.wait_closed().await;
    // The caller sees the refusal.
    assert_closed_with(&a.wait_closed().await, "486");
    h.assert_all_released().await;
    // 102 unregisters (Expires: 0): its binding goes and a call to it gets 480.
    b.unregister("sip:102@acme.example").await;
    wait_unbound(&h, "102@acme.example").await;
    // No binding, no call.
    assert_closed_with(&a.dial_and_wait_closed("sip:102@acme.example").await, "480");
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_phones_answer_callgates_dialog_probes_and_the_call_goes_on() {
    let net = Net(159);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let toml = support::config_with_server(
        "dialog_probe_interval = \"500ms\"",
        &support::acme_phones(pbx, trunk),
    );
    let h = Harness::start(&toml).await;
    let (mut a, mut b) = two_phones(&h, net, Auto).await;
    a.dial("sip:102@acme.example").await;
    a.wait_established().await;
    b.wait_established().await;
    h.wait_confirmed(1).await;
    // Three rounds of probes (both legs each): the answers to the first two are in by the time
    // the third is sent, and neither phone's answer ended the call.
    let reached =
        support::wait_until_async(support::WAIT, || async { options_sent(&h).await >= 6 }).await;
    assert!(reached, "probes sent: {}", options_sent(&h).await);
    h.wait_confirmed(1).await;
    a.hangup().await;
    a.wait_closed().await;
    b.wait_closed().await;
    h.assert_all_released().await;
}

/// In-dialog OPTIONS callgate sent (`callgate_sip_requests_total{method="OPTIONS",direction="out"}`).
async fn options_sent(h: &Harness) -> u64 {
    let resp = callgate::admin::client::request(&h.admin, "GET", "/metrics", None)
        .await
        .expect("GET /metrics");
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    text.lines()
        .find(|l| {
            l.starts_with("callgate_sip_requests_total")
                && l.contains("method=\"OPTIONS\"")
                && l.contains("direction=\"out\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Asserts a `CALL_CLOSED` event ended with a final response of `status`.
fn assert_closed_with(closed: &serde_json::Value, status: &str) {
    assert!(
        closed["param"]
            .as_str()
            .is_some_and(|p| p.starts_with(status)),
        "closed with {status} expected: {closed}"
    );
}

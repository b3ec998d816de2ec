//! Phones through the daemon, with SIPp (issue 16): a phone registers with digest and is called
//! at the flow it registered from; a phone calls with digest (407, then the INVITE with
//! credentials) and the callee sees its extension; wrong passwords get 403 and the source is
//! banned while another source still registers; an unknown extension gets the same answers as a
//! known one.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 140..=145 and 148..=149
//! here.

mod support;

use std::net::SocketAddr;

use support::{config, Harness, Net, Sipp, SippOpts};

/// The phones 101 and 102 of [`support::acme_phones`].
fn tenancy(pbx: SocketAddr, trunk: SocketAddr) -> String {
    support::acme_phones(pbx, trunk)
}

fn register(ext: &str, password: &str, bind: SocketAddr, gw: SocketAddr, scenario: &str) -> Sipp {
    let opts = SippOpts::default().arg(&["-au", ext, "-ap", password]);
    Sipp::uac(scenario, bind, gw, ext, opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_phone_is_called_at_the_flow_it_registered_from() {
    let net = Net(140);
    let (pbx, trunk, phone) = (net.addr(1), net.addr(2), net.addr(5));
    let h = Harness::start(&config(&tenancy(pbx, trunk))).await;
    let reg = register("101", "pw101", phone, h.udp, "uac-register-auth.xml");
    let run = reg.finish().await;
    run.assert_ok("uac-register-auth");
    assert_eq!(run.received("SIP/2.0 401").len(), 1, "challenged once");
    let regs = h.get_json("/registrations").await;
    let list = regs.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1, "{regs}");
    assert_eq!(list[0]["extension"], "101@acme.example");
    assert_eq!(list[0]["source"], phone.to_string());
    // The phone (now a SIPp UAS on the address it registered from) takes a call from the PBX.
    let uas = Sipp::uas("uas.xml", phone, SippOpts::default()).await;
    let uac = Sipp::uac("uac.xml", pbx, h.udp, "101", SippOpts::default());
    let caller = uac.finish().await;
    caller.assert_ok("uac");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert!(
        callee.received("INVITE sip:101@").len() == 1,
        "{}",
        callee.messages
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_calls_with_digest_as_its_extension() {
    let net = Net(141);
    let (pbx, trunk, phone) = (net.addr(1), net.addr(2), net.addr(5));
    let h = Harness::start(&config(&tenancy(pbx, trunk))).await;
    let uas = Sipp::uas("uas.xml", pbx, SippOpts::default()).await;
    let opts = SippOpts::default().arg(&[
        "-au", "101", "-ap", "pw101", "-key", "ext", "101", "-d", "200",
    ]);
    let uac = Sipp::uac("uac-phone.xml", phone, h.udp, "200", opts);
    let caller = uac.finish().await;
    caller.assert_ok("uac-phone");
    assert_eq!(caller.received("SIP/2.0 407").len(), 1);
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    let invite = callee.received("INVITE ");
    assert_eq!(invite.len(), 1);
    assert!(
        invite[0].contains("From: <sip:101@"),
        "the PBX sees the phone's extension:\n{}",
        invite[0]
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_get_403_and_ban_the_source_not_others() {
    let net = Net(142);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&tenancy(pbx, trunk))).await;
    let attacker = net.addr(6);
    // Ten wrong answers to fresh nonces (the per-source threshold): each gets 401 then 403.
    let opts = SippOpts::calls(10).arg(&["-au", "101", "-ap", "guess", "-l", "1"]);
    let run = Sipp::uac("uac-register-refused.xml", attacker, h.udp, "101", opts)
        .finish()
        .await;
    run.assert_ok("uac-register-refused");
    let bans = h.get_json("/bans").await;
    let bans = bans.as_array().expect("a JSON array");
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0]["ip"], attacker.ip().to_string());
    // Banned: the next REGISTER gets 403 at once, no challenge.
    assert_eq!(register_status(attacker, h.udp).await, 403);
    // The phone itself, from its own address, still registers.
    let run = register("101", "pw101", net.addr(5), h.udp, "uac-register-auth.xml")
        .finish()
        .await;
    run.assert_ok("uac-register-auth");
    // Lifting the ban by the admin API.
    let resp = callgate::admin::client::request(
        &h.admin,
        "DELETE",
        &format!("/bans/{}", attacker.ip()),
        None,
    )
    .await
    .expect("admin");
    assert_eq!(resp.status, 204);
    assert_eq!(h.get_json("/bans").await, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_extension_gets_the_answers_a_known_one_gets() {
    let net = Net(143);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&tenancy(pbx, trunk))).await;
    // Same wrong password for a known and an unknown extension: 401, then 403, alike.
    for ext in ["101", "999"] {
        let opts = SippOpts::default().arg(&["-au", ext, "-ap", "guess"]);
        let run = Sipp::uac("uac-register-refused.xml", net.addr(7), h.udp, ext, opts)
            .finish()
            .await;
        run.assert_ok("uac-register-refused");
        let challenge = run.received("SIP/2.0 401");
        assert_eq!(challenge.len(), 1);
        assert!(
            challenge[0].contains("realm=\"acme.example\""),
            "{}",
            challenge[0]
        );
    }
    h.assert_no_registrations().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_phone_takes_an_internal_call_from_another_authenticated_phone() {
    let net = Net(149);
    let (pbx, trunk, caller, callee) = (net.addr(1), net.addr(2), net.addr(5), net.addr(6));
    let h = Harness::start(&config(&tenancy(pbx, trunk))).await;
    register("102", "pw102", callee, h.udp, "uac-register-auth.xml")
        .finish()
        .await
        .assert_ok("uac-register-auth");
    let uas = Sipp::uas("uas.xml", callee, SippOpts::default()).await;
    // 101 calls 102 and holds the call 3 s: long enough to read the counters while it is up.
    let opts = SippOpts::default().arg(&[
        "-au", "101", "-ap", "pw101", "-key", "ext", "101", "-d", "3000",
    ]);
    let uac = Sipp::uac("uac-phone.xml", caller, h.udp, "102", opts);
    h.wait_confirmed(1).await;
    // Internal on both ends (spec 2: one unit per end of an internal call), public untouched.
    assert_eq!(h.counter_used("organization", "acme", "internal").await, 2);
    assert_eq!(h.counter_used("organization", "acme", "public").await, 0);
    let run = uac.finish().await;
    run.assert_ok("uac-phone");
    assert_eq!(run.received("SIP/2.0 407").len(), 1, "challenged once");
    let callee_run = uas.finish().await;
    callee_run.assert_ok("uas");
    let invite = callee_run.received("INVITE ");
    assert_eq!(invite.len(), 1);
    assert!(invite[0].starts_with("INVITE sip:102@"), "{}", invite[0]);
    assert!(invite[0].contains("From: <sip:101@"), "{}", invite[0]);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registers_refreshes_and_removes_every_binding_with_a_star() {
    let net = Net(148);
    let (pbx, trunk, phone) = (net.addr(1), net.addr(2), net.addr(5));
    let h = Harness::start(&config(&tenancy(pbx, trunk))).await;
    let run = register("102", "pw102", phone, h.udp, "uac-register-lifecycle.xml")
        .finish()
        .await;
    run.assert_ok("uac-register-lifecycle");
    assert_eq!(run.received("SIP/2.0 401").len(), 3, "each step challenged");
    let oks = run.received("SIP/2.0 200");
    assert_eq!(oks.len(), 3, "{}", run.messages);
    for (ok, contacts) in oks.iter().zip([1, 1, 0]) {
        let listed = ok.lines().filter(|l| l.starts_with("Contact:")).count();
        assert_eq!(listed, contacts, "{ok}");
    }
    // The refresh kept one binding with the full lifetime asked for, not a second one.
    assert!(oks[1].contains(";expires=600"), "{}", oks[1]);
    h.assert_no_registrations().await;
    let metrics = callgate::admin::client::request(&h.admin, "GET", "/metrics", None)
        .await
        .expect("admin");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("callgate_auth_failures_total 0"),
        "a challenge is no failure:\n{text}"
    );
}

/// The status of the answer to a bare REGISTER for 101 sent from `from`'s IP.
async fn register_status(from: SocketAddr, gw: SocketAddr) -> u16 {
    let sock = tokio::net::UdpSocket::bind((from.ip(), 0))
        .await
        .expect("bind");
    let me = sock.local_addr().expect("addr");
    let req = format!(
        "REGISTER sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKban1\r\nFrom: <sip:101@acme.example>;tag=b1\r\nTo: <sip:101@acme.example>\r\nCall-ID: ban-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:101@{me}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), gw).await.expect("send");
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(support::WAIT, sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .expect("recv");
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbx_that_must_authenticate_answers_a_challenge_then_calls() {
    let net = Net(144);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let tenancy = support::acme(pbx, "udp", trunk).replace(
        "transport = \"udp\", authenticate = false }",
        "transport = \"udp\", authenticate = true }\npassword = \"pbxpw\"",
    );
    let h = Harness::start(&config(&tenancy)).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let opts = SippOpts::default().arg(&[
        "-au", "200", "-ap", "pbxpw", "-key", "ext", "200", "-d", "200",
    ]);
    let caller = Sipp::uac("uac-phone.xml", pbx, h.udp, support::PUBLIC_NUMBER, opts)
        .finish()
        .await;
    caller.assert_ok("uac-phone");
    assert_eq!(caller.received("SIP/2.0 407").len(), 1, "challenged once");
    uas.finish().await.assert_ok("uas");
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_survive_a_restart_of_the_binary() {
    use support::ops::{binary_config, daemon_addrs, DaemonProcess};
    let net = Net(145);
    let (pbx, trunk, phone) = (net.addr(1), net.addr(2), net.addr(5));
    let (sip, admin) = daemon_addrs(net);
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = dir.path().join("bindings.jsonl");
    let toml = binary_config(sip, admin, &tenancy(pbx, trunk)).replace(
        "name = \"ops\"",
        &format!("name = \"ops\"\nstate_file = \"{}\"", state.display()),
    );
    let mut d = DaemonProcess::start(&toml, sip, admin, "1s").await;
    register("101", "pw101", phone, sip, "uac-register-auth.xml")
        .finish()
        .await
        .assert_ok("uac-register-auth");
    d.signal("-TERM");
    assert!(d
        .wait_exit(support::WAIT)
        .await
        .is_some_and(|s| s.success()));
    let d = DaemonProcess::start(&toml, sip, admin, "1s").await;
    let regs = d.get_json("/registrations").await;
    let list = regs.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1, "the binding came back: {regs}");
    assert_eq!(list[0]["source"], phone.to_string());
    assert!(list[0]["expires_secs"]
        .as_u64()
        .is_some_and(|s| s > 500 && s <= 600));
}

//! `accept-register` trunks through the daemon, with SIPp as the provider's gateway (issue 17):
//! the gateway registers with the trunk's credentials (401, then 200), takes the calls an
//! outbound rule sends to that trunk at the address it registered from, and its INVITEs from
//! that address are inbound from the trunk; a wrong password binds nothing, and with no binding
//! the trunk is unavailable (480 when it is the rule's only trunk).
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 170..=173 here.

mod support;

use std::net::SocketAddr;

use callgate::admin::client;
use support::{acme, config, wait_until_async, Harness, Net, Sipp, SippOpts, WAIT};

/// The trunk's username and password.
const USER: &str = "gw1";
const PASSWORD: &str = "gw-secret";
/// A number only the accept-register trunk carries.
const VIA_GATEWAY: &str = "13125559999";
/// A DID of the gateway's trunk, routed to the PBX.
const GATEWAY_DID: &str = "3125550100";

/// [`acme`] (PBX extension 200 at `pbx`, `ip` trunk `carrier` at `carrier`) plus the
/// `accept-register` trunk `gw`: 11-digit numbers starting with 1 go out through it, its DIDs
/// 3125550100-3125550109 come in to the PBX.
fn tenancy(pbx: SocketAddr, carrier: SocketAddr) -> String {
    format!(
        r#"{}
[[trunk]]
name = "gw"
kind = "accept-register"
username = "{USER}"
password = "{PASSWORD}"
max_calls = 2

[[did_pool]]
trunk = "gw"
organization = "acme"
dids = ["3125550100-3125550109"]

[[inbound_rule]]
organization = "acme"
trunk = "gw"
dids = "3125550100-3125550109"
destination = {{ extension = "200" }}

[[outbound_rule]]
organization = "acme"
pattern = "^1[0-9]{{10}}$"
trunks = ["gw"]
"#,
        acme(pbx, "udp", carrier)
    )
}

/// The gateway at `gw` registers (`expires` 0: unregisters) with `password`, running `scenario`.
async fn register(h: &Harness, gw: SocketAddr, password: &str, expires: &str, scenario: &str) {
    register_over(h, gw, password, expires, scenario, "u1").await;
}

/// [`register`] over `transport` (`u1` UDP, `t1` TCP).
async fn register_over(
    h: &Harness,
    gw: SocketAddr,
    password: &str,
    expires: &str,
    scenario: &str,
    transport: &'static str,
) {
    let opts = SippOpts {
        transport,
        ..SippOpts::default()
    }
    .arg(&["-au", USER, "-ap", password, "-key", "expires", expires]);
    let target = if transport == "t1" { h.tcp } else { h.udp };
    let run = Sipp::uac(scenario, gw, target, USER, opts).finish().await;
    run.assert_ok(scenario);
    assert_eq!(run.received("SIP/2.0 401").len(), 1, "challenged once");
}

/// Waits until `callgate_registrations_active` is `n` (the store is swept every 5 s).
async fn wait_registrations_metric(h: &Harness, n: usize) {
    let line = format!("callgate_registrations_active {n}\n");
    let seen = wait_until_async(WAIT, || async {
        let resp = client::request(&h.admin, "GET", "/metrics", None).await;
        resp.is_ok_and(|r| String::from_utf8_lossy(&r.body).contains(&line))
    })
    .await;
    assert!(seen, "no `{}` within {WAIT:?}", line.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_gateway_takes_outbound_calls_at_its_binding_and_unregisters() {
    let net = Net(170);
    let (pbx, carrier, gw) = (net.addr(1), net.addr(2), net.addr(5));
    let h = Harness::start(&config(&tenancy(pbx, carrier))).await;
    register(&h, gw, PASSWORD, "600", "uac-trunk-register.xml").await;
    let regs = h.get_json("/registrations").await;
    let list = regs.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1, "{regs}");
    assert_eq!(list[0]["trunk"], "gw", "{regs}");
    assert!(list[0].get("extension").is_none(), "{regs}");
    assert_eq!(list[0]["source"], gw.to_string());
    wait_registrations_metric(&h, 1).await;

    // The gateway (now a SIPp UAS on the address it registered from) takes the PBX's call.
    let uas = Sipp::uas("uas.xml", gw, SippOpts::default()).await;
    let uac = Sipp::uac("uac.xml", pbx, h.udp, VIA_GATEWAY, SippOpts::default());
    uac.finish().await.assert_ok("uac");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    let invites = callee.received("INVITE ");
    assert_eq!(invites.len(), 1, "{}", callee.messages);
    let want = format!("INVITE sip:{VIA_GATEWAY}@{gw};transport=UDP SIP/2.0");
    assert!(
        invites[0]
            .to_ascii_lowercase()
            .starts_with(&want.to_ascii_lowercase()),
        "the number at the registered contact, got:\n{}",
        invites[0]
    );
    h.assert_all_released().await;

    register(&h, gw, PASSWORD, "0", "uac-trunk-register.xml").await;
    h.assert_no_registrations().await;
    wait_registrations_metric(&h, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_binds_nothing_and_an_unbound_trunk_is_unavailable() {
    let net = Net(171);
    let (pbx, carrier, gw) = (net.addr(1), net.addr(2), net.addr(5));
    let h = Harness::start(&config(&tenancy(pbx, carrier))).await;
    register(&h, gw, "not-it", "600", "uac-trunk-register-refused.xml").await;
    h.assert_no_registrations().await;

    let uac = Sipp::uac("uac-fail.xml", pbx, h.udp, VIA_GATEWAY, SippOpts::default());
    let caller = uac.finish().await;
    caller.assert_ok("uac-fail");
    let finals = caller.received("SIP/2.0 480");
    assert_eq!(finals.len(), 1, "{}", caller.messages);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_from_the_bound_gateway_is_inbound_from_its_trunk() {
    let net = Net(172);
    let (pbx, carrier, gw) = (net.addr(1), net.addr(2), net.addr(5));
    let h = Harness::start(&config(&tenancy(pbx, carrier))).await;
    // Before it registers, the gateway's address is nobody's: one stateless 403.
    let from_gw = net.addr(5);
    let uac = Sipp::uac(
        "uac-fail.xml",
        from_gw,
        h.udp,
        GATEWAY_DID,
        SippOpts::default(),
    );
    let caller = uac.finish().await;
    caller.assert_ok("uac-fail");
    assert_eq!(
        caller.received("SIP/2.0 403").len(),
        1,
        "{}",
        caller.messages
    );

    register(&h, gw, PASSWORD, "600", "uac-trunk-register.xml").await;
    // The provider calls from another port of the same IP, as providers do.
    let other_port = net.addr(5);
    assert_ne!(other_port, gw);
    let uas = Sipp::uas("uas.xml", pbx, SippOpts::default()).await;
    let uac = Sipp::uac(
        "uac.xml",
        other_port,
        h.udp,
        GATEWAY_DID,
        SippOpts::default(),
    );
    uac.finish().await.assert_ok("uac");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    let invites = callee.received(&format!("INVITE sip:{GATEWAY_DID}@"));
    assert_eq!(invites.len(), 1, "{}", callee.messages);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_binding_over_tcp_dies_with_its_connection() {
    let net = Net(173);
    let (pbx, carrier, gw) = (net.addr(1), net.addr(2), net.addr(5));
    let h = Harness::start(&config(&tenancy(pbx, carrier))).await;
    // SIPp holds its TCP connection for the run and closes it when it exits.
    register_over(&h, gw, PASSWORD, "600", "uac-trunk-register.xml", "t1").await;
    let gone = wait_until_async(WAIT, || async {
        let regs = h.get_json("/registrations").await;
        regs.as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert!(gone, "the binding outlived its connection");
    let uac = Sipp::uac("uac-fail.xml", pbx, h.udp, VIA_GATEWAY, SippOpts::default());
    let caller = uac.finish().await;
    caller.assert_ok("uac-fail");
    assert_eq!(
        caller.received("SIP/2.0 480").len(),
        1,
        "{}",
        caller.messages
    );
    h.assert_all_released().await;
}

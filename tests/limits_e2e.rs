//! Limits end to end (spec call-control E1, E2, E2b, max_outgoing): calls held between SIPp
//! processes through callgate until a counter is full, then one more call refused with the
//! configured code and a `Reason`/`Warning` naming the counter, nothing sent towards the callee;
//! held calls ended through the admin API (`DELETE /calls/{id}`) and every counter back at 0.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 31..=49 here.

mod support;

use std::net::{SocketAddr, UdpSocket};

use support::{config, Harness, Net, Sipp, SippOpts, SippRun, DID, PUBLIC_NUMBER};

/// Callgate's refusal as the caller saw it: status line, Reason and Warning naming `counter`.
fn assert_refused(run: &SippRun, counter: &str) {
    run.assert_ok("uac-fail");
    let refusals = run.received("SIP/2.0 486 Busy Here");
    assert_eq!(refusals.len(), 1, "{}", run.messages);
    let refusal = refusals[0];
    let reason = format!("Reason: SIP;cause=486;text=\"{counter}\"");
    let warning = format!("Warning: 399 callgate \"{counter}\"");
    assert!(refusal.contains(&reason), "no `{reason}` in\n{refusal}");
    assert!(refusal.contains(&warning), "no `{warning}` in\n{refusal}");
}

/// A socket at a callee's address that must receive nothing.
fn silent_callee(addr: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(addr).expect("bind the callee address");
    s.set_nonblocking(true).expect("non-blocking socket");
    s
}

fn assert_nothing_received(s: &UdpSocket) {
    let mut buf = [0u8; 2048];
    match s.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(n) => panic!(
            "the callee received a message: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("callee socket error: {e}"),
    }
}

/// Refused calls place one call that must fail.
async fn refused_call(h: &Harness, from: SocketAddr, dialled: &str) -> SippRun {
    let uac = Sipp::uac("uac-fail.xml", from, h.udp, dialled, SippOpts::default());
    uac.finish().await
}

/// Holds `n` calls from `from` to `dialled`; they end when callgate sends BYE.
fn held_calls(h: &Harness, from: SocketAddr, dialled: &str, n: u32) -> Sipp {
    let opts = SippOpts::calls(n).arg(&["-l", &n.to_string(), "-r", "50"]);
    Sipp::uac("uac-hold.xml", from, h.udp, dialled, opts)
}

/// The tenancy of E1 scaled down: provider public = 4, two users at public = 3 with one PBX
/// each, one trunk.
fn e1(pbx1: SocketAddr, pbx2: SocketAddr, trunk: SocketAddr) -> String {
    format!(
        r#"
[[service_provider]]
name = "sp"
limits = {{ public = 4 }}

[[organization]]
name = "tenant"
service_provider = "sp"
domain = "tenant.example"

[[user]]
name = "u1"
organization = "tenant"
limits = {{ public = 3 }}

[[extension]]
number = "201"
user = "u1"
pbx = {{ address = "{pbx1}", transport = "udp", authenticate = false }}

[[user]]
name = "u2"
organization = "tenant"
limits = {{ public = 3 }}

[[extension]]
number = "202"
user = "u2"
pbx = {{ address = "{pbx2}", transport = "udp", authenticate = false }}

[[trunk]]
name = "carrier"
kind = "ip"
address = "{trunk}"

[[outbound_rule]]
organization = "tenant"
pattern = "^[2-9][0-9]{{9}}$"
trunks = ["carrier"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_the_provider_caps_its_oversold_users() {
    let net = Net(31);
    let (pbx1, trunk, pbx2) = (net.addr(1), net.addr(2), net.addr(3));
    let h = Harness::start(&config(&e1(pbx1, pbx2, trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(4)).await;
    // PBX 1 fills its user (3/3), PBX 2 takes the provider's last unit (4/4).
    let from_pbx1 = held_calls(&h, pbx1, PUBLIC_NUMBER, 3);
    h.wait_confirmed(3).await;
    let from_pbx2 = held_calls(&h, pbx2, PUBLIC_NUMBER, 1);
    h.wait_confirmed(4).await;
    assert_eq!(h.counter_used("service_provider", "sp", "public").await, 4);
    assert_eq!(h.counter_used("user", "u2", "public").await, 1);
    // PBX 2 (its user at 1/3) calls again, from another port of its IP: the provider refuses.
    let refused = refused_call(&h, net.addr(3), PUBLIC_NUMBER).await;
    assert_refused(&refused, "service_provider sp: public 4/4");
    assert_eq!(h.end_all_calls().await, 4);
    from_pbx1.finish().await.assert_ok("pbx1 held calls");
    from_pbx2.finish().await.assert_ok("pbx2 held call");
    let callee = uas.finish().await;
    callee.assert_ok("trunk");
    assert_eq!(
        callee.received("INVITE ").len(),
        4,
        "the refused call never reached B"
    );
    h.assert_all_released().await;
}

/// One organization with a PBX extension `201` (`ext_limits` added to it) and a trunk
/// (`trunk_limits` added to it); DIDs go to the PBX, ten-digit numbers out on the trunk.
fn one_pbx(pbx: SocketAddr, ext_limits: &str, trunk: SocketAddr, trunk_limits: &str) -> String {
    format!(
        r#"
[[service_provider]]
name = "sp"
limits = {{ public = 10 }}

[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"

[[user]]
name = "alice"
organization = "acme"

[[extension]]
number = "201"
user = "alice"
pbx = {{ address = "{pbx}", transport = "udp", authenticate = false }}
{ext_limits}

[[trunk]]
name = "carrier"
kind = "ip"
address = "{trunk}"
{trunk_limits}

[[did_pool]]
trunk = "carrier"
organization = "acme"
dids = ["2125550100-2125550199"]

[[inbound_rule]]
organization = "acme"
trunk = "carrier"
dids = "2125550100-2125550149"
destination = {{ extension = "201" }}

[[outbound_rule]]
organization = "acme"
pattern = "^[2-9][0-9]{{9}}$"
trunks = ["carrier"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2_trunk_with_no_inbound_refuses_inbound_calls() {
    let net = Net(32);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let tenancy = one_pbx(pbx, "", trunk, "max_inbound = 0\nmax_outbound = 2");
    let h = Harness::start(&config(&tenancy)).await;
    let callee = silent_callee(pbx);
    // The provider calls from another port of the trunk's IP.
    let refused = refused_call(&h, net.addr(2), DID).await;
    assert_refused(&refused, "trunk carrier: max_inbound 0/0");
    assert_nothing_received(&callee);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2_trunk_admits_max_outbound_calls_and_refuses_the_next() {
    let net = Net(33);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let tenancy = one_pbx(pbx, "", trunk, "max_inbound = 0\nmax_outbound = 2");
    let h = Harness::start(&config(&tenancy)).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(2)).await;
    let held = held_calls(&h, pbx, PUBLIC_NUMBER, 2);
    h.wait_confirmed(2).await;
    assert_eq!(h.counter_used("trunk", "carrier", "max_outbound").await, 2);
    let refused = refused_call(&h, net.addr(1), PUBLIC_NUMBER).await;
    assert_refused(&refused, "trunk carrier: max_outbound 2/2");
    assert_eq!(h.end_all_calls().await, 2);
    held.finish().await.assert_ok("held calls");
    let callee = uas.finish().await;
    callee.assert_ok("trunk");
    assert_eq!(callee.received("INVITE ").len(), 2);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2b_extension_with_max_calls_0_can_neither_call_nor_be_called() {
    let net = Net(34);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&one_pbx(pbx, "max_calls = 0", trunk, ""))).await;
    let counter = "extension 201@acme: max_calls 0/0";
    // It calls out: refused, the trunk hears nothing.
    let trunk_side = silent_callee(trunk);
    let refused = refused_call(&h, pbx, PUBLIC_NUMBER).await;
    assert_refused(&refused, counter);
    assert_nothing_received(&trunk_side);
    drop(trunk_side);
    // It is called on a DID: refused, the PBX hears nothing.
    let pbx_side = silent_callee(pbx);
    let refused = refused_call(&h, trunk, DID).await;
    assert_refused(&refused, counter);
    assert_nothing_received(&pbx_side);
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_outgoing_refuses_a_second_outgoing_call_but_not_an_incoming_one() {
    let net = Net(35);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let ext = "max_calls = 2\nmax_outgoing = 1";
    let h = Harness::start(&config(&one_pbx(pbx, ext, trunk, ""))).await;
    // The PBX places its calls from another port of its IP; its configured address takes the
    // incoming call.
    let trunk_uas = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let pbx_uas = Sipp::uas("uas.xml", pbx, SippOpts::default()).await;
    let outgoing = held_calls(&h, net.addr(1), PUBLIC_NUMBER, 1);
    h.wait_confirmed(1).await;
    let refused = refused_call(&h, net.addr(1), PUBLIC_NUMBER).await;
    assert_refused(&refused, "extension 201@acme: max_outgoing 1/1");
    // An incoming call still fits in max_calls = 2.
    let incoming = held_calls(&h, net.addr(2), DID, 1);
    h.wait_confirmed(2).await;
    assert_eq!(
        h.counter_used("extension", "201@acme", "max_calls").await,
        2
    );
    assert_eq!(
        h.counter_used("extension", "201@acme", "max_outgoing")
            .await,
        1
    );
    assert_eq!(h.end_all_calls().await, 2);
    outgoing.finish().await.assert_ok("outgoing held call");
    incoming.finish().await.assert_ok("incoming held call");
    trunk_uas.finish().await.assert_ok("trunk");
    pbx_uas.finish().await.assert_ok("pbx");
    h.assert_all_released().await;
}

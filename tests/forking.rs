//! Ring rules over real calls (spec call-control 4, E3): a provider's call for extension 002
//! forks to 002, 011 and the public number 0804993222 as 002's rule says. With one unit each
//! only 002 rings; with two, all three ring and whichever answers, every counter returns to 0;
//! the losers get CANCEL with `Reason: SIP;cause=200;text="Call completed elsewhere"`. With no
//! answer the caller gets 480 at the rule's ring_time, and when every leg fails the best final
//! response (RFC 3261 16.7).
//!
//! A trunk answering 503 passes the call to the next trunk of the rule (spec 7).
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 180..=185 here.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use support::{config, Harness, Net, Sipp, SippOpts, SippRun};

const DID: &str = "2125550100";
const COMPLETED_ELSEWHERE: &str = "Reason: SIP;cause=200;text=\"Call completed elsewhere\"";

/// Where E3's parties are: the provider calling in, PBXs 002 and 011, the trunk out.
struct Parties {
    provider: SocketAddr,
    ext_002: SocketAddr,
    ext_011: SocketAddr,
    out_trunk: SocketAddr,
}

fn parties(net: Net) -> Parties {
    Parties {
        provider: net.addr(2),
        ext_002: net.addr(21),
        ext_011: net.addr(22),
        out_trunk: net.addr(3),
    }
}

/// E3 exactly: user `u` with `public = P, internal = I`; 002's ring rule.
fn e3(p: &Parties, public: u32, internal: u32, ring_time: &str) -> String {
    config(&format!(
        r#"
[[service_provider]]
name = "sp"

[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"

[[user]]
name = "u"
organization = "acme"
limits = {{ public = {public}, internal = {internal} }}

[[extension]]
number = "002"
user = "u"
pbx = {{ address = "{e002}", transport = "udp", authenticate = false }}

[[extension]]
number = "011"
user = "u"
pbx = {{ address = "{e011}", transport = "udp", authenticate = false }}

[[trunk]]
name = "provider"
kind = "ip"
address = "{provider}"

[[trunk]]
name = "out"
kind = "ip"
address = "{out}"

[[did_pool]]
trunk = "provider"
organization = "acme"
dids = ["2125550100-2125550199"]

[[inbound_rule]]
organization = "acme"
trunk = "provider"
dids = "{DID}"
destination = {{ extension = "002" }}

[[outbound_rule]]
organization = "acme"
pattern = "^0[0-9]{{9}}$"
trunks = ["out"]

[[ring_rule]]
name = "e3"
organization = "acme"
extension = "002"
targets = ["002", "011", "0804993222"]
ring_time = "{ring_time}"
"#,
        e002 = p.ext_002,
        e011 = p.ext_011,
        provider = p.provider,
        out = p.out_trunk,
    ))
}

fn assert_silent(s: &UdpSocket, who: &str) {
    s.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0u8; 2048];
    match s.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(n) => panic!("{who} received {}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("{who}: {e}"),
    }
}

fn assert_cancelled_elsewhere(run: &SippRun, who: &str) {
    run.assert_ok(who);
    let cancels = run.received("CANCEL ");
    assert_eq!(cancels.len(), 1, "{who}: {}", run.messages);
    assert!(
        cancels[0].contains(COMPLETED_ELSEWHERE),
        "{who}: {}",
        cancels[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e3_with_one_unit_each_only_002_rings() {
    let net = Net(180);
    let p = parties(net);
    let h = Harness::start(&e3(&p, 1, 1, "30s")).await;
    let ext_011 = UdpSocket::bind(p.ext_011).expect("bind 011");
    let out_trunk = UdpSocket::bind(p.out_trunk).expect("bind the trunk out");
    let callee = Sipp::uas("uas.xml", p.ext_002, SippOpts::default()).await;
    let caller = Sipp::uac("uac.xml", p.provider, h.udp, DID, SippOpts::default());
    caller.finish().await.assert_ok("provider");
    let run = callee.finish().await;
    run.assert_ok("002");
    let invite = run.received("INVITE ");
    assert!(
        invite[0].contains("From: <sip:sipp@"),
        "the caller's number: {}",
        invite[0]
    );
    assert_silent(&ext_011, "011 (no internal unit left)");
    assert_silent(
        &out_trunk,
        "the public leg (the public unit is the incoming call's)",
    );
    h.assert_all_released().await;
}

/// All three ring with two units each; the leg at `winner` (0: 002, 1: 011, 2: public) answers.
async fn e3_all_three_ring(net: Net, winner: usize) {
    let p = parties(net);
    let h = Harness::start(&e3(&p, 2, 2, "30s")).await;
    let addrs = [p.ext_002, p.ext_011, p.out_trunk];
    let mut callees = Vec::new();
    for (i, addr) in addrs.into_iter().enumerate() {
        let scenario = if i == winner {
            "uas.xml"
        } else {
            "uas-ring.xml"
        };
        callees.push(Sipp::uas(scenario, addr, SippOpts::default()).await);
    }
    let caller = Sipp::uac("uac.xml", p.provider, h.udp, DID, SippOpts::default());
    caller.finish().await.assert_ok("provider");
    for (i, callee) in callees.into_iter().enumerate() {
        let run = callee.finish().await;
        if i == winner {
            run.assert_ok("winner");
        } else {
            assert_cancelled_elsewhere(&run, &format!("loser {i}"));
        }
    }
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e3_with_two_units_all_ring_and_011_answers() {
    e3_all_three_ring(Net(181), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e3_with_two_units_all_ring_and_the_public_leg_answers() {
    e3_all_three_ring(Net(182), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_within_ring_time_gives_the_caller_480() {
    let p = parties(Net(183));
    let h = Harness::start(&e3(&p, 2, 2, "1s")).await;
    let mut callees = Vec::new();
    for addr in [p.ext_002, p.ext_011, p.out_trunk] {
        callees.push(Sipp::uas("uas-ring.xml", addr, SippOpts::default()).await);
    }
    let started = std::time::Instant::now();
    let caller = Sipp::uac("uac-fail.xml", p.provider, h.udp, DID, SippOpts::default());
    let run = caller.finish().await;
    run.assert_ok("provider");
    assert_eq!(run.received("SIP/2.0 480").len(), 1, "{}", run.messages);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "at ring_time"
    );
    for callee in callees {
        let run = callee.finish().await;
        run.assert_ok("ringing leg");
        let cancel = run.received("CANCEL ");
        assert!(
            !cancel[0].contains("cause=200"),
            "nobody answered: {}",
            cancel[0]
        );
    }
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_leg_failing_the_caller_gets_the_best_response() {
    let p = parties(Net(184));
    let h = Harness::start(&e3(&p, 2, 2, "30s")).await;
    let e002 = Sipp::uas("uas-unavailable.xml", p.ext_002, SippOpts::default()).await;
    let e011 = Sipp::uas("uas-busy.xml", p.ext_011, SippOpts::default()).await;
    let out = Sipp::uas("uas-unavailable.xml", p.out_trunk, SippOpts::default()).await;
    let caller = Sipp::uac("uac-fail.xml", p.provider, h.udp, DID, SippOpts::default());
    let run = caller.finish().await;
    run.assert_ok("provider");
    // 503, 486, 503: the lowest class wins (RFC 3261 16.7).
    assert_eq!(run.received("SIP/2.0 486").len(), 1, "{}", run.messages);
    for (who, callee) in [("002", e002), ("011", e011), ("out", out)] {
        callee.finish().await.assert_ok(who);
    }
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_answering_503_fails_over_to_the_next_trunk() {
    let net = Net(185);
    let (pbx, first, second) = (net.addr(1), net.addr(2), net.addr(3));
    let tenancy = support::acme_with_backup(pbx, first, second, "");
    let h = Harness::start(&config(&tenancy)).await;
    let failing = Sipp::uas("uas-unavailable.xml", first, SippOpts::default()).await;
    let answering = Sipp::uas("uas.xml", second, SippOpts::default()).await;
    let caller = Sipp::uac(
        "uac.xml",
        pbx,
        h.udp,
        support::PUBLIC_NUMBER,
        SippOpts::default(),
    );
    caller.finish().await.assert_ok("caller");
    failing.finish().await.assert_ok("first trunk (503)");
    let run = answering.finish().await;
    run.assert_ok("second trunk");
    let invite = run.received("INVITE ");
    assert!(
        invite[0].starts_with(&format!("INVITE sip:{}@", support::PUBLIC_NUMBER)),
        "{}",
        invite[0]
    );
    h.assert_all_released().await;
}

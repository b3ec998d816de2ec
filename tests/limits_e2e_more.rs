//! More limits end to end with SIPp: spec call-control E1 at full size (a provider with
//! `public = 200` over five users with `public = 100`, one PBX each) and trunk failover when the
//! first trunk of an outbound rule is full (spec 7). Every test ends with every counter back at 0.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 91..=99 here.

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use support::{assert_refused_by, config, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER};

/// Holds `n` calls from `from`; they end when callgate sends BYE.
fn held_calls(h: &Harness, from: SocketAddr, n: u32, rate: u32, timeout: Duration) -> Sipp {
    let opts = SippOpts {
        timeout,
        ..SippOpts::calls(n)
    }
    .arg(&["-l", &n.to_string(), "-r", &rate.to_string()]);
    Sipp::uac("uac-hold.xml", from, h.udp, PUBLIC_NUMBER, opts)
}

/// One call that must be refused, placed from `from`.
async fn refused_call(h: &Harness, from: SocketAddr) -> support::SippRun {
    let uac = Sipp::uac(
        "uac-fail.xml",
        from,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    uac.finish().await
}

/// E1: provider `sp` with public = 200; users u1..u5 with public = 100, each owning PBX
/// extension 20i at `pbxs[i - 1]`; ten-digit numbers go out on trunk `carrier`.
fn e1(pbxs: &[SocketAddr], trunk: SocketAddr) -> String {
    let mut toml = String::from(
        r#"
[[service_provider]]
name = "sp"
limits = { public = 200 }

[[organization]]
name = "tenant"
service_provider = "sp"
domain = "tenant.example"
"#,
    );
    for (i, pbx) in (1..).zip(pbxs) {
        write!(
            toml,
            r#"
[[user]]
name = "u{i}"
organization = "tenant"
limits = {{ public = 100 }}

[[extension]]
number = "20{i}"
user = "u{i}"
pbx = {{ address = "{pbx}", transport = "udp", authenticate = false }}
"#
        )
        .expect("write to a String");
    }
    write!(
        toml,
        r#"
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
    .expect("write to a String");
    toml
}

/// Calls each PBX holds in E1, and how many PBXs there are.
const PER_PBX: u32 = 40;
const PBXS: u8 = 5;
/// Bound on each SIPp run of E1 (set-up at 50 calls/s in all, hold, teardown).
const E1_RUN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_full_size_the_provider_caps_five_oversold_users_at_200() {
    let net = Net(91);
    let pbxs: Vec<SocketAddr> = (1..=PBXS).map(|h| net.addr(h)).collect();
    let trunk = net.addr(100);
    let h = Harness::start(&config(&e1(&pbxs, trunk))).await;
    let total = PER_PBX * u32::from(PBXS);
    let uas_opts = SippOpts {
        timeout: E1_RUN,
        ..SippOpts::calls(total)
    };
    let uas = Sipp::uas("uas.xml", trunk, uas_opts).await;
    // Five PBXs at 10 calls/s each: 200 calls up in about 4 s.
    let uacs: Vec<Sipp> = pbxs
        .iter()
        .map(|&pbx| held_calls(&h, pbx, PER_PBX, 10, E1_RUN))
        .collect();
    h.wait_confirmed(total as usize).await;
    assert_eq!(
        h.counter_used("service_provider", "sp", "public").await,
        200
    );
    for i in 1..=PBXS {
        let user = format!("u{i}");
        assert_eq!(h.counter_used("user", &user, "public").await, 40);
    }
    // PBX 3 (its user at 40/100) calls again from another port of its IP: the provider refuses.
    let refused = refused_call(&h, net.addr(3)).await;
    assert_refused_by(&refused, "service_provider sp: public 200/200");
    assert_eq!(h.end_all_calls().await, total as usize);
    for (i, uac) in (1..).zip(uacs) {
        uac.finish_within(E1_RUN)
            .await
            .assert_ok(&format!("pbx {i} held calls"));
    }
    let callee = uas.finish_within(E1_RUN).await;
    callee.assert_ok("trunk");
    assert_eq!(
        callee.received("INVITE ").len(),
        total as usize,
        "the refused call never reached the trunk"
    );
    h.assert_all_released().await;
}

/// One PBX extension `201`; outbound calls try trunk `a` (max_outbound = 1), then trunk `b`
/// (max_outbound = 1).
fn two_trunks(pbx: SocketAddr, a: SocketAddr, b: SocketAddr) -> String {
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

[[trunk]]
name = "a"
kind = "ip"
address = "{a}"
max_outbound = 1

[[trunk]]
name = "b"
kind = "ip"
address = "{b}"
max_outbound = 1

[[outbound_rule]]
organization = "acme"
pattern = "^[2-9][0-9]{{9}}$"
trunks = ["a", "b"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_first_trunk_passes_the_call_to_the_next_one() {
    let net = Net(92);
    let (pbx, a, b) = (net.addr(1), net.addr(2), net.addr(3));
    let h = Harness::start(&config(&two_trunks(pbx, a, b))).await;
    let uas_a = Sipp::uas("uas.xml", a, SippOpts::default()).await;
    let uas_b = Sipp::uas("uas.xml", b, SippOpts::default()).await;
    let first = held_calls(&h, pbx, 1, 10, support::WAIT);
    h.wait_confirmed(1).await;
    assert_eq!(h.counter_used("trunk", "a", "max_outbound").await, 1);
    assert_eq!(h.counter_used("trunk", "b", "max_outbound").await, 0);
    // Trunk a is full: the second call (another port of the PBX's IP) goes out on trunk b.
    let second = held_calls(&h, net.addr(1), 1, 10, support::WAIT);
    h.wait_confirmed(2).await;
    assert_eq!(h.counter_used("trunk", "a", "max_outbound").await, 1);
    assert_eq!(h.counter_used("trunk", "b", "max_outbound").await, 1);
    // Both full: refused, naming the last trunk tried.
    let refused = refused_call(&h, net.addr(1)).await;
    assert_refused_by(&refused, "trunk b: max_outbound 1/1");
    assert_eq!(h.end_all_calls().await, 2);
    first.finish().await.assert_ok("first call");
    second.finish().await.assert_ok("second call");
    for (name, uas) in [("trunk a", uas_a), ("trunk b", uas_b)] {
        let callee = uas.finish().await;
        callee.assert_ok(name);
        assert_eq!(callee.received("INVITE ").len(), 1, "{name}");
    }
    h.assert_all_released().await;
}

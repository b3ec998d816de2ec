//! Shutdown with calls up (spec operations "Signals"): SIGTERM to the `callgate` binary run with
//! `--drain 5s` while 50 calls are held; both SIPp sides get a BYE for every call and complete,
//! the process exits 0 within the drain having released every counter. The in-process variant
//! reads the counters directly after `Daemon::shutdown`.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 62..=63 here.

mod support;

use std::time::{Duration, Instant};

use support::ops::{binary_config, daemon_addrs, scrape, tenancy, DaemonProcess};
use support::{config, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER};

const CALLS: u32 = 50;
const DRAIN: Duration = Duration::from_secs(5);
/// Units an outbound call from the PBX holds (spec call-control 3): extension max_calls and
/// max_outgoing; user, organization, provider and server public; trunk max_calls and
/// max_outbound.
const OUTBOUND_UNITS: u64 = 8;

/// `CALLS` held calls from the PBX at `pbx` through callgate at `target` to the trunk's callee.
fn held_calls(pbx: std::net::SocketAddr, target: std::net::SocketAddr) -> Sipp {
    let n = CALLS.to_string();
    let opts = SippOpts::calls(CALLS).arg(&["-l", &n, "-r", "50"]);
    Sipp::uac("uac-hold.xml", pbx, target, PUBLIC_NUMBER, opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_50_calls_with_bye_on_both_legs_and_exits_0() {
    let net = Net(62);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let (sip, admin) = daemon_addrs(net);
    let toml = binary_config(sip, admin, &tenancy(pbx, trunk, None));
    let mut d = DaemonProcess::start(&toml, sip, admin, "5s").await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(CALLS)).await;
    let uac = held_calls(pbx, d.sip);
    d.wait_confirmed(CALLS as usize).await;
    let m = scrape(&d.admin).await;
    assert_eq!(
        m.value("callgate_calls_active", &[]),
        Some(f64::from(CALLS))
    );
    assert_eq!(
        m.sum("callgate_counter_used"),
        f64::from(CALLS) * OUTBOUND_UNITS as f64
    );

    let signalled = Instant::now();
    d.signal("-TERM");
    let status = d
        .wait_exit(DRAIN * 2)
        .await
        .expect("callgate exits after SIGTERM");
    let took = signalled.elapsed();
    eprintln!("SIGTERM with {CALLS} calls up: exited {status} after {took:?}");
    assert_eq!(status.code(), Some(0));
    assert!(took < DRAIN, "exit took {took:?}, drain is {DRAIN:?}");
    // Before exiting, the daemon found no call and no unit left.
    let drained = d.log_lines("drain finished");
    assert_eq!(drained.len(), 1, "{drained:?}");
    assert!(
        drained[0].contains("calls=0") && drained[0].contains("units=0"),
        "{}",
        drained[0]
    );
    assert!(d.log_lines("drain period over").is_empty());

    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), CALLS as usize);
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert_eq!(callee.received("BYE ").len(), CALLS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_shutdown_releases_every_counter_of_50_calls() {
    let net = Net(63);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&tenancy(pbx, trunk, None))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(CALLS)).await;
    let uac = held_calls(pbx, h.udp);
    h.wait_confirmed(CALLS as usize).await;
    h.wait_in_use(u64::from(CALLS) * OUTBOUND_UNITS).await;
    let (left, limiter) = h.shutdown(DRAIN).await;
    assert_eq!(left, 0, "calls still up after the drain");
    assert_eq!(limiter.in_use(), 0, "{:?}", limiter.snapshot());
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), CALLS as usize);
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert_eq!(callee.received("BYE ").len(), CALLS as usize);
}

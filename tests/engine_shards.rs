//! The multi-core engine end to end: calls spread over several engine shards, and every message
//! of a call (responses, CANCEL, the ACK of the 2xx, re-INVITE and BYE from either side, TCP
//! callers) reaches the shard that owns it, or the call would fail. Operator commands and the
//! drain reach every shard. Every test ends with every counter at 0.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 101..=109 here.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{acme, config, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER};

/// Units an outbound call from the PBX holds (see call_flow.rs).
const OUTBOUND_UNITS: u64 = 8;
/// Shards in these tests: more than the machine's cores, so calls meet several shards.
const SHARDS: usize = 4;

/// Waits until `calls` calls are up in total and returns how they spread over the shards.
async fn spread(h: &Harness, calls: usize) -> Vec<usize> {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let per_shard = h.daemon.calls_per_shard().await;
        if per_shard.iter().sum::<usize>() == calls || tokio::time::Instant::now() > deadline {
            return per_shard;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `calls` concurrent calls from the PBX at `pbx` (a caller running `uac_file`) to the trunk's
/// callee at `trunk` (running `uas_file`); both must complete and every counter be back at 0.
async fn run_pair(
    h: &Harness,
    (pbx, trunk): (SocketAddr, SocketAddr),
    uas_file: &str,
    uac_file: &str,
) {
    const CALLS: u32 = 8;
    let uas = Sipp::uas(uas_file, trunk, SippOpts::calls(CALLS)).await;
    let opts = SippOpts::calls(CALLS).arg(&["-l", "8", "-r", "100"]);
    let uac = Sipp::uac(uac_file, pbx, h.udp, PUBLIC_NUMBER, opts);
    uac.finish()
        .await
        .assert_ok(uac_file.trim_end_matches(".xml"));
    uas.finish()
        .await
        .assert_ok(uas_file.trim_end_matches(".xml"));
    h.assert_all_released().await;
}

/// Ten held calls over `transport` (`u1` or `t1`) to `target`, each hung up by the callee a
/// second after the answer: its BYE carries callgate's B-leg Call-ID, whose marker names the
/// shard; the caller's 200 to callgate's BYE comes back by branch marker.
async fn held_calls_hung_up_by_the_callee(
    h: &Harness,
    (pbx, trunk): (SocketAddr, SocketAddr),
    target: SocketAddr,
    transport: &'static str,
) {
    let uas = Sipp::uas("uas-bye-later.xml", trunk, SippOpts::calls(10)).await;
    let opts = SippOpts {
        transport,
        ..SippOpts::calls(10).arg(&["-l", "10", "-r", "100"])
    };
    let uac = Sipp::uac("uac-hold.xml", pbx, target, PUBLIC_NUMBER, opts);
    let per_shard = spread(h, 10).await;
    uas.finish().await.assert_ok("uas-bye-later");
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), 10);
    assert_spread(&per_shard, 10);
    h.assert_all_released().await;
}

fn assert_spread(per_shard: &[usize], calls: usize) {
    assert_eq!(per_shard.len(), SHARDS);
    assert_eq!(per_shard.iter().sum::<usize>(), calls, "{per_shard:?}");
    // 10 calls over 4 shards by a keyed hash: all on one shard has probability 4^-9.
    assert!(
        per_shard.iter().filter(|&&n| n > 0).count() >= 2,
        "calls did not spread: {per_shard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_calls_spread_over_shards_and_the_callee_s_bye_finds_each_one() {
    let net = Net(101);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start_with_workers(&config(&acme(pbx, "udp", trunk)), SHARDS).await;
    held_calls_hung_up_by_the_callee(&h, (pbx, trunk), h.udp, "u1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_invites_from_either_side_and_cancels_meet_their_calls_on_every_shard() {
    let net = Net(102);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start_with_workers(&config(&acme(pbx, "udp", trunk)), SHARDS).await;
    // Callee re-INVITE (by Call-ID marker) and the caller's answer relayed back (by branch).
    run_pair(
        &h,
        (pbx, trunk),
        "uas-sends-reinvite.xml",
        "uac-answer-reinvite.xml",
    )
    .await;
    // Caller re-INVITE (by Call-ID hash, like its INVITE and ACK).
    run_pair(&h, (pbx, trunk), "uas-reinvite.xml", "uac-reinvite.xml").await;
    // CANCEL of a ringing call: same Call-ID as the INVITE, so the same shard.
    run_pair(&h, (pbx, trunk), "uas-ring.xml", "uac-cancel.xml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_callers_on_one_connection_reach_calls_on_several_shards() {
    let net = Net(103);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start_with_workers(&config(&acme(pbx, "tcp", trunk)), SHARDS).await;
    // `t1`: every call of this SIPp shares one TCP connection, so one connection's messages are
    // dispatched to several shards and the responses of each go back over it.
    held_calls_hung_up_by_the_callee(&h, (pbx, trunk), h.tcp, "t1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_and_the_drain_reach_every_shard() {
    let net = Net(104);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start_with_workers(&config(&acme(pbx, "udp", trunk)), SHARDS).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(20)).await;
    let opts = SippOpts::calls(10).arg(&["-l", "10", "-r", "100"]);
    let uac = Sipp::uac("uac-hold.xml", pbx, h.udp, PUBLIC_NUMBER, opts.clone());
    // Ten held calls: GET /calls lists every shard's, DELETE /calls/{id} finds each one's shard.
    h.wait_confirmed(10).await;
    assert_spread(&spread(&h, 10).await, 10);
    assert!(h.daemon.healthy(), "every shard makes progress");
    assert_eq!(h.end_all_calls().await, 10);
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), 10);
    h.wait_in_use(0).await;
    // Ten more, then the drain: every shard BYEs its calls.
    let uac = Sipp::uac("uac-hold.xml", pbx, h.udp, PUBLIC_NUMBER, opts);
    h.wait_confirmed(10).await;
    h.wait_in_use(10 * OUTBOUND_UNITS).await;
    let (left, limiter) = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(left, 0, "calls still up after the drain");
    assert_eq!(limiter.in_use(), 0, "{:?}", limiter.snapshot());
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), 10);
    uas.finish().await.assert_ok("uas");
}

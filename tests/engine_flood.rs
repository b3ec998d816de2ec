//! Bounded work per wake-up, end to end through the binary: 50 000 INVITEs from an unknown
//! source sent at full speed while calls are held. During the flood an OPTIONS probe is still
//! answered within 1 s, a held call's `max_call_duration` fires on time, and SIGTERM drains the
//! held calls and exits 0 within the drain period.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 105 here.

mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::ops::{binary_config, daemon_addrs, tenancy, DaemonProcess};
use support::{Net, Sipp, SippOpts, PUBLIC_NUMBER};

/// INVITEs in one flood.
const FLOOD: usize = 50_000;
/// The held calls' `max_call_duration`.
const MAX_DURATION: Duration = Duration::from_secs(3);
/// How late the duration limit may fire under the flood (debug build, shared 2-core machine).
const TIMER_SLACK: Duration = Duration::from_secs(1);
/// The OPTIONS probe's budget.
const PROBE_BUDGET: Duration = Duration::from_secs(1);
const DRAIN: Duration = Duration::from_secs(3);

/// Sends `FLOOD` INVITEs from `from` to `to` as fast as the socket takes them; returns how many
/// were sent and how long it took.
fn flood(from: IpAddr, to: SocketAddr) -> (usize, Duration) {
    let socket = UdpSocket::bind((from, 0)).expect("bind the flood socket");
    let local = socket.local_addr().expect("flood socket address");
    let started = Instant::now();
    let mut sent = 0;
    for n in 0..FLOOD {
        let invite = format!(
            "INVITE sip:{PUBLIC_NUMBER}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfl{n}\r\nFrom: <sip:x@{local}>;tag=f{n}\r\nTo: <sip:{PUBLIC_NUMBER}@{to}>\r\nCall-ID: flood-{n}@{local}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        // A full socket buffer loses datagrams: that is what a flood does.
        if socket.send_to(invite.as_bytes(), to).is_ok() {
            sent += 1;
        }
    }
    (sent, started.elapsed())
}

/// One OPTIONS probe from `socket` to `to`, retransmitted every 200 ms like a monitoring UAC;
/// the time to its 200, or `None` past the budget.
fn probe(socket: &UdpSocket, to: SocketAddr, n: usize) -> Option<Duration> {
    let local = socket.local_addr().expect("probe socket address");
    let call_id = format!("probe-{n}@{local}");
    let options = format!(
        "OPTIONS sip:callgate@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKpr{n};rport\r\nFrom: <sip:mon@{local}>;tag=p{n}\r\nTo: <sip:callgate@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < PROBE_BUDGET {
        socket
            .send_to(options.as_bytes(), to)
            .expect("send OPTIONS");
        while let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with("SIP/2.0 200") && text.contains(&call_id) {
                return Some(started.elapsed());
            }
        }
    }
    None
}

/// Probes OPTIONS back to back until the flood thread is done (and at least five times);
/// returns every probe's time.
fn probe_during(
    flood: &std::thread::JoinHandle<(usize, Duration)>,
    from: IpAddr,
    to: SocketAddr,
) -> Vec<Option<Duration>> {
    let socket = UdpSocket::bind((from, 0)).expect("bind the probe socket");
    let mut times = Vec::new();
    while times.len() < 5 || !flood.is_finished() {
        times.push(probe(&socket, to, times.len()));
    }
    times
}

/// Two held calls from the PBX.
fn held_calls(pbx: SocketAddr, target: SocketAddr) -> Sipp {
    let opts = SippOpts::calls(2).arg(&["-l", "2", "-r", "50"]);
    Sipp::uac("uac-hold.xml", pbx, target, PUBLIC_NUMBER, opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invites_leaves_options_timers_and_the_drain_on_time() {
    let net = Net(105);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let (sip, admin) = daemon_addrs(net);
    let toml = binary_config(sip, admin, &tenancy(pbx, trunk, None)).replacen(
        "name = \"ops\"",
        &format!(
            "name = \"ops\"\nmax_call_duration = \"{}s\"",
            MAX_DURATION.as_secs()
        ),
        1,
    );
    let mut d = DaemonProcess::start(&toml, sip, admin, &format!("{}s", DRAIN.as_secs())).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(4)).await;

    // 1. Held calls, then the flood: OPTIONS answered, the duration limit ends the calls.
    let uac = held_calls(pbx, sip);
    d.wait_confirmed(2).await;
    let confirmed = Instant::now();
    let flooder = std::thread::spawn(move || flood(net.ip(99), sip));
    let probes = tokio::task::spawn_blocking({
        move || {
            let times = probe_during(&flooder, net.ip(98), sip);
            (times, flooder.join().expect("flood thread"))
        }
    })
    .await
    .expect("probe task");
    let (times, (sent, flood_took)) = probes;
    eprintln!("flood: {sent} INVITEs in {flood_took:?}; OPTIONS probes: {times:?}");
    assert!(sent > FLOOD / 2, "the flood was sent ({sent})");
    for (i, t) in times.iter().enumerate() {
        assert!(
            t.is_some(),
            "OPTIONS probe {i} unanswered within {PROBE_BUDGET:?}: {times:?}"
        );
    }
    let caller = uac
        .finish_within(MAX_DURATION + TIMER_SLACK + Duration::from_secs(5))
        .await;
    caller.assert_ok("uac-hold");
    let ended = confirmed.elapsed();
    eprintln!("held calls ended by max_call_duration {ended:?} after confirmation");
    assert!(
        ended < MAX_DURATION + TIMER_SLACK,
        "max_call_duration {MAX_DURATION:?} fired after {ended:?}"
    );
    assert_eq!(caller.received("BYE ").len(), 2);

    // 2. Held calls, a second flood, SIGTERM in the middle of it: drained within the grace.
    let uac = held_calls(pbx, sip);
    d.wait_confirmed(2).await;
    let flooder = std::thread::spawn(move || flood(net.ip(99), sip));
    let signalled = Instant::now();
    d.signal("-TERM");
    let status = d
        .wait_exit(DRAIN * 3)
        .await
        .expect("callgate exits after SIGTERM");
    let took = signalled.elapsed();
    eprintln!("SIGTERM during a flood: exited {status} after {took:?}");
    assert_eq!(status.code(), Some(0));
    assert!(took < DRAIN + Duration::from_secs(1), "exit took {took:?}");
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), 2);
    let _ = flooder.join();
    let drained = d.log_lines("drain finished");
    assert!(
        drained.iter().any(|l| l.contains("units=0")),
        "drain released every unit: {drained:?}"
    );
    uas.finish().await.assert_ok("uas");
}

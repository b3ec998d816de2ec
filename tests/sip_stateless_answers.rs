//! RFC 3261 8.2 answers through the running daemon, over real UDP on loopback: an unknown
//! Request-URI scheme gets 416, a `Require` callgate lacks gets 420 with `Unsupported`, a SIP
//! version other than 2.0 gets 505 (OPTIONS and INVITE alike), and while the `callgate` binary
//! drains after SIGTERM an out-of-dialog OPTIONS gets 503 with `Retry-After`.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 131..=132 here.

mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::ops::{binary_config, daemon_addrs, tenancy, DaemonProcess};
use support::{acme, config, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER, WAIT};

/// How long one probe waits for its final response.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// A request from `local` to `to`: `start` is the request line, `extra` more header lines.
fn request(start: &str, method: &str, local: SocketAddr, extra: &str, n: u32) -> String {
    format!(
        "{start}\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{n}\r\n\
         From: <sip:probe@{local}>;tag=p{n}\r\nTo: <sip:gw@{local}>\r\nCall-ID: probe-{n}@test\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Sends `start`/`extra` as a request to `to` and returns the first final response (provisional
/// ones are skipped), or `None` when none came within [`ANSWER_WAIT`].
fn final_answer(
    from: IpAddr,
    to: SocketAddr,
    start: &str,
    method: &str,
    extra: &str,
    n: u32,
) -> Option<String> {
    let sock = UdpSocket::bind((from, 0)).expect("probe socket");
    let local = sock.local_addr().expect("local address");
    sock.send_to(request(start, method, local, extra, n).as_bytes(), to)
        .expect("send");
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            return None;
        };
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return Some(text);
        }
    }
    None
}

async fn answer(
    from: IpAddr,
    to: SocketAddr,
    start: String,
    method: &'static str,
    extra: &'static str,
) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let line = start.clone();
    tokio::task::spawn_blocking(move || final_answer(from, to, &line, method, extra, n))
        .await
        .expect("join")
        .unwrap_or_else(|| panic!("no final answer to `{start}`"))
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc_3261_8_2_refusals_come_back_from_the_daemon() {
    let net = Net(132);
    // The requests come from the PBX's address: an INVITE from anyone else is refused 403
    // before any other check (a scanner learns nothing from which check it failed).
    let pbx = net.addr(1);
    let h = Harness::start(&config(&acme(pbx, "udp", net.addr(2)))).await;
    let gw = h.udp;
    let stranger = net.addr(9).ip();
    let r = answer(
        stranger,
        gw,
        "INVITE mailto:gw@example.com SIP/2.0".into(),
        "INVITE",
        "",
    )
    .await;
    assert_eq!(status_line(&r), "SIP/2.0 403 Forbidden", "{r}");
    let pbx = pbx.ip();
    for method in ["OPTIONS", "INVITE"] {
        let r = answer(
            pbx,
            gw,
            format!("{method} mailto:gw@example.com SIP/2.0"),
            method,
            "",
        )
        .await;
        assert_eq!(status_line(&r), "SIP/2.0 416 Unsupported URI Scheme", "{r}");

        let start = format!("{method} sip:{PUBLIC_NUMBER}@{gw} SIP/2.0");
        let r = answer(pbx, gw, start, method, "Require: timer, 100rel\r\n").await;
        assert_eq!(status_line(&r), "SIP/2.0 420 Bad Extension", "{r}");
        assert!(r.contains("\r\nUnsupported: 100rel\r\n"), "{r}");

        let start = format!("{method} sip:{PUBLIC_NUMBER}@{gw} SIP/7.0");
        let r = answer(pbx, gw, start, method, "").await;
        assert_eq!(status_line(&r), "SIP/2.0 505 Version Not Supported", "{r}");
        assert!(r.contains("\r\nCall-ID: probe-"), "{r}");
    }
    // `Require: timer` is supported: the OPTIONS is answered 200 and says so.
    let start = format!("OPTIONS sip:gw@{gw} SIP/2.0");
    let r = answer(pbx, gw, start, "OPTIONS", "Require: timer\r\n").await;
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert!(r.contains("\r\nSupported: timer\r\n"), "{r}");
    assert_eq!(h.daemon.calls().await, 0, "no refused INVITE became a call");
}

/// A callee at `bind` that answers the first INVITE with 200 and then ignores everything (our
/// BYE included), so the drain stays in progress until its grace period ends.
fn deaf_callee(bind: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let sock = UdpSocket::bind(bind).expect("bind the callee");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut answered = false;
        while !stop.load(Ordering::Relaxed) {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if !answered && text.starts_with("INVITE ") {
                let ok = ok_for(&text, bind);
                let _ = sock.send_to(ok.as_bytes(), from);
                answered = true;
            }
        }
    })
}

/// `200 OK` for `invite`, copying Via, From, To (tagged), Call-ID and CSeq, with an SDP answer.
fn ok_for(invite: &str, local: SocketAddr) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in invite.lines() {
        let name = line.split(':').next().unwrap_or_default().trim();
        match name.to_ascii_lowercase().as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" | "t" => out.push_str(&format!("{line};tag=deaf\r\n")),
            _ => {}
        }
    }
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
        ip = local.ip()
    );
    out.push_str(&format!(
        "Contact: <sip:deaf@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_get_503_with_retry_after_while_the_binary_drains() {
    let net = Net(131);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let (sip, admin) = daemon_addrs(net);
    let toml = binary_config(sip, admin, &tenancy(pbx, trunk, None));
    let mut d = DaemonProcess::start(&toml, sip, admin, "3s").await;
    let stop = Arc::new(AtomicBool::new(false));
    let callee = deaf_callee(trunk, stop.clone());
    let uac = Sipp::uac("uac-hold.xml", pbx, sip, PUBLIC_NUMBER, SippOpts::calls(1));
    d.wait_confirmed(1).await;
    let probe = format!("OPTIONS sip:gw@{sip} SIP/2.0");
    let r = answer(net.addr(9).ip(), sip, probe.clone(), "OPTIONS", "").await;
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");

    d.signal("-TERM");
    d.wait_log("shutting down", 1, WAIT).await;
    // The flag is set when the drain starts, just after that line: the first probe may be early.
    let deadline = Instant::now() + ANSWER_WAIT;
    let r = loop {
        let r = answer(net.addr(9).ip(), sip, probe.clone(), "OPTIONS", "").await;
        if status_line(&r) != "SIP/2.0 200 OK" || Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(status_line(&r), "SIP/2.0 503 Service Unavailable", "{r}");
    assert!(r.contains("\r\nRetry-After: 30\r\n"), "{r}");

    let status = d
        .wait_exit(WAIT)
        .await
        .expect("callgate exits after the drain");
    assert_eq!(status.code(), Some(0));
    stop.store(true, Ordering::Relaxed);
    callee.join().expect("callee thread");
    let caller = uac.finish().await;
    caller.assert_ok("uac-hold");
    assert_eq!(caller.received("BYE ").len(), 1);
}

//! The log level changed at run time through the admin API (issue 19): `GET /log` shows the
//! directive in force, `PUT /log` replaces it at once (a debug line appears that the start's
//! `info` filter kept out), and a bad directive is refused with 400 and changes nothing.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 160 here.

mod support;

use std::time::Duration;

use callgate::admin::client::{self, AdminUrl};
use support::ops::{binary_config, daemon_addrs, tenancy, DaemonProcess};
use support::Net;

/// A request the parser refuses (no number in CSeq) but that has every header a 400 needs.
const MALFORMED: &[u8] = b"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKlog1\r\n\
From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n\
Call-ID: log-level-1\r\nCSeq: bogus OPTIONS\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

/// `method path` with `body` to the admin API: the status and the body.
async fn http(admin: &AdminUrl, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = client::request_with_body(admin, method, path, None, body)
        .await
        .expect("admin API");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_changes_at_run_time_and_a_bad_one_is_refused() {
    let net = Net(160);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let (sip, admin) = daemon_addrs(net);
    let toml = binary_config(sip, admin, &tenancy(pbx, trunk, None));
    let mut d = DaemonProcess::start(&toml, sip, admin, "1s").await;
    let (status, body) = http(&d.admin, "GET", "/log", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"filter\":\"info\""), "{body}");

    // Sends a malformed datagram and waits for its 400: the daemon has handled it (and logged
    // it or not) before the filter changes, so the check below cannot race the receive loop.
    let garbage = |d: &DaemonProcess| {
        let socket = std::net::UdpSocket::bind(net.addr(3)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        socket.send_to(MALFORMED, d.sip).expect("send");
        let mut buf = [0u8; 2048];
        let (n, _) = socket
            .recv_from(&mut buf)
            .expect("a 400 for the malformed request");
        assert!(
            buf[..n].starts_with(b"SIP/2.0 400"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    };
    // At `info`, a malformed request is answered but not logged (a debug line).
    garbage(&d);
    let (status, body) = http(&d.admin, "PUT", "/log", "callgate=debug").await;
    assert_eq!(status, 200, "{body}");
    d.wait_log(
        "log filter change asked by the admin api",
        1,
        Duration::from_secs(5),
    )
    .await;
    assert!(d.log_lines("malformed message").is_empty());
    garbage(&d);
    d.wait_log("malformed message", 1, Duration::from_secs(5))
        .await;

    let (status, body) = http(&d.admin, "PUT", "/log", "callgate=loud[").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid log filter"), "{body}");
    let (_, body) = http(&d.admin, "GET", "/log", "").await;
    assert!(
        body.contains("\"filter\":\"callgate=debug\""),
        "unchanged: {body}"
    );
}

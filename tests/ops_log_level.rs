//! The log level changed at run time through the admin API (issue 19): `GET /log` shows the
//! directive in force, `PUT /log` replaces it at once (a debug line appears that the start's
//! `info` filter kept out), and a bad directive is refused with 400 and changes nothing.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 160 here.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::ops::{binary_config, daemon_addrs, tenancy, DaemonProcess};
use support::Net;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 exchange with the admin API (the test client has no request bodies): the status
/// and the body.
async fn http(admin: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(admin).await.expect("admin");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: callgate\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp))
        .await
        .expect("answered within 5 s")
        .expect("read");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_changes_at_run_time_and_a_bad_one_is_refused() {
    let net = Net(160);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let (sip, admin) = daemon_addrs(net);
    let toml = binary_config(sip, admin, &tenancy(pbx, trunk, None));
    let mut d = DaemonProcess::start(&toml, sip, admin, "1s").await;
    let (status, body) = http(admin, "GET", "/log", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"filter\":\"info\""), "{body}");

    let garbage = |d: &DaemonProcess| {
        let socket = std::net::UdpSocket::bind(net.addr(3)).expect("bind");
        socket
            .send_to(b"NOT SIP AT ALL\r\n\r\n", d.sip)
            .expect("send");
    };
    // At `info`, a malformed datagram is answered but not logged (a debug line).
    garbage(&d);
    let (status, body) = http(admin, "PUT", "/log", "callgate=debug").await;
    assert_eq!(status, 200, "{body}");
    d.wait_log(
        "log filter changed by the admin api",
        1,
        Duration::from_secs(5),
    )
    .await;
    assert!(d.log_lines("malformed message").is_empty());
    garbage(&d);
    d.wait_log("malformed message", 1, Duration::from_secs(5))
        .await;

    let (status, body) = http(admin, "PUT", "/log", "callgate=loud[").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid log filter"), "{body}");
    let (_, body) = http(admin, "GET", "/log", "").await;
    assert!(
        body.contains("\"filter\":\"callgate=debug\""),
        "unchanged: {body}"
    );
}

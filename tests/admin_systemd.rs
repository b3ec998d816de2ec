//! systemd notifications over a real `NOTIFY_SOCKET`.
//!
//! This binary mutates the process environment, so it holds exactly one test: nothing else runs
//! in this process while `NOTIFY_SOCKET` and `WATCHDOG_*` change.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use callgate::daemon::systemd;

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the read timeout");
    String::from_utf8(buf[..n].to_vec()).expect("UTF-8 notification")
}

#[test]
fn notifications_reach_the_socket_and_are_no_ops_without_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");

    std::env::set_var("NOTIFY_SOCKET", &path);
    systemd::ready();
    assert_eq!(receive(&socket), "READY=1\n");

    systemd::reloading();
    let msg = receive(&socket);
    let usec = msg
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("RELOADING with MONOTONIC_USEC, got {msg:?}"));
    assert!(usec.parse::<u64>().expect("numeric MONOTONIC_USEC") > 0);

    systemd::stopping();
    assert_eq!(receive(&socket), "STOPPING=1\n");
    systemd::watchdog_ping();
    assert_eq!(receive(&socket), "WATCHDOG=1\n");
    systemd::status("draining 3 calls\nsecond line");
    assert_eq!(receive(&socket), "STATUS=draining 3 calls\n");

    assert_eq!(systemd::watchdog_interval(), None);
    std::env::set_var("WATCHDOG_USEC", "2000000");
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    assert_eq!(systemd::watchdog_interval(), Some(Duration::from_secs(2)));
    std::env::set_var("WATCHDOG_PID", "1");
    assert_eq!(
        systemd::watchdog_interval(),
        None,
        "watchdog of another process"
    );

    // Without NOTIFY_SOCKET nothing is sent (a datagram would already be queued: send is
    // synchronous on a Unix socket) and there is no watchdog.
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    std::env::remove_var("NOTIFY_SOCKET");
    systemd::ready();
    systemd::reloading();
    assert_eq!(systemd::watchdog_interval(), None);
    socket.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0u8; 64];
    let err = socket.recv(&mut buf).expect_err("no datagram queued");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);

    // A socket path nobody listens on is logged, not fatal.
    std::env::set_var("NOTIFY_SOCKET", dir.path().join("absent.sock"));
    systemd::ready();
}

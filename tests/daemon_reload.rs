//! Reload through the daemon: listener changes take effect, an invalid file is refused whole.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use callgate::config::model::Transport;
use callgate::daemon::Daemon;

fn config(listens: &[(&str, &str)], sp_public: u32) -> String {
    let mut s = String::from("[server]\nname = \"r\"\n[license]\nsip_trunking_channels = 10\n");
    for (t, a) in listens {
        s.push_str(&format!(
            "[[listen]]\ntransport = \"{t}\"\naddress = \"{a}\"\n"
        ));
    }
    s.push_str(&format!(
        "[[service_provider]]\nname = \"sp\"\nlimits = {{ public = {sp_public} }}\n[[organization]]\nname = \"acme\"\nservice_provider = \"sp\"\ndomain = \"acme.example\"\n"
    ));
    s
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Sends an OPTIONS to `to` and waits up to `wait` for any answer.
fn options_answered(to: SocketAddr, wait: Duration) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    let local = sock.local_addr().expect("local addr");
    let msg = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-opt-{}\r\nFrom: <sip:probe@{local}>;tag=p\r\nTo: <sip:{to}>\r\nCall-ID: opt-{}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    sock.set_read_timeout(Some(wait)).expect("timeout");
    sock.send_to(msg.as_bytes(), to).expect("send");
    let mut buf = [0u8; 2048];
    matches!(sock.recv_from(&mut buf), Ok((n, _)) if buf[..n].starts_with(b"SIP/2.0 200"))
}

fn udp_addr(d: &Daemon) -> SocketAddr {
    d.bound()
        .into_iter()
        .find(|(t, _)| *t == Transport::Udp)
        .map(|(_, a)| a)
        .expect("a udp listener")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_binds_new_listeners_and_closes_removed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let first = format!("127.0.0.1:{}", free_udp_port());
    std::fs::write(&path, config(&[("udp", &first)], 5)).expect("write");
    let loaded = callgate::config::load_file(&path).expect("valid config");
    let d = Daemon::start(loaded.snapshot, Some(path.clone()))
        .await
        .expect("start");
    let old = udp_addr(&d);
    assert!(
        tokio::task::spawn_blocking(move || options_answered(old, Duration::from_secs(2)))
            .await
            .expect("join")
    );

    let second = format!("127.0.0.1:{}", free_udp_port());
    std::fs::write(
        &path,
        config(&[("udp", &second), ("tcp", "127.0.0.1:0")], 5),
    )
    .expect("write");
    let result = d.reload().await;
    assert!(result.accepted, "{:?}", result.errors);
    let now: Vec<_> = d.bound();
    assert_eq!(now.len(), 2, "{now:?}");
    let new = udp_addr(&d);
    assert_ne!(new, old);
    assert!(
        tokio::task::spawn_blocking(move || options_answered(new, Duration::from_secs(2)))
            .await
            .expect("join")
    );
    // The removed socket is closed: nothing answers there any more.
    assert!(!tokio::task::spawn_blocking(move || options_answered(
        old,
        Duration::from_millis(300)
    ))
    .await
    .expect("join"));
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_is_refused_and_the_running_config_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    std::fs::write(&path, config(&[("udp", "127.0.0.1:0")], 5)).expect("write");
    let loaded = callgate::config::load_file(&path).expect("valid config");
    let d = Daemon::start(loaded.snapshot, Some(path.clone()))
        .await
        .expect("start");
    std::fs::write(&path, "[server]\nname = \"r\"\nbogus_key = 1\n").expect("write");
    let result = d.reload().await;
    assert!(!result.accepted);
    assert!(!result.errors.is_empty());
    let limit = d
        .limiter
        .snapshot()
        .into_iter()
        .find(|c| c.name == "sp")
        .and_then(|c| c.limit);
    assert_eq!(limit, Some(5), "running configuration kept");
    // A valid file lowering the limit is then accepted and applies.
    std::fs::write(&path, config(&[("udp", "127.0.0.1:0")], 3)).expect("write");
    assert!(d.reload().await.accepted);
    let limit = d
        .limiter
        .snapshot()
        .into_iter()
        .find(|c| c.name == "sp")
        .and_then(|c| c.limit);
    assert_eq!(limit, Some(3));
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

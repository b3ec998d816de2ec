//! Reload through the daemon: every change in the file is applied or the whole file is refused
//! with the reason. Listener changes take effect, an invalid file is refused whole, the admin API
//! moves to its new address and takes a new token at once, a change of the Via/Contact address or
//! a public admin address without a token is refused, and concurrent reloads run one at a time.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use callgate::admin::client::{self, AdminUrl};
use callgate::daemon::Daemon;

/// A file with `listens` (transport, address, extra keys), the provider's public limit and
/// `admin` (an `[admin]` table or nothing).
fn config_with(listens: &[(&str, &str, &str)], sp_public: u32, admin: &str) -> String {
    let mut s = String::from("[server]\nname = \"r\"\n[license]\nsip_trunking_channels = 10\n");
    for (t, a, extra) in listens {
        s.push_str(&format!(
            "[[listen]]\ntransport = \"{t}\"\naddress = \"{a}\"\n{extra}"
        ));
    }
    s.push_str(&format!(
        "[[service_provider]]\nname = \"sp\"\nlimits = {{ public = {sp_public} }}\n[[organization]]\nname = \"acme\"\nservice_provider = \"sp\"\ndomain = \"acme.example\"\n{admin}"
    ));
    s
}

fn config(listens: &[(&str, &str)], sp_public: u32) -> String {
    let listens: Vec<_> = listens.iter().map(|(t, a)| (*t, *a, "")).collect();
    config_with(&listens, sp_public, "")
}

fn admin_table(address: SocketAddr, token: Option<&str>) -> String {
    let token = token.map_or(String::new(), |t| format!("token = \"{t}\"\n"));
    format!("[admin]\naddress = \"{address}\"\n{token}")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn free_tcp_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
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

async fn answered(to: SocketAddr, wait: Duration) -> bool {
    tokio::task::spawn_blocking(move || options_answered(to, wait))
        .await
        .expect("join")
}

/// Starts the daemon on the file at `path` holding `text`.
async fn start(path: &std::path::Path, text: &str) -> Daemon {
    std::fs::write(path, text).expect("write");
    let loaded = callgate::config::load_file(path).expect("valid config");
    Daemon::start(loaded.snapshot, Some(path.to_owned()))
        .await
        .expect("start")
}

fn sp_limit(d: &Daemon) -> Option<u32> {
    d.limiter
        .snapshot()
        .into_iter()
        .find(|c| c.name == "sp")
        .and_then(|c| c.limit)
}

fn reloads(d: &Daemon, result: &str) -> u64 {
    let text = d.metrics.encode(Vec::new()).expect("metrics encode");
    let series = format!("callgate_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .expect("reload counter series")
}

fn url(addr: SocketAddr) -> AdminUrl {
    AdminUrl::parse(&format!("http://{addr}")).expect("valid admin URL")
}

/// Status of `method path` at `addr`, or `None` when nothing answers there.
async fn status_at(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Option<u16> {
    client::request(&url(addr), method, path, token)
        .await
        .ok()
        .map(|r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_binds_new_listeners_and_closes_removed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    // The first UDP listener is what Via/Contact carry: it stays; a second one moves.
    let first = format!("127.0.0.1:{}", free_udp_port());
    let second = format!("127.0.0.1:{}", free_udp_port());
    let d = start(&path, &config(&[("udp", &first), ("udp", &second)], 5)).await;
    let old: SocketAddr = second.parse().expect("address");
    assert!(answered(old, Duration::from_secs(2)).await);

    let third = format!("127.0.0.1:{}", free_udp_port());
    std::fs::write(&path, config(&[("udp", &first), ("udp", &third)], 5)).expect("write");
    let result = d.reload().await;
    assert!(result.accepted, "{:?}", result.errors);
    let now: Vec<_> = d.bound().into_iter().map(|(_, a)| a.to_string()).collect();
    assert_eq!(now, [first.clone(), third.clone()]);
    let new: SocketAddr = third.parse().expect("address");
    assert!(answered(new, Duration::from_secs(2)).await);
    // The removed socket is closed: nothing answers there any more.
    assert!(!answered(old, Duration::from_millis(300)).await);
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_is_refused_and_the_running_config_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let d = start(&path, &config(&[("udp", "127.0.0.1:0")], 5)).await;
    std::fs::write(&path, "[server]\nname = \"r\"\nbogus_key = 1\n").expect("write");
    let result = d.reload().await;
    assert!(!result.accepted);
    assert!(!result.errors.is_empty());
    assert_eq!(sp_limit(&d), Some(5), "running configuration kept");
    // A valid file lowering the limit is then accepted and applies.
    std::fs::write(&path, config(&[("udp", "127.0.0.1:0")], 3)).expect("write");
    assert!(d.reload().await.accepted);
    assert_eq!(sp_limit(&d), Some(3));
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_new_advertised_address_the_engine_cannot_take() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let d = start(&path, &config(&[("udp", "127.0.0.1:0")], 5)).await;
    let before = d.bound();
    let advertised = [("udp", "127.0.0.1:0", "advertise = \"203.0.113.10\"\n")];
    std::fs::write(&path, config_with(&advertised, 3, "")).expect("write");
    let result = d.reload().await;
    assert!(
        !result.accepted,
        "an advertise change must not pass unapplied"
    );
    assert_eq!(result.errors.len(), 1, "{:?}", result.errors);
    let error = &result.errors[0];
    assert!(
        error.contains("203.0.113.10") && error.contains("restart"),
        "{error}"
    );
    assert_eq!(sp_limit(&d), Some(5), "nothing of the refused file applied");
    assert_eq!(d.bound(), before);
    assert_eq!((reloads(&d, "accepted"), reloads(&d, "refused")), (0, 1));
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_the_admin_api_to_its_new_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let (old, new) = (free_tcp_addr(), free_tcp_addr());
    let udp = [("udp", "127.0.0.1:0", "")];
    let d = start(&path, &config_with(&udp, 5, &admin_table(old, None))).await;
    assert_eq!(d.admin_addr(), Some(old));
    std::fs::write(&path, config_with(&udp, 5, &admin_table(new, None))).expect("write");
    // Asked through the API at the old address: the answer still arrives there.
    let resp = client::request(&url(old), "POST", "/reload", None)
        .await
        .expect("POST /reload answered at the old address");
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, 200, "{body}");
    assert!(
        body.contains(&format!("admin API moved to {new}")),
        "{body}"
    );
    assert_eq!(d.admin_addr(), Some(new));
    assert_eq!(status_at(new, "GET", "/health", None).await, Some(200));
    let gone = wait_for(|| async { status_at(old, "GET", "/health", None).await.is_none() });
    assert!(gone.await, "the old admin address still answers");
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refused_when_the_new_admin_address_cannot_be_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let old = free_tcp_addr();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("address");
    let udp = [("udp", "127.0.0.1:0", "")];
    let d = start(&path, &config_with(&udp, 5, &admin_table(old, None))).await;
    std::fs::write(&path, config_with(&udp, 3, &admin_table(busy, None))).expect("write");
    let result = d.reload().await;
    assert!(!result.accepted);
    assert!(
        result.errors.iter().any(|e| e.contains(&busy.to_string())),
        "{:?}",
        result.errors
    );
    assert_eq!(sp_limit(&d), Some(5), "nothing of the refused file applied");
    assert_eq!(d.admin_addr(), Some(old));
    assert_eq!(status_at(old, "GET", "/health", None).await, Some(200));
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_new_admin_token_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let admin = free_tcp_addr();
    let udp = [("udp", "127.0.0.1:0", "")];
    let first = config_with(&udp, 5, &admin_table(admin, Some("old-token")));
    let d = start(&path, &first).await;
    assert_eq!(
        status_at(admin, "GET", "/calls", Some("old-token")).await,
        Some(200)
    );
    let second = config_with(&udp, 5, &admin_table(admin, Some("new-token")));
    std::fs::write(&path, second).expect("write");
    let resp = client::request(&url(admin), "POST", "/reload", Some("old-token"))
        .await
        .expect("POST /reload");
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, 200, "{body}");
    assert!(body.contains("admin token changed"), "{body}");
    for path in ["/calls", "/counters", "/registrations"] {
        let old = status_at(admin, "GET", path, Some("old-token")).await;
        assert_eq!(old, Some(401), "{path} with the old token");
        let new = status_at(admin, "GET", path, Some("new-token")).await;
        assert_eq!(new, Some(200), "{path} with the new token");
    }
    assert_eq!(d.admin_addr(), Some(admin), "same address: same server");
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_public_admin_address_without_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let admin = free_tcp_addr();
    let udp = [("udp", "127.0.0.1:0", "")];
    let d = start(&path, &config_with(&udp, 5, &admin_table(admin, None))).await;
    let public: SocketAddr = "0.0.0.0:0".parse().expect("address");
    std::fs::write(&path, config_with(&udp, 5, &admin_table(public, None))).expect("write");
    let result = d.reload().await;
    assert!(!result.accepted);
    assert!(
        result.errors.iter().any(|e| e.contains("admin: token")),
        "{:?}",
        result.errors
    );
    assert_eq!(d.admin_addr(), Some(admin));
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

/// Sixteen reloads at once, half by `Daemon::reload` (SIGHUP's path), half by `POST /reload`, on a
/// file that moves a second listener: run one after another, the first binds the new address and
/// the others find it bound. Interleaved, several would bind it (all but one failing) or swap the
/// listener table over each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reloads_run_one_after_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let admin = free_tcp_addr();
    let first = format!("127.0.0.1:{}", free_udp_port());
    let second = format!("127.0.0.1:{}", free_udp_port());
    let file = |other: &str, limit| {
        let l = [("udp", first.as_str(), ""), ("udp", other, "")];
        config_with(&l, limit, &admin_table(admin, None))
    };
    let d = std::sync::Arc::new(start(&path, &file(&second, 5)).await);
    let moved = format!("127.0.0.1:{}", free_udp_port());
    std::fs::write(&path, file(&moved, 7)).expect("write");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let d = d.clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                d.reload().await.accepted
            } else {
                status_at(admin, "POST", "/reload", None).await == Some(200)
            }
        });
    }
    let results = tasks.join_all().await;
    assert_eq!(results, [true; 16], "every reload of a valid file accepted");
    assert_eq!((reloads(&d, "accepted"), reloads(&d, "refused")), (16, 0));
    let bound: Vec<_> = d.bound().into_iter().map(|(_, a)| a.to_string()).collect();
    assert_eq!(
        bound,
        [first, moved.clone()],
        "exactly the file's listeners"
    );
    assert_eq!(sp_limit(&d), Some(7), "the file's limit in force");
    assert!(answered(moved.parse().expect("address"), Duration::from_secs(2)).await);
    assert!(!answered(second.parse().expect("address"), Duration::from_millis(300)).await);
    let d = std::sync::Arc::into_inner(d).expect("every task done");
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

/// Polls `cond` for up to 5 s.
async fn wait_for<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

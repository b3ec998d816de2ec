//! The transport and stateless answers under hostile input: OPTIONS over UDP and TCP (SIPp),
//! 64 KiB of garbage on a TCP stream, 10 000 random datagrams, and the stateless replies (400,
//! 483, 501) — after all of which the daemon still answers. The TCP idle timeout follows the
//! configuration at start and on reload.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use callgate::config::model::Transport;
use callgate::daemon::Daemon;

const CFG: &str = "[server]\nname = \"robust\"\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:0\"\n[[service_provider]]\nname = \"sp\"\n[[organization]]\nname = \"acme\"\nservice_provider = \"sp\"\ndomain = \"acme.example\"\n";

async fn start() -> Daemon {
    let snapshot = callgate::config::load(CFG)
        .map(|l| l.snapshot)
        .unwrap_or_else(|e| panic!("{e:?}"));
    Daemon::start(snapshot, None).await.expect("daemon starts")
}

fn addr(d: &Daemon, t: Transport) -> SocketAddr {
    d.bound()
        .into_iter()
        .find(|(tt, _)| *tt == t)
        .map(|(_, a)| a)
        .expect("listener")
}

fn request(method: &str, to: SocketAddr, local: SocketAddr, extra: &str, tag: u32) -> String {
    format!(
        "{method} sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-r{tag}\r\nFrom: <sip:probe@{local}>;tag=p{tag}\r\nTo: <sip:{to}>\r\nCall-ID: r{tag}@test\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Sends `msg` over UDP and returns the status line of the answer, if one comes within 2 s.
fn udp_exchange(to: SocketAddr, msg: impl FnOnce(SocketAddr) -> String) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let text = msg(sock.local_addr().ok()?);
    sock.send_to(text.as_bytes(), to).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    reply.lines().next().map(str::to_owned)
}

/// Like a real client, retransmits (a new transaction each time) until answered: after a flood
/// the daemon may still be working through the backlog, or the kernel may have dropped the probe.
fn options_answered(to: SocketAddr, tag: u32) -> bool {
    (0..15).any(|attempt| {
        udp_exchange(to, |local| {
            request(
                "OPTIONS",
                to,
                local,
                "Max-Forwards: 70\r\n",
                tag * 100 + attempt,
            )
        })
        .is_some_and(|l| l.starts_with("SIP/2.0 200"))
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn sipp_options(to: SocketAddr, transport: &str) -> bool {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/options.xml");
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("sipp")
        .arg(to.to_string())
        .args(["-sf"])
        .arg(&scenario)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-t",
            transport,
            "-m",
            "3",
            "-r",
            "10",
            "-nostdin",
        ])
        .args(["-timeout", "15s", "-timeout_error", "-max_socket", "10"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp runs (install sip-tester)");
    status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_options_are_answered_over_udp_and_tcp() {
    let d = start().await;
    let (udp, tcp) = (addr(&d, Transport::Udp), addr(&d, Transport::Tcp));
    assert!(
        blocking(move || sipp_options(udp, "u1")).await,
        "OPTIONS over UDP"
    );
    assert!(
        blocking(move || sipp_options(tcp, "t1")).await,
        "OPTIONS over TCP"
    );
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tcp_stream_and_random_datagrams_leave_the_daemon_answering() {
    let d = start().await;
    let (udp, tcp) = (addr(&d, Transport::Udp), addr(&d, Transport::Tcp));
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let garbage: Vec<u8> = (0..64 * 1024).map(|_| rng.next() as u8).collect();
    blocking(move || {
        let mut stream = TcpStream::connect(tcp).expect("connect");
        // The daemon may close the stream as soon as it sees it cannot be framed.
        let _ = stream.write_all(&garbage);
    })
    .await;
    blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let local = sock.local_addr().expect("local addr");
        let valid = request("OPTIONS", udp, local, "Max-Forwards: 70\r\n", 1).into_bytes();
        let mut rng = XorShift(42);
        for i in 0..10_000u32 {
            let datagram = if i % 2 == 0 {
                random_bytes(&mut rng)
            } else {
                mutate(&valid, &mut rng)
            };
            let _ = sock.send_to(&datagram, udp);
        }
    })
    .await;
    assert!(
        blocking(move || options_answered(udp, 2)).await,
        "UDP still answered"
    );
    let metrics = d.metrics.encode(Vec::new()).expect("metrics");
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("callgate_sip_parse_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(errors > 1000.0, "parse errors counted: {errors}");
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_replies_400_483_501() {
    let d = start().await;
    let udp = addr(&d, Transport::Udp);
    let bad_length = blocking(move || {
        udp_exchange(udp, |local| {
            request("OPTIONS", udp, local, "Max-Forwards: 70\r\n", 3)
                .replace("Content-Length: 0", "Content-Length: 50")
        })
    });
    assert_eq!(bad_length.await.as_deref(), Some("SIP/2.0 400 Bad Request"));
    let hops = blocking(move || {
        udp_exchange(udp, |local| {
            request("OPTIONS", udp, local, "Max-Forwards: 0\r\n", 4)
        })
    });
    assert_eq!(hops.await.as_deref(), Some("SIP/2.0 483 Too Many Hops"));
    let unknown = blocking(move || {
        udp_exchange(udp, |local| {
            request("FOO", udp, local, "Max-Forwards: 70\r\n", 5)
        })
    });
    assert_eq!(
        unknown.await.as_deref(),
        Some("SIP/2.0 501 Not Implemented")
    );
    let bye = blocking(move || {
        udp_exchange(udp, |local| {
            request("BYE", udp, local, "Max-Forwards: 70\r\n", 6)
        })
    });
    assert_eq!(
        bye.await.as_deref(),
        Some("SIP/2.0 481 Call/Transaction Does Not Exist")
    );
    d.shutdown(Duration::from_secs(1)).await;
}

/// Whether a fresh TCP connection to `to` is closed by the daemon within `wait`.
fn closed_within(to: SocketAddr, wait: Duration) -> bool {
    let mut stream = TcpStream::connect(to).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        Ok(_) => panic!("the daemon sent bytes unasked"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_timeout_follows_the_config_at_start_and_on_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.toml");
    let with_idle = |idle: &str| {
        let key = format!("name = \"robust\"\ntcp_idle_timeout = \"{idle}\"\n");
        CFG.replace("name = \"robust\"\n", &key)
    };
    std::fs::write(&path, with_idle("200ms")).expect("write config");
    let snapshot = callgate::config::load_file(&path)
        .map(|l| l.snapshot)
        .unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start(snapshot, Some(path.clone()))
        .await
        .expect("daemon starts");
    let tcp = addr(&d, Transport::Tcp);
    assert!(
        blocking(move || closed_within(tcp, Duration::from_secs(5))).await,
        "idle connection closed after 200 ms"
    );
    std::fs::write(&path, with_idle("1h")).expect("rewrite config");
    let reload = d.reload().await;
    assert!(reload.accepted, "{:?}", reload.errors);
    assert!(
        !blocking(move || closed_within(tcp, Duration::from_secs(1))).await,
        "after the reload an idle connection lives on"
    );
    d.shutdown(Duration::from_secs(1)).await;
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_bytes(rng: &mut XorShift) -> Vec<u8> {
    let len = (rng.next() % 1400) as usize + 1;
    (0..len).map(|_| rng.next() as u8).collect()
}

/// A valid message with a few bytes changed, truncated or duplicated: closer to what a broken
/// peer sends than pure noise, so it reaches deeper into the parser.
fn mutate(valid: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut m = valid.to_vec();
    for _ in 0..(rng.next() % 8 + 1) {
        let i = (rng.next() as usize) % m.len();
        match rng.next() % 3 {
            0 => m[i] = rng.next() as u8,
            1 => m.truncate(i.max(1)),
            _ => m.insert(i, b"\r\n:;<>\""[(rng.next() % 7) as usize]),
        }
    }
    m
}

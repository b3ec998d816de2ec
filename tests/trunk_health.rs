//! Trunk health probes end to end: a provider (a UDP socket driven by the test) answers
//! callgate's OPTIONS, stops answering, answers again; `/trunks` and `callgate_trunk_up` follow.
//! Network 127.162.0.0/24.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Harness, Net, WAIT};
use tokio::net::UdpSocket;

const NET: Net = Net(162);

/// A provider gateway answering OPTIONS with `status` (0: silent); counts the probes.
struct Gateway {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    probes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    async fn start(ip: std::net::IpAddr) -> Gateway {
        let socket = UdpSocket::bind((ip, 0)).await.expect("bind the gateway");
        let addr = socket.local_addr().expect("bound address");
        let status = Arc::new(AtomicU16::new(200));
        let probes = Arc::new(AtomicUsize::new(0));
        let (s, p) = (status.clone(), probes.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !text.starts_with("OPTIONS ") {
                    continue;
                }
                p.fetch_add(1, Ordering::SeqCst);
                let status = s.load(Ordering::SeqCst);
                if status != 0 {
                    let _ = socket.send_to(answer(&text, status).as_bytes(), from).await;
                }
            }
        });
        Gateway {
            addr,
            status,
            probes,
            task,
        }
    }

    fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

/// A response to `request` copying Via, From, To, Call-ID and CSeq (RFC 3261 8.2.6).
fn answer(request: &str, status: u16) -> String {
    let mut out = format!("SIP/2.0 {status} Whatever\r\n");
    for line in request.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
            out.push_str(line);
            if name == "to" {
                out.push_str(";tag=gw");
            }
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn config(gateway: SocketAddr) -> String {
    support::config(&format!(
        r#"
[[trunk]]
name = "carrier"
kind = "ip"
address = "{gateway}"
transport = "udp"
probe_interval = "200ms"
probe_misses = 2

[[trunk]]
name = "quiet"
kind = "ip"
address = "{quiet}"
"#,
        quiet = NET.addr(20)
    ))
}

async fn trunk(h: &Harness, name: &str) -> Value {
    let list = h.get_json("/trunks").await;
    list.as_array()
        .and_then(|l| l.iter().find(|t| t["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no trunk {name} in {list}"))
}

async fn wait_health(h: &Harness, health: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = trunk(h, "carrier").await;
        if v["health"] == health {
            return v;
        }
        assert!(Instant::now() < deadline, "trunk never {health}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn trunk_up_metric(h: &Harness) -> String {
    let (status, body) = support::ops::admin_get(&h.admin, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with("callgate_trunk_up{trunk=\"carrier\"}"))
        .unwrap_or_else(|| panic!("no callgate_trunk_up for carrier:\n{body}"))
        .to_owned()
}

#[tokio::test]
async fn unanswered_probes_take_a_trunk_down_and_an_answer_brings_it_up() {
    let gw = Gateway::start(NET.ip(10)).await;
    let h = Harness::start(&config(gw.addr)).await;
    assert!(
        support::wait_until(WAIT, || gw.probes.load(Ordering::SeqCst) >= 2).await,
        "no probes"
    );
    let v = wait_health(&h, "up").await;
    assert!(v["misses"].as_u64().is_some_and(|m| m < 2), "{v}");
    assert!(v["last_probe_secs_ago"].is_u64(), "{v}");
    assert!(h.daemon.trunk_states().is_available("carrier"));

    gw.answer_with(0);
    let v = wait_health(&h, "down").await;
    assert!(v["misses"].as_u64().is_some_and(|m| m >= 2), "{v}");
    assert_eq!(v["available"], false);
    assert!(!h.daemon.trunk_states().is_available("carrier"));
    assert_eq!(
        trunk_up_metric(&h).await,
        "callgate_trunk_up{trunk=\"carrier\"} 0"
    );

    // A 404 comes from a live SIP stack: up again.
    gw.answer_with(404);
    let v = wait_health(&h, "up").await;
    assert_eq!(v["misses"], 0, "{v}");
    assert_eq!(
        trunk_up_metric(&h).await,
        "callgate_trunk_up{trunk=\"carrier\"} 1"
    );

    let quiet = trunk(&h, "quiet").await;
    assert_eq!(quiet["health"], "unprobed", "no probe_interval: {quiet}");
    assert_eq!(quiet["available"], true);
}

#[tokio::test]
async fn a_gateway_answering_503_counts_as_down() {
    let gw = Gateway::start(NET.ip(11)).await;
    let h = Harness::start(&config(gw.addr)).await;
    wait_health(&h, "up").await;
    gw.answer_with(503);
    let v = wait_health(&h, "down").await;
    assert_eq!(v["available"], false, "{v}");
    gw.answer_with(200);
    wait_health(&h, "up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_skip_a_trunk_that_is_down_and_it_comes_back_by_itself() {
    let gw = Gateway::start(NET.ip(12)).await;
    let (pbx, backup) = (NET.addr(13), NET.addr(14));
    let probe = "probe_interval = \"200ms\"\nprobe_misses = 2\n";
    let tenancy = support::acme_with_backup(pbx, gw.addr, backup, probe);
    let h = Harness::start(&support::config(&tenancy)).await;
    wait_health(&h, "up").await;
    gw.answer_with(0);
    wait_health(&h, "down").await;
    let callee = support::Sipp::uas("uas.xml", backup, support::SippOpts::default()).await;
    let caller = support::Sipp::uac(
        "uac.xml",
        pbx,
        h.udp,
        support::PUBLIC_NUMBER,
        support::SippOpts::default(),
    );
    caller.finish().await.assert_ok("caller");
    callee.finish().await.assert_ok("backup trunk");
    h.assert_all_released().await;
    gw.answer_with(200);
    let v = wait_health(&h, "up").await;
    assert_eq!(v["available"], true, "back in service: {v}");
}

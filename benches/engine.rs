//! One whole call through a shard's engine, without sockets: INVITE from a PBX, the callee's 200,
//! the caller's ACK, its BYE and the callee's 200 for our BYE, with the clock moving 1 ms a call
//! so transactions expire as they would at 1 000 calls/s. What the engine itself costs per call
//! (parse, transactions, B2BUA, limiter, responses); the reference in the same run is parsing the
//! same six messages (the floor of any SIP server).
//!
//! `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`; for instruction
//! counts: `valgrind --tool=callgrind target/release/deps/engine-* --bench --profile-time 5`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use callgate::admin::Metrics;
use callgate::b2bua::{B2bua, Dest, Local, Settings};
use callgate::config::model::Transport;
use callgate::engine::{Engine, Shared};
use callgate::limits::Limiter;
use callgate::sip::{self, Message};
use callgate::transaction::{Layer, TimerConfig};
use criterion::{criterion_group, Criterion};

const CFG: &str = r#"
[server]
name = "bench"
dialog_probe_interval = "none"
[license]
sip_trunking_channels = 10
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[[service_provider]]
name = "sp"
limits = { public = 100000, internal = 100000 }
[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"
[[user]]
name = "u"
organization = "acme"
[[extension]]
number = "200"
user = "u"
pbx = { address = "127.0.0.11:5060", transport = "udp", authenticate = false }
[[trunk]]
name = "carrier"
kind = "ip"
address = "127.0.0.1:5080"
[[outbound_rule]]
organization = "acme"
pattern = "^[0-9]+$"
trunks = ["carrier"]
"#;

const PBX: &str = "127.0.0.11:5060";
const TRUNK: &str = "127.0.0.1:5080";

fn udp(addr: &str) -> Dest {
    Dest {
        transport: Transport::Udp,
        addr: addr.parse().unwrap_or_else(|e| panic!("{e}")),
    }
}

fn engine() -> Engine {
    let loaded = callgate::config::load(CFG).unwrap_or_else(|e| panic!("{e:?}"));
    let limiter = Arc::new(Limiter::new(Arc::new(loaded.snapshot)));
    let settings = Settings {
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        local: Local {
            udp: Some("127.0.0.1:5060".into()),
            tcp: None,
            tls: None,
        },
        node: "bench".into(),
        ring_timeout: Duration::from_secs(180),
    };
    let ids = callgate::sip::ids::Ids::new(0, rand::SeedableRng::seed_from_u64(1));
    Engine::new(
        B2bua::new(limiter, settings, ids),
        Layer::new(TimerConfig::default()),
        Arc::new(Metrics::new()),
        Shared::new([7; 32], Instant::now()),
    )
}

fn request(bytes: &Bytes) -> sip::Request {
    match sip::parse_datagram(bytes.clone()) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

/// The first message `sent` carries that starts with `start`.
fn find(sent: &[(Dest, Bytes)], start: &[u8]) -> Bytes {
    sent.iter()
        .find(|(_, b)| b.starts_with(start))
        .map(|(_, b)| b.clone())
        .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(start)))
}

/// The To tag of the 200 in `sent`.
fn to_tag(sent: &[(Dest, Bytes)]) -> String {
    let ok = find(sent, b"SIP/2.0 200");
    match sip::parse_datagram(ok) {
        Ok(Message::Response(r)) => r
            .parts()
            .to_tag()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        other => panic!("{other:?}"),
    }
}

struct Run {
    engine: Engine,
    now: Instant,
    n: u64,
    sent: Vec<(Dest, Bytes)>,
}

impl Run {
    fn feed(&mut self, data: Bytes, from: &str) -> Vec<(Dest, Bytes)> {
        self.engine.on_received(self.now, data, udp(from));
        self.engine.take_outbox(&mut self.sent);
        std::mem::take(&mut self.sent)
    }

    /// One call, start to end.
    fn call(&mut self) {
        self.n += 1;
        self.now += Duration::from_millis(1);
        self.engine.on_timeouts(self.now);
        self.engine.take_outbox(&mut self.sent);
        self.sent.clear();
        let n = self.n;
        let sdp = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.11\r\ns=-\r\nc=IN IP4 127.0.0.11\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let invite = Bytes::from(format!(
            "INVITE sip:3125559999@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bKi{n}\r\nFrom: <sip:200@{PBX}>;tag=a{n}\r\nTo: <sip:3125559999@127.0.0.1>\r\nCall-ID: bench-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:200@{PBX}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ));
        let sent = self.feed(invite, PBX);
        let b_invite = request(&find(&sent, b"INVITE "));
        let ok = sip::response_to(
            &b_invite,
            200,
            "OK",
            Some("b1"),
            &[("Contact", "<sip:uas@127.0.0.1:5080>")],
        );
        let sent = self.feed(ok, TRUNK);
        let tag = to_tag(&sent);
        let in_dialog = |method: &str, cseq: u32| {
            Bytes::from(format!(
                "{method} sip:gw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bK{method}{n}\r\nFrom: <sip:200@{PBX}>;tag=a{n}\r\nTo: <sip:3125559999@127.0.0.1>;tag={tag}\r\nCall-ID: bench-{n}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        self.feed(in_dialog("ACK", 1), PBX);
        let sent = self.feed(in_dialog("BYE", 2), PBX);
        let bye = request(&find(&sent, b"BYE "));
        let ok = sip::response_to(&bye, 200, "OK", None, &[]);
        self.feed(ok, TRUNK);
    }
}

fn bench(c: &mut Criterion) {
    let mut run = Run {
        engine: engine(),
        now: Instant::now(),
        n: 0,
        sent: Vec::new(),
    };
    // Fill the transaction table to its steady state (32 s of 1 ms calls) before measuring.
    for _ in 0..33_000 {
        run.call();
    }
    c.bench_function("engine/one call (6 messages in, 8 out)", |b| {
        b.iter(|| run.call())
    });
    assert_eq!(run.engine.calls(), 0, "every call ended");
    // The reference: parsing the caller's INVITE and the five other messages' worth of bytes.
    let invite = Bytes::from_static(b"INVITE sip:3125559999@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKi1\r\nFrom: <sip:200@127.0.0.11:5060>;tag=a1\r\nTo: <sip:3125559999@127.0.0.1>\r\nCall-ID: bench-1\r\nCSeq: 1 INVITE\r\nContact: <sip:200@127.0.0.11:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    c.bench_function("engine/floor: parse 6 messages", |b| {
        b.iter(|| {
            for _ in 0..6 {
                std::hint::black_box(sip::parse_datagram(invite.clone()).is_ok());
            }
        })
    });
}

criterion_group!(benches, bench);

/// `ENGINE_CALLS=N` runs N calls and exits, for instruction counts that repeat exactly: run it
/// under callgrind with two values of N and divide the difference by the difference of N.
fn main() {
    if let Some(n) = std::env::var("ENGINE_CALLS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut run = Run {
            engine: engine(),
            // Instruction counts must not depend on the clock: a fixed origin would do, but
            // Instant has none; only differences of it are used.
            now: Instant::now(),
            n: 0,
            sent: Vec::new(),
        };
        for _ in 0..n {
            run.call();
        }
        assert_eq!(run.engine.calls(), 0);
        println!("{n} calls");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

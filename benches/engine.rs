//! One whole call through a shard's engine, without sockets: INVITE from a PBX, the callee's 200,
//! the caller's ACK, its BYE and the callee's 200 for our BYE, with the clock moving 1 ms a call
//! so transactions expire as they would at 1 000 calls/s. What the engine itself costs per call
//! (parse, transactions, B2BUA, limiter, responses); the reference in the same run is parsing the
//! same six messages (the floor of any SIP server).
//!
//! Also one authenticated registration of a phone (REGISTER, 401, REGISTER with MD5 digest, 200),
//! over 10 000 phone extensions registered in turn: what the registrar path costs (issue 16's
//! REGISTER/s benchmark runs the same exchange end to end, `scripts/bench-register`).
//!
//! `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`; for instruction
//! counts: `valgrind --tool=callgrind target/release/deps/engine-* --bench --profile-time 5`,
//! or `ENGINE_CALLS=N` / `ENGINE_REGISTERS=N` (see `main`).

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

/// Phone extensions of the registration bench: 100000.. with password "pw".
const PHONES: u64 = 10_000;

/// [`CFG`] with [`PHONES`] phone extensions of user `u`.
fn phones_cfg() -> String {
    let mut out = String::from(CFG);
    for i in 0..PHONES {
        out.push_str(&format!(
            "[[extension]]\nnumber = \"{}\"\nuser = \"u\"\npassword = \"pw\"\n",
            100_000 + i
        ));
    }
    out
}

fn engine() -> Engine {
    engine_with(CFG)
}

fn engine_with(cfg: &str) -> Engine {
    let loaded = callgate::config::load(cfg).unwrap_or_else(|e| panic!("{e:?}"));
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

/// MD5 hex digest of `text`.
fn md5_hex(text: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The nonce of the challenge in `sent`.
fn nonce(sent: &[(Dest, Bytes)]) -> String {
    let text = String::from_utf8_lossy(&find(sent, b"SIP/2.0 401")).into_owned();
    text.split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no nonce in {text}"))
}

impl Run {
    /// One authenticated registration of the next phone: REGISTER, 401, REGISTER with digest, 200.
    fn register(&mut self) {
        self.n += 1;
        self.now += Duration::from_micros(250);
        self.engine.on_timeouts(self.now);
        self.engine.take_outbox(&mut self.sent);
        self.sent.clear();
        let (n, ext) = (self.n, 100_000 + self.n % PHONES);
        let phone = "127.0.0.11:5060";
        let register = |cseq: u32, auth: &str| {
            Bytes::from(format!(
                "REGISTER sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bKr{n}-{cseq}\r\nFrom: <sip:{ext}@acme.example>;tag=r{n}\r\nTo: <sip:{ext}@acme.example>\r\nCall-ID: reg-{n}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{ext}@{phone}>\r\n{auth}Expires: 3600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        let sent = self.feed(register(1, ""), phone);
        let nonce = nonce(&sent);
        let ha1 = md5_hex(&format!("{ext}:acme.example:pw"));
        let ha2 = md5_hex("REGISTER:sip:acme.example");
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        let auth = format!(
            "Authorization: Digest username=\"{ext}\",realm=\"acme.example\",cnonce=\"c0ffee\",nc=00000001,qop=auth,uri=\"sip:acme.example\",nonce=\"{nonce}\",response=\"{response}\",algorithm=MD5\r\n"
        );
        let sent = self.feed(register(2, &auth), phone);
        find(&sent, b"SIP/2.0 200");
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

/// A run over the phones' configuration, every phone registered once (the steady state: a
/// registration refreshes a binding).
fn registration_run() -> Run {
    let mut run = Run {
        engine: engine_with(&phones_cfg()),
        now: Instant::now(),
        n: 0,
        sent: Vec::new(),
    };
    for _ in 0..PHONES {
        run.register();
    }
    run
}

fn registrations(c: &mut Criterion) {
    let mut run = registration_run();
    c.bench_function(
        "engine/one registration (REGISTER, 401, REGISTER, 200)",
        |b| b.iter(|| run.register()),
    );
}

criterion_group!(benches, bench, registrations);

/// `ENGINE_CALLS=N` runs N calls and exits, for instruction counts that repeat exactly: run it
/// under callgrind with two values of N and divide the difference by the difference of N.
fn main() {
    if let Some(n) = std::env::var("ENGINE_REGISTERS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut run = registration_run();
        for _ in 0..n {
            run.register();
        }
        println!("{n} registrations");
        return;
    }
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

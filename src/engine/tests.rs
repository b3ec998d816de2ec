//! Engine tests without sockets: bytes in, the outbox out, time passed by hand. They cover what
//! only the glue of transactions and B2BUA decides: stateless refusals, the transaction cap, and
//! that a whole call leaves every table empty once its timers ran out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::b2bua::{Local, Settings};
use crate::limits::Limiter;
use crate::sip::Message;
use crate::transaction::TimerConfig;

const CFG: &str = r#"
[server]
name = "t"
[license]
sip_trunking_channels = 10
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[[service_provider]]
name = "sp"
limits = { public = 3, internal = 3 }
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
associated_ips = ["127.0.0.2"]
[[outbound_rule]]
organization = "acme"
pattern = "^[0-9]+$"
trunks = ["carrier"]
"#;

struct Rig {
    engine: Engine,
    metrics: Arc<Metrics>,
    limiter: Arc<Limiter>,
    now: Instant,
    sent: Vec<(Dest, Bytes)>,
}

fn rig() -> Rig {
    rig_with(CFG)
}

fn rig_with(cfg: &str) -> Rig {
    let loaded = crate::config::load(cfg).unwrap_or_else(|e| panic!("{e:?}"));
    let limiter = Arc::new(Limiter::new(Arc::new(loaded.snapshot)));
    let settings = Settings {
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        local: Local {
            udp: Some("127.0.0.1:5060".into()),
            tcp: Some("127.0.0.1:5060".into()),
            tls: Some("127.0.0.1:5061".into()),
        },
        node: "t".into(),
        ring_timeout: Duration::from_secs(180),
    };
    let ids = crate::sip::ids::Ids::new(0, rand::SeedableRng::seed_from_u64(7));
    let shared = Shared::new([7; 32], crate::test_clock::origin());
    // As the daemon does: calls reach the bindings the REGISTERs made.
    let b2bua = B2bua::new(limiter.clone(), settings, ids).with_location(shared.location.clone());
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::new(
        b2bua,
        Layer::new(TimerConfig::default()),
        metrics.clone(),
        shared,
    );
    Rig {
        engine,
        metrics,
        limiter,
        now: crate::test_clock::origin(),
        sent: Vec::new(),
    }
}

fn udp(addr: &str) -> Dest {
    Dest {
        transport: Transport::Udp,
        addr: addr.parse().unwrap_or_else(|e| panic!("{e}")),
    }
}

const PBX: &str = "127.0.0.11:5060";
const TRUNK: &str = "127.0.0.1:5080";

fn invite(call_id: &str, from: &str) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:3125559999@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\nFrom: <sip:200@{from}>;tag=a1\r\nTo: <sip:3125559999@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:200@{from}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ))
}

impl Rig {
    fn feed(&mut self, data: Bytes, from: &str) -> Vec<(Dest, Bytes)> {
        self.engine.on_received(self.now, data, udp(from));
        self.take()
    }

    fn take(&mut self) -> Vec<(Dest, Bytes)> {
        self.engine.take_outbox(&mut self.sent);
        std::mem::take(&mut self.sent)
    }

    /// Runs every timer until none is left (or `limit` passes); returns what was sent.
    fn run_out(&mut self, limit: Duration) -> Vec<(Dest, Bytes)> {
        let end = self.now + limit;
        let mut sent = Vec::new();
        while let Some(at) = self.engine.next_deadline() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.engine.on_timeouts(self.now);
            sent.extend(self.take());
        }
        self.now = end;
        sent
    }
}

fn parse_request(bytes: &Bytes) -> Request {
    match sip::parse_datagram(bytes.clone()) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

/// The B-leg INVITE among `sent`, to `dest`, parsed.
fn b_invite_to(sent: &[(Dest, Bytes)], dest: Dest) -> Request {
    sent.iter()
        .find(|(d, b)| *d == dest && b.starts_with(b"INVITE "))
        .map(|(_, b)| parse_request(b))
        .expect("B INVITE")
}

fn status_of(bytes: &Bytes) -> Option<u16> {
    match sip::parse_datagram(bytes.clone()) {
        Ok(Message::Response(r)) => Some(r.status().as_u16()),
        _ => None,
    }
}

#[test]
fn an_invite_from_an_unknown_source_gets_one_stateless_403() {
    let mut r = rig();
    let sent = r.feed(invite("u1", "127.0.0.99:5060"), "127.0.0.99:5060");
    assert_eq!(sent.len(), 1);
    assert_eq!(status_of(&sent[0].1), Some(403));
    assert_eq!(r.engine.sizes().transactions, 0, "no server transaction");
    let later = r.run_out(Duration::from_secs(40));
    assert!(
        later.is_empty(),
        "no retransmission towards a spoofable source"
    );
    // A retransmission of the INVITE is answered again, once.
    let again = r.feed(invite("u1", "127.0.0.99:5060"), "127.0.0.99:5060");
    assert_eq!(again.len(), 1);
    assert_eq!(r.engine.sizes(), TableSizes::default());
}

#[test]
fn a_full_transaction_table_refuses_new_requests_with_503_and_counts_them() {
    let mut r = rig();
    r.engine = std::mem::replace(&mut r.engine, rig().engine).with_transaction_cap(2);
    let first = r.feed(invite("c1", PBX), PBX);
    assert!(
        first.iter().any(|(_, b)| b.starts_with(b"INVITE ")),
        "first call admitted"
    );
    assert_eq!(
        r.engine.sizes().transactions,
        2,
        "A's server and B's client INVITE"
    );
    let second = r.feed(invite("c2", PBX), PBX);
    assert_eq!(second.len(), 1);
    assert_eq!(status_of(&second[0].1), Some(503));
    assert_eq!(r.engine.calls(), 1, "the second call was not started");
    let text = r.metrics.encode(Vec::new()).unwrap_or_default();
    assert!(
        text.contains("callgate_transactions_refused_total 1"),
        "{text}"
    );
}

#[test]
fn a_whole_call_leaves_every_table_empty_once_its_timers_ran_out() {
    let mut r = rig();
    let sent = r.feed(invite("w1", PBX), PBX);
    let b_inv = b_invite_to(&sent, udp(TRUNK));
    let ok = sip::response_to(
        &b_inv,
        200,
        "OK",
        Some("b1"),
        &[("Contact", "<sip:b@127.0.0.1:5080>")],
    );
    let sent = r.feed(ok, TRUNK);
    let a_ok = sent
        .iter()
        .find(|(d, b)| *d == udp(PBX) && status_of(b) == Some(200))
        .map(|(_, b)| b.clone())
        .expect("200 to A");
    let tag = match sip::parse_datagram(a_ok) {
        Ok(Message::Response(resp)) => resp
            .parts()
            .to_tag()
            .map(|t| t.as_str().to_owned())
            .expect("tag"),
        other => panic!("{other:?}"),
    };
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        Bytes::from(format!(
            "{method} sip:gw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bK{branch}\r\nFrom: <sip:200@{PBX}>;tag=a1\r\nTo: <sip:3125559999@127.0.0.1>;tag={tag}\r\nCall-ID: w1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    r.feed(in_dialog("ACK", 1, "ack1"), PBX);
    // A relays an INFO towards B and hangs up before B answers it.
    let sent = r.feed(in_dialog("INFO", 2, "info1"), PBX);
    assert!(sent.iter().any(|(_, b)| b.starts_with(b"INFO ")));
    let sent = r.feed(in_dialog("BYE", 3, "bye1"), PBX);
    let to_a: Vec<u16> = sent
        .iter()
        .filter(|(d, _)| *d == udp(PBX))
        .filter_map(|(_, b)| status_of(b))
        .collect();
    assert_eq!(
        to_a,
        vec![200, 487],
        "BYE answered, the pending INFO gets 487"
    );
    let bye = sent
        .iter()
        .find(|(_, b)| b.starts_with(b"BYE "))
        .map(|(_, b)| parse_request(b))
        .expect("BYE to B");
    r.feed(sip::response_to(&bye, 200, "OK", None, &[]), TRUNK);
    assert_eq!(r.limiter.in_use(), 0);
    assert!(r.engine.sizes().no_call_state());
    r.run_out(Duration::from_secs(120));
    assert_eq!(
        r.engine.sizes(),
        TableSizes::default(),
        "every transaction, destination and index entry is gone"
    );
}

#[test]
fn a_final_from_another_peer_than_the_request_went_to_is_ignored() {
    let mut r = rig();
    let sent = r.feed(invite("p1", PBX), PBX);
    let b_inv = b_invite_to(&sent, udp(TRUNK));
    // Someone who learned the branch answers from elsewhere: nothing happens.
    let forged = sip::response_to(&b_inv, 486, "Busy Here", Some("x"), &[]);
    let sent = r.feed(forged, "127.0.0.66:5060");
    assert!(sent.is_empty(), "nothing relayed to A: {sent:?}");
    assert_eq!(r.engine.calls(), 1);
    assert_eq!(
        r.limiter.in_use(),
        8,
        "units still held by the ringing call"
    );
    // The callee itself, from another port of its address, is believed.
    let busy = sip::response_to(&b_inv, 486, "Busy Here", Some("x"), &[]);
    let sent = r.feed(busy, "127.0.0.1:5099");
    assert!(sent
        .iter()
        .any(|(d, b)| *d == udp(PBX) && status_of(b) == Some(486)));
    assert_eq!(r.limiter.in_use(), 0);
}

#[test]
fn an_invite_requiring_an_extension_callgate_lacks_gets_420_and_no_admission() {
    let mut r = rig();
    let text = String::from_utf8_lossy(&invite("x1", PBX)).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: 100rel, timer\r\n",
    );
    let sent = r.feed(Bytes::from(text), PBX);
    let statuses: Vec<Option<u16>> = sent.iter().map(|(_, b)| status_of(b)).collect();
    assert_eq!(statuses, vec![Some(420)]);
    assert!(String::from_utf8_lossy(&sent[0].1).contains("Unsupported: 100rel\r\n"));
    assert_eq!(r.limiter.in_use(), 0);
    assert_eq!(r.engine.calls(), 0);
}

#[test]
fn a_final_from_another_address_of_the_same_trunk_is_believed() {
    let mut r = rig();
    let sent = r.feed(invite("p2", PBX), PBX);
    let b_inv = b_invite_to(&sent, udp(TRUNK));
    let busy = sip::response_to(&b_inv, 486, "Busy Here", Some("x"), &[]);
    let sent = r.feed(busy, "127.0.0.2:5060");
    assert!(sent
        .iter()
        .any(|(d, b)| *d == udp(PBX) && status_of(b) == Some(486)));
    assert_eq!(r.limiter.in_use(), 0);
}

/// A confirmed call from a PBX over TCP; returns the rig and the PBX's flow.
fn tcp_call() -> (Rig, Dest) {
    let cfg = CFG.replace(
        "transport = \"udp\", authenticate",
        "transport = \"tcp\", authenticate",
    );
    let mut r = rig_with(&cfg);
    let pbx = Dest {
        transport: Transport::Tcp,
        addr: PBX.parse().unwrap_or_else(|e| panic!("{e}")),
    };
    r.engine.on_received(r.now, invite("tc1", PBX), pbx);
    let sent = r.take();
    let b_inv = sent
        .iter()
        .find(|(_, b)| b.starts_with(b"INVITE "))
        .map(|(_, b)| parse_request(b))
        .expect("B INVITE");
    let ok = sip::response_to(
        &b_inv,
        200,
        "OK",
        Some("b1"),
        &[("Contact", "<sip:b@127.0.0.1:5080>")],
    );
    let sent = r.feed(ok, TRUNK);
    let tag = sent
        .iter()
        .find_map(|(_, b)| match sip::parse_datagram(b.clone()) {
            Ok(Message::Response(resp)) if resp.status().as_u16() == 200 => {
                resp.parts().to_tag().map(|t| t.as_str().to_owned())
            }
            _ => None,
        })
        .expect("200 to A");
    let ack = format!(
        "ACK sip:gw@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP {PBX};branch=z9hG4bKack\r\nFrom: <sip:200@{PBX}>;tag=a1\r\nTo: <sip:3125559999@127.0.0.1>;tag={tag}\r\nCall-ID: tc1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    r.engine.on_received(r.now, Bytes::from(ack), pbx);
    r.take();
    (r, pbx)
}

#[test]
fn a_close_fails_only_what_was_sent_before_it() {
    let (mut r, pbx) = tcp_call();
    // The periodic probe goes to both legs (A over TCP).
    r.now += Duration::from_secs(60);
    r.engine.on_timeouts(r.now);
    let sent = r.take();
    assert!(sent
        .iter()
        .any(|(d, b)| *d == pbx && b.starts_with(b"OPTIONS ")));
    // A close that happened before the probe was sent: the probe went over a new connection.
    let before = r.now - Duration::from_millis(1);
    r.engine.on_closed(r.now, pbx, before);
    assert!(r.take().is_empty(), "nothing failed, nothing ended");
    assert_eq!(r.engine.calls(), 1);
    assert_eq!(r.engine.sizes().tcp_in_flight, 1);
    // The connection the probe went on closes: it is sent once more, over a new one.
    r.engine.on_closed(r.now, pbx, r.now);
    let again = r.take();
    assert!(again
        .iter()
        .any(|(d, b)| *d == pbx && b.starts_with(b"OPTIONS ")));
    assert_eq!(r.engine.calls(), 1);
    // That one's connection fails too: the leg is gone, the call ends.
    r.now += Duration::from_millis(10);
    r.engine.on_closed(r.now, pbx, r.now);
    let last = r.take();
    assert!(last.iter().any(|(_, b)| b.starts_with(b"BYE ")), "{last:?}");
    assert_eq!(r.engine.calls(), 0);
    assert_eq!(r.limiter.in_use(), 0);
}

#[test]
fn a_failed_tcp_send_fails_its_transaction_at_once() {
    let (mut r, pbx) = tcp_call();
    r.now += Duration::from_secs(60);
    r.engine.on_timeouts(r.now);
    let mut sends = Vec::new();
    r.engine.take_sends(&mut sends);
    let probe = sends
        .iter()
        .find(|o| o.dest == pbx && o.bytes.starts_with(b"OPTIONS "))
        .and_then(|o| o.key.clone())
        .expect("a probe with its transaction");
    r.engine.on_send_failed(r.now, &probe);
    let again = r.take();
    assert!(
        again
            .iter()
            .any(|(d, b)| *d == pbx && b.starts_with(b"OPTIONS ")),
        "sent once more at once, not after Timer F"
    );
}

#[test]
fn a_tcp_binding_dies_with_its_connection() {
    let mut r = rig();
    let phone: std::net::SocketAddr = ([198, 51, 100, 7], 40000).into();
    let now = r.now;
    let binding = |transport| crate::registrar::Binding {
        contact: "sip:101@10.0.0.5".into(),
        flow: crate::registrar::Flow {
            transport,
            source: phone,
            local: None,
        },
        expires_at: now + Duration::from_secs(600),
        registered_at: now,
        call_id: "reg".into(),
        cseq: 1,
        q: None,
    };
    let aor = crate::registrar::Aor::new("acme.example", "101");
    let store = r.engine.shared().location.clone();
    store
        .upsert(aor.clone(), binding(Transport::Tcp), 5, r.now)
        .expect("bound");
    let tcp = |addr| crate::b2bua::Dest {
        transport: Transport::Tcp,
        addr,
    };
    r.engine.on_closed(r.now, tcp(phone), r.now);
    assert!(
        store.lookup(&aor, r.now).is_empty(),
        "gone with the connection"
    );
    store
        .upsert(aor.clone(), binding(Transport::Udp), 5, r.now)
        .expect("bound");
    r.engine.on_closed(r.now, tcp(phone), r.now);
    assert_eq!(
        store.lookup(&aor, r.now).len(),
        1,
        "a UDP binding has no connection"
    );
}

#[test]
fn a_tls_binding_dies_with_its_tls_connection() {
    let mut r = rig();
    let phone: std::net::SocketAddr = ([198, 51, 100, 8], 40001).into();
    let flow = crate::registrar::Flow {
        transport: Transport::Tls,
        source: phone,
        local: None,
    };
    let binding = crate::registrar::Binding {
        contact: "sips:101@10.0.0.5".into(),
        flow,
        expires_at: r.now + Duration::from_secs(600),
        registered_at: r.now,
        call_id: "reg-tls".into(),
        cseq: 1,
        q: None,
    };
    let aor = crate::registrar::Aor::new("acme.example", "101");
    let store = r.engine.shared().location.clone();
    store.upsert(aor.clone(), binding, 5, r.now).expect("bound");
    let tls = crate::b2bua::Dest {
        transport: Transport::Tls,
        addr: phone,
    };
    r.engine.on_closed(r.now, tls, r.now);
    assert!(
        store.lookup(&aor, r.now).is_empty(),
        "callgate cannot reach a TLS phone without its connection"
    );
}

/// A REGISTER for 101@acme.example from `phone`, with `auth` header lines (or none).
fn register_101(phone: &str, call_id: &str, cseq: u32, auth: &str) -> Bytes {
    Bytes::from(format!(
        "REGISTER sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK{call_id}{cseq}\r\nFrom: <sip:101@acme.example>;tag=f1\r\nTo: <sip:101@acme.example>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:101@{phone}>\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// [`CFG`] with the phone extension 101 (password "pw"), and `org` added to the organization.
fn phone_cfg(org: &str) -> String {
    CFG.replace(
        "domain = \"acme.example\"",
        &format!("domain = \"acme.example\"{org}"),
    )
    .replace(
        "[[trunk]]",
        "[[extension]]\nnumber = \"101\"\nuser = \"u\"\npassword = \"pw\"\n[[trunk]]",
    )
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_organization_that_opted_in_is_challenged_with_sha256_first_and_answers_with_it() {
    register_101_with_sha256(&phone_cfg("\ndigest_sha256 = true"));
}

#[test]
fn a_phone_stored_as_a_sha256_ha1_registers_with_sha256() {
    let ha1 = hex_sha256("101:acme.example:pw");
    let cfg = phone_cfg("\ndigest_sha256 = true")
        .replace("password = \"pw\"", &format!("ha1_sha256 = \"{ha1}\""));
    register_101_with_sha256(&cfg);
}

/// 101 (password "pw") registers under `cfg`: SHA-256 challenged first, answered with SHA-256.
fn register_101_with_sha256(cfg: &str) {
    let mut r = rig_with(cfg);
    let phone = "198.51.100.7:40000";
    let register = |cseq: u32, auth: &str| register_101(phone, "reg-sha", cseq, auth);
    let sent = r.feed(register(1, ""), phone);
    let text = String::from_utf8_lossy(&sent[0].1).into_owned();
    let challenges: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate:"))
        .collect();
    assert_eq!(challenges.len(), 2, "{text}");
    assert!(challenges[0].contains("algorithm=SHA-256"), "{text}");
    assert!(challenges[1].contains("algorithm=MD5"), "{text}");
    let nonce = challenges[0]
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a nonce");
    let ha1 = hex_sha256("101:acme.example:pw");
    let ha2 = hex_sha256("REGISTER:sip:acme.example");
    let response = hex_sha256(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"101\", realm=\"acme.example\", nonce=\"{nonce}\", uri=\"sip:acme.example\", response=\"{response}\", algorithm=SHA-256, cnonce=\"c0ffee\", nc=00000001, qop=auth\r\n"
    );
    let sent = r.feed(register(2, &auth), phone);
    assert_eq!(
        status_of(&sent[0].1),
        Some(200),
        "{}",
        String::from_utf8_lossy(&sent[0].1)
    );
    let aor = crate::registrar::Aor::new("acme.example", "101");
    assert_eq!(r.engine.shared().location.lookup(&aor, r.now).len(), 1);
}

#[test]
fn wrong_answers_ban_the_source_and_a_banned_source_is_not_counted_again() {
    let mut r = rig_with(&phone_cfg(""));
    let phone = "198.51.100.7:40000";
    let register = |cseq: u32, auth: &str| register_101(phone, "reg-w", cseq, auth);
    let mut statuses = Vec::new();
    for n in 0..15u32 {
        let sent = r.feed(register(2 * n + 1, ""), phone);
        let text = String::from_utf8_lossy(&sent[0].1).into_owned();
        statuses.push(status_of(&sent[0].1));
        let Some(nonce) = text
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let auth = format!(
            "Authorization: Digest username=\"101\", realm=\"acme.example\", nonce=\"{nonce}\", uri=\"sip:acme.example\", response=\"00000000000000000000000000000000\", algorithm=MD5\r\n"
        );
        let sent = r.feed(register(2 * n + 2, &auth), phone);
        statuses.push(status_of(&sent[0].1));
    }
    let text = r.metrics.encode(Vec::new()).unwrap_or_default();
    assert!(
        text.contains("callgate_auth_failures_total 10\n"),
        "ten counted failures, then the ban: {statuses:?}\n{text}"
    );
    assert!(
        text.contains("callgate_auth_bans_total 1\n"),
        "one ban, with its own metric\n{text}"
    );
    assert_eq!(statuses.last(), Some(&Some(403)));
    assert_eq!(
        statuses.iter().filter(|s| **s == Some(401)).count(),
        10,
        "a banned source is not challenged: {statuses:?}"
    );
}

/// The nonce of the first challenge in `response`.
fn nonce_of(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a challenge with a nonce")
        .to_owned()
}

/// The `Authorization` line of a phone that knows 101's `password` and answers `nonce` for
/// `uri` (MD5, qop=auth, nc=1).
fn md5_answer_101(nonce: &str, uri: &str, password: &str) -> String {
    use md5::Digest;
    let hex = |text: String| -> String {
        md5::Md5::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let ha1 = hex(format!("101:acme.example:{password}"));
    let ha2 = hex(format!("REGISTER:{uri}"));
    let response = hex(format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"101\", realm=\"acme.example\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", nc=00000001, qop=auth\r\n"
    )
}

#[test]
fn a_phone_outside_its_allowed_networks_is_refused_with_the_right_password() {
    let cfg = phone_cfg("").replace(
        "password = \"pw\"",
        "password = \"pw\"\nallowed_networks = [\"10.1.2.0/24\"]",
    );
    let mut r = rig_with(&cfg);
    for (phone, want) in [("198.51.100.7:40000", 403), ("10.1.2.9:5060", 200)] {
        let register = |cseq: u32, auth: &str| register_101(phone, "reg-net", cseq, auth);
        let sent = r.feed(register(1, ""), phone);
        assert_eq!(status_of(&sent[0].1), Some(401));
        let auth = md5_answer_101(&nonce_of(&sent[0].1), "sip:acme.example", "pw");
        let sent = r.feed(register(2, &auth), phone);
        assert_eq!(status_of(&sent[0].1), Some(want), "from {phone}");
    }
    let aor = crate::registrar::Aor::new("acme.example", "101");
    let bound = r.engine.shared().location.lookup(&aor, r.now);
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].flow.source.to_string(), "10.1.2.9:5060");
}

#[test]
fn sha256_answers_where_only_md5_was_offered_count_as_guesses() {
    // 101 stores an MD5 HA1; acme offers MD5 only. SHA-256 answers cannot be a phone's mistake.
    let ha1 = {
        use md5::Digest;
        md5::Md5::digest(b"101:acme.example:pw")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let cfg = phone_cfg("").replace("password = \"pw\"", &format!("ha1 = \"{ha1}\""));
    let mut r = rig_with(&cfg);
    let phone = "198.51.100.7:40000";
    for n in 0..10u32 {
        let register = |cseq: u32, auth: &str| register_101(phone, "reg-s", cseq, auth);
        let sent = r.feed(register(2 * n + 1, ""), phone);
        let nonce = nonce_of(&sent[0].1);
        let auth = format!(
            "Authorization: Digest username=\"101\", realm=\"acme.example\", nonce=\"{nonce}\", uri=\"sip:acme.example\", response=\"{}\", algorithm=SHA-256, cnonce=\"c\", nc=00000001, qop=auth\r\n",
            "0".repeat(64)
        );
        let sent = r.feed(register(2 * n + 2, &auth), phone);
        assert_eq!(status_of(&sent[0].1), Some(403));
    }
    let text = r.metrics.encode(Vec::new()).unwrap_or_default();
    assert!(
        text.contains("callgate_auth_bans_total 1\n"),
        "ten counted guesses ban the source\n{text}"
    );
}

#[path = "tests_trunk.rs"]
mod trunk;

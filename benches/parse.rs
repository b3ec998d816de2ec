//! SIP parse + serialize cost (guides/measuring.md): a ~900-byte INVITE with SDP, a 200 OK
//! and a REGISTER. Each group carries the floor (a memchr scan of the line ends of the same
//! bytes) so results read as ratios; the INVITE group also runs rsip 0.4 on the same bytes.
//!
//! The `stream_framing` group feeds a 16 KiB message to the TCP framer one byte per read: the
//! transport's worst case (a slow or hostile sender), where cost must stay linear in the bytes.
//!
//! Run: `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use callgate::sip::{frame_stream, parse_datagram, Editor, Frame, Message, StreamFramer};
use criterion::{criterion_group, criterion_main, Criterion};

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n\
c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

fn invite() -> Bytes {
    Bytes::from(format!(
        "INVITE sip:+14155550123@gw.example.com:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9a8c1e2d;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice Example\" <sip:+14155550100@pbx.example.org>;tag=9fxced76sl\r\n\
To: <sip:+14155550123@gw.example.com>\r\n\
Call-ID: 3848276298220188511@pbx.example.org\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+14155550100@192.0.2.10:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY\r\n\
Supported: replaces, timer, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
User-Agent: ExamplePBX/5.1.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{}",
        SDP.len(),
        SDP
    ))
}

fn ok200() -> Bytes {
    Bytes::from_static(
        b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9a8c1e2d;rport=5060;received=192.0.2.10\r\n\
From: \"Alice Example\" <sip:+14155550100@pbx.example.org>;tag=9fxced76sl\r\n\
To: <sip:+14155550123@gw.example.com>;tag=8321234356\r\n\
Call-ID: 3848276298220188511@pbx.example.org\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:gw@198.51.100.7:5060>\r\n\
Content-Length: 0\r\n\r\n",
    )
}

fn register() -> Bytes {
    Bytes::from_static(
        b"REGISTER sip:registrar.example.org SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.44:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.org>\r\n\
From: Bob <sip:bob@example.org>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.44:5060>;expires=3600\r\n\
Authorization: Digest username=\"bob\", realm=\"example.org\", nonce=\"dcd98b7102dd2f0e\", uri=\"sip:registrar.example.org\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n",
    )
}

/// The floor: how fast the bytes can be read at all (line ends found with memchr).
fn floor(buf: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', buf).count()
}

/// What a forwarding hop does: push a Via, decrement Max-Forwards, write the message.
fn forward(msg: &Message) -> Bytes {
    let mut ed = Editor::new(msg);
    ed.push_front(
        "Via",
        "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKcg1a2b3c",
    )
    .replace("Max-Forwards", "69");
    ed.finish()
}

/// Parse plus the typed reads a B2BUA does on every message.
fn parse_typed(buf: &Bytes) -> usize {
    let msg = parse_datagram(buf.clone()).expect("valid");
    let via = msg.top_via();
    let n = msg.contacts().filter(Result::is_ok).count();
    via.host.len() + msg.from().uri.len() + msg.to().uri.len() + msg.call_id().len() + n
}

/// A message with a 16 KiB header section (padding headers) and no body.
fn big_message() -> Vec<u8> {
    let mut m =
        b"OPTIONS sip:gw.example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bK1\r\n"
            .to_vec();
    for i in 0..(16 * 1024 / 64) {
        m.extend_from_slice(format!("X-Pad-{i:04}: {:0>50}\r\n", i).as_bytes());
    }
    m.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    m
}

/// Re-frames the whole buffered prefix after every 1-byte read (the transport before the
/// framer kept its scan position): O(n^2) in the message length.
fn rescan_per_read(msg: &[u8]) -> usize {
    (1..=msg.len())
        .find(|&n| {
            matches!(
                frame_stream(&msg[..n], 64 * 1024),
                Ok(Frame::Message { .. })
            )
        })
        .unwrap_or(0)
}

/// What the transport does: one [`StreamFramer`] kept across the 1-byte reads.
fn framer_per_read(msg: &[u8]) -> usize {
    let mut framer = StreamFramer::default();
    (1..=msg.len())
        .find(|&n| matches!(framer.next(&msg[..n], 64 * 1024), Ok(Frame::Message { .. })))
        .unwrap_or(0)
}

fn bench_framing(c: &mut Criterion) {
    let msg = big_message();
    let mut g = c.benchmark_group("stream_framing");
    g.sample_size(10);
    g.bench_function("floor_memchr", |b| b.iter(|| floor(black_box(&msg))));
    g.bench_function("rescan_per_read", |b| {
        b.iter(|| rescan_per_read(black_box(&msg)))
    });
    g.bench_function("framer_per_read", |b| {
        b.iter(|| framer_per_read(black_box(&msg)))
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    for (name, buf) in [
        ("invite", invite()),
        ("ok200", ok200()),
        ("register", register()),
    ] {
        let mut g = c.benchmark_group(name);
        g.bench_function("floor_memchr", |b| b.iter(|| floor(black_box(&buf))));
        g.bench_function("parse", |b| {
            b.iter(|| parse_datagram(black_box(buf.clone())).expect("valid"))
        });
        g.bench_function("parse_typed", |b| b.iter(|| parse_typed(black_box(&buf))));
        g.bench_function("parse_serialize", |b| {
            b.iter(|| forward(&parse_datagram(black_box(buf.clone())).expect("valid")))
        });
        if name == "invite" {
            g.bench_function("rsip_parse", |b| {
                b.iter(|| rsip::SipMessage::try_from(black_box(&buf[..])).expect("valid"))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench, bench_framing);
criterion_main!(benches);

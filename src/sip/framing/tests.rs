//! The framer fed the way TCP delivers bytes: in reads of any size, one byte at worst.

use super::{frame_stream, Frame, StreamFramer};
use crate::sip::ParseError;

const MAX: usize = 64 * 1024;

/// A request with `pad` bytes of padding headers and a 5-byte body.
fn message(pad: usize) -> Vec<u8> {
    let mut m =
        b"OPTIONS sip:gw.example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n".to_vec();
    for i in 0..pad / 64 {
        m.extend_from_slice(format!("X-Pad-{i:04}: {:0>50}\r\n", i).as_bytes());
    }
    m.extend_from_slice(b"Content-Length: 5\r\n\r\nhello");
    m
}

/// Feeds `stream` in reads of `chunk` bytes, framing after each read the way the transport
/// does; returns the frames in order and the framer.
fn feed(stream: &[u8], chunk: usize) -> (Vec<Frame>, StreamFramer) {
    let (mut framer, mut frames) = (StreamFramer::default(), Vec::new());
    let (mut start, mut end) = (0, 0);
    while end < stream.len() {
        end = (end + chunk).min(stream.len());
        loop {
            match framer.next(&stream[start..end], MAX) {
                Ok(frame) => {
                    start += match frame {
                        Frame::KeepAlive { consume, .. } => consume,
                        Frame::Message { len } => len,
                    };
                    frames.push(frame);
                }
                Err(ParseError::Incomplete) => break,
                Err(e) => panic!("framing error {e:?} at {start}..{end}"),
            }
        }
    }
    (frames, framer)
}

/// The frames of `stream` when it is all there at once (the stateless reference).
fn frames_at_once(stream: &[u8]) -> Vec<Frame> {
    let (mut rest, mut frames) = (stream, Vec::new());
    while let Ok(frame) = frame_stream(rest, MAX) {
        rest = &rest[match frame {
            Frame::KeepAlive { consume, .. } => consume,
            Frame::Message { len } => len,
        }..];
        frames.push(frame);
    }
    frames
}

#[test]
fn framer_fed_one_byte_per_read_scans_each_byte_about_once() {
    let msg = message(60 * 1024);
    assert!(msg.len() > 60 * 1024 && msg.len() <= MAX);
    let (frames, framer) = feed(&msg, 1);
    assert_eq!(frames, [Frame::Message { len: msg.len() }]);
    // Re-framing the whole prefix per read would have scanned ~len^2 / 2 (about 2 * 10^9).
    let scanned = framer.scanned();
    assert!(
        scanned <= 2 * msg.len() as u64,
        "scanned {scanned} bytes for a {}-byte message",
        msg.len()
    );
}

#[test]
fn framer_in_reads_of_any_size_finds_what_one_pass_finds() {
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(&message(200));
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(&message(0));
    stream.extend_from_slice(b"\r\n\r\n\r\n");
    stream.extend_from_slice(&message(1000));
    // How a run of CRLFs splits into keep-alives depends on the reads (as on the wire); the
    // messages must not.
    let messages = |frames: Vec<Frame>| -> Vec<Frame> {
        frames
            .into_iter()
            .filter(|f| matches!(f, Frame::Message { .. }))
            .collect()
    };
    let want = messages(frames_at_once(&stream));
    assert_eq!(want.len(), 3, "{want:?}");
    for chunk in (1..=9).chain([63, 64, 65, 1000, stream.len()]) {
        assert_eq!(
            messages(feed(&stream, chunk).0),
            want,
            "reads of {chunk} bytes"
        );
    }
}

#[test]
fn blank_line_split_across_reads_after_a_lone_cr_is_still_a_ping() {
    let mut framer = StreamFramer::default();
    assert_eq!(framer.next(b"\r", MAX), Err(ParseError::Incomplete));
    let ping = Frame::KeepAlive {
        consume: 4,
        pong: true,
    };
    assert_eq!(framer.next(b"\r\n\r\n", MAX), Ok(ping));
    let msg = message(0);
    assert_eq!(framer.next(&msg[..40], MAX), Err(ParseError::Incomplete));
    let len = msg.len();
    assert_eq!(framer.next(&msg, MAX), Ok(Frame::Message { len }));
}

#[test]
fn awaiting_header_ignores_keep_alives_and_ends_with_the_header_section() {
    let mut framer = StreamFramer::default();
    for keep_alive in [&b""[..], b"\r", b"\r\n", b"\r\n\r"] {
        assert!(!framer.awaiting_header(keep_alive), "{keep_alive:?}");
    }
    assert!(framer.awaiting_header(b"O"));
    assert!(framer.awaiting_header(b"\n"));
    let msg = message(0);
    let header_len = msg.len() - 5;
    assert_eq!(
        framer.next(&msg[..header_len], MAX),
        Err(ParseError::Incomplete)
    );
    // The body may still be on its way; the header section is done.
    assert!(!framer.awaiting_header(&msg[..header_len]));
}

#[test]
fn framer_refuses_oversize_and_missing_length_like_frame_stream() {
    let msg = message(2000);
    assert!(matches!(
        feed_err(&msg, 1000),
        ParseError::TooLarge { limit: 1000 }
    ));
    let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
    assert_eq!(feed_err(no_cl, MAX), ParseError::MissingContentLength);
}

/// The first error other than `Incomplete` when `stream` arrives one byte per read.
fn feed_err(stream: &[u8], max: usize) -> ParseError {
    let mut framer = StreamFramer::default();
    (1..=stream.len())
        .find_map(|n| match framer.next(&stream[..n], max) {
            Err(ParseError::Incomplete) => None,
            Err(e) => Some(e),
            Ok(f) => panic!("framed {f:?}"),
        })
        .unwrap_or(ParseError::Incomplete)
}

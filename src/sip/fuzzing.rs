//! Entry points for the cargo-fuzz targets in `fuzz/` and for the stable test that replays
//! their seeds (`tests/sip_fuzz_replay.rs`). Plain functions so both share one body.

use bytes::Bytes;

use super::{frame_stream, parse_datagram, parse_stream_message, Editor, Frame, HeaderName};

/// Feeds `data` to every parser entry point and every lazy accessor; must never panic.
pub fn parse(data: &[u8]) {
    if let Ok(msg) = parse_datagram(Bytes::copy_from_slice(data)) {
        touch(&msg);
    }
    let mut rest = data;
    // Walk the stream the way the transport does; every step consumes at least one byte.
    while let Ok(frame) = frame_stream(rest, 64 * 1024) {
        let consumed = match frame {
            Frame::KeepAlive { consume, .. } => consume,
            Frame::Message { len } => {
                if let Ok(msg) = parse_stream_message(Bytes::copy_from_slice(&rest[..len])) {
                    touch(&msg);
                }
                len
            }
        };
        if consumed == 0 {
            break;
        }
        rest = &rest[consumed..];
    }
}

fn touch(msg: &super::Message) {
    let _ = (
        msg.call_id(),
        msg.cseq(),
        msg.from_tag(),
        msg.to_tag(),
        msg.branch(),
    );
    let _ = (
        msg.top_via(),
        msg.from(),
        msg.to(),
        msg.max_forwards(),
        msg.body(),
    );
    msg.vias().for_each(drop);
    msg.contacts().for_each(drop);
    msg.routes().for_each(drop);
    msg.record_routes().for_each(drop);
    msg.supported().for_each(drop);
    msg.require().for_each(drop);
    msg.allow().for_each(drop);
    msg.warnings().for_each(drop);
    msg.reasons().for_each(drop);
    msg.www_authenticate().for_each(drop);
    let _ = (
        msg.expires(),
        msg.content_type(),
        msg.authorization(),
        msg.session_expires(),
    );
    let _ = (msg.min_se(), msg.retry_after(), msg.proxy_authorization());
    if let Some(req) = msg.as_request() {
        let _ = req.uri();
    }
    let _ = format!("{msg:?}");
}

/// Parses `data`; if it parses, checks that serializing (with and without edits) and
/// re-parsing gives the same message. Panics on a mismatch (that is the finding).
pub fn roundtrip(data: &[u8]) {
    let Ok(msg) = parse_datagram(Bytes::copy_from_slice(data)) else {
        return;
    };
    let out = Editor::new(&msg).finish();
    assert_eq!(
        out,
        msg.to_bytes(),
        "unedited serialize must be byte-identical"
    );
    let again = parse_datagram(out.clone()).expect("re-parse of serialized message");
    assert_eq!(again.to_bytes(), out);
    assert_eq!(again.call_id(), msg.call_id());
    assert_eq!(again.cseq(), msg.cseq());

    let mut ed = Editor::new(&msg);
    ed.push_front("Via", "SIP/2.0/UDP fuzz.invalid;branch=z9hG4bKfuzz")
        .replace("Max-Forwards", "42")
        .remove(HeaderName::Subject);
    let edited = parse_datagram(ed.finish()).expect("edited message must re-parse");
    assert_eq!(edited.branch().map(|b| b.as_str()), Some("z9hG4bKfuzz"));
    assert_eq!(edited.max_forwards(), Some(42));
    assert_eq!(edited.call_id(), msg.call_id());
    assert_eq!(edited.body(), msg.body());
}

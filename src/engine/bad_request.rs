//! A best-effort answer to a request the parser refused, with the status the parser names
//! ([`ParseError::response_code`]): `400 Bad Request` (RFC 3261 21.4.1), `505 Version Not
//! Supported` (8.2.2 / 21.5.7), `513 Message Too Large`, `501 Not Implemented`. The lines a
//! response needs (Via, From, To, Call-ID, CSeq) are copied as the peer sent them. When any of
//! them is missing, or the message is a response, nothing can be answered: drop it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::sip::ParseError;

/// The reason phrase of a status the parser may name (RFC 3261 21).
fn reason(status: u16) -> &'static str {
    match status {
        501 => "Not Implemented",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Bad Request",
    }
}

/// Builds the response to the malformed request `raw` that the parser refused with `error`, or
/// `None` when no response is possible.
pub(crate) fn bad_request(raw: &[u8], error: &ParseError) -> Option<Bytes> {
    if raw.starts_with(b"SIP/") {
        return None;
    }
    let status = error.response_code()?;
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    let head = &raw[..head_end];
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.next()?; // request line
    let mut found = [false; 5];
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(format!("SIP/2.0 {status} {}\r\n", reason(status)).as_bytes());
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        let slot = [
            &["via", "v"][..],
            &["from", "f"],
            &["to", "t"],
            &["call-id", "i"],
            &["cseq"],
        ]
        .iter()
        .position(|names| {
            names
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        });
        if let Some(i) = slot {
            found[i] = true;
            out.put_slice(line);
            out.put_slice(b"\r\n");
        }
    }
    if found.iter().any(|f| !f) {
        return None;
    }
    let why = error.to_string();
    let warning: String = why
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| *c != '"')
        .collect();
    out.put_slice(
        format!("Warning: 399 callgate \"{warning}\"\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    );
    Some(out.freeze())
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::bad_request;
    use crate::sip::ParseError;

    const CL: ParseError = ParseError::ContentLength {
        declared: 99,
        available: 0,
    };

    #[test]
    fn answers_a_request_with_the_needed_headers() {
        let raw = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 99\r\n\r\n";
        let out = bad_request(raw, &CL).expect("a 400");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("SIP/2.0 400 Bad Request\r\n"));
        assert!(text.contains("Call-ID: c1\r\n") && text.contains("CSeq: 1 INVITE\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn drops_responses_and_garbage() {
        assert!(bad_request(b"SIP/2.0 200 OK\r\n\r\n", &CL).is_none());
        assert!(bad_request(b"\x00\x01garbage", &CL).is_none());
        assert!(bad_request(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", &CL).is_none());
    }

    #[test]
    fn answers_with_the_parsers_status() {
        let raw = b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/7.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let version = bad_request(raw, &ParseError::Version { at: 16 }).expect("a 505");
        assert!(version.starts_with(b"SIP/2.0 505 Version Not Supported\r\n"));
        let large = bad_request(raw, &ParseError::TooLarge { limit: 10 }).expect("a 513");
        assert!(large.starts_with(b"SIP/2.0 513 Message Too Large\r\n"));
        let ext = ParseError::CSeqMismatch {
            extension_method: true,
        };
        let ext = bad_request(raw, &ext).expect("a 501");
        assert!(ext.starts_with(b"SIP/2.0 501 Not Implemented\r\n"));
        assert!(bad_request(raw, &ParseError::Incomplete).is_none());
    }
}

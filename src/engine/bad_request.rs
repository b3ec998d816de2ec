//! A best-effort `400 Bad Request` for a request the parser refused (RFC 3261 8.2.2 / 21.4.1):
//! the lines a response needs (Via, From, To, Call-ID, CSeq) copied as the peer sent them. When
//! any of them is missing, or the message is a response, nothing can be answered: drop it.

use bytes::{BufMut, Bytes, BytesMut};

/// Builds the 400 for the malformed request `raw`, or `None` when no response is possible.
pub(crate) fn bad_request(raw: &[u8], why: &str) -> Option<Bytes> {
    if raw.starts_with(b"SIP/") {
        return None;
    }
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    let head = &raw[..head_end];
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.next()?; // request line
    let mut found = [false; 5];
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(b"SIP/2.0 400 Bad Request\r\n");
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

    #[test]
    fn answers_a_request_with_the_needed_headers() {
        let raw = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 99\r\n\r\n";
        let out = bad_request(raw, "Content-Length").expect("a 400");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("SIP/2.0 400 Bad Request\r\n"));
        assert!(text.contains("Call-ID: c1\r\n") && text.contains("CSeq: 1 INVITE\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn drops_responses_and_garbage() {
        assert!(bad_request(b"SIP/2.0 200 OK\r\n\r\n", "x").is_none());
        assert!(bad_request(b"\x00\x01garbage", "x").is_none());
        assert!(bad_request(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", "x").is_none());
    }
}

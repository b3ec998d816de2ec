//! Bytes -> [`Message`] (RFC 3261 7, 18.3, 25). Stream framing is in `framing.rs`.
//!
//! One pass over the lines with `memchr` builds the header index; a second pass over the
//! index checks the headers every layer depends on (Via, From, To, Call-ID, CSeq,
//! Max-Forwards, Content-Length, Contact). Nothing is copied and nothing is allocated but the
//! index `Vec`.

use bytes::Bytes;
use memchr::memchr;

use super::headers::{cseq, name_addr, via};
use super::message::{Entry, Parts, Span};
use super::scan::{is_lws, is_token};
use super::{HeaderName, Message, Method, ParseError, Request, Response, StatusCode};

/// `1*DIGIT` surrounded by LWS, below 2**32 (RFC 4475 ncl, scalar02).
pub(super) fn parse_content_length(v: &[u8]) -> Option<usize> {
    let start = v.iter().position(|&b| !is_lws(b))?;
    let end = v.iter().rposition(|&b| !is_lws(b))? + 1;
    let d = &v[start..end];
    if d.is_empty() || d.len() > 10 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = d.iter().fold(0u64, |a, &c| a * 10 + u64::from(c - b'0'));
    u32::try_from(n).ok().map(|n| n as usize)
}

/// Parses one UDP datagram. Leading CRLFs are skipped; bytes after Content-Length are
/// dropped (RFC 3261 18.3, RFC 4475 dblreq); a body shorter than declared is an error (400);
/// without Content-Length the body is the rest of the datagram.
pub fn parse_datagram(buf: Bytes) -> Result<Message, ParseError> {
    parse(buf, false)
}

/// Parses exactly one message framed by [`super::frame_stream`] (Content-Length mandatory).
pub fn parse_stream_message(buf: Bytes) -> Result<Message, ParseError> {
    parse(buf, true)
}

enum StartLine {
    Request { method: Method, uri: Span },
    Response { status: StatusCode, reason: Span },
}

fn parse(mut buf: Bytes, stream: bool) -> Result<Message, ParseError> {
    if buf.len() > u32::MAX as usize {
        return Err(ParseError::TooLarge {
            limit: u32::MAX as usize,
        });
    }
    let skip = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::Empty)?;
    if skip > 0 {
        buf = buf.slice(skip..);
    }
    let b: &[u8] = &buf;
    let nl = find_lf(b, 0).ok_or(ParseError::StartLine { at: 0 })?;
    let sl_end = if nl > 0 && b[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let start = parse_start_line(&buf, sl_end)?;
    let (headers, headers_end, body_start) = index_headers(b, nl + 1)?;
    let checked = check_headers(&buf, &headers)?;
    if let (StartLine::Request { method, .. }, Some(cseq)) = (&start, &checked.cseq) {
        if *method != cseq.method {
            let extension_method = matches!(method, Method::Extension(_));
            return Err(ParseError::CSeqMismatch { extension_method });
        }
    }
    let available = b.len() - body_start;
    let body_len = match (checked.content_length, stream) {
        (Some(declared), _) if declared > available => {
            return Err(ParseError::ContentLength {
                declared,
                available,
            })
        }
        (Some(declared), _) => declared,
        (None, true) => return Err(ParseError::MissingContentLength),
        (None, false) => available,
    };
    buf.truncate(body_start + body_len);
    let parts = Parts {
        buf,
        start_line: Span::new(0, sl_end),
        headers,
        headers_end: headers_end as u32,
        body: Span::new(body_start, body_start + body_len),
        call_id: checked.call_id,
        cseq: checked.cseq.ok_or(ParseError::Missing {
            name: HeaderName::CSeq,
        })?,
        from_tag: checked.from_tag,
        to_tag: checked.to_tag,
        branch: checked.branch,
        max_forwards: checked.max_forwards,
        content_length: checked.content_length,
    };
    Ok(match start {
        StartLine::Request { method, uri } => Message::Request(Request { parts, method, uri }),
        StartLine::Response { status, reason } => Message::Response(Response {
            parts,
            status,
            reason,
        }),
    })
}

/// Checks `SIP/x.y`: `Ok` for 2.0, `Version` for another well-formed version.
fn check_version(v: &[u8], at: usize) -> Result<(), ParseError> {
    let bad = ParseError::StartLine { at };
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(bad);
    }
    let rest = &v[4..];
    let dot = rest.iter().position(|&c| c == b'.').ok_or(bad)?;
    let (major, minor) = (&rest[..dot], &rest[dot + 1..]);
    let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
    if !digits(major) || !digits(minor) {
        return Err(bad);
    }
    if major == b"2" && minor == b"0" {
        Ok(())
    } else {
        Err(ParseError::Version { at })
    }
}

fn parse_start_line(buf: &Bytes, end: usize) -> Result<StartLine, ParseError> {
    let line = &buf[..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return parse_status_line(line);
    }
    let sp1 = memchr(b' ', line).ok_or(ParseError::StartLine { at: 0 })?;
    let method = Method::from_slice_of(buf, &line[..sp1]).ok_or(ParseError::StartLine { at: 0 })?;
    let uri_start = sp1 + 1;
    let sp2 = memchr(b' ', &line[uri_start..])
        .map(|i| uri_start + i)
        .ok_or(ParseError::StartLine { at: uri_start })?;
    check_version(&line[sp2 + 1..], sp2 + 1)?;
    let uri = &line[uri_start..sp2];
    let uri_err = ParseError::Uri { at: uri_start };
    let uri_str = std::str::from_utf8(uri).map_err(|_| uri_err)?;
    match super::uri::Uri::parse(uri_str) {
        // Headers in a Request-URI are not allowed (RFC 3261 19.1.5, RFC 4475 escruri).
        Some(super::uri::Uri::Sip(u)) if u.headers.is_some() => return Err(uri_err),
        Some(_) => {}
        None => return Err(uri_err),
    }
    Ok(StartLine::Request {
        method,
        uri: Span::new(uri_start, sp2),
    })
}

fn parse_status_line(line: &[u8]) -> Result<StartLine, ParseError> {
    let sp = memchr(b' ', line).ok_or(ParseError::StartLine { at: 0 })?;
    check_version(&line[..sp], 0)?;
    let code = &line[sp + 1..];
    let bad = ParseError::StartLine { at: sp + 1 };
    if code.len() < 3 || !code[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    if code.len() > 3 && code[3] != b' ' {
        return Err(bad);
    }
    let n = code[..3]
        .iter()
        .fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
    let status = StatusCode::new(n).ok_or(bad)?;
    let reason_start = (sp + 5).min(line.len());
    Ok(StartLine::Response {
        status,
        reason: Span::new(reason_start, line.len()),
    })
}

/// Position of the first LF at or after `from`. (A SWAR loop was tried and measured
/// slower than `memchr` with callgrind on the parse bench.)
#[inline]
pub(super) fn find_lf(b: &[u8], from: usize) -> Option<usize> {
    memchr(b'\n', &b[from..]).map(|i| from + i)
}

/// Indexes header lines from `pos`; returns (entries, offset of the blank line, body start).
fn index_headers(b: &[u8], mut pos: usize) -> Result<(Vec<Entry>, usize, usize), ParseError> {
    let mut headers: Vec<Entry> = Vec::with_capacity(16);
    loop {
        let nl = find_lf(b, pos).ok_or(ParseError::Header {
            name: HeaderName::Other,
            at: pos,
        })?;
        let next = nl + 1;
        let mut le = if nl > pos && b[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if le == pos {
            return Ok((headers, pos, next));
        }
        if b[pos] == b' ' || b[pos] == b'\t' {
            // Folded continuation of the previous header (RFC 3261 7.3.1).
            let last = headers.last_mut().ok_or(ParseError::Header {
                name: HeaderName::Other,
                at: pos,
            })?;
            let first = (pos..le).find(|&i| b[i] != b' ' && b[i] != b'\t');
            if let Some(first) = first {
                while b[le - 1] == b' ' || b[le - 1] == b'\t' {
                    le -= 1;
                }
                if last.value.start == last.value.end {
                    last.value.start = first as u32;
                }
                last.value.end = le as u32;
            }
            last.line.end = next as u32;
        } else {
            headers.push(index_line(b, pos, le, next)?);
        }
        pos = next;
    }
}

fn index_line(b: &[u8], pos: usize, le: usize, next: usize) -> Result<Entry, ParseError> {
    let mut i = pos;
    while i < le && is_token(b[i]) {
        i += 1;
    }
    let name_end = i;
    if name_end == pos {
        return Err(ParseError::Header {
            name: HeaderName::Other,
            at: pos,
        });
    }
    let name = HeaderName::from_bytes(&b[pos..name_end]);
    while i < le && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if i == le || b[i] != b':' {
        return Err(ParseError::Header { name, at: pos });
    }
    i += 1;
    while i < le && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    let mut ve = le;
    while ve > i && (b[ve - 1] == b' ' || b[ve - 1] == b'\t') {
        ve -= 1;
    }
    Ok(Entry {
        name,
        line: Span::new(pos, next),
        name_end: name_end as u32,
        value: Span::new(i, ve),
    })
}

#[derive(Default)]
struct Checked {
    call_id: Span,
    cseq: Option<cseq::CSeq>,
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    branch: Option<Span>,
    max_forwards: Option<u8>,
    content_length: Option<usize>,
}

/// Offset of `sub` inside `buf` (both from the same allocation).
fn span_of(buf: &[u8], sub: &str) -> Span {
    let start = sub.as_ptr() as usize - buf.as_ptr() as usize;
    Span::new(start, start + sub.len())
}

fn check_headers(buf: &Bytes, headers: &[Entry]) -> Result<Checked, ParseError> {
    let mut c = Checked::default();
    let (mut via, mut from, mut to, mut call_id, mut mf) = (None, None, None, None, false);
    for e in headers {
        let err = ParseError::Header {
            name: e.name,
            at: e.line.start as usize,
        };
        let raw = &buf[e.value.range()];
        let once = |seen: bool| {
            if seen {
                Err(ParseError::Repeated { name: e.name })
            } else {
                Ok(())
            }
        };
        match e.name {
            HeaderName::Via if via.is_none() => via = Some((raw, err)),
            HeaderName::From => {
                once(from.is_some())?;
                from = Some((raw, err));
            }
            HeaderName::To => {
                once(to.is_some())?;
                to = Some((raw, err));
            }
            HeaderName::CallId => {
                once(call_id.is_some())?;
                let ok = !raw.is_empty() && raw.iter().all(|&b| b > 0x20 && b < 0x7f);
                call_id = Some(e.value);
                if !ok {
                    return Err(err);
                }
            }
            HeaderName::CSeq => {
                once(c.cseq.is_some())?;
                c.cseq = Some(cseq::parse(buf, raw).map_err(|()| err)?);
            }
            HeaderName::MaxForwards => {
                once(mf)?;
                mf = true;
                let n = parse_content_length(raw).filter(|&n| n <= 255).ok_or(err)?;
                c.max_forwards = Some(n as u8);
            }
            HeaderName::ContentLength => {
                once(c.content_length.is_some())?;
                c.content_length = Some(parse_content_length(raw).ok_or(err)?);
            }
            HeaderName::Contact => {
                let v = std::str::from_utf8(raw).map_err(|_| err)?;
                if !name_addr::check_contact_list(v) {
                    return Err(err);
                }
            }
            _ => {}
        }
    }
    let missing = |name| ParseError::Missing { name };
    c.call_id = call_id.ok_or(missing(HeaderName::CallId))?;
    if c.cseq.is_none() {
        return Err(missing(HeaderName::CSeq));
    }
    let (raw, err) = via.ok_or(missing(HeaderName::Via))?;
    let v = std::str::from_utf8(raw).map_err(|_| err)?;
    // The top Via is the first comma-separated value of the first Via line.
    let top = super::scan::split_top(v, b',').next().unwrap_or("");
    let (_, branch) = via::parse_with_branch(top).map_err(|()| err)?;
    if let Some(branch) = branch {
        let branch = branch.and_then(super::headers::Branch::parse).ok_or(err)?;
        c.branch = Some(span_of(buf, branch.as_str()));
    }
    for (slot, which, name) in [
        (&mut c.from_tag, from, HeaderName::From),
        (&mut c.to_tag, to, HeaderName::To),
    ] {
        let (raw, err) = which.ok_or(missing(name))?;
        let v = std::str::from_utf8(raw).map_err(|_| err)?;
        let (_, tag) = name_addr::parse_with_tag(v).map_err(|()| err)?;
        if let Some(tag) = tag {
            let tag = tag.and_then(super::headers::Tag::parse).ok_or(err)?;
            *slot = Some(span_of(buf, tag.as_str()));
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::find_lf;

    #[test]
    fn find_lf_matches_a_plain_search_at_every_offset() {
        let data: Vec<u8> = (0..200u32)
            .map(|i| {
                if i % 37 == 5 || i % 11 == 0 {
                    b'\n'
                } else {
                    (i * 7 % 251) as u8 | 1
                }
            })
            .collect();
        for from in 0..data.len() {
            let want = data[from..]
                .iter()
                .position(|&c| c == b'\n')
                .map(|p| from + p);
            assert_eq!(find_lf(&data, from), want, "from {from}");
        }
        assert_eq!(find_lf(b"\x0b\x09\x8a\x0a", 0), Some(3));
        assert_eq!(find_lf(b"abcdefghijklmnop", 0), None);
    }
}

//! Message -> bytes, reusing untouched input slices.
//!
//! An [`Editor`] records edits against the header index and writes the result in one pass:
//! runs of untouched lines are copied as single slices of the received buffer, so forwarding
//! with a Via pushed and Max-Forwards decremented costs a few `memcpy`s, not a
//! re-serialization.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::message::Parts;
use super::{HeaderName, Message, Request, Response};

/// Something an [`Editor`] can edit: a [`Message`], [`Request`] or [`Response`].
pub trait Editable {
    /// The shared parts.
    fn edit_parts(&self) -> &Parts;
    /// The Request-URI range, for requests.
    #[doc(hidden)]
    fn edit_uri(&self) -> Option<(u32, u32)>;
}

impl Editable for Request {
    fn edit_parts(&self) -> &Parts {
        &self.parts
    }
    fn edit_uri(&self) -> Option<(u32, u32)> {
        let s = self.uri_span();
        Some((s.start, s.end))
    }
}

impl Editable for Response {
    fn edit_parts(&self) -> &Parts {
        &self.parts
    }
    fn edit_uri(&self) -> Option<(u32, u32)> {
        None
    }
}

impl Editable for Message {
    fn edit_parts(&self) -> &Parts {
        self.parts()
    }
    fn edit_uri(&self) -> Option<(u32, u32)> {
        match self {
            Message::Request(r) => r.edit_uri(),
            Message::Response(r) => r.edit_uri(),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Keep,
    Remove,
    Replace(Range<usize>),
}

/// Edits a parsed message and writes it out, copying untouched bytes as slices.
///
/// ```
/// # use callgate::sip::{parse_datagram, Editor, HeaderName};
/// # let raw = "OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
/// # From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
/// # Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
/// let msg = parse_datagram(bytes::Bytes::from(raw))?;
/// let mut ed = Editor::new(&msg);
/// ed.push_front("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2")
///     .replace("Max-Forwards", "69");
/// let out = ed.finish();
/// # assert!(out.starts_with(b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP proxy"));
/// # Ok::<(), callgate::sip::ParseError>(())
/// ```
pub struct Editor<'m> {
    parts: &'m Parts,
    uri: Option<(u32, u32)>,
    new_uri: Option<Range<usize>>,
    ops: Vec<Op>,
    /// (position: header index before which to insert, or `usize::MAX` for the end; line).
    inserts: Vec<(usize, Range<usize>)>,
    scratch: Vec<u8>,
    body: Option<Bytes>,
}

impl<'m> Editor<'m> {
    /// Starts editing `msg`; nothing changes until an edit is recorded.
    pub fn new<M: Editable>(msg: &'m M) -> Editor<'m> {
        let parts = msg.edit_parts();
        Editor {
            parts,
            uri: msg.edit_uri(),
            new_uri: None,
            ops: vec![Op::Keep; parts.headers.len()],
            inserts: Vec::new(),
            scratch: Vec::new(),
            body: None,
        }
    }

    fn line(&mut self, name: &str, value: &str) -> Range<usize> {
        let start = self.scratch.len();
        // Header text comes from our own code, but a CR or LF would split the message: never
        // let one through.
        let clean = |b: &u8| if *b == b'\r' || *b == b'\n' { b' ' } else { *b };
        self.scratch.extend(name.as_bytes().iter().map(clean));
        self.scratch.extend_from_slice(b": ");
        self.scratch.extend(value.as_bytes().iter().map(clean));
        self.scratch.extend_from_slice(b"\r\n");
        start..self.scratch.len()
    }

    fn matches(&self, i: usize, name: HeaderName, raw: &str) -> bool {
        let e = &self.parts.headers[i];
        if name == HeaderName::Other {
            self.parts
                .field(e)
                .raw_name
                .eq_ignore_ascii_case(raw.as_bytes())
        } else {
            e.name == name
        }
    }

    fn live(&self, i: usize) -> bool {
        !matches!(self.ops[i], Op::Remove)
    }

    /// Removes every header with this name.
    pub fn remove(&mut self, name: HeaderName) -> &mut Self {
        self.remove_raw(name.as_str())
    }

    /// Removes every header whose name (long, compact or unknown) is `name`.
    pub fn remove_raw(&mut self, name: &str) -> &mut Self {
        let hn = HeaderName::from_bytes(name.as_bytes());
        for i in 0..self.ops.len() {
            if self.matches(i, hn, name) {
                self.ops[i] = Op::Remove;
            }
        }
        self
    }

    /// Removes the topmost Via value (a response going upstream, RFC 3261 18.2.2 / 16.7).
    /// When the first Via line holds several comma-separated values, only the first goes.
    pub fn remove_top_via(&mut self) -> &mut Self {
        let Some(i) = (0..self.ops.len())
            .find(|&i| self.parts.headers[i].name == HeaderName::Via && self.live(i))
        else {
            return self;
        };
        let value = self.parts.field(&self.parts.headers[i]).value;
        let rest = std::str::from_utf8(value)
            .ok()
            .and_then(|v| super::scan::find_top(v, b',').map(|c| v[c + 1..].trim()));
        self.ops[i] = match rest {
            Some(rest) if !rest.is_empty() => Op::Replace(self.line("Via", rest)),
            _ => Op::Remove,
        };
        self
    }

    /// Inserts a header above the first existing header of the same name (or above all
    /// headers when there is none). The latest push ends up topmost.
    pub fn push_front(&mut self, name: &str, value: &str) -> &mut Self {
        let hn = HeaderName::from_bytes(name.as_bytes());
        let pos = (0..self.ops.len())
            .find(|&i| self.matches(i, hn, name) && self.live(i))
            .unwrap_or(0);
        let line = self.line(name, value);
        self.inserts.insert(0, (pos, line));
        self
    }

    /// Appends a header after the last one.
    pub fn push_back(&mut self, name: &str, value: &str) -> &mut Self {
        let line = self.line(name, value);
        self.inserts.push((usize::MAX, line));
        self
    }

    /// Replaces the first header with this name and removes the others; appends when absent.
    pub fn replace(&mut self, name: &str, value: &str) -> &mut Self {
        let hn = HeaderName::from_bytes(name.as_bytes());
        let mut first = true;
        for i in 0..self.ops.len() {
            if self.matches(i, hn, name) {
                self.ops[i] = if first {
                    Op::Replace(self.line(name, value))
                } else {
                    Op::Remove
                };
                first = false;
            }
        }
        if first {
            self.push_back(name, value);
        }
        self
    }

    /// Replaces the Request-URI (ignored for responses).
    pub fn set_request_uri(&mut self, uri: &str) -> &mut Self {
        if self.uri.is_some() {
            let start = self.scratch.len();
            self.scratch.extend_from_slice(uri.as_bytes());
            self.new_uri = Some(start..self.scratch.len());
        }
        self
    }

    /// Replaces the body; Content-Type is set (or removed when `content_type` is empty) and
    /// Content-Length recomputed.
    pub fn set_body(&mut self, content_type: &str, body: Bytes) -> &mut Self {
        if content_type.is_empty() {
            self.remove(HeaderName::ContentType);
        } else {
            self.replace("Content-Type", content_type);
        }
        let mut n = itoa_buf();
        self.replace("Content-Length", fmt_u64(&mut n, body.len() as u64));
        self.body = Some(body);
        self
    }

    /// Adds Content-Length when the message has none (needed before sending on a stream).
    pub fn ensure_content_length(&mut self) -> &mut Self {
        if self.parts.content_length.is_none() && self.body.is_none() {
            let mut n = itoa_buf();
            let len = self.parts.body().len() as u64;
            self.push_back("Content-Length", fmt_u64(&mut n, len));
        }
        self
    }

    /// Writes the edited message. Without edits the result equals the input bytes.
    pub fn finish(&self) -> Bytes {
        let p = self.parts;
        let buf = &p.buf[..];
        let first_header = p
            .headers
            .first()
            .map_or(p.headers_end as usize, |e| e.line.start as usize);
        let body: &[u8] = self.body.as_deref().unwrap_or(p.body());
        let mut out = BytesMut::with_capacity(buf.len() + self.scratch.len() + body.len());
        match (self.uri, &self.new_uri) {
            (Some((s, e)), Some(new)) => {
                out.put_slice(&buf[..s as usize]);
                out.put_slice(&self.scratch[new.clone()]);
                out.put_slice(&buf[e as usize..first_header]);
            }
            _ => out.put_slice(&buf[..first_header]),
        }
        let mut run = first_header;
        for (i, e) in p.headers.iter().enumerate() {
            let start = e.line.start as usize;
            for (_, line) in self.inserts.iter().filter(|(pos, _)| *pos == i) {
                out.put_slice(&buf[run..start]);
                run = start;
                out.put_slice(&self.scratch[line.clone()]);
            }
            match &self.ops[i] {
                Op::Keep => {}
                Op::Remove => {
                    out.put_slice(&buf[run..start]);
                    run = e.line.end as usize;
                }
                Op::Replace(line) => {
                    out.put_slice(&buf[run..start]);
                    out.put_slice(&self.scratch[line.clone()]);
                    run = e.line.end as usize;
                }
            }
        }
        out.put_slice(&buf[run..p.headers_end as usize]);
        for (_, line) in self
            .inserts
            .iter()
            .filter(|(pos, _)| *pos >= p.headers.len())
        {
            out.put_slice(&self.scratch[line.clone()]);
        }
        out.put_slice(&buf[p.headers_end as usize..p.body.start as usize]);
        out.put_slice(body);
        out.freeze()
    }
}

pub(crate) fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

/// Formats `n` in decimal into `buf` without allocating.
pub(crate) fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("invariant: decimal digits are ASCII")
}

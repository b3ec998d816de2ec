//! New messages: responses from requests (RFC 3261 8.2.6), new requests for the B leg, and
//! CANCEL / ACK derived from an INVITE (RFC 3261 9.1, 17.1.1.3).
//!
//! Headers copied from a request are copied as their raw lines (compact names and folding
//! kept), which is both cheapest and exactly what the peer sent.

use bytes::{BufMut, Bytes, BytesMut};

use super::message::Entry;
use super::serialize::{fmt_u64, itoa_buf};
use super::{HeaderName, Method, Parts, Request, Response};

/// Methods callgate accepts, for `Allow` in OPTIONS 200 and 405 responses.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY";

/// Body types callgate accepts, for `Accept` in OPTIONS 200 and 415 responses.
pub const ACCEPT: &str = "application/sdp";

fn put_line(out: &mut BytesMut, name: &str, value: &str) {
    let clean = |b: &u8| if *b == b'\r' || *b == b'\n' { b' ' } else { *b };
    out.extend(name.as_bytes().iter().map(clean));
    out.put_slice(b": ");
    out.extend(value.as_bytes().iter().map(clean));
    out.put_slice(b"\r\n");
}

fn put_raw(out: &mut BytesMut, p: &Parts, e: &Entry) {
    out.put_slice(&p.buf[e.line.range()]);
}

fn put_all(out: &mut BytesMut, p: &Parts, name: HeaderName) {
    for e in p.headers.iter().filter(|e| e.name == name) {
        put_raw(out, p, e);
    }
}

fn first(p: &Parts, name: HeaderName) -> Option<&Entry> {
    p.headers.iter().find(|e| e.name == name)
}

/// Writes the To line of `p`, adding `;tag=` when `tag` is given and To has none.
fn put_to(out: &mut BytesMut, p: &Parts, tag: Option<&str>) {
    let Some(e) = first(p, HeaderName::To) else {
        return;
    };
    match tag {
        Some(tag) if p.to_tag.is_none() => {
            out.put_slice(&p.buf[e.line.start as usize..e.value.end as usize]);
            out.put_slice(b";tag=");
            out.put_slice(tag.as_bytes());
            out.put_slice(&p.buf[e.value.end as usize..e.line.end as usize]);
        }
        _ => put_raw(out, p, e),
    }
}

fn put_body(out: &mut BytesMut, body: Option<(&str, &[u8])>) {
    let mut n = itoa_buf();
    match body {
        Some((ct, b)) => {
            put_line(out, "Content-Type", ct);
            put_line(out, "Content-Length", fmt_u64(&mut n, b.len() as u64));
            out.put_slice(b"\r\n");
            out.put_slice(b);
        }
        None => out.put_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// A response to `req` per RFC 3261 8.2.6: Via(s), From, To (with `to_tag` added when the
/// request's To has no tag), Call-ID, CSeq copied; Timestamp copied on 100; `extra` headers
/// appended; `Content-Length: 0`.
pub fn response_to(
    req: &Request,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
) -> Bytes {
    response_with_body(req, status, reason, to_tag, extra, None)
}

/// Like [`response_to`], with an optional `(content type, body)`.
pub fn response_with_body(
    req: &Request,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Bytes {
    let p = req.parts();
    // Sized for what is written: transactions keep final responses for their retransmissions
    // (up to 32 s), and a buffer that had to grow would keep twice its length.
    let extra_len: usize = extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let body_len = body.map_or(0, |(ct, b)| ct.len() + b.len() + 40);
    let mut out = BytesMut::with_capacity(p.headers_end as usize + 64 + extra_len + body_len);
    let mut n = itoa_buf();
    out.put_slice(b"SIP/2.0 ");
    out.put_slice(fmt_u64(&mut n, u64::from(status)).as_bytes());
    out.put_u8(b' ');
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
    put_all(&mut out, p, HeaderName::Via);
    put_all(&mut out, p, HeaderName::From);
    put_to(&mut out, p, to_tag);
    put_all(&mut out, p, HeaderName::CallId);
    put_all(&mut out, p, HeaderName::CSeq);
    if status == 100 {
        put_all(&mut out, p, HeaderName::Timestamp);
    }
    for (name, value) in extra {
        put_line(&mut out, name, value);
    }
    put_body(&mut out, body);
    out.freeze()
}

/// Writes `METHOD uri SIP/2.0`, the top Via value only, Route lines, From, Call-ID.
fn derived_head(out: &mut BytesMut, invite: &Request, method: &str) {
    let p = invite.parts();
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(invite.uri_str().as_bytes());
    out.put_slice(b" SIP/2.0\r\n");
    if let Some(e) = first(p, HeaderName::Via) {
        let v = std::str::from_utf8(&p.buf[e.value.range()]).unwrap_or("");
        let top = super::scan::split_top(v, b',').next().unwrap_or(v);
        put_line(out, "Via", top);
    }
    put_all(out, p, HeaderName::Route);
    put_all(out, p, HeaderName::From);
}

fn derived_tail(out: &mut BytesMut, invite: &Request, method: &str) {
    let p = invite.parts();
    put_all(out, p, HeaderName::CallId);
    let mut n = itoa_buf();
    out.put_slice(b"CSeq: ");
    out.put_slice(fmt_u64(&mut n, u64::from(p.cseq.seq)).as_bytes());
    out.put_u8(b' ');
    out.put_slice(method.as_bytes());
    out.put_slice(b"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
}

/// CANCEL for a pending INVITE (RFC 3261 9.1): same Request-URI, top Via (same branch),
/// Route, From, To, Call-ID, CSeq number with method CANCEL.
pub fn cancel_for(invite: &Request) -> Bytes {
    cancel_with(invite, &[])
}

/// [`cancel_for`] with `extra` headers (a `Reason`, RFC 3326).
pub fn cancel_with(invite: &Request, extra: &[(&str, &str)]) -> Bytes {
    let mut out = BytesMut::with_capacity(invite.parts().headers_end as usize + 64);
    derived_head(&mut out, invite, "CANCEL");
    put_to(&mut out, invite.parts(), None);
    for (name, value) in extra {
        put_line(&mut out, name, value);
    }
    derived_tail(&mut out, invite, "CANCEL");
    out.freeze()
}

/// ACK for a non-2xx final response (RFC 3261 17.1.1.3): as CANCEL, but To comes from the
/// response (it carries the tag) and the method is ACK.
pub fn ack_for_non_2xx(invite: &Request, response: &Response) -> Bytes {
    let mut out = BytesMut::with_capacity(invite.parts().headers_end as usize);
    derived_head(&mut out, invite, "ACK");
    put_to(&mut out, response.parts(), None);
    derived_tail(&mut out, invite, "ACK");
    out.freeze()
}

/// Builds a new request (B leg INVITE, in-dialog BYE/ACK/re-INVITE, OPTIONS pings).
///
/// Addresses are written as given (`"Bob" <sip:b@x>` or a bare URI, which is wrapped in
/// `<>` so that a tag cannot be mistaken for a URI parameter).
#[derive(Clone, Debug)]
pub struct RequestBuilder<'a> {
    method: Method,
    uri: &'a str,
    via: Option<(&'a str, &'a str, &'a str)>,
    from: Option<(&'a str, Option<&'a str>)>,
    to: Option<(&'a str, Option<&'a str>)>,
    call_id: &'a str,
    cseq: u32,
    max_forwards: u8,
    contact: Option<&'a str>,
    routes: Vec<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<(&'a str, &'a [u8])>,
}

impl<'a> RequestBuilder<'a> {
    /// Starts a request; Max-Forwards defaults to 70 and CSeq to 1.
    pub fn new(method: Method, uri: &'a str) -> Self {
        RequestBuilder {
            method,
            uri,
            via: None,
            from: None,
            to: None,
            call_id: "",
            cseq: 1,
            max_forwards: 70,
            contact: None,
            routes: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Via with transport (`UDP`), sent-by (`host:port`) and branch (include `z9hG4bK`);
    /// `;rport` is added (RFC 3581).
    pub fn via(mut self, transport: &'a str, sent_by: &'a str, branch: &'a str) -> Self {
        self.via = Some((transport, sent_by, branch));
        self
    }

    /// From address and tag.
    pub fn from(mut self, addr: &'a str, tag: Option<&'a str>) -> Self {
        self.from = Some((addr, tag));
        self
    }

    /// To address and tag (a tag only inside a dialog).
    pub fn to(mut self, addr: &'a str, tag: Option<&'a str>) -> Self {
        self.to = Some((addr, tag));
        self
    }

    /// Call-ID.
    pub fn call_id(mut self, call_id: &'a str) -> Self {
        self.call_id = call_id;
        self
    }

    /// CSeq number (the method is the request's).
    pub fn cseq(mut self, seq: u32) -> Self {
        self.cseq = seq;
        self
    }

    /// Max-Forwards.
    pub fn max_forwards(mut self, n: u8) -> Self {
        self.max_forwards = n;
        self
    }

    /// Contact address.
    pub fn contact(mut self, addr: &'a str) -> Self {
        self.contact = Some(addr);
        self
    }

    /// Appends a Route value (route set order).
    pub fn route(mut self, addr: &'a str) -> Self {
        self.routes.push(addr);
        self
    }

    /// Appends any other header.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// Writes the request.
    pub fn build(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(512 + self.body.map_or(0, |b| b.1.len()));
        let method = self.method.as_str();
        out.put_slice(method.as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.uri.as_bytes());
        out.put_slice(b" SIP/2.0\r\n");
        if let Some((transport, sent_by, branch)) = self.via {
            out.put_slice(b"Via: SIP/2.0/");
            out.put_slice(transport.as_bytes());
            out.put_u8(b' ');
            out.put_slice(sent_by.as_bytes());
            out.put_slice(b";branch=");
            out.put_slice(branch.as_bytes());
            out.put_slice(b";rport\r\n");
        }
        let mut n = itoa_buf();
        put_line(
            &mut out,
            "Max-Forwards",
            fmt_u64(&mut n, u64::from(self.max_forwards)),
        );
        for r in &self.routes {
            put_addr(&mut out, "Route", r, None);
        }
        if let Some((addr, tag)) = self.from {
            put_addr(&mut out, "From", addr, tag);
        }
        if let Some((addr, tag)) = self.to {
            put_addr(&mut out, "To", addr, tag);
        }
        put_line(&mut out, "Call-ID", self.call_id);
        out.put_slice(b"CSeq: ");
        out.put_slice(fmt_u64(&mut n, u64::from(self.cseq)).as_bytes());
        out.put_u8(b' ');
        out.put_slice(method.as_bytes());
        out.put_slice(b"\r\n");
        if let Some(c) = self.contact {
            put_addr(&mut out, "Contact", c, None);
        }
        for (name, value) in &self.headers {
            put_line(&mut out, name, value);
        }
        put_body(&mut out, self.body);
        out.freeze()
    }
}

fn put_addr(out: &mut BytesMut, name: &str, addr: &str, tag: Option<&str>) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    if addr.contains('<') {
        out.put_slice(addr.as_bytes());
    } else {
        out.put_u8(b'<');
        out.put_slice(addr.as_bytes());
        out.put_u8(b'>');
    }
    if let Some(tag) = tag {
        out.put_slice(b";tag=");
        out.put_slice(tag.as_bytes());
    }
    out.put_slice(b"\r\n");
}

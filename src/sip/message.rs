//! `Request` / `Response` over the received `Bytes`, with a header index of byte ranges.
//!
//! The buffer is never copied: every accessor returns a view into it (`&str`, `&[u8]`) or a
//! cheap `Bytes` slice of it ([`Parts::slice_ref`]). The fields the transaction layer and the
//! B2BUA read on every message (Call-ID, CSeq, tags, top branch, Max-Forwards) were checked
//! and located by the parser; everything else is parsed when asked for.

use std::fmt;
use std::ops::{Deref, Range};

use bytes::Bytes;

use super::headers::{
    auth, cseq::CSeq, name_addr, token_list, via, Branch, Contact, NameAddr, Tag, Via,
};
use super::uri::Uri;
use super::{HeaderName, Method, ParseError};

/// A byte range into the message buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        // The parser refuses buffers longer than u32::MAX, so offsets always fit.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header line in the index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    /// Whole line(s) including folded continuations and the final CRLF.
    pub(crate) line: Span,
    /// End of the raw name (the name starts at `line.start`).
    pub(crate) name_end: u32,
    /// The value without surrounding LWS; may contain folded CRLF SP inside.
    pub(crate) value: Span,
}

/// A header as written: its recognised name, raw name and raw (trimmed) value.
#[derive(Clone, Copy, Debug)]
pub struct HeaderField<'a> {
    /// Recognised name (`Other` for unknown ones).
    pub name: HeaderName,
    /// The name exactly as received (e.g. `v`, `VIA`).
    pub raw_name: &'a [u8],
    /// The value without leading/trailing LWS; folded lines keep their CRLF SP.
    pub value: &'a [u8],
}

impl<'a> HeaderField<'a> {
    /// The value as UTF-8, or `None` when it is not valid UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }
}

/// A response status code, checked to be in 100..=699.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(u16);

impl StatusCode {
    /// `Some` when `code` is a valid SIP status (100..=699).
    pub const fn new(code: u16) -> Option<StatusCode> {
        if code >= 100 && code <= 699 {
            Some(StatusCode(code))
        } else {
            None
        }
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// 1xx.
    pub const fn is_provisional(self) -> bool {
        self.0 < 200
    }

    /// 2xx.
    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// 200..=699.
    pub const fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// The class digit (1..=6).
    pub const fn class(self) -> u16 {
        self.0 / 100
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What requests and responses share: the buffer, the header index, the body and the
/// fields validated by the parser.
#[derive(Clone)]
pub struct Parts {
    pub(crate) buf: Bytes,
    /// Start line without its CRLF.
    pub(crate) start_line: Span,
    pub(crate) headers: Vec<Entry>,
    /// Offset of the empty line that ends the header section.
    pub(crate) headers_end: u32,
    pub(crate) body: Span,
    pub(crate) call_id: Span,
    pub(crate) cseq: CSeq,
    pub(crate) from_tag: Option<Span>,
    pub(crate) to_tag: Option<Span>,
    pub(crate) branch: Option<Span>,
    pub(crate) max_forwards: Option<u8>,
    pub(crate) content_length: Option<usize>,
}

impl Parts {
    /// The whole message as received (trailing datagram bytes past Content-Length dropped).
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// A `Bytes` handle on `sub`, which must be a slice of this message (any `&str` or
    /// `&[u8]` returned by an accessor). Cheap: no copy.
    ///
    /// # Panics
    /// If `sub` does not point into this message (a programming error, never input-driven).
    pub fn slice_ref(&self, sub: &[u8]) -> Bytes {
        if sub.is_empty() {
            return Bytes::new();
        }
        self.buf.slice_ref(sub)
    }

    fn text(&self, span: Span) -> &str {
        // Spans stored in `Parts` were checked to be UTF-8 (ASCII) by the parser.
        std::str::from_utf8(&self.buf[span.range()]).unwrap_or("")
    }

    /// The start line without CRLF.
    pub fn start_line(&self) -> &[u8] {
        &self.buf[self.start_line.range()]
    }

    /// Every header in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.headers.iter().map(|e| self.field(e))
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    pub(crate) fn field(&self, e: &Entry) -> HeaderField<'_> {
        HeaderField {
            name: e.name,
            raw_name: &self.buf[e.line.start as usize..e.name_end as usize],
            value: &self.buf[e.value.range()],
        }
    }

    /// The first header with this name.
    pub fn header(&self, name: HeaderName) -> Option<HeaderField<'_>> {
        self.headers_named(name).next()
    }

    /// All headers with this name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.headers
            .iter()
            .filter(move |e| e.name == name)
            .map(|e| self.field(e))
    }

    /// All headers whose raw name equals `name` case-insensitively (for unknown headers).
    pub fn headers_raw<'s>(&'s self, name: &'s str) -> impl Iterator<Item = HeaderField<'s>> + 's {
        self.headers()
            .filter(move |h| h.raw_name.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Values of every header with this name, split on top-level commas (RFC 3261 7.3.1),
    /// respecting quoted strings and `<...>`. Values that are not UTF-8 are skipped.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.headers_named(name)
            .filter_map(|h| h.value_str())
            .flat_map(|v| super::scan::split_top(v, b','))
            .filter(|v| !v.is_empty())
    }

    /// Call-ID (checked non-empty, no white space).
    pub fn call_id(&self) -> &str {
        self.text(self.call_id)
    }

    /// CSeq (checked; method matches the request method).
    pub fn cseq(&self) -> &CSeq {
        &self.cseq
    }

    /// The From tag, if any.
    pub fn from_tag(&self) -> Option<Tag<'_>> {
        self.from_tag.map(|s| Tag::new_unchecked(self.text(s)))
    }

    /// The To tag, if any.
    pub fn to_tag(&self) -> Option<Tag<'_>> {
        self.to_tag.map(|s| Tag::new_unchecked(self.text(s)))
    }

    /// The branch parameter of the top Via, if any.
    pub fn branch(&self) -> Option<Branch<'_>> {
        self.branch.map(|s| Branch::new_unchecked(self.text(s)))
    }

    /// Max-Forwards (checked to be 0..=255 when present).
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }

    /// Content-Length as declared, if the header is present.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    /// The body (framed by Content-Length), byte-exact.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.range()]
    }

    /// The body as a shared `Bytes` slice.
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body.range())
    }

    /// The top Via (checked by the parser).
    pub fn top_via(&self) -> Via<'_> {
        self.vias()
            .next()
            .and_then(Result::ok)
            .expect("invariant: the parser checked that a parseable top Via exists")
    }

    /// Every Via value, top first, including comma-separated ones on one line.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.list(HeaderName::Via, via::parse)
    }

    /// From (checked by the parser).
    pub fn from(&self) -> NameAddr<'_> {
        self.single(HeaderName::From)
            .expect("invariant: the parser checked that From parses")
    }

    /// To (checked by the parser).
    pub fn to(&self) -> NameAddr<'_> {
        self.single(HeaderName::To)
            .expect("invariant: the parser checked that To parses")
    }

    fn single(&self, name: HeaderName) -> Option<NameAddr<'_>> {
        let h = self.header(name)?;
        name_addr::parse(h.value_str()?).ok()
    }

    fn list<'s, T: 's>(
        &'s self,
        name: HeaderName,
        parse: fn(&'s str) -> Result<T, ()>,
    ) -> impl Iterator<Item = Result<T, ParseError>> + 's {
        self.headers
            .iter()
            .filter(move |e| e.name == name)
            .flat_map(move |e| {
                let err = ParseError::Header {
                    name,
                    at: e.line.start as usize,
                };
                // An empty value has no items; a non-UTF-8 value is one error item.
                let (items, bad) = match std::str::from_utf8(&self.buf[e.value.range()]) {
                    Ok("") => (None, false),
                    Ok(v) => (Some(super::scan::split_top(v, b',')), false),
                    Err(_) => (None, true),
                };
                items
                    .into_iter()
                    .flatten()
                    .map(move |s| parse(s).map_err(|()| err))
                    .chain(bad.then_some(Err(err)))
            })
    }

    /// Contact values (`*` included as [`Contact::Wildcard`]).
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'_>, ParseError>> + '_ {
        self.list(HeaderName::Contact, name_addr::parse_contact)
    }

    /// Route values in order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.list(HeaderName::Route, name_addr::parse_strict)
    }

    /// Record-Route values in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.list(HeaderName::RecordRoute, name_addr::parse_strict)
    }

    /// Parses the first header `name` with `parse`; `None` when absent.
    pub(crate) fn typed<'s, T>(
        &'s self,
        name: HeaderName,
        parse: impl FnOnce(&'s str) -> Result<T, ()>,
    ) -> Option<Result<T, ParseError>> {
        let e = self.headers.iter().find(|e| e.name == name)?;
        let err = ParseError::Header {
            name,
            at: e.line.start as usize,
        };
        Some(
            std::str::from_utf8(&self.buf[e.value.range()])
                .map_err(|_| err)
                .and_then(|v| parse(v).map_err(|()| err)),
        )
    }

    /// Expires in seconds.
    pub fn expires(&self) -> Option<Result<u32, ParseError>> {
        self.typed(HeaderName::Expires, super::headers::parse_delta_seconds)
    }

    /// Content-Type as a media type view.
    pub fn content_type(&self) -> Option<Result<super::headers::MediaType<'_>, ParseError>> {
        self.typed(HeaderName::ContentType, super::headers::MediaType::parse)
    }

    /// Authorization credentials.
    pub fn authorization(&self) -> Option<Result<auth::Credentials<'_>, ParseError>> {
        self.typed(HeaderName::Authorization, auth::Credentials::parse)
    }

    /// Proxy-Authorization credentials.
    pub fn proxy_authorization(&self) -> Option<Result<auth::Credentials<'_>, ParseError>> {
        self.typed(HeaderName::ProxyAuthorization, auth::Credentials::parse)
    }

    /// WWW-Authenticate challenges (one per header line).
    pub fn www_authenticate(
        &self,
    ) -> impl Iterator<Item = Result<auth::Challenge<'_>, ParseError>> + '_ {
        self.each(HeaderName::WwwAuthenticate, auth::Challenge::parse)
    }

    /// Proxy-Authenticate challenges (one per header line).
    pub fn proxy_authenticate(
        &self,
    ) -> impl Iterator<Item = Result<auth::Challenge<'_>, ParseError>> + '_ {
        self.each(HeaderName::ProxyAuthenticate, auth::Challenge::parse)
    }

    fn each<'s, T: 's>(
        &'s self,
        name: HeaderName,
        parse: fn(&'s str) -> Result<T, ()>,
    ) -> impl Iterator<Item = Result<T, ParseError>> + 's {
        self.headers
            .iter()
            .filter(move |e| e.name == name)
            .map(move |e| {
                let err = ParseError::Header {
                    name,
                    at: e.line.start as usize,
                };
                std::str::from_utf8(&self.buf[e.value.range()])
                    .map_err(|_| err)
                    .and_then(|v| parse(v).map_err(|()| err))
            })
    }

    /// Reason values (RFC 3326).
    pub fn reasons(
        &self,
    ) -> impl Iterator<Item = Result<super::headers::Reason<'_>, ParseError>> + '_ {
        self.list(HeaderName::Reason, super::headers::Reason::parse)
    }

    /// Session-Expires (RFC 4028).
    pub fn session_expires(&self) -> Option<Result<super::headers::SessionExpires, ParseError>> {
        self.typed(
            HeaderName::SessionExpires,
            super::headers::SessionExpires::parse,
        )
    }

    /// Min-SE in seconds (RFC 4028).
    pub fn min_se(&self) -> Option<Result<u32, ParseError>> {
        self.typed(
            HeaderName::MinSe,
            super::headers::parse_delta_seconds_with_params,
        )
    }

    /// Option tags of every Supported header.
    pub fn supported(&self) -> impl Iterator<Item = Result<&str, ParseError>> + '_ {
        self.list(HeaderName::Supported, token_list::parse_token)
    }

    /// Option tags of every Require header.
    pub fn require(&self) -> impl Iterator<Item = Result<&str, ParseError>> + '_ {
        self.list(HeaderName::Require, token_list::parse_token)
    }

    /// Option tags of every Proxy-Require header.
    pub fn proxy_require(&self) -> impl Iterator<Item = Result<&str, ParseError>> + '_ {
        self.list(HeaderName::ProxyRequire, token_list::parse_token)
    }

    /// Methods of every Allow header.
    pub fn allow(&self) -> impl Iterator<Item = Result<&str, ParseError>> + '_ {
        self.list(HeaderName::Allow, token_list::parse_token)
    }

    /// Retry-After.
    pub fn retry_after(&self) -> Option<Result<super::headers::RetryAfter<'_>, ParseError>> {
        self.typed(HeaderName::RetryAfter, super::headers::RetryAfter::parse)
    }

    /// Warning values.
    pub fn warnings(
        &self,
    ) -> impl Iterator<Item = Result<super::headers::Warning<'_>, ParseError>> + '_ {
        self.list(HeaderName::Warning, super::headers::Warning::parse)
    }
}

impl fmt::Debug for Parts {
    // Deliberately not the raw bytes: they may carry credentials (Authorization values).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("call_id", &self.call_id())
            .field("cseq", &self.cseq)
            .field("headers", &self.headers.len())
            .field("body_len", &self.body().len())
            .finish()
    }
}

/// A SIP request.
#[derive(Clone)]
pub struct Request {
    pub(crate) parts: Parts,
    pub(crate) method: Method,
    pub(crate) uri: Span,
}

impl Request {
    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The Request-URI as written.
    pub fn uri_str(&self) -> &str {
        self.parts.text(self.uri)
    }

    /// The Request-URI, typed (`sip:`/`sips:`/`tel:` checked by the parser; other schemes
    /// are [`Uri::Other`] so the caller can answer 416).
    pub fn uri(&self) -> Uri<'_> {
        Uri::parse(self.uri_str()).unwrap_or(Uri::Other {
            scheme: "",
            raw: self.uri_str(),
        })
    }

    /// The shared parts (headers, body).
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    pub(crate) fn uri_span(&self) -> Span {
        self.uri
    }
}

impl Deref for Request {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("uri", &self.uri_str())
            .field("parts", &self.parts)
            .finish()
    }
}

/// A SIP response.
#[derive(Clone)]
pub struct Response {
    pub(crate) parts: Parts,
    pub(crate) status: StatusCode,
    pub(crate) reason: Span,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason phrase as received (may be empty; may be UTF-8).
    pub fn reason_phrase(&self) -> &[u8] {
        &self.parts.buf[self.reason.range()]
    }

    /// The shared parts (headers, body).
    pub fn parts(&self) -> &Parts {
        &self.parts
    }
}

impl Deref for Response {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("parts", &self.parts)
            .finish()
    }
}

/// A parsed SIP message.
#[derive(Clone, Debug)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// The shared parts.
    pub fn parts(&self) -> &Parts {
        match self {
            Message::Request(r) => &r.parts,
            Message::Response(r) => &r.parts,
        }
    }

    /// Serializes without edits: the received bytes, shared.
    pub fn to_bytes(&self) -> Bytes {
        self.parts().buf.clone()
    }

    /// The request, if this is one.
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    /// The response, if this is one.
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }
}

impl Deref for Message {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        self.parts()
    }
}

//! What a UAS checks before any handler looks at a request (RFC 3261 8.2.2): the Request-URI
//! scheme (8.2.2.1: `416 Unsupported URI Scheme`) and the option tags in `Require` (8.2.2.3:
//! `420 Bad Extension` listing the unsupported ones in `Unsupported`). Pure: a request in, a
//! refusal or nothing out; the stateless OPTIONS responder and the engine (for a request that
//! starts a server transaction) send the response.
//!
//! ACK and CANCEL are never checked: ACK cannot be answered and CANCEL's `Require` is ignored
//! (8.2.2.3); both belong to an INVITE that was checked already. The SIP version (505) is the
//! parser's refusal ([`super::bad_request`]).

use bytes::Bytes;

use crate::sip::uri::Uri;
use crate::sip::{self, Method, Request};

/// Option tags callgate implements, for `Require` checks and `Supported` in OPTIONS answers.
/// RFC 4028 session timers; the B2BUA relies on this check (a call is never admitted with a
/// `Require` it cannot honour).
pub(crate) const SUPPORTED: &str = "timer";

/// The To tag of a stateless refusal: no dialog is made, and a constant tag lets a retransmitted
/// request get byte-identical answers.
const TAG: &str = "cg-refused";

/// Why a request is refused before its handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// `416` or `420`.
    pub(crate) status: u16,
    /// The reason phrase.
    pub(crate) reason: &'static str,
    /// The `Unsupported` header value (420): the option tags callgate does not implement.
    pub(crate) unsupported: Option<String>,
}

impl Refusal {
    /// The response to `req` (RFC 3261 8.2.6: Via, From, To with a tag, Call-ID, CSeq copied).
    pub(crate) fn response(&self, req: &Request) -> Bytes {
        let extra: Vec<(&str, &str)> = self
            .unsupported
            .as_deref()
            .map(|tags| ("Unsupported", tags))
            .into_iter()
            .collect();
        sip::response_to(req, self.status, self.reason, Some(TAG), &extra)
    }
}

/// The refusal `req` gets under RFC 3261 8.2.2, or `None` when its handler may proceed.
pub(crate) fn check(req: &Request) -> Option<Refusal> {
    if matches!(req.method(), Method::Ack | Method::Cancel) {
        return None;
    }
    // `tel:` is routed (the dialled number, b2bua::setup); only what the parser cannot read as
    // sip, sips or tel is a scheme callgate does not support.
    if let Uri::Other { .. } = req.uri() {
        return Some(Refusal {
            status: 416,
            reason: "Unsupported URI Scheme",
            unsupported: None,
        });
    }
    unsupported_requirements(req).map(|tags| Refusal {
        status: 420,
        reason: "Bad Extension",
        unsupported: Some(tags),
    })
}

/// Option tags in `Require` that callgate does not implement, comma-separated, if any. A
/// malformed tag is skipped: the parser owns syntax, and a tag that is not a token names
/// nothing callgate could implement.
fn unsupported_requirements(req: &Request) -> Option<String> {
    let supported = |t: &str| SUPPORTED.split(", ").any(|s| t.eq_ignore_ascii_case(s));
    let tags: Vec<&str> = req
        .parts()
        .require()
        .filter_map(Result::ok)
        .filter(|t| !supported(t))
        .collect();
    (!tags.is_empty()).then(|| tags.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    fn request(method: &str, uri: &str, extra: &str) -> Request {
        let text = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKc1\r\n\
             From: <sip:a@x>;tag=f\r\nTo: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\n\
             Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match sip::parse_datagram(Bytes::from(text)) {
            Ok(Message::Request(r)) => r,
            other => panic!("test request did not parse: {other:?}"),
        }
    }

    #[test]
    fn unknown_uri_scheme_gets_416() {
        for method in ["OPTIONS", "INVITE", "BYE", "MESSAGE"] {
            let r = check(&request(method, "mailto:alice@example.com", ""));
            assert_eq!(r.map(|r| r.status), Some(416), "{method}");
        }
        let r = check(&request("OPTIONS", "mailto:alice@example.com", "")).expect("refused");
        let text = String::from_utf8_lossy(&r.response(&request("OPTIONS", "mailto:a@b", "")))
            .into_owned();
        assert!(
            text.starts_with("SIP/2.0 416 Unsupported URI Scheme\r\n"),
            "{text}"
        );
        assert!(text.contains(";tag=cg-refused"), "{text}");
    }

    #[test]
    fn sip_sips_and_tel_uris_pass() {
        for uri in ["sip:1@127.0.0.1", "sips:1@example.com", "tel:+12125550123"] {
            assert_eq!(check(&request("INVITE", uri, "")), None, "{uri}");
        }
    }

    #[test]
    fn unsupported_require_gets_420_listing_only_the_unsupported_tags() {
        let req = request(
            "OPTIONS",
            "sip:gw@127.0.0.1",
            "Require: timer, 100rel, Foo\r\n",
        );
        let r = check(&req).expect("refused");
        assert_eq!(
            (r.status, r.unsupported.as_deref()),
            (420, Some("100rel, Foo"))
        );
        let text = String::from_utf8_lossy(&r.response(&req)).into_owned();
        assert!(text.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{text}");
        assert!(text.contains("\r\nUnsupported: 100rel, Foo\r\n"), "{text}");
    }

    #[test]
    fn require_timer_is_supported_and_case_insensitive() {
        for require in ["Require: timer\r\n", "Require: TIMER\r\n"] {
            let req = request("INVITE", "sip:1@127.0.0.1", require);
            assert_eq!(check(&req), None, "{require}");
        }
    }

    #[test]
    fn ack_and_cancel_are_never_refused() {
        for method in ["ACK", "CANCEL"] {
            let req = request(method, "mailto:x@y", "Require: 100rel\r\n");
            assert_eq!(check(&req), None, "{method}");
        }
    }
}

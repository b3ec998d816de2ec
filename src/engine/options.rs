//! The stateless OPTIONS responder (RFC 3261 11.2): out-of-dialog OPTIONS, the keep-alive probe
//! every trunk and monitoring system sends, gets `200 OK` with what callgate accepts. No server
//! transaction is kept (a retransmitted OPTIONS is simply answered again) and no shard state is
//! read, so the receive side answers it before any shard queue: a flood of calls does not make a
//! provider's keep-alive time out and mark callgate down.
//!
//! RFC 3261 8.2 applies as to any request ([`super::checks`]: 416, 420). While the daemon drains
//! (SIGTERM), the answer is `503` with `Retry-After`, so load balancers and trunks probing with
//! OPTIONS move traffic away before the listeners close.

use bytes::Bytes;

use super::{checks, rport};
use crate::b2bua::Dest;
use crate::sip::{self, Method, Request};

/// Seconds a prober is asked to stay away while callgate drains (as the 503 to new INVITEs).
const DRAIN_RETRY_AFTER: &str = "30";

/// Whether the daemon serves or is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Normal service: `200 OK`.
    Serving,
    /// Drain in progress: `503` with `Retry-After`.
    Draining,
}

/// True for the requests this responder owns: OPTIONS outside any dialog (no To tag).
pub fn owns(req: &Request) -> bool {
    *req.method() == Method::Options && req.parts().to_tag().is_none()
}

/// The response to an out-of-dialog OPTIONS from `source` while serving: see [`answer_in`].
pub fn answer(req: Request, source: Dest) -> (Dest, Bytes, u16) {
    answer_in(req, source, Mode::Serving)
}

/// The response to an out-of-dialog OPTIONS from `source`: where it goes, the bytes and the
/// status (`200`; `483` when Max-Forwards is spent; `416`/`420` under RFC 3261 8.2.2; `503`
/// while draining).
pub fn answer_in(req: Request, source: Dest, mode: Mode) -> (Dest, Bytes, u16) {
    // Responses go where RFC 3261 18.2.2 / RFC 3581 say, with the Via stamped accordingly.
    let (req, reply_to) = rport::stamp(req, source);
    if req.parts().max_forwards() == Some(0) {
        let bytes = sip::response_to(&req, 483, "Too Many Hops", None, &[]);
        return (reply_to, bytes, 483);
    }
    if let Some(refusal) = checks::check(&req) {
        return (reply_to, refusal.response(&req), refusal.status);
    }
    if mode == Mode::Draining {
        let extra = [("Retry-After", DRAIN_RETRY_AFTER)];
        let bytes = sip::response_to(&req, 503, "Service Unavailable", Some("cg-options"), &extra);
        return (reply_to, bytes, 503);
    }
    (reply_to, ok(&req), 200)
}

/// The `200 OK` listing what callgate allows, accepts and supports (RFC 3261 11.2).
pub(crate) fn ok(req: &Request) -> Bytes {
    let extra = [
        ("Allow", sip::ALLOW),
        ("Accept", sip::ACCEPT),
        ("Supported", checks::SUPPORTED),
    ];
    sip::response_to(req, 200, "OK", Some("cg-options"), &extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Transport;
    use crate::sip::Message;

    fn options(uri: &str, extra: &str) -> Request {
        let text = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKo1\r\n\
             From: <sip:lb@x>;tag=f\r\nTo: <sip:gw@y>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\
             Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match sip::parse_datagram(Bytes::from(text)) {
            Ok(Message::Request(r)) => r,
            other => panic!("test OPTIONS did not parse: {other:?}"),
        }
    }

    fn source() -> Dest {
        Dest {
            transport: Transport::Udp,
            addr: "127.0.0.11:5060".parse().expect("address"),
        }
    }

    fn text(bytes: &Bytes) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn serving_answers_200_with_allow_accept_and_supported() {
        let (_, bytes, status) = answer(options("sip:gw@127.0.0.1", ""), source());
        assert_eq!(status, 200);
        let t = text(&bytes);
        assert!(
            t.contains("\r\nSupported: timer\r\n") && t.contains("\r\nAllow: "),
            "{t}"
        );
    }

    #[test]
    fn draining_answers_503_with_retry_after() {
        let req = options("sip:gw@127.0.0.1", "");
        let (_, bytes, status) = answer_in(req, source(), Mode::Draining);
        assert_eq!(status, 503);
        let t = text(&bytes);
        assert!(t.starts_with("SIP/2.0 503 Service Unavailable\r\n"), "{t}");
        assert!(t.contains("\r\nRetry-After: 30\r\n"), "{t}");
    }

    #[test]
    fn rfc_3261_8_2_checks_apply_to_options() {
        let (_, _, status) = answer(options("mailto:gw@example.com", ""), source());
        assert_eq!(status, 416);
        let req = options("sip:gw@127.0.0.1", "Require: 100rel\r\n");
        let (_, bytes, status) = answer(req, source());
        assert_eq!(status, 420);
        assert!(text(&bytes).contains("\r\nUnsupported: 100rel\r\n"));
    }
}

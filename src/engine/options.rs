//! The stateless OPTIONS responder (RFC 3261 11.2): out-of-dialog OPTIONS, the keep-alive probe
//! every trunk and monitoring system sends, gets `200 OK` with what callgate accepts. No server
//! transaction is kept (a retransmitted OPTIONS is simply answered again) and no shard state is
//! read, so the receive side answers it before any shard queue: a flood of calls does not make a
//! provider's keep-alive time out and mark callgate down.

use bytes::Bytes;

use super::rport;
use crate::b2bua::Dest;
use crate::sip::{self, Method, Request};

/// True for the requests this responder owns: OPTIONS outside any dialog (no To tag).
pub fn owns(req: &Request) -> bool {
    *req.method() == Method::Options && req.parts().to_tag().is_none()
}

/// The response to an out-of-dialog OPTIONS from `source`: where it goes, the bytes and the
/// status (`200`, or `483` when Max-Forwards is spent).
pub fn answer(req: Request, source: Dest) -> (Dest, Bytes, u16) {
    // Responses go where RFC 3261 18.2.2 / RFC 3581 say, with the Via stamped accordingly.
    let (req, reply_to) = rport::stamp(req, source);
    if req.parts().max_forwards() == Some(0) {
        let bytes = sip::response_to(&req, 483, "Too Many Hops", None, &[]);
        return (reply_to, bytes, 483);
    }
    (reply_to, ok(&req), 200)
}

/// The `200 OK` listing what callgate allows and accepts.
pub(crate) fn ok(req: &Request) -> Bytes {
    let extra = [("Allow", sip::ALLOW), ("Accept", sip::ACCEPT)];
    sip::response_to(req, 200, "OK", Some("cg-options"), &extra)
}

//! Transaction keys from parsed SIP messages (RFC 3261 17.1.3 and 17.2.3): the glue between the
//! message model and the key types of [`super::key`].

use super::key::{is_rfc3261_branch, MethodKey, Rfc2543Fields, TransactionKey};
use super::layer::RequestKind;
use crate::sip::{Method, Request, Response};

/// The key of the server transaction a received request belongs to.
pub fn server_key(req: &Request) -> TransactionKey {
    let parts = req.parts();
    let method = method_key(req.method());
    let via = parts.top_via();
    match parts.branch() {
        Some(b) if is_rfc3261_branch(b.as_str().as_bytes()) => {
            let sent_by = match via.port {
                Some(port) => format!("{}:{}", via.host, port),
                None => via.host.to_owned(),
            };
            TransactionKey::server(b.as_str().as_bytes(), sent_by.as_bytes(), method)
        }
        _ => {
            let top_via = parts
                .values(crate::sip::HeaderName::Via)
                .next()
                .unwrap_or("");
            TransactionKey::rfc2543(Rfc2543Fields {
                request_uri: req.uri_str().as_bytes(),
                to_tag: parts.to_tag().map_or(&b""[..], |t| t.as_str().as_bytes()),
                from_tag: parts.from_tag().map_or(&b""[..], |t| t.as_str().as_bytes()),
                call_id: parts.call_id().as_bytes(),
                cseq_number: parts.cseq().seq,
                top_via: top_via.as_bytes(),
                method,
            })
        }
    }
}

/// The key of the client transaction a received response belongs to (top Via branch + CSeq
/// method); `None` when the response carries no branch (it cannot be ours).
pub fn client_key(resp: &Response) -> Option<TransactionKey> {
    let parts = resp.parts();
    let branch = parts.branch()?;
    Some(TransactionKey::client(
        branch.as_str().as_bytes(),
        method_key(&parts.cseq().method),
    ))
}

/// The key of a client transaction we start with `branch` for `method`.
pub fn client_key_for(branch: &str, method: &Method) -> TransactionKey {
    TransactionKey::client(branch.as_bytes(), method_key(method))
}

/// The layer's request kind for a method.
pub fn request_kind(method: &Method) -> RequestKind {
    match method {
        Method::Invite => RequestKind::Invite,
        Method::Ack => RequestKind::Ack,
        Method::Cancel => RequestKind::Cancel,
        _ => RequestKind::Other,
    }
}

fn method_key(method: &Method) -> MethodKey<'_> {
    match method {
        Method::Invite => MethodKey::Invite,
        Method::Ack => MethodKey::Ack,
        Method::Cancel => MethodKey::Cancel,
        other => MethodKey::Other(other.as_str().as_bytes()),
    }
}

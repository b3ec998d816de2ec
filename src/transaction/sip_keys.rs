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
            let sent_by = sent_by(parts.as_bytes(), via.host, via.port.is_some());
            TransactionKey::server(b.as_str().as_bytes(), sent_by, method)
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

/// The sent-by (`host[:port]`) as written in the message: the host view points into `buf`, and
/// the port, when present, follows it. Slicing avoids formatting a string per request.
fn sent_by<'a>(buf: &'a [u8], host: &str, has_port: bool) -> &'a [u8] {
    let start = (host.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    let Some(after_host) = start
        .checked_add(host.len())
        .filter(|end| *end <= buf.len())
    else {
        return &[];
    };
    let mut end = after_host;
    if has_port && buf.get(end) == Some(&b':') {
        end += 1;
        while buf.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    &buf[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{self, Message};
    use bytes::Bytes;

    fn key_of(via: &str) -> TransactionKey {
        let text = format!("OPTIONS sip:x@y SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        match sip::parse_datagram(Bytes::from(text)) {
            Ok(Message::Request(r)) => server_key(&r),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sent_by_with_and_without_port_distinguishes_transactions() {
        let with_port = key_of("SIP/2.0/UDP host.example:5060;branch=z9hG4bK1");
        let same = key_of("SIP/2.0/UDP  host.example:5060 ;branch=z9hG4bK1");
        let other_port = key_of("SIP/2.0/UDP host.example:5070;branch=z9hG4bK1");
        let no_port = key_of("SIP/2.0/UDP host.example;branch=z9hG4bK1");
        let v6 = key_of("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1");
        assert_eq!(with_port, same);
        assert_ne!(with_port, other_port);
        assert_ne!(with_port, no_port);
        assert_ne!(with_port, v6);
    }
}

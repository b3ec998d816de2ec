//! The caller's number an inbound call presents to its callee (spec 7; RFC 3323 privacy, RFC 3325
//! asserted identity). Pure: the header values of the provider's INVITE in, the From user out.

use crate::sip::headers::name_addr;
use crate::sip::uri::Uri;
use crate::sip::Request;

/// The From user callgate writes towards the callee of a call from a trunk.
///
/// - The caller asked for privacy (`Privacy: id`, `user` or `header`, RFC 3323 / 3325): the
///   RFC 3323 anonymous user, whatever the trunk's trust.
/// - A `trusted` trunk's P-Asserted-Identity (its user part, or a `tel:` number) is the caller.
/// - Otherwise the user of the provider's From (the number the provider presents).
/// - No user anywhere: anonymous.
pub fn inbound_from_user(req: &Request, trusted: bool) -> String {
    if asks_privacy(req) {
        return ANONYMOUS.to_owned();
    }
    let asserted = trusted
        .then(|| first_value(req, "P-Asserted-Identity"))
        .flatten()
        .and_then(|v| {
            name_addr::parse(first_address(v))
                .ok()
                .and_then(|a| user_of(a.uri))
        });
    asserted
        .or_else(|| user_of(req.parts().from().uri))
        .unwrap_or_else(|| ANONYMOUS.to_owned())
}

/// The user of an anonymous From (RFC 3323 4.1.1.3: `sip:anonymous@anonymous.invalid`).
pub const ANONYMOUS: &str = "anonymous";

/// Whether the caller's Privacy header asks to withhold its identity.
pub fn asks_privacy(req: &Request) -> bool {
    req.parts()
        .headers_raw("Privacy")
        .filter_map(|h| h.value_str())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .any(|t| {
            ["id", "user", "header"]
                .iter()
                .any(|p| t.eq_ignore_ascii_case(p))
        })
}

/// The first address of a comma-separated list (`<sip:+1@x>, <tel:+1>`, RFC 3325 allows a SIP
/// and a tel URI): through the first `>` when it is bracketed, else up to the first comma. A
/// display name holding `>` or `,` only costs the asserted identity (the From user is used).
fn first_address(value: &str) -> &str {
    let comma = value.find(',');
    match value.find('<') {
        Some(open) if comma.is_none_or(|c| open < c) => {
            value.find('>').map_or(value, |end| &value[..=end])
        }
        _ => comma.map_or(value, |c| &value[..c]),
    }
}

fn first_value<'r>(req: &'r Request, name: &'r str) -> Option<&'r str> {
    req.parts().headers_raw(name).find_map(|h| h.value_str())
}

/// The user part of a `sip:`/`sips:` URI or the number of a `tel:` one, when it is a plain token
/// (callgate writes it into its own From).
fn user_of(uri: &str) -> Option<String> {
    let user = match Uri::parse(uri)? {
        Uri::Sip(s) => s.user?,
        Uri::Tel(t) => t.number,
        Uri::Other { .. } => return None,
    };
    let plain = !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-_.!~*'()%&=$,;?/".contains(&b));
    plain.then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::{self, Message};

    fn invite(headers: &str) -> Request {
        invite_from("\"Carrier\" <sip:+14155550123@carrier.example>", headers)
    }

    fn invite_from(from: &str, headers: &str) -> Request {
        let text = format!(
            "INVITE sip:3125550100@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKx\r\nFrom: {from};tag=1\r\nTo: <sip:3125550100@gw.example>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n{headers}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        match sip::parse_datagram(Bytes::from(text)) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_provider_from_user_is_the_caller() {
        assert_eq!(inbound_from_user(&invite(""), false), "+14155550123");
        assert_eq!(inbound_from_user(&invite(""), true), "+14155550123");
    }

    #[test]
    fn a_trusted_trunk_asserted_identity_wins_an_untrusted_one_is_ignored() {
        let pai = "P-Asserted-Identity: <tel:+14155559999>\r\n";
        assert_eq!(inbound_from_user(&invite(pai), true), "+14155559999");
        assert_eq!(inbound_from_user(&invite(pai), false), "+14155550123");
        let sip_pai = "P-Asserted-Identity: \"A\" <sip:4155558888@carrier.example;user=phone>\r\n";
        assert_eq!(inbound_from_user(&invite(sip_pai), true), "4155558888");
        let both =
            "P-Asserted-Identity: <sip:+14155557777@carrier.example>, <tel:+14155557777>\r\n";
        assert_eq!(inbound_from_user(&invite(both), true), "+14155557777");
        let bare = "P-Asserted-Identity: tel:+14155556666, <sip:x@y>\r\n";
        assert_eq!(inbound_from_user(&invite(bare), true), "+14155556666");
    }

    #[test]
    fn privacy_makes_the_caller_anonymous() {
        for privacy in ["id", "header;id", "user", "Header"] {
            let h = format!("Privacy: {privacy}\r\nP-Asserted-Identity: <tel:+14155559999>\r\n");
            assert_eq!(inbound_from_user(&invite(&h), true), ANONYMOUS, "{privacy}");
        }
        assert_eq!(
            inbound_from_user(&invite("Privacy: none\r\n"), false),
            "+14155550123"
        );
    }

    #[test]
    fn a_from_without_a_plain_user_is_anonymous() {
        let req = invite_from("<sip:carrier.example>", "");
        assert_eq!(inbound_from_user(&req, false), ANONYMOUS);
        assert_eq!(user_of("sip:a%20b@x"), Some("a%20b".into()));
        assert_eq!(user_of("sip:a<b@x"), None);
    }
}

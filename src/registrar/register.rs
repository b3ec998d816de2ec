//! REGISTER processing (RFC 3261 10.3, steps 5 to 8), once the request is authenticated and its
//! address-of-record known: the Contact header fields become bindings in the [`LocationStore`],
//! and the answer lists the bindings the AoR has afterwards. Pure: the store and the time are
//! passed in.

use std::time::{Duration, Instant};

use super::{Aor, Binding, BindingError, Flow, LocationStore};
use crate::sip::headers::Contact;
use crate::sip::Request;

/// How long bindings may live, and how many an AoR may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// When the REGISTER asks for no lifetime (RFC 3261 10.2.1.1 suggests 3600 s).
    pub default_expires: u32,
    /// Below this a non-zero request gets `423 Interval Too Brief` with `Min-Expires`.
    pub min_expires: u32,
    /// Longer requests are granted this much.
    pub max_expires: u32,
    /// Bindings per AoR; a new contact beyond it replaces the one that expires soonest.
    pub max_contacts: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_contacts: 5,
        }
    }
}

/// What the REGISTER gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `200 OK` listing every binding of the AoR afterwards: (`<uri>`, seconds left).
    Ok {
        /// The bindings.
        contacts: Vec<(String, u32)>,
    },
    /// `423 Interval Too Brief` with `Min-Expires`.
    TooBrief {
        /// Our minimum.
        min_expires: u32,
    },
    /// `400 Bad Request`, and why.
    Bad(&'static str),
    /// `500` with `Retry-After`: a REGISTER older than the stored binding (RFC 3261 10.3 steps
    /// 6 and 7 abort the request; a retransmission arriving late gets here).
    OutOfOrder,
}

/// One contact of the request, validated.
struct Wanted<'a> {
    uri: &'a str,
    expires: u32,
    q: Option<u16>,
}

/// Applies `req` (a REGISTER for `aor`, arrived on `flow`) to `store`.
pub fn register(
    store: &LocationStore,
    aor: &Aor,
    req: &Request,
    flow: Flow,
    policy: &Policy,
    now: Instant,
) -> Reply {
    let parts = req.parts();
    let header_expires = match parts.expires() {
        None => None,
        Some(Ok(e)) => Some(e),
        Some(Err(_)) => return Reply::Bad("malformed Expires"),
    };
    let mut contacts = Vec::new();
    let mut wildcard = false;
    for c in parts.contacts() {
        match c {
            Ok(Contact::Wildcard) => wildcard = true,
            Ok(c @ Contact::Address(a)) => contacts.push((a.uri, c.expires(), q_of(&c))),
            Err(_) => return Reply::Bad("malformed Contact"),
        }
    }
    let call_id = parts.call_id();
    let cseq = parts.cseq().seq;
    if wildcard {
        // Step 6: `*` only alone and with Expires: 0.
        if !contacts.is_empty() || header_expires != Some(0) {
            return Reply::Bad("Contact: * needs Expires: 0 and no other Contact");
        }
        return match store.remove_all(aor, call_id, cseq) {
            Ok(_) => current(store, aor, now),
            Err(_) => Reply::OutOfOrder,
        };
    }
    let mut wanted = Vec::with_capacity(contacts.len());
    for (uri, own, q) in contacts {
        let asked = own.or(header_expires).unwrap_or(policy.default_expires);
        if asked != 0 && asked < policy.min_expires {
            return Reply::TooBrief {
                min_expires: policy.min_expires,
            };
        }
        let expires = asked.min(policy.max_expires);
        wanted.push(Wanted { uri, expires, q });
    }
    for w in wanted {
        let binding = Binding {
            contact: w.uri.to_owned(),
            flow,
            expires_at: now + Duration::from_secs(w.expires.into()),
            registered_at: now,
            call_id: call_id.to_owned(),
            cseq,
            q: w.q,
        };
        match store.upsert(aor.clone(), binding, policy.max_contacts, now) {
            Ok(_) => {}
            Err(BindingError::OutOfOrder { .. }) => return Reply::OutOfOrder,
            Err(BindingError::NoContactsAllowed) => return Reply::Bad("no contacts allowed"),
        }
    }
    current(store, aor, now)
}

/// The `200 OK` for the AoR's bindings now (also the answer to a query without Contact).
fn current(store: &LocationStore, aor: &Aor, now: Instant) -> Reply {
    let contacts = store
        .lookup(aor, now)
        .into_iter()
        .map(|b| {
            let left = b.expires_at.saturating_duration_since(now).as_secs();
            (b.contact, u32::try_from(left).unwrap_or(u32::MAX))
        })
        .collect();
    Reply::Ok { contacts }
}

/// A Contact's `q` parameter as thousandths (`q=0.5` -> 500), when valid.
fn q_of(c: &Contact<'_>) -> Option<u16> {
    let q: f32 = c.address()?.params.get("q").flatten()?.parse().ok()?;
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

impl Reply {
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Ok { .. } => 200,
            Reply::TooBrief { .. } => 423,
            Reply::Bad(_) => 400,
            Reply::OutOfOrder => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Transport;
    use crate::sip::{parse_datagram, Message};

    fn req(cseq: u32, contact: &str, expires: Option<u32>) -> Request {
        let contact = if contact.is_empty() {
            String::new()
        } else {
            format!("Contact: {contact}\r\n")
        };
        let expires = expires.map_or(String::new(), |e| format!("Expires: {e}\r\n"));
        let text = format!(
            "REGISTER sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr{cseq}\r\nFrom: <sip:101@acme.example>;tag=f1\r\nTo: <sip:101@acme.example>\r\nCall-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\n{contact}{expires}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_datagram(bytes::Bytes::from(text)) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            source: ([198, 51, 100, 7], 40000).into(),
            local: None,
        }
    }

    fn run(store: &LocationStore, r: &Request, now: Instant) -> Reply {
        register(
            store,
            &Aor::new("acme.example", "101"),
            r,
            flow(),
            &Policy::default(),
            now,
        )
    }

    #[test]
    fn a_contact_is_bound_for_what_it_asked_within_the_policy() {
        let store = LocationStore::new();
        let t0 = crate::test_clock::origin();
        let r = run(&store, &req(1, "<sip:101@10.0.0.5:5060>", Some(600)), t0);
        assert_eq!(
            r,
            Reply::Ok {
                contacts: vec![("sip:101@10.0.0.5:5060".into(), 600)]
            }
        );
        // The contact's own expires wins over the header; past max_expires it is cut.
        let r = run(
            &store,
            &req(2, "<sip:101@10.0.0.5:5060>;expires=99999", Some(600)),
            t0,
        );
        assert_eq!(
            r,
            Reply::Ok {
                contacts: vec![("sip:101@10.0.0.5:5060".into(), 7200)]
            }
        );
        let bound = store.lookup(&Aor::new("acme.example", "101"), t0);
        assert_eq!(
            bound[0].flow,
            flow(),
            "the binding keeps the flow it came on"
        );
    }

    #[test]
    fn below_min_expires_gets_423_and_changes_nothing() {
        let store = LocationStore::new();
        let t0 = crate::test_clock::origin();
        let r = run(&store, &req(1, "<sip:101@10.0.0.5>", Some(30)), t0);
        assert_eq!(r, Reply::TooBrief { min_expires: 60 });
        assert_eq!(r.status(), 423);
        assert!(store.is_empty());
    }

    #[test]
    fn expires_zero_and_the_wildcard_remove_bindings() {
        let store = LocationStore::new();
        let t0 = crate::test_clock::origin();
        run(
            &store,
            &req(1, "<sip:101@10.0.0.5>, <sip:101@10.0.0.6>", Some(600)),
            t0,
        );
        let r = run(&store, &req(2, "<sip:101@10.0.0.5>;expires=0", None), t0);
        assert_eq!(
            r,
            Reply::Ok {
                contacts: vec![("sip:101@10.0.0.6".into(), 600)]
            }
        );
        assert_eq!(
            run(&store, &req(3, "*", None), t0).status(),
            400,
            "needs Expires: 0"
        );
        assert_eq!(
            run(&store, &req(3, "*, <sip:101@10.0.0.7>", Some(0)), t0).status(),
            400,
            "alone"
        );
        let r = run(&store, &req(3, "*", Some(0)), t0);
        assert_eq!(r, Reply::Ok { contacts: vec![] });
        assert!(store.is_empty());
    }

    #[test]
    fn a_query_lists_and_an_older_request_is_refused() {
        let store = LocationStore::new();
        let t0 = crate::test_clock::origin();
        run(&store, &req(5, "<sip:101@10.0.0.5>", None), t0);
        let later = t0 + Duration::from_secs(100);
        assert_eq!(
            run(&store, &req(6, "", None), later),
            Reply::Ok {
                contacts: vec![("sip:101@10.0.0.5".into(), 3500)]
            },
            "default 3600 s, 100 s gone"
        );
        assert_eq!(
            run(&store, &req(4, "<sip:101@10.0.0.5>", Some(600)), later),
            Reply::OutOfOrder
        );
    }

    #[test]
    fn q_values_are_kept_as_thousandths() {
        let store = LocationStore::new();
        let t0 = crate::test_clock::origin();
        run(&store, &req(1, "<sip:101@10.0.0.5>;q=0.5", None), t0);
        let b = store.lookup(&Aor::new("acme.example", "101"), t0);
        assert_eq!(b[0].q, Some(500));
    }
}

//! One leg of a call: the dialog state callgate keeps towards one peer (RFC 3261 12), and the
//! requests it builds inside that dialog.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::config::model::Transport;
use crate::sip::{Method, RequestBuilder};

/// Where a leg's peer is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dest {
    /// udp, tcp or tls.
    pub transport: Transport,
    /// Peer address (the source address for a caller, per RFC 3581 / 18.2.2).
    pub addr: SocketAddr,
}

/// Which side of the call a leg faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Towards the caller.
    A,
    /// Towards the callee.
    B,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `"a"` or `"b"`, for logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// Dialog state of one leg, from callgate's point of view (we are the UA on this leg).
#[derive(Debug, Clone)]
pub struct Leg {
    /// This leg's Call-ID (A: the caller's; B: ours).
    pub call_id: String,
    /// Our tag on this leg.
    pub local_tag: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
    /// Our address-of-record on this leg, as written in From (B) or To (A), without tag.
    pub local_uri: String,
    /// The peer's address, as written in To (B) or From (A), without tag.
    pub remote_uri: String,
    /// Where in-dialog requests go: the peer's Contact URI.
    pub remote_target: String,
    /// Route set (in the order requests carry it).
    pub route_set: Vec<String>,
    /// Our next CSeq number on this leg.
    pub local_cseq: u32,
    /// The peer's transport address.
    pub dest: Dest,
}

/// What an in-dialog request needs besides the leg state.
pub struct InDialog<'a> {
    /// Method.
    pub method: Method,
    /// Via sent-by (`host:port`) of callgate on this leg's transport.
    pub sent_by: &'a str,
    /// New branch.
    pub branch: &'a str,
    /// Our Contact.
    pub contact: &'a str,
    /// `(Content-Type, body)` to carry.
    pub body: Option<(&'a str, &'a [u8])>,
    /// Extra headers.
    pub extra: &'a [(&'a str, &'a str)],
}

impl Leg {
    /// Builds a request inside this dialog (RFC 3261 12.2.1.1), consuming a CSeq number unless
    /// it is an ACK (which reuses the INVITE's).
    pub fn request(&mut self, r: InDialog<'_>, ack_cseq: Option<u32>) -> Bytes {
        let cseq = match ack_cseq {
            Some(n) => n,
            None => {
                self.local_cseq += 1;
                self.local_cseq
            }
        };
        let transport = via_transport(self.dest.transport);
        let mut b = RequestBuilder::new(r.method, &self.remote_target)
            .via(transport, r.sent_by, r.branch)
            .from(&self.local_uri, Some(&self.local_tag))
            .to(&self.remote_uri, self.remote_tag.as_deref())
            .call_id(&self.call_id)
            .cseq(cseq)
            .contact(r.contact);
        for route in &self.route_set {
            b = b.route(route);
        }
        for (name, value) in r.extra {
            b = b.header(name, value);
        }
        if let Some((ct, body)) = r.body {
            b = b.body(ct, body);
        }
        b.build()
    }
}

/// The Via transport token for a transport.
pub(super) fn via_transport(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    }
}

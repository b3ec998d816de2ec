//! Transaction matching keys: RFC 3261 §17.1.3 (client), §17.2.3 (server, with the RFC 2543
//! fallback for branches without the magic cookie) and CANCEL matching of §9.2.
//!
//! A key is built from plain fields the parser extracted; it copies them into one small buffer
//! (one allocation), so it does not pin the message, clones by reference count and hashes a few
//! dozen bytes.
//!
//! Building keys from a parsed message:
//! - outbound request (client): `TransactionKey::client(branch_we_generated, MethodKey::from_bytes(method))`;
//!   CANCEL reuses the INVITE's branch with `MethodKey::Cancel` (§9.1).
//! - inbound response: `TransactionKey::client(top_via.branch, MethodKey::from_bytes(cseq.method))`.
//! - inbound request whose top Via branch passes [`is_rfc3261_branch`]:
//!   `TransactionKey::server(top_via.branch, top_via.sent_by, MethodKey::from_bytes(method))`
//!   (sent-by = `host[:port]` as written).
//! - otherwise: `TransactionKey::rfc2543(Rfc2543Fields { .. })` from Request-URI, To tag,
//!   From tag, Call-ID, CSeq number, the top Via value and the method.

use bytes::{BufMut, Bytes, BytesMut};

/// The RFC 3261 branch prefix (§8.1.1.7); its absence selects the RFC 2543 matching rules.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Whether `branch` was made by an RFC 3261 element (starts with [`MAGIC_COOKIE`]).
pub fn is_rfc3261_branch(branch: &[u8]) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// A request method as matching sees it (from the request line or the CSeq header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKey<'a> {
    /// INVITE.
    Invite,
    /// ACK: matches the INVITE's server transaction.
    Ack,
    /// CANCEL: its own transaction, same branch as the INVITE.
    Cancel,
    /// Any other method, by its name.
    Other(&'a [u8]),
}

impl<'a> MethodKey<'a> {
    /// Classifies a method name; methods are case-sensitive (RFC 3261 §7.1).
    pub fn from_bytes(method: &'a [u8]) -> Self {
        match method {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"CANCEL" => Self::Cancel,
            other => Self::Other(other),
        }
    }
}

/// Which side of the transaction a key names; client and server keys never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A transaction callgate started (matched by responses).
    Client,
    /// A transaction a peer started (matched by requests).
    Server,
}

/// Method class stored in a key: ACK is folded into INVITE, other names live in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum MethodClass {
    Invite,
    Cancel,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scheme {
    Branch,
    Rfc2543,
}

/// Fields of an RFC 2543 request used for matching when its branch lacks the magic cookie
/// (§17.2.3). All are raw bytes as they appear in the message.
#[derive(Clone, Copy, Debug)]
pub struct Rfc2543Fields<'a> {
    /// Request-URI.
    pub request_uri: &'a [u8],
    /// To tag (empty if none). Ignored for INVITE, ACK and CANCEL, see [`TransactionKey::rfc2543`].
    pub to_tag: &'a [u8],
    /// From tag (empty if none).
    pub from_tag: &'a [u8],
    /// Call-ID.
    pub call_id: &'a [u8],
    /// CSeq sequence number (the method is `method`).
    pub cseq_number: u32,
    /// The whole top Via header field value.
    pub top_via: &'a [u8],
    /// Request method.
    pub method: MethodKey<'a>,
}

/// Identifies one transaction. Build with [`TransactionKey::client`], [`TransactionKey::server`]
/// or [`TransactionKey::rfc2543`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionKey {
    role: Role,
    scheme: Scheme,
    method: MethodClass,
    cseq_number: u32,
    /// Field end offsets into `buf`; unused ones repeat the last end.
    ends: [u32; 6],
    buf: Bytes,
}

impl TransactionKey {
    /// Client key (§17.1.3): the branch we put in the top Via and the CSeq method. A response
    /// is matched with the branch of its top Via and the method of its CSeq.
    pub fn client(branch: &[u8], method: MethodKey<'_>) -> Self {
        Self::pack(Role::Client, Scheme::Branch, method, 0, &[branch], false)
    }

    /// Server key (§17.2.3) for a request whose top Via branch has the magic cookie:
    /// branch, sent-by of the top Via (`host[:port]`, host compared case-insensitively) and
    /// method, where ACK matches the INVITE it acknowledges.
    pub fn server(branch: &[u8], sent_by: &[u8], method: MethodKey<'_>) -> Self {
        Self::pack(
            Role::Server,
            Scheme::Branch,
            method,
            0,
            &[branch, sent_by],
            true,
        )
    }

    /// Server key for an RFC 2543 request (no magic cookie; §17.2.3): Request-URI, From tag,
    /// Call-ID, CSeq number, top Via and method, plus the To tag for methods other than INVITE,
    /// ACK and CANCEL. For those three the To tag is left out: the ACK carries the To tag of our
    /// response, which the INVITE lacked, and CANCEL copies the INVITE's To (§9.1).
    pub fn rfc2543(fields: Rfc2543Fields<'_>) -> Self {
        let to_tag = match fields.method {
            MethodKey::Other(_) => fields.to_tag,
            _ => b"",
        };
        Self::pack(
            Role::Server,
            Scheme::Rfc2543,
            fields.method,
            fields.cseq_number,
            &[
                fields.request_uri,
                to_tag,
                fields.from_tag,
                fields.call_id,
                fields.top_via,
            ],
            false,
        )
    }

    /// For the key of a CANCEL server transaction, the key of the INVITE server transaction it
    /// cancels (§9.2: same matching rules, method INVITE). `None` for any other key.
    pub fn cancel_target(&self) -> Option<TransactionKey> {
        (self.role == Role::Server && self.method == MethodClass::Cancel).then(|| TransactionKey {
            method: MethodClass::Invite,
            ..self.clone()
        })
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the key names an INVITE transaction (ACK keys do too).
    pub fn is_invite(&self) -> bool {
        self.method == MethodClass::Invite
    }

    /// Whether the key names a CANCEL transaction.
    pub fn is_cancel(&self) -> bool {
        self.method == MethodClass::Cancel
    }

    /// The branch of a branch-based key (`None` for RFC 2543 keys); for logging spans.
    pub fn branch(&self) -> Option<&[u8]> {
        (self.scheme == Scheme::Branch).then(|| self.field(1))
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.buf[start..self.ends[i] as usize]
    }

    /// Copies the method name (field 0, empty unless `Other`) and `fields` into one buffer;
    /// `lower_last` lowercases the last field (a sent-by host compares case-insensitively).
    fn pack(
        role: Role,
        scheme: Scheme,
        method: MethodKey<'_>,
        cseq: u32,
        fields: &[&[u8]],
        lower_last: bool,
    ) -> Self {
        let (class, name): (MethodClass, &[u8]) = match method {
            MethodKey::Invite | MethodKey::Ack => (MethodClass::Invite, b""),
            MethodKey::Cancel => (MethodClass::Cancel, b""),
            MethodKey::Other(name) => (MethodClass::Other, name),
        };
        let len = name.len() + fields.iter().map(|f| f.len()).sum::<usize>();
        let mut buf = BytesMut::with_capacity(len);
        let mut ends = [0u32; 6];
        buf.put_slice(name);
        ends[0] = buf.len() as u32;
        for (i, f) in fields.iter().enumerate() {
            buf.put_slice(f);
            ends[i + 1] = buf.len() as u32;
        }
        let last = ends[fields.len()];
        if lower_last {
            let start = ends[fields.len() - 1] as usize;
            buf[start..].make_ascii_lowercase();
        }
        for end in &mut ends[fields.len() + 1..] {
            *end = last;
        }
        Self {
            role,
            scheme,
            method: class,
            cseq_number: cseq,
            ends,
            buf: buf.freeze(),
        }
    }
}

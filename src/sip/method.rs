//! SIP request methods (RFC 3261 7.1 and extensions). Methods are case-sensitive.

use std::fmt;

use bytes::Bytes;

use super::scan::is_token;

/// A request method: the known ones, or an extension token kept as a `Bytes` slice.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// PUBLISH (RFC 3903).
    Publish,
    /// INFO (RFC 6086).
    Info,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// UPDATE (RFC 3311).
    Update,
    /// Any other token; `%` is not an escape here (RFC 4475 esc02).
    Extension(Bytes),
}

impl Method {
    /// Recognises a known method from its exact (case-sensitive) spelling.
    pub fn known(token: &[u8]) -> Option<Method> {
        Some(match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => return None,
        })
    }

    /// Parses a method token that lives inside `buf` (the slice is shared, not copied).
    /// Returns `None` when `token` is empty or not a token.
    pub fn from_slice_of(buf: &Bytes, token: &[u8]) -> Option<Method> {
        if let Some(m) = Method::known(token) {
            return Some(m);
        }
        (!token.is_empty() && token.iter().all(|&b| is_token(b)))
            .then(|| Method::Extension(buf.slice_ref(token)))
    }

    /// Parses a method from a string, copying extension methods.
    pub fn parse(token: &str) -> Option<Method> {
        if let Some(m) = Method::known(token.as_bytes()) {
            return Some(m);
        }
        (!token.is_empty() && token.bytes().all(is_token))
            .then(|| Method::Extension(Bytes::copy_from_slice(token.as_bytes())))
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            // Extension tokens were checked to be token characters, which are ASCII.
            Method::Extension(b) => std::str::from_utf8(b).unwrap_or("?"),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Method({})", self.as_str())
    }
}

//! SIP message model and codec over `bytes::Bytes` (RFC 3261 sections 7, 18.3, 20, 25).
//!
//! Owns: parsing datagrams and framed stream messages into a [`Message`] that keeps the
//! received buffer and a compact index of header byte ranges; typed views of the headers a
//! B2BUA touches, parsed on demand ([`headers`]); SIP/SIPS/tel URIs ([`uri`]); stream framing
//! for TCP including RFC 5626 CRLF keep-alives ([`StreamFramer`], linear in the bytes
//! received); an [`Editor`] that rewrites a message copying untouched bytes as slices;
//! builders for responses and new requests ([`build`]).
//!
//! Does not own: sockets, timers, transactions, dialogs. Nothing here reads the clock or
//! allocates per header on the parse path (one `Vec` of header entries per message).
//!
//! Validation happens once, in the parser: a [`Message`] always has a parseable start line,
//! top Via, From, To, Call-ID and CSeq (method matching the request line), a numeric
//! Content-Length when present, and a body framed by it. Other typed views are parsed lazily
//! and return `Result`/`Option`.

pub mod build;
mod error;
mod framing;
pub mod fuzzing;
mod header_name;
pub mod headers;
pub mod ids;
mod message;
mod method;
mod parser;
mod scan;
mod serialize;
pub mod uri;

pub use build::{
    ack_for_non_2xx, cancel_for, cancel_with, response_to, response_with_body, RequestBuilder,
    ACCEPT, ALLOW,
};
pub use error::ParseError;
pub use framing::{frame_stream, Frame, StreamFramer};
pub use header_name::HeaderName;
pub use message::{HeaderField, Message, Parts, Request, Response, StatusCode};
pub use method::Method;
pub use parser::{parse_datagram, parse_stream_message};
pub use serialize::{Editable, Editor};

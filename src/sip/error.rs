//! The parser's error type: cheap, `Copy`, allocation-free (`Incomplete` is routine on TCP).

use super::HeaderName;

/// Why bytes could not be parsed into a SIP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// More bytes are needed (stream framing only).
    #[error("message incomplete")]
    Incomplete,
    /// The input holds nothing but CRLF keep-alives or is empty.
    #[error("no message, only keep-alive bytes")]
    Empty,
    /// The request or status line is malformed.
    #[error("invalid start line at byte {at}")]
    StartLine {
        /// Byte offset of the problem.
        at: usize,
    },
    /// The SIP version is well-formed but not `SIP/2.0` (answer 505).
    #[error("unsupported SIP version at byte {at}")]
    Version {
        /// Byte offset of the version.
        at: usize,
    },
    /// The Request-URI is malformed.
    #[error("invalid Request-URI at byte {at}")]
    Uri {
        /// Byte offset of the URI.
        at: usize,
    },
    /// A header line or a checked header value is malformed.
    #[error("invalid {name} header at byte {at}")]
    Header {
        /// Which header (`Other` for an unknown or unparseable name).
        name: HeaderName,
        /// Byte offset of the header line or value.
        at: usize,
    },
    /// A header every request/response must carry is absent (RFC 3261 8.1.1).
    #[error("missing {name} header")]
    Missing {
        /// The missing header.
        name: HeaderName,
    },
    /// A single-valued header appears more than once.
    #[error("{name} header repeated")]
    Repeated {
        /// The repeated header.
        name: HeaderName,
    },
    /// The CSeq method differs from the request method (RFC 4475 mismatch01, mismatch02).
    #[error("CSeq method does not match the request method")]
    CSeqMismatch {
        /// The request method is an extension: answer 501 rather than 400 (RFC 4475
        /// mismatch02 prefers 501 for forward compatibility).
        extension_method: bool,
    },
    /// The body is shorter than Content-Length says (RFC 3261 18.3).
    #[error("Content-Length says {declared} bytes, {available} present")]
    ContentLength {
        /// Declared length.
        declared: usize,
        /// Bytes actually present after the header section.
        available: usize,
    },
    /// A stream message has no Content-Length (mandatory on streams, RFC 3261 18.3).
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
    /// The header section (or the whole message) exceeds the allowed size.
    #[error("message larger than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
}

impl ParseError {
    /// The SIP status a server should answer a *request* with, or `None` when there is
    /// nothing to answer (incomplete input, keep-alives).
    ///
    /// Responses that fail to parse are dropped by the caller regardless (RFC 3261 18.1.2).
    pub fn response_code(&self) -> Option<u16> {
        match self {
            ParseError::Incomplete | ParseError::Empty => None,
            ParseError::Version { .. } => Some(505),
            ParseError::TooLarge { .. } => Some(513),
            ParseError::CSeqMismatch {
                extension_method: true,
            } => Some(501),
            _ => Some(400),
        }
    }
}

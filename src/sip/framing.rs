//! TCP stream framing (RFC 3261 18.3: on a stream, Content-Length delimits a message) with
//! RFC 5626 CRLF keep-alives.
//!
//! Owns: finding where the next message of a byte stream ends, incrementally. Does not own the
//! buffer, the socket or any deadline: the transport keeps those and asks
//! [`StreamFramer::awaiting_header`] when a header section is in progress.
//!
//! The search for the blank line resumes where the previous read's search stopped, so a message
//! dribbled in one byte per read is still scanned about once: re-framing the whole buffered
//! prefix on every read cost O(n^2) in the message size (a 64 KiB header section sent one byte at
//! a time was ~2 * 10^9 bytes of searching).

use memchr::memmem;

use super::parser::{find_lf, parse_content_length};
use super::scan::is_token;
use super::{HeaderName, ParseError};

/// The blank line that ends a header section.
const END_OF_HEADERS: &[u8] = b"\r\n\r\n";

/// What the framer found at the start of a stream buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Only CRLF keep-alive bytes lead the buffer: drop `consume` bytes and, when `pong`,
    /// answer a single CRLF (a `CRLFCRLF` ping, RFC 5626 4.4.1). Call again afterwards.
    KeepAlive {
        /// Bytes to drop.
        consume: usize,
        /// Whether a CRLF pong is due.
        pong: bool,
    },
    /// A complete message occupies `buf[..len]`; hand exactly those bytes to
    /// [`super::parse_stream_message`].
    Message {
        /// Total message length (headers + body).
        len: usize,
    },
}

/// Frames the next message of a TCP byte stream, one call per read, remembering how far the
/// previous calls got.
///
/// Contract with the caller, who owns the buffer: between calls the buffer only grows at its
/// end, except that after `Ok(frame)` the caller removes exactly the frame's bytes (`consume` or
/// `len`) from its front before the next call. Errors other than [`ParseError::Incomplete`] mean
/// the stream cannot be resynchronised: close it.
#[derive(Debug, Default, Clone)]
pub struct StreamFramer {
    /// Leading bytes of the buffer already searched for [`END_OF_HEADERS`] without a match.
    searched: usize,
    /// Length of the message at the front, once its header section is complete.
    total: Option<usize>,
    /// Bytes examined by the blank-line search since creation (tests and benches read it).
    scanned: u64,
}

impl StreamFramer {
    /// Frames the message or keep-alive at the front of `buf`.
    ///
    /// Returns [`ParseError::Incomplete`] when more bytes are needed (including a lone CRLF,
    /// which may be the first half of a ping), [`ParseError::TooLarge`] when the header section
    /// or the declared message exceeds `max_size`, and [`ParseError::MissingContentLength`]
    /// when the header section is complete without a Content-Length (mandatory on streams).
    pub fn next(&mut self, buf: &[u8], max_size: usize) -> Result<Frame, ParseError> {
        let total = match self.total {
            Some(total) => total,
            None => {
                if let Some(keep_alive) = keep_alive(buf)? {
                    self.searched = 0;
                    return Ok(keep_alive);
                }
                let total = self.message_len(buf, max_size)?;
                self.total = Some(total);
                total
            }
        };
        if buf.len() < total {
            return Err(ParseError::Incomplete);
        }
        *self = StreamFramer {
            scanned: self.scanned,
            ..StreamFramer::default()
        };
        Ok(Frame::Message { len: total })
    }

    /// Whether `buf` (the caller's buffer, as last framed) holds the start of a message whose
    /// header section is not complete yet. Keep-alive CRLFs are not the start of a message.
    pub fn awaiting_header(&self, buf: &[u8]) -> bool {
        self.total.is_none() && !buf.is_empty() && !END_OF_HEADERS.starts_with(buf)
    }

    /// Bytes examined so far by the search for the end of header sections (each buffered byte
    /// about once, plus at most three per call when a read ends inside a CRLFCRLF).
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Total length of the message at the front, once its header section is in `buf`.
    fn message_len(&mut self, buf: &[u8], max_size: usize) -> Result<usize, ParseError> {
        let Some(end) = self.find_header_end(buf) else {
            return Err(if buf.len() > max_size {
                ParseError::TooLarge { limit: max_size }
            } else {
                ParseError::Incomplete
            });
        };
        let header_len = end + END_OF_HEADERS.len();
        if header_len > max_size {
            return Err(ParseError::TooLarge { limit: max_size });
        }
        let declared =
            stream_content_length(&buf[..end + 2])?.ok_or(ParseError::MissingContentLength)?;
        let total = header_len.saturating_add(declared);
        if total > max_size {
            return Err(ParseError::TooLarge { limit: max_size });
        }
        Ok(total)
    }

    /// Offset of the blank line, searching only bytes not searched before (and the few at the
    /// end of the searched part that may begin a CRLFCRLF split across reads).
    fn find_header_end(&mut self, buf: &[u8]) -> Option<usize> {
        // `min`: a caller breaking the contract gets a wrong answer at worst, never a panic.
        let searched = self.searched.min(buf.len());
        let from = searched - partial_end(&buf[..searched]);
        let window = &buf[from..];
        let found = memmem::find(window, END_OF_HEADERS);
        let examined = found.map_or(window.len(), |i| i + END_OF_HEADERS.len());
        self.scanned += examined as u64;
        if found.is_none() {
            self.searched = buf.len();
        }
        found.map(|i| from + i)
    }
}

/// Frames the next message of a TCP/TLS byte stream from scratch (see [`StreamFramer::next`]
/// for the results). Each call searches the whole buffer: a transport reading a stream keeps a
/// [`StreamFramer`] instead.
pub fn frame_stream(buf: &[u8], max_size: usize) -> Result<Frame, ParseError> {
    StreamFramer::default().next(buf, max_size)
}

/// Leading CRLF keep-alives (RFC 5626 4.4.1): `Some` when the buffer starts with them,
/// `Err(Incomplete)` for a lone CRLF or CRLF CR that may still become a ping.
fn keep_alive(buf: &[u8]) -> Result<Option<Frame>, ParseError> {
    let mut skip = 0;
    while buf[skip..].starts_with(b"\r\n") {
        skip += 2;
    }
    match skip {
        0 => Ok(None),
        2 if buf.len() <= 3 => Err(ParseError::Incomplete),
        2 => Ok(Some(Frame::KeepAlive {
            consume: 2,
            pong: false,
        })),
        _ => Ok(Some(Frame::KeepAlive {
            consume: skip,
            pong: true,
        })),
    }
}

/// Length of the longest proper prefix of CRLFCRLF that `searched` ends with: those bytes may
/// complete a blank line with the next read, so the search starts again at them.
fn partial_end(searched: &[u8]) -> usize {
    (1..END_OF_HEADERS.len())
        .rev()
        .find(|&k| searched.ends_with(&END_OF_HEADERS[..k]))
        .unwrap_or(0)
}

/// Finds and checks Content-Length in a header section (start line included).
fn stream_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    let mut pos = find_lf(head, 0).map_or(head.len(), |i| i + 1);
    while pos < head.len() {
        let nl = find_lf(head, pos).unwrap_or(head.len());
        let line = &head[pos..nl];
        let name_end = line
            .iter()
            .position(|&b| !is_token(b))
            .unwrap_or(line.len());
        if HeaderName::from_bytes(&line[..name_end]) == HeaderName::ContentLength {
            let rest = &line[name_end..];
            let value = rest
                .iter()
                .position(|&b| b == b':')
                .map(|c| &rest[c + 1..])
                .ok_or(ParseError::Header {
                    name: HeaderName::ContentLength,
                    at: pos,
                })?;
            let n = parse_content_length(value).ok_or(ParseError::Header {
                name: HeaderName::ContentLength,
                at: pos,
            })?;
            if found.is_some_and(|f| f != n) {
                return Err(ParseError::Repeated {
                    name: HeaderName::ContentLength,
                });
            }
            found = Some(n);
        }
        pos = nl + 1;
    }
    Ok(found)
}

#[cfg(test)]
mod tests;

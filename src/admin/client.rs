//! A minimal HTTP/1.1 client for the admin API, used by `callgate status` and the admin tests.
//!
//! One request per connection (`Connection: close`), plain HTTP only (the admin API is meant for
//! loopback or a private network), a size cap on the response and one timeout around the whole
//! exchange. Reads `Content-Length`, chunked and close-delimited bodies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::StatusError;

/// Largest response accepted, headers and body together.
// `/counters` of a 100 000-extension tenancy is ~25 MB of JSON; the cap only guards against a
// runaway peer, so it sits well above that.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Time allowed for one request: connect, write, read to the end.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the admin API is: `http://host:port[/prefix]` (the scheme may be omitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    host: String,
    port: u16,
    /// The authority as written, for the `Host` header.
    authority: String,
    /// Path prefix without a trailing `/` (empty for the root).
    prefix: String,
}

impl AdminUrl {
    /// Parses `url`; only `http` is supported.
    pub fn parse(url: &str) -> Result<Self, StatusError> {
        let invalid = || StatusError::InvalidUrl {
            url: url.to_owned(),
        };
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(invalid()),
            None => url,
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(invalid)?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| invalid())?,
            None => 80,
        };
        if host.is_empty() || authority.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(invalid());
        }
        Ok(AdminUrl {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }
}

/// A response: status code, headers (names lower-cased) and the decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` (path starting with `/`) with an optional bearer token and an empty body,
/// and reads the whole response, within [`REQUEST_TIMEOUT`].
pub async fn request(
    url: &AdminUrl,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<HttpResponse, StatusError> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(url, method, path, token))
        .await
        .map_err(|_| StatusError::Timeout {
            path: path.to_owned(),
        })?
}

async fn exchange(
    url: &AdminUrl,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<HttpResponse, StatusError> {
    // Visible ASCII only: a space or CRLF in the path would break the request line.
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StatusError::InvalidPath {
            path: path.to_owned(),
        });
    }
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\
         Connection: close\r\nContent-Length: 0\r\n",
        url.prefix, url.authority
    );
    if let Some(token) = token {
        // A CR or LF in the token would inject header lines.
        if token.bytes().any(|b| b.is_ascii_control()) {
            return Err(StatusError::InvalidToken);
        }
        head.push_str("Authorization: Bearer ");
        head.push_str(token);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| StatusError::Connect {
            addr: format!("{}:{}", url.host, url.port),
            source,
        })?;
    stream.write_all(head.as_bytes()).await?;

    let mut raw = Vec::with_capacity(8 * 1024);
    // Read one byte past the cap so "exactly at the cap" and "over it" differ.
    let mut limited = (&mut stream).take(MAX_RESPONSE_BYTES as u64 + 1);
    limited.read_to_end(&mut raw).await?;
    if raw.len() > MAX_RESPONSE_BYTES {
        return Err(StatusError::TooLarge {
            limit: MAX_RESPONSE_BYTES,
        });
    }
    parse_response(&raw).ok_or_else(|| StatusError::MalformedResponse {
        path: path.to_owned(),
    })
}

/// Parses a complete response read until the peer closed.
fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect::<Option<Vec<_>>>()?;
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    response.body = if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body)?
    } else if let Some(len) = response.header("content-length") {
        body.get(..len.parse::<usize>().ok()?)?.to_vec()
    } else {
        body.to_vec()
    };
    Some(response)
}

/// Decodes a chunked body (RFC 9112 7.1); trailers are ignored.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_hex = size_field.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_url_accepts_scheme_prefix_and_ipv6() {
        let u = AdminUrl::parse("http://127.0.0.1:9090/admin/").expect("valid url");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 9090));
        assert_eq!(u.prefix, "/admin");
        let u = AdminUrl::parse("[::1]:8080").expect("valid url");
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        let u = AdminUrl::parse("localhost").expect("valid url");
        assert_eq!((u.port, u.prefix.as_str()), (80, ""));
    }

    #[test]
    fn admin_url_refuses_https_and_bad_ports() {
        assert!(AdminUrl::parse("https://127.0.0.1:9090").is_err());
        assert!(AdminUrl::parse("127.0.0.1:http").is_err());
        assert!(AdminUrl::parse("http://:80").is_err());
    }

    #[test]
    fn response_with_content_length_is_cut_at_the_length() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
            .expect("valid response");
        assert_eq!((r.status, r.body.as_slice()), (200, b"ok".as_slice()));
    }

    #[test]
    fn chunked_response_is_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw).expect("valid response");
        assert_eq!(r.body, b"abcde");
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_none()
        );
    }

    #[test]
    fn garbage_is_not_a_response() {
        assert!(parse_response(b"SIP/2.0 200 OK\r\n\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_none());
    }
}

//! The admin API's HTTP/1.1 client, used by `callgate status`, `callgate reload` and the tests:
//! hyper's client connection over one TCP connection per request, plain HTTP only (the admin API
//! is meant for loopback or a private network), a size cap on the body and one timeout around the
//! whole exchange.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
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
    request_with_body(url, method, path, token, "").await
}

/// [`request`] with a `text/plain` body (`PUT /log`).
pub async fn request_with_body(
    url: &AdminUrl,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<HttpResponse, StatusError> {
    let exchange = exchange(
        url,
        method,
        path,
        token,
        Bytes::copy_from_slice(body.as_bytes()),
    );
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| StatusError::Timeout {
            path: path.to_owned(),
        })?
}

/// `GET path` decoded as JSON: 401 is [`StatusError::Unauthorized`], any other non-200 status
/// [`StatusError::Http`] (`callgate explain` reading `/counters` and `/registrations`).
pub async fn get_json<T: serde::de::DeserializeOwned>(
    url: &AdminUrl,
    path: &str,
    token: Option<&str>,
) -> Result<T, StatusError> {
    let response = request(url, "GET", path, token).await?;
    match response.status {
        200 => serde_json::from_slice(&response.body).map_err(|source| StatusError::Json {
            path: path.to_owned(),
            source,
        }),
        401 => Err(StatusError::Unauthorized),
        status => Err(StatusError::Http {
            path: path.to_owned(),
            status,
        }),
    }
}

async fn exchange(
    url: &AdminUrl,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Bytes,
) -> Result<HttpResponse, StatusError> {
    let malformed = || StatusError::MalformedResponse {
        path: path.to_owned(),
    };
    let request = build(url, method, path, token, body)?;
    let stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| StatusError::Connect {
            addr: format!("{}:{}", url.host, url.port),
            source,
        })?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|_| malformed())?;
    // The connection is driven beside the request; it ends with the response (or the timeout).
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|_| malformed());
    let result = match response {
        Ok(r) => read(r, path).await,
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

/// The request, refusing a path or token that would break its head.
fn build(
    url: &AdminUrl,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, StatusError> {
    let invalid_path = || StatusError::InvalidPath {
        path: path.to_owned(),
    };
    // Visible ASCII only: a space or CRLF in the path would break the request line.
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid_path());
    }
    let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|_| invalid_path())?;
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", url.prefix))
        .header(HOST, url.authority.as_str())
        .header(ACCEPT, "application/json");
    if !body.is_empty() {
        builder = builder.header(CONTENT_TYPE, "text/plain");
    }
    if let Some(token) = token {
        // A CR or LF in the token would inject header lines.
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .filter(|_| !token.bytes().any(|b| b.is_ascii_control()))
            .ok_or(StatusError::InvalidToken)?;
        builder = builder.header(AUTHORIZATION, value);
    }
    builder.body(Full::new(body)).map_err(|_| invalid_path())
}

/// Status, headers (names lower-case, as `http` keeps them) and the whole body, capped at
/// [`MAX_RESPONSE_BYTES`].
async fn read(
    response: hyper::Response<hyper::body::Incoming>,
    path: &str,
) -> Result<HttpResponse, StatusError> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_owned(), value)
        })
        .collect();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                StatusError::TooLarge {
                    limit: MAX_RESPONSE_BYTES,
                }
            } else {
                StatusError::MalformedResponse {
                    path: path.to_owned(),
                }
            }
        })?
        .to_bytes()
        .to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
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
    fn a_path_or_token_that_would_break_the_head_is_refused_before_connecting() {
        let url = AdminUrl::parse("127.0.0.1:9").expect("valid url");
        let build = |path, token| build(&url, "GET", path, token, Bytes::new());
        assert!(matches!(
            build("/calls HTTP/1.1\r\nX: y", None),
            Err(StatusError::InvalidPath { .. })
        ));
        assert!(matches!(
            build("calls", None),
            Err(StatusError::InvalidPath { .. })
        ));
        assert!(matches!(
            build("/calls", Some("t\r\nX-Injected: 1")),
            Err(StatusError::InvalidToken)
        ));
        let req = build("/calls", Some("s3cret")).expect("a request");
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer s3cret");
        assert_eq!(req.headers()[HOST], "127.0.0.1:9");
    }

    #[tokio::test]
    async fn a_peer_that_answers_garbage_is_a_malformed_response() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"SIP/2.0 200 OK\r\n\r\n").await;
            }
        });
        let url = AdminUrl::parse(&addr.to_string()).expect("valid url");
        let r = request(&url, "GET", "/health", None).await;
        assert!(
            matches!(r, Err(StatusError::MalformedResponse { .. })),
            "{r:?}"
        );
    }
}

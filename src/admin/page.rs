//! `GET /`: the live admin page. One self-contained HTML document (inline CSS and script, no
//! external asset, so it works on a server without internet) that fetches `/counters`, `/calls`,
//! `/registrations` and `/trunks` every 2 s and renders them. Past 1 500 counters it leaves out
//! users and extensions with nothing in use, which a large tenancy has by the thousand.
//!
//! Owns: the page and the headers it is served with. Does not own: the token check (the page
//! sits behind the same middleware as the JSON endpoints, see `api.rs`) nor the data (the JSON
//! endpoints). The script inserts data with `textContent` and `setAttribute` only, so nothing
//! from the API is ever parsed as HTML; the Content-Security-Policy forbids any other script,
//! style, frame or fetch target anyway.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page, compiled in.
const PAGE: &str = include_str!("page.html");

/// Inline script and style only, fetches to the admin API itself, no framing.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'none'";

/// `GET /`: the page. Its URL may carry the token, so it is neither cached nor sent as a referrer.
pub(super) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_never_parses_data_as_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!PAGE.contains(sink), "page.html uses {sink}");
        }
        assert!(!PAGE.contains("eval("), "page.html uses eval");
    }

    #[test]
    fn page_loads_nothing_from_elsewhere() {
        for external in ["http://", "https://", "//cdn", "<link", "src=\""] {
            assert!(!PAGE.contains(external), "page.html refers to {external}");
        }
    }

    #[tokio::test]
    async fn page_is_html_with_a_strict_policy() {
        let response = page().await;
        let headers = response.headers();
        let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            value(header::CONTENT_TYPE),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(value(header::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
        let csp = value(header::CONTENT_SECURITY_POLICY).unwrap_or_default();
        assert!(csp.starts_with("default-src 'none'; script-src 'unsafe-inline';"));
        assert!(csp.contains("connect-src 'self'"), "{csp}");
    }
}

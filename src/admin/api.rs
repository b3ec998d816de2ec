//! The admin HTTP server (axum): the endpoints of spec operations.md and the bearer-token check.
//!
//! Every endpoint but `GET /health` requires `Authorization: Bearer <token>` when a token is
//! configured; the comparison takes the same time wherever the first differing byte is. `GET /`
//! (the admin page, which a browser opens by navigation and cannot add a header to) also takes
//! the token as a `?token=` query parameter. The token is never logged and never printed by
//! `Debug`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use super::{AdminBackend, BanView, CallView, CounterView, Metrics, RegistrationView, TrunkView};

/// The content type of `GET /metrics` (prometheus-client encodes OpenMetrics text).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Errors of the admin API server.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Reading the listener's local address failed.
    #[error("admin listener has no local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// The HTTP server stopped on an I/O error.
    #[error("admin API server on {addr} failed: {source}")]
    Serve {
        /// The address the server listened on.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The bearer token, shared by the running server and the reload that may change it: a reload
/// swaps it in at once, so the next request with the old token gets 401.
#[derive(Clone, Default)]
pub struct AdminToken(Arc<ArcSwapOption<String>>);

impl AdminToken {
    /// A token cell holding `token` (`None`: the API is open).
    pub fn new(token: Option<String>) -> Self {
        AdminToken(Arc::new(ArcSwapOption::from(token.map(Arc::new))))
    }

    /// Replaces the token for every request from now on.
    pub fn set(&self, token: Option<String>) {
        self.0.store(token.map(Arc::new));
    }

    /// Sets `token` and returns whether it differs from the one before.
    pub fn replace(&self, token: Option<String>) -> bool {
        let changed = self.current().as_deref() != token.as_ref();
        if changed {
            self.set(token);
        }
        changed
    }

    /// True when requests need a token.
    pub fn is_set(&self) -> bool {
        self.0.load().is_some()
    }

    fn current(&self) -> Option<Arc<String>> {
        self.0.load_full()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself (style guide 5).
        let shown = if self.is_set() { "<redacted>" } else { "none" };
        f.debug_tuple("AdminToken").field(&shown).finish()
    }
}

/// What the handlers share: the daemon, the metrics and the bearer token.
#[derive(Clone)]
pub struct AdminState {
    backend: Arc<dyn AdminBackend>,
    metrics: Arc<Metrics>,
    token: AdminToken,
}

impl AdminState {
    /// State for [`serve`]. `token: None` leaves the API open (bind it to loopback then).
    pub fn new(
        backend: Arc<dyn AdminBackend>,
        metrics: Arc<Metrics>,
        token: Option<String>,
    ) -> Self {
        Self::with_token(backend, metrics, AdminToken::new(token))
    }

    /// State for [`serve`] reading its token from `token`, which the caller may change later.
    pub fn with_token(
        backend: Arc<dyn AdminBackend>,
        metrics: Arc<Metrics>,
        token: AdminToken,
    ) -> Self {
        AdminState {
            backend,
            metrics,
            token,
        }
    }
}

impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Serves the admin API on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    let addr = listener.local_addr().map_err(AdminError::LocalAddr)?;
    tracing::info!(admin.addr = %addr, auth = state.token.is_set(), "admin api listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| AdminError::Serve { addr, source })
}

fn router(state: AdminState) -> Router {
    let guarded = Router::new()
        .route("/", get(super::page::page))
        .route("/metrics", get(metrics))
        .route("/calls", get(calls))
        .route("/calls/{id}", delete(end_call))
        .route("/counters", get(counters))
        .route("/registrations", get(registrations))
        .route("/trunks", get(trunks))
        .route("/reload", post(reload))
        .route("/bans", get(bans))
        .route("/bans/{ip}", delete(unban))
        .route("/log", get(log_filter).put(set_log_filter))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .merge(guarded)
        .with_state(state)
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    match state.token.current() {
        Some(token) if !authorized(&request, &token) => {
            tracing::debug!(path = %request.uri().path(), "admin request without a valid token");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                "unauthorized\n",
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

/// The bearer header, or on `GET /` only a `token` query parameter: the page's URL is the one
/// a browser can carry a token in, while a token in another URL would end up in proxy logs and
/// shell histories for no gain.
fn authorized(request: &Request, token: &str) -> bool {
    bearer_matches(request.headers(), token)
        || (is_page_request(request.method(), request.uri())
            && query_token_matches(request.uri(), token))
}

fn is_page_request(method: &Method, uri: &Uri) -> bool {
    (method == Method::GET || method == Method::HEAD) && uri.path() == "/"
}

/// The first `token` parameter of the query, percent-decoded, compared in constant time.
fn query_token_matches(uri: &Uri, token: &str) -> bool {
    let Some(query) = uri.query() else {
        return false;
    };
    let presented = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .and_then(percent_decode);
    presented.is_some_and(|p| constant_time_eq(&p, token.as_bytes()))
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space, `%XX` a byte); `None` on
/// a malformed escape.
fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => hex_digit(bytes.next()?)? << 4 | hex_digit(bytes.next()?)?,
            b => b,
        });
    }
    Some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    // Not `u8::from_str_radix`, which takes a sign: `%+1` is no escape.
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    // The scheme is case-insensitive (RFC 9110 11.1); the token is not.
    match value.split_at_checked(7) {
        Some((scheme, presented)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
            constant_time_eq(presented, token.as_bytes())
        }
        _ => false,
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess was
/// right. The length is not secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

async fn health(State(state): State<AdminState>) -> Response {
    if state.backend.health() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let (counters, trunks) = (state.backend.counters(), state.backend.trunks());
    match state.metrics.encode_with_trunks(counters, trunks) {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => {
            tracing::warn!("metrics encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn calls(State(state): State<AdminState>) -> Json<Vec<CallView>> {
    Json(state.backend.calls())
}

async fn counters(State(state): State<AdminState>) -> Json<Vec<CounterView>> {
    Json(state.backend.counters())
}

async fn registrations(State(state): State<AdminState>) -> Json<Vec<RegistrationView>> {
    Json(state.backend.registrations())
}

async fn trunks(State(state): State<AdminState>) -> Json<Vec<TrunkView>> {
    Json(state.backend.trunks())
}

async fn bans(State(state): State<AdminState>) -> Json<Vec<BanView>> {
    Json(state.backend.bans())
}

async fn unban(State(state): State<AdminState>, Path(ip): Path<String>) -> Response {
    if state.backend.unban(&ip) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_json(StatusCode::NOT_FOUND, "no such ban")
    }
}

async fn reload(State(state): State<AdminState>) -> Response {
    let backend = Arc::clone(&state.backend);
    match tokio::task::spawn_blocking(move || backend.reload()).await {
        Ok(result) if result.accepted => (StatusCode::OK, Json(result)).into_response(),
        Ok(result) => (StatusCode::UNPROCESSABLE_ENTITY, Json(result)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reload task failed");
            error_json(StatusCode::INTERNAL_SERVER_ERROR, "reload failed")
        }
    }
}

/// `GET /log`: the log filter directive in force.
async fn log_filter() -> Response {
    match crate::telemetry::log_filter() {
        Some(filter) => Json(json!({ "filter": filter })).into_response(),
        None => error_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "logging is not set up here",
        ),
    }
}

/// `PUT /log` with a filter directive as the body (`info`, `warn,callgate::auth=debug`): applied
/// at once, until the next one or a restart (`--log` is what a start uses).
async fn set_log_filter(body: String) -> Response {
    let filter = body.trim();
    // Logged before it applies: a new filter of `off` must not hide its own record.
    let old = crate::telemetry::log_filter().unwrap_or_default();
    tracing::warn!(old = %old, new = filter, "log filter change asked by the admin api");
    match crate::telemetry::set_log_filter(filter) {
        Ok(()) => Json(json!({ "filter": filter })).into_response(),
        Err(crate::telemetry::TelemetryError::NotInstalled) => error_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "logging is not set up here",
        ),
        Err(e) => {
            let message = e.to_string();
            (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
        }
    }
}

async fn end_call(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    if state.backend.end_call(&id) {
        tracing::info!(call = %id, "call ended by the admin api");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_json(StatusCode::NOT_FOUND, "no such call")
    }
}

fn error_json(status: StatusCode, message: &'static str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one state the real daemon cannot be put in on demand: a stalled shard.
    struct Stalled;

    impl AdminBackend for Stalled {
        fn health(&self) -> bool {
            false
        }
        fn calls(&self) -> Vec<CallView> {
            Vec::new()
        }
        fn counters(&self) -> Vec<CounterView> {
            Vec::new()
        }
        fn registrations(&self) -> Vec<RegistrationView> {
            Vec::new()
        }
        fn reload(&self) -> super::super::ReloadResult {
            super::super::ReloadResult::refused(Vec::new())
        }
        fn end_call(&self, _: &str) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn health_is_503_when_the_backend_is_not_healthy() {
        let state = AdminState::new(Arc::new(Stalled), Arc::new(Metrics::new()), None);
        let response = health(State(state)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn token_cell_swaps_and_redacts() {
        let token = AdminToken::new(Some("old".into()));
        assert!(!token.replace(Some("old".into())), "same token: no change");
        assert!(token.replace(Some("new".into())));
        assert_eq!(token.current().as_deref().map(String::as_str), Some("new"));
        assert_eq!(format!("{token:?}"), "AdminToken(\"<redacted>\")");
        assert!(token.replace(None) && !token.is_set());
    }

    #[test]
    fn constant_time_eq_matches_only_equal_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_token_is_not() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bEaReR s3cret"),
        );
        assert!(bearer_matches(&headers, "s3cret"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer S3cret"),
        );
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!bearer_matches(&headers, "s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }

    fn request(method: Method, uri: &str, bearer: Option<&str>) -> Request {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(b) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {b}"));
        }
        builder
            .body(axum::body::Body::empty())
            .expect("valid test request")
    }

    #[test]
    fn the_page_takes_the_token_from_the_header_or_its_query() {
        let ok = |method, uri, bearer| authorized(&request(method, uri, bearer), "s3cret");
        assert!(ok(Method::GET, "/", Some("s3cret")));
        assert!(ok(Method::GET, "/?token=s3cret", None));
        assert!(ok(Method::HEAD, "/?token=s3cret", None));
        assert!(ok(Method::GET, "/?refresh=1&token=s3cret", None));
        assert!(ok(Method::GET, "/?token=s3%63ret", None), "percent-decoded");
        assert!(!ok(Method::GET, "/", None));
        assert!(!ok(Method::GET, "/?token=wrong", None));
        // Either credential suffices; a stale header does not spoil a good query token.
        assert!(ok(Method::GET, "/?token=s3cret", Some("wrong")));
        assert!(!ok(Method::GET, "/?token=S3CRET", None));
        assert!(!ok(Method::GET, "/?token=s3cre", None));
        assert!(!ok(Method::GET, "/?token=", None));
        assert!(!ok(Method::GET, "/?xtoken=s3cret", None));
    }

    #[test]
    fn a_query_token_opens_only_the_page() {
        let ok = |method, uri| authorized(&request(method, uri, None), "s3cret");
        assert!(!ok(Method::GET, "/counters?token=s3cret"));
        assert!(!ok(Method::GET, "/calls?token=s3cret"));
        assert!(!ok(Method::DELETE, "/calls/1?token=s3cret"));
        assert!(!ok(Method::POST, "/?token=s3cret"));
        assert!(!ok(Method::POST, "/reload?token=s3cret"));
        assert!(authorized(
            &request(Method::GET, "/counters", Some("s3cret")),
            "s3cret"
        ));
    }

    #[test]
    fn query_values_decode_like_forms_and_refuse_bad_escapes() {
        assert_eq!(
            percent_decode("a+b%2Fc%2f").as_deref(),
            Some(&b"a b/c/"[..])
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("abc%4"), None);
        assert_eq!(percent_decode("").as_deref(), Some(&b""[..]));
    }
}

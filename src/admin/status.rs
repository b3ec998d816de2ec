//! `callgate status`: reads `/calls`, `/counters` and `/registrations` from a running daemon's
//! admin API and renders them as text tables.
//!
//! Exit codes are `main.rs`'s decision; this module returns the text or a [`StatusError`].

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::client::{self, AdminUrl};
use super::{CallView, CounterView, RegistrationView};

/// The environment variable `callgate status` reads the admin bearer token from.
pub const TOKEN_ENV: &str = "CALLGATE_ADMIN_TOKEN";

/// A counter is listed by `callgate status` from this share of its limit, in percent.
pub const NEAR_LIMIT_PERCENT: u64 = 80;

/// Why `callgate status` could not read the daemon.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The `--admin` URL is not `http://host:port[/prefix]`.
    #[error("invalid admin URL {url:?} (expected http://host:port)")]
    InvalidUrl {
        /// The URL as given.
        url: String,
    },
    /// The request path holds characters not allowed in a request line.
    #[error("invalid request path {path:?}")]
    InvalidPath {
        /// The path as given.
        path: String,
    },
    /// The token holds control characters.
    #[error("the admin token contains control characters")]
    InvalidToken,
    /// The daemon is not reachable.
    #[error("cannot connect to the admin API at {addr}: {source}")]
    Connect {
        /// `host:port` tried.
        addr: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The connection failed after it was established.
    #[error("admin API connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// No complete answer within the request timeout.
    #[error("admin API did not answer {path} in time")]
    Timeout {
        /// The request path.
        path: String,
    },
    /// The answer exceeded the size cap.
    #[error("admin API answer larger than {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The answer is not an HTTP/1.x response.
    #[error("malformed HTTP response to {path}")]
    MalformedResponse {
        /// The request path.
        path: String,
    },
    /// The API refused the token (or none was given while one is required).
    #[error("admin API refused the token (set {TOKEN_ENV})")]
    Unauthorized,
    /// Any other non-success status.
    #[error("admin API answered {path} with status {status}")]
    Http {
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
    },
    /// The body is not the expected JSON.
    #[error("admin API answered {path} with unexpected JSON: {source}")]
    Json {
        /// The request path.
        path: String,
        /// The decoding error.
        source: serde_json::Error,
    },
}

/// Reads the daemon's state from the admin API at `url` and renders it as text.
pub async fn status(url: &str, token: Option<&str>) -> Result<String, StatusError> {
    let url = AdminUrl::parse(url)?;
    let calls: Vec<CallView> = get_json(&url, "/calls", token).await?;
    let counters: Vec<CounterView> = get_json(&url, "/counters", token).await?;
    let registrations: Vec<RegistrationView> = get_json(&url, "/registrations", token).await?;
    // A clock before 1970 only makes ages read 0s.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(render(&calls, &counters, &registrations, now))
}

async fn get_json<T: DeserializeOwned>(
    url: &AdminUrl,
    path: &str,
    token: Option<&str>,
) -> Result<T, StatusError> {
    let response = client::request(url, "GET", path, token).await?;
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

/// Renders the three tables; `now_unix_secs` dates the calls' ages.
pub fn render(
    calls: &[CallView],
    counters: &[CounterView],
    registrations: &[RegistrationView],
    now_unix_secs: u64,
) -> String {
    let mut out = String::new();
    let rows = calls.iter().map(|c| call_row(c, now_unix_secs)).collect();
    section(
        &mut out,
        "active calls",
        &["ID", "FROM", "TO", "STATE", "AGE"],
        rows,
    );

    let mut near: Vec<(u64, &CounterView)> = counters
        .iter()
        .filter_map(|c| Some((percent_of_limit(c)?, c)))
        .filter(|(pct, _)| *pct >= NEAR_LIMIT_PERCENT)
        .collect();
    near.sort_by_key(|(pct, _)| std::cmp::Reverse(*pct));
    let rows = near
        .into_iter()
        .map(|(pct, c)| {
            let limit = c.limit.unwrap_or_default();
            let (level, name, counter) = (&c.level, &c.name, &c.counter);
            let used = format!("{}/{limit}", c.used);
            vec![
                level.clone(),
                name.clone(),
                counter.clone(),
                used,
                format!("{pct}%"),
            ]
        })
        .collect();
    let title = format!("counters at or above {NEAR_LIMIT_PERCENT}% of their limit");
    section(
        &mut out,
        &title,
        &["LEVEL", "NAME", "COUNTER", "USED/LIMIT", "%"],
        rows,
    );

    let rows = registrations
        .iter()
        .map(|r| {
            let (contact, source, transport) = (&r.contact, &r.source, &r.transport);
            let who = match &r.trunk {
                Some(trunk) => format!("trunk {trunk}"),
                None => r.extension.clone(),
            };
            let expires = format!("{}s", r.expires_secs);
            vec![
                who,
                contact.clone(),
                source.clone(),
                transport.clone(),
                expires,
            ]
        })
        .collect();
    let headers = ["EXTENSION", "CONTACT", "SOURCE", "TRANSPORT", "EXPIRES"];
    section(&mut out, "registrations", &headers, rows);
    out
}

/// `used` as a whole percentage of a finite, non-zero limit. A limit of 0 ("no such calls") is
/// not "near" anything and is left out.
fn percent_of_limit(c: &CounterView) -> Option<u64> {
    let limit = u64::from(c.limit.filter(|l| *l > 0)?);
    Some(u64::from(c.used) * 100 / limit)
}

/// From and To of the A leg; the state of every leg, `a/b`.
fn call_row(call: &CallView, now_unix_secs: u64) -> Vec<String> {
    let a = call.legs.first();
    let field = |f: fn(&super::LegView) -> &String| a.map(f).cloned().unwrap_or_default();
    let state = call
        .legs
        .iter()
        .map(|l| l.state.as_str())
        .collect::<Vec<_>>()
        .join("/");
    let age = now_unix_secs.saturating_sub(call.started_at_unix_secs);
    vec![
        call.id.clone(),
        field(|l| &l.from),
        field(|l| &l.to),
        state,
        format_age(age),
    ]
}

fn format_age(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// Writes `title (n)` and an aligned table, or `title: none`.
fn section(out: &mut String, title: &str, headers: &[&str], rows: Vec<Vec<String>>) {
    if !out.is_empty() {
        out.push('\n');
    }
    if rows.is_empty() {
        let _ = writeln!(out, "{title}: none");
        return;
    }
    let _ = writeln!(out, "{title} ({})", rows.len());
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(&rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_compact() {
        assert_eq!(format_age(42), "42s");
        assert_eq!(format_age(62), "1m02s");
        assert_eq!(format_age(3723), "1h02m03s");
    }

    #[test]
    fn counters_below_eighty_percent_unlimited_or_zero_are_not_listed() {
        let counter = |used, limit| CounterView {
            parent: None,
            level: "organization".into(),
            name: "acme".into(),
            counter: "public".into(),
            used,
            limit,
            node_used: None,
            cluster_used: None,
        };
        assert_eq!(percent_of_limit(&counter(8, Some(10))), Some(80));
        assert_eq!(percent_of_limit(&counter(8, None)), None);
        assert_eq!(percent_of_limit(&counter(0, Some(0))), None);
        let text = render(&[], &[counter(7, Some(10)), counter(3, None)], &[], 0);
        assert!(
            text.contains("counters at or above 80% of their limit: none"),
            "{text}"
        );
        let text = render(&[], &[counter(8, Some(10))], &[], 0);
        assert!(text.contains("8/10") && text.contains("80%"), "{text}");
    }
}

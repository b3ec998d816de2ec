//! `callgate explain`: what would happen to one call from a source address to a dialled number,
//! like `nginx -t` for a single call (issue 19).
//!
//! Owns the explanation: who the source is (routing's [`identify_with`]), the route
//! ([`routing::route`]), every counter the call would occupy ([`routing::plan::plan`] and
//! [`Generation::path`]) with its used/limit, and the verdict with the exact SIP response the
//! b2bua would send (`b2bua::setup`'s `refuse_admission` and `refuse_route`). The admission is
//! decided by [`admission`], a pure copy of the limiter's all-or-nothing rule over numbers: no
//! counter is acquired anywhere. Does not own where the numbers come from: `main.rs` passes 0 for
//! a file alone, or the live `GET /counters` of a daemon read by [`live`].
//!
//! The inputs are a [`Generation`] built from the snapshot (for paths and limits), the
//! registrar's bindings (empty offline), a `now`, and a lookup of the units in use per counter.

use std::net::SocketAddr;
use std::time::Instant;

use serde::Serialize;

use crate::config::model::{ExtId, Snapshot, TrunkId};
use crate::limits::{CounterKind, Generation, Level};
use crate::registrar::LocationStore;
use crate::routing::plan::{self, Reach, TrunkAvailability};
use crate::routing::{self, identify_with, Caller, RouteError};

mod admission;
pub mod live;
mod render;
mod route_view;
#[cfg(test)]
mod tests;

pub use admission::{CounterLine, Step, StepOutcome};
pub use route_view::{Destination, Identification, RouteView};

/// The SIP port assumed when `--from` gives an IP alone.
pub const DEFAULT_PORT: u16 = 5060;

/// Units in use on a counter, by its level, entity name and kind (0 for a file alone).
pub type UsedLookup<'a> = dyn Fn(Level, &str, CounterKind) -> u32 + 'a;

/// What the explanation is computed over.
pub struct Context<'a> {
    /// Counters and the configuration they were built from.
    pub generation: &'a Generation,
    /// Registered phones and gateways (empty when explaining from a file alone).
    pub location: &'a LocationStore,
    /// The time bindings are judged at.
    pub now: Instant,
    /// Trunks' availability (health probes, registration); `AllAvailable` from a file alone.
    pub trunks: &'a dyn TrunkAvailability,
    /// Where the used counts come from, said in the output (`file` or the admin URL).
    pub counts_from: String,
}

/// The call asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Source address of the INVITE.
    pub source: SocketAddr,
    /// Request-URI user: the dialled number or DID.
    pub number: String,
    /// `number@domain` the INVITE is taken to authenticate as (`--as`): a phone, or one of the
    /// PBX extensions sharing an address that must authenticate. Credentials are not checked.
    pub authenticated_as: Option<String>,
}

/// What would happen to the call: each step of its set-up and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Source address asked about.
    pub source: String,
    /// Number asked about.
    pub number: String,
    /// `file` (used counts 0) or the admin URL the used counts were read from.
    pub counts_from: String,
    /// Who the source is.
    pub caller: Identification,
    /// Where the call goes; `None` when the caller was not identified.
    pub route: Option<RouteView>,
    /// Each set of counters the call would acquire, in the b2bua's order.
    pub path: Vec<Step>,
    /// Ring-rule targets left out of the plan, and why (a phone without a registration, a
    /// number no outbound rule matches).
    pub skipped: Vec<String>,
    /// Admitted or refused, with the SIP response.
    pub verdict: Verdict,
}

/// The outcome of the call's set-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True when the call would be admitted and its INVITEs sent.
    pub admitted: bool,
    /// Final response to the caller when refused (`None` when admitted).
    pub status: Option<u16>,
    /// Its reason phrase.
    pub phrase: Option<String>,
    /// The `Reason` header value of a refusal by a counter.
    pub reason_header: Option<String>,
    /// The `Warning` header value of a refusal by a counter.
    pub warning_header: Option<String>,
    /// The reason in words.
    pub reason: String,
    /// What would ring when admitted (targets, and the trunk each goes through).
    pub rings: Vec<String>,
}

impl Verdict {
    fn refused(status: u16, reason: String) -> Verdict {
        Verdict {
            admitted: false,
            status: Some(status),
            phrase: Some(reason_phrase(status).to_owned()),
            reason_header: None,
            warning_header: None,
            reason,
            rings: Vec::new(),
        }
    }
}

/// Parses `--from`: `IP:PORT`, `[IPv6]:PORT`, or an IP alone (port [`DEFAULT_PORT`]).
pub fn parse_source(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("`{text}` is not an IP address or IP:PORT"))
}

/// Explains `question` over `ctx`, reading units in use from `used`.
pub fn explain(ctx: &Context<'_>, question: &Question, used: &UsedLookup<'_>) -> Explanation {
    let s: &Snapshot = ctx.generation.config();
    let mut e = Explanation {
        source: question.source.to_string(),
        number: question.number.clone(),
        counts_from: ctx.counts_from.clone(),
        caller: Identification::Unknown {
            reason: String::new(),
        },
        route: None,
        path: Vec::new(),
        skipped: Vec::new(),
        verdict: Verdict::refused(403, String::new()),
    };
    let caller = match identify_caller(ctx, question) {
        Ok((caller, id)) => {
            e.caller = id;
            caller
        }
        Err(refused) => {
            (e.caller, e.verdict) = *refused;
            return e;
        }
    };
    let route = match routing::route(s, &caller, &question.number) {
        Ok(r) => r,
        Err(err) => {
            e.route = Some(RouteView::None);
            e.verdict = route_refusal(&err, route_view::no_route_why(s, &caller, &question.number));
            return e;
        }
    };
    e.route = Some(route_view::route(s, &route, &question.number));
    let reach = Reach {
        location: ctx.location,
        now: ctx.now,
        trunks: ctx.trunks,
    };
    e.skipped = route_view::skipped_targets(s, &route, &reach);
    let invite = synthetic_invite(&question.number);
    match plan::plan(s, &route, &reach, &invite) {
        Ok(p) => (e.path, e.verdict) = admission::decide(ctx.generation, &p, used),
        Err(err) => e.verdict = route_refusal(&err, unreachable_why(&err, ctx)),
    }
    e
}

/// Who the source is: by its address, else (`--as`) the extension it authenticates as.
fn identify_caller(
    ctx: &Context<'_>,
    question: &Question,
) -> Result<(Caller, Identification), route_view::Unidentified> {
    let s: &Snapshot = ctx.generation.config();
    let source = question.source;
    let err = match identify_with(s, ctx.location, source, ctx.now) {
        Ok(c) => {
            let id = route_view::identified(s, ctx.location, source, &c, ctx.now);
            return Ok((c, id));
        }
        Err(err) => err,
    };
    match &question.authenticated_as {
        Some(who) => route_view::authenticated(s, source, who, &err),
        None => Err(Box::new(route_view::unidentified(s, source, &err))),
    }
}

/// The verdict of a routing refusal, with the b2bua's mapping to a status (`refuse_route`).
fn route_refusal(err: &RouteError, why: String) -> Verdict {
    let status = match err {
        RouteError::UnknownSource(_) | RouteError::AuthenticationRequired(_) => 403,
        RouteError::NoRoute(_) => 404,
        RouteError::Unreachable(_) => 480,
    };
    Verdict::refused(status, why)
}

fn unreachable_why(err: &RouteError, ctx: &Context<'_>) -> String {
    let offline = if ctx.counts_from == "file" {
        " (from the file alone no registration is known; use --admin for the live ones)"
    } else {
        ""
    };
    format!("{err}: no registered binding or no trunk to send to{offline}")
}

/// The INVITE the plan is made for: only its From user matters (an inbound callee's caller ID).
fn synthetic_invite(number: &str) -> crate::sip::Request {
    let user: String = number
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-.*#".contains(*c))
        .collect();
    let text = format!(
        "INVITE sip:{user}@callgate.invalid SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKexplain\r\n\
         From: <sip:explain@callgate.invalid>;tag=explain\r\nTo: <sip:{user}@callgate.invalid>\r\n\
         Call-ID: explain\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    match crate::sip::parse_datagram(bytes::Bytes::from(text)) {
        Ok(crate::sip::Message::Request(r)) => r,
        // The number is filtered to URI-safe characters above, so this is our own text.
        other => panic!("invariant: the synthetic INVITE parses: {other:?}"),
    }
}

/// `number@organization`, as counters and logs name an extension.
fn extension_name(s: &Snapshot, ext: ExtId) -> String {
    let e = &s.extensions[ext.index()];
    format!(
        "{}@{}",
        e.number,
        s.organizations[e.organization.index()].name
    )
}

fn trunk_name(s: &Snapshot, trunk: TrunkId) -> String {
    s.trunks[trunk.index()].name.clone()
}

/// The reason phrase the b2bua sends with `status` (`b2bua::setup::reason_phrase`).
fn reason_phrase(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Call Refused",
    }
}

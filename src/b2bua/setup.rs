//! Call set-up: a new INVITE on leg A -> identify the caller -> route -> admit (all or nothing)
//! -> 100 Trying on A and the INVITE on leg B. A refusal answers A with the configured code and a
//! `Reason`/`Warning` naming the counter; nothing is sent towards B.

use std::time::Instant;

use super::call::{Attempt, AttemptState, Call, CallState, Outcome, TargetState};
use super::leg::{via_transport, Dest, Leg, Side};
use super::{B2bua, ClientRole, Out};
use crate::config::model::{Snapshot, Transport};
use crate::limits::{CallKey, Charge, Generation, Permit, Refusal};
use crate::routing::plan::{Choice, Identity, LegPlan, Plan, Reach};
use crate::routing::{self, RouteError};
use crate::sip::uri::Uri;
use crate::sip::{self, HeaderName, Method, Request, RequestBuilder};
use crate::transaction::sip_keys::client_key_for;
use crate::transaction::TransactionKey;

/// Headers that may cross from leg A to leg B. Everything else that is dialog- or hop-specific
/// (Via, Route, Record-Route, Contact, Call-ID, From/To tags, CSeq, credentials) never crosses.
/// `Supported` does not cross: an extension callgate does not implement itself (100rel, replaces)
/// cannot be promised on the other leg.
const PASS_THROUGH: &[&str] = &["Allow", "User-Agent", "Subject", "Accept"];

impl B2bua {
    /// Starts a call for a new INVITE (no To tag) received on server transaction `key`.
    pub fn on_new_invite(
        &mut self,
        now: Instant,
        req: Request,
        key: TransactionKey,
        source: Dest,
        out: &mut Vec<Out>,
    ) {
        self.on_new_invite_from(now, req, key, source, None, out);
    }

    /// [`B2bua::on_new_invite`] with the caller already known: a phone that answered a digest
    /// challenge is the extension it authenticated as, whatever its source address.
    pub fn on_new_invite_from(
        &mut self,
        now: Instant,
        req: Request,
        key: TransactionKey,
        source: Dest,
        caller: Option<routing::Caller>,
        out: &mut Vec<Out>,
    ) {
        if self.draining {
            let bytes = sip::response_to(
                &req,
                503,
                "Service Unavailable",
                None,
                &[("Retry-After", "30")],
            );
            out.push(Out::Respond {
                key,
                status: 503,
                bytes,
            });
            return;
        }
        if self.by_call_id.contains_key(req.parts().call_id())
            || self.is_waiting_call_id(req.parts().call_id())
        {
            // A new INVITE with the Call-ID of a call in progress (a loop, a merged request or
            // a confused PBX): RFC 3261 8.2.2.2. Admitting it would index two calls under one
            // Call-ID, and ending one would unhook the other.
            tracing::info!(call_id = %req.parts().call_id(), "new INVITE reuses the Call-ID of a live call");
            let tag = self.tag();
            let bytes = sip::response_to(&req, 482, "Loop Detected", Some(&tag), &[]);
            out.push(Out::Respond {
                key,
                status: 482,
                bytes,
            });
            return;
        }
        let generation = self.limiter.current();
        let snapshot = generation.config().clone();
        let route = dialled_user(&req)
            .ok_or_else(|| RouteError::NoRoute(req.uri_str().to_owned()))
            .and_then(|user| {
                let caller = match &caller {
                    Some(c) => c.clone(),
                    None => routing::identify_with(&snapshot, &self.location, source.addr, now)?,
                };
                routing::route(&snapshot, &caller, &user)
            });
        let id = self.next_call_number();
        let reach = Reach {
            location: &self.location,
            now,
            trunks: &*self.trunks,
        };
        let plan = match route.and_then(|r| routing::plan::plan(&snapshot, &r, &reach, &req)) {
            Ok(p) => p,
            Err(e) => return self.refuse_route(&req, key, &e, out),
        };
        if generation.is_shared() {
            return self.ask_admission(now, req, key, source, &generation, plan, id, out);
        }
        match admit(&generation, plan, id, now) {
            Ok(admitted) => {
                let trying = sip::response_to(&req, 100, "Trying", None, &[]);
                out.push(Out::Respond {
                    key: key.clone(),
                    status: 100,
                    bytes: trying,
                });
                self.start_call(now, req, key, source, admitted, id, out)
            }
            Err(Admission::Refused(refusal)) => {
                self.refuse_limit(now, id, &req, key, &generation, refusal, out)
            }
            Err(Admission::Route(e)) => self.refuse_route(&req, key, &e, out),
        }
    }

    pub(super) fn refuse_route(
        &mut self,
        req: &Request,
        key: TransactionKey,
        e: &RouteError,
        out: &mut Vec<Out>,
    ) {
        let (status, reason) = match e {
            RouteError::UnknownSource(_) | RouteError::AuthenticationRequired(_) => {
                (403, "Forbidden")
            }
            RouteError::NoRoute(_) => (404, "Not Found"),
            RouteError::Unreachable(_) => (480, "Temporarily Unavailable"),
        };
        tracing::info!(call_id = %req.parts().call_id(), status, error = %e, "call refused by routing");
        let tag = self.tag();
        let bytes = sip::response_to(req, status, reason, Some(&tag), &[]);
        out.push(Out::Respond { key, status, bytes });
    }

    /// The record of a call refused before any callee leg: by a limit (`refusal`, answered
    /// `status`) or because the counter backend could not answer (`reason`).
    pub(super) fn record_refusal(
        &self,
        now: Instant,
        id: u64,
        req: &Request,
        (status, reason): (u16, &'static str),
        refusal: Option<&Refusal>,
        out: &mut Vec<Out>,
    ) {
        if !self.records {
            return;
        }
        let parts = req.parts();
        let refused_by = refusal.map(|refusal| crate::cdr::CounterRef {
            level: refusal.level.as_str().to_owned(),
            name: refusal.name.to_string(),
            counter: refusal.counter.as_str().to_owned(),
        });
        out.push(Out::Record(Box::new(crate::cdr::CallRecord {
            call: id,
            a_call_id: parts.call_id().to_owned(),
            b_call_id: None,
            caller: parts.from().uri.to_owned(),
            callee: parts.to().uri.to_owned(),
            path: Vec::new(),
            started: now,
            answered: None,
            ended: now,
            outcome: "rejected",
            ended_by: crate::cdr::Ender::Callgate,
            reason,
            status: Some(status),
            refused_by,
        })));
    }

    pub(super) fn refuse_admission(
        &mut self,
        req: &Request,
        key: TransactionKey,
        snapshot: &Snapshot,
        refusal: Refusal,
        out: &mut Vec<Out>,
    ) {
        let status = snapshot.server.reject_code;
        let text = refusal.to_string().replace('"', "'");
        tracing::info!(
            call_id = %req.parts().call_id(),
            counter.level = refusal.level.as_str(),
            counter.name = %refusal.name,
            counter.kind = refusal.counter.as_str(),
            used = refusal.used,
            limit = refusal.limit,
            "admission refused"
        );
        let reason = format!("SIP;cause={status};text=\"{text}\"");
        let warning = format!("399 callgate \"{text}\"");
        let tag = self.tag();
        let extra = [("Reason", reason.as_str()), ("Warning", warning.as_str())];
        let bytes = sip::response_to(req, status, reason_phrase(status), Some(&tag), &extra);
        out.push(Out::Respond { key, status, bytes });
        out.push(Out::Rejected(Some(refusal)));
    }

    /// Starts admitted call `id`: leg A, its timers, and the callee legs (the caller already has
    /// its 100 Trying).
    #[allow(clippy::too_many_arguments)] // the values are the call's parts
    pub(super) fn start_call(
        &mut self,
        now: Instant,
        req: Request,
        key: TransactionKey,
        source: Dest,
        admitted: Admitted,
        id: u64,
        out: &mut Vec<Out>,
    ) {
        tracing::info!(call = id, call_id = %req.parts().call_id(), targets = admitted.targets.len(), "call admitted");
        let a = a_leg(&req, source, self.tag());
        let config = self.limiter.current().config().clone();
        let ring = admitted.ring_time.unwrap_or(self.settings.ring_timeout);
        out.push(Out::Started { call: id });
        out.push(Out::Arm {
            at: now + ring,
            call: id,
            timer: super::CallTimer::RingTimeout,
        });
        if let Some(max) = config.server.max_call_duration {
            out.push(Out::Arm {
                at: now + max,
                call: id,
                timer: super::CallTimer::MaxDuration,
            });
        }
        let b_ack_waits_for_a = req.parts().body().is_empty();
        let session = super::call::session_interval(&req, config.server.session_expires);
        self.by_call_id.insert(a.call_id.clone(), (id, Side::A));
        self.by_a_invite.insert(key.clone(), id);
        self.hold_flows(id, &[a.dest], out);
        // Until the first leg starts: empty strings allocate nothing.
        let placeholder = Leg {
            call_id: String::new(),
            local_tag: String::new(),
            remote_tag: None,
            local_uri: String::new(),
            remote_uri: String::new(),
            remote_target: String::new(),
            route_set: Vec::new(),
            local_cseq: 1,
            dest: a.dest,
        };
        let call = Call {
            id,
            a,
            b: placeholder,
            b_no: 0,
            early_media: false,
            attempts: Vec::new(),
            targets: Vec::with_capacity(admitted.targets.len()),
            next_leg: 0,
            b_permit: None,
            cancel_outcome: Outcome::Cancelled,
            state: CallState::Calling,
            started: now,
            answered: None,
            setup: Some(Box::new(super::call::Setup {
                a_invite: req,
                best: None,
            })),
            a_invite_key: key,
            b_ack: None,
            a_ok: None,
            a_ok_interval: self.settings.t1,
            b_ack_waits_for_a,
            reinvite_pending: false,
            session,
            session_deadline: None,
            bye_a_after_ack: None,
            client_keys: Vec::new(),
            permit: admitted.incoming,
            a_final_sent: false,
            probing: [false; 2],
            close_probe: [false; 2],
            reinvite_ok: None,
            record: None,
            admitting: 0,
        };
        // Boxed: the table's buckets stay small (a held call's state was ~700 bytes inline in
        // a bucket, at the map's load factor ~1.1 KiB per call).
        self.calls.insert(id, Box::new(call));
        for (t, (choice, permit, rest)) in admitted.targets.into_iter().enumerate() {
            if let Some(call) = self.calls.get_mut(&id) {
                call.targets.push(TargetState {
                    permit,
                    rest,
                    round: 0,
                });
            }
            self.start_choice(id, t as u8, &choice, out);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if self.records {
            let own = call.permit.as_ref().map(super::call::permit_refs);
            let leg = call.targets.iter().find_map(|t| t.permit.as_ref());
            call.record = Some(Box::new(super::call::RecordDraft {
                own: own.unwrap_or_default(),
                leg: leg.map(super::call::permit_refs).unwrap_or_default(),
                ..Default::default()
            }));
        }
        if call.attempts.is_empty() {
            // Only our own builder can fail here: a bug, not input.
            tracing::error!(call = id, "no callee leg could be built");
            out.extend(call.respond_a(500, "Server Internal Error", &[], None));
            self.forget(id, Outcome::Failed, out);
        } else if let Some(first) = call.attempts.first() {
            call.b = first.leg.clone();
            call.b_no = first.no;
        }
    }

    /// Starts the legs of one way to reach target `t` of call `id`.
    pub(super) fn start_choice(&mut self, id: u64, t: u8, choice: &Choice, out: &mut Vec<Out>) {
        // Out of the call while the legs are built from it (no copy of the caller's INVITE).
        let Some(setup) = self.calls.get_mut(&id).and_then(|c| c.setup.take()) else {
            return;
        };
        for leg in &choice.legs {
            self.start_leg(id, t, leg, &setup.a_invite, out);
        }
        if let Some(call) = self.calls.get_mut(&id) {
            call.setup = Some(setup);
        }
    }

    /// Builds and sends one callee leg's INVITE and indexes the leg.
    fn start_leg(&mut self, id: u64, t: u8, plan: &LegPlan, req: &Request, out: &mut Vec<Out>) {
        let branch = self.branch();
        let call_id = self.ids.call_id(&self.settings.node);
        let (leg, bytes) = self.b_invite(req, plan, &branch, call_id);
        let Ok(sip::Message::Request(invite)) = sip::parse_datagram(bytes) else {
            tracing::error!(call = id, "built an unparseable B-leg INVITE");
            return;
        };
        let key = client_key_for(&branch, &Method::Invite);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let no = call.next_leg;
        call.next_leg = call.next_leg.wrapping_add(1);
        tracing::info!(call = id, leg = no, dest = %plan.dest.addr, "callee leg started");
        out.push(Out::StartInvite {
            key: key.clone(),
            dest: plan.dest,
            request: Box::new(invite.clone()),
        });
        call.client_keys.push(key.clone());
        let dest = leg.dest;
        self.by_call_id.insert(leg.call_id.clone(), (id, Side::B));
        self.by_client
            .insert(key.clone(), (id, ClientRole::Invite { leg: no }));
        call.attempts.push(Attempt {
            no,
            target: t,
            leg,
            invite,
            key,
            state: AttemptState::Calling,
            pending_cancel: None,
        });
        self.hold_flows(id, &[dest], out);
    }

    /// Builds leg B's dialog state and its INVITE.
    fn b_invite(
        &mut self,
        req: &Request,
        target: &LegPlan,
        branch: &str,
        call_id: String,
    ) -> (Leg, bytes::Bytes) {
        let local_tag = self.tag();
        let local = &self.settings.local;
        let t = target.dest.transport;
        let host = target.dest.addr;
        let uri = match (&target.request_uri, t) {
            (Some(contact), _) => contact.clone(),
            (None, Transport::Udp) => format!("sip:{}@{}", target.user, host),
            (None, Transport::Tcp) => format!("sip:{}@{};transport=tcp", target.user, host),
            (None, Transport::Tls) => format!("sip:{}@{};transport=tls", target.user, host),
        };
        let leg = Leg {
            call_id,
            local_tag,
            remote_tag: None,
            local_uri: format!("<sip:{}@{}>", target.from_user, local.sent_by(t)),
            remote_uri: format!("<sip:{}@{}>", target.user, host),
            remote_target: uri.clone(),
            route_set: Vec::new(),
            local_cseq: 1,
            dest: target.dest,
        };
        let parts = req.parts();
        let max_forwards = parts.max_forwards().unwrap_or(70).saturating_sub(1);
        let contact = local.contact_of(&leg);
        let mut b = RequestBuilder::new(Method::Invite, &uri)
            .via(via_transport(t), local.sent_by(t), branch)
            .max_forwards(max_forwards)
            .from(&leg.local_uri, Some(&leg.local_tag))
            .to(&leg.remote_uri, None)
            .call_id(&leg.call_id)
            .cseq(1)
            .contact(&contact);
        let (identity_headers, asserted): (&[&str], Option<String>) = match &target.identity {
            Identity::Trusted => (&["P-Asserted-Identity", "Privacy"], None),
            Identity::Untrusted => (&[], None),
            Identity::Extension(number) => (
                &["Privacy"],
                number
                    .as_ref()
                    .map(|n| format!("<sip:{n}@{}>", local.sent_by(t))),
            ),
        };
        let copied: Vec<(&str, &str)> = PASS_THROUGH
            .iter()
            .chain(identity_headers)
            .flat_map(|name| {
                parts
                    .headers_raw(name)
                    .filter_map(move |h| Some((*name, h.value_str()?)))
            })
            .collect();
        for (name, value) in &copied {
            b = b.header(name, value);
        }
        if let Some(pai) = &asserted {
            b = b.header("P-Asserted-Identity", pai);
        }
        // Leg B gets the call's session timer: callgate is the refresher towards B, and its
        // refreshes are the caller's, relayed (RFC 4028 as a B2BUA). A caller without timer
        // support sends none, so B is offered no timer it would expire on.
        let ours = self.limiter.current().config().server.session_expires;
        let session = super::call::session_interval(req, ours);
        let se = session.map(|d| format!("{};refresher=uac", d.as_secs()));
        if let Some(se) = &se {
            b = b.header("Session-Expires", se).header("Supported", "timer");
        }
        let content_type = parts
            .header(HeaderName::ContentType)
            .and_then(|h| h.value_str());
        if let (Some(ct), false) = (content_type, parts.body().is_empty()) {
            b = b.body(ct, parts.body());
        }
        let bytes = b.build();
        (leg, bytes)
    }
}

/// Leg A's dialog state from the caller's INVITE (RFC 3261 12.1.1).
fn a_leg(req: &Request, source: Dest, local_tag: String) -> Leg {
    let parts = req.parts();
    let from = parts.from();
    let remote_target = parts
        .contacts()
        .filter_map(Result::ok)
        .find_map(|c| c.address().map(|a| a.uri.to_owned()))
        .unwrap_or_else(|| from.uri.to_owned());
    let route_set = parts
        .record_routes()
        .filter_map(Result::ok)
        .map(|r| format!("<{}>", r.uri))
        .collect();
    Leg {
        call_id: parts.call_id().to_owned(),
        local_tag,
        remote_tag: parts.from_tag().map(|t| t.as_str().to_owned()),
        local_uri: format!("<{}>", parts.to().uri),
        remote_uri: format!("<{}>", from.uri),
        remote_target,
        route_set,
        local_cseq: 0,
        dest: source,
    }
}

/// The user part of the Request-URI (the dialled number).
fn dialled_user(req: &Request) -> Option<String> {
    match req.uri() {
        Uri::Sip(s) => s.user.map(str::to_owned),
        Uri::Tel(t) => Some(t.number.trim_start_matches('+').to_owned()),
        Uri::Other { .. } => None,
    }
}

enum Admission {
    Refused(Refusal),
    Route(RouteError),
}

/// A plan whose units are held: the call's own, and per target that could start, the way
/// admitted with its units and the ways left for failover.
pub(super) struct Admitted {
    pub(super) incoming: Option<Permit>,
    pub(super) targets: Vec<(Choice, Option<Permit>, Vec<Choice>)>,
    pub(super) ring_time: Option<std::time::Duration>,
}

/// The limiter's key for target `t` of call `id` at failover `round` (each target's units are
/// their own lease, and each failover's a new one: a shared backend must never confuse a new
/// admission with the released one's retry). Call numbers stay below bit 48.
pub(super) fn target_key(id: u64, t: u8, round: u8) -> CallKey {
    CallKey(id ^ ((u64::from(t) + 1) << 56) ^ (u64::from(round) << 48))
}

/// Admits the call's own units, then each target on the first of its ways with room (spec 4: a
/// target whose path is full is skipped and the others still ring; spec 7: a full trunk passes
/// to the next). Refused when the call's own units are full or no target has room.
fn admit(
    g: &std::sync::Arc<Generation>,
    plan: Plan,
    id: u64,
    now: Instant,
) -> Result<Admitted, Admission> {
    let incoming = match plan.incoming {
        Some(spec) => Some(
            g.try_admit(CallKey(id), spec, now)
                .map_err(Admission::Refused)?,
        ),
        None => None,
    };
    let mut targets = Vec::with_capacity(plan.targets.len());
    let mut last = None;
    for (t, target) in plan.targets.into_iter().enumerate() {
        match admit_target(
            g,
            target_key(id, t as u8, 0),
            target.choices,
            Charge::NewCall,
            now,
        ) {
            Ok(admitted) => targets.push(admitted),
            Err(r) => last = r.or(last),
        }
    }
    if targets.is_empty() {
        drop(incoming);
        return Err(last.map_or(
            Admission::Route(RouteError::Unreachable(String::new())),
            Admission::Refused,
        ));
    }
    Ok(Admitted {
        incoming,
        targets,
        ring_time: plan.ring_time,
    })
}

/// The first of `choices` whose units are free, its permit, and the choices after it.
/// `charge`: a fail-over charges only the next trunk's calls-per-second bucket.
pub(super) fn admit_target(
    g: &std::sync::Arc<Generation>,
    key: CallKey,
    choices: Vec<Choice>,
    charge: Charge,
    now: Instant,
) -> Result<(Choice, Option<Permit>, Vec<Choice>), Option<Refusal>> {
    let mut last = None;
    let mut choices = choices.into_iter();
    while let Some(choice) = choices.next() {
        let permit = match choice.spec {
            None => None,
            Some(spec) => match g.try_admit_charging(key, spec, charge, now) {
                Ok(p) => Some(p),
                Err(r) => {
                    last = Some(r);
                    continue;
                }
            },
        };
        return Ok((choice, permit, choices.collect()));
    }
    Err(last)
}

/// Standard reason phrase of the reject codes operators configure.
pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        404 => "Not Found",
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

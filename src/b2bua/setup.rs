//! Call set-up: a new INVITE on leg A -> identify the caller -> route -> admit (all or nothing)
//! -> 100 Trying on A and the INVITE on leg B. A refusal answers A with the configured code and a
//! `Reason`/`Warning` naming the counter; nothing is sent towards B.

use std::time::Instant;

use super::call::{Call, CallState};
use super::leg::{via_transport, Dest, Leg, Side};
use super::{B2bua, ClientRole, Out};
use crate::config::model::{ExtId, Snapshot, Transport, TrunkId};
use crate::limits::{CallKey, Generation, PathSpec, Permit, Refusal};
use crate::routing::{self, InboundTarget, Route, RouteError};
use crate::sip::uri::Uri;
use crate::sip::{self, HeaderName, Method, Request, RequestBuilder};
use crate::transaction::sip_keys::client_key_for;
use crate::transaction::TransactionKey;

/// Where the B leg goes and how it is counted.
struct Target {
    dest: Dest,
    /// User part of the B leg's Request-URI and To.
    user: String,
    /// User part of the B leg's From (the caller, or its outbound caller ID on a trunk).
    from_user: String,
    /// What the B leg asserts about the caller.
    identity: Identity,
    /// The Request-URI when it is not `user@dest` (a phone's registered contact).
    request_uri: Option<String>,
}

/// P-Asserted-Identity and Privacy on the B leg (RFC 3325: an identity is asserted only inside
/// a trust domain).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// From a trusted trunk: the provider's PAI and Privacy cross.
    Trusted,
    /// From an untrusted trunk: neither crosses (anyone can write them).
    Untrusted,
    /// From a PBX or phone: its PAI is dropped (a tenant must not claim any number), callgate
    /// asserts this number when it has one, and the caller's Privacy request crosses so the
    /// provider withholds the asserted number when asked to (RFC 3323).
    Extension(Option<String>),
}

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
        if self.by_call_id.contains_key(req.parts().call_id()) {
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
        let route = match route {
            Ok(r) => r,
            Err(e) => return self.refuse_route(&req, key, &e, out),
        };
        let id = self.next_call_number();
        let reach = Reach {
            location: &self.location,
            now,
        };
        match admit(&generation, &snapshot, &route, id, &reach, &req) {
            Ok((permit, target)) => {
                self.start_b_leg(now, req, key, source, permit, target, id, out)
            }
            Err(Admission::Refused(refusal)) => {
                self.refuse_admission(&req, key, &snapshot, refusal, out)
            }
            Err(Admission::Route(e)) => self.refuse_route(&req, key, &e, out),
        }
    }

    fn refuse_route(
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

    fn refuse_admission(
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
        out.push(Out::Rejected(refusal));
    }

    #[allow(clippy::too_many_arguments)] // one call site; the values are the call's parts
    fn start_b_leg(
        &mut self,
        now: Instant,
        req: Request,
        key: TransactionKey,
        source: Dest,
        permit: Permit,
        target: Target,
        id: u64,
        out: &mut Vec<Out>,
    ) {
        tracing::info!(call = id, call_id = %req.parts().call_id(), dest = %target.dest.addr, "call admitted");
        let a = a_leg(&req, source, self.tag());
        let trying = sip::response_to(&req, 100, "Trying", None, &[]);
        out.push(Out::Respond {
            key: key.clone(),
            status: 100,
            bytes: trying,
        });
        let branch = self.branch();
        let b_call_id = self.ids.call_id(&self.settings.node);
        let (b, bytes) = self.b_invite(&req, &target, &branch, b_call_id);
        let Ok(sip::Message::Request(b_invite)) = sip::parse_datagram(bytes.clone()) else {
            // Our own builder produced something our parser refuses: a bug, not input.
            tracing::error!(call = id, "built an unparseable B-leg INVITE");
            let bytes =
                sip::response_to(&req, 500, "Server Internal Error", Some(&a.local_tag), &[]);
            out.push(Out::Respond {
                key,
                status: 500,
                bytes,
            });
            return;
        };
        let b_key = client_key_for(&branch, &Method::Invite);
        out.push(Out::StartInvite {
            key: b_key.clone(),
            dest: target.dest,
            request: Box::new(b_invite.clone()),
        });
        out.push(Out::Started { call: id });
        out.push(Out::Arm {
            at: now + self.settings.ring_timeout,
            call: id,
            timer: super::CallTimer::RingTimeout,
        });
        if let Some(max) = self.limiter.current().config().server.max_call_duration {
            out.push(Out::Arm {
                at: now + max,
                call: id,
                timer: super::CallTimer::MaxDuration,
            });
        }
        let b_ack_waits_for_a = req.parts().body().is_empty();
        let session = super::call::session_interval(
            &req,
            self.limiter.current().config().server.session_expires,
        );
        self.by_call_id.insert(a.call_id.clone(), (id, Side::A));
        self.by_call_id.insert(b.call_id.clone(), (id, Side::B));
        self.by_client
            .insert(b_key.clone(), (id, ClientRole::Invite));
        self.by_a_invite.insert(key.clone(), id);
        self.hold_flows(id, [a.dest, b.dest], out);
        let call = Call {
            id,
            a,
            b,
            state: CallState::Calling,
            started: now,
            answered: None,
            setup: Some(Box::new(super::call::Setup {
                a_invite: req,
                b_invite,
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
            client_keys: vec![b_key],
            permit: Some(permit),
            a_final_sent: false,
            probing: [false; 2],
            close_probe: [false; 2],
            reinvite_ok: None,
        };
        // Boxed: the table's buckets stay small (a held call's state was ~700 bytes inline in
        // a bucket, at the map's load factor ~1.1 KiB per call).
        self.calls.insert(id, Box::new(call));
    }

    /// Builds leg B's dialog state and its INVITE.
    fn b_invite(
        &mut self,
        req: &Request,
        target: &Target,
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

/// The From user the callee of an inbound call sees. A caller presenting a number that is an
/// extension of the callee's organization is shown as anonymous: an internal call from that
/// extension looks the same, so a spoofed From would pass for a colleague (a voicemail PIN
/// prompt skipped, a social-engineering call).
fn inbound_caller(s: &Snapshot, callee: ExtId, req: &Request, trusted: bool) -> String {
    let user = routing::caller_id::inbound_from_user(req, trusted);
    let org = &s.organizations[s.extensions[callee.index()].organization.index()];
    if s.extension_at(&org.domain, &user).is_some() {
        tracing::info!(call_id = %req.parts().call_id(), caller = %user, "inbound caller presents an internal extension number; shown as anonymous");
        return routing::caller_id::ANONYMOUS.to_owned();
    }
    user
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

/// Chooses the B-leg target for a route and admits the call on its path. Outbound calls try the
/// rule's trunks in order: a full trunk passes to the next one (spec 7).
fn admit(
    g: &std::sync::Arc<Generation>,
    s: &Snapshot,
    route: &Route,
    id: u64,
    reach: &Reach<'_>,
    req: &Request,
) -> Result<(Permit, Target), Admission> {
    let key = CallKey(id);
    match route {
        Route::Internal { caller, callee } => {
            let (dest, user, request_uri) = extension_target(s, reach, *callee, None)?;
            let spec = PathSpec::LocalToLocal {
                caller: *caller,
                callee: *callee,
            };
            let from_user = s.extensions[caller.index()].number.clone();
            let target = Target {
                dest,
                user,
                from_user,
                identity: Identity::Extension(None),
                request_uri,
            };
            g.try_admit(key, spec)
                .map(|p| (p, target))
                .map_err(Admission::Refused)
        }
        Route::Outbound {
            caller,
            trunks,
            number,
        } => {
            let ext = &s.extensions[caller.index()];
            let from_user = ext
                .outbound_caller_id
                .clone()
                .unwrap_or_else(|| ext.number.clone());
            let mut last = None;
            for trunk in trunks {
                let Some((dest, request_uri)) = trunk_dest(s, reach, *trunk, number) else {
                    continue;
                };
                let spec = PathSpec::LocalToPublic {
                    caller: *caller,
                    trunk: *trunk,
                };
                match g.try_admit(key, spec) {
                    Ok(p) => {
                        let target = Target {
                            dest,
                            user: number.clone(),
                            identity: Identity::Extension(ext.outbound_caller_id.clone()),
                            from_user,
                            request_uri,
                        };
                        return Ok((p, target));
                    }
                    Err(r) => last = Some(r),
                }
            }
            Err(last.map_or(
                Admission::Route(RouteError::Unreachable(number.clone())),
                Admission::Refused,
            ))
        }
        Route::Inbound {
            trunk,
            target: InboundTarget::Extension(callee),
            did,
        } => {
            let (dest, user, request_uri) = extension_target(s, reach, *callee, Some(did))?;
            let spec = PathSpec::PublicToLocal {
                trunk: *trunk,
                callee: *callee,
            };
            let trusted = s.trunks[trunk.index()].trusted;
            // A caller that asked for privacy gets an anonymous From and no asserted identity
            // towards the callee (RFC 3323, RFC 3325 9.1), whatever the trunk's trust.
            let identity = if trusted && !routing::caller_id::asks_privacy(req) {
                Identity::Trusted
            } else {
                Identity::Untrusted
            };
            let target = Target {
                dest,
                user,
                from_user: inbound_caller(s, *callee, req, trusted),
                identity,
                request_uri,
            };
            g.try_admit(key, spec)
                .map(|p| (p, target))
                .map_err(Admission::Refused)
        }
        // Forking through ring rules is the routing issue's; refuse plainly until then.
        Route::Inbound { did, .. } => Err(Admission::Route(RouteError::Unreachable(did.clone()))),
    }
}

/// Where extensions are reached besides the configuration: registered phones' bindings.
struct Reach<'a> {
    location: &'a crate::registrar::LocationStore,
    now: Instant,
}

/// Where a call to extension `ext` goes, the user of its To, and for a phone the Request-URI (its
/// registered contact). A PBX is at its fixed address; a phone at the flow its most recent live
/// binding came in on (symmetric signalling through its NAT), 480 when it has none.
fn extension_target(
    s: &Snapshot,
    reach: &Reach<'_>,
    ext: ExtId,
    did: Option<&String>,
) -> Result<(Dest, String, Option<String>), Admission> {
    let e = &s.extensions[ext.index()];
    if let Some(pbx) = &e.pbx {
        let dest = Dest {
            transport: pbx.transport,
            addr: pbx.address,
        };
        return Ok((dest, did.cloned().unwrap_or_else(|| e.number.clone()), None));
    }
    let domain = &s.organizations[e.organization.index()].domain;
    let aor = crate::registrar::Aor::new(domain, &e.number);
    let unreachable = || Admission::Route(RouteError::Unreachable(e.number.clone()));
    let binding = reach
        .location
        .lookup(&aor, reach.now)
        .into_iter()
        .next()
        .ok_or_else(unreachable)?;
    let dest = Dest {
        transport: binding.flow.transport,
        addr: binding.flow.source,
    };
    Ok((dest, e.number.clone(), Some(binding.contact)))
}

fn trunk_dest(
    s: &Snapshot,
    reach: &Reach<'_>,
    trunk: TrunkId,
    number: &str,
) -> Option<(Dest, Option<String>)> {
    let d = routing::trunk_dest(s, reach.location, trunk, reach.now)?;
    let uri = d.request_uri(number);
    Some((
        Dest {
            transport: d.transport,
            addr: d.addr,
        },
        uri,
    ))
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

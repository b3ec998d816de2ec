//! What happens once leg B exists: B's responses relayed to A, ACKs, CANCEL, and requests inside
//! either dialog relayed to the other leg (re-INVITE with glare, UPDATE, INFO, OPTIONS, NOTIFY;
//! REFER refused with 603; unknown dialogs 481).

use std::time::Instant;

use bytes::Bytes;

use super::call::{Call, CallState};
use super::leg::{InDialog, Side};
use super::{B2bua, CallTimer, ClientRole, Out};
use crate::sip::{self, HeaderName, Method, Request, Response};
use crate::transaction::sip_keys::client_key_for;
use crate::transaction::TransactionKey;

impl B2bua {
    /// A response delivered by one of our client transactions (or a 2xx retransmission that
    /// arrived after it, `key` being its client key).
    pub fn on_response(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        resp: Response,
        out: &mut Vec<Out>,
    ) {
        let Some((id, role)) = self.by_client.get(key).cloned() else {
            return;
        };
        let is_final = resp.status().is_final();
        match role {
            ClientRole::Invite { leg } => self.on_leg_response(now, id, leg, resp, out),
            ClientRole::Relay {
                origin,
                origin_req,
                is_invite,
            } => {
                self.refresh_session(now, id, &origin_req, &resp, out);
                let relay = Relayed {
                    client: key,
                    origin,
                    origin_req: &origin_req,
                    is_invite,
                };
                self.relay_response(now, id, relay, &resp, out)
            }
            ClientRole::Probe { side, .. } => {
                self.on_probe_response(now, id, side, resp.status().as_u16(), out)
            }
            ClientRole::ReinviteAcked { ack, dest } => {
                // The far side retransmits its 2xx: our ACK was lost (RFC 3261 13.2.2.4).
                if resp.status().is_success() {
                    out.push(Out::Send { dest, bytes: ack });
                }
            }
            ClientRole::Teardown => {}
        }
        // The B INVITE and an answered re-INVITE stay indexed until their transaction ends:
        // 2xx retransmissions arrive on them.
        let keep = matches!(
            self.by_client.get(key),
            Some((
                _,
                ClientRole::Invite { .. } | ClientRole::ReinviteAcked { .. }
            ))
        );
        if is_final && !keep {
            self.by_client.remove(key);
            if let Some(call) = self.calls.get_mut(&id) {
                call.client_keys.retain(|k| k != key);
            }
        }
    }

    /// The B leg's 2xx: the call is answered (or, again, B retransmits its 2xx).
    pub(super) fn on_b_answer(
        &mut self,
        now: Instant,
        id: u64,
        resp: &Response,
        out: &mut Vec<Out>,
    ) {
        let local = self.settings.local.clone();
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if matches!(call.state, CallState::Answered | CallState::Confirmed) {
            // B retransmitted its 2xx: our ACK was lost, so send it again. On a late offer
            // there is none yet (it waits for A's ACK, which carries the answer); either way
            // the call is answered once.
            if let Some(ack) = &call.b_ack {
                out.push(Out::Send {
                    dest: call.b.dest,
                    bytes: ack.clone(),
                });
            }
            return;
        }
        learn_target(&mut call.b, resp);
        // The 2xx's tag names the confirmed dialog, whichever early dialog came before it.
        if let Some(tag) = resp.parts().to_tag() {
            call.b.remote_tag = Some(tag.as_str().to_owned());
        }
        let ack = b_ack(call, &local, &branch, None);
        if call.b_ack_waits_for_a {
            call.b_ack = None;
        } else {
            out.push(Out::Send {
                dest: call.b.dest,
                bytes: ack.clone(),
            });
            call.b_ack = Some(exact(ack));
        }
        call.state = CallState::Answered;
        call.answered = Some(now);
        let Some(ok) = answer_a(call, resp, &local) else {
            return;
        };
        call.a_ok = Some(ok.clone());
        if let Some(interval) = call.session {
            let at = super::call::session_deadline(now, interval);
            call.session_deadline = Some(at);
            out.push(Out::Arm {
                at,
                call: id,
                timer: CallTimer::SessionExpiry,
            });
        }
        call.a_final_sent = true;
        call.note_status(resp.status().as_u16());
        out.push(Out::Respond {
            key: call.a_invite_key.clone(),
            status: resp.status().as_u16(),
            bytes: ok,
        });
        if let Some(interval) = self.limiter.current().config().server.dialog_probe_interval {
            out.push(Out::Arm {
                at: now + interval,
                call: id,
                timer: CallTimer::Probe,
            });
        }
        let t1 = self.settings.t1;
        out.push(Out::Arm {
            at: now + t1,
            call: id,
            timer: CallTimer::RetransmitOk,
        });
        out.push(Out::Arm {
            at: now + 64 * t1,
            call: id,
            timer: CallTimer::NoAck,
        });
    }

    /// ACK from A. For our 2xx it confirms the call (and, on a late offer, carries the SDP answer
    /// that B's ACK needs); ACKs of relayed re-INVITEs are absorbed (B was ACKed by us).
    pub fn on_ack(&mut self, req: &Request, out: &mut Vec<Out>) {
        let Some((id, side)) = self.dialog_of(req) else {
            return;
        };
        let local = self.settings.local.clone();
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let seq = req.parts().cseq().seq;
        if call
            .reinvite_ok
            .as_ref()
            .is_some_and(|p| p.side == side && p.cseq == seq)
        {
            // The ACK for our 2xx to a relayed re-INVITE: stop retransmitting it.
            call.reinvite_ok = None;
            return;
        }
        if side != Side::A || call.state != CallState::Answered {
            return;
        }
        call.state = CallState::Confirmed;
        // Both legs confirmed: the INVITEs are no longer needed (a held call keeps dialog state
        // only; measured ~2 KiB per held call).
        call.setup = None;
        call.a_ok = None;
        if call.b_ack.is_none() {
            let body = body_of(req.parts());
            let ack = b_ack(call, &local, &branch, body);
            out.push(Out::Send {
                dest: call.b.dest,
                bytes: ack.clone(),
            });
            call.b_ack = Some(exact(ack));
        }
        if let Some(outcome) = call.bye_a_after_ack.take() {
            self.send_bye(id, Side::A, out);
            self.forget(id, outcome, out);
        }
    }

    /// A CANCEL from A matched the A INVITE `invite_key` (the driver already answered the CANCEL
    /// with 200). Answers the INVITE with 487 and cancels B.
    pub fn on_cancel(&mut self, now: Instant, invite_key: &TransactionKey, out: &mut Vec<Out>) {
        self.on_cancel_with(now, invite_key, None, out);
    }

    /// [`B2bua::on_cancel`] for a CANCEL carrying `reason` (its `Reason` header, RFC 3326): the
    /// callee legs' CANCELs carry it on.
    pub fn on_cancel_with(
        &mut self,
        now: Instant,
        invite_key: &TransactionKey,
        reason: Option<&str>,
        out: &mut Vec<Out>,
    ) {
        let Some(&id) = self.by_a_invite.get(invite_key) else {
            self.cancel_waiting(invite_key, out);
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !matches!(call.state, CallState::Calling | CallState::Early) {
            return;
        }
        call.note_end(crate::cdr::Ender::Caller, "cancel");
        out.extend(call.respond_a(487, "Request Terminated", &[], None));
        self.cancel_b(now, id, reason, out);
    }

    /// Cancels every callee leg of a call not yet answered (the caller already has its final
    /// response). The call's own units go back now, each leg's when its INVITE ends; the call
    /// stays, in `Cancelling`, until every leg's final response (a racing 200 gets ACK + BYE) or
    /// until 64*T1 without one (RFC 3261 9.1).
    pub(super) fn cancel_b(
        &mut self,
        now: Instant,
        id: u64,
        reason: Option<&str>,
        out: &mut Vec<Out>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.state = CallState::Cancelling;
        call.permit = None;
        for t in &mut call.targets {
            t.rest.clear();
        }
        self.cancel_legs(now, id, reason, out);
    }

    /// A request with a To tag on server transaction `key`: inside one of our dialogs.
    pub fn on_in_dialog(
        &mut self,
        now: Instant,
        req: Request,
        key: TransactionKey,
        out: &mut Vec<Out>,
    ) {
        let Some((id, side)) = self.dialog_of(&req) else {
            let bytes = sip::response_to(&req, 481, "Call/Transaction Does Not Exist", None, &[]);
            return out.push(Out::Respond {
                key,
                status: 481,
                bytes,
            });
        };
        match req.method() {
            Method::Bye => {
                let bytes = sip::response_to(&req, 200, "OK", None, &[]);
                out.push(Out::Respond {
                    key,
                    status: 200,
                    bytes,
                });
                match self.early_leg_of(id, side, &req) {
                    // BYE on an early dialog is not legal from a callee; that leg failed.
                    Some(no) => {
                        let end = super::fork::LegEnd::new(480, "Temporarily Unavailable");
                        self.leg_over(now, id, no, end, out);
                    }
                    None => self.hang_up_from(now, id, side, out),
                }
            }
            Method::Refer => {
                // Transfers are not supported yet: decline rather than half-implement them.
                let bytes = sip::response_to(&req, 603, "Decline", None, &[]);
                out.push(Out::Respond {
                    key,
                    status: 603,
                    bytes,
                });
            }
            _ => self.relay_request(id, side, req, key, out),
        }
    }

    fn relay_request(
        &mut self,
        id: u64,
        from_side: Side,
        req: Request,
        key: TransactionKey,
        out: &mut Vec<Out>,
    ) {
        let is_invite = *req.method() == Method::Invite;
        let local = self.settings.local.clone();
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if is_invite && call.reinvite_pending {
            let bytes = sip::response_to(&req, 491, "Request Pending", None, &[]);
            return out.push(Out::Respond {
                key,
                status: 491,
                bytes,
            });
        }
        call.reinvite_pending |= is_invite;
        let leg = match from_side.other() {
            Side::A => &mut call.a,
            Side::B => &mut call.b,
        };
        let contact = local.contact_of(leg);
        let body = body_of(req.parts());
        let bytes = leg.request(
            InDialog {
                method: req.method().clone(),
                sent_by: local.sent_by(leg.dest.transport),
                branch: &branch,
                contact: &contact,
                body,
                extra: &[],
            },
            None,
        );
        let dest = leg.dest;
        let client = client_key_for(&branch, req.method());
        let start = if is_invite {
            let Ok(sip::Message::Request(request)) = sip::parse_datagram(bytes) else {
                // Our own builder produced something our parser refuses: a bug, not input.
                tracing::error!(call = id, "built an unparseable re-INVITE");
                let bytes = sip::response_to(&req, 500, "Server Internal Error", None, &[]);
                return out.push(Out::Respond {
                    key,
                    status: 500,
                    bytes,
                });
            };
            Out::StartInvite {
                key: client.clone(),
                dest,
                request: Box::new(request),
            }
        } else {
            Out::StartNonInvite {
                key: client.clone(),
                dest,
                bytes,
            }
        };
        out.push(start);
        if let Some(call) = self.calls.get_mut(&id) {
            // Until its final (or its transaction's end): a call ending before then answers the
            // originator from here.
            call.client_keys.push(client.clone());
        }
        self.by_client.insert(
            client,
            (
                id,
                ClientRole::Relay {
                    origin: key,
                    origin_req: Box::new(req),
                    is_invite,
                },
            ),
        );
    }

    fn relay_response(
        &mut self,
        now: Instant,
        id: u64,
        relay: Relayed<'_>,
        resp: &Response,
        out: &mut Vec<Out>,
    ) {
        let status = resp.status().as_u16();
        if status == 100 {
            return;
        }
        let Some(&(_, side_of_origin)) = self.by_call_id.get(relay.origin_req.parts().call_id())
        else {
            return;
        };
        let answered = relay.is_invite && resp.status().is_success();
        if relay.is_invite && resp.status().is_final() {
            if let Some(call) = self.calls.get_mut(&id) {
                call.reinvite_pending = false;
            }
        }
        if answered {
            self.ack_reinvite_answer(id, side_of_origin.other(), relay.client, resp, out);
        }
        let local = self.settings.local.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let origin_leg = match side_of_origin {
            Side::A => &call.a,
            Side::B => &call.b,
        };
        let reason = String::from_utf8_lossy(resp.reason_phrase()).into_owned();
        let contact = local.contact_of(origin_leg);
        let parts = resp.parts();
        let body = body_of(parts);
        // A 2xx to the caller's session refresh tells it the interval callgate keeps watching
        // (RFC 4028 9): the callee was not asked, and without it the caller would stop refreshing.
        let refreshed = side_of_origin == Side::A
            && resp.status().is_success()
            && matches!(relay.origin_req.method(), Method::Invite | Method::Update);
        let se = call
            .session
            .filter(|_| refreshed)
            .map(|d| format!("{};refresher=uac", d.as_secs()));
        let mut extra = vec![("Contact", contact.as_str())];
        if let Some(se) = &se {
            extra.extend([("Session-Expires", se.as_str()), ("Require", "timer")]);
        }
        let bytes = sip::response_with_body(relay.origin_req, status, &reason, None, &extra, body);
        if answered {
            // Like the first INVITE's 2xx, ours to a re-INVITE is retransmitted until ACKed:
            // one lost datagram during a hold or a session refresh must not end the call.
            let t1 = self.settings.t1;
            call.reinvite_ok = Some(Box::new(super::call::PendingOk {
                side: side_of_origin,
                cseq: relay.origin_req.parts().cseq().seq,
                bytes: bytes.clone(),
                interval: t1,
                give_up: now + 64 * t1,
            }));
            out.push(Out::Arm {
                at: now + t1,
                call: id,
                timer: CallTimer::RetransmitReinviteOk,
            });
        }
        out.push(Out::Respond {
            key: relay.origin,
            status,
            bytes,
        });
    }

    /// ACKs the far side's 2xx to a relayed re-INVITE ourselves (the originator's ACK for our
    /// 2xx is absorbed in `on_ack`), and keeps the ACK for that 2xx's retransmissions.
    fn ack_reinvite_answer(
        &mut self,
        id: u64,
        answering: Side,
        client: &TransactionKey,
        resp: &Response,
        out: &mut Vec<Out>,
    ) {
        let local = self.settings.local.clone();
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let leg = match answering {
            Side::A => &mut call.a,
            Side::B => &mut call.b,
        };
        let contact = local.contact_of(leg);
        let seq = resp.parts().cseq().seq;
        let ack = leg.request(
            InDialog {
                method: Method::Ack,
                sent_by: local.sent_by(leg.dest.transport),
                branch: &branch,
                contact: &contact,
                body: None,
                extra: &[],
            },
            Some(seq),
        );
        let dest = leg.dest;
        out.push(Out::Send {
            dest,
            bytes: ack.clone(),
        });
        let role = ClientRole::ReinviteAcked {
            ack: exact(ack),
            dest,
        };
        self.by_client.insert(client.clone(), (id, role));
    }
}

/// A response to a request we relayed, with what it answers.
struct Relayed<'a> {
    /// Our client transaction towards the far side.
    client: &'a TransactionKey,
    /// The originator's server transaction.
    origin: TransactionKey,
    /// The originator's request.
    origin_req: &'a Request,
    is_invite: bool,
}

impl B2bua {
    /// The call and side of the dialog an in-dialog request belongs to: its Call-ID and both
    /// tags must match that leg (RFC 3261 12.2.2). A Call-ID alone is not enough: with it, a
    /// BYE carrying another call's tags, or made up, would end a call it does not belong to.
    fn dialog_of(&self, req: &Request) -> Option<(u64, Side)> {
        let parts = req.parts();
        let &(id, side) = self.by_call_id.get(parts.call_id())?;
        let call = self.calls.get(&id)?;
        let leg = match side {
            Side::A => &call.a,
            Side::B if call.b.call_id == parts.call_id() => &call.b,
            Side::B => {
                &call
                    .attempts
                    .iter()
                    .find(|a| a.leg.call_id == parts.call_id())?
                    .leg
            }
        };
        let ours = parts.to_tag().is_some_and(|t| t.as_str() == leg.local_tag);
        // A peer without a tag (RFC 2543) is matched on the rest.
        let theirs = match (&leg.remote_tag, parts.from_tag()) {
            (Some(remote), Some(t)) => t.as_str() == remote,
            (Some(_), None) => false,
            (None, _) => true,
        };
        (ours && theirs).then_some((id, side))
    }

    /// The callee leg number of an unanswered call's early dialog that `req` came on, if any.
    fn early_leg_of(&self, id: u64, side: Side, req: &Request) -> Option<u8> {
        let call = self.calls.get(&id)?;
        if side != Side::B
            || !matches!(
                call.state,
                CallState::Calling | CallState::Early | CallState::Cancelling
            )
        {
            return None;
        }
        call.attempts
            .iter()
            .find(|a| a.leg.call_id == req.parts().call_id())
            .map(|a| a.no)
    }

    /// A 2xx to a relayed re-INVITE or UPDATE refreshes the session (RFC 4028 10).
    fn refresh_session(
        &mut self,
        now: Instant,
        id: u64,
        req: &Request,
        resp: &Response,
        out: &mut Vec<Out>,
    ) {
        let refresh =
            matches!(req.method(), Method::Invite | Method::Update) && resp.status().is_success();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let (true, Some(interval)) = (refresh, call.session) {
            let at = super::call::session_deadline(now, interval);
            call.session_deadline = Some(at);
            out.push(Out::Arm {
                at,
                call: id,
                timer: CallTimer::SessionExpiry,
            });
        }
    }
}

/// Our 2xx to A carrying B's answer body (`None` only if set-up state is already gone).
fn answer_a(call: &Call, resp: &Response, local: &super::Local) -> Option<Bytes> {
    let reason = String::from_utf8_lossy(resp.reason_phrase()).into_owned();
    let contact = local.contact_of(&call.a);
    let parts = resp.parts();
    let body = body_of(parts);
    let se = call
        .session
        .map(|d| format!("{};refresher=uac", d.as_secs()));
    let mut extra = vec![("Contact", contact.as_str())];
    if let Some(se) = &se {
        extra.extend([("Session-Expires", se.as_str()), ("Require", "timer")]);
    }
    let status = resp.status().as_u16();
    let a_invite = call.a_invite()?;
    Some(sip::response_with_body(
        a_invite,
        status,
        &reason,
        Some(&call.a.local_tag),
        &extra,
        body,
    ))
}

/// Remote target and route set of leg B from its 2xx (RFC 3261 12.1.2: Record-Route reversed).
pub(super) fn learn_target(leg: &mut super::Leg, resp: &Response) {
    let parts = resp.parts();
    if let Some(uri) = parts
        .contacts()
        .filter_map(Result::ok)
        .find_map(|c| c.address().map(|a| a.uri.to_owned()))
    {
        leg.remote_target = uri;
    }
    let mut routes: Vec<String> = parts
        .record_routes()
        .filter_map(Result::ok)
        .map(|r| format!("<{}>", r.uri))
        .collect();
    routes.reverse();
    leg.route_set = routes;
}

/// The ACK for B's 2xx to the initial INVITE (CSeq 1, a new branch: RFC 3261 13.2.2.4).
fn b_ack(
    call: &mut Call,
    local: &super::Local,
    branch: &str,
    body: Option<(&str, &[u8])>,
) -> Bytes {
    let contact = local.contact_of(&call.b);
    let sent_by = local.sent_by(call.b.dest.transport).to_owned();
    call.b.request(
        InDialog {
            method: Method::Ack,
            sent_by: &sent_by,
            branch,
            contact: &contact,
            body,
            extra: &[],
        },
        Some(1),
    )
}

/// An exact-size copy of a message kept for the life of a call (the builder's buffer has room
/// to spare: ~1 KiB for a 400-byte ACK).
pub(super) fn exact(bytes: Bytes) -> Bytes {
    Bytes::copy_from_slice(&bytes)
}

pub(super) fn body_of(parts: &crate::sip::Parts) -> Option<(&str, &[u8])> {
    let ct = parts
        .header(HeaderName::ContentType)
        .and_then(|h| h.value_str())?;
    (!parts.body().is_empty()).then(|| (ct, parts.body()))
}

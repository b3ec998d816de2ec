//! The callee legs of a call before it is answered (spec call-control 4 and 7; RFC 3261 16.7 as a
//! B2BUA): their responses, the first 2xx that wins, the losers cancelled with a `Reason`, the
//! best final response when none answers, and failover to a target's next way on 408, 5xx or a
//! timeout. Each leg's units are released when its INVITE transaction ends.

use std::time::Instant;

use super::call::{AttemptState, CallState, Outcome};
use super::leg::{Dest, InDialog};
use super::{B2bua, CallTimer, ClientRole, Out};
use crate::limits::Charge;
use crate::sip::{self, Method, Response};
use crate::transaction::sip_keys::client_key_for;

/// The `Reason` on the CANCELs of the legs that lost to an answer (RFC 3326).
pub(super) const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// How a callee leg ended without answering.
#[derive(Debug, Clone)]
pub(super) struct LegEnd {
    /// The final status (408 for a timeout, 503 for a transport failure).
    pub(super) status: u16,
    /// Its reason phrase.
    pub(super) reason: String,
}

impl LegEnd {
    pub(super) fn new(status: u16, reason: &str) -> Self {
        LegEnd {
            status,
            reason: reason.to_owned(),
        }
    }

    /// A trunk failing this way passes the call to the next trunk (spec 7; RFC 3261 16.7 does
    /// the same for a proxy's next target).
    fn fails_over(&self) -> bool {
        self.status == 408 || (500..600).contains(&self.status)
    }
}

impl B2bua {
    /// A response to callee leg `no`'s INVITE.
    pub(super) fn on_leg_response(
        &mut self,
        now: Instant,
        id: u64,
        no: u8,
        resp: Response,
        out: &mut Vec<Out>,
    ) {
        let status = resp.status().as_u16();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let answered = matches!(call.state, CallState::Answered | CallState::Confirmed);
        if answered && no == call.b_no {
            // The winner's INVITE is over (RFC 3261 17.1.1.2): only its 2xx retransmissions
            // matter (our ACK was lost); a provisional or failure now changes nothing, above
            // all it does not end a call that goes on and release its counters.
            if (200..=299).contains(&status) {
                self.on_b_answer(now, id, &resp, out);
            } else {
                tracing::info!(call = id, status, "response to an answered INVITE ignored");
            }
            return;
        }
        let Some(attempt) = call.attempt_mut(no) else {
            return;
        };
        if let Some(tag) = resp.parts().to_tag() {
            attempt
                .leg
                .remote_tag
                .get_or_insert_with(|| tag.as_str().to_owned());
        }
        if let (100..=199, Some(reason)) = (status, attempt.pending_cancel.take()) {
            // The first provisional: the CANCEL that waited for it can go now.
            return self.send_cancel(id, no, reason.as_deref(), out);
        }
        match status {
            100 => {}
            101..=199 => self.on_leg_provisional(id, no, &resp, out),
            200..=299 if answered || call.state == CallState::Cancelling => {
                self.hang_up_late_answer(id, no, &resp, out)
            }
            200..=299 => self.on_leg_answer(now, id, no, &resp, out),
            _ => {
                let reason = String::from_utf8_lossy(resp.reason_phrase()).into_owned();
                self.leg_over(now, id, no, LegEnd { status, reason }, out)
            }
        }
    }

    /// A provisional from leg `no`: relayed to the caller unless another leg's early media is
    /// what the caller hears (early media from one leg only).
    fn on_leg_provisional(&mut self, id: u64, no: u8, resp: &Response, out: &mut Vec<Out>) {
        let local = self.settings.local.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state == CallState::Cancelling {
            return;
        }
        let Some(attempt) = call.attempt_mut(no) else {
            return;
        };
        if attempt.state == AttemptState::Cancelling {
            return;
        }
        attempt.state = AttemptState::Early;
        if call.state == CallState::Calling {
            call.state = CallState::Early;
        }
        let parts = resp.parts();
        let body = super::dialog::body_of(parts);
        if call.early_media && call.b_no != no {
            return;
        }
        let speaks = body.is_some() && !call.early_media;
        if speaks || call.b_no == no {
            // The leg's dialog state as of this provisional (its To tag) speaks for the call.
            call.early_media |= speaks;
            call.b_no = no;
            if let Some(a) = call.attempts.iter().find(|a| a.no == no) {
                call.b.clone_from(&a.leg);
            }
        }
        let status = resp.status().as_u16();
        let reason = String::from_utf8_lossy(resp.reason_phrase()).into_owned();
        let contact = local.contact_of(&call.a);
        let extra = [("Contact", contact.as_str())];
        out.extend(call.respond_a(status, &reason, &extra, body));
    }

    /// Leg `no` answered first: it becomes the call's B leg with its target's units, and every
    /// other leg is cancelled (`Reason: ... Call completed elsewhere`).
    fn on_leg_answer(
        &mut self,
        now: Instant,
        id: u64,
        no: u8,
        resp: &Response,
        out: &mut Vec<Out>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pos) = call.attempts.iter().position(|a| a.no == no) else {
            return;
        };
        let winner = call.attempts.remove(pos);
        let old_b = std::mem::replace(&mut call.b, winner.leg);
        call.b_no = no;
        if let Some(t) = call.targets.get_mut(usize::from(winner.target)) {
            call.b_permit = t.permit.take();
        }
        if let (Some(d), Some(p)) = (call.record.as_mut(), call.b_permit.as_ref()) {
            d.leg = super::call::permit_refs(p);
        }
        for t in &mut call.targets {
            t.rest.clear();
        }
        let placeholder_index = old_b.call_id != call.b.call_id
            && !call.attempts.iter().any(|a| a.leg.call_id == old_b.call_id);
        if placeholder_index {
            self.by_call_id.remove(&old_b.call_id);
        }
        tracing::info!(call = id, leg = no, "callee leg answered");
        self.cancel_legs(now, id, Some(COMPLETED_ELSEWHERE), out);
        self.on_b_answer(now, id, resp, out);
    }

    /// A loser's 2xx (it answered as it was being cancelled, or after another leg won): ACK it
    /// and hang it up, in that order (RFC 3261 9.1, 15); its units go with it.
    fn hang_up_late_answer(&mut self, id: u64, no: u8, resp: &Response, out: &mut Vec<Out>) {
        let local = self.settings.local.clone();
        let (ack_branch, bye_branch) = (self.branch(), self.branch());
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pos) = call.attempts.iter().position(|a| a.no == no) else {
            return;
        };
        let mut attempt = call.attempts.remove(pos);
        super::dialog::learn_target(&mut attempt.leg, resp);
        if let Some(tag) = resp.parts().to_tag() {
            attempt.leg.remote_tag = Some(tag.as_str().to_owned());
        }
        let leg = &mut attempt.leg;
        let contact = local.contact_of(leg);
        let sent_by = local.sent_by(leg.dest.transport).to_owned();
        let request = |method, branch| InDialog {
            method,
            sent_by: &sent_by,
            branch,
            contact: &contact,
            body: None,
            extra: &[],
        };
        let ack = leg.request(request(Method::Ack, &ack_branch), Some(1));
        let bye = leg.request(request(Method::Bye, &bye_branch), None);
        let dest = leg.dest;
        tracing::info!(call = id, leg = no, "losing leg answered late; ACK and BYE");
        out.push(Out::Send {
            dest,
            bytes: ack.clone(),
        });
        let bye_key = client_key_for(&bye_branch, &Method::Bye);
        out.push(Out::StartNonInvite {
            key: bye_key.clone(),
            dest,
            bytes: bye,
        });
        self.by_client.insert(bye_key, (id, ClientRole::Teardown));
        // Its 2xx retransmissions (our ACK lost) are ACKed again until the transaction ends.
        let role = ClientRole::ReinviteAcked {
            ack: super::dialog::exact(ack),
            dest,
        };
        self.by_client.insert(attempt.key.clone(), (id, role));
        let target = attempt.target;
        self.after_leg(id, target, &attempt.leg.call_id, dest, out);
        self.maybe_finish(id, out);
    }

    /// Leg `no` ended without an answer. Its units go back when it was its target's last leg;
    /// then the target's next way is tried when the failure allows it (failover); with no leg
    /// left the caller gets the best final response.
    pub(super) fn leg_over(
        &mut self,
        now: Instant,
        id: u64,
        no: u8,
        end: LegEnd,
        out: &mut Vec<Out>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pos) = call.attempts.iter().position(|a| a.no == no) else {
            return;
        };
        let attempt = call.attempts.remove(pos);
        let was_cancelled = attempt.state == AttemptState::Cancelling;
        tracing::info!(call = id, leg = no, status = end.status, "callee leg ended");
        self.by_client.remove(&attempt.key);
        call.client_keys.retain(|k| *k != attempt.key);
        if let Some(setup) = call.setup.as_mut() {
            let better = setup
                .best
                .as_ref()
                .is_none_or(|(s, _)| better(end.status, *s));
            if better && !was_cancelled {
                setup.best = Some((end.status, end.reason.clone()));
            }
        }
        let target = attempt.target;
        let pending = matches!(call.state, CallState::Calling | CallState::Early);
        if pending && call.b_no == no {
            // The leg that spoke for the call is gone: another one may now (its early media).
            call.early_media = false;
            if let Some(next) = call.attempts.first() {
                call.b = next.leg.clone();
                call.b_no = next.no;
            }
        }
        let target_live = call.attempts.iter().any(|a| a.target == target);
        let failover = pending && !target_live && end.fails_over();
        self.after_leg(id, target, &attempt.leg.call_id, attempt.leg.dest, out);
        if failover {
            self.fail_over(now, id, target, out);
        }
        if end.status >= 600 && pending {
            // RFC 3261 16.7: a 6xx ends the search at once.
            return self.refuse_everywhere(now, id, &end, out);
        }
        self.maybe_finish(id, out);
    }

    /// What a leg that left the call leaves behind: its Call-ID, its flow, and its target's
    /// units when no other leg of that target is live.
    fn after_leg(&mut self, id: u64, target: u8, call_id: &str, dest: Dest, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.b.call_id != call_id {
            self.by_call_id.remove(call_id);
        }
        let still_used = call.a.dest == dest
            || call.b.dest == dest
            || call.attempts.iter().any(|a| a.leg.dest == dest);
        if !call.attempts.iter().any(|a| a.target == target) {
            if let Some(t) = call.targets.get_mut(usize::from(target)) {
                t.permit = None;
            }
        }
        if !still_used {
            self.release_flows(id, &[dest], out);
        }
    }

    /// The next way to reach `target` (a trunk after the one that failed), admitted on its own
    /// units; ways whose units are full are skipped.
    fn fail_over(&mut self, now: Instant, id: u64, target: u8, out: &mut Vec<Out>) {
        let generation = self.limiter.current();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = call.targets.get_mut(usize::from(target)) else {
            return;
        };
        let rest = std::mem::take(&mut t.rest);
        if rest.is_empty() {
            return;
        }
        if generation.is_shared() {
            return self.ask_fail_over(now, id, target, rest, out);
        }
        t.round = t.round.wrapping_add(1);
        let key = super::setup::target_key(id, target, t.round);
        match super::setup::admit_target(&generation, key, rest, Charge::FailOver, now) {
            Ok((choice, permit, rest)) => {
                let trunk = choice
                    .trunk
                    .map(|t| generation.config().trunks[t.index()].name.as_str());
                tracing::info!(call = id, trunk, "failing over to the next trunk");
                t.permit = permit;
                t.rest = rest;
                self.start_choice(id, target, &choice, out);
            }
            Err(refusal) => {
                let refused = refusal.as_ref().map(ToString::to_string);
                tracing::info!(call = id, refused = ?refused, "no next trunk with room");
                let code = generation.config().server.reject_code;
                if let (Some(_), Some(setup)) = (refusal, call.setup.as_mut()) {
                    let phrase = super::setup::reason_phrase(code).to_owned();
                    setup.best.get_or_insert((code, phrase));
                }
            }
        }
    }

    /// A 6xx from a leg: the caller gets it now, and every other leg is cancelled.
    fn refuse_everywhere(&mut self, now: Instant, id: u64, end: &LegEnd, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.note_end(crate::cdr::Ender::Callee, "final_response");
        out.extend(call.respond_a(end.status, &end.reason, &[], None));
        call.cancel_outcome = Outcome::Failed;
        let reason = format!(
            "SIP;cause={};text=\"{}\"",
            end.status,
            end.reason.replace('"', "'")
        );
        self.cancel_legs(now, id, Some(&reason), out);
        self.maybe_finish(id, out);
    }

    /// A call with no leg left: before an answer the caller gets the best final response;
    /// while cancelling it is over.
    pub(super) fn maybe_finish(&mut self, id: u64, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.attempts.is_empty() || call.admitting > 0 {
            return;
        }
        match call.state {
            CallState::Calling | CallState::Early => {
                let (status, reason) = call
                    .setup
                    .as_ref()
                    .and_then(|s| s.best.clone())
                    .unwrap_or((480, "Temporarily Unavailable".to_owned()));
                call.note_end(crate::cdr::Ender::Callee, "final_response");
                out.extend(call.respond_a(status, &reason, &[], None));
                self.forget(id, Outcome::Failed, out);
            }
            CallState::Cancelling => {
                let outcome = call.cancel_outcome;
                self.forget(id, outcome, out);
            }
            CallState::Answered | CallState::Confirmed => {}
        }
    }

    /// Sends CANCEL to every leg still ringing, with `reason` (RFC 3326) when given, and arms
    /// the give-up timer (RFC 3261 9.1: no final within 64*T1, the leg is dropped).
    pub(super) fn cancel_legs(
        &mut self,
        now: Instant,
        id: u64,
        reason: Option<&str>,
        out: &mut Vec<Out>,
    ) {
        let give_up = now + 64 * self.settings.t1;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut any = false;
        let mut send = Vec::new();
        for attempt in &mut call.attempts {
            if attempt.state == AttemptState::Cancelling {
                continue;
            }
            any = true;
            if attempt.state == AttemptState::Calling {
                // No provisional yet: the CANCEL waits for one (or Timer B ends the leg).
                attempt.pending_cancel = Some(reason.map(str::to_owned));
            } else {
                send.push(attempt.no);
            }
            attempt.state = AttemptState::Cancelling;
        }
        for no in send {
            self.send_cancel(id, no, reason, out);
        }
        if any {
            out.push(Out::Arm {
                at: give_up,
                call: id,
                timer: CallTimer::CancelGiveUp,
            });
        }
    }

    /// Sends the CANCEL of leg `no`'s INVITE.
    fn send_cancel(&mut self, id: u64, no: u8, reason: Option<&str>, out: &mut Vec<Out>) {
        let Some(attempt) = self.calls.get_mut(&id).and_then(|c| c.attempt_mut(no)) else {
            return;
        };
        let extra: Vec<(&str, &str)> = reason.map(|r| ("Reason", r)).into_iter().collect();
        let cancel = sip::cancel_with(&attempt.invite, &extra);
        let branch = attempt.invite.parts().branch().map_or("", |b| b.as_str());
        let key = client_key_for(branch, &Method::Cancel);
        out.push(Out::StartNonInvite {
            key: key.clone(),
            dest: attempt.leg.dest,
            bytes: cancel,
        });
        self.by_client.insert(key, (id, ClientRole::Teardown));
    }

    /// 64*T1 after a CANCEL: legs that never sent their final are dropped with their units.
    pub(super) fn give_up_cancelled(&mut self, id: u64, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let stale: Vec<(u8, crate::transaction::TransactionKey, u8, String, Dest)> = call
            .attempts
            .iter()
            .filter(|a| a.state == AttemptState::Cancelling)
            .map(|a| {
                (
                    a.no,
                    a.key.clone(),
                    a.target,
                    a.leg.call_id.clone(),
                    a.leg.dest,
                )
            })
            .collect();
        for (no, key, target, call_id, dest) in stale {
            tracing::info!(
                call = id,
                leg = no,
                "no final response to our CANCEL; leg dropped"
            );
            if let Some(call) = self.calls.get_mut(&id) {
                call.attempts.retain(|a| a.no != no);
                call.client_keys.retain(|k| *k != key);
            }
            self.by_client.remove(&key);
            self.after_leg(id, target, &call_id, dest, out);
        }
        self.maybe_finish(id, out);
    }
}

/// Whether final status `new` is a better answer for the caller than `old` (RFC 3261 16.7: a
/// 6xx first, else the lowest class; the first of a class stays).
fn better(new: u16, old: u16) -> bool {
    let rank = |s: u16| if s >= 600 { 0 } else { s / 100 };
    rank(new) < rank(old)
}

#[cfg(test)]
mod tests {
    use super::better;

    #[test]
    fn the_best_response_is_a_6xx_else_the_lowest_class() {
        assert!(better(603, 486));
        assert!(better(486, 503));
        assert!(better(302, 404));
        assert!(!better(486, 480), "the first of a class stays");
        assert!(!better(500, 603));
    }
}

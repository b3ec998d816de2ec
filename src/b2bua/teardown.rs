//! Every way a call ends, each releasing the call's permit exactly once (dropping it) and
//! removing every index entry: BYE from either side, CANCEL (in `dialog`), a failure final from B
//! (in `dialog`), Timer B on the B INVITE, no ACK for our 2xx, `max_call_duration`, a transport
//! failure, an operator's `DELETE /calls/{id}` and the daemon's drain.

use std::net::SocketAddr;
use std::time::Instant;

use super::call::{CallState, Outcome};
use super::leg::{InDialog, Side};
use super::{B2bua, CallTimer, ClientRole, Out};
use crate::sip::{self, Method};
use crate::transaction::sip_keys::client_key_for;
use crate::transaction::TransactionKey;

impl B2bua {
    /// A BYE arrived on `side`: hang up the other leg.
    pub(super) fn hang_up_from(&mut self, now: Instant, id: u64, side: Side, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match side {
            Side::A => call.note_end(crate::cdr::Ender::Caller, "bye"),
            Side::B => call.note_end(crate::cdr::Ender::Callee, "bye"),
        }
        match (side, call.state) {
            // BYE from B before it answered is not legal (its leg already failed in
            // `on_in_dialog`); here only from a dialog no leg has any more.
            (Side::B, CallState::Calling | CallState::Early) => {}
            // BYE from A in an early dialog: it gives up on the call, as with CANCEL.
            (Side::A, CallState::Calling | CallState::Early) => {
                let key = call.a_invite_key.clone();
                self.on_cancel(now, &key, out);
            }
            // B hung up before A ACKed our 2xx: A's BYE waits for the ACK (RFC 3261 15).
            (Side::B, CallState::Answered) => self.bye_a_after_ack(id, Outcome::Answered),
            (_, state) => {
                let outcome = outcome_of(state);
                let _ = now;
                self.send_bye(id, side.other(), out);
                self.forget(id, outcome, out);
            }
        }
    }

    /// Ends a call from callgate's side: BYE on both legs once answered; before the answer, 480
    /// to A and CANCEL to B.
    pub fn end_call(&mut self, now: Instant, id: u64, outcome: Outcome, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match call.state {
            CallState::Calling | CallState::Early => {
                out.extend(call.respond_a(480, "Temporarily Unavailable", &[], None));
                call.cancel_outcome = Outcome::Failed;
                self.cancel_b(now, id, None, out);
            }
            CallState::Cancelling => {
                let outcome = call.cancel_outcome;
                self.forget(id, outcome, out)
            }
            CallState::Answered if call.bye_a_after_ack.is_none() => {
                self.send_bye(id, Side::B, out);
                self.bye_a_after_ack(id, outcome);
            }
            CallState::Answered | CallState::Confirmed => {
                let b_done = call.bye_a_after_ack.is_some();
                self.send_bye(id, Side::A, out);
                if !b_done {
                    self.send_bye(id, Side::B, out);
                }
                self.forget(id, outcome, out);
            }
        }
    }

    /// The call is over but A has not ACKed our 2xx: release the units now, BYE A on its ACK
    /// (or when the no-ACK timer gives up).
    fn bye_a_after_ack(&mut self, id: u64, outcome: Outcome) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.release_units();
            call.bye_a_after_ack = Some(outcome);
        }
    }

    /// Ends the call `id` as the admin API asks (`DELETE /calls/{id}`); false when unknown.
    pub fn end_call_by_operator(&mut self, now: Instant, id: u64, out: &mut Vec<Out>) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let outcome = outcome_of(call.state);
        if let Some(call) = self.calls.get_mut(&id) {
            call.note_end(crate::cdr::Ender::Callgate, "operator");
        }
        self.end_call(now, id, outcome, out);
        true
    }

    /// Drain for shutdown: refuse new calls from now on and end every call in progress.
    pub fn drain(&mut self, now: Instant, out: &mut Vec<Out>) {
        self.draining = true;
        self.drain_waiting(out);
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            let outcome = match self.calls.get_mut(&id) {
                Some(c) => {
                    c.note_end(crate::cdr::Ender::Callgate, "shutdown");
                    outcome_of(c.state)
                }
                None => Outcome::Failed,
            };
            self.end_call(now, id, outcome, out);
        }
    }

    /// A call timer fired.
    pub fn on_timer(&mut self, now: Instant, id: u64, timer: CallTimer, out: &mut Vec<Out>) {
        let t2 = self.settings.t2;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match timer {
            CallTimer::RetransmitOk => {
                if let (CallState::Answered, Some(ok)) = (call.state, &call.a_ok) {
                    out.push(Out::Send {
                        dest: call.a.dest,
                        bytes: ok.clone(),
                    });
                    call.a_ok_interval = (call.a_ok_interval * 2).min(t2);
                    out.push(Out::Arm {
                        at: now + call.a_ok_interval,
                        call: id,
                        timer,
                    });
                }
            }
            CallTimer::NoAck => {
                if call.state == CallState::Confirmed {
                    // 64*T1 after the answer B has stopped retransmitting its 2xx (RFC 3261
                    // 13.3.1.4): the ACK kept to answer those retransmissions can go.
                    call.b_ack = None;
                }
                if call.state == CallState::Answered {
                    tracing::info!(call = id, "no ACK for our 2xx; ending the call");
                    call.note_end(crate::cdr::Ender::Callgate, "no_ack");
                    // Give up waiting: BYE A now, and B unless it already hung up.
                    let b_done = call.bye_a_after_ack.is_some();
                    self.send_bye(id, Side::A, out);
                    if !b_done {
                        self.send_bye(id, Side::B, out);
                    }
                    self.forget(id, Outcome::Answered, out);
                }
            }
            CallTimer::SessionExpiry => {
                // Stale wake-ups (the session was refreshed since) carry an earlier deadline.
                if call.session_deadline.is_some_and(|d| d <= now) {
                    call.note_end(crate::cdr::Ender::Callgate, "session_expired");
                    tracing::info!(
                        call = id,
                        "session expired without refresh; ending the call"
                    );
                    self.end_call(now, id, Outcome::Answered, out);
                }
            }
            CallTimer::RingTimeout => {
                if matches!(call.state, CallState::Calling | CallState::Early) {
                    tracing::info!(call = id, "no answer in time; cancelling the callee");
                    call.note_end(crate::cdr::Ender::Callgate, "ring_timeout");
                    self.end_call(now, id, Outcome::Failed, out);
                }
            }
            CallTimer::CancelGiveUp => self.give_up_cancelled(id, out),
            CallTimer::MaxDuration => {
                tracing::info!(call = id, "max_call_duration reached; ending the call");
                call.note_end(crate::cdr::Ender::Callgate, "max_call_duration");
                let outcome = outcome_of(call.state);
                self.end_call(now, id, outcome, out);
            }
            CallTimer::Probe => self.on_probe_timer(now, id, out),
            CallTimer::CloseProbe => self.on_close_probe(id, out),
            CallTimer::RetransmitReinviteOk => self.retransmit_reinvite_ok(now, id, out),
        }
    }

    /// Probes each leg of a confirmed call that has no probe in flight, and re-arms.
    fn on_probe_timer(&mut self, now: Instant, id: u64, out: &mut Vec<Out>) {
        let Some(interval) = self.limiter.current().config().server.dialog_probe_interval else {
            return;
        };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.state == CallState::Confirmed {
            let idle = [Side::A, Side::B].map(|s| !call.probing[side_index(s)]);
            for (side, idle) in [Side::A, Side::B].into_iter().zip(idle) {
                if idle {
                    self.send_probe(id, side, out);
                }
            }
        }
        out.push(Out::Arm {
            at: now + interval,
            call: id,
            timer: CallTimer::Probe,
        });
    }

    /// Our 2xx to a relayed re-INVITE, again (T1 doubling to T2); 64*T1 without the ACK: the
    /// leg is gone and the call ends (RFC 3261 13.3.1.4).
    fn retransmit_reinvite_ok(&mut self, now: Instant, id: u64, out: &mut Vec<Out>) {
        let t2 = self.settings.t2;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pending) = call.reinvite_ok.as_mut() else {
            return;
        };
        if now >= pending.give_up {
            tracing::info!(
                call = id,
                "no ACK for our 2xx to a re-INVITE; ending the call"
            );
            call.reinvite_ok = None;
            call.note_end(crate::cdr::Ender::Callgate, "no_ack");
            let outcome = outcome_of(call.state);
            return self.end_call(now, id, outcome, out);
        }
        let dest = match pending.side {
            Side::A => call.a.dest,
            Side::B => call.b.dest,
        };
        out.push(Out::Send {
            dest,
            bytes: pending.bytes.clone(),
        });
        pending.interval = (pending.interval * 2).min(t2);
        out.push(Out::Arm {
            at: (now + pending.interval).min(pending.give_up),
            call: id,
            timer: CallTimer::RetransmitReinviteOk,
        });
    }

    /// One of our client transactions timed out or hit a transport error.
    pub fn on_client_failure(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        timed_out: bool,
        out: &mut Vec<Out>,
    ) {
        let Some((id, role)) = self.by_client.remove(key) else {
            return;
        };
        match role {
            ClientRole::Invite { leg } => {
                let end = if timed_out {
                    super::fork::LegEnd::new(408, "Request Timeout")
                } else {
                    super::fork::LegEnd::new(503, "Service Unavailable")
                };
                self.leg_over(now, id, leg, end, out);
            }
            ClientRole::Relay {
                origin, origin_req, ..
            } => {
                let (status, reason) = if timed_out {
                    (408, "Request Timeout")
                } else {
                    (503, "Service Unavailable")
                };
                let bytes = sip::response_to(&origin_req, status, reason, None, &[]);
                out.push(Out::Respond {
                    key: origin,
                    status,
                    bytes,
                });
                let towards = self
                    .by_call_id
                    .get(origin_req.parts().call_id())
                    .map(|(_, side)| side.other());
                if let Some(call) = self.calls.get_mut(&id) {
                    call.reinvite_pending = false;
                    call.client_keys.retain(|k| k != key);
                }
                let Some(towards) = towards else {
                    return;
                };
                if timed_out {
                    // No answer at all: that leg is gone (RFC 3261 12.2.1.2).
                    self.leg_gone(now, id, towards, "relayed request unanswered", out);
                } else {
                    // Its connection failed: a probe reconnects, or fails and ends the call.
                    self.probe_after_close(id, towards, out);
                }
            }
            ClientRole::Probe { side, retry } => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.probing[side_index(side)] = false;
                }
                match (timed_out, retry) {
                    (true, _) => self.leg_gone(now, id, side, "probe unanswered", out),
                    (false, true) => self.leg_gone(now, id, side, "probe could not be sent", out),
                    // The connection it went on was lost: once more, over a new one.
                    (false, false) => self.send_probe_attempt(id, side, true, out),
                }
            }
            ClientRole::Teardown | ClientRole::ReinviteAcked { .. } => {}
        }
    }

    /// A TCP connection closed. An answered call does not end at once: the peer may reconnect
    /// (a PBX that closes idle connections, a phone whose NAT binding changed), so each leg on
    /// that peer is probed now, and the probe reconnects or fails (then the call ends). A probe
    /// already in flight over the closed connection cannot be answered: that leg is gone. A
    /// call still being set up has its INVITE or its responses on the connection: it ends
    /// (503 to A, or CANCEL towards B).
    pub fn on_transport_closed(&mut self, now: Instant, peer: SocketAddr, out: &mut Vec<Out>) {
        let Some(ids) = self
            .by_peer
            .get(&peer)
            .map(|s| s.iter().copied().collect::<Vec<u64>>())
        else {
            return;
        };
        let mut probed = 0usize;
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let on_peer = |d: super::Dest| d.transport.is_stream() && d.addr == peer;
            let answered = matches!(call.state, CallState::Answered | CallState::Confirmed);
            let sides: Vec<Side> = [(Side::A, call.a.dest), (Side::B, call.b.dest)]
                .into_iter()
                .filter(|(s, d)| on_peer(*d) && (answered || *s == Side::A))
                .map(|(s, _)| s)
                .collect();
            // Callee legs still being set up have their INVITE on the connection: they fail.
            let legs: Vec<u8> = call
                .attempts
                .iter()
                .filter(|a| on_peer(a.leg.dest))
                .map(|a| a.no)
                .collect();
            tracing::debug!(call = id, peer.addr = %peer, answered, "transport closed");
            for no in legs {
                let end = super::fork::LegEnd::new(503, "Service Unavailable");
                self.leg_over(now, id, no, end, out);
            }
            if !answered {
                if !sides.is_empty() {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.note_end(crate::cdr::Ender::Caller, "transport");
                    }
                    self.end_call(now, id, Outcome::Failed, out);
                }
                continue;
            }
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            // A PBX with thousands of calls on one connection: probes go in batches, or the
            // new connection's queue would overflow and healthy calls would be lost.
            let batch = probed / CLOSE_PROBE_BATCH;
            probed += 1;
            if batch == 0 {
                for side in sides {
                    self.probe_after_close(id, side, out);
                }
                continue;
            }
            for side in sides {
                call.close_probe[side_index(side)] = true;
            }
            let at = now + CLOSE_PROBE_SPACING * u32::try_from(batch).unwrap_or(u32::MAX);
            out.push(Out::Arm {
                at,
                call: id,
                timer: CallTimer::CloseProbe,
            });
        }
        if probed > 0 {
            tracing::info!(peer.addr = %peer, calls = probed, "transport closed; probing its answered calls");
        }
    }

    /// The staggered probe of a call whose connection closed.
    fn on_close_probe(&mut self, id: u64, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let sides = std::mem::take(&mut call.close_probe);
        for (side, due) in [Side::A, Side::B].into_iter().zip(sides) {
            if due {
                self.probe_after_close(id, side, out);
            }
        }
    }

    fn probe_after_close(&mut self, id: u64, side: Side, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let leg = match side {
            Side::A => &mut call.a,
            Side::B => &mut call.b,
        };
        // A TLS leg is not redialled: callgate opens no TLS connection of its own, so its probe
        // goes to the old flow and fails unless the phone reconnected from the same address.
        let tcp = leg.dest.transport == crate::config::model::Transport::Tcp;
        if let Some(listener) = listener_of(leg).filter(|_| tcp) {
            // The connection came from the peer's ephemeral port; a new one goes to where it
            // listens (its Contact, RFC 3261 12.2.1.1), on the same host only: a Contact must
            // not point callgate at someone else.
            tracing::debug!(call = id, leg = side.as_str(), to = %listener, "leg reconnects to its Contact");
            let old = leg.dest;
            leg.dest.addr = listener;
            let legs = [call.a.dest, call.b.dest];
            self.move_flow(id, old, &legs, out);
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        // A probe in flight decides: the engine fails it if it went over the closed connection
        // (then it is sent once more), else its answer comes.
        if !call.probing[side_index(side)] {
            self.send_probe(id, side, out);
        }
    }

    /// A leg of call `id` is gone: the call ends with BYE on both legs. Not while the call
    /// waits for A's ACK: a BYE to A must wait for it (RFC 3261 15), and the no-ACK timer ends
    /// a call whose ACK never comes.
    fn leg_gone(&mut self, now: Instant, id: u64, side: Side, why: &str, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state == CallState::Answered {
            return;
        }
        tracing::info!(
            call = id,
            leg = side.as_str(),
            why,
            "leg gone; ending the call"
        );
        let who = match side {
            Side::A => crate::cdr::Ender::Caller,
            Side::B => crate::cdr::Ender::Callee,
        };
        call.note_end(who, "unreachable");
        let outcome = outcome_of(call.state);
        self.end_call(now, id, outcome, out);
    }

    /// Sends an in-dialog OPTIONS towards one leg (RFC 3261 11; the probe of a dialog whose far
    /// end may be gone).
    pub(super) fn send_probe(&mut self, id: u64, side: Side, out: &mut Vec<Out>) {
        self.send_probe_attempt(id, side, false, out);
    }

    fn send_probe_attempt(&mut self, id: u64, side: Side, retry: bool, out: &mut Vec<Out>) {
        let local = self.settings.local.clone();
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.probing[side_index(side)] = true;
        let leg = match side {
            Side::A => &mut call.a,
            Side::B => &mut call.b,
        };
        let contact = local.contact_of(leg);
        let sent_by = local.sent_by(leg.dest.transport).to_owned();
        let bytes = leg.request(
            InDialog {
                method: Method::Options,
                sent_by: &sent_by,
                branch: &branch,
                contact: &contact,
                body: None,
                extra: &[("Accept", "application/sdp")],
            },
            None,
        );
        let dest = leg.dest;
        let key = client_key_for(&branch, &Method::Options);
        // Not in `client_keys`: a probe's entry goes with its final, timeout or transaction end
        // (a key per probe kept for the life of the call would grow with it).
        out.push(Out::StartNonInvite {
            key: key.clone(),
            dest,
            bytes,
        });
        self.by_client
            .insert(key, (id, ClientRole::Probe { side, retry }));
    }

    /// A final response to a probe: 408 and 481 say the dialog is gone on that side (RFC 3261
    /// 12.2.1.2); anything else (200, 405, 501...) says the peer is there.
    pub(super) fn on_probe_response(
        &mut self,
        now: Instant,
        id: u64,
        side: Side,
        status: u16,
        out: &mut Vec<Out>,
    ) {
        if status < 200 {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.probing[side_index(side)] = false;
        if matches!(status, 408 | 481) {
            self.leg_gone(now, id, side, "probe answered 408/481", out);
        }
    }

    pub(super) fn send_bye(&mut self, id: u64, side: Side, out: &mut Vec<Out>) {
        let local = self.settings.local.clone();
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let leg = match side {
            Side::A => &mut call.a,
            Side::B => &mut call.b,
        };
        let contact = local.contact_of(leg);
        let sent_by = local.sent_by(leg.dest.transport).to_owned();
        let bytes = leg.request(
            InDialog {
                method: Method::Bye,
                sent_by: &sent_by,
                branch: &branch,
                contact: &contact,
                body: None,
                extra: &[],
            },
            None,
        );
        let key = client_key_for(&branch, &Method::Bye);
        out.push(Out::StartNonInvite {
            key: key.clone(),
            dest: leg.dest,
            bytes,
        });
        self.by_client.insert(key, (id, ClientRole::Teardown));
    }

    /// Removes a call and every index entry pointing at it, dropping its permit (the release).
    /// Requests of the call still waiting for an answer get one: A's INVITE (500 if nothing
    /// else answered it) and relayed requests (487, RFC 3261 15.1.2), so no server transaction
    /// outlives its call.
    pub(super) fn forget(&mut self, id: u64, outcome: Outcome, out: &mut Vec<Out>) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        if !call.a_final_sent {
            out.extend(call.respond_a(500, "Server Internal Error", &[], None));
        }
        self.by_call_id.remove(&call.a.call_id);
        self.by_call_id.remove(&call.b.call_id);
        let mut dests = vec![call.a.dest, call.b.dest];
        for attempt in &call.attempts {
            self.by_call_id.remove(&attempt.leg.call_id);
            dests.push(attempt.leg.dest);
        }
        self.by_a_invite.remove(&call.a_invite_key);
        self.release_flows(id, &dests, out);
        // Drop the call's B INVITE and relay entries by key (a scan of every call's entries per
        // ended call was O(calls) and overloaded the driver at 50 000 held calls); teardown
        // transactions stay until they end (their responses are ignored).
        for key in &call.client_keys {
            let ours = matches!(self.by_client.get(key), Some((cid, role)) if *cid == id && !matches!(role, ClientRole::Teardown));
            if !ours {
                continue;
            }
            if let Some((
                _,
                ClientRole::Relay {
                    origin, origin_req, ..
                },
            )) = self.by_client.remove(key)
            {
                let bytes = sip::response_to(&origin_req, 487, "Request Terminated", None, &[]);
                out.push(Out::Respond {
                    key: origin,
                    status: 487,
                    bytes,
                });
            }
        }
        if let Some(record) = call.take_record(outcome) {
            out.push(Out::Record(Box::new(record)));
        }
        call.release_units();
        tracing::info!(call = id, call_id = %call.a.call_id, b_call_id = %call.b.call_id, outcome = ?outcome, "call ended");
        out.push(Out::Ended { call: id, outcome });
    }

    /// Forgets teardown transactions once their transaction ended.
    pub fn on_client_terminated(&mut self, key: &TransactionKey) {
        let Some(&(id, ref role)) = self.by_client.get(key) else {
            return;
        };
        // The B INVITE stays indexed while its call lives (B's 2xx retransmissions are ACKed
        // from it); every other entry goes with its transaction, so a long call does not
        // collect one per refresh or relayed request.
        let live_invite = matches!(role, ClientRole::Invite { .. }) && self.calls.contains_key(&id);
        if live_invite {
            return;
        }
        self.by_client.remove(key);
        if let Some(call) = self.calls.get_mut(&id) {
            call.client_keys.retain(|k| k != key);
        }
    }
}

/// The address a leg's peer listens on, from its Contact (the remote target), when it is the same
/// IP as the leg's current address but another port.
fn listener_of(leg: &super::Leg) -> Option<SocketAddr> {
    let uri = leg
        .remote_target
        .trim_start_matches('<')
        .trim_end_matches('>');
    let crate::sip::uri::Uri::Sip(sip) = crate::sip::uri::Uri::parse(uri)? else {
        return None;
    };
    let ip: std::net::IpAddr = sip
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let addr = SocketAddr::new(ip, sip.port.unwrap_or(5060));
    (ip == leg.dest.addr.ip() && addr != leg.dest.addr).then_some(addr)
}

/// Calls probed at once after a connection closed (a new connection queues 1 024 messages).
const CLOSE_PROBE_BATCH: usize = 128;
/// Between two batches: 50 000 calls on one peer are all probed within ~40 s.
const CLOSE_PROBE_SPACING: std::time::Duration = std::time::Duration::from_millis(100);

pub(super) fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

pub(super) fn outcome_of(state: CallState) -> Outcome {
    match state {
        CallState::Answered | CallState::Confirmed => Outcome::Answered,
        CallState::Cancelling => Outcome::Cancelled,
        CallState::Calling | CallState::Early => Outcome::Failed,
    }
}

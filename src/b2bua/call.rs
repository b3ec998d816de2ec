//! A call: leg A, the callee legs being tried (several when a ring rule forks, one after another
//! on trunk failover), the leg that answered, and the permits that hold its counters.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::leg::Leg;
use crate::limits::Permit;
use crate::sip::{self, Request};
use crate::transaction::TransactionKey;

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// B leg INVITE sent, no provisional response yet.
    Calling,
    /// B leg sent a provisional response (ringing / early media).
    Early,
    /// B answered; waiting for A's ACK of our 2xx.
    Answered,
    /// Both legs confirmed.
    Confirmed,
    /// A cancelled before B answered; waiting for B's final response to the INVITE.
    Cancelling,
}

impl CallState {
    /// Lower-case name for logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Calling => "calling",
            CallState::Early => "early",
            CallState::Answered => "answered",
            CallState::Confirmed => "confirmed",
            CallState::Cancelling => "cancelling",
        }
    }
}

/// How a call ended, for `callgate_calls_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was answered (whatever ended it afterwards).
    Answered,
    /// Refused by the limiter before any leg was created.
    Rejected,
    /// B failed, timed out, or a transport failed before an answer.
    Failed,
    /// The caller cancelled before an answer.
    Cancelled,
}

/// One bridged call.
#[derive(Debug)]
pub struct Call {
    /// Call number, unique per driver (also the limiter's call key).
    pub id: u64,
    /// Leg towards the caller.
    pub a: Leg,
    /// The callee leg that speaks for the call: the leg that answered; before that the leg whose
    /// early media the caller hears, or the first leg started.
    pub b: Leg,
    /// Leg number of `b` (see [`Attempt::no`]).
    pub(super) b_no: u8,
    /// `b` was chosen for its early media: other legs' provisionals no longer reach the caller.
    pub(super) early_media: bool,
    /// Callee legs whose INVITE is in progress, besides an answered `b` (losers being
    /// cancelled stay here until their transaction ends).
    pub(super) attempts: Vec<Attempt>,
    /// Per target of the call's plan: its units and its untried ways.
    pub(super) targets: Vec<TargetState>,
    /// Next leg number.
    pub(super) next_leg: u8,
    /// The units of the leg that answered (its target's), for the rest of the call.
    pub(super) b_permit: Option<Permit>,
    /// How the call ends once its cancelled legs are done (the caller's CANCEL: cancelled; a 6xx
    /// or a timeout: failed).
    pub(super) cancel_outcome: Outcome,
    /// Current state.
    pub state: CallState,
    /// When the A INVITE arrived.
    pub started: Instant,
    /// When B answered.
    pub answered: Option<Instant>,
    /// Both INVITEs while the call is being set up; dropped once both legs are confirmed, so a
    /// held call keeps only its dialog state.
    pub(super) setup: Option<Box<Setup>>,
    /// Its server transaction.
    pub(super) a_invite_key: TransactionKey,
    /// ACK for B's 2xx, re-sent when B retransmits the 2xx.
    pub(super) b_ack: Option<Bytes>,
    /// Our 2xx to A, retransmitted until A's ACK.
    pub(super) a_ok: Option<Bytes>,
    /// Next 2xx retransmission interval.
    pub(super) a_ok_interval: Duration,
    /// Whether B's ACK waits for A's (late offer: the SDP answer comes in A's ACK).
    pub(super) b_ack_waits_for_a: bool,
    /// A re-INVITE is being relayed (a second one gets 491, RFC 3261 14.1).
    pub(super) reinvite_pending: bool,
    /// RFC 4028 session interval agreed with A (A refreshes; callgate only watches).
    pub(super) session: Option<Duration>,
    /// When the session expires unless refreshed.
    pub(super) session_deadline: Option<Instant>,
    /// The call is over but A has not ACKed our 2xx yet: the BYE to A waits for that ACK
    /// (RFC 3261 15: no BYE on a confirmed dialog before the ACK), or for the no-ACK timer.
    pub(super) bye_a_after_ack: Option<Outcome>,
    /// Our client transactions for this call that are not teardown (the B INVITE, relays), so
    /// ending the call removes exactly those index entries.
    pub(super) client_keys: Vec<TransactionKey>,
    /// The counters the call holds; `None` once released.
    pub(super) permit: Option<Permit>,
    /// A has had a final response to its INVITE; until then ending the call answers it, so no
    /// server transaction outlives its call.
    pub(super) a_final_sent: bool,
    /// An in-dialog OPTIONS probe is in flight towards leg A / leg B.
    pub(super) probing: [bool; 2],
    /// Leg A / leg B waits for its probe after its connection closed (staggered).
    pub(super) close_probe: [bool; 2],
    /// Our 2xx to a relayed re-INVITE, retransmitted until its ACK (RFC 3261 13.3.1.4).
    pub(super) reinvite_ok: Option<Box<PendingOk>>,
    /// What its call detail record needs beyond the call's state (`None`: no records kept).
    pub(super) record: Option<Box<RecordDraft>>,
    /// Failover admissions the shared backend has not answered yet: the call is not over
    /// while one may still start a leg.
    pub(super) admitting: u8,
}

/// A call detail record in the making.
#[derive(Debug, Default)]
pub(super) struct RecordDraft {
    /// The counters of the call's own permit.
    pub(super) own: Vec<crate::cdr::CounterRef>,
    /// The counters of the leg that answered, or else of the first leg started.
    pub(super) leg: Vec<crate::cdr::CounterRef>,
    /// Who ended the call and why: the first cause noted wins.
    pub(super) ended_by: Option<(crate::cdr::Ender, &'static str)>,
    /// The final status sent to the caller.
    pub(super) status: Option<u16>,
}

/// A 2xx to a re-INVITE waiting for the originator's ACK.
#[derive(Debug)]
pub(super) struct PendingOk {
    /// The leg that sent the re-INVITE (and must ACK).
    pub(super) side: super::leg::Side,
    /// The re-INVITE's CSeq number (its ACK carries it).
    pub(super) cseq: u32,
    /// The 2xx, as sent.
    pub(super) bytes: Bytes,
    /// Next retransmission interval (T1 doubling up to T2).
    pub(super) interval: Duration,
    /// 64*T1 after the 2xx: without an ACK by then the leg is gone.
    pub(super) give_up: Instant,
}

/// The messages only call set-up needs.
#[derive(Debug)]
pub(super) struct Setup {
    /// The caller's INVITE (responses to A and the callee legs' INVITEs are built from it).
    pub(super) a_invite: Request,
    /// The best final response from a failed leg so far (RFC 3261 16.7): what the caller gets
    /// when no leg answers.
    pub(super) best: Option<(u16, String)>,
}

/// One callee leg being set up: a dialog of its own (own Call-ID, tags and INVITE transaction).
#[derive(Debug)]
pub(super) struct Attempt {
    /// Its number within the call (its client role names it).
    pub(super) no: u8,
    /// Which target of the plan it reaches.
    pub(super) target: u8,
    /// Its dialog state.
    pub(super) leg: Leg,
    /// Our INVITE, parsed (its CANCEL is built from it).
    pub(super) invite: Request,
    /// The INVITE's client transaction.
    pub(super) key: TransactionKey,
    /// Where it is.
    pub(super) state: AttemptState,
    /// A CANCEL (with this `Reason`, if any) waiting for the leg's first provisional response:
    /// RFC 3261 9.1 forbids sending it before one, since it could overtake the INVITE and leave
    /// the callee ringing.
    pub(super) pending_cancel: Option<Option<String>>,
}

/// Where a callee leg is before the call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttemptState {
    /// INVITE sent.
    Calling,
    /// A provisional response came.
    Early,
    /// CANCEL sent; waiting for its INVITE's final response.
    Cancelling,
}

/// A target of the call's plan while it is being reached.
#[derive(Debug)]
pub(super) struct TargetState {
    /// The units of the way being tried (`None`: the call's own cover it, or already released).
    pub(super) permit: Option<Permit>,
    /// Ways not tried yet, in order (outbound failover).
    pub(super) rest: Vec<crate::routing::plan::Choice>,
    /// Failovers so far (part of the limiter's key: [`super::setup::target_key`]).
    pub(super) round: u8,
}

impl Call {
    /// The caller's INVITE, while set-up lasts.
    pub(super) fn a_invite(&self) -> Option<&Request> {
        self.setup.as_ref().map(|s| &s.a_invite)
    }

    /// The callee leg number `no` being set up.
    pub(super) fn attempt_mut(&mut self, no: u8) -> Option<&mut Attempt> {
        self.attempts.iter_mut().find(|a| a.no == no)
    }

    /// Notes who ends the call and why, for its record (the first cause wins).
    pub(super) fn note_end(&mut self, who: crate::cdr::Ender, reason: &'static str) {
        if let Some(d) = self.record.as_mut() {
            d.ended_by.get_or_insert((who, reason));
        }
    }

    /// Notes the final status sent to the caller, for its record.
    pub(super) fn note_status(&mut self, status: u16) {
        if let Some(d) = self.record.as_mut() {
            d.status.get_or_insert(status);
        }
    }

    /// The call's record, once it ended with `outcome` (its end time is the engine's to set).
    pub(super) fn take_record(&mut self, outcome: Outcome) -> Option<crate::cdr::CallRecord> {
        let d = self.record.take()?;
        let (who, reason) = d.ended_by.unwrap_or(match outcome {
            Outcome::Cancelled => (crate::cdr::Ender::Caller, "cancel"),
            Outcome::Failed | Outcome::Rejected => (crate::cdr::Ender::Callee, "final_response"),
            Outcome::Answered => (crate::cdr::Ender::Callgate, "ended"),
        });
        let mut path = d.own;
        path.extend(d.leg);
        Some(crate::cdr::CallRecord {
            call: self.id,
            a_call_id: self.a.call_id.clone(),
            b_call_id: self.answered.map(|_| self.b.call_id.clone()),
            caller: self.from_uri().to_owned(),
            callee: self.to_uri().to_owned(),
            path,
            started: self.started,
            answered: self.answered,
            ended: self.started,
            outcome: outcome_name(outcome),
            ended_by: who,
            reason,
            status: d.status,
            refused_by: None,
        })
    }

    /// Drops every unit the call holds: its own, the answered leg's and its targets'.
    pub(super) fn release_units(&mut self) {
        self.permit = None;
        self.b_permit = None;
        for t in &mut self.targets {
            t.permit = None;
        }
    }

    /// A final or provisional response to the caller's INVITE (none once set-up is over).
    pub(super) fn respond_a(
        &mut self,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Option<super::Out> {
        // One final per INVITE: two ways of ending the call at once (both legs on one closed
        // connection) must not answer it twice.
        if self.a_final_sent {
            return None;
        }
        self.a_final_sent |= status >= 200;
        if status >= 200 {
            self.note_status(status);
        }
        let bytes = sip::response_with_body(
            self.a_invite()?,
            status,
            reason,
            Some(&self.a.local_tag),
            extra,
            body,
        );
        Some(super::Out::Respond {
            key: self.a_invite_key.clone(),
            status,
            bytes,
        })
    }

    /// The caller's URI (From of the A INVITE), for the admin API.
    pub fn from_uri(&self) -> &str {
        unbracket(&self.a.remote_uri)
    }

    /// The dialled URI (To of the A INVITE), for the admin API.
    pub fn to_uri(&self) -> &str {
        unbracket(&self.a.local_uri)
    }

    /// The counters held, as (level, name, counter) strings for the admin API: the call's own,
    /// then its legs'.
    pub fn counters(&self) -> Vec<(String, String, String)> {
        let legs = self.targets.iter().filter_map(|t| t.permit.as_ref());
        self.permit
            .iter()
            .chain(self.b_permit.iter())
            .chain(legs)
            .flat_map(permit_refs)
            .map(|c| (c.level, c.name, c.counter))
            .collect()
    }
}

/// The counters of `permit`, by name.
pub(super) fn permit_refs(permit: &Permit) -> Vec<crate::cdr::CounterRef> {
    let generation = permit.generation();
    permit
        .path()
        .ids()
        .iter()
        .map(|id| {
            let (level, name, counter) = generation.describe(*id);
            crate::cdr::CounterRef {
                level: level.as_str().to_owned(),
                name,
                counter: counter.as_str().to_owned(),
            }
        })
        .collect()
}

/// The name of an outcome in records and metrics.
pub(super) fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Answered => "answered",
        Outcome::Rejected => "rejected",
        Outcome::Failed => "failed",
        Outcome::Cancelled => "cancelled",
    }
}

fn unbracket(uri: &str) -> &str {
    uri.strip_prefix('<')
        .and_then(|u| u.strip_suffix('>'))
        .unwrap_or(uri)
}

/// The session interval for a call (RFC 4028): ours, or the caller's when it asked for less, as
/// long as the caller supports the extension (else it could not refresh and the call would die).
pub(super) fn session_interval(invite: &Request, ours: Option<Duration>) -> Option<Duration> {
    let ours = ours?;
    let parts = invite.parts();
    let supports = parts
        .supported()
        .filter_map(Result::ok)
        .any(|t| t.eq_ignore_ascii_case("timer"));
    if !supports {
        return None;
    }
    let asked = parts
        .session_expires()
        .and_then(Result::ok)
        .map(|se| Duration::from_secs(se.secs.into()));
    // 90 s is RFC 4028's minimum Min-SE.
    Some(match asked {
        Some(a) if a < ours && a >= Duration::from_secs(90) => a,
        _ => ours,
    })
}

/// When callgate, the non-refresher, ends an unrefreshed session: min(32 s, interval/3) before
/// it expires (RFC 4028 10).
pub(super) fn session_deadline(now: Instant, interval: Duration) -> Instant {
    now + interval - (interval / 3).min(Duration::from_secs(32))
}

//! Two-step admission through a shared counter backend (`[counters] backend = "redis"`): the
//! call waits, as an entry of its own, while the driver asks the backend, so a network round trip
//! never blocks the shard.
//!
//! A new call is routed and planned as with in-memory counters; then each unit it needs (its own,
//! and per target the ordered ways to reach it: trunk failover) is reserved (calls-per-second
//! tokens, local) and sent in one [`AdmitRequest`]. The caller gets 100 Trying at once. The
//! answer ([`B2bua::on_admitted`]) turns the reservations into permits and starts the call as
//! the in-memory path would, or refuses it. While it waits, the caller's CANCEL answers 487 and a
//! drain 503; the answer then only releases what was granted. A failover after a failed leg asks
//! the same way, with the call held open until the answer.
//!
//! When the backend fails, `on_backend_error` decides: `reject` answers 503 with a Reason naming
//! the backend; `local` admits on this node's counters and limits alone.

use std::sync::Arc;
use std::time::Instant;

use super::call::{CallState, TargetState};
use super::leg::Dest;
use super::setup::{target_key, Admitted};
use super::{B2bua, Out};
use crate::config::model::{BackendErrorPolicy, CounterBackend};
use crate::limits::{CallKey, Charge, Generation, Path, Permit, Refusal, Reservation};
use crate::routing::plan::{Choice, Plan};
use crate::routing::RouteError;
use crate::sip::{self, Request};
use crate::transaction::TransactionKey;

/// What the driver must ask the shared counter backend; answered with
/// [`B2bua::on_admitted`]`(id, answers)`, one answer per part, in order.
#[derive(Debug)]
pub struct AdmitRequest {
    /// Names the request in the answer.
    pub id: u64,
    /// Independent admissions, asked at once.
    pub parts: Vec<AdmitPart>,
}

/// One admission: the first of `paths` whose counters all have room is acquired for `key`, all
/// or nothing.
#[derive(Debug)]
pub struct AdmitPart {
    /// The backend's call key (idempotent retries, release by key).
    pub key: CallKey,
    /// The generation the paths belong to (counter names and limits).
    pub generation: Arc<Generation>,
    /// The alternatives, in order.
    pub paths: Vec<Path>,
}

/// The backend's answer to one [`AdmitPart`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartAnswer {
    /// Alternative `index` was acquired.
    Admitted {
        /// Which alternative.
        index: usize,
    },
    /// No alternative fitted: the full counter of the last one.
    Refused(Refusal),
    /// The backend could not answer (down, timed out, lease not renewed in time).
    Failed(String),
}

/// A request waiting for its answer.
#[derive(Debug)]
pub(super) struct Waiting {
    kind: WaitKind,
    parts: Vec<WaitPart>,
}

#[derive(Debug)]
enum WaitKind {
    NewCall(Box<NewCall>),
    FailOver { call: u64, target: u8 },
}

/// A new call before its admission.
#[derive(Debug)]
struct NewCall {
    id: u64,
    req: Request,
    key: TransactionKey,
    source: Dest,
    ring_time: Option<std::time::Duration>,
    /// Its first part is the call's own units.
    has_incoming: bool,
    /// The caller already has its final response (CANCEL, drain): the answer only releases.
    answered: bool,
}

/// One part of a request: the reservations sent, with the choice each stands for.
#[derive(Debug)]
struct WaitPart {
    choices: Vec<Choice>,
    /// (index into `choices`, its reservation), in the order sent.
    reserved: Vec<(usize, Reservation)>,
    /// A way with no units of its own after the reserved ones (taken when none fits).
    fallback: Option<usize>,
    /// The last local refusal (a spent calls-per-second bucket).
    refused: Option<Refusal>,
}

impl WaitPart {
    /// Reserves the ways of one target in order, up to the first that needs no units.
    fn reserve(
        g: &Arc<Generation>,
        key: CallKey,
        choices: Vec<Choice>,
        charge: Charge,
        now: Instant,
    ) -> Self {
        let mut part = WaitPart {
            choices,
            reserved: Vec::new(),
            fallback: None,
            refused: None,
        };
        for (i, choice) in part.choices.iter().enumerate() {
            let Some(spec) = choice.spec else {
                part.fallback = Some(i);
                break;
            };
            match g.reserve(key, spec, charge, now) {
                Ok(r) => part.reserved.push((i, r)),
                Err(r) => part.refused = Some(r),
            }
        }
        part
    }

    /// The call's own units: one way, no choice.
    fn incoming(reservation: Reservation) -> Self {
        WaitPart {
            choices: Vec::new(),
            reserved: vec![(0, reservation)],
            fallback: None,
            refused: None,
        }
    }

    /// Whether the backend must be asked.
    fn asks(&self) -> bool {
        !self.reserved.is_empty()
    }

    fn request(&self) -> Option<AdmitPart> {
        let (_, first) = self.reserved.first()?;
        Some(AdmitPart {
            key: first.call(),
            generation: Arc::clone(first.generation()),
            paths: self.reserved.iter().map(|(_, r)| *r.path()).collect(),
        })
    }

    /// Turns the answer into the admitted way (`choice` index, permit) or the refusal.
    fn resolve(mut self, answer: Option<PartAnswer>, policy: BackendErrorPolicy) -> Resolved {
        let granted = match answer {
            None => None,
            Some(PartAnswer::Admitted { index }) => {
                if index < self.reserved.len() {
                    let (i, r) = self.reserved.swap_remove(index);
                    Some((i, r.granted()))
                } else {
                    return Resolved::Failed(format!("answer names alternative {index}"));
                }
            }
            Some(PartAnswer::Refused(r)) => {
                self.refused = Some(r);
                None
            }
            Some(PartAnswer::Failed(_)) if policy == BackendErrorPolicy::Local => {
                self.admit_locally()
            }
            Some(PartAnswer::Failed(e)) => return Resolved::Failed(e),
        };
        // The reservations not granted give their tokens back here.
        self.reserved.clear();
        match (granted, self.fallback) {
            (Some((i, permit)), _) => Resolved::Admitted(self.take(i, Some(permit))),
            (None, Some(i)) => Resolved::Admitted(self.take(i, None)),
            (None, None) => Resolved::Refused(self.refused),
        }
    }

    /// `on_backend_error = "local"`: the first way with room on this node's counters.
    fn admit_locally(&mut self) -> Option<(usize, Permit)> {
        for (i, r) in self.reserved.drain(..) {
            let key = local_key(r.call());
            match r.admit_locally(key) {
                Ok(permit) => return Some((i, permit)),
                Err(refusal) => self.refused = Some(refusal),
            }
        }
        None
    }

    /// Choice `i` with its permit and the choices after it (failover).
    fn take(mut self, i: usize, permit: Option<Permit>) -> (Choice, Option<Permit>, Vec<Choice>) {
        let rest = self.choices.split_off(i + 1);
        let choice = self.choices.swap_remove(i);
        (choice, permit, rest)
    }
}

/// One part's outcome.
enum Resolved {
    Admitted((Choice, Option<Permit>, Vec<Choice>)),
    /// Every way was full (the last refusal), or there was none.
    Refused(Option<Refusal>),
    Failed(String),
}

/// The key of a call admitted locally after its request to the backend failed: not the failed
/// request's key, whose release is queued (the request may have counted before it failed), so
/// that release cannot undo the local call once the backend counts it. Call numbers stay below
/// bit 47.
fn local_key(key: CallKey) -> CallKey {
    CallKey(key.0 ^ (1 << 47))
}

fn policy(g: &Generation) -> BackendErrorPolicy {
    match &g.config().counters {
        CounterBackend::Redis { on_error, .. } => *on_error,
        CounterBackend::Memory => BackendErrorPolicy::Reject,
    }
}

impl B2bua {
    /// Reserves `plan` for new call `id` and asks the shared backend; the call waits.
    #[allow(clippy::too_many_arguments)] // one call site; the values are the call's parts
    pub(super) fn ask_admission(
        &mut self,
        now: Instant,
        req: Request,
        key: TransactionKey,
        source: Dest,
        g: &Arc<Generation>,
        plan: Plan,
        id: u64,
        out: &mut Vec<Out>,
    ) {
        let mut parts = Vec::with_capacity(plan.targets.len() + 1);
        if let Some(spec) = plan.incoming {
            match g.reserve(CallKey(id), spec, Charge::NewCall, now) {
                Ok(r) => parts.push(WaitPart::incoming(r)),
                Err(refusal) => return self.refuse_limit(now, id, &req, key, g, refusal, out),
            }
        }
        let has_incoming = !parts.is_empty();
        for (t, target) in plan.targets.into_iter().enumerate() {
            let key = target_key(id, t as u8, 0);
            parts.push(WaitPart::reserve(
                g,
                key,
                target.choices,
                Charge::NewCall,
                now,
            ));
        }
        let targets = &parts[usize::from(has_incoming)..];
        if !targets.iter().any(|p| p.asks() || p.fallback.is_some()) {
            // Every way was refused locally (spent calls-per-second buckets): no need to ask.
            return match targets.iter().rev().find_map(|p| p.refused.clone()) {
                Some(refusal) => self.refuse_limit(now, id, &req, key, g, refusal, out),
                None => self.refuse_route(&req, key, &RouteError::Unreachable(String::new()), out),
            };
        }
        let trying = sip::response_to(&req, 100, "Trying", None, &[]);
        out.push(Out::Respond {
            key: key.clone(),
            status: 100,
            bytes: trying,
        });
        let request = AdmitRequest {
            id,
            parts: parts.iter().filter_map(WaitPart::request).collect(),
        };
        tracing::debug!(
            call = id,
            parts = request.parts.len(),
            "asking the counter backend"
        );
        self.waiting_by_invite.insert(key.clone(), id);
        self.waiting_call_ids
            .insert(req.parts().call_id().to_owned(), id);
        let call = NewCall {
            id,
            req,
            key,
            source,
            ring_time: plan.ring_time,
            has_incoming,
            answered: false,
        };
        let waiting = Waiting {
            kind: WaitKind::NewCall(Box::new(call)),
            parts,
        };
        self.waiting.insert(id, waiting);
        if request.parts.is_empty() {
            // Nothing to acquire (only ways without units of their own): answer at once.
            self.on_admitted(now, id, Vec::new(), out);
        } else {
            out.push(Out::Admit(request));
        }
    }

    /// The shared backend answered request `id` (one answer per part asked, in order).
    pub fn on_admitted(
        &mut self,
        now: Instant,
        id: u64,
        answers: Vec<PartAnswer>,
        out: &mut Vec<Out>,
    ) {
        let Some(waiting) = self.waiting.remove(&id) else {
            return;
        };
        let g = self.limiter.current();
        let policy = policy(&g);
        if policy == BackendErrorPolicy::Local {
            self.log_local_admissions(now, &answers);
        }
        let mut answers = answers.into_iter();
        let resolved: Vec<Resolved> = waiting
            .parts
            .into_iter()
            .map(|p| {
                let answer = if p.asks() { answers.next() } else { None };
                let answer = if p.asks() && answer.is_none() {
                    Some(PartAnswer::Failed("no answer".to_owned()))
                } else {
                    answer
                };
                p.resolve(answer, policy)
            })
            .collect();
        match waiting.kind {
            WaitKind::NewCall(call) => self.admitted_new_call(now, *call, resolved, out),
            WaitKind::FailOver { call, target } => {
                self.admitted_fail_over(call, target, resolved, out)
            }
        }
    }

    fn admitted_new_call(
        &mut self,
        now: Instant,
        call: NewCall,
        resolved: Vec<Resolved>,
        out: &mut Vec<Out>,
    ) {
        self.waiting_by_invite.remove(&call.key);
        self.waiting_call_ids.remove(call.req.parts().call_id());
        if call.answered {
            // Cancelled or drained while waiting: what was granted goes back with `resolved`.
            tracing::debug!(
                call = call.id,
                "admission answered after the caller's final response"
            );
            return;
        }
        if self.draining {
            return self.answer_waiting(&call.req, &call.key, 503, &[("Retry-After", "30")], out);
        }
        let g = self.limiter.current();
        let mut resolved = resolved.into_iter();
        let incoming = if call.has_incoming {
            match resolved.next() {
                Some(Resolved::Admitted((_, permit, _))) => permit,
                Some(Resolved::Refused(Some(refusal))) => {
                    return self.refuse_limit(now, call.id, &call.req, call.key, &g, refusal, out)
                }
                Some(Resolved::Failed(e)) => return self.refuse_backend(now, &call, &e, out),
                Some(Resolved::Refused(None)) | None => None,
            }
        } else {
            None
        };
        let mut targets = Vec::new();
        let mut last = None;
        for r in resolved {
            match r {
                Resolved::Admitted(t) => targets.push(t),
                Resolved::Refused(refusal) => last = refusal.or(last),
                Resolved::Failed(e) => return self.refuse_backend(now, &call, &e, out),
            }
        }
        if targets.is_empty() {
            drop(incoming);
            return match last {
                Some(refusal) => {
                    self.refuse_limit(now, call.id, &call.req, call.key, &g, refusal, out)
                }
                None => self.refuse_route(
                    &call.req,
                    call.key,
                    &RouteError::Unreachable(String::new()),
                    out,
                ),
            };
        }
        let admitted = Admitted {
            incoming,
            targets,
            ring_time: call.ring_time,
        };
        self.start_call(now, call.req, call.key, call.source, admitted, call.id, out);
    }

    /// `on_backend_error = "local"`: one line per failed answer, at most ten a second.
    fn log_local_admissions(&mut self, now: Instant, answers: &[PartAnswer]) {
        for a in answers {
            let PartAnswer::Failed(e) = a else { continue };
            if let Some(suppressed) = self.backend_log.allow(now) {
                tracing::warn!(error = %e, suppressed, "counter backend unavailable: admitting on this node's counters (on_backend_error = local)");
            }
        }
    }

    /// A limit refused the call: its record and the configured response.
    #[allow(clippy::too_many_arguments)] // the refusal's context, as the in-memory path has it
    pub(super) fn refuse_limit(
        &mut self,
        now: Instant,
        id: u64,
        req: &Request,
        key: TransactionKey,
        g: &Generation,
        refusal: Refusal,
        out: &mut Vec<Out>,
    ) {
        let snapshot = g.config().clone();
        let status = (snapshot.server.reject_code, "limit");
        self.record_refusal(now, id, req, status, Some(&refusal), out);
        self.refuse_admission(req, key, &snapshot, refusal, out);
    }

    /// The backend could not answer and the policy is `reject`: 503 naming the backend.
    fn refuse_backend(&mut self, now: Instant, call: &NewCall, error: &str, out: &mut Vec<Out>) {
        if let Some(suppressed) = self.backend_log.allow(now) {
            tracing::warn!(call = call.id, call_id = %call.req.parts().call_id(), error, suppressed, "counter backend unavailable: call refused (on_backend_error = reject)");
        }
        let reason = "SIP;cause=503;text=\"counter backend unavailable (redis)\"";
        let warning = "399 callgate \"counter backend unavailable (redis)\"";
        let extra = [
            ("Reason", reason),
            ("Warning", warning),
            ("Retry-After", "5"),
        ];
        self.answer_waiting(&call.req, &call.key, 503, &extra, out);
        // Counted and recorded as a rejected call, like a limit's refusal.
        out.push(Out::Rejected(None));
        self.record_refusal(now, call.id, &call.req, (503, "counter_backend"), None, out);
    }

    fn answer_waiting(
        &mut self,
        req: &Request,
        key: &TransactionKey,
        status: u16,
        extra: &[(&str, &str)],
        out: &mut Vec<Out>,
    ) {
        let tag = self.tag();
        let phrase = super::setup::reason_phrase(status);
        let bytes = sip::response_to(req, status, phrase, Some(&tag), extra);
        out.push(Out::Respond {
            key: key.clone(),
            status,
            bytes,
        });
    }

    /// The caller cancelled a call still waiting for its admission: 487 now; the answer, when it
    /// comes, only releases. True when `invite_key` was such a call.
    pub(super) fn cancel_waiting(
        &mut self,
        invite_key: &TransactionKey,
        out: &mut Vec<Out>,
    ) -> bool {
        let Some(&id) = self.waiting_by_invite.get(invite_key) else {
            return false;
        };
        self.answer_new_call(id, 487, out);
        true
    }

    /// Drain: every call waiting for its admission gets 503 now.
    pub(super) fn drain_waiting(&mut self, out: &mut Vec<Out>) {
        let ids: Vec<u64> = self.waiting_by_invite.values().copied().collect();
        for id in ids {
            self.answer_new_call(id, 503, out);
        }
    }

    fn answer_new_call(&mut self, id: u64, status: u16, out: &mut Vec<Out>) {
        let Some(Waiting {
            kind: WaitKind::NewCall(call),
            ..
        }) = self.waiting.get_mut(&id)
        else {
            return;
        };
        if call.answered {
            return;
        }
        call.answered = true;
        let (req, key) = (call.req.clone(), call.key.clone());
        tracing::info!(
            call = id,
            status,
            "call ended while waiting for its admission"
        );
        let extra: &[(&str, &str)] = if status == 503 {
            &[("Retry-After", "30")]
        } else {
            &[]
        };
        self.answer_waiting(&req, &key, status, extra, out);
    }

    /// Whether a new INVITE's Call-ID is a call waiting for its admission (a second INVITE with
    /// it is a loop or a merged request, as for a live call).
    pub(super) fn is_waiting_call_id(&self, call_id: &str) -> bool {
        self.waiting_call_ids.contains_key(call_id)
    }

    /// Asks for the next way to reach `target` of call `id` after a failed leg (`fail_over` with
    /// a shared backend): the call stays open until the answer.
    pub(super) fn ask_fail_over(
        &mut self,
        now: Instant,
        id: u64,
        target: u8,
        rest: Vec<Choice>,
        out: &mut Vec<Out>,
    ) {
        let g = self.limiter.current();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = call.targets.get_mut(usize::from(target)) else {
            return;
        };
        t.round = t.round.wrapping_add(1);
        let key = target_key(id, target, t.round);
        let part = WaitPart::reserve(&g, key, rest, Charge::FailOver, now);
        call.admitting += 1;
        self.next_wait += 1;
        // Failover requests are numbered apart from calls: bit 63 set, never a call number.
        let wait = self.next_wait | (1 << 63);
        let request = AdmitRequest {
            id: wait,
            parts: part.request().into_iter().collect(),
        };
        let ask = !request.parts.is_empty();
        self.waiting.insert(
            wait,
            Waiting {
                kind: WaitKind::FailOver { call: id, target },
                parts: vec![part],
            },
        );
        if ask {
            out.push(Out::Admit(request));
        } else {
            self.on_admitted(now, wait, Vec::new(), out);
        }
    }

    fn admitted_fail_over(
        &mut self,
        id: u64,
        target: u8,
        resolved: Vec<Resolved>,
        out: &mut Vec<Out>,
    ) {
        let g = self.limiter.current();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.admitting = call.admitting.saturating_sub(1);
        let live = matches!(call.state, CallState::Calling | CallState::Early);
        match resolved.into_iter().next() {
            Some(Resolved::Admitted((choice, permit, rest))) if live => {
                let trunk = choice
                    .trunk
                    .map(|t| g.config().trunks[t.index()].name.as_str());
                tracing::info!(call = id, trunk, "failing over to the next trunk");
                if let Some(TargetState {
                    permit: p, rest: r, ..
                }) = call.targets.get_mut(usize::from(target))
                {
                    *p = permit;
                    *r = rest;
                }
                self.start_choice(id, target, &choice, out);
            }
            Some(Resolved::Refused(refusal)) if live => {
                tracing::info!(call = id, refused = ?refusal.as_ref().map(ToString::to_string), "no next trunk with room");
                if let (Some(_), Some(setup)) = (refusal, call.setup.as_mut()) {
                    let code = g.config().server.reject_code;
                    let phrase = super::setup::reason_phrase(code).to_owned();
                    setup.best.get_or_insert((code, phrase));
                }
            }
            Some(Resolved::Failed(e)) if live => {
                tracing::warn!(call = id, error = %e, "counter backend unavailable: no failover");
                if let Some(setup) = call.setup.as_mut() {
                    setup
                        .best
                        .get_or_insert((503, "Service Unavailable".to_owned()));
                }
            }
            // The call was answered elsewhere or ended meanwhile: the grant goes back.
            _ => {}
        }
        self.maybe_finish(id, out);
    }

    /// Requests waiting for the backend (calls not yet admitted and failovers).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

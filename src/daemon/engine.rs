//! The engine: the transaction layer and the B2BUA glued together, without I/O. It takes received
//! bytes, closed connections, fired timers and operator commands with the current time, and
//! leaves what must be sent in an outbox; the tokio driver around it does the sending and the
//! sleeping. Because it owns no socket and reads no clock, it is fuzzed and tested directly.
//!
//! Contract for both cores: after every input, execute the actions in order, then re-arm the
//! single timer from the earliest of `Layer::poll_timeout` and the call-timer queue
//! ([`Engine::next_deadline`]).

use std::collections::{BTreeMap, HashMap};

/// Keyed per map and fast: keys come from the network, so not an unkeyed hash.
type Fast = foldhash::fast::RandomState;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::admin::{CallView, CounterRef, Direction, LegView, Metrics, Outcome as MetricOutcome};
use crate::b2bua::{B2bua, CallTimer, Dest, Out, Outcome};
use crate::config::model::Transport;
use crate::sip::{self, Message, Method, Request, Response};
use crate::transaction::sip_keys::{client_key, request_kind, server_key};
use crate::transaction::{Action, Dispatch, Layer, LayerAction, ResponseDispatch, TransactionKey};

/// The call engine of one driver task.
pub struct Engine {
    b2bua: B2bua,
    txn: Layer<Response>,
    metrics: Arc<Metrics>,
    /// Our client transactions that have not had a final response yet.
    awaiting_final: std::collections::HashSet<TransactionKey, Fast>,
    /// Messages to send, drained by the driver after every input.
    outbox: Vec<(Dest, Bytes)>,
    /// Where each transaction's transmissions go.
    dests: HashMap<TransactionKey, Dest, Fast>,
    /// Our client INVITEs (the non-2xx ACK is built from them).
    invites: HashMap<TransactionKey, Request, Fast>,
    timers: BTreeMap<(Instant, u64), (u64, CallTimer)>,
    /// The timer entries of each call, so ending a call removes them without scanning `timers`.
    call_timers: HashMap<u64, Vec<(Instant, u64)>, Fast>,
    timer_seq: u64,
    out: Vec<Out>,
    lout: Vec<LayerAction<Response>>,
    started_unix: HashMap<u64, u64, Fast>,
}

impl Engine {
    /// An engine over the given cores.
    pub fn new(b2bua: B2bua, txn: Layer<Response>, metrics: Arc<Metrics>) -> Self {
        Engine {
            b2bua,
            txn,
            metrics,
            outbox: Vec::new(),
            awaiting_final: Default::default(),
            dests: HashMap::default(),
            invites: HashMap::default(),
            timers: BTreeMap::new(),
            call_timers: HashMap::default(),
            timer_seq: 0,
            out: Vec::new(),
            lout: Vec::new(),
            started_unix: HashMap::default(),
        }
    }

    /// Moves what must be sent into `into` (the driver sends it).
    pub fn take_outbox(&mut self, into: &mut Vec<(Dest, Bytes)>) {
        into.append(&mut self.outbox);
    }

    /// Calls in progress.
    pub fn calls(&self) -> usize {
        self.b2bua.len()
    }

    /// Calls in progress plus our requests still waiting for a final response (a BYE or CANCEL
    /// sent while ending a call): the drain waits for both, so teardown requests are
    /// retransmitted and the callee's 487 is ACKed before the daemon exits.
    pub fn busy(&self) -> usize {
        self.b2bua.len() + self.awaiting_final.len()
    }

    /// Earliest instant at which [`Engine::on_timeouts`] must run.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let call = self.timers.keys().next().map(|(at, _)| *at);
        match (self.txn.poll_timeout(), call) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every transaction and call timer due at `now`.
    pub fn on_timeouts(&mut self, now: Instant) {
        self.txn.handle_timeouts(now, &mut self.lout);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (call, timer) = entry.remove();
            self.b2bua.on_timer(now, call, timer, &mut self.out);
        }
        self.flush(now);
    }

    /// Ends call `id` (operator request); false when there is no such call.
    pub fn end_call(&mut self, now: Instant, id: u64) -> bool {
        let found = self.b2bua.end_call_by_operator(now, id, &mut self.out);
        self.flush(now);
        found
    }

    /// Stops admitting and ends every call in progress.
    pub fn drain(&mut self, now: Instant) {
        self.b2bua.drain(now, &mut self.out);
        self.flush(now);
    }

    /// A connection to `peer` closed.
    pub fn on_closed(&mut self, now: Instant, peer: std::net::SocketAddr) {
        self.b2bua.on_transport_closed(now, peer, &mut self.out);
        self.flush(now);
    }

    /// A stream sent bytes that cannot be framed.
    pub fn on_stream_error(&mut self) {
        self.metrics.parse_error("tcp");
    }

    /// One received message (a datagram or a framed stream message) from `source`.
    pub fn on_received(&mut self, now: Instant, data: Bytes, source: Dest) {
        self.on_message(now, data, source);
        self.flush(now);
    }

    fn on_message(&mut self, now: Instant, data: Bytes, source: Dest) {
        let parsed = match source.transport {
            Transport::Udp => sip::parse_datagram(data.clone()),
            Transport::Tcp => sip::parse_stream_message(data.clone()),
        };
        match parsed {
            Ok(Message::Request(req)) => self.on_request(now, req, source),
            Ok(Message::Response(resp)) => self.on_response(now, resp),
            Err(e) => self.on_parse_error(&data, source, &e),
        }
    }

    fn on_parse_error(&mut self, data: &Bytes, source: Dest, e: &sip::ParseError) {
        // Keep-alive CRLFs on UDP are not errors.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        self.metrics.parse_error(transport_name(source.transport));
        tracing::debug!(peer.addr = %source.addr, error = %e, "malformed message");
        if let Some(bytes) = super::bad_request::bad_request(data, &e.to_string()) {
            self.send(source, bytes);
        }
    }

    fn on_request(&mut self, now: Instant, req: Request, source: Dest) {
        // Debug-level: free at the default info level, a per-message trail when asked for.
        let span = tracing::debug_span!("sip", call_id = %req.parts().call_id(), method = %req.method().as_str(), peer.addr = %source.addr);
        let _entered = span.enter();
        self.metrics
            .sip_request(req.method().as_str(), Direction::In);
        let method = req.method().clone();
        // Responses go where RFC 3261 18.2.2 / RFC 3581 say; the leg itself keeps the packet's
        // source (symmetric signalling through NATs).
        let (req, reply_to) = super::rport::stamp(req, source);
        if method != Method::Ack && req.parts().max_forwards() == Some(0) {
            return self.stateless(
                reply_to,
                sip::response_to(&req, 483, "Too Many Hops", None, &[]),
            );
        }
        let key = server_key(&req);
        let reliable = source.transport == Transport::Tcp;
        let dispatch = match self.txn.on_request(
            now,
            key.clone(),
            request_kind(&method),
            reliable,
            &mut self.lout,
        ) {
            Ok(d) => d,
            Err(e) => return tracing::debug!(error = ?e, "transaction layer refused request"),
        };
        match dispatch {
            Dispatch::NewTransaction => {
                self.dests.insert(key.clone(), reply_to);
                self.on_new_request(now, req, key, source);
            }
            Dispatch::Retransmission => {}
            Dispatch::AckForInvite { to_user } => {
                if to_user {
                    self.b2bua.on_ack(&req, &mut self.out);
                }
            }
            Dispatch::StrayAck => self.b2bua.on_ack(&req, &mut self.out),
            Dispatch::CancelFor(invite) => {
                self.dests.insert(key.clone(), reply_to);
                self.respond(now, &key, sip::response_to(&req, 200, "OK", None, &[]), 200);
                self.b2bua.on_cancel(now, &invite, &mut self.out);
            }
            Dispatch::CancelTooLate(_) => {
                self.dests.insert(key.clone(), reply_to);
                self.respond(now, &key, sip::response_to(&req, 200, "OK", None, &[]), 200);
            }
            Dispatch::CancelUnmatched => {
                self.dests.insert(key.clone(), reply_to);
                let bytes =
                    sip::response_to(&req, 481, "Call/Transaction Does Not Exist", None, &[]);
                self.respond(now, &key, bytes, 481);
            }
        }
    }

    /// A request that starts a server transaction.
    fn on_new_request(&mut self, now: Instant, req: Request, key: TransactionKey, source: Dest) {
        let in_dialog = req.parts().to_tag().is_some();
        match (req.method(), in_dialog) {
            (Method::Invite, false) => {
                self.b2bua
                    .on_new_invite(now, req, key, source, &mut self.out)
            }
            (_, true) => self.b2bua.on_in_dialog(now, req, key, &mut self.out),
            (Method::Options, false) => {
                let extra = [("Allow", sip::ALLOW), ("Accept", sip::ACCEPT)];
                let bytes = sip::response_to(&req, 200, "OK", Some("cg-options"), &extra);
                self.respond(now, &key, bytes, 200);
            }
            (
                Method::Bye | Method::Update | Method::Info | Method::Prack | Method::Notify,
                false,
            ) => {
                let bytes =
                    sip::response_to(&req, 481, "Call/Transaction Does Not Exist", None, &[]);
                self.respond(now, &key, bytes, 481);
            }
            _ => {
                // REGISTER (the registrar is a later issue), MESSAGE, SUBSCRIBE, extensions.
                let extra = [("Allow", sip::ALLOW)];
                let bytes = sip::response_to(&req, 501, "Not Implemented", Some("cg-501"), &extra);
                self.respond(now, &key, bytes, 501);
            }
        }
    }

    fn on_response(&mut self, now: Instant, resp: Response) {
        let status = resp.status().as_u16();
        self.metrics.sip_response(status, Direction::In);
        let Some(key) = client_key(&resp) else { return };
        match self
            .txn
            .on_response(now, &key, status, resp, &mut self.lout)
        {
            ResponseDispatch::Matched => {}
            // A 2xx retransmission after the INVITE transaction ended: the dialog layer re-ACKs.
            ResponseDispatch::Stray(resp) => self.b2bua.on_response(now, &key, resp, &mut self.out),
        }
    }

    fn respond(&mut self, now: Instant, key: &TransactionKey, bytes: bytes::Bytes, status: u16) {
        self.metrics.sip_response(status, Direction::Out);
        if let Err(e) = self.txn.respond(now, key, status, bytes, &mut self.lout) {
            tracing::debug!(error = ?e, status, "response for an ended transaction dropped");
        }
    }

    fn stateless(&mut self, dest: Dest, bytes: bytes::Bytes) {
        self.send(dest, bytes);
    }

    fn send(&mut self, dest: Dest, bytes: Bytes) {
        self.outbox.push((dest, bytes));
    }

    /// Executes what the cores asked until neither has anything left.
    fn flush(&mut self, now: Instant) {
        while !self.out.is_empty() || !self.lout.is_empty() {
            let outs = std::mem::take(&mut self.out);
            for o in outs {
                self.exec_out(now, o);
            }
            let actions = std::mem::take(&mut self.lout);
            for a in actions {
                self.exec_layer(now, a);
            }
        }
    }

    fn exec_out(&mut self, now: Instant, o: Out) {
        match o {
            Out::Respond { key, status, bytes } => self.respond(now, &key, bytes, status),
            Out::StartInvite { key, dest, bytes } => {
                self.awaiting_final.insert(key.clone());
                self.metrics.sip_request("INVITE", Direction::Out);
                if let Ok(Message::Request(req)) = sip::parse_datagram(bytes.clone()) {
                    self.invites.insert(key.clone(), req);
                }
                self.dests.insert(key.clone(), dest);
                let reliable = dest.transport == Transport::Tcp;
                if let Err(e) =
                    self.txn
                        .start_client_invite(now, key, bytes, reliable, &mut self.lout)
                {
                    tracing::debug!(error = ?e, "client INVITE not started");
                }
            }
            Out::StartNonInvite { key, dest, bytes } => {
                self.awaiting_final.insert(key.clone());
                self.dests.insert(key.clone(), dest);
                let reliable = dest.transport == Transport::Tcp;
                if let Err(e) =
                    self.txn
                        .start_client_non_invite(now, key, bytes, reliable, &mut self.lout)
                {
                    tracing::debug!(error = ?e, "client transaction not started");
                }
            }
            Out::Send { dest, bytes } => self.send(dest, bytes),
            Out::Arm { at, call, timer } => {
                self.timer_seq += 1;
                self.timers.insert((at, self.timer_seq), (call, timer));
                self.call_timers
                    .entry(call)
                    .or_default()
                    .push((at, self.timer_seq));
            }
            Out::Started { call } => {
                self.metrics.call_started();
                self.started_unix.insert(call, unix_now());
            }
            Out::Ended { call, outcome } => {
                self.started_unix.remove(&call);
                for slot in self.call_timers.remove(&call).unwrap_or_default() {
                    self.timers.remove(&slot);
                }
                self.metrics.call_ended(metric_outcome(outcome));
            }
            Out::Rejected(refusal) => {
                self.metrics.call_started();
                self.metrics.call_ended(MetricOutcome::Rejected);
                self.metrics.rejection(
                    refusal.level.as_str(),
                    &refusal.name,
                    refusal.counter.as_str(),
                );
            }
        }
    }

    fn exec_layer(&mut self, now: Instant, a: LayerAction<Response>) {
        let LayerAction { key, action } = a;
        match action {
            Action::Transmit(bytes) => {
                if let Some(dest) = self.dests.get(&key).copied() {
                    self.send(dest, bytes);
                }
            }
            Action::ToUser(resp) => {
                if resp.status().is_final() {
                    self.awaiting_final.remove(&key);
                }
                // The INVITE is kept only to build the ACK of a non-2xx final; a 2xx is ACKed
                // by the dialog, so drop it now rather than when the transaction ends (32 s).
                if resp.status().is_success() {
                    self.invites.remove(&key);
                }
                self.b2bua.on_response(now, &key, resp, &mut self.out)
            }
            Action::SendAck(resp) => {
                self.awaiting_final.remove(&key);
                let dest = self.dests.get(&key).copied();
                if let (Some(invite), Some(dest)) = (self.invites.get(&key), dest) {
                    let ack = sip::ack_for_non_2xx(invite, &resp);
                    self.send(dest, ack);
                }
            }
            Action::TimedOut => {
                self.awaiting_final.remove(&key);
                self.metrics.transaction_timeout();
                self.b2bua.on_client_failure(now, &key, true, &mut self.out);
            }
            Action::TransportError => self
                .b2bua
                .on_client_failure(now, &key, false, &mut self.out),
            Action::Terminated => {
                self.awaiting_final.remove(&key);
                self.dests.remove(&key);
                self.invites.remove(&key);
                self.b2bua.on_client_terminated(&key);
            }
            Action::AckReceived | Action::Confirmed => {}
        }
    }

    /// The calls in progress, for the admin API.
    pub fn call_views(&self) -> Vec<CallView> {
        self.b2bua
            .calls()
            .map(|c| CallView {
                id: c.id.to_string(),
                started_at_unix_secs: self.started_unix.get(&c.id).copied().unwrap_or(0),
                legs: vec![
                    LegView {
                        leg: "a".into(),
                        call_id: c.a.call_id.clone(),
                        from: c.from.clone(),
                        to: c.to.clone(),
                        state: c.state.as_str().into(),
                    },
                    LegView {
                        leg: "b".into(),
                        call_id: c.b.call_id.clone(),
                        from: c.b.local_uri.clone(),
                        to: c.b.remote_uri.clone(),
                        state: c.state.as_str().into(),
                    },
                ],
                counters: c
                    .counters()
                    .into_iter()
                    .map(|(level, name, counter)| CounterRef {
                        level,
                        name,
                        counter,
                    })
                    .collect(),
            })
            .collect()
    }
}

fn metric_outcome(o: Outcome) -> MetricOutcome {
    match o {
        Outcome::Answered => MetricOutcome::Answered,
        Outcome::Rejected => MetricOutcome::Rejected,
        Outcome::Failed => MetricOutcome::Failed,
        Outcome::Cancelled => MetricOutcome::Cancelled,
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

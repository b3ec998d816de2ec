//! The driver: one tokio task that owns the transaction layer and the B2BUA, feeds them what the
//! transport received and the timers that fired, and executes what they ask (sends, timers,
//! metrics). It reads the clock once per wake-up; the cores never do.
//!
//! Driver contract for both cores: after every input, execute the actions in order, then re-arm
//! the single timer from the earliest of `Layer::poll_timeout` and the call-timer queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::admin::{CallView, CounterRef, Direction, LegView, Metrics, Outcome as MetricOutcome};
use crate::b2bua::{B2bua, CallTimer, Dest, Out, Outcome};
use crate::config::model::Transport;
use crate::sip::{self, Message, Method, Request, Response};
use crate::transaction::sip_keys::{client_key, request_kind, server_key};
use crate::transaction::{Action, Dispatch, Layer, LayerAction, ResponseDispatch, TransactionKey};
use crate::transport::{Inbound, Received, Transports};

/// Requests from the admin API and the shutdown path, answered by the driver.
#[derive(Debug)]
pub enum Command {
    /// The calls in progress.
    Calls(oneshot::Sender<Vec<CallView>>),
    /// End one call (BYE both legs); answers whether it existed.
    EndCall(u64, oneshot::Sender<bool>),
    /// Stop admitting and end every call; answers when asked with the number still up.
    Drain,
    /// Number of calls in progress.
    Count(oneshot::Sender<usize>),
}

/// The driver task's state.
pub struct Driver {
    b2bua: B2bua,
    txn: Layer<Response>,
    transports: Arc<Transports>,
    metrics: Arc<Metrics>,
    /// Where each transaction's transmissions go.
    dests: HashMap<TransactionKey, Dest>,
    /// Our client INVITEs (the non-2xx ACK is built from them).
    invites: HashMap<TransactionKey, Request>,
    timers: BTreeMap<(Instant, u64), (u64, CallTimer)>,
    timer_seq: u64,
    out: Vec<Out>,
    lout: Vec<LayerAction<Response>>,
    started_unix: HashMap<u64, u64>,
}

impl Driver {
    /// A driver over the given cores.
    pub fn new(
        b2bua: B2bua,
        txn: Layer<Response>,
        transports: Arc<Transports>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Driver {
            b2bua,
            txn,
            transports,
            metrics,
            dests: HashMap::new(),
            invites: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            out: Vec::new(),
            lout: Vec::new(),
            started_unix: HashMap::new(),
        }
    }

    /// Runs until both channels close.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = inbound.recv() => match ev {
                    Some(ev) => {
                        self.on_inbound(ev);
                        // Drain what is already queued before re-arming timers: cheaper under load.
                        while let Ok(ev) = inbound.try_recv() {
                            self.on_inbound(ev);
                        }
                    }
                    None => return,
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                _ = sleep => self.on_timeouts(),
            }
        }
    }

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let call = self.timers.keys().next().map(|(at, _)| *at);
        match (self.txn.poll_timeout(), call) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timeouts(&mut self) {
        let now = Self::now();
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

    fn on_command(&mut self, cmd: Command) {
        let now = Self::now();
        match cmd {
            Command::Calls(reply) => {
                let _ = reply.send(self.call_views());
            }
            Command::EndCall(id, reply) => {
                let found = self.b2bua.end_call_by_operator(now, id, &mut self.out);
                let _ = reply.send(found);
            }
            Command::Drain => self.b2bua.drain(now, &mut self.out),
            Command::Count(reply) => {
                let _ = reply.send(self.b2bua.len());
            }
        }
        self.flush(now);
    }

    fn on_inbound(&mut self, ev: Inbound) {
        let now = Self::now();
        match ev {
            Inbound::Message(m) => self.on_message(now, m),
            Inbound::Closed { peer } => self.b2bua.on_transport_closed(now, peer, &mut self.out),
            Inbound::StreamError { .. } => self.metrics.parse_error("tcp"),
        }
        self.flush(now);
    }

    fn on_message(&mut self, now: Instant, m: Received) {
        let parsed = match m.transport {
            Transport::Udp => sip::parse_datagram(m.data.clone()),
            Transport::Tcp => sip::parse_stream_message(m.data.clone()),
        };
        let source = Dest {
            transport: m.transport,
            addr: m.source,
        };
        match parsed {
            Ok(Message::Request(req)) => self.on_request(now, req, source),
            Ok(Message::Response(resp)) => self.on_response(now, resp),
            Err(e) => self.on_parse_error(&m, source, &e),
        }
    }

    fn on_parse_error(&mut self, m: &Received, source: Dest, e: &sip::ParseError) {
        // Keep-alive CRLFs on UDP are not errors.
        if m.data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        self.metrics.parse_error(transport_name(m.transport));
        tracing::debug!(peer.addr = %m.source, error = %e, "malformed message");
        if let Some(bytes) = super::bad_request::bad_request(&m.data, &e.to_string()) {
            self.send(source, bytes);
        }
    }

    fn on_request(&mut self, now: Instant, req: Request, source: Dest) {
        self.metrics
            .sip_request(req.method().as_str(), Direction::In);
        let method = req.method().clone();
        if method != Method::Ack && req.parts().max_forwards() == Some(0) {
            return self.stateless(
                source,
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
                self.dests.insert(key.clone(), source);
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
                self.dests.insert(key.clone(), source);
                self.respond(now, &key, sip::response_to(&req, 200, "OK", None, &[]), 200);
                self.b2bua.on_cancel(&invite, &mut self.out);
            }
            Dispatch::CancelTooLate(_) => {
                self.dests.insert(key.clone(), source);
                self.respond(now, &key, sip::response_to(&req, 200, "OK", None, &[]), 200);
            }
            Dispatch::CancelUnmatched => {
                self.dests.insert(key.clone(), source);
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

    fn send(&self, dest: Dest, bytes: bytes::Bytes) {
        if let Err(e) = self.transports.send(dest.transport, dest.addr, bytes) {
            tracing::debug!(error = %e, "send failed");
        }
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
            }
            Out::Started { call } => {
                self.metrics.call_started();
                self.started_unix.insert(call, unix_now());
            }
            Out::Ended { call, outcome } => {
                self.started_unix.remove(&call);
                self.timers.retain(|_, (c, _)| *c != call);
                self.metrics.call_ended(metric_outcome(outcome));
                tracing::info!(call, outcome = ?outcome, "call ended");
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
            Action::ToUser(resp) => self.b2bua.on_response(now, &key, resp, &mut self.out),
            Action::SendAck(resp) => {
                let dest = self.dests.get(&key).copied();
                if let (Some(invite), Some(dest)) = (self.invites.get(&key), dest) {
                    let ack = sip::ack_for_non_2xx(invite, &resp);
                    self.send(dest, ack);
                }
            }
            Action::TimedOut => {
                self.metrics.transaction_timeout();
                self.b2bua.on_client_failure(now, &key, true, &mut self.out);
            }
            Action::TransportError => self
                .b2bua
                .on_client_failure(now, &key, false, &mut self.out),
            Action::Terminated => {
                self.dests.remove(&key);
                self.invites.remove(&key);
                self.b2bua.on_client_terminated(&key);
            }
            Action::AckReceived | Action::Confirmed => {}
        }
    }

    fn call_views(&self) -> Vec<CallView> {
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

//! The engine of one shard: the transaction layer and the B2BUA glued together, without I/O. It
//! takes parsed messages, closed connections, fired timers and operator commands with the current
//! time, and leaves what must be sent in an outbox; the driver thread around it does the sending
//! and the sleeping. Because it owns no socket and reads no clock, it is fuzzed and tested
//! directly.
//!
//! Where a request goes: [`rport`] stamps the top Via, [`methods`] picks the handler (INVITE to the
//! B2BUA, OPTIONS to the stateless [`options`] responder, in-dialog requests to their dialog),
//! the transaction layer absorbs retransmissions and matches ACK and CANCEL. Which shard a
//! message reaches in the first place is [`shard`]'s decision, taken on the receive side.
//!
//! Contract for both cores: after every input, execute the actions in order, then re-arm the
//! single timer from the earliest of `Layer::poll_timeout` and the call-timer queue
//! ([`Engine::next_deadline`]).

pub mod access;
mod bad_request;
mod call_timers;
mod checks;
use crate::log_limit;
mod methods;
pub mod options;
pub mod registration;
mod rport;
pub mod shard;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use self::call_timers::CallTimers;
use self::methods::Handler;
use crate::admin::{CallView, CounterRef, Direction, LegView, Metrics, Outcome as MetricOutcome};
use crate::b2bua::{B2bua, Dest, Out, Outcome};
use crate::config::model::Transport;
use crate::sip::{self, Message, Method, Request, Response};
use crate::split_map::SplitMap;
use crate::transaction::sip_keys::{client_key, request_kind, server_key};
use crate::transaction::{Action, Dispatch, Layer, LayerAction, ResponseDispatch, TransactionKey};

/// Parses one received message as its transport frames it (the receive side calls this once).
pub fn parse(data: Bytes, transport: Transport) -> Result<Message, sip::ParseError> {
    match transport {
        Transport::Udp => sip::parse_datagram(data),
        Transport::Tcp | Transport::Tls => sip::parse_stream_message(data),
    }
}

/// What every shard reads and writes, shared without a global lock: the registrar's bindings,
/// digest nonce counts and the brute-force guard (sharded maps), the nonce key. The limiter
/// (atomics) and the configuration (ArcSwap) reach the shards through the B2BUA; metrics are
/// atomics too.
#[derive(Clone)]
pub struct Shared {
    /// Registered bindings, by address-of-record.
    pub location: Arc<crate::registrar::LocationStore>,
    /// Highest nonce-count seen per digest nonce (replay protection).
    pub nonces: Arc<crate::auth::NonceCounts>,
    /// Nonce key, failure counts and bans.
    pub auth: Arc<access::AuthShared>,
}

/// Nonces whose counts are remembered: the latest 262 144 issued (2 MiB). A nonce is good for
/// its whole life (300 s) up to ~870 challenges a second; above that rate for as long as it
/// takes to issue this many (26 s at 10 000 a second), far longer than answering a challenge.
const MAX_NONCES: usize = 1 << 18;

/// Live transactions one shard keeps before it answers new requests 503 without one. A call
/// leaves ~4 transactions for up to 32 s (RFC 6026 Timer L/M, Timer J), so this is ~7 500 calls
/// per second on one shard; the cap is against unbounded memory, not a rate limit.
pub const MAX_TRANSACTIONS: usize = 1_000_000;

impl Shared {
    /// Empty stores; nonces are signed with `secret` and counted in seconds from `epoch`.
    pub fn new(secret: [u8; 32], epoch: Instant) -> Self {
        Shared {
            location: Arc::default(),
            nonces: Arc::new(crate::auth::NonceCounts::new(MAX_NONCES)),
            auth: Arc::new(access::AuthShared::new(secret, epoch)),
        }
    }
}

/// Client transactions in flight to one TCP peer, with when each was sent.
type InFlight = std::collections::HashMap<TransactionKey, Instant, foldhash::fast::RandomState>;

/// Something to send, and the transaction it belongs to (told when the send fails).
#[derive(Debug)]
pub struct Outgoing {
    /// Where.
    pub dest: Dest,
    /// What.
    pub bytes: Bytes,
    /// The transaction whose transmission this is; `None` for ACKs of 2xx and other sends
    /// outside a transaction.
    pub key: Option<TransactionKey>,
}

/// The call engine of one shard.
pub struct Engine {
    b2bua: B2bua,
    shared: Shared,
    txn: Layer<Response>,
    metrics: Arc<Metrics>,
    /// Our client transactions that have not had a final response yet.
    awaiting_final: SplitMap<TransactionKey, ()>,
    /// Messages to send, drained by the driver after every input.
    outbox: Vec<Outgoing>,
    /// TCP flows taken (true) or given back by calls, drained by the driver for the transport.
    flows: Vec<(std::net::SocketAddr, bool)>,
    /// Call detail records of calls that ended, drained by the driver for the CDR writer.
    #[allow(clippy::vec_box)]
    // records travel on as boxes: one pointer each through the channel
    records: Vec<Box<crate::cdr::CallRecord>>,
    /// Questions for the shared counter backend, drained by the driver.
    admissions: Vec<crate::b2bua::AdmitRequest>,
    /// Where each transaction's transmissions go.
    dests: SplitMap<TransactionKey, Dest>,
    /// Our client INVITEs (the non-2xx ACK is built from them).
    invites: SplitMap<TransactionKey, Request>,
    /// Our client transactions over TCP awaiting a final, by peer: when the connection closes
    /// no answer can come on it, so they fail at once rather than after Timer B/F (32 s).
    tcp_in_flight: SplitMap<std::net::SocketAddr, InFlight>,
    timers: CallTimers,
    out: Vec<Out>,
    lout: Vec<LayerAction<Response>>,
    max_transactions: usize,
    /// Requests from sources that are no PBX or trunk (scanners, spoofed floods).
    unknown_log: log_limit::LogLimit,
    /// Requests refused for a full transaction table.
    full_log: log_limit::LogLimit,
    /// Responses from another peer than their request's.
    stray_log: log_limit::LogLimit,
    /// The caller a phone's INVITE authenticated as, from the check before its transaction to
    /// the call handler.
    caller: Option<crate::routing::Caller>,
}

/// What a new INVITE from an unknown address is.
enum PhoneInvite {
    /// A phone that authenticated as this extension.
    Caller(crate::config::model::ExtId),
    /// Answered without a transaction (407 challenge, 403).
    Answered(u16, Bytes),
    /// Its From names no organization's domain: an unknown source.
    NotAPhone,
}

/// Sizes of an engine's tables, for leak checks: all zero once every call and transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableSizes {
    /// Calls.
    pub calls: usize,
    /// Client transactions awaiting a final response.
    pub awaiting_final: usize,
    /// Transaction destinations.
    pub dests: usize,
    /// Client INVITEs kept for their ACK.
    pub invites: usize,
    /// Call timers queued.
    pub call_timers: usize,
    /// Calls with timers.
    pub calls_with_timers: usize,
    /// Live transactions, server and client.
    pub transactions: usize,
    /// TCP peers with our requests in flight.
    pub tcp_in_flight: usize,
    /// The B2BUA's index maps.
    pub index: crate::b2bua::IndexSizes,
}

impl TableSizes {
    /// Adds another shard's sizes.
    pub fn add(&mut self, o: &TableSizes) {
        self.calls += o.calls;
        self.awaiting_final += o.awaiting_final;
        self.dests += o.dests;
        self.invites += o.invites;
        self.call_timers += o.call_timers;
        self.calls_with_timers += o.calls_with_timers;
        self.transactions += o.transactions;
        self.tcp_in_flight += o.tcp_in_flight;
        self.index.by_call_id += o.index.by_call_id;
        self.index.by_client += o.index.by_client;
        self.index.by_a_invite += o.index.by_a_invite;
        self.index.by_peer += o.index.by_peer;
    }

    /// Whether every table that belongs to a call is empty (what must hold once the calls
    /// ended; transactions and teardown entries drain later, with their timers).
    pub fn no_call_state(&self) -> bool {
        self.calls == 0
            && self.calls_with_timers == 0
            && self.call_timers == 0
            && self.index.by_call_id == 0
            && self.index.by_a_invite == 0
            && self.index.by_peer == 0
    }
}

impl Engine {
    /// An engine over the given cores.
    pub fn new(b2bua: B2bua, txn: Layer<Response>, metrics: Arc<Metrics>, shared: Shared) -> Self {
        Engine {
            b2bua,
            shared,
            txn,
            metrics,
            outbox: Vec::new(),
            flows: Vec::new(),
            records: Vec::new(),
            admissions: Vec::new(),
            awaiting_final: SplitMap::default(),
            dests: SplitMap::default(),
            invites: SplitMap::default(),
            tcp_in_flight: SplitMap::default(),
            timers: CallTimers::default(),
            out: Vec::new(),
            lout: Vec::new(),
            max_transactions: MAX_TRANSACTIONS,
            unknown_log: log_limit::LogLimit::default(),
            full_log: log_limit::LogLimit::default(),
            stray_log: log_limit::LogLimit::default(),
            caller: None,
        }
    }

    /// The same engine with another transaction cap (tests).
    pub fn with_transaction_cap(mut self, max: usize) -> Self {
        self.max_transactions = max;
        self
    }

    /// The stores this shard shares with the others.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Moves what must be sent into `into` (tests and the fuzzer; the driver uses
    /// [`Engine::take_sends`]).
    pub fn take_outbox(&mut self, into: &mut Vec<(Dest, Bytes)>) {
        into.extend(self.outbox.drain(..).map(|o| (o.dest, o.bytes)));
    }

    /// Moves what must be sent, with the transactions it belongs to, into `into`; the driver
    /// sends it and reports a failed send with [`Engine::on_send_failed`].
    pub fn take_sends(&mut self, into: &mut Vec<Outgoing>) {
        into.append(&mut self.outbox);
    }

    /// Moves the call detail records of calls that ended into `into`.
    pub fn take_records(&mut self, into: &mut Vec<Box<crate::cdr::CallRecord>>) {
        into.append(&mut self.records);
    }

    /// Moves the questions for the shared counter backend into `into`; the driver answers each
    /// with [`Engine::on_admitted`].
    pub fn take_admissions(&mut self, into: &mut Vec<crate::b2bua::AdmitRequest>) {
        into.append(&mut self.admissions);
    }

    /// The shared counter backend answered admission request `id`.
    pub fn on_admitted(&mut self, now: Instant, id: u64, answers: Vec<crate::b2bua::PartAnswer>) {
        self.b2bua.on_admitted(now, id, answers, &mut self.out);
        self.flush(now);
    }

    /// A send for transaction `key` failed (its TCP connection could not be opened, or its queue
    /// was full): the transaction fails now rather than waiting for a response that cannot come
    /// (over TCP nothing is retransmitted).
    pub fn on_send_failed(&mut self, now: Instant, key: &TransactionKey) {
        if let Err(e) = self.txn.transport_error(now, key, &mut self.lout) {
            tracing::debug!(error = ?e, "send failure for an ended transaction");
        }
        self.flush(now);
    }

    /// Moves the TCP flows calls took (true) or gave back into `into` (the driver tells the
    /// transport, which keeps a flow with dialogs open however idle).
    pub fn take_flows(&mut self, into: &mut Vec<(std::net::SocketAddr, bool)>) {
        into.append(&mut self.flows);
    }

    /// Calls in progress.
    pub fn calls(&self) -> usize {
        self.b2bua.len()
    }

    /// Calls in progress plus our requests still waiting for a final response (a BYE or CANCEL
    /// sent while ending a call): the drain waits for both, so teardown requests are
    /// retransmitted and the callee's 487 is ACKed before the daemon exits.
    pub fn busy(&self) -> usize {
        self.b2bua.len() + self.awaiting_final.len() + self.b2bua.waiting()
    }

    /// Sizes of every table (leak checks).
    pub fn sizes(&self) -> TableSizes {
        let (call_timers, calls_with_timers) = self.timers.sizes();
        TableSizes {
            calls: self.b2bua.len(),
            awaiting_final: self.awaiting_final.len(),
            dests: self.dests.len(),
            invites: self.invites.len(),
            call_timers,
            calls_with_timers,
            transactions: self.txn.len(),
            tcp_in_flight: self.tcp_in_flight.len(),
            index: self.b2bua.index_sizes(),
        }
    }

    /// Earliest instant at which [`Engine::on_timeouts`] must run.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let call = self.timers.next();
        match (self.txn.poll_timeout(), call) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every transaction and call timer due at `now`.
    pub fn on_timeouts(&mut self, now: Instant) {
        self.txn.handle_timeouts(now, &mut self.lout);
        while let Some((call, timer)) = self.timers.pop_due(now) {
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

    /// The connection to `peer` closed at `at`: our requests sent to it until then fail (their
    /// calls decide what that means; those sent later went over a new connection), then the
    /// B2BUA probes or ends the calls with legs on it.
    pub fn on_closed(&mut self, now: Instant, closed: Dest, at: Instant) {
        let peer = closed.addr;
        // A phone's TCP or TLS binding dies with its connection (nothing can reach it any more:
        // its NAT keeps no mapping, RFC 5626's reasoning, and callgate opens no TLS connection
        // of its own); the store is shared, so one shard does it.
        if self.b2bua.shard() == 0 {
            let dropped = self.shared.location.remove_flow(closed.transport, peer, at);
            if dropped > 0 {
                tracing::info!(peer.addr = %peer, transport = closed.transport.as_str(), bindings = dropped, "connection closed; its bindings dropped");
            }
        }
        let lost: Vec<TransactionKey> = match self.tcp_in_flight.get_mut(&peer) {
            Some(flight) => {
                let lost = flight
                    .iter()
                    .filter(|(_, sent)| **sent <= at)
                    .map(|(k, _)| k.clone())
                    .collect();
                flight.retain(|_, sent| *sent > at);
                if flight.is_empty() {
                    self.tcp_in_flight.remove(&peer);
                }
                lost
            }
            None => Vec::new(),
        };
        for key in lost {
            if let Err(e) = self.txn.transport_error(now, &key, &mut self.lout) {
                tracing::debug!(error = ?e, "transport error for an ended transaction");
            }
        }
        self.flush(now);
        self.b2bua.on_transport_closed(now, peer, &mut self.out);
        self.flush(now);
    }

    /// A stream sent bytes that cannot be framed.
    pub fn on_stream_error(&mut self) {
        self.metrics.parse_error("tcp");
    }

    /// Received bytes, parsed here (tests and the fuzzer; the daemon parses on its receive side
    /// and calls [`Engine::on_message`] or [`Engine::on_malformed`]).
    pub fn on_received(&mut self, now: Instant, data: Bytes, source: Dest) {
        match parse(data.clone(), source.transport) {
            Ok(msg) => self.on_message(now, msg, source),
            Err(e) => self.on_malformed(&data, source, &e),
        }
    }

    /// One parsed message from `source`.
    pub fn on_message(&mut self, now: Instant, msg: Message, source: Dest) {
        match msg {
            Message::Request(req) => self.on_request(now, req, source),
            Message::Response(resp) => self.on_response(now, resp, source),
        }
        self.flush(now);
    }

    /// Bytes the parser refused: counted, and answered with a best-effort 400 when they look
    /// like a request (RFC 3261 21.4.1); keep-alive CRLFs are not errors.
    pub fn on_malformed(&mut self, data: &Bytes, source: Dest, e: &sip::ParseError) {
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        self.metrics.parse_error(transport_name(source.transport));
        tracing::debug!(peer.addr = %source.addr, error = %e, "malformed message");
        if let Some(bytes) = bad_request::bad_request(data, e) {
            self.send(source, bytes);
        }
    }

    fn on_request(&mut self, now: Instant, req: Request, source: Dest) {
        // Debug-level: free at the default info level, a per-message trail when asked for.
        let span = tracing::debug_span!("sip", call_id = %req.parts().call_id(), method = %req.method().as_str(), peer.addr = %source.addr);
        let _entered = span.enter();
        self.metrics
            .sip_request(req.method().as_str(), Direction::In);
        if options::owns(&req) {
            let (reply_to, bytes, status) = options::answer(req, source);
            self.metrics.sip_response(status, Direction::Out);
            return self.send(reply_to, bytes);
        }
        let method = req.method().clone();
        if method == Method::Register {
            // Stateless, as the dispatcher answers it in the daemon (registration.rs says why).
            let generation = self.b2bua.generation();
            let (to, bytes) = registration::answer(
                generation.config(),
                &self.shared,
                &self.metrics,
                req,
                source,
                now,
            );
            return self.send(to, bytes);
        }
        // Responses go where RFC 3261 18.2.2 / RFC 3581 say; the leg itself keeps the packet's
        // source (symmetric signalling through NATs).
        let (req, reply_to) = rport::stamp(req, source);
        if method != Method::Ack && req.parts().max_forwards() == Some(0) {
            let bytes = sip::response_to(&req, 483, "Too Many Hops", None, &[]);
            return self.send(reply_to, bytes);
        }
        let key = server_key(&req);
        let new_call = method == Method::Invite && req.parts().to_tag().is_none();
        // A retransmission of an INVITE is its transaction's, whoever sent it.
        // Set below for this request only: a refusal on the way must not leave it for the next.
        self.caller = None;
        let kind = if new_call && !self.txn.contains(&key) {
            self.b2bua.source_kind(source.addr, now)
        } else {
            crate::b2bua::SourceKind::Known
        };
        if kind != crate::b2bua::SourceKind::Known {
            match self.authenticate_invite(now, &req, source, kind) {
                PhoneInvite::Caller(ext) => {
                    self.caller = Some(crate::routing::Caller::Extension(ext));
                }
                PhoneInvite::Answered(status, bytes) => {
                    self.metrics.sip_response(status, Direction::Out);
                    return self.send(reply_to, bytes);
                }
                PhoneInvite::NotAPhone => return self.refuse_unknown_source(now, &req, reply_to),
            }
        }
        if method != Method::Ack
            && self.txn.len() >= self.max_transactions
            && !self.txn.contains(&key)
        {
            return self.refuse_table_full(now, &req, reply_to);
        }
        let reliable = source.transport.is_stream();
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
                let reason = req
                    .parts()
                    .headers_raw("Reason")
                    .find_map(|h| h.value_str().map(str::to_owned));
                self.b2bua
                    .on_cancel_with(now, &invite, reason.as_deref(), &mut self.out);
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

    /// A new INVITE that must authenticate: from PBX extensions that must (the claim is theirs),
    /// or from an address that is no PBX or trunk: a phone when its From names an extension of
    /// an organization's domain (any extension number: an unknown one is challenged like a
    /// known one). Answered statelessly until its credentials are right.
    fn authenticate_invite(
        &mut self,
        now: Instant,
        req: &Request,
        source: Dest,
        kind: crate::b2bua::SourceKind,
    ) -> PhoneInvite {
        let generation = self.b2bua.generation();
        let snapshot = generation.config();
        let claim = match kind {
            crate::b2bua::SourceKind::MustAuthenticate(exts) => access::pbx_claim(snapshot, &exts),
            _ => access::claim(snapshot, req.parts().from().uri)
                .filter(|c| snapshot.index.organization_by_domain.contains_key(&c.realm)),
        };
        let Some(claim) = claim else {
            return PhoneInvite::NotAPhone;
        };
        let shared = self.shared.clone();
        let verdict = access::check(
            &shared.auth,
            &shared.nonces,
            snapshot,
            req,
            &claim,
            source.addr.ip(),
            now,
        );
        match verdict {
            access::Verdict::Ok(ext) => PhoneInvite::Caller(ext),
            access::Verdict::Respond(status, bytes) => PhoneInvite::Answered(status, bytes),
            access::Verdict::Failed {
                response: bytes,
                banned,
            } => {
                self.metrics.auth_failure();
                if banned {
                    self.metrics.auth_ban();
                }
                PhoneInvite::Answered(403, bytes)
            }
        }
    }

    /// An INVITE from a source that is no PBX or trunk gets one 403 and no transaction: a
    /// transaction would retransmit the 403 ~11 times over 32 s to a source that never ACKs
    /// (a spoofed one), a reflection amplifier. Retransmissions of the INVITE get it again.
    fn refuse_unknown_source(&mut self, now: Instant, req: &Request, reply_to: Dest) {
        if let Some(suppressed) = self.unknown_log.allow(now) {
            tracing::info!(peer.addr = %reply_to.addr, call_id = %req.parts().call_id(), suppressed, "call refused: unknown source");
        }
        let bytes = sip::response_to(req, 403, "Forbidden", Some("cg-403"), &[]);
        self.metrics.sip_response(403, Direction::Out);
        self.send(reply_to, bytes);
    }

    /// The transaction table is full: 503 without a transaction, counted.
    fn refuse_table_full(&mut self, now: Instant, req: &Request, reply_to: Dest) {
        self.metrics.transaction_refused();
        if let Some(suppressed) = self.full_log.allow(now) {
            tracing::warn!(
                transactions = self.txn.len(),
                suppressed,
                "transaction table full; request refused"
            );
        }
        let extra = [("Retry-After", "5")];
        let bytes = sip::response_to(req, 503, "Service Unavailable", Some("cg-503"), &extra);
        self.metrics.sip_response(503, Direction::Out);
        self.send(reply_to, bytes);
    }

    /// A request that starts a server transaction: the method dispatcher picks its handler.
    fn on_new_request(&mut self, now: Instant, req: Request, key: TransactionKey, source: Dest) {
        // RFC 3261 8.2.2 (416, 420) before any handler; answered on the server transaction, so
        // a refused INVITE's response is retransmitted until its ACK.
        if let Some(refusal) = checks::check(&req) {
            return self.respond(now, &key, refusal.response(&req), refusal.status);
        }
        let in_dialog = req.parts().to_tag().is_some();
        match methods::handler_for(req.method(), in_dialog) {
            Handler::Call => {
                let caller = self.caller.take();
                self.b2bua
                    .on_new_invite_from(now, req, key, source, caller, &mut self.out)
            }
            Handler::Dialog => self.b2bua.on_in_dialog(now, req, key, &mut self.out),
            // Out-of-dialog OPTIONS is answered before the transaction layer (`options::owns`);
            // were it to get here, a stateful 200 is as correct.
            Handler::Options => self.respond(now, &key, options::ok(&req), 200),
            Handler::NoDialog => {
                let bytes =
                    sip::response_to(&req, 481, "Call/Transaction Does Not Exist", None, &[]);
                self.respond(now, &key, bytes, 481);
            }
            // Answered before any transaction (`on_request`); unreachable from here.
            Handler::Register => {}
            Handler::NotImplemented => {
                let extra = [("Allow", sip::ALLOW)];
                let bytes = sip::response_to(&req, 501, "Not Implemented", Some("cg-501"), &extra);
                self.respond(now, &key, bytes, 501);
            }
        }
    }

    fn on_response(&mut self, now: Instant, resp: Response, source: Dest) {
        let status = resp.status().as_u16();
        self.metrics.sip_response(status, Direction::In);
        let Some(key) = client_key(&resp) else { return };
        if let Some(sent_to) = self.dests.get(&key).copied() {
            if !self.b2bua.same_peer(sent_to.addr, source.addr) {
                // A response must come from the peer its request went to (or another address
                // of the same trunk): a branch that leaked must not let anyone else answer.
                if let Some(suppressed) = self.stray_log.allow(now) {
                    tracing::info!(peer.addr = %source.addr, sent_to = %sent_to.addr, status, suppressed, "response from another peer than its request's ignored");
                }
                return;
            }
        }
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

    fn send(&mut self, dest: Dest, bytes: Bytes) {
        self.outbox.push(Outgoing {
            dest,
            bytes,
            key: None,
        });
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

    /// Records a client transaction we start at `now` (awaiting its final, sent to `dest`);
    /// returns whether its transport is reliable.
    fn track_client(&mut self, now: Instant, key: &TransactionKey, dest: Dest) -> bool {
        self.awaiting_final.insert(key.clone(), ());
        self.dests.insert(key.clone(), dest);
        let reliable = dest.transport.is_stream();
        if reliable {
            match self.tcp_in_flight.get_mut(&dest.addr) {
                Some(flight) => {
                    flight.insert(key.clone(), now);
                }
                None => {
                    let flight = std::iter::once((key.clone(), now)).collect();
                    self.tcp_in_flight.insert(dest.addr, flight);
                }
            }
        }
        reliable
    }

    /// A client transaction of ours had its final response (or ended without one).
    fn settled(&mut self, key: &TransactionKey) {
        if self.awaiting_final.remove(key).is_none() {
            return;
        }
        let Some(dest) = self.dests.get(key).copied() else {
            return;
        };
        if !dest.transport.is_stream() {
            return;
        }
        if let Some(flight) = self.tcp_in_flight.get_mut(&dest.addr) {
            flight.remove(key);
            if flight.is_empty() {
                self.tcp_in_flight.remove(&dest.addr);
            }
        }
    }

    fn exec_out(&mut self, now: Instant, o: Out) {
        match o {
            Out::Respond { key, status, bytes } => self.respond(now, &key, bytes, status),
            Out::StartInvite { key, dest, request } => {
                self.metrics.sip_request("INVITE", Direction::Out);
                let bytes = request.parts().as_bytes().clone();
                self.invites.insert(key.clone(), *request);
                let reliable = self.track_client(now, &key, dest);
                if let Err(e) =
                    self.txn
                        .start_client_invite(now, key, bytes, reliable, &mut self.lout)
                {
                    tracing::debug!(error = ?e, "client INVITE not started");
                }
            }
            Out::StartNonInvite { key, dest, bytes } => {
                let method = bytes.split(|b| *b == b' ').next().unwrap_or_default();
                let method = std::str::from_utf8(method).unwrap_or("OTHER");
                self.metrics.sip_request(method, Direction::Out);
                let reliable = self.track_client(now, &key, dest);
                if let Err(e) =
                    self.txn
                        .start_client_non_invite(now, key, bytes, reliable, &mut self.lout)
                {
                    tracing::debug!(error = ?e, "client transaction not started");
                }
            }
            Out::Send { dest, bytes } => self.send(dest, bytes),
            Out::Flow { peer, held } => self.flows.push((peer, held)),
            Out::Arm { at, call, timer } => self.timers.arm(at, call, timer),
            Out::Started { .. } => self.metrics.call_started(),
            Out::Ended { call, outcome } => {
                self.timers.cancel_call(call);
                self.metrics.call_ended(metric_outcome(outcome));
            }
            Out::Record(mut record) => {
                record.ended = now;
                self.records.push(record);
            }
            Out::Admit(request) => self.admissions.push(request),
            Out::Rejected(refusal) => {
                self.metrics.call_started();
                self.metrics.call_ended(MetricOutcome::Rejected);
                if let Some(refusal) = refusal {
                    self.metrics.rejection(
                        refusal.level.as_str(),
                        &refusal.name,
                        refusal.counter.as_str(),
                    );
                }
            }
        }
    }

    fn exec_layer(&mut self, now: Instant, a: LayerAction<Response>) {
        let LayerAction { key, action } = a;
        match action {
            Action::Transmit(bytes) => {
                if let Some(dest) = self.dests.get(&key).copied() {
                    self.outbox.push(Outgoing {
                        dest,
                        bytes,
                        key: Some(key),
                    });
                }
            }
            Action::ToUser(resp) => {
                if resp.status().is_final() {
                    self.settled(&key);
                }
                // The INVITE is kept only to build the ACK of a non-2xx final; a 2xx is ACKed
                // by the dialog, so drop it now rather than when the transaction ends (32 s).
                if resp.status().is_success() {
                    self.invites.remove(&key);
                }
                self.b2bua.on_response(now, &key, resp, &mut self.out)
            }
            Action::SendAck(resp) => {
                self.settled(&key);
                let dest = self.dests.get(&key).copied();
                if let (Some(invite), Some(dest)) = (self.invites.get(&key), dest) {
                    let ack = sip::ack_for_non_2xx(invite, &resp);
                    self.send(dest, ack);
                }
            }
            Action::TimedOut => {
                self.settled(&key);
                self.metrics.transaction_timeout();
                self.b2bua.on_client_failure(now, &key, true, &mut self.out);
            }
            Action::TransportError => {
                self.settled(&key);
                self.b2bua
                    .on_client_failure(now, &key, false, &mut self.out)
            }
            Action::Terminated => {
                self.settled(&key);
                self.dests.remove(&key);
                self.invites.remove(&key);
                self.b2bua.on_client_terminated(&key);
            }
            Action::AckReceived | Action::Confirmed => {}
        }
    }

    /// The calls in progress, for the admin API; `now` and `unix_now` are one instant read on
    /// both clocks (a call's start is kept as an `Instant` only).
    pub fn call_views(&self, now: Instant, unix_now: u64) -> Vec<CallView> {
        self.b2bua
            .calls()
            .map(|c| CallView {
                id: c.id.to_string(),
                started_at_unix_secs: unix_now
                    .saturating_sub(now.saturating_duration_since(c.started).as_secs()),
                legs: vec![
                    LegView {
                        leg: "a".into(),
                        call_id: c.a.call_id.clone(),
                        from: c.from_uri().to_owned(),
                        to: c.to_uri().to_owned(),
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
    t.as_str()
}

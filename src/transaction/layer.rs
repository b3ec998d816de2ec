//! The transaction layer: owns every live machine in one map keyed by [`TransactionKey`], routes
//! inbound requests and responses to them, reports what matches nothing (stray ACKs, stray
//! responses such as 2xx retransmissions after the client transaction ended), keeps one deadline
//! queue for all machines and drops machines once they reach Terminated.

use std::collections::BTreeMap;

use crate::split_map::SplitMap;
use std::time::Instant;

use bytes::Bytes;

use super::key::{Role, TransactionKey};
use super::timers::TimerConfig;
use super::{
    invite_server, ClientAction, ClientInput, InviteClient, InviteServer, NonInviteClient,
    NonInviteServer, ServerAction, ServerInput, TransactionError,
};

/// What the driver must do, for which transaction. Execute in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerAction<M> {
    /// The transaction asking.
    pub key: TransactionKey,
    /// The action.
    pub action: Action<M>,
}

/// Union of [`ClientAction`] and [`ServerAction`], as the layer reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<M> {
    /// Send bytes: a client's request to its destination, a server's response to the response
    /// destination (§18.2.2).
    Transmit(Bytes),
    /// Client: pass this response to the TU.
    ToUser(M),
    /// INVITE client: build the ACK for this non-2xx final and send it to the request's target.
    SendAck(M),
    /// INVITE server in Accepted: the ACK just given to `on_request` belongs to the TU.
    AckReceived,
    /// INVITE server: the ACK for the non-2xx final arrived. Informational.
    Confirmed,
    /// Timer B, F or H fired: tell the TU.
    TimedOut,
    /// The transport failed: tell the TU.
    TransportError,
    /// The machine ended and has been removed; forget any per-transaction driver state.
    Terminated,
}

impl<M> From<ClientAction<M>> for Action<M> {
    fn from(a: ClientAction<M>) -> Self {
        match a {
            ClientAction::Transmit(b) => Action::Transmit(b),
            ClientAction::ToUser(m) => Action::ToUser(m),
            ClientAction::SendAck(m) => Action::SendAck(m),
            ClientAction::TimedOut => Action::TimedOut,
            ClientAction::TransportError => Action::TransportError,
            ClientAction::Terminated => Action::Terminated,
        }
    }
}

impl<M> From<ServerAction> for Action<M> {
    fn from(a: ServerAction) -> Self {
        match a {
            ServerAction::Transmit(b) => Action::Transmit(b),
            ServerAction::AckReceived => Action::AckReceived,
            ServerAction::Confirmed => Action::Confirmed,
            ServerAction::TimedOut => Action::TimedOut,
            ServerAction::TransportError => Action::TransportError,
            ServerAction::Terminated => Action::Terminated,
        }
    }
}

/// The kind of an inbound request, from its method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// CANCEL.
    Cancel,
    /// Any other method.
    Other,
}

/// Where an inbound request went.
#[derive(Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// A new server transaction was created: pass the request to the TU, which answers
    /// through [`Layer::respond`].
    NewTransaction,
    /// A retransmission, absorbed by its transaction (actions may resend the last response).
    Retransmission,
    /// An ACK matched an INVITE server transaction. `to_user`: it matched in Accepted (RFC 6026)
    /// and belongs to the TU; otherwise it was the ACK for our non-2xx and is absorbed.
    AckForInvite {
        /// Whether the TU must see this ACK.
        to_user: bool,
    },
    /// A new CANCEL server transaction was created; the INVITE it cancels (key given) has no
    /// final response yet. TU: 200 to the CANCEL, 487 to the INVITE (§9.2).
    CancelFor(TransactionKey),
    /// A new CANCEL server transaction; its INVITE already has a final response. TU: 200 only.
    CancelTooLate(TransactionKey),
    /// A new CANCEL server transaction matching no INVITE. TU: 481 (§9.2).
    CancelUnmatched,
    /// An ACK matching no transaction: the ACK for a 2xx, for the TU's dialog layer.
    StrayAck,
}

/// Where an inbound response went.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseDispatch<M> {
    /// A client transaction took it (see the actions).
    Matched,
    /// No client transaction matches (e.g. a 2xx retransmission after Timer M): the TU's dialog
    /// layer decides (re-ACK a 2xx) or drops it (§18.1.2).
    Stray(M),
}

#[derive(Debug)]
enum Machine {
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
}

impl Machine {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::InviteClient(m) => m.poll_timeout(),
            Machine::NonInviteClient(m) => m.poll_timeout(),
            Machine::InviteServer(m) => m.poll_timeout(),
            Machine::NonInviteServer(m) => m.poll_timeout(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::InviteClient(m) => m.is_terminated(),
            Machine::NonInviteClient(m) => m.is_terminated(),
            Machine::InviteServer(m) => m.is_terminated(),
            Machine::NonInviteServer(m) => m.is_terminated(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    machine: Machine,
    /// The deadline last pushed to the queue; queue items that differ are stale.
    /// The deadline queued for this machine, with its tie-breaking sequence number.
    armed: Option<(Instant, u64)>,
}

/// Every live transaction of one driver, keyed by [`TransactionKey`].
///
/// Driver contract: feed it inbound requests ([`Layer::on_request`]), inbound responses
/// ([`Layer::on_response`]), TU requests ([`Layer::start_client_invite`],
/// [`Layer::start_client_non_invite`]), TU responses ([`Layer::respond`]) and transport failures
/// ([`Layer::transport_error`]). After each call execute the appended [`LayerAction`]s in order
/// (they carry the key; `Terminated` comes last for its key and the machine is already gone),
/// then arm one timer at [`Layer::poll_timeout`] and call [`Layer::handle_timeouts`] when it
/// fires. `M` is the driver's handle to a parsed response; it must be cheap to clone (an INVITE
/// client clones it once per non-2xx final, for `SendAck` and `ToUser`).
#[derive(Debug)]
pub struct Layer<M> {
    cfg: TimerConfig,
    /// Split so that growth never stalls the shard ([`SplitMap`]).
    entries: SplitMap<TransactionKey, Entry>,
    /// Ordered deadlines, exactly one per armed machine: re-arming removes the old entry, so the
    /// queue never needs a rebuild (a rebuild of ~10^5 entries stalled the driver for
    /// milliseconds under load).
    deadlines: BTreeMap<(Instant, u64), TransactionKey>,
    next_seq: u64,
    client_out: Vec<ClientAction<M>>,
    server_out: Vec<ServerAction>,
}

impl<M: Clone> Layer<M> {
    /// An empty layer using `cfg` for every machine.
    pub fn new(cfg: TimerConfig) -> Self {
        Self {
            cfg,
            entries: SplitMap::default(),
            deadlines: BTreeMap::new(),
            next_seq: 0,
            client_out: Vec::new(),
            server_out: Vec::new(),
        }
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Items in the deadline queue, live and stale (for tests and metrics).
    pub fn queued_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether a live transaction has this key.
    pub fn contains(&self, key: &TransactionKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Starts an INVITE client transaction and queues the first transmission.
    pub fn start_client_invite(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Bytes,
        reliable: bool,
        out: &mut Vec<LayerAction<M>>,
    ) -> Result<(), TransactionError> {
        self.check_new(&key, Role::Client)?;
        let m = InviteClient::start(now, request, reliable, &self.cfg, &mut self.client_out);
        self.insert(key, Machine::InviteClient(m), out);
        Ok(())
    }

    /// Starts a non-INVITE client transaction (including CANCEL) and queues its transmission.
    pub fn start_client_non_invite(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Bytes,
        reliable: bool,
        out: &mut Vec<LayerAction<M>>,
    ) -> Result<(), TransactionError> {
        self.check_new(&key, Role::Client)?;
        let m = NonInviteClient::start(now, request, reliable, &self.cfg, &mut self.client_out);
        self.insert(key, Machine::NonInviteClient(m), out);
        Ok(())
    }

    /// Routes an inbound request. `key` is its server key (branch or RFC 2543); `reliable` is the
    /// transport it came on, used only if a transaction is created.
    pub fn on_request(
        &mut self,
        now: Instant,
        key: TransactionKey,
        kind: RequestKind,
        reliable: bool,
        out: &mut Vec<LayerAction<M>>,
    ) -> Result<Dispatch, TransactionError> {
        if key.role() != Role::Server {
            return Err(TransactionError::WrongRole);
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            return Ok(self.on_new_request(key, kind, reliable, out));
        };
        let input = if kind == RequestKind::Ack {
            ServerInput::Ack
        } else {
            ServerInput::Request
        };
        let dispatch = match &mut entry.machine {
            Machine::InviteServer(m) => {
                let accepted = m.state() == invite_server::State::Accepted;
                m.handle(now, input, &mut self.server_out);
                match kind {
                    RequestKind::Ack => Dispatch::AckForInvite { to_user: accepted },
                    _ => Dispatch::Retransmission,
                }
            }
            Machine::NonInviteServer(m) => {
                m.handle(now, input, &mut self.server_out);
                Dispatch::Retransmission
            }
            Machine::InviteClient(_) | Machine::NonInviteClient(_) => {
                unreachable!("invariant: server keys never map to client machines")
            }
        };
        self.settle(key, out);
        Ok(dispatch)
    }

    fn on_new_request(
        &mut self,
        key: TransactionKey,
        kind: RequestKind,
        reliable: bool,
        out: &mut Vec<LayerAction<M>>,
    ) -> Dispatch {
        let (machine, dispatch) = match kind {
            RequestKind::Ack => return Dispatch::StrayAck,
            RequestKind::Invite => (
                Machine::InviteServer(InviteServer::new(reliable, &self.cfg)),
                Dispatch::NewTransaction,
            ),
            RequestKind::Other => (
                Machine::NonInviteServer(NonInviteServer::new(reliable, &self.cfg)),
                Dispatch::NewTransaction,
            ),
            RequestKind::Cancel => (
                Machine::NonInviteServer(NonInviteServer::new(reliable, &self.cfg)),
                self.cancel_dispatch(&key),
            ),
        };
        self.insert(key, machine, out);
        dispatch
    }

    fn cancel_dispatch(&self, key: &TransactionKey) -> Dispatch {
        let Some(target) = key.cancel_target() else {
            return Dispatch::CancelUnmatched;
        };
        match self.entries.get(&target).map(|e| &e.machine) {
            Some(Machine::InviteServer(m)) if m.state() == invite_server::State::Proceeding => {
                Dispatch::CancelFor(target)
            }
            Some(Machine::InviteServer(_)) => Dispatch::CancelTooLate(target),
            _ => Dispatch::CancelUnmatched,
        }
    }

    /// Routes an inbound response by its client key (top Via branch + CSeq method).
    pub fn on_response(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        status: u16,
        response: M,
        out: &mut Vec<LayerAction<M>>,
    ) -> ResponseDispatch<M> {
        let Some(entry) = self.entries.get_mut(key) else {
            return ResponseDispatch::Stray(response);
        };
        match &mut entry.machine {
            Machine::InviteClient(m) => m.handle(
                now,
                ClientInput::Response { status, response },
                &mut self.client_out,
            ),
            Machine::NonInviteClient(m) => m.handle(
                now,
                ClientInput::Response { status, response },
                &mut self.client_out,
            ),
            Machine::InviteServer(_) | Machine::NonInviteServer(_) => {
                return ResponseDispatch::Stray(response)
            }
        }
        self.settle(key.clone(), out);
        ResponseDispatch::Matched
    }

    /// Sends a TU response through the server transaction `key`.
    pub fn respond(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        status: u16,
        bytes: Bytes,
        out: &mut Vec<LayerAction<M>>,
    ) -> Result<(), TransactionError> {
        let entry = self
            .entries
            .get_mut(key)
            .ok_or(TransactionError::NotFound)?;
        let input = ServerInput::Respond { status, bytes };
        match &mut entry.machine {
            Machine::InviteServer(m) => m.handle(now, input, &mut self.server_out),
            Machine::NonInviteServer(m) => m.handle(now, input, &mut self.server_out),
            Machine::InviteClient(_) | Machine::NonInviteClient(_) => {
                return Err(TransactionError::WrongRole)
            }
        }
        self.settle(key.clone(), out);
        Ok(())
    }

    /// Reports that the transport failed to send for transaction `key` (§17.1.4, §17.2.4).
    pub fn transport_error(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        out: &mut Vec<LayerAction<M>>,
    ) -> Result<(), TransactionError> {
        let entry = self
            .entries
            .get_mut(key)
            .ok_or(TransactionError::NotFound)?;
        match &mut entry.machine {
            Machine::InviteClient(m) => {
                m.handle(now, ClientInput::TransportError, &mut self.client_out)
            }
            Machine::NonInviteClient(m) => {
                m.handle(now, ClientInput::TransportError, &mut self.client_out)
            }
            Machine::InviteServer(m) => {
                m.handle(now, ServerInput::TransportError, &mut self.server_out)
            }
            Machine::NonInviteServer(m) => {
                m.handle(now, ServerInput::TransportError, &mut self.server_out)
            }
        }
        self.settle(key.clone(), out);
        Ok(())
    }

    /// Earliest deadline of any machine; arm one timer for it.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.deadlines
            .first_key_value()
            .map(|((deadline, _), _)| *deadline)
    }

    /// Fires every machine timer due at `now`, in deadline order.
    pub fn handle_timeouts(&mut self, now: Instant, out: &mut Vec<LayerAction<M>>) {
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.armed = None;
            match &mut entry.machine {
                Machine::InviteClient(m) => m.handle_timeout(now, &mut self.client_out),
                Machine::NonInviteClient(m) => m.handle_timeout(now, &mut self.client_out),
                Machine::InviteServer(m) => m.handle_timeout(now, &mut self.server_out),
                Machine::NonInviteServer(m) => m.handle_timeout(now, &mut self.server_out),
            }
            self.settle(key, out);
        }
    }

    fn check_new(&self, key: &TransactionKey, role: Role) -> Result<(), TransactionError> {
        if key.role() != role {
            return Err(TransactionError::WrongRole);
        }
        if self.entries.contains_key(key) {
            return Err(TransactionError::Exists);
        }
        Ok(())
    }

    fn insert(&mut self, key: TransactionKey, machine: Machine, out: &mut Vec<LayerAction<M>>) {
        self.entries.insert(
            key.clone(),
            Entry {
                machine,
                armed: None,
            },
        );
        self.settle(key, out);
    }

    /// Moves the machine's actions to `out` with its key, then removes it if it terminated or
    /// queues its new deadline.
    fn settle(&mut self, key: TransactionKey, out: &mut Vec<LayerAction<M>>) {
        for action in self.client_out.drain(..) {
            out.push(LayerAction {
                key: key.clone(),
                action: action.into(),
            });
        }
        for action in self.server_out.drain(..) {
            out.push(LayerAction {
                key: key.clone(),
                action: action.into(),
            });
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if entry.machine.is_terminated() {
            if let Some(armed) = entry.armed {
                self.deadlines.remove(&armed);
            }
            self.entries.remove(&key);
            return;
        }
        let deadline = entry.machine.poll_timeout();
        if deadline != entry.armed.map(|(d, _)| d) {
            if let Some(old) = entry.armed.take() {
                self.deadlines.remove(&old);
            }
            if let Some(d) = deadline {
                self.next_seq += 1;
                entry.armed = Some((d, self.next_seq));
                self.deadlines.insert((d, self.next_seq), key);
            }
        }
    }
}

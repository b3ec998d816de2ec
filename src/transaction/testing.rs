//! Test harness: one client machine and one server machine joined by a simulated link with
//! loss and delay, under a fake clock that [`Pair::drive`] jumps from deadline to deadline
//! (modelled on quinn-proto's `tests/util.rs` `Pair`).
//!
//! Wire format of the simulation: the request is its method name (`INVITE`, `OPTIONS`), the
//! ACK is `ACK`, a response is its status code in ASCII. The server's TU is a script of
//! `(delay after the request arrived, status)` responses.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{invite_client, invite_server, non_invite_client, non_invite_server};
use super::{
    ClientAction, ClientInput, InviteClient, InviteServer, NonInviteClient, NonInviteServer,
    ServerAction, ServerInput, TimerConfig,
};

/// The fake clock's origin (read outside the core, in `crate::test_clock`).
pub(crate) fn origin() -> Instant {
    crate::test_clock::origin()
}

/// One direction of the simulated network.
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// One-way delay of every packet.
    pub(crate) delay: Duration,
    /// Indices (0-based, in send order) of packets this link loses.
    pub(crate) drop: Vec<usize>,
    /// Random loss in per mille, from a fixed-seed generator (reproducible).
    pub(crate) loss_per_mille: u32,
    /// State of the loss generator; set it to pick a different reproducible loss pattern.
    pub(crate) seed: u64,
    sent: usize,
    /// Packets sent, including lost ones.
    pub(crate) log: Vec<(Instant, Bytes)>,
    queue: VecDeque<(Instant, Bytes)>,
}

impl Link {
    fn send(&mut self, now: Instant, bytes: Bytes) {
        let index = self.sent;
        self.sent += 1;
        self.log.push((now, bytes.clone()));
        if self.drop.contains(&index) || self.random_loss() {
            return;
        }
        self.queue.push_back((now + self.delay, bytes));
    }

    fn random_loss(&mut self) -> bool {
        if self.loss_per_mille == 0 {
            return false;
        }
        // xorshift64: deterministic, good enough to spread losses.
        let mut x = if self.seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            self.seed
        };
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        (x % 1000) < u64::from(self.loss_per_mille)
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Bytes> {
        match self.queue.front() {
            Some((at, _)) if *at <= now => self.queue.pop_front().map(|(_, b)| b),
            _ => None,
        }
    }

    /// How many packets with exactly these bytes were sent (lost or not).
    pub(crate) fn count(&self, bytes: &[u8]) -> usize {
        self.log.iter().filter(|(_, b)| b.as_ref() == bytes).count()
    }

    /// Send times of packets with exactly these bytes.
    pub(crate) fn times(&self, bytes: &[u8]) -> Vec<Instant> {
        self.log
            .iter()
            .filter(|(_, b)| b.as_ref() == bytes)
            .map(|(t, _)| *t)
            .collect()
    }
}

/// The client side under test.
#[derive(Debug)]
pub(crate) enum Client {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

/// The server side under test, created when the first request arrives.
#[derive(Debug)]
pub(crate) enum Server {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

/// A client and a server transaction over a simulated link.
#[derive(Debug)]
pub(crate) struct Pair {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) cfg: TimerConfig,
    pub(crate) reliable: bool,
    pub(crate) client: Client,
    pub(crate) server: Option<Server>,
    pub(crate) to_server: Link,
    pub(crate) to_client: Link,
    /// TU responses: (delay after the server transaction was created, status).
    pub(crate) script: VecDeque<(Duration, u16)>,
    server_born: Option<Instant>,
    /// Everything the client asked for, with the time.
    pub(crate) client_log: Vec<(Instant, ClientAction<Bytes>)>,
    /// Everything the server asked for, with the time.
    pub(crate) server_log: Vec<(Instant, ServerAction)>,
    client_out: Vec<ClientAction<Bytes>>,
    server_out: Vec<ServerAction>,
    request: Bytes,
}

impl Pair {
    /// A pair whose client sends `method` (`INVITE` makes INVITE machines) at time `start`.
    pub(crate) fn new(method: &'static str, reliable: bool, script: &[(Duration, u16)]) -> Self {
        let start = origin();
        let cfg = TimerConfig::default();
        let request = Bytes::from_static(method.as_bytes());
        let mut client_out = Vec::new();
        let client = if method == "INVITE" {
            Client::Invite(InviteClient::start(
                start,
                request.clone(),
                reliable,
                &cfg,
                &mut client_out,
            ))
        } else {
            Client::NonInvite(NonInviteClient::start(
                start,
                request.clone(),
                reliable,
                &cfg,
                &mut client_out,
            ))
        };
        // The first transmission stays queued in `client_out` until the first drive, so a
        // test can configure the links first.
        Self {
            start,
            now: start,
            cfg,
            reliable,
            client,
            server: None,
            to_server: Link::default(),
            to_client: Link::default(),
            script: script.iter().copied().collect(),
            server_born: None,
            client_log: Vec::new(),
            server_log: Vec::new(),
            client_out,
            server_out: Vec::new(),
            request,
        }
    }

    /// Runs the exchange until nothing is left to happen.
    pub(crate) fn drive(&mut self) {
        self.drive_until(self.start + Duration::from_secs(3600));
    }

    /// Runs the exchange, jumping the clock to each next event, until `limit` or quiescence.
    pub(crate) fn drive_until(&mut self, limit: Instant) {
        self.execute_client();
        while let Some(next) = self.next_event() {
            if next > limit {
                break;
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let client = match &self.client {
            Client::Invite(m) => m.poll_timeout(),
            Client::NonInvite(m) => m.poll_timeout(),
        };
        let server = match &self.server {
            Some(Server::Invite(m)) => m.poll_timeout(),
            Some(Server::NonInvite(m)) => m.poll_timeout(),
            None => None,
        };
        let script = match (self.server_born, self.script.front()) {
            (Some(born), Some((after, _))) if !self.server_terminated() => Some(born + *after),
            _ => None,
        };
        [
            client,
            server,
            script,
            self.to_server.next_arrival(),
            self.to_client.next_arrival(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(bytes) = self.to_server.pop_due(now) {
            self.server_receives(bytes);
        }
        while let Some(bytes) = self.to_client.pop_due(now) {
            let status = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let input = ClientInput::Response {
                status,
                response: bytes,
            };
            match &mut self.client {
                Client::Invite(m) => m.handle(now, input, &mut self.client_out),
                Client::NonInvite(m) => m.handle(now, input, &mut self.client_out),
            }
            self.execute_client();
        }
        while let (Some(born), Some((after, status))) =
            (self.server_born, self.script.front().copied())
        {
            if born + after > now {
                break;
            }
            self.script.pop_front();
            let bytes = Bytes::from(status.to_string());
            self.server_input(ServerInput::Respond { status, bytes });
        }
        match &mut self.client {
            Client::Invite(m) => m.handle_timeout(now, &mut self.client_out),
            Client::NonInvite(m) => m.handle_timeout(now, &mut self.client_out),
        }
        self.execute_client();
        match &mut self.server {
            Some(Server::Invite(m)) => m.handle_timeout(now, &mut self.server_out),
            Some(Server::NonInvite(m)) => m.handle_timeout(now, &mut self.server_out),
            None => {}
        }
        self.execute_server();
    }

    fn server_receives(&mut self, bytes: Bytes) {
        if self.server.is_none() {
            if bytes != self.request {
                return;
            }
            self.server = Some(if bytes.as_ref() == b"INVITE" {
                Server::Invite(InviteServer::new(self.reliable, &self.cfg))
            } else {
                Server::NonInvite(NonInviteServer::new(self.reliable, &self.cfg))
            });
            self.server_born = Some(self.now);
            return;
        }
        let input = if bytes.as_ref() == b"ACK" {
            ServerInput::Ack
        } else {
            ServerInput::Request
        };
        self.server_input(input);
    }

    fn server_input(&mut self, input: ServerInput) {
        let now = self.now;
        match &mut self.server {
            Some(Server::Invite(m)) => m.handle(now, input, &mut self.server_out),
            Some(Server::NonInvite(m)) => m.handle(now, input, &mut self.server_out),
            None => {}
        }
        self.execute_server();
    }

    /// The driver part for the client: send what it asks, build ACKs.
    fn execute_client(&mut self) {
        for action in self.client_out.drain(..) {
            match &action {
                ClientAction::Transmit(bytes) => self.to_server.send(self.now, bytes.clone()),
                ClientAction::SendAck(_) => {
                    self.to_server.send(self.now, Bytes::from_static(b"ACK"))
                }
                _ => {}
            }
            self.client_log.push((self.now, action));
        }
    }

    fn execute_server(&mut self) {
        for action in self.server_out.drain(..) {
            if let ServerAction::Transmit(bytes) = &action {
                self.to_client.send(self.now, bytes.clone());
            }
            self.server_log.push((self.now, action));
        }
    }

    fn server_terminated(&self) -> bool {
        match &self.server {
            Some(Server::Invite(m)) => m.is_terminated(),
            Some(Server::NonInvite(m)) => m.is_terminated(),
            None => false,
        }
    }

    /// Statuses the client passed to its TU, in order.
    pub(crate) fn to_user(&self) -> Vec<u16> {
        self.client_log
            .iter()
            .filter_map(|(_, a)| match a {
                ClientAction::ToUser(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                _ => None,
            })
            .collect()
    }

    /// Whether the client reported this action.
    pub(crate) fn client_did(&self, action: &ClientAction<Bytes>) -> bool {
        self.client_log.iter().any(|(_, a)| a == action)
    }

    /// Whether the server reported this action.
    pub(crate) fn server_did(&self, action: &ServerAction) -> bool {
        self.server_log.iter().any(|(_, a)| a == action)
    }

    /// When the client reported `Terminated`.
    pub(crate) fn client_terminated_at(&self) -> Option<Instant> {
        self.client_log
            .iter()
            .find(|(_, a)| *a == ClientAction::Terminated)
            .map(|(t, _)| *t)
    }

    /// When the server reported `Terminated`.
    pub(crate) fn server_terminated_at(&self) -> Option<Instant> {
        self.server_log
            .iter()
            .find(|(_, a)| *a == ServerAction::Terminated)
            .map(|(t, _)| *t)
    }

    /// The INVITE client's state (panics for a non-INVITE pair: test misuse).
    pub(crate) fn invite_client_state(&self) -> invite_client::State {
        match &self.client {
            Client::Invite(m) => m.state(),
            Client::NonInvite(_) => panic!("not an INVITE pair"),
        }
    }

    /// The non-INVITE client's state (panics for an INVITE pair: test misuse).
    pub(crate) fn non_invite_client_state(&self) -> non_invite_client::State {
        match &self.client {
            Client::NonInvite(m) => m.state(),
            Client::Invite(_) => panic!("not a non-INVITE pair"),
        }
    }

    /// The INVITE server's state, once it exists.
    pub(crate) fn invite_server_state(&self) -> Option<invite_server::State> {
        match &self.server {
            Some(Server::Invite(m)) => Some(m.state()),
            _ => None,
        }
    }

    /// The non-INVITE server's state, once it exists.
    pub(crate) fn non_invite_server_state(&self) -> Option<non_invite_server::State> {
        match &self.server {
            Some(Server::NonInvite(m)) => Some(m.state()),
            _ => None,
        }
    }
}

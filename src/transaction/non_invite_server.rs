//! Non-INVITE server transaction: RFC 3261 §17.2.2 (Figure 8), timer J. CANCEL is one too.

use std::time::Instant;

use bytes::Bytes;

use super::timers::{Timer, TimerConfig, TimerTable};
use super::{is_provisional, ServerAction, ServerInput};

/// States of Figure 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Request received and passed to the TU; retransmissions are absorbed silently.
    Trying,
    /// A provisional was sent; retransmissions get it again.
    Proceeding,
    /// A final was sent; retransmissions get it again until Timer J.
    Completed,
    /// Done; the driver drops the machine.
    Terminated,
}

/// Server non-INVITE transaction, RFC 3261 §17.2.2 (Figure 8).
///
/// Driver contract: create with [`NonInviteServer::new`] when a new request arrives and pass it
/// to the TU; feed retransmissions, TU responses and transport errors to `handle`; after every
/// call execute the appended [`ServerAction`]s in order (`Transmit` to the response destination,
/// report `TransportError`, drop on `Terminated`), then re-arm the wake-up from
/// [`NonInviteServer::poll_timeout`] and call [`NonInviteServer::handle_timeout`] when it passes.
#[derive(Clone, Debug)]
pub struct NonInviteServer {
    state: State,
    timers: TimerTable<1>,
    last_response: Option<Bytes>,
    reliable: bool,
    cfg: TimerConfig,
}

impl NonInviteServer {
    /// Creates the machine in Trying for a newly received request. Emits nothing.
    pub fn new(reliable: bool, cfg: &TimerConfig) -> Self {
        Self {
            state: State::Trying,
            timers: TimerTable::new([Timer::J]),
            last_response: None,
            reliable,
            cfg: *cfg,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the machine is done and may be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// Earliest deadline at which the driver must call [`NonInviteServer::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<ServerAction>) {
        while let Some(timer) = self.timers.expired(now) {
            self.handle(now, ServerInput::TimerFired(timer), out);
        }
    }

    /// Advances on one input. Appends what the driver must do to `out`.
    pub fn handle(&mut self, now: Instant, input: ServerInput, out: &mut Vec<ServerAction>) {
        match input {
            ServerInput::Request => {
                if let (State::Proceeding | State::Completed, Some(last)) =
                    (self.state, &self.last_response)
                {
                    out.push(ServerAction::Transmit(last.clone()));
                }
            }
            ServerInput::Ack => {}
            ServerInput::Respond { status, bytes } => self.on_respond(now, status, bytes, out),
            ServerInput::TimerFired(timer) => {
                if self.timers.is_due(timer, now) {
                    self.timers.cancel(timer);
                    if self.state == State::Completed && timer == Timer::J {
                        self.terminate(out);
                    }
                }
            }
            ServerInput::TransportError => {
                if self.state != State::Terminated {
                    out.push(ServerAction::TransportError);
                    self.terminate(out);
                }
            }
        }
    }

    fn on_respond(&mut self, now: Instant, status: u16, bytes: Bytes, out: &mut Vec<ServerAction>) {
        if !matches!(self.state, State::Trying | State::Proceeding) || !(100..700).contains(&status)
        {
            // Completed discards further TU responses (§17.2.2).
            return;
        }
        out.push(ServerAction::Transmit(bytes.clone()));
        self.last_response = Some(bytes);
        if is_provisional(status) {
            self.state = State::Proceeding;
            return;
        }
        self.state = State::Completed;
        let j = self.cfg.timer_j(self.reliable);
        if j.is_zero() {
            self.terminate(out);
        } else {
            self.timers.arm(Timer::J, now + j);
        }
    }

    fn terminate(&mut self, out: &mut Vec<ServerAction>) {
        self.timers.clear();
        self.last_response = None;
        self.state = State::Terminated;
        out.push(ServerAction::Terminated);
    }
}

//! INVITE server transaction: RFC 3261 §17.2.1 (Figure 7) as updated by RFC 6026 §8.5-8.7
//! (a 2xx leads to `Accepted` with Timer L instead of Terminated).
//!
//! 100 Trying: §17.2.1 wants a 100 unless the TU answers within 200 ms. The machine never makes
//! responses itself; the TU sends 100 through `Respond { status: 100, .. }` (callgate's B2BUA
//! does so as soon as it accepts the INVITE, before routing).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timers::{Timer, TimerConfig, TimerTable};
use super::{is_failure, is_provisional, is_success, ServerAction, ServerInput};

/// States of Figure 7 plus RFC 6026 `Accepted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// INVITE received and passed to the TU; provisional responses may be sent.
    Proceeding,
    /// A non-2xx final was sent; Timer G (unreliable) retransmits it, Timer H waits for the ACK.
    Completed,
    /// The ACK arrived; Timer I absorbs ACK retransmissions.
    Confirmed,
    /// A 2xx was sent (RFC 6026); INVITE retransmissions are absorbed until Timer L.
    Accepted,
    /// Done; the driver drops the machine.
    Terminated,
}

/// Server INVITE transaction, RFC 3261 §17.2.1 (Figure 7) + RFC 6026.
///
/// Driver contract: create with [`InviteServer::new`] when a new INVITE arrives and pass the
/// INVITE to the TU; feed retransmissions, ACKs, TU responses and transport errors to `handle`;
/// after every call execute the appended [`ServerAction`]s in order (`Transmit` to the response
/// destination of §18.2.2, report `TimedOut` / `TransportError`, hand the ACK to the TU on
/// `AckReceived`, drop on `Terminated`), then re-arm the wake-up from
/// [`InviteServer::poll_timeout`] and call [`InviteServer::handle_timeout`] when it passes.
/// 2xx retransmissions are the TU's job (§13.3.1.4): it passes each one to `Respond` while the
/// machine is in Accepted.
#[derive(Clone, Debug)]
pub struct InviteServer {
    state: State,
    timers: TimerTable<4>,
    last_response: Option<Bytes>,
    reliable: bool,
    interval_g: Duration,
    cfg: TimerConfig,
}

impl InviteServer {
    /// Creates the machine in Proceeding for a newly received INVITE. Emits nothing.
    pub fn new(reliable: bool, cfg: &TimerConfig) -> Self {
        Self {
            state: State::Proceeding,
            timers: TimerTable::new([Timer::G, Timer::H, Timer::I, Timer::L]),
            last_response: None,
            reliable,
            interval_g: cfg.t1,
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

    /// Earliest deadline at which the driver must call [`InviteServer::handle_timeout`].
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
            ServerInput::Request => self.on_retransmission(out),
            ServerInput::Ack => self.on_ack(now, out),
            ServerInput::Respond { status, bytes } => self.on_respond(now, status, bytes, out),
            ServerInput::TimerFired(timer) => {
                if self.timers.is_due(timer, now) {
                    self.timers.cancel(timer);
                    self.on_timer(now, timer, out);
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

    fn on_retransmission(&mut self, out: &mut Vec<ServerAction>) {
        // Proceeding and Completed resend the last response; Accepted absorbs (RFC 6026 §8.7).
        if matches!(self.state, State::Proceeding | State::Completed) {
            if let Some(last) = &self.last_response {
                out.push(ServerAction::Transmit(last.clone()));
            }
        }
    }

    fn on_ack(&mut self, now: Instant, out: &mut Vec<ServerAction>) {
        match self.state {
            State::Completed => {
                self.timers.clear();
                self.state = State::Confirmed;
                out.push(ServerAction::Confirmed);
                let i = self.cfg.timer_t4(self.reliable);
                if i.is_zero() {
                    self.terminate(out);
                } else {
                    self.timers.arm(Timer::I, now + i);
                }
            }
            // RFC 6026 §8.7: an ACK matching an Accepted transaction goes to the TU.
            State::Accepted => out.push(ServerAction::AckReceived),
            State::Proceeding | State::Confirmed | State::Terminated => {}
        }
    }

    fn on_respond(&mut self, now: Instant, status: u16, bytes: Bytes, out: &mut Vec<ServerAction>) {
        match self.state {
            State::Proceeding if is_provisional(status) => {
                out.push(ServerAction::Transmit(bytes.clone()));
                self.last_response = Some(bytes);
            }
            State::Proceeding if is_success(status) => {
                out.push(ServerAction::Transmit(bytes));
                self.last_response = None;
                self.state = State::Accepted;
                self.timers.arm(Timer::L, now + self.cfg.t1_x64());
            }
            State::Proceeding if is_failure(status) => {
                out.push(ServerAction::Transmit(bytes.clone()));
                self.last_response = Some(bytes);
                self.state = State::Completed;
                if !self.reliable {
                    self.timers.arm(Timer::G, now + self.interval_g);
                }
                self.timers.arm(Timer::H, now + self.cfg.t1_x64());
            }
            // The TU's own 2xx retransmissions (§13.3.1.4) pass through in Accepted.
            State::Accepted if is_success(status) => out.push(ServerAction::Transmit(bytes)),
            _ => {}
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer, out: &mut Vec<ServerAction>) {
        match (self.state, timer) {
            (State::Completed, Timer::G) => {
                if let Some(last) = &self.last_response {
                    out.push(ServerAction::Transmit(last.clone()));
                }
                self.interval_g = (self.interval_g * 2).min(self.cfg.t2);
                self.timers.arm(Timer::G, now + self.interval_g);
            }
            (State::Completed, Timer::H) => {
                out.push(ServerAction::TimedOut);
                self.terminate(out);
            }
            (State::Confirmed, Timer::I) | (State::Accepted, Timer::L) => self.terminate(out),
            _ => {}
        }
    }

    fn terminate(&mut self, out: &mut Vec<ServerAction>) {
        self.timers.clear();
        self.last_response = None;
        self.state = State::Terminated;
        out.push(ServerAction::Terminated);
    }
}

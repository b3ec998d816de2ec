//! INVITE client transaction: RFC 3261 §17.1.1 (Figure 5) as updated by RFC 6026 §8.4
//! (2xx leads to `Accepted`, Timer M, further 2xx pass to the TU).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timers::{Timer, TimerConfig, TimerTable};
use super::{is_failure, is_provisional, is_success, ClientAction, ClientInput};

/// States of Figure 5 plus RFC 6026 `Accepted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// INVITE sent, nothing heard yet; Timers A (unreliable) and B run.
    Calling,
    /// A provisional response arrived; no retransmissions, no timeout (the TU may CANCEL).
    Proceeding,
    /// A non-2xx final arrived and was ACKed; Timer D absorbs its retransmissions.
    Completed,
    /// A 2xx arrived (RFC 6026); Timer M passes further 2xx (forks, retransmissions) to the TU.
    Accepted,
    /// Done; the driver drops the machine.
    Terminated,
}

/// Client INVITE transaction, RFC 3261 §17.1.1 (Figure 5) + RFC 6026.
///
/// Driver contract: create with [`InviteClient::start`]; after every call to `start`, `handle`
/// or `handle_timeout`, execute the appended [`ClientAction`]s in order (`Transmit` the request,
/// build and send the ACK on `SendAck`, pass `ToUser` responses up, report `TimedOut` /
/// `TransportError`, drop the machine on `Terminated`), then re-arm the wake-up from
/// [`InviteClient::poll_timeout`] and call [`InviteClient::handle_timeout`] when it passes.
/// The ACK for a 2xx is the TU's job, not this machine's.
#[derive(Clone, Debug)]
pub struct InviteClient {
    state: State,
    timers: TimerTable<4>,
    request: Bytes,
    reliable: bool,
    interval_a: Duration,
    cfg: TimerConfig,
}

impl InviteClient {
    /// Creates the machine in Calling and queues the first transmission of `request`.
    /// Timer A runs only on unreliable transports (§17.1.1.2).
    pub fn start<M>(
        now: Instant,
        request: Bytes,
        reliable: bool,
        cfg: &TimerConfig,
        out: &mut Vec<ClientAction<M>>,
    ) -> Self {
        let mut timers = TimerTable::new([Timer::A, Timer::B, Timer::D, Timer::M]);
        if !reliable {
            timers.arm(Timer::A, now + cfg.t1);
        }
        timers.arm(Timer::B, now + cfg.t1_x64());
        out.push(ClientAction::Transmit(request.clone()));
        Self {
            state: State::Calling,
            timers,
            request,
            reliable,
            interval_a: cfg.t1,
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

    /// Earliest deadline at which the driver must call [`InviteClient::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout<M: Clone>(&mut self, now: Instant, out: &mut Vec<ClientAction<M>>) {
        while let Some(timer) = self.timers.expired(now) {
            self.handle(now, ClientInput::TimerFired(timer), out);
        }
    }

    /// Advances on one input. Appends what the driver must do to `out`.
    pub fn handle<M: Clone>(
        &mut self,
        now: Instant,
        input: ClientInput<M>,
        out: &mut Vec<ClientAction<M>>,
    ) {
        match input {
            ClientInput::Response { status, response } => {
                self.on_response(now, status, response, out)
            }
            ClientInput::TimerFired(timer) => {
                if self.timers.is_due(timer, now) {
                    self.timers.cancel(timer);
                    self.on_timer(now, timer, out);
                }
            }
            ClientInput::TransportError => {
                if self.state != State::Terminated {
                    out.push(ClientAction::TransportError);
                    self.terminate(out);
                }
            }
        }
    }

    fn on_response<M: Clone>(
        &mut self,
        now: Instant,
        status: u16,
        response: M,
        out: &mut Vec<ClientAction<M>>,
    ) {
        match self.state {
            State::Calling | State::Proceeding => {
                // Any response ends the retransmissions of the request (Timer A): free it rather
                // than keep it for the whole life of the transaction (Timer M/D, 32 s).
                self.request = Bytes::new();
                if is_provisional(status) {
                    // No retransmissions and no Timer B once the server is heard from.
                    self.timers.cancel(Timer::A);
                    self.timers.cancel(Timer::B);
                    self.state = State::Proceeding;
                    out.push(ClientAction::ToUser(response));
                } else if is_success(status) {
                    self.timers.clear();
                    self.timers.arm(Timer::M, now + self.cfg.t1_x64());
                    self.state = State::Accepted;
                    out.push(ClientAction::ToUser(response));
                } else if is_failure(status) {
                    self.timers.clear();
                    out.push(ClientAction::SendAck(response.clone()));
                    out.push(ClientAction::ToUser(response));
                    self.state = State::Completed;
                    let d = self.cfg.timer_d(self.reliable);
                    if d.is_zero() {
                        self.terminate(out);
                    } else {
                        self.timers.arm(Timer::D, now + d);
                    }
                }
            }
            // A retransmitted final: ACK it again, do not bother the TU (§17.1.1.2).
            State::Completed if is_failure(status) => out.push(ClientAction::SendAck(response)),
            // RFC 6026 §8.4: every 2xx (retransmission or another fork) goes to the TU.
            State::Accepted if is_success(status) => out.push(ClientAction::ToUser(response)),
            State::Completed | State::Accepted | State::Terminated => {}
        }
    }

    fn on_timer<M>(&mut self, now: Instant, timer: Timer, out: &mut Vec<ClientAction<M>>) {
        match (self.state, timer) {
            (State::Calling, Timer::A) => {
                out.push(ClientAction::Transmit(self.request.clone()));
                self.interval_a *= 2;
                self.timers.arm(Timer::A, now + self.interval_a);
            }
            (State::Calling, Timer::B) => {
                out.push(ClientAction::TimedOut);
                self.terminate(out);
            }
            (State::Completed, Timer::D) | (State::Accepted, Timer::M) => self.terminate(out),
            _ => {}
        }
    }

    fn terminate<M>(&mut self, out: &mut Vec<ClientAction<M>>) {
        self.timers.clear();
        self.state = State::Terminated;
        out.push(ClientAction::Terminated);
    }
}

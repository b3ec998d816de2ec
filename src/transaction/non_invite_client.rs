//! Non-INVITE client transaction: RFC 3261 §17.1.2 (Figure 6), timers E, F, K.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timers::{Timer, TimerConfig, TimerTable};
use super::{is_provisional, ClientAction, ClientInput};

/// States of Figure 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Request sent, nothing heard yet; Timers E (unreliable) and F run.
    Trying,
    /// A provisional response arrived; E keeps retransmitting at T2, F still runs.
    Proceeding,
    /// A final response arrived; Timer K absorbs its retransmissions.
    Completed,
    /// Done; the driver drops the machine.
    Terminated,
}

/// Client non-INVITE transaction, RFC 3261 §17.1.2 (Figure 6).
///
/// Driver contract: create with [`NonInviteClient::start`]; after every call to `start`,
/// `handle` or `handle_timeout`, execute the appended [`ClientAction`]s in order (`Transmit`,
/// `ToUser`, `TimedOut`, `TransportError`, drop on `Terminated`), then re-arm the wake-up from
/// [`NonInviteClient::poll_timeout`] and call [`NonInviteClient::handle_timeout`] when it passes.
/// Never emits `SendAck`.
#[derive(Clone, Debug)]
pub struct NonInviteClient {
    state: State,
    timers: TimerTable<3>,
    request: Bytes,
    reliable: bool,
    interval_e: Duration,
    cfg: TimerConfig,
}

impl NonInviteClient {
    /// Creates the machine in Trying and queues the first transmission of `request`.
    /// Timer E runs only on unreliable transports (§17.1.2.2).
    pub fn start<M>(
        now: Instant,
        request: Bytes,
        reliable: bool,
        cfg: &TimerConfig,
        out: &mut Vec<ClientAction<M>>,
    ) -> Self {
        let mut timers = TimerTable::new([Timer::E, Timer::F, Timer::K]);
        if !reliable {
            timers.arm(Timer::E, now + cfg.t1);
        }
        timers.arm(Timer::F, now + cfg.t1_x64());
        out.push(ClientAction::Transmit(request.clone()));
        Self {
            state: State::Trying,
            timers,
            request,
            reliable,
            interval_e: cfg.t1,
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

    /// Earliest deadline at which the driver must call [`NonInviteClient::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout<M>(&mut self, now: Instant, out: &mut Vec<ClientAction<M>>) {
        while let Some(timer) = self.timers.expired(now) {
            self.handle(now, ClientInput::TimerFired(timer), out);
        }
    }

    /// Advances on one input. Appends what the driver must do to `out`.
    pub fn handle<M>(
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

    fn on_response<M>(
        &mut self,
        now: Instant,
        status: u16,
        response: M,
        out: &mut Vec<ClientAction<M>>,
    ) {
        if !matches!(self.state, State::Trying | State::Proceeding) || !(100..700).contains(&status)
        {
            // Completed absorbs response retransmissions (§17.1.2.2).
            return;
        }
        out.push(ClientAction::ToUser(response));
        if is_provisional(status) {
            self.state = State::Proceeding;
            return;
        }
        self.timers.clear();
        self.state = State::Completed;
        let k = self.cfg.timer_t4(self.reliable);
        if k.is_zero() {
            self.terminate(out);
        } else {
            self.timers.arm(Timer::K, now + k);
        }
    }

    fn on_timer<M>(&mut self, now: Instant, timer: Timer, out: &mut Vec<ClientAction<M>>) {
        match (self.state, timer) {
            (State::Trying | State::Proceeding, Timer::E) => {
                out.push(ClientAction::Transmit(self.request.clone()));
                // Trying doubles up to T2; Proceeding retransmits every T2 (§17.1.2.2).
                self.interval_e = match self.state {
                    State::Trying => (self.interval_e * 2).min(self.cfg.t2),
                    _ => self.cfg.t2,
                };
                self.timers.arm(Timer::E, now + self.interval_e);
            }
            (State::Trying | State::Proceeding, Timer::F) => {
                out.push(ClientAction::TimedOut);
                self.terminate(out);
            }
            (State::Completed, Timer::K) => self.terminate(out),
            _ => {}
        }
    }

    fn terminate<M>(&mut self, out: &mut Vec<ClientAction<M>>) {
        self.timers.clear();
        self.state = State::Terminated;
        out.push(ClientAction::Terminated);
    }
}

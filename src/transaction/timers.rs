//! Timer values of RFC 3261 §17 (T1, T2, T4, Table 4) and RFC 6026 (L, M), and the small fixed
//! timer table each machine keeps. Timer C (proxy INVITE timer) is not here: callgate is a UA
//! on both legs, never a proxy.

use std::time::{Duration, Instant};

/// Base timer values. Every transaction timer is derived from these (RFC 3261 Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; first retransmission interval of A, E, G. Default 500 ms.
    pub t1: Duration,
    /// Cap of the E and G retransmission intervals. Default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network; Timers I and K. Default 5 s.
    pub t4: Duration,
    /// Timer D on unreliable transports ("at least 32 s", §17.1.1.2). Default 32 s.
    pub d: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t1_x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: [`TimerConfig::d`] on unreliable transports, zero on reliable ones.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.d
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable ones.
    pub fn timer_t4(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64*T1 on unreliable transports, zero on reliable ones.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1_x64()
        }
    }
}

/// A transaction timer, named by its RFC letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client retransmission (unreliable only); doubles without cap.
    A,
    /// INVITE client transaction timeout, 64*T1.
    B,
    /// INVITE client wait for response retransmissions in Completed.
    D,
    /// Non-INVITE client retransmission (unreliable only); doubles up to T2.
    E,
    /// Non-INVITE client transaction timeout, 64*T1.
    F,
    /// INVITE server final response retransmission (unreliable only); doubles up to T2.
    G,
    /// INVITE server wait for ACK, 64*T1.
    H,
    /// INVITE server wait for ACK retransmissions in Confirmed.
    I,
    /// Non-INVITE server wait for request retransmissions in Completed.
    J,
    /// Non-INVITE client wait for response retransmissions in Completed.
    K,
    /// INVITE server wait in Accepted (RFC 6026), 64*T1.
    L,
    /// INVITE client wait in Accepted (RFC 6026), 64*T1.
    M,
}

/// A fixed table of the timers one machine uses: one slot per timer, no allocation.
#[derive(Clone, Debug)]
pub(crate) struct TimerTable<const N: usize> {
    slots: [(Timer, Option<Instant>); N],
}

impl<const N: usize> TimerTable<N> {
    /// A table with one disarmed slot per listed timer.
    pub(crate) fn new(timers: [Timer; N]) -> Self {
        Self {
            slots: timers.map(|t| (t, None)),
        }
    }

    fn slot(&mut self, timer: Timer) -> &mut Option<Instant> {
        let slot = self.slots.iter_mut().find(|(t, _)| *t == timer);
        &mut slot
            .expect("invariant: timer table has a slot for every timer its machine arms")
            .1
    }

    /// Arms (or re-arms) `timer` to fire at `at`.
    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        *self.slot(timer) = Some(at);
    }

    /// Disarms `timer`.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        *self.slot(timer) = None;
    }

    /// Disarms every timer.
    pub(crate) fn clear(&mut self) {
        for (_, deadline) in &mut self.slots {
            *deadline = None;
        }
    }

    /// Whether `timer` is armed with a deadline at or before `now`.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.slots
            .iter()
            .any(|(t, d)| *t == timer && d.is_some_and(|d| d <= now))
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|(_, d)| *d).min()
    }

    /// The armed timer with the earliest deadline at or before `now` (ties: table order).
    pub(crate) fn expired(&self, now: Instant) -> Option<Timer> {
        self.slots
            .iter()
            .filter_map(|(t, d)| d.filter(|d| *d <= now).map(|d| (d, *t)))
            .min_by_key(|(d, _)| *d)
            .map(|(_, t)| t)
    }
}

//! Trunk health: out-of-dialog OPTIONS every `probe_interval`; `probe_misses` misses in a row
//! mark the trunk down, one answer brings it back up (Kamailio dispatcher and OpenSIPS
//! behaviour).
//!
//! Any final answer proves the peer alive (a 404 or 405 to OPTIONS comes from a working SIP
//! stack), except 408 and 503: a proxy in front of a dead gateway answers 408, and 503 is a
//! gateway refusing work (RFC 3261 21.5.4). A probe unanswered when the next one is due (at
//! most 32 s, Timer F on UDP) is a miss. A trunk starts up: calls flow from the start, and
//! misses take it down.
//!
//! Sans-IO. Driver contract: after every input call [`Health::handle_timeout`] (true: drop the
//! probe's transaction, it counted as a miss), then [`Health::due`] (true: send a probe now),
//! then re-arm the wake-up from [`Health::poll_timeout`].

use std::time::{Duration, Instant};

use crate::config::model::Probe;

/// The longest a probe waits for an answer (64*T1 with the default T1).
pub const MAX_PROBE_WAIT: Duration = Duration::from_secs(32);

/// One trunk's probe state ([module docs](self) for the driver contract).
#[derive(Debug, Clone)]
pub struct Health {
    probe: Probe,
    up: bool,
    misses: u32,
    next_probe: Instant,
    /// The deadline of the probe in flight.
    in_flight: Option<Instant>,
    last_probe: Option<Instant>,
    last_status: Option<u16>,
}

impl Health {
    /// Probes per `probe`, the first due at `now`; the trunk starts up.
    pub fn new(probe: Probe, now: Instant) -> Health {
        Health {
            probe,
            up: true,
            misses: 0,
            next_probe: now,
            in_flight: None,
            last_probe: None,
            last_status: None,
        }
    }

    /// The probe settings this machine runs with.
    pub fn probe(&self) -> Probe {
        self.probe
    }

    /// Whether a probe goes out now (never a second one while one is in flight).
    pub fn due(&mut self, now: Instant) -> bool {
        if self.in_flight.is_some() || now < self.next_probe {
            return false;
        }
        self.in_flight = Some(now + self.probe.interval.min(MAX_PROBE_WAIT));
        self.next_probe = now + self.probe.interval;
        self.last_probe = Some(now);
        true
    }

    /// A response to the probe in flight (provisional ones are ignored).
    pub fn on_response(&mut self, status: u16) {
        if self.in_flight.is_none() || status < 200 {
            return;
        }
        self.in_flight = None;
        self.last_status = Some(status);
        if matches!(status, 408 | 503) {
            self.miss();
        } else {
            self.misses = 0;
            self.up = true;
        }
    }

    /// The probe's transaction failed (Timer F, or the transport refused the send).
    pub fn on_failure(&mut self) {
        if self.in_flight.take().is_some() {
            self.miss();
        }
    }

    /// Abandons a probe past its deadline as a miss; true when it did (the driver drops the
    /// probe's transaction).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.in_flight {
            Some(deadline) if deadline <= now => {
                self.in_flight = None;
                self.miss();
                true
            }
            _ => false,
        }
    }

    /// The next instant the driver must call in.
    pub fn poll_timeout(&self) -> Instant {
        self.in_flight
            .map_or(self.next_probe, |d| d.min(self.next_probe))
    }

    /// Up, i.e. fewer than `probe_misses` misses in a row since the last answer.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Misses in a row.
    pub fn misses(&self) -> u32 {
        self.misses
    }

    /// When the last probe went out.
    pub fn last_probe(&self) -> Option<Instant> {
        self.last_probe
    }

    /// The last final status received.
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    fn miss(&mut self) {
        self.misses = self.misses.saturating_add(1);
        if self.misses >= self.probe.misses {
            self.up = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn health(misses: u32) -> (Health, Instant) {
        let t0 = crate::test_clock::origin();
        let probe = Probe {
            interval: 200 * MS,
            misses,
        };
        (Health::new(probe, t0), t0)
    }

    #[test]
    fn probes_go_out_every_interval_one_at_a_time() {
        let (mut h, t0) = health(3);
        assert!(h.is_up(), "up before any probe");
        assert!(h.due(t0));
        assert!(!h.due(t0), "one in flight");
        h.on_response(200);
        assert!(!h.due(t0 + 199 * MS));
        assert_eq!(h.poll_timeout(), t0 + 200 * MS);
        assert!(h.due(t0 + 200 * MS));
        assert_eq!(h.last_probe(), Some(t0 + 200 * MS));
    }

    #[test]
    fn consecutive_misses_take_it_down_and_one_answer_brings_it_up() {
        let (mut h, mut now) = health(2);
        for expected_up in [true, false] {
            assert!(h.due(now));
            now += 200 * MS;
            assert!(
                h.handle_timeout(now),
                "unanswered by the next probe: a miss"
            );
            assert_eq!(h.is_up(), expected_up);
        }
        assert_eq!(h.misses(), 2);
        assert!(h.due(now));
        h.on_response(404);
        assert!(h.is_up(), "any final answer proves the peer alive");
        assert_eq!(h.misses(), 0);
    }

    #[test]
    fn an_answer_resets_the_count_between_misses() {
        let (mut h, t0) = health(2);
        h.due(t0);
        h.handle_timeout(t0 + 200 * MS);
        h.due(t0 + 200 * MS);
        h.on_response(200);
        h.due(t0 + 400 * MS);
        h.handle_timeout(t0 + 600 * MS);
        assert!(h.is_up() && h.misses() == 1);
    }

    #[test]
    fn timeout_and_unavailable_answers_count_as_misses() {
        for status in [408, 503] {
            let (mut h, t0) = health(1);
            h.due(t0);
            h.on_response(status);
            assert!(!h.is_up(), "{status}");
            assert_eq!(h.last_status(), Some(status));
        }
    }

    #[test]
    fn provisional_late_and_early_inputs_change_nothing() {
        let (mut h, t0) = health(1);
        h.on_response(200);
        h.on_failure();
        assert!(!h.handle_timeout(t0 + 10 * MS), "nothing in flight");
        h.due(t0);
        h.on_response(100);
        assert!(!h.handle_timeout(t0 + 199 * MS), "before the deadline");
        h.on_failure();
        assert!(!h.is_up(), "a failed transaction is a miss");
    }

    #[test]
    fn a_long_interval_waits_at_most_timer_f_for_an_answer() {
        let t0 = crate::test_clock::origin();
        let probe = Probe {
            interval: Duration::from_secs(120),
            misses: 1,
        };
        let mut h = Health::new(probe, t0);
        h.due(t0);
        assert_eq!(h.poll_timeout(), t0 + MAX_PROBE_WAIT);
        assert!(h.handle_timeout(t0 + MAX_PROBE_WAIT));
    }
}

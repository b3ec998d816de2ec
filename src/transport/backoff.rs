//! Back-off for a failing `accept`. When the process is out of file descriptors (EMFILE,
//! ENFILE) or the kernel out of memory (ENOMEM, ENOBUFS), the pending connection stays in the
//! backlog and every retry fails at once: retrying without a pause spins a core and floods the
//! log. Sans-IO: the accept loop passes the time in and sleeps for what it is told.

use std::time::{Duration, Instant};

/// First pause after a failed accept: short, as a descriptor is often freed within milliseconds.
const FIRST: Duration = Duration::from_millis(10);
/// Longest pause: an exhausted process still notices freed descriptors within a second.
const MAX: Duration = Duration::from_secs(1);
/// At most one warning per this period, however fast accepts fail.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Exponential pause between failed accepts (10 ms doubling to 1 s), reset by a successful one,
/// and a rate limit on the warning about it.
#[derive(Debug)]
pub(super) struct AcceptBackoff {
    next: Duration,
    last_warn: Option<Instant>,
    /// Failures since the last warning.
    unreported: u64,
}

/// What the accept loop does after a failure.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Pause {
    /// Sleep this long before the next accept.
    pub(super) sleep: Duration,
    /// `Some(n)`: log one warning now, for the `n` failures since the previous one.
    pub(super) warn: Option<u64>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            next: FIRST,
            last_warn: None,
            unreported: 0,
        }
    }
}

impl AcceptBackoff {
    /// An accept failed at `now` with a resource error.
    pub(super) fn failed(&mut self, now: Instant) -> Pause {
        let sleep = self.next;
        self.next = (self.next * 2).min(MAX);
        self.unreported += 1;
        let due = self
            .last_warn
            .is_none_or(|last| now.saturating_duration_since(last) >= WARN_EVERY);
        let warn = due.then(|| {
            self.last_warn = Some(now);
            std::mem::take(&mut self.unreported)
        });
        Pause { sleep, warn }
    }

    /// An accept succeeded: the next failure starts the pauses again from the shortest. The
    /// warning rate limit stays, so failures alternating with successes still log once a minute.
    pub(super) fn succeeded(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_from_10ms_to_1s_and_resets_after_a_success() {
        let (mut b, t0) = (AcceptBackoff::default(), Instant::now());
        let sleeps: Vec<u64> = (0..10)
            .map(|_| b.failed(t0).sleep.as_millis() as u64)
            .collect();
        assert_eq!(sleeps, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(t0).sleep, Duration::from_millis(10));
        assert_eq!(b.failed(t0).sleep, Duration::from_millis(20));
    }

    #[test]
    fn accept_backoff_warns_once_per_minute_with_the_failures_since() {
        let (mut b, t0) = (AcceptBackoff::default(), Instant::now());
        assert_eq!(b.failed(t0).warn, Some(1));
        let quiet = (1..=50).filter_map(|s| b.failed(t0 + Duration::from_secs(s)).warn);
        assert_eq!(quiet.count(), 0);
        b.succeeded();
        assert_eq!(b.failed(t0 + Duration::from_secs(59)).warn, None);
        assert_eq!(b.failed(t0 + Duration::from_secs(60)).warn, Some(52));
        assert_eq!(b.failed(t0 + Duration::from_secs(61)).warn, None);
    }
}

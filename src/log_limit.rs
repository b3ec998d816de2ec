//! Rate-limited log lines: what a flood from the network makes us say is capped, so a scanner
//! or a spoofed-source flood cannot fill the disk or drown the lines that matter. Pure: the
//! caller passes the time.

use std::time::{Duration, Instant};

/// Lines allowed per window.
const PER_WINDOW: u32 = 10;
/// The window.
const WINDOW: Duration = Duration::from_secs(1);

/// One category of log line.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Whether a line may be written at `now`; when it may, also how many were suppressed since
    /// the last one written (the line should say so).
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= PER_WINDOW {
            self.suppressed += 1;
            return None;
        }
        self.in_window += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_lines_a_second_then_silence_then_a_count_of_what_was_suppressed() {
        let t0 = crate::test_clock::origin();
        let mut l = LogLimit::default();
        for _ in 0..PER_WINDOW {
            assert_eq!(l.allow(t0), Some(0));
        }
        for _ in 0..25 {
            assert_eq!(l.allow(t0 + Duration::from_millis(500)), None);
        }
        assert_eq!(
            l.allow(t0 + WINDOW),
            Some(25),
            "the next line reports the gap"
        );
        assert_eq!(l.allow(t0 + WINDOW), Some(0));
    }
}

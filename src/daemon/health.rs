//! Liveness of the engine shards: each shard's loop records a heartbeat every time it goes round
//! (it wakes at least every [`MAX_SLEEP`] even when idle), and a shard whose heartbeat is older
//! than [`STALL`] has stopped making progress. `/health` and the systemd watchdog read this, so a
//! wedged shard fails the health check and gets the service restarted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest a shard sleeps between two rounds of its loop.
pub const MAX_SLEEP: Duration = Duration::from_millis(500);

/// A shard that has not gone round its loop for this long is stalled.
pub const STALL: Duration = Duration::from_secs(5);

/// One heartbeat per shard, in milliseconds since `origin`.
pub struct Health {
    origin: Instant,
    beats: Vec<AtomicU64>,
}

impl Health {
    /// Heartbeats for `shards` shards, all fresh at `origin`.
    pub fn new(shards: usize, origin: Instant) -> Self {
        Health {
            origin,
            beats: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Shard `shard` went round its loop at `now`.
    pub fn beat(&self, shard: usize, now: Instant) {
        if let Some(b) = self.beats.get(shard) {
            b.store(self.millis(now), Ordering::Relaxed);
        }
    }

    /// The shards whose last heartbeat is older than [`STALL`] at `now`.
    pub fn stalled(&self, now: Instant) -> Vec<usize> {
        let now = self.millis(now);
        let limit = STALL.as_millis() as u64;
        self.beats
            .iter()
            .enumerate()
            .filter(|(_, b)| now.saturating_sub(b.load(Ordering::Relaxed)) > limit)
            .map(|(i, _)| i)
            .collect()
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_without_heartbeats_is_reported_stalled() {
        let t0 = Instant::now();
        let h = Health::new(2, t0);
        let later = t0 + STALL + Duration::from_secs(1);
        h.beat(0, later);
        assert_eq!(h.stalled(later), vec![1]);
        h.beat(1, later);
        assert!(h.stalled(later).is_empty());
    }
}

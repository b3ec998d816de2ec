//! Call-level timers of one shard (transaction timers live in the transaction layer): one ordered
//! queue with exactly one entry per armed timer, and per call the entries it armed, so ending a
//! call removes them by key instead of scanning the queue.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::b2bua::CallTimer;
use crate::split_map::SplitMap;

/// The queue.
#[derive(Default)]
pub(crate) struct CallTimers {
    queue: BTreeMap<(Instant, u64), (u64, CallTimer)>,
    by_call: SplitMap<u64, Vec<(Instant, u64)>>,
    seq: u64,
}

impl CallTimers {
    /// Wakes `call` with `timer` at `at`.
    pub(crate) fn arm(&mut self, at: Instant, call: u64, timer: CallTimer) {
        self.seq += 1;
        self.queue.insert((at, self.seq), (call, timer));
        match self.by_call.get_mut(&call) {
            Some(slots) => slots.push((at, self.seq)),
            None => {
                self.by_call.insert(call, vec![(at, self.seq)]);
            }
        }
    }

    /// Forgets every timer of `call` (it ended).
    pub(crate) fn cancel_call(&mut self, call: u64) {
        for slot in self.by_call.remove(&call).unwrap_or_default() {
            self.queue.remove(&slot);
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns one timer due at `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(u64, CallTimer)> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let slot = *entry.key();
        let (call, timer) = entry.remove();
        // A fired timer leaves its call's list too: a call re-arms its probe every interval for
        // hours, and stale slots would grow with it.
        if let Some(slots) = self.by_call.get_mut(&call) {
            slots.retain(|s| *s != slot);
            if slots.is_empty() {
                self.by_call.remove(&call);
            }
        }
        Some((call, timer))
    }

    /// Entries in the queue and calls with timers (the leak checks of tests read them).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.queue.len(), self.by_call.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_pop_in_deadline_order_and_die_with_their_call() {
        let t0 = crate::test_clock::origin();
        let mut t = CallTimers::default();
        t.arm(t0 + Duration::from_secs(2), 1, CallTimer::MaxDuration);
        t.arm(t0 + Duration::from_secs(1), 2, CallTimer::NoAck);
        t.arm(t0 + Duration::from_secs(3), 1, CallTimer::NoAck);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(2)),
            Some((2, CallTimer::NoAck))
        );
        t.cancel_call(1);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.sizes(), (0, 0), "a fired timer leaves no slot behind");
        t.cancel_call(2);
        assert_eq!(t.sizes(), (0, 0));
    }
}

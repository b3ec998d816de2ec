//! The nonce-count replay table: per nonce, the highest `nc` a client has used (RFC 7616 section
//! 3.4 `nc` and its replay-attack considerations; RFC 2617 section 3.2.2, `qop=auth`).
//!
//! Nonces are stateless (each carries its expiry and its issue counter under a MAC), so this table
//! is the only per-nonce state. It is a ring of slots indexed by the issue counter: the slot of
//! nonce `c` is `c mod N`, and it holds the highest `nc` accepted with that nonce together with
//! the nonce's generation (`c / N`). Recording is one compare-and-swap, with no allocation, no
//! hashing, no purge and no lock, and memory is fixed (8 bytes a slot) whatever clients send.
//!
//! The price of a fixed size: once `N` newer nonces have been issued, a nonce's slot may belong
//! to another, so it is [`NcVerdict::Overtaken`] and the client is challenged again with
//! `stale=true` (it knows the password; it only needs a fresh nonce). Forgetting a count is never
//! possible: a nonce whose slot was reused is refused, not treated as new. A table that instead
//! refused new nonces once full (this one's first design, a map bounded to 100 000 entries) denied
//! every phone for the rest of the nonce lifetime after a registration storm.

use std::sync::atomic::{AtomicU64, Ordering};

/// The verdict on one `(nonce, nc)` pair of an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcVerdict {
    /// `nc` is above every count seen with this nonce; it is now the highest recorded.
    Fresh,
    /// `nc` is at or below a count already accepted (or is 0, which no client sends): a replay.
    Replay,
    /// So many nonces were issued since this one that its slot may be reused: the client must
    /// retry with a new nonce (`stale=true`).
    Overtaken,
}

/// Highest nonce-count per nonce, for the last `slots` nonces issued.
///
/// Call [`check_and_record`](Self::check_and_record) only after the nonce's MAC and the request's
/// digest `response` verified: the counter is then one callgate issued, answered by a client that
/// knows a password, so a stranger cannot move a slot.
#[derive(Debug)]
pub struct NonceCounts {
    /// `generation << 32 | highest nc`; generation 0 marks a slot no nonce used yet.
    slots: Box<[AtomicU64]>,
}

impl NonceCounts {
    /// A table for the last `slots` nonces (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        NonceCounts {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// How many of the latest nonces the table remembers.
    pub fn window(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Checks `nc` for the nonce of issue counter `counter`, `issued` nonces having been issued in
    /// all so far, and records it when fresh.
    ///
    /// Atomic per nonce: of shards racing with the same `(nonce, nc)`, exactly one gets
    /// [`NcVerdict::Fresh`].
    pub fn check_and_record(&self, counter: u64, nc: u32, issued: u64) -> NcVerdict {
        // nc counts from 1 (RFC 7616 3.4): 0 is never above anything recorded.
        if nc == 0 {
            return NcVerdict::Replay;
        }
        let window = self.window();
        // Nonce `counter + window` (issued once `issued > counter + window`) shares the slot.
        if issued.saturating_sub(counter) > window {
            return NcVerdict::Overtaken;
        }
        let generation = (counter / window).saturating_add(1);
        let slot = &self.slots[(counter % window) as usize];
        let mut current = slot.load(Ordering::Acquire);
        loop {
            let (held, highest) = (current >> 32, current & u64::from(u32::MAX));
            if held > generation {
                return NcVerdict::Overtaken;
            }
            if held == generation && u64::from(nc) <= highest {
                return NcVerdict::Replay;
            }
            // An older generation's count belongs to a nonce that is overtaken: ours replaces it.
            let new = (generation << 32) | u64::from(nc);
            match slot.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return NcVerdict::Fresh,
                Err(seen) => current = seen,
            }
        }
    }
}

//! The nonce-count replay table: per nonce, the highest `nc` a client has used (RFC 7616 section
//! 3.4 `nc` and its replay-attack considerations; RFC 2617 section 3.2.2, `qop=auth`).
//!
//! Nonces are stateless (each carries its own expiry under a MAC), so this table is the only
//! per-nonce state: the highest nonce-count accepted and when the nonce lapses. Shared by every
//! engine shard through a sharded `DashMap`; recording a count is atomic per nonce.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

type Fast = foldhash::fast::RandomState;

/// The verdict on one `(nonce, nc)` pair of an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcVerdict {
    /// `nc` is above every count seen with this nonce; it is now the highest recorded.
    Fresh,
    /// `nc` is at or below a count already accepted (or is 0, which no client sends): a replay.
    Replay,
    /// The nonce has lapsed; the client must retry with a new one (`stale=true`).
    Expired,
    /// The nonce is new and the table holds `max_entries` unexpired nonces: not recorded, the
    /// request is refused.
    TableFull,
}

/// Highest nonce-count per nonce, bounded to `max_entries` nonces.
///
/// Call [`check_and_record`](Self::check_and_record) only after the nonce's MAC and the request's
/// digest `response` verified: every key is then a nonce callgate issued, answered by a client
/// that knows a password, so a stranger cannot fill the table. When the table is full, expired entries are purged
/// first; if none are, a new nonce is refused with [`NcVerdict::TableFull`] rather than evicting
/// an entry: evicting would forget that nonce's highest count, and a captured request carrying it
/// would then be accepted as fresh again until the nonce expires. Refusing costs a retry; evicting
/// costs the replay protection. Memory stays bounded either way, whatever a client sends.
#[derive(Debug)]
pub struct NonceCounts {
    seen: DashMap<NonceKey, Seen, Fast>,
    max_entries: usize,
    /// Entries plus slots reserved by insertions in progress; never above `max_entries`.
    len: AtomicUsize,
    /// No entry expires before this, in nanoseconds after `epoch` (`u64::MAX`: no entry, or a
    /// purge pass is running). While the table is full and `now` is before it, a purge could free
    /// nothing, so a flood of new nonces is refused without a scan each.
    earliest_expiry: AtomicU64,
    /// The first `now` seen: origin of `earliest_expiry` (std has no integer form of `Instant`).
    epoch: OnceLock<Instant>,
}

/// A nonce as issued, the table's key.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NonceKey(Box<str>);

impl Borrow<str> for NonceKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[derive(Debug)]
struct Seen {
    highest_nc: u32,
    expires_at: Instant,
}

impl Seen {
    fn advance(&mut self, nc: u32) -> NcVerdict {
        if nc > self.highest_nc {
            self.highest_nc = nc;
            NcVerdict::Fresh
        } else {
            NcVerdict::Replay
        }
    }
}

impl NonceCounts {
    /// An empty table that remembers at most `max_entries` nonces.
    pub fn new(max_entries: usize) -> Self {
        NonceCounts {
            seen: DashMap::with_hasher(Fast::default()),
            max_entries,
            len: AtomicUsize::new(0),
            earliest_expiry: AtomicU64::new(u64::MAX),
            epoch: OnceLock::new(),
        }
    }

    /// Checks `nc` for `nonce` (which lapses at `nonce_expires_at`) and, when fresh, records it.
    ///
    /// Atomic per nonce: of shards racing with the same `(nonce, nc)`, exactly one gets
    /// [`NcVerdict::Fresh`]. A nonce lapsed at `now` is [`NcVerdict::Expired`] whatever its count.
    pub fn check_and_record(
        &self,
        nonce: &str,
        nc: u32,
        nonce_expires_at: Instant,
        now: Instant,
    ) -> NcVerdict {
        if now >= nonce_expires_at {
            return NcVerdict::Expired;
        }
        // nc counts from 1 (RFC 7616 3.4): 0 is never above anything recorded.
        if nc == 0 {
            return NcVerdict::Replay;
        }
        // A known nonce needs no allocation and no slot.
        if let Some(mut seen) = self.seen.get_mut(nonce) {
            return seen.advance(nc);
        }
        // The slot is taken under the entry's lock: two shards racing with one new nonce are
        // serialized there, so the second finds it recorded instead of taking a second slot
        // (which made a table at its capacity refuse a nonce it had room for).
        for purged in [false, true] {
            match self.seen.entry(NonceKey(nonce.into())) {
                Entry::Occupied(mut entry) => return entry.get_mut().advance(nc),
                Entry::Vacant(entry) if self.try_reserve() => {
                    entry.insert(Seen {
                        highest_nc: nc,
                        expires_at: nonce_expires_at,
                    });
                    let at = self.offset(nonce_expires_at, now);
                    self.earliest_expiry.fetch_min(at, Ordering::AcqRel);
                    return NcVerdict::Fresh;
                }
                // Full. The entry's lock is released here: a purge locks every map shard.
                Entry::Vacant(_) => {}
            }
            if purged || !self.purge_worthwhile(now) {
                break;
            }
            self.purge(now);
        }
        NcVerdict::TableFull
    }

    /// Drops the entries of nonces lapsed at `now`; returns how many.
    pub fn purge(&self, now: Instant) -> usize {
        // Reset the bound first: an insertion racing this pass either lands in a map shard before
        // the pass reaches it (and is counted below) or lowers the bound after this swap.
        self.earliest_expiry.swap(u64::MAX, Ordering::AcqRel);
        let mut purged = 0;
        let mut earliest = u64::MAX;
        self.seen.retain(|_, seen| {
            if now >= seen.expires_at {
                purged += 1;
                return false;
            }
            earliest = earliest.min(self.offset(seen.expires_at, now));
            true
        });
        self.len.fetch_sub(purged, Ordering::Relaxed);
        self.earliest_expiry.fetch_min(earliest, Ordering::AcqRel);
        purged
    }

    /// Nonces recorded (including insertions in progress), at most `max_entries`.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no nonce is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a purge could free a slot: some recorded nonce has lapsed by `now`.
    fn purge_worthwhile(&self, now: Instant) -> bool {
        self.offset(now, now) >= self.earliest_expiry.load(Ordering::Acquire)
    }

    fn try_reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_entries).then_some(n + 1)
            })
            .is_ok()
    }

    /// `at` as nanoseconds after the epoch (set from `now` on first use); instants before the epoch
    /// count as the epoch, which only makes a purge look worthwhile.
    fn offset(&self, at: Instant, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_init(|| now);
        let nanos = at.saturating_duration_since(epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

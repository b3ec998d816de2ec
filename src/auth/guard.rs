//! Brute-force protection: failed digest answers counted per source address and per extension,
//! and the bans they trigger. Shared by every engine shard (sharded `DashMap`s); time is passed in
//! as Unix seconds.
//!
//! Only [`super::AuthOutcome::Failed`] with `counts: true` is recorded here: challenges (no,
//! stale, forged or replayed nonces) never count, so a phone whose nonce lapsed is never banned.
//!
//! Policy:
//! - A source reaching `per_ip` failures within a window is banned for `ban_secs`.
//! - An extension reaching `per_extension` failures within a window (from any number of sources:
//!   a distributed guess) makes each failure on it ban its source at once, the one reaching the
//!   threshold included. The extension itself is never locked: its phone, answering right, keeps
//!   registering while the guessers are banned one by one.
//! - Windows are fixed: `window_secs` from the first failure of the window.
//! - A success of a (source, extension) pair takes that pair's failures of the current windows
//!   off both counters: a phone that mistyped its password once starts clean, but succeeding on
//!   one's own extension does not wash out failures on another. A success does not lift a ban.
//!
//! Does not own dropping a banned source's traffic (the receive path asks [`Guard::is_banned`])
//! nor the admin API over [`Guard::bans`] / [`Guard::unban`].

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

type Fast = foldhash::fast::RandomState;

/// Longest extension name kept as a key: a username comes from the network, and a table of
/// `max_entries` kilobyte-long names would defeat the bound. Longer ones are cut (on a character
/// boundary); they are no real extension anyway.
const MAX_EXTENSION_KEY: usize = 64;

/// Thresholds and bounds of a [`Guard`]. A threshold of 0 turns that rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Failures from one source address within a window that ban it.
    pub per_ip: u32,
    /// Failures on one extension within a window after which every failing source is banned.
    pub per_extension: u32,
    /// Length of a counting window, seconds.
    pub window_secs: u64,
    /// Length of a ban, seconds.
    pub ban_secs: u64,
    /// Most entries of each table (sources, extensions, pairs, bans).
    pub max_entries: usize,
}

impl Default for GuardConfig {
    fn default() -> GuardConfig {
        GuardConfig {
            per_ip: 10,
            per_extension: 20,
            window_secs: 60,
            ban_secs: 600,
            max_entries: 100_000,
        }
    }
}

/// A banned source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The banned address.
    pub ip: IpAddr,
    /// When the ban lapses, seconds since the Unix epoch.
    pub until_unix: u64,
    /// Which rule banned it.
    pub reason: BanReason,
}

/// The rule behind a [`Ban`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanReason {
    /// `per_ip` failures from the address within a window.
    SourceFailures,
    /// A failure on an extension that had `per_extension` failures within a window.
    ExtensionFailures {
        /// The extension under attack (cut to 64 bytes).
        extension: String,
    },
}

/// Failures in one fixed window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_unix: u64,
    failures: u32,
}

impl Window {
    /// Whether the window is over at `now` (or began in the future: the wall clock stepped back).
    fn lapsed(&self, now: u64, window_secs: u64) -> bool {
        now >= self.start_unix.saturating_add(window_secs) || now < self.start_unix
    }

    /// Counts one failure at `now`, opening a new window if this one is over.
    fn bump(&mut self, now: u64, window_secs: u64) -> u32 {
        if self.lapsed(now, window_secs) {
            *self = Window {
                start_unix: now,
                failures: 0,
            };
        }
        self.failures = self.failures.saturating_add(1);
        self.failures
    }

    /// Takes off the `pair` failures this window counted. A pair window opened before this one
    /// holds failures this one never counted; none are taken then.
    fn forgive(&mut self, pair: &Window) {
        if pair.start_unix >= self.start_unix {
            self.failures = self.failures.saturating_sub(pair.failures);
        }
    }
}

#[derive(Debug)]
struct Banned {
    until_unix: u64,
    reason: BanReason,
}

/// Failure counters and bans, shared by every shard (`&Guard` is `Sync`).
///
/// Memory: each table holds at most `max_entries` (plus, under races, one per concurrent caller).
/// A new key arriving at a full table first triggers a purge of lapsed entries (at most once a
/// second); if that frees nothing, a new counter is not tracked (refused, not evicting: evicting
/// would let a flood of fresh sources erase a guesser's count), and a new ban evicts the ban that
/// ends first. Under a flood of more distinct sources than `max_entries` within one window,
/// untracked sources are still banned by the per-extension rule once the extension is tracked.
#[derive(Debug)]
pub struct Guard {
    config: GuardConfig,
    by_ip: DashMap<IpAddr, Window, Fast>,
    by_extension: DashMap<Box<str>, Window, Fast>,
    by_pair: DashMap<(IpAddr, Box<str>), Window, Fast>,
    bans: DashMap<IpAddr, Banned, Fast>,
    /// The `now_unix` of the last purge run for a full table.
    last_purge_unix: AtomicU64,
}

impl Guard {
    /// An empty guard with `config`'s thresholds.
    pub fn new(config: GuardConfig) -> Guard {
        Guard {
            config,
            by_ip: DashMap::with_hasher(Fast::default()),
            by_extension: DashMap::with_hasher(Fast::default()),
            by_pair: DashMap::with_hasher(Fast::default()),
            bans: DashMap::with_hasher(Fast::default()),
            last_purge_unix: AtomicU64::new(u64::MAX),
        }
    }

    /// The thresholds in force.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Whether `ip` is banned at `now_unix`. A lapsed ban found here is dropped.
    pub fn is_banned(&self, ip: IpAddr, now_unix: u64) -> bool {
        let lapsed = match self.bans.get(&ip) {
            None => return false,
            Some(ban) => now_unix >= ban.until_unix,
        };
        if lapsed {
            self.bans
                .remove_if(&ip, |_, ban| now_unix >= ban.until_unix);
        }
        !lapsed
    }

    /// Counts a failed answer from `ip` for `extension`; returns the ban it triggers, if any. A
    /// source already banned is not counted again (its requests should not have got this far).
    pub fn record_failure(&self, ip: IpAddr, extension: &str, now_unix: u64) -> Option<Ban> {
        if self.is_banned(ip, now_unix) {
            return None;
        }
        let extension = extension_key(extension);
        let on_extension = self.bump(&self.by_extension, extension.into(), now_unix);
        self.bump(&self.by_pair, (ip, extension.into()), now_unix);
        let from_ip = self.bump(&self.by_ip, ip, now_unix);
        let reached = |failures: Option<u32>, threshold: u32| {
            threshold > 0 && failures.is_some_and(|f| f >= threshold)
        };
        let reason = if reached(from_ip, self.config.per_ip) {
            BanReason::SourceFailures
        } else if reached(on_extension, self.config.per_extension) {
            BanReason::ExtensionFailures {
                extension: extension.to_owned(),
            }
        } else {
            return None;
        };
        Some(self.ban(ip, reason, now_unix))
    }

    /// A right answer from `ip` for `extension`: forgets that pair's failures (see the module
    /// doc). Cheap when there is nothing to forget, the usual case.
    pub fn record_success(&self, ip: IpAddr, extension: &str) {
        let extension = extension_key(extension);
        if !self.by_ip.contains_key(&ip) && !self.by_extension.contains_key(extension) {
            return;
        }
        let Some((_, pair)) = self.by_pair.remove(&(ip, Box::from(extension))) else {
            return;
        };
        if let Some(mut w) = self.by_ip.get_mut(&ip) {
            w.forgive(&pair);
        }
        if let Some(mut w) = self.by_extension.get_mut(extension) {
            w.forgive(&pair);
        }
    }

    /// The bans in force at `now_unix`, soonest to end first.
    pub fn bans(&self, now_unix: u64) -> Vec<Ban> {
        let mut bans: Vec<Ban> = self
            .bans
            .iter()
            .filter(|b| now_unix < b.until_unix)
            .map(|b| Ban {
                ip: *b.key(),
                until_unix: b.until_unix,
                reason: b.reason.clone(),
            })
            .collect();
        bans.sort_by_key(|b| (b.until_unix, b.ip));
        bans
    }

    /// Lifts the ban of `ip` and clears its count; whether it was banned.
    pub fn unban(&self, ip: IpAddr) -> bool {
        self.by_ip.remove(&ip);
        self.bans.remove(&ip).is_some()
    }

    /// Drops lapsed windows and bans; the daemon may call it periodically, and a full table calls
    /// it itself.
    pub fn purge(&self, now_unix: u64) {
        let window = self.config.window_secs;
        self.by_ip.retain(|_, w| !w.lapsed(now_unix, window));
        self.by_extension.retain(|_, w| !w.lapsed(now_unix, window));
        self.by_pair.retain(|_, w| !w.lapsed(now_unix, window));
        self.bans.retain(|_, b| now_unix < b.until_unix);
    }

    /// Counts a failure under `key`; `None` when the table is full and `key` is not tracked.
    fn bump<K: Eq + Hash>(&self, map: &DashMap<K, Window, Fast>, key: K, now: u64) -> Option<u32> {
        let window = self.config.window_secs;
        if let Some(mut w) = map.get_mut(&key) {
            return Some(w.bump(now, window));
        }
        if !self.has_room(map, now) {
            return None;
        }
        let mut w = map.entry(key).or_insert(Window {
            start_unix: now,
            failures: 0,
        });
        Some(w.bump(now, window))
    }

    /// Whether `map` can take a new entry, purging lapsed ones first if it is full.
    fn has_room<K: Eq + Hash, V>(&self, map: &DashMap<K, V, Fast>, now: u64) -> bool {
        if map.len() < self.config.max_entries {
            return true;
        }
        // One purge per second at most: a flood at a full table must not buy a scan per packet.
        if self.last_purge_unix.swap(now, Ordering::Relaxed) != now {
            self.purge(now);
        }
        map.len() < self.config.max_entries
    }

    fn ban(&self, ip: IpAddr, reason: BanReason, now: u64) -> Ban {
        let until_unix = now.saturating_add(self.config.ban_secs);
        if !self.bans.contains_key(&ip) && !self.has_room(&self.bans, now) {
            let first_to_end = self
                .bans
                .iter()
                .min_by_key(|b| b.until_unix)
                .map(|b| *b.key());
            if let Some(victim) = first_to_end {
                self.bans.remove(&victim);
            }
        }
        self.bans.insert(
            ip,
            Banned {
                until_unix,
                reason: reason.clone(),
            },
        );
        // The ban answers these failures; after it the source starts from zero.
        self.by_ip.remove(&ip);
        Ban {
            ip,
            until_unix,
            reason,
        }
    }
}

/// `extension` cut to [`MAX_EXTENSION_KEY`] bytes on a character boundary.
fn extension_key(extension: &str) -> &str {
    let mut end = extension.len().min(MAX_EXTENSION_KEY);
    while !extension.is_char_boundary(end) {
        end -= 1;
    }
    &extension[..end]
}

#[cfg(test)]
mod tests;

//! The location service's bindings (RFC 3261 section 10.3): per address-of-record, the contacts a
//! user agent registered, with the flow each arrived on and when each expires.
//!
//! Shared by every engine shard. The map is a sharded `DashMap`: an operation on one AoR locks only
//! that AoR's map shard, for as long as it takes to edit a list of at most `max_contacts` bindings;
//! whole-store passes (`expire`, `remove_flow`, `snapshot`) lock one map shard at a time. The
//! hasher is keyed at random because AoRs come from the network.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::config::model::Transport;

type Fast = foldhash::fast::RandomState;

/// An address-of-record: an extension number scoped by its organization, `user@domain`.
///
/// The organization's domain is lower-cased (host names compare case-insensitively, RFC 3261
/// 19.1.4); the user part is kept as given, since SIP user parts are case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor(String);

impl Aor {
    /// The AoR of extension `user` in the organization whose SIP domain is `org`.
    pub fn new(org: &str, user: &str) -> Self {
        let mut aor = String::with_capacity(user.len() + 1 + org.len());
        aor.push_str(user);
        aor.push('@');
        aor.extend(org.chars().map(|c| c.to_ascii_lowercase()));
        Aor(aor)
    }

    /// The AoR under which the gateway of `accept-register` trunk `trunk` (its name) is bound:
    /// `trunk@trunk.invalid`. `.invalid` never names a real host (RFC 6761 6.4), so no
    /// organization's phones share it, and the form survives the state file like a phone's.
    pub fn trunk(trunk: &str) -> Self {
        Aor::new(TRUNK_DOMAIN, trunk)
    }

    /// The trunk name of an AoR made by [`Aor::trunk`], `None` for an extension's.
    pub fn trunk_name(&self) -> Option<&str> {
        self.0
            .strip_suffix(TRUNK_DOMAIN)
            .and_then(|rest| rest.strip_suffix('@'))
    }

    /// The AoR as `user@domain`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The domain of trunks' AoRs ([`Aor::trunk`]).
const TRUNK_DOMAIN: &str = "trunk.invalid";

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The connection or socket pair a REGISTER arrived on: where requests for the binding go back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Transport the REGISTER came over.
    pub transport: Transport,
    /// The user agent's address as seen by callgate (after NAT).
    pub source: SocketAddr,
    /// Callgate's local address that received it, when the listener is bound to several.
    pub local: Option<SocketAddr>,
}

/// One contact registered for an AoR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI, in the canonical form the REGISTER handler produces; two bindings are the
    /// same contact when these strings are equal (the handler applies RFC 3261 19.1.4).
    pub contact: String,
    /// Where the REGISTER came from.
    pub flow: Flow,
    /// When the binding lapses; a binding is live while `now < expires_at`.
    pub expires_at: Instant,
    /// When a REGISTER last wrote the binding (a refresh sets it anew).
    pub registered_at: Instant,
    /// Call-ID of that REGISTER.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// The Contact's q-value times 1000 (`q=0.5` is `Some(500)`), when it had one.
    pub q: Option<u16>,
}

impl Binding {
    fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// What [`LocationStore::upsert`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// The contact was not bound and now is. `evicted` holds the bindings pushed out to stay within
    /// `max_contacts` (soonest-expiring first; more than one only after `max_contacts` was lowered).
    Added {
        /// Bindings removed to make room.
        evicted: Vec<Binding>,
    },
    /// The contact was bound; the new binding replaced `previous` (a refresh, or a new Call-ID).
    Replaced {
        /// The binding before this REGISTER.
        previous: Binding,
    },
    /// The binding was already expired at `now` (`Expires: 0`): the contact's binding, if it had
    /// one, is removed.
    Removed {
        /// The binding removed, `None` when the contact was not bound.
        previous: Option<Binding>,
    },
}

/// Why a binding update was refused; the REGISTER fails and no binding of the AoR changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The request has the Call-ID of a stored binding but not a higher CSeq (RFC 3261 10.3 steps 6
    /// and 7): a retransmission or a reordered REGISTER.
    #[error("REGISTER CSeq {cseq} is not above the stored {stored_cseq} for the same Call-ID")]
    OutOfOrder {
        /// CSeq number of the stored binding.
        stored_cseq: u32,
        /// CSeq number of the request.
        cseq: u32,
    },
    /// `max_contacts` is 0: the AoR may not register any contact.
    #[error("no contacts may be registered for this address-of-record")]
    NoContactsAllowed,
}

/// Bindings per AoR, shared by all engine shards without a global lock.
///
/// Time is passed in; the store never reads the clock. Expired bindings are invisible to
/// [`lookup`](Self::lookup) and [`snapshot`](Self::snapshot) at once and are freed by the next
/// [`expire`](Self::expire) sweep, which the daemon runs periodically. Each AoR's list is kept most
/// recently registered first.
#[derive(Debug)]
pub struct LocationStore {
    bindings: DashMap<Aor, Vec<Binding>, Fast>,
}

impl Default for LocationStore {
    fn default() -> Self {
        Self::new()
    }
}

impl LocationStore {
    /// An empty store.
    pub fn new() -> Self {
        LocationStore {
            bindings: DashMap::with_hasher(Fast::default()),
        }
    }

    /// Adds, refreshes or (when `binding` is already expired at `now`, i.e. `Expires: 0`) removes
    /// the binding of `binding.contact`, following RFC 3261 10.3 step 7.
    ///
    /// A stored binding with the same contact is replaced unless it has the same Call-ID and a CSeq
    /// at or above `binding.cseq` ([`BindingError::OutOfOrder`]). A new contact when the AoR already
    /// holds `max_contacts` live bindings evicts the one that expires soonest (the oldest
    /// registration on a tie): a phone that moved to a new address re-registers before its old
    /// binding lapses, and that stale binding is the one to go, whereas refusing would lock the
    /// phone out until it does.
    ///
    /// Each call is atomic for its AoR. A REGISTER with several Contacts calls it once per
    /// contact, so RFC 3261's all-or-nothing commit across contacts is not provided here.
    pub fn upsert(
        &self,
        aor: Aor,
        binding: Binding,
        max_contacts: usize,
        now: Instant,
    ) -> Result<UpsertOutcome, BindingError> {
        match self.bindings.entry(aor) {
            Entry::Occupied(mut entry) => {
                let outcome = apply(entry.get_mut(), binding, max_contacts, now);
                if entry.get().is_empty() {
                    entry.remove();
                }
                outcome
            }
            Entry::Vacant(entry) => {
                let mut list = Vec::new();
                let outcome = apply(&mut list, binding, max_contacts, now)?;
                if !list.is_empty() {
                    entry.insert(list);
                }
                Ok(outcome)
            }
        }
    }

    /// Removes the binding of `contact` regardless of Call-ID and CSeq (an administrative removal);
    /// returns it, if there was one.
    pub fn remove(&self, aor: &Aor, contact: &str) -> Option<Binding> {
        let mut removed = None;
        self.bindings.remove_if_mut(aor, |_, list| {
            if let Some(i) = list.iter().position(|b| b.contact == contact) {
                removed = Some(list.remove(i));
            }
            list.is_empty()
        });
        removed
    }

    /// `Contact: *` with `Expires: 0` (RFC 3261 10.3 step 6): removes every binding of `aor`,
    /// unless one has this Call-ID with a CSeq at or above `cseq`, in which case nothing is removed.
    /// Returns how many bindings were removed.
    pub fn remove_all(&self, aor: &Aor, call_id: &str, cseq: u32) -> Result<usize, BindingError> {
        let mut outcome = Ok(0);
        self.bindings.remove_if_mut(aor, |_, list| {
            if let Some(b) = list.iter().find(|b| b.call_id == call_id && b.cseq >= cseq) {
                outcome = Err(BindingError::OutOfOrder {
                    stored_cseq: b.cseq,
                    cseq,
                });
                return false;
            }
            outcome = Ok(list.len());
            true
        });
        outcome
    }

    /// The live bindings of `aor`, most recent registration first.
    pub fn lookup(&self, aor: &Aor, now: Instant) -> Vec<Binding> {
        match self.bindings.get(aor) {
            Some(list) => list.iter().filter(|b| b.is_live(now)).cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Whether `aor` has a live binding for which `matches` holds, without copying any binding
    /// (the lookup an INVITE's caller identification makes per `accept-register` trunk).
    pub fn any_live(&self, aor: &Aor, now: Instant, matches: impl Fn(&Binding) -> bool) -> bool {
        self.bindings
            .get(aor)
            .is_some_and(|list| list.iter().any(|b| b.is_live(now) && matches(b)))
    }

    /// The most recently registered live binding of `aor`, if any (where a call to it goes).
    pub fn latest(&self, aor: &Aor, now: Instant) -> Option<Binding> {
        let list = self.bindings.get(aor)?;
        list.iter().find(|b| b.is_live(now)).cloned()
    }

    /// Drops every binding expired at `now`, and AoRs left without bindings. Returns how many
    /// bindings were dropped.
    pub fn expire(&self, now: Instant) -> usize {
        self.retain_bindings(|b| b.is_live(now))
    }

    /// Drops every binding that arrived over `transport` from `source`: the connection closed, so
    /// nothing can reach those contacts any more (the reasoning of RFC 5626 flows). Returns how many.
    ///
    /// A full pass over the store (one map shard locked at a time); fine at a connection close,
    /// not for a per-message path.
    pub fn remove_flow(
        &self,
        transport: Transport,
        source: SocketAddr,
        closed_at: Instant,
    ) -> usize {
        // A binding registered after the close came over a new connection from the same address
        // (a port-preserving NAT): it stays.
        self.retain_bindings(|b| {
            !(b.flow.transport == transport
                && b.flow.source == source
                && b.registered_at <= closed_at)
        })
    }

    /// Bindings stored, including expired ones the next [`expire`](Self::expire) will drop.
    pub fn len(&self) -> usize {
        self.bindings.iter().map(|list| list.len()).sum()
    }

    /// Whether no binding is stored.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Every live binding, ordered by AoR, then most recent registration first (admin API).
    pub fn snapshot(&self, now: Instant) -> Vec<(Aor, Binding)> {
        let mut all: Vec<(Aor, Binding)> = Vec::new();
        for list in self.bindings.iter() {
            let live = list.value().iter().filter(|b| b.is_live(now));
            all.extend(live.map(|b| (list.key().clone(), b.clone())));
        }
        // Stable: keeps each AoR's recency order.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn retain_bindings(&self, mut keep: impl FnMut(&Binding) -> bool) -> usize {
        let mut dropped = 0;
        self.bindings.retain(|_, list| {
            let before = list.len();
            list.retain(&mut keep);
            dropped += before - list.len();
            !list.is_empty()
        });
        dropped
    }
}

/// RFC 3261 10.3 step 7 for one contact, on one AoR's list (under that AoR's lock).
fn apply(
    list: &mut Vec<Binding>,
    binding: Binding,
    max_contacts: usize,
    now: Instant,
) -> Result<UpsertOutcome, BindingError> {
    // An expired binding no longer exists: it neither counts towards the limit nor orders CSeqs.
    list.retain(|b| b.is_live(now));
    let existing = list.iter().position(|b| b.contact == binding.contact);
    if let Some(i) = existing {
        let stored = &list[i];
        if stored.call_id == binding.call_id && binding.cseq <= stored.cseq {
            return Err(BindingError::OutOfOrder {
                stored_cseq: stored.cseq,
                cseq: binding.cseq,
            });
        }
    }
    if !binding.is_live(now) {
        let previous = existing.map(|i| list.remove(i));
        return Ok(UpsertOutcome::Removed { previous });
    }
    let outcome = match existing {
        Some(i) => UpsertOutcome::Replaced {
            previous: list.remove(i),
        },
        None => {
            if max_contacts == 0 {
                return Err(BindingError::NoContactsAllowed);
            }
            let mut evicted = Vec::new();
            while list.len() >= max_contacts {
                let soonest = (0..list.len())
                    .min_by_key(|&i| (list[i].expires_at, list[i].registered_at))
                    .expect("list holds at least max_contacts >= 1 bindings");
                evicted.push(list.remove(soonest));
            }
            UpsertOutcome::Added { evicted }
        }
    };
    let at = list.partition_point(|b| b.registered_at > binding.registered_at);
    list.insert(at, binding);
    Ok(outcome)
}

//! The back-to-back user agent, sans-IO: a call is two independent dialogs (leg A towards the
//! caller, leg B towards the callee) bridged by callgate, admitted through the limiter before leg
//! B exists, and released on every way it can end.
//!
//! Owns: call and leg state, what crosses from one leg to the other (bodies byte-exact; Via,
//! Route, Record-Route, Contact, Call-ID, tags and credentials never cross), the mapping of SIP
//! failures and limiter refusals to responses, and every teardown path. Does not own: sockets,
//! retransmission of requests (the transaction layer) or the clock (time is passed in).
//!
//! Inputs arrive from the driver as method calls on [`B2bua`]; outputs are [`Out`] values the
//! driver executes in order (respond on a server transaction, start a client transaction, send
//! an ACK, arm a call timer, account a finished call).

mod call;
mod dialog;
mod leg;
mod setup;
mod teardown;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::limits::{Limiter, Refusal};
use crate::sip::ids::Ids;
use crate::split_map::SplitMap;
use crate::transaction::TransactionKey;

pub use call::{Call, CallState, Outcome};
pub use leg::{Dest, Leg, Side};

/// Something the driver must do, in order.
#[derive(Debug)]
pub enum Out {
    /// Send `bytes` as the response `status` on server transaction `key`.
    Respond {
        /// Server transaction.
        key: TransactionKey,
        /// Status code.
        status: u16,
        /// The response.
        bytes: Bytes,
    },
    /// Start a client INVITE transaction.
    StartInvite {
        /// Its key.
        key: TransactionKey,
        /// Where it goes.
        dest: Dest,
        /// The request, parsed once where it was built (its bytes are what is sent; the driver
        /// keeps it to build the ACK of a non-2xx final).
        request: Box<crate::sip::Request>,
    },
    /// Start a client non-INVITE transaction (BYE, CANCEL, relayed in-dialog requests).
    StartNonInvite {
        /// Its key.
        key: TransactionKey,
        /// Where it goes.
        dest: Dest,
        /// The request.
        bytes: Bytes,
    },
    /// Send outside any transaction (ACK for a 2xx, a 2xx retransmission).
    Send {
        /// Where it goes.
        dest: Dest,
        /// The message.
        bytes: Bytes,
    },
    /// Wake the call at `at` with `timer`.
    Arm {
        /// When.
        at: Instant,
        /// Which call.
        call: u64,
        /// What for.
        timer: CallTimer,
    },
    /// A call was admitted and its B leg started.
    Started {
        /// Which call.
        call: u64,
    },
    /// A call ended; its permit is already released.
    Ended {
        /// Which call.
        call: u64,
        /// How.
        outcome: Outcome,
    },
    /// An INVITE was refused by the limiter (no leg created).
    Rejected(Refusal),
}

/// Call-level timers (transaction timers live in the transaction layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallTimer {
    /// Retransmit our 2xx to A until its ACK (RFC 3261 13.3.1.4).
    RetransmitOk,
    /// No ACK for our 2xx within 64*T1: end the call (BYE both).
    NoAck,
    /// `max_call_duration` reached: BYE both legs.
    MaxDuration,
    /// RFC 4028: no session refresh before the session expired: BYE both legs.
    SessionExpiry,
    /// No final answer from B in time (a B2BUA's Timer C): 480 to A, CANCEL to B.
    RingTimeout,
    /// No final response to our CANCEL within 64*T1: the call is dropped (RFC 3261 9.1).
    CancelGiveUp,
}

/// Addresses callgate writes in Via and Contact, per transport.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// `host:port` for UDP, when a UDP listener exists.
    pub udp: Option<String>,
    /// `host:port` for TCP, when a TCP listener exists.
    pub tcp: Option<String>,
}

impl Local {
    fn sent_by(&self, t: crate::config::model::Transport) -> &str {
        use crate::config::model::Transport;
        let pick = match t {
            Transport::Udp => self.udp.as_ref().or(self.tcp.as_ref()),
            Transport::Tcp => self.tcp.as_ref().or(self.udp.as_ref()),
        };
        pick.map_or("127.0.0.1", String::as_str)
    }

    fn contact(&self, t: crate::config::model::Transport) -> String {
        use crate::config::model::Transport;
        match t {
            Transport::Udp => format!("<sip:callgate@{}>", self.sent_by(t)),
            Transport::Tcp => format!("<sip:callgate@{};transport=tcp>", self.sent_by(t)),
        }
    }
}

/// Settings the call logic needs besides the configuration snapshot.
#[derive(Debug, Clone)]
pub struct Settings {
    /// RFC 3261 T1 (2xx retransmission start, 64*T1 no-ACK limit).
    pub t1: Duration,
    /// RFC 3261 T2 (2xx retransmission cap).
    pub t2: Duration,
    /// Our addresses.
    pub local: Local,
    /// Node name, part of generated Call-IDs.
    pub node: String,
    /// How long B may ring without a final answer (RFC 3261 Timer C is at least 3 minutes).
    pub ring_timeout: Duration,
}

/// What a client transaction of ours is for.
#[derive(Debug, Clone)]
enum ClientRole {
    /// The B leg's initial INVITE.
    Invite,
    /// A request relayed from the other leg; its response goes back to `origin`.
    Relay {
        origin: TransactionKey,
        origin_req: Box<crate::sip::Request>,
        is_invite: bool,
    },
    /// A BYE or CANCEL we sent while ending the call; its response is ignored.
    Teardown,
}

/// All calls of one driver, with the indexes that route messages to them.
pub struct B2bua {
    limiter: Arc<Limiter>,
    settings: Settings,
    calls: SplitMap<u64, Box<Call>>,
    /// Leg Call-ID -> (call, side).
    by_call_id: SplitMap<String, (u64, Side)>,
    /// Our client transactions -> (call, role).
    by_client: SplitMap<TransactionKey, (u64, ClientRole)>,
    /// A-leg INVITE server transactions -> call (CANCEL and Timer H matching).
    by_a_invite: SplitMap<TransactionKey, u64>,
    /// Calls started by this shard; a call's id is this counter with the shard in its low byte.
    next_id: u64,
    /// Tags, branches and B-leg Call-IDs: CSPRNG bits plus this shard's marker.
    ids: Ids,
    draining: bool,
}

impl B2bua {
    /// An empty call table admitting through `limiter`.
    pub fn new(limiter: Arc<Limiter>, settings: Settings, ids: Ids) -> Self {
        B2bua {
            limiter,
            settings,
            calls: SplitMap::default(),
            by_call_id: SplitMap::default(),
            by_client: SplitMap::default(),
            by_a_invite: SplitMap::default(),
            next_id: 0,
            ids,
            draining: false,
        }
    }

    /// Number of calls in progress.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call is in progress.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Calls in progress (for the admin API).
    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.values().map(|c| &**c)
    }

    /// The peer addresses of every leg (for transport-failure lookups in tests).
    pub fn legs_at(&self, peer: SocketAddr) -> Vec<u64> {
        self.calls
            .values()
            .filter(|c| c.a.dest.addr == peer || c.b.dest.addr == peer)
            .map(|c| c.id)
            .collect()
    }

    fn tag(&mut self) -> String {
        self.ids.tag()
    }

    fn branch(&mut self) -> String {
        self.ids.branch()
    }

    /// A new call number: unique across shards (the limiter's call key, the admin API's id), the
    /// shard in its low byte so an operator command finds the call's shard.
    fn next_call_number(&mut self) -> u64 {
        self.next_id += 1;
        (self.next_id << 8) | u64::from(self.ids.shard())
    }
}

/// The shard that owns call number `id` (see [`B2bua`]'s numbering).
pub fn shard_of_call(id: u64) -> usize {
    (id & 0xff) as usize
}

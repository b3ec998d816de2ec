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

mod admission;
mod call;
mod dialog;
mod fork;
mod leg;
mod setup;
mod teardown;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_admission;
#[cfg(test)]
mod tests_edge;
#[cfg(test)]
mod tests_fork;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::limits::{Limiter, Refusal};
use crate::sip::ids::Ids;
use crate::split_map::SplitMap;
use crate::transaction::TransactionKey;

pub use admission::{AdmitPart, AdmitRequest, PartAnswer};
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
    /// An INVITE was refused before any leg: by the limiter (the full counter), or with `None`
    /// because the shared counter backend could not answer.
    Rejected(Option<Refusal>),
    /// Ask the shared counter backend; answer with [`B2bua::on_admitted`].
    Admit(AdmitRequest),
    /// A call detail record: the call ended (or was refused) now; the engine sets its end time.
    Record(Box<crate::cdr::CallRecord>),
    /// A call's leg starts (`held`) or stops using the TCP flow to `peer`: a flow that carries
    /// dialogs is not closed for being idle (a held call is silent for hours).
    Flow {
        /// The peer.
        peer: SocketAddr,
        /// Taken (true) or given back (false).
        held: bool,
    },
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
    /// Probe both legs of an answered call with an in-dialog OPTIONS (a far end that vanished
    /// without a BYE must not hold units for ever).
    Probe,
    /// Retransmit our 2xx to a relayed re-INVITE until its ACK.
    RetransmitReinviteOk,
    /// Probe the legs of a call whose connection closed (staggered after a close).
    CloseProbe,
}

/// Addresses callgate writes in Via and Contact, per transport.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// `host:port` for UDP, when a UDP listener exists.
    pub udp: Option<String>,
    /// `host:port` for TCP, when a TCP listener exists.
    pub tcp: Option<String>,
    /// `host:port` for TLS, when a TLS listener exists.
    pub tls: Option<String>,
}

impl Local {
    fn sent_by(&self, t: crate::config::model::Transport) -> &str {
        use crate::config::model::Transport;
        let pick = match t {
            Transport::Udp => self.udp.as_ref().or(self.tcp.as_ref()),
            Transport::Tcp => self.tcp.as_ref().or(self.udp.as_ref()),
            // A TLS leg only exists over a connection a TLS listener accepted.
            Transport::Tls => self.tls.as_ref().or(self.tcp.as_ref()),
        };
        pick.map_or("127.0.0.1", String::as_str)
    }

    fn contact(&self, t: crate::config::model::Transport) -> String {
        use crate::config::model::Transport;
        match t {
            Transport::Udp => format!("<sip:callgate@{}>", self.sent_by(t)),
            Transport::Tcp => format!("<sip:callgate@{};transport=tcp>", self.sent_by(t)),
            Transport::Tls => format!("<sip:callgate@{};transport=tls>", self.sent_by(t)),
        }
    }

    /// Our Contact on `leg`: a `sips:` URI when the peer's target is one (RFC 3261 8.1.1.8: a
    /// request to a `sips:` URI carries a `sips:` Contact, and a phone that asked for `sips:`
    /// expects its requests back to one), else the leg's transport's.
    fn contact_of(&self, leg: &Leg) -> String {
        use crate::config::model::Transport;
        let t = leg.dest.transport;
        if t == Transport::Tls && is_sips(&leg.remote_target) {
            return format!("<sips:callgate@{}>", self.sent_by(t));
        }
        self.contact(t)
    }
}

/// Whether `uri` has the `sips` scheme (any case, RFC 3261 19.1.4).
fn is_sips(uri: &str) -> bool {
    uri.get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
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
    /// A callee leg's initial INVITE.
    Invite {
        /// The leg's number within its call.
        leg: u8,
    },
    /// A request relayed from the other leg; its response goes back to `origin`.
    Relay {
        origin: TransactionKey,
        origin_req: Box<crate::sip::Request>,
        is_invite: bool,
    },
    /// A BYE or CANCEL we sent while ending the call; its response is ignored.
    Teardown,
    /// An in-dialog OPTIONS towards one leg: 408, 481 or no answer means that leg is gone. A
    /// probe whose send failed (its connection lost) is sent once more, over a new connection.
    Probe {
        /// The leg.
        side: Side,
        /// This is the second attempt.
        retry: bool,
    },
    /// A relayed re-INVITE the far side answered with 2xx, which we ACKed: a retransmission of
    /// that 2xx (our ACK was lost) is ACKed again until the transaction ends (Timer M).
    ReinviteAcked {
        /// Our ACK.
        ack: Bytes,
        /// Where it goes.
        dest: Dest,
    },
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
    /// TCP peer -> calls with a leg over it (a closed connection finds its calls without a scan).
    by_peer: SplitMap<SocketAddr, std::collections::HashSet<u64, foldhash::fast::RandomState>>,
    /// Calls started by this shard; a call's id is this counter with the shard in its low byte.
    next_id: u64,
    /// Tags, branches and B-leg Call-IDs: CSPRNG bits plus this shard's marker.
    ids: Ids,
    /// Registered phones' bindings (shared by every shard): where a call to a phone goes.
    location: Arc<crate::registrar::LocationStore>,
    /// Whether trunks may carry calls (health probes, registration); shared by every shard.
    trunks: Arc<dyn crate::routing::plan::TrunkAvailability>,
    /// Call detail records are kept (`[server] cdr_file`).
    records: bool,
    draining: bool,
    /// Admissions the shared counter backend has not answered (see `admission.rs`).
    waiting: std::collections::HashMap<u64, admission::Waiting, foldhash::fast::RandomState>,
    /// The caller's INVITE transaction of each call waiting for its admission (its CANCEL).
    waiting_by_invite: std::collections::HashMap<TransactionKey, u64, foldhash::fast::RandomState>,
    /// The caller's Call-ID of each call waiting for its admission.
    waiting_call_ids: std::collections::HashMap<String, u64, foldhash::fast::RandomState>,
    /// Failover requests numbered so far.
    next_wait: u64,
    /// Calls refused or admitted locally because the backend failed: a Redis outage must not
    /// write a line per call.
    backend_log: crate::log_limit::LogLimit,
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
            by_peer: SplitMap::default(),
            next_id: 0,
            ids,
            location: Arc::default(),
            trunks: Arc::new(crate::routing::plan::AllAvailable),
            records: false,
            draining: false,
            waiting: Default::default(),
            waiting_by_invite: Default::default(),
            waiting_call_ids: Default::default(),
            next_wait: 0,
            backend_log: Default::default(),
        }
    }

    /// The same B2BUA reaching phones through `location` (the daemon's shared store).
    pub fn with_location(mut self, location: Arc<crate::registrar::LocationStore>) -> Self {
        self.location = location;
        self
    }

    /// The same B2BUA skipping the trunks `trunks` says are unavailable.
    pub fn with_trunks(mut self, trunks: Arc<dyn crate::routing::plan::TrunkAvailability>) -> Self {
        self.trunks = trunks;
        self
    }

    /// The same B2BUA emitting a call detail record ([`Out::Record`]) per call when `on`.
    pub fn with_records(mut self, on: bool) -> Self {
        self.records = on;
        self
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

    /// This shard's number.
    pub fn shard(&self) -> u8 {
        self.ids.shard()
    }

    /// The running configuration generation (what new calls are admitted under).
    pub fn generation(&self) -> Arc<crate::limits::Generation> {
        self.limiter.current()
    }

    /// What `source` is to the running configuration: a PBX or trunk, PBX extensions that must
    /// authenticate, or nobody (an INVITE from nobody is refused before any state is kept for
    /// it, unless it is a phone's).
    pub fn source_kind(&self, source: SocketAddr, now: Instant) -> SourceKind {
        let generation = self.limiter.current();
        let snapshot = generation.config();
        match crate::routing::identify_with(snapshot, &self.location, source, now) {
            Ok(_) => SourceKind::Known,
            Err(crate::routing::RouteError::AuthenticationRequired(_)) => {
                let ix = &snapshot.index;
                let exts = ix
                    .pbx_by_address
                    .get(&source)
                    .or_else(|| ix.pbx_by_ip.get(&source.ip()))
                    .cloned()
                    .unwrap_or_default();
                SourceKind::MustAuthenticate(exts)
            }
            Err(_) => SourceKind::Unknown,
        }
    }

    /// Whether a response from `from` may answer a request sent to `sent_to`: the same IP (a
    /// peer may answer from another port, RFC 3261 18.2.2), or another address of the trunk
    /// whose gateway `sent_to` is (`associated_ips`: providers answer from other machines than
    /// the one called).
    pub fn same_peer(&self, sent_to: SocketAddr, from: SocketAddr) -> bool {
        if sent_to.ip() == from.ip() {
            return true;
        }
        let generation = self.limiter.current();
        generation
            .config()
            .trunks
            .iter()
            .filter(|t| t.address == Some(sent_to))
            .any(|t| t.associated_ips.contains(&from.ip()))
    }

    /// Sizes of the index maps (leak checks: all zero once every call and transaction ended).
    pub fn index_sizes(&self) -> IndexSizes {
        IndexSizes {
            by_call_id: self.by_call_id.len(),
            by_client: self.by_client.len(),
            by_a_invite: self.by_a_invite.len(),
            by_peer: self.by_peer.len(),
            waiting: self.waiting.len()
                + self.waiting_by_invite.len()
                + self.waiting_call_ids.len(),
        }
    }

    /// Indexes call `id`'s TCP legs by peer and tells the transport their flows are in use.
    fn hold_flows(&mut self, id: u64, legs: &[Dest], out: &mut Vec<Out>) {
        for peer in tcp_peers(legs) {
            // A set: a PBX over TCP has all its calls on one peer, and ending one of them (or
            // moving them all after a close) must not scan the others.
            let added = match self.by_peer.get_mut(&peer) {
                Some(ids) => ids.insert(id),
                None => {
                    self.by_peer.insert(peer, std::iter::once(id).collect());
                    true
                }
            };
            if added {
                out.push(Out::Flow { peer, held: true });
            }
        }
    }

    /// A TCP leg of call `id` moved off flow `old`; `legs` are the call's legs after the move.
    /// Each flow stays held once per call, as [`B2bua::hold_flows`] counts them.
    fn move_flow(&mut self, id: u64, old: Dest, legs: &[Dest], out: &mut Vec<Out>) {
        if !legs.contains(&old) {
            self.release_flows(id, &[old], out);
        }
        for peer in tcp_peers(legs) {
            let held = self.by_peer.get(&peer).is_some_and(|ids| ids.contains(&id));
            if !held {
                let dest = Dest {
                    transport: crate::config::model::Transport::Tcp,
                    addr: peer,
                };
                self.hold_flows(id, &[dest], out);
            }
        }
    }

    /// Undoes [`B2bua::hold_flows`] for an ended call.
    fn release_flows(&mut self, id: u64, legs: &[Dest], out: &mut Vec<Out>) {
        for peer in tcp_peers(legs) {
            let Some(ids) = self.by_peer.get_mut(&peer) else {
                continue;
            };
            // Given back only what was taken: the transport's counts stay exact.
            if ids.remove(&id) {
                out.push(Out::Flow { peer, held: false });
            }
            if ids.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
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

/// What a new INVITE's source address is ([`B2bua::source_kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A PBX or trunk that needs no credentials.
    Known,
    /// The PBX extensions at this address, which must answer a digest challenge.
    MustAuthenticate(Vec<crate::config::model::ExtId>),
    /// No PBX or trunk (a phone, or nobody).
    Unknown,
}

/// Entries in the B2BUA's index maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexSizes {
    /// Leg Call-IDs.
    pub by_call_id: usize,
    /// Our client transactions (teardown ones stay until their transaction ends).
    pub by_client: usize,
    /// A-leg INVITE server transactions.
    pub by_a_invite: usize,
    /// TCP peers with calls.
    pub by_peer: usize,
    /// Admissions waiting for the shared backend, with their indexes.
    pub waiting: usize,
}

/// The stream peers of a call's legs, each once (both legs may face one PBX).
fn tcp_peers(legs: &[Dest]) -> Vec<SocketAddr> {
    let mut peers: Vec<SocketAddr> = Vec::with_capacity(legs.len());
    for d in legs.iter().filter(|d| d.transport.is_stream()) {
        if !peers.contains(&d.addr) {
            peers.push(d.addr);
        }
    }
    peers
}

/// The shard that owns call number `id` (see [`B2bua`]'s numbering).
pub fn shard_of_call(id: u64) -> usize {
    (id & 0xff) as usize
}

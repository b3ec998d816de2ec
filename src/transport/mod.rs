//! Sockets only: UDP, TCP and TLS listeners from `[[listen]]`, the stream connection table, stream
//! framing, outbound sends and keep-alive handling (RFC 3261 section 18, RFC 5626 CRLF
//! keep-alive). TLS connections share the TCP machinery and table (keyed by peer address); only
//! the handshake and the certificate are TLS's own (`tls.rs`).
//!
//! The transport does not parse SIP beyond framing: it hands complete messages (`Bytes`, zero-copy
//! slices of the receive buffer) to the daemon's driver with their source, and sends what the driver
//! asks for. It owns no call or transaction state. A malformed stream is closed; a malformed
//! datagram is the driver's to answer or drop.

mod backoff;
mod tcp;
mod tls;
mod udp;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::config::model::{Listen, TcpLimits, Transport};
use tokio_rustls::rustls::ServerConfig;

pub use tcp::ConnId;
pub use tls::CertificateError;

/// Limits applied to untrusted peers.
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    /// Largest SIP message accepted on a stream (headers + body).
    pub max_message_size: usize,
    /// A TCP connection with no traffic for this long is closed, unless a dialog holds its peer
    /// ([`Transports::hold`]).
    pub idle_timeout: Duration,
    /// Concurrent inbound TCP connections accepted per source IP.
    pub max_connections_per_ip: usize,
    /// Outbound messages queued per TCP connection before sends fail.
    pub send_queue: usize,
    /// Open TCP connections, inbound and outbound together. Beyond it an accepted socket is
    /// closed at once and a send that needs a new connection fails.
    pub max_connections: usize,
    /// A write that does not complete within this closes the connection: a peer that stops
    /// reading must not pin its queue, its tasks and the kernel's buffers for ever.
    pub write_timeout: Duration,
    /// Once a message's first byte arrived, its header section must be complete within this
    /// (a slowloris client dribbles headers to hold a connection at no cost to itself).
    pub header_timeout: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits::from(TcpLimits::default())
    }
}

impl From<TcpLimits> for TransportLimits {
    /// The `[server]` TCP keys; the limits without a key keep their built-in values.
    fn from(tcp: TcpLimits) -> Self {
        TransportLimits {
            max_message_size: 64 * 1024,
            idle_timeout: tcp.idle_timeout,
            max_connections_per_ip: 64,
            send_queue: 1024,
            max_connections: tcp.max_connections,
            write_timeout: Duration::from_secs(10),
            header_timeout: tcp.header_timeout,
        }
    }
}

/// Something the transport hands to the driver.
#[derive(Debug)]
pub enum Inbound {
    /// One complete SIP message (a datagram, or one framed message from a stream).
    Message(Received),
    /// A stream closed or failed; calls whose legs use it have lost their transport.
    Closed {
        /// The peer of the closed connection.
        peer: SocketAddr,
        /// tcp or tls.
        transport: Transport,
        /// When it stopped taking sends: what was sent to `peer` before went with it, what is
        /// sent after goes over a new connection.
        at: std::time::Instant,
    },
    /// A stream sent bytes that cannot be framed (counted as a parse error; the stream is closed).
    StreamError {
        /// The peer that sent them.
        peer: SocketAddr,
    },
}

/// Where the transport hands what it receives: the daemon's dispatcher, which parses each
/// message and queues it on the engine shard that owns it. Called from the receive tasks.
pub trait Sink: Send + Sync + 'static {
    /// Takes one event, or says how to wait when the receiver's queue is full.
    fn deliver(&self, ev: Inbound) -> Delivery;
}

/// What became of a delivered event.
pub enum Delivery {
    /// Queued.
    Done,
    /// The queue is full: await this hand-over (it resolves `false` when the receiver is gone).
    /// Backpressure on the socket rather than unbounded memory.
    Wait(Pin<Box<dyn Future<Output = bool> + Send>>),
    /// The sink answered statelessly: send `data` to `to` from the socket (or on the
    /// connection) the message came in on.
    Reply {
        /// Destination (on a stream, the connection's peer).
        to: SocketAddr,
        /// The response.
        data: Bytes,
    },
    /// The sink dropped the event (a datagram while its shard is overloaded: UDP senders
    /// retransmit).
    Dropped,
    /// The receiver is gone: the receive task stops.
    Closed,
}

/// What a receive task does after handing an event over.
pub(crate) enum Handed {
    /// Go on receiving.
    Next,
    /// Send this answer back on the connection, then go on.
    Reply(Bytes),
    /// Stop: the receiver is gone.
    Stop,
}

/// Hands `ev` to `sink`, waiting while its queue is full.
pub(crate) async fn hand_over(sink: &dyn Sink, ev: Inbound) -> Handed {
    match sink.deliver(ev) {
        Delivery::Done | Delivery::Dropped => Handed::Next,
        Delivery::Wait(wait) => {
            if wait.await {
                Handed::Next
            } else {
                Handed::Stop
            }
        }
        Delivery::Closed => Handed::Stop,
        Delivery::Reply { data, .. } => Handed::Reply(data),
    }
}

/// A received message and where it came from.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message bytes (exactly one message).
    pub data: Bytes,
    /// Source address (used for `received`/`rport` and for identifying the sender).
    pub source: SocketAddr,
    /// Local listener address it arrived on.
    pub local: SocketAddr,
    /// udp, tcp or tls.
    pub transport: Transport,
}

/// Transport-layer failures. Bind errors name the address; send errors the destination.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A listener could not be bound.
    #[error("cannot bind {transport:?} listener on {address}: {source}")]
    Bind {
        /// Transport of the listener.
        transport: Transport,
        /// Address it tried.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TLS listener's certificate or key cannot be used.
    #[error("tls listener {address}: {source}")]
    Certificate {
        /// The listener's address.
        address: SocketAddr,
        /// What is wrong with its files (boxed: rare, and large beside the other variants).
        source: Box<CertificateError>,
    },
    /// A send over TLS to a peer with no TLS connection open: callgate opens none itself.
    #[error("no tls connection from {0} to send on")]
    NoTlsConnection(SocketAddr),
    /// No listener of this transport exists to send from.
    #[error("no {0:?} listener to send from")]
    NoListener(Transport),
    /// The connection's send queue is full or closed.
    #[error("send queue to {0} is full or closed")]
    QueueFull(SocketAddr),
    /// A new TCP connection would exceed `max_connections`.
    #[error("no tcp connection to {dest}: {limit} connections already open")]
    TooManyConnections {
        /// Destination.
        dest: SocketAddr,
        /// The cap in force.
        limit: usize,
    },
    /// A UDP send failed.
    #[error("udp send to {dest} failed: {source}")]
    Send {
        /// Destination.
        dest: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One bound listener: its configuration entry, what it is bound to, and the token that stops
/// its receive or accept task when a reload removes it.
struct Listener {
    listen: Listen,
    bound: SocketAddr,
    udp: Option<Arc<std::net::UdpSocket>>,
    /// A TLS listener's certificate, read per handshake and swapped by a reload.
    tls: Option<tls::Certificates>,
    stop: CancellationToken,
}

/// What a reload changed in the listener set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListenerChanges {
    /// Newly bound `(transport, address)`.
    pub added: Vec<(Transport, SocketAddr)>,
    /// Closed `(transport, address)`.
    pub removed: Vec<(Transport, SocketAddr)>,
}

/// The bound listeners and the TCP connection table, shared by the driver and the listener tasks.
pub struct Transports {
    /// Swapped as a whole on reload; read lock-free on every send.
    listeners: ArcSwap<Vec<Listener>>,
    conns: Arc<tcp::ConnTable>,
    sink: Arc<dyn Sink>,
    /// Swapped by a reload; read when a connection opens and on each of its reads.
    limits: ArcSwap<TransportLimits>,
    /// Dialogs per TCP peer: a held peer's connections outlive the idle timeout.
    holds: Holds,
    shutdown: CancellationToken,
    /// The runtime the connection tasks run on: sends come from the engine shards' own threads.
    runtime: tokio::runtime::Handle,
}

impl Transports {
    /// Binds every listener and starts its receive task. Fails, naming the address, if one cannot
    /// be bound (nothing is left listening in that case: the tasks stop with `shutdown`).
    pub async fn bind(
        listens: &[Listen],
        sink: Arc<dyn Sink>,
        limits: TransportLimits,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, TransportError> {
        let this = Arc::new(Transports {
            listeners: ArcSwap::from_pointee(Vec::new()),
            conns: Arc::new(tcp::ConnTable::default()),
            sink,
            limits: ArcSwap::from_pointee(limits),
            holds: Holds::default(),
            shutdown,
            runtime: tokio::runtime::Handle::current(),
        });
        let mut bound = Vec::new();
        for listen in listens {
            match load_certificates(listen).and_then(|certs| this.open(listen, certs)) {
                Ok(l) => bound.push(l),
                Err(e) => {
                    bound.iter().for_each(|l: &Listener| l.stop.cancel());
                    return Err(e);
                }
            }
        }
        this.listeners.store(Arc::new(bound));
        Ok(this)
    }

    /// Binds one listener and spawns its task (must run inside the runtime); `certs` is a TLS
    /// listener's certificate, already read.
    fn open(
        self: &Arc<Self>,
        listen: &Listen,
        certs: Option<Arc<ServerConfig>>,
    ) -> Result<Listener, TransportError> {
        let stop = self.shutdown.child_token();
        let tls = certs.map(|c| Arc::new(ArcSwap::new(c)));
        let (bound, udp) = match listen.transport {
            Transport::Udp => {
                let socket = udp::open(listen.address, self.sink.clone(), stop.clone())?;
                let bound = match local_of(socket.local_addr(), listen) {
                    Ok(b) => b,
                    Err(e) => {
                        stop.cancel();
                        return Err(e);
                    }
                };
                (bound, Some(socket))
            }
            Transport::Tcp | Transport::Tls => {
                let listener = tcp::bind(listen.address, listen.transport)?;
                let bound = local_of(listener.local_addr(), listen)?;
                let accepting = tcp::accept_loop(listener, self.clone(), stop.clone(), tls.clone());
                self.runtime.spawn(accepting);
                (bound, None)
            }
        };
        Ok(Listener {
            listen: listen.clone(),
            bound,
            udp,
            tls,
            stop,
        })
    }

    /// Applies a reloaded `[[listen]]` list: binds the new entries, stops accepting on removed
    /// ones (TCP and TLS connections already open live on until they close), keeps the rest
    /// bound, and re-reads every TLS listener's certificate: new handshakes present the new one,
    /// open connections keep theirs. On a bind failure or an unusable certificate nothing
    /// changes.
    pub fn reconcile(
        self: &Arc<Self>,
        listens: &[Listen],
    ) -> Result<ListenerChanges, TransportError> {
        // Every certificate is read before anything is bound or swapped.
        let certs = listens
            .iter()
            .map(load_certificates)
            .collect::<Result<Vec<_>, _>>()?;
        let current = self.listeners.load_full();
        let mut changes = ListenerChanges::default();
        let mut next = Vec::new();
        for (listen, cert) in listens.iter().zip(&certs) {
            match current.iter().find(|l| l.listen.same_socket(listen)) {
                Some(kept) => next.push(Listener {
                    listen: listen.clone(),
                    bound: kept.bound,
                    udp: kept.udp.clone(),
                    tls: kept.tls.clone(),
                    stop: kept.stop.clone(),
                }),
                None => match self.open(listen, cert.clone()) {
                    Ok(l) => {
                        changes.added.push((l.listen.transport, l.bound));
                        next.push(l);
                    }
                    Err(e) => {
                        next.iter()
                            .filter(|l| changes.added.contains(&(l.listen.transport, l.bound)))
                            .for_each(|l| l.stop.cancel());
                        return Err(e);
                    }
                },
            }
        }
        let gone = |o: &&Listener| !listens.iter().any(|l| l.same_socket(&o.listen));
        for old in current.iter().filter(gone) {
            old.stop.cancel();
            changes.removed.push((old.listen.transport, old.bound));
        }
        swap_certificates(&next, certs);
        self.listeners.store(Arc::new(next));
        Ok(changes)
    }

    /// Local address of the first listener of `transport` (what Via and Contact advertise when no
    /// `advertise` is configured).
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.listeners
            .load()
            .iter()
            .find(|l| l.listen.transport == transport)
            .map(|l| l.bound)
    }

    /// Every bound address, for logs and tests.
    pub fn bound(&self) -> Vec<(Transport, SocketAddr)> {
        self.listeners
            .load()
            .iter()
            .map(|l| (l.listen.transport, l.bound))
            .collect()
    }

    /// Sends one message. UDP goes out at once from the first UDP listener; TCP reuses the
    /// connection to `dest` (inbound or outbound) or opens one, queueing the message meanwhile;
    /// TLS goes only over a connection `dest` opened (a phone's flow). Never blocks the caller.
    pub fn send(
        self: &Arc<Self>,
        transport: Transport,
        dest: SocketAddr,
        data: Bytes,
    ) -> Result<(), TransportError> {
        match transport {
            Transport::Udp => self.send_udp(dest, data),
            Transport::Tcp | Transport::Tls => tcp::send(self, transport, dest, data),
        }
    }

    fn send_udp(&self, dest: SocketAddr, data: Bytes) -> Result<(), TransportError> {
        let listeners = self.listeners.load();
        // The bound address is known: no getsockname system call per send.
        let mut udp = listeners
            .iter()
            .filter_map(|l| l.udp.as_ref().map(|s| (l.bound, s)));
        let socket = udp
            .clone()
            .find(|(bound, _)| bound.is_ipv4() == dest.is_ipv4())
            .or_else(|| udp.next())
            .map(|(_, s)| s)
            .ok_or(TransportError::NoListener(Transport::Udp))?;
        match socket.send_to(&data, dest) {
            Ok(_) => Ok(()),
            // The socket buffer stayed full for the send timeout: a lost datagram is what UDP
            // means; the transaction layer retransmits.
            Err(source) => Err(TransportError::Send { dest, source }),
        }
    }

    /// The limits in force now.
    pub(crate) fn limits(&self) -> TransportLimits {
        **self.limits.load()
    }

    /// Applies reloaded limits. New connections and the next read (idle and header deadlines)
    /// of open ones use them; an open connection keeps its send queue length and write timeout.
    pub(crate) fn set_limits(&self, limits: TransportLimits) {
        self.limits.store(Arc::new(limits));
    }

    /// Counts one more dialog using the TCP flow to `peer` (the address a connection to or from
    /// it is keyed by). While any dialog holds `peer`, the idle timeout of its connection
    /// re-arms instead of closing it: a held call is silent for hours, and closing its flow
    /// would leave callgate unable to send the BYE. Pair each call with one [`Self::release`].
    pub fn hold(&self, peer: SocketAddr) {
        self.holds.hold(peer);
    }

    /// Counts one dialog fewer on the flow to `peer`. At zero the peer is forgotten; a release
    /// without a matching hold is ignored.
    pub fn release(&self, peer: SocketAddr) {
        self.holds.release(peer);
    }

    /// Whether a dialog holds the flow to `peer`.
    pub(crate) fn is_held(&self, peer: SocketAddr) -> bool {
        self.holds.count(peer) > 0
    }

    /// Number of open TCP connections (for tests and metrics).
    pub fn tcp_connections(&self) -> usize {
        self.conns.len()
    }

    /// Closes the TCP connection to `peer`, if any (used by tests to simulate a dropped leg).
    pub fn close(&self, peer: SocketAddr) {
        self.conns.close(peer);
    }
}

/// Per-source-IP connection accounting for the inbound TCP cap.
#[derive(Default)]
struct PerIp(DashMap<IpAddr, usize>);

impl PerIp {
    fn try_add(&self, ip: IpAddr, cap: usize) -> bool {
        let mut entry = self.0.entry(ip).or_insert(0);
        if *entry >= cap {
            return false;
        }
        *entry += 1;
        true
    }

    fn remove(&self, ip: IpAddr) {
        if let dashmap::Entry::Occupied(mut e) = self.0.entry(ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// Dialogs counted per TCP peer ([`Transports::hold`]). Saturating: a buggy caller can leak a
/// hold but never wrap the count or panic.
#[derive(Default)]
struct Holds(DashMap<SocketAddr, u32>);

impl Holds {
    fn hold(&self, peer: SocketAddr) {
        let mut n = self.0.entry(peer).or_insert(0);
        *n = n.saturating_add(1);
    }

    fn release(&self, peer: SocketAddr) {
        if let dashmap::Entry::Occupied(mut e) = self.0.entry(peer) {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
    }

    fn count(&self, peer: SocketAddr) -> u32 {
        self.0.get(&peer).map_or(0, |n| *n)
    }
}

/// Hands each TLS listener of `listeners` its freshly read certificate (`certs`, in the same
/// order): its next handshake presents it.
fn swap_certificates(listeners: &[Listener], certs: Vec<Option<Arc<ServerConfig>>>) {
    for (l, cert) in listeners.iter().zip(certs) {
        if let (Some(slot), Some(cert), Some(files)) = (&l.tls, cert, &l.listen.tls) {
            slot.store(cert);
            let certificate = files.certificate.display();
            tracing::info!(listen.addr = %l.bound, %certificate, "tls certificate loaded");
        }
    }
}

/// Reads the certificate and key of every TLS listener in `listen`, as a start or reload would:
/// what `callgate check-config` reports (a file that does not parse fails there, not at 3 a.m.).
pub fn check_certificates(listen: &[Listen]) -> Vec<TransportError> {
    listen
        .iter()
        .filter_map(|l| load_certificates(l).err())
        .collect()
}

/// A TLS listener's certificate, read from its files (`None` for udp and tcp).
fn load_certificates(listen: &Listen) -> Result<Option<Arc<ServerConfig>>, TransportError> {
    let Some(files) = &listen.tls else {
        return Ok(None);
    };
    tls::load(files)
        .map(Some)
        .map_err(|source| TransportError::Certificate {
            address: listen.address,
            source: Box::new(source),
        })
}

fn local_of(
    addr: std::io::Result<SocketAddr>,
    listen: &Listen,
) -> Result<SocketAddr, TransportError> {
    addr.map_err(|source| TransportError::Bind {
        transport: listen.transport,
        address: listen.address,
        source,
    })
}

#[cfg(test)]
mod tests;

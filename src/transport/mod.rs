//! Sockets only: UDP and TCP listeners from `[[listen]]`, the TCP connection table, stream framing,
//! outbound sends and keep-alive handling (RFC 3261 section 18, RFC 5626 CRLF keep-alive).
//!
//! The transport does not parse SIP beyond framing: it hands complete messages (`Bytes`, zero-copy
//! slices of the receive buffer) to the daemon's driver with their source, and sends what the driver
//! asks for. It owns no call or transaction state. A malformed stream is closed; a malformed
//! datagram is the driver's to answer or drop.

mod tcp;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::model::{Listen, Transport};

pub use tcp::ConnId;

/// Limits applied to untrusted peers.
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    /// Largest SIP message accepted on a stream (headers + body).
    pub max_message_size: usize,
    /// A TCP connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent inbound TCP connections accepted per source IP.
    pub max_connections_per_ip: usize,
    /// Outbound messages queued per TCP connection before sends fail.
    pub send_queue: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_message_size: 64 * 1024,
            idle_timeout: Duration::from_secs(600),
            max_connections_per_ip: 64,
            send_queue: 1024,
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
    },
    /// A stream sent bytes that cannot be framed (counted as a parse error; the stream is closed).
    StreamError {
        /// The peer that sent them.
        peer: SocketAddr,
    },
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
    /// udp or tcp.
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
    /// No listener of this transport exists to send from.
    #[error("no {0:?} listener to send from")]
    NoListener(Transport),
    /// The connection's send queue is full or closed.
    #[error("send queue to {0} is full or closed")]
    QueueFull(SocketAddr),
    /// A UDP send failed.
    #[error("udp send to {dest} failed: {source}")]
    Send {
        /// Destination.
        dest: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The bound listeners and the TCP connection table, shared by the driver and the listener tasks.
pub struct Transports {
    udp: Vec<Arc<tokio::net::UdpSocket>>,
    tcp_addrs: Vec<SocketAddr>,
    conns: Arc<tcp::ConnTable>,
    inbound: mpsc::Sender<Inbound>,
    limits: TransportLimits,
    shutdown: CancellationToken,
}

impl Transports {
    /// Binds every listener and starts its receive task. Fails, naming the address, if one cannot
    /// be bound (nothing is left listening in that case: the tasks stop with `shutdown`).
    pub async fn bind(
        listens: &[Listen],
        inbound: mpsc::Sender<Inbound>,
        limits: TransportLimits,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, TransportError> {
        let conns = Arc::new(tcp::ConnTable::default());
        let mut udp_sockets = Vec::new();
        let mut tcp_listeners = Vec::new();
        for listen in listens {
            match listen.transport {
                Transport::Udp => udp_sockets.push(Arc::new(udp::bind(listen.address)?)),
                Transport::Tcp => tcp_listeners.push(tcp::bind(listen.address).await?),
            }
        }
        let tcp_addrs = tcp_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let this = Arc::new(Transports {
            udp: udp_sockets,
            tcp_addrs,
            conns,
            inbound,
            limits,
            shutdown,
        });
        for socket in &this.udp {
            tokio::spawn(udp::receive_loop(
                socket.clone(),
                this.inbound.clone(),
                this.shutdown.clone(),
            ));
        }
        for listener in tcp_listeners {
            tokio::spawn(tcp::accept_loop(listener, this.clone()));
        }
        Ok(this)
    }

    /// Local address of the first listener of `transport` (what Via and Contact advertise when no
    /// `advertise` is configured).
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        match transport {
            Transport::Udp => self.udp.first().and_then(|s| s.local_addr().ok()),
            Transport::Tcp => self.tcp_addrs.first().copied(),
        }
    }

    /// Every bound address, for logs and tests.
    pub fn bound(&self) -> Vec<(Transport, SocketAddr)> {
        let udp = self.udp.iter().filter_map(|s| s.local_addr().ok());
        let tcp = self.tcp_addrs.iter().copied();
        udp.map(|a| (Transport::Udp, a))
            .chain(tcp.map(|a| (Transport::Tcp, a)))
            .collect()
    }

    /// Sends one message. UDP goes out at once from the first UDP listener; TCP reuses the
    /// connection to `dest` (inbound or outbound) or opens one, queueing the message meanwhile.
    /// Never blocks the caller.
    pub fn send(
        self: &Arc<Self>,
        transport: Transport,
        dest: SocketAddr,
        data: Bytes,
    ) -> Result<(), TransportError> {
        match transport {
            Transport::Udp => self.send_udp(dest, data),
            Transport::Tcp => tcp::send(self, dest, data),
        }
    }

    fn send_udp(&self, dest: SocketAddr, data: Bytes) -> Result<(), TransportError> {
        let socket = self
            .udp
            .iter()
            .find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == dest.is_ipv4()))
            .or(self.udp.first())
            .ok_or(TransportError::NoListener(Transport::Udp))?;
        match socket.try_send_to(&data, dest) {
            Ok(_) => Ok(()),
            // The socket buffer is full: a lost datagram is what UDP means; the transaction layer
            // retransmits. Report it so the driver can count it.
            Err(source) => Err(TransportError::Send { dest, source }),
        }
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

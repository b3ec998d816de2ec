//! TCP and TLS streams: accept loop, one reader and one writer task per connection, framing by
//! Content-Length, connection reuse keyed by the peer address (RFC 3261 18.2.2 / 18.1.1). A TLS
//! connection is a TCP one whose accepted socket went through the handshake of `tls.rs` first;
//! everything after it is generic over the byte stream ([`Stream`]).
//!
//! What one peer can hold is bounded: an idle timeout (re-armed while a dialog holds the peer,
//! see [`Transports::hold`]), a deadline for a message's header section once its first byte
//! arrived (slowloris), a write timeout (a peer that stops reading), a cap on connections in
//! total and per source IP, a cap on message size. Framing errors close the connection: a
//! stream that lost sync cannot be resynchronised safely.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::AcceptBackoff;
use super::tls::Certificates;
use super::{hand_over, Handed, Inbound, PerIp, Received, TransportError, Transports};
use crate::config::model::Transport;
use crate::sip::{Frame, ParseError, StreamFramer};

/// Longest wait for an outbound connect (shorter when the idle timeout is).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Identifies one TCP connection for the lifetime of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

struct Conn {
    id: ConnId,
    /// tcp or tls: a send asking for TLS must never go out in clear text.
    transport: Transport,
    tx: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
}

/// Open connections by peer address, plus the connection caps' accounting.
#[derive(Default)]
pub(super) struct ConnTable {
    by_peer: DashMap<SocketAddr, Conn>,
    per_ip: PerIp,
    open: OpenCount,
    next_id: AtomicU64,
}

impl ConnTable {
    pub(super) fn len(&self) -> usize {
        self.by_peer.len()
    }

    pub(super) fn close(&self, peer: SocketAddr) {
        if let Some((_, conn)) = self.by_peer.remove(&peer) {
            conn.cancel.cancel();
        }
    }

    fn register(
        &self,
        peer: SocketAddr,
        transport: Transport,
        queue: usize,
        parent: &CancellationToken,
    ) -> Pending {
        let id = ConnId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(queue);
        let cancel = parent.child_token();
        // A newer connection from the same peer replaces the older one for sending; the older one
        // keeps reading until it closes.
        self.by_peer.insert(
            peer,
            Conn {
                id,
                transport,
                tx: tx.clone(),
                cancel: cancel.clone(),
            },
        );
        Pending { id, tx, rx, cancel }
    }

    /// Forgets connection `id` to `peer`; false when a newer connection to `peer` had replaced
    /// it (sends to `peer` go over that one, so its close changes nothing for them).
    fn unregister(&self, peer: SocketAddr, id: ConnId) -> bool {
        self.by_peer.remove_if(&peer, |_, c| c.id == id).is_some()
    }
}

/// Connections open or connecting, inbound and outbound, against `max_connections`. Counted
/// apart from `by_peer`, which forgets a connection replaced by a newer one from the same peer.
#[derive(Default)]
struct OpenCount(Arc<AtomicUsize>);

/// One connection's place under `max_connections`; its task holds it, so every way the
/// connection ends gives the place back.
struct Slot(Arc<AtomicUsize>);

impl OpenCount {
    fn try_take(&self, cap: usize) -> Option<Slot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(self.0.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An inbound connection's place under `max_connections_per_ip`.
struct IpSlot {
    conns: Arc<ConnTable>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.conns.per_ip.remove(self.ip);
    }
}

/// The places a connection holds under the caps. Given back as soon as its socket is closed,
/// before the driver hears of the close, so a new connection can follow at once.
struct Places {
    _total: Slot,
    _per_ip: Option<IpSlot>,
}

/// Binds synchronously so a reload (which runs on a blocking thread) can add listeners.
pub(super) fn bind(
    address: SocketAddr,
    transport: Transport,
) -> Result<TcpListener, TransportError> {
    let err = |source| TransportError::Bind {
        transport,
        address,
        source,
    };
    let std_listener = std::net::TcpListener::bind(address).map_err(err)?;
    std_listener.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(std_listener).map_err(err)
}

/// A connection's byte stream: a TCP socket, or TLS over one.
pub(super) trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// What messages received on it are, and what sends it takes.
    const TRANSPORT: Transport;
    /// The TCP socket underneath (socket options).
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    const TRANSPORT: Transport = Transport::Tcp;
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    const TRANSPORT: Transport = Transport::Tls;
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Accepts connections until `stop`; with `tls`, each goes through a TLS handshake first.
pub(super) async fn accept_loop(
    listener: TcpListener,
    transports: Arc<Transports>,
    stop: CancellationToken,
    tls: Option<Certificates>,
) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded();
                admit(stream, peer, local, &transports, tls.as_ref());
            }
            // That one connection went away before it was accepted: the next accept is fine.
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "tcp accept failed");
            }
            Err(e) => {
                let pause = backoff.failed(Instant::now().into_std());
                if let Some(failures) = pause.warn {
                    tracing::warn!(error = %e, failures, "tcp accept failing; backing off");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause.sleep) => {}
                }
            }
        }
    }
}

/// Accept errors about the connection being accepted rather than the process (EMFILE, ENFILE,
/// ENOMEM, ENOBUFS and anything unknown back off).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// Serves an accepted connection, or closes it at once (by dropping it) when a cap is reached.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    t: &Arc<Transports>,
    tls: Option<&Certificates>,
) {
    let limits = t.limits();
    let Some(slot) = t.conns.open.try_take(limits.max_connections) else {
        tracing::debug!(peer.addr = %peer, limit = limits.max_connections, "tcp connection refused: connection cap");
        return;
    };
    if !t
        .conns
        .per_ip
        .try_add(peer.ip(), limits.max_connections_per_ip)
    {
        tracing::debug!(peer.addr = %peer, "tcp connection refused: per-IP cap");
        return;
    }
    let per_ip = IpSlot {
        conns: t.conns.clone(),
        ip: peer.ip(),
    };
    let places = Places {
        _total: slot,
        _per_ip: Some(per_ip),
    };
    let t = t.clone();
    match tls {
        None => tokio::spawn(async move { serve(stream, peer, local, None, &t, places).await }),
        Some(certificates) => {
            // Read per accept: a reload's new certificate applies from the next handshake on.
            let acceptor = tokio_rustls::TlsAcceptor::from(certificates.load_full());
            let deadline = limits.header_timeout;
            let accepted = Accepted {
                peer,
                local,
                places,
            };
            tokio::spawn(handshake(stream, acceptor, deadline, accepted, t))
        }
    };
}

/// An accepted socket's identity and places under the caps, carried through its handshake.
struct Accepted {
    peer: SocketAddr,
    local: SocketAddr,
    places: Places,
}

/// Runs the TLS handshake, then serves the connection. The handshake holds a connection slot,
/// so it must end within `deadline` (the header timeout): a peer that opens sockets and never
/// finishes one cannot pin slots.
async fn handshake(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    deadline: Duration,
    a: Accepted,
    t: Arc<Transports>,
) {
    let done = tokio::select! {
        _ = t.shutdown.cancelled() => return,
        h = tokio::time::timeout(deadline, acceptor.accept(stream)) => h,
    };
    match done {
        Ok(Ok(stream)) => serve(stream, a.peer, a.local, None, &t, a.places).await,
        Ok(Err(e)) => tracing::debug!(peer.addr = %a.peer, error = %e, "tls handshake failed"),
        Err(_) => tracing::debug!(peer.addr = %a.peer, "tls handshake timeout; closing"),
    }
}

/// Queues `data` on the `transport` connection to `dest`. Over TCP one is opened when there is
/// none; over TLS only a connection the peer opened exists (callgate opens none itself).
pub(super) fn send(
    transports: &Arc<Transports>,
    transport: Transport,
    dest: SocketAddr,
    data: Bytes,
) -> Result<(), TransportError> {
    if let Some(conn) = transports.conns.by_peer.get(&dest) {
        if conn.transport == transport {
            return conn
                .tx
                .try_send(data)
                .map_err(|_| TransportError::QueueFull(dest));
        }
    }
    if transport == Transport::Tls {
        return Err(TransportError::NoTlsConnection(dest));
    }
    let local = transports
        .local_addr(Transport::Tcp)
        .ok_or(TransportError::NoListener(Transport::Tcp))?;
    let limits = transports.limits();
    let slot = transports
        .conns
        .open
        .try_take(limits.max_connections)
        .ok_or(TransportError::TooManyConnections {
            dest,
            limit: limits.max_connections,
        })?;
    let pending = transports.conns.register(
        dest,
        Transport::Tcp,
        limits.send_queue,
        &transports.shutdown,
    );
    pending
        .tx
        .try_send(data)
        .map_err(|_| TransportError::QueueFull(dest))?;
    let connecting = connect(transports.clone(), dest, local, pending, slot);
    transports.runtime.spawn(connecting);
    Ok(())
}

/// Opens an outbound connection whose queue is already registered, then serves it.
async fn connect(t: Arc<Transports>, dest: SocketAddr, local: SocketAddr, p: Pending, slot: Slot) {
    let (id, cancel) = (p.id, p.cancel.clone());
    let connect_timeout = t.limits().idle_timeout.min(CONNECT_TIMEOUT);
    let stream = tokio::select! {
        _ = cancel.cancelled() => None,
        s = tokio::time::timeout(connect_timeout, TcpStream::connect(dest)) => s.ok().and_then(Result::ok),
    };
    let places = Places {
        _total: slot,
        _per_ip: None,
    };
    match stream {
        Some(stream) => serve(stream, dest, local, Some(p), &t, places).await,
        None => {
            tracing::debug!(peer.addr = %dest, "tcp connect failed");
            let current = t.conns.unregister(dest, id);
            let at = std::time::Instant::now();
            drop(places);
            if current {
                let closed = Inbound::Closed {
                    peer: dest,
                    transport: Transport::Tcp,
                    at,
                };
                let _ = hand_over(&*t.sink, closed).await;
            }
        }
    }
}

/// An outbound connection's queue, registered before the connect completed.
struct Pending {
    id: ConnId,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
}

/// Serves one connection until it closes: a writer task drains its send queue, this task
/// reads and frames. `pending` is an outbound connection's queue, registered before the connect.
async fn serve<S: Stream>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    pending: Option<Pending>,
    t: &Transports,
    places: Places,
) {
    let limits = t.limits();
    let _ = stream.tcp().set_nodelay(true);
    let transport = S::TRANSPORT;
    let Pending { id, tx, rx, cancel } = match pending {
        Some(p) => p,
        None => t
            .conns
            .register(peer, transport, limits.send_queue, &t.shutdown),
    };
    let (mut reader, writer) = tokio::io::split(stream);
    let writing = write_loop(writer, rx, cancel.clone(), peer, limits.write_timeout);
    let write_task = tokio::spawn(writing);
    let conn = Connection {
        t,
        peer,
        local,
        transport,
        reply: tx,
    };
    let outcome = read_loop(&mut reader, &conn, &cancel).await;
    cancel.cancel();
    let current = t.conns.unregister(peer, id);
    // Every send from here on opens a new connection: what was sent before is lost with this one.
    let at = std::time::Instant::now();
    if let Ok((writer, Written::Stuck)) = write_task.await {
        // Reset instead of FIN: the peer is not reading, and a FIN would queue behind the
        // unsent bytes, keeping them in kernel memory until the peer gives up.
        let _ = reader.unsplit(writer).tcp().set_zero_linger();
    }
    drop(places);
    let inbound = &*t.sink;
    if let ReadOutcome::BadStream = outcome {
        let _ = hand_over(inbound, Inbound::StreamError { peer }).await;
    }
    if current {
        let closed = Inbound::Closed {
            peer,
            transport,
            at,
        };
        let _ = hand_over(inbound, closed).await;
    }
}

/// How a writer ended.
enum Written {
    /// Closed in order (a FIN, after TLS's close_notify).
    Done,
    /// A write did not complete in time: the socket is to be reset.
    Stuck,
}

async fn write_loop<S: Stream>(
    mut writer: WriteHalf<S>,
    mut rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
    peer: SocketAddr,
    write_timeout: Duration,
) -> (WriteHalf<S>, Written) {
    loop {
        let data = tokio::select! {
            _ = cancel.cancelled() => break,
            d = rx.recv() => match d { Some(d) => d, None => break },
        };
        match tokio::time::timeout(write_timeout, write_out(&mut writer, &data)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                cancel.cancel();
                break;
            }
            Err(_) => {
                tracing::debug!(peer.addr = %peer, "stream write timeout; closing");
                cancel.cancel();
                return (writer, Written::Stuck);
            }
        }
    }
    // Bounded: TLS writes its close_notify here, which a peer that stopped reading never takes.
    let _ = tokio::time::timeout(write_timeout, writer.shutdown()).await;
    (writer, Written::Done)
}

/// Writes one message; TLS buffers records, so it is flushed to the socket at once.
async fn write_out<S: Stream>(writer: &mut WriteHalf<S>, data: &[u8]) -> std::io::Result<()> {
    writer.write_all(data).await?;
    writer.flush().await
}

enum ReadOutcome {
    Closed,
    BadStream,
}

/// One connection as its reader sees it.
struct Connection<'a> {
    t: &'a Transports,
    peer: SocketAddr,
    local: SocketAddr,
    /// tcp or tls, for what it receives.
    transport: Transport,
    /// The connection's own send queue (pongs and stateless answers go back on it).
    reply: mpsc::Sender<Bytes>,
}

async fn read_loop<S: Stream>(
    reader: &mut ReadHalf<S>,
    conn: &Connection<'_>,
    cancel: &CancellationToken,
) -> ReadOutcome {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut framer = StreamFramer::default();
    let mut header_deadline = None;
    loop {
        let limits = conn.t.limits();
        let framed = match drain_frames(&mut buf, &mut framer, conn, limits.max_message_size).await
        {
            Ok(framed) => framed,
            Err(outcome) => return outcome,
        };
        let now = Instant::now();
        header_deadline = match (framer.awaiting_header(&buf), header_deadline) {
            (false, _) => None,
            (true, Some(started)) if !framed => Some(started),
            (true, _) => Some(now + limits.header_timeout),
        };
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8 * 1024);
        }
        let idle_at = now + limits.idle_timeout;
        let wake = header_deadline.map_or(idle_at, |h: Instant| h.min(idle_at));
        let read = tokio::select! {
            _ = cancel.cancelled() => return ReadOutcome::Closed,
            r = tokio::time::timeout_at(wake, reader.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return ReadOutcome::Closed,
            Err(_) => {
                let header_expired = header_deadline.is_some_and(|h| h <= wake);
                if let Some(outcome) = on_deadline(conn, header_expired) {
                    return outcome;
                }
            }
        }
    }
}

/// A read waited until its deadline: a late header section closes the connection; silence
/// closes it unless a dialog holds the peer (`None`: wait again).
fn on_deadline(conn: &Connection<'_>, header_expired: bool) -> Option<ReadOutcome> {
    if header_expired {
        tracing::debug!(peer.addr = %conn.peer, "tcp header timeout; closing");
        return Some(ReadOutcome::Closed);
    }
    // A held call is silent for hours: its flow must stay up to carry the re-INVITE or BYE.
    if conn.t.is_held(conn.peer) {
        return None;
    }
    tracing::debug!(peer.addr = %conn.peer, "tcp idle timeout");
    Some(ReadOutcome::Closed)
}

/// Hands every complete message in `buf` to the driver; keeps the incomplete tail. Returns
/// whether anything (message or keep-alive) was framed.
async fn drain_frames(
    buf: &mut BytesMut,
    framer: &mut StreamFramer,
    conn: &Connection<'_>,
    max: usize,
) -> Result<bool, ReadOutcome> {
    let mut framed = false;
    loop {
        match framer.next(buf, max) {
            Err(ParseError::Incomplete) => return Ok(framed),
            Ok(Frame::KeepAlive { consume, pong }) => {
                let _ = buf.split_to(consume);
                if pong {
                    // RFC 5626 4.4.1: a CRLFCRLF ping is answered with one CRLF.
                    let _ = conn.reply.try_send(Bytes::from_static(b"\r\n"));
                }
            }
            Ok(Frame::Message { len }) => {
                let msg = Received {
                    data: buf.split_to(len).freeze(),
                    source: conn.peer,
                    local: conn.local,
                    transport: conn.transport,
                };
                match hand_over(&*conn.t.sink, Inbound::Message(msg)).await {
                    Handed::Next => {}
                    // On a stream the answer goes back on the same connection.
                    Handed::Reply(data) => {
                        let _ = conn.reply.try_send(data);
                    }
                    Handed::Stop => return Err(ReadOutcome::Closed),
                }
            }
            Err(e) => {
                tracing::debug!(peer.addr = %conn.peer, error = %e, "tcp framing error; closing");
                return Err(ReadOutcome::BadStream);
            }
        }
        framed = true;
    }
}

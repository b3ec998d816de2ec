//! TCP: accept loop, one reader and one writer task per connection, framing by Content-Length,
//! connection reuse keyed by the peer address (RFC 3261 18.2.2 / 18.1.1), idle timeout, a cap on
//! connections per source IP and on message size. Framing errors close the connection: a stream
//! that lost sync cannot be resynchronised safely.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::backoff::AcceptBackoff;
use super::{hand_over, Handed, Inbound, PerIp, Received, Sink, TransportError, Transports};
use crate::config::model::Transport;
use crate::sip::{Frame, ParseError, StreamFramer};

/// Identifies one TCP connection for the lifetime of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

struct Conn {
    id: ConnId,
    tx: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
}

/// Open connections by peer address, plus inbound per-IP accounting.
#[derive(Default)]
pub(super) struct ConnTable {
    by_peer: DashMap<SocketAddr, Conn>,
    per_ip: PerIp,
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

    fn register(&self, peer: SocketAddr, queue: usize, parent: &CancellationToken) -> Pending {
        let id = ConnId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(queue);
        let cancel = parent.child_token();
        // A newer connection from the same peer replaces the older one for sending; the older one
        // keeps reading until it closes.
        self.by_peer.insert(
            peer,
            Conn {
                id,
                tx: tx.clone(),
                cancel: cancel.clone(),
            },
        );
        Pending { id, tx, rx, cancel }
    }

    fn unregister(&self, peer: SocketAddr, id: ConnId) {
        self.by_peer.remove_if(&peer, |_, c| c.id == id);
    }
}

/// Binds synchronously so a reload (which runs on a blocking thread) can add listeners.
pub(super) fn bind(address: SocketAddr) -> Result<TcpListener, TransportError> {
    let err = |source| TransportError::Bind {
        transport: Transport::Tcp,
        address,
        source,
    };
    let std_listener = std::net::TcpListener::bind(address).map_err(err)?;
    std_listener.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(std_listener).map_err(err)
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    transports: Arc<Transports>,
    stop: CancellationToken,
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
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.succeeded();
                a
            }
            // That one connection went away before it was accepted: the next accept is fine.
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "tcp accept failed");
                continue;
            }
            Err(e) => {
                let pause = backoff.failed(tokio::time::Instant::now().into_std());
                if let Some(failures) = pause.warn {
                    tracing::warn!(error = %e, failures, "tcp accept failing; backing off");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause.sleep) => {}
                }
                continue;
            }
        };
        let cap = transports.limits.max_connections_per_ip;
        if !transports.conns.per_ip.try_add(peer.ip(), cap) {
            tracing::debug!(peer.addr = %peer, "tcp connection refused: per-IP cap");
            continue;
        }
        let t = transports.clone();
        tokio::spawn(async move {
            serve(stream, peer, local, None, &t).await;
            t.conns.per_ip.remove(peer.ip());
        });
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

/// Queues `data` on the connection to `dest`, opening one when there is none.
pub(super) fn send(
    transports: &Arc<Transports>,
    dest: SocketAddr,
    data: Bytes,
) -> Result<(), TransportError> {
    if let Some(conn) = transports.conns.by_peer.get(&dest) {
        return conn
            .tx
            .try_send(data)
            .map_err(|_| TransportError::QueueFull(dest));
    }
    let local = transports
        .local_addr(Transport::Tcp)
        .ok_or(TransportError::NoListener(Transport::Tcp))?;
    let pending =
        transports
            .conns
            .register(dest, transports.limits.send_queue, &transports.shutdown);
    pending
        .tx
        .try_send(data)
        .map_err(|_| TransportError::QueueFull(dest))?;
    let (id, cancel) = (pending.id, pending.cancel.clone());
    let t = transports.clone();
    transports.runtime.spawn(async move {
        let connect_timeout = t
            .limits
            .idle_timeout
            .min(std::time::Duration::from_secs(10));
        let stream = tokio::select! {
            _ = cancel.cancelled() => None,
            s = tokio::time::timeout(connect_timeout, TcpStream::connect(dest)) => s.ok().and_then(Result::ok),
        };
        match stream {
            Some(stream) => serve(stream, dest, local, Some(pending), &t).await,
            None => {
                tracing::debug!(peer.addr = %dest, "tcp connect failed");
                t.conns.unregister(dest, id);
                let _ = hand_over(&*t.sink, Inbound::Closed { peer: dest }).await;
            }
        }
    });
    Ok(())
}

/// An outbound connection's queue, registered before the connect completed.
struct Pending {
    id: ConnId,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    pending: Option<Pending>,
    t: &Transports,
) {
    let (table, inbound, limits) = (&t.conns, &*t.sink, t.limits);
    let _ = stream.set_nodelay(true);
    let Pending { id, tx, rx, cancel } = match pending {
        Some(p) => p,
        None => table.register(peer, limits.send_queue, &t.shutdown),
    };
    let (reader, writer) = stream.into_split();
    let write_task = tokio::spawn(write_loop(writer, rx, cancel.clone()));
    let outcome = read_loop(reader, peer, local, inbound, limits, &cancel, tx).await;
    cancel.cancel();
    table.unregister(peer, id);
    let _ = write_task.await;
    if let ReadOutcome::BadStream = outcome {
        let _ = hand_over(inbound, Inbound::StreamError { peer }).await;
    }
    let _ = hand_over(inbound, Inbound::Closed { peer }).await;
}

async fn write_loop(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
) {
    loop {
        let data = tokio::select! {
            _ = cancel.cancelled() => break,
            d = rx.recv() => match d { Some(d) => d, None => break },
        };
        if writer.write_all(&data).await.is_err() {
            cancel.cancel();
            break;
        }
    }
    let _ = writer.shutdown().await;
}

enum ReadOutcome {
    Closed,
    BadStream,
}

async fn read_loop(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    local: SocketAddr,
    inbound: &dyn Sink,
    limits: super::TransportLimits,
    cancel: &CancellationToken,
    pong_tx: mpsc::Sender<Bytes>,
) -> ReadOutcome {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut framer = StreamFramer::default();
    loop {
        if let Err(outcome) = drain_frames(
            &mut buf,
            &mut framer,
            peer,
            local,
            inbound,
            limits.max_message_size,
            &pong_tx,
        )
        .await
        {
            return outcome;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8 * 1024);
        }
        let read = tokio::select! {
            _ = cancel.cancelled() => return ReadOutcome::Closed,
            r = tokio::time::timeout(limits.idle_timeout, reader.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return ReadOutcome::Closed,
            Err(_) => {
                tracing::debug!(peer.addr = %peer, "tcp idle timeout");
                return ReadOutcome::Closed;
            }
        }
    }
}

/// Hands every complete message in `buf` to the driver; keeps the incomplete tail.
async fn drain_frames(
    buf: &mut BytesMut,
    framer: &mut StreamFramer,
    peer: SocketAddr,
    local: SocketAddr,
    inbound: &dyn Sink,
    max: usize,
    pong_tx: &mpsc::Sender<Bytes>,
) -> Result<(), ReadOutcome> {
    loop {
        match framer.next(buf, max) {
            Err(ParseError::Incomplete) => return Ok(()),
            Ok(Frame::KeepAlive { consume, pong }) => {
                let _ = buf.split_to(consume);
                if pong {
                    // RFC 5626 4.4.1: a CRLFCRLF ping is answered with one CRLF.
                    let _ = pong_tx.try_send(Bytes::from_static(b"\r\n"));
                }
            }
            Ok(Frame::Message { len }) => {
                let data = buf.split_to(len).freeze();
                let msg = Received {
                    data,
                    source: peer,
                    local,
                    transport: Transport::Tcp,
                };
                match hand_over(inbound, Inbound::Message(msg)).await {
                    Handed::Next => {}
                    // On a stream the answer goes back on the same connection.
                    Handed::Reply(data) => {
                        let _ = pong_tx.try_send(data);
                    }
                    Handed::Stop => return Err(ReadOutcome::Closed),
                }
            }
            Err(e) => {
                tracing::debug!(peer.addr = %peer, error = %e, "tcp framing error; closing");
                return Err(ReadOutcome::BadStream);
            }
        }
    }
}

//! UDP listener: one receive loop per socket on a thread of its own, datagrams handed over as
//! exact-size `Bytes`.
//!
//! The receive loop runs on a single-threaded runtime on its own thread, so the socket's
//! readiness and the loop that reads it live on one thread: on the multi-threaded runtime a
//! datagram cost a wake-up of the reactor's worker and another of the worker running the loop
//! (measured with perf: futex wake-ups and task switches were a third of the daemon's CPU).
//! Sends come from the engine shards' threads as plain non-blocking `sendto` calls.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{hand_over, Handed, Inbound, Received, Sink, TransportError};
use crate::config::model::Transport;

/// Largest datagram accepted (RFC 3261 18.1.1 allows up to 65 535 bytes on UDP).
const MAX_DATAGRAM: usize = 65_535;

/// Socket buffers asked for: a burst of a few thousand datagrams must fit while the driver is
/// busy (the kernel caps the request at `net.core.rmem_max`/`wmem_max`).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Binds `address` and starts its receive loop on a thread of its own; returns the socket
/// (registered with that thread's reactor) for sending from anywhere.
pub(super) fn open(
    address: SocketAddr,
    sink: Arc<dyn Sink>,
    stop: CancellationToken,
) -> Result<Arc<UdpSocket>, TransportError> {
    let std_socket = bind(address)?;
    let err = |source| TransportError::Bind {
        transport: Transport::Udp,
        address,
        source,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let name = format!("callgate-udp-{}", address.port());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build();
            let socket = runtime.and_then(|rt| {
                let _guard = rt.enter();
                UdpSocket::from_std(std_socket).map(|s| (rt, Arc::new(s)))
            });
            match socket {
                Ok((rt, socket)) => {
                    let _ = tx.send(Ok(socket.clone()));
                    rt.block_on(receive_loop(socket, sink, stop));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .map_err(err)?;
    match rx.recv() {
        Ok(Ok(socket)) => Ok(socket),
        Ok(Err(e)) => Err(err(e)),
        Err(_) => Err(err(std::io::Error::other("udp receive thread ended"))),
    }
}

fn bind(address: SocketAddr) -> Result<std::net::UdpSocket, TransportError> {
    let err = |source| TransportError::Bind {
        transport: Transport::Udp,
        address,
        source,
    };
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(err)?;
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the UDP send buffer");
    }
    socket.bind(&address.into()).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

async fn receive_loop(socket: Arc<UdpSocket>, sink: Arc<dyn Sink>, shutdown: CancellationToken) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    // Reused for every datagram; what is handed on is an exact-size copy.
    let mut arena = BytesMut::with_capacity(MAX_DATAGRAM + 1);
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_buf_from(&mut arena) => r,
        };
        let source = match received {
            Ok((_, source)) => source,
            // ICMP port unreachable from an earlier send shows up here on Linux; keep serving.
            Err(e) => {
                tracing::debug!(error = %e, "udp receive error");
                arena.clear();
                continue;
            }
        };
        // One exact-size copy per datagram: a slice of the arena would keep the whole arena alive
        // for as long as any held call keeps its INVITE (measured ~10 KiB per held call).
        let data = bytes::Bytes::copy_from_slice(&arena);
        arena.clear();
        let msg = Received {
            data,
            source,
            local,
            transport: Transport::Udp,
        };
        match hand_over(&*sink, Inbound::Message(msg)).await {
            Handed::Next => {}
            Handed::Reply(to, data) => {
                // A full socket buffer loses the answer as UDP loses any datagram.
                let _ = socket.try_send_to(&data, to);
            }
            Handed::Stop => return,
        }
    }
}

//! UDP listener: one receive loop per socket on a thread of its own, datagrams handed over as
//! exact-size `Bytes`.
//!
//! The socket is a plain blocking one: the receive thread sleeps in `recvfrom` and the kernel wakes
//! it when a datagram arrives, one system call per datagram. An async socket cost a readiness
//! poll and a second `recvfrom` (the one that says "would block") per datagram at moderate load,
//! and on the multi-threaded runtime a wake-up of the reactor's worker and another of the worker
//! running the loop (perf: futex wake-ups and task switches were a third of the daemon's CPU).
//! Sends come from the engine shards' threads; a send timeout bounds how long a full socket
//! buffer can hold a shard.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Delivery, Inbound, Received, Sink, TransportError};
use crate::config::model::Transport;

/// Largest datagram accepted (RFC 3261 18.1.1 allows up to 65 535 bytes on UDP).
const MAX_DATAGRAM: usize = 65_535;

/// Socket buffers asked for: a burst of a few thousand datagrams must fit while the shards are
/// busy (the kernel caps the request at `net.core.rmem_max`/`wmem_max`).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// How often the receive thread looks at its stop token while no datagram arrives.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Longest a send may wait for room in a full socket buffer before the datagram is dropped
/// (UDP loses datagrams; the transaction layer retransmits).
const SEND_TIMEOUT: Duration = Duration::from_millis(5);

/// Binds `address` and starts its receive loop on a thread of its own; returns the socket for
/// sending from anywhere.
pub(super) fn open(
    address: SocketAddr,
    sink: Arc<dyn Sink>,
    stop: CancellationToken,
) -> Result<Arc<UdpSocket>, TransportError> {
    let err = |source| TransportError::Bind {
        transport: Transport::Udp,
        address,
        source,
    };
    let socket = Arc::new(bind(address)?);
    let receiver = socket.clone();
    std::thread::Builder::new()
        .name(format!("callgate-udp-{}", address.port()))
        .spawn(move || receive_loop(&receiver, &*sink, &stop))
        .map_err(err)?;
    Ok(socket)
}

fn bind(address: SocketAddr) -> Result<UdpSocket, TransportError> {
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
    socket.set_read_timeout(Some(STOP_CHECK)).map_err(err)?;
    socket.set_write_timeout(Some(SEND_TIMEOUT)).map_err(err)?;
    Ok(socket.into())
}

fn receive_loop(socket: &UdpSocket, sink: &dyn Sink, stop: &CancellationToken) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    // Reused for every datagram; what is handed on is an exact-size copy: a slice of a shared
    // buffer would keep it alive for as long as any held call keeps its INVITE.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    while !stop.is_cancelled() {
        let (len, source) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            // The read timeout: look at the stop token again.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // ICMP port unreachable from an earlier send shows up here on Linux; keep serving.
            Err(e) => {
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        if stop.is_cancelled() {
            // Removed by a reload (or shutting down) while waiting: this socket answers nothing
            // more, and closes as this thread lets go of it.
            return;
        }
        let msg = Received {
            data: bytes::Bytes::copy_from_slice(&buf[..len]),
            source,
            local,
            transport: Transport::Udp,
        };
        match sink.deliver(Inbound::Message(msg)) {
            // A datagram never waits for a full queue (the dispatcher drops it instead).
            Delivery::Done | Delivery::Dropped | Delivery::Wait(_) => {}
            Delivery::Reply { to, data } => {
                // A full socket buffer loses the answer as UDP loses any datagram.
                let _ = socket.send_to(&data, to);
            }
            Delivery::Closed => return,
        }
    }
}

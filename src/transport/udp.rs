//! UDP listener: one receive loop per socket, datagrams handed over as zero-copy `Bytes`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Inbound, Received, TransportError};
use crate::config::model::Transport;

/// Largest datagram accepted (RFC 3261 18.1.1 allows up to 65 535 bytes on UDP).
const MAX_DATAGRAM: usize = 65_535;
/// Receive buffer carved into datagrams, so a datagram costs no allocation of its own.
const RECV_ARENA: usize = 256 * 1024;

pub(super) fn bind(address: SocketAddr) -> Result<UdpSocket, TransportError> {
    let err = |source| TransportError::Bind {
        transport: Transport::Udp,
        address,
        source,
    };
    let std_socket = std::net::UdpSocket::bind(address).map_err(err)?;
    std_socket.set_nonblocking(true).map_err(err)?;
    UdpSocket::from_std(std_socket).map_err(err)
}

pub(super) async fn receive_loop(
    socket: Arc<UdpSocket>,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut arena = BytesMut::with_capacity(RECV_ARENA);
    loop {
        if arena.capacity() - arena.len() < MAX_DATAGRAM {
            arena = BytesMut::with_capacity(RECV_ARENA);
        }
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
        let data = arena.split().freeze();
        let msg = Received {
            data,
            source,
            local,
            transport: Transport::Udp,
        };
        if inbound.send(Inbound::Message(msg)).await.is_err() {
            return;
        }
    }
}

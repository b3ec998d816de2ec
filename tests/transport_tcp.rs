//! TCP hardening against peers that hold resources: idle connections (unless a dialog holds
//! the peer), peers that stop reading, too many connections, slowloris header dribbling.
//! Each test binds a bare `Transports` on 127.0.0.1:0 with small limits and watches what it
//! hands its sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use callgate::config::model::{Listen, Transport};
use callgate::transport::{Delivery, Inbound, Sink, TransportError, TransportLimits, Transports};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

/// Longest wait for an event that must happen.
const WAIT: Duration = Duration::from_secs(5);

/// Hands every event to the test.
struct Events(mpsc::UnboundedSender<Inbound>);

impl Sink for Events {
    fn deliver(&self, ev: Inbound) -> Delivery {
        let _ = self.0.send(ev);
        Delivery::Done
    }
}

/// A bound TCP transport, its address and what it delivered.
struct Rig {
    transports: Arc<Transports>,
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Inbound>,
    _stop: tokio_util::sync::DropGuard,
}

impl Rig {
    async fn start(limits: TransportLimits) -> Rig {
        let (tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let listen = Listen {
            transport: Transport::Tcp,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            tls: None,
        };
        let transports = Transports::bind(&[listen], Arc::new(Events(tx)), limits, stop.clone())
            .await
            .expect("bind a loopback listener");
        let addr = transports.local_addr(Transport::Tcp).expect("tcp bound");
        Rig {
            transports,
            addr,
            events,
            _stop: stop.drop_guard(),
        }
    }

    /// A client that has sent one message, once the transport has it (so its connection is
    /// registered under the client's address).
    async fn client(&mut self) -> (TcpStream, SocketAddr) {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let me = stream.local_addr().expect("local address");
        stream.write_all(&options(me, 1)).await.expect("send");
        self.message_from(me).await;
        (stream, me)
    }

    /// Waits for the next message from `peer`; panics on its close or after [`WAIT`].
    async fn message_from(&mut self, peer: SocketAddr) {
        match self.next_about(peer, WAIT).await {
            Some(Inbound::Message(_)) => {}
            other => panic!("expected a message from {peer}, got {other:?}"),
        }
    }

    /// Waits up to `wait` for `Closed { peer }`; `false` when it did not come (or a message
    /// from `peer` came first).
    async fn closed(&mut self, peer: SocketAddr, wait: Duration) -> bool {
        matches!(
            self.next_about(peer, wait).await,
            Some(Inbound::Closed { .. })
        )
    }

    /// The next event about `peer` (events about other peers are skipped).
    async fn next_about(&mut self, peer: SocketAddr, wait: Duration) -> Option<Inbound> {
        let deadline = Instant::now() + wait;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()??;
            let about = match &ev {
                Inbound::Message(m) => m.source,
                Inbound::Closed { peer, .. } | Inbound::StreamError { peer } => *peer,
            };
            if about == peer {
                return Some(ev);
            }
        }
    }
}

fn limits(f: impl FnOnce(&mut TransportLimits)) -> TransportLimits {
    let mut l = TransportLimits {
        idle_timeout: Duration::from_secs(30),
        ..TransportLimits::default()
    };
    f(&mut l);
    l
}

fn options(from: SocketAddr, n: u32) -> Vec<u8> {
    format!(
        "OPTIONS sip:gate SIP/2.0\r\nVia: SIP/2.0/TCP {from};branch=z9hG4bK-t{n}\r\n\
         From: <sip:probe@{from}>;tag=t{n}\r\nTo: <sip:gate>\r\nCall-ID: t{n}@test\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn held_peer_survives_idle_timeouts_and_unheld_one_is_closed() {
    let idle = Duration::from_millis(200);
    let mut rig = Rig::start(limits(|l| l.idle_timeout = idle)).await;
    let (mut held, held_addr) = rig.client().await;
    let (_unheld, unheld_addr) = rig.client().await;
    rig.transports.hold(held_addr);
    rig.transports.hold(held_addr);
    let started = Instant::now();
    assert!(rig.closed(unheld_addr, WAIT).await, "unheld peer closed");
    assert!(started.elapsed() >= idle / 2, "closed by the idle timer");
    // Several idle periods of silence: what a held call looks like.
    tokio::time::sleep(4 * idle).await;
    held.write_all(&options(held_addr, 2)).await.expect("send");
    rig.message_from(held_addr).await;
    rig.transports.release(held_addr);
    assert!(
        !rig.closed(held_addr, 3 * idle).await,
        "still held by the second dialog"
    );
    rig.transports.release(held_addr);
    assert!(rig.closed(held_addr, WAIT).await, "closed once released");
}

#[tokio::test]
async fn write_that_does_not_complete_closes_the_connection() {
    let mut rig = Rig::start(limits(|l| {
        l.write_timeout = Duration::from_millis(300);
        l.send_queue = 64;
    }))
    .await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stream = socket.connect(rig.addr).await.expect("connect");
    let me = stream.local_addr().expect("local address");
    stream.write_all(&options(me, 1)).await.expect("send");
    rig.message_from(me).await;
    // Never read: 16 MiB cannot fit in the socket buffers, so a write blocks for good.
    let chunk = Bytes::from(vec![b'x'; 256 * 1024]);
    let queued = (0..64)
        .take_while(|_| {
            rig.transports
                .send(Transport::Tcp, me, chunk.clone())
                .is_ok()
        })
        .count();
    assert!(queued > 8, "queued {queued} chunks");
    assert!(rig.closed(me, WAIT).await, "closed by the write timeout");
}

#[tokio::test]
async fn connection_cap_closes_new_sockets_and_fails_new_outbound_sends() {
    let mut rig = Rig::start(limits(|l| l.max_connections = 2)).await;
    let (mut a, a_addr) = rig.client().await;
    let (_b, _) = rig.client().await;
    let mut c = TcpStream::connect(rig.addr)
        .await
        .expect("the kernel accepts");
    let mut byte = [0u8; 1];
    let read = timeout(WAIT, c.read(&mut byte))
        .await
        .expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "third connection refused");
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let far = elsewhere.local_addr().expect("local address");
    let refused = rig
        .transports
        .send(Transport::Tcp, far, Bytes::from_static(b"x"));
    assert!(
        matches!(
            refused,
            Err(TransportError::TooManyConnections { limit: 2, .. })
        ),
        "{refused:?}"
    );
    // The first two are untouched; closing one frees its place at once.
    a.write_all(&options(a_addr, 2)).await.expect("send");
    rig.message_from(a_addr).await;
    drop(a);
    assert!(rig.closed(a_addr, WAIT).await);
    let sent = rig
        .transports
        .send(Transport::Tcp, far, Bytes::from_static(b"hi"));
    assert!(sent.is_ok(), "{sent:?}");
    let (mut accepted, _) = timeout(WAIT, elsewhere.accept())
        .await
        .expect("connected")
        .expect("accept");
    let mut got = [0u8; 2];
    timeout(WAIT, accepted.read_exact(&mut got))
        .await
        .expect("delivered")
        .expect("read");
    assert_eq!(&got, b"hi");
}

#[tokio::test]
async fn slowloris_header_is_cut_at_the_deadline_and_a_normal_client_is_not() {
    let deadline = Duration::from_millis(500);
    let mut rig = Rig::start(limits(|l| l.header_timeout = deadline)).await;
    let mut slow = TcpStream::connect(rig.addr).await.expect("connect");
    let slow_addr = slow.local_addr().expect("local address");
    let mut normal = TcpStream::connect(rig.addr).await.expect("connect");
    let normal_addr = normal.local_addr().expect("local address");
    let slow_msg = options(slow_addr, 1);
    let started = Instant::now();
    let dribble = tokio::spawn(async move {
        for b in slow_msg {
            if slow.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let talk = tokio::spawn(async move {
        // Keep-alives past the deadline start no deadline; a message in two parts well within
        // it is fine.
        for _ in 0..6 {
            normal.write_all(b"\r\n\r\n").await.expect("ping");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let msg = options(normal_addr, 2);
        normal.write_all(&msg[..30]).await.expect("first part");
        tokio::time::sleep(deadline / 3).await;
        normal.write_all(&msg[30..]).await.expect("second part");
        normal
    });
    assert!(rig.closed(slow_addr, WAIT).await, "slow header cut");
    let took = started.elapsed();
    assert!(took >= deadline * 8 / 10, "cut after {took:?}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
    let _normal = talk.await.expect("normal client ran");
    rig.message_from(normal_addr).await;
    assert!(
        !rig.closed(normal_addr, deadline * 2).await,
        "normal client kept"
    );
    dribble.abort();
}

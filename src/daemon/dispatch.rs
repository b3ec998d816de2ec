//! The receive side's dispatcher: every message the transport receives is parsed here, once, and
//! queued on the engine shard that owns it ([`ShardMap`] decides which). Connection events reach
//! every shard, since any of them may have calls on that connection.
//!
//! Out-of-dialog OPTIONS is answered right here, statelessly ([`engine::options`]): it needs no
//! shard's state, and a keep-alive must not queue behind a flood of calls. So is REGISTER
//! ([`engine::registration`]): its state is shared by every shard anyway. While the daemon drains
//! (the shared draining flag, set when SIGTERM's drain starts) it gets 503, so load balancers move
//! away. Under overload a
//! datagram whose shard queue is full is dropped and counted (its sender retransmits, RFC 3261
//! 17); a stream waits instead, since TCP senders do not retransmit.
//!
//! Order: one receive task per socket or connection hands messages over in arrival order, and a
//! shard handles its queue in order, so what one peer sends about one call is seen in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::driver::ShardEvent;
use crate::admin::{Direction, Metrics};
use crate::b2bua::Dest;
use crate::config::model::Transport;
use crate::engine::options::Mode;
use crate::engine::registration::Front;
use crate::engine::{self, shard::ShardMap};
use crate::sip::ids::is_trunk_branch;
use crate::sip::{Message, Method, Response};
use crate::transport::{Delivery, Inbound, Sink};

/// Parses and routes received messages to the shards' queues.
pub struct Dispatcher {
    map: ShardMap,
    queues: Vec<mpsc::Sender<ShardEvent>>,
    metrics: Arc<Metrics>,
    draining: Arc<AtomicBool>,
    /// Answers REGISTERs; `None` sends them to a shard like any request (tests).
    registrar: Option<Front>,
    /// Responses to the trunk driver's REGISTERs and OPTIONS (branch marker `cgt-`).
    trunks: Option<mpsc::Sender<TrunkResponse>>,
}

/// A response for the trunk driver, with its source (believed only from the trunk's IP).
#[derive(Debug)]
pub struct TrunkResponse {
    /// The response.
    pub response: Response,
    /// Where it came from.
    pub source: SocketAddr,
}

impl Dispatcher {
    /// A dispatcher over one queue per shard (`queues.len()` shards). `draining` is set by the
    /// daemon when its drain starts. `trunks` takes the responses to the trunk driver's requests
    /// (`None`: they go to a shard, which drops them as strays).
    pub fn new(
        queues: Vec<mpsc::Sender<ShardEvent>>,
        metrics: Arc<Metrics>,
        draining: Arc<AtomicBool>,
        registrar: Option<Front>,
        trunks: Option<mpsc::Sender<TrunkResponse>>,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            map: ShardMap::new(queues.len()),
            queues,
            metrics,
            draining,
            registrar,
            trunks,
        })
    }

    fn mode(&self) -> Mode {
        // Relaxed: one flag, no other memory published through it; an OPTIONS racing the
        // drain's first instant may still get 200.
        if self.draining.load(Ordering::Relaxed) {
            Mode::Draining
        } else {
            Mode::Serving
        }
    }

    /// Queues `ev` on `shard`; when the queue is full a datagram (`drop_when_full`) is dropped,
    /// anything else waits.
    fn queue(&self, shard: usize, ev: ShardEvent, drop_when_full: bool) -> Delivery {
        let Some(tx) = self.queues.get(shard) else {
            return Delivery::Closed;
        };
        match tx.try_send(ev) {
            Ok(()) => Delivery::Done,
            Err(TrySendError::Full(_)) if drop_when_full => {
                self.metrics.shard_queue_drop();
                Delivery::Dropped
            }
            Err(TrySendError::Full(ev)) => {
                let tx = tx.clone();
                Delivery::Wait(Box::pin(async move { tx.send(ev).await.is_ok() }))
            }
            Err(TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    /// Hands a response to the trunk driver; dropped when its queue is full or there is none
    /// (its transaction retransmits the request, or the probe counts a miss).
    fn to_trunks(&self, ev: TrunkResponse) -> Delivery {
        let Some(tx) = &self.trunks else {
            return Delivery::Dropped;
        };
        if tx.try_send(ev).is_ok() {
            Delivery::Done
        } else {
            Delivery::Dropped
        }
    }

    fn broadcast(&self, make: impl Fn() -> ShardEvent) -> Delivery {
        let mut waiting = Vec::new();
        for tx in &self.queues {
            match tx.try_send(make()) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(ev)) => waiting.push((tx.clone(), ev)),
            }
        }
        if waiting.is_empty() {
            return Delivery::Done;
        }
        Delivery::Wait(Box::pin(async move {
            for (tx, ev) in waiting {
                let _ = tx.send(ev).await;
            }
            true
        }))
    }
}

impl Sink for Dispatcher {
    fn deliver(&self, ev: Inbound) -> Delivery {
        match ev {
            Inbound::Message(m) => {
                let source = Dest {
                    transport: m.transport,
                    addr: m.source,
                };
                let datagram = m.transport == Transport::Udp;
                // `Bytes` clones share the buffer: a refused message keeps its bytes for the 400.
                match engine::parse(m.data.clone(), m.transport) {
                    Ok(Message::Request(req)) if engine::options::owns(&req) => {
                        self.metrics.sip_request("OPTIONS", Direction::In);
                        let (to, data, status) =
                            engine::options::answer_in(req, source, self.mode());
                        self.metrics.sip_response(status, Direction::Out);
                        Delivery::Reply { to: to.addr, data }
                    }
                    Ok(Message::Response(response)) if is_trunk_response(&response) => {
                        let status = response.status().as_u16();
                        self.metrics.sip_response(status, Direction::In);
                        let source = m.source;
                        self.to_trunks(TrunkResponse { response, source })
                    }
                    Ok(Message::Request(req)) if *req.method() == Method::Register => {
                        match &self.registrar {
                            Some(front) => {
                                let (to, data) = front.answer(req, source, Instant::now());
                                Delivery::Reply { to: to.addr, data }
                            }
                            None => {
                                let msg = Message::Request(req);
                                let shard = self.map.shard_of(&msg);
                                self.queue(shard, ShardEvent::Message { msg, source }, datagram)
                            }
                        }
                    }
                    Ok(msg) => {
                        let shard = self.map.shard_of(&msg);
                        self.queue(shard, ShardEvent::Message { msg, source }, datagram)
                    }
                    Err(error) => {
                        let shard = self.map.shard_of_source(m.source);
                        let data = m.data;
                        let ev = ShardEvent::Malformed {
                            data,
                            source,
                            error,
                        };
                        self.queue(shard, ev, datagram)
                    }
                }
            }
            Inbound::Closed {
                peer,
                transport,
                at,
            } => {
                let peer = Dest {
                    transport,
                    addr: peer,
                };
                self.broadcast(|| ShardEvent::Closed { peer, at })
            }
            Inbound::StreamError { peer } => self.queue(
                self.map.shard_of_source(peer),
                ShardEvent::StreamError,
                false,
            ),
        }
    }
}

fn is_trunk_response(r: &Response) -> bool {
    r.parts()
        .branch()
        .is_some_and(|b| is_trunk_branch(b.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Received;
    use bytes::Bytes;

    const PBX: &str = "127.0.0.11:5060";

    fn message(text: &str, transport: Transport) -> Inbound {
        Inbound::Message(Received {
            data: Bytes::from(text.replace('\n', "\r\n")),
            source: PBX.parse().expect("address"),
            local: "127.0.0.1:5060".parse().expect("address"),
            transport,
        })
    }

    fn request(method: &str, call_id: &str, transport: Transport) -> Inbound {
        message(
            &format!(
                "{method} sip:1@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bK{call_id}\nFrom: <sip:a@x>;tag=f\nTo: <sip:b@y>\nCall-ID: {call_id}\nCSeq: 1 {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
            ),
            transport,
        )
    }

    fn dispatcher(
        shards: usize,
        depth: usize,
    ) -> (
        Arc<Dispatcher>,
        Vec<mpsc::Receiver<ShardEvent>>,
        Arc<Metrics>,
    ) {
        let metrics = Arc::new(Metrics::new());
        let (queues, rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::channel(depth)).unzip();
        let draining = Arc::new(AtomicBool::new(false));
        (
            Dispatcher::new(queues, metrics.clone(), draining, None, None),
            rxs,
            metrics,
        )
    }

    fn drops(metrics: &Metrics) -> bool {
        metrics
            .encode(Vec::new())
            .expect("metrics encode")
            .lines()
            .any(|l| l == "callgate_shard_queue_drops_total 1")
    }

    #[test]
    fn out_of_dialog_options_is_answered_without_a_shard() {
        let (d, mut rxs, _) = dispatcher(1, 4);
        match d.deliver(request("OPTIONS", "o1", Transport::Udp)) {
            Delivery::Reply { to, data } => {
                assert_eq!(to, PBX.parse().expect("address"));
                assert!(data.starts_with(b"SIP/2.0 200 OK\r\n"));
            }
            _ => panic!("OPTIONS not answered on the receive side"),
        }
        assert!(rxs[0].try_recv().is_err(), "nothing reached the shard");
    }

    #[test]
    fn out_of_dialog_options_gets_503_once_the_drain_started() {
        let metrics = Arc::new(Metrics::new());
        let (tx, mut rx) = mpsc::channel(4);
        let draining = Arc::new(AtomicBool::new(false));
        let d = Dispatcher::new(vec![tx], metrics, draining.clone(), None, None);
        draining.store(true, Ordering::Relaxed);
        match d.deliver(request("OPTIONS", "o2", Transport::Udp)) {
            Delivery::Reply { data, .. } => {
                assert!(data.starts_with(b"SIP/2.0 503 Service Unavailable\r\n"));
                assert!(memchr::memmem::find(&data, b"\r\nRetry-After: ").is_some());
            }
            _ => panic!("OPTIONS not answered on the receive side"),
        }
        assert!(rx.try_recv().is_err(), "nothing reached the shard");
    }

    #[test]
    fn full_shard_queue_drops_a_datagram_and_counts_it() {
        let (d, mut rxs, metrics) = dispatcher(1, 1);
        assert!(matches!(
            d.deliver(request("INVITE", "c1", Transport::Udp)),
            Delivery::Done
        ));
        assert!(matches!(
            d.deliver(request("INVITE", "c2", Transport::Udp)),
            Delivery::Dropped
        ));
        assert!(drops(&metrics));
        assert!(matches!(rxs[0].try_recv(), Ok(ShardEvent::Message { .. })));
        assert!(rxs[0].try_recv().is_err());
    }

    #[tokio::test]
    async fn full_shard_queue_makes_a_stream_wait_and_then_delivers() {
        let (d, mut rxs, metrics) = dispatcher(1, 1);
        assert!(matches!(
            d.deliver(request("INVITE", "t1", Transport::Tcp)),
            Delivery::Done
        ));
        let Delivery::Wait(wait) = d.deliver(request("INVITE", "t2", Transport::Tcp)) else {
            panic!("a stream message must wait, not be dropped");
        };
        assert!(!drops(&metrics));
        let waiting = tokio::spawn(wait);
        assert!(matches!(
            rxs[0].recv().await,
            Some(ShardEvent::Message { .. })
        ));
        assert!(
            waiting.await.expect("hand-over task"),
            "queued once there was room"
        );
        assert!(matches!(
            rxs[0].recv().await,
            Some(ShardEvent::Message { .. })
        ));
    }

    #[test]
    fn a_closed_connection_reaches_every_shard() {
        let (d, mut rxs, _) = dispatcher(3, 4);
        let peer = PBX.parse().expect("address");
        let at = std::time::Instant::now();
        let transport = Transport::Tls;
        assert!(matches!(
            d.deliver(Inbound::Closed {
                peer,
                transport,
                at
            }),
            Delivery::Done
        ));
        let closed = Dest {
            transport,
            addr: peer,
        };
        for rx in &mut rxs {
            assert!(matches!(rx.try_recv(), Ok(ShardEvent::Closed { peer: p, .. }) if p == closed));
        }
    }

    #[test]
    fn responses_to_trunk_requests_go_to_the_trunk_driver() {
        let metrics = Arc::new(Metrics::new());
        let (tx, mut shard) = mpsc::channel(4);
        let (trunk_tx, mut trunks) = mpsc::channel(4);
        let draining = Arc::new(AtomicBool::new(false));
        let d = Dispatcher::new(vec![tx], metrics, draining, None, Some(trunk_tx));
        let text = "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcgt-00112233\nFrom: <sip:a@x>;tag=f\nTo: <sip:a@x>;tag=t\nCall-ID: cgt-1@e2e\nCSeq: 1 REGISTER\nContent-Length: 0\n\n";
        assert!(matches!(
            d.deliver(message(text, Transport::Udp)),
            Delivery::Done
        ));
        let got = trunks.try_recv().expect("the trunk driver got it");
        assert_eq!(got.source, PBX.parse().expect("address"));
        assert!(shard.try_recv().is_err(), "no shard saw it");
    }

    #[test]
    fn garbage_goes_to_one_shard_as_malformed() {
        let (d, mut rxs, _) = dispatcher(2, 4);
        assert!(matches!(
            d.deliver(message("NOT SIP AT ALL\n\n", Transport::Udp)),
            Delivery::Done
        ));
        let got: Vec<_> = rxs.iter_mut().filter_map(|rx| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], ShardEvent::Malformed { .. }));
    }
}

//! The receive side's dispatcher: every message the transport receives is parsed here, once, and
//! queued on the engine shard that owns it ([`ShardMap`] decides which). Connection events reach
//! every shard, since any of them may have calls on that connection.
//!
//! Out-of-dialog OPTIONS is answered right here, statelessly ([`engine::options`]): it needs no
//! shard's state, and a keep-alive must not queue behind a flood of calls. Under overload a
//! datagram whose shard queue is full is dropped and counted (its sender retransmits, RFC 3261
//! 17); a stream waits instead, since TCP senders do not retransmit.
//!
//! Order: one receive task per socket or connection hands messages over in arrival order, and a
//! shard handles its queue in order, so what one peer sends about one call is seen in order.

use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::driver::ShardEvent;
use crate::admin::{Direction, Metrics};
use crate::b2bua::Dest;
use crate::config::model::Transport;
use crate::engine::{self, shard::ShardMap};
use crate::sip::Message;
use crate::transport::{Delivery, Inbound, Sink};

/// Parses and routes received messages to the shards' queues.
pub struct Dispatcher {
    map: ShardMap,
    queues: Vec<mpsc::Sender<ShardEvent>>,
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    /// A dispatcher over one queue per shard (`queues.len()` shards).
    pub fn new(queues: Vec<mpsc::Sender<ShardEvent>>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Dispatcher {
            map: ShardMap::new(queues.len()),
            queues,
            metrics,
        })
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
                        let (to, data, status) = engine::options::answer(req, source);
                        self.metrics.sip_response(status, Direction::Out);
                        Delivery::Reply { to: to.addr, data }
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
            Inbound::Closed { peer } => self.broadcast(|| ShardEvent::Closed { peer }),
            Inbound::StreamError { peer } => self.queue(
                self.map.shard_of_source(peer),
                ShardEvent::StreamError,
                false,
            ),
        }
    }
}

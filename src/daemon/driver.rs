//! The driver: one tokio task that owns an [`Engine`] and feeds it what the transport received,
//! the timers that fired and the operator's commands, then sends what the engine queued. It reads
//! the clock once per wake-up and arms a single timer; all decisions are the engine's.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::engine::Engine;
use crate::admin::CallView;
use crate::b2bua::Dest;
use crate::transport::{Inbound, Transports};

/// Requests from the admin API and the shutdown path, answered by the driver.
#[derive(Debug)]
pub enum Command {
    /// The calls in progress.
    Calls(oneshot::Sender<Vec<CallView>>),
    /// End one call (BYE both legs); answers whether it existed.
    EndCall(u64, oneshot::Sender<bool>),
    /// Stop admitting and end every call.
    Drain,
    /// Number of calls in progress.
    Count(oneshot::Sender<usize>),
    /// Calls in progress plus teardown requests awaiting their final response.
    Busy(oneshot::Sender<usize>),
}

/// The driver task's state.
pub struct Driver {
    engine: Engine,
    transports: Arc<Transports>,
    sends: Vec<(Dest, Bytes)>,
}

impl Driver {
    /// A driver sending through `transports`.
    pub fn new(engine: Engine, transports: Arc<Transports>) -> Self {
        Driver {
            engine,
            transports,
            sends: Vec::new(),
        }
    }

    /// Runs until both channels close.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            let deadline = self.engine.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = inbound.recv() => match ev {
                    Some(ev) => {
                        self.on_inbound(ev);
                        // Drain what is already queued before re-arming the timer: cheaper under load.
                        while let Ok(ev) = inbound.try_recv() {
                            self.on_inbound(ev);
                        }
                    }
                    None => return,
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                _ = sleep => self.engine.on_timeouts(now()),
            }
            self.send_all();
        }
    }

    fn on_inbound(&mut self, ev: Inbound) {
        let now = now();
        match ev {
            Inbound::Message(m) => {
                let source = Dest {
                    transport: m.transport,
                    addr: m.source,
                };
                self.engine.on_received(now, m.data, source);
            }
            Inbound::Closed { peer } => self.engine.on_closed(now, peer),
            Inbound::StreamError { .. } => self.engine.on_stream_error(),
        }
        self.send_all();
    }

    fn on_command(&mut self, cmd: Command) {
        let now = now();
        match cmd {
            Command::Calls(reply) => {
                let _ = reply.send(self.engine.call_views());
            }
            Command::EndCall(id, reply) => {
                let _ = reply.send(self.engine.end_call(now, id));
            }
            Command::Drain => self.engine.drain(now),
            Command::Busy(reply) => {
                let _ = reply.send(self.engine.busy());
            }
            Command::Count(reply) => {
                let _ = reply.send(self.engine.calls());
            }
        }
    }

    fn send_all(&mut self) {
        self.engine.take_outbox(&mut self.sends);
        for (dest, bytes) in self.sends.drain(..) {
            if let Err(e) = self.transports.send(dest.transport, dest.addr, bytes) {
                tracing::debug!(error = %e, "send failed");
            }
        }
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

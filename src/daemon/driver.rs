//! The driver of one engine shard: a thread of its own with a single-threaded tokio runtime, that
//! owns an [`Engine`] and feeds it what the dispatcher queued, the timers that fired and the
//! operator's commands, then sends what the engine queued. All decisions are the engine's.
//!
//! Bounded work per wake-up: each round handles due timers first, then every queued command, then
//! at most [`BATCH`] messages, and goes round again; so a flood of datagrams delays a timer, an
//! admin request or the drain by one batch, not by the whole backlog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::cluster::ShardLink;
use super::health::{Health, MAX_SLEEP};
use crate::admin::CallView;
use crate::b2bua::Dest;
use crate::engine::Engine;
use crate::sip::{Message, ParseError};
use crate::transport::Transports;

/// Messages handled per round before timers and commands get their turn again.
pub const BATCH: usize = 128;

/// What the dispatcher queues for a shard.
#[derive(Debug)]
pub enum ShardEvent {
    /// A parsed message and its source.
    Message {
        /// The message.
        msg: Message,
        /// Where it came from.
        source: Dest,
    },
    /// Bytes the parser refused.
    Malformed {
        /// The bytes.
        data: Bytes,
        /// Where they came from.
        source: Dest,
        /// Why they were refused.
        error: ParseError,
    },
    /// A connection closed (every shard gets this).
    Closed {
        /// Its peer and transport (tcp or tls).
        peer: Dest,
        /// When it stopped taking sends.
        at: Instant,
    },
    /// A stream could not be framed.
    StreamError,
}

/// Requests from the admin API and the shutdown path, answered by a shard.
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
    /// Sizes of every table (leak checks).
    Sizes(oneshot::Sender<crate::engine::TableSizes>),
}

/// One shard's driver.
pub struct Driver {
    shard: usize,
    engine: Engine,
    transports: Arc<Transports>,
    health: Arc<Health>,
    sends: Vec<crate::engine::Outgoing>,
    flows: Vec<(SocketAddr, bool)>,
    /// Call detail records go to the CDR writer.
    cdr: Option<std::sync::mpsc::Sender<crate::cdr::writer::Msg>>,
    #[allow(clippy::vec_box)] // records travel on as boxes: one pointer each through the channel
    records: Vec<Box<crate::cdr::CallRecord>>,
    /// This shard's link to the shared counters.
    cluster: Option<ShardLink>,
    admissions: Vec<crate::b2bua::AdmitRequest>,
}

/// The queues a shard reads.
pub struct Inputs {
    /// Messages and connection events from the dispatcher.
    pub events: mpsc::Receiver<ShardEvent>,
    /// Operator commands.
    pub commands: mpsc::Receiver<Command>,
    /// Cancelled when the daemon stops.
    pub stop: CancellationToken,
    /// The shared counter backend's answers (never ready without one).
    pub answers: mpsc::UnboundedReceiver<(u64, Vec<crate::b2bua::PartAnswer>)>,
}

impl Driver {
    /// The driver of shard `shard`, sending through `transports`.
    pub fn new(
        shard: usize,
        engine: Engine,
        transports: Arc<Transports>,
        health: Arc<Health>,
    ) -> Self {
        Driver {
            shard,
            engine,
            transports,
            health,
            sends: Vec::new(),
            flows: Vec::new(),
            cdr: None,
            records: Vec::new(),
            cluster: None,
            admissions: Vec::new(),
        }
    }

    /// The same driver admitting through the shared counters over `link`, whose answers it gets
    /// on the receiver paired with the link's.
    pub fn with_cluster(mut self, cluster: Option<ShardLink>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The same driver sending call detail records to `cdr`.
    pub fn with_cdr(
        mut self,
        cdr: Option<std::sync::mpsc::Sender<crate::cdr::writer::Msg>>,
    ) -> Self {
        self.cdr = cdr;
        self
    }

    /// Runs the shard on a thread of its own until its queues close or `stop` is cancelled.
    pub fn spawn(self, inputs: Inputs) -> std::io::Result<std::thread::JoinHandle<()>> {
        let name = format!("callgate-shard-{}", self.shard);
        std::thread::Builder::new().name(name).spawn(move || {
            let mut runtime = tokio::runtime::Builder::new_current_thread();
            runtime.enable_time();
            if self.cluster.is_some() {
                // The shard's own Redis connection is driven here.
                runtime.enable_io();
            }
            let runtime = runtime.build();
            match runtime {
                Ok(rt) => rt.block_on(self.run(inputs)),
                Err(e) => tracing::error!(error = %e, "cannot start a shard's runtime"),
            }
        })
    }

    async fn run(mut self, mut inputs: Inputs) {
        if let Some(link) = &self.cluster {
            link.install();
        }
        loop {
            let now = now();
            self.health.beat(self.shard, now);
            if inputs.stop.is_cancelled() {
                return;
            }
            if self.engine.next_deadline().is_some_and(|at| at <= now) {
                self.engine.on_timeouts(now);
            }
            if !self.take_commands(&mut inputs.commands) {
                return;
            }
            while let Ok((id, answers)) = inputs.answers.try_recv() {
                self.engine.on_admitted(now, id, answers);
            }
            let (handled, open) = self.take_events(&mut inputs.events, now);
            self.send_all();
            if !open {
                return;
            }
            if handled == BATCH {
                if self.cluster.is_some() {
                    // The Redis tasks beside this loop run only when it yields.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            let wake = self
                .engine
                .next_deadline()
                .map_or(now + MAX_SLEEP, |at| at.min(now + MAX_SLEEP));
            tokio::select! {
                biased;
                _ = inputs.stop.cancelled() => return,
                ev = inputs.events.recv() => match ev {
                    Some(ev) => self.on_event(self::now(), ev),
                    None => return,
                },
                cmd = inputs.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                Some((id, answers)) = inputs.answers.recv() => {
                    self.engine.on_admitted(self::now(), id, answers);
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.send_all();
        }
    }

    /// Every queued command; false once the command queue is closed.
    fn take_commands(&mut self, commands: &mut mpsc::Receiver<Command>) -> bool {
        loop {
            match commands.try_recv() {
                Ok(cmd) => self.on_command(cmd),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Up to [`BATCH`] queued events; returns how many, and false once the queue is closed.
    fn take_events(
        &mut self,
        events: &mut mpsc::Receiver<ShardEvent>,
        now: Instant,
    ) -> (usize, bool) {
        let mut handled = 0;
        while handled < BATCH {
            match events.try_recv() {
                Ok(ev) => self.on_event(now, ev),
                Err(TryRecvError::Empty) => return (handled, true),
                Err(TryRecvError::Disconnected) => return (handled, false),
            }
            handled += 1;
        }
        (handled, true)
    }

    fn on_event(&mut self, now: Instant, ev: ShardEvent) {
        match ev {
            ShardEvent::Message { msg, source } => self.engine.on_message(now, msg, source),
            ShardEvent::Malformed {
                data,
                source,
                error,
            } => self.engine.on_malformed(&data, source, &error),
            ShardEvent::Closed { peer, at } => self.engine.on_closed(now, peer, at),
            ShardEvent::StreamError => self.engine.on_stream_error(),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = now();
        match cmd {
            Command::Calls(reply) => {
                let _ = reply.send(self.engine.call_views(now, unix_now()));
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
            Command::Sizes(reply) => {
                let _ = reply.send(self.engine.sizes());
            }
        }
    }

    /// Sends what the engine queued. A TCP send that fails (no connection possible, its queue
    /// full, the connection cap) fails its transaction at once: over TCP nothing retransmits,
    /// and waiting for Timer F would lose a healthy call 32 s later. A UDP datagram the socket
    /// refused is left to the retransmission timers, as a datagram lost on the way would be.
    fn send_all(&mut self) {
        self.engine.take_admissions(&mut self.admissions);
        for request in self.admissions.drain(..) {
            match &self.cluster {
                Some(link) => link.ask(request),
                // Only a shared backend asks, and it always comes with its node.
                None => tracing::error!(request = request.id, "admission asked without a cluster"),
            }
        }
        self.engine.take_records(&mut self.records);
        for r in self.records.drain(..) {
            if let Some(tx) = &self.cdr {
                let _ = tx.send(crate::cdr::writer::Msg::Record(r));
            }
        }
        let mut failed = Vec::new();
        loop {
            self.engine.take_flows(&mut self.flows);
            // A TCP flow that carries dialogs stays open however idle (held calls are silent).
            for (peer, held) in self.flows.drain(..) {
                if held {
                    self.transports.hold(peer);
                } else {
                    self.transports.release(peer);
                }
            }
            self.engine.take_sends(&mut self.sends);
            if self.sends.is_empty() {
                return;
            }
            for o in self.sends.drain(..) {
                let tcp = o.dest.transport.is_stream();
                if let Err(e) = self.transports.send(o.dest.transport, o.dest.addr, o.bytes) {
                    tracing::debug!(error = %e, "send failed");
                    failed.extend(o.key.filter(|_| tcp));
                }
            }
            let now = now();
            for key in failed.drain(..) {
                self.engine.on_send_failed(now, &key);
            }
        }
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

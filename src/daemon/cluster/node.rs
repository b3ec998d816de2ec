//! This node's side of the shared counters in the running daemon: the [`CounterBackend`] the
//! limiter releases through, the shards' admission requests, the heartbeat, and the cluster-wide
//! usage `/counters` shows.
//!
//! Each engine shard admits and releases over a connection of its own, driven by its own
//! runtime ([`ShardLink`]): the round trip is awaited by a task beside the shard's loop, so a
//! slow Redis never blocks it, and no command crosses threads (on a busy machine the thread
//! wake-ups cost more than Redis). The admissions and the releases of one turn of a shard go
//! out together, one script run each (under load a run carries several calls and each counter
//! is written once per run). The heartbeat, the usage reader and releases from elsewhere use the
//! main runtime's connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::store::{lock, Admission, RedisCounters, ADMIT_BATCH};
use crate::admin::Metrics;
use crate::b2bua::{AdmitRequest, PartAnswer};
use crate::cluster::{Alternative, ClusterError, CounterKeys};
use crate::limits::{CallKey, CounterBackend, Generation, MemoryBackend, Path, Refusal};

/// How long a shard's admission may take in all (joining again after a lost lease included)
/// before it counts as a backend failure.
const ADMIT_BOUND: Duration = Duration::from_secs(1);

/// How often `/counters`' cluster-wide usage is read from Redis.
const USAGE_EVERY: Duration = Duration::from_millis(500);

/// The answers of a shard's admission requests: (request id, one answer per part).
pub type Answers = mpsc::UnboundedSender<(u64, Vec<PartAnswer>)>;

/// This node in the cluster. Shared by the shards, the limiter and the admin API.
#[derive(Debug)]
pub struct ClusterNode {
    counters: Arc<RedisCounters>,
    metrics: Arc<Metrics>,
    releases: mpsc::UnboundedSender<CallKey>,
    /// Releases handed over and not yet answered by Redis (shutdown waits for them).
    in_flight: Arc<AtomicUsize>,
    /// Counter names of the generation admitted on last (rebuilt after a reload).
    keys: ArcSwapOption<KeysOf>,
    /// Cluster-wide units per counter (`level:name:kind`), read every [`USAGE_EVERY`]; `None`
    /// while Redis does not answer.
    usage: Mutex<Option<HashMap<String, u64>>>,
    /// Failed admissions: a Redis outage must not write a line per call.
    admit_log: Mutex<crate::log_limit::LogLimit>,
}

#[derive(Debug)]
struct KeysOf {
    generation: Weak<Generation>,
    keys: CounterKeys,
}

impl ClusterNode {
    /// Starts this node's tasks on the current runtime: the heartbeat, the release queue and the
    /// usage reader, all stopped by `stop`.
    pub fn start(
        counters: RedisCounters,
        metrics: Arc<Metrics>,
        stop: &CancellationToken,
    ) -> Arc<ClusterNode> {
        let counters = Arc::new(counters);
        let (releases, rx) = mpsc::unbounded_channel();
        let node = Arc::new(ClusterNode {
            counters: counters.clone(),
            metrics,
            releases,
            in_flight: Arc::new(AtomicUsize::new(0)),
            keys: ArcSwapOption::empty(),
            usage: Mutex::new(None),
            admit_log: Mutex::new(Default::default()),
        });
        counters.spawn_heartbeat(stop.clone());
        tokio::spawn(release_queue(node.clone(), rx, stop.clone()));
        tokio::spawn(read_usage(Arc::downgrade(&node), stop.clone()));
        node
    }

    /// The limiter's backend over this node.
    pub fn backend(self: &Arc<Self>) -> Arc<dyn CounterBackend> {
        Arc::new(ClusterBackend {
            node: Arc::downgrade(self),
        })
    }

    /// The Redis client.
    pub fn counters(&self) -> &Arc<RedisCounters> {
        &self.counters
    }

    /// The link of one engine shard: its own connection, used on the shard's runtime, and the
    /// queue its answers go to.
    pub fn shard_link(self: &Arc<Self>, answers: Answers) -> Result<ShardLink, ClusterError> {
        Ok(ShardLink {
            node: self.clone(),
            conn: self.counters.connection()?,
            answers,
            asked: TurnBatch::default(),
        })
    }

    /// Admits one shard's requests of a turn together ([`ADMIT_BATCH`] calls per script run) and
    /// sends each request's answers to the shard.
    async fn admit_batch(&self, conn: &ConnectionManager, batch: Vec<Asked>, answers: &Answers) {
        // A part without any way to admit is answered apart, so it cannot fail the others.
        let flat: Vec<(CallKey, &[Alternative])> = batch
            .iter()
            .flat_map(|(_, parts)| parts.iter().map(|(key, alts)| (*key, alts.as_slice())))
            .filter(|(_, alts)| !alts.is_empty())
            .collect();
        let mut admitted = Vec::with_capacity(flat.len());
        for chunk in flat.chunks(ADMIT_BATCH) {
            admitted.extend(self.admit_chunk(conn, chunk).await);
        }
        let mut admitted = admitted.into_iter();
        for (id, parts) in &batch {
            let out = parts
                .iter()
                .map(|(_, alts)| {
                    let answer = if alts.is_empty() {
                        None
                    } else {
                        admitted.next()
                    };
                    answer.unwrap_or_else(|| {
                        PartAnswer::Failed(ClusterError::NoAlternative.to_string())
                    })
                })
                .collect();
            let _ = answers.send((*id, out));
        }
    }

    async fn admit_chunk(
        &self,
        conn: &ConnectionManager,
        calls: &[(CallKey, &[Alternative])],
    ) -> Vec<PartAnswer> {
        let now = tokio::time::Instant::now();
        let result = if self.counters.last_renewal().is_some() && !self.counters.can_admit(now) {
            Err("lease not renewed for half a lease".to_owned())
        } else {
            tokio::time::timeout(ADMIT_BOUND, self.counters.admit_many_on(conn, calls))
                .await
                .unwrap_or(Err(ClusterError::Timeout {
                    op: "admit",
                    after: ADMIT_BOUND,
                }))
                .map_err(|error| {
                    self.log_admit_failure(&error);
                    // The script may have run before the failure: give back whatever it took.
                    for (key, _) in calls {
                        self.release(*key);
                    }
                    error.to_string()
                })
        };
        match result {
            Ok(admissions) => admissions
                .into_iter()
                .map(|a| match a {
                    Admission::Admitted { index } => PartAnswer::Admitted { index },
                    Admission::Refused(refusal) => PartAnswer::Refused(refusal),
                })
                .collect(),
            Err(error) => calls
                .iter()
                .map(|_| {
                    self.metrics.cluster_backend_error();
                    PartAnswer::Failed(error.clone())
                })
                .collect(),
        }
    }

    /// A failed admission's log line, at most ten a second with a count of the suppressed.
    fn log_admit_failure(&self, error: &ClusterError) {
        let allowed = self
            .admit_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .allow(std::time::Instant::now());
        if let Some(suppressed) = allowed {
            tracing::warn!(%error, suppressed, "counter backend: admission failed");
        }
    }

    /// The alternatives of `paths`, named with `generation`'s counter keys.
    fn alternatives(&self, generation: &Arc<Generation>, paths: &[Path]) -> Vec<Alternative> {
        let cached = self.keys.load();
        let keys = match cached.as_ref() {
            Some(k) if std::ptr::eq(k.generation.as_ptr(), Arc::as_ptr(generation)) => {
                Arc::clone(k)
            }
            _ => {
                let fresh = Arc::new(KeysOf {
                    generation: Arc::downgrade(generation),
                    keys: CounterKeys::new(generation),
                });
                self.keys.store(Some(fresh.clone()));
                fresh
            }
        };
        paths
            .iter()
            .map(|p| keys.keys.alternative(generation, p))
            .collect()
    }

    /// A call admitted on this node's counters while Redis could not answer: remembered with the
    /// calls to republish, so Redis counts it at the next successful heartbeat.
    fn adopt(&self, generation: &Generation, call: CallKey, path: &Path) {
        let cached = self.keys.load();
        let counters = match cached.as_ref() {
            Some(k) if std::ptr::eq(k.generation.as_ptr(), generation) => {
                k.keys.alternative(generation, path)
            }
            _ => CounterKeys::new(generation).alternative(generation, path),
        };
        self.counters
            .adopt(call, counters.into_iter().map(|c| c.key).collect());
    }

    /// Sends the release of `call` (idempotent in Redis; retried by the heartbeat on error): on
    /// the shard's own connection when it comes from a shard's thread, together with the other
    /// releases of the shard's turn (one script run for all), else through the main runtime's
    /// queue.
    fn release(&self, call: CallKey) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let local = SHARD_CONN.with(|c| c.borrow().clone());
        if let (Some(shard), Ok(_)) = (local, Handle::try_current()) {
            if shard.releases.push(call) {
                let (counters, in_flight) = (self.counters.clone(), self.in_flight.clone());
                shard.releases.send_after_turn(move |batch| async move {
                    if let Err(error) = counters.release_many_on(&shard.conn, &batch).await {
                        tracing::debug!(%error, "counter backend: releases queued for retry");
                    }
                    in_flight.fetch_sub(batch.len(), Ordering::Relaxed);
                });
            }
            return;
        }
        if self.releases.send(call).is_err() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Waits up to `within` for the queued releases to reach Redis (shutdown).
    pub async fn flush(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.in_flight.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Cluster-wide units per counter wire name, as last read; `None` while Redis is unreachable.
    pub fn usage(&self) -> Option<HashMap<String, u64>> {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the last Redis command succeeded.
    pub fn is_healthy(&self) -> bool {
        self.counters.is_healthy()
    }
}

thread_local! {
    /// The connection of the engine shard running on this thread, if any: a release from a
    /// permit dropped here goes out on it without leaving the thread.
    static SHARD_CONN: RefCell<Option<ShardReleases>> = const { RefCell::new(None) };
}

/// What a shard's thread releases through: its connection and the releases of its current turn.
#[derive(Clone)]
struct ShardReleases {
    conn: ConnectionManager,
    releases: TurnBatch<CallKey>,
}

/// What one turn of a shard's loop hands to Redis (admissions, releases), sent together by one
/// task once the loop yields. Only the shard's thread touches it: the lock is never contended.
#[derive(Debug)]
struct TurnBatch<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for TurnBatch<T> {
    fn clone(&self) -> Self {
        TurnBatch(self.0.clone())
    }
}

impl<T> Default for TurnBatch<T> {
    fn default() -> Self {
        TurnBatch(Arc::default())
    }
}

impl<T: Send + 'static> TurnBatch<T> {
    /// Adds `item`; true when it is the first of the turn (the caller then calls
    /// [`send_after_turn`](Self::send_after_turn)).
    fn push(&self, item: T) -> bool {
        let mut items = lock(&self.0);
        items.push(item);
        items.len() == 1
    }

    /// Spawns `send` on the current runtime with every item of the turn: the shard's turn goes
    /// on until it yields, and what it pushes meanwhile joins the batch.
    fn send_after_turn<F, Fut>(&self, send: F)
    where
        F: FnOnce(Vec<T>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let items = self.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let batch = std::mem::take(&mut *lock(&items.0));
            send(batch).await;
        });
    }
}

/// One engine shard's way to the cluster: its own Redis connection, driven by the shard's own
/// runtime (so an admission or a release never wakes another thread), and the queue its answers
/// come back on.
#[derive(Debug)]
pub struct ShardLink {
    node: Arc<ClusterNode>,
    conn: ConnectionManager,
    answers: Answers,
    /// The requests of the shard's current turn.
    asked: TurnBatch<Asked>,
}

/// A request as the cluster asks it: its id and, per part, the call key and its alternatives.
type Asked = (u64, Vec<(CallKey, Vec<Alternative>)>);

impl ShardLink {
    /// Makes this thread's permit releases use this link's connection (call on the shard's
    /// thread, inside its runtime).
    pub fn install(&self) {
        let shard = ShardReleases {
            conn: self.conn.clone(),
            releases: TurnBatch::default(),
        };
        SHARD_CONN.with(|c| *c.borrow_mut() = Some(shard));
    }

    /// Asks Redis for `request` on the current (the shard's) runtime, together with the other
    /// requests of the shard's turn (one script run for all); the answers go to the shard's
    /// queue.
    pub fn ask(&self, request: AdmitRequest) {
        let parts: Vec<(CallKey, Vec<Alternative>)> = request
            .parts
            .iter()
            .map(|p| (p.key, self.node.alternatives(&p.generation, &p.paths)))
            .collect();
        let first = self.asked.push((request.id, parts));
        drop(request);
        if !first {
            return;
        }
        let (node, conn, answers) = (self.node.clone(), self.conn.clone(), self.answers.clone());
        self.asked.send_after_turn(move |batch| async move {
            node.admit_batch(&conn, batch, &answers).await;
        });
    }
}

/// Sends each queued release to Redis, each as its own task so one slow reply delays no other.
async fn release_queue(
    node: Arc<ClusterNode>,
    mut rx: mpsc::UnboundedReceiver<CallKey>,
    stop: CancellationToken,
) {
    loop {
        let call = tokio::select! {
            () = stop.cancelled() => return,
            call = rx.recv() => match call {
                Some(c) => c,
                None => return,
            },
        };
        let counters = node.counters.clone();
        let in_flight = node.in_flight.clone();
        tokio::spawn(async move {
            // On an error the release stays queued inside the client; the heartbeat retries it.
            if let Err(error) = counters.release(call).await {
                tracing::debug!(%error, "counter backend: release queued for retry");
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads the cluster-wide usage for `/counters` until `stop` (or the node is gone).
async fn read_usage(node: Weak<ClusterNode>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(USAGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(node) = node.upgrade() else { return };
        let read = node.counters.cluster_usage().await.ok();
        *node
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = read;
    }
}

/// The limiter's backend with Redis: the generation's cells count this node's share; Redis,
/// asked by the shards in two steps, holds the cluster's. A release gives back the share and
/// queues the Redis release.
#[derive(Debug)]
struct ClusterBackend {
    node: Weak<ClusterNode>,
}

impl CounterBackend for ClusterBackend {
    fn try_acquire(
        &self,
        generation: &Generation,
        call: CallKey,
        path: &Path,
    ) -> Result<(), Refusal> {
        // Only the local fallback comes here (on_backend_error = "local").
        MemoryBackend.try_acquire(generation, call, path)
    }

    fn release(&self, generation: &Generation, call: CallKey, path: &Path) {
        MemoryBackend.release(generation, call, path);
        if let Some(node) = self.node.upgrade() {
            node.release(call);
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn admitted_locally(&self, generation: &Generation, call: CallKey, path: &Path) {
        if let Some(node) = self.node.upgrade() {
            node.adopt(generation, call, path);
        }
    }
}

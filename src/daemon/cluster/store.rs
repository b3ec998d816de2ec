//! [`RedisCounters`]: one node's handle on the shared counters: admission, release, usage.
//! Leases (join, heartbeat, republish) are in `lease.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ScriptInvocation, Value};
use tokio::sync::RwLock;
use tokio::time::Instant;

use crate::limits::{CallKey, Refusal};

use crate::cluster::config::{ClusterClock, ClusterConfig};
use crate::cluster::error::ClusterError;
use crate::cluster::key::{Alternative, CounterKey};
use crate::cluster::scripts::{int, tagged, text, Scripts};

/// The answer to an admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every counter of alternative `index` (0-based) was acquired for the call.
    Admitted {
        /// Which alternative.
        index: usize,
    },
    /// No alternative fitted: the first full counter of the last alternative, with the cluster's
    /// usage and this node's limit.
    Refused(Refusal),
}

/// One counter's usage as `/counters` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterUsage {
    /// The counter.
    pub key: CounterKey,
    /// Units held by every node together (dead nodes not yet freed included).
    pub cluster: u64,
    /// Units held by this node's current epoch.
    pub node: u64,
}

/// This node's current registration: member `node#epoch` of the live set.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) epoch: u64,
    pub(super) name: String,
    /// Set by a join until every held call has been republished under this epoch.
    pub(super) republish_due: bool,
}

/// What this node holds, kept in memory so it can be republished.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) index: usize,
    pub(super) counters: Arc<[CounterKey]>,
}

/// Exact concurrent-call counters shared by every node through one Redis (or one Redis Cluster
/// slot). Cheap to share behind an `Arc`; every method takes `&self`.
///
/// Each node registers as `node#epoch` in a sorted set scored by lease expiry, and records each
/// call's counters under that member, so a node's units are attributable to it. A node that stops
/// renewing has its units freed by the other nodes' own script runs after the lease (no reaper
/// process); a restarted node joins under a new epoch and ends its old epochs at once. After Redis
/// loses its data, the next renewal finds the member gone, joins again and republishes the calls
/// held in memory.
///
/// **Limits**: each admission carries the admitting node's limits and the script enforces those
/// against the cluster-wide count; the cluster records the last limit seen per counter and a node
/// logs a warning (once per counter and value) when it differs from its own, so a TOML rolled out
/// to half the nodes is visible without refusing service.
#[derive(Debug)]
pub struct RedisCounters {
    pub(super) conn: ConnectionManager,
    /// To open more connections (one per engine shard, on the shard's own runtime).
    client: redis::Client,
    manager: ConnectionManagerConfig,
    pub(super) scripts: Scripts,
    /// `{cluster}:`, the prefix of every key.
    pub(super) prefix: String,
    /// `{cluster}:nodes`, the key every script declares.
    nodes_key: String,
    pub(super) node: String,
    pub(super) lease: Duration,
    pub(super) timeout: Duration,
    pub(super) budget: u32,
    pub(super) clock: ClusterClock,
    /// Admissions and releases read it; a join writes it, so a republish sees every call admitted
    /// under the previous epoch (no admission is in flight while it runs).
    pub(super) member: RwLock<Option<Member>>,
    pub(super) held: Mutex<HashMap<CallKey, Held>>,
    /// Releases Redis has not acknowledged; the heartbeat retries them.
    pub(super) pending: Mutex<HashSet<CallKey>>,
    pub(super) last_renewal: Mutex<Option<Instant>>,
    pub(super) healthy: AtomicBool,
    /// Calls were adopted ([`RedisCounters::adopt`]) since the last republish.
    pub(super) adopt_due: AtomicBool,
    /// (counter, limit recorded by the cluster) pairs already logged.
    warned: Mutex<HashSet<(CounterKey, String)>>,
}

/// Connection attempts after a connection is lost (100 then 200 ms apart) before the manager
/// gives up until the next command.
pub const RECONNECT_TRIES: usize = 2;

/// Most calls admitted by one script run (its arguments stay well within Lua's stack).
pub(super) const ADMIT_BATCH: usize = 64;

/// Most calls released by one script run (Lua's `unpack` has a stack limit; a run stays short).
pub(super) const RELEASE_BATCH: usize = 256;

/// Locks a std mutex, going on after a panic elsewhere: every guarded value stays consistent
/// between statements (inserts and removes only).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RedisCounters {
    /// A handle that connects lazily (the daemon may start while Redis is down); it joins the
    /// cluster on its first admission or heartbeat. Does no I/O.
    pub fn new(cfg: ClusterConfig) -> Result<Self, ClusterError> {
        if cfg.node.is_empty() || cfg.node.contains('#') {
            return Err(ClusterError::NodeName(cfg.node));
        }
        let client = redis::Client::open(cfg.redis_url.as_str())
            .map_err(|source| ClusterError::Url { source })?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(cfg.command_timeout))
            .set_connection_timeout(Some(cfg.command_timeout))
            .set_max_delay(Duration::from_secs(1))
            // A lost connection retries in the background for about 0.3 s, then waits for the
            // next command to reconnect (see `eval_on`): no connection loops through an outage.
            .set_number_of_retries(RECONNECT_TRIES);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())
            .map_err(|source| ClusterError::Redis {
                op: "connect",
                source,
            })?;
        Ok(RedisCounters {
            conn,
            client,
            manager,
            scripts: Scripts::new(),
            prefix: format!("{{{}}}:", cfg.cluster),
            nodes_key: format!("{{{}}}:nodes", cfg.cluster),
            node: cfg.node,
            lease: cfg.lease,
            timeout: cfg.command_timeout,
            budget: cfg.reap_budget.max(1),
            clock: cfg.clock,
            member: RwLock::new(None),
            held: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            last_renewal: Mutex::new(None),
            healthy: AtomicBool::new(false),
            adopt_due: AtomicBool::new(false),
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// [`new`](Self::new), then joins the cluster (one round trip), so a wrong URL or a Redis that
    /// is down shows at start.
    pub async fn connect(cfg: ClusterConfig) -> Result<Self, ClusterError> {
        let counters = Self::new(cfg)?;
        counters.rejoin(None).await?;
        Ok(counters)
    }

    /// Another connection to the same Redis, for one task's or thread's own use with
    /// [`admit_on`](Self::admit_on) and [`release_on`](Self::release_on). Lazy: it connects on
    /// first use, on the runtime it is first used on (an engine shard's own, so its commands
    /// never cross threads). Does no I/O.
    pub fn connection(&self) -> Result<ConnectionManager, ClusterError> {
        ConnectionManager::new_lazy_with_config(self.client.clone(), self.manager.clone()).map_err(
            |source| ClusterError::Redis {
                op: "connect",
                source,
            },
        )
    }

    /// Acquires for `call` every counter of the first alternative that fits, all or nothing, in
    /// one round trip; or refuses. Idempotent by `call`: a retry (e.g. after a timeout) answers the
    /// first outcome again without counting twice. Joins again and retries once when this node's
    /// lease was lost.
    pub async fn admit(
        &self,
        call: CallKey,
        alternatives: &[Alternative],
    ) -> Result<Admission, ClusterError> {
        self.admit_on(&self.conn, call, alternatives).await
    }

    /// [`admit`](Self::admit) over `conn` (from [`connection`](Self::connection)).
    pub async fn admit_on(
        &self,
        conn: &ConnectionManager,
        call: CallKey,
        alternatives: &[Alternative],
    ) -> Result<Admission, ClusterError> {
        let mut one = self.admit_many_on(conn, &[(call, alternatives)]).await?;
        one.pop().ok_or(ClusterError::NoAlternative)
    }

    /// Admits `calls` in one round trip, decided in order as if admitted one by one (each against
    /// the counts the earlier ones left); one answer per call. Joins again and retries once when
    /// this node's lease was lost. At most [`ADMIT_BATCH`] calls, each with an alternative.
    pub async fn admit_many_on(
        &self,
        conn: &ConnectionManager,
        calls: &[(CallKey, &[Alternative])],
    ) -> Result<Vec<Admission>, ClusterError> {
        if calls.is_empty() || calls.iter().any(|(_, alts)| alts.is_empty()) {
            return Err(ClusterError::NoAlternative);
        }
        let mut seen = None;
        for _ in 0..2 {
            let member = self.member_or_join(seen).await?;
            let Some(m) = member.as_ref() else { continue };
            match self.run_admit(conn, m, calls).await? {
                Some(admissions) => return Ok(admissions),
                None => seen = Some(m.epoch),
            }
        }
        Err(ClusterError::LeaseLost)
    }

    /// One admission script run; `None` when the member's lease is lost.
    async fn run_admit(
        &self,
        conn: &ConnectionManager,
        m: &Member,
        calls: &[(CallKey, &[Alternative])],
    ) -> Result<Option<Vec<Admission>>, ClusterError> {
        let mut inv = self.invocation(&self.scripts.admit, &m.name);
        inv.arg(calls.len());
        for (call, alternatives) in calls {
            inv.arg(call.0).arg(alternatives.len());
            for alt in alternatives.iter() {
                inv.arg(alt.len());
                for c in alt {
                    inv.arg(c.key.as_str()).arg(c.limit.map_or(-1, i64::from));
                }
            }
        }
        let reply = self.eval_on(conn, "admit", &inv).await?;
        let bad = || reply_error("admit", &reply);
        match tagged(&reply).ok_or_else(bad)? {
            ("lost", _) => Ok(None),
            ("ok", [Value::Array(answers)]) if answers.len() == calls.len() => answers
                .iter()
                .zip(calls)
                .map(|(answer, (call, alts))| self.admission(answer, *call, alts).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Err(bad()),
        }
    }

    /// One call's answer within an admission reply; `None` when it is malformed.
    fn admission(&self, answer: &Value, call: CallKey, alts: &[Alternative]) -> Option<Admission> {
        match tagged(answer)? {
            ("ok", [index, diff]) => {
                let index = int(index).and_then(|i| usize::try_from(i).ok())?;
                let alt = alts.get(index)?;
                self.remember(call, index, alt);
                self.warn_limits(alt, diff);
                Some(Admission::Admitted { index })
            }
            ("full", [counter, used, limit]) => {
                let key = text(counter).and_then(CounterKey::parse)?;
                Some(Admission::Refused(Refusal {
                    level: key.level(),
                    name: key.name().to_owned(),
                    counter: key.kind(),
                    used: int(used).and_then(|n| u32::try_from(n).ok())?,
                    limit: int(limit).and_then(|n| u32::try_from(n).ok())?,
                }))
            }
            _ => None,
        }
    }

    fn remember(&self, call: CallKey, index: usize, alt: &Alternative) {
        let counters = alt.iter().map(|c| c.key.clone()).collect();
        lock(&self.held).insert(call, Held { index, counters });
    }

    /// Logs, once per counter and value, a limit the cluster recorded that differs from ours.
    fn warn_limits(&self, alt: &Alternative, diff: &Value) {
        let Value::Array(pairs) = diff else { return };
        for pair in pairs.chunks_exact(2) {
            let (Some(wire), Some(theirs)) = (text(&pair[0]), text(&pair[1])) else {
                continue;
            };
            let Some(ours) = alt.iter().find(|c| c.key.as_str() == wire) else {
                continue;
            };
            let mut warned = lock(&self.warned);
            if warned.len() < 10_000 && warned.insert((ours.key.clone(), theirs.to_owned())) {
                tracing::warn!(
                    counter = %ours.key,
                    limit.ours = ?ours.limit,
                    limit.cluster = theirs,
                    "cluster nodes disagree on a counter limit (-1 = unlimited); each node enforces its own"
                );
            }
        }
    }

    /// Gives back `call`'s units; idempotent (a double release decrements nothing). Call it also
    /// after an `admit` that failed with an error and will not be retried. On an error the release
    /// stays queued and each heartbeat retries it: the caller may drop the error.
    pub async fn release(&self, call: CallKey) -> Result<(), ClusterError> {
        self.release_on(&self.conn, call).await
    }

    /// [`release`](Self::release) over `conn` (from [`connection`](Self::connection)).
    pub async fn release_on(
        &self,
        conn: &ConnectionManager,
        call: CallKey,
    ) -> Result<(), ClusterError> {
        self.release_many_on(conn, &[call]).await
    }

    /// Releases `calls` together, one round trip per [`RELEASE_BATCH`] calls: the script
    /// decrements each counter once for the whole batch. Idempotent like
    /// [`release`](Self::release); on an error every call not released stays queued.
    pub async fn release_many_on(
        &self,
        conn: &ConnectionManager,
        calls: &[CallKey],
    ) -> Result<(), ClusterError> {
        {
            let mut held = lock(&self.held);
            for call in calls {
                held.remove(call);
            }
        }
        for (i, chunk) in calls.chunks(RELEASE_BATCH).enumerate() {
            if let Err(error) = self.run_release(conn, chunk).await {
                lock(&self.pending).extend(calls[i * RELEASE_BATCH..].iter().copied());
                return Err(error);
            }
        }
        Ok(())
    }

    pub(super) async fn run_release(
        &self,
        conn: &ConnectionManager,
        calls: &[CallKey],
    ) -> Result<(), ClusterError> {
        let member = self.member.read().await;
        // Never joined: nothing of this epoch can hold the calls.
        let Some(m) = member.as_ref() else {
            return Ok(());
        };
        let mut inv = self.invocation(&self.scripts.release, &m.name);
        for call in calls {
            inv.arg(call.0);
        }
        let reply = self.eval_on(conn, "release", &inv).await?;
        // `lost`: the member's units are the reap's now, these calls' included.
        match tagged(&reply) {
            Some(("ok" | "lost", _)) => Ok(()),
            _ => Err(reply_error("release", &reply)),
        }
    }

    /// Remembers `call`, admitted without Redis (on this node's counters while Redis could not
    /// answer), with the calls this node holds: the next successful heartbeat republishes it,
    /// so Redis counts it from then on; its release is the usual [`release`](Self::release).
    /// No I/O.
    pub fn adopt(&self, call: CallKey, counters: Vec<CounterKey>) {
        let held = Held {
            index: 0,
            counters: counters.into(),
        };
        lock(&self.held).insert(call, held);
        self.adopt_due.store(true, Ordering::Relaxed);
    }

    /// Every counter in use in the cluster, with the share Redis attributes to this node's
    /// current epoch (one round trip; reads each of this node's call records, so it is for
    /// diagnostics and tests: `/counters` uses [`cluster_usage`](Self::cluster_usage)).
    pub async fn usage(&self) -> Result<Vec<CounterUsage>, ClusterError> {
        let name = self.member.read().await.as_ref().map(|m| m.name.clone());
        let calls_key = format!("{}calls:{}", self.prefix, name.unwrap_or_default());
        let mut pipe = redis::pipe();
        pipe.hgetall(format!("{}used", self.prefix))
            .hvals(calls_key);
        let mut conn = self.conn.clone();
        let (cluster, records): (HashMap<String, u64>, Vec<Vec<u8>>) =
            self.bounded("usage", pipe.query_async(&mut conn)).await?;
        let mut node: HashMap<String, u64> = HashMap::new();
        for record in &records {
            // "index\0counter\0counter...": the call's units.
            for counter in record.split(|b| *b == 0).skip(1) {
                *node
                    .entry(String::from_utf8_lossy(counter).into_owned())
                    .or_default() += 1;
            }
        }
        let mut out: Vec<CounterUsage> = cluster
            .keys()
            .chain(node.keys().filter(|k| !cluster.contains_key(*k)))
            .filter_map(|wire| {
                Some(CounterUsage {
                    key: CounterKey::parse(wire)?,
                    cluster: cluster.get(wire).copied().unwrap_or(0),
                    node: node.get(wire).copied().unwrap_or(0),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Units held cluster-wide per counter wire name (`level:name:kind`), one `HGETALL`.
    pub async fn cluster_usage(&self) -> Result<HashMap<String, u64>, ClusterError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(format!("{}used", self.prefix));
        self.bounded("usage", cmd.query_async(&mut conn)).await
    }

    /// Whether the last Redis command succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// When this node's lease was last renewed (join or heartbeat), on tokio's clock.
    pub fn last_renewal(&self) -> Option<Instant> {
        *lock(&self.last_renewal)
    }

    /// Whether this node may admit at `now`: renewed within half a lease. Past that the other
    /// nodes may soon free its units, so admitting would count calls the cluster will forget.
    pub fn can_admit(&self, now: Instant) -> bool {
        self.last_renewal()
            .is_some_and(|at| now.saturating_duration_since(at) < self.lease / 2)
    }

    /// This node's current epoch, once joined.
    pub async fn epoch(&self) -> Option<u64> {
        self.member.read().await.as_ref().map(|m| m.epoch)
    }

    /// Calls this node holds in memory (what it would republish).
    pub fn held_calls(&self) -> usize {
        lock(&self.held).len()
    }

    /// A script invocation with the prelude's arguments (prefix, member or node, now, budget).
    pub(super) fn invocation<'a>(
        &self,
        script: &'a redis::Script,
        who: &str,
    ) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        // Declared so a cluster-aware client routes the script to the slot's master; the scripts
        // derive every key from the prefix (all in that slot) rather than reading KEYS.
        inv.key(&self.nodes_key)
            .arg(&self.prefix)
            .arg(who)
            .arg(self.clock.arg_ms())
            .arg(self.budget);
        inv
    }

    pub(super) async fn eval(
        &self,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<Value, ClusterError> {
        self.eval_on(&self.conn, op, inv).await
    }

    async fn eval_on(
        &self,
        conn: &ConnectionManager,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<Value, ClusterError> {
        let mut conn = conn.clone();
        match self.bounded(op, inv.invoke_async(&mut conn)).await {
            // A connection whose reconnection gave up during an outage answers that old error at
            // once and only then reconnects: once Redis is back the first command on an idle
            // connection (a shard's) would fail. The retry waits for the new connection; every
            // script is idempotent, so a run that did reach Redis counts once.
            Err(ClusterError::Redis { source, .. }) if connection_failed(&source) => {
                self.bounded(op, inv.invoke_async(&mut conn)).await
            }
            other => other,
        }
    }

    /// Runs a Redis future within the command timeout, recording health.
    async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(ClusterError::Timeout {
                op,
                after: self.timeout,
            }),
            Ok(r) => r.map_err(|source| ClusterError::Redis { op, source }),
        };
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }
}

/// Whether `e` says the connection failed (refused, dropped, I/O), not what Redis answered.
fn connection_failed(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped()
}

pub(super) fn reply_error(op: &'static str, reply: &Value) -> ClusterError {
    ClusterError::Reply {
        op,
        reply: format!("{reply:?}"),
    }
}

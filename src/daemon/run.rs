//! Starting, reloading and stopping the daemon: binds the listeners, spawns the driver and the
//! admin API, answers SIGHUP with a reload and SIGTERM/SIGINT with a drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::admin_server::AdminServer;
use super::cluster::ClusterNode;
use super::dispatch::Dispatcher;
use super::driver::{Command, Driver, Inputs};
use super::health::Health;
use super::reload::Reloader;
use super::shards::Shards;
use super::systemd;
use super::trunks::{LocalAddrs, TrunkHandle};
use crate::admin::{
    AdminBackend, CallView, CounterView, Metrics, RegistrationView, ReloadResult, TrunkView,
};
use crate::b2bua::{B2bua, Local, Settings};
use crate::config::model::{Snapshot, Transport};
use crate::engine::registration::Front;
use crate::engine::{Engine, Shared};
use crate::limits::Limiter;
use crate::sip::ids::Ids;
use crate::transaction::{Layer, TimerConfig};
use crate::transport::{TransportError, TransportLimits, Transports};
use crate::trunks::TrunkStates;

/// How long a callee may ring without a final answer before callgate gives up (RFC 3261
/// Timer C: more than 3 minutes).
const RING_TIMEOUT: Duration = Duration::from_secs(181);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A SIP listener could not be bound.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The admin listener could not be bound.
    #[error("cannot bind admin listener on {address}: {source}")]
    AdminBind {
        /// Address tried.
        address: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// An engine shard's thread could not be started.
    #[error("cannot start engine shard {shard}: {source}")]
    Shard {
        /// Which shard.
        shard: usize,
        /// OS error.
        source: std::io::Error,
    },
    /// The call detail record file could not be opened.
    #[error("cannot open the CDR file {path}: {source}")]
    Cdr {
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The Redis counters could not be set up (a malformed URL, a bad node name).
    #[error("cannot use the Redis counters: {0}")]
    Cluster(crate::cluster::ClusterError),
    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        /// Which signal.
        signal: &'static str,
        /// OS error.
        source: std::io::Error,
    },
}

/// A running daemon: its bound addresses and the handles to reload and stop it.
pub struct Daemon {
    /// Bound SIP listeners.
    pub sip: Vec<(Transport, SocketAddr)>,
    /// Bound admin address at start, when configured ([`Daemon::admin_addr`] after reloads).
    pub admin: Option<SocketAddr>,
    /// The counters (tests read them directly).
    pub limiter: Arc<Limiter>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Number of engine shards.
    pub workers: usize,
    /// The stores every shard shares (registrar bindings, digest nonce counts).
    pub shared: Shared,
    reloader: Arc<Reloader>,
    admin_server: Arc<AdminServer>,
    /// The admin API's backend; the server holds it weakly (see `admin_server`).
    _backend: Arc<Backend>,
    shards: Arc<Shards>,
    /// Set when the drain starts: the receive side answers OPTIONS with 503 from then on.
    draining: Arc<AtomicBool>,
    shutdown: CancellationToken,
    transports: Arc<Transports>,
    /// Where the bindings are kept across restarts.
    state_file: Option<PathBuf>,
    /// The trunk driver (registrations, health probes).
    trunks: Arc<TrunkHandle>,
    /// The call detail record writer, when `[server] cdr_file` is set.
    cdr: Option<Arc<crate::cdr::writer::CdrWriter>>,
    /// This node in the cluster, with `[counters] backend = "redis"`.
    cluster: Option<Arc<ClusterNode>>,
}

/// Queued messages per shard before the receive side drops datagrams (and streams wait): about
/// 0.1 s of a shard's work at full load, so an overload turns into drops, not into seconds of
/// queueing delay.
const SHARD_QUEUE: usize = 4096;

impl Daemon {
    /// Binds every listener, starts one engine shard per worker and the admin API. `path` is
    /// re-read on reload.
    pub async fn start(snapshot: Snapshot, path: Option<PathBuf>) -> Result<Daemon, DaemonError> {
        let snapshot = Arc::new(snapshot);
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let cluster = start_cluster(&snapshot, &metrics, &shutdown).await?;
        let limiter = Arc::new(match &cluster {
            Some(node) => Limiter::with_backend(snapshot.clone(), node.backend()),
            None => Limiter::new(snapshot.clone()),
        });
        let workers = snapshot.server.workers.unwrap_or_else(default_workers);
        let draining = Arc::new(AtomicBool::new(false));
        let (queues, events): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::channel(SHARD_QUEUE)).unzip();
        // The nonce key: fresh random bytes per process, so nonces die with it.
        let mut secret = [0u8; 32];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut secret);
        let shared = Shared::new(secret, std::time::Instant::now());
        let registrar = Front::new(limiter.clone(), shared.clone(), metrics.clone());
        let (trunk_tx, trunk_rx) = super::trunks::channel();
        let dispatcher = Dispatcher::new(
            queues,
            metrics.clone(),
            draining.clone(),
            Some(registrar),
            Some(trunk_tx),
        );
        let transports = Transports::bind(
            &snapshot.listen,
            dispatcher,
            TransportLimits::from(snapshot.server.tcp),
            shutdown.clone(),
        )
        .await?;
        let settings = settings(&snapshot, &transports);
        let local = LocalAddrs {
            udp: settings.local.udp.clone(),
            tcp: settings.local.tcp.clone(),
        };
        let trunks = Arc::new(super::trunks::spawn(
            limiter.clone(),
            metrics.clone(),
            transports.clone(),
            local,
            trunk_rx,
            shutdown.clone(),
        ));
        let cdr = match &snapshot.server.cdr_file {
            Some(path) => Some(Arc::new(
                crate::cdr::writer::CdrWriter::start(path).map_err(|source| DaemonError::Cdr {
                    path: path.clone(),
                    source,
                })?,
            )),
            None => None,
        };
        let parts = ShardParts {
            limiter: &limiter,
            metrics: &metrics,
            transports: &transports,
            shared: &shared,
            stop: &shutdown,
            trunks: &trunks.states,
            cdr: cdr.as_ref(),
            cluster: cluster.as_ref(),
        };
        let state_file = snapshot.server.state_file.clone();
        if let Some(path) = &state_file {
            super::housekeeping::load(&shared, path);
        }
        let shards = Arc::new(start_shards(events, &settings, parts)?);
        tracing::info!(workers, "engine shards started");
        super::housekeeping::spawn(
            shared.clone(),
            metrics.clone(),
            shutdown.clone(),
            state_file.clone(),
        );
        let admin_server = Arc::new(AdminServer::new(
            snapshot.admin.as_ref().and_then(|a| a.token.clone()),
            metrics.clone(),
            shutdown.clone(),
        ));
        let reloader = Arc::new(Reloader {
            path,
            limiter: limiter.clone(),
            metrics: metrics.clone(),
            transports: transports.clone(),
            admin: admin_server.clone(),
            trunks: trunks.clone(),
            cdr: cdr.clone(),
            serial: Default::default(),
        });
        let backend = Arc::new(Backend {
            limiter: limiter.clone(),
            location: shared.location.clone(),
            auth: shared.auth.clone(),
            shards: shards.clone(),
            reloader: reloader.clone(),
            trunks: trunks.states.clone(),
            cluster: cluster.clone(),
        });
        let admin = start_admin(&admin_server, &backend, &snapshot)?;
        Ok(Daemon {
            sip: transports.bound(),
            admin,
            limiter,
            metrics,
            workers,
            shared,
            reloader,
            admin_server,
            _backend: backend,
            shards,
            draining,
            shutdown,
            transports,
            state_file,
            trunks,
            cdr,
            cluster,
        })
    }

    /// Health and registration of every trunk, by name: what outbound routing consults
    /// ([`TrunkStates::is_available`]) and `GET /trunks` lists.
    pub fn trunk_states(&self) -> Arc<TrunkStates> {
        self.trunks.states.clone()
    }

    /// The admin API's address now (a reload may move it or stop it).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_server.bound()
    }

    /// SIP listeners bound now (they change with reloads).
    pub fn bound(&self) -> Vec<(Transport, SocketAddr)> {
        self.transports.bound()
    }

    /// Re-reads the configuration file (SIGHUP, `POST /reload`).
    pub async fn reload(&self) -> ReloadResult {
        let reloader = self.reloader.clone();
        tokio::task::spawn_blocking(move || reloader.reload())
            .await
            .unwrap_or_else(|e| ReloadResult::refused(vec![format!("reload task failed: {e}")]))
    }

    /// Calls in progress, on every shard.
    pub async fn calls(&self) -> usize {
        self.shards.calls().await
    }

    /// Calls in progress plus teardown requests (BYE, CANCEL) still awaiting a final response.
    async fn busy(&self) -> usize {
        self.shards.busy().await
    }

    /// Sizes of every shard's tables, summed (leak checks of tests).
    pub async fn table_sizes(&self) -> crate::engine::TableSizes {
        let mut total = crate::engine::TableSizes::default();
        for s in self.shards.ask_all(Command::Sizes).await {
            total.add(&s);
        }
        total
    }

    /// Calls in progress per shard, in shard order (tests check how calls spread).
    pub async fn calls_per_shard(&self) -> Vec<usize> {
        self.shards.ask_all(Command::Count).await
    }

    /// True while every shard makes progress (what `/health` and the watchdog report).
    pub fn healthy(&self) -> bool {
        self.shards.healthy(std::time::Instant::now())
    }

    /// Stops admitting, ends every call (BYE both legs) and waits up to `grace` for them to go;
    /// then stops every task. Returns the number of calls still up at the deadline.
    pub async fn shutdown(self, grace: Duration) -> usize {
        // Before the shards: a load balancer probing with OPTIONS sees 503 as soon as new calls
        // are refused.
        self.draining.store(true, Ordering::Relaxed);
        self.shards.drain().await;
        // Unregistering runs beside the calls' teardown, within the same grace period.
        self.trunks.drain();
        let deadline = tokio::time::Instant::now() + grace;
        // Wait for the calls and for our BYEs/CANCELs to be answered (they are retransmitted
        // meanwhile, and a callee's 487 gets its ACK), within the grace period.
        while self.busy().await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.calls().await;
        if left > 0 {
            tracing::warn!(calls = left, "drain period over with calls still up");
        }
        // Operators (and tests of the binary) read here that shutdown released every counter.
        tracing::info!(
            calls = left,
            units = self.limiter.in_use(),
            "drain finished"
        );
        if tokio::time::timeout_at(deadline, self.trunks.drained())
            .await
            .is_err()
        {
            tracing::warn!("drain period over with trunk unregistrations unanswered");
        }
        if let Some(path) = &self.state_file {
            super::housekeeping::save(&self.shared, path);
        }
        if let Some(cluster) = &self.cluster {
            // The ended calls' releases reach Redis before the process goes (what does not is
            // freed with this node's lease).
            cluster.flush(Duration::from_secs(2)).await;
        }
        self.shutdown.cancel();
        // The drain's records were sent before the shards answered `busy`: all are written.
        if let Some(cdr) = &self.cdr {
            cdr.flush();
        }
        left
    }
}

/// `callgate run`: start, notify systemd, serve until SIGTERM/SIGINT, drain, exit.
pub async fn run(snapshot: Snapshot, path: PathBuf, drain: Duration) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |kind, name| {
        signal(kind).map_err(|source| DaemonError::Signal {
            signal: name,
            source,
        })
    };
    let mut hup = sig(SignalKind::hangup(), "SIGHUP")?;
    let mut term = sig(SignalKind::terminate(), "SIGTERM")?;
    let mut int = sig(SignalKind::interrupt(), "SIGINT")?;
    let daemon = Daemon::start(snapshot, Some(path)).await?;
    tracing::info!(sip = ?daemon.sip, admin = ?daemon.admin, "ready; SIGHUP reloads, SIGTERM or SIGINT stops");
    systemd::ready();
    if let Some(every) = systemd::watchdog_interval() {
        let stop = daemon.shutdown.clone();
        let shards = daemon.shards.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    // A stalled shard stops the pings: systemd restarts the service.
                    _ = tick.tick() => if shards.healthy(std::time::Instant::now()) {
                        systemd::watchdog_ping()
                    },
                }
            }
        });
    }
    loop {
        tokio::select! {
            // The reload itself tells systemd (RELOADING=1 ... READY=1), whatever asked for it.
            _ = hup.recv() => {
                let _ = daemon.reload().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    systemd::stopping();
    tracing::info!(drain = ?drain, "shutting down");
    daemon.shutdown(drain).await;
    Ok(())
}

/// The entity above `name` at `level` in the tenancy tree (see [`CounterView::parent`]).
fn parent_of(s: &Snapshot, level: crate::limits::Level, name: &str) -> Option<String> {
    use crate::limits::Level;
    let org_name = |o: crate::config::model::OrgId| s.organizations[o.index()].name.clone();
    match level {
        Level::Server => None,
        Level::ServiceProvider => Some(s.server.name.clone()),
        Level::Organization => {
            let org = &s.organizations[s.index.org_by_name.get(name)?.index()];
            Some(
                s.service_providers[org.service_provider.index()]
                    .name
                    .clone(),
            )
        }
        Level::User => {
            let user = &s.users[s.index.user_by_name.get(name)?.index()];
            Some(org_name(user.organization))
        }
        Level::Extension => {
            let (number, org) = name.split_once('@')?;
            let org = *s.index.org_by_name.get(org)?;
            let ext = s.index.extension_by_number.get(&(org, number.to_owned()))?;
            Some(s.users[s.extensions[ext.index()].user.index()].name.clone())
        }
        Level::Trunk => {
            let trunk = &s.trunks[s.index.trunk_by_name.get(name)?.index()];
            trunk.organization.map(org_name)
        }
    }
}

/// The admin API's view of the running daemon.
struct Backend {
    limiter: Arc<Limiter>,
    location: Arc<crate::registrar::LocationStore>,
    auth: Arc<crate::engine::access::AuthShared>,
    shards: Arc<Shards>,
    reloader: Arc<Reloader>,
    trunks: Arc<TrunkStates>,
    cluster: Option<Arc<ClusterNode>>,
}

impl AdminBackend for Backend {
    fn trunks(&self) -> Vec<TrunkView> {
        let now = std::time::Instant::now();
        self.trunks
            .list()
            .iter()
            .map(|t| TrunkView::of(t, now))
            .collect()
    }

    fn health(&self) -> bool {
        self.shards.healthy(std::time::Instant::now())
    }

    fn calls(&self) -> Vec<CallView> {
        self.shards.call_views_blocking()
    }

    fn counters(&self) -> Vec<CounterView> {
        let generation = self.limiter.current();
        let snapshot = generation.config();
        let usage = self.cluster.as_ref().map(|c| c.usage());
        self.limiter
            .snapshot_at(std::time::Instant::now())
            .into_iter()
            .map(|c| {
                let (used, node_used, cluster_used) = match &usage {
                    Some(usage) if c.kind != crate::limits::CounterKind::Cps => {
                        let key = crate::cluster::CounterKey::new(c.level, &c.name, c.kind);
                        let cluster = usage.as_ref().map(|u| {
                            let n = u.get(key.as_str()).copied().unwrap_or(0);
                            u32::try_from(n).unwrap_or(u32::MAX)
                        });
                        (cluster.unwrap_or(c.used), Some(c.used), cluster)
                    }
                    _ => (c.used, None, None),
                };
                CounterView {
                    level: c.level.as_str().into(),
                    parent: parent_of(snapshot, c.level, &c.name),
                    name: c.name,
                    counter: c.kind.as_str().into(),
                    used,
                    limit: c.limit,
                    node_used,
                    cluster_used,
                }
            })
            .collect()
    }

    fn bans(&self) -> Vec<crate::admin::BanView> {
        let secs = self.auth.secs(std::time::Instant::now());
        self.auth
            .guard
            .bans(secs)
            .into_iter()
            .map(|b| crate::admin::BanView {
                ip: b.ip.to_string(),
                seconds_left: b.until_unix.saturating_sub(secs),
                reason: match b.reason {
                    crate::auth::BanReason::SourceFailures => "failures from this source".into(),
                    crate::auth::BanReason::ExtensionFailures { extension } => {
                        format!("failures on extension {extension}")
                    }
                },
            })
            .collect()
    }

    fn unban(&self, ip: &str) -> bool {
        ip.parse().is_ok_and(|ip| self.auth.guard.unban(ip))
    }

    fn registrations(&self) -> Vec<RegistrationView> {
        let now = std::time::Instant::now();
        self.location
            .snapshot(now)
            .into_iter()
            .map(|(aor, b)| RegistrationView {
                trunk: aor.trunk_name().map(str::to_owned),
                extension: match aor.trunk_name() {
                    Some(_) => String::new(),
                    None => aor.to_string(),
                },
                contact: b.contact,
                source: b.flow.source.to_string(),
                transport: b.flow.transport.as_str().into(),
                expires_secs: b.expires_at.saturating_duration_since(now).as_secs(),
            })
            .collect()
    }

    fn reload(&self) -> ReloadResult {
        self.reloader.reload()
    }

    fn end_call(&self, id: &str) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        self.shards.end_call_blocking(id)
    }
}

fn settings(snapshot: &Snapshot, transports: &Transports) -> Settings {
    let advertise = |t: Transport| {
        let listen = snapshot.listen.iter().find(|l| l.transport == t);
        let bound = transports.local_addr(t)?;
        Some(match listen.and_then(|l| l.advertise.clone()) {
            Some(host) => format!("{host}:{}", bound.port()),
            None => bound.to_string(),
        })
    };
    Settings {
        t1: TimerConfig::default().t1,
        t2: TimerConfig::default().t2,
        local: Local {
            udp: advertise(Transport::Udp),
            tcp: advertise(Transport::Tcp),
            tls: advertise(Transport::Tls),
        },
        node: snapshot.server.name.clone(),
        ring_timeout: RING_TIMEOUT,
    }
}

/// What every shard is built from.
struct ShardParts<'a> {
    limiter: &'a Arc<Limiter>,
    metrics: &'a Arc<Metrics>,
    transports: &'a Arc<Transports>,
    shared: &'a Shared,
    stop: &'a CancellationToken,
    /// Trunks' availability (health probes, registration), read by outbound routing.
    trunks: &'a Arc<crate::trunks::TrunkStates>,
    /// Where the shards send call detail records.
    cdr: Option<&'a Arc<crate::cdr::writer::CdrWriter>>,
    /// The shared counters, with `[counters] backend = "redis"`.
    cluster: Option<&'a Arc<ClusterNode>>,
}

/// Starts one shard thread per event queue: its own identifiers (a CSPRNG seeded from the OS),
/// B2BUA, transaction layer and command queue.
fn start_shards(
    events: Vec<mpsc::Receiver<super::driver::ShardEvent>>,
    settings: &Settings,
    parts: ShardParts<'_>,
) -> Result<Shards, DaemonError> {
    let health = Arc::new(Health::new(events.len(), std::time::Instant::now()));
    let mut commands = Vec::with_capacity(events.len());
    for (shard, events) in events.into_iter().enumerate() {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        commands.push(cmd_tx);
        let ids = Ids::new(shard as u8, rand::SeedableRng::from_rng(&mut rand::rng()));
        let b2bua = B2bua::new(parts.limiter.clone(), settings.clone(), ids)
            .with_location(parts.shared.location.clone())
            .with_trunks(parts.trunks.clone())
            .with_records(parts.cdr.is_some());
        let txn = Layer::new(TimerConfig::default());
        let engine = Engine::new(b2bua, txn, parts.metrics.clone(), parts.shared.clone());
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let driver = Driver::new(shard, engine, parts.transports.clone(), health.clone())
            .with_cdr(parts.cdr.map(|w| w.sender()))
            .with_cluster(match parts.cluster {
                Some(node) => Some(node.shard_link(answers_tx).map_err(DaemonError::Cluster)?),
                None => None,
            });
        let inputs = Inputs {
            events,
            commands: cmd_rx,
            stop: parts.stop.clone(),
            answers,
        };
        if let Err(source) = driver.spawn(inputs) {
            parts.stop.cancel();
            return Err(DaemonError::Shard { shard, source });
        }
    }
    Ok(Shards::new(commands, health))
}

/// This node in the cluster with `[counters] backend = "redis"`: the Redis client (named after
/// `[server] name`), its heartbeat, release queue and usage reader. Joins at once when Redis
/// answers; when it does not, the daemon starts anyway (new calls get `on_backend_error`) and
/// joins as soon as it does.
async fn start_cluster(
    snapshot: &Snapshot,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> Result<Option<Arc<ClusterNode>>, DaemonError> {
    let Some(cfg) = crate::cluster::ClusterConfig::from_backend(
        &snapshot.counters,
        snapshot.server.name.as_str(),
    ) else {
        return Ok(None);
    };
    let (url, cluster, lease) = (cfg.redis_url.clone(), cfg.cluster.clone(), cfg.lease);
    let counters = crate::cluster::RedisCounters::new(cfg).map_err(DaemonError::Cluster)?;
    match tokio::time::timeout(Duration::from_secs(2), counters.heartbeat()).await {
        Ok(Ok(_)) => {
            tracing::info!(redis = %redacted(&url), cluster, ?lease, "counters shared through Redis")
        }
        Ok(Err(error)) => {
            tracing::error!(redis = %redacted(&url), %error, "Redis does not answer: new calls get on_backend_error until it does")
        }
        Err(_) => {
            tracing::error!(redis = %redacted(&url), "Redis does not answer in 2 s: new calls get on_backend_error until it does")
        }
    }
    Ok(Some(ClusterNode::start(counters, metrics.clone(), stop)))
}

/// A Redis URL without its password (`redis://user:secret@host` -> `redis://user:***@host`).
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Serves the admin API when `[admin]` is configured; returns its bound address.
fn start_admin(
    server: &AdminServer,
    backend: &Arc<Backend>,
    snapshot: &Snapshot,
) -> Result<Option<SocketAddr>, DaemonError> {
    let weak = Arc::downgrade(backend);
    server.set_backend(weak);
    let Some(cfg) = &snapshot.admin else {
        return Ok(None);
    };
    server.serve(server.bind(cfg.address)?).map(Some)
}

/// One engine shard per core the process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Drop for Daemon {
    /// Stops the shard threads and listener tasks of a daemon dropped without a shutdown (tests).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

//! Starting, reloading and stopping the daemon: binds the listeners, spawns the driver and the
//! admin API, answers SIGHUP with a reload and SIGTERM/SIGINT with a drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dispatch::Dispatcher;
use super::driver::{Command, Driver, Inputs};
use super::health::Health;
use super::shards::Shards;
use super::systemd;
use crate::admin::{
    self, AdminBackend, AdminState, CallView, CounterView, Metrics, RegistrationView, ReloadResult,
};
use crate::b2bua::{B2bua, Local, Settings};
use crate::config::model::{Snapshot, Transport};
use crate::config::{self, ConfigError};
use crate::engine::{Engine, Shared};
use crate::limits::Limiter;
use crate::sip::ids::Ids;
use crate::transaction::{Layer, TimerConfig};
use crate::transport::{TransportError, TransportLimits, Transports};

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
    /// Bound admin address, when configured.
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
    shards: Arc<Shards>,
    shutdown: CancellationToken,
    transports: Arc<Transports>,
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
        let limiter = Arc::new(Limiter::new(snapshot.clone()));
        let shutdown = CancellationToken::new();
        let workers = snapshot.server.workers.unwrap_or_else(default_workers);
        let (queues, events): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::channel(SHARD_QUEUE)).unzip();
        let transports = Transports::bind(
            &snapshot.listen,
            Dispatcher::new(queues, metrics.clone()),
            TransportLimits::from(snapshot.server.tcp),
            shutdown.clone(),
        )
        .await?;
        let settings = settings(&snapshot, &transports);
        let shared = Shared::default();
        let parts = ShardParts {
            limiter: &limiter,
            metrics: &metrics,
            transports: &transports,
            shared: &shared,
            stop: &shutdown,
        };
        let shards = Arc::new(start_shards(events, &settings, parts)?);
        tracing::info!(workers, "engine shards started");
        let reloader = Arc::new(Reloader {
            path,
            limiter: limiter.clone(),
            metrics: metrics.clone(),
            transports: transports.clone(),
        });
        let mut daemon = Daemon {
            sip: transports.bound(),
            admin: None,
            limiter,
            metrics,
            workers,
            shared,
            reloader,
            shards,
            shutdown,
            transports,
        };
        if let Some(admin_cfg) = &snapshot.admin {
            daemon.admin = Some(
                daemon
                    .start_admin(admin_cfg.address, admin_cfg.token.clone())
                    .await?,
            );
        }
        Ok(daemon)
    }

    async fn start_admin(
        &self,
        address: SocketAddr,
        token: Option<String>,
    ) -> Result<SocketAddr, DaemonError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| DaemonError::AdminBind { address, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| DaemonError::AdminBind { address, source })?;
        let backend = Arc::new(Backend {
            limiter: self.limiter.clone(),
            location: self.shared.location.clone(),
            shards: self.shards.clone(),
            reloader: self.reloader.clone(),
        });
        let state = AdminState::new(backend, self.metrics.clone(), token);
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) =
                admin::serve(listener, state, async move { stop.cancelled().await }).await
            {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        Ok(bound)
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
        self.shards.drain().await;
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
        self.shutdown.cancel();
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
            _ = hup.recv() => {
                systemd::reloading();
                let _ = daemon.reload().await;
                systemd::ready();
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

/// Reload: parse + validate off the hot path, refuse as a whole, or swap the limiter's generation.
struct Reloader {
    path: Option<PathBuf>,
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    transports: Arc<Transports>,
}

impl Reloader {
    fn reload(&self) -> ReloadResult {
        let Some(path) = &self.path else {
            return self.refuse(vec!["no configuration file to reload".into()]);
        };
        let started = std::time::Instant::now();
        let loaded = match config::load_file(path) {
            Ok(l) => l,
            Err(e) => return self.refuse(errors_of(e)),
        };
        let old = self.limiter.current();
        let issues = config::check_reload(old.config(), &loaded.snapshot);
        if !issues.is_empty() {
            return self.refuse(issues.iter().map(ToString::to_string).collect());
        }
        // Listeners first: a port that cannot be bound refuses the whole file.
        let listeners = match self.transports.reconcile(&loaded.snapshot.listen) {
            Ok(l) => l,
            Err(e) => return self.refuse(vec![e.to_string()]),
        };
        self.transports
            .set_limits(TransportLimits::from(loaded.snapshot.server.tcp));
        let summary_line = loaded.snapshot.summary().to_string();
        let changes = self.limiter.reload(Arc::new(loaded.snapshot));
        self.metrics.config_reload(true);
        tracing::info!(took = ?started.elapsed(), counters.kept = changes.kept, counters.added = changes.added, counters.removed = changes.removed, "reload accepted: {summary_line}");
        if listeners != Default::default() {
            tracing::info!(added = ?listeners.added, removed = ?listeners.removed, "listeners changed");
        }
        ReloadResult::accepted(vec![
            summary_line,
            format!(
                "counters: {} kept, {} added, {} removed",
                changes.kept, changes.added, changes.removed
            ),
        ])
    }

    fn refuse(&self, errors: Vec<String>) -> ReloadResult {
        self.metrics.config_reload(false);
        // One line with every issue: operators grep for it, and a bad file must not flood.
        tracing::warn!(issues = ?errors, "reload refused; running configuration kept");
        ReloadResult::refused(errors)
    }
}

fn errors_of(e: ConfigError) -> Vec<String> {
    match e {
        ConfigError::Invalid(issues) => issues.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

/// The admin API's view of the running daemon.
struct Backend {
    limiter: Arc<Limiter>,
    location: Arc<crate::registrar::LocationStore>,
    shards: Arc<Shards>,
    reloader: Arc<Reloader>,
}

impl AdminBackend for Backend {
    fn health(&self) -> bool {
        self.shards.healthy(std::time::Instant::now())
    }

    fn calls(&self) -> Vec<CallView> {
        self.shards.call_views_blocking()
    }

    fn counters(&self) -> Vec<CounterView> {
        self.limiter
            .snapshot()
            .into_iter()
            .map(|c| CounterView {
                level: c.level.as_str().into(),
                name: c.name,
                counter: c.kind.as_str().into(),
                used: c.used,
                limit: c.limit,
            })
            .collect()
    }

    fn registrations(&self) -> Vec<RegistrationView> {
        // The shards' shared store; REGISTER handling that fills it is the registrar issue's.
        let now = std::time::Instant::now();
        self.location
            .snapshot(now)
            .into_iter()
            .map(|(aor, b)| RegistrationView {
                extension: aor.to_string(),
                contact: b.contact,
                source: b.flow.source.to_string(),
                transport: match b.flow.transport {
                    Transport::Udp => "udp".into(),
                    Transport::Tcp => "tcp".into(),
                },
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
        let b2bua = B2bua::new(parts.limiter.clone(), settings.clone(), ids);
        let txn = Layer::new(TimerConfig::default());
        let engine = Engine::new(b2bua, txn, parts.metrics.clone(), parts.shared.clone());
        let driver = Driver::new(shard, engine, parts.transports.clone(), health.clone());
        let inputs = Inputs {
            events,
            commands: cmd_rx,
            stop: parts.stop.clone(),
        };
        if let Err(source) = driver.spawn(inputs) {
            parts.stop.cancel();
            return Err(DaemonError::Shard { shard, source });
        }
    }
    Ok(Shards::new(commands, health))
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

//! Starting, reloading and stopping the daemon: binds the listeners, spawns the driver and the
//! admin API, answers SIGHUP with a reload and SIGTERM/SIGINT with a drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::driver::{Command, Driver};
use super::engine::Engine;
use super::systemd;
use crate::admin::{
    self, AdminBackend, AdminState, CallView, CounterView, Metrics, RegistrationView, ReloadResult,
};
use crate::b2bua::{B2bua, Local, Settings};
use crate::config::model::{Snapshot, Transport};
use crate::config::{self, ConfigError};
use crate::limits::Limiter;
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
    reloader: Arc<Reloader>,
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
    transports: Arc<Transports>,
}

impl Daemon {
    /// Binds every listener, starts the driver and the admin API. `path` is re-read on reload.
    pub async fn start(snapshot: Snapshot, path: Option<PathBuf>) -> Result<Daemon, DaemonError> {
        let snapshot = Arc::new(snapshot);
        let metrics = Arc::new(Metrics::new());
        let limiter = Arc::new(Limiter::new(snapshot.clone()));
        let shutdown = CancellationToken::new();
        let (in_tx, in_rx) = mpsc::channel(16 * 1024);
        let transports = Transports::bind(
            &snapshot.listen,
            in_tx,
            TransportLimits::default(),
            shutdown.clone(),
        )
        .await?;
        let settings = settings(&snapshot, &transports);
        let b2bua = B2bua::new(limiter.clone(), settings, salt());
        let engine = Engine::new(b2bua, Layer::new(TimerConfig::default()), metrics.clone());
        let driver = Driver::new(engine, transports.clone());
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        tokio::spawn(driver.run(in_rx, cmd_rx));
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
            reloader,
            commands: cmd_tx,
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
            commands: self.commands.clone(),
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

    /// Calls in progress.
    pub async fn calls(&self) -> usize {
        self.ask(Command::Count).await
    }

    /// Calls in progress plus teardown requests (BYE, CANCEL) still awaiting a final response.
    async fn busy(&self) -> usize {
        self.ask(Command::Busy).await
    }

    async fn ask(&self, make: impl FnOnce(oneshot::Sender<usize>) -> Command) -> usize {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(make(tx)).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Stops admitting, ends every call (BYE both legs) and waits up to `grace` for them to go;
    /// then stops every task. Returns the number of calls still up at the deadline.
    pub async fn shutdown(self, grace: Duration) -> usize {
        let _ = self.commands.send(Command::Drain).await;
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
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => systemd::watchdog_ping() }
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
    commands: mpsc::Sender<Command>,
    reloader: Arc<Reloader>,
}

impl Backend {
    /// Asks the driver and waits for its answer (admin requests only, never the call path).
    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.try_send(make(tx)).ok()?;
        tokio::task::block_in_place(|| rx.blocking_recv().ok())
    }
}

impl AdminBackend for Backend {
    fn health(&self) -> bool {
        !self.commands.is_closed()
    }

    fn calls(&self) -> Vec<CallView> {
        self.ask(Command::Calls).unwrap_or_default()
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
        // The registrar is a later issue: no phone can register yet.
        Vec::new()
    }

    fn reload(&self) -> ReloadResult {
        self.reloader.reload()
    }

    fn end_call(&self, id: &str) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        self.ask(|tx| Command::EndCall(id, tx)).unwrap_or(false)
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

/// Random part of generated identifiers: RandomState is seeded from the OS per process.
fn salt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

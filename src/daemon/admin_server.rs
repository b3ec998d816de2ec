//! The admin API's listener as the daemon owns it: started with the daemon, moved by a reload
//! that changes `[admin] address`, stopped by one that removes `[admin]`. A reload binds the new
//! address before it applies anything ([`AdminServer::plan`]), so a port that is taken refuses the
//! whole file; the old server then finishes the requests in flight (the `POST /reload` that moved
//! it gets its answer) and stops. The bearer token is one [`AdminToken`] cell every server reads,
//! swapped by a reload.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use tokio_util::sync::CancellationToken;

use super::DaemonError;
use crate::admin::{self, AdminBackend, AdminState, AdminToken, Metrics};

/// The server serving now.
struct Running {
    /// `[admin] address` as configured (port 0 stays 0: an unchanged file keeps the server).
    configured: SocketAddr,
    bound: SocketAddr,
    stop: CancellationToken,
}

/// A listener bound for `[admin] address`, not serving yet; dropping it closes the socket.
pub(super) struct Prepared {
    configured: SocketAddr,
    bound: SocketAddr,
    listener: tokio::net::TcpListener,
}

/// What a reload does with the admin listener.
pub(super) enum AdminPlan {
    /// Same address: the running server stays.
    Keep,
    /// A new address, already bound.
    Move(Prepared),
    /// `[admin]` removed: stop serving.
    Stop,
}

/// The daemon's admin listener and token.
pub(super) struct AdminServer {
    running: Mutex<Option<Running>>,
    token: AdminToken,
    /// Weak: the backend reaches the reloader, which owns this server (a strong reference would
    /// be a cycle that keeps the shards' command queues open after the daemon is dropped).
    backend: OnceLock<Weak<dyn AdminBackend>>,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
}

impl AdminServer {
    /// A stopped server. Must be created inside the daemon's runtime (reloads run on its blocking
    /// threads and spawn the server there).
    pub(super) fn new(
        token: Option<String>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        AdminServer {
            running: Mutex::new(None),
            token: AdminToken::new(token),
            backend: OnceLock::new(),
            metrics,
            runtime: tokio::runtime::Handle::current(),
            shutdown,
        }
    }

    /// What the handlers answer from; set once, before the first [`AdminServer::serve`].
    pub(super) fn set_backend(&self, backend: Weak<dyn AdminBackend>) {
        let _ = self.backend.set(backend);
    }

    /// The address served now, if any.
    pub(super) fn bound(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|r| r.bound)
    }

    /// Binds `address` (start-up, or the new address of a reload).
    pub(super) fn bind(&self, address: SocketAddr) -> Result<Prepared, DaemonError> {
        let err = |source| DaemonError::AdminBind { address, source };
        let std = std::net::TcpListener::bind(address).map_err(err)?;
        std.set_nonblocking(true).map_err(err)?;
        let bound = std.local_addr().map_err(err)?;
        let _runtime = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(std).map_err(err)?;
        Ok(Prepared {
            configured: address,
            bound,
            listener,
        })
    }

    /// What a reload to `address` (`None`: no `[admin]`) needs, binding a new address now.
    pub(super) fn plan(&self, address: Option<SocketAddr>) -> Result<AdminPlan, DaemonError> {
        let configured = self.lock().as_ref().map(|r| r.configured);
        match address {
            _ if address == configured => Ok(AdminPlan::Keep),
            None => Ok(AdminPlan::Stop),
            Some(a) => self.bind(a).map(AdminPlan::Move),
        }
    }

    /// Applies a reload: the plan and the new token. Returns a line per change for the summary.
    pub(super) fn apply(&self, plan: AdminPlan, token: Option<String>) -> Vec<String> {
        let mut lines = Vec::new();
        if self.token.replace(token) {
            lines.push("admin token changed".to_owned());
        }
        match plan {
            AdminPlan::Keep => {}
            AdminPlan::Move(prepared) => lines.push(match self.serve(prepared) {
                Ok(bound) => format!("admin API moved to {bound}"),
                Err(e) => format!("admin API not moved: {e}"),
            }),
            AdminPlan::Stop => {
                if let Some(old) = self.lock().take() {
                    old.stop.cancel();
                    lines.push("admin API stopped".to_owned());
                }
            }
        }
        lines
    }

    /// Serves on `prepared` and stops the server it replaces (after its requests in flight).
    pub(super) fn serve(&self, prepared: Prepared) -> Result<SocketAddr, DaemonError> {
        let Prepared {
            configured,
            bound,
            listener,
        } = prepared;
        let Some(backend) = self.backend.get().and_then(Weak::upgrade) else {
            let source = std::io::Error::other("the daemon is stopping");
            return Err(DaemonError::AdminBind {
                address: configured,
                source,
            });
        };
        let state = AdminState::with_token(backend, self.metrics.clone(), self.token.clone());
        let stop = self.shutdown.child_token();
        let stopped = stop.clone();
        self.runtime.spawn(async move {
            let shutdown = async move { stopped.cancelled().await };
            if let Err(e) = admin::serve(listener, state, shutdown).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        let new = Running {
            configured,
            bound,
            stop,
        };
        if let Some(old) = self.lock().replace(new) {
            tracing::info!(from = %old.bound, to = %bound, "admin API moved");
            old.stop.cancel();
        }
        Ok(bound)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        // The guarded value is a plain record; a panic elsewhere cannot leave it half-written.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

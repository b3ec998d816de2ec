//! Reload (SIGHUP, `POST /reload`, `callgate reload`): parse and validate off the hot path, then
//! apply every change or refuse the whole file.
//!
//! Applied: limits, rules and tenancy (the limiter's next generation), SIP listeners (bound
//! before anything is swapped), the admin address (re-bound, [`super::admin_server`]) and token.
//! Refused with the reason: an invalid file, a removed trunk that running rules use, and a change
//! of the address written in Via/Contact (`config::check_reload`). `workers` is read at start only
//! (README).
//!
//! Reloads are serialized end to end by one mutex: two that interleaved could both bind a new
//! listener's address (one failing for no reason in the file) or both swap the listener table
//! (the loser's sockets left open), and their results would not describe the file in force.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::admin_server::AdminServer;
use super::systemd;
use crate::admin::{Metrics, ReloadResult};
use crate::config::{self, ConfigError};
use crate::limits::Limiter;
use crate::transport::{TransportLimits, Transports};

/// Everything a reload touches.
pub(super) struct Reloader {
    pub(super) path: Option<PathBuf>,
    pub(super) limiter: Arc<Limiter>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) transports: Arc<Transports>,
    pub(super) admin: Arc<AdminServer>,
    /// Told when a reload was applied: trunks added, removed or changed.
    pub(super) trunks: Arc<super::trunks::TrunkHandle>,
    /// Reopened on every reload, accepted or not (logrotate's SIGHUP must not wait for a
    /// valid file).
    pub(super) cdr: Option<Arc<crate::cdr::writer::CdrWriter>>,
    /// Held for the whole of one reload.
    pub(super) serial: Mutex<()>,
}

impl Reloader {
    /// Re-reads the file and applies it or refuses it. Blocking: run it on a blocking thread.
    /// Tells systemd (`RELOADING=1` ... `READY=1`) whichever way the reload was asked for.
    pub(super) fn reload(&self) -> ReloadResult {
        // `()` guards nothing that a panicking reload could leave half-written.
        let _serial = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
        systemd::reloading();
        let result = self.reload_serialized();
        if let Some(cdr) = &self.cdr {
            // The file named by the configuration in force (a reload may have moved it).
            if let Some(path) = self.limiter.current().config().server.cdr_file.clone() {
                cdr.reopen(path);
            }
        }
        systemd::ready();
        result
    }

    fn reload_serialized(&self) -> ReloadResult {
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
        // What can fail is done first, so a refusal leaves everything as it was: the admin
        // address is bound (dropped again on a refusal below), then the SIP listeners.
        let admin = loaded.snapshot.admin.clone();
        let plan = match self.admin.plan(admin.as_ref().map(|a| a.address)) {
            Ok(p) => p,
            Err(e) => return self.refuse(vec![e.to_string()]),
        };
        let listeners = match self.transports.reconcile(&loaded.snapshot.listen) {
            Ok(l) => l,
            Err(e) => return self.refuse(vec![e.to_string()]),
        };
        self.transports
            .set_limits(TransportLimits::from(loaded.snapshot.server.tcp));
        let summary_line = loaded.snapshot.summary().to_string();
        let changes = self.limiter.reload(Arc::new(loaded.snapshot));
        let admin_lines = self.admin.apply(plan, admin.and_then(|a| a.token));
        self.trunks.reloaded();
        self.metrics.config_reload(true);
        tracing::info!(took = ?started.elapsed(), counters.kept = changes.kept, counters.added = changes.added, counters.removed = changes.removed, admin = ?admin_lines, "reload accepted: {summary_line}");
        if listeners != Default::default() {
            tracing::info!(added = ?listeners.added, removed = ?listeners.removed, "listeners changed");
        }
        let mut summary = vec![
            summary_line,
            format!(
                "counters: {} kept, {} added, {} removed",
                changes.kept, changes.added, changes.removed
            ),
        ];
        if listeners != Default::default() {
            summary.push(format!(
                "listeners: added {:?}, removed {:?}",
                listeners.added, listeners.removed
            ));
        }
        summary.extend(admin_lines);
        ReloadResult::accepted(summary)
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

//! Sweeps of the stores every shard shares, off the call path: expired registrar bindings and
//! lapsed nonce counts are freed, `callgate_registrations_active` follows the store, and the
//! bindings are written to `[server] state_file` (every 30 s and at shutdown; read at start).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::admin::Metrics;
use crate::engine::Shared;

/// How often: bindings are invisible to calls the moment they expire (lookups check), so this
/// only bounds how long their memory lingers and how stale the gauge is.
pub(super) const EVERY: Duration = Duration::from_secs(5);

/// Sweeps between two writes of the state file (30 s).
const SAVE_EVERY: u32 = 6;

/// Starts the sweep on the current runtime until `stop`.
pub(super) fn spawn(
    shared: Shared,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    state_file: Option<PathBuf>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => sweep(&shared, &metrics),
            }
            n = n.wrapping_add(1);
            if let (Some(path), 0) = (&state_file, n % SAVE_EVERY) {
                let (shared, path) = (shared.clone(), path.clone());
                // File I/O off the runtime's workers.
                let _ = tokio::task::spawn_blocking(move || save(&shared, &path)).await;
            }
        }
    });
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes the bindings to `path` (a temporary file renamed over it: a crash mid-write leaves the
/// previous file whole).
pub(super) fn save(shared: &Shared, path: &Path) {
    let text = crate::registrar::persist::save(&shared.location, Instant::now(), unix_now());
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "bindings not saved");
    }
}

/// Restores the bindings saved in `path`, if it exists.
pub(super) fn load(shared: &Shared, path: &Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            return tracing::warn!(path = %path.display(), error = %e, "bindings not restored")
        }
    };
    let done = crate::registrar::persist::load(&shared.location, &text, Instant::now(), unix_now());
    tracing::info!(path = %path.display(), restored = done.restored, expired = done.expired, malformed = done.malformed, "bindings restored");
}

fn sweep(shared: &Shared, metrics: &Metrics) {
    let now = std::time::Instant::now();
    let expired = shared.location.expire(now);
    metrics.registrations_set(shared.location.len());
    let secs = shared.auth.secs(now);
    shared.auth.guard.purge(secs);
    metrics.auth_bans_set(shared.auth.guard.bans(secs).len());
    if expired > 0 {
        tracing::debug!(expired, "housekeeping");
    }
}

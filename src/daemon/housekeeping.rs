//! Sweeps of the stores every shard shares, off the call path: expired registrar bindings and
//! lapsed nonce counts are freed, and `callgate_registrations_active` follows the store.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::Metrics;
use crate::engine::Shared;

/// How often: bindings are invisible to calls the moment they expire (lookups check), so this
/// only bounds how long their memory lingers and how stale the gauge is.
pub(super) const EVERY: Duration = Duration::from_secs(5);

/// Starts the sweep on the current runtime until `stop`.
pub(super) fn spawn(shared: Shared, metrics: Arc<Metrics>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => sweep(&shared, &metrics),
            }
        }
    });
}

fn sweep(shared: &Shared, metrics: &Metrics) {
    let now = std::time::Instant::now();
    let expired = shared.location.expire(now);
    let purged = shared.nonces.purge(now);
    metrics.registrations_set(shared.location.len());
    if expired > 0 || purged > 0 {
        tracing::debug!(expired, purged, "housekeeping");
    }
}

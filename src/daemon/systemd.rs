//! systemd service notification (`Type=notify`, sd_notify(3)): readiness, reload, stop, watchdog
//! and a free-form status line.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is unset (not started by systemd), and a failed
//! notification is logged at `debug` and otherwise ignored: the daemon's job does not depend on
//! systemd hearing about it.

use std::time::Duration;

use sd_notify::NotifyState;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// `READY=1`: send once every listener is bound, and again after a reload finished.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// `RELOADING=1` with `MONOTONIC_USEC`, which systemd 253 and later require to accept the reload.
/// Follow with [`ready`] when the reload is done, accepted or refused.
pub fn reloading() {
    if !enabled() {
        return;
    }
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::debug!(error = %e, "monotonic clock unreadable; RELOADING=1 sent alone");
            send(&[NotifyState::Reloading]);
        }
    }
}

/// `STOPPING=1`: the daemon began its shutdown.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The watchdog period systemd expects (`WatchdogSec=`, passed as `WATCHDOG_USEC`), or `None`
/// when there is no watchdog for this process. Ping at about half of it.
pub fn watchdog_interval() -> Option<Duration> {
    if !enabled() {
        return None;
    }
    sd_notify::watchdog_enabled()
}

/// `WATCHDOG=1`: the daemon is alive.
pub fn watchdog_ping() {
    send(&[NotifyState::Watchdog]);
}

/// `STATUS=...`: one line shown by `systemctl status`. Only the first line of `text` is sent,
/// since a newline would start a new assignment in the notification.
pub fn status(text: &str) {
    let line = text.lines().next().unwrap_or_default();
    send(&[NotifyState::Status(line)]);
}

fn enabled() -> bool {
    std::env::var_os(NOTIFY_SOCKET).is_some()
}

fn send(state: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

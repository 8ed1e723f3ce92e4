//! systemd integration: `READY=1` once serving, `WATCHDOG=1` from the event loop so a
//! wedged runtime stops feeding it, `STOPPING=1` on shutdown. No-ops without systemd.

use sd_notify::NotifyState;
use std::time::Duration;

pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Feeds the watchdog at half its period until `shutdown`, if systemd asked for one.
pub async fn watchdog_loop(shutdown: impl std::future::Future<Output = ()>) {
    let Some(period) = watchdog_period() else {
        return;
    };
    let mut tick = tokio::time::interval(period / 2);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => { let _ = sd_notify::notify(&[NotifyState::Watchdog]); }
        }
    }
}

fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

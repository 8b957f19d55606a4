//! systemd's notify protocol for `fulcrum run` under a `Type=notify` unit (the `sd-notify`
//! crate speaks it): `READY=1` once the ports are up and the workers run on the first
//! snapshot, `STATUS=` lines saying what the balancer does, `RELOADING=1` ... `READY=1` around
//! a live reload, `STOPPING=1` at the end, and `WATCHDOG=1` from the slow-path loop.
//!
//! The watchdog is fed only by the loop itself ([`Systemd::tick`] is called once per turn),
//! so a loop that stops turning (a wedged slow path, a process frozen by SIGSTOP) stops the
//! ticks and systemd restarts the service after `WatchdogSec`. Ticks go at half the interval
//! systemd asks for in `WATCHDOG_USEC` (as sd_watchdog_enabled(3) advises), and only when
//! `WATCHDOG_PID` is absent or names this process.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The balancer's side of the notify protocol.
pub struct Systemd {
    /// Whether `NOTIFY_SOCKET` is set.
    enabled: bool,
    /// Time between two `WATCHDOG=1`: half of `WATCHDOG_USEC`.
    watchdog: Option<Duration>,
    next_tick: Instant,
    /// A failed send is logged once, not once per tick.
    warned: bool,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Systemd {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog = sd_notify::watchdog_enabled()
            .filter(|d| !d.is_zero())
            .map(|d| d / 2);
        if let Some(every) = watchdog {
            tracing::info!(every_ms = every.as_millis() as u64, "systemd watchdog on");
        }
        Systemd {
            enabled,
            watchdog,
            next_tick: Instant::now(),
            warned: false,
        }
    }

    /// `STATUS=what`.
    pub fn status(&mut self, what: &str) {
        self.send(&[NotifyState::Status(what)]);
    }

    /// `READY=1` with a status: the balancer forwards (at start, or after a reload).
    pub fn ready(&mut self, what: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(what)]);
    }

    /// `RELOADING=1` (with the monotonic time systemd 253+ asks for) and a status.
    pub fn reloading(&mut self, what: &str) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now, NotifyState::Status(what)]),
            Err(_) => self.send(&[NotifyState::Reloading, NotifyState::Status(what)]),
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Feeds the watchdog when a tick is due. Returns how long the loop may sleep before the
    /// next one is due (`None`: no watchdog, sleep as long as it likes).
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        let every = self.watchdog?;
        if now >= self.next_tick {
            self.send(&[NotifyState::Watchdog]);
            self.next_tick = now + every;
        }
        Some(self.next_tick.saturating_duration_since(now))
    }

    fn send(&mut self, state: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            if !self.warned {
                tracing::warn!("systemd notify socket: {e} (further failures are not logged)");
                self.warned = true;
            }
        }
    }
}

//! SIGHUP, SIGTERM and SIGINT, handled from the first instruction of `main`: a signal that
//! arrives while the balancer starts (EAL initialising, ports opening) is remembered rather
//! than killing the process half-way, which would leave `/var/run/dpdk/<prefix>` and the
//! hugepage files behind. `fulcrum run` acts on what was remembered once it is ready:
//! SIGTERM/SIGINT stop it cleanly (runtime files removed), SIGHUP reloads the config.
//!
//! Commands that hold no such state (`check`, `which`, `ctl`, `replay`) call
//! [`Signals::exit_on_signal`] and end on these signals as they would without a handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The three signals, each remembered by a flag.
pub struct Signals {
    hup: Arc<AtomicBool>,
    int: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    /// Set: the signals end the process (exit status 128 + signal number).
    exit_now: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers. Call it first in `main`.
    pub fn install() -> std::io::Result<Signals> {
        let s = Signals {
            hup: Arc::default(),
            int: Arc::default(),
            term: Arc::default(),
            exit_now: Arc::default(),
        };
        for (sig, flag) in [(SIGHUP, &s.hup), (SIGINT, &s.int), (SIGTERM, &s.term)] {
            signal_hook::flag::register(sig, flag.clone())?;
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, s.exit_now.clone())?;
        }
        Ok(s)
    }

    /// For commands with nothing to clean up: from now on the signals end the process, and one
    /// that already arrived ends it at once.
    pub fn exit_on_signal(&self) {
        self.exit_now.store(true, Ordering::SeqCst);
        for (sig, flag) in [
            (SIGHUP, &self.hup),
            (SIGINT, &self.int),
            (SIGTERM, &self.term),
        ] {
            if flag.load(Ordering::SeqCst) {
                std::process::exit(128 + sig);
            }
        }
    }

    /// SIGTERM or SIGINT arrived (it stays set).
    pub fn stop_requested(&self) -> bool {
        self.int.load(Ordering::Relaxed) || self.term.load(Ordering::Relaxed)
    }

    /// Whether SIGHUP arrived since the last call (clears it).
    pub fn take_hup(&self) -> bool {
        self.hup.swap(false, Ordering::Relaxed)
    }

    /// Whether SIGHUP arrived since the last [`Signals::take_hup`] (leaves it set).
    pub fn hup_pending(&self) -> bool {
        self.hup.load(Ordering::Relaxed)
    }
}

//! `fulcrum run`: start the data plane and forward until SIGINT/SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dataplane::engine::Engine;

pub fn run(path: &Path, json: bool, duration: Option<f64>) -> Result<(), String> {
    let cfg = conf::load(path).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let devices = cfg.ports.iter().map(|p| p.device.clone()).collect();
    let engine = Engine::start(&cfg, devices).map_err(|e| e.to_string())?;
    tracing::info!(
        workers = cfg.dpdk.workers.len(),
        ports = cfg.ports.len(),
        services = cfg.services.len(),
        "running"
    );
    for p in engine.port_reports() {
        tracing::info!(port = %p.name, device = %p.device, mac = %conf::MacAddr(p.mac), "port up");
    }
    let started = Instant::now();
    let until = duration.map(|d| started + Duration::from_secs_f64(d.max(0.0)));
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!("stopping");
    let mut report = engine.stop();
    report.elapsed = started.elapsed();
    crate::report::print(&report, json);
    Ok(())
}

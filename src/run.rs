//! `fulcrum run`: start the data plane, then run the slow path on this thread (health checks,
//! ARP, publication of snapshots, pool-change hooks) until SIGINT/SIGTERM or `--duration`;
//! print the final counters of the workers, the ports and the slow path. The control socket
//! and the metrics endpoint are served from the same loop; SIGHUP reloads the config.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dataplane::engine::Engine;
use serde_json::{Value, json};
use slowpath::SlowPath;

pub fn run(path: &Path, json: bool, duration: Option<f64>) -> Result<(), String> {
    let cfg = conf::load(path).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let devices = cfg.ports.iter().map(|p| p.device.clone()).collect();
    let mut engine = Engine::start(&cfg, devices).map_err(|e| e.to_string())?;
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
    let mut slow = SlowPath::new(&cfg, &mut engine);
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| format!("signal handler: {e}"))?;
    // Forwarding matters more than being operable: a socket that cannot be had (another
    // instance on the default path, no permission) is logged, and the balancer runs on.
    let mut control = crate::control::ControlServer::bind(&cfg.global.control_socket, started)
        .inspect_err(|e| tracing::warn!("{e}; running without a control socket"))
        .ok();
    let mut metrics = cfg.global.metrics_listen.and_then(|a| {
        crate::metrics::MetricsServer::bind(a, started)
            .inspect_err(|e| tracing::warn!("{e}; running without metrics"))
            .ok()
    });
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if until.is_some_and(|u| now >= u) {
            break;
        }
        let mut idle = slow.turn(&mut engine);
        let mut served = 0;
        if let Some(c) = control.as_mut() {
            served += c.poll(&mut engine, &mut slow);
        }
        if hup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading the config");
            match crate::reload::reload(&mut engine, &mut slow) {
                Ok(r) => tracing::info!(generation = r["generation"].as_u64(), "reloaded"),
                Err(e) => tracing::error!("{e}"),
            }
            served += 1;
        }
        if let Some(m) = metrics.as_mut() {
            served += m.poll(&engine, &slow);
        }
        if served > 0 {
            idle = Duration::ZERO;
        }
        if !idle.is_zero() {
            // Never past the end of the run; SIGTERM is seen within one idle period.
            let idle = until.map_or(idle, |u| idle.min(u.saturating_duration_since(now)));
            std::thread::sleep(idle);
        }
    }
    tracing::info!("stopping");
    drop(control);
    drop(metrics);
    let slow_report = slow.report(&engine);
    // Its rings go back before the engine shuts down, so EAL can clean up.
    drop(slow);
    let mut report = engine.stop();
    report.elapsed = started.elapsed();
    if json {
        let mut v = crate::report::to_json(&report);
        v.as_object_mut()
            .expect("object")
            .insert("slowpath".into(), slowpath_json(&slow_report));
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        crate::report::print(&report, false);
        print_slowpath(&slow_report);
    }
    Ok(())
}

fn summary(s: &slowpath::publish::Summary) -> Value {
    json!({ "count": s.count, "min": s.min, "p50": s.p50, "p99": s.p99, "max": s.max })
}

fn slowpath_json(r: &slowpath::Report) -> Value {
    let backends: Vec<Value> = r
        .backends
        .iter()
        .map(|b| {
            json!({
                "service": b.service, "backend": b.backend, "state": b.state,
                "checks": b.checks, "check_failures": b.failures,
            })
        })
        .collect();
    json!({
        "frames_received": r.frames.received,
        "frames_arp": r.frames.arp,
        "frames_nd": r.frames.nd,
        "frames_ip": r.frames.ip,
        "frames_ignored": r.frames.ignored,
        "frames_sent": r.frames.sent,
        "frames_send_dropped": r.frames.send_dropped,
        "checks_started": r.checks.started,
        "checks_finished": r.checks.finished,
        "checks_not_started": r.checks.not_started,
        "check_failures": r.check_failures,
        "checks_max_in_flight": r.checks.max_in_flight,
        // ARP requests and ND solicitations.
        "arp_requests": r.neighbors.requests,
        "neighbors_learnt": r.neighbors.learnt,
        "neighbors_changed": r.neighbors.changed,
        "neighbor_drops": r.neighbors.dropped,
        "nd_invalid": r.neighbors.nd_invalid,
        "hook_runs": r.hooks.runs,
        "hook_failures": r.hooks.failed_runs,
        "state_file_writes": r.hooks.state_writes,
        "publications": r.publications,
        "build_us": summary(&r.build_us),
        "publish_to_visible_us": summary(&r.visible_us),
        "publish_to_first_packet_us": summary(&r.first_packet_us),
        "cpu_s": r.cpu_s,
        "backends": backends,
    })
}

fn print_slowpath(r: &slowpath::Report) {
    println!(
        "slow path: {} frames in ({} ARP, {} ND, {} IP), {} out ({} dropped); {} checks \
         ({} failed, {} could not start, at most {} at once); {} ARP/ND requests, {} neighbours \
         learnt",
        r.frames.received,
        r.frames.arp,
        r.frames.nd,
        r.frames.ip,
        r.frames.sent,
        r.frames.send_dropped,
        r.checks.finished,
        r.check_failures,
        r.checks.not_started,
        r.checks.max_in_flight,
        r.neighbors.requests,
        r.neighbors.learnt,
    );
    let s = &r.first_packet_us;
    println!(
        "publications: {}; publish -> first packet: {} samples, p50 {} us, p99 {} us, max {} us",
        r.publications, s.count, s.p50, s.p99, s.max
    );
    for b in &r.backends {
        println!(
            "backend {}/{}: {} ({} checks, {} failed)",
            b.service, b.backend, b.state, b.checks, b.failures
        );
    }
}

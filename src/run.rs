//! `fulcrum run`: start the data plane, then run the slow path on this thread (health checks,
//! ARP, publication of snapshots, pool-change hooks) until SIGINT/SIGTERM or `--duration`;
//! print the final counters of the workers, the ports and the slow path. The control socket
//! and the metrics endpoint are bound before DPDK starts and served from the same loop;
//! SIGHUP reloads the config (one that arrived during start-up, once the balancer runs; the
//! file is read on a thread of its own and applied on the loop).

use std::path::Path;
use std::time::{Duration, Instant};

use conf::ConfigError;
use dataplane::engine::{EngineError, FlowStore, FlowTablesReport};
use serde_json::{Value, json};
use slowpath::SlowPath;

use crate::control::ControlServer;
use crate::metrics::MetricsServer;
use crate::requests::BindError;
use crate::signals::Signals;

/// Why the balancer did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{source} (set global.control_optional = true to run without {without})")]
    Bind {
        source: BindError,
        without: &'static str,
    },
    #[error("{0}")]
    Engine(#[from] EngineError),
}

pub fn run(
    path: &Path,
    json: bool,
    duration: Option<f64>,
    fresh: bool,
    signals: &Signals,
) -> Result<(), RunError> {
    let mut systemd = crate::systemd::Systemd::from_env();
    systemd.status("reading the config");
    let cfg = conf::load(path)?;
    let t0 = Instant::now();
    // Before DPDK: a second instance on the same socket stops here, touching no EAL file.
    let (mut control, mut metrics) = bind_servers(&cfg.global, t0)?;
    if signals.stop_requested() {
        // Nothing of DPDK's exists yet; dropping the servers removes the socket.
        tracing::info!("SIGTERM/SIGINT before DPDK started: not starting it");
        return Ok(());
    }
    let devices = cfg.ports.iter().map(|p| p.device.clone()).collect();
    systemd.status(&format!(
        "starting DPDK: {} port(s), {} worker(s)",
        cfg.ports.len(),
        cfg.dpdk.workers.len()
    ));
    // Signals that arrive from here on are acted on once the loop below runs.
    let store = FlowStore::Files {
        dir: cfg.global.flow_state_dir(),
        fresh,
    };
    let (mut engine, mut slow) = SlowPath::start_with(&cfg, devices, &store)?;
    log_flow_tables(engine.flow_tables());
    tracing::info!(
        workers = cfg.dpdk.workers.len(),
        ports = cfg.ports.len(),
        services = cfg.services.len(),
        "running"
    );
    for f in engine.stale_counter_files_removed() {
        tracing::info!(file = %f.display(), "removed the counter file of a process that is gone");
    }
    for (p, c) in engine.port_reports().iter().zip(&cfg.ports) {
        tracing::info!(
            port = %p.name,
            device = %p.device,
            // The address on the wire: the configured one, or the device's own.
            mac = %c.mac.unwrap_or(conf::MacAddr(p.mac)),
            // What the device reports (rte_eth_macaddr_get).
            device_mac = %conf::MacAddr(p.mac),
            mac_filter = %p.mac_filter,
            mtu = c.mtu,
            device_mtu = p.device_mtu.map_or("unknown".to_string(), |m| m.to_string()),
            "port up"
        );
        if let Some(why) = &p.mtu_refused {
            tracing::warn!(
                port = %p.name,
                mtu = c.mtu,
                error = %why,
                "the device refused the port's mtu and keeps its own; the balancer still \
                 answers packets too big for the configured mtu"
            );
        }
    }
    // Ports up, workers forwarding on the first snapshot (published before they started).
    let forwarding = format!(
        "forwarding: {} port(s) up, {} worker(s), {} service(s)",
        cfg.ports.len(),
        cfg.dpdk.workers.len(),
        cfg.services.len()
    );
    systemd.ready(&forwarding);
    let started = Instant::now();
    let until = duration.map(|d| started + Duration::from_secs_f64(d.max(0.0)));
    if signals.hup_pending() {
        tracing::info!(
            "SIGHUP arrived during start-up: reloading the config now that the balancer runs"
        );
    }
    let mut reloads = crate::reload::Reloads::default();
    while !signals.stop_requested() {
        let now = Instant::now();
        if until.is_some_and(|u| now >= u) {
            break;
        }
        let mut idle = slow.turn(&mut engine);
        // Fed here only: a loop that stops turning stops the ticks (see systemd.rs).
        if let Some(next_tick) = systemd.tick(now) {
            idle = idle.min(next_tick);
        }
        let mut served = 0;
        if let Some(c) = control.as_mut() {
            served += c.poll(&mut engine, &mut slow, &mut reloads);
        }
        if signals.take_hup() {
            tracing::info!("SIGHUP: reloading the config");
            reloads.request(crate::reload::Asker::Signal, &slow);
        }
        // The file is read on a thread of its own; its result is applied here when ready.
        served += reloads.poll(&mut engine, &mut slow);
        // RELOADING=1 when a read starts, READY=1 once none is left (a read can start and end
        // within this one turn: both are said, in that order).
        if reloads.take_started() {
            systemd.reloading(&format!("reloading {}", cfg.path.display()));
        }
        if let Some(outcome) = reloads.take_outcome().filter(|_| !reloads.busy()) {
            systemd.ready(&format!("{forwarding}; {outcome}"));
        }
        if reloads.busy() {
            // Look for the result again soon, without spinning.
            idle = idle.min(Duration::from_millis(1));
        }
        if let Some(m) = metrics.as_mut() {
            served += m.poll(&engine, &slow, control.as_ref());
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
    systemd.stopping();
    slow.withdraw();
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

/// One line on where the flow tables came from: adopted (how many entries), or empty and
/// why.
fn log_flow_tables(t: &FlowTablesReport) {
    if let Some(d) = &t.dir {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        if let Some(w) = crate::doctor::flow_state_dir_warning(&mounts, d) {
            tracing::warn!("flow_state_dir {w}: put it under /run (tmpfs) or on hugetlbfs");
        }
    }
    let dir = t.dir.as_deref().map(|d| d.display().to_string());
    match &t.empty {
        None => tracing::info!(
            dir = dir.as_deref().unwrap_or("memory"),
            adopted = t.adopted,
            dropped = t.dropped,
            "flow tables adopted"
        ),
        Some(why) => tracing::warn!(
            dir = dir.as_deref().unwrap_or("memory"),
            "flow tables start empty: {why}"
        ),
    }
}

/// Binds the control socket and the metrics endpoint. One that cannot be bound (another
/// instance on the same socket, no permission, an address in use) is an error, unless
/// `global.control_optional` says to run without it.
fn bind_servers(
    g: &conf::Global,
    started: Instant,
) -> Result<(Option<ControlServer>, Option<MetricsServer>), RunError> {
    let control = optional(
        ControlServer::bind(&g.control_socket, started),
        g.control_optional,
        "a control socket",
    )?;
    let metrics = match g.metrics_listen {
        Some(a) => optional(
            MetricsServer::bind(a, started),
            g.control_optional,
            "metrics",
        )?,
        None => None,
    };
    Ok((control, metrics))
}

/// A server that could not be bound: an error, or (opted in) a warning and no server.
fn optional<T>(
    bound: Result<T, BindError>,
    optional: bool,
    without: &'static str,
) -> Result<Option<T>, RunError> {
    match bound {
        Ok(server) => Ok(Some(server)),
        Err(e) if optional => {
            tracing::warn!("{e}; running without {without} (global.control_optional = true)");
            Ok(None)
        }
        Err(source) => Err(RunError::Bind { source, without }),
    }
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
        "frames_no_route": r.frames.no_route,
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

//! `fulcrum ctl`: the client of the control socket. Human-readable output by default (aligned
//! columns), `--json` for scripts (the reply's `data`, one JSON document per request). A
//! closed output pipe (`fulcrum ctl ... | head -1`) ends it quietly.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use fulcrum::api::{
    AdminCmd, AdminReply, BackendsReply, CounterSet, ReloadReply, Request, StatsReply, StatusReply,
    WhichReply,
};
use fulcrum::flowspec::{self, FlowError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{CallError, call};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Subcommand, Debug)]
pub enum CtlCmd {
    /// Version, uptime, ports (the MAC each puts on the wire, link, rx/tx, drops), workers,
    /// snapshot generation.
    Status,
    /// Services: VIP, tier, usable backends, active and inactive flows.
    Services,
    /// Backends of every service: state, weight, active flows, traffic, checks.
    ///
    /// Per backend: effective state (with the admin state in force when it is not
    /// `enabled`, marked `*` when an operator's override), weight, flows ("active": TCP
    /// established, "inact": half-open, closing or UDP, like IPVS's ActiveConn/InActConn),
    /// packets, bytes and new flows forwarded, health checks (count, failures, last result
    /// and its latency).
    ///
    /// Flows come from each worker's flow-table expiry sweep, which passes every entry once
    /// a second and counts it under its backend (no cost per packet): a figure is the table
    /// as the last completed pass saw it, so it is up to about 2 s old. A NAT flow counts
    /// once. A drained backend keeps its flows until they end; flows of a backend removed by
    /// a reload are no longer listed.
    Backends,
    /// Which backend a flow goes to now, and why: its flow-table entry if a worker holds
    /// one, else the new-flow choice with the real health and admin states.
    ///
    /// The flow as `SRC:PORT DST:PORT [tcp|udp]` (IPv6 as `[ADDR]:PORT`), in one argument
    /// or as separate words, as `fulcrum which` takes it; several flows one after the other.
    Which {
        /// The flow: `SRC:PORT DST:PORT [tcp|udp]`, in one argument or as separate words.
        #[arg(value_name = "FLOW", required = true, num_args = 1..)]
        flow: Vec<String>,
    },
    /// Override the config's admin state of BACKEND with `drain`: no new flows, its open
    /// flows continue. Lasts until `clear`, a restart, or the backend leaving the config.
    Drain {
        /// The service, by its `name` in the config.
        service: String,
        /// The backend, by its `name` in the service.
        backend: String,
    },
    /// Override the config's admin state of BACKEND with `enabled` (takes new flows while
    /// healthy), even if the config says drain or disabled. Lasts until `clear`, a restart,
    /// or the backend leaving the config; `clear` returns to the config's state.
    Enable {
        /// The service, by its `name` in the config.
        service: String,
        /// The backend, by its `name` in the service.
        backend: String,
    },
    /// Override the config's admin state of BACKEND with `disabled` (maintenance: no flows
    /// at all). Lasts until `clear`, a restart, or the backend leaving the config.
    Disable {
        /// The service, by its `name` in the config.
        service: String,
        /// The backend, by its `name` in the service.
        backend: String,
    },
    /// Drop the operator's overrides (drain, enable, disable) of BACKEND, or of every
    /// backend of SERVICE: the config's admin state applies again.
    Clear {
        /// The service, by its `name` in the config.
        service: String,
        /// The backend (default: every backend of the service).
        backend: Option<String>,
    },
    /// Re-read the config file and apply it live (an invalid one changes nothing).
    Reload,
    /// Counters; with --watch, rates per port and worker every --interval seconds.
    Stats {
        /// Print rates every --interval seconds instead of the counters once.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many samples (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
        /// With --watch: seconds between samples (at least 0.05).
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Read the workers' counters straight from this shared-memory counter file (`ctl
        /// status` names it), without the control socket.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Why a `ctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("flow: {0}")]
    Flow(#[from] FlowError),
    #[error("{}: {source}", path.display())]
    Config { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    CounterFile { path: PathBuf, source: io::Error },
    #[error("output: {0}")]
    Output(#[from] io::Error),
}

/// The socket: `-s`, else `global.control_socket` of the config file, else the default.
pub fn socket_path(socket: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf, CtlError> {
    if let Some(s) = socket {
        return Ok(s);
    }
    let default = conf::Global::default().control_socket;
    let Some(path) = config else {
        return Ok(default);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| CtlError::Config {
        path: path.clone(),
        source,
    })?;
    Ok(control_socket_of(&text).unwrap_or(default))
}

/// `global.control_socket` of a config's text, read leniently: only that key has to make
/// sense, so a config being edited (other keys wrong, or the TOML itself broken elsewhere)
/// does not lock the operator out of the running balancer.
pub fn control_socket_of(text: &str) -> Option<PathBuf> {
    if let Ok(doc) = text.parse::<toml::Table>() {
        return doc
            .get("global")?
            .get("control_socket")?
            .as_str()
            .map(PathBuf::from);
    }
    // Not TOML as a whole: the key's own line under the `[global]` header.
    let mut in_global = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_global = line.trim_start_matches('[').trim_end_matches(']').trim() == "global";
        } else if in_global
            && let Ok(kv) = line.parse::<toml::Table>()
            && let Some(v) = kv.get("control_socket")
        {
            return v.as_str().map(PathBuf::from);
        }
    }
    None
}

/// Runs a `ctl` command; output closed by the reader (a pipe to `head`) ends it quietly.
pub fn ctl(path: &Path, cmd: CtlCmd, json: bool) -> Result<(), CtlError> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match run(path, cmd, json, &mut out).and_then(|()| Ok(out.flush()?)) {
        Err(CtlError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

fn request<T: DeserializeOwned>(path: &Path, req: &Request) -> Result<T, CtlError> {
    Ok(call(path, req, TIMEOUT)?)
}

fn print_json(out: &mut dyn Write, v: &impl Serialize, pretty: bool) -> io::Result<()> {
    if pretty {
        serde_json::to_writer_pretty(&mut *out, v)?;
    } else {
        serde_json::to_writer(&mut *out, v)?;
    }
    writeln!(out)
}

fn run(path: &Path, cmd: CtlCmd, json: bool, out: &mut dyn Write) -> Result<(), CtlError> {
    match cmd {
        CtlCmd::Status => {
            let v: StatusReply = request(path, &Request::Status {})?;
            if json {
                print_json(out, &v, true)?;
            } else {
                print_status(out, &v)?;
            }
        }
        CtlCmd::Services | CtlCmd::Backends => {
            let services = matches!(cmd, CtlCmd::Services);
            let v: BackendsReply = request(path, &Request::Backends {})?;
            if json {
                print_json(out, &v, true)?;
            } else if services {
                print_services(out, &v)?;
            } else {
                print_backends(out, &v)?;
            }
        }
        CtlCmd::Which { flow } => {
            for f in flowspec::parse_flows(&flow)? {
                let v: WhichReply = request(path, &Request::Which { flow: f.text })?;
                if json {
                    print_json(out, &v, false)?;
                } else {
                    print_which(out, &v)?;
                }
            }
        }
        CtlCmd::Drain { service, backend } => {
            admin(path, service, backend, AdminCmd::Drain, json, out)?
        }
        CtlCmd::Enable { service, backend } => {
            admin(path, service, backend, AdminCmd::Enable, json, out)?
        }
        CtlCmd::Disable { service, backend } => {
            admin(path, service, backend, AdminCmd::Disable, json, out)?
        }
        CtlCmd::Clear { service, backend } => {
            let v: AdminReply = request(path, &Request::ClearAdmin { service, backend })?;
            if json {
                print_json(out, &v, false)?;
            } else {
                writeln!(
                    out,
                    "{}/{}: {} override(s) cleared, the config's admin state applies \
                     (generation {})",
                    v.service,
                    v.backend.as_deref().unwrap_or("*"),
                    v.cleared.unwrap_or(0),
                    v.generation
                )?;
            }
        }
        CtlCmd::Reload => {
            let v: ReloadReply = request(path, &Request::Reload {})?;
            if json {
                print_json(out, &v, true)?;
            } else {
                writeln!(
                    out,
                    "reloaded {}: generation {}: {}",
                    v.config, v.generation, v.summary
                )?;
                for s in &v.services {
                    writeln!(
                        out,
                        "  service {}: {}, {} Maglev entries changed",
                        s.service, s.change, s.maglev_entries_changed
                    )?;
                }
            }
        }
        CtlCmd::Stats {
            file: Some(file), ..
        } => {
            let workers = dataplane::stats::read_counter_file(&file).map_err(|source| {
                CtlError::CounterFile {
                    path: file.clone(),
                    source,
                }
            })?;
            let mut totals = dataplane::stats::Counters::default();
            for w in &workers {
                totals.add(w);
            }
            let v = StatsReply {
                uptime_s: None,
                generation: None,
                workers: workers.iter().map(CounterSet::new).collect(),
                totals: CounterSet::new(&totals),
                ports: Vec::new(),
                backends: Vec::new(),
            };
            if json {
                print_json(out, &v, true)?;
            } else {
                print_stats(out, &v)?;
            }
        }
        CtlCmd::Stats {
            watch: false,
            file: None,
            ..
        } => {
            let v: StatsReply = request(path, &Request::Stats {})?;
            if json {
                print_json(out, &v, true)?;
            } else {
                print_stats(out, &v)?;
            }
        }
        CtlCmd::Stats {
            watch: true,
            count,
            interval,
            file: None,
        } => {
            let interval = Duration::from_secs_f64(interval.max(0.05));
            let mut prev: StatsReply = request(path, &Request::Stats {})?;
            let mut n = 0u64;
            while count.is_none_or(|c| n < c) {
                std::thread::sleep(interval);
                let cur: StatsReply = request(path, &Request::Stats {})?;
                let r = rates(&prev, &cur);
                if json {
                    print_json(out, &r, false)?;
                } else {
                    print_rates(out, &r)?;
                }
                out.flush()?;
                prev = cur;
                n += 1;
            }
        }
    }
    Ok(())
}

fn admin(
    path: &Path,
    service: String,
    backend: String,
    state: AdminCmd,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let req = Request::Admin {
        service,
        backend,
        state,
    };
    let v: AdminReply = request(path, &req)?;
    if json {
        print_json(out, &v, false)?;
    } else {
        writeln!(
            out,
            "{}/{}: {} (overrides the config until `ctl clear`; generation {})",
            v.service,
            v.backend.as_deref().unwrap_or("*"),
            v.admin,
            v.generation
        )?;
    }
    Ok(())
}

/// Rows under a header, each column as wide as its widest cell; `right[i]`: column `i` is
/// right-aligned (numbers).
fn table(
    out: &mut dyn Write,
    indent: &str,
    header: &[&str],
    right: &[bool],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from(indent);
        for (i, c) in cells.enumerate() {
            let w = width.get(i).copied().unwrap_or(0);
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&format!("{c:>w$}"));
            } else {
                s.push_str(&format!("{c:<w$}"));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for r in rows {
        line(out, &mut r.iter().map(String::as_str))?;
    }
    Ok(())
}

fn print_status(out: &mut dyn Write, v: &StatusReply) -> io::Result<()> {
    writeln!(out, "fulcrum {}", v.version)?;
    writeln!(
        out,
        "pid {}, up {:.1} s, snapshot generation {}, {} service(s), {} backend(s)",
        v.pid, v.uptime_s, v.generation, v.services, v.backends
    )?;
    let ports: Vec<Vec<String>> = v
        .ports
        .iter()
        .map(|p| {
            let s = p.stats.unwrap_or_default();
            let mac = if p.device_mac.is_empty() || p.device_mac == p.mac {
                p.mac.clone()
            } else {
                format!("{} (device {})", p.mac, p.device_mac)
            };
            vec![
                p.name.clone(),
                p.device.clone(),
                mac,
                p.link.clone().unwrap_or_else(|| "?".into()),
                s.rx_packets.to_string(),
                s.tx_packets.to_string(),
                s.rx_missed.to_string(),
                s.rx_errors.to_string(),
                s.tx_errors.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "",
        &[
            "port",
            "device",
            "mac on the wire",
            "link",
            "rx pkts",
            "tx pkts",
            "missed",
            "rx errors",
            "tx errors",
        ],
        &[false, false, false, false, true, true, true, true, true],
        &ports,
    )?;
    let workers: Vec<Vec<String>> = v
        .workers
        .iter()
        .map(|w| {
            vec![
                w.worker.to_string(),
                w.rx.to_string(),
                w.tx.to_string(),
                w.dropped.to_string(),
                w.flows_active.to_string(),
                w.generation.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "",
        &["worker", "rx", "tx", "dropped", "flows", "generation"],
        &[true; 6],
        &workers,
    )
}

fn port_text(p: Option<u16>) -> String {
    p.map_or_else(|| "*".into(), |p| p.to_string())
}

fn print_services(out: &mut dyn Write, v: &BackendsReply) -> io::Result<()> {
    let rows: Vec<Vec<String>> = v
        .services
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                format!("{}:{}", s.vip, port_text(s.port)),
                s.protocol.clone(),
                s.forwarding.clone(),
                s.tier.clone(),
                format!("{}/{}", s.members, s.backends.len()),
                s.flows_established.to_string(),
                s.flows_other.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "",
        &[
            "service", "vip", "proto", "mode", "tier", "usable", "active", "inact",
        ],
        &[false, false, false, false, false, true, true, true],
        &rows,
    )
}

fn print_backends(out: &mut dyn Write, v: &BackendsReply) -> io::Result<()> {
    for s in &v.services {
        writeln!(
            out,
            "service {} {}:{} {} {}: {} tier, {} of {} usable, {} active, {} inact",
            s.service,
            s.vip,
            port_text(s.port),
            s.protocol,
            s.forwarding,
            s.tier,
            s.members,
            s.backends.len(),
            s.flows_established,
            s.flows_other
        )?;
        let rows: Vec<Vec<String>> = s
            .backends
            .iter()
            .map(|b| {
                let last = match (b.last_check.as_deref(), b.last_check_ms) {
                    (Some("ok"), Some(ms)) => format!("ok in {ms:.1} ms"),
                    (Some(_), Some(ms)) => format!(
                        "failed ({}) after {ms:.1} ms",
                        b.last_check_failure.as_deref().unwrap_or("?")
                    ),
                    _ if !b.checked => "not checked".into(),
                    _ => "none yet".into(),
                };
                // The admin state when it matters; `*`: an operator's override.
                let mark = if b.admin_override.is_some() { "*" } else { "" };
                let state = if b.admin == "enabled" && b.admin_override.is_none() {
                    b.state.clone()
                } else {
                    format!("{} ({}{mark})", b.state, b.admin)
                };
                vec![
                    b.backend.clone(),
                    b.address.clone(),
                    state,
                    b.weight.to_string(),
                    b.flows_established.to_string(),
                    b.flows_other.to_string(),
                    b.packets.to_string(),
                    b.bytes.to_string(),
                    b.new_flows.to_string(),
                    b.checks.unwrap_or(0).to_string(),
                    b.check_failures.unwrap_or(0).to_string(),
                    last,
                ]
            })
            .collect();
        table(
            out,
            "  ",
            &[
                "backend",
                "address",
                "state",
                "weight",
                "active",
                "inact",
                "packets",
                "bytes",
                "new flows",
                "checks",
                "failures",
                "last check",
            ],
            &[
                false, false, false, true, true, true, true, true, true, true, true, false,
            ],
            &rows,
        )?;
    }
    Ok(())
}

/// One line per `which` answer (online and offline alike).
pub fn print_which(out: &mut dyn Write, v: &WhichReply) -> io::Result<()> {
    match (&v.service, &v.backend, v.slot) {
        (None, _, _) => writeln!(out, "{}: no service", v.flow),
        (Some(s), None, _) => writeln!(out, "{}: service {s}: empty pool (refused)", v.flow),
        (Some(s), Some(b), None) => {
            writeln!(out, "{}: service {s}: backend {b} ({})", v.flow, v.reason)
        }
        (Some(s), Some(b), Some(slot)) => {
            let mut why = format!(
                "new flow: Maglev slot {slot}, {} tier",
                v.tier.as_deref().unwrap_or("?")
            );
            if let Some(g) = v.generation {
                why += &format!(", generation {g}");
            }
            if let Some(a) = &v.assumed {
                why += &format!("; assuming {a}");
            }
            writeln!(out, "{}: service {s}: backend {b} ({why})", v.flow)
        }
    }
}

fn print_stats(out: &mut dyn Write, v: &StatsReply) -> io::Result<()> {
    let t = &v.totals;
    let mut header = vec!["counter".to_string()];
    header.extend((0..v.workers.len()).map(|i| format!("worker{i}")));
    header.push("total".into());
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |name: String, f: &dyn Fn(&CounterSet) -> u64| {
        let mut r = vec![name];
        r.extend(v.workers.iter().map(|w| f(w).to_string()));
        r.push(f(t).to_string());
        rows.push(r);
    };
    for k in t.counters.keys() {
        row(k.clone(), &|c| c.get(k));
    }
    row("dropped".into(), &|c| c.dropped);
    for (r, n) in &t.drops {
        if *n > 0 {
            row(format!("drop:{r}"), &|c| {
                c.drops.get(r).copied().unwrap_or(0)
            });
        }
    }
    let mut right = vec![true; header.len()];
    right[0] = false;
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(out, "", &header, &right, &rows)?;
    for p in &v.ports {
        let s = p.stats.unwrap_or_default();
        writeln!(
            out,
            "port {}: rx {} pkts {} bytes, tx {} pkts {} bytes, missed {}",
            p.name, s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes, s.rx_missed
        )?;
    }
    Ok(())
}

/// Per-second rates between two `stats` answers (`ctl stats --watch`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    pub interval_s: f64,
    pub uptime_s: f64,
    pub workers: Vec<WorkerRates>,
    pub ports: Vec<PortRates>,
    pub services: Vec<TrafficRates>,
    pub backends: Vec<TrafficRates>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerRates {
    pub worker: usize,
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub drop_pps: f64,
    pub new_flows_per_s: f64,
    pub flows_active: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortRates {
    pub port: String,
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub rx_bps: f64,
    pub tx_bps: f64,
    pub missed_pps: f64,
}

/// A service's or a backend's traffic rates (`backend` absent for a service).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficRates {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub pps: f64,
    pub bps: f64,
    pub new_flows_per_s: f64,
}

pub fn rates(a: &StatsReply, b: &StatsReply) -> Rates {
    let dt = (b.uptime_s.unwrap_or(0.0) - a.uptime_s.unwrap_or(0.0)).max(1e-6);
    let r = |x: u64, y: u64| y.saturating_sub(x) as f64 / dt;
    let empty = CounterSet::default();
    let workers = b
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let p = a.workers.get(i).unwrap_or(&empty);
            WorkerRates {
                worker: i,
                rx_pps: r(p.get("rx"), w.get("rx")),
                tx_pps: r(p.get("tx"), w.get("tx")),
                drop_pps: r(p.dropped, w.dropped),
                new_flows_per_s: r(p.get("flows_created"), w.get("flows_created")),
                flows_active: w.get("flows_active"),
            }
        })
        .collect();
    let ports = b
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let q = a.ports.get(i).and_then(|q| q.stats).unwrap_or_default();
            let s = p.stats.unwrap_or_default();
            PortRates {
                port: p.name.clone(),
                rx_pps: r(q.rx_packets, s.rx_packets),
                tx_pps: r(q.tx_packets, s.tx_packets),
                rx_bps: 8.0 * r(q.rx_bytes, s.rx_bytes),
                tx_bps: 8.0 * r(q.tx_bytes, s.tx_bytes),
                missed_pps: r(q.rx_missed, s.rx_missed),
            }
        })
        .collect();
    let backends: Vec<TrafficRates> = b
        .backends
        .iter()
        .map(|x| {
            let p = a
                .backends
                .iter()
                .find(|y| y.service == x.service && y.backend == x.backend);
            let before = |f: fn(&fulcrum::api::BackendTraffic) -> u64| p.map_or(0, f);
            TrafficRates {
                service: x.service.clone(),
                backend: Some(x.backend.clone()),
                pps: r(before(|p| p.packets), x.packets),
                bps: 8.0 * r(before(|p| p.bytes), x.bytes),
                new_flows_per_s: r(before(|p| p.new_flows), x.new_flows),
            }
        })
        .collect();
    let mut services: Vec<TrafficRates> = Vec::new();
    for x in &backends {
        let i = match services.iter().position(|s| s.service == x.service) {
            Some(i) => i,
            None => {
                services.push(TrafficRates {
                    service: x.service.clone(),
                    backend: None,
                    pps: 0.0,
                    bps: 0.0,
                    new_flows_per_s: 0.0,
                });
                services.len() - 1
            }
        };
        services[i].pps += x.pps;
        services[i].bps += x.bps;
        services[i].new_flows_per_s += x.new_flows_per_s;
    }
    Rates {
        interval_s: dt,
        uptime_s: b.uptime_s.unwrap_or(0.0),
        workers,
        ports,
        services,
        backends,
    }
}

fn print_rates(out: &mut dyn Write, v: &Rates) -> io::Result<()> {
    let mut line = format!("t={:>8.1}s", v.uptime_s);
    for p in &v.ports {
        line += &format!(
            "  {}: rx {:.0}/s tx {:.0}/s ({:.2}/{:.2} Mbit/s)",
            p.port,
            p.rx_pps,
            p.tx_pps,
            p.rx_bps / 1e6,
            p.tx_bps / 1e6,
        );
    }
    for w in &v.workers {
        line += &format!(
            "  w{}: rx {:.0}/s drop {:.0}/s new flows {:.0}/s flows {}",
            w.worker, w.rx_pps, w.drop_pps, w.new_flows_per_s, w.flows_active
        );
    }
    writeln!(out, "{line}")?;
    for s in v.services.iter().chain(&v.backends) {
        if s.pps > 0.0 || s.new_flows_per_s > 0.0 {
            let (indent, name) = match &s.backend {
                None => ("  service ", s.service.clone()),
                Some(b) => ("    ", format!("{}/{b}", s.service)),
            };
            writeln!(
                out,
                "{indent}{name}: {:.0} pkt/s, {:.2} Mbit/s, {:.0} new flows/s",
                s.pps,
                s.bps / 1e6,
                s.new_flows_per_s,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum::api::{BackendTraffic, PortCounters, PortStatus};

    fn counters(rx: u64, tx: u64, dropped: u64, created: u64, active: u64) -> CounterSet {
        let mut c = CounterSet::default();
        for (k, v) in [
            ("rx", rx),
            ("tx", tx),
            ("flows_created", created),
            ("flows_active", active),
        ] {
            c.counters.insert(k.into(), v);
        }
        c.dropped = dropped;
        c
    }

    fn stats(t: f64, k: u64, b2: (u64, u64)) -> StatsReply {
        let traffic = |b: &str, packets, bytes, new_flows| BackendTraffic {
            service: "web".into(),
            backend: b.into(),
            packets,
            bytes,
            new_flows,
            flows_established: 0,
            flows_other: 0,
        };
        StatsReply {
            uptime_s: Some(t),
            generation: Some(1),
            workers: vec![counters(100 * k, 90 * k, 10 * k, 5 + 2 * (k - 1), 5)],
            totals: CounterSet::default(),
            ports: vec![PortStatus {
                name: "lan".into(),
                device: "net_null0".into(),
                mac: String::new(),
                device_mac: String::new(),
                link: None,
                speed_mbps: None,
                stats: Some(PortCounters {
                    rx_packets: 100 * k,
                    tx_packets: 90 * k,
                    rx_bytes: 1000 * k,
                    tx_bytes: 900 * k,
                    ..Default::default()
                }),
            }],
            backends: vec![
                traffic("b1", 10 * k, 100 * k, k),
                traffic("b2", b2.0, b2.0 * 10, b2.1),
            ],
        }
    }

    #[test]
    fn rates_per_worker_port_service_and_backend() {
        let a = stats(1.0, 1, (0, 0));
        let b = stats(3.0, 3, (20, 2));
        let r = rates(&a, &b);
        assert_eq!(r.workers[0].rx_pps, 100.0);
        assert_eq!(r.workers[0].new_flows_per_s, 2.0);
        assert_eq!(r.ports[0].rx_bps, 8000.0);
        assert_eq!(r.backends[1].pps, 10.0);
        assert_eq!(r.services[0].pps, 20.0);
        assert_eq!(r.services[0].new_flows_per_s, 2.0);
    }

    #[test]
    fn columns_line_up() {
        let mut out = Vec::new();
        table(
            &mut out,
            "  ",
            &["name", "n"],
            &[false, true],
            &[
                vec!["a-long-name".into(), "1".into()],
                vec!["b".into(), "12345".into()],
            ],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "  name             n\n  a-long-name      1\n  b            12345\n"
        );
    }

    #[test]
    fn the_socket_path_is_read_leniently() {
        let path = |t: &str| control_socket_of(t).map(|p| p.display().to_string());
        assert_eq!(
            path("[global]\ncontrol_socket = \"/tmp/a.sock\"\n").as_deref(),
            Some("/tmp/a.sock")
        );
        // The rest of the file invalid for the schema, or not TOML at all.
        assert_eq!(
            path("[global]\ncontrol_socket = \"/tmp/b.sock\"\nnot_a_key = 3\n[[service]]\nvip = \"x\"\n")
                .as_deref(),
            Some("/tmp/b.sock")
        );
        assert_eq!(
            path("[dpdk]\nworkers = [1\n[global]\ncontrol_socket = '/tmp/c.sock' # mine\n[x\n")
                .as_deref(),
            Some("/tmp/c.sock")
        );
        assert_eq!(path("[dpdk]\ncontrol_socket = \"/tmp/no.sock\"\n"), None);
        assert_eq!(path("[global\n= = ="), None);
    }
}

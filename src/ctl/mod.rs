//! `fulcrum ctl`: the client of the control socket. Human-readable output by default (aligned
//! columns), `--json` for scripts (the reply's `data`, one JSON document per request). A
//! closed output pipe (`fulcrum ctl ... | head -1`) ends it quietly.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use fulcrum::api::{
    AdminCmd, AdminReply, BackendsReply, CounterSet, ReloadReply, Request, StatsReply, StatusReply,
    VrrpCmd, VrrpReply, WhichReply,
};
use fulcrum::flowspec::{self, FlowError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{CallError, call};

mod print;
mod rates;

pub use print::{backend_changes, print_which};
use print::{print_backends, print_rates, print_services, print_stats, print_status};
pub use rates::rates;

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
    /// Set this node's VRRP role, as keepalived's notify hooks do: only the master answers
    /// ARP/ND for the VIPs of `announce = "vrrp"` services, and on becoming master sends
    /// gratuitous ARP (unsolicited NA) for them. A node starts as backup.
    Vrrp {
        /// `master`, `backup` or `fault` (answers nothing, like backup).
        #[arg(value_enum)]
        state: VrrpState,
        /// The keepalived process that sets it (in a notify script: `$PPID`): when it dies,
        /// the node falls back to backup.
        #[arg(long, value_name = "PID")]
        holder: Option<u32>,
    },
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

/// `ctl vrrp`'s role argument.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum VrrpState {
    Master,
    Backup,
    Fault,
}

impl From<VrrpState> for VrrpCmd {
    fn from(s: VrrpState) -> VrrpCmd {
        match s {
            VrrpState::Master => VrrpCmd::Master,
            VrrpState::Backup => VrrpCmd::Backup,
            VrrpState::Fault => VrrpCmd::Fault,
        }
    }
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
        CtlCmd::Vrrp { state, holder } => {
            let req = Request::Vrrp {
                state: state.into(),
                holder,
            };
            let v: VrrpReply = request(path, &req)?;
            if json {
                print_json(out, &v, false)?;
            } else {
                let vips = if v.vips.is_empty() {
                    "no VIP has announce = \"vrrp\"".to_string()
                } else if v.state == "master" {
                    format!("answering ARP/ND for {}", v.vips.join(", "))
                } else {
                    format!("not answering for {}", v.vips.join(", "))
                };
                writeln!(
                    out,
                    "vrrp: {} (was {}): {vips} (generation {})",
                    v.state, v.previous, v.generation
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
                        "  service {}: {}, {} Maglev entries changed{}",
                        s.service,
                        s.change,
                        s.maglev_entries_changed,
                        backend_changes(s)
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
                kernel: None,
                sync: None,
                vrrp: None,
                local_ports: Vec::new(),
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
#[cfg(test)]
mod tests {
    use super::print::table;
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
            kernel: None,
            sync: None,
            vrrp: None,
            local_ports: Vec::new(),
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

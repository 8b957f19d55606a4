//! `fulcrum ctl`: the client of the control socket. Human-readable output by default,
//! `--json` for scripts (the response's `data`, one JSON document per request).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use crate::control::{Request, call};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Subcommand, Debug)]
pub enum CtlCmd {
    /// Version, uptime, ports (link, rx/tx, drops), workers, snapshot generation.
    Status,
    /// Services: VIP, tier, usable backends, active flows.
    Services,
    /// Backends of every service: state, weight, active flows, traffic, checks.
    ///
    /// Per backend: admin/health state, weight, active flows ("active": TCP established,
    /// "inact": half-open, closing or UDP, like IPVS's ActiveConn/InActConn), packets,
    /// bytes and new flows forwarded, health checks (count, failures, last result and its
    /// latency).
    ///
    /// Active flows come from each worker's flow-table expiry sweep, which passes every
    /// entry once a second and counts it under its backend (no cost per packet): a figure
    /// is the table as the last completed pass saw it, so it is up to about 2 s old. A NAT
    /// flow counts once. A drained backend keeps its flows until they end; flows of a
    /// backend removed by a reload are no longer listed.
    Backends,
    /// Which backend a new flow "SRC:PORT DST:PORT [tcp|udp]" goes to now, and why.
    Which {
        #[arg(value_name = "SRC:PORT")]
        src: String,
        #[arg(value_name = "DST:PORT")]
        dst: String,
        #[arg(default_value = "tcp")]
        proto: String,
    },
    /// No new flows to BACKEND; its open flows continue.
    Drain { service: String, backend: String },
    /// Back to the config's admin state... enabled: takes new flows again.
    Enable { service: String, backend: String },
    /// Maintenance: no flows at all to BACKEND.
    Disable { service: String, backend: String },
    /// Re-read the config file and apply it live (an invalid one changes nothing).
    Reload,
    /// Counters; with --watch, rates per port and worker every --interval seconds.
    Stats {
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many samples (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Read the workers' counters straight from this shared-memory counter file (`ctl
        /// status` names it), without the control socket.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// The socket: `-s`, else the config's `global.control_socket`, else the default.
pub fn socket_path(socket: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(s) = socket {
        return Ok(s);
    }
    if let Some(c) = config {
        return Ok(conf::load(&c)
            .map_err(|e| e.to_string())?
            .global
            .control_socket);
    }
    Ok(conf::Global::default().control_socket)
}

fn request(path: &Path, req: &Request) -> Result<Value, String> {
    let r = call(path, req, TIMEOUT)?;
    if r.ok {
        Ok(r.data)
    } else {
        Err(r.error.unwrap_or_else(|| "failed".into()))
    }
}

pub fn ctl(path: &Path, cmd: CtlCmd, json: bool) -> Result<(), String> {
    let print_json = |v: &Value| println!("{}", serde_json::to_string_pretty(v).expect("json"));
    match cmd {
        CtlCmd::Status => {
            let v = request(path, &Request::Status)?;
            if json {
                print_json(&v);
            } else {
                print_status(&v);
            }
        }
        CtlCmd::Services | CtlCmd::Backends => {
            let services = matches!(cmd, CtlCmd::Services);
            let v = request(path, &Request::Backends)?;
            if json {
                print_json(&v);
            } else {
                print_backends(&v, services);
            }
        }
        CtlCmd::Which { src, dst, proto } => {
            let flow = format!("{src} {dst} {proto}");
            let v = request(path, &Request::Which { flow })?;
            if json {
                println!("{v}");
            } else {
                match (v["service"].as_str(), v["backend"].as_str()) {
                    (None, _) => println!("{}: no service", v["flow"].as_str().unwrap_or("")),
                    (Some(s), None) => println!(
                        "{}: service {s}: empty pool (refused)",
                        v["flow"].as_str().unwrap_or("")
                    ),
                    (Some(s), Some(b)) if v["slot"].is_null() => println!(
                        "{}: service {s}: backend {b} ({})",
                        v["flow"].as_str().unwrap_or(""),
                        v["reason"].as_str().unwrap_or("")
                    ),
                    (Some(s), Some(b)) => println!(
                        "{}: service {s}: backend {b} (new flow: Maglev slot {}, {} tier, \
                         generation {})",
                        v["flow"].as_str().unwrap_or(""),
                        v["slot"],
                        v["tier"].as_str().unwrap_or(""),
                        v["generation"]
                    ),
                }
            }
        }
        CtlCmd::Drain {
            ref service,
            ref backend,
        }
        | CtlCmd::Enable {
            ref service,
            ref backend,
        }
        | CtlCmd::Disable {
            ref service,
            ref backend,
        } => {
            let state = match cmd {
                CtlCmd::Drain { .. } => "drain",
                CtlCmd::Enable { .. } => "enable",
                _ => "disable",
            };
            let v = request(
                path,
                &Request::Admin {
                    service: service.clone(),
                    backend: backend.clone(),
                    state: state.into(),
                },
            )?;
            if json {
                println!("{v}");
            } else {
                println!(
                    "{service}/{backend}: {state} (generation {})",
                    v["generation"]
                );
            }
        }
        CtlCmd::Reload => {
            let v = request(path, &Request::Reload)?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "reloaded {}: generation {}: {}",
                    v["config"].as_str().unwrap_or(""),
                    v["generation"],
                    v["summary"].as_str().unwrap_or("")
                );
                for s in v["services"].as_array().into_iter().flatten() {
                    println!(
                        "  service {}: {}, {} Maglev entries changed",
                        s["service"].as_str().unwrap_or(""),
                        s["change"].as_str().unwrap_or(""),
                        s["maglev_entries_changed"]
                    );
                }
            }
        }
        CtlCmd::Stats {
            watch,
            count,
            interval,
            file: Some(file),
        } => {
            let _ = (watch, count, interval);
            let workers = dataplane::stats::read_counter_file(&file)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let mut totals = dataplane::stats::Counters::default();
            for w in &workers {
                totals.add(w);
            }
            let v = serde_json::json!({
                "workers": workers.iter().map(crate::control::counters_map).collect::<Vec<_>>(),
                "totals": crate::control::counters_map(&totals),
            });
            if json {
                print_json(&v);
            } else {
                print_stats(&v);
            }
        }
        CtlCmd::Stats {
            watch,
            count,
            interval,
            file: None,
        } => {
            if !watch {
                let v = request(path, &Request::Stats)?;
                if json {
                    print_json(&v);
                } else {
                    print_stats(&v);
                }
                return Ok(());
            }
            let interval = Duration::from_secs_f64(interval.max(0.05));
            let mut prev = request(path, &Request::Stats)?;
            let mut n = 0u64;
            while count.is_none_or(|c| n < c) {
                std::thread::sleep(interval);
                let cur = request(path, &Request::Stats)?;
                let rates = rates(&prev, &cur);
                if json {
                    println!("{rates}");
                } else {
                    print_rates(&rates);
                }
                prev = cur;
                n += 1;
            }
        }
    }
    Ok(())
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn print_status(v: &Value) {
    println!("fulcrum {}", v["version"].as_str().unwrap_or("?"));
    println!(
        "pid {}, up {:.1} s, snapshot generation {}, {} service(s), {} backend(s)",
        v["pid"],
        v["uptime_s"].as_f64().unwrap_or(0.0),
        v["generation"],
        v["services"],
        v["backends"]
    );
    for p in v["ports"].as_array().into_iter().flatten() {
        println!(
            "port {} ({}): link {}, rx {} pkts, tx {} pkts, missed {}, errors rx {} tx {}",
            p["name"].as_str().unwrap_or(""),
            p["device"].as_str().unwrap_or(""),
            p["link"].as_str().unwrap_or("?"),
            u(&p["rx_packets"]),
            u(&p["tx_packets"]),
            u(&p["rx_missed"]),
            u(&p["rx_errors"]),
            u(&p["tx_errors"])
        );
    }
    for w in v["workers"].as_array().into_iter().flatten() {
        println!(
            "worker {}: rx {}, tx {}, dropped {}, flows {}, generation {}",
            w["worker"],
            u(&w["rx"]),
            u(&w["tx"]),
            u(&w["dropped"]),
            u(&w["flows_active"]),
            w["generation"]
        );
    }
}

fn print_backends(v: &Value, services_only: bool) {
    for s in v["services"].as_array().into_iter().flatten() {
        println!(
            "service {} {}:{} {} {}: {} tier, {} usable, {} active flows ({} established)",
            s["service"].as_str().unwrap_or(""),
            s["vip"].as_str().unwrap_or(""),
            s["port"],
            s["protocol"].as_str().unwrap_or(""),
            s["forwarding"].as_str().unwrap_or(""),
            s["tier"].as_str().unwrap_or(""),
            s["members"],
            u(&s["flows_active"]),
            u(&s["flows_established"])
        );
        if services_only {
            continue;
        }
        println!(
            "  {:<12}{:<16}{:<12}{:>8}{:>8}{:>8}{:>10}{:>12}{:>10}{:>8}{:>10}  last check",
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
            "failures"
        );
        for b in s["backends"].as_array().into_iter().flatten() {
            let last = match (b["last_check"].as_str(), b["last_check_ms"].as_f64()) {
                (Some("ok"), Some(ms)) => format!("ok in {ms:.1} ms"),
                (Some(_), Some(ms)) => format!(
                    "failed ({}) after {ms:.1} ms",
                    b["last_check_failure"].as_str().unwrap_or("?")
                ),
                _ if b["checked"] == false => "not checked".into(),
                _ => "none yet".into(),
            };
            let state = match b["admin_override"].as_str() {
                Some(a) => format!("{} ({a})", b["state"].as_str().unwrap_or("")),
                None => b["state"].as_str().unwrap_or("").to_string(),
            };
            println!(
                "  {:<12}{:<16}{:<12}{:>8}{:>8}{:>8}{:>10}{:>12}{:>10}{:>8}{:>10}  {last}",
                b["backend"].as_str().unwrap_or(""),
                b["address"].as_str().unwrap_or(""),
                state,
                u(&b["weight"]),
                u(&b["flows_established"]),
                u(&b["flows_other"]),
                u(&b["packets"]),
                u(&b["bytes"]),
                u(&b["new_flows"]),
                u(&b["checks"]),
                u(&b["check_failures"]),
            );
        }
    }
}

fn print_stats(v: &Value) {
    let t = &v["totals"];
    let workers = v["workers"].as_array().cloned().unwrap_or_default();
    print!("{:<18}", "counter");
    for i in 0..workers.len() {
        print!("{:>14}", format!("worker{i}"));
    }
    println!("{:>14}", "total");
    if let Some(o) = t.as_object() {
        for (k, tv) in o.iter().filter(|(_, v)| v.is_u64()) {
            print!("{k:<18}");
            for w in &workers {
                print!("{:>14}", u(&w[k]));
            }
            println!("{:>14}", u(tv));
        }
        for (r, tv) in t["drops"].as_object().into_iter().flatten() {
            if u(tv) == 0 {
                continue;
            }
            print!("{:<18}", format!("drop:{r}"));
            for w in &workers {
                print!("{:>14}", u(&w["drops"][r]));
            }
            println!("{:>14}", u(tv));
        }
    }
    for p in v["ports"].as_array().into_iter().flatten() {
        println!(
            "port {}: rx {} pkts {} bytes, tx {} pkts {} bytes, missed {}",
            p["name"].as_str().unwrap_or(""),
            u(&p["rx_packets"]),
            u(&p["rx_bytes"]),
            u(&p["tx_packets"]),
            u(&p["tx_bytes"]),
            u(&p["rx_missed"])
        );
    }
}

/// Per-second rates between two `stats` answers.
pub fn rates(a: &Value, b: &Value) -> Value {
    let dt =
        (b["uptime_s"].as_f64().unwrap_or(0.0) - a["uptime_s"].as_f64().unwrap_or(0.0)).max(1e-6);
    let r = |x: &Value, y: &Value| (u(y).saturating_sub(u(x))) as f64 / dt;
    let workers: Vec<Value> = b["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, w)| {
            let p = &a["workers"][i];
            serde_json::json!({
                "worker": i,
                "rx_pps": r(&p["rx"], &w["rx"]),
                "tx_pps": r(&p["tx"], &w["tx"]),
                "drop_pps": r(&p["dropped"], &w["dropped"]),
                "new_flows_per_s": r(&p["flows_created"], &w["flows_created"]),
                "flows_active": u(&w["flows_active"]),
            })
        })
        .collect();
    let ports: Vec<Value> = b["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| {
            let q = &a["ports"][i];
            serde_json::json!({
                "port": p["name"],
                "rx_pps": r(&q["rx_packets"], &p["rx_packets"]),
                "tx_pps": r(&q["tx_packets"], &p["tx_packets"]),
                "rx_bps": 8.0 * r(&q["rx_bytes"], &p["rx_bytes"]),
                "tx_bps": 8.0 * r(&q["tx_bytes"], &p["tx_bytes"]),
                "missed_pps": r(&q["rx_missed"], &p["rx_missed"]),
            })
        })
        .collect();
    let backends: Vec<Value> = b["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let p = a["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|y| y["service"] == x["service"] && y["backend"] == x["backend"])
                .unwrap_or(&Value::Null);
            serde_json::json!({
                "service": x["service"], "backend": x["backend"],
                "pps": r(&p["packets"], &x["packets"]),
                "bps": 8.0 * r(&p["bytes"], &x["bytes"]),
                "new_flows_per_s": r(&p["new_flows"], &x["new_flows"]),
            })
        })
        .collect();
    let mut services: Vec<Value> = Vec::new();
    for x in &backends {
        let name = &x["service"];
        let i = match services.iter().position(|s| &s["service"] == name) {
            Some(i) => i,
            None => {
                services.push(serde_json::json!({
                    "service": name, "pps": 0.0, "bps": 0.0, "new_flows_per_s": 0.0,
                }));
                services.len() - 1
            }
        };
        for k in ["pps", "bps", "new_flows_per_s"] {
            let sum = services[i][k].as_f64().unwrap_or(0.0) + x[k].as_f64().unwrap_or(0.0);
            services[i][k] = serde_json::json!(sum);
        }
    }
    serde_json::json!({
        "interval_s": dt, "uptime_s": b["uptime_s"], "workers": workers, "ports": ports,
        "services": services, "backends": backends,
    })
}

fn print_rates(v: &Value) {
    let mut line = format!("t={:>8.1}s", v["uptime_s"].as_f64().unwrap_or(0.0));
    for p in v["ports"].as_array().into_iter().flatten() {
        line += &format!(
            "  {}: rx {:.0}/s tx {:.0}/s ({:.2}/{:.2} Mbit/s)",
            p["port"].as_str().unwrap_or(""),
            p["rx_pps"].as_f64().unwrap_or(0.0),
            p["tx_pps"].as_f64().unwrap_or(0.0),
            p["rx_bps"].as_f64().unwrap_or(0.0) / 1e6,
            p["tx_bps"].as_f64().unwrap_or(0.0) / 1e6,
        );
    }
    for w in v["workers"].as_array().into_iter().flatten() {
        line += &format!(
            "  w{}: rx {:.0}/s drop {:.0}/s new flows {:.0}/s active {}",
            w["worker"],
            w["rx_pps"].as_f64().unwrap_or(0.0),
            w["drop_pps"].as_f64().unwrap_or(0.0),
            w["new_flows_per_s"].as_f64().unwrap_or(0.0),
            u(&w["flows_active"])
        );
    }
    println!("{line}");
    for s in v["services"].as_array().into_iter().flatten() {
        let (pps, nf) = (
            s["pps"].as_f64().unwrap_or(0.0),
            s["new_flows_per_s"].as_f64().unwrap_or(0.0),
        );
        if pps > 0.0 || nf > 0.0 {
            println!(
                "  service {}: {pps:.0} pkt/s, {:.2} Mbit/s, {nf:.0} new flows/s",
                s["service"].as_str().unwrap_or(""),
                s["bps"].as_f64().unwrap_or(0.0) / 1e6,
            );
        }
    }
    for b in v["backends"].as_array().into_iter().flatten() {
        let (pps, nf) = (
            b["pps"].as_f64().unwrap_or(0.0),
            b["new_flows_per_s"].as_f64().unwrap_or(0.0),
        );
        if pps > 0.0 || nf > 0.0 {
            println!(
                "    {}/{}: {pps:.0} pkt/s, {:.2} Mbit/s, {nf:.0} new flows/s",
                b["service"].as_str().unwrap_or(""),
                b["backend"].as_str().unwrap_or(""),
                b["bps"].as_f64().unwrap_or(0.0) / 1e6,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_per_worker_port_service_and_backend() {
        let a = json!({"uptime_s": 1.0,
            "workers": [{"rx": 100, "tx": 90, "dropped": 10, "flows_created": 5, "flows_active": 5}],
            "ports": [{"name": "lan", "rx_packets": 100, "tx_packets": 90, "rx_bytes": 1000, "tx_bytes": 900}],
            "backends": [{"service": "web", "backend": "b1", "packets": 10, "bytes": 100, "new_flows": 1},
                         {"service": "web", "backend": "b2", "packets": 0, "bytes": 0, "new_flows": 0}]});
        let b = json!({"uptime_s": 3.0,
            "workers": [{"rx": 300, "tx": 270, "dropped": 30, "flows_created": 9, "flows_active": 7}],
            "ports": [{"name": "lan", "rx_packets": 300, "tx_packets": 270, "rx_bytes": 3000, "tx_bytes": 2700}],
            "backends": [{"service": "web", "backend": "b1", "packets": 30, "bytes": 300, "new_flows": 3},
                         {"service": "web", "backend": "b2", "packets": 20, "bytes": 200, "new_flows": 2}]});
        let r = rates(&a, &b);
        assert_eq!(r["workers"][0]["rx_pps"], 100.0);
        assert_eq!(r["workers"][0]["new_flows_per_s"], 2.0);
        assert_eq!(r["ports"][0]["rx_bps"], 8000.0);
        assert_eq!(r["backends"][1]["pps"], 10.0);
        assert_eq!(r["services"][0]["pps"], 20.0);
        assert_eq!(r["services"][0]["new_flows_per_s"], 2.0);
    }
}

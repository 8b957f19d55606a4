//! The Prometheus endpoint (`global.metrics_listen`): `GET /metrics` answered in the text
//! exposition format, served non-blocking from the slow-path loop like the control socket,
//! from the same figures as `fulcrum ctl stats` and `fulcrum ctl backends`.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use dataplane::engine::Engine;
use serde_json::Value;
use slowpath::SlowPath;

use crate::requests::Requests;

/// Connections read at once; more wait in the listen backlog.
const MAX_PENDING: usize = 16;
/// A request (its headers) longer than this is answered as it is (a 404, unless it starts
/// with a GET of the metrics).
const MAX_REQUEST: usize = 8192;
/// A client that has not sent its request headers by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

pub struct MetricsServer {
    listener: TcpListener,
    requests: Requests<TcpStream>,
    started: Instant,
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr, started: Instant) -> Result<MetricsServer, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("metrics_listen {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("metrics_listen {addr}: {e}"))?;
        tracing::info!(%addr, "metrics endpoint listening");
        Ok(MetricsServer {
            listener,
            requests: Requests::new(
                "metrics endpoint",
                MAX_PENDING,
                MAX_REQUEST,
                REQUEST_TIMEOUT,
            ),
            started,
        })
    }

    /// Accepts, reads and answers what is ready; never blocks.
    pub fn poll(&mut self, engine: &Engine, slow: &SlowPath) -> usize {
        let ready = self.requests.poll(&self.listener, |buf| {
            buf.windows(4).any(|w| w == b"\r\n\r\n")
        });
        let done = ready.len();
        for (mut s, buf) in ready {
            let first = String::from_utf8_lossy(&buf)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let (status, ctype, body) =
                if first.starts_with("GET /metrics") || first.starts_with("GET / ") {
                    (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        render(engine, slow, self.started),
                    )
                } else {
                    ("404 Not Found", "text/plain", "try GET /metrics\n".into())
                };
            let _ = s.set_nonblocking(false);
            let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        done
    }
}

/// Writes a label value escaped as the text format wants.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, String)], v: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
            .collect();
        if l.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {v}", l.join(","));
        }
    }
}

/// The per-worker counters and their metric names: `fulcrum_<counter>_total`, except the
/// gauge `flows_active`.
pub fn worker_metric(counter: &str) -> (String, &'static str) {
    if counter == "flows_active" {
        ("fulcrum_flows_active".into(), "gauge")
    } else {
        (format!("fulcrum_{counter}_total"), "counter")
    }
}

/// The whole exposition text.
pub fn render(engine: &Engine, slow: &SlowPath, started: Instant) -> String {
    let stats = crate::control::stats(engine, started);
    let backends = crate::control::backends(engine, slow);
    render_json(&stats, &backends)
}

/// The exposition text from the JSON of `ctl stats` and `ctl backends` (so the two agree
/// by construction).
pub fn render_json(stats: &Value, backends: &Value) -> String {
    let mut o = Out(String::new());
    o.head("fulcrum_uptime_seconds", "gauge", "Seconds since start.");
    o.sample(
        "fulcrum_uptime_seconds",
        &[],
        stats["uptime_s"].as_f64().unwrap_or(0.0),
    );
    o.head(
        "fulcrum_snapshot_generation",
        "gauge",
        "Generation of the published snapshot.",
    );
    o.sample(
        "fulcrum_snapshot_generation",
        &[],
        stats["generation"].as_f64().unwrap_or(0.0),
    );
    let workers = stats["workers"].as_array().cloned().unwrap_or_default();
    if let Some(first) = workers.first().and_then(|w| w.as_object()) {
        for (k, _) in first.iter().filter(|(_, v)| v.is_u64()) {
            if k == "dropped" {
                continue;
            }
            let (name, kind) = worker_metric(k);
            o.head(&name, kind, &format!("Worker counter {k}."));
            for (i, w) in workers.iter().enumerate() {
                o.sample(
                    &name,
                    &[("worker", i.to_string())],
                    w[k].as_f64().unwrap_or(0.0),
                );
            }
        }
        o.head(
            "fulcrum_drops_total",
            "counter",
            "Packets dropped, by worker and reason.",
        );
        for (i, w) in workers.iter().enumerate() {
            if let Some(d) = w["drops"].as_object() {
                for (reason, v) in d {
                    o.sample(
                        "fulcrum_drops_total",
                        &[("worker", i.to_string()), ("reason", reason.clone())],
                        v.as_f64().unwrap_or(0.0),
                    );
                }
            }
        }
    }
    let ports = stats["ports"].as_array().cloned().unwrap_or_default();
    for (field, name, help) in [
        (
            "rx_packets",
            "fulcrum_port_rx_packets_total",
            "Packets the port received.",
        ),
        (
            "tx_packets",
            "fulcrum_port_tx_packets_total",
            "Packets the port sent.",
        ),
        (
            "rx_bytes",
            "fulcrum_port_rx_bytes_total",
            "Bytes the port received.",
        ),
        (
            "tx_bytes",
            "fulcrum_port_tx_bytes_total",
            "Bytes the port sent.",
        ),
        (
            "rx_missed",
            "fulcrum_port_rx_missed_total",
            "Packets dropped for full RX queues.",
        ),
        (
            "rx_errors",
            "fulcrum_port_rx_errors_total",
            "Erroneous packets received.",
        ),
        (
            "tx_errors",
            "fulcrum_port_tx_errors_total",
            "Failed transmissions.",
        ),
    ] {
        o.head(name, "counter", help);
        for p in &ports {
            o.sample(
                name,
                &[("port", p["name"].as_str().unwrap_or("").to_string())],
                p[field].as_f64().unwrap_or(0.0),
            );
        }
    }
    o.head(
        "fulcrum_port_link_up",
        "gauge",
        "1 when the port's link is up.",
    );
    for p in &ports {
        o.sample(
            "fulcrum_port_link_up",
            &[("port", p["name"].as_str().unwrap_or("").to_string())],
            if p["link"] == "up" { 1.0 } else { 0.0 },
        );
    }
    let services = backends["services"].as_array().cloned().unwrap_or_default();
    o.head(
        "fulcrum_service_usable_backends",
        "gauge",
        "Backends taking new flows.",
    );
    for s in &services {
        o.sample(
            "fulcrum_service_usable_backends",
            &[("service", s["service"].as_str().unwrap_or("").to_string())],
            s["members"].as_f64().unwrap_or(0.0),
        );
    }
    let per_backend = |o: &mut Out, name: &str, f: &dyn Fn(&Value) -> Option<f64>| {
        for s in &services {
            for b in s["backends"].as_array().into_iter().flatten() {
                if let Some(v) = f(b) {
                    o.sample(
                        name,
                        &[
                            ("service", s["service"].as_str().unwrap_or("").to_string()),
                            ("backend", b["backend"].as_str().unwrap_or("").to_string()),
                        ],
                        v,
                    );
                }
            }
        }
    };
    o.head(
        "fulcrum_backend_up",
        "gauge",
        "1 when the backend takes new flows (state up).",
    );
    per_backend(&mut o, "fulcrum_backend_up", &|b| {
        Some(if b["state"] == "up" { 1.0 } else { 0.0 })
    });
    o.head(
        "fulcrum_backend_weight",
        "gauge",
        "Effective Maglev weight.",
    );
    per_backend(&mut o, "fulcrum_backend_weight", &|b| b["weight"].as_f64());
    for (field, name, help) in [
        (
            "packets",
            "fulcrum_backend_packets_total",
            "Packets forwarded to the backend.",
        ),
        (
            "bytes",
            "fulcrum_backend_bytes_total",
            "Bytes forwarded to the backend.",
        ),
        (
            "new_flows",
            "fulcrum_backend_new_flows_total",
            "New flows given to the backend.",
        ),
    ] {
        o.head(name, "counter", help);
        per_backend(&mut o, name, &|b| b[field].as_f64());
    }
    o.head(
        "fulcrum_backend_flows_active",
        "gauge",
        "Flows in the flow tables per backend, by state (established: TCP handshake completed; \
         other: half-open, closing, UDP); counted by the expiry sweep, up to about 2 s old; a \
         NAT flow counts once.",
    );
    for s in &services {
        for b in s["backends"].as_array().into_iter().flatten() {
            for (state, field) in [
                ("established", "flows_established"),
                ("other", "flows_other"),
            ] {
                o.sample(
                    "fulcrum_backend_flows_active",
                    &[
                        ("service", s["service"].as_str().unwrap_or("").to_string()),
                        ("backend", b["backend"].as_str().unwrap_or("").to_string()),
                        ("state", state.to_string()),
                    ],
                    b[field].as_f64().unwrap_or(0.0),
                );
            }
        }
    }
    o.head(
        "fulcrum_backend_checks_total",
        "counter",
        "Health checks finished.",
    );
    per_backend(&mut o, "fulcrum_backend_checks_total", &|b| {
        b["checks"].as_f64()
    });
    o.head(
        "fulcrum_backend_check_failures_total",
        "counter",
        "Health checks failed.",
    );
    per_backend(&mut o, "fulcrum_backend_check_failures_total", &|b| {
        b["check_failures"].as_f64()
    });
    o.head(
        "fulcrum_backend_last_check_seconds",
        "gauge",
        "Duration of the last health check.",
    );
    per_backend(&mut o, "fulcrum_backend_last_check_seconds", &|b| {
        b["last_check_ms"].as_f64().map(|ms| ms / 1000.0)
    });
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_format_lines() {
        let stats = json!({
            "uptime_s": 1.5, "generation": 4,
            "workers": [{"rx": 10, "tx": 9, "flows_active": 2, "dropped": 1, "drops": {"not_vip": 1}}],
            "ports": [{"name": "lan", "link": "up", "rx_packets": 10}],
        });
        let backends = json!({"services": [{"service": "web", "members": 1, "backends": [
            {"backend": "b\"1", "state": "up", "weight": 100, "checks": 3, "check_failures": 0, "last_check_ms": 2.0,
             "flows_established": 5, "flows_other": 2}
        ]}]});
        let t = render_json(&stats, &backends);
        assert!(t.contains("fulcrum_rx_total{worker=\"0\"} 10\n"), "{t}");
        assert!(t.contains("# TYPE fulcrum_flows_active gauge\n"), "{t}");
        assert!(t.contains("fulcrum_drops_total{worker=\"0\",reason=\"not_vip\"} 1\n"));
        assert!(t.contains("fulcrum_backend_up{service=\"web\",backend=\"b\\\"1\"} 1\n"));
        assert!(t.contains("fulcrum_port_link_up{port=\"lan\"} 1\n"));
        assert!(
            t.contains("# TYPE fulcrum_backend_flows_active gauge\n"),
            "{t}"
        );
        assert!(t.contains(
            "fulcrum_backend_flows_active{service=\"web\",backend=\"b\\\"1\",state=\"established\"} 5\n"
        ));
        assert!(t.contains(
            "fulcrum_backend_flows_active{service=\"web\",backend=\"b\\\"1\",state=\"other\"} 2\n"
        ));
        for line in t.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("fulcrum_"),
                "{line}"
            );
        }
    }
}

//! The Prometheus endpoint (`global.metrics_listen`): `GET /metrics` answered in the text
//! exposition format, served from the slow-path loop like the control socket (readiness,
//! bounded, never blocking: [`crate::requests::Server`]), from the same typed replies as
//! `fulcrum ctl stats` and `fulcrum ctl backends`. Requests are read by [`fulcrum::http`]:
//! other paths are 404, other methods 405, an oversized head 431.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dataplane::engine::Engine;
use dataplane::snapshot::BackendState;
use fulcrum::api::{BackendInfo, BackendsReply, LocalPortsInUse, StatsReply};
use fulcrum::http;
use slowpath::SlowPath;

use crate::control::ControlServer;
use crate::requests::{BindError, EndpointStats, Limits, Server};

/// Bounds on the endpoint's connections: a scraper needs one at a time.
const LIMITS: Limits = Limits {
    max_conns: 256,
    max_per_client: 64,
    max_len: http::MAX_HEAD,
    idle: Duration::from_secs(2),
    deadline: Duration::from_secs(5),
};

pub struct MetricsServer {
    server: Server<mio::net::TcpListener>,
    started: Instant,
    /// Requests answered with anything but the page.
    refused: u64,
}

impl MetricsServer {
    /// Binds `addr` with a listen backlog as long as the connections it may hold (the
    /// kernel caps it at `net.core.somaxconn`).
    pub fn bind(addr: SocketAddr, started: Instant) -> Result<MetricsServer, BindError> {
        let what = |source| BindError::Metrics { addr, source };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(what)?;
        socket.set_reuse_address(true).map_err(what)?;
        socket.bind(&addr.into()).map_err(what)?;
        socket
            .listen(i32::try_from(LIMITS.max_conns).unwrap_or(i32::MAX))
            .map_err(what)?;
        socket.set_nonblocking(true).map_err(what)?;
        let listener = mio::net::TcpListener::from_std(socket.into());
        let server =
            Server::new("metrics endpoint", listener, LIMITS, http::complete).map_err(what)?;
        tracing::info!(%addr, "metrics endpoint listening");
        Ok(MetricsServer {
            server,
            started,
            refused: 0,
        })
    }

    /// Accepts, reads and answers what is ready; never blocks. `control`: the control
    /// socket, whose connection counters the page shows beside this endpoint's.
    pub fn poll(
        &mut self,
        engine: &Engine,
        slow: &SlowPath,
        control: Option<&ControlServer>,
    ) -> usize {
        let started = self.started;
        let mut endpoints: Vec<EndpointStats> = control.map(|c| c.endpoint()).into_iter().collect();
        endpoints.push(EndpointStats {
            endpoint: "metrics",
            server: self.server.stats,
            refused: self.refused,
            open: self.server.open(),
        });
        let refused = &mut self.refused;
        self.server.serve(|req, _| {
            let route = http::route(req);
            if !matches!(route, http::Route::Metrics { .. }) {
                *refused += 1;
            }
            Some(http::respond(route, || {
                render(
                    &crate::control::stats(engine, slow, started),
                    &crate::control::backends(engine, slow),
                    &endpoints,
                )
            }))
        })
    }
}

/// A label value escaped as the text format wants.
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
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(self.0, "{sep}{k}=\"{}\"", esc(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }
}

/// The per-worker counters that are gauges (a level, not a count of events).
pub const WORKER_GAUGES: [&str; 2] = ["flows_active", "local_ports_in_use"];

/// The per-worker counters and their metric names: `fulcrum_<counter>_total`, except the
/// gauges ([`WORKER_GAUGES`]), `fulcrum_<counter>`.
pub fn worker_metric(counter: &str) -> (String, &'static str) {
    if WORKER_GAUGES.contains(&counter) {
        (format!("fulcrum_{counter}"), "gauge")
    } else {
        (format!("fulcrum_{counter}_total"), "counter")
    }
}

/// The admin states a backend can be in, for the enum gauge.
const ADMIN_STATES: [conf::AdminState; 3] = [
    conf::AdminState::Enabled,
    conf::AdminState::Drain,
    conf::AdminState::Disabled,
];

/// The health states a check can report, for the enum gauge.
const HEALTH_STATES: [slowpath::health::Health; 4] = [
    slowpath::health::Health::Up,
    slowpath::health::Health::Down,
    slowpath::health::Health::Drain,
    slowpath::health::Health::Maint,
];

/// The whole exposition text, from the replies of `ctl stats` and `ctl backends` (so the
/// two agree by construction).
pub fn render(stats: &StatsReply, backends: &BackendsReply, endpoints: &[EndpointStats]) -> String {
    let mut o = Out(String::new());
    o.head("fulcrum_uptime_seconds", "gauge", "Seconds since start.");
    o.sample("fulcrum_uptime_seconds", &[], stats.uptime_s.unwrap_or(0.0));
    o.head(
        "fulcrum_snapshot_generation",
        "gauge",
        "Generation of the published snapshot.",
    );
    o.sample(
        "fulcrum_snapshot_generation",
        &[],
        stats.generation.unwrap_or(0) as f64,
    );
    let workers: Vec<String> = (0..stats.workers.len()).map(|i| i.to_string()).collect();
    if let Some(first) = stats.workers.first() {
        for k in first.counters.keys() {
            let (name, kind) = worker_metric(k);
            o.head(&name, kind, &format!("Worker counter {k}."));
            for (w, c) in workers.iter().zip(&stats.workers) {
                o.sample(&name, &[("worker", w)], c.get(k) as f64);
            }
        }
        o.head(
            "fulcrum_drops_total",
            "counter",
            "Packets dropped, by worker and reason.",
        );
        for (w, c) in workers.iter().zip(&stats.workers) {
            for (reason, v) in &c.drops {
                o.sample(
                    "fulcrum_drops_total",
                    &[("worker", w), ("reason", reason)],
                    *v as f64,
                );
            }
        }
    }
    type PortField = fn(&fulcrum::api::PortCounters) -> u64;
    let port_fields: [(&str, &str, PortField); 7] = [
        (
            "fulcrum_port_rx_packets_total",
            "Packets the port received.",
            |p| p.rx_packets,
        ),
        (
            "fulcrum_port_tx_packets_total",
            "Packets the port sent.",
            |p| p.tx_packets,
        ),
        (
            "fulcrum_port_rx_bytes_total",
            "Bytes the port received.",
            |p| p.rx_bytes,
        ),
        ("fulcrum_port_tx_bytes_total", "Bytes the port sent.", |p| {
            p.tx_bytes
        }),
        (
            "fulcrum_port_rx_missed_total",
            "Packets dropped for full RX queues.",
            |p| p.rx_missed,
        ),
        (
            "fulcrum_port_rx_errors_total",
            "Erroneous packets received.",
            |p| p.rx_errors,
        ),
        (
            "fulcrum_port_tx_errors_total",
            "Failed transmissions.",
            |p| p.tx_errors,
        ),
    ];
    for (name, help, f) in port_fields {
        o.head(name, "counter", help);
        for p in &stats.ports {
            let v = p.stats.as_ref().map_or(0, f);
            o.sample(name, &[("port", &p.name)], v as f64);
        }
    }
    if let Some(k) = &stats.kernel {
        let name = "fulcrum_kernel_frames_total";
        o.head(
            name,
            "counter",
            "Frames through the kernel exception path, by direction and outcome.",
        );
        for (direction, outcome, v) in [
            ("to_kernel", "sent", k.to_kernel),
            ("to_kernel", "dropped", k.to_kernel_dropped),
            ("to_kernel", "refused", k.to_kernel_refused),
            ("from_kernel", "sent", k.from_kernel),
            ("from_kernel", "dropped", k.from_kernel_dropped),
            ("from_kernel", "refused", k.from_kernel_refused),
            ("to_kernel", "vip", k.to_kernel_vip),
            ("from_kernel", "vip", k.from_kernel_vip),
        ] {
            o.sample(
                name,
                &[("direction", direction), ("outcome", outcome)],
                v as f64,
            );
        }
        let name = "fulcrum_kernel_vrrp_frames_total";
        o.head(
            name,
            "counter",
            "VRRP adverts through the kernel exception path (among fulcrum_kernel_frames_total).",
        );
        for (direction, v) in [
            ("to_kernel", k.vrrp_to_kernel),
            ("from_kernel", k.vrrp_from_kernel),
        ] {
            o.sample(name, &[("direction", direction)], v as f64);
        }
    }
    if let Some(r) = &stats.vrrp {
        let name = "fulcrum_vrrp_state";
        o.head(
            name,
            "gauge",
            "The node's VRRP role (1 for the current one), as keepalived's notify hooks set it.",
        );
        for state in ["master", "backup", "fault"] {
            o.sample(
                name,
                &[("state", state)],
                f64::from(u8::from(r.state == state)),
            );
        }
        o.head(
            "fulcrum_vrrp_answered",
            "gauge",
            "1 while the VIPs of announce = \"vrrp\" services are answered by ARP/ND.",
        );
        o.sample(
            "fulcrum_vrrp_answered",
            &[],
            f64::from(u8::from(r.answered)),
        );
        o.head(
            "fulcrum_vrrp_transitions_total",
            "counter",
            "Changes of the node's VRRP role.",
        );
        o.sample("fulcrum_vrrp_transitions_total", &[], r.transitions as f64);
        o.head(
            "fulcrum_gratuitous_sent_total",
            "counter",
            "Gratuitous ARP requests and unsolicited neighbour advertisements sent for VIPs taken over.",
        );
        o.sample(
            "fulcrum_gratuitous_sent_total",
            &[],
            r.gratuitous_sent as f64,
        );
    }
    if let Some(s) = &stats.sync {
        sync_series(&mut o, s);
    }
    type LocalPortsField = fn(&LocalPortsInUse) -> u32;
    let local_ports_fields: [(&str, &str, LocalPortsField); 2] = [
        (
            "fulcrum_local_address_ports_in_use",
            "FullNAT local ports in use, by worker and local address.",
            |p| p.in_use,
        ),
        (
            "fulcrum_local_address_ports",
            "FullNAT local ports of the worker's share on the local address (the most it holds).",
            |p| p.share,
        ),
    ];
    for (name, help, f) in local_ports_fields {
        if stats.local_ports.is_empty() {
            break;
        }
        o.head(name, "gauge", help);
        for p in &stats.local_ports {
            let w = p.worker.to_string();
            let labels = [("worker", w.as_str()), ("address", p.address.as_str())];
            o.sample(name, &labels, f64::from(f(p)));
        }
    }
    o.head(
        "fulcrum_port_link_up",
        "gauge",
        "1 when the port's link is up.",
    );
    for p in &stats.ports {
        let up = p.link.as_deref() == Some("up");
        o.sample(
            "fulcrum_port_link_up",
            &[("port", &p.name)],
            f64::from(u8::from(up)),
        );
    }
    o.head(
        "fulcrum_service_usable_backends",
        "gauge",
        "Backends taking new flows.",
    );
    for s in &backends.services {
        o.sample(
            "fulcrum_service_usable_backends",
            &[("service", &s.service)],
            s.members as f64,
        );
    }
    o.head(
        "fulcrum_service_announced",
        "gauge",
        "1 while BIRD is told to announce the service's VIP (services with announce = \"bgp\").",
    );
    for s in backends.services.iter().filter(|s| s.announce == "bgp") {
        o.sample(
            "fulcrum_service_announced",
            &[("service", &s.service)],
            f64::from(u8::from(s.announced)),
        );
    }
    let per_backend = |o: &mut Out, name: &str, f: &dyn Fn(&BackendInfo) -> Option<f64>| {
        for s in &backends.services {
            for b in &s.backends {
                if let Some(v) = f(b) {
                    o.sample(name, &[("service", &s.service), ("backend", &b.backend)], v);
                }
            }
        }
    };
    // An enum gauge: one sample per possible value, 1 for the backend's.
    let per_state = |o: &mut Out, name: &str, states: &[&str], f: &dyn Fn(&BackendInfo) -> &str| {
        for s in &backends.services {
            for b in &s.backends {
                for st in states {
                    let v = f64::from(u8::from(f(b) == *st));
                    o.sample(
                        name,
                        &[
                            ("service", &s.service),
                            ("backend", &b.backend),
                            ("state", st),
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
        "1 when the backend takes new flows (state up); fulcrum_backend_state says why not.",
    );
    per_backend(&mut o, "fulcrum_backend_up", &|b| {
        Some(f64::from(u8::from(b.state == BackendState::Up.as_str())))
    });
    o.head(
        "fulcrum_backend_state",
        "gauge",
        "1 for the backend's effective state (up, drain, down, maint, unresolved), 0 for \
         the others.",
    );
    let states: Vec<&str> = BackendState::ALL.iter().map(|s| s.as_str()).collect();
    per_state(&mut o, "fulcrum_backend_state", &states, &|b| &b.state);
    o.head(
        "fulcrum_backend_health",
        "gauge",
        "1 for what the backend's checks say (up, down, drain, maint; up when unchecked), 0 \
         for the others.",
    );
    let states: Vec<&str> = HEALTH_STATES.iter().map(|s| s.as_str()).collect();
    per_state(&mut o, "fulcrum_backend_health", &states, &|b| &b.health);
    o.head(
        "fulcrum_backend_admin_state",
        "gauge",
        "1 for the admin state in force (enabled, drain, disabled: the operator's override, \
         else the config's), 0 for the others.",
    );
    let states: Vec<&str> = ADMIN_STATES.iter().map(|s| s.as_str()).collect();
    per_state(&mut o, "fulcrum_backend_admin_state", &states, &|b| {
        &b.admin
    });
    o.head(
        "fulcrum_backend_admin_override",
        "gauge",
        "1 when an operator's ctl drain|enable|disable overrides the config's admin state.",
    );
    per_backend(&mut o, "fulcrum_backend_admin_override", &|b| {
        Some(f64::from(u8::from(b.admin_override.is_some())))
    });
    o.head(
        "fulcrum_backend_weight",
        "gauge",
        "Effective Maglev weight.",
    );
    per_backend(&mut o, "fulcrum_backend_weight", &|b| {
        Some(f64::from(b.weight))
    });
    type BackendField = fn(&BackendInfo) -> u64;
    let traffic: [(&str, &str, BackendField); 3] = [
        (
            "fulcrum_backend_packets_total",
            "Packets forwarded to the backend.",
            |b| b.packets,
        ),
        (
            "fulcrum_backend_bytes_total",
            "Bytes forwarded to the backend.",
            |b| b.bytes,
        ),
        (
            "fulcrum_backend_new_flows_total",
            "New flows given to the backend.",
            |b| b.new_flows,
        ),
    ];
    for (name, help, f) in traffic {
        o.head(name, "counter", help);
        per_backend(&mut o, name, &|b| Some(f(b) as f64));
    }
    o.head(
        "fulcrum_backend_flows_active",
        "gauge",
        "Flows in the flow tables per backend, by state (established: TCP handshake completed; \
         other: half-open, closing, UDP); counted by the expiry sweep, up to about 2 s old; a \
         NAT flow counts once.",
    );
    for s in &backends.services {
        for b in &s.backends {
            for (state, v) in [
                ("established", b.flows_established),
                ("other", b.flows_other),
            ] {
                o.sample(
                    "fulcrum_backend_flows_active",
                    &[
                        ("service", &s.service),
                        ("backend", &b.backend),
                        ("state", state),
                    ],
                    v as f64,
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
        b.checks.map(|v| v as f64)
    });
    o.head(
        "fulcrum_backend_check_failures_total",
        "counter",
        "Health checks failed.",
    );
    per_backend(&mut o, "fulcrum_backend_check_failures_total", &|b| {
        b.check_failures.map(|v| v as f64)
    });
    o.head(
        "fulcrum_backend_last_check_seconds",
        "gauge",
        "Duration of the last health check.",
    );
    per_backend(&mut o, "fulcrum_backend_last_check_seconds", &|b| {
        b.last_check_ms.map(|ms| ms / 1000.0)
    });
    o.head(
        "fulcrum_endpoint_connections_total",
        "counter",
        "Connections to the control socket and the metrics endpoint, by how they ended \
         (answered; evicted: closed for a newcomer over a bound; timed_out; failed: closed by \
         the client or an error).",
    );
    for e in endpoints {
        let s = e.server;
        for (outcome, v) in [
            ("answered", s.answered),
            ("evicted", s.evicted),
            ("timed_out", s.timed_out),
            ("failed", s.failed),
        ] {
            o.sample(
                "fulcrum_endpoint_connections_total",
                &[("endpoint", e.endpoint), ("outcome", outcome)],
                v as f64,
            );
        }
    }
    o.head(
        "fulcrum_endpoint_requests_refused_total",
        "counter",
        "Requests answered with a refusal: a malformed or refused control request; a metrics \
         request for another path or method, too large, or not HTTP.",
    );
    for e in endpoints {
        o.sample(
            "fulcrum_endpoint_requests_refused_total",
            &[("endpoint", e.endpoint)],
            e.refused as f64,
        );
    }
    o.head(
        "fulcrum_endpoint_connections_open",
        "gauge",
        "Connections held now (the count before this scrape was served).",
    );
    for e in endpoints {
        o.sample(
            "fulcrum_endpoint_connections_open",
            &[("endpoint", e.endpoint)],
            e.open as f64,
        );
    }
    o.0
}

/// Instance sync's series: exceptions held, messages sent, what each peer sent (accepted and
/// refused, by reason) and what was dropped.
fn sync_series(o: &mut Out, s: &fulcrum::api::SyncStatus) {
    let name = "fulcrum_sync_exceptions";
    o.head(
        name,
        "gauge",
        "Exceptions (flows not on Maglev's choice): own (local), learnt from peers, and of \
         those published to the workers.",
    );
    for (kind, v) in [
        ("local", s.local),
        ("learnt", s.learnt),
        ("published", s.published),
    ] {
        o.sample(name, &[("kind", kind)], v as f64);
    }
    for (name, help, v) in [
        (
            "fulcrum_sync_messages_sent_total",
            "Sync messages sent (one per peer).",
            s.messages_sent,
        ),
        (
            "fulcrum_sync_bytes_sent_total",
            "Bytes of sync messages sent (UDP payload).",
            s.bytes_sent,
        ),
    ] {
        o.head(name, "counter", help);
        o.sample(name, &[], v as f64);
    }
    let name = "fulcrum_sync_dropped_total";
    o.head(
        name,
        "counter",
        "Sync entries or datagrams dropped, by reason.",
    );
    for (reason, v) in [
        ("no_room", s.dropped_no_room),
        ("expired", s.expired),
        ("unknown_source", s.unknown_source),
        ("rate_limited", s.rate_limited),
        ("unknown_backend", s.unknown_backend),
        ("send_failed", s.send_failed),
    ] {
        o.sample(name, &[("reason", reason)], v as f64);
    }
    let name = "fulcrum_sync_received_total";
    o.head(
        name,
        "counter",
        "Sync messages from each peer, accepted or refused (by reason).",
    );
    for p in &s.peers {
        for (outcome, v) in [
            ("accepted", p.messages),
            ("unauthenticated", p.unauthenticated),
            ("replayed", p.replayed),
            ("stale", p.stale),
            ("malformed", p.malformed),
        ] {
            o.sample(
                name,
                &[("peer", &p.address), ("outcome", outcome)],
                v as f64,
            );
        }
    }
    let name = "fulcrum_sync_held";
    o.head(name, "gauge", "Exceptions held that each peer told of.");
    for p in &s.peers {
        o.sample(name, &[("peer", &p.address)], p.held as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum::api::{CounterSet, PortStatus, ServiceInfo};

    fn backend(name: &str, state: &str, admin: &str, over: Option<&str>) -> BackendInfo {
        BackendInfo {
            backend: name.into(),
            id: 1,
            address: "10.0.0.1".into(),
            port: None,
            state: state.into(),
            health: "up".into(),
            admin: admin.into(),
            admin_override: over.map(Into::into),
            weight: 100,
            backup: false,
            member: state == "up",
            checked: true,
            checks: Some(3),
            check_failures: Some(0),
            last_check: Some("ok".into()),
            last_check_failure: None,
            last_check_ms: Some(2.0),
            flows_active: 7,
            flows_established: 5,
            flows_other: 2,
            packets: 0,
            bytes: 0,
            new_flows: 0,
        }
    }

    #[test]
    fn text_format_lines() {
        let mut c = dataplane::stats::Counters {
            rx: 10,
            tx: 9,
            flows_active: 2,
            ..Default::default()
        };
        c.drops[dataplane::verdict::DropReason::ALL[0] as usize] = 1;
        let reason = dataplane::verdict::DropReason::ALL[0].name();
        let stats = StatsReply {
            uptime_s: Some(1.5),
            generation: Some(4),
            workers: vec![CounterSet::new(&c)],
            totals: CounterSet::new(&c),
            ports: vec![PortStatus {
                name: "lan".into(),
                device: "net_null0".into(),
                mac: "02:00:00:00:00:01".into(),
                device_mac: "02:00:00:00:00:01".into(),
                link: Some("up".into()),
                speed_mbps: None,
                stats: None,
            }],
            backends: vec![],
            kernel: Some(fulcrum::api::KernelCounters {
                to_kernel: 7,
                vrrp_to_kernel: 4,
                ..Default::default()
            }),
            sync: Some(fulcrum::api::SyncStatus {
                learnt: 3,
                peers: vec![fulcrum::api::SyncPeer {
                    address: "10.0.0.3".into(),
                    unauthenticated: 5,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            vrrp: Some(fulcrum::api::VrrpStatus {
                state: "master".into(),
                since_s: 2.0,
                holder: Some(42),
                vips: vec!["10.0.0.100".into()],
                answered: true,
                transitions: 1,
                holder_lost: 0,
                gratuitous_sent: 3,
            }),
            local_ports: vec![fulcrum::api::LocalPortsInUse {
                worker: 1,
                address: "10.0.0.2".into(),
                in_use: 12,
                share: 15872,
            }],
        };
        let backends = BackendsReply {
            generation: 4,
            services: vec![ServiceInfo {
                service: "web".into(),
                vip: "10.0.0.100".into(),
                port: Some(80),
                protocol: "tcp".into(),
                forwarding: "dsr".into(),
                tier: "primary".into(),
                members: 1,
                flows_active: 7,
                flows_established: 5,
                flows_other: 2,
                announce: "bgp".into(),
                announced: true,
                announce_reason: Some("serving".into()),
                backends: vec![
                    backend("b\"1", "up", "enabled", None),
                    backend("b2", "drain", "drain", Some("drain")),
                    backend("b3", "maint", "disabled", None),
                ],
            }],
        };
        let endpoints = [EndpointStats {
            endpoint: "control",
            server: crate::requests::ServerStats {
                answered: 3,
                ..Default::default()
            },
            refused: 1,
            open: 2,
        }];
        let t = render(&stats, &backends, &endpoints);
        assert!(t.contains("fulcrum_rx_total{worker=\"0\"} 10\n"), "{t}");
        assert!(t.contains("# TYPE fulcrum_flows_active gauge\n"), "{t}");
        assert!(t.contains(&format!(
            "fulcrum_drops_total{{worker=\"0\",reason=\"{reason}\"}} 1\n"
        )));
        assert!(t.contains("fulcrum_backend_up{service=\"web\",backend=\"b\\\"1\"} 1\n"));
        assert!(t.contains("fulcrum_port_link_up{port=\"lan\"} 1\n"));
        assert!(t.contains("fulcrum_service_announced{service=\"web\"} 1\n"));
        assert!(
            t.contains("fulcrum_kernel_frames_total{direction=\"to_kernel\",outcome=\"sent\"} 7\n")
        );
        assert!(t.contains("fulcrum_sync_exceptions{kind=\"learnt\"} 3\n"));
        assert!(t.contains(
            "fulcrum_sync_received_total{peer=\"10.0.0.3\",outcome=\"unauthenticated\"} 5\n"
        ));
        assert!(t.contains(
            "fulcrum_backend_flows_active{service=\"web\",backend=\"b\\\"1\",state=\"established\"} 5\n"
        ));
        assert!(t.contains("fulcrum_kernel_vrrp_frames_total{direction=\"to_kernel\"} 4\n"));
        assert!(t.contains("fulcrum_vrrp_state{state=\"master\"} 1\n"));
        assert!(t.contains("fulcrum_vrrp_state{state=\"backup\"} 0\n"));
        assert!(t.contains("fulcrum_vrrp_answered 1\n"));
        assert!(t.contains("fulcrum_gratuitous_sent_total 3\n"));
        assert!(t.contains(
            "fulcrum_local_address_ports_in_use{worker=\"1\",address=\"10.0.0.2\"} 12\n"
        ));
        assert!(
            t.contains("fulcrum_local_address_ports{worker=\"1\",address=\"10.0.0.2\"} 15872\n")
        );
        // Drain and maint no longer read alike: the state and admin enum gauges tell them apart.
        assert!(t.contains("fulcrum_backend_up{service=\"web\",backend=\"b2\"} 0\n"));
        assert!(t.contains("fulcrum_backend_up{service=\"web\",backend=\"b3\"} 0\n"));
        assert!(
            t.contains("fulcrum_backend_state{service=\"web\",backend=\"b2\",state=\"drain\"} 1\n")
        );
        assert!(
            t.contains("fulcrum_backend_state{service=\"web\",backend=\"b2\",state=\"up\"} 0\n")
        );
        assert!(
            t.contains("fulcrum_backend_state{service=\"web\",backend=\"b3\",state=\"maint\"} 1\n")
        );
        assert!(t.contains(
            "fulcrum_backend_admin_state{service=\"web\",backend=\"b3\",state=\"disabled\"} 1\n"
        ));
        assert!(t.contains("fulcrum_backend_admin_override{service=\"web\",backend=\"b2\"} 1\n"));
        assert!(
            t.contains("fulcrum_backend_health{service=\"web\",backend=\"b3\",state=\"up\"} 1\n")
        );
        // Exactly one state of each enum gauge is 1 per backend.
        for gauge in [
            "fulcrum_backend_state{",
            "fulcrum_backend_admin_state{",
            "fulcrum_backend_health{",
        ] {
            let ones = t
                .lines()
                .filter(|l| l.starts_with(gauge) && l.ends_with(" 1"))
                .count();
            assert_eq!(ones, 3, "{gauge}");
        }
        assert!(t.contains(
            "fulcrum_endpoint_connections_total{endpoint=\"control\",outcome=\"answered\"} 3\n"
        ));
        assert!(t.contains("fulcrum_endpoint_requests_refused_total{endpoint=\"control\"} 1\n"));
        assert!(t.contains("fulcrum_endpoint_connections_open{endpoint=\"control\"} 2\n"));
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

//! Per-second rates between two `stats` replies, for `fulcrum ctl stats --watch`.

use fulcrum::api::{CounterSet, StatsReply};
use serde::Serialize;

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

//! What a running or stopped engine reports: the workers' counters, per-backend totals and
//! each port's figures.

use std::time::Duration;

use crate::dpdk::{self, PortStats};
use crate::local_ports::InUse;
use crate::snapshot::BackendId;
use crate::stats::Counters;

use super::Engine;

/// A port's final figures.
#[derive(Debug, Clone)]
pub struct PortReport {
    pub name: String,
    pub device: String,
    pub mac: [u8; 6],
    /// How the configured MAC reached the device's receive filter.
    pub mac_filter: dpdk::MacFilter,
    /// The device's MTU as it reports it: at least the configured `mtu`, unless the device
    /// refused it.
    pub device_mtu: Option<u16>,
    /// Why the device refused the configured `mtu` (virtual devices may), if it did.
    pub mtu_refused: Option<String>,
    pub stats: Option<PortStats>,
}

/// What a stopped engine reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub workers: Vec<Counters>,
    pub ports: Vec<PortReport>,
    /// How long the workers ran.
    pub elapsed: Duration,
    /// Mbufs of the pool still handed out once the workers stopped (what the ports hold,
    /// e.g. a `net_pcap` `infinite_rx` preload): stays flat whatever the traffic, unless
    /// something leaks.
    pub mempool_in_use: u32,
    /// Mbufs in the pool.
    pub mempool_capacity: u32,
}

impl Report {
    pub fn totals(&self) -> Counters {
        let mut t = Counters::default();
        for w in &self.workers {
            t.add(w);
        }
        t
    }
}

impl Engine {
    /// The workers' counters as last published.
    pub fn worker_counters(&self) -> Vec<Counters> {
        self.counters.iter().map(|c| c.read()).collect()
    }

    /// `[packets, bytes, new flows]` forwarded to backend `id`, summed over the workers (as
    /// last published, at most 100 ms old).
    pub fn backend_totals(&self, id: BackendId) -> [u64; 3] {
        let mut t = [0u64; 3];
        for c in &self.backend_counters {
            for (a, b) in t.iter_mut().zip(c.read(id)) {
                *a += b;
            }
        }
        t
    }

    /// `[established, other]` active flows of backend `id`, summed over the workers: each
    /// worker's flow-table census of its last completed expiry pass (refreshed every
    /// second, published every 100 ms). A NAT flow counts once.
    pub fn backend_active(&self, id: BackendId) -> [u64; 2] {
        let mut t = [0u64; 2];
        for c in &self.backend_counters {
            for (a, b) in t.iter_mut().zip(c.read_active(id)) {
                *a += b;
            }
        }
        t
    }

    /// Each worker's FullNAT local ports in use per local address, by worker index (as last
    /// published, at most 100 ms old; empty for a worker that met no local address).
    pub fn local_ports_in_use(&self) -> Vec<Vec<InUse>> {
        self.backend_counters
            .iter()
            .map(|c| c.read_local_ports())
            .collect()
    }

    /// Sums of the workers' counters.
    pub fn totals(&self) -> Counters {
        let mut t = Counters::default();
        for c in self.worker_counters() {
            t.add(&c);
        }
        t
    }

    /// Per-port figures now.
    pub fn port_reports(&self) -> Vec<PortReport> {
        self.ports
            .iter()
            .zip(self.names.iter().zip(&self.devices))
            .zip(&self.mtu_refused)
            .map(|((p, (name, device)), refused)| PortReport {
                name: name.clone(),
                device: device.clone(),
                mac: p.mac(),
                mac_filter: p.mac_filter(),
                device_mtu: p.mtu().ok(),
                mtu_refused: refused.clone(),
                stats: p.stats().ok(),
            })
            .collect()
    }

    /// Each port's link state now (`None` where the driver cannot say), config order.
    pub fn links(&self) -> Vec<Option<dpdk::Link>> {
        self.ports.iter().map(|p| p.link().ok()).collect()
    }
}

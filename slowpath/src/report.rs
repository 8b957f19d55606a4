//! What the slow path reports: its frame counters, the final report, each backend's checks and
//! the next hops of the config with what the neighbour table knows of them.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use dataplane::engine::Engine;
use dataplane::snapshot::BackendId;

use crate::health::runner;
use crate::{SlowPath, hook, neigh, publish};

/// Counters of frames through the slow path.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameStats {
    pub received: u64,
    pub arp: u64,
    /// ND solicitations and advertisements (IPv6), taken by the neighbour table.
    pub nd: u64,
    pub ip: u64,
    /// Not ARP nor IP, or from an unknown port, or VLAN-tagged.
    pub ignored: u64,
    pub sent: u64,
    /// No mbuf, or the ring to the worker full.
    pub send_dropped: u64,
    /// Packets of the stack to an address no port reaches (no on-link subnet, no route).
    pub no_route: u64,
}

/// A backend's state as the last publication has it.
#[derive(Debug, Clone)]
pub struct BackendReport {
    pub service: String,
    pub backend: String,
    pub state: &'static str,
    pub checks: u64,
    pub failures: u64,
}

/// What the slow path did, for the final report.
#[derive(Debug, Clone)]
pub struct Report {
    pub frames: FrameStats,
    pub checks: runner::RunnerStats,
    pub check_failures: u64,
    pub neighbors: neigh::NeighStats,
    pub hooks: hook::HookStats,
    pub publications: u64,
    pub build_us: publish::Summary,
    pub visible_us: publish::Summary,
    pub first_packet_us: publish::Summary,
    pub backends: Vec<BackendReport>,
    /// CPU time the slow path's thread used, seconds (`None` where the kernel does not say).
    pub cpu_s: Option<f64>,
}

/// The latest check of a backend, for `fulcrum ctl backends`.
#[derive(Debug, Clone, Copy)]
pub struct LastCheck {
    /// `None`: passed; otherwise why it failed.
    pub failure: Option<&'static str>,
    /// From the start of the check to its verdict.
    pub took: Duration,
    /// When it ended, since the engine's epoch.
    pub at: Duration,
}

/// A next hop of the config (a route's gateway, an on-link backend) and what the neighbour
/// table knows of it, for `fulcrum ctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHopReport {
    pub address: IpAddr,
    /// Index of the port it is on.
    pub port: usize,
    /// The route prefixes through it (empty: an on-link backend).
    pub routes: Vec<conf::IfAddr>,
    /// Backends whose frames go to it.
    pub backends: usize,
    /// `None`: the table neither has nor wants it (a backend being removed by a reload).
    pub resolution: Option<neigh::Resolution>,
}

/// A backend's checks, for `fulcrum ctl backends`.
#[derive(Debug, Clone, Copy)]
pub struct CheckInfo {
    pub checks: u64,
    pub failures: u64,
    pub last: Option<LastCheck>,
}

impl SlowPath {
    /// Every next hop of the config in force, by port and address, with its resolution.
    pub fn next_hops(&self) -> Vec<NextHopReport> {
        let mut hops: BTreeMap<(usize, IpAddr), NextHopReport> = BTreeMap::new();
        let neigh = &self.neigh;
        let mut hop = |port: usize, address: IpAddr, f: &dyn Fn(&mut NextHopReport)| {
            let h = hops
                .entry((port, address))
                .or_insert_with(|| NextHopReport {
                    address,
                    port,
                    routes: Vec::new(),
                    backends: 0,
                    resolution: neigh.resolution(address),
                });
            f(h);
        };
        for (i, p) in self.cfg.ports.iter().enumerate() {
            for r in &p.routes {
                hop(i, r.via, &|h| h.routes.push(r.prefix));
            }
        }
        for b in self.cfg.services.iter().flat_map(|s| &s.backends) {
            if let Some(path) = self.cfg.route(b.address) {
                hop(path.port, path.next_hop, &|h| h.backends += 1);
            }
        }
        hops.into_values().collect()
    }

    /// Checks of each checked backend, by id.
    pub fn checks(&self) -> HashMap<BackendId, CheckInfo> {
        self.monitor
            .targets
            .iter()
            .map(|t| {
                (
                    t.id,
                    CheckInfo {
                        checks: t.checks,
                        failures: t.failures,
                        last: self.last_checks.get(&t.id).copied(),
                    },
                )
            })
            .collect()
    }

    /// The final figures.
    pub fn report(&self, engine: &Engine) -> Report {
        let snap = engine.snapshot();
        let mut counts: HashMap<BackendId, (u64, u64)> = HashMap::new();
        let mut failures = 0;
        for t in &self.monitor.targets {
            counts.insert(t.id, (t.checks, t.failures));
            failures += t.failures;
        }
        let backends = snap
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(move |id| (s, *id)))
            .filter_map(|(s, id)| {
                let b = snap.backend(id)?;
                let (checks, failures) = counts.get(&id).copied().unwrap_or_default();
                Some(BackendReport {
                    service: s.name.clone(),
                    backend: b.name.clone(),
                    state: b.state.as_str(),
                    checks,
                    failures,
                })
            })
            .collect();
        let p = &self.publisher.stats;
        Report {
            frames: self.frames,
            checks: self.runner.stats,
            check_failures: failures,
            neighbors: self.neigh.stats,
            hooks: self.hooks.stats,
            publications: p.publications,
            build_us: p.build_us.summary(),
            visible_us: p.visible_us.summary(),
            first_packet_us: p.first_packet_us.summary(),
            backends,
            cpu_s: thread_cpu_seconds(),
        }
    }
}

/// CPU time of the calling thread, from the scheduler's statistics.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

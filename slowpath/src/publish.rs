//! Publication of new snapshots, only when the dynamic state changed, and the measurement of
//! how long a publication takes to reach the workers.
//!
//! The slow path builds a complete immutable snapshot ([`Engine::publish`]) and swaps it in
//! with one atomic store; the snapshot it replaces is freed on the slow path once no worker
//! holds it. Each worker notes the generation it loaded and the first packet it processed
//! under it ([`WorkerProgress`](dataplane::worker::WorkerProgress)); comparing those instants
//! with the publication's gives two figures per publication and worker:
//! - visible: publish -> the worker's first load of the new snapshot;
//! - first packet: publish -> the first packet the worker processed by it (only when traffic
//!   came before the next publication).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use conf::Config;
use dataplane::engine::Engine;
use dataplane::snapshot::{BackendId, Health};

/// Publications still waiting to be seen by every worker; older ones are given up.
const PENDING_MAX: usize = 64;
/// Latency samples kept (the latest ones).
const SAMPLES_MAX: usize = 100_000;

/// A set of latency samples in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<u64>,
    pub count: u64,
}

/// A summary of [`Samples`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Samples {
    pub fn add(&mut self, us: u64) {
        if self.values.len() == SAMPLES_MAX {
            self.values.remove(0);
        }
        self.values.push(us);
        self.count += 1;
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.values.clone();
        v.sort_unstable();
        let at = |q: f64| {
            v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        Summary {
            count: self.count,
            min: at(0.0).unwrap_or(0),
            p50: at(0.5).unwrap_or(0),
            p99: at(0.99).unwrap_or(0),
            max: at(1.0).unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    generation: u64,
    at_ns: u64,
    /// Per worker: still waiting for the load / for the first packet.
    load: Vec<bool>,
    packet: Vec<bool>,
}

/// Counters and figures of publication.
#[derive(Debug, Clone, Default)]
pub struct PublishStats {
    pub publications: u64,
    /// Time to build one snapshot, µs.
    pub build_us: Samples,
    pub visible_us: Samples,
    pub first_packet_us: Samples,
}

/// Publishes on change and measures.
#[derive(Debug, Default)]
pub struct Publisher {
    pending: Vec<Pending>,
    pub stats: PublishStats,
}

/// What the slow path decides, in the form `Dynamic` holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub health: HashMap<BackendId, Health>,
    pub weight_pct: HashMap<BackendId, u32>,
    pub neighbors: HashMap<IpAddr, [u8; 6]>,
}

impl Publisher {
    /// Publishes a snapshot with `state` if it differs from what the engine's dynamic state
    /// holds; returns the new generation, or `None` when nothing changed.
    pub fn sync(&mut self, engine: &mut Engine, cfg: &Config, state: &State) -> Option<u64> {
        let d = &engine.dynamic;
        if d.health == state.health
            && d.weight_pct == state.weight_pct
            && d.neighbors == state.neighbors
        {
            return None;
        }
        engine.dynamic.health.clone_from(&state.health);
        engine.dynamic.weight_pct.clone_from(&state.weight_pct);
        engine.dynamic.neighbors.clone_from(&state.neighbors);
        Some(self.publish(engine, cfg))
    }

    /// Builds and publishes a snapshot now; returns its generation.
    pub fn publish(&mut self, engine: &mut Engine, cfg: &Config) -> u64 {
        let t0 = engine.epoch.elapsed();
        let generation = engine.publish(cfg);
        let at = engine.epoch.elapsed();
        self.stats.publications += 1;
        self.stats.build_us.add((at - t0).as_micros() as u64);
        let workers = engine.progress.len();
        if self.pending.len() == PENDING_MAX {
            self.pending.remove(0);
        }
        self.pending.push(Pending {
            generation,
            at_ns: at.as_nanos() as u64,
            load: vec![true; workers],
            packet: vec![true; workers],
        });
        generation
    }

    /// Collects the workers' progress on pending publications. Call every turn: a worker
    /// reports only its latest generation, so one loaded and replaced between two calls
    /// yields no sample.
    pub fn observe(&mut self, engine: &Engine) {
        if self.pending.is_empty() {
            return;
        }
        let now = engine.epoch.elapsed().as_nanos() as u64;
        let progress: Vec<((u64, u64), (u64, u64))> = engine
            .progress
            .iter()
            .map(|p| (p.loaded(), p.first_packet()))
            .collect();
        let stats = &mut self.stats;
        self.pending.retain_mut(|p| {
            for (w, &((lg, lat), (pg, pat))) in progress.iter().enumerate() {
                if p.load[w] && lg >= p.generation {
                    p.load[w] = false;
                    if lg == p.generation {
                        stats.visible_us.add(lat.saturating_sub(p.at_ns) / 1000);
                    }
                }
                if p.packet[w] && pg >= p.generation {
                    p.packet[w] = false;
                    if pg == p.generation {
                        stats
                            .first_packet_us
                            .add(pat.saturating_sub(p.at_ns) / 1000);
                    }
                }
                // Once a later generation is loaded, no packet can be processed by this one.
                if p.packet[w] && lg > p.generation {
                    p.packet[w] = false;
                }
            }
            let waiting = p.load.iter().chain(&p.packet).any(|&x| x);
            // A worker without traffic would keep a publication pending forever.
            waiting && now.saturating_sub(p.at_ns) < Duration::from_secs(60).as_nanos() as u64
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_samples() {
        let mut s = Samples::default();
        assert_eq!(s.summary(), Summary::default());
        for v in (1..=100).rev() {
            s.add(v);
        }
        let sum = s.summary();
        assert_eq!((sum.count, sum.min, sum.max), (100, 1, 100));
        assert!((50..=51).contains(&sum.p50));
        assert_eq!(sum.p99, 99);
    }
}

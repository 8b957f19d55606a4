//! Publication: the slow path owns what snapshots are built from (the backend ids and the
//! dynamic state: health, operator overrides, learnt neighbours, agent weights) and their
//! generation. It builds a complete immutable snapshot ([`build()`]) only when that state
//! changed, and the engine swaps it in with one atomic store ([`Engine::install`]); the
//! snapshot it replaces is freed on the slow path once no worker holds it.
//!
//! Each worker notes the generation it loaded and the first packet it processed under it
//! ([`WorkerProgress`](dataplane::worker::WorkerProgress)); comparing those instants with the
//! publication's gives two figures per publication and worker:
//! - visible: publish -> the worker's first load of the new snapshot;
//! - first packet: publish -> the first packet the worker processed by it (only when traffic
//!   came before the next publication).

pub mod build;
mod ids;
pub mod latency;
pub mod tables;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use conf::{AdminState, Config};
use dataplane::engine::Engine;
use dataplane::snapshot::{BackendId, Snapshot};

use crate::health::Health;
pub use build::{Dynamic, build, build_with, prepare};
pub use ids::BackendIds;
pub use latency::{Samples, Summary};
pub use tables::{Prepared, Tables};

/// Publications still waiting to be seen by every worker; older ones are given up.
const PENDING_MAX: usize = 64;

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
    /// Maglev tables taken from the snapshot in force or prepared ahead, not computed.
    pub tables_reused: u64,
    /// Time to build one snapshot, µs.
    pub build_us: Samples,
    pub visible_us: Samples,
    pub first_packet_us: Samples,
}

/// What the slow path's health checks and neighbour table decide, in the form [`Dynamic`]
/// holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub health: HashMap<BackendId, Health>,
    pub weight_pct: HashMap<BackendId, u32>,
    pub neighbors: HashMap<IpAddr, [u8; 6]>,
}

/// The control state snapshots are built from; publishes on change and measures.
#[derive(Debug)]
pub struct Publisher {
    ids: BackendIds,
    dynamic: Dynamic,
    /// Of the snapshot last built.
    generation: u64,
    /// Tables prepared off the loop for the next publication ([`Publisher::adopt`]).
    prepared: Option<Prepared>,
    pending: Vec<Pending>,
    pub stats: PublishStats,
}

impl Publisher {
    /// The publisher of `cfg`: every backend has its id (config order), nothing is built yet.
    pub fn new(cfg: &Config) -> Publisher {
        Publisher::with_ids(cfg, BackendIds::new())
    }

    /// [`new`](Self::new) keeping the ids already in `ids` (those a previous process gave,
    /// [`BackendIds::load`]); new backends get the next ones.
    pub fn with_ids(cfg: &Config, mut ids: BackendIds) -> Publisher {
        ids.allocate(cfg);
        Publisher {
            ids,
            dynamic: Dynamic::default(),
            generation: 0,
            prepared: None,
            pending: Vec::new(),
            stats: PublishStats::default(),
        }
    }

    /// The backends' ids.
    pub fn ids(&self) -> &BackendIds {
        &self.ids
    }

    /// The dynamic state of the last snapshot built.
    pub fn dynamic(&self) -> &Dynamic {
        &self.dynamic
    }

    /// The snapshot the engine starts with (generation 1), for ports whose devices report
    /// `port_macs` and with `state` as the slow path starts with it.
    pub fn first(&mut self, cfg: &Config, port_macs: &[[u8; 6]], state: &State) -> Snapshot {
        self.dynamic.port_macs = port_macs.to_vec();
        self.set(state);
        self.generation = 1;
        build(cfg, &mut self.ids, &self.dynamic, self.generation)
    }

    fn set(&mut self, state: &State) {
        self.dynamic.health.clone_from(&state.health);
        self.dynamic.weight_pct.clone_from(&state.weight_pct);
        self.dynamic.neighbors.clone_from(&state.neighbors);
    }

    /// Publishes a snapshot with `state` if it differs from the last one's; returns the new
    /// generation, or `None` when nothing changed.
    pub fn sync(&mut self, engine: &mut Engine, cfg: &Config, state: &State) -> Option<u64> {
        let d = &self.dynamic;
        if d.health == state.health
            && d.weight_pct == state.weight_pct
            && d.neighbors == state.neighbors
        {
            return None;
        }
        Some(self.publish(engine, cfg, state))
    }

    /// Builds and publishes a snapshot with `state` now; returns its generation.
    pub fn publish(&mut self, engine: &mut Engine, cfg: &Config, state: &State) -> u64 {
        self.set(state);
        let epoch = engine.epoch();
        let t0 = epoch.elapsed();
        self.generation += 1;
        let generation = self.generation;
        let current = engine.snapshot();
        let prepared = self.prepared.take();
        let mut tables = Tables::default();
        tables.add_snapshot(&current);
        if let Some(p) = &prepared {
            tables.add_prepared(p);
        }
        let (snap, reused) = build_with(cfg, &mut self.ids, &self.dynamic, generation, &tables);
        drop(tables);
        drop(current);
        engine.install(snap);
        self.stats.tables_reused += reused as u64;
        let at = epoch.elapsed();
        self.stats.publications += 1;
        self.stats.build_us.add((at - t0).as_micros() as u64);
        let workers = engine.progress().len();
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

    /// What [`prepare`] needs to build a config's tables on another thread: a copy of the
    /// ids and of the dynamic state as they are now.
    pub fn copy_state(&self) -> (BackendIds, Dynamic) {
        (self.ids.clone(), self.dynamic.clone())
    }

    /// Tables prepared off the loop, for the next publication to take what still fits.
    pub fn adopt(&mut self, prepared: Prepared) {
        self.prepared = Some(prepared);
    }

    /// An operator's override of a backend's admin state (`ctl drain|enable|disable`), for
    /// the next publication.
    pub fn set_admin(&mut self, id: BackendId, state: AdminState) {
        self.dynamic.admin.insert(id, state);
    }

    /// Whether the next publication answers ARP/ND for the VIPs of `announce = "vrrp"`
    /// services (this node is the VRRP master).
    pub fn set_vrrp_master(&mut self, master: bool) {
        self.dynamic.vrrp_master = master;
    }

    /// The operator's override of a backend's admin state, if any.
    pub fn admin(&self, id: BackendId) -> Option<AdminState> {
        self.dynamic.admin.get(&id).copied()
    }

    /// Drops the operator's override of a backend's admin state; says whether it had one.
    pub fn clear_admin(&mut self, id: BackendId) -> bool {
        self.dynamic.admin.remove(&id).is_some()
    }

    /// What health checking says of a backend as last published (up when it has no check).
    pub fn health(&self, id: BackendId) -> Health {
        self.dynamic.health.get(&id).copied().unwrap_or(Health::Up)
    }

    /// Takes a reloaded config: its new backends get ids, removed ones lose their operator
    /// overrides. Returns the ids of its backends.
    pub fn reconfigure(&mut self, cfg: &Config) -> HashSet<BackendId> {
        self.ids.allocate(cfg);
        let kept: HashSet<BackendId> = cfg
            .services
            .iter()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .filter_map(|b| self.ids.find(&s.name, &b.name))
            })
            .collect();
        self.dynamic.admin.retain(|id, _| kept.contains(id));
        kept
    }

    /// Collects the workers' progress on pending publications. Call every turn: a worker
    /// reports only its latest generation, so one loaded and replaced between two calls
    /// yields no sample.
    pub fn observe(&mut self, engine: &Engine) {
        if self.pending.is_empty() {
            return;
        }
        let now = engine.epoch().elapsed().as_nanos() as u64;
        let progress: Vec<((u64, u64), (u64, u64))> = engine
            .progress()
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

//! A reload: the new config applied to the running slow path, its Maglev tables prepared on
//! another thread when the caller wants.

use std::time::Duration;

use conf::Config;
use dataplane::engine::Engine;

use crate::SlowPath;
use crate::health::Monitor;
use crate::publish::{self, BackendIds, Dynamic, Prepared};

impl SlowPath {
    /// Applies a reloaded, validated config (fields that need a restart are the caller's to
    /// refuse): backends keep their ids, an unchanged backend with an unchanged check keeps its
    /// health state and schedule, added ones are resolved and checked (down until their first
    /// checks pass), removed ones lose their operator overrides. Publishes at once; returns
    /// the generation.
    pub fn reconfigure(&mut self, cfg: &Config, engine: &mut Engine) -> u64 {
        let now = engine.epoch().elapsed();
        let kept = self.publisher.reconfigure(cfg);
        let ids = self.publisher.ids();
        let fresh = Monitor::new(cfg, |s, b| ids.find(s, b), now);
        let old = std::mem::replace(&mut self.monitor, fresh);
        let mut map: Vec<Option<usize>> = vec![None; old.targets.len()];
        for i in 0..self.monitor.targets.len() {
            let t = &self.monitor.targets[i];
            let Some(o) = old
                .targets
                .iter()
                .position(|o| o.id == t.id && o.addr == t.addr)
            else {
                continue;
            };
            let o_t = &old.targets[o];
            let same_check = o_t.check == t.check
                && o_t.track.map(|k| old.targets[k].id)
                    == t.track.map(|k| self.monitor.targets[k].id);
            if same_check {
                map[o] = Some(i);
                self.monitor.adopt(i, o_t);
            } else {
                // A check in flight under the old settings is dropped (`map[o]` stays None).
                self.monitor.adopt_state(i, o_t);
            }
        }
        self.runner.retarget(&map);
        self.last_checks.retain(|id, _| kept.contains(id));
        self.neigh.reconfigure(cfg, now);
        self.hooks.reconfigure(cfg);
        self.announcer.reconfigure(cfg);
        self.exception.reconfigure(cfg);
        let vrrp_before = self.vrrp_vips();
        self.cfg = cfg.clone();
        let generation = self.publish_now(engine);
        if self.vrrp.role() == crate::vrrp::Role::Master {
            // A master announces the VRRP VIPs the reload added, as it did the others.
            let added: Vec<std::net::IpAddr> = self
                .vrrp_vips()
                .into_iter()
                .filter(|v| !vrrp_before.contains(v))
                .collect();
            self.neigh.announce(&added, now);
        }
        tracing::info!(
            checked = self.monitor.targets.len(),
            kept = map.iter().flatten().count(),
            generation,
            "slow path reconfigured"
        );
        generation
    }

    /// What a thread needs to prepare a new config's Maglev tables off this loop, so that
    /// applying it ([`SlowPath::reconfigure_prepared`]) computes only the tables of the pools
    /// that changed meanwhile.
    pub fn preparer(&self) -> Preparer {
        let (ids, dynamic) = self.publisher.copy_state();
        Preparer { ids, dynamic }
    }

    /// [`SlowPath::reconfigure`] with tables prepared ahead by [`Preparer::prepare`] for
    /// `cfg`: what still fits is taken, the rest computed.
    pub fn reconfigure_prepared(
        &mut self,
        cfg: &Config,
        prepared: Prepared,
        engine: &mut Engine,
    ) -> u64 {
        self.publisher.adopt(prepared);
        self.reconfigure(cfg, engine)
    }
}

/// The ids and dynamic state of the slow path at one moment: enough to build a new config's
/// Maglev tables on another thread (issue 15: a reload must not stall checks, ARP/ND and the
/// control socket while a large config's tables are computed).
#[derive(Debug, Clone)]
pub struct Preparer {
    pub(crate) ids: BackendIds,
    pub(crate) dynamic: Dynamic,
}

impl Preparer {
    /// The tables `cfg`'s snapshot will need if nothing changes meanwhile: a checked backend
    /// it adds counts as down, as it will be until its first check passes.
    pub fn prepare(mut self, cfg: &Config) -> Prepared {
        self.ids.allocate(cfg);
        let ids = &self.ids;
        let (health, _) = Monitor::new(cfg, |s, b| ids.find(s, b), Duration::ZERO).health_maps();
        for (id, h) in health {
            self.dynamic.health.entry(id).or_insert(h);
        }
        publish::prepare(cfg, self.ids, &self.dynamic)
    }
}

//! Everything that is not per packet: the balancer's own TCP/IP stack on the data ports,
//! health checks, neighbour resolution, the pool-change hook, and publication of new
//! snapshots to the workers.
//!
//! One thread runs it all ([`SlowPath::turn`], called in a loop by `fulcrum run`):
//!
//! ```text
//! workers' rings --frames--> ARP?  -> neigh (learn, release waiting packets)
//!                            ND?   -> neigh (NS/NA, same)
//!                            IP?   -> stack (smoltcp, one interface per port)
//! monitor (schedule) -> checks (sockets) -> outcomes -> monitor (rise/fall, track)
//! stack's IP packets -> neigh (Ethernet framing / wait for ARP/ND) --frames--> worker 0 -> wire
//! health or MAC changed -> publish (new snapshot, one atomic swap) -> hooks (empty/nonempty)
//! ```
//!
//! The workers never wait for any of this: they read the snapshot they loaded, and the slow
//! path's frames reach them through a ring they drain when they have time.
#![deny(unsafe_code)]

pub mod checks;
pub mod health;
pub mod hook;
pub mod nd;
pub mod neigh;
pub mod publish;
pub mod stack;

use std::collections::HashMap;
use std::time::Duration;

use conf::AdminState;
use conf::Config;
use dataplane::dpdk::{Burst, Mbuf, RingConsumer, RingProducer};
use dataplane::engine::Engine;
use dataplane::frame::Frame;
use dataplane::snapshot::{BackendId, Health};
use dataplane::wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, parse_l2};

use checks::{Finished, Runner};
use health::Monitor;
use hook::Hooks;
use neigh::{Neighbors, PortL2};
use publish::{Publisher, State};
use stack::Stack;

/// The longest the slow path sleeps when idle: frames from the workers (check replies, ARP)
/// wait at most this long, which bounds what it adds to a check's measured time.
pub const MAX_IDLE: Duration = Duration::from_millis(1);

/// After a publication, the next waits at least this many times as long as the last build
/// took: changes arriving meanwhile (a thousand backends coming up within a second) are
/// published together, and publication never takes more than about a quarter of the slow
/// path's time, whatever the size of the tables.
const PUBLISH_HOLDOFF_FACTOR: u32 = 3;

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
    pub checks: checks::RunnerStats,
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

/// The slow path of one running engine.
pub struct SlowPath {
    cfg: Config,
    rings: Vec<RingConsumer>,
    tx: Option<RingProducer>,
    out: Burst,
    stack: Stack,
    neigh: Neighbors,
    monitor: Monitor,
    runner: Runner,
    publisher: Publisher,
    hooks: Hooks,
    /// Frames to send this turn: (port index, frame).
    outbox: Vec<(u8, Vec<u8>)>,
    finished: Vec<Finished>,
    frames: FrameStats,
    /// Health or a MAC changed since the last publication check.
    dirty: bool,
    /// No publication before this (see [`PUBLISH_HOLDOFF_FACTOR`]).
    publish_after: Duration,
    /// Each checked backend's last check.
    last_checks: HashMap<BackendId, LastCheck>,
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

/// A backend's checks, for `fulcrum ctl backends`.
#[derive(Debug, Clone, Copy)]
pub struct CheckInfo {
    pub checks: u64,
    pub failures: u64,
    pub last: Option<LastCheck>,
}

impl SlowPath {
    /// Takes over the engine's slow-path rings, starts resolving backends and schedules the
    /// first checks; publishes the first snapshot with every checked backend down.
    pub fn new(cfg: &Config, engine: &mut Engine) -> SlowPath {
        let now = engine.epoch.elapsed();
        let port_macs: Vec<[u8; 6]> = engine.port_reports().iter().map(|p| p.mac).collect();
        let l2: Vec<PortL2> = cfg
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortL2 {
                mac: p
                    .mac
                    .map(|m| m.0)
                    .or_else(|| port_macs.get(i).copied())
                    .unwrap_or([0; 6]),
                addrs: p.addresses.clone(),
            })
            .collect();
        let addrs: Vec<_> = cfg.ports.iter().map(|p| p.addresses.clone()).collect();
        let seed = cfg.global.hash_seed ^ std::process::id() as u64 ^ now.as_nanos() as u64;
        let mut sp = SlowPath {
            cfg: cfg.clone(),
            rings: std::mem::take(&mut engine.slowpath_rings),
            tx: engine.slowpath_tx.take(),
            out: Burst::new(),
            stack: Stack::new(&addrs, seed, now),
            neigh: Neighbors::new(cfg, l2, now),
            monitor: Monitor::new(cfg, &engine.ids, now),
            runner: Runner::new(cfg.global.health.source_ports.clone(), seed),
            publisher: Publisher::default(),
            hooks: Hooks::new(cfg),
            outbox: Vec::new(),
            finished: Vec::new(),
            frames: FrameStats::default(),
            dirty: true,
            publish_after: Duration::ZERO,
            last_checks: HashMap::new(),
        };
        tracing::info!(
            checked = sp.monitor.targets.len(),
            "slow path: health checks scheduled"
        );
        sp.sync(engine);
        // The pools as the first snapshot has them, even when nothing changed.
        if sp.publisher.stats.publications == 0 {
            sp.hooks.update(&engine.snapshots.load_full());
        }
        sp
    }

    /// One turn: frames in, stack, checks, frames out, publication. Returns how long the
    /// caller may sleep before the next turn (zero when there was work).
    pub fn turn(&mut self, engine: &mut Engine) -> Duration {
        let now = engine.epoch.elapsed();
        let received = self.receive(engine, now);

        let changed = self.stack.poll(now);
        self.runner.progress(
            &mut self.stack,
            now,
            changed || received > 0,
            &mut self.finished,
        );
        let mut work = received + self.finished.len();
        for f in self.finished.drain(..) {
            // A check of a backend a reload removed.
            let Some(t) = self.monitor.targets.get(f.target) else {
                continue;
            };
            let failure = match f.outcome {
                health::Outcome::Failure(why) => Some(why.name()),
                health::Outcome::Agent(r) if r.down || !r.alive => Some("agent down"),
                _ => None,
            };
            self.last_checks.insert(
                t.id,
                LastCheck {
                    failure,
                    took: f.took,
                    at: now,
                },
            );
            self.dirty |= self.monitor.finish(f.target, &f.outcome, f.started, now);
            log_outcome(&self.monitor, &f);
        }
        while let Some(i) = self.monitor.due(now) {
            work += 1;
            if let Err(o) = self
                .runner
                .start(&mut self.stack, i, &self.monitor.targets[i], now)
            {
                self.dirty |= self.monitor.finish(i, &o, now, now);
            }
        }
        self.stack.poll(now);
        self.runner.reap(&mut self.stack);

        let neigh = &mut self.neigh;
        let outbox = &mut self.outbox;
        self.stack.take_egress(|port, packet| {
            if let Some(dst) = stack::destination(&packet)
                && let Some(frame) = neigh.frame(port, dst, &packet, now)
            {
                outbox.push((port, frame));
            }
        });
        neigh.poll(now, &mut |port, frame| outbox.push((port, frame.to_vec())));
        work += self.outbox.len();
        self.send(engine);

        self.dirty |= self.neigh.take_changed();
        if self.dirty && now >= self.publish_after {
            self.dirty = false;
            self.sync(engine);
        }
        self.publisher.observe(engine);
        self.hooks.poll();

        if work > 0 {
            return Duration::ZERO;
        }
        let mut wake = now + MAX_IDLE;
        for t in [
            self.monitor.next_due(),
            self.runner.next_deadline(),
            self.neigh.next_due(),
            self.stack.poll_delay(now).map(|d| now + d),
            self.dirty.then_some(self.publish_after),
        ]
        .into_iter()
        .flatten()
        {
            wake = wake.min(t);
        }
        wake.saturating_sub(engine.epoch.elapsed())
    }

    /// Frames from the workers: ARP and ND to the neighbour table, IP to the stack.
    fn receive(&mut self, engine: &Engine, now: Duration) -> usize {
        let mut n = 0;
        let mut burst: Burst = Burst::new();
        for r in 0..self.rings.len() {
            // Bounded per turn, so checks and publication keep their pace under a flood.
            for _ in 0..16 {
                if self.rings[r].dequeue_burst(&mut burst) == 0 {
                    break;
                }
                for m in burst.drain() {
                    n += 1;
                    self.frames.received += 1;
                    let Some(port) = engine.port_of(m.port()) else {
                        self.frames.ignored += 1;
                        continue;
                    };
                    self.frame_in(port, &m, now);
                }
            }
        }
        n
    }

    fn frame_in(&mut self, port: u8, m: &Mbuf, now: Duration) {
        let data = m.data();
        let Ok(l2) = parse_l2(data) else {
            self.frames.ignored += 1;
            return;
        };
        if l2.l3_offset != neigh::ETH_HEADER {
            // The slow path's own frames go out untagged; a tagged peer could not be
            // answered on its VLAN.
            self.frames.ignored += 1;
            return;
        }
        let l3 = &data[l2.l3_offset..];
        match l2.ethertype {
            ETHERTYPE_ARP => {
                self.frames.arp += 1;
                for frame in self.neigh.receive_arp(port, l3, now) {
                    self.outbox.push((port, frame));
                }
            }
            ETHERTYPE_IPV6 if nd::is_nd(l3) => {
                self.frames.nd += 1;
                let eth_src: [u8; 6] = data
                    .get(6..12)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or_default();
                let out = self.neigh.receive_nd(port, eth_src, l3, now);
                for frame in out.into_iter().flatten() {
                    self.outbox.push((port, frame));
                }
            }
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => match stack::trim_ip(l3) {
                Some(packet) => {
                    self.frames.ip += 1;
                    self.stack.ingress(port, packet);
                }
                None => self.frames.ignored += 1,
            },
            _ => self.frames.ignored += 1,
        }
    }

    /// Hands the outbox to worker 0 through the ring, each mbuf naming its port index.
    fn send(&mut self, engine: &Engine) {
        let Some(tx) = self.tx.as_mut() else {
            self.frames.send_dropped += self.outbox.len() as u64;
            self.outbox.clear();
            return;
        };
        for (port, frame) in self.outbox.drain(..) {
            let Ok(mut m) = Mbuf::from_slice(engine.mempool(), &frame) else {
                self.frames.send_dropped += 1;
                continue;
            };
            m.set_port(u16::from(port));
            if let Err(m) = self.out.push(m) {
                flush(tx, &mut self.out, &mut self.frames);
                let _ = self.out.push(m);
            }
        }
        flush(tx, &mut self.out, &mut self.frames);
    }

    /// Publishes if what the slow path knows differs from the engine's dynamic state, logs
    /// the backends whose state changed, and tells the hooks.
    fn sync(&mut self, engine: &mut Engine) {
        let (health, weight_pct) = self.monitor.health_maps();
        let state = State {
            health,
            weight_pct,
            neighbors: self.neigh.learnt(),
        };
        for (ip, mac) in &state.neighbors {
            if engine.dynamic.neighbors.get(ip) != Some(mac) {
                tracing::info!(neighbor = %ip, mac = %conf::MacAddr(*mac), "neighbour learnt by ARP/ND");
            }
        }
        let before = engine.dynamic.health.clone();
        let t0 = engine.epoch.elapsed();
        if let Some(generation) = self.publisher.sync(engine, &self.cfg, &state) {
            let t1 = engine.epoch.elapsed();
            self.publish_after = t1 + (t1 - t0) * PUBLISH_HOLDOFF_FACTOR;
            log_changes(&self.monitor, &before, &state.health, generation);
            self.hooks.update(&engine.snapshots.load_full());
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
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

    /// Applies a reloaded, validated config (fields that need a restart are the caller's to
    /// refuse): backends keep their ids, an unchanged backend with an unchanged check keeps its
    /// health state and schedule, added ones are resolved and checked (down until their first
    /// checks pass), removed ones lose their operator overrides. Publishes at once; returns
    /// the generation.
    pub fn reconfigure(&mut self, cfg: &Config, engine: &mut Engine) -> u64 {
        let now = engine.epoch.elapsed();
        for s in &cfg.services {
            for b in &s.backends {
                engine.ids.get(&s.name, &b.name);
            }
        }
        let old = std::mem::replace(&mut self.monitor, Monitor::new(cfg, &engine.ids, now));
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
        let kept: std::collections::HashSet<BackendId> = cfg
            .services
            .iter()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .filter_map(|b| engine.ids.find(&s.name, &b.name))
            })
            .collect();
        engine.dynamic.admin.retain(|id, _| kept.contains(id));
        self.last_checks.retain(|id, _| kept.contains(id));
        self.neigh.reconfigure(cfg, now);
        self.hooks.reconfigure(cfg);
        self.cfg = cfg.clone();
        let generation = self.publish_now(engine);
        tracing::info!(
            checked = self.monitor.targets.len(),
            kept = map.iter().flatten().count(),
            generation,
            "slow path reconfigured"
        );
        generation
    }

    /// An operator's admin state for a backend (`ctl drain|enable|disable`), applied at once.
    /// Returns the generation published.
    pub fn set_admin(
        &mut self,
        engine: &mut Engine,
        service: &str,
        backend: &str,
        state: AdminState,
    ) -> Result<u64, String> {
        let Some(s) = self.cfg.services.iter().find(|s| s.name == service) else {
            return Err(format!("no service {service:?}"));
        };
        if !s.backends.iter().any(|b| b.name == backend) {
            return Err(format!("service {service:?} has no backend {backend:?}"));
        }
        let id = engine.ids.get(service, backend);
        engine.dynamic.admin.insert(id, state);
        Ok(self.publish_now(engine))
    }

    /// Drops the operator's admin overrides of `backend` of `service` (of every backend of
    /// the service when `None`): the config's admin state applies again. Returns how many
    /// were dropped and the generation published.
    pub fn clear_admin(
        &mut self,
        engine: &mut Engine,
        service: &str,
        backend: Option<&str>,
    ) -> Result<(usize, u64), String> {
        let Some(s) = self.cfg.services.iter().find(|s| s.name == service) else {
            return Err(format!("no service {service:?}"));
        };
        let names: Vec<String> = match backend {
            Some(b) if !s.backends.iter().any(|x| x.name == b) => {
                return Err(format!("service {service:?} has no backend {b:?}"));
            }
            Some(b) => vec![b.to_string()],
            None => s.backends.iter().map(|b| b.name.clone()).collect(),
        };
        let mut cleared = 0;
        for name in names {
            let id = engine.ids.get(service, &name);
            cleared += usize::from(engine.dynamic.admin.remove(&id).is_some());
        }
        Ok((cleared, self.publish_now(engine)))
    }

    /// Publishes the current config and dynamic state now, whatever the hold-off.
    fn publish_now(&mut self, engine: &mut Engine) -> u64 {
        let (health, weight_pct) = self.monitor.health_maps();
        engine.dynamic.health = health;
        engine.dynamic.weight_pct = weight_pct;
        engine.dynamic.neighbors = self.neigh.learnt();
        let generation = self.publisher.publish(engine, &self.cfg);
        self.hooks.update(&engine.snapshots.load_full());
        generation
    }

    /// The final figures.
    pub fn report(&self, engine: &Engine) -> Report {
        let snap = engine.snapshots.load_full();
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

fn flush(tx: &mut RingProducer, out: &mut Burst, frames: &mut FrameStats) {
    let n = out.len();
    let sent = tx.enqueue_burst(out);
    frames.sent += sent as u64;
    frames.send_dropped += (n - sent) as u64;
    out.clear();
}

fn log_outcome(m: &Monitor, f: &Finished) {
    let t = &m.targets[f.target];
    if let health::Outcome::Failure(why) = f.outcome {
        tracing::debug!(backend = %t.label(), reason = why.name(), took_ms = f.took.as_millis() as u64, "check failed");
    }
}

fn log_changes(
    m: &Monitor,
    before: &HashMap<BackendId, Health>,
    after: &HashMap<BackendId, Health>,
    generation: u64,
) {
    for t in &m.targets {
        let (old, new) = (before.get(&t.id), after.get(&t.id));
        if old == new {
            continue;
        }
        let name = |h: Option<&Health>| match h {
            None => "unchecked",
            Some(Health::Up) => "up",
            Some(Health::Down) => "down",
            Some(Health::Drain) => "drain",
            Some(Health::Maint) => "maint",
        };
        let reason = match (new, t.state.last_failure, &t.track) {
            (_, _, Some(_)) => "tracked backend changed",
            (Some(Health::Down), Some(f), _) => f.name(),
            (Some(Health::Down), None, _) => "not checked yet",
            _ => "check passed",
        };
        tracing::info!(
            backend = %t.label(),
            from = name(old),
            to = name(new),
            reason,
            generation,
            "backend health"
        );
    }
}

/// CPU time of the calling thread, from the scheduler's statistics.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

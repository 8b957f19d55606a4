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
//! stack's IP packets -> Config::route (port, next hop: the workers' table)
//!                    -> neigh (Ethernet framing / wait for ARP/ND) --frames--> worker 0 -> wire
//! health or MAC changed -> publish (new snapshot, one atomic swap) -> hooks (empty/nonempty)
//! ```
//!
//! The workers never wait for any of this: they read the snapshot they loaded, and the slow
//! path's frames reach them through a ring they drain when they have time.
#![deny(unsafe_code)]

pub mod announce;
pub mod exception;
pub mod health;
pub mod hook;
pub mod neigh;
pub mod publish;
pub mod stack;
pub mod sync;
pub mod vrrp;

mod admin;
mod reconfigure;
mod report;

pub use admin::AdminError;
pub use reconfigure::Preparer;
pub use report::{BackendReport, CheckInfo, FrameStats, LastCheck, NextHopReport, Report};

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use conf::Config;
use dataplane::dpdk::{Burst, Mbuf, RingConsumer, RingProducer};
use dataplane::engine::{Engine, EngineError, FlowStore};
use dataplane::frame::Frame;
use dataplane::ids::PortIdx;
use dataplane::snapshot::{BackendId, Snapshot};
use dataplane::wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, parse_l2};

use announce::Announcer;
use exception::{Dispatch, Exception};
use health::runner::{Finished, Runner};
use health::{Health, Monitor};
use hook::Hooks;
use neigh::{Neighbors, PortL2};
#[cfg(test)]
use publish::Tables;
use publish::{BackendIds, Publisher, State};
use stack::Stack;
use sync::PeerSync;

/// The longest the slow path sleeps when idle: frames from the workers (check replies, ARP)
/// wait at most this long, which bounds what it adds to a check's measured time.
pub const MAX_IDLE: Duration = Duration::from_millis(1);

/// After a publication, the next waits at least this many times as long as the last build
/// took: changes arriving meanwhile (a thousand backends coming up within a second) are
/// published together, and publication never takes more than about a quarter of the slow
/// path's time, whatever the size of the tables.
const PUBLISH_HOLDOFF_FACTOR: u32 = 3;

/// The slow path of one running engine.
pub struct SlowPath {
    cfg: Config,
    rings: Vec<RingConsumer>,
    tx: Option<RingProducer>,
    out: Burst,
    /// The kernel exception path of the ports that have one.
    exception: Exception,
    stack: Stack,
    neigh: Neighbors,
    monitor: Monitor,
    runner: Runner,
    publisher: Publisher,
    hooks: Hooks,
    /// Which VIPs BIRD announces.
    announcer: Announcer,
    /// Exceptions shared with peer instances (`None`: `[global.sync]` has no peers).
    sync: Option<PeerSync>,
    /// The node's VRRP role (`announce = "vrrp"` services).
    vrrp: vrrp::Vrrp,
    /// Frames to send this turn: (port index, frame).
    outbox: Vec<(PortIdx, Vec<u8>)>,
    finished: Vec<Finished>,
    frames: FrameStats,
    /// Health or a MAC changed since the last publication check.
    dirty: bool,
    /// No publication before this (see [`PUBLISH_HOLDOFF_FACTOR`]).
    publish_after: Duration,
    /// Each checked backend's last check.
    last_checks: HashMap<BackendId, LastCheck>,
    /// Where learnt neighbours are saved for the next process (beside the flow tables).
    neighbors_file: Option<std::path::PathBuf>,
}

/// The backend-id map's file in the flow-table directory.
pub const BACKEND_IDS_FILE: &str = "backend-ids";
/// The learnt neighbours' file in the flow-table directory ([`neigh::save`]).
pub const NEIGHBORS_FILE: &str = "neighbors";

impl SlowPath {
    /// Starts the data plane for `cfg` (see [`Engine::start`]) with its first snapshot, and
    /// the slow path that keeps it.
    pub fn start(cfg: &Config, devices: Vec<String>) -> Result<(Engine, SlowPath), EngineError> {
        Self::start_with(cfg, devices, &FlowStore::Memory)
    }

    /// [`start`](Self::start) with the flow tables in `store` (see [`Engine::start_with`]).
    /// With files, the backend ids are kept beside them ([`BACKEND_IDS_FILE`]), so that an
    /// adopted entry's backend id names the same backend as before the restart.
    pub fn start_with(
        cfg: &Config,
        devices: Vec<String>,
        store: &FlowStore,
    ) -> Result<(Engine, SlowPath), EngineError> {
        // What a previous process learnt of its neighbours (empty with --fresh or none).
        let neighbors = match store {
            FlowStore::Files { dir, fresh: false } => neigh::load(&dir.join(NEIGHBORS_FILE)),
            _ => HashMap::new(),
        };
        let ids = match store {
            FlowStore::Memory => BackendIds::new(),
            FlowStore::Files { dir, fresh } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    EngineError::Setup(format!("flow table directory {}: {e}", dir.display()))
                })?;
                let file = dir.join(BACKEND_IDS_FILE);
                if *fresh {
                    let _ = std::fs::remove_file(&file);
                }
                BackendIds::load(&file).unwrap_or_else(|e| {
                    tracing::warn!(
                        file = %file.display(),
                        error = %e,
                        "backend id file unreadable: ids start again from 1 (adopted flows \
                         may go to other backends)"
                    );
                    let _ = std::fs::remove_file(&file);
                    BackendIds::load(&file).unwrap_or_default()
                })
            }
        };
        let mut publisher = Publisher::with_ids(cfg, ids);
        let mut engine = Engine::start_with(cfg, devices, store, |port_macs, tables| {
            first_snapshot(
                cfg,
                &mut publisher,
                port_macs,
                (tables.adopted > 0).then_some(&neighbors),
            )
        })?;
        let slow = SlowPath::new(cfg, &mut engine, publisher);
        Ok((engine, slow))
    }

    /// Takes over the engine's slow-path rings and the publisher of its first snapshot,
    /// starts resolving backends and schedules the first checks. A first snapshot made by
    /// [`first_snapshot`] already has every checked backend down; one made otherwise is
    /// replaced by one that has.
    pub fn new(cfg: &Config, engine: &mut Engine, publisher: Publisher) -> SlowPath {
        let now = engine.epoch().elapsed();
        // The ports' MACs as the first snapshot has them (the config's, or the device's).
        let l2: Vec<PortL2> = engine
            .snapshot()
            .ports
            .iter()
            .map(|p| PortL2 {
                mac: p.mac,
                addrs: p.addrs.clone(),
            })
            .collect();
        let seed = cfg.global.hash_seed ^ std::process::id() as u64 ^ now.as_nanos() as u64;
        let io = engine.take_slowpath_io();
        let mut monitor = Monitor::new(cfg, |s, b| publisher.ids().find(s, b), now);
        let neighbors_file = engine
            .flow_tables()
            .dir
            .as_ref()
            .map(|d| d.join(NEIGHBORS_FILE));
        let adopted = engine.flow_tables().adopted > 0;
        if adopted {
            // As the first snapshot has them (see `first_snapshot`).
            monitor.assume_up();
        }
        let mut stack = Stack::new(&cfg.ports, seed, now);
        let sync = PeerSync::new(cfg, &mut stack, now);
        let mut sp = SlowPath {
            cfg: cfg.clone(),
            sync,
            rings: io.rings,
            tx: io.tx,
            exception: Exception::new(cfg, io.kernel),
            out: Burst::new(),
            stack,
            neigh: Neighbors::new(cfg, l2, now),
            monitor,
            runner: Runner::new(cfg.global.health.source_ports.clone(), seed),
            publisher,
            hooks: Hooks::new(cfg),
            announcer: Announcer::new(cfg),
            vrrp: vrrp::Vrrp::default(),
            outbox: Vec::new(),
            finished: Vec::new(),
            frames: FrameStats::default(),
            dirty: true,
            publish_after: Duration::ZERO,
            last_checks: HashMap::new(),
            neighbors_file,
        };
        if adopted && let Some(f) = &sp.neighbors_file {
            sp.neigh.seed(&neigh::load(f), now);
        }
        tracing::info!(
            checked = sp.monitor.targets.len(),
            "slow path: health checks scheduled"
        );
        sp.sync(engine);
        // The pools as the first snapshot has them, even when nothing changed.
        if sp.publisher.stats.publications == 0 {
            sp.pools(&engine.snapshot());
        }
        sp
    }

    /// One turn: frames in, stack, checks, frames out, publication. Returns how long the
    /// caller may sleep before the next turn (zero when there was work).
    pub fn turn(&mut self, engine: &mut Engine) -> Duration {
        let now = engine.epoch().elapsed();
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
                health::Outcome::Failure(why) if f.through_tunnel => {
                    Some(why.name_through_tunnel())
                }
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
            if failure.is_some() {
                self.monitor.targets[f.target].failed_through_tunnel = f.through_tunnel;
            }
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
        if let Some(s) = self.sync.as_mut() {
            work += s.turn(engine, &mut self.stack, now);
        }
        self.stack.poll(now);
        self.runner.reap(&mut self.stack);

        let (cfg, neigh, outbox, frames, runner) = (
            &self.cfg,
            &mut self.neigh,
            &mut self.outbox,
            &mut self.frames,
            &self.runner,
        );
        self.stack.take_egress(|port, packet| {
            let Some(packet) = runner.wrap(packet, cfg.global.hash_seed) else {
                frames.send_dropped += 1;
                return;
            };
            let Some(dst) = stack::destination(&packet) else {
                return;
            };
            let Some((port, hop)) = next_hop(cfg, port, dst) else {
                frames.no_route += 1;
                return;
            };
            if let Some(frame) = neigh.frame(port, hop, &packet, now) {
                outbox.push((port, frame));
            }
        });
        neigh.poll(now, &mut |port, frame| outbox.push((port, frame.to_vec())));
        work += self.outbox.len();
        self.send(engine);

        if self.neigh.take_changed() {
            self.dirty = true;
            if let Some(f) = &self.neighbors_file
                && let Err(e) = neigh::save(&self.neigh.learnt(), f)
            {
                tracing::warn!(file = %f.display(), error = %e, "cannot save the neighbours");
            }
        }
        if self.dirty && now >= self.publish_after {
            self.dirty = false;
            self.sync(engine);
        }
        self.publisher.observe(engine);
        self.hooks.poll();
        // A starting instance announces once its peers told it their exceptions.
        if self.sync.as_ref().is_none_or(|s| s.ready(now)) {
            self.announcer.poll();
        }
        if self.vrrp.holder_gone(now) {
            tracing::warn!(
                holder = self.vrrp.holder(),
                "vrrp: the keepalived that made this node master is gone: backup"
            );
            self.set_vrrp(engine, vrrp::Role::Backup, None);
        }

        if work > 0 {
            return Duration::ZERO;
        }
        let mut wake = now + MAX_IDLE;
        for t in [
            self.monitor.next_due(),
            self.runner.next_deadline(),
            self.neigh.next_due(),
            self.vrrp.next_due(),
            self.stack.poll_delay(now).map(|d| now + d),
            self.dirty.then_some(self.publish_after),
        ]
        .into_iter()
        .flatten()
        {
            wake = wake.min(t);
        }
        wake.saturating_sub(engine.epoch().elapsed())
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
                    match self.exception.dispatch(port, m.data()) {
                        Dispatch::Stack => {}
                        Dispatch::Kernel => {
                            self.exception.to_kernel(port, m);
                            continue;
                        }
                        Dispatch::Both => {
                            self.exception
                                .copy_to_kernel(engine.mempool(), port, m.data())
                        }
                        Dispatch::Refused => continue,
                    }
                    self.frame_in(port, &m, now);
                }
            }
        }
        self.exception.flush();
        if let Some(tx) = self.tx.as_mut() {
            n += self.exception.receive(tx);
        }
        n
    }

    /// Instance sync's figures; `None` when it is off.
    pub fn sync_report(&self) -> Option<sync::SyncReport> {
        self.sync.as_ref().map(PeerSync::report)
    }

    /// The peer that told of flow `key`'s exception, and its backend's address and port
    /// (`ctl which`); `None` when no peer did.
    pub fn sync_learnt(
        &self,
        key: &dataplane::flow::FlowKey,
    ) -> Option<(IpAddr, IpAddr, Option<u16>)> {
        self.sync.as_ref()?.learnt(key)
    }

    /// The exception path's counters; `None` when no port has one.
    pub fn kernel_stats(&self) -> Option<exception::KernelStats> {
        self.exception.any().then_some(self.exception.stats)
    }

    fn frame_in(&mut self, port: PortIdx, m: &Mbuf, now: Duration) {
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
            ETHERTYPE_IPV6 if neigh::nd::is_nd(l3) => {
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
            m.set_port(u16::from(port.get()));
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
        let state = self.state();
        let published = self.publisher.dynamic();
        for (ip, mac) in &state.neighbors {
            if published.neighbors.get(ip) != Some(mac) {
                tracing::info!(neighbor = %ip, mac = %conf::MacAddr(*mac), "neighbour learnt by ARP/ND");
            }
        }
        let before = published.health.clone();
        let t0 = engine.epoch().elapsed();
        if let Some(generation) = self.publisher.sync(engine, &self.cfg, &state) {
            let t1 = engine.epoch().elapsed();
            self.publish_after = t1 + (t1 - t0) * PUBLISH_HOLDOFF_FACTOR;
            log_changes(&self.monitor, &before, &state.health, generation);
            self.pools(&engine.snapshot());
        }
    }

    /// What the health checks and the neighbour table say now.
    fn state(&self) -> State {
        let (health, weight_pct) = self.monitor.health_maps();
        State {
            health,
            weight_pct,
            neighbors: self.neigh.learnt(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The pools of a snapshot just published: the hooks and the announcer take them.
    fn pools(&mut self, snap: &Snapshot) {
        self.hooks.update(snap);
        self.announcer.update(snap);
    }

    /// Every service's route announcement now.
    pub fn announcements(&self) -> Vec<announce::ServiceAnnouncement> {
        self.announcer.status()
    }

    /// A clean stop: withdraws every VIP from BIRD and waits (at most 2 s) for it to take
    /// that, before the data plane stops forwarding.
    pub fn withdraw(&mut self) {
        self.announcer.withdraw_all(Duration::from_secs(2));
    }

    /// Publishes the current config and dynamic state now, whatever the hold-off.
    fn publish_now(&mut self, engine: &mut Engine) -> u64 {
        let state = self.state();
        let generation = self.publisher.publish(engine, &self.cfg, &state);
        self.pools(&engine.snapshot());
        generation
    }
}

/// The snapshot the workers start with (generation 1): a backend with a health check, or
/// tracking one, is not checked yet and so down until its first check passes (rise/fall in
/// `health/state.rs`); no neighbour is learnt yet. Offline tools, which run no checks, build
/// theirs over an empty [`publish::Dynamic`] instead: every backend healthy.
///
/// `adopted`: the engine adopted a previous process's flows, and these are the MACs that
/// process had learnt. Then checked backends start up (the first check decides) and their
/// MACs are known, so that the adopted flows are forwarded from the first packet.
pub fn first_snapshot(
    cfg: &Config,
    publisher: &mut Publisher,
    port_macs: &[[u8; 6]],
    adopted: Option<&HashMap<std::net::IpAddr, [u8; 6]>>,
) -> Snapshot {
    let ids = publisher.ids();
    let mut unchecked = Monitor::new(cfg, |s, b| ids.find(s, b), Duration::ZERO);
    if adopted.is_some() {
        unchecked.assume_up();
    }
    let (health, weight_pct) = unchecked.health_maps();
    let state = State {
        health,
        weight_pct,
        neighbors: adopted.cloned().unwrap_or_default(),
    };
    publisher.first(cfg, port_macs, &state)
}

/// Where a packet of the stack to `dst` goes, emitted by the interface of `port`: the port
/// and next hop of [`Config::route`], the table the workers forward by, so a check goes
/// exactly where the traffic goes (a backend behind a gateway: to the gateway). Multicast (ND
/// to a solicited-node group, say) stays on its interface's link; a default route must not
/// take it. `None`: no port reaches `dst`.
fn next_hop(cfg: &Config, port: PortIdx, dst: IpAddr) -> Option<(PortIdx, IpAddr)> {
    if dst.is_multicast() {
        return Some((port, dst));
    }
    let path = cfg.route(dst)?;
    Some((PortIdx::new(u8::try_from(path.port).ok()?), path.next_hop))
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
        let reason = if f.through_tunnel {
            why.name_through_tunnel()
        } else {
            why.name()
        };
        tracing::debug!(backend = %t.label(), reason, took_ms = f.took.as_millis() as u64, "check failed");
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
        let name = |h: Option<&Health>| h.map_or("unchecked", |h| h.as_str());
        let reason = match (new, t.state.last_failure, &t.track) {
            (_, _, Some(_)) => "tracked backend changed",
            (Some(Health::Down), Some(f), _) if t.failed_through_tunnel => f.name_through_tunnel(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::snapshot::{BackendState, Tier};
    use health::runner::Runner;
    use neigh::PortL2;
    use publish::Dynamic;
    use std::path::Path;

    /// `web`'s backends are checked (`b` by tracking `a`); `plain`'s are not.
    const CONFIG: &str = r#"
[[port]]
name = "p"
device = "net_null0"
addresses = ["10.0.0.2/24"]
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
[service.health]
interval_ms = 1000
timeout_ms = 500
rise = 3
[[service.backend]]
name = "a"
address = "10.0.0.11"
mac = "02:00:00:00:00:11"
[[service.backend]]
name = "b"
address = "10.0.0.12"
mac = "02:00:00:00:00:12"
track = "a"
[[service]]
name = "plain"
vip = "10.0.0.101"
port = 80
[[service.backend]]
name = "c"
address = "10.0.0.13"
mac = "02:00:00:00:00:13"
"#;

    /// The workers start with no flow for a checked backend: it is down until its first
    /// check passes. An unchecked one is up at once; offline tools see every backend up.
    #[test]
    fn first_snapshot_has_checked_backends_down() {
        let cfg = conf::parse(CONFIG, Path::new("t.toml")).expect("valid");
        let mut publisher = Publisher::new(&cfg);
        let snap = first_snapshot(&cfg, &mut publisher, &[[2, 0, 0, 0, 0, 1]], None);
        let state = |s: &str, b: &str| {
            let id = publisher.ids().find(s, b).expect("id");
            snap.backend(id).expect("backend").state
        };
        assert_eq!(snap.generation, 1);
        assert_eq!(state("web", "a"), BackendState::Down);
        assert_eq!(
            state("web", "b"),
            BackendState::Down,
            "tracks a checked backend"
        );
        assert_eq!(state("plain", "c"), BackendState::Up);
        assert_eq!(snap.services[0].tier, Tier::Empty);
        assert!(snap.services[0].members.is_empty());
        assert_eq!(snap.services[1].tier, Tier::Primary);

        let offline = publish::build(&cfg, &mut BackendIds::new(), &Dynamic::default(), 1);
        let up = offline
            .backends
            .iter()
            .flatten()
            .filter(|b| b.state == BackendState::Up);
        assert_eq!(up.count(), 3, "offline, no check runs: every backend up");
    }

    /// A NAT backend behind a gateway: 10.2.0.11 through 10.0.0.1.
    const ROUTED: &str = r#"
[[port]]
name = "p"
device = "net_null0"
addresses = ["10.0.0.2/24"]
routes = [{ prefix = "10.2.0.0/16", via = "10.0.0.1" }]
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
forwarding = "nat"
[[service.backend]]
name = "far"
address = "10.2.0.11"
[service.backend.health]
interval_ms = 1000
"#;

    const GATEWAY: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

    /// A check of a backend behind a gateway leaves the stack, waits for the gateway's ARP,
    /// not the backend's, and goes out to the gateway's MAC with the backend's address inside.
    /// (The stack's interfaces speak IP: smoltcp consults no route to send, so the route is
    /// the slow path's alone, `next_hop`.)
    #[test]
    fn a_routed_backend_is_checked_through_its_gateway() {
        let cfg = conf::parse(ROUTED, Path::new("t.toml")).expect("valid");
        let publisher = Publisher::new(&cfg);
        let monitor = Monitor::new(&cfg, |s, b| publisher.ids().find(s, b), Duration::ZERO);
        let (backend, gateway): (IpAddr, IpAddr) =
            ("10.2.0.11".parse().unwrap(), "10.0.0.1".parse().unwrap());
        let syn = || {
            let mut stack = Stack::new(&cfg.ports[..1], 1, Duration::ZERO);
            let mut runner = Runner::new(cfg.global.health.source_ports.clone(), 1);
            runner
                .start(&mut stack, 0, &monitor.targets[0], Duration::ZERO)
                .expect("started");
            stack.poll(Duration::ZERO);
            let mut out = Vec::new();
            stack.take_egress(|port, p| out.push((port, p)));
            out
        };
        let out = syn();
        assert_eq!(out.len(), 1, "the SYN");
        let (port, packet) = &out[0];
        assert_eq!(stack::destination(packet), Some(backend));
        assert_eq!(
            next_hop(&cfg, *port, backend),
            Some((PortIdx::new(0), gateway))
        );

        let l2 = vec![PortL2 {
            mac: [2, 0, 0, 0, 0, 1],
            addrs: cfg.ports[0].addresses.clone(),
        }];
        let mut neigh = Neighbors::new(&cfg, l2, Duration::ZERO);
        assert_eq!(
            neigh.resolution(gateway),
            Some(neigh::Resolution::Unresolved)
        );
        assert_eq!(neigh.resolution(backend), None, "not a neighbour");
        assert!(
            neigh
                .frame(PortIdx::new(0), gateway, packet, Duration::ZERO)
                .is_none()
        );
        let released = neigh.learn(PortIdx::new(0), gateway, GATEWAY, Duration::ZERO);
        assert_eq!(released.len(), 1, "the SYN waited for the gateway");
        assert_eq!(released[0][..6], GATEWAY);
        assert_eq!(&released[0][neigh::ETH_HEADER..], &packet[..]);

        // Multicast stays on its link; what no route reaches goes nowhere.
        let group: IpAddr = "ff02::1:ff00:11".parse().unwrap();
        let p0 = PortIdx::new(0);
        assert_eq!(next_hop(&cfg, p0, group), Some((p0, group)));
        assert_eq!(next_hop(&cfg, p0, "192.0.2.1".parse().unwrap()), None);
    }

    /// The workers send a routed backend's frames to its gateway's MAC, follow a new one at
    /// once, and give it no flows while the gateway is unresolved.
    #[test]
    fn a_routed_backend_takes_its_gateways_mac() {
        let cfg = conf::parse(ROUTED, Path::new("t.toml")).expect("valid");
        let gateway: IpAddr = "10.0.0.1".parse().unwrap();
        let mut ids = BackendIds::new();
        let mut at = |mac: Option<[u8; 6]>| {
            let mut dynamic = Dynamic::default();
            if let Some(mac) = mac {
                dynamic.neighbors.insert(gateway, mac);
            }
            let snap = publish::build(&cfg, &mut ids, &dynamic, 1);
            let b = snap
                .backend(ids.find("web", "far").expect("id"))
                .expect("backend")
                .clone();
            (b.mac, b.state, b.out_port)
        };
        assert_eq!(
            at(Some(GATEWAY)),
            (GATEWAY, BackendState::Up, PortIdx::new(0))
        );
        let moved = [2, 0, 0, 0, 0, 0xfd];
        assert_eq!(at(Some(moved)).0, moved);
        assert_eq!(at(None).1, BackendState::Unresolved);
    }

    /// A reload's Maglev tables prepared on another thread are the ones the loop would
    /// compute, and it takes them: only what changed since is computed there.
    #[test]
    fn tables_prepared_on_another_thread_are_taken() {
        let cfg = conf::parse(CONFIG, Path::new("t.toml")).expect("valid");
        let mut publisher = Publisher::new(&cfg);
        let first = first_snapshot(&cfg, &mut publisher, &[[2, 0, 0, 0, 0, 1]], None);
        // The reload adds a checked backend to web (down until checked: web's pool stays
        // empty) and an unchecked one to plain (a new pool).
        let backend = |name: &str, n: u8| {
            format!(
                "[[service.backend]]\nname = \"{name}\"\naddress = \"10.0.0.{n}\"\nmac = \"02:00:00:00:00:{n:02x}\"\n"
            )
        };
        let text = CONFIG.replace(
            "[[service]]\nname = \"plain\"",
            &(backend("e", 15) + "[[service]]\nname = \"plain\""),
        ) + &backend("d", 14);
        let new = conf::parse(&text, Path::new("t.toml")).expect("valid");
        let (ids, dynamic) = publisher.copy_state();
        let preparer = Preparer { ids, dynamic };
        let cfg2 = new.clone();
        let prepared = std::thread::spawn(move || preparer.prepare(&cfg2))
            .join()
            .expect("prepared");
        assert_eq!(prepared.len(), 2);

        // The loop, as reconfigure has it: e not checked yet.
        let (mut ids, mut dynamic) = publisher.copy_state();
        ids.allocate(&new);
        let fresh = Monitor::new(&new, |s, b| ids.find(s, b), Duration::ZERO);
        dynamic.health = fresh.health_maps().0;
        let mut tables = Tables::default();
        tables.add_snapshot(&first);
        let (_, without) = publish::build_with(&new, &mut ids.clone(), &dynamic, 2, &tables);
        assert_eq!(without, 1, "only web's (empty) pool is unchanged");
        tables.add_prepared(&prepared);
        let (snap, with) = publish::build_with(&new, &mut ids.clone(), &dynamic, 2, &tables);
        assert_eq!(with, 2, "plain's new table was prepared");
        let plain = publish::build(&new, &mut ids, &dynamic, 2);
        for (a, b) in snap.services.iter().zip(&plain.services) {
            assert_eq!(a.members, b.members, "{}", a.name);
            assert!(
                a.maglev == b.maglev,
                "{}: the table it would have computed",
                a.name
            );
        }
        assert_eq!(snap.services[1].members.len(), 2);
    }
}

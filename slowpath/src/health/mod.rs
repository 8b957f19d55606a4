//! Health checking: which backend is checked when, what its checks concluded, and what the
//! workers should make of it.
//!
//! [`Monitor`] is the clock-driven part, free of I/O so tests drive it with a fake clock: it
//! hands out the checks that are due ([`Monitor::due`]), takes their outcomes
//! ([`Monitor::finish`]), keeps each backend's [`CheckState`], and resolves `track`.
//! [`probe`] knows what each check type sends and how it judges the reply; the [`runner`]
//! does the talking over smoltcp.
//!
//! A tunnelled backend whose check has `through_tunnel` is checked twice per round, at once:
//! at its own address, and at the VIP through its tunnel ([`TunnelLeg`]); the round passes
//! when both do (see [`runner`]).
//!
//! Scheduling: each backend's first check starts at a random moment within its first
//! interval, so a thousand backends configured alike do not all fire at once; later checks
//! start one interval (varied by `spread_pct`) after the previous start. A backend never has
//! two checks in flight (validation keeps the timeout within the interval).

pub mod probe;
pub mod runner;
pub mod state;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use conf::{Config, HealthCheck};
use dataplane::snapshot::BackendId;
use dataplane::tunnel::Tunnel;

pub use state::{AgentMode, AgentReply, CheckState, Failure, Health, Outcome};

/// A backend whose health the slow path decides: by its own check or by tracking another.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: BackendId,
    pub service: String,
    pub backend: String,
    pub addr: IpAddr,
    /// The data port that reaches it, and the balancer's address checks leave from.
    pub port_index: u8,
    pub source: IpAddr,
    /// Its own check (`None` when it tracks another backend).
    pub check: Option<HealthCheck>,
    /// The same check through the backend's tunnel, when the check asks for it.
    pub through_tunnel: Option<TunnelLeg>,
    /// The last failed round failed through the tunnel (its own address answered).
    pub failed_through_tunnel: bool,
    /// The target it follows.
    pub track: Option<usize>,
    pub state: CheckState,
    due: Duration,
    in_flight: bool,
    /// Checks finished, and how many of them failed.
    pub checks: u64,
    pub failures: u64,
}

impl Target {
    /// `service/backend`, for logs.
    pub fn label(&self) -> String {
        format!("{}/{}", self.service, self.backend)
    }
}

/// Where a check through a backend's tunnel goes: to the service's VIP, from the balancer's
/// own address of the VIP's family on the port that reaches the backend, its packets inside
/// the backend's tunnel as the data path builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelLeg {
    pub vip: IpAddr,
    pub source: IpAddr,
    pub tunnel: Tunnel,
}

impl TunnelLeg {
    /// The leg of backend `b` of service `s`, whose own check leaves by port `port`: `None`
    /// unless its check asks for one, or when the port has no address of the VIP's family
    /// for the answer to come back to (an IPv4 VIP over IPv6 backends needs an IPv4 one).
    fn of(cfg: &Config, s: &conf::Service, b: &conf::Backend, port: usize) -> Option<TunnelLeg> {
        if !b.health.as_ref().is_some_and(|h| h.through_tunnel) {
            return None;
        }
        let tunnel = Tunnel::of_backend(cfg, s, b)?;
        let source = cfg
            .ports
            .get(port)?
            .addresses
            .iter()
            .find_map(|a| (a.addr.is_ipv6() == s.vip.is_ipv6()).then_some(a.addr));
        let Some(source) = source else {
            tracing::warn!(
                service = %s.name,
                backend = %b.name,
                "through_tunnel: the port that reaches the backend has no address of the VIP's \
                 family to check from; checking the backend's own address only"
            );
            return None;
        };
        Some(TunnelLeg {
            vip: s.vip,
            source,
            tunnel,
        })
    }
}

/// Every checked or tracking backend and the schedule of their checks.
#[derive(Debug)]
pub struct Monitor {
    pub targets: Vec<Target>,
    queue: BinaryHeap<Reverse<(Duration, usize)>>,
    rng: SplitMix,
    spread_pct: u8,
}

impl Monitor {
    /// The targets of `cfg` (backends with a check or a `track`), first checks spread over
    /// their first interval from `now`. `id` gives each backend's id (service, backend name);
    /// one without is left out.
    pub fn new(
        cfg: &Config,
        mut id: impl FnMut(&str, &str) -> Option<BackendId>,
        now: Duration,
    ) -> Monitor {
        let mut m = Monitor {
            targets: Vec::new(),
            queue: BinaryHeap::new(),
            rng: SplitMix(cfg.global.hash_seed ^ 0x6865_616c_7468),
            spread_pct: cfg.global.health.spread_pct,
        };
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for s in &cfg.services {
            for b in &s.backends {
                if b.health.is_none() && b.track.is_none() {
                    continue;
                }
                let Some(id) = id(&s.name, &b.name) else {
                    continue;
                };
                let (port_index, source) = cfg
                    .route(b.address)
                    .map_or((0, b.address), |p| (p.port, p.source));
                let (rise, fall) = b.health.as_ref().map_or((1, 1), |h| (h.rise, h.fall));
                index.insert((&s.name, &b.name), m.targets.len());
                m.targets.push(Target {
                    id,
                    service: s.name.clone(),
                    backend: b.name.clone(),
                    addr: b.address,
                    port_index: port_index as u8,
                    source,
                    check: b.health.clone(),
                    through_tunnel: TunnelLeg::of(cfg, s, b, port_index),
                    failed_through_tunnel: false,
                    track: None,
                    state: CheckState::new(rise, fall),
                    due: now,
                    in_flight: false,
                    checks: 0,
                    failures: 0,
                });
            }
        }
        for s in &cfg.services {
            for b in &s.backends {
                let Some(t) = &b.track else { continue };
                let (Some(&me), Some(&them)) = (
                    index.get(&(s.name.as_str(), b.name.as_str())),
                    index.get(&(t.service.as_str(), t.backend.as_str())),
                ) else {
                    continue; // tracking a backend without a check: it stays up
                };
                m.targets[me].track = Some(them);
            }
        }
        for i in 0..m.targets.len() {
            if let Some(h) = &m.targets[i].check {
                let offset = m.rng.below(u64::from(h.interval_ms) * 1000);
                let due = now + Duration::from_micros(offset);
                m.targets[i].due = due;
                m.queue.push(Reverse((due, i)));
            }
        }
        m
    }

    /// Carries a target's check state over from the monitor of the config before a reload
    /// (same backend, same check): its rise/fall progress, counters and schedule, so an
    /// unchanged backend stays up through a reload and never has two checks in flight.
    pub fn adopt(&mut self, i: usize, old: &Target) {
        self.adopt_state(i, old);
        let t = &mut self.targets[i];
        t.in_flight = old.in_flight;
        t.due = old.due;
        if !t.in_flight && t.check.is_some() {
            self.queue.push(Reverse((t.due, i)));
        }
    }

    /// Carries only the health verdict and counters over (same backend, its check changed):
    /// the backend keeps its state, and so its flows, until the new check says otherwise; the
    /// new check starts on its own schedule. The old rise/fall counts stay with the verdict.
    pub fn adopt_state(&mut self, i: usize, old: &Target) {
        let t = &mut self.targets[i];
        t.state = old.state.clone();
        t.checks = old.checks;
        t.failures = old.failures;
    }

    /// The next target whose check is due at `now`, marked in flight; `None` when nothing
    /// is due. Call until `None`.
    pub fn due(&mut self, now: Duration) -> Option<usize> {
        while let Some(&Reverse((at, i))) = self.queue.peek() {
            if at > now {
                return None;
            }
            self.queue.pop();
            let t = &mut self.targets[i];
            if t.in_flight || t.due != at {
                continue; // stale entry
            }
            t.in_flight = true;
            return Some(i);
        }
        None
    }

    /// When the next check is due.
    pub fn next_due(&self) -> Option<Duration> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    /// Records the outcome of target `i`'s check that started at `started`, schedules the
    /// next one, and says whether its state changed.
    pub fn finish(
        &mut self,
        i: usize,
        outcome: &Outcome,
        started: Duration,
        now: Duration,
    ) -> bool {
        let spread = self.spread_pct;
        let jitter = self.rng.next_u64();
        let t = &mut self.targets[i];
        t.in_flight = false;
        t.checks += 1;
        if !matches!(outcome, Outcome::Success)
            && !matches!(outcome, Outcome::Agent(r) if !r.down && r.alive)
        {
            t.failures += 1;
        }
        let changed = t.state.record(outcome);
        if let Some(h) = &t.check {
            let interval = u64::from(h.interval_ms) * 1000;
            // interval * (1 ± spread%), uniformly.
            let span = interval * u64::from(spread) / 100;
            let next = if span == 0 {
                interval
            } else {
                interval - span + jitter % (2 * span + 1)
            };
            t.due = (started + Duration::from_micros(next)).max(now);
            self.queue.push(Reverse((t.due, i)));
        }
        changed
    }

    /// The health and weight percentage the workers should use for target `i`: its own,
    /// or that of the backend it tracks (weights are not tracked, only the state).
    pub fn effective(&self, i: usize) -> (Health, u32) {
        let own = &self.targets[i];
        let mut at = i;
        // Validation rejects loops; the bound only guards against a bug.
        for _ in 0..=self.targets.len() {
            match self.targets[at].track {
                Some(next) => at = next,
                None => break,
            }
        }
        let health = self.targets[at].state.health();
        let pct = if own.track.is_some() {
            100
        } else {
            own.state.weight_pct()
        };
        (health, pct)
    }

    /// Every backend not checked yet starts up ([`CheckState::assume_up`]): after a restart
    /// that adopted flows.
    pub fn assume_up(&mut self) {
        for t in &mut self.targets {
            t.state.assume_up();
        }
    }

    /// The health and weight of every target, keyed by backend id, as `Dynamic` holds them.
    /// A tracking backend whose target has no check is left out (it counts as up).
    pub fn health_maps(&self) -> (HashMap<BackendId, Health>, HashMap<BackendId, u32>) {
        let mut health = HashMap::with_capacity(self.targets.len());
        let mut weights = HashMap::new();
        for (i, t) in self.targets.iter().enumerate() {
            if t.check.is_none() && t.track.is_none() {
                continue;
            }
            let (h, pct) = self.effective(i);
            health.insert(t.id, h);
            if pct != 100 {
                weights.insert(t.id, pct);
            }
        }
        (health, weights)
    }

    /// Whether target `i` has a check running.
    pub fn in_flight(&self, i: usize) -> bool {
        self.targets[i].in_flight
    }
}

/// The jitter generator: the workspace's one SplitMix64, seeded per check so schedules are
/// reproducible in tests.
pub use dataplane::hash::SplitMix;

#[cfg(test)]
mod tests;

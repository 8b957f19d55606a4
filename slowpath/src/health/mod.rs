//! Health checking: which backend is checked when, what its checks concluded, and what the
//! workers should make of it.
//!
//! [`Monitor`] is the clock-driven part, free of I/O so tests drive it with a fake clock: it
//! hands out the checks that are due ([`Monitor::due`]), takes their outcomes
//! ([`Monitor::finish`]), keeps each backend's [`CheckState`], and resolves `track`.
//! [`probe`] knows what each check type sends and how it judges the reply; the [`runner`]
//! does the talking over smoltcp.
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
                let (port_index, source) = cfg.route(b.address).unwrap_or((0, b.address));
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
mod tests {
    use super::*;
    use std::path::Path;

    const MS: Duration = Duration::from_millis(1);

    /// Ids as the slow path gives them: config order from 1.
    struct Ids(HashMap<(String, String), BackendId>);

    impl Ids {
        fn find(&self, s: &str, b: &str) -> Option<BackendId> {
            self.0.get(&(s.to_string(), b.to_string())).copied()
        }
    }

    fn config(extra_service: &str) -> (Config, Ids) {
        let text = format!(
            "[[port]]\nname = \"p\"\ndevice = \"d\"\naddresses = [\"10.0.0.2/24\"]\n\
             [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\n\
             [service.health]\ninterval_ms = 1000\ntimeout_ms = 500\nrise = 2\nfall = 3\n\
             [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\n\
             [[service.backend]]\nname = \"b\"\naddress = \"10.0.0.12\"\n\
             [[service.backend]]\nname = \"c\"\naddress = \"10.0.0.13\"\ntrack = \"a\"\n\
             [[service.backend]]\nname = \"d\"\naddress = \"10.0.0.14\"\ntrack = \"c\"\n\
             {extra_service}"
        );
        let cfg = conf::parse(&text, Path::new("t.toml")).expect("valid");
        let mut ids = HashMap::new();
        for s in &cfg.services {
            for b in &s.backends {
                let id = ids.len() as BackendId + 1;
                ids.insert((s.name.clone(), b.name.clone()), id);
            }
        }
        (cfg, Ids(ids))
    }

    /// Runs the schedule from `from` to `to` in 1 ms steps; every due check of target `i`
    /// gets `result(i, start)`, delivered `latency` later. Returns each state change as
    /// (time, target label, new health).
    fn drive(
        m: &mut Monitor,
        from: Duration,
        to: Duration,
        latency: Duration,
        result: &dyn Fn(usize, Duration) -> Outcome,
    ) -> Vec<(Duration, String, Health)> {
        let mut running: Vec<(Duration, usize, Duration)> = Vec::new();
        let mut changes = Vec::new();
        let mut now = from;
        while now <= to {
            running.retain(|&(done, i, start)| {
                if done > now {
                    return true;
                }
                let before: Vec<Health> = (0..m.targets.len()).map(|j| m.effective(j).0).collect();
                m.finish(i, &result(i, start), start, now);
                for (j, b) in before.iter().enumerate() {
                    let h = m.effective(j).0;
                    if h != *b {
                        changes.push((now, m.targets[j].label(), h));
                    }
                }
                false
            });
            while let Some(i) = m.due(now) {
                running.push((now + latency, i, now));
            }
            now += MS;
        }
        changes
    }

    #[test]
    fn first_checks_are_spread_over_the_first_interval() {
        let mut services = String::new();
        for s in 0..10 {
            services += &format!(
                "[[service]]\nname = \"s{s}\"\nvip = \"10.0.0.{}\"\nport = 80\n\
                 [service.health]\ninterval_ms = 1000\ntimeout_ms = 500\n",
                150 + s
            );
            for b in 0..20 {
                services += &format!(
                    "[[service.backend]]\nname = \"b{b}\"\naddress = \"10.0.0.{}\"\n",
                    20 + b
                );
            }
        }
        let (cfg, ids) = config(&services);
        let mut m = Monitor::new(&cfg, |s, b| ids.find(s, b), Duration::ZERO);
        let mut starts = Vec::new();
        for t in 0..1000u64 {
            while let Some(i) = m.due(MS * t as u32) {
                starts.push(t);
                m.finish(i, &Outcome::Success, MS * t as u32, MS * t as u32);
            }
        }
        // 202 checked backends, each exactly once in its first second.
        assert_eq!(starts.len(), 202);
        // No 100 ms slot holds more than a quarter of them.
        let mut slots = [0usize; 10];
        for s in &starts {
            slots[(*s / 100) as usize] += 1;
        }
        assert!(slots.iter().all(|&n| n > 5 && n < 50), "{slots:?}");
    }

    #[test]
    fn rise_and_fall_on_a_fake_clock() {
        let (cfg, ids) = config("");
        let mut m = Monitor::new(&cfg, |s, b| ids.find(s, b), Duration::ZERO);
        let a = m.targets.iter().position(|t| t.backend == "a").unwrap();
        // a fails from t = 3 s to t = 6 s; b is always fine.
        let result = move |i: usize, start: Duration| {
            if i == a && start >= MS * 3000 && start < MS * 6000 {
                Outcome::Failure(Failure::Refused)
            } else {
                Outcome::Success
            }
        };
        let changes = drive(&mut m, Duration::ZERO, MS * 10_000, MS * 2, &result);
        let of = |label: &str| -> Vec<(Duration, Health)> {
            changes
                .iter()
                .filter(|c| c.1 == label)
                .map(|c| (c.0, c.2))
                .collect()
        };
        // Up with the first check (within the first second), down at the third failure
        // (checks at ~3 s, ~4 s, ~5 s), up at the second success (~6 s, ~7 s).
        let a_changes = of("web/a");
        assert_eq!(a_changes.len(), 3, "{changes:?}");
        assert_eq!(a_changes[0].1, Health::Up);
        assert!(a_changes[0].0 <= MS * 1002);
        assert_eq!(a_changes[1].1, Health::Down);
        assert!(
            a_changes[1].0 >= MS * 5000 && a_changes[1].0 <= MS * 6002,
            "{a_changes:?}"
        );
        assert_eq!(a_changes[2].1, Health::Up);
        assert!(
            a_changes[2].0 >= MS * 7000 && a_changes[2].0 <= MS * 8002,
            "{a_changes:?}"
        );
        // b came up once and stayed; c and d follow a, at the same instants.
        assert_eq!(of("web/b").len(), 1);
        let follow: Vec<_> = a_changes.iter().map(|c| c.1).collect();
        assert_eq!(of("web/c").iter().map(|c| c.1).collect::<Vec<_>>(), follow);
        assert_eq!(
            of("web/d").iter().map(|c| c.0).collect::<Vec<_>>(),
            a_changes.iter().map(|c| c.0).collect::<Vec<_>>()
        );
        // Every check ran on its schedule: ~10 per backend in 10 s.
        assert!(
            (9..=11).contains(&m.targets[a].checks),
            "{}",
            m.targets[a].checks
        );
    }

    #[test]
    fn flapping_backend_stays_up() {
        let (cfg, ids) = config("");
        let mut m = Monitor::new(&cfg, |s, b| ids.find(s, b), Duration::ZERO);
        let a = m.targets.iter().position(|t| t.backend == "a").unwrap();
        // Every other check of a fails, and every third: never three in a row.
        let n = std::cell::Cell::new(0u32);
        let result = move |i: usize, _| {
            if i != a {
                return Outcome::Success;
            }
            n.set(n.get() + 1);
            if n.get() > 1 && !n.get().is_multiple_of(3) {
                Outcome::Failure(Failure::Timeout)
            } else {
                Outcome::Success
            }
        };
        let changes = drive(&mut m, Duration::ZERO, MS * 20_000, MS * 500, &result);
        let a_changes: Vec<_> = changes.iter().filter(|c| c.1 == "web/a").collect();
        // Up at the first check; two failures in a row never reach fall = 3.
        assert_eq!(a_changes.len(), 1, "{a_changes:?}");
        assert!(m.targets[a].failures >= 10);
    }

    #[test]
    fn agent_drain_maint_and_weight_reach_the_maps() {
        let (cfg, ids) = config("");
        let mut m = Monitor::new(&cfg, |s, b| ids.find(s, b), Duration::ZERO);
        let a = m.targets.iter().position(|t| t.backend == "a").unwrap();
        let agent = |t: &str| Outcome::Agent(AgentReply::parse(t).unwrap());
        let id = m.targets[a].id;
        m.finish(a, &agent("up 50%"), Duration::ZERO, Duration::ZERO);
        let (h, w) = m.health_maps();
        assert_eq!(h[&id], Health::Up);
        assert_eq!(w[&id], 50);
        m.finish(a, &agent("drain"), MS * 1000, MS * 1000);
        let (h, _) = m.health_maps();
        assert_eq!(h[&id], Health::Drain);
        // c tracks a: the state follows, the weight does not.
        let c = m.targets.iter().position(|t| t.backend == "c").unwrap();
        let cid = m.targets[c].id;
        let (h, w) = m.health_maps();
        assert_eq!(h[&cid], Health::Drain);
        assert!(!w.contains_key(&cid));
        m.finish(a, &agent("maint"), MS * 2000, MS * 2000);
        assert_eq!(m.health_maps().0[&cid], Health::Maint);
        // b has not been checked yet: down until its first check.
        let b = m.targets.iter().position(|t| t.backend == "b").unwrap();
        assert_eq!(m.health_maps().0[&m.targets[b].id], Health::Down);
    }

    #[test]
    fn never_two_checks_in_flight() {
        let (cfg, ids) = config("");
        let mut m = Monitor::new(&cfg, |s, b| ids.find(s, b), Duration::ZERO);
        let mut started = Vec::new();
        for t in 0..5000u32 {
            while let Some(i) = m.due(MS * t) {
                assert!(!started.contains(&i), "target {i} started twice");
                started.push(i);
            }
        }
        assert_eq!(started.len(), 2, "a and b only: c and d track");
        assert!(started.iter().all(|&i| m.in_flight(i)));
    }

    #[test]
    fn adopted_targets_keep_health_and_never_run_two_checks() {
        let (cfg, ids) = config("");
        let mut m = Monitor::new(&cfg, |s, b| ids.find(s, b), Duration::ZERO);
        drive(&mut m, Duration::ZERO, MS * 3000, MS, &|_, _| {
            Outcome::Success
        });
        let a = m.targets.iter().position(|t| t.backend == "a").unwrap();
        assert_eq!(m.effective(a).0, Health::Up);
        // A check of `a` in flight when the config is reloaded.
        let now = MS * 3001;
        let mut started = None;
        while let Some(i) = m.due(now + MS * 3000) {
            if i == a {
                started = Some(i);
                break;
            }
        }
        let started = started.expect("a's check falls due");
        let mut fresh = Monitor::new(&cfg, |s, b| ids.find(s, b), now);
        let na = fresh.targets.iter().position(|t| t.backend == "a").unwrap();
        assert_eq!(
            fresh.effective(na).0,
            Health::Down,
            "a new target starts down"
        );
        fresh.adopt(na, &m.targets[started]);
        assert_eq!(
            fresh.effective(na).0,
            Health::Up,
            "an adopted one keeps its verdict"
        );
        assert!(fresh.in_flight(na));
        // Its stale schedule entry does not start a second check while one is in flight.
        while let Some(i) = fresh.due(now + MS * 5000) {
            assert_ne!(i, na);
        }
        let mut other = Monitor::new(&cfg, |s, b| ids.find(s, b), now);
        other.adopt_state(na, &m.targets[started]);
        assert_eq!(other.effective(na).0, Health::Up);
        assert!(!other.in_flight(na));
    }
}

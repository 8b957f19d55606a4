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
            let id = BackendId::new(ids.len() as u32 + 1);
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

//! Scale-out in namespaces: scripts/ecmp-testbed.sh's routed tier (see its header for the
//! picture) with everything running. A router namespace runs BIRD with ECMP (`merge paths
//! on`, the L4 multipath hash, a fixed hash seed); three Fulcrum instances, each in its own
//! namespace with the same config (tests/configs/ecmp.toml), announce the VIP by BGP from a
//! BIRD of their own (packaging/bird.conf) over their DPDK port's kernel exception path; the
//! DSR backends sit on a segment all three reach; kernel TCP clients are behind the router.
//!
//! Instances are numbered 1..=3 (`lbI`); the router's BGP protocol for instance `I` is `lbI`,
//! the instance's own is `uplink`. The router's FIB is read with `ip -n`, so polling it
//! costs one process per look.
//!
//! [`Ecmp::with`] builds variants: more backend servers than the pool's three (a test adds
//! them to every instance by live reload, [`Ecmp::add_backend`]), instances left to start
//! later, and instance sync between the instances (`[global.sync]`, every other instance a
//! peer, one key file), whose spreading of exceptions [`Ecmp::wait_synced`] waits for.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::net::Layout;
use crate::spread::client_sources;
use crate::{Balancer, Bird, Net, SyncFigures, must, repo, routed};

/// Fulcrum instances in the testbed.
pub const INSTANCES: usize = 3;

/// The backends in every instance's pool at start (tests/configs/ecmp.toml's b1..b3).
pub const POOL: usize = 3;

/// What [`Ecmp::with`] builds.
#[derive(Debug, Clone, Copy)]
pub struct EcmpOptions {
    /// Backend servers running (b1..bN, at least [`POOL`]); those above the pool's wait for
    /// [`Ecmp::add_backend`].
    pub backends: usize,
    /// Instances started by [`Ecmp::with`] (lb1..lbN); the others by [`Ecmp::start`].
    pub started: usize,
    /// Instance sync between the instances.
    pub sync: bool,
}

impl Default for EcmpOptions {
    fn default() -> EcmpOptions {
        EcmpOptions {
            backends: POOL,
            started: INSTANCES,
            sync: false,
        }
    }
}

/// The testbed with its router, instances and backends running. Dropping it stops every
/// process and removes every namespace.
pub struct Ecmp {
    // Field order is drop order: the processes go before their namespaces.
    lbs: Vec<Option<Balancer>>,
    birds: Vec<Option<Bird>>,
    /// The router's BIRD.
    pub router: Bird,
    pub net: Net,
}

impl Ecmp {
    /// The VIP every instance announces (DSR, port 80).
    pub const VIP: &'static str = crate::VIP;
    /// The clients' /24 ([`crate::spread::client_sources`] of it are c1's addresses).
    pub const CLIENTS: &'static str = "10.68.0";

    /// Builds the testbed (tag: at most 2 characters, as for [`Net::up`]), starts the router's
    /// BIRD and the three instances, and waits (bounded) until the router's FIB spreads the
    /// VIP over all three.
    pub fn up(tag: &str) -> Ecmp {
        Self::with(tag, EcmpOptions::default())
    }

    /// [`Ecmp::up`] with `o`'s backends, instances started and sync; waits until the router's
    /// FIB spreads the VIP over the instances started.
    pub fn with(tag: &str, o: EcmpOptions) -> Ecmp {
        assert!(o.backends >= POOL && (1..=INSTANCES).contains(&o.started));
        let net = Net::new(tag, o.backends, Layout::Ecmp);
        must(
            Command::new(repo().join("scripts/ecmp-testbed.sh"))
                .args(["up", &net.name])
                .arg(&net.dir)
                .arg(o.backends.to_string())
                .args(o.sync.then_some("sync")),
        );
        let router = Bird::start(&net, "rt", &read(&net.dir.join("bird-rt.conf")));
        let mut e = Ecmp {
            lbs: (0..INSTANCES).map(|_| None).collect(),
            birds: (0..INSTANCES).map(|_| None).collect(),
            router,
            net,
        };
        let t0 = Instant::now();
        for i in 1..=o.started {
            e.start(i);
        }
        let took = e.wait_nexthops(o.started, t0, Duration::from_secs(60), "start");
        println!(
            "ECMP testbed {} (sync {}): {} instances announced, the router's FIB spreads {} over \
             {:?} ({took:?} after the first start)",
            e.net.name,
            if o.sync { "on" } else { "off" },
            o.started,
            Self::VIP,
            e.nexthops()
        );
        e
    }

    /// `VIP:80:SOURCE` for each of the first `n` client addresses: [`crate::Streams`]' targets.
    pub fn targets(n: usize) -> Vec<String> {
        client_sources(Self::CLIENTS)
            .into_iter()
            .take(n)
            .map(|s| format!("{}:80:{s}", Self::VIP))
            .collect()
    }

    /// Instance `i`'s address on the router's segment (its BGP session's and the next hop's).
    pub fn addr(i: usize) -> String {
        format!("10.66.0.{}", i + 1)
    }

    fn node(i: usize) -> String {
        assert!((1..=INSTANCES).contains(&i), "instance {i}");
        format!("lb{i}")
    }

    /// Starts instance `i` (again): Fulcrum with its config, then (first time only: BIRD
    /// outlives a killed Fulcrum, as on a real host) its BIRD once Fulcrum has written the
    /// file BIRD includes. Does not wait for the announcement.
    pub fn start(&mut self, i: usize) {
        let node = Self::node(i);
        let config = read(&self.net.dir.join(format!("fulcrum-{node}.toml")));
        self.lbs[i - 1] = Some(Balancer::start_on(&self.net, &node, &config));
        let vips = self.net.dir.join(format!("{node}-vips.conf"));
        let t0 = Instant::now();
        while !vips.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{node} wrote no {}",
                vips.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.birds[i - 1].is_none() {
            let conf = read(&self.net.dir.join(format!("bird-{node}.conf")));
            self.birds[i - 1] = Some(Bird::start(&self.net, &node, &conf));
        }
    }

    /// Instance `i`'s Fulcrum (it must be running).
    pub fn lb(&self, i: usize) -> &Balancer {
        self.lbs[i - 1]
            .as_ref()
            .unwrap_or_else(|| panic!("instance {i} is not running"))
    }

    /// Instance `i`'s BIRD.
    pub fn bird(&self, i: usize) -> &Bird {
        self.birds[i - 1].as_ref().expect("instance BIRD started")
    }

    /// `kill -9` of instance `i`'s Fulcrum (its BIRD stays, as on a real host); when it was
    /// sent. The process is reaped and its DPDK runtime files removed.
    pub fn kill(&mut self, i: usize) -> Instant {
        let lb = self.lbs[i - 1].take().expect("running");
        lb.signal("KILL");
        let t0 = Instant::now();
        drop(lb);
        t0
    }

    /// A clean stop of instance `i`'s Fulcrum (SIGTERM: it withdraws first); its final report.
    pub fn stop(&mut self, i: usize) -> serde_json::Value {
        self.lbs[i - 1].take().expect("running").stop()
    }

    /// Instance `i`'s disable file present (drain) or absent.
    pub fn disable(&self, i: usize, on: bool) {
        let f = self.net.dir.join(format!("{}.disable", Self::node(i)));
        if on {
            std::fs::write(&f, "").expect("disable file");
        } else {
            std::fs::remove_file(&f).expect("remove disable file");
        }
    }

    /// Instance `i`'s link to the backend segment cut (`true`) or mended: its backends are
    /// unreachable from it alone.
    pub fn cut(&self, i: usize, cut: bool) {
        must(
            Command::new(repo().join("scripts/ecmp-testbed.sh"))
                .args([if cut { "cut" } else { "mend" }, &self.net.name])
                .arg(Self::node(i)),
        );
    }

    /// The next hops of the VIP's route in the router's FIB (instance addresses).
    pub fn nexthops(&self) -> Vec<String> {
        let out = must(Command::new("ip").args([
            "-n",
            &self.net.ns("rt"),
            "route",
            "show",
            &format!("{}/32", Self::VIP),
        ]));
        let text = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut hops: Vec<String> = words
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_owned())
            .collect();
        hops.sort();
        hops
    }

    /// Waits (bounded by `limit` from `t0`) until the router's FIB has `n` next hops for the
    /// VIP; the time from `t0`, to the look that saw it (looks 5 ms apart).
    pub fn wait_nexthops(&self, n: usize, t0: Instant, limit: Duration, what: &str) -> Duration {
        loop {
            let hops = self.nexthops();
            if hops.len() == n {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < limit,
                "{what}: the router still routes the VIP via {hops:?} after {limit:?}, not over \
                 {n} next hops; its sessions:\n{}\n{}",
                self.router.birdc(&["show", "protocols"]),
                self.router.birdc(&["show", "bfd", "sessions"])
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Backend `b` (its server runs: [`EcmpOptions::backends`]) joins every instance's pool:
    /// a running instance's config gets it by live reload, which must be applied, and its
    /// check must pass (bounded); a stopped one's config file gets it for its next start.
    pub fn add_backend(&self, b: usize) {
        assert!(
            b > POOL && b <= self.net.backends,
            "backend b{b} has no server"
        );
        let block = format!(
            "\n[[service.backend]]\nname = \"b{b}\"\naddress = \"{}\"\n",
            routed::backend(b)
        );
        for i in 1..=INSTANCES {
            let path = self.net.dir.join(format!("fulcrum-{}.toml", Self::node(i)));
            let config = read(&path) + &block;
            match &self.lbs[i - 1] {
                Some(lb) => {
                    lb.reload(&config);
                }
                None => std::fs::write(&path, config).expect("config"),
            }
        }
        let t0 = Instant::now();
        for i in self.running() {
            loop {
                let v = self.lb(i).ctl_json(&["backends"]);
                let members = v["services"][0]["members"].as_u64().unwrap_or(0);
                if members as usize == b {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "lb{i}: b{b} did not join the pool ({members} members):\n{v:#}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The instances running now.
    pub fn running(&self) -> Vec<usize> {
        (1..=INSTANCES)
            .filter(|i| self.lbs[i - 1].is_some())
            .collect()
    }

    /// Instance `i`'s sync figures now.
    pub fn sync(&self, i: usize) -> SyncFigures {
        SyncFigures::of(self.lb(i))
    }

    /// Waits (bounded by `limit`) until every running instance's exceptions have reached
    /// every other ([`crate::sync::wait_synced`]); each one's figures then.
    pub fn wait_synced(&self, limit: Duration) -> Vec<(usize, SyncFigures)> {
        let running = self.running();
        let lbs: Vec<&Balancer> = running.iter().map(|&i| self.lb(i)).collect();
        running
            .iter()
            .copied()
            .zip(crate::sync::wait_synced(&lbs, limit))
            .collect()
    }

    /// Instance `i`'s counters over its workers (`ctl stats` totals: `rx`, `tx`,
    /// `forwarded`, `flows_created`, drops...).
    pub fn totals(&self, i: usize) -> serde_json::Value {
        self.lb(i).ctl_json(&["stats"])["totals"].clone()
    }

    /// `totals(i)[key]` for every running instance (0 for one that is not running).
    pub fn per_instance(&self, key: &str) -> Vec<u64> {
        (1..=INSTANCES)
            .map(|i| match &self.lbs[i - 1] {
                Some(_) => self.totals(i)[key].as_u64().unwrap_or(0),
                None => 0,
            })
            .collect()
    }

    /// What `per_instance(key)` grew by since `before` (an instance gone since counts 0).
    pub fn since(&self, key: &str, before: &[u64]) -> Vec<u64> {
        self.per_instance(key)
            .iter()
            .zip(before)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect()
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

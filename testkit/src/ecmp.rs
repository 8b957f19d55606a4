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

use std::process::Command;
use std::time::{Duration, Instant};

use crate::net::Layout;
use crate::{Balancer, Bird, Net, must, repo};

/// Fulcrum instances in the testbed.
pub const INSTANCES: usize = 3;

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
        let net = Net::new(tag, 3, Layout::Ecmp);
        must(
            Command::new(repo().join("scripts/ecmp-testbed.sh"))
                .args(["up", &net.name])
                .arg(&net.dir),
        );
        let router = Bird::start(&net, "rt", &read(&net.dir.join("bird-rt.conf")));
        let mut e = Ecmp {
            lbs: (0..INSTANCES).map(|_| None).collect(),
            birds: (0..INSTANCES).map(|_| None).collect(),
            router,
            net,
        };
        let t0 = Instant::now();
        for i in 1..=INSTANCES {
            e.start(i);
        }
        let took = e.wait_nexthops(INSTANCES, t0, Duration::from_secs(60), "start");
        println!(
            "ECMP testbed {}: {INSTANCES} instances announced, the router's FIB spreads {} over {:?} \
             ({took:?} after the first start)",
            e.net.name,
            Self::VIP,
            e.nexthops()
        );
        e
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
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

//! A backend's tunnel endpoint: what takes the balancer's IPIP, IP6IP6, IPv4-in-IPv6 and GUE
//! packets in a backend's namespace and hands the inner packet to its kernel, which then
//! terminates the client's TCP connection on the VIP (on lo) and answers the client directly.
//!
//! Where the kernel has the real devices (`ip link add ... type ipip` works), they are used:
//! the fallback devices `tunl0` and `ip6tnl0` (mode any) and a `fou` GUE port. This project's
//! machines have none (see TESTBED.md), so there tests/tools/decap.py does the same in user
//! space: raw sockets for IP protocols 4 and 41, UDP sockets for GUE, the inner packet written
//! into a TUN device. It refuses, and counts, what a kernel would not deliver (an outer
//! destination that is not the backend's own address, a bad inner checksum, ...): a test
//! asserts [`DecapStats::refused_total`] is 0, so a malformed encapsulation fails it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{repo, signal};

/// The GUE port the test kit's endpoints listen on (Katran's, the contract's default).
pub const GUE_PORT: u16 = 6080;

/// What one endpoint took and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecapStats {
    /// Datagrams received per carrier ("ipip", "ip4ip6", "ip6ip6", "gue4", "gue6"; the
    /// kernel devices: "tunl0", "ip6tnl0").
    pub received: BTreeMap<String, u64>,
    /// Inner packets handed to the kernel.
    pub delivered: u64,
    /// Refusals per reason.
    pub refused: BTreeMap<String, u64>,
}

impl DecapStats {
    /// Datagrams received over `carrier` ("ipip", "gue6", ...); None from the kernel's
    /// devices, which do not tell carriers apart.
    pub fn carried(&self, carrier: &str) -> Option<u64> {
        let user_space = self.received.contains_key("ipip");
        user_space.then(|| self.received.get(carrier).copied().unwrap_or(0))
    }

    pub fn received_total(&self) -> u64 {
        self.received.values().sum()
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    fn parse(v: &serde_json::Value) -> DecapStats {
        let map = |v: &serde_json::Value| -> BTreeMap<String, u64> {
            v.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        DecapStats {
            received: map(&v["received"]),
            delivered: v["delivered"].as_u64().unwrap_or(0),
            refused: map(&v["refused"]),
        }
    }
}

/// One backend's tunnel endpoint, running until [`Decap::stop`] (or killed on drop).
pub struct Decap {
    ns: String,
    kind: Kind,
}

enum Kind {
    /// tests/tools/decap.py and where it writes its counters.
    User { child: Child, stats: PathBuf },
    /// The kernel's own devices, configured in the namespace.
    Kernel,
}

/// Whether the kernel of this machine has IPIP devices (tried in namespace `ns`).
pub fn kernel_has_tunnels(ns: &str) -> bool {
    let probe = |args: &[&str]| {
        Command::new("ip")
            .args(["-n", ns])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let has = probe(&["link", "add", "name", "ipipprobe", "type", "ipip"]);
    if has {
        probe(&["link", "del", "ipipprobe"]);
    }
    has
}

impl Decap {
    /// Starts the endpoint in namespace `ns` for outer destinations `locals` (the backend's
    /// own addresses) and GUE on [`GUE_PORT`]; the kernel's devices where it has them,
    /// tests/tools/decap.py otherwise (counters in `dir`). Waits until it takes packets.
    pub fn start(ns: &str, locals: &[&str], dir: &std::path::Path) -> Decap {
        if kernel_has_tunnels(ns) {
            return Self::kernel(ns);
        }
        let stats = dir.join(format!("{ns}.decap.json"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "python3"])
            .arg(repo().join("tests/tools/decap.py"))
            .args(["--gue-port", &GUE_PORT.to_string(), "--stats"])
            .arg(&stats);
        for l in locals {
            cmd.args(["--local", l]);
        }
        let log = std::fs::File::create(dir.join(format!("{ns}.decap.log"))).expect("log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("decap.py");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read decap.py");
        assert_eq!(
            line.trim(),
            "ready",
            "decap.py in {ns} did not start (see {ns}.decap.log)"
        );
        Decap {
            ns: ns.to_owned(),
            kind: Kind::User { child, stats },
        }
    }

    /// The kernel's fallback tunnel devices up, taking any remote (ip6tnl0 both IPv4 and IPv6
    /// inside); GUE on [`GUE_PORT`] (the kernel's GUE takes variant 1, direct IP, too).
    fn kernel(ns: &str) -> Decap {
        let ip = |args: &[&str]| {
            crate::must(Command::new("ip").args(["-n", ns]).args(args));
        };
        // Making (and removing) a device of each type loads its module, which gives every
        // namespace its fallback device: tunl0 and ip6tnl0 take packets from any remote.
        // ([`kernel_has_tunnels`] did so for ipip.)
        ip(&["link", "add", "name", "ip6probe", "type", "ip6tnl"]);
        ip(&["link", "del", "ip6probe"]);
        ip(&["link", "set", "tunl0", "up"]);
        ip(&["-6", "tunnel", "change", "ip6tnl0", "mode", "any"]);
        ip(&["link", "set", "ip6tnl0", "up"]);
        ip(&["fou", "add", "port", &GUE_PORT.to_string(), "gue"]);
        ip(&["-6", "fou", "add", "port", &GUE_PORT.to_string(), "gue"]);
        crate::must(Command::new("ip").args(["netns", "exec", ns]).args([
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.tunl0.rp_filter=0",
            "net.ipv4.conf.tunl0.accept_local=1",
        ]));
        Decap {
            ns: ns.to_owned(),
            kind: Kind::Kernel,
        }
    }

    /// Whether this endpoint is tests/tools/decap.py (not the kernel's devices).
    pub fn is_user_space(&self) -> bool {
        matches!(self.kind, Kind::User { .. })
    }

    /// Stops the endpoint; what it took and refused. Kernel devices: their receive counters
    /// (errors and drops as refusals).
    pub fn stop(mut self) -> DecapStats {
        match &mut self.kind {
            Kind::User { child, stats } => {
                signal(child.id(), "TERM");
                let deadline = Instant::now() + Duration::from_secs(10);
                while child.try_wait().expect("wait").is_none() {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!("decap.py in {} did not stop on SIGTERM", self.ns);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let text = std::fs::read_to_string(&*stats).expect("decap stats");
                DecapStats::parse(&serde_json::from_str(&text).expect("decap stats JSON"))
            }
            Kind::Kernel => {
                let mut s = DecapStats::default();
                for dev in ["tunl0", "ip6tnl0"] {
                    let out = crate::must(
                        Command::new("ip").args(["-n", &self.ns, "-s", "-j", "link", "show", dev]),
                    );
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
                    let rx = &v[0]["stats64"]["rx"];
                    let n = |k: &str| rx[k].as_u64().unwrap_or(0);
                    s.received.insert(dev.into(), n("packets"));
                    s.delivered += n("packets") - n("errors") - n("dropped");
                    s.refused.insert(format!("{dev}_errors"), n("errors"));
                    s.refused.insert(format!("{dev}_dropped"), n("dropped"));
                }
                s
            }
        }
    }
}

impl Drop for Decap {
    fn drop(&mut self) {
        if let Kind::User { child, .. } = &mut self.kind {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

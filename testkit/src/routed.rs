//! The routed layout ([`Net::routed`]): the balancer behind a router, backends in another
//! subnet, reached through tunnels, answering clients directly. No L2 is shared between
//! the balancer and anything but the router.
//!
//! ```text
//!  <name>-c1 (client)            <name>-rt (router: Linux forwarding)       <name>-lb
//!  eth0 10.80.1.101-104/24 ---- c1  10.80.1.1/24  fd80:1::1/64
//!       fd80:1::101-104/64      lb  10.80.2.1/24  fd80:2::1/64 ---------- lb0 (DPDK af_packet,
//!  default via the router       br0 10.80.3.1/24  fd80:3::1/64             no kernel address;
//!                                |  (bridge: the backends' subnet)          Fulcrum owns
//!                                |  VIPs 10.80.9.0/24, fd80:9::/64          10.80.2.2, fd80:2::2)
//!                                |  via Fulcrum
//!            +-------------------+------------------+
//!  <name>-b1..bN: eth0 10.80.3.1N/24, fd80:3::1N/64, default via the router;
//!  every VIP local (`ip route add local 10.80.9.0/24 dev lo`, same for fd80:9::/64);
//!  HTTP on :80 (tests/tools/backend.py), a tunnel endpoint ([`crate::Decap`]).
//! ```
//!
//! A client's packet to a VIP goes client -> router -> Fulcrum, which tunnels it to the
//! backend through the router (its configured route); the backend's endpoint hands the inner
//! packet to its kernel, which answers from the VIP straight to the client through the router.

use std::process::Command;

use crate::net::Layout;
use crate::{Decap, Net, fixture, must};

/// The routed layout's IPv4 VIPs are in this /24 (any address in it is local on every
/// backend), its IPv6 VIPs in [`ROUTED_VIPS_V6`].
pub const ROUTED_VIPS: &str = "10.80.9.0/24";
pub const ROUTED_VIPS_V6: &str = "fd80:9::/64";

impl Net {
    /// The routed layout with `backends` backends, each with its HTTP server and its tunnel
    /// endpoint running. `tag` tells the tests of one process apart (at most 2 characters).
    pub fn routed(tag: &str, backends: usize) -> Net {
        let mut net = Net::new(tag, backends, Layout::Routed);
        let rt = net.ns("rt");
        must(Command::new("ip").args(["netns", "add", &rt]));
        net.exec("rt", &["ip", "link", "set", "lo", "up"]);
        net.exec(
            "rt",
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                // Replies from a VIP come in from the backends while the VIP's route points
                // to the balancer: no reverse-path filter on this path.
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        );
        net.exec("rt", &["ip", "link", "add", "br0", "type", "bridge"]);
        net.exec("rt", &["ip", "link", "set", "br0", "up"]);
        net.addrs("rt", "br0", &["10.80.3.1/24", "fd80:3::1/64"]);

        // The client subnet.
        net.veth("c1", "eth0", "rt", "c1");
        net.addrs("rt", "c1", &["10.80.1.1/24", "fd80:1::1/64"]);
        for h in 101..=104 {
            net.addrs(
                "c1",
                "eth0",
                &[&format!("10.80.1.{h}/24"), &format!("fd80:1::{h}/64")],
            );
        }
        net.exec("c1", &["ip", "route", "add", "default", "via", "10.80.1.1"]);
        net.exec(
            "c1",
            &["ip", "-6", "route", "add", "default", "via", "fd80:1::1"],
        );
        net.exec(
            "c1",
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_local_port_range=20000 60999",
                "net.ipv4.tcp_tw_reuse=1",
            ],
        );

        // The balancer's subnet: the router and Fulcrum's port only.
        net.veth("lb", "lb0", "rt", "lb");
        net.exec("lb", &["sysctl", "-qw", "net.ipv6.conf.lb0.disable_ipv6=1"]);
        net.addrs("rt", "lb", &["10.80.2.1/24", "fd80:2::1/64"]);
        net.exec(
            "rt",
            &["ip", "route", "add", ROUTED_VIPS, "via", "10.80.2.2"],
        );
        net.exec(
            "rt",
            &[
                "ip",
                "-6",
                "route",
                "add",
                ROUTED_VIPS_V6,
                "via",
                "fd80:2::2",
            ],
        );

        // The backends' subnet behind the router.
        for i in 1..=backends {
            let b = format!("b{i}");
            net.veth(&b, "eth0", "rt", &b);
            net.exec("rt", &["ip", "link", "set", &b, "master", "br0"]);
            let (v4, v6) = Self::routed_backend(i);
            net.addrs(&b, "eth0", &[&format!("{v4}/24"), &format!("{v6}/64")]);
            net.exec(&b, &["ip", "route", "add", "default", "via", "10.80.3.1"]);
            net.exec(
                &b,
                &["ip", "-6", "route", "add", "default", "via", "fd80:3::1"],
            );
            net.exec(
                &b,
                &["ip", "route", "add", "local", ROUTED_VIPS, "dev", "lo"],
            );
            net.exec(
                &b,
                &[
                    "ip",
                    "-6",
                    "route",
                    "add",
                    "local",
                    ROUTED_VIPS_V6,
                    "dev",
                    "lo",
                ],
            );
            net.agent(i, "up");
            net.servers.push(None);
            net.start(i);
            let decap = Decap::start(&net.ns(&b), &[&v4, &v6], &net.dir);
            net.decaps.push(Some(decap));
        }
        net
    }

    /// Adds `addrs` (IPv4 or IPv6, with their prefix length) to `node`'s `ifname`; IPv6
    /// without duplicate address detection (usable at once).
    fn addrs(&self, node: &str, ifname: &str, addrs: &[&str]) {
        for a in addrs {
            if a.contains(':') {
                self.exec(
                    node,
                    &["ip", "-6", "addr", "add", a, "dev", ifname, "nodad"],
                );
            } else {
                self.exec(node, &["ip", "addr", "add", a, "dev", ifname]);
            }
        }
    }

    /// Routed layout: backend `i`'s own addresses (IPv4, IPv6).
    pub fn routed_backend(i: usize) -> (String, String) {
        (format!("10.80.3.{}", 10 + i), format!("fd80:3::{}", 10 + i))
    }

    /// Routed layout: the `[dpdk]`, `[global]` and `[[port]]` tables of its balancer
    /// (tests/configs/routed_lb.toml: the port on lb0 with 10.80.2.2/24 and fd80:2::2/64,
    /// default routes via the router). Services follow.
    pub fn routed_config(&self) -> String {
        fixture("routed_lb.toml")
            .set("eal_args", crate::eal::eal_args_line(&self.eal_prefix()))
            .set("dir", self.dir.display())
            .render()
    }

    /// Routed layout: stops backend `i`'s tunnel endpoint; what it took and refused.
    pub fn decap_stop(&mut self, i: usize) -> crate::DecapStats {
        self.decaps[i - 1].take().expect("the endpoint runs").stop()
    }

    /// Routed layout: stops every backend's tunnel endpoint that still runs; the stats of
    /// each, by backend name.
    pub fn decap_stop_all(&mut self) -> Vec<(String, crate::DecapStats)> {
        let running: Vec<usize> = (1..=self.decaps.len())
            .filter(|i| self.decaps[i - 1].is_some())
            .collect();
        running
            .into_iter()
            .map(|i| (format!("b{i}"), self.decap_stop(i)))
            .collect()
    }
}

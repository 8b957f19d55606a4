//! The routed layout ([`Net::routed`], `routes`'s) made ready for tunnels
//! ([`Net::tunnelled`]): IPv6 beside IPv4 on every subnet, four client addresses per family,
//! VIP ranges routed by the router to the balancer and local on every backend, and a tunnel
//! endpoint ([`Decap`]) on every backend.
//!
//! ```text
//!  c1: eth0 10.68.0.50, .101-104/24    rt: eth2 10.68.0.1/24  fd68::1/64
//!           fd68::101-104/64               eth0 10.66.0.1/24  fd66::1/64 -- lb: lb0 (Fulcrum
//!                                          eth1 10.67.0.1/24  fd67::1/64      10.66.0.2,
//!                                          VIPs 10.69.0.0/24, fd69::/64        fd66::2)
//!                                          via the balancer
//!  b1..bN: eth0 10.67.0.1N/24, fd67::1N/64; every VIP of 10.69.0.0/24 and fd69::/64 local
//!          (`ip route add local ... dev lo`); HTTP :80; a tunnel endpoint for both addresses
//! ```
//!
//! A client's packet to a VIP goes client -> router -> Fulcrum, which tunnels it to the
//! backend through the router (its configured route); the backend's endpoint hands the inner
//! packet to its kernel, which answers from the VIP straight to the client via the router.

use crate::net::routed::{BACKENDS, CLIENTS, GATEWAY, backend};
use crate::{Decap, DecapStats, LB_ADDR, Net};

/// The IPv4 VIPs of the tunnelled layout: any address in it is local on every backend.
pub const TUNNEL_VIPS: &str = "10.69.0.0/24";
/// The IPv6 VIPs of the tunnelled layout.
pub const TUNNEL_VIPS_V6: &str = "fd69::/64";
/// The balancer's IPv6 address (the router is fd66::1).
pub const LB_ADDR_V6: &str = "fd66::2";

/// Backend `i`'s IPv6 address (1-based); [`backend`] is its IPv4 one.
pub fn backend_v6(i: usize) -> String {
    format!("fd67::{}", 10 + i)
}

impl Net {
    /// The routed layout with `backends` backends, IPv6 and the VIP ranges added, and each
    /// backend's tunnel endpoint running. `tag`: as for [`Net::up`].
    pub fn tunnelled(tag: &str, backends: usize) -> Net {
        let mut net = Net::routed(tag, backends);
        net.exec(
            "rt",
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.forwarding=1",
                // Replies from a VIP come in from the backends while the VIP's route points
                // to the balancer: no reverse-path filter on this path.
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        );
        for (ifname, addr) in [
            ("eth0", "fd66::1"),
            ("eth1", "fd67::1"),
            ("eth2", "fd68::1"),
        ] {
            net.addrs("rt", ifname, &[&format!("{addr}/64")]);
        }
        net.exec("rt", &["ip", "route", "add", TUNNEL_VIPS, "via", LB_ADDR]);
        net.exec(
            "rt",
            &[
                "ip",
                "-6",
                "route",
                "add",
                TUNNEL_VIPS_V6,
                "via",
                LB_ADDR_V6,
            ],
        );
        for h in 101..=104 {
            let (a4, a6) = (format!("10.68.0.{h}/24"), format!("fd68::{h}/64"));
            net.addrs("c1", "eth0", &[&a4, &a6]);
        }
        net.exec(
            "c1",
            &["ip", "-6", "route", "add", "default", "via", "fd68::1"],
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
        for i in 1..=backends {
            let b = format!("b{i}");
            net.addrs(&b, "eth0", &[&format!("{}/64", backend_v6(i))]);
            net.exec(
                &b,
                &["ip", "-6", "route", "add", "default", "via", "fd67::1"],
            );
            net.exec(
                &b,
                &["ip", "route", "add", "local", TUNNEL_VIPS, "dev", "lo"],
            );
            net.exec(
                &b,
                &[
                    "ip",
                    "-6",
                    "route",
                    "add",
                    "local",
                    TUNNEL_VIPS_V6,
                    "dev",
                    "lo",
                ],
            );
            let decap = Decap::start(&net.ns(&b), &[&backend(i), &backend_v6(i)], &net.dir);
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

    /// Tunnelled layout: the balancer's `[dpdk]`, `[global]` and `[[port]]` (as
    /// [`Net::routed_balancer_config`], with fd66::2/64 too, and routes to the backends' and
    /// clients' subnets of both families through the router). Services follow.
    pub fn tunnelled_config(&self) -> String {
        let base = self.balancer_config(&[&format!("{LB_ADDR}/24"), &format!("{LB_ADDR_V6}/64")]);
        let routes: Vec<String> = [
            (BACKENDS, GATEWAY),
            (CLIENTS, GATEWAY),
            ("fd67::/64", "fd66::1"),
            ("fd68::/64", "fd66::1"),
        ]
        .iter()
        .map(|(prefix, via)| format!("{{ prefix = \"{prefix}\", via = \"{via}\" }}"))
        .collect();
        format!("{}\nroutes = [{}]\n", base.trim_end(), routes.join(", "))
    }

    /// Tunnelled layout: stops backend `i`'s tunnel endpoint; what it took and refused.
    pub fn decap_stop(&mut self, i: usize) -> DecapStats {
        self.decaps[i - 1].take().expect("the endpoint runs").stop()
    }

    /// Tunnelled layout: starts backend `i`'s tunnel endpoint again after [`Net::decap_stop`]
    /// (its counters start from zero).
    pub fn decap_start(&mut self, i: usize) {
        assert!(self.decaps[i - 1].is_none(), "b{i}'s endpoint runs already");
        let ns = self.ns(&format!("b{i}"));
        let decap = Decap::start(&ns, &[&backend(i), &backend_v6(i)], &self.dir);
        self.decaps[i - 1] = Some(decap);
    }

    /// Tunnelled layout: stops every endpoint that still runs, prints what each took, asserts
    /// that none refused anything (a malformed encapsulation fails the test), and returns
    /// their sum.
    pub fn decap_stop_all_clean(&mut self) -> DecapStats {
        let mut sum = DecapStats::default();
        for (b, s) in self.decap_stop_all() {
            println!(
                "{b} endpoint: received {:?}, delivered {}, refused {:?}",
                s.received, s.delivered, s.refused
            );
            assert_eq!(
                s.refused_total(),
                0,
                "{b}'s endpoint refused packets: {s:?}"
            );
            for (k, n) in s.received {
                *sum.received.entry(k).or_default() += n;
            }
            sum.delivered += s.delivered;
        }
        sum
    }

    /// Tunnelled layout: stops every backend's tunnel endpoint that still runs; the stats of
    /// each, by backend name.
    pub fn decap_stop_all(&mut self) -> Vec<(String, DecapStats)> {
        let running: Vec<usize> = (1..=self.decaps.len())
            .filter(|i| self.decaps[i - 1].is_some())
            .collect();
        running
            .into_iter()
            .map(|i| (format!("b{i}"), self.decap_stop(i)))
            .collect()
    }
}

/// One `[[service]]` of the tunnelled layout with an HTTP check (to each backend's own
/// address, through the route), `on_empty = "reset"`, and `backends` as (name, address,
/// weight).
pub fn service_with(
    name: &str,
    vip: &str,
    forwarding: &str,
    backends: &[(&str, &str, u32)],
) -> String {
    let mut s = format!(
        r#"
[[service]]
name = "{name}"
vip = "{vip}"
port = 80
forwarding = "{forwarding}"
on_empty = "reset"

[service.health]
type = "http"
path = "/"
interval_ms = 500
timeout_ms = 450
rise = 2
fall = 2
"#
    );
    for (b, addr, weight) in backends {
        s += &format!(
            "\n[[service.backend]]\nname = \"{b}\"\naddress = \"{addr}\"\nweight = {weight}\n"
        );
    }
    s
}

/// Backends b1..bN of the tunnelled layout with `weights`, IPv4 (`v6` false) or IPv6
/// addresses, as (name, address, weight).
pub fn tunnel_backends(weights: &[u32], v6: bool) -> Vec<(&'static str, String, u32)> {
    const NAMES: [&str; 4] = ["b1", "b2", "b3", "b4"];
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let (a4, a6) = (backend(i + 1), backend_v6(i + 1));
            (NAMES[i], if v6 { a6 } else { a4 }, *w)
        })
        .collect()
}

/// [`service_with`] over b1..bN weighted `weights` ([`tunnel_backends`]).
pub fn tunnel_service(name: &str, vip: &str, fwd: &str, weights: &[u32], v6: bool) -> String {
    let b = tunnel_backends(weights, v6);
    let refs: Vec<(&str, &str, u32)> = b.iter().map(|(n, a, w)| (*n, a.as_str(), *w)).collect();
    service_with(name, vip, fwd, &refs)
}

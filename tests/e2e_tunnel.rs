//! Tunnelled backends end to end, in testkit's tunnelled layout (`Net::tunnelled`: the routed
//! layout with IPv6, VIP ranges and tunnel endpoints): clients in one subnet, a router,
//! Fulcrum alone on its own subnet (DPDK net_af_packet), backends in a third subnet behind
//! the router. Fulcrum reaches them through its configured routes and
//! `forwarding = "ipip"` or `"gue"`; each backend's tunnel endpoint (testkit's `Decap`: the
//! kernel's devices, or tests/tools/decap.py where the kernel has none, as here) hands the
//! inner packet to its kernel, which answers from the VIP straight to the client through
//! the router. Real kernel TCP on both ends:
//!
//! - thousands of connections, IPIP and GUE, each answered by the backend `fulcrum which`
//!   names, shares following the weights; an empty pool answers a SYN with a RST at once;
//! - a long stream stays on its backend across a live reload; a stopped backend gets no new
//!   flows;
//! - path MTU: full-size segments into the tunnel are answered with ICMP fragmentation-needed
//!   / packet-too-big, the client's kernel lowers its path MTU, a large upload and a large
//!   download complete;
//! - the check through the tunnel (`through_tunnel`, over IPIP and GUE): a backend whose
//!   tunnel endpoint stops while its own address still answers is taken out within the
//!   check's fall time, gets no new flows, and comes back with its endpoint.
//!
//! Each case runs for both families ([`Family`]): IPv4 clients to an IPv4 VIP (IPv4 in IPv4,
//! GUE over IPv4) and IPv6 clients to an IPv6 VIP (IPv6 in IPv6, GUE over IPv6), one body
//! each; the IPv6 spread test adds an IPv4 VIP to IPv6 backends (IPv4 in IPv6).
//!
//! Every tunnel endpoint refuses (and counts) what a kernel would not take: each test asserts
//! none refused anything, so a malformed encapsulation fails it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::outcome::*;
use testkit::spread::{self, client_args, client_sources};
use testkit::{Balancer, DecapStats, Net, Stream, service_with, tunnel_backends, tunnel_service};

const CONNECTIONS: usize = 1000;

/// One address family of the layout, for the cases run in both: its clients, its VIPs and
/// its backends' addresses.
#[derive(Clone, Copy)]
struct Family {
    /// IPv6 clients, VIPs and backend addresses (`backend_v6`), else IPv4 (`routed::backend`).
    v6: bool,
    /// The client subnet, as [`client_sources`] takes it.
    clients: &'static str,
    /// Three VIPs of the family (a service each; the third's pool is empty).
    vips: [&'static str; 3],
}

/// IPv4 clients to IPv4 VIPs, IPv4 backends: IPv4 in IPv4, GUE over IPv4.
const V4: Family = Family {
    v6: false,
    clients: "10.68.0",
    vips: ["10.69.0.100", "10.69.0.101", "10.69.0.99"],
};

/// IPv6 clients to IPv6 VIPs, IPv6 backends: IPv6 in IPv6, GUE over IPv6.
const V6: Family = Family {
    v6: true,
    clients: "fd68",
    vips: ["fd69::100", "fd69::101", "fd69::99"],
};

impl Family {
    fn name(self) -> &'static str {
        if self.v6 { "IPv6" } else { "IPv4" }
    }

    /// The endpoints' name of the carrier `forwarding` uses to this family's backends, and
    /// of the one it does not use.
    fn carriers(self, forwarding: &str) -> [&'static str; 2] {
        match (forwarding, self.v6) {
            ("ipip", false) => ["ipip", "ip6ip6"],
            ("ipip", true) => ["ip6ip6", "ipip"],
            (_, false) => ["gue4", "gue6"],
            (_, true) => ["gue6", "gue4"],
        }
    }
}

/// `addr:port` as `which` takes it (`[addr]:port` for IPv6).
fn endpoint(addr: &str, port: u16) -> String {
    SocketAddr::new(addr.parse().expect("address"), port).to_string()
}

/// 50 SYNs from `clients` to `vip`, whose pool is empty: each answered by a RST within 1 s
/// (before the client's kernel would send its SYN again). Prints the slowest.
fn empty_pool_refuses(net: &Net, clients: &str, vip: &str) {
    let out = net.client(&client_args(vip, &client_sources(clients), "50"));
    check_refused(&records(&out), 1000.0).unwrap_or_else(|e| panic!("empty pool {vip}: {e}"));
    println!(
        "empty pool {vip}: 50 SYNs refused, slowest after {} ms",
        out["ms_max"]
    );
}

fn weights_of(w: &[u32]) -> Vec<(&'static str, f64)> {
    ["b1", "b2", "b3", "b4"]
        .into_iter()
        .zip(w.iter().map(|&w| f64::from(w)))
        .collect()
}

/// The endpoints took packets over each of `used` and none over `unused` (where they tell
/// carriers apart: the user-space endpoint does, the kernel's devices do not).
fn carriers(s: &DecapStats, used: &[&str], unused: &[&str]) {
    for k in used {
        assert!(
            s.carried(k).is_none_or(|n| n > 0),
            "nothing over {k}: {s:?}"
        );
    }
    for k in unused {
        assert!(
            s.carried(k).is_none_or(|n| n == 0),
            "packets over {k}: {s:?}"
        );
    }
}

/// The balancer's final report: every packet accounted for, no reset.
fn totals_clean(v: &serde_json::Value) {
    let t = &v["totals"];
    assert_eq!(t["balanced"].as_bool(), Some(true), "{t}");
    assert_eq!(t["resets"].as_u64(), Some(0), "{t}");
    println!("totals: {t}");
}

/// Spread by weight for `fam`: 1000 connections through IPIP and 1000 through GUE, each
/// answered by the backend `which` names, and an empty pool (its one backend disabled) whose
/// SYNs are refused at once. With `ipv4_in_ipv6`, an IPv4 VIP to IPv6 backends too.
fn spread_by_weight(tag: &str, fam: Family, ipv4_in_ipv6: bool) {
    let mut net = Net::tunnelled(tag, 3);
    let [ipip_vip, gue_vip, empty_vip] = fam.vips;
    let mut cfg = format!(
        "{}{}{}",
        net.tunnelled_config(),
        tunnel_service("web-ipip", ipip_vip, "ipip", &[100, 100, 200], fam.v6),
        tunnel_service("web-gue", gue_vip, "gue", &[1, 1, 1], fam.v6),
    );
    let disabled = format!(
        "fall = 2\n\n[[service.backend]]\nname = \"b1\"\naddress = \"{}\"\nadmin = \"disabled\"\n",
        tunnel_backends(&[1], fam.v6)[0].1
    );
    cfg += &service_with("web-empty", empty_vip, "ipip", &[]).replace("fall = 2\n", &disabled);
    if ipv4_in_ipv6 {
        cfg += &tunnel_service("web-4in6", "10.69.0.102", "ipip", &[1, 1, 1], true);
    }
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(if ipv4_in_ipv6 { 9 } else { 6 });
    let (ipip, gue) = (fam.carriers("ipip"), fam.carriers("gue"));
    let mut flows = 0;
    for (carrier, vip, w) in [
        (ipip[0], ipip_vip, [100, 100, 200]),
        (gue[0], gue_vip, [1, 1, 1]),
    ] {
        let w = weights_of(&w);
        flows += spread::place(&net, &lb, carrier, fam.clients, vip, CONNECTIONS, &w);
    }
    if ipv4_in_ipv6 {
        let w = weights_of(&[1, 1, 1]);
        flows += spread::place(&net, &lb, "ip4ip6", V4.clients, "10.69.0.102", 600, &w);
    }
    empty_pool_refuses(&net, fam.clients, empty_vip);

    let v = lb.stop();
    let t = &v["totals"];
    assert_eq!(t["balanced"].as_bool(), Some(true), "{t}");
    assert!(t["resets"].as_u64().unwrap() >= 50, "{t}");
    spread::check_flows_created(t, flows, 1..=1);
    println!("totals: {t}");
    let s = net.decap_stop_all_clean();
    let (mut used, mut unused) = (vec![ipip[0], gue[0]], vec![ipip[1], gue[1]]);
    if ipv4_in_ipv6 { &mut used } else { &mut unused }.push("ip4ip6");
    carriers(&s, &used, &unused);
}

/// IPIP (IPv4 in IPv4) and GUE over IPv4, and an empty pool.
#[test]
fn e2e_tunnel_ipip_and_gue_spread_by_weight() {
    spread_by_weight("ti", V4, false);
}

/// IPv6 clients to IPv6 VIPs through IPv6 in IPv6 and GUE over IPv6, and an empty IPv6
/// pool; an IPv4 VIP to IPv6 backends through IPv4 in IPv6.
#[test]
fn e2e_tunnel_ipv6_ip6ip6_gue6_and_ipv4_in_ipv6() {
    spread_by_weight("t6", V6, true);
}

fn wait_for(what: &str, lb: &Balancer, f: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f(&lb.log()) {
        assert!(Instant::now() < deadline, "{what}:\n{}", lb.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `nth` log line "backend health" of `service`'s `backend` going `to`.
fn health_line(log: &str, service: &str, backend: &str, to: &str, nth: usize) -> Option<String> {
    log.lines()
        .filter(|l| {
            l.contains("backend health")
                && l.contains(&format!("{service}/{backend} "))
                && l.contains(&format!("to=\"{to}\""))
        })
        .nth(nth - 1)
        .map(str::to_owned)
}

/// `count` new connections from `fam`'s clients to `vip`, every one answered; the count per
/// backend, printed after `what`.
fn connections(net: &Net, fam: Family, vip: &str, count: &str, what: &str) -> serde_json::Value {
    let srcs = client_sources(fam.clients);
    let out = net.client(&client_args(vip, &srcs, count));
    assert_eq!(out["errors"], serde_json::json!({}), "{what}: {out}");
    let per = out["per_backend"].clone();
    println!("{what}: {count} connections to {vip}, per backend {per}");
    per
}

/// A long stream keeps its backend across a live reload that changes every weight; a
/// backend whose server stops is taken out by its check (through the route) and gets no
/// new flow while the others take them all.
fn stream_survives_reload_and_stopped_backend_gets_no_flows(tag: &str, fam: Family) {
    let mut net = Net::tunnelled(tag, 3);
    let header = net.tunnelled_config();
    let vip = fam.vips[0];
    let first = format!(
        "{header}{}",
        tunnel_service("web", vip, "ipip", &[100, 100, 100], fam.v6)
    );
    let lb = Balancer::start(&net, &first);
    lb.wait_up(3);

    let src = client_sources(fam.clients).swap_remove(0);
    let sport = 61501;
    let which = lb.ctl_json(&["which", &endpoint(&src, sport), &endpoint(vip, 80)]);
    let streamed_to = which["backend"].as_str().expect("a backend").to_owned();
    let stream = Stream::start(&net, vip, &src, sport, 12);
    std::thread::sleep(Duration::from_secs(2));

    let second = format!(
        "{header}{}",
        tunnel_service("web", vip, "ipip", &[300, 100, 50], fam.v6)
    );
    println!("reload: {}", lb.reload(&second));

    // Stop a backend other than the stream's; its check fails, it goes down.
    let stopped = if streamed_to == "b3" { 2 } else { 3 };
    let t0 = Instant::now();
    net.stop(stopped);
    let b = format!("b{stopped}");
    wait_for("the stopped backend goes down", &lb, |log| {
        health_line(log, "web", &b, "down", 1).is_some()
    });
    println!(
        "{b} down {} ms after its server stopped",
        t0.elapsed().as_millis()
    );
    let what = format!("{}, {b} stopped", fam.name());
    let per = connections(&net, fam, vip, "300", &what);
    assert!(
        per.get(&b).is_none(),
        "{b} is down and got new flows: {per}"
    );

    let got = stream.finish();
    assert_eq!(got, streamed_to, "the stream stayed on its backend");
    println!(
        "{}: the 12 s stream from {} stayed on {got} across the reload",
        fam.name(),
        endpoint(&src, sport)
    );
    let v = lb.stop();
    totals_clean(&v);
    let [used, unused] = fam.carriers("ipip");
    carriers(&net.decap_stop_all_clean(), &[used], &[unused]);
}

#[test]
fn e2e_tunnel_stream_survives_reload_and_stopped_backend_gets_no_flows() {
    stream_survives_reload_and_stopped_backend_gets_no_flows("tr", V4);
}

/// The same with IPv6 clients to an IPv6 VIP through IPv6 in IPv6.
#[test]
fn e2e_tunnel_ipv6_stream_survives_reload_and_stopped_backend_gets_no_flows() {
    stream_survives_reload_and_stopped_backend_gets_no_flows("r6", V6);
}

/// Path MTU through the tunnel: the port's MTU is 1500, so a client's full-size segment
/// (1500 bytes) does not fit once encapsulated (+20 IPv4, +40 IPv6). Fulcrum answers it with
/// ICMP fragmentation-needed / ICMPv6 packet-too-big (counted in `mtu_exceeded`), the
/// client's kernel lowers its path MTU to the VIP, and a large upload completes; a large
/// download (the backend answers directly, no tunnel on that way) too. IPv4 (IPIP) and IPv6
/// (IP6IP6), one after the other through one balancer.
#[test]
fn e2e_tunnel_path_mtu_large_upload_and_download() {
    let mut net = Net::tunnelled("tm", 1);
    let header = net
        .tunnelled_config()
        .replace("name = \"lan\"\n", "name = \"lan\"\nmtu = 1500\n");
    let cfg = format!(
        "{header}{}{}",
        tunnel_service("up4", V4.vips[0], "ipip", &[1], false),
        tunnel_service("up6", V6.vips[0], "ipip", &[1], true),
    );
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(2);
    const SIZE: usize = 8 << 20;
    let blob = net.dir.join("upload.bin");
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&blob, &data).expect("upload file");
    let digest = {
        let out = testkit::must(std::process::Command::new("sha256sum").arg(&blob));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("digest")
            .to_owned()
    };
    let answered = || {
        let s = lb.ctl_json(&["stats"]);
        s["totals"]["mtu_exceeded"].as_u64().expect("mtu_exceeded")
    };
    // curl in the client, bounded; its output and how long it took.
    let curl = |args: &[&str]| {
        let t0 = Instant::now();
        let out = net.exec("c1", &[&["curl", "-sS", "-m", "60"], args].concat());
        (out, t0.elapsed().as_secs_f64())
    };
    for (fam, want_mtu) in [(V4, 1480), (V6, 1460)] {
        let vip = fam.vips[0];
        let host = endpoint(vip, 80);
        assert_eq!(net.route_mtu("c1", vip), None, "no path MTU to {vip} yet");
        let before = answered();
        let (up, up_s) = curl(&[
            "-T",
            blob.to_str().expect("path"),
            &format!("http://{host}/upload"),
        ]);
        assert_eq!(
            up.trim(),
            format!("backend=b1 bytes={SIZE} sha256={digest}"),
            "upload to {vip}"
        );
        let too_big = answered() - before;
        let (down, down_s) = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{http_code}",
            &format!("http://{host}/bytes?n={SIZE}"),
        ]);
        assert_eq!(down.trim(), format!("{SIZE} 200"), "download from {vip}");
        let learnt = net.route_mtu("c1", vip);
        println!(
            "{} {vip}: {too_big} too-big answers from Fulcrum, client's path MTU {learnt:?}; \
             {} MiB up in {up_s:.2} s, down in {down_s:.2} s",
            fam.name(),
            SIZE >> 20,
        );
        assert!(too_big >= 1, "Fulcrum answered {vip}'s full-size segments");
        assert_eq!(
            learnt,
            Some(want_mtu),
            "the client learnt its path MTU to {vip}"
        );
    }
    let v = lb.stop();
    let t = &v["totals"];
    assert_eq!(t["balanced"].as_bool(), Some(true), "{t}");
    println!("totals: {t}");
    net.decap_stop_all_clean();
}

/// `[service.health] through_tunnel = true` on two services, IPIP and GUE: besides the HTTP
/// check to each backend's own address, the same check to the VIP through its tunnel. b3's
/// tunnel endpoint stops (its own address still answers, so the plain check would keep it):
/// b3 goes down in both within the check's fall time (fall 2 x interval 500 ms, timeout
/// 450 ms), named as the tunnel's failure, gets no new flows while b1 and b2 serve every
/// connection; its endpoint returns and b3 comes back within its rise time and takes flows
/// again.
fn backend_without_its_endpoint_is_taken_out(tag: &str, fam: Family) {
    let mut net = Net::tunnelled(tag, 3);
    let services = [
        ("web", "ipip", fam.vips[0]),
        ("web-gue", "gue", fam.vips[1]),
    ];
    let mut cfg = net.tunnelled_config();
    for (name, fwd, vip) in services {
        cfg += &tunnel_service(name, vip, fwd, &[1, 1, 1], fam.v6)
            .replace("fall = 2\n", "fall = 2\nthrough_tunnel = true\n");
    }
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(6);
    let all_seen = |log: &str, to: &str, nth: usize| {
        services
            .iter()
            .all(|(s, ..)| health_line(log, s, "b3", to, nth).is_some())
    };

    let t0 = Instant::now();
    let b3 = net.decap_stop(3);
    println!("b3's endpoint stopped after {} packets", b3.delivered);
    assert!(
        b3.delivered > 0,
        "the checks reached b3 through its tunnel: {b3:?}"
    );
    assert_eq!(b3.refused_total(), 0, "{b3:?}");
    for (_, fwd, _) in services {
        let [used, unused] = fam.carriers(fwd);
        carriers(&b3, &[used], &[unused]);
    }
    wait_for(
        "b3 goes down in both services once its tunnel endpoint is gone",
        &lb,
        |log| all_seen(log, "down", 1),
    );
    let down_ms = t0.elapsed().as_millis();
    let log = lb.log();
    for (name, ..) in services {
        let line = health_line(&log, name, "b3", "down", 1).expect("seen");
        assert!(
            line.contains("reason=\"timeout through the tunnel\""),
            "down by the check through the tunnel: {line}"
        );
        println!("{name}: {line}");
    }
    // fall 2: two rounds, each ending at its 450 ms timeout, 500 ms apart, plus the slow
    // path's turn and the log's poll.
    println!("b3 down in both {down_ms} ms after its endpoint stopped");
    assert!(down_ms < 2500, "b3 went down after {down_ms} ms");

    for (name, fwd, vip) in services {
        let what = format!("{} {fwd}, b3's endpoint stopped", fam.name());
        let per = connections(&net, fam, vip, "200", &what);
        assert!(per.get("b3").is_none(), "{name}: b3 got new flows: {per}");
        assert!(
            per.get("b1").is_some() && per.get("b2").is_some(),
            "{name}: b1 and b2 serve: {per}"
        );
    }

    let t1 = Instant::now();
    net.decap_start(3);
    wait_for(
        "b3 comes back in both services with its endpoint",
        &lb,
        |log| all_seen(log, "up", 2),
    );
    let up_ms = t1.elapsed().as_millis();
    println!("b3 up in both {up_ms} ms after its endpoint returned (rise 2)");
    assert!(up_ms < 2500, "b3 came back after {up_ms} ms");
    for (name, fwd, vip) in services {
        let what = format!("{} {fwd}, b3 back", fam.name());
        let per = connections(&net, fam, vip, "200", &what);
        assert!(
            per.get("b3")
                .and_then(|n| n.as_u64())
                .is_some_and(|n| n > 0),
            "{name}: b3 takes flows again: {per}"
        );
    }

    let v = lb.stop();
    totals_clean(&v);
    let s = net.decap_stop_all_clean();
    for (_, fwd, _) in services {
        let [used, unused] = fam.carriers(fwd);
        carriers(&s, &[used], &[unused]);
    }
}

#[test]
fn e2e_tunnel_backend_without_its_endpoint_is_taken_out() {
    backend_without_its_endpoint_is_taken_out("tt", V4);
}

/// The same with IPv6 backends: the checks through IPv6 in IPv6 and GUE over IPv6.
#[test]
fn e2e_tunnel_ipv6_backend_without_its_endpoint_is_taken_out() {
    backend_without_its_endpoint_is_taken_out("u6", V6);
}

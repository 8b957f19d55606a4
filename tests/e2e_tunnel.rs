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
//! - IPv6 clients to an IPv6 VIP (IPv6 in IPv6, GUE over IPv6), an IPv4 VIP to IPv6 backends
//!   (IPv4 in IPv6);
//! - a long stream stays on its backend across a live reload; a stopped backend gets no new
//!   flows;
//! - path MTU: full-size segments into the tunnel are answered with ICMP fragmentation-needed
//!   / packet-too-big, the client's kernel lowers its path MTU, a large upload and a large
//!   download complete.
//! - the check through the tunnel (`through_tunnel`): a backend whose tunnel endpoint stops
//!   while its own address still answers is taken out within the check's fall time, gets no
//!   new flows, and comes back with its endpoint.
//!
//! Every tunnel endpoint refuses (and counts) what a kernel would not take: each test asserts
//! none refused anything, so a malformed encapsulation fails it.

use std::time::{Duration, Instant};

use testkit::outcome::*;
use testkit::spread::{self, client_args, client_sources};
use testkit::{Balancer, DecapStats, Net, Stream, backend_v6, routed};

const CONNECTIONS: usize = 1000;

/// One `[[service]]` with an HTTP check (to each backend's own address, through the route)
/// and `backends` as (name, address, weight).
fn service(name: &str, vip: &str, forwarding: &str, backends: &[(&str, &str, u32)]) -> String {
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

/// Backends b1..bN of the routed layout with `weights`, IPv4 (`v6` false) or IPv6 addresses.
fn backends(weights: &[u32], v6: bool) -> Vec<(&'static str, String, u32)> {
    const NAMES: [&str; 4] = ["b1", "b2", "b3", "b4"];
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let (a4, a6) = (routed::backend(i + 1), backend_v6(i + 1));
            (NAMES[i], if v6 { a6 } else { a4 }, *w)
        })
        .collect()
}

fn svc(name: &str, vip: &str, fwd: &str, weights: &[u32], v6: bool) -> String {
    let b = backends(weights, v6);
    let refs: Vec<(&str, &str, u32)> = b.iter().map(|(n, a, w)| (*n, a.as_str(), *w)).collect();
    service(name, vip, fwd, &refs)
}

fn weights_of(w: &[u32]) -> Vec<(&'static str, f64)> {
    ["b1", "b2", "b3", "b4"]
        .into_iter()
        .zip(w.iter().map(|&w| f64::from(w)))
        .collect()
}

/// Stops every tunnel endpoint; each must have refused nothing. The stats summed, printed.
fn endpoints_clean(net: &mut Net) -> DecapStats {
    let mut sum = DecapStats::default();
    for (b, s) in net.decap_stop_all() {
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

/// IPIP (IPv4 in IPv4) and GUE over IPv4, 1000 connections each, and an empty pool.
#[test]
fn e2e_tunnel_ipip_and_gue_spread_by_weight() {
    let mut net = Net::tunnelled("ti", 3);
    let cfg = format!(
        "{}{}{}{}",
        net.tunnelled_config(),
        svc("web-ipip", "10.69.0.100", "ipip", &[100, 100, 200], false),
        svc("web-gue", "10.69.0.101", "gue", &[1, 1, 1], false),
        // One backend, disabled: an empty pool.
        service("web-empty", "10.69.0.99", "ipip", &[]).replace(
            "fall = 2\n",
            "fall = 2\n\n[[service.backend]]\nname = \"b1\"\naddress = \"10.67.0.11\"\nadmin = \"disabled\"\n"
        ),
    );
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(6);
    let ipip = spread::place(
        &net,
        &lb,
        "IPIP",
        "10.68.0",
        "10.69.0.100",
        CONNECTIONS,
        &weights_of(&[100, 100, 200]),
    );
    let gue = spread::place(
        &net,
        &lb,
        "GUE",
        "10.68.0",
        "10.69.0.101",
        CONNECTIONS,
        &weights_of(&[1, 1, 1]),
    );

    let srcs = client_sources("10.68.0");
    let out = net.client(&client_args("10.69.0.99", &srcs, "50"));
    check_refused(&records(&out), 1000.0).unwrap_or_else(|e| panic!("empty pool: {e}"));
    println!(
        "empty pool: 50 SYNs refused, slowest after {} ms",
        out["ms_max"]
    );

    let v = lb.stop();
    let t = &v["totals"];
    assert_eq!(t["balanced"].as_bool(), Some(true), "{t}");
    assert!(t["resets"].as_u64().unwrap() >= 50, "{t}");
    assert_eq!(
        t["flows_created"].as_u64(),
        Some((ipip + gue) as u64),
        "{t}"
    );
    println!("totals: {t}");
    let s = endpoints_clean(&mut net);
    assert!(s.received["ipip"] > 0 && s.received["gue4"] > 0, "{s:?}");
    assert_eq!(
        s.received["ip6ip6"] + s.received["ip4ip6"] + s.received["gue6"],
        0
    );
}

/// IPv6 clients to IPv6 VIPs through IPv6 in IPv6 and GUE over IPv6, and an empty IPv6
/// pool; an IPv4 VIP to IPv6 backends through IPv4 in IPv6.
#[test]
fn e2e_tunnel_ipv6_ip6ip6_gue6_and_ipv4_in_ipv6() {
    let mut net = Net::tunnelled("t6", 3);
    let cfg = format!(
        "{}{}{}{}{}",
        net.tunnelled_config(),
        svc("web-ip6ip6", "fd69::100", "ipip", &[100, 100, 200], true),
        svc("web-gue6", "fd69::101", "gue", &[1, 1, 1], true),
        svc("web-4in6", "10.69.0.102", "ipip", &[1, 1, 1], true),
        // One backend, disabled: an empty IPv6 pool.
        service("web6-empty", "fd69::99", "ipip", &[]).replace(
            "fall = 2\n",
            "fall = 2\n\n[[service.backend]]\nname = \"b1\"\naddress = \"fd67::11\"\nadmin = \"disabled\"\n"
        ),
    );
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(9);
    let w = weights_of(&[100, 100, 200]);
    let a = spread::place(&net, &lb, "IP6IP6", "fd68", "fd69::100", CONNECTIONS, &w);
    let w = weights_of(&[1, 1, 1]);
    let b = spread::place(&net, &lb, "GUE IPv6", "fd68", "fd69::101", 600, &w);
    let c = spread::place(&net, &lb, "IPv4 in IPv6", "10.68.0", "10.69.0.102", 600, &w);
    let out = net.client(&client_args("fd69::99", &client_sources("fd68"), "50"));
    check_refused(&records(&out), 1000.0).unwrap_or_else(|e| panic!("empty IPv6 pool: {e}"));
    println!(
        "empty IPv6 pool: 50 SYNs refused, slowest after {} ms",
        out["ms_max"]
    );
    let v = lb.stop();
    let t = &v["totals"];
    assert_eq!(t["balanced"].as_bool(), Some(true), "{t}");
    assert!(t["resets"].as_u64().unwrap() >= 50, "{t}");
    println!("totals: {t}");
    assert_eq!(t["flows_created"].as_u64(), Some((a + b + c) as u64));
    let s = endpoints_clean(&mut net);
    carriers(&s, &["ip6ip6", "gue6", "ip4ip6"], &["ipip", "gue4"]);
}

fn wait_for(what: &str, lb: &Balancer, f: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f(&lb.log()) {
        assert!(Instant::now() < deadline, "{what}:\n{}", lb.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A long stream keeps its backend across a live reload that changes every weight; a
/// backend whose server stops is taken out by its check (through the route) and gets no
/// new flow while the others take them all.
#[test]
fn e2e_tunnel_stream_survives_reload_and_stopped_backend_gets_no_flows() {
    let mut net = Net::tunnelled("tr", 3);
    let header = net.tunnelled_config();
    let first = format!(
        "{header}{}",
        svc("web", "10.69.0.100", "ipip", &[100, 100, 100], false)
    );
    let lb = Balancer::start(&net, &first);
    lb.wait_up(3);

    let (src, sport) = ("10.68.0.101", 61501);
    let which = lb.ctl_json(&["which", &format!("{src}:{sport}"), "10.69.0.100:80"]);
    let streamed_to = which["backend"].as_str().expect("a backend").to_owned();
    let stream = Stream::start(&net, "10.69.0.100", src, sport, 12);
    std::thread::sleep(Duration::from_secs(2));

    let second = format!(
        "{header}{}",
        svc("web", "10.69.0.100", "ipip", &[300, 100, 50], false)
    );
    std::fs::write(&lb.config, &second).expect("config");
    let r = lb.ctl_json(&["reload"]);
    println!("reload: {r}");

    // Stop a backend other than the stream's; its check fails, it goes down.
    let stopped = if streamed_to == "b3" { 2 } else { 3 };
    net.stop(stopped);
    wait_for("the stopped backend goes down", &lb, |log| {
        log.lines().any(|l| {
            l.contains("backend health")
                && l.contains(&format!("b{stopped}"))
                && l.contains("to=\"down\"")
        })
    });
    let srcs = client_sources("10.68.0");
    let out = net.client(&client_args("10.69.0.100", &srcs, "300"));
    assert_eq!(out["errors"], serde_json::json!({}), "{out}");
    let per = &out["per_backend"];
    assert!(
        per.get(format!("b{stopped}")).is_none(),
        "b{stopped} is down and got new flows: {per}"
    );
    println!("after b{stopped} stopped: 300 connections, per backend {per}");

    let got = stream.finish();
    assert_eq!(got, streamed_to, "the stream stayed on its backend");
    println!("the 12 s stream stayed on {got} across the reload");
    let v = lb.stop();
    totals_clean(&v);
    endpoints_clean(&mut net);
}

/// Path MTU through the tunnel: the port's MTU is 1500, so a client's full-size segment
/// (1500 bytes) does not fit once encapsulated (+20 IPv4, +40 IPv6). Fulcrum answers it with
/// ICMP fragmentation-needed / ICMPv6 packet-too-big, the client's kernel lowers its path MTU
/// to the VIP, and a large upload completes; a large download (the backend answers directly,
/// no tunnel on that way) too. IPv4 (IPIP) and IPv6 (IP6IP6).
#[test]
fn e2e_tunnel_path_mtu_large_upload_and_download() {
    let mut net = Net::tunnelled("tm", 1);
    let header = net
        .tunnelled_config()
        .replace("name = \"lan\"\n", "name = \"lan\"\nmtu = 1500\n");
    let cfg = format!(
        "{header}{}{}",
        svc("up4", "10.69.0.100", "ipip", &[1], false),
        svc("up6", "fd69::100", "ipip", &[1], true),
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
    for (vip, host, want_mtu) in [
        ("10.69.0.100", "10.69.0.100".to_owned(), 1480),
        ("fd69::100", "[fd69::100]".to_owned(), 1460),
    ] {
        let t0 = Instant::now();
        let up = net.exec(
            "c1",
            &[
                "curl",
                "-sS",
                "-m",
                "60",
                "-T",
                blob.to_str().expect("path"),
                &format!("http://{host}/upload"),
            ],
        );
        let up_s = t0.elapsed().as_secs_f64();
        assert_eq!(
            up.trim(),
            format!("backend=b1 bytes={SIZE} sha256={digest}"),
            "upload to {vip}"
        );
        let t0 = Instant::now();
        let down = net.exec(
            "c1",
            &[
                "curl",
                "-sS",
                "-m",
                "60",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{http_code}",
                &format!("http://{host}/bytes?n={SIZE}"),
            ],
        );
        let down_s = t0.elapsed().as_secs_f64();
        assert_eq!(down.trim(), format!("{SIZE} 200"), "download from {vip}");
        let route = net.exec("c1", &["ip", "route", "get", vip]);
        assert!(
            route.contains(&format!("mtu {want_mtu}")),
            "the client learnt path MTU {want_mtu} to {vip}: {route}"
        );
        println!(
            "{vip}: {} MiB up in {up_s:.2} s, down in {down_s:.2} s; client's route: {}",
            SIZE >> 20,
            route.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    let v = lb.stop();
    let t = &v["totals"];
    assert_eq!(t["balanced"].as_bool(), Some(true), "{t}");
    println!("totals: {t}");
    endpoints_clean(&mut net);
}

/// The `nth` log line "backend health" of service web's `backend` going `to`.
fn health_line(log: &str, backend: &str, to: &str, nth: usize) -> Option<String> {
    log.lines()
        .filter(|l| {
            l.contains("backend health")
                && l.contains(&format!("web/{backend} "))
                && l.contains(&format!("to=\"{to}\""))
        })
        .nth(nth - 1)
        .map(str::to_owned)
}

/// `[service.health] through_tunnel = true`: besides the HTTP check to each backend's own
/// address, the same check to the VIP through its tunnel. b3's tunnel endpoint stops (its
/// own address still answers, so the plain check would keep it): b3 goes down within the
/// check's fall time (fall 2 x interval 500 ms, timeout 450 ms), named as the tunnel's
/// failure, gets no new flows while b1 and b2 serve every connection; its endpoint returns
/// and b3 comes back within its rise time and takes flows again.
#[test]
fn e2e_tunnel_backend_without_its_endpoint_is_taken_out() {
    let mut net = Net::tunnelled("tt", 3);
    let cfg = format!(
        "{}{}",
        net.tunnelled_config(),
        svc("web", "10.69.0.100", "ipip", &[1, 1, 1], false)
            .replace("fall = 2\n", "fall = 2\nthrough_tunnel = true\n"),
    );
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(3);
    let srcs = client_sources("10.68.0");

    let t0 = Instant::now();
    let b3 = net.decap_stop(3);
    println!("b3's endpoint stopped after {} packets", b3.delivered);
    assert!(
        b3.delivered > 0,
        "the checks reached b3 through its tunnel: {b3:?}"
    );
    assert_eq!(b3.refused_total(), 0, "{b3:?}");
    wait_for(
        "b3 goes down once its tunnel endpoint is gone",
        &lb,
        |log| health_line(log, "b3", "down", 1).is_some(),
    );
    let down_ms = t0.elapsed().as_millis();
    let line = health_line(&lb.log(), "b3", "down", 1).expect("seen");
    assert!(
        line.contains("reason=\"timeout through the tunnel\""),
        "down by the check through the tunnel: {line}"
    );
    // fall 2: two rounds, each ending at its 450 ms timeout, 500 ms apart, plus the slow
    // path's turn and the log's poll.
    println!("b3 down {down_ms} ms after its endpoint stopped: {line}");
    assert!(down_ms < 2500, "b3 went down after {down_ms} ms");

    let out = net.client(&client_args("10.69.0.100", &srcs, "300"));
    assert_eq!(out["errors"], serde_json::json!({}), "{out}");
    let per = &out["per_backend"];
    assert!(per.get("b3").is_none(), "b3 got new flows: {per}");
    assert!(
        per.get("b1").is_some() && per.get("b2").is_some(),
        "b1 and b2 serve: {per}"
    );
    println!("b3 down: 300 connections, per backend {per}");

    let t1 = Instant::now();
    net.decap_start(3);
    wait_for("b3 comes back with its endpoint", &lb, |log| {
        health_line(log, "b3", "up", 2).is_some()
    });
    let up_ms = t1.elapsed().as_millis();
    println!("b3 up {up_ms} ms after its endpoint returned (rise 2)");
    assert!(up_ms < 2500, "b3 came back after {up_ms} ms");
    let out = net.client(&client_args("10.69.0.100", &srcs, "300"));
    assert_eq!(out["errors"], serde_json::json!({}), "{out}");
    let per = &out["per_backend"];
    assert!(
        per.get("b3")
            .and_then(|n| n.as_u64())
            .is_some_and(|n| n > 0),
        "b3 takes flows again: {per}"
    );
    println!("b3 back: 300 connections, per backend {per}");

    let v = lb.stop();
    totals_clean(&v);
    endpoints_clean(&mut net);
}

//! The test kit's tunnel endpoint on its own, in the routed layout and without Fulcrum:
//! encapsulated SYNs built by scapy (tests/tools/decap_probe.py), sent from the balancer's
//! subnet through the router as Fulcrum would send them, reach the backend's kernel, which
//! answers each from the VIP straight to the client through the router; malformed ones are
//! refused, each counted under its reason, and answered by nobody.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use testkit::{Net, must, repo};

#[test]
fn decap_takes_every_encapsulation_and_refuses_malformed_ones() {
    let mut net = Net::routed("dc", 1);
    // A VIP address of b1 (every VIP is local there) routed to b1 as an outer destination:
    // local, but not b1's own address, so no tunnel endpoint may take it.
    let wrong_dst = "10.80.9.250";
    net.exec(
        "rt",
        &["ip", "route", "add", wrong_dst, "via", "10.80.3.11"],
    );

    let mut listen = net
        .cmd("c1", "python3")
        .arg(repo().join("tests/tools/decap_probe.py"))
        .args(["listen", "--iface", "eth0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("decap_probe.py listen");
    let mut out = BufReader::new(listen.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("listen");
    assert_eq!(line.trim(), "ready");

    let (lb_mac, rt_mac) = (net.mac("lb", "lb0"), net.mac("rt", "lb"));
    let (b4, b6) = Net::routed_backend(1);
    let sent = must(
        net.cmd("lb", "python3")
            .arg(repo().join("tests/tools/decap_probe.py"))
            .args(["send", "--iface", "lb0", "--src-mac", &lb_mac])
            .args(["--router-mac", &rt_mac, "--backend", &b4, "--backend6", &b6])
            .args(["--client", "10.80.1.101", "--client6", "fd80:1::101"])
            .args(["--vip", "10.80.9.100", "--vip6", "fd80:9::100"])
            .args([
                "--wrong-dst",
                wrong_dst,
                "--lb",
                "10.80.2.2",
                "--lb6",
                "fd80:2::2",
            ]),
    );
    let cases: serde_json::Value = serde_json::from_slice(&sent.stdout).expect("cases JSON");

    // The last SYN-ACK is on its way within a few milliseconds; then the listener reports.
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(listen.stdin.take());
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("listen output");
    assert!(listen.wait().expect("listen").success());
    let seen: Vec<serde_json::Value> = serde_json::from_str(&rest).expect("SYN-ACKs JSON");
    // Every SYN-ACK comes from the VIP, to the client address the SYN came from.
    for s in &seen {
        let (src, dst) = (s["src"].as_str().unwrap(), s["dst"].as_str().unwrap());
        assert!(
            [
                ("10.80.9.100", "10.80.1.101"),
                ("fd80:9::100", "fd80:1::101")
            ]
            .contains(&(src, dst)),
            "SYN-ACK {s}"
        );
    }
    let answered: BTreeSet<u64> = seen.iter().filter_map(|s| s["dport"].as_u64()).collect();
    let port = |group: &str, name: &str| cases[group][name].as_u64().expect("case port");
    for name in ["ipip", "ip6ip6", "ip4ip6", "gue4", "gue6"] {
        assert!(
            answered.contains(&port("good", name)),
            "{name}: no SYN-ACK reached the client; seen {seen:?}"
        );
    }
    let bad = cases["bad"].as_object().expect("bad cases");
    for name in bad.keys() {
        assert!(
            !answered.contains(&port("bad", name)),
            "{name}: a malformed encapsulation was answered"
        );
    }

    let stats = net.decap_stop(1);
    println!(
        "decap: received {:?}, delivered {}, refused {:?}",
        stats.received, stats.delivered, stats.refused
    );
    assert_eq!(stats.delivered, 5, "{stats:?}");
    for name in bad.keys() {
        assert_eq!(
            stats.refused.get(name.as_str()).copied(),
            Some(1),
            "refused under its own reason: {stats:?}"
        );
    }
    assert_eq!(stats.refused_total(), bad.len() as u64, "{stats:?}");
}

/// `Net::routed` without Fulcrum: the client reaches a backend's own address through the
/// router (the path health checks and tunnelled packets take), and the backend serves.
#[test]
fn routed_layout_reaches_backends_through_the_router() {
    let net = Net::routed("rl", 2);
    for i in 1..=2 {
        let (b4, b6) = Net::routed_backend(i);
        for addr in [b4, format!("[{b6}]")] {
            let out = net.exec(
                "c1",
                &["curl", "-sS", "-m", "5", &format!("http://{addr}/")],
            );
            assert_eq!(out.trim(), format!("backend=b{i}"), "{addr}");
        }
    }
    let route = net.exec("c1", &["ip", "route", "get", "10.80.9.100"]);
    assert!(route.contains("via 10.80.1.1"), "{route}");
    let hops = net.exec("rt", &["ip", "route", "get", "10.80.9.100"]);
    assert!(
        hops.contains("via 10.80.2.2 dev lb"),
        "VIPs via the balancer: {hops}"
    );
    println!("routed layout: 2 backends reached through the router over IPv4 and IPv6");
}

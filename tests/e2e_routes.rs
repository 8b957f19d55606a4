//! Routes end to end: Fulcrum on DPDK (net_af_packet) in testkit's routed layout, where the
//! balancer, its client and its backends each have a subnet of their own and a Linux router
//! namespace forwards between them (no L2 shared between the balancer and a backend).
//!
//! - the backends are reached only by the port's `routes`: their health checks (HTTP, to a
//!   real server in each backend's namespace) go through the gateway, and they come up;
//! - `ctl status` shows the gateway resolved by ARP at the router's MAC, `ctl which` names it
//!   as a flow's next hop;
//! - real kernel TCP clients on another subnet reach the backends through the router and the
//!   balancer (NAT; the router returns the backends' replies through the balancer);
//! - the router's interface takes a new MAC and announces it (gratuitous ARP, `arp_notify`):
//!   Fulcrum follows it at once, the checks keep passing (no backend goes down) and the
//!   clients keep being answered.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::{Answer, Balancer, Client, Net, VIP, routed};

const INTERVAL_MS: u64 = 300;

fn config(net: &Net) -> String {
    let mut backends = String::new();
    for i in 1..=net.backends {
        backends += &format!(
            "[[service.backend]]\nname = \"b{i}\"\naddress = \"{}\"\n",
            routed::backend(i)
        );
    }
    format!(
        r#"{header}
[[service]]
name = "web"
vip = "{VIP}"
port = 80
forwarding = "nat"

[service.health]
type = "http"
interval_ms = {INTERVAL_MS}
timeout_ms = 250
rise = 2
fall = 2

{backends}
"#,
        header = net.routed_balancer_config()
    )
}

/// The gateway's entry in `ctl status`.
fn gateway(lb: &Balancer) -> serde_json::Value {
    let status = lb.ctl_json(&["status"]);
    status["next_hops"]
        .as_array()
        .and_then(|hops| {
            hops.iter()
                .find(|h| h["address"] == routed::GATEWAY)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no next hop {} in {status}", routed::GATEWAY))
}

/// `count` requests on new connections from the client: how many each backend answered,
/// and the failures.
fn requests(client: &mut Client, count: usize) -> (usize, usize, Vec<Answer>) {
    let vip: SocketAddr = format!("{VIP}:80").parse().expect("vip");
    let (mut b1, mut b2, mut failed) = (0, 0, Vec::new());
    for _ in 0..count {
        match client.request(vip, Duration::from_secs(2)) {
            Answer::Backend(b) if b == "b1" => b1 += 1,
            Answer::Backend(b) if b == "b2" => b2 += 1,
            other => failed.push(other),
        }
    }
    (b1, b2, failed)
}

/// Health transitions to "down" logged so far.
fn downs(lb: &Balancer) -> usize {
    lb.log()
        .lines()
        .filter(|l| l.contains("backend health") && l.contains("to=\"down\""))
        .count()
}

/// Checks finished, summed over the backends (`ctl backends`).
fn checks(lb: &Balancer) -> u64 {
    let v = lb.ctl_json(&["backends"]);
    v["services"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["checks"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn e2e_routes_backends_behind_a_router() {
    let net = Net::routed("rt", 2);
    net.nat_return();
    let lb = Balancer::start(&net, &config(&net));
    let t0 = Instant::now();
    lb.wait_up(2);
    println!(
        "both routed backends up {} ms after start",
        t0.elapsed().as_millis()
    );

    let router_mac = net.mac("rt", "eth0");
    let gw = gateway(&lb);
    assert_eq!(gw["state"], "resolved", "{gw}");
    assert_eq!(gw["mac"], router_mac.as_str(), "{gw}");
    assert_eq!(gw["backends"], 2, "{gw}");
    assert_eq!(gw["port"], "lan", "{gw}");
    let which = lb.ctl_json(&["which", &format!("{}:40000 {VIP}:80 tcp", routed::CLIENT)]);
    assert_eq!(which["next_hop"], routed::GATEWAY, "{which}");
    assert_eq!(which["port"], "lan", "{which}");

    let mut client = Client::new(&net.ns("c1"));
    let (b1, b2, failed) = requests(&mut client, 40);
    println!("before the gateway's MAC changed: b1 {b1}, b2 {b2}, failed {failed:?}");
    assert!(failed.is_empty(), "through the router: {failed:?}");
    assert!(b1 > 0 && b2 > 0, "both backends answer: b1 {b1}, b2 {b2}");

    // The router's interface on the balancer's subnet takes a new MAC and announces it. The
    // old MAC now reaches nobody: only by following the announcement do checks and flows go on.
    let downs_before = downs(&lb);
    let checks_before = checks(&lb);
    let new_mac = "02:fc:00:00:00:a1";
    net.exec("rt", &["sysctl", "-qw", "net.ipv4.conf.eth0.arp_notify=1"]);
    let changed = Instant::now();
    net.exec(
        "rt",
        &["ip", "link", "set", "dev", "eth0", "address", new_mac],
    );
    let deadline = changed + Duration::from_secs(5);
    loop {
        let gw = gateway(&lb);
        if gw["mac"] == new_mac {
            println!(
                "gateway's new MAC followed within {} ms",
                changed.elapsed().as_millis()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new MAC was not learnt: {gw}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A few check intervals: every check through the new MAC passes.
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * 5));
    let checks_after = checks(&lb);
    assert!(
        checks_after >= checks_before + 6,
        "checks went on: {checks_before} -> {checks_after}"
    );
    assert_eq!(
        downs(&lb),
        downs_before,
        "no backend went down after the gateway moved:\n{}",
        lb.log()
    );
    let (b1, b2, failed) = requests(&mut client, 40);
    println!("after the gateway's MAC changed: b1 {b1}, b2 {b2}, failed {failed:?}");
    assert!(failed.is_empty(), "after the move: {failed:?}");
    assert!(b1 > 0 && b2 > 0, "both backends answer: b1 {b1}, b2 {b2}");

    let v = lb.stop();
    let sp = &v["slowpath"];
    println!("slow path: {sp}");
    assert!(sp["neighbors_changed"].as_u64().unwrap_or(0) >= 1, "{sp}");
    assert_eq!(sp["frames_no_route"].as_u64(), Some(0), "{sp}");
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true), "{v}");
}

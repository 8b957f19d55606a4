//! The kernel exception path end to end: Fulcrum owns the data port (DPDK `net_af_packet`),
//! and its `kernel_interface` (a DPDK `net_tap`) gives the balancer's kernel the port's MAC
//! and address, so that a real BIRD on the balancer peers by BGP with a real BIRD on a router
//! over the DPDK port, and any other TCP service of the host (an SSH stand-in) answers there.
//!
//! ```text
//!  <n>-rt: eth0 10.66.0.1/24, BIRD AS 65001 (kernel protocol: routes into the router's FIB)
//!  <n>-lb: lb0 (DPDK) + fx0 (net_tap: 10.66.0.2/24), BIRD AS 65002 announcing 10.66.0.100/32
//!  <n>-c1: client 10.66.0.50, <n>-b1: backend 10.66.0.11 (DSR, VIP on lo)
//! ```
//!
//! The second test: the VIP of an `announce = "bgp"` service is announced by BIRD while the
//! node serves it, and withdrawn (router FIB, measured) within 1 s when the node's disable
//! file appears, when its pool empties, on a clean stop, and when Fulcrum is killed (-9:
//! the TAP interface vanishes with the process, BFD notices).
//!
//! Asserted in the first: the BGP session is Established on both sides and the router's FIB routes the VIP
//! via the balancer; ping to the balancer's address is answered; a TCP service of the
//! balancer's kernel answers through the port; under VIP load no VIP frame reaches the kernel
//! interface (its receive counter barely moves, the refusal counters stay 0) and every request
//! is served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::{Answer, Balancer, Bird, Client, Net, VIP};

const IFACE: &str = "fx0";

fn config(net: &Net) -> String {
    // The port table is the header's last: its kernel interface goes right after it.
    let header = net.balancer_config(&["10.66.0.2/24"]);
    format!(
        r#"{header}
kernel_interface = "{IFACE}"

[[service]]
name = "web"
vip = "{VIP}"
port = 80

[service.health]
interval_ms = 500
timeout_ms = 300

[[service.backend]]
name = "b1"
address = "10.66.0.11"
"#
    )
}

const ROUTER_BIRD: &str = r#"
router id 10.66.0.1;
protocol device {}
protocol kernel {
    ipv4 { export all; };
    merge paths on;
}
protocol bgp lb1 {
    local 10.66.0.1 as 65001;
    neighbor 10.66.0.2 as 65002;
    hold time 9;
    ipv4 { import all; export none; };
}
"#;

fn balancer_bird() -> String {
    format!(
        r#"
router id 10.66.0.2;
protocol device {{}}
protocol static vips {{
    ipv4;
    route {VIP}/32 blackhole;
}}
protocol bgp uplink {{
    local 10.66.0.2 as 65002;
    neighbor 10.66.0.1 as 65001;
    hold time 9;
    ipv4 {{ import none; export where proto = "vips"; }};
}}
"#
    )
}

/// The kernel's receive counter of the exception interface (frames DPDK gave it).
fn kernel_rx(net: &Net) -> u64 {
    net.exec(
        "lb",
        &[
            "cat",
            &format!("/sys/class/net/{IFACE}/statistics/rx_packets"),
        ],
    )
    .trim()
    .parse()
    .expect("rx_packets")
}

fn kernel_counters(lb: &Balancer) -> serde_json::Value {
    let status = lb.ctl_json(&["status"]);
    status["kernel"].clone()
}

#[test]
fn bgp_ping_and_tcp_reach_the_kernel_through_the_dpdk_port_and_vip_traffic_never_does() {
    let net = Net::up("kx", 1);
    net.host("rt", "10.66.0.1/24");
    let lb = Balancer::start(&net, &config(&net));
    let addrs = net.exec("lb", &["ip", "-br", "addr", "show", IFACE]);
    println!("kernel interface: {}", addrs.trim());
    assert!(addrs.contains("10.66.0.2/24"), "{addrs}");
    let link = net.exec("lb", &["ip", "link", "show", IFACE]);
    assert!(link.contains(",UP"), "{link}");

    let router = Bird::start(&net, "rt", ROUTER_BIRD);
    let speaker = Bird::start(&net, "lb", &balancer_bird());
    let took = router.wait_established("lb1", Duration::from_secs(30));
    speaker.wait_established("uplink", Duration::from_secs(10));
    println!("BGP over the DPDK port: Established on both sides after {took:?}");

    // The announcement reaches the router's FIB.
    let mut route = String::new();
    for _ in 0..50 {
        route = net.exec("rt", &["ip", "route", "show", &format!("{VIP}/32")]);
        if route.contains("via 10.66.0.2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("router FIB: {}", route.trim());
    assert!(
        route.contains("via 10.66.0.2") && route.contains("bird"),
        "{route}"
    );

    // Ping to the balancer's own address: answered (by the workers, as without the path).
    let ping = net
        .cmd("rt", "ping")
        .args(["-c", "3", "-i", "0.2", "-W", "1", "10.66.0.2"])
        .output()
        .expect("ping");
    assert!(
        ping.status.success(),
        "ping: {}{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr),
        lb.ctl_json(&["stats"])
    );

    // A TCP service of the balancer's kernel (what sshd would be) answers through the port.
    let mut server = net
        .cmd("lb", "socat")
        .args([
            "TCP-LISTEN:2222,bind=10.66.0.2,reuseaddr,fork",
            "SYSTEM:echo kernel-service",
        ])
        .spawn()
        .expect("socat server");
    let mut answer = String::new();
    for _ in 0..50 {
        let out = net
            .cmd("rt", "socat")
            .args(["-T", "2", "-", "TCP:10.66.0.2:2222,connect-timeout=2"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("socat client");
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
        if answer.contains("kernel-service") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(answer.trim(), "kernel-service");

    // VIP traffic under load: served, and none of it reaches the kernel.
    let before = kernel_rx(&net);
    let vip: SocketAddr = format!("{VIP}:80").parse().expect("vip");
    let mut client = Client::new(&net.ns("c1"));
    let requests = 300;
    let mut served = 0;
    for _ in 0..requests {
        if client.request(vip, Duration::from_secs(2)) == Answer::Backend("b1".into()) {
            served += 1;
        }
    }
    let after = kernel_rx(&net);
    let k = kernel_counters(&lb);
    println!(
        "{served}/{requests} VIP requests served; kernel interface received {} frames meanwhile; \
         exception path: {k}",
        after - before
    );
    assert_eq!(served, requests);
    // Each request is >= 5 frames to the VIP; the kernel saw at most BGP keepalives and ARP.
    assert!(
        after - before < 20,
        "{} frames reached the kernel",
        after - before
    );
    assert_eq!(k["to_kernel_refused"], 0, "{k}");
    assert_eq!(k["from_kernel_refused"], 0, "{k}");
    assert!(k["to_kernel"].as_u64().unwrap_or(0) > 0, "{k}");
    assert!(k["from_kernel"].as_u64().unwrap_or(0) > 0, "{k}");
    assert_eq!(router.bgp_state("lb1"), "Established");
    drop(speaker);
    drop(router);
    lb.stop();
}

fn announce_config(net: &Net) -> String {
    let header = net.balancer_config(&["10.66.0.2/24"]);
    let dir = net.dir.display();
    // [global.announce] must follow [global]: put it before the port table.
    let header = header.replacen(
        "[[port]]",
        &format!(
            "[global.announce]\nbird_file = \"{dir}/vips.conf\"\nbird_socket = \"{dir}/bird-lb.ctl\"\n\
             disable_file = \"{dir}/disable\"\n\n[[port]]"
        ),
        1,
    );
    format!(
        r#"{header}
kernel_interface = "{IFACE}"

[[service]]
name = "web"
vip = "{VIP}"
port = 80
announce = "bgp"

[service.health]
interval_ms = 200
timeout_ms = 150
rise = 1
fall = 1

[[service.backend]]
name = "b1"
address = "10.66.0.11"
"#
    )
}

/// BGP with BFD (100 ms x 3) and quick reconnects, on both sides.
const SESSION: &str = "hold time 9; bfd on; connect retry time 1; error wait time 1, 2;";
const BFD: &str = "protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }";

fn router_bird_bfd() -> String {
    format!(
        r#"
router id 10.66.0.1;
protocol device {{}}
{BFD}
protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}
protocol bgp lb1 {{
    local 10.66.0.1 as 65001;
    neighbor 10.66.0.2 as 65002;
    {SESSION}
    ipv4 {{ import all; export none; }};
}}
"#
    )
}

fn balancer_bird_include(net: &Net) -> String {
    format!(
        r#"
router id 10.66.0.2;
protocol device {{}}
{BFD}
include "{}/vips.conf";
protocol bgp uplink {{
    local 10.66.0.2 as 65002;
    neighbor 10.66.0.1 as 65001;
    {SESSION}
    ipv4 {{ import none; export where proto = "fulcrum_vips4"; }};
}}
"#,
        net.dir.display()
    )
}

fn routed(net: &Net) -> bool {
    net.exec("rt", &["ip", "route", "show", &format!("{VIP}/32")])
        .contains("via 10.66.0.2")
}

/// Waits (bounded by `limit`) until the router's FIB has (`want`) or lacks the VIP's route;
/// how long that took from `t0`.
fn wait_route(net: &Net, want: bool, t0: Instant, limit: Duration, what: &str) -> Duration {
    loop {
        if routed(net) == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "{what}: the router's route to the VIP still {} after {limit:?}",
            if want { "missing" } else { "present" }
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start_announcing(net: &Net) -> Balancer {
    let lb = Balancer::start(net, &announce_config(net));
    let file = net.dir.join("vips.conf");
    let t0 = Instant::now();
    while !file.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    lb
}

#[test]
fn bgp_announcement_follows_the_pool_the_disable_file_a_stop_and_a_kill() {
    let mut net = Net::up("ka", 1);
    net.host("rt", "10.66.0.1/24");
    let lb = start_announcing(&net);
    let router = Bird::start(&net, "rt", &router_bird_bfd());
    let speaker = Bird::start(&net, "lb", &balancer_bird_include(&net));
    let took = router.wait_established("lb1", Duration::from_secs(30));
    println!("BGP (with BFD) Established after {took:?}");
    let limit = Duration::from_secs(1);
    wait_route(&net, true, Instant::now(), Duration::from_secs(10), "start");
    let status = lb.ctl_json(&["status"]);
    println!("announcements: {}", status["announcements"]);
    assert_eq!(status["announcements"][0]["announced"], true, "{status}");

    // The node's disable file: withdrawn within 1 s, and back when it goes.
    let disable = net.dir.join("disable");
    let t0 = Instant::now();
    std::fs::write(&disable, "").expect("disable file");
    let gone = wait_route(&net, false, t0, limit, "disable file");
    let why = lb.ctl_json(&["status"])["announcements"][0]["reason"].clone();
    assert_eq!(why, "node disabled (disable file)");
    let t0 = Instant::now();
    std::fs::remove_file(&disable).expect("remove disable file");
    let back = wait_route(&net, true, t0, limit, "disable file removed");
    println!("disable file: withdrawn in {gone:?}, announced again in {back:?}");

    // The pool empties (its one backend stops): withdrawn within a check plus 1 s.
    let t0 = Instant::now();
    net.stop(1);
    let gone = wait_route(
        &net,
        false,
        t0,
        limit + Duration::from_millis(200),
        "pool empty",
    );
    let why = lb.ctl_json(&["status"])["announcements"][0]["reason"].clone();
    assert_eq!(why, "pool empty");
    net.start(1);
    let back = wait_route(
        &net,
        true,
        Instant::now(),
        Duration::from_secs(5),
        "backend back",
    );
    println!("pool empty: withdrawn {gone:?} after the backend stopped; back in {back:?}");

    // A clean stop withdraws first.
    let t0 = Instant::now();
    lb.signal("TERM");
    let gone = wait_route(&net, false, t0, limit, "clean stop");
    lb.stop();
    println!("clean stop: withdrawn in {gone:?}");

    // Started again: the session comes back over the new TAP interface and the VIP with it.
    let lb = start_announcing(&net);
    let t0 = Instant::now();
    let back = wait_route(&net, true, t0, Duration::from_secs(30), "restart");
    println!("restart: announced again {back:?} after the balancer served");

    // Killed: nothing can withdraw; the TAP interface goes with the process and BFD
    // (100 ms x 3) takes the route down on the router.
    let t0 = Instant::now();
    lb.signal("KILL");
    let gone = wait_route(&net, false, t0, limit, "kill -9");
    println!("kill -9: the router withdrew the route in {gone:?}");
    drop(lb);
    drop(speaker);
    drop(router);
}

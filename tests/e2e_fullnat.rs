//! FullNAT end to end (issue 19; issue 21's restart case): Fulcrum on DPDK (net_af_packet,
//! two workers on two queue pairs) in testkit's routed layout with its backends left as they
//! come (`Net::routed_plain`): no VIP on their loopback, their default route the router's,
//! no route back to the clients through the balancer. Real kernel TCP and UDP clients on
//! another subnet reach them through the router and the balancer, which connects to each
//! backend from its own address 10.66.0.2 and a local port of the worker that owns the flow.
//!
//! - thousands of connections: every one answered by the backend `fulcrum which` names,
//!   shares per the weights, each backend seeing 10.66.0.2 and a local port as its peer
//!   (tests/tools/backend.py's `X-Peer`); a UDP request/response exchange likewise; the
//!   local ports in use per worker and local address in `ctl status` and the metrics, and
//!   all of them back once the flows expire;
//! - `kill -9` during long streams, then a new process on the same config adopts the flow
//!   tables: no stream breaks, and new connections through it succeed;
//! - long streams through a live reload that adds a backend, which then takes new flows;
//! - a local-port range sized small on purpose: the excess SYNs are refused at once (RST,
//!   `local_ports_exhausted`; with `on_empty = "drop"` dropped under `no_local_port`), and
//!   new connections succeed again once the held ones close and their ports have rested;
//! - `proxy_protocol = "v2"` to a real nginx on each backend (`listen ... proxy_protocol`):
//!   each connection's client address and port in the access log of the backend that
//!   answered, 1 MiB uploads and downloads intact, a full first segment, first segments
//!   lost and sent again, uploads through 2% loss (SACK); and the same log over IPv6.
//!
//! FULCRUM_FULLNAT_CONNECTIONS sets the connections of the first case (default 2000),
//! FULCRUM_FULLNAT_STREAMS the streams of the restart and reload cases (default 100),
//! FULCRUM_PROXY_V2_CONNECTIONS the connections of the PROXY v2 case (default 400).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use testkit::outcome::{check_placement, check_refused, expected_backends_of, records};
use testkit::spread::{client_args, client_sources, place_json};
use testkit::{
    Balancer, LB_ADDR, LB_ADDR_V6, LogLine, Net, Nginx, Stream, Streams, VIP, backend_v6, routed,
};

/// The client's own addresses the connections come from (`spread::client_sources`).
const CLIENT_NET: &str = "10.68.0";
/// The default `[global.fullnat] local_ports`, and each worker's share of it.
const LOCAL_PORTS: RangeInclusive<u16> = 1024..=32767;
const SHARE: u64 = 15872;
/// The exhaustion case's range: the least the config takes, 32 ports per worker.
const FEW_PORTS: RangeInclusive<u16> = 40000..=40063;

fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The routed layout with plain backends, the client's four source addresses added.
fn net(tag: &str, backends: usize) -> Net {
    let net = Net::routed_plain(tag, backends);
    for a in client_sources(CLIENT_NET) {
        net.exec(
            "c1",
            &["ip", "addr", "add", &format!("{a}/24"), "dev", "eth0"],
        );
    }
    net
}

/// The balancer: two workers (one queue pair each), metrics on the namespace's loopback,
/// `global` tables (`[global.timeouts]`, `[global.fullnat]`) added, then a FullNAT TCP
/// service "web" on VIP:80 with `backends` (name, weight), and with `udp` a FullNAT UDP
/// service "echo" on VIP:80 over b1 and b2.
fn config(net: &Net, global: &str, backends: &[(&str, u32)], udp: bool) -> String {
    let header = header(net, global);
    let mut text = format!(
        r#"{header}
[[service]]
name = "web"
vip = "{VIP}"
port = 80
forwarding = "fullnat"

[service.health]
type = "http"
interval_ms = 500
timeout_ms = 450
rise = 1
fall = 5
"#
    );
    for (name, weight) in backends {
        let i: usize = name[1..].parse().expect("bN");
        text += &format!(
            "\n[[service.backend]]\nname = \"{name}\"\naddress = \"{}\"\nweight = {weight}\n",
            routed::backend(i)
        );
    }
    if udp {
        text += &udp_service();
    }
    text
}

/// The balancer's part of the config: two workers (one queue pair each), metrics on the
/// namespace's loopback, `global` tables added.
fn header(net: &Net, global: &str) -> String {
    let header = net
        .routed_balancer_config()
        .replacen("workers = [1]", "workers = [0, 1]", 1)
        .replacen("slowpath_cpu = 0\n", "", 1)
        .replacen("iface=lb0\"", "iface=lb0,qpairs=2\"", 1)
        .replacen(
            "\n[[port]]",
            &format!("metrics_listen = \"127.0.0.1:9180\"\n{global}\n[[port]]"),
            1,
        );
    assert!(header.contains("qpairs=2") && header.contains("workers = [0, 1]"));
    header
}

/// A FullNAT UDP service "echo" on VIP:80 over b1 and b2.
fn udp_service() -> String {
    let mut text = format!(
        r#"
[[service]]
name = "echo"
vip = "{VIP}"
port = 80
protocol = "udp"
forwarding = "fullnat"

[service.health]
type = "tcp"
port = 80
interval_ms = 500
timeout_ms = 450
rise = 1
fall = 5
"#
    );
    for name in ["b1", "b2"] {
        let i: usize = name[1..].parse().expect("bN");
        text += &format!(
            "\n[[service.backend]]\nname = \"{name}\"\naddress = \"{}\"\n",
            routed::backend(i)
        );
    }
    text
}

/// The peer a backend saw, parsed.
fn peer_of(rec: &serde_json::Value) -> SocketAddr {
    rec["peer"]
        .as_str()
        .unwrap_or_else(|| panic!("no peer in {rec}"))
        .parse()
        .unwrap_or_else(|e| panic!("peer of {rec}: {e}"))
}

/// Checks that every backend saw the balancer's own address and a local port from `range`
/// as the peer, and that no (local port, backend) served two client flows; the connections
/// per worker share (of two) that the peers' ports tell.
fn check_peers(what: &str, recs: &[serde_json::Value], range: &RangeInclusive<u16>) -> [usize; 2] {
    check_peers_from(what, recs, range, LB_ADDR)
}

/// [`check_peers`] with `local` the balancer's address the backends must see.
fn check_peers_from(
    what: &str,
    recs: &[serde_json::Value],
    range: &RangeInclusive<u16>,
    local: &str,
) -> [usize; 2] {
    // Worker 0's share: the first half (`local_ports::share`).
    let ports = u32::from(*range.end()) + 1 - u32::from(*range.start());
    let share = ports / 2;
    let mut per_share = [0usize; 2];
    let mut tuples = HashMap::new();
    for r in recs {
        let peer = peer_of(r);
        assert_eq!(
            peer.ip().to_string(),
            local,
            "{what}: the backend saw {peer}, not the balancer's address: {r}"
        );
        assert!(
            range.contains(&peer.port()),
            "{what}: local port {} outside {range:?}",
            peer.port()
        );
        let backend = r["backend"].as_str().unwrap_or("?").to_string();
        // A client that reuses its own port while the flow is still in the table (it closed
        // second, so it holds no TIME_WAIT) opens a new flow: a new local port (the old one
        // rests), so a local tuple is still one client flow's.
        let client = (r["src"].clone(), r["sport"].clone());
        if let Some(other) = tuples.insert((peer.port(), backend.clone()), client.clone())
            && other != client
        {
            panic!("{what}: local tuple {peer} to {backend} of two client flows: {other:?}, {r}");
        }
        per_share[usize::from(u32::from(peer.port() - range.start()) >= share)] += 1;
    }
    per_share
}

/// `local_ports` of `ctl status`: in use by (worker, address), with the share.
fn local_ports(lb: &Balancer) -> BTreeMap<(u64, String), (u64, u64)> {
    let st = lb.ctl_json(&["status"]);
    st["local_ports"]
        .as_array()
        .unwrap_or_else(|| panic!("no local_ports in status: {st}"))
        .iter()
        .map(|r| {
            (
                (
                    r["worker"].as_u64().expect("worker"),
                    r["address"].as_str().expect("address").to_string(),
                ),
                (
                    r["in_use"].as_u64().expect("in_use"),
                    r["share"].as_u64().expect("share"),
                ),
            )
        })
        .collect()
}

/// A worker counter summed over the workers (`ctl stats`).
fn total(lb: &Balancer, counter: &str) -> u64 {
    lb.ctl_json(&["stats"])["totals"][counter]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {counter}"))
}

/// Waits (bounded) until every worker's local ports in use are `in_use` (the figures are
/// published every 100 ms); how long it took.
fn wait_ports(lb: &Balancer, in_use: u64, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let lp = local_ports(lb);
        if lp.values().all(|(n, _)| *n == in_use) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "local ports in use not {in_use} everywhere: {lp:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn e2e_fullnat_connections_udp_and_local_ports() {
    let count = env_or("FULCRUM_FULLNAT_CONNECTIONS", 2000);
    let net = net("fn", 2);
    // The backends as they come: no VIP anywhere on them, the router their way out.
    for b in ["b1", "b2"] {
        let addrs = net.exec(b, &["ip", "-4", "-o", "addr", "show"]);
        assert!(!addrs.contains(VIP), "{b} holds the VIP: {addrs}");
        let route = net.exec(b, &["ip", "route", "get", routed::CLIENT]);
        assert!(
            route.contains(&format!("via {}", routed::BACKEND_GATEWAY)),
            "{b} reaches the clients through the router: {route}"
        );
    }
    let global = "[global.timeouts]\ntcp_closing = 2\nudp = 3\n";
    let cfg = config(&net, global, &[("b1", 1), ("b2", 2)], true);
    let lb = Balancer::start(&net, &cfg);
    let t0 = Instant::now();
    lb.wait_up(4);
    println!("backends up {} ms after start", t0.elapsed().as_millis());

    // TCP: every connection to the backend `which` names, the shares per the weights.
    let t0 = Instant::now();
    let out = place_json(
        &net,
        &lb,
        "FullNAT TCP",
        CLIENT_NET,
        VIP,
        count,
        &[("b1", 1.0), ("b2", 2.0)],
    );
    let tcp_secs = t0.elapsed().as_secs_f64();
    let recs = out["records"].as_array().expect("records");
    let per_share = check_peers("TCP", recs, &LOCAL_PORTS);
    println!(
        "{count} connections in {tcp_secs:.1} s, every backend saw {LB_ADDR} as the peer; \
         local ports from worker 0's share {}, worker 1's {}",
        per_share[0], per_share[1]
    );
    assert!(
        per_share.iter().all(|n| *n > count / 4),
        "both workers open flows: {per_share:?}"
    );

    // UDP: request/response datagrams, each from a new client port.
    let srcs = client_sources(CLIENT_NET);
    let mut args = vec!["--host", VIP, "--port", "80", "--count", "300"];
    for s in &srcs {
        args.extend(["--source", s.as_str()]);
    }
    let udp = net.udp_client(&args);
    let urecs = records(&udp);
    let expected = expected_backends_of(&lb.config, &urecs, &format!("{VIP}:80"), "udp");
    check_placement(&urecs, &expected).unwrap_or_else(|e| panic!("UDP: {e}"));
    let uper = check_peers(
        "UDP",
        udp["records"].as_array().expect("records"),
        &LOCAL_PORTS,
    );
    println!(
        "UDP: {} exchanges answered, per backend {}, resent {}, local ports per worker share \
         {uper:?}",
        udp["ok"], udp["per_backend"], udp["resent"]
    );
    assert_eq!(udp["ok"], 300, "{}", udp["errors"]);

    // `ctl which` of a live flow: the worker that holds it names the local address and port
    // the backend sees, from that worker's share.
    let (src, sport) = (&srcs[0], 61777);
    let stream = Stream::start(&net, VIP, src, sport, 3);
    std::thread::sleep(Duration::from_secs(1));
    let flow = [format!("{src}:{sport}"), format!("{VIP}:80")];
    let w = lb.ctl_json(&["which", &flow[0], &flow[1]]);
    let local: SocketAddr = w["local"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no local side in {w}"));
    let worker = w["worker"].as_u64().expect("the worker that holds it") as u16;
    let share = dataplane::local_ports::share(&LOCAL_PORTS, worker, 2);
    assert_eq!(local.ip().to_string(), LB_ADDR, "{w}");
    assert!(
        share.contains(&local.port()),
        "{local}: worker {worker}'s share {share:?}"
    );
    let text = String::from_utf8_lossy(&lb.ctl(&["which", &flow[0], &flow[1]]).stdout).to_string();
    println!("{}", text.trim());
    assert!(text.contains(&format!(", from local {local}")), "{text}");
    assert_eq!(Some(stream.finish().as_str()), w["backend"].as_str(), "{w}");

    // Local ports in use, per worker and local address, in `ctl status` and the metrics.
    let human = String::from_utf8_lossy(&lb.ctl(&["status"]).stdout).to_string();
    println!("{human}");
    assert!(human.contains("local address"), "{human}");
    let lp = local_ports(&lb);
    println!("local ports in use (worker, address) -> (in use, share): {lp:?}");
    assert_eq!(lp.len(), 2, "one pool per worker on {LB_ADDR}: {lp:?}");
    for w in 0..2u64 {
        let (in_use, share) = lp[&(w, LB_ADDR.to_string())];
        assert_eq!(share, SHARE, "worker {w}");
        assert!(in_use > 0 && in_use <= share, "worker {w}: {in_use}");
    }
    let (_, m) = testkit::metrics::scrape(&net);
    for w in 0..2 {
        let series =
            format!("fulcrum_local_address_ports_in_use{{worker=\"{w}\",address=\"{LB_ADDR}\"}}");
        let v = m.get(&series).copied();
        println!("{series} {v:?}");
        assert!(v.is_some_and(|v| v > 0.0), "{series}: {v:?}");
        let share = format!("fulcrum_local_address_ports{{worker=\"{w}\",address=\"{LB_ADDR}\"}}");
        assert_eq!(m.get(&share).copied(), Some(SHARE as f64), "{share}");
        let gauge = format!("fulcrum_local_ports_in_use{{worker=\"{w}\"}}");
        assert!(m.get(&gauge).is_some_and(|v| *v > 0.0), "{gauge}");
    }
    // Every port comes back once the flows close and expire.
    let back = wait_ports(&lb, 0, Duration::from_secs(20));
    println!("every local port back {} ms later", back.as_millis());
    let (_, m) = testkit::metrics::scrape(&net);
    for w in 0..2 {
        let series =
            format!("fulcrum_local_address_ports_in_use{{worker=\"{w}\",address=\"{LB_ADDR}\"}}");
        assert_eq!(m.get(&series).copied(), Some(0.0), "{series}");
    }

    let v = lb.stop();
    let t = &v["totals"];
    println!(
        "handed over {} packets between workers; drops {}",
        t["handoff_out"], t["drops"]
    );
    assert_eq!(t["balanced"].as_bool(), Some(true), "{v}");
    assert_eq!(t["local_ports_exhausted"], 0, "{t}");
    // The kernel's fanout hash puts a reply on either queue: the ones that reached the other
    // worker crossed to the owner in software (and every connection still completed).
    assert!(t["handoff_out"].as_u64() > Some(0), "{t}");
    assert_eq!(t["drops"]["handoff_full"], 0, "{t}");
}

/// `n` long streams (`GET /stream`, ten lines a second for `secs`) from the client's own
/// address to the VIP.
fn streams(net: &Net, n: usize, secs: u32, tag: &str) -> Streams {
    Streams::start(net, &[format!("{VIP}:80:{}", routed::CLIENT)], n, secs, tag)
}

/// Asserts that every stream completed intact, and prints the figures.
fn check_streams(what: &str, v: &serde_json::Value, n: usize) {
    println!(
        "{what}: {} of {} streams intact; longest silence in a stream {} ms (median of the \
         streams' longest {} ms)",
        v["intact"], v["streams"], v["max_gap_ms"], v["median_max_gap_ms"],
    );
    assert_eq!(v["streams"], n as u64, "{v}");
    assert_eq!(v["broken_count"], 0, "{what}: broken streams: {v:#}");
    assert_eq!(v["intact"], n as u64, "{v}");
}

/// `count` new connections from the client's addresses while something else goes on:
/// every one answered, each backend seeing the balancer's address.
fn new_connections(
    net: &Net,
    what: &str,
    count: usize,
    range: &RangeInclusive<u16>,
) -> serde_json::Value {
    let srcs = client_sources(CLIENT_NET);
    let n = count.to_string();
    let out = net.client(&client_args(VIP, &srcs, &n));
    println!(
        "{what}: {} of {count} new connections answered, per backend {}, errors {}, slowest {} ms",
        out["ok"], out["per_backend"], out["errors"], out["ms_max"]
    );
    let answered: Vec<serde_json::Value> = out["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["error"].is_null())
        .cloned()
        .collect();
    check_peers(what, &answered, range);
    out
}

#[test]
fn e2e_fullnat_kill_9_adopts_the_flows() {
    let n = env_or("FULCRUM_FULLNAT_STREAMS", 100);
    let net = net("fk", 2);
    let cfg = config(&net, "", &[("b1", 1), ("b2", 1)], false);
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(2);

    let s = streams(&net, n, 12, "kill");
    s.wait_ready();
    std::thread::sleep(Duration::from_secs(2));
    let before = local_ports(&lb);
    println!("before the kill, local ports (worker, address) -> (in use, share): {before:?}");
    let held: u64 = before.values().map(|(u, _)| u).sum();
    assert_eq!(held, n as u64, "one local port per stream");
    let killed = Instant::now();
    let mut lb = lb;
    lb.kill();
    drop(lb); // removes its DPDK runtime files
    let lb = Balancer::start(&net, &cfg);
    let to_serving = killed.elapsed();
    let log = lb.log();
    assert!(log.contains("flow tables adopted"), "{log}");
    let st = lb.ctl_json(&["status"]);
    let adopted = st["flow_tables"]["adopted"].as_u64().expect("adopted");
    println!(
        "kill -9 to the new process serving {} ms; {}",
        to_serving.as_millis(),
        st["flow_tables"]
    );
    // A FullNAT stream is a pair of entries.
    assert!(adopted >= 2 * n as u64, "adopted {adopted}: {st}");

    // New flows beside the adopted ones: every one answered (a local port whose tuple an
    // adopted flow holds is never handed out again). The backends serve at once: the new
    // process takes their states with the tables ("pool state nonempty").
    let out = new_connections(&net, "after the restart", 300, &LOCAL_PORTS);
    let after = local_ports(&lb);
    println!("after the restart, local ports (worker, address) -> (in use, share): {after:?}");
    let exhausted = total(&lb, "local_ports_exhausted");
    let refused = out["errors"]["refused"].as_u64().unwrap_or(0);
    println!(
        "after the restart: {refused} new connections refused for want of a local port \
         (local_ports_exhausted {exhausted})"
    );
    let v = s.finish();
    check_streams("kill -9 and restart", &v, n);
    // Every new connection answered: the new process's pools left out the ports the
    // adopted pairs hold, so none was refused for want of a port (before they did, 3-5 of
    // 300 were: a pool's head whose tuple was live was passed over, 4 times at most).
    assert_eq!((refused, exhausted), (0, 0), "{}", out["errors"]);
    assert_eq!(out["ok"].as_u64(), Some(300), "{}", out["errors"]);
    // The adopted pairs' ports are counted in use from the start.
    let in_use: u64 = after.values().map(|(u, _)| u).sum();
    assert!(
        in_use >= n as u64,
        "{in_use} ports in use after the restart: {after:?}"
    );
    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true), "{v}");
}

#[test]
fn e2e_fullnat_streams_survive_a_live_reload() {
    let n = env_or("FULCRUM_FULLNAT_STREAMS", 100);
    let net = net("fr", 3);
    let two = config(&net, "", &[("b1", 1), ("b2", 1)], false);
    let lb = Balancer::start(&net, &two);
    lb.wait_up(2);

    let s = streams(&net, n, 10, "reload");
    s.wait_ready();
    std::thread::sleep(Duration::from_secs(1));
    // A third backend: Maglev moves about a third of the table to it; the streams keep
    // their pairs (and backends), new flows follow the new table.
    let three = config(&net, "", &[("b1", 1), ("b2", 1), ("b3", 1)], false);
    let t0 = Instant::now();
    let reply = lb.reload(&three);
    println!(
        "reload answered in {} ms: {reply}",
        t0.elapsed().as_millis()
    );
    lb.wait_up(3);
    let placed = place_json(
        &net,
        &lb,
        "after the reload",
        CLIENT_NET,
        VIP,
        600,
        &[("b1", 1.0), ("b2", 1.0), ("b3", 1.0)],
    );
    check_peers(
        "after the reload",
        placed["records"].as_array().expect("records"),
        &LOCAL_PORTS,
    );
    check_streams("live reload adding b3", &s.finish(), n);
    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true), "{v}");
}

#[test]
fn e2e_fullnat_exhaustion_refuses_at_once_and_recovers() {
    // 64 local ports (the least the config takes), 32 per worker, resting 500 ms.
    const HELD: usize = 120;
    let net = net("fx", 2);
    let global = format!(
        "[global.timeouts]\ntcp_closing = 1\n\n[global.fullnat]\nlocal_ports = \"{}-{}\"\n\
         port_quiet_ms = 500\n",
        FEW_PORTS.start(),
        FEW_PORTS.end()
    );
    let cfg = config(&net, &global, &[("b1", 1), ("b2", 1)], false);
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(2);

    // More long streams than ports: each worker fills its 32, the rest are refused.
    let s = streams(&net, HELD, 8, "hold");
    s.wait_ready();
    wait_ports(&lb, 32, Duration::from_secs(2));
    let lp = local_ports(&lb);
    println!("held: local ports (worker, address) -> (in use, share): {lp:?}");
    for w in 0..2u64 {
        assert_eq!(
            lp[&(w, LB_ADDR.to_string())],
            (32, 32),
            "worker {w}: {lp:?}"
        );
    }
    // While they hold every port, new connections are refused at once (a RST, not a
    // timeout), and counted.
    let before = total(&lb, "local_ports_exhausted");
    let resets_before = total(&lb, "resets");
    let srcs = client_sources(CLIENT_NET);
    let out = net.client(&client_args(VIP, &srcs, "40"));
    let recs = records(&out);
    check_refused(&recs, 500.0).unwrap_or_else(|e| panic!("while exhausted: {e}"));
    let exhausted = total(&lb, "local_ports_exhausted") - before;
    let resets = total(&lb, "resets") - resets_before;
    println!(
        "while exhausted: {} of 40 new connections refused, slowest {} ms; \
         local_ports_exhausted +{exhausted}, resets +{resets}",
        recs.len(),
        out["ms_max"]
    );
    assert_eq!(exhausted, 40);
    assert_eq!(resets, 40);
    // With `on_empty = "drop"` (a live reload) the SYNs are dropped instead, under the drop
    // reason `no_local_port`: the clients time out.
    let dropping = cfg.replacen(
        "forwarding = \"fullnat\"\n",
        "forwarding = \"fullnat\"\non_empty = \"drop\"\n",
        1,
    );
    lb.reload(&dropping);
    let drops = |lb: &Balancer| {
        lb.ctl_json(&["stats"])["totals"]["drops"]["no_local_port"]
            .as_u64()
            .expect("no_local_port")
    };
    let (drops_before, exhausted_before) = (drops(&lb), total(&lb, "local_ports_exhausted"));
    let mut args = client_args(VIP, &srcs, "8");
    args.extend(["--timeout", "0.5"]);
    let out = net.client(&args);
    let (dropped, exhausted) = (
        drops(&lb) - drops_before,
        total(&lb, "local_ports_exhausted") - exhausted_before,
    );
    println!(
        "on_empty = \"drop\": new connections {}, drops no_local_port +{dropped}, \
         local_ports_exhausted +{exhausted}",
        out["errors"]
    );
    assert_eq!(out["errors"]["timeout"], 8, "{}", out["errors"]);
    assert!(
        dropped >= 8 && dropped == exhausted,
        "{dropped} {exhausted}"
    );
    let v = s.finish();
    println!(
        "{} streams: {} held a port and completed, {} refused",
        HELD, v["intact"], v["broken_count"]
    );
    assert_eq!(v["intact"], 64, "{v}");
    assert_eq!(v["broken_count"], (HELD - 64) as u64, "{v}");
    for b in v["broken"].as_array().expect("broken") {
        let e = b["error"].as_str().unwrap_or("");
        assert!(e.contains("after 0 lines"), "refused at connect: {b}");
    }

    // The streams closed: their ports come back after the closing timeout and the quiet
    // time, and new connections succeed again.
    let back = wait_ports(&lb, 0, Duration::from_secs(15));
    println!(
        "every local port back {} ms after the streams ended",
        back.as_millis()
    );
    // 32 connections: however the owner hash spreads them, no worker needs more than its
    // 32 ports.
    let out = new_connections(&net, "after recovery", 32, &FEW_PORTS);
    assert_eq!(out["ok"], 32, "{}", out["errors"]);
    let v = lb.stop();
    let t = &v["totals"];
    println!(
        "local_ports_exhausted {}, drops no_local_port {}",
        t["local_ports_exhausted"], t["drops"]["no_local_port"]
    );
    assert!(
        t["local_ports_exhausted"].as_u64() >= Some((HELD - 64 + 40 + 8) as u64),
        "{t}"
    );
    assert_eq!(t["balanced"].as_bool(), Some(true), "{v}");
}

/// `head` (the balancer's part) and a FullNAT service "web" on `vip`:80 with PROXY v2 to
/// `backends` (b1, b2, ...) on :8080. Its checks connect to nginx's port without a header
/// (nginx closes them): `tcp`, not `http`.
fn proxy_v2_config(head: &str, vip: &str, backends: &[String]) -> String {
    let mut cfg = format!(
        r#"{head}
[[service]]
name = "web"
vip = "{vip}"
port = 80
forwarding = "fullnat"
proxy_protocol = "v2"

[service.health]
type = "tcp"
interval_ms = 500
timeout_ms = 450
rise = 1
fall = 5
"#
    );
    for (i, a) in backends.iter().enumerate() {
        cfg += &format!(
            "\n[[service.backend]]\nname = \"b{}\"\naddress = \"{a}\"\nport = 8080\n",
            i + 1
        );
    }
    cfg
}

/// Finds each client connection of `recs` (tests/tools/client.py's) in the access log of
/// the nginx that answered it, by the client's own address and port (what the PROXY header
/// named), with the TCP peer the client was told (`X-Peer`: the balancer's local address
/// and port); how many were found, and how many `GET /` lines the logs hold in all.
fn check_logged(what: &str, recs: &[serde_json::Value], nginx: &[Nginx]) -> (usize, usize) {
    let logs: HashMap<String, Vec<LogLine>> =
        nginx.iter().map(|n| (n.node.clone(), n.log())).collect();
    let mut matched = 0;
    for r in recs {
        let src: std::net::IpAddr = r["src"].as_str().expect("src").parse().expect("src");
        let client = SocketAddr::new(src, r["sport"].as_u64().expect("sport") as u16);
        let backend = r["backend"].as_str().expect("backend");
        let peer = peer_of(r);
        // A client port reused within the closing timeout is a second connection, from
        // another local port: the line with this one's TCP peer.
        let of_client: Vec<&LogLine> = logs[backend]
            .iter()
            .filter(|l| l.client == client && l.uri == "/")
            .collect();
        assert!(
            !of_client.is_empty(),
            "{what}: {backend}'s nginx did not log client {client}: {r}"
        );
        let line = of_client
            .iter()
            .find(|l| l.peer == peer)
            .unwrap_or_else(|| {
                panic!(
                    "{what}: {client}: the TCP peer nginx logged is not {peer} (the one the \
                     client was told): {of_client:?}"
                )
            });
        assert_eq!(line.status, 200, "{line:?}");
        matched += 1;
    }
    let logged = logs
        .values()
        .map(|l| l.iter().filter(|l| l.uri == "/").count())
        .sum();
    (matched, logged)
}

/// `len` bytes of a pattern no two offsets of which repeat within 251 bytes (a shifted or
/// reordered range would not compare equal).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed ^ (i >> 16) as u8)
        .collect()
}

/// curl in the client namespace: `args`, then `-w` of the local address and port, the
/// status and the bytes moved; the four as text.
fn curl(net: &Net, args: &[&str]) -> (SocketAddr, u16, u64) {
    let mut a = vec!["curl", "-sS", "--max-time", "30"];
    a.extend_from_slice(args);
    a.extend([
        "-w",
        "%{local_ip} %{local_port} %{http_code} %{size_upload} %{size_download}",
    ]);
    let out = net.exec("c1", &a);
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.len(), 5, "curl {args:?}: {out:?}");
    let local = format!("{}:{}", f[0], f[1]).parse().expect("local");
    let moved = f[3].parse::<u64>().expect("up") + f[4].parse::<u64>().expect("down");
    (local, f[2].parse().expect("status"), moved)
}

/// PROXY protocol v2 to a real nginx (`listen 8080 proxy_protocol`) on each backend: every
/// connection's client address and port, as the client used them, in the access log of the
/// backend that answered, beside the balancer's own address and local port as the TCP peer;
/// 1 MiB uploads (PUT, stored by nginx) and downloads intact byte for byte; a full first
/// segment; first segments lost and sent again; uploads through 2% loss (SACK).
/// FULCRUM_PROXY_V2_CONNECTIONS sets the connections (default 400).
#[test]
fn e2e_fullnat_proxy_v2_to_nginx() {
    let count = env_or("FULCRUM_PROXY_V2_CONNECTIONS", 400);
    let mut net = net("pp", 2);
    let nginx: Vec<Nginx> = ["b1", "b2"]
        .iter()
        .map(|b| net.nginx_proxy_protocol(b, 8080))
        .collect();
    const MIB: usize = 1 << 20;
    let down = pattern(MIB, 0x5a);
    for n in &nginx {
        std::fs::write(n.root.join("big.bin"), &down).expect("big.bin");
    }
    let backends = [routed::backend(1), routed::backend(2)];
    let cfg = proxy_v2_config(&header(&net, ""), VIP, &backends);
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(2);

    // Many connections, each from a new client port: placed as `which` says, each logged
    // by its backend's nginx with the client's own address and port.
    let t0 = Instant::now();
    let out = place_json(
        &net,
        &lb,
        "FullNAT PROXY v2",
        CLIENT_NET,
        VIP,
        count,
        &[("b1", 1.0), ("b2", 1.0)],
    );
    let secs = t0.elapsed().as_secs_f64();
    let recs = out["records"].as_array().expect("records");
    check_peers("PROXY v2", recs, &LOCAL_PORTS);
    let (matched, logged) = check_logged("PROXY v2", recs, &nginx);
    println!(
        "{count} connections in {secs:.1} s: {matched} of {count} logged by nginx with the \
         client's own address and port ({logged} GET / lines in all), each from {LB_ADDR} \
         and a local port as the TCP peer"
    );
    assert_eq!(matched, count);
    assert_eq!(logged, count, "one log line per connection");

    // Bulk both ways: 1 MiB up (stored by nginx), 1 MiB down, three of each.
    let up_file = net.dir.join("up.bin");
    let up = pattern(MIB, 0xa5);
    std::fs::write(&up_file, &up).expect("up.bin");
    let up_path = up_file.to_str().expect("utf-8");
    let t0 = Instant::now();
    for i in 0..3 {
        let url = format!("http://{VIP}/up/u{i}.bin");
        let (local, status, moved) = curl(&net, &["-T", up_path, &url]);
        assert!(status == 201 || status == 204, "PUT {url}: {status}");
        assert_eq!(moved, MIB as u64, "PUT {url}");
        let stored: Vec<Vec<u8>> = nginx
            .iter()
            .filter_map(|n| std::fs::read(n.root.join(format!("up/u{i}.bin"))).ok())
            .collect();
        assert_eq!(stored.len(), 1, "u{i}.bin stored by one backend");
        assert!(
            stored[0] == up,
            "u{i}.bin arrived intact ({} bytes)",
            stored[0].len()
        );
        let who = nginx
            .iter()
            .find(|n| {
                n.log()
                    .iter()
                    .any(|l| l.client == local && l.method == "PUT")
            })
            .unwrap_or_else(|| panic!("no nginx logged the PUT from {local}"));
        println!(
            "PUT 1 MiB from {local}: {status}, stored intact by {}",
            who.node
        );
        let dl = net.dir.join(format!("down{i}.bin"));
        let url = format!("http://{VIP}/big.bin");
        let (local, status, moved) = curl(&net, &["-o", dl.to_str().expect("utf-8"), &url]);
        assert_eq!((status, moved), (200, MIB as u64), "GET {url}");
        assert!(
            std::fs::read(&dl).expect("download") == down,
            "download {i} intact"
        );
        let logged = nginx
            .iter()
            .flat_map(|n| n.log())
            .any(|l| l.client == local && l.uri == "/big.bin" && l.bytes_sent > MIB as u64);
        assert!(logged, "GET from {local} logged with its client address");
        println!("GET 1 MiB from {local}: intact, logged with the client's address");
    }
    println!(
        "3 uploads and 3 downloads of 1 MiB in {:.1} s, every byte intact",
        t0.elapsed().as_secs_f64()
    );

    // A first segment as full as the MSS allows (a request with a 4 KiB header, as a TLS
    // ClientHello with a large key share can be): it fits the MTU with the header in it
    // only because the SYN-ACK's MSS reached the client lowered by the header's length.
    let fill = format!("X-Fill: {}", "f".repeat(4096));
    let t0 = Instant::now();
    for _ in 0..3 {
        let url = format!("http://{VIP}/");
        let (local, status, _) = curl(&net, &["-o", "/dev/null", "-H", &fill, &url]);
        assert_eq!(status, 200, "GET with a full first segment from {local}");
        let line = nginx
            .iter()
            .flat_map(|n| n.log())
            .find(|l| l.client == local)
            .unwrap_or_else(|| panic!("no nginx logged {local}"));
        assert!(line.request_length > 4096, "{line:?}");
        println!(
            "GET with a full first segment from {local}: 200 in {} ms, logged with the \
             client's address ({} bytes of request)",
            t0.elapsed().as_millis(),
            line.request_length
        );
    }

    // Loss between the router and the backends (nftables in the router's forward hook).
    // Every second segment toward a backend that starts with the PROXY v2 signature (after
    // a 32-byte TCP header: Linux's timestamps) is dropped: with one client at a time, each
    // connection's first data segment is lost once, and only its retransmission, which
    // must carry the header again, reaches nginx.
    const FIRST: usize = 10;
    net.nft(
        "rt",
        &format!(
            "table inet pploss {{\n counter first_dropped {{ }}\n chain loss {{\n  \
             type filter hook forward priority 0; policy accept;\n  \
             ip daddr {} tcp dport 8080 @th,256,32 0x0d0a0d0a numgen inc mod 2 == 0 \
             counter name \"first_dropped\" drop\n }}\n}}\n",
            routed::BACKENDS
        ),
    );
    let t0 = Instant::now();
    for _ in 0..FIRST {
        let url = format!("http://{VIP}/");
        let (local, status, _) = curl(&net, &["-o", "/dev/null", &url]);
        assert_eq!(
            status, 200,
            "GET from {local} after its first segment was lost"
        );
        let logged = nginx
            .iter()
            .flat_map(|n| n.log())
            .any(|l| l.client == local && l.uri == "/");
        assert!(
            logged,
            "{local}: the retransmitted first segment carried the header"
        );
    }
    let dropped = net.nft_counter("rt", "pploss", "first_dropped");
    println!(
        "{FIRST} connections whose first data segment was dropped ({dropped} dropped in all) \
         in {} ms: each retransmission carried the header, nginx logged every client",
        t0.elapsed().as_millis()
    );
    assert_eq!(
        dropped, FIRST as u64,
        "one first segment dropped per connection"
    );
    net.nft_delete("rt", "pploss");

    // 2% of the segments toward the backends dropped during 1 MiB uploads: the backends'
    // SACK blocks (in the shifted sequence space) reach the client shifted back, which its
    // kernel uses (`TcpExtTCPSackRecovery`) and never discards as invalid
    // (`TcpExtTCPSACKDiscard`: blocks beyond what it sent, as unshifted ones would be).
    net.nft(
        "rt",
        &format!(
            "table inet pploss {{\n counter lossy_dropped {{ }}\n chain loss {{\n  \
             type filter hook forward priority 0; policy accept;\n  \
             ip daddr {} tcp dport 8080 numgen random mod 50 == 0 \
             counter name \"lossy_dropped\" drop\n }}\n}}\n",
            routed::BACKENDS
        ),
    );
    let before = net.tcp_counters("c1");
    let t0 = Instant::now();
    for i in 0..5 {
        let url = format!("http://{VIP}/up/lossy{i}.bin");
        let (local, status, moved) = curl(&net, &["-T", up_path, &url]);
        assert!(
            status == 201 || status == 204,
            "PUT {url} from {local}: {status}"
        );
        assert_eq!(moved, MIB as u64, "PUT {url}");
        let stored: Vec<Vec<u8>> = nginx
            .iter()
            .filter_map(|n| std::fs::read(n.root.join(format!("up/lossy{i}.bin"))).ok())
            .collect();
        assert!(stored.len() == 1 && stored[0] == up, "lossy{i}.bin intact");
    }
    let after = net.tcp_counters("c1");
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    let dropped = net.nft_counter("rt", "pploss", "lossy_dropped");
    let (retrans, recoveries, discarded) = (
        delta("TcpRetransSegs"),
        delta("TcpExtTCPSackRecovery"),
        delta("TcpExtTCPSACKDiscard"),
    );
    println!(
        "5 uploads of 1 MiB with 2% loss toward the backends in {} ms, intact: {dropped} \
         segments dropped, client retransmitted {retrans}, SACK recoveries {recoveries}, SACK \
         blocks discarded as invalid {discarded}",
        t0.elapsed().as_millis()
    );
    assert!(dropped > 0 && recoveries > 0, "the loss made SACK work");
    assert_eq!(discarded, 0, "every SACK block the client got was valid");
    net.nft_delete("rt", "pploss");

    let v = lb.stop();
    let t = &v["totals"];
    println!(
        "proxy_v2_too_big {}, drops {}",
        t["drops"]["proxy_v2_too_big"], t["drops"]
    );
    assert_eq!(t["balanced"].as_bool(), Some(true), "{v}");
    assert_eq!(t["drops"]["proxy_v2_too_big"], 0, "{t}");
}

/// PROXY protocol v2 over IPv6 (the 52-byte header) to a real nginx on each backend, in the
/// tunnelled layout's IPv6 (clients fd68::101-104, VIP fd69::100, backends fd67::11-12,
/// the balancer fd66::2 as the local address): every connection's client address and port
/// in the access log of the backend that answered.
#[test]
fn e2e_fullnat_proxy_v2_ipv6_to_nginx() {
    let count = env_or("FULCRUM_PROXY_V2_CONNECTIONS", 400);
    const VIP6: &str = "fd69::100";
    let mut net = Net::tunnelled("p6", 2);
    let nginx: Vec<Nginx> = ["b1", "b2"]
        .iter()
        .map(|b| net.nginx_proxy_protocol(b, 8080))
        .collect();
    let backends = [backend_v6(1), backend_v6(2)];
    let cfg = proxy_v2_config(&net.tunnelled_config(), VIP6, &backends);
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(2);
    let t0 = Instant::now();
    let out = place_json(
        &net,
        &lb,
        "FullNAT PROXY v2 IPv6",
        "fd68",
        VIP6,
        count,
        &[("b1", 1.0), ("b2", 1.0)],
    );
    let secs = t0.elapsed().as_secs_f64();
    let recs = out["records"].as_array().expect("records");
    check_peers_from("PROXY v2 IPv6", recs, &LOCAL_PORTS, LB_ADDR_V6);
    let (matched, logged) = check_logged("PROXY v2 IPv6", recs, &nginx);
    println!(
        "IPv6: {count} connections in {secs:.1} s: {matched} of {count} logged by nginx with \
         the client's own address and port ({logged} GET / lines in all), each from \
         {LB_ADDR_V6} and a local port as the TCP peer"
    );
    assert_eq!(matched, count);
    assert_eq!(logged, count, "one log line per connection");
    let v = lb.stop();
    let t = &v["totals"];
    assert_eq!(t["balanced"].as_bool(), Some(true), "{v}");
    assert_eq!(t["drops"]["proxy_v2_too_big"], 0, "{t}");
}

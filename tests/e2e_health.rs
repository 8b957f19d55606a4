//! Health checks end to end: Fulcrum on DPDK (net_af_packet) in a network namespace, real
//! backends (tests/tools/backend.py) and real kernel TCP clients in others (testkit's `Net`).
//! Backends have no MAC in the config: ARP finds them.
//!
//! - a stopped server (refuses) and a frozen one (SIGSTOP: handshakes complete, requests
//!   time out) take no new flows within interval x fall + 1 s, the others are untouched,
//!   and each comes back within interval x rise + 1 s of being restarted or thawed;
//! - with every backend down, a SYN is answered with a RST at once, and the pool hook
//!   reports empty / nonempty;
//! - an agent's "drain" stops new flows while an open connection keeps working; "N%" sets
//!   the weight;
//! - an IPv6 backend without a MAC is found by neighbour discovery and its check comes up.
//!
//! Timing bounds are checked against the start times of client requests made every few ms.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::{Answer, Balancer, Client, KeepAlive, Net, VIP};

const INTERVAL_MS: u64 = 500;
const RISE: u64 = 2;
const FALL: u64 = 2;
/// Time to notice a dead backend: `fall` checks, plus the 1 s the requirement allows for the
/// timeout of the last check, scheduling and publication.
const DETECT: Duration = Duration::from_millis(INTERVAL_MS * FALL + 1000);
/// Time to take a revived backend back: `rise` checks plus 1 s.
const REVIVE: Duration = Duration::from_millis(INTERVAL_MS * RISE + 1000);
/// Client request timeout: a frozen backend's requests end here.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);

fn vip() -> SocketAddr {
    format!("{VIP}:80").parse().expect("vip")
}

fn config(net: &Net, health: &str, service_extra: &str) -> String {
    let mut backends = String::new();
    for i in 1..=net.backends {
        backends += &format!(
            "[[service.backend]]\nname = \"b{i}\"\naddress = \"10.66.0.{}\"\n",
            10 + i
        );
    }
    let header = net.balancer_config(&["10.66.0.2/24"]);
    format!(
        r#"{header}
[[service]]
name = "web"
vip = "{VIP}"
port = 80
{service_extra}

[service.health]
interval_ms = {INTERVAL_MS}
timeout_ms = 300
rise = {RISE}
fall = {FALL}
{health}

{backends}
"#
    )
}

/// Requests on new connections, one after the other with `gap` between them, for `span`
/// from `t0`; each with its start time relative to `t0`.
fn probe(net: &Net, t0: Instant, span: Duration, gap: Duration) -> Vec<(Duration, Answer)> {
    let mut client = Client::new(&net.ns("c1"));
    let mut out = Vec::new();
    while t0.elapsed() < span {
        let at = t0.elapsed();
        out.push((at, client.request(vip(), REQUEST_TIMEOUT)));
        std::thread::sleep(gap);
    }
    out
}

/// Waits (bounded) until new connections reach each of `names`.
fn wait_for(net: &Net, names: &[&str]) {
    let mut client = Client::new(&net.ns("c1"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<String> = Vec::new();
    while Instant::now() < deadline && !names.iter().all(|n| seen.iter().any(|s| s == n)) {
        if let Answer::Backend(b) = client.request(vip(), REQUEST_TIMEOUT) {
            if !seen.contains(&b) {
                seen.push(b);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !names.iter().all(|n| seen.iter().any(|s| s == n)) {
        panic!("only {seen:?} answered within 20 s");
    }
}

/// A kept-alive connection that landed on backend `name`.
fn keep_alive_to(net: &Net, name: &str) -> KeepAlive {
    for _ in 0..100 {
        let mut k = KeepAlive::open(&net.ns("c1"), vip());
        if k.get() == Answer::Backend(name.into()) {
            return k;
        }
    }
    panic!("no connection landed on {name} in 100 tries");
}

/// After `bound`, every request reached a backend other than `gone`. Returns the start of
/// the last request that did not (failed or reached `gone`), for the report.
fn gone_after(rec: &[(Duration, Answer)], gone: &str, bound: Duration) -> Option<Duration> {
    let late: Vec<_> = rec.iter().filter(|(at, _)| *at >= bound).collect();
    assert!(
        late.len() >= 10,
        "too few requests after {bound:?}: {rec:?}"
    );
    for (at, a) in &late {
        match a {
            Answer::Backend(b) if b != gone => {}
            other => panic!("request at {at:?} (after {bound:?}) got {other:?}:\n{rec:?}"),
        }
    }
    rec.iter()
        .rev()
        .find(|(_, a)| !matches!(a, Answer::Backend(b) if b != gone))
        .map(|(at, _)| *at)
}

/// The start of the first request `name` answered; it must be within `bound`.
fn back_within(rec: &[(Duration, Answer)], name: &str, bound: Duration) -> Duration {
    let first = rec
        .iter()
        .find(|(_, a)| *a == Answer::Backend(name.into()))
        .map(|(at, _)| *at);
    match first {
        Some(at) if at <= bound => at,
        _ => panic!("{name} not back within {bound:?}:\n{rec:?}"),
    }
}

#[test]
fn e2e_health_stop_freeze_and_recover() {
    let mut net = Net::up("sf", 3);
    let lb = Balancer::start(&net, &config(&net, "type = \"http\"\npath = \"/\"", ""));
    wait_for(&net, &["b1", "b2", "b3"]);
    let mut b1 = keep_alive_to(&net, "b1");
    let gap = Duration::from_millis(20);

    // Stopped: the backend's kernel refuses.
    net.stop(2);
    let t0 = Instant::now();
    let rec = probe(&net, t0, DETECT + Duration::from_millis(1500), gap);
    let last = gone_after(&rec, "b2", DETECT);
    assert_eq!(
        b1.get(),
        Answer::Backend("b1".into()),
        "b1's open connection"
    );
    println!("stopped b2: last request to it started {last:?} after the stop (bound {DETECT:?})");

    net.start(2);
    let t1 = Instant::now();
    let rec = probe(&net, t1, REVIVE + Duration::from_millis(500), gap);
    let back = back_within(&rec, "b2", REVIVE);
    println!("restarted b2: first request to it {back:?} after it listened (bound {REVIVE:?})");

    // Frozen: handshakes complete, requests time out; so do the checks.
    net.freeze(3, true);
    let t2 = Instant::now();
    let rec = probe(&net, t2, DETECT + Duration::from_millis(1500), gap);
    let last = gone_after(&rec, "b3", DETECT);
    assert_eq!(
        b1.get(),
        Answer::Backend("b1".into()),
        "b1's open connection"
    );
    println!("froze b3: last request to it started {last:?} after the freeze (bound {DETECT:?})");

    net.freeze(3, false);
    let t3 = Instant::now();
    let rec = probe(&net, t3, REVIVE + Duration::from_millis(500), gap);
    let back = back_within(&rec, "b3", REVIVE);
    println!("thawed b3: first request to it {back:?} after the thaw (bound {REVIVE:?})");

    let v = lb.stop();
    let sp = &v["slowpath"];
    assert_eq!(
        sp["neighbors_learnt"].as_u64(),
        Some(3),
        "ARP found every backend: {sp}"
    );
    assert_eq!(sp["checks_not_started"].as_u64(), Some(0), "{sp}");
    let states: Vec<&str> = sp["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["up", "up", "up"], "{sp}");
    assert_eq!(
        v["totals"]["balanced"].as_bool(),
        Some(true),
        "{}",
        v["totals"]
    );
    println!(
        "publications {}, publish -> first packet {}",
        sp["publications"], sp["publish_to_first_packet_us"]
    );
}

#[test]
fn e2e_health_all_down_refuses_at_once() {
    let net = Net::up("ad", 2);
    let hook_log = net.dir.join("hook.log");
    let state_file = net.dir.join("web.state");
    let extra = format!(
        "on_change = \"echo $FULCRUM_SERVICE $FULCRUM_STATE $FULCRUM_BACKENDS >> {}\"\nstate_file = \"{}\"",
        hook_log.display(),
        state_file.display()
    );
    let lb = Balancer::start(&net, &config(&net, "type = \"http\"", &extra));
    wait_for(&net, &["b1", "b2"]);

    // Frozen backends would complete the handshake themselves: a refusal can only be the
    // balancer's RST for an empty pool.
    net.freeze(1, true);
    net.freeze(2, true);
    let t0 = Instant::now();
    std::thread::sleep(DETECT);
    let mut client = Client::new(&net.ns("c1"));
    let refusals = (0..20)
        .map(|_| {
            let t = Instant::now();
            let a = client.request(vip(), Duration::from_secs(2));
            let took = t.elapsed();
            std::thread::sleep(Duration::from_millis(10));
            (a, took)
        })
        .collect::<Vec<_>>();
    for (a, took) in &refusals {
        assert_eq!(*a, Answer::Refused, "{refusals:?}");
        assert!(
            *took < Duration::from_millis(200),
            "refused only after {took:?}"
        );
    }
    let slowest = refusals.iter().map(|r| r.1).max().unwrap_or_default();
    println!(
        "all down: 20 SYNs refused, slowest in {slowest:?}, starting {:?} after the freeze",
        t0.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(&state_file).ok().as_deref(),
        Some("empty\n")
    );

    net.freeze(1, false);
    net.freeze(2, false);
    wait_for(&net, &["b1", "b2"]);
    let v = lb.stop();
    let t = &v["totals"];
    assert!(
        t["resets"].as_u64().unwrap_or(0) >= 20,
        "every SYN got a RST: {t}"
    );
    assert_eq!(
        std::fs::read_to_string(&state_file).ok().as_deref(),
        Some("nonempty\n")
    );
    // The hook saw: empty at start (nothing checked yet), nonempty, empty, nonempty.
    let log = std::fs::read_to_string(&hook_log).unwrap_or_default();
    let states: Vec<&str> = log
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap_or("?"))
        .collect();
    assert_eq!(states, ["empty", "nonempty", "empty", "nonempty"], "{log}");
    assert!(log.lines().all(|l| l.starts_with("web ")), "{log}");
}

#[test]
fn e2e_health_agent_drain_keeps_open_connections() {
    let net = Net::up("ag", 3);
    let lb = Balancer::start(&net, &config(&net, "type = \"agent\"\nport = 5555", ""));
    wait_for(&net, &["b1", "b2", "b3"]);
    let mut open = keep_alive_to(&net, "b2");
    let gap = Duration::from_millis(20);

    // One agent reply is enough: drain is the backend's own word, not a failure to count.
    net.agent(2, "drain");
    let t0 = Instant::now();
    let bound = Duration::from_millis(INTERVAL_MS + 1000);
    let rec = probe(&net, t0, bound + Duration::from_millis(1500), gap);
    let last = gone_after(&rec, "b2", bound);
    for _ in 0..5 {
        assert_eq!(
            open.get(),
            Answer::Backend("b2".into()),
            "the open connection to b2"
        );
    }
    println!("b2 drained: last new connection to it started {last:?} after the agent said so");

    net.agent(2, "up");
    let t1 = Instant::now();
    let rec = probe(&net, t1, REVIVE + Duration::from_millis(500), gap);
    back_within(&rec, "b2", REVIVE);

    // A weight: b1 at 10% of its weight takes about 10/210 of new connections.
    net.agent(1, "up 10%");
    std::thread::sleep(Duration::from_millis(INTERVAL_MS + 500));
    let rec = probe(
        &net,
        Instant::now(),
        Duration::from_secs(4),
        Duration::from_millis(5),
    );
    let ok: Vec<&String> = rec
        .iter()
        .filter_map(|(_, a)| match a {
            Answer::Backend(b) => Some(b),
            _ => None,
        })
        .collect();
    let b1 = ok.iter().filter(|b| b.as_str() == "b1").count() as f64 / ok.len() as f64;
    assert!(ok.len() >= 100, "{} answers", ok.len());
    assert!(b1 < 0.15, "b1 took {:.0}% at 10% weight", b1 * 100.0);
    println!(
        "b1 at 10% weight: {:.1}% of {} connections",
        b1 * 100.0,
        ok.len()
    );

    let v = lb.stop();
    let sp = &v["slowpath"];
    assert_eq!(sp["neighbors_learnt"].as_u64(), Some(3), "{sp}");
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

/// A config for the `bulk` backends of [`Net::bulk`]: one service per `(name, port, health)`,
/// every address a backend of each, the balancer's port in 10.66.0.0/16.
fn bulk_config(net: &Net, addrs: &[String], services: &[(&str, u16, &str)]) -> String {
    let mut text = net.balancer_config(&["10.66.0.2/16"]);
    for (si, (name, port, health)) in services.iter().enumerate() {
        text += &format!(
            "\n[[service]]\nname = \"{name}\"\nvip = \"10.66.0.{}\"\nport = {port}\n\n[service.health]\n{health}\n",
            100 + si
        );
        for (i, a) in addrs.iter().enumerate() {
            text += &format!("[[service.backend]]\nname = \"n{i}\"\naddress = \"{a}\"\n");
        }
    }
    text
}

/// The report's backend states, counted.
fn states(v: &serde_json::Value) -> std::collections::BTreeMap<(String, String), usize> {
    let mut m = std::collections::BTreeMap::new();
    for b in v["slowpath"]["backends"].as_array().expect("backends") {
        let key = (
            b["service"].as_str().unwrap_or("?").to_owned(),
            b["state"].as_str().unwrap_or("?").to_owned(),
        );
        *m.entry(key).or_default() += 1;
    }
    m
}

/// One slow-path core checks 1000 backends every second (HTTP checks, addresses learnt by
/// ARP), with CPU to spare: the report gives the CPU time the slow path's thread used.
#[test]
fn e2e_health_thousand_backends_one_core() {
    const N: usize = 1000;
    const RUN: Duration = Duration::from_secs(12);
    let mut net = Net::up("th", 0);
    let addrs = net.bulk(N, false);
    let health = "type = \"http\"\ninterval_ms = 1000\ntimeout_ms = 500\nrise = 2\nfall = 3";
    let lb = Balancer::start(&net, &bulk_config(&net, &addrs, &[("many", 80, health)]));
    std::thread::sleep(RUN);
    let log = lb.log();
    let v = lb.stop();
    let sp = &v["slowpath"];
    let finished = sp["checks_finished"].as_u64().unwrap_or(0);
    let failures = sp["check_failures"].as_u64().unwrap_or(0);
    let cpu = sp["cpu_s"].as_f64().unwrap_or(f64::NAN);
    let elapsed = v["elapsed_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "{N} backends, 1 s interval: {finished} checks in {elapsed:.1} s ({:.0}/s), {failures} \
         failed, slow path CPU {cpu:.2} s ({:.0}% of one core, {:.0} checks per CPU-second), at \
         most {} in flight, {} publications (build p50 {} us), ARP learnt {}",
        finished as f64 / elapsed,
        cpu / elapsed * 100.0,
        finished as f64 / cpu,
        sp["checks_max_in_flight"],
        sp["publications"],
        sp["build_us"]["p50"],
        sp["neighbors_learnt"],
    );
    let st = states(&v);
    assert_eq!(
        st.get(&("many".into(), "up".into())).copied(),
        Some(N),
        "{st:?}\n{log}"
    );
    assert_eq!(sp["neighbors_learnt"].as_u64(), Some(N as u64), "{sp}");
    // Every backend checked about once a second: at least 90% of the ideal count.
    let ideal = N as f64 * (elapsed - 1.0);
    assert!(
        finished as f64 >= 0.9 * ideal,
        "{finished} checks, ideal {ideal:.0}"
    );
    assert!(
        failures * 100 <= finished,
        "{failures} of {finished} failed"
    );
    assert!(
        cpu / elapsed < 0.8,
        "the slow path needed {cpu:.2} s of CPU in {elapsed:.1} s"
    );
    assert_eq!(sp["checks_not_started"].as_u64(), Some(0), "{sp}");
}

/// tls-hello against a real TLS server (Python's ssl, OpenSSL) is up; against a plain HTTP
/// port it is down (no ServerHello: the server waits for an HTTP request and the check
/// times out). An http check that expects 404 fails on a 200.
#[test]
fn e2e_health_tls_hello_and_http_status() {
    let mut net = Net::up("tl", 0);
    let addrs = net.bulk(3, true);
    let tls = "type = \"tls-hello\"\nsni = \"backend\"\ninterval_ms = 300\ntimeout_ms = 200";
    let wrong = "type = \"tls-hello\"\ninterval_ms = 300\ntimeout_ms = 200";
    let not_found = "type = \"http\"\nexpect_status = \"404\"\ninterval_ms = 300\ntimeout_ms = 200";
    let cfg = bulk_config(
        &net,
        &addrs,
        &[
            ("tls", 443, tls),
            ("plain", 80, wrong),
            ("status", 80, not_found),
        ],
    );
    let lb = Balancer::start(&net, &cfg);
    std::thread::sleep(Duration::from_secs(3));
    let v = lb.stop();
    let st = states(&v);
    let count = |s: &str, state: &str| st.get(&(s.into(), state.into())).copied();
    assert_eq!(count("tls", "up"), Some(3), "{st:?}");
    assert_eq!(count("plain", "down"), Some(3), "{st:?}");
    assert_eq!(count("status", "down"), Some(3), "{st:?}");
}

/// An IPv6 backend without a MAC in the config: Fulcrum finds it by neighbour discovery
/// (a solicitation from its own IPv6 address, the backend's kernel advertises), and its
/// TCP check, from the balancer's IPv6 address, comes up.
#[test]
fn e2e_health_ipv6_backend_resolved_by_nd() {
    let net = Net::up("nd", 1);
    net.exec(
        "b1",
        &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"],
    );
    net.exec(
        "b1",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "fd66::11/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    // Plain HTTP on [::]:8080 (backend.py speaks IPv4 only).
    let server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.ns("b1"),
            "python3",
            "-m",
            "http.server",
        ])
        .args(["--bind", "::", "8080"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("http.server");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server);
    let header = net.balancer_config(&["10.66.0.2/24", "fd66::2/64"]);
    let cfg = format!(
        r#"{header}
[[service]]
name = "v6"
vip = "fd66::100"
port = 8080

[service.health]
type = "tcp"
interval_ms = 300
timeout_ms = 200
rise = 2
fall = 2

[[service.backend]]
name = "b1"
address = "fd66::11"
"#
    );
    let lb = Balancer::start(&net, &cfg);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lb.log().contains("neighbour learnt") || !lb.log().contains("to=\"up\"") {
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // b1's interface takes a new MAC and (ndisc_notify) announces it to all-nodes. The
    // old MAC reaches nobody: without the announcement, the checks (every 300 ms, fall 2)
    // would go there and take b1 down well within the 2 s waited here, until the next
    // confirmation (30 s).
    net.exec(
        "b1",
        &["sysctl", "-qw", "net.ipv6.conf.eth0.ndisc_notify=1"],
    );
    net.exec(
        "b1",
        &[
            "ip",
            "link",
            "set",
            "dev",
            "eth0",
            "address",
            "02:fc:00:00:00:91",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = lb.log();
    let v = lb.stop();
    let sp = &v["slowpath"];
    assert_eq!(
        sp["neighbors_learnt"].as_u64(),
        Some(1),
        "ND found the backend: {sp}\n{log}"
    );
    assert_eq!(
        sp["neighbors_changed"].as_u64(),
        Some(1),
        "the announced MAC replaced the old one: {sp}\n{log}"
    );
    assert!(
        !log.contains("from=\"up\" to=\"down\""),
        "b1 stayed up across its MAC change:\n{log}"
    );
    assert_eq!(sp["nd_invalid"].as_u64(), Some(0), "{sp}");
    assert!(sp["frames_nd"].as_u64() >= Some(1), "{sp}");
    let st = states(&v);
    assert_eq!(
        st.get(&("v6".into(), "up".into())).copied(),
        Some(1),
        "{st:?}\n{sp}\n{log}"
    );
}

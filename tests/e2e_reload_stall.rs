//! A reload never stalls the slow path: while a 20,000-error config (about 1 MB) is read and
//! refused (before: read and validated on the slow-path loop, in quadratic time), health checks keep their interval and `status` answers within 100 ms; the
//! refusal is bounded; a second reload asked meanwhile is answered too. A valid reload's
//! Maglev tables are built on the reload thread, not on the loop: the loop's apply takes
//! less than half the time the tables took. Real kernel backends in network namespaces,
//! Fulcrum on `net_af_packet`.

mod netns;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use netns::{Balancer, Net, VIP};

const INTERVAL_MS: u64 = 200;

fn config(net: &Net, sock: &Path) -> String {
    let mut backends = String::new();
    for i in 1..=net.backends {
        backends += &format!(
            "[[service.backend]]\nname = \"b{i}\"\naddress = \"10.66.0.{}\"\n",
            10 + i
        );
    }
    format!(
        r#"
[dpdk]
eal_args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "{prefix}", "--log-level", "*:warning"]
workers = [1]
slowpath_cpu = 0
mbufs = 8191
idle_sleep_us = 100

[global]
flow_table_capacity = 65536
control_socket = "{sock}"

[[port]]
name = "lan"
device = "net_af_packet0,iface=lb0"
addresses = ["10.66.0.2/24"]

[[service]]
name = "web"
vip = "{VIP}"
port = 80

[service.health]
interval_ms = {INTERVAL_MS}
timeout_ms = 100
rise = 1
fall = 3

{backends}
"#,
        prefix = Balancer::eal_prefix(net),
        sock = sock.display(),
    )
}

/// `base` with `errors` errors after it: backends with a bad address and a weight of 0
/// (every 100th address a 4 KiB string).
fn broken(base: &str, errors: usize) -> String {
    let mut s = base.to_owned();
    let long = "x".repeat(4096);
    for i in 0..errors / 2 {
        let address = if i % 100 == 0 {
            long.clone()
        } else {
            format!("10.66.{}.{}.9", i / 250, i % 250)
        };
        s.push_str(&format!(
            "[[service.backend]]\nname = \"x{i}\"\naddress = \"{address}\"\nweight = 0\n"
        ));
    }
    s
}

fn send(sock: &Path, cmd: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).expect("control socket");
    s.write_all(format!("{{\"cmd\":\"{cmd}\"}}\n").as_bytes())
        .expect("send");
    s
}

fn call(sock: &Path, cmd: &str) -> serde_json::Value {
    let mut s = send(sock, cmd);
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("{cmd}: no reply within 5 s: {e}"));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Checks completed per backend.
fn checks(sock: &Path) -> Vec<u64> {
    let v = call(sock, "backends");
    v["data"]["services"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["checks"].as_u64().unwrap_or(0))
        .collect()
}

/// The reply on `s` if it has come (non-blocking).
fn reply(s: &mut UnixStream, buf: &mut Vec<u8>) -> Option<serde_json::Value> {
    s.set_nonblocking(true).ok();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) => panic!("reload reply: {e}"),
        }
    }
    Some(serde_json::from_slice(buf).expect("reload reply is JSON"))
}

#[test]
fn e2e_reload_of_a_huge_broken_config_does_not_stall_checks_or_status() {
    let net = Net::up("rs", 2);
    let sock = net.dir.join("ctl.sock");
    let base = config(&net, &sock);
    let lb = Balancer::start(&net, &base);

    // Both backends checked a few times first.
    let deadline = Instant::now() + Duration::from_secs(20);
    while checks(&sock).iter().any(|&c| c < 3) {
        assert!(Instant::now() < deadline, "no checks:\n{}", lb.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    let text = broken(&base, 20_000);
    std::fs::write(net.dir.join("fulcrum.toml"), &text).expect("write config");
    let started = Instant::now();
    let mut first = send(&sock, "reload");
    // A second reload while the first is in flight is answered by the next read.
    let mut second = send(&sock, "reload");
    let (mut buf1, mut buf2) = (Vec::new(), Vec::new());
    let (mut r1, mut r2) = (None, None);
    let mut status_ms: Vec<f64> = Vec::new();
    let mut last = checks(&sock);
    let mut last_change = vec![Instant::now(); last.len()];
    let mut max_gap = Duration::ZERO;
    while r1.is_none() || r2.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "reload did not answer:\n{}",
            lb.log()
        );
        let t = Instant::now();
        let status = call(&sock, "status");
        status_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status["ok"], true, "{status}");
        let now_checks = checks(&sock);
        for (i, (&a, &b)) in last.iter().zip(&now_checks).enumerate() {
            if b > a {
                max_gap = max_gap.max(last_change[i].elapsed());
                last_change[i] = Instant::now();
            }
        }
        last = now_checks;
        if r1.is_none() {
            r1 = reply(&mut first, &mut buf1).map(|v| (v, started.elapsed()));
        }
        if r2.is_none() {
            r2 = reply(&mut second, &mut buf2).map(|v| (v, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for at in &last_change {
        max_gap = max_gap.max(at.elapsed());
    }
    let (r1, t1) = r1.expect("first reply");
    let (r2, t2) = r2.expect("second reply");
    let worst = status_ms.iter().copied().fold(0.0, f64::max);
    println!(
        "config {} KiB; first reload refused after {:.0} ms, second after {:.0} ms; {} status \
         calls during them, slowest {worst:.1} ms; longest gap between completed checks of a \
         backend {:.0} ms (interval {INTERVAL_MS} ms); replies {} and {} bytes",
        text.len() / 1024,
        t1.as_secs_f64() * 1e3,
        t2.as_secs_f64() * 1e3,
        status_ms.len(),
        max_gap.as_secs_f64() * 1e3,
        buf1.len(),
        buf2.len()
    );
    for r in [&r1, &r2] {
        assert_eq!(r["ok"], false, "{r}");
        let e = r["error"].as_str().expect("error");
        assert!(e.contains("reload refused"), "{e}");
        assert!(e.contains("more error(s)"), "{e}");
    }
    assert!(buf1.len() < 64 * 1024, "reply of {} bytes", buf1.len());
    assert!(
        status_ms.len() >= 3,
        "the reload was over before it was measured"
    );
    assert!(worst < 100.0, "status took {worst:.1} ms during a reload");
    assert!(
        max_gap < Duration::from_millis(2 * INTERVAL_MS + 200),
        "checks stalled for {max_gap:?}"
    );
    // The running config serves on.
    assert_eq!(call(&sock, "status")["data"]["services"], 1);
    lb.stop();
}

/// `base` with 655,373-slot Maglev tables and `n` more services of two unchecked backends.
fn many_large_tables(base: &str, n: usize) -> String {
    let mut s = base.replace(
        "flow_table_capacity = 65536",
        "flow_table_capacity = 65536\nmaglev_table_size = 655373",
    );
    for i in 0..n {
        s.push_str(&format!(
            "\n[[service]]\nname = \"s{i}\"\nvip = \"{VIP}\"\nport = {}\n",
            1000 + i
        ));
        for b in 1..=2 {
            s.push_str(&format!(
                "[[service.backend]]\nname = \"s{i}b{b}\"\naddress = \"10.66.0.{}\"\n",
                10 + b
            ));
        }
    }
    s
}

/// The value of `key=` in the last log line that says `what`.
fn logged(log: &str, what: &str, key: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains(what))?;
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split(' ').next()?.parse().ok()
}

#[test]
fn e2e_reload_builds_maglev_tables_off_the_loop() {
    let net = Net::up("rt", 2);
    let sock = net.dir.join("ctl.sock");
    let base = config(&net, &sock);
    let lb = Balancer::start(&net, &base);
    let deadline = Instant::now() + Duration::from_secs(20);
    while checks(&sock).iter().any(|&c| c < 1) {
        assert!(Instant::now() < deadline, "no checks:\n{}", lb.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    const SERVICES: usize = 24;
    let text = many_large_tables(&base, SERVICES);
    std::fs::write(net.dir.join("fulcrum.toml"), &text).expect("write config");
    let started = Instant::now();
    let mut s = send(&sock, "reload");
    let mut buf = Vec::new();
    let mut status_ms: Vec<f64> = Vec::new();
    let reply = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reload did not answer:\n{}",
            lb.log()
        );
        if let Some(v) = reply(&mut s, &mut buf) {
            break v;
        }
        let t = Instant::now();
        assert_eq!(call(&sock, "status")["ok"], true);
        status_ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    assert_eq!(reply["ok"], true, "{reply}");
    let services = reply["data"]["services"].as_array().expect("services");
    let added = services.iter().filter(|s| s["change"] == "added").count();
    assert_eq!(added, SERVICES, "{reply}");
    assert_eq!(call(&sock, "status")["data"]["services"], SERVICES + 1);

    let log = lb.log();
    let read_ms = logged(&log, " reloaded", "read_ms").expect("read_ms logged");
    let prepare_ms = logged(&log, " reloaded", "prepare_ms").expect("prepare_ms logged");
    let apply_ms = logged(&log, " reloaded", "apply_ms").expect("apply_ms logged");
    let worst = status_ms.iter().copied().fold(0.0, f64::max);
    println!(
        "{} services x 655,373-slot tables: reload answered after {:.0} ms; read {read_ms} ms, \
         tables prepared on the reload thread {prepare_ms} ms, applied on the loop \
         {apply_ms} ms; {} status calls meanwhile, slowest {worst:.1} ms",
        SERVICES + 1,
        took.as_secs_f64() * 1e3,
        status_ms.len(),
    );
    // Building the tables on the loop would cost it at least the prepare time again; what
    // the apply still does is copy the tables into the snapshot and install it.
    assert!(prepare_ms >= 50, "too little to build: {prepare_ms} ms");
    assert!(
        apply_ms * 2 < prepare_ms,
        "the loop's apply ({apply_ms} ms) is not small next to building the tables \
         ({prepare_ms} ms): were they built again on the loop?"
    );
    lb.stop();
}

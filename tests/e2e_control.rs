//! Operating a running Fulcrum end to end (scripts/testbed.sh namespaces, real kernel TCP):
//!
//! - live reload: a backend added and weights changed while a request loop runs (no failed
//!   request) and a long-lived `GET /stream` connection runs through it; a backend removed
//!   while that stream (to another backend) keeps flowing; a broken file refused with its
//!   line named, by `ctl reload` and by SIGHUP, the old config serving on;
//! - `ctl which` names the backend every live connection actually reached;
//! - `ctl drain` stops new flows to a backend while its open connection runs to completion;
//! - the Prometheus endpoint parses as the text format and agrees with `ctl stats`.

mod common;

use std::collections::HashMap;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::outcome::*;
use common::testbed::{Balancer, Testbed, testbed_config};
use common::{Scratch, fulcrum};

const DSR_VIP: &str = "10.77.0.100";

/// The control socket the test config names (unique per test and process).
fn socket(cfg: &str) -> String {
    cfg.lines()
        .find_map(|l| l.trim().strip_prefix("control_socket = "))
        .expect("control_socket in the config")
        .trim_matches('"')
        .to_string()
}

fn ctl(sock: &str, args: &[&str]) -> Output {
    fulcrum()
        .args(["ctl", "-s", sock])
        .args(args)
        .output()
        .expect("spawn ctl")
}

fn ctl_ok(sock: &str, args: &[&str]) -> serde_json::Value {
    let out = ctl(sock, &[&["--json"], args].concat());
    assert!(
        out.status.success(),
        "ctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ctl {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `GET /stream?secs=N` from `src:sport` to the DSR VIP, with curl in the client namespace.
struct Stream {
    child: Child,
    secs: u32,
}

impl Stream {
    fn start(tb: &Testbed, src: &str, sport: u16, secs: u32) -> Stream {
        let child = tb
            .cmd("c1", "curl")
            .args([
                "-sSN",
                "--max-time",
                &(secs + 20).to_string(),
                "--interface",
                src,
                "--local-port",
                &sport.to_string(),
                &format!("http://{DSR_VIP}/stream?secs={secs}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl");
        Stream { child, secs }
    }

    /// Waits for the end; checks it completed (curl exit 0, the chunked terminator seen),
    /// every line from one backend, ticks without a gap. Returns the backend.
    fn finish(self) -> String {
        let secs = self.secs;
        let out = self.child.wait_with_output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "stream broken ({}): {}\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        let backend = lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .expect("a line")
            .to_string();
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(*l, format!("{backend} tick={i}"), "stream lines:\n{text}");
        }
        // A line every 100 ms, give or take the backend's scheduling.
        assert!(
            lines.len() as u32 >= secs * 10 * 8 / 10,
            "only {} lines in {secs} s",
            lines.len()
        );
        backend.trim_start_matches("backend=").to_string()
    }
}

/// The backend `ctl which` names for a DSR flow from `src:sport`.
fn which(sock: &str, src: &str, sport: u16) -> String {
    let v = ctl_ok(
        sock,
        &["which", &format!("{src}:{sport}"), &format!("{DSR_VIP}:80")],
    );
    v["backend"].as_str().expect("a backend").to_string()
}

/// A request loop (tests/tools/client.py) of about `secs` seconds, in the background (the
/// client queues every request up front, so it is bounded by a count: ~800 requests/s here).
fn request_loop(tb: &Testbed, secs: u32) -> Child {
    let count = (secs * 600).to_string();
    tb.cmd("c1", "python3")
        .arg(common::repo().join("tests/tools/client.py"))
        .args([
            "--host",
            DSR_VIP,
            "--count",
            &count,
            "--concurrency",
            "4",
            "--timeout",
            "5",
            "--source",
            "10.77.0.103",
            "--source",
            "10.77.0.104",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client")
}

fn loop_result(c: Child) -> serde_json::Value {
    let out = c.wait_with_output().expect("client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client JSON")
}

fn ups(lb: &Balancer) -> usize {
    lb.log()
        .lines()
        .filter(|l| l.contains("backend health") && l.contains("to=\"up\""))
        .count()
}

fn wait_for(what: &str, lb: &Balancer, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "{what}:\n{}", lb.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The DSR service's backend list of the example config, replaced by `backends`
/// (name, weight); the NAT service is left alone.
fn with_dsr_backends(base: &str, backends: &[(&str, u32)]) -> String {
    let start = base
        .find("[[service.backend]]\nname = \"b1\"\naddress = \"10.77.0.11\"\nweight")
        .expect("dsr b1");
    let end = base[start..].find("\n# NAT").expect("nat section") + start;
    let mut list = String::new();
    for (name, w) in backends {
        let n: u32 = name[1..].parse().expect("bN");
        list += &format!(
            "[[service.backend]]\nname = \"{name}\"\naddress = \"10.77.0.1{n}\"\nweight = {w}\n"
        );
    }
    format!("{}{list}{}", &base[..start], &base[end..])
}

#[test]
fn e2e_reload_adds_removes_and_refuses_without_breaking_flows() {
    let scratch = Scratch::new("e2e-reload");
    let tb = Testbed::up("rl", 4);
    let base = testbed_config("reload");
    let sock = socket(&base);
    let first = with_dsr_backends(&base, &[("b1", 100), ("b2", 100), ("b3", 200)]);
    let lb = Balancer::start(&tb, &scratch, &first);
    lb.wait_up(6);

    // A long-lived connection across every reload below.
    let (src, sport) = ("10.77.0.101", 61501);
    let streamed_to = which(&sock, src, sport);
    let stream = Stream::start(&tb, src, sport, 20);
    let requests = request_loop(&tb, 6);
    std::thread::sleep(Duration::from_secs(1));

    // Reload 1: b4 added, weights changed.
    let second = with_dsr_backends(&base, &[("b1", 300), ("b2", 100), ("b3", 100), ("b4", 100)]);
    std::fs::write(&lb.config, &second).expect("config");
    let r = ctl_ok(&sock, &["reload"]);
    let dsr = r["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web-dsr")
        .expect("web-dsr in the report")
        .clone();
    assert_eq!(dsr["change"], "changed", "{r}");
    assert!(dsr["maglev_entries_changed"].as_u64().unwrap() > 0, "{r}");
    println!("reload 1: {r}");
    wait_for("b4 comes up after the reload", &lb, || ups(&lb) >= 7);
    let b = ctl_ok(&sock, &["backends"]);
    let dsr = b["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web-dsr")
        .unwrap()
        .clone();
    assert_eq!(dsr["members"], 4, "{b}");

    let out = loop_result(requests);
    assert!(
        out["requests"].as_u64().unwrap() > 50,
        "{}",
        out["requests"]
    );
    assert_eq!(
        out["errors"],
        serde_json::json!({}),
        "no failed request: {}",
        out["errors"]
    );
    assert!(
        out["per_backend"]["b4"].as_u64().unwrap_or(0) > 0,
        "b4 takes new flows after the reload: {}",
        out["per_backend"]
    );
    println!("request loop across reload 1: {}", out["per_backend"]);

    // Reload 2: a backend other than the stream's removed.
    let removed = if streamed_to == "b2" { "b1" } else { "b2" };
    let keep: Vec<(&str, u32)> = [("b1", 300), ("b2", 100), ("b3", 100), ("b4", 100)]
        .into_iter()
        .filter(|(n, _)| *n != removed)
        .collect();
    let third = with_dsr_backends(&base, &keep);
    std::fs::write(&lb.config, &third).expect("config");
    let r = ctl_ok(&sock, &["reload"]);
    println!("reload 2 ({removed} removed): {r}");

    // Reload 3: a broken file. Refused, naming the line; the running config serves on.
    let broken = third.replacen("weight = 100", "weight = \"heavy\"", 1);
    let line = broken
        .lines()
        .position(|l| l.contains("\"heavy\""))
        .expect("broken line")
        + 1;
    std::fs::write(&lb.config, &broken).expect("config");
    let out = ctl(&sock, &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a broken config is refused");
    assert!(
        err.contains(&format!("fulcrum.toml:{line}:")),
        "the error names line {line}: {err}"
    );
    lb.signal("HUP");
    wait_for("SIGHUP reload refused in the log", &lb, || {
        lb.log().matches(&format!("fulcrum.toml:{line}:")).count() >= 2
    });
    let requests = request_loop(&tb, 2);
    let out = loop_result(requests);
    assert_eq!(out["errors"], serde_json::json!({}), "{}", out["errors"]);
    let kept: Vec<&str> = keep.iter().map(|(n, _)| *n).collect();
    for b in out["per_backend"].as_object().unwrap().keys() {
        assert!(
            kept.contains(&b.as_str()),
            "{b} was removed: {}",
            out["per_backend"]
        );
    }

    let got = stream.finish();
    assert_eq!(got, streamed_to, "the stream stayed on its backend");
    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

/// A minimal check of the Prometheus text exposition format: comments are HELP/TYPE, every
/// sample is `name{label="value",...} number`, each name's TYPE comes before its samples.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut it = rest.split_whitespace();
            let kind = it.next().unwrap();
            let name = it.next().expect("metric name");
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            if kind == "TYPE" {
                let t = it.next().expect("type");
                assert!(["counter", "gauge", "untyped", "histogram", "summary"].contains(&t));
                typed.insert(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        assert!(typed.contains(name), "TYPE before samples: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for kv in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    let _ = v;
                }
            }
        }
        samples.insert(series.to_string(), v);
    }
    samples
}

#[test]
fn e2e_ctl_which_drain_and_metrics() {
    let scratch = Scratch::new("e2e-ctl");
    let tb = Testbed::up("ct", 3);
    let cfg = testbed_config("ctl");
    let sock = socket(&cfg);
    let lb = Balancer::start(&tb, &scratch, &cfg);
    lb.wait_up(6);

    let st = ctl(&sock, &["status"]);
    assert!(st.status.success());
    println!("{}", String::from_utf8_lossy(&st.stdout));
    let human = ctl(&sock, &["backends"]);
    println!("{}", String::from_utf8_lossy(&human.stdout));

    // `ctl which` on live connections: (src, sport) -> the backend that answered.
    let out = tb.client(&[
        "--host",
        DSR_VIP,
        "--count",
        "40",
        "--concurrency",
        "4",
        "--source",
        "10.77.0.101",
        "--source",
        "10.77.0.102",
    ]);
    let recs = records(&out);
    assert_eq!(recs.len(), 40);
    for r in &recs {
        let want = which(&sock, &r.src, r.sport);
        assert_eq!(
            r.backend.as_deref(),
            Some(want.as_str()),
            "{}:{} answered by {:?}, ctl which says {want}",
            r.src,
            r.sport,
            r.error
        );
    }

    // Drain the backend a stream goes to: the stream runs on, new flows avoid it.
    let (src, sport) = ("10.77.0.101", 61502);
    let drained = which(&sock, src, sport);
    let stream = Stream::start(&tb, src, sport, 4);
    std::thread::sleep(Duration::from_millis(500));
    let r = ctl_ok(&sock, &["drain", "web-dsr", &drained]);
    assert!(r["generation"].as_u64().is_some(), "{r}");
    // The open stream is a flow-table hit on the worker; a new flow would go elsewhere.
    let w = ctl_ok(
        &sock,
        &["which", &format!("{src}:{sport}"), &format!("{DSR_VIP}:80")],
    );
    assert_eq!(w["backend"], drained.as_str(), "{w}");
    assert_eq!(w["reason"], "flow table hit on worker 0", "{w}");
    let fresh = ctl_ok(
        &sock,
        &[
            "which",
            &format!("{src}:{}", sport + 1),
            &format!("{DSR_VIP}:80"),
        ],
    );
    assert_ne!(fresh["backend"], drained.as_str(), "{fresh}");
    assert_eq!(fresh["reason"], "maglev slot", "{fresh}");
    let out = tb.client(&[
        "--host",
        DSR_VIP,
        "--count",
        "200",
        "--concurrency",
        "4",
        "--source",
        "10.77.0.102",
        "--source",
        "10.77.0.103",
    ]);
    assert_eq!(out["errors"], serde_json::json!({}));
    assert!(
        out["per_backend"].get(&drained).is_none(),
        "no new flow to drained {drained}: {}",
        out["per_backend"]
    );
    assert_eq!(stream.finish(), drained);
    let b = ctl_ok(&sock, &["backends"]);
    let state = b["services"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["backend"] == drained.as_str())
        .unwrap()["state"]
        .clone();
    assert_eq!(state, "drain", "{b}");
    ctl_ok(&sock, &["enable", "web-dsr", &drained]);
    assert!(!ctl(&sock, &["drain", "web-dsr", "nope"]).status.success());

    // Metrics: the text format, and the same counters as `ctl stats`. Health checks keep
    // frames moving, so the stats reading must fall between two scrapes.
    let scrape = || {
        let out = tb
            .cmd("lb", "curl")
            .args(["-sS", "--max-time", "5", "http://127.0.0.1:9180/metrics"])
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_prometheus(&String::from_utf8_lossy(&out.stdout))
    };
    let file = ctl_ok(&sock, &["status"])["counters_file"]
        .as_str()
        .expect("a counter file")
        .to_string();
    let m1 = scrape();
    let stats = ctl_ok(&sock, &["stats"]);
    let shm = ctl_ok(&sock, &["stats", "--file", &file]);
    let m2 = scrape();
    for k in ["rx", "tx", "flows_created", "forwarded"] {
        let name = format!("fulcrum_{k}_total{{worker=\"0\"}}");
        let (a, b) = (m1[&name], m2[&name]);
        let s = stats["workers"][0][k].as_f64().unwrap();
        let f = shm["workers"][0][k].as_f64().unwrap();
        assert!(
            a <= s && s <= f && f <= b,
            "{name}: scrapes {a}, {b}; ctl stats {s}; file {f}"
        );
    }
    assert!(m1.contains_key("fulcrum_backend_up{service=\"web-dsr\",backend=\"b1\"}"));
    // Per-backend counters (published every 100 ms): about one new flow per connection
    // above (a client port reused within the flow timeout finds its flow again).
    let new_flows: f64 = ["b1", "b2", "b3"]
        .iter()
        .map(|b| {
            m2[&format!("fulcrum_backend_new_flows_total{{service=\"web-dsr\",backend=\"{b}\"}}")]
        })
        .sum();
    assert!(
        new_flows >= 200.0,
        "40 + 1 + 200 connections: {new_flows} new flows"
    );
    let watch = ctl(
        &sock,
        &["stats", "--watch", "--count", "2", "--interval", "0.2"],
    );
    assert!(watch.status.success());
    let samples = String::from_utf8_lossy(&watch.stdout)
        .lines()
        .filter(|l| l.starts_with("t="))
        .count();
    assert_eq!(samples, 2, "one line of rates per sample");

    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

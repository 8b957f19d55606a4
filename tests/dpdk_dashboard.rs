//! The Grafana dashboard shipped in packaging/ (and in the Debian package) asks only for what
//! Fulcrum exports: every query names at least one metric, every metric it names is on a real
//! scrape of a running balancer's `/metrics`, and every label it groups by, matches on or
//! puts in a legend is on that metric's samples (`instance` and `job` are Prometheus's own).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::*;

/// Labels Prometheus adds to every scraped sample.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// `GET /metrics`: the body, once the endpoint answers (bounded).
fn scrape(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut page = String::new();
            let _ = s.read_to_string(&mut page);
            if let Some((head, body)) = page.split_once("\r\n\r\n") {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                return body.to_string();
            }
        }
        assert!(Instant::now() < deadline, "no /metrics at {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Metric name -> the label names on its samples.
fn exported(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = l.find(['{', ' ']).unwrap();
        let labels = m.entry(l[..name_end].to_string()).or_default();
        if let Some(inner) = l[name_end..]
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
        {
            for kv in inner.0.split(',') {
                labels.insert(kv.split_once('=').unwrap().0.to_string());
            }
        }
    }
    m
}

/// Every `fulcrum_...` identifier in a query.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("fulcrum_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Label names a query uses: in `by (...)`, in `{...}` matchers, and `{{label}}` in a legend.
fn labels_in(expr: &str, legend: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let tail = &rest[at + 4..];
        let end = tail.find(')').expect("by (...)");
        out.extend(tail[..end].split(',').map(|s| s.trim().to_string()));
        rest = &tail[end..];
    }
    let mut rest = expr;
    while let Some(at) = rest.find('{') {
        let tail = &rest[at + 1..];
        let end = tail.find('}').expect("{...}");
        for m in tail[..end].split(',') {
            let name_end = m.find(['=', '!']).expect("a matcher");
            out.push(m[..name_end].trim().to_string());
        }
        rest = &tail[end..];
    }
    let mut rest = legend;
    while let Some(at) = rest.find("{{") {
        let tail = &rest[at + 2..];
        let end = tail.find("}}").expect("{{...}}");
        out.push(tail[..end].trim().to_string());
        rest = &tail[end..];
    }
    out
}

/// Every (query, legend) of the dashboard: panel targets and templating queries.
fn queries(dash: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap_or("").to_string(),
                t["expr"].as_str().expect("expr").to_string(),
                t["legendFormat"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            let q = v["query"].as_str().expect("query");
            out.push((
                format!("variable {}", v["name"]),
                q.to_string(),
                String::new(),
            ));
        }
    }
    out
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let s = Scratch::new("dashboard");
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // With a sync peer (nothing answers on the ring), so that sync's series are exported.
    std::fs::write(s.join("sync.key"), b"dashboard test key, not secret").unwrap();
    let sync = format!(
        "[global.sync]\npeers = [\"10.0.0.3\"]\nkey_file = \"{}\"",
        s.join("sync.key").display()
    );
    let config = fixture("idle_ring.toml")
        .set("eal_args", eal_args_toml("dashboard"))
        .set("socket", s.join("ctl.sock").display())
        .set("metrics", &addr)
        .set("sync", sync)
        .render();
    let cfg = s.join("fulcrum.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = fulcrum()
        .args(["run", "--duration", "30", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Scrape until every declared metric has a sample (the check latency needs a first check
    // to have ended), so that each one's labels are seen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = scrape(&addr);
        let declared = page.lines().filter(|l| l.starts_with("# TYPE ")).count();
        if exported(&page).len() >= declared || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    signal(child.id(), "TERM");
    let _ = child.wait();
    let have = exported(&page);
    println!("scrape: {} metrics", have.len());

    let text = std::fs::read_to_string(repo().join("packaging/grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let qs = queries(&dash);
    let mut used = BTreeSet::new();
    for (panel, expr, legend) in &qs {
        let names = metrics_in(expr);
        assert!(!names.is_empty(), "{panel}: {expr} names no fulcrum metric");
        let mut labels: BTreeSet<&str> = BTreeSet::new();
        for n in &names {
            let l = have
                .get(n)
                .unwrap_or_else(|| panic!("{panel}: {n} is not exported; the scrape:\n{page}"));
            labels.extend(l.iter().map(String::as_str));
            used.insert(n.clone());
        }
        for l in labels_in(expr, legend) {
            assert!(
                labels.contains(l.as_str()) || TARGET_LABELS.contains(&l.as_str()),
                "{panel}: label {l} is not on {names:?} ({labels:?})"
            );
        }
    }
    println!(
        "dashboard: {} queries over {} of the {} exported metrics",
        qs.len(),
        used.len(),
        have.len()
    );
    // What an operator watches first is there.
    for must in [
        "fulcrum_drops_total",
        "fulcrum_rx_total",
        "fulcrum_flows_active",
        "fulcrum_backend_state",
        "fulcrum_backend_last_check_seconds",
        "fulcrum_port_rx_missed_total",
        "fulcrum_sync_exceptions",
        "fulcrum_exceptions_used_total",
        "fulcrum_sync_messages_sent_total",
        "fulcrum_sync_bytes_sent_total",
        "fulcrum_sync_received_total",
        "fulcrum_sync_dropped_total",
    ] {
        assert!(used.contains(must), "the dashboard has no {must}");
    }
}

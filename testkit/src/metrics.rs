//! The Prometheus endpoint as a test reads it: a scrape from the balancer's namespace, and
//! a minimal check of the text exposition format.

use std::collections::HashMap;

use crate::Net;

/// A minimal check of the Prometheus text exposition format: comments are HELP/TYPE, every
/// sample is `name{label="value",...} number`, each name's TYPE comes before its samples.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
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

/// A scrape of the metrics endpoint from the balancer's namespace (its config's
/// `metrics_listen = "127.0.0.1:9180"`): the page, and its samples (the page checked by
/// [`parse_prometheus`]).
pub fn scrape(tb: &Net) -> (String, HashMap<String, f64>) {
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
    let page = String::from_utf8_lossy(&out.stdout).to_string();
    let samples = parse_prometheus(&page);
    (page, samples)
}

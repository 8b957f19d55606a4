//! Judging what real clients saw: which backend answered each connection, whether that is
//! where the config sends that flow, whether shares follow the weights, whether refusals
//! were immediate. Pure functions, tested on wrong outcomes in tests/checker.rs.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::Stdio;

/// One client request as tests/tools/client.py reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub src: String,
    pub sport: u16,
    pub backend: Option<String>,
    pub error: Option<String>,
    pub ms: f64,
}

pub fn records(v: &serde_json::Value) -> Vec<Record> {
    records_under(v, "records")
}

/// The long streams tests/tools/client.py held (`--streams`), as records (`ms` 0).
pub fn stream_records(v: &serde_json::Value) -> Vec<Record> {
    records_under(v, "streams")
}

fn records_under(v: &serde_json::Value, key: &str) -> Vec<Record> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in the client's JSON"))
        .iter()
        .map(|r| Record {
            src: r["src"].as_str().unwrap_or("").to_string(),
            sport: r["sport"].as_u64().unwrap_or(0) as u16,
            backend: r["backend"].as_str().map(str::to_string),
            error: r["error"].as_str().map(str::to_string),
            ms: r["ms"].as_f64().unwrap_or(0.0),
        })
        .collect()
}

/// What one backend's clients saw: requests and streams, how many failed, the slowest
/// request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub requests: usize,
    pub errors: usize,
    pub max_ms: f64,
    pub streams: usize,
    pub broken: usize,
}

/// Requests and streams per backend: the one that answered, or for a failure the one
/// `expected` names for its (source, port) (`?` when neither says).
pub fn by_backend(
    requests: &[Record],
    streams: &[Record],
    expected: &HashMap<(String, u16), String>,
) -> BTreeMap<String, Tally> {
    let mut per: BTreeMap<String, Tally> = BTreeMap::new();
    let owner = |r: &Record| {
        r.backend
            .clone()
            .filter(|_| r.error.is_none())
            .or_else(|| expected.get(&(r.src.clone(), r.sport)).cloned())
            .unwrap_or_else(|| "?".into())
    };
    for r in requests {
        let t = per.entry(owner(r)).or_default();
        t.requests += 1;
        t.errors += usize::from(r.error.is_some());
        t.max_ms = t.max_ms.max(r.ms);
    }
    for r in streams {
        let t = per.entry(owner(r)).or_default();
        t.streams += 1;
        t.broken += usize::from(r.error.is_some());
    }
    per
}

/// Every request answered, by the backend `expected` names for its (source, port).
pub fn check_placement(
    recs: &[Record],
    expected: &HashMap<(String, u16), String>,
) -> Result<(), String> {
    if recs.is_empty() {
        return Err("no requests".into());
    }
    let mut wrong = Vec::new();
    for r in recs {
        match (&r.backend, &r.error) {
            (_, Some(e)) => wrong.push(format!("{}:{} failed: {e}", r.src, r.sport)),
            (None, None) => wrong.push(format!("{}:{} no backend", r.src, r.sport)),
            (Some(b), None) => match expected.get(&(r.src.clone(), r.sport)) {
                Some(want) if want == b => {}
                Some(want) => wrong.push(format!(
                    "{}:{} answered by {b}, config says {want}",
                    r.src, r.sport
                )),
                None => wrong.push(format!("{}:{} has no expectation", r.src, r.sport)),
            },
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} requests wrong: {}",
            wrong.len(),
            recs.len(),
            wrong[..wrong.len().min(10)].join("; ")
        ))
    }
}

/// Shares per backend within `tol` (absolute) of the weights' shares.
pub fn check_shares(recs: &[Record], weights: &[(&str, f64)], tol: f64) -> Result<(), String> {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let ok: Vec<&Record> = recs
        .iter()
        .filter(|r| r.error.is_none() && r.backend.is_some())
        .collect();
    if ok.is_empty() {
        return Err("no successful request".into());
    }
    let mut per: HashMap<&str, usize> = HashMap::new();
    for r in &ok {
        *per.entry(r.backend.as_deref().unwrap()).or_default() += 1;
    }
    for b in per.keys() {
        if !weights.iter().any(|(n, _)| n == b) {
            return Err(format!("answer from unexpected backend {b}"));
        }
    }
    for (name, w) in weights {
        let share = *per.get(name).unwrap_or(&0) as f64 / ok.len() as f64;
        let want = w / total;
        if (share - want).abs() > tol {
            return Err(format!(
                "backend {name}: share {share:.3}, weights say {want:.3} (tolerance {tol})"
            ));
        }
    }
    Ok(())
}

/// Every request refused (the client got a RST) within `max_ms`.
pub fn check_refused(recs: &[Record], max_ms: f64) -> Result<(), String> {
    if recs.is_empty() {
        return Err("no requests".into());
    }
    for r in recs {
        if r.error.as_deref() != Some("refused") {
            return Err(format!(
                "{}:{} not refused: backend {:?}, error {:?}",
                r.src, r.sport, r.backend, r.error
            ));
        }
        if r.ms > max_ms {
            return Err(format!(
                "{}:{} refused after {} ms (> {max_ms})",
                r.src, r.sport, r.ms
            ));
        }
    }
    Ok(())
}

/// Where `fulcrum which` says each (source, port) -> `dst` flow goes (`dst` as
/// `fulcrum which` takes it: `10.0.0.1:80`, `[fd00::1]:80`).
pub fn expected_backends(
    config: &std::path::Path,
    recs: &[Record],
    dst: &str,
) -> HashMap<(String, u16), String> {
    expected_backends_of(config, recs, dst, "tcp")
}

/// [`expected_backends`] for flows of `proto` ("tcp" or "udp").
pub fn expected_backends_of(
    config: &std::path::Path,
    recs: &[Record],
    dst: &str,
    proto: &str,
) -> HashMap<(String, u16), String> {
    let mut child = crate::fulcrum()
        .args(["which", "--json", "-c"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("fulcrum which");
    let input: String = recs
        .iter()
        .map(|r| {
            let src: std::net::IpAddr = r.src.parse().expect("client address");
            format!(
                "{} {dst} {proto}\n",
                std::net::SocketAddr::new(src, r.sport)
            )
        })
        .collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("which");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    recs.iter()
        .zip(text.lines())
        .filter_map(|(r, l)| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["backend"]
                .as_str()
                .map(|b| ((r.src.clone(), r.sport), b.to_string()))
        })
        .collect()
}

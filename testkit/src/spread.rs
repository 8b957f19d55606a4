//! Connections spread over backends: many new kernel TCP connections from the client
//! namespace (tests/tools/client.py), each checked against where the config sends it
//! (`fulcrum which`) and the shares against the weights; and a long-lived stream
//! ([`Stream`]) that must stay on one backend.

use std::process::{Child, Stdio};

use crate::outcome::{Record, check_placement, check_shares, expected_backends, records};
use crate::{Balancer, Net};

/// Least absolute tolerance on a backend's share (see [`share_tolerance`]).
pub const SHARE_TOLERANCE: f64 = 0.05;

/// The tolerance on a backend's share of `count` connections: 4 binomial standard deviations
/// at the worst case p = 1/2 (2 / sqrt(count): 0.082 for 600, 0.063 for 1000), and never
/// below [`SHARE_TOLERANCE`]. A tighter bound fails a correct balancer a few times in a
/// hundred runs (seen: 600 connections over three equal backends, one at 0.278, 2.9 sigma);
/// which backend each connection reached is checked exactly, against `which`.
pub fn share_tolerance(count: usize) -> f64 {
    SHARE_TOLERANCE.max(2.0 / (count.max(1) as f64).sqrt())
}

/// The client's four addresses in `net` ("10.77.0", "10.80.1" or, IPv6, "fd77", "fd80:1").
pub fn client_sources(net: &str) -> Vec<String> {
    let sep = if net.contains('.') { "." } else { "::" };
    (101..=104).map(|h| format!("{net}{sep}{h}")).collect()
}

/// tests/tools/client.py's arguments: `count` new connections to `host`:80 from `srcs`, 8 at
/// a time, 5 s timeout each.
pub fn client_args<'a>(host: &'a str, srcs: &'a [String], count: &'a str) -> Vec<&'a str> {
    let mut a = vec![
        "--host",
        host,
        "--port",
        "80",
        "--count",
        count,
        "--concurrency",
        "8",
        "--timeout",
        "5",
    ];
    for s in srcs {
        a.push("--source");
        a.push(s);
    }
    a
}

/// The distinct client (address, port) pairs: the flows the requests made.
pub fn distinct_flows(recs: &[Record]) -> usize {
    recs.iter()
        .map(|r| (r.src.clone(), r.sport))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Asserts that a balancer's `totals` made one set of flow entries per distinct client flow
/// (`entries` in all: one per DSR or tunnel flow, two per NAT flow), plus, for each client
/// port reused within `tcp_closing` (a new connection on a closed one's ports: its entries
/// made again, counted `flows_reopened`), `per_reopen` more (1 for DSR, 2 for NAT; a range
/// when a test mixes them). Prints the reuse it saw.
pub fn check_flows_created(
    totals: &serde_json::Value,
    entries: usize,
    per_reopen: std::ops::RangeInclusive<u64>,
) {
    let n = |k: &str| {
        totals[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {totals}"))
    };
    let (created, reopened) = (n("flows_created"), n("flows_reopened"));
    let remade = created.checked_sub(entries as u64).unwrap_or_else(|| {
        panic!("{created} entries made for {entries} of distinct flows: {totals}")
    });
    assert!(
        reopened * per_reopen.start() <= remade && remade <= reopened * per_reopen.end(),
        "{created} entries made for {entries} of distinct flows and {reopened} reopened \
         ({per_reopen:?} entries each): {totals}"
    );
    println!(
        "flow entries: {created} made, {entries} for distinct client flows, {reopened} ports reused"
    );
}

/// `count` new connections from `net`'s client addresses ([`client_sources`]) to `vip`:80,
/// every one answered by the backend `fulcrum which` names, shares within
/// [`share_tolerance`] of `weights`; prints the figures under `what`. The number of distinct
/// client flows.
pub fn place(
    tb: &Net,
    lb: &Balancer,
    what: &str,
    net: &str,
    vip: &str,
    count: usize,
    weights: &[(&str, f64)],
) -> usize {
    distinct_flows(&records(&place_json(
        tb, lb, what, net, vip, count, weights,
    )))
}

/// [`place`], returning what tests/tools/client.py printed: each connection's record with
/// the peer its backend saw (`peer`).
pub fn place_json(
    tb: &Net,
    lb: &Balancer,
    what: &str,
    net: &str,
    vip: &str,
    count: usize,
    weights: &[(&str, f64)],
) -> serde_json::Value {
    let srcs = client_sources(net);
    let n = count.to_string();
    let out = tb.client(&client_args(vip, &srcs, &n));
    let recs = records(&out);
    assert_eq!(recs.len(), count);
    let dst = std::net::SocketAddr::new(vip.parse().expect("VIP"), 80).to_string();
    let expected = expected_backends(&lb.config, &recs, &dst);
    check_placement(&recs, &expected).unwrap_or_else(|e| panic!("{what}: {e}"));
    check_shares(&recs, weights, share_tolerance(count)).unwrap_or_else(|e| panic!("{what}: {e}"));
    println!(
        "{what}: {} connections to {dst}, per backend {}, p50 {} ms, slowest {} ms",
        recs.len(),
        out["per_backend"],
        out["ms_p50"],
        out["ms_max"]
    );
    out
}

/// `GET /stream?secs=N` from `src:sport` to `vip`:80, with curl in the client namespace
/// (tests/tools/backend.py writes 10 lines a second).
pub struct Stream {
    child: Child,
    secs: u32,
}

impl Stream {
    pub fn start(tb: &Net, vip: &str, src: &str, sport: u16, secs: u32) -> Stream {
        let host = match vip.parse() {
            Ok(std::net::IpAddr::V6(a)) => format!("[{a}]"),
            _ => vip.to_owned(),
        };
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
                &format!("http://{host}/stream?secs={secs}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl");
        Stream { child, secs }
    }

    /// Waits for the end; checks it completed (curl exit 0, the chunked terminator seen),
    /// every line from one backend, ticks without a gap. Returns the backend.
    pub fn finish(self) -> String {
        self.outcome().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Stream::finish`]'s checks, saying what broke instead of failing the test: for tests
    /// that count broken streams.
    pub fn outcome(self) -> Result<String, String> {
        let secs = self.secs;
        let out = self.child.wait_with_output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "stream broken ({}): {}\n{text}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let lines: Vec<&str> = text.lines().collect();
        let backend = lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| format!("no line: {text}"))?
            .to_string();
        for (i, l) in lines.iter().enumerate() {
            if *l != format!("{backend} tick={i}") {
                return Err(format!("line {i} is {l:?}; stream lines:\n{text}"));
            }
        }
        // The backend writes exactly 10 lines a second (tests/tools/backend.py).
        if lines.len() as u32 != secs * 10 {
            return Err(format!(
                "{} lines of a {secs} s stream:\n{text}",
                lines.len()
            ));
        }
        Ok(backend.trim_start_matches("backend=").to_string())
    }
}

//! The chaos suite (what survives what), on real DPDK (`net_af_packet`) in the testbed layout
//! of `scripts/testbed.sh`, under load from real kernel TCP clients (a request loop, a new
//! connection per request, and long streams, through the DSR and the NAT service):
//!
//! - 100 live reloads in a minute, alternating two valid configs and an invalid one: no
//!   connection breaks, every invalid one is refused and the config before it kept;
//! - a backend that flaps (frozen and thawed every 300 ms): only its own connections notice;
//! - the control socket and the metrics endpoint fed random bytes, half requests and floods of
//!   connections: each answers or refuses, and the data path forwards on.
//!
//! Each case is bounded and sized for 2 cores, and prints what it measured. Restart and crash
//! cases live with the persistent flow tables.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use testkit::outcome::{Tally, by_backend, expected_backends, records, stream_records};
use testkit::{Balancer, Load, LoadSpec, Net, repo};

const DSR_VIP: &str = "10.77.0.100";
const NAT_VIP: &str = "10.79.0.200";
const DSR_SOURCES: &[&str] = &["10.77.0.101", "10.77.0.102", "10.77.0.103", "10.77.0.104"];
const NAT_SOURCES: &[&str] = &["10.78.0.101", "10.78.0.102", "10.78.0.103", "10.78.0.104"];

/// A request loop of `secs` and `streams` streams lasting a little longer, to `vip`.
fn load(tb: &Net, vip: &'static str, sources: &'static [&'static str], secs: u32) -> Load {
    Load::start(
        tb,
        &LoadSpec {
            vip,
            sources,
            secs,
            concurrency: 2,
            streams: 8,
            stream_secs: secs + 2,
        },
    )
}

/// What the clients of `vip` saw, per backend (failures placed where `fulcrum which` sends
/// them), printed under `what`.
fn judged(
    lb: &Balancer,
    what: &str,
    vip: &str,
    out: &serde_json::Value,
) -> BTreeMap<String, Tally> {
    let (reqs, streams) = (records(out), stream_records(out));
    let all: Vec<_> = reqs.iter().chain(&streams).cloned().collect();
    let expected = expected_backends(&lb.config, &all, &format!("{vip}:80"));
    let per = by_backend(&reqs, &streams, &expected);
    println!(
        "{what}: {} requests ({} failed), {} streams ({} broken)",
        reqs.len(),
        reqs.iter().filter(|r| r.error.is_some()).count(),
        streams.len(),
        streams.iter().filter(|r| r.error.is_some()).count()
    );
    for (b, t) in &per {
        println!(
            "  {b}: requests {} errors {} slowest {:.0} ms; streams {} broken {}",
            t.requests, t.errors, t.max_ms, t.streams, t.broken
        );
    }
    if let Some(e) = out["errors"].as_object().filter(|e| !e.is_empty()) {
        println!("  request errors: {e:?}");
    }
    for s in streams.iter().filter(|s| s.error.is_some()) {
        println!("  broken stream {}:{}: {:?}", s.src, s.sport, s.error);
    }
    per
}

/// Backends of `service` that their health checks took down during the run (from the log):
/// Fulcrum reschedules the flows of a down backend, by design, so their connections may
/// break. On a starved 2-core machine a slow Python backend can fail its checks.
fn went_down(lb: &Balancer, service: &str) -> BTreeSet<String> {
    let prefix = format!("backend={service}/");
    lb.log()
        .lines()
        .filter(|l| l.contains("backend health") && l.contains("to=\"down\""))
        .filter(|l| !l.contains("not checked yet"))
        .filter_map(|l| {
            let at = l.find(&prefix)? + prefix.len();
            l[at..].split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

/// Broken connections of backends that stayed up (asserted 0 by the callers), after printing
/// which backends went down.
fn broken_while_up(what: &str, per: &BTreeMap<String, Tally>, down: &BTreeSet<String>) -> usize {
    let excused: usize = per
        .iter()
        .filter(|(b, _)| down.contains(*b))
        .map(|(_, t)| t.errors + t.broken)
        .sum();
    if !down.is_empty() {
        println!(
            "  {what}: taken down by their checks meanwhile: {down:?} ({excused} of their \
             connections broke: flows of a down backend are rescheduled)"
        );
    }
    per.iter()
        .filter(|(b, _)| !down.contains(*b))
        .map(|(_, t)| t.errors + t.broken)
        .sum()
}

/// The weight `ctl backends` reports for `backend` of `service`.
fn weight(lb: &Balancer, service: &str, backend: &str) -> u64 {
    let v = lb.ctl_json(&["backends"]);
    let svc = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["service"] == service)
        .unwrap_or_else(|| panic!("{service} in {v}"));
    svc["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["backend"] == backend)
        .and_then(|b| b["weight"].as_u64())
        .unwrap_or_else(|| panic!("{backend} in {svc}"))
}

#[test]
fn chaos_100_reloads_in_a_minute_break_no_connection() {
    const RELOADS: usize = 100;
    const SECS: u32 = 60;
    let tb = Net::testbed("cr", 3);
    // Two valid configs that differ in a weight (so every reload rebuilds a Maglev table and
    // moves new flows), and an invalid one.
    let a = tb.testbed_config();
    assert_eq!(
        a.matches("weight = 200").count(),
        1,
        "the example's b3 weight"
    );
    let b = a.replace("weight = 200", "weight = 50");
    let bad = a.replace("weight = 200", "weight = \"heavy\"");
    let bad_line = bad
        .lines()
        .position(|l| l.contains("\"heavy\""))
        .expect("broken line")
        + 1;
    let lb = Balancer::start(&tb, &a);
    lb.wait_up(6);

    let dsr = load(&tb, DSR_VIP, DSR_SOURCES, SECS);
    let nat = load(&tb, NAT_VIP, NAT_SOURCES, SECS);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let every = Duration::from_secs(SECS as u64 - 2) / RELOADS as u32;
    let (mut applied, mut refused, mut kept) = (0, 0, 0);
    let mut slowest = Duration::ZERO;
    let mut last_weight = 200;
    for i in 0..RELOADS {
        let (text, want) = match i % 3 {
            0 => (&b, Some(50)),
            1 => (&a, Some(200)),
            _ => (&bad, None),
        };
        std::fs::write(&lb.config, text).expect("config");
        let t = Instant::now();
        let out = lb.ctl(&["reload"]);
        slowest = slowest.max(t.elapsed());
        let err = String::from_utf8_lossy(&out.stderr);
        match want {
            Some(w) => {
                assert!(out.status.success(), "reload {i} refused: {err}");
                applied += 1;
                last_weight = w;
            }
            None => {
                assert!(!out.status.success(), "reload {i} of a broken file applied");
                assert!(
                    err.contains(&format!("fulcrum.toml:{bad_line}:")),
                    "reload {i}: the refusal names line {bad_line}: {err}"
                );
                refused += 1;
                // The config before it still runs.
                assert_eq!(weight(&lb, "web-dsr", "b3"), last_weight, "reload {i}");
                kept += 1;
            }
        }
        if let Some(rest) =
            (started + every * (i as u32 + 1)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(rest);
        }
    }
    let took = started.elapsed();
    let dsr_out = dsr.finish();
    let nat_out = nat.finish();
    println!(
        "{RELOADS} reloads in {:.1} s under load: {applied} applied, {refused} refused (the \
         running config kept {kept} times); slowest reload answered in {:.0} ms",
        took.as_secs_f64(),
        slowest.as_secs_f64() * 1e3
    );
    let mut errors = 0;
    for (what, service, vip, out) in [
        ("DSR", "web-dsr", DSR_VIP, &dsr_out),
        ("NAT", "web-nat", NAT_VIP, &nat_out),
    ] {
        let per = judged(&lb, what, vip, out);
        errors += broken_while_up(what, &per, &went_down(&lb, service));
        let requests: usize = per.values().map(|t| t.requests).sum();
        assert!(requests > 100, "{what}: only {requests} requests");
    }
    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
    println!("errors and broken streams of backends that stayed up: {errors}");
    assert_eq!((applied, refused, kept), (67, 33, 33));
    // Paced to a minute; a reload that waits for a starved slow path makes the rest catch up.
    assert!(took < Duration::from_secs(SECS as u64 + 15), "{took:?}");
    assert_eq!(errors, 0, "connections broke across the reloads");
}

#[test]
fn chaos_a_flapping_backend_affects_only_its_own_connections() {
    const SECS: u32 = 20;
    const FLAP: Duration = Duration::from_millis(300);
    let tb = Net::testbed("cf", 3);
    let lb = Balancer::start(&tb, &tb.testbed_config());
    lb.wait_up(6);

    let dsr = load(&tb, DSR_VIP, DSR_SOURCES, SECS);
    let nat = load(&tb, NAT_VIP, NAT_SOURCES, SECS);
    let started = Instant::now();
    let mut flaps = 0;
    while started.elapsed() < Duration::from_secs(SECS as u64) {
        tb.script("freeze-backend", "b1");
        std::thread::sleep(FLAP);
        tb.script("thaw-backend", "b1");
        std::thread::sleep(FLAP);
        flaps += 1;
    }
    let dsr_out = dsr.finish();
    let nat_out = nat.finish();
    let downs = lb
        .log()
        .lines()
        .filter(|l| l.contains("backend health") && l.contains("/b1 "))
        .filter(|l| l.contains("to=\"down\"") && !l.contains("not checked yet"))
        .count();
    println!(
        "b1 frozen and thawed {flaps} times ({} ms each) in {:.1} s; its checks took it down \
         {downs} times",
        FLAP.as_millis(),
        started.elapsed().as_secs_f64()
    );
    for (what, service, vip, out) in [
        ("DSR", "web-dsr", DSR_VIP, &dsr_out),
        ("NAT", "web-nat", NAT_VIP, &nat_out),
    ] {
        let per = judged(&lb, what, vip, out);
        let down = went_down(&lb, service);
        println!("  {what}: taken down by their checks meanwhile: {down:?}");
        for (b, t) in &per {
            if b != "b1" {
                assert_eq!(
                    (t.errors, t.broken),
                    (0, 0),
                    "{what}: {b} does not flap, yet its clients saw errors"
                );
            }
        }
        let b1 = per.get("b1").expect("b1 had connections");
        assert!(
            b1.max_ms >= FLAP.as_millis() as f64 / 2.0,
            "{what}: b1's requests never waited for a thaw (slowest {:.0} ms): did it flap?",
            b1.max_ms
        );
        let others: usize = per
            .iter()
            .filter(|(b, _)| *b != "b1")
            .map(|(_, t)| t.requests)
            .sum();
        assert!(others > 50, "{what}: only {others} requests to b2 and b3");
    }
    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

/// `totals.tx` of `ctl stats`.
fn forwarded(lb: &Balancer) -> u64 {
    lb.ctl_json(&["stats"])["totals"]["tx"]
        .as_u64()
        .expect("totals.tx")
}

/// `fulcrum_endpoint_requests_refused_total` of each endpoint, from a scrape in the
/// balancer's namespace.
fn refused_counts(tb: &Net) -> BTreeMap<String, u64> {
    let page = tb.exec(
        "lb",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:9180/metrics",
        ],
    );
    page.lines()
        .filter_map(|l| l.strip_prefix("fulcrum_endpoint_requests_refused_total{endpoint=\""))
        .filter_map(|l| {
            let (name, v) = l.split_once("\"} ")?;
            Some((name.to_owned(), v.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

#[test]
fn chaos_garbage_and_floods_on_the_endpoints_leave_the_data_path_alone() {
    const SECS: u32 = 20;
    let tb = Net::testbed("ca", 3);
    let lb = Balancer::start(&tb, &tb.testbed_config());
    lb.wait_up(6);
    let refused_before = refused_counts(&tb);

    let dsr = load(&tb, DSR_VIP, DSR_SOURCES, SECS);
    std::thread::sleep(Duration::from_secs(1));
    // The abuse runs in the balancer's namespace (the metrics endpoint is on its loopback);
    // the forwarded counter is sampled meanwhile.
    let abuse = tb
        .cmd("lb", "python3")
        .arg(repo().join("tests/tools/abuse.py"))
        .args(["--unix"])
        .arg(lb.socket())
        .args(["--tcp", "127.0.0.1:9180", "--secs", &(SECS - 4).to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("abuse.py");
    let mut tx = vec![forwarded(&lb)];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(SECS as u64 - 4) {
        std::thread::sleep(Duration::from_secs(2));
        tx.push(forwarded(&lb));
    }
    let out = abuse.wait_with_output().expect("abuse.py");
    assert!(
        out.status.success(),
        "abuse.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("abuse JSON");
    let dsr_out = dsr.finish();
    let refused_after = refused_counts(&tb);

    println!("forwarded (totals.tx) every 2 s: {tx:?}");
    for (endpoint, cases) in v.as_object().expect("endpoints") {
        for (case, outcomes) in cases.as_object().expect("cases") {
            println!("{endpoint} {case}: {outcomes}");
        }
    }
    println!("refusals counted by fulcrum: before {refused_before:?}, after {refused_after:?}");
    let per = judged(&lb, "DSR during the abuse", DSR_VIP, &dsr_out);

    for (endpoint, cases) in v.as_object().expect("endpoints") {
        for (case, outcomes) in cases.as_object().expect("cases") {
            let n = |k: &str| outcomes[k].as_u64().unwrap_or(0);
            assert!(n("sent") > 0, "{endpoint} {case}: nothing sent");
            assert_eq!(
                n("sent"),
                n("answered") + n("refused"),
                "{endpoint} {case}: each answered or refused, none left hanging: {outcomes}"
            );
        }
        let valid = &cases["valid"];
        assert_eq!(
            valid["answered"], valid["sent"],
            "{endpoint}: a good request between the bad ones is answered: {valid}"
        );
        // Every bad request answered was answered with a refusal, and counted; a few more may
        // be counted than the clients saw answered (an answer lost to the reset of a close
        // with unread bytes), never more than were sent.
        let bad = |k: &str| {
            cases["random"][k].as_u64().unwrap_or(0) + cases["half"][k].as_u64().unwrap_or(0)
        };
        let counted = refused_after.get(endpoint).copied().unwrap_or(0)
            - refused_before.get(endpoint).copied().unwrap_or(0);
        assert!(
            bad("answered") > 0 && bad("answered") <= counted && counted <= bad("sent"),
            "{endpoint}: {counted} refusals counted for {} bad requests answered of {} sent",
            bad("answered"),
            bad("sent")
        );
    }
    assert!(
        tx.windows(2).all(|w| w[1] > w[0]),
        "forwarding stalled: {tx:?}"
    );
    for (b, t) in &per {
        assert_eq!(
            (t.errors, t.broken),
            (0, 0),
            "DSR clients of {b} saw errors"
        );
    }
    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

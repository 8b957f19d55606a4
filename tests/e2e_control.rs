//! Operating a running Fulcrum end to end (scripts/testbed.sh namespaces, real kernel TCP):
//!
//! - live reload: a backend added and weights changed while a request loop runs (no failed
//!   request) and a long-lived `GET /stream` connection runs through it; a backend removed
//!   while that stream (to another backend) keeps flowing; a broken file refused with its
//!   line named, by `ctl reload` and by SIGHUP, the old config serving on;
//! - `ctl which` names the backend every live connection actually reached;
//! - `ctl drain` stops new flows to a backend while its open connection runs to completion;
//! - the Prometheus endpoint parses as the text format and agrees with `ctl stats`;
//! - active flows per backend (`ctl backends`, `ctl services`, the Prometheus gauge) are
//!   exactly the open connections, DSR and NAT, also on a drained backend, and drop to zero
//!   after the connections close and their closing timeout passes;
//! - on a quiet balancer every sample of the Prometheus page equals its `ctl` figure.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use testkit::metrics::scrape;
use testkit::outcome::*;
use testkit::{Balancer, Load, LoadSpec, Net, Stream};

const DSR_VIP: &str = "10.77.0.100";
const NAT_VIP: &str = "10.79.0.200";

/// `GET /stream?secs=N` from `src:sport` to the DSR VIP.
fn stream(tb: &Net, src: &str, sport: u16, secs: u32) -> Stream {
    Stream::start(tb, DSR_VIP, src, sport, secs)
}

/// What the balancer says of itself, for a failed assertion's message: totals (resets, drops
/// by reason) and the backends' states.
fn why(lb: &Balancer) -> String {
    let s = lb.ctl_json(&["stats"]);
    let b = lb.ctl_json(&["backends"]);
    format!("balancer totals: {}\nbackends: {b}", s["totals"])
}

/// The backend `ctl which` names for a DSR flow from `src:sport`.
fn which(lb: &Balancer, src: &str, sport: u16) -> String {
    let v = lb.ctl_json(&["which", &format!("{src}:{sport}"), &format!("{DSR_VIP}:80")]);
    v["backend"].as_str().expect("a backend").to_string()
}

/// A request loop (tests/tools/client.py) of `secs` seconds in the background.
fn request_loop(tb: &Net, secs: u32) -> Load {
    Load::start(
        tb,
        &LoadSpec {
            vip: DSR_VIP,
            sources: &["10.77.0.103", "10.77.0.104"],
            secs,
            concurrency: 4,
            streams: 0,
            stream_secs: 0,
        },
    )
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
    let tb = Net::testbed("rl", 4);
    let base = tb.testbed_config();
    let first = with_dsr_backends(&base, &[("b1", 100), ("b2", 100), ("b3", 200)]);
    let lb = Balancer::start(&tb, &first);
    lb.wait_up(6);

    // A long-lived connection across every reload below.
    let (src, sport) = ("10.77.0.101", 61501);
    let streamed_to = which(&lb, src, sport);
    let stream = stream(&tb, src, sport, 20);
    let requests = request_loop(&tb, 6);
    std::thread::sleep(Duration::from_secs(1));

    // Reload 1: b4 added, weights changed.
    let second = with_dsr_backends(&base, &[("b1", 300), ("b2", 100), ("b3", 100), ("b4", 100)]);
    std::fs::write(&lb.config, &second).expect("config");
    let r = lb.ctl_json(&["reload"]);
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
    let b = lb.ctl_json(&["backends"]);
    let dsr = b["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web-dsr")
        .unwrap()
        .clone();
    assert_eq!(dsr["members"], 4, "{b}");

    let out = requests.finish();
    assert!(
        out["requests"].as_u64().unwrap() > 50,
        "{}",
        out["requests"]
    );
    assert_eq!(
        out["errors"],
        serde_json::json!({}),
        "no failed request: {}; {}",
        out["errors"],
        why(&lb)
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
    let r = lb.ctl_json(&["reload"]);
    println!("reload 2 ({removed} removed): {r}");

    // Reload 3: a broken file. Refused, naming the line; the running config serves on.
    let broken = third.replacen("weight = 100", "weight = \"heavy\"", 1);
    let line = broken
        .lines()
        .position(|l| l.contains("\"heavy\""))
        .expect("broken line")
        + 1;
    std::fs::write(&lb.config, &broken).expect("config");
    let out = lb.ctl(&["reload"]);
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
    let out = requests.finish();
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

#[test]
fn e2e_ctl_which_drain_and_metrics() {
    let tb = Net::testbed("ct", 3);
    let cfg = tb.testbed_config();
    let lb = Balancer::start(&tb, &cfg);
    lb.wait_up(6);

    let st = lb.ctl(&["status"]);
    assert!(st.status.success());
    println!("{}", String::from_utf8_lossy(&st.stdout));
    let human = lb.ctl(&["backends"]);
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
        let want = which(&lb, &r.src, r.sport);
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
    let drained = which(&lb, src, sport);
    let stream = stream(&tb, src, sport, 4);
    std::thread::sleep(Duration::from_millis(500));
    let r = lb.ctl_json(&["drain", "web-dsr", &drained]);
    assert!(r["generation"].as_u64().is_some(), "{r}");
    // The open stream is a flow-table hit on the worker; a new flow would go elsewhere.
    let w = lb.ctl_json(&["which", &format!("{src}:{sport}"), &format!("{DSR_VIP}:80")]);
    assert_eq!(w["backend"], drained.as_str(), "{w}");
    assert_eq!(w["reason"], "flow table hit on worker 0", "{w}");
    let fresh = lb.ctl_json(&[
        "which",
        &format!("{src}:{}", sport + 1),
        &format!("{DSR_VIP}:80"),
    ]);
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
    assert_eq!(out["errors"], serde_json::json!({}), "{}", why(&lb));
    assert!(
        out["per_backend"].get(&drained).is_none(),
        "no new flow to drained {drained}: {}",
        out["per_backend"]
    );
    assert_eq!(stream.finish(), drained);
    let b = lb.ctl_json(&["backends"]);
    let state = b["services"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["backend"] == drained.as_str())
        .unwrap()["state"]
        .clone();
    assert_eq!(state, "drain", "{b}");
    lb.ctl_json(&["enable", "web-dsr", &drained]);
    assert!(!lb.ctl(&["drain", "web-dsr", "nope"]).status.success());

    // Metrics: the text format, and the same counters as `ctl stats`. Health checks keep
    // frames moving, so the stats reading must fall between two scrapes.
    let scrape = || scrape(&tb).1;
    let file = lb.ctl_json(&["status"])["counters_file"]
        .as_str()
        .expect("a counter file")
        .to_string();
    let m1 = scrape();
    let stats = lb.ctl_json(&["stats"]);
    let shm = lb.ctl_json(&["stats", "--file", &file]);
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
    // above (a client port reused within the closing timeout is a new flow again).
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
    let watch = lb.ctl(&["stats", "--watch", "--count", "2", "--interval", "0.2"]);
    assert!(watch.status.success());
    let samples = String::from_utf8_lossy(&watch.stdout)
        .lines()
        .filter(|l| l.starts_with("t="))
        .count();
    assert_eq!(samples, 2, "one line of rates per sample");

    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

/// `(service, backend) -> [established, other]` active flows from `ctl backends --json`,
/// after checking that each backend's `flows_active` is their sum and each service's figures
/// are its backends' sums.
fn active_flows(lb: &Balancer) -> BTreeMap<(String, String), [u64; 2]> {
    let v = lb.ctl_json(&["backends"]);
    let mut m = BTreeMap::new();
    for s in v["services"].as_array().expect("services") {
        let name = s["service"].as_str().unwrap().to_string();
        let mut sum = [0u64; 2];
        for b in s["backends"].as_array().expect("backends") {
            let f = [
                b["flows_established"].as_u64().expect("flows_established"),
                b["flows_other"].as_u64().expect("flows_other"),
            ];
            assert_eq!(b["flows_active"].as_u64(), Some(f[0] + f[1]), "{b}");
            sum = [sum[0] + f[0], sum[1] + f[1]];
            m.insert(
                (name.clone(), b["backend"].as_str().unwrap().to_string()),
                f,
            );
        }
        assert_eq!(s["flows_established"].as_u64(), Some(sum[0]), "{s}");
        assert_eq!(s["flows_other"].as_u64(), Some(sum[1]), "{s}");
        assert_eq!(s["flows_active"].as_u64(), Some(sum[0] + sum[1]), "{s}");
    }
    m
}

/// The `fulcrum_backend_flows_active` gauge as the same map as [`active_flows`].
fn active_flows_metric(samples: &HashMap<String, f64>) -> BTreeMap<(String, String), [u64; 2]> {
    let mut m: BTreeMap<(String, String), [u64; 2]> = BTreeMap::new();
    for (series, v) in samples {
        let Some(labels) = series.strip_prefix("fulcrum_backend_flows_active{") else {
            continue;
        };
        let label = |k: &str| {
            let start = labels.find(&format!("{k}=\"")).expect("label") + k.len() + 2;
            labels[start..].split('"').next().unwrap().to_string()
        };
        let e = m.entry((label("service"), label("backend"))).or_default();
        match label("state").as_str() {
            "established" => e[0] = *v as u64,
            "other" => e[1] = *v as u64,
            s => panic!("state {s} in {series}"),
        }
    }
    m
}

/// Polls `ctl backends` until the active flows are `want` (the census is refreshed once a
/// second), failing after `secs` with the last figures seen.
fn wait_active(lb: &Balancer, want: &BTreeMap<(String, String), [u64; 2]>, secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = active_flows(lb);
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: active flows\n  got  {got:?}\n  want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn e2e_active_flows_per_backend_drain_and_close() {
    let tb = Net::testbed("af", 3);
    // A closing timeout of 5 s: long enough to watch closed connections linger as "other",
    // short enough to watch them go.
    let cfg = tb.testbed_config().replacen(
        "\n[[port]]",
        "\n[global.timeouts]\ntcp_closing = 5\n\n[[port]]",
        1,
    );
    let lb = Balancer::start(&tb, &cfg);
    lb.wait_up(6);

    // Every backend of the config, nothing active yet.
    let zero = active_flows(&lb);
    assert_eq!(zero.len(), 7, "{zero:?}");
    assert!(zero.values().all(|f| *f == [0, 0]), "{zero:?}");

    // Long-lived connections: five through the DSR VIP, three through the NAT VIP, each
    // expected on the backend `ctl which` names before it starts.
    let plan: Vec<(&str, &str, &str, u16)> = vec![
        ("web-dsr", DSR_VIP, "10.77.0.101", 62001),
        ("web-dsr", DSR_VIP, "10.77.0.102", 62002),
        ("web-dsr", DSR_VIP, "10.77.0.103", 62003),
        ("web-dsr", DSR_VIP, "10.77.0.104", 62004),
        ("web-dsr", DSR_VIP, "10.77.0.101", 62005),
        ("web-nat", NAT_VIP, "10.78.0.102", 62011),
        ("web-nat", NAT_VIP, "10.78.0.103", 62012),
        ("web-nat", NAT_VIP, "10.78.0.104", 62013),
    ];
    let mut want = zero.clone();
    let mut streams = Vec::new();
    for (svc, vip, src, sport) in &plan {
        let v = lb.ctl_json(&["which", &format!("{src}:{sport}"), &format!("{vip}:80")]);
        assert_eq!(v["service"], *svc, "{v}");
        let b = v["backend"].as_str().expect("a backend").to_string();
        want.get_mut(&(svc.to_string(), b.clone()))
            .expect("known backend")[0] += 1;
        streams.push((
            *svc,
            b,
            Stream::start(&tb, vip, src, *sport, 14),
            Instant::now(),
        ));
    }
    println!("expected active flows: {want:?}");
    wait_active(&lb, &want, 8, "the open connections");
    // And it stays so (two more census passes), in the Prometheus gauge too.
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(active_flows(&lb), want);
    let (_, m) = scrape(&tb);
    assert_eq!(active_flows_metric(&m), want, "the gauge says the same");
    println!("{}", String::from_utf8_lossy(&lb.ctl(&["backends"]).stdout));
    let services = String::from_utf8_lossy(&lb.ctl(&["services"]).stdout).to_string();
    println!("{services}");
    let nat_line = services
        .lines()
        .find(|l| l.starts_with("web-nat "))
        .expect("web-nat listed");
    // The last two columns: active (established, as IPVS's ActiveConn) and inact.
    let cols: Vec<&str> = nat_line.split_whitespace().collect();
    assert_eq!(cols[cols.len() - 2..], ["3", "0"], "{services}");

    // Drain the backend of the first DSR connection: it keeps its flows, which keep working;
    // new flows go elsewhere.
    let drained = streams[0].1.clone();
    let drained_key = ("web-dsr".to_string(), drained.clone());
    let drained_flows = want[&drained_key][0];
    lb.ctl_json(&["drain", "web-dsr", &drained]);
    let out = tb.client(&[
        "--host",
        DSR_VIP,
        "--count",
        "150",
        "--concurrency",
        "4",
        "--source",
        "10.77.0.102",
        "--source",
        "10.77.0.103",
    ]);
    assert_eq!(out["errors"], serde_json::json!({}), "{}", why(&lb));
    assert!(
        out["per_backend"].get(&drained).is_none(),
        "no new flow to drained {drained}: {}",
        out["per_backend"]
    );
    // The requests' flows closed (counted as "other" until their closing timeout); the
    // established ones are exactly the long-lived connections, the drained backend's too.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let got = active_flows(&lb);
        let est: BTreeMap<_, _> = got.iter().map(|(k, f)| (k.clone(), f[0])).collect();
        let want_est: BTreeMap<_, _> = want.iter().map(|(k, f)| (k.clone(), f[0])).collect();
        if est == want_est && got[&drained_key] == [drained_flows, 0] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the drain:\n  got  {got:?}\n  want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let b = lb.ctl_json(&["backends"]);
    let state = b["services"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["backend"] == drained.as_str())
        .unwrap()["state"]
        .clone();
    assert_eq!(state, "drain", "{b}");

    // Every connection ran to its end on the backend predicted (the backends' own words).
    for (svc, b, st, _) in streams {
        assert_eq!(st.finish(), b, "{svc} connection");
    }
    // Closed: no longer established, counted as "other" until the closing timeout (5 s)...
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let got = active_flows(&lb);
        if got.values().all(|f| f[0] == 0) && got[&drained_key] == [0, drained_flows] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections of {drained}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...then gone, from ctl and from the gauge.
    wait_active(&lb, &zero, 12, "after the closing timeout");
    let (_, m) = scrape(&tb);
    assert_eq!(active_flows_metric(&m), zero);
    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

/// The testbed config made quiet: no health checks, backends' MACs static (no ARP), short
/// TCP timeouts, two workers (qpairs=2), so that once the clients stop nothing moves a
/// counter.
fn quiet_config(tb: &Net) -> String {
    let base = tb.testbed_config();
    let mut out = String::new();
    let mut in_health = false;
    for line in base.lines() {
        if line == "[service.health]" {
            in_health = true;
        }
        if in_health {
            in_health = !line.is_empty();
            continue;
        }
        out += line;
        out.push('\n');
        if let Some(n) = line
            .strip_prefix("address = \"10.77.0.1")
            .and_then(|r| r.strip_suffix('"'))
        {
            out += &format!("mac = \"02:fc:00:00:00:1{n}\"\n");
        }
    }
    let out = out
        .replacen("workers = [1]", "workers = [0, 1]", 1)
        .replacen("slowpath_cpu = 0\n", "", 1)
        .replacen("iface=lb0\"", "iface=lb0,qpairs=2\"", 1)
        .replacen(
            "\n[[port]]",
            "\n[global.timeouts]\ntcp_syn = 1\ntcp_closing = 1\n\n[[port]]",
            1,
        );
    assert!(!out.contains("[service.health]") && out.contains("qpairs=2"));
    assert_eq!(out.matches("mac = \"02:fc").count(), 7, "{out}");
    out
}

/// `ctl stats` without the figure that moves by itself.
fn without_uptime(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().expect("object").remove("uptime_s");
    v
}

#[test]
fn e2e_metrics_equal_ctl_stats_when_quiet() {
    let tb = Net::testbed("qm", 3);
    let cfg = quiet_config(&tb);
    let lb = Balancer::start(&tb, &cfg);

    // Traffic through both services, so that counters are not all zero.
    for (vip, src) in [(DSR_VIP, "10.77.0.101"), (NAT_VIP, "10.78.0.101")] {
        let out = tb.client(&[
            "--host",
            vip,
            "--count",
            "60",
            "--concurrency",
            "4",
            "--source",
            src,
        ]);
        assert_eq!(out["errors"], serde_json::json!({}), "{vip}: {out}");
    }

    // Quiet: two readings a second apart agree (flows expired, the kernel's own chatter over).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut prev = without_uptime(lb.ctl_json(&["stats"]));
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let cur = without_uptime(lb.ctl_json(&["stats"]));
        if cur == prev {
            break;
        }
        assert!(Instant::now() < deadline, "never quiet:\n{prev}\n{cur}");
        prev = cur;
    }

    // A scrape between two identical readings of `ctl stats` and `ctl backends`: then
    // every figure it carries must be exactly theirs. (A stray frame between the readings
    // makes them differ; then try again.)
    let mut tries = 0;
    let (stats, backends, page, m, up) = loop {
        tries += 1;
        assert!(tries <= 5, "the balancer did not stay quiet for one scrape");
        let s1 = lb.ctl_json(&["stats"]);
        let b1 = lb.ctl_json(&["backends"]);
        let (page, m) = scrape(&tb);
        let s2 = lb.ctl_json(&["stats"]);
        let b2 = lb.ctl_json(&["backends"]);
        let up = [
            s1["uptime_s"].as_f64().unwrap(),
            s2["uptime_s"].as_f64().unwrap(),
        ];
        if without_uptime(s1.clone()) == without_uptime(s2) && b1 == b2 {
            break (s1, b1, page, m, up);
        }
        std::thread::sleep(Duration::from_secs(1));
    };

    // Every sample the page should carry, computed here from the ctl JSON and the names the
    // README documents.
    let mut want: HashMap<String, f64> = HashMap::new();
    let mut put = |name: &str, labels: &[(&str, &str)], v: f64| {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let series = if l.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{}}}", l.join(","))
        };
        assert!(want.insert(series.clone(), v).is_none(), "{series} twice");
    };
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("a number: {v}"));
    put(
        "fulcrum_snapshot_generation",
        &[],
        num(&stats["generation"]),
    );
    let workers = stats["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2);
    for (i, w) in workers.iter().enumerate() {
        let i = i.to_string();
        for (k, v) in w.as_object().unwrap() {
            // `dropped` is the sum of `drops` and exported only by reason.
            if !v.is_u64() || k == "dropped" {
                continue;
            }
            let name = if k == "flows_active" || k == "local_ports_in_use" {
                format!("fulcrum_{k}")
            } else {
                format!("fulcrum_{k}_total")
            };
            put(&name, &[("worker", &i)], num(v));
        }
        for (reason, v) in w["drops"].as_object().unwrap() {
            put(
                "fulcrum_drops_total",
                &[("worker", &i), ("reason", reason)],
                num(v),
            );
        }
    }
    for p in stats["ports"].as_array().unwrap() {
        let port = p["name"].as_str().unwrap();
        for k in [
            "rx_packets",
            "tx_packets",
            "rx_bytes",
            "tx_bytes",
            "rx_missed",
            "rx_errors",
            "tx_errors",
        ] {
            put(
                &format!("fulcrum_port_{k}_total"),
                &[("port", port)],
                num(&p[k]),
            );
        }
        let up = if p["link"] == "up" { 1.0 } else { 0.0 };
        put("fulcrum_port_link_up", &[("port", port)], up);
    }
    // Per-backend traffic: `ctl stats` lists it too; it must be the same as `ctl backends`.
    let stats_backends = stats["backends"].as_array().unwrap();
    for s in backends["services"].as_array().unwrap() {
        let svc = s["service"].as_str().unwrap();
        put(
            "fulcrum_service_usable_backends",
            &[("service", svc)],
            num(&s["members"]),
        );
        for b in s["backends"].as_array().unwrap() {
            let name = b["backend"].as_str().unwrap();
            let l = [("service", svc), ("backend", name)];
            let st = stats_backends
                .iter()
                .find(|x| x["service"] == svc && x["backend"] == name)
                .unwrap_or_else(|| panic!("{svc}/{name} in ctl stats"));
            for k in [
                "packets",
                "bytes",
                "new_flows",
                "flows_established",
                "flows_other",
            ] {
                assert_eq!(st[k], b[k], "{svc}/{name} {k}: ctl stats vs ctl backends");
            }
            let up = if b["state"] == "up" { 1.0 } else { 0.0 };
            put("fulcrum_backend_up", &l, up);
            // The enum gauges: 1 for the backend's value, 0 for the others.
            for (metric, field, values) in [
                (
                    "fulcrum_backend_state",
                    "state",
                    &["up", "drain", "down", "maint", "unresolved"][..],
                ),
                (
                    "fulcrum_backend_health",
                    "health",
                    &["up", "down", "drain", "maint"][..],
                ),
                (
                    "fulcrum_backend_admin_state",
                    "admin",
                    &["enabled", "drain", "disabled"][..],
                ),
            ] {
                for v in values {
                    let one = if b[field] == *v { 1.0 } else { 0.0 };
                    put(
                        metric,
                        &[("service", svc), ("backend", name), ("state", v)],
                        one,
                    );
                }
            }
            let over = if b["admin_override"].is_null() {
                0.0
            } else {
                1.0
            };
            put("fulcrum_backend_admin_override", &l, over);
            put("fulcrum_backend_weight", &l, num(&b["weight"]));
            for k in ["packets", "bytes", "new_flows"] {
                put(&format!("fulcrum_backend_{k}_total"), &l, num(&b[k]));
            }
            for (state, k) in [
                ("established", "flows_established"),
                ("other", "flows_other"),
            ] {
                put(
                    "fulcrum_backend_flows_active",
                    &[("service", svc), ("backend", name), ("state", state)],
                    num(&b[k]),
                );
            }
            // Not checked here: no check counters, no latency.
            assert!(b["checks"].is_null() && b["last_check_ms"].is_null(), "{b}");
        }
    }
    // The uptime cannot equal any reading (time passes between them): it lies between them.
    let uptime = m["fulcrum_uptime_seconds"];
    assert!(
        up[0] <= uptime && uptime <= up[1],
        "uptime {uptime} not in {up:?}"
    );
    let mut got = m.clone();
    got.remove("fulcrum_uptime_seconds");
    // The endpoints' own connection counters move with every request, this scrape's too.
    got.retain(|k, _| !k.starts_with("fulcrum_endpoint_"));
    let mut diff: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: ctl {v}, metrics {:?}", got.get(k)))
        .collect();
    diff.extend(
        got.keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| format!("{k}: in the metrics only")),
    );
    diff.sort();
    assert!(diff.is_empty(), "{}\n\npage:\n{page}", diff.join("\n"));

    // Totals over the workers: the sums of the per-worker samples.
    let totals = &stats["totals"];
    for (k, v) in totals.as_object().unwrap() {
        if !v.is_u64() || k == "dropped" {
            continue;
        }
        let name = if k == "flows_active" || k == "local_ports_in_use" {
            format!("fulcrum_{k}")
        } else {
            format!("fulcrum_{k}_total")
        };
        let sum: f64 = (0..2)
            .map(|i| m[&format!("{name}{{worker=\"{i}\"}}")])
            .sum();
        assert_eq!(sum, num(v), "total {k}");
    }
    for (reason, v) in totals["drops"].as_object().unwrap() {
        let sum: f64 = (0..2)
            .map(|i| m[&format!("fulcrum_drops_total{{worker=\"{i}\",reason=\"{reason}\"}}")])
            .sum();
        assert_eq!(sum, num(v), "total drops {reason}");
    }
    // Not a trivial agreement: traffic went through both workers' counters and backends.
    let forwarded: f64 = (0..2)
        .map(|i| m[&format!("fulcrum_forwarded_total{{worker=\"{i}\"}}")])
        .sum();
    assert!(forwarded > 0.0 && num(&totals["forwarded"]) == forwarded);
    let nat_new: f64 = ["b1", "b2", "b3"]
        .iter()
        .map(|b| {
            m[&format!("fulcrum_backend_new_flows_total{{service=\"web-nat\",backend=\"{b}\"}}")]
        })
        .sum();
    assert!(nat_new > 0.0, "{nat_new}");
    println!("{} samples equal to ctl stats / ctl backends", want.len());

    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

//! Restarts without losing a flow (issue 21), end to end in the testbed namespaces with real
//! kernel TCP:
//!
//! - `kill -9` of the balancer while 200 NAT and 200 DSR streams run (`GET /stream`, one line
//!   every 100 ms), then a new process on the same config: it adopts the killed one's flow
//!   tables (and backend ids and neighbours), and every stream completes intact. Printed: the
//!   time from the kill to the new process serving, and the longest silence a stream saw
//!   (the forwarding gap as a client sees it, retransmission backoff included).
//! - An upgrade by `scripts/upgrade.sh` to a rebuilt binary with a bumped version string
//!   (`scripts/build-upgrade-target.sh`: the same source, `+next`; `$FULCRUM_UPGRADE_BIN` or
//!   `target/upgrade/fulcrum-next`) under the same load: it adopts the same files, 0 broken
//!   streams, the gap printed, and `ctl status` then reports the new version.
//! - A restart with another `flow_table_capacity` starts empty and says why in one log line
//!   and in `ctl status`.
//!
//! FULCRUM_RESTART_STREAMS sets the streams per service (default 200).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{Balancer, Net, Streams, must, repo, tunnel_service};

const DSR_VIP: &str = "10.77.0.100";
const NAT_VIP: &str = "10.79.0.200";
/// Seconds each stream lasts: long enough to span a restart on a loaded 2-core host.
const SECS: u32 = 25;

fn streams_per_service() -> usize {
    std::env::var("FULCRUM_RESTART_STREAMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

/// The binary the upgrade moves to: built from the same source with a bumped version string
/// by `scripts/build-upgrade-target.sh` (scripts/test.sh runs it before the suite builds).
fn next_version_bin() -> PathBuf {
    let bin = std::env::var_os("FULCRUM_UPGRADE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/upgrade/fulcrum-next"));
    assert!(
        bin.exists(),
        "{} is missing: run scripts/build-upgrade-target.sh first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// `tests/tools/streams.py` in the client namespace: `n` DSR and `n` NAT streams.
fn streams(tb: &Net, n: usize, tag: &str) -> Streams {
    let targets = [
        format!("{DSR_VIP}:80:10.77.0.101"),
        format!("{NAT_VIP}:80:10.78.0.101"),
    ];
    Streams::start(tb, &targets, n, SECS, tag)
}

/// Asserts that every stream completed (`n` of each of `kinds`), and prints the figures.
fn check_streams(
    what: &str,
    v: &serde_json::Value,
    n: usize,
    kinds: [&str; 2],
    to_serving: Duration,
) {
    println!(
        "{what}: {} of {} streams intact ({n} {} + {n} {}); kill/stop to new process serving \
         {:.0} ms; longest silence in a stream {} ms (median of the streams' longest {} ms)",
        v["intact"],
        v["streams"],
        kinds[0],
        kinds[1],
        to_serving.as_secs_f64() * 1e3,
        v["max_gap_ms"],
        v["median_max_gap_ms"],
    );
    assert_eq!(v["streams"], 2 * n as u64, "{v}");
    assert_eq!(v["broken_count"], 0, "{what}: broken streams: {v:#}");
    assert_eq!(v["intact"], 2 * n as u64, "{v}");
}

/// `kill -9` of the balancer, then a new process on `cfg`: it must adopt the killed one's
/// flow tables. The new process, the time from the kill to it serving, and `ctl status`.
fn kill_9_and_start(lb: Balancer, tb: &Net, cfg: &str) -> (Balancer, Duration, serde_json::Value) {
    let killed = Instant::now();
    testkit::signal(lb.pid(), "KILL");
    drop(lb); // reaps it and removes its DPDK runtime files
    let lb = Balancer::start(tb, cfg);
    let to_serving = killed.elapsed();
    let log = lb.log();
    assert!(log.contains("flow tables adopted"), "{log}");
    let st = lb.ctl_json(&["status"]);
    println!("after kill -9: {}", st["flow_tables"]);
    (lb, to_serving, st)
}

#[test]
fn kill_9_and_upgrade_keep_every_nat_and_dsr_stream() {
    let n = streams_per_service();
    let tb = Net::testbed("rs", 3);
    let cfg = tb.testbed_config();
    let lb = Balancer::start(&tb, &cfg);
    lb.wait_up(6);
    let status = lb.ctl_json(&["status"]);
    let dir = status["flow_tables"]["dir"]
        .as_str()
        .expect("a directory")
        .to_string();
    println!("flow tables in {dir}: {}", status["flow_tables"]);

    // 1. kill -9 under load.
    let s = streams(&tb, n, "kill");
    s.wait_ready();
    std::thread::sleep(Duration::from_secs(2));
    let (lb, to_serving, st) = kill_9_and_start(lb, &tb, &cfg);
    let adopted = st["flow_tables"]["adopted"].as_u64().expect("adopted");
    // Each DSR stream has one entry, each NAT stream two (some may have closed already).
    assert!(adopted >= 3 * n as u64 * 9 / 10, "adopted {adopted}: {st}");
    check_streams("kill -9", &s.finish(), n, ["DSR", "NAT"], to_serving);

    // 2. An upgrade with scripts/upgrade.sh to the next version: SIGTERM, the new binary
    //    adopts the same files.
    let next = next_version_bin();
    let old_version = st["version"].as_str().expect("version").to_string();
    let s = streams(&tb, n, "upgrade");
    s.wait_ready();
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    let pid = lb.pid();
    // The script stops the old process itself (SIGTERM) and waits for it.
    let script = repo().join("scripts/upgrade.sh");
    let new_log = tb.dir.join("upgraded.err");
    let out = must(
        Command::new(&script)
            .env("FULCRUM_NETNS", tb.ns("lb"))
            .env("FULCRUM_LOG_FILE", &new_log)
            .args(["--pid", &pid.to_string(), "--bin"])
            .arg(&next)
            .arg("--config")
            .arg(Balancer::config_path(&tb)),
    );
    let to_serving = t0.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("upgrade.sh: {}", text.trim());
    // The same control socket, now answered by the new binary.
    let new_version = lb.ctl_json(&["status"])["version"]
        .as_str()
        .expect("version")
        .to_string();
    drop(lb);
    let up_log = std::fs::read_to_string(&new_log).unwrap_or_default();
    assert!(up_log.contains("flow tables adopted"), "{up_log}");
    check_streams(
        "upgrade (SIGTERM + start)",
        &s.finish(),
        n,
        ["DSR", "NAT"],
        to_serving,
    );
    println!("upgraded from {old_version} to {new_version}");
    assert_ne!(old_version, new_version);
    assert!(new_version.contains("+next"), "{new_version}");
    let new_pid: u32 = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("upgrade.sh prints pid=");
    testkit::signal(new_pid, "TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{new_pid}")).exists() {
        assert!(Instant::now() < deadline, "upgraded fulcrum did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }

    // 3. Another capacity: empty, with the reason in one line and in `ctl status`.
    let bigger = cfg.replace(
        "flow_table_capacity = 65536",
        "flow_table_capacity = 131072",
    );
    assert_ne!(
        bigger, cfg,
        "conf/examples/testbed.toml's capacity changed: update this"
    );
    let lb = Balancer::start(&tb, &bigger);
    let log = lb.log();
    let line = log
        .lines()
        .find(|l| l.contains("flow tables start empty"))
        .unwrap_or_else(|| panic!("no reason logged:\n{log}"));
    println!("capacity changed: {line}");
    assert!(
        line.contains("holds 65536 entries, flow_table_capacity is 131072"),
        "{line}"
    );
    let st = lb.ctl_json(&["status"]);
    let why = st["flow_tables"]["empty"].as_str().expect("a reason");
    assert!(why.contains("flow_table_capacity is 131072"), "{st}");
    let text = String::from_utf8_lossy(&lb.ctl(&["status"]).stdout).to_string();
    assert!(text.contains("started empty: "), "{text}");
    lb.stop();
    // A clean stop keeps the files; this test's are its own to remove.
    std::fs::remove_dir_all(&dir).expect("the flow-table directory");
}

/// `kill -9` while streams run through tunnels (testkit's tunnelled layout: clients behind a
/// router, backends in another subnet reached by IPIP and by GUE, each answering the client
/// directly), then a new process on the same config: it adopts the tables, every stream
/// completes, and no tunnel endpoint refused a packet. A quarter of
/// FULCRUM_RESTART_STREAMS per service (50 by default): each stream's packets pass through
/// a Python endpoint on its backend.
#[test]
fn kill_9_keeps_every_ipip_and_gue_stream() {
    let n = (streams_per_service() / 4).max(10);
    let mut net = Net::tunnelled("rk", 3);
    let (ipip_vip, gue_vip) = ("10.69.0.100", "10.69.0.101");
    let cfg = format!(
        "{}{}{}",
        net.tunnelled_config(),
        tunnel_service("ipip", ipip_vip, "ipip", &[1, 1, 1], false),
        tunnel_service("gue", gue_vip, "gue", &[1, 1, 1], false),
    );
    let lb = Balancer::start(&net, &cfg);
    lb.wait_up(6);
    let dir = lb.ctl_json(&["status"])["flow_tables"]["dir"]
        .as_str()
        .expect("a directory")
        .to_string();
    let targets = [
        format!("{ipip_vip}:80:10.68.0.101"),
        format!("{gue_vip}:80:10.68.0.102"),
    ];
    let s = Streams::start(&net, &targets, n, SECS, "tunnel");
    s.wait_ready();
    std::thread::sleep(Duration::from_secs(2));
    let (lb, to_serving, st) = kill_9_and_start(lb, &net, &cfg);
    let adopted = st["flow_tables"]["adopted"].as_u64().expect("adopted");
    // One entry per stream.
    assert!(adopted >= 2 * n as u64 * 9 / 10, "adopted {adopted}: {st}");
    check_streams(
        "kill -9, tunnels",
        &s.finish(),
        n,
        ["IPIP", "GUE"],
        to_serving,
    );
    let v = lb.stop();
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true), "{v}");
    let d = net.decap_stop_all_clean();
    println!("tunnel endpoints: received {:?}", d.received);
    for carrier in ["ipip", "gue4"] {
        assert!(
            d.received.get(carrier).is_some_and(|&n| n > 0),
            "{carrier}: {d:?}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("the flow-table directory");
}

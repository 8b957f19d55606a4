//! A bounded soak: `fulcrum run --duration` (data plane and slow path) on real DPDK, fed by
//! `net_pcap` with `infinite_rx=1` looping a mixed pcap (`tests/tools/gen_flood.py`:
//! established DSR and NAT flows with replies, a SYN flood larger than the flow table, and
//! hostile frames that are dropped, answered or given to the slow path).
//!
//! 120 s by default (CI); `perf/soak.sh` runs it for ten minutes (`FULCRUM_SOAK_SECS=600`).
//! Sampled every second and printed: VmRSS, open file descriptors, mbufs in use and flow-table
//! occupancy (`ctl status`). What must hold:
//! - memory: after warm-up (the first fifth of the run: preallocated pools and tables are
//!   touched for the first time), VmRSS stays flat;
//! - file descriptors: flat after warm-up (the control socket's connections come and go);
//! - mbufs: in use while running within a bound of the first sample after warm-up (the
//!   preload, plus what sits in rings and per-core caches); once stopped, exactly the frames
//!   `net_pcap` preloaded for `infinite_rx` are out of the pool, however many were forwarded;
//! - every received packet is accounted (rx = tx + drops + slow path, per worker), and only
//!   the drop reasons the mix calls for appear;
//! - the flow table stays within its bound at every sample, and evicts.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::{Scratch, eal_args_toml, eal_prefix, fixture, fulcrum, must, repo, stdout_json};

const CAPACITY: u64 = 4096;
/// Allowed VmRSS growth after warm-up.
const RSS_TOLERANCE_KIB: u64 = 4 * 1024;
/// Allowed spread of mbufs in use after warm-up: the per-core caches (256 each, two cores)
/// and a few bursts in flight.
const MBUF_TOLERANCE: u64 = 1024;
/// Allowed spread of open file descriptors after warm-up (a control connection or two).
const FD_TOLERANCE: u64 = 4;

fn soak_secs() -> u64 {
    std::env::var("FULCRUM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// One sample of a running balancer.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: u64,
    mbufs_in_use: u64,
    flows: u64,
}

/// A sample of `pid`, whose control socket is `sock`; `None` before it serves (or after).
fn sample(pid: u32, sock: &str, t: f64) -> Option<Sample> {
    let out = fulcrum()
        .args(["ctl", "--json", "-s", sock, "status"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let flows = v["workers"]
        .as_array()?
        .iter()
        .filter_map(|w| w["flows_active"].as_u64())
        .sum();
    Some(Sample {
        t,
        rss_kib: vm_rss_kib(pid)?,
        fds: open_fds(pid)?,
        mbufs_in_use: v["mbufs_in_use"].as_u64()?,
        flows,
    })
}

/// First, min and max of `f` over the samples; the spread is checked against a bound.
fn flat(what: &str, after: &[Sample], f: impl Fn(&Sample) -> u64, tolerance: u64) {
    let first = f(after.first().expect("samples after warm-up"));
    let (min, max) = after
        .iter()
        .map(&f)
        .fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
    println!(
        "{what}: {} samples after warm-up: first {first}, min {min}, max {max} (spread {}, \
         tolerance {tolerance})",
        after.len(),
        max - min
    );
    assert!(
        max - min <= tolerance,
        "{what} not flat after warm-up: {min}..{max}; samples {after:?}"
    );
}

#[test]
fn soak_mixed_traffic_flat_memory_and_books() {
    let secs = soak_secs();
    let s = Scratch::new("soak");
    let pcap = s.join("mix.pcap");
    let g = must(
        std::process::Command::new("python3")
            .arg(repo().join("tests/tools/gen_flood.py"))
            .arg("--out")
            .arg(&pcap)
            .args(["--syns", "8000", "--established", "100", "--data", "10"])
            .args(["--hostile", "20"]),
    );
    let generated = stdout_json(&g);
    let frames = generated["frames"].as_u64().expect("frames");
    let cfg = fixture("soak.toml")
        .set("eal_args", eal_args_toml("soak"))
        .set("prefix", eal_prefix("soak"))
        .set("capacity", CAPACITY)
        .set("pcap", pcap.display())
        .render();
    std::fs::write(s.join("f.toml"), cfg).expect("config");

    let started = Instant::now();
    let mut child = fulcrum()
        .args(["run", "--json", "--duration", &secs.to_string(), "-c"])
        .arg(s.join("f.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    // stderr is read on the side so the child never blocks on a full pipe.
    let mut err_pipe = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = err_pipe.read_to_string(&mut e);
        e
    });
    let sock = format!("/tmp/{}.sock", eal_prefix("soak"));
    let mut samples: Vec<Sample> = Vec::new();
    let deadline = started + Duration::from_secs(secs + 60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if let Some(x) = sample(pid, &sock, started.elapsed().as_secs_f64()) {
            samples.push(x);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fulcrum run --duration {secs} did not stop by itself");
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    let stderr = err_reader.join().expect("stderr reader");
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));

    // Books.
    let t = &v["totals"];
    let n = |k: &str| t[k].as_u64().unwrap_or_else(|| panic!("{k} in {t}"));
    let elapsed = v["elapsed_s"].as_f64().expect("elapsed");
    let rx = n("rx");
    println!(
        "soak {secs} s ({elapsed:.1} s of workers): rx {rx} ({:.2} Mpps, {:.0} loops of the \
         {frames}-frame mix), tx {}, to slow path {}, dropped {}; flows created {}, evicted \
         {}, expired {}, active {} (capacity {CAPACITY})",
        rx as f64 / elapsed / 1e6,
        rx as f64 / frames as f64,
        n("tx"),
        n("to_slowpath"),
        n("dropped"),
        n("flows_created"),
        n("flows_evicted"),
        n("flows_expired"),
        n("flows_active"),
    );
    for w in v["workers"].as_array().expect("workers") {
        assert_eq!(w["balanced"].as_bool(), Some(true), "worker books: {w}");
    }
    assert!(rx > 10 * frames, "the mix looped: rx {rx}");
    assert_eq!(
        rx + n("handoff_in") + n("from_slowpath"),
        n("tx") + n("handoff_out") + n("to_slowpath") + n("dropped"),
        "every packet accounted"
    );
    assert_eq!(
        v["ports"][0]["ipackets"].as_u64(),
        Some(rx),
        "port rx = worker rx"
    );
    assert_eq!(
        v["ports"][0]["rx_nombuf"].as_u64(),
        Some(0),
        "never out of mbufs"
    );
    let expected_drops = [
        "malformed_l2",
        "not_vip",
        "fragment",
        "malformed_ipv4",
        "no_service",
        // The slow path's ring may overflow at line rate: still counted.
        "slowpath_full",
    ];
    let mut drops = Vec::new();
    for (reason, count) in t["drops"].as_object().expect("drops") {
        let c = count.as_u64().unwrap_or(0);
        if c > 0 {
            drops.push(format!("{reason} {c}"));
            assert!(
                expected_drops.contains(&reason.as_str()),
                "unexpected drop reason {reason} ({c})"
            );
        }
    }
    println!("drops: {}", drops.join(", "));
    for k in &expected_drops[..5] {
        assert!(t["drops"][k].as_u64().unwrap_or(0) > 0, "no {k} drop seen");
    }
    assert!(n("replies") > 0 && n("to_slowpath") > 0);
    assert!(n("flows_active") <= CAPACITY, "flow table bound");
    assert!(n("flows_evicted") > 0, "the flood evicted");
    assert!(n("syn_unrecorded") > 0, "DSR SYNs found the table full");

    // Mbufs: what net_pcap preloaded, nothing more.
    let in_use = v["mempool"]["in_use"].as_u64().expect("mempool in_use");
    println!(
        "mbufs in use after stop: {in_use} of {} ({frames} preloaded by infinite_rx)",
        v["mempool"]["capacity"]
    );
    assert_eq!(
        in_use, frames,
        "mbufs out of the pool after stop = the preload"
    );

    // Memory, descriptors, mbufs and flows: flat after warm-up, printed every tenth sample.
    assert!(samples.len() >= 5, "too few samples: {samples:?}");
    println!("   t s   VmRSS KiB   fds   mbufs in use   flows");
    let step = (samples.len() / 12).max(1);
    for x in samples.iter().step_by(step).chain(samples.last()) {
        println!(
            "{:6.0} {:11} {:5} {:14} {:7}",
            x.t, x.rss_kib, x.fds, x.mbufs_in_use, x.flows
        );
    }
    let warm = secs as f64 / 5.0;
    let after: Vec<Sample> = samples
        .iter()
        .filter(|x| x.t >= warm && x.t <= secs as f64)
        .copied()
        .collect();
    let first = after.first().expect("samples after warm-up").rss_kib;
    let max = after.iter().map(|x| x.rss_kib).max().expect("samples");
    println!(
        "VmRSS: {} KiB at {warm:.0} s, max {max} KiB (growth {} KiB, tolerance \
         {RSS_TOLERANCE_KIB} KiB)",
        first,
        max.saturating_sub(first)
    );
    assert!(
        max <= first + RSS_TOLERANCE_KIB,
        "VmRSS grew after warm-up: {first} -> {max} KiB; samples {samples:?}"
    );
    flat("open fds", &after, |x| x.fds, FD_TOLERANCE);
    flat("mbufs in use", &after, |x| x.mbufs_in_use, MBUF_TOLERANCE);
    let flows_max = samples.iter().map(|x| x.flows).max().unwrap_or(0);
    println!("flow-table occupancy: at most {flows_max} of {CAPACITY} in any sample");
    assert!(
        flows_max <= CAPACITY,
        "flow table over its bound: {samples:?}"
    );
    assert!(
        after.iter().all(|x| x.flows > 0),
        "the flow table emptied while traffic looped: {after:?}"
    );
}

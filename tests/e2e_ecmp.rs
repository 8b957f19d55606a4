//! Scale-out end to end (#17): three Fulcrum instances with the same config behind a Linux
//! router that spreads flows by ECMP, each announcing the VIP by BGP from a real BIRD over its
//! DPDK port's kernel exception path (testkit's `Ecmp`, scripts/ecmp-testbed.sh). Clients are
//! real kernel TCP behind the router; DSR backends answer them directly.
//!
//! Each case prints what it measured:
//! - flows spread over the three instances (their own counters), every connection answered by
//!   the backend `fulcrum which` names; BGP Established on each instance over the DPDK port,
//!   ping to each instance's own address answered, no VIP frame at any exception path;
//! - `kill -9` of one instance under 300 long streams and a request loop: the router's
//!   withdrawal time, broken streams (<= 1%), failed requests (only in the withdrawal window);
//! - the disable file: withdrawn within 1 s, 0 broken streams, back when it goes;
//! - an instance's pool empties (its link to the backends cut): it withdraws, the others serve;
//! - an instance returns: the router rehashes (flows moved counted), 0 broken streams.
//!
//! The testbed runs three DPDK processes, four BIRDs and Python clients and backends: on
//! 2 cores the cases run alone (.config/nextest.toml).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::spread::{client_sources, place};
use testkit::{Ecmp, Load, LoadSpec, Streams};

const VIP: &str = Ecmp::VIP;
const THIRDS: [(&str, f64); 3] = [("b1", 1.0), ("b2", 1.0), ("b3", 1.0)];

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// A request loop of `secs` from the last client address, 4 at a time.
fn request_loop(e: &Ecmp, secs: u32) -> Load {
    let src = client_sources(Ecmp::CLIENTS)[3].clone();
    Load::start(
        &e.net,
        &LoadSpec {
            vip: VIP,
            sources: &[&src],
            secs,
            concurrency: 4,
            streams: 0,
            stream_secs: 1,
        },
    )
}

/// The failed requests of a request loop's JSON: (start time, error).
fn failures(v: &serde_json::Value) -> Vec<(f64, String)> {
    v["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| {
            let e = r["error"].as_str()?;
            Some((r["at"].as_f64().unwrap_or(0.0), e.to_owned()))
        })
        .collect()
}

fn fx0_rx(e: &Ecmp, i: usize) -> u64 {
    e.net
        .exec(
            &format!("lb{i}"),
            &["cat", "/sys/class/net/fx0/statistics/rx_packets"],
        )
        .trim()
        .parse()
        .expect("rx_packets")
}

#[test]
fn ecmp_flows_spread_over_three_instances_and_bgp_rides_the_exception_path() {
    let e = Ecmp::up("es");
    // The exception path: each instance's BIRD Established over its DPDK port, its own
    // address answering ping from the router.
    for i in 1..=3 {
        let (mine, router) = (
            e.bird(i).bgp_state("uplink"),
            e.router.bgp_state(&format!("lb{i}")),
        );
        let ping = e
            .net
            .cmd("rt", "ping")
            .args(["-c", "3", "-i", "0.2", "-W", "1", &Ecmp::addr(i)])
            .output()
            .expect("ping");
        println!(
            "lb{i}: BGP {mine} (router's side {router}) over fx0; ping {}: {}",
            Ecmp::addr(i),
            String::from_utf8_lossy(&ping.stdout)
                .lines()
                .find(|l| l.contains("received"))
                .unwrap_or("?")
        );
        assert_eq!(mine, "Established");
        assert_eq!(router, "Established");
        let out = String::from_utf8_lossy(&ping.stdout);
        assert!(ping.status.success(), "ping lb{i}: {out}");
        // Answered once: by the workers, not also by the kernel behind the exception path.
        assert!(!out.contains("duplicates"), "ping lb{i}: {out}");
    }

    let created = e.per_instance("flows_created");
    let forwarded = e.per_instance("forwarded");
    let rx: Vec<u64> = (1..=3).map(|i| fx0_rx(&e, i)).collect();
    let count = 600;
    // Every connection answered by the backend `fulcrum which` names (any instance's config
    // places flows as every other's), shares within tolerance of a third.
    place(
        &e.net,
        e.lb(1),
        "through ECMP",
        Ecmp::CLIENTS,
        VIP,
        count,
        &THIRDS,
    );
    let created = e.since("flows_created", &created);
    let forwarded = e.since("forwarded", &forwarded);
    let rx: Vec<u64> = (1..=3).map(|i| fx0_rx(&e, i) - rx[i - 1]).collect();
    println!(
        "per instance: flows created {created:?}, packets forwarded {forwarded:?}; frames to \
         the kernel interfaces meanwhile (BGP, BFD, ARP) {rx:?}"
    );
    for (i, c) in created.iter().enumerate() {
        assert!(
            *c as f64 >= 0.15 * count as f64,
            "lb{} took {c} of {count} connections: ECMP did not spread ({created:?})",
            i + 1
        );
    }
    for i in 1..=3 {
        let k = e.lb(i).ctl_json(&["status"])["kernel"].clone();
        println!("lb{i} exception path: {k}");
        assert_eq!(
            k["to_kernel_vip"], 0,
            "a VIP frame reached lb{i}'s kernel path"
        );
        assert_eq!(k["from_kernel_vip"], 0, "{k}");
        assert_eq!(k["to_kernel_refused"], 0, "{k}");
        assert!(k["from_kernel"].as_u64().unwrap_or(0) > 0, "{k}");
    }
}

#[test]
fn ecmp_kill_9_of_one_instance_breaks_at_most_one_percent_of_streams() {
    let mut e = Ecmp::up("ek");
    let streams = Streams::start(&e.net, &Ecmp::targets(3), 100, 20, "kill");
    streams.wait_ready();
    let load = request_loop(&e, 12);
    std::thread::sleep(Duration::from_secs(3));
    let before = e.per_instance("flows_created");
    let bfd = e.router.birdc(&["show", "bfd", "sessions"]);
    let killed_at = now_s();
    let t0 = e.kill(2);
    let withdrawn = e.wait_nexthops(2, t0, Duration::from_secs(10), "kill -9");
    if withdrawn > Duration::from_secs(1) {
        println!(
            "slow withdrawal; the router's BFD before the kill:\n{bfd}\nnow:\n{}",
            e.router.birdc(&["show", "bfd", "sessions"])
        );
    }
    let withdrawn_at = killed_at + withdrawn.as_secs_f64();
    println!(
        "kill -9 lb2: the router's FIB dropped its next hop in {:.0} ms (BFD 100 ms x 3)",
        withdrawn.as_secs_f64() * 1e3
    );
    std::thread::sleep(Duration::from_secs(2));
    let picked = e.since("flows_created", &before);
    let s = streams.finish();
    let l = load.finish();
    let failed = failures(&l);
    let slow = l["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["ms"].as_f64().unwrap_or(0.0) > 900.0)
        .count();
    println!(
        "flows created per instance before the kill {before:?}; streams: {} of {} intact, {} \
         broken (longest silence {} ms); flows created on lb1/lb3 after the kill (new requests and moved streams): {:?}; requests: {} of {}, failed {} \
         {:?}, {slow} took over 900 ms (a SYN retransmitted)",
        s["intact"],
        s["streams"],
        s["broken_count"],
        s["max_gap_ms"],
        [picked[0], picked[2]],
        l["ok"],
        l["requests"],
        failed.len(),
        failed
            .iter()
            .map(|(at, e)| format!("{e} at kill{:+.2}s", at - killed_at))
            .collect::<Vec<_>>()
    );
    // What bounds it: BFD (100 ms x 3) on the session, which the TAP interface takes down
    // with the process (~300 ms); on a starved host BIRD's timers run late, and the hold time
    // (9 s) is the backstop.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("host load average at the kill: {}", load.trim());
    assert!(
        withdrawn < Duration::from_secs(9),
        "the router took {withdrawn:?} to withdraw a killed instance"
    );
    let broken = s["broken_count"].as_u64().expect("broken_count");
    assert!(broken * 100 <= 300, "{broken} of 300 streams broke: {s:#}");
    // A request fails only if it started while the router still sent it to the dead instance
    // (its SYN retransmissions inside the client's 5 s timeout reach a survivor otherwise).
    for (at, err) in &failed {
        assert!(
            *at <= withdrawn_at + 0.5,
            "a request started {:.2} s after the withdrawal failed: {err}",
            at - withdrawn_at
        );
    }
}

#[test]
fn ecmp_disable_file_drains_an_instance_within_a_second_without_a_break() {
    let e = Ecmp::up("ed");
    let streams = Streams::start(&e.net, &Ecmp::targets(3), 50, 12, "disable");
    streams.wait_ready();
    let load = request_loop(&e, 8);
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    e.disable(1, true);
    let gone = e.wait_nexthops(2, t0, Duration::from_secs(1), "disable file");
    let why = e.lb(1).ctl_json(&["status"])["announcements"][0]["reason"].clone();
    assert_eq!(why, "node disabled (disable file)");
    std::thread::sleep(Duration::from_secs(2));
    let forwarded = e.per_instance("forwarded");
    std::thread::sleep(Duration::from_secs(1));
    let drained = e.since("forwarded", &forwarded);
    let t1 = Instant::now();
    e.disable(1, false);
    let back = e.wait_nexthops(3, t1, Duration::from_secs(5), "disable file removed");
    let s = streams.finish();
    let l = load.finish();
    println!(
        "disable file on lb1: withdrawn in {:.0} ms, announced again {:.0} ms after removal; \
         packets forwarded per instance in a second while drained {drained:?}; streams {} of \
         {} intact; requests {} of {} answered",
        gone.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3,
        s["intact"],
        s["streams"],
        l["ok"],
        l["requests"]
    );
    assert_eq!(s["broken_count"], 0, "{s:#}");
    assert_eq!(l["ok"], l["requests"], "{}", l["errors"]);
    assert!(drained[1] > 0 && drained[2] > 0, "{drained:?}");
}

#[test]
fn ecmp_an_instance_whose_pool_empties_withdraws_and_the_others_serve() {
    let e = Ecmp::up("ep");
    let load = request_loop(&e, 10);
    std::thread::sleep(Duration::from_secs(1));
    let cut_at = now_s();
    let t0 = Instant::now();
    e.cut(3, true);
    let gone = e.wait_nexthops(2, t0, Duration::from_secs(10), "pool empty");
    let withdrawn_at = cut_at + gone.as_secs_f64();
    let why = e.lb(3).ctl_json(&["status"])["announcements"][0]["reason"].clone();
    assert_eq!(why, "pool empty");
    std::thread::sleep(Duration::from_secs(3));
    let t1 = Instant::now();
    e.cut(3, false);
    let back = e.wait_nexthops(3, t1, Duration::from_secs(10), "link mended");
    let l = load.finish();
    let failed = failures(&l);
    println!(
        "lb3's link to the backends cut: withdrawn {:.0} ms later (checks every 500 ms, fall 3), \
         announced again {:.0} ms after it was mended; requests {} of {} answered, failed {:?}",
        gone.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3,
        l["ok"],
        l["requests"],
        failed
            .iter()
            .map(|(at, e)| format!("{e} at cut{:+.2}s", at - cut_at))
            .collect::<Vec<_>>()
    );
    // Only connections sent to lb3 between the cut and the withdrawal can fail.
    for (at, err) in &failed {
        assert!(
            *at >= cut_at - 5.0 && *at <= withdrawn_at + 0.5,
            "a request at cut{:+.2}s failed outside the window: {err}",
            at - cut_at
        );
    }
}

#[test]
fn ecmp_an_instance_that_returns_takes_flows_back_without_a_break() {
    let mut e = Ecmp::up("er");
    e.stop(3);
    e.wait_nexthops(2, Instant::now(), Duration::from_secs(5), "clean stop");
    let n = 200;
    let streams = Streams::start(&e.net, &Ecmp::targets(2), n / 2, 15, "return");
    streams.wait_ready();
    std::thread::sleep(Duration::from_secs(1));
    let before = e.per_instance("flows_created");
    let t0 = Instant::now();
    e.start(3);
    let back = e.wait_nexthops(3, t0, Duration::from_secs(30), "return");
    std::thread::sleep(Duration::from_secs(2));
    let moved = e.since("flows_created", &before);
    let s = streams.finish();
    let total: u64 = moved.iter().sum();
    println!(
        "lb3 returned: announced {:.0} ms after its start; the router rehashed: {total} of {n} \
         streams moved (picked up mid-stream, per instance {moved:?}); streams {} of {} intact",
        back.as_secs_f64() * 1e3,
        s["intact"],
        s["streams"]
    );
    assert_eq!(s["broken_count"], 0, "{s:#}");
    assert!(
        moved[2] > 0,
        "no stream moved to the returning instance: {moved:?}"
    );
}

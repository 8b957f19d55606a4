//! A SYN flood from random spoofed sources, mixed with established DSR and NAT flows, through
//! `fulcrum run` on real DPDK (`net_pcap` reads the pcap made by `tests/tools/gen_flood.py`
//! and writes what is sent) with a flow table far smaller than the flood (4096 entries, 200k
//! SYNs); then the same with a flood of spoofed ACKs, which the pipeline takes as mid-stream
//! pickups.
//!
//! What must hold (the flow table's admission policy, `dataplane/src/flow/`: every new flow
//! is admitted but a DSR SYN that finds no room, which is forwarded unrecorded (a SYN never
//! evicts); a full table evicts an expired entry, else the oldest half-open or UDP one among
//! the 16 it examines, and an established one only when all 16 are established; a pickup
//! counts as half-open until its second packet):
//! - the table stays within its bound, and the evictions and unrecorded SYNs are counted;
//! - every packet of every established flow is delivered, DSR and NAT, both directions of
//!   NAT, each flow to one backend; nothing at all is dropped (the flood's SYNs are
//!   forwarded too: they are VIP traffic);
//! - no mbuf is left out of the pool, and the process's peak RSS (`VmHWM` in `/proc/PID/status`, read while it runs) does
//!   not grow with the size of the flood (50k vs 200k SYNs). (`fulcrum run` rather than
//!   `fulcrum replay` for this: replay's pcap reader touches its 8 MB buffer as far as the
//!   file reaches, which would be measured too.)

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;

use testkit::traffic::read_pcap;
use testkit::{Scratch, eal_args_toml, eal_prefix, fixture, fulcrum, must, repo, stdout_json};

const CAPACITY: u64 = 4096;
const ESTABLISHED: usize = 200;
/// Allowed growth of the peak RSS from a 50k to a 200k SYN flood.
const RSS_TOLERANCE_KIB: u64 = 2 * 1024;

const DSR_MACS: [[u8; 6]; 4] = [
    [2, 0, 0, 0, 0, 0x11],
    [2, 0, 0, 0, 0, 0x12],
    [2, 0, 0, 0, 0, 0x13],
    [2, 0, 0, 0, 0, 0x14],
];
const NAT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x21];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn config(tag: &str, input: &Path, output: &Path) -> String {
    fixture("flood.toml")
        .set("eal_args", eal_args_toml(tag))
        .set("prefix", eal_prefix(tag))
        .set("capacity", CAPACITY)
        .set("input", input.display())
        .set("output", output.display())
        .render()
}

/// One run: the generator's description, the counters, the output, the peak RSS.
struct Flood {
    generated: serde_json::Value,
    report: serde_json::Value,
    out: Vec<Vec<u8>>,
    peak_rss_kib: u64,
}

fn flood(s: &Scratch, tag: &str, syns: u64, flags: &str) -> Flood {
    let pcap = s.join(&format!("{tag}.pcap"));
    let g = must(
        std::process::Command::new("python3")
            .arg(repo().join("tests/tools/gen_flood.py"))
            .arg("--out")
            .arg(&pcap)
            .args(["--syns", &syns.to_string(), "--flood-flags", flags])
            .args(["--established", &ESTABLISHED.to_string(), "--data", "20"]),
    );
    let generated = stdout_json(&g);
    let frames = generated["frames"].as_u64().expect("frames");
    let out_pcap = s.join(&format!("{tag}-out.pcap"));
    let cfg = s.join(&format!("{tag}.toml"));
    std::fs::write(&cfg, config(tag, &pcap, &out_pcap)).expect("config");
    // net_pcap delivers the file as fast as the worker takes it (~0.6 Mpps or more here):
    // the run lasts ten times what the flood needs, and the test checks all was received.
    let secs = 2 + frames / 50_000;
    let err_path = s.join(&format!("{tag}.stderr"));
    let mut child = fulcrum()
        .args(["run", "--json", "--duration", &secs.to_string(), "-c"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn fulcrum");
    let mut child_stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut stdout = String::new();
        child_stdout
            .read_to_string(&mut stdout)
            .expect("read stdout");
        stdout
    });
    // VmHWM is the kernel's own high-water mark of the RSS, so sampling it now and then
    // loses nothing but growth in the last interval before exit (the report being printed).
    let mut peak_rss_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if let Some(hwm) = vm_hwm_kib(child.id()) {
            peak_rss_kib = peak_rss_kib.max(hwm);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stdout = reader.join().expect("stdout reader");
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "run failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(peak_rss_kib > 0, "no VmHWM read while fulcrum ran");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}\n{stderr}"));
    let out = read_pcap(&out_pcap);
    Flood {
        generated,
        report,
        out,
        peak_rss_kib,
    }
}

/// A running process's peak resident set size (KiB), `None` once it is gone.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// An established flow's client address and port.
type Client = (Ipv4Addr, u16);

fn ip4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[test]
fn floods_keep_established_flows_and_bounds() {
    let s = Scratch::new("flood");
    let small = flood(&s, "f50k", 50_000, "syn");
    let big = flood(&s, "f200k", 200_000, "syn");
    let acks = flood(&s, "a200k", 200_000, "ack");

    for (f, what) in [(&small, "SYN"), (&big, "SYN"), (&acks, "ACK")] {
        let t = &f.report["totals"];
        let frames = f.generated["frames"].as_u64().expect("frames");
        let syns = f.generated["syns"].as_u64().expect("syns");
        println!(
            "flood of {syns} {what}s ({} frames): flows created {}, SYNs unrecorded {}, \
             evicted {}, expired {}, active at the end {} (capacity {CAPACITY}); forwarded {}, \
             dropped {}; mbufs in use after stop {}; peak RSS {} MiB",
            frames,
            t["flows_created"],
            t["syn_unrecorded"],
            t["flows_evicted"],
            t["flows_expired"],
            t["flows_active"],
            t["forwarded"],
            t["dropped"],
            f.report["mempool"]["in_use"],
            f.peak_rss_kib / 1024,
        );
        assert_eq!(
            t["rx"].as_u64(),
            Some(frames),
            "every frame received within the run: {t}"
        );
        assert_eq!(t["balanced"].as_bool(), Some(true), "books balance: {t}");
        assert_eq!(t["dropped"].as_u64(), Some(0), "nothing dropped: {t}");
        assert_eq!(
            t["forwarded"].as_u64(),
            Some(frames),
            "every frame forwarded"
        );
        assert!(
            t["flows_active"].as_u64().unwrap() <= CAPACITY,
            "flow table over its bound: {t}"
        );
        // Each flood packet is a new flow: recorded into a free slot (at most CAPACITY of
        // them), recorded by evicting, or (a DSR SYN) forwarded unrecorded.
        let unrecorded = t["syn_unrecorded"].as_u64().unwrap();
        assert!(
            t["flows_evicted"].as_u64().unwrap() + unrecorded >= syns - CAPACITY,
            "the flood evicted or went unrecorded (the table cannot hold it): {t}"
        );
        // Half the flood is to the DSR VIP: its SYNs find free slots only where NAT
        // evictions just made some.
        if what == "SYN" {
            assert!(unrecorded >= syns / 8, "DSR SYNs unrecorded: {t}");
        } else {
            assert_eq!(unrecorded, 0, "an ACK is always recorded: {t}");
        }
        assert_eq!(
            t["flows_created"].as_u64().unwrap(),
            t["flows_active"].as_u64().unwrap()
                + t["flows_evicted"].as_u64().unwrap()
                + t["flows_expired"].as_u64().unwrap(),
            "every flow entry made is live, evicted or expired: {t}"
        );
        assert_eq!(
            f.report["mempool"]["in_use"].as_u64(),
            Some(0),
            "mbufs leaked: {}",
            f.report["mempool"]
        );
    }

    for (f, what) in [(&big, "SYN"), (&acks, "ACK")] {
        established_delivered(f, what);
    }

    println!(
        "peak RSS: {} KiB with 50k SYNs, {} KiB with 200k SYNs (tolerance {} KiB)",
        small.peak_rss_kib, big.peak_rss_kib, RSS_TOLERANCE_KIB
    );
    assert!(
        big.peak_rss_kib <= small.peak_rss_kib + RSS_TOLERANCE_KIB,
        "peak RSS grows with the flood: {} KiB -> {} KiB",
        small.peak_rss_kib,
        big.peak_rss_kib
    );
}

/// Every packet of every established flow went to one backend, in both directions for NAT;
/// every flood packet was forwarded.
fn established_delivered(f: &Flood, what: &str) {
    let mut fwd: HashMap<Client, (usize, HashSet<[u8; 6]>)> = HashMap::new();
    let mut rev: HashMap<Client, usize> = HashMap::new();
    let mut flood_out = 0usize;
    for fr in &f.out {
        if fr[12..14] != [8, 0] {
            continue; // the slow path's own frames (ARP)
        }
        let ip = &fr[14..];
        let l4 = &ip[usize::from(ip[0] & 0xf) * 4..];
        let (src, dst) = (ip4(&ip[12..16]), ip4(&ip[16..20]));
        let sport = u16::from_be_bytes([l4[0], l4[1]]);
        let dport = u16::from_be_bytes([l4[2], l4[3]]);
        let dst_mac: [u8; 6] = fr[0..6].try_into().expect("mac");
        if src.octets()[..2] == [10, 1] {
            // An established client's packet on its way to a backend.
            if dst == Ipv4Addr::new(10, 0, 0, 100) {
                assert!(DSR_MACS.contains(&dst_mac), "DSR to a backend MAC");
                assert_eq!(dport, 80);
            } else {
                assert_eq!(
                    (dst, dport),
                    (Ipv4Addr::new(10, 0, 0, 21), 8080),
                    "NAT rewrite"
                );
                assert_eq!(dst_mac, NAT_MAC);
            }
            let e = fwd.entry((src, sport)).or_default();
            e.0 += 1;
            e.1.insert(dst_mac);
        } else if src == Ipv4Addr::new(10, 0, 0, 101) {
            // A NAT backend's reply, un-NATed, back to the MAC its client's SYN came from.
            assert_eq!(sport, 80, "un-NAT to the VIP's port");
            assert_eq!(dst_mac, ROUTER_MAC);
            *rev.entry((dst, dport)).or_default() += 1;
        } else {
            assert_eq!(src.octets()[0], 100, "only flood sources are left");
            flood_out += 1;
        }
    }
    let established = f.generated["established"].as_array().expect("established");
    assert_eq!(established.len(), ESTABLISHED);
    let (mut pkts, mut lost, mut split) = (0, 0, 0);
    for e in established {
        let key: Client = (
            e["client"].as_str().unwrap().parse().unwrap(),
            e["sport"].as_u64().unwrap() as u16,
        );
        let want_fwd = e["to_vip"].as_u64().unwrap() as usize;
        let want_rev = e["from_backends"].as_u64().unwrap() as usize;
        let (got_fwd, backends) = fwd.get(&key).cloned().unwrap_or_default();
        let got_rev = rev.get(&key).copied().unwrap_or(0);
        pkts += want_fwd + want_rev;
        lost += want_fwd.saturating_sub(got_fwd) + want_rev.saturating_sub(got_rev);
        split += usize::from(backends.len() != 1);
        assert_eq!(got_fwd, want_fwd, "client -> VIP packets of {key:?}");
        assert_eq!(got_rev, want_rev, "backend -> client packets of {key:?}");
    }
    println!(
        "{what} flood: established flows: {} ({} packets during the flood): {lost} lost, \
         {split} split over backends; {flood_out} flood packets forwarded",
        established.len(),
        pkts
    );
    assert_eq!(split, 0);
    assert_eq!(flood_out as u64, f.generated["syns"].as_u64().unwrap());
}

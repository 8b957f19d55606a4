//! `fulcrum run` on real DPDK (`net_pcap`, two RX queues) with two pinned workers: after
//! SIGTERM it prints per-worker counters that add up to the frames in the pcaps, every one
//! accounted as transmitted or dropped under a reason.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::traffic::{gen_flows, read_pcap, write_pcap};
use testkit::{
    Scratch, eal_args_toml, eal_prefix, fixture, fulcrum, must, runtime_dir_exists, stdout_json,
};

#[test]
fn run_two_workers_counts_every_frame() {
    let s = Scratch::new("run-pcap");
    // Queue 0 gets 1200 frames of real flows, queue 1 800 frames for a VIP port nobody
    // serves plus garbage, so both workers see traffic and both forward and drop.
    gen_flows(
        &s.join("q0.pcap"),
        &[
            "--flows",
            "400",
            "--packets-per-flow",
            "3",
            "--vip",
            "10.0.0.100",
        ],
    );
    gen_flows(
        &s.join("q1.pcap"),
        &[
            "--flows",
            "390",
            "--packets-per-flow",
            "2",
            "--vip",
            "10.0.0.100",
            "--dport",
            "81",
            "--seed",
            "2",
        ],
    );
    let mut q1 = read_pcap(&s.join("q1.pcap"));
    q1.extend((0..20).map(|i| vec![i as u8; 9])); // runts
    write_pcap(&s.join("q1.pcap"), &q1);
    let expected = (400 * 3 + q1.len()) as u64;

    let cfg = fixture("run_pcap.toml")
        .set("eal_args", eal_args_toml("run-pcap"))
        .set("prefix", eal_prefix("run-pcap"))
        .set("q0", s.join("q0.pcap").display())
        .set("q1", s.join("q1.pcap").display())
        .set("o0", s.join("o0.pcap").display())
        .set("o1", s.join("o1.pcap").display())
        .render();
    std::fs::write(s.join("f.toml"), cfg).expect("config");

    let mut child = fulcrum()
        .args(["run", "--json", "-c"])
        .arg(s.join("f.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // net_pcap delivers the whole file at once; give the workers time, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    std::thread::sleep(Duration::from_secs(3));
    // Stop it the way an operator does.
    must(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "fulcrum did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(status.success(), "exit {status}\n{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));

    let workers = v["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2);
    let mut rx_sum = 0;
    for w in workers {
        let rx = w["rx"].as_u64().expect("rx");
        assert!(rx > 0, "every worker received: {w}");
        let accounted = w["tx"].as_u64().unwrap()
            + w["handoff_out"].as_u64().unwrap()
            + w["to_slowpath"].as_u64().unwrap()
            + w["dropped"].as_u64().unwrap();
        assert_eq!(
            rx + w["handoff_in"].as_u64().unwrap(),
            accounted,
            "worker books balance: {w}"
        );
        rx_sum += rx;
    }
    assert_eq!(
        rx_sum, expected,
        "per-worker rx adds up to the frames in the pcaps"
    );
    let t = &v["totals"];
    assert_eq!(
        t["tx"].as_u64(),
        Some(1200),
        "the served flows were forwarded"
    );
    assert_eq!(t["drops"]["no_service"].as_u64(), Some(780));
    assert_eq!(t["drops"]["malformed_l2"].as_u64(), Some(20));
    assert_eq!(v["ports"][0]["ipackets"].as_u64(), Some(expected));
    assert_eq!(v["ports"][0]["opackets"].as_u64(), Some(1200));
}

/// A clean exit removes EAL's runtime directory (`/var/run/dpdk/<prefix>`), which EAL itself
/// keeps after `rte_eal_cleanup`: without this, every run left one behind.
#[test]
fn run_removes_its_runtime_dir_on_exit() {
    let s = Scratch::new("run-rtdir");
    gen_flows(
        &s.join("in.pcap"),
        &["--flows", "10", "--vip", "10.0.0.100"],
    );
    let cfg = fixture("run_rtdir.toml")
        .set("eal_args", eal_args_toml("run-rtdir"))
        .set("prefix", eal_prefix("run-rtdir"))
        .set("i", s.join("in.pcap").display())
        .set("o", s.join("out.pcap").display())
        .render();
    std::fs::write(s.join("f.toml"), cfg).expect("config");
    let prefix = eal_prefix("run-rtdir");
    let out = must(
        fulcrum()
            .args(["run", "--json", "--duration", "1", "-c"])
            .arg(s.join("f.toml")),
    );
    let v = stdout_json(&out);
    assert_eq!(v["totals"]["tx"].as_u64(), Some(30), "it did forward: {v}");
    assert!(
        !runtime_dir_exists(&prefix),
        "/var/run/dpdk/{prefix} left behind; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One `fulcrum run --duration 1` over `input` with `[dpdk]` extra lines; its JSON report
/// and the frames it sent.
fn run_udp_service(s: &Scratch, tag: &str, dpdk_extra: &str) -> (serde_json::Value, Vec<Vec<u8>>) {
    let cfg = fixture("run_udp.toml")
        .set("eal_args", eal_args_toml(tag))
        .set("prefix", eal_prefix(tag))
        .set("dpdk_extra", dpdk_extra)
        .set("i", s.join("in.pcap").display())
        .set("o", s.join(&format!("{tag}-out.pcap")).display())
        .render();
    let path = s.join(&format!("{tag}.toml"));
    std::fs::write(&path, cfg).expect("config");
    let out = must(
        fulcrum()
            .args(["run", "--json", "--duration", "1", "-c"])
            .arg(&path),
    );
    (
        stdout_json(&out),
        read_pcap(&s.join(&format!("{tag}-out.pcap"))),
    )
}

/// A 4000-byte frame is larger than the default mbuf data room (2048): `net_pcap` delivers it
/// as a chain of mbufs, which the worker drops as `multi_segment` (not as a malformed packet
/// of the pipeline's); with `mbuf_data_room = 9216` it fits one mbuf and is forwarded whole
/// (the port's `mtu = 9000` lets it through the MTU check).
#[test]
fn jumbo_frames_need_a_data_room_that_holds_them() {
    let s = Scratch::new("run-jumbo");
    // 4 UDP datagrams of 4000-byte frames (14 + 20 + 8 + 3958), then 6 of 106 bytes.
    let udp = |out: &str, flows: &str, payload: &str, seed: &str| {
        gen_flows(
            &s.join(out),
            &[
                "--proto",
                "udp",
                "--flows",
                flows,
                "--packets-per-flow",
                "1",
                "--payload",
                payload,
                "--seed",
                seed,
            ],
        )
    };
    udp("big.pcap", "4", "3958", "1");
    udp("small.pcap", "6", "64", "2");
    let mut input = read_pcap(&s.join("big.pcap"));
    assert!(input.iter().all(|f| f.len() == 4000));
    input.extend(read_pcap(&s.join("small.pcap")));
    write_pcap(&s.join("in.pcap"), &input);

    let (v, out) = run_udp_service(&s, "run-jumbo-2k", "");
    let t = &v["totals"];
    assert_eq!(t["drops"]["multi_segment"].as_u64(), Some(4), "{t}");
    assert_eq!(t["tx"].as_u64(), Some(6), "the small ones still pass: {t}");
    for reason in ["malformed_l2", "malformed_ipv4", "malformed_l4"] {
        assert_eq!(t["drops"][reason].as_u64(), Some(0), "{reason}: {t}");
    }
    assert!(out.iter().all(|f| f.len() == 106), "only small frames sent");

    let (v, out) = run_udp_service(&s, "run-jumbo-9k", "mbuf_data_room = 9216");
    let t = &v["totals"];
    assert_eq!(t["drops"]["multi_segment"].as_u64(), Some(0), "{t}");
    assert_eq!(t["tx"].as_u64(), Some(10), "{t}");
    assert_eq!(out.len(), input.len());
    // DSR: the frame goes out whole, only the destination MAC is the backend's.
    for (sent, got) in input.iter().zip(&out) {
        assert_eq!(got.len(), sent.len());
        assert_eq!(got[..6], [2, 0, 0, 0, 0, 0x11]);
        assert_eq!(got[12..], sent[12..], "bytes after the MACs unchanged");
    }
}

//! Two instances of Fulcrum with the same config make the same choice for every flow, so
//! they can run side by side behind ECMP routers: the same pcap replayed through two separate
//! DPDK processes (one with one worker, one with two) leaves every flow on the same backend,
//! and both agree with `fulcrum which`.

use std::collections::HashMap;
use std::io::Write;
use std::process::Stdio;

use testkit::traffic::{gen_flows, read_pcap};
use testkit::{Scratch, eal_args_toml, fixture, fulcrum, must};

const FLOWS: usize = 2000;

fn config(tag: &str, workers: &str) -> String {
    fixture("two_instances.toml")
        .set("eal_args", eal_args_toml(tag))
        .set("workers", workers)
        .render()
}

/// (client address, client port) -> backend MAC, from an output pcap.
fn placement(frames: &[Vec<u8>]) -> HashMap<([u8; 4], u16), [u8; 6]> {
    let mut m = HashMap::new();
    for f in frames {
        let ip = &f[14..];
        let hl = usize::from(ip[0] & 0xf) * 4;
        let src: [u8; 4] = ip[12..16].try_into().unwrap();
        let sport = u16::from_be_bytes([ip[hl], ip[hl + 1]]);
        let mac: [u8; 6] = f[0..6].try_into().unwrap();
        let prev = m.insert((src, sport), mac);
        assert!(
            prev.is_none() || prev == Some(mac),
            "a flow split across backends within one instance"
        );
    }
    m
}

#[test]
fn two_instances_same_config_same_choices() {
    let s = Scratch::new("two-instances");
    gen_flows(
        &s.join("in.pcap"),
        &[
            "--flows",
            &FLOWS.to_string(),
            "--packets-per-flow",
            "2",
            "--vip",
            "10.0.0.100",
        ],
    );
    let mut placements = Vec::new();
    for (tag, workers) in [("inst-a", "[0]"), ("inst-b", "[0, 1]")] {
        let cfg = s.join(&format!("{tag}.toml"));
        std::fs::write(&cfg, config(tag, workers)).unwrap();
        let out = s.join(&format!("{tag}.pcap"));
        must(
            fulcrum()
                .args(["replay", "-c"])
                .arg(&cfg)
                .arg("--input")
                .arg(s.join("in.pcap"))
                .arg("--output")
                .arg(&out),
        );
        placements.push(placement(&read_pcap(&out)));
    }
    assert_eq!(placements[0].len(), FLOWS);
    assert_eq!(
        placements[0], placements[1],
        "the two instances placed some flow differently"
    );

    // And both agree with the offline computation.
    let mut child = fulcrum()
        .args(["which", "--json", "-c"])
        .arg(s.join("inst-a.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let keys: Vec<_> = placements[0].keys().copied().collect();
    let input: String = keys
        .iter()
        .map(|(a, p)| {
            format!(
                "{}.{}.{}.{}:{p} 10.0.0.100:80 tcp\n",
                a[0], a[1], a[2], a[3]
            )
        })
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    for (k, line) in keys
        .iter()
        .zip(String::from_utf8(out.stdout).unwrap().lines())
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = v["backend"].as_str().unwrap();
        let i: u8 = name.strip_prefix("web-").unwrap().parse().unwrap();
        assert_eq!(
            placements[0][k],
            [2, 0, 0, 0, 0, 0x10 + i],
            "which and the data plane disagree"
        );
    }
}

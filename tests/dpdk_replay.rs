//! `fulcrum replay` over thousands of scapy-made flows with two workers on real DPDK:
//! every packet of a flow goes to one backend, shares follow the weights, NAT rewrites
//! carry valid checksums (checked by scapy), and the counters add up.

use std::collections::{HashMap, HashSet};

use testkit::traffic::{gen_flows, read_pcap, write_pcap};
use testkit::{Scratch, eal_args_toml, fixture, fulcrum, must, repo, stdout_json};

const DSR_FLOWS: usize = 4000;
const NAT_FLOWS: usize = 1500;

fn config(tag: &str) -> String {
    fixture("replay.toml")
        .set("eal_args", eal_args_toml(tag))
        .render()
}

struct Out {
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
}

fn parse(f: &[u8]) -> Out {
    assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4 out");
    let ip = &f[14..];
    let hl = usize::from(ip[0] & 0xf) * 4;
    let l4 = &ip[hl..];
    Out {
        dst_mac: f[0..6].try_into().unwrap(),
        src: ip[12..16].try_into().unwrap(),
        dst: ip[16..20].try_into().unwrap(),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    }
}

#[test]
fn replay_thousands_of_flows() {
    let s = Scratch::new("replay");
    gen_flows(
        &s.join("dsr.pcap"),
        &[
            "--flows",
            &DSR_FLOWS.to_string(),
            "--packets-per-flow",
            "2",
            "--vip",
            "10.0.0.100",
        ],
    );
    gen_flows(
        &s.join("nat.pcap"),
        &[
            "--flows",
            &NAT_FLOWS.to_string(),
            "--packets-per-flow",
            "3",
            "--vip",
            "10.0.0.101",
            "--clients",
            "10.2.0.0/16",
            "--seed",
            "9",
        ],
    );
    let mut frames = read_pcap(&s.join("dsr.pcap"));
    frames.extend(read_pcap(&s.join("nat.pcap")));
    let total = frames.len();
    write_pcap(&s.join("in.pcap"), &frames);
    std::fs::write(s.join("f.toml"), config("replay")).unwrap();

    let out = must(
        fulcrum()
            .args(["replay", "-c"])
            .arg(s.join("f.toml"))
            .arg("--input")
            .arg(s.join("in.pcap"))
            .arg("--output")
            .arg(s.join("out.pcap")),
    );
    let v = stdout_json(&out);
    let t = &v["totals"];
    assert_eq!(v["input_frames"].as_u64(), Some(total as u64));
    assert_eq!(t["rx"].as_u64(), Some(total as u64), "{v}");
    assert_eq!(t["balanced"].as_bool(), Some(true));
    assert_eq!(
        t["tx"].as_u64(),
        Some(total as u64),
        "every frame forwarded: {t}"
    );
    assert_eq!(t["dropped"].as_u64(), Some(0));
    assert!(
        t["handoff_out"].as_u64().unwrap() > 0,
        "NAT flows crossed workers and were handed over"
    );
    assert_eq!(t["handoff_out"], t["handoff_in"]);
    for w in v["workers"].as_array().unwrap() {
        assert_eq!(w["balanced"].as_bool(), Some(true), "{w}");
    }

    let outs = read_pcap(&s.join("out.pcap"));
    assert_eq!(outs.len(), total);

    let dsr_macs: HashMap<[u8; 6], f64> = [(0x11, 1.0), (0x12, 1.0), (0x13, 2.0), (0x14, 4.0)]
        .into_iter()
        .map(|(m, w)| ([2, 0, 0, 0, 0, m], w / 8.0))
        .collect();
    // (client address, client port, VIP) -> the backend MACs its packets went to.
    type FlowKey = ([u8; 4], u16, [u8; 4]);
    let mut flow_backend: HashMap<FlowKey, HashSet<[u8; 6]>> = HashMap::new();
    for f in &outs {
        let o = parse(f);
        if o.dst == [10, 0, 0, 100] {
            assert!(
                dsr_macs.contains_key(&o.dst_mac),
                "DSR frame to an unknown MAC"
            );
            assert_eq!(o.dport, 80, "DSR keeps the port");
        } else {
            // NAT: the destination is the backend the MAC belongs to, on port 8080.
            assert_eq!(o.dst[..3], [10, 0, 0], "NAT destination rewritten");
            assert_eq!(
                o.dst_mac,
                [2, 0, 0, 0, 0, 0x20 + (o.dst[3] - 20)],
                "MAC and address of one backend"
            );
            assert!((21..=23).contains(&o.dst[3]));
            assert_eq!(o.dport, 8080);
        }
        let vip_side = if o.dst == [10, 0, 0, 100] {
            o.dst
        } else {
            [10, 0, 0, 101]
        };
        flow_backend
            .entry((o.src, o.sport, vip_side))
            .or_default()
            .insert(o.dst_mac);
    }
    assert_eq!(flow_backend.len(), DSR_FLOWS + NAT_FLOWS);
    let split: Vec<_> = flow_backend.iter().filter(|(_, b)| b.len() != 1).collect();
    assert!(
        split.is_empty(),
        "{} flows went to more than one backend",
        split.len()
    );

    let mut per: HashMap<[u8; 6], usize> = HashMap::new();
    for b in flow_backend.values() {
        *per.entry(*b.iter().next().unwrap()).or_default() += 1;
    }
    for (mac, want) in &dsr_macs {
        let share = per[mac] as f64 / DSR_FLOWS as f64;
        println!(
            "dsr backend {mac:02x?}: {:.3} of flows, weight share {:.3}",
            share, want
        );
        assert!(
            (share - want).abs() < 0.025,
            "share {share:.3} vs weight {want:.3}"
        );
    }
    for m in 0x21..=0x23u8 {
        let share = per[&[2, 0, 0, 0, 0, m]] as f64 / NAT_FLOWS as f64;
        println!("nat backend {m:02x}: {share:.3} of flows");
        assert!((share - 1.0 / 3.0).abs() < 0.04, "NAT share {share:.3}");
    }

    // Independent check of every checksum in the output.
    let chk = must(
        std::process::Command::new("python3")
            .arg(repo().join("tests/tools/check_checksums.py"))
            .arg(s.join("out.pcap")),
    );
    let c = stdout_json(&chk);
    assert_eq!(c["bad_count"].as_u64(), Some(0), "{c}");
    assert!(c["checked"].as_u64().unwrap() >= 2 * total as u64, "{c}");
}

//! Test traffic: pcaps made with the project's scapy tools, pcaps read and written, and a
//! synthetic frame that tells its sequence number apart.

use std::path::Path;
use std::process::Command;

use crate::{must, repo};

/// Makes a flows pcap with tests/tools/gen_flows.py (scapy).
pub fn gen_flows(out: &Path, args: &[&str]) {
    let script = repo().join("tests/tools/gen_flows.py");
    must(
        Command::new("python3")
            .arg(script)
            .arg("--out")
            .arg(out)
            .args(args),
    );
}

/// The frames of a pcap file.
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = pcap_file::pcap::PcapReader::new(f).expect("pcap");
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        v.push(p.expect("packet").data.into_owned());
    }
    v
}

/// Writes frames to a pcap file, frame `i` stamped `i` microseconds.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let f = std::fs::File::create(path).expect("create pcap");
    let mut w = pcap_file::pcap::PcapWriter::new(f).expect("pcap writer");
    for (i, fr) in frames.iter().enumerate() {
        let pkt = pcap_file::pcap::PcapPacket::new(
            std::time::Duration::from_micros(i as u64),
            fr.len() as u32,
            fr,
        );
        w.write_packet(&pkt).expect("write");
    }
}

/// A frame of `len` bytes (at least 60) that tells `seq` apart: Ethernet/IPv4/UDP-shaped
/// headers with the sequence number in the source port and a payload pattern derived from it.
pub fn test_frame(seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= 60);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // dst MAC
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // src MAC
    f[12..14].copy_from_slice(&[0x08, 0x00]); // IPv4
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes()); // IP total length
    f[22] = 64; // TTL
    f[23] = 17; // UDP
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&(seq as u16).to_be_bytes()); // UDP source port
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = (seq as usize * 31 + i) as u8;
    }
    f
}

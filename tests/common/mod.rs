//! Helpers shared by the integration tests: scratch directories, running the binary,
//! making pcaps with the project's scapy tools, reading pcaps back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fulcrum() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fulcrum"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory removed on drop (kept when FULCRUM_KEEP_TMP is set, for debugging).
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("fulcrum-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch dir");
        Scratch { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("FULCRUM_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// EAL arguments for a test process: no hugepages, no PCI, its own file prefix.
pub fn eal_args_toml(tag: &str) -> String {
    format!(
        r#"eal_args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "fulcrum-{tag}-{}", "--log-level", "*:warning"]"#,
        std::process::id()
    )
}

/// Runs a command and fails the test with its output if it does not succeed.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

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

/// Writes frames to a pcap file.
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

/// The JSON a command printed on stdout.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub mod outcome;
pub mod testbed;

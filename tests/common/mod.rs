//! Helpers shared by the integration tests: scratch directories, running the binary,
//! making pcaps with the project's scapy tools, reading pcaps back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

pub fn fulcrum() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fulcrum"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory removed on drop (kept when FULCRUM_KEEP_TMP is set, for debugging).
/// Dropping it also removes the DPDK runtime files of every prefix [`eal_args_toml`] handed
/// out in this process, so a Fulcrum that was killed (or crashed) leaves nothing behind:
/// create it first in a test, so that it drops after the processes it outlives.
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
        remove_eal_prefixes();
        if std::env::var_os("FULCRUM_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// EAL file prefixes handed out by [`eal_args_toml`] in this process.
static EAL_PREFIXES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The EAL file prefix of test `tag` in this process.
pub fn eal_prefix(tag: &str) -> String {
    format!("fulcrum-{tag}-{}", std::process::id())
}

/// EAL arguments for a test process: no hugepages, no PCI, its own file prefix (whose
/// runtime files [`Scratch`] removes on drop).
pub fn eal_args_toml(tag: &str) -> String {
    let prefix = eal_prefix(tag);
    let mut prefixes = EAL_PREFIXES.lock().unwrap_or_else(|e| e.into_inner());
    if !prefixes.contains(&prefix) {
        prefixes.push(prefix.clone());
    }
    format!(
        r#"eal_args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "{prefix}", "--log-level", "*:warning"]"#
    )
}

/// Removes the runtime directory and hugepage files of every prefix [`eal_args_toml`] gave
/// out (the processes that used them must be gone).
pub fn remove_eal_prefixes() {
    let prefixes = std::mem::take(&mut *EAL_PREFIXES.lock().unwrap_or_else(|e| e.into_inner()));
    for p in prefixes {
        dataplane::dpdk::runtime_files::remove_prefix_files(&p);
    }
}

/// Whether DPDK left a runtime directory for `prefix` (root's location).
pub fn runtime_dir_exists(prefix: &str) -> bool {
    Path::new(dataplane::dpdk::runtime_files::RUNTIME_BASE)
        .join(prefix)
        .exists()
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

//! Shared setup of the DPDK integration tests: EAL without hugepages or PCI, a file prefix of
//! its own per process, and removal of EAL's runtime directory afterwards.
//!
//! EAL initialises once per process, so each test file holds exactly one `#[test]` that starts
//! it (cargo-nextest runs every test in its own process anyway).

#![allow(dead_code)]

use std::path::PathBuf;

use dataplane::dpdk::Eal;

/// A running EAL for one test; dropping it cleans EAL up and removes its runtime directory.
pub struct TestEal {
    eal: Option<Eal>,
    prefix: String,
}

impl TestEal {
    /// Starts EAL for test `name` with `devices` (config-style strings, see `vdev_eal_args`).
    pub fn start(name: &str, devices: &[&str]) -> TestEal {
        let prefix = format!("fulcrum-test-{name}-{}", std::process::id());
        let mut args: Vec<String> = [
            "--no-huge",
            "-m",
            "256",
            "--no-pci",
            "--file-prefix",
            &prefix,
            "--log-level=*:warning",
            "--no-telemetry",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let devices: Vec<String> = devices.iter().map(|s| s.to_string()).collect();
        args.extend(dataplane::dpdk::vdev_eal_args(&devices));
        let eal = Eal::init(&args).unwrap_or_else(|e| panic!("EAL init with {args:?}: {e}"));
        TestEal {
            eal: Some(eal),
            prefix,
        }
    }

    /// Drops the EAL now (cleanup), keeping the directory removal for later.
    pub fn stop(&mut self) {
        self.eal.take();
    }
}

impl Drop for TestEal {
    fn drop(&mut self) {
        self.eal.take();
        // Eal's drop removes its runtime directory after a cleanup; when the cleanup was
        // skipped (or the test panicked first) the files are still there. Root's location
        // (/var/run/dpdk) with hugepage files, and $XDG_RUNTIME_DIR/dpdk otherwise.
        dataplane::dpdk::runtime_files::remove_prefix_files(&self.prefix);
        if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
            let _ = std::fs::remove_dir_all(PathBuf::from(xdg).join("dpdk").join(&self.prefix));
        }
    }
}

/// A scratch directory for test files, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fulcrum-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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

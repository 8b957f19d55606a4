//! EAL scratch setup: file prefixes whose runtime files go away with them, the EAL arguments
//! of a test process (no hugepages, no PCI, its own prefix), scratch directories, and EAL
//! started inside the test process.
//!
//! EAL initialises once per process: a test that starts it in-process ([`TestEal`]) is the
//! only one of its binary that does (cargo-nextest runs every test in a process of its own).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dataplane::dpdk::Eal;
use dataplane::dpdk::runtime_files::{RUNTIME_BASE, remove_prefix_files};

/// An EAL file prefix of this test process, `fulcrum-TAG-PID`. Dropping it removes the
/// prefix's runtime directory and hugepage files, so a process that was killed (or crashed)
/// leaves nothing behind: drop it only after the process that used it is gone.
#[derive(Debug)]
pub struct EalPrefix(String);

impl EalPrefix {
    pub fn new(tag: &str) -> EalPrefix {
        EalPrefix(Self::name(tag))
    }

    /// The prefix [`EalPrefix::new`] gives `tag` in this process.
    pub fn name(tag: &str) -> String {
        format!("fulcrum-{tag}-{}", std::process::id())
    }

    /// A prefix some other code chose (a config's `--file-prefix`), cleaned the same way.
    pub fn adopt(prefix: &str) -> EalPrefix {
        EalPrefix(prefix.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for EalPrefix {
    fn drop(&mut self) {
        // Root's location (/var/run/dpdk) with hugepage files, $XDG_RUNTIME_DIR/dpdk otherwise.
        remove_prefix_files(&self.0);
        if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
            let _ = std::fs::remove_dir_all(PathBuf::from(xdg).join("dpdk").join(&self.0));
        }
        // The flow tables a balancer keeps beside a control socket named after the prefix
        // (`/tmp/PREFIX.sock` in several fixtures: `flow_state_dir` defaults to
        // `/tmp/PREFIX.flows`).
        let _ = std::fs::remove_dir_all(format!("/tmp/{}.flows", self.0));
    }
}

/// EAL arguments of a test process: no hugepages, `memory_mb` of memory, no PCI, its own
/// file prefix, warnings only.
pub fn eal_args(prefix: &str, memory_mb: u32) -> Vec<String> {
    [
        "--no-huge",
        "-m",
        &memory_mb.to_string(),
        "--no-pci",
        "--file-prefix",
        prefix,
        "--log-level",
        "*:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Whether DPDK left a runtime directory for `prefix` (root's location).
pub fn runtime_dir_exists(prefix: &str) -> bool {
    Path::new(RUNTIME_BASE).join(prefix).exists()
}

/// The EAL file prefix of process `tag` in this test process, `fulcrum-TAG-PID`.
pub fn eal_prefix(tag: &str) -> String {
    EalPrefix::name(tag)
}

/// Prefixes [`eal_args_toml`] handed out in this process: every [`Scratch`] removes their
/// runtime files when it drops.
static HANDED_OUT: Mutex<Vec<EalPrefix>> = Mutex::new(Vec::new());

/// The config line `eal_args = [...]` of process `tag` ([`eal_args`] with
/// [`eal_prefix`]`(tag)`, 512 MB); its runtime files are removed when the test's
/// [`Scratch`] drops.
pub fn eal_args_toml(tag: &str) -> String {
    let prefix = eal_prefix(tag);
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if !handed.iter().any(|p| p.as_str() == prefix) {
        handed.push(EalPrefix::adopt(&prefix));
    }
    eal_args_line(&prefix)
}

/// `eal_args = [...]` for a process with EAL prefix `prefix`.
pub(crate) fn eal_args_line(prefix: &str) -> String {
    format!("eal_args = {}", toml_array(&eal_args(prefix, 512)))
}

/// A scratch directory, `$TMPDIR/fulcrum-test-TAG-PID`, removed on drop (kept when
/// FULCRUM_KEEP_TMP is set, for debugging). Dropping it also removes the runtime files of
/// every EAL prefix [`eal_args_toml`] handed out in this process, so a Fulcrum that was
/// killed (or crashed) leaves nothing behind: create it first in a test, so that it drops
/// after the processes it outlives.
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
        HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if std::env::var_os("FULCRUM_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Strings as a TOML array of basic strings.
pub(crate) fn toml_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| toml::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// EAL running in the test process, on virtual devices. Dropping it cleans EAL up and
/// removes its runtime files.
pub struct TestEal {
    // Field order is drop order: EAL is cleaned up before its files are removed.
    eal: Option<Eal>,
    _prefix: EalPrefix,
}

impl TestEal {
    /// Starts EAL for test `name` with `devices` (config-style strings, see
    /// `dataplane::dpdk::vdev_eal_args`).
    pub fn start(name: &str, devices: &[&str]) -> TestEal {
        let prefix = EalPrefix::new(&format!("test-{name}"));
        let mut args = eal_args(prefix.as_str(), 256);
        args.push("--no-telemetry".into());
        let devices: Vec<String> = devices.iter().map(|s| s.to_string()).collect();
        args.extend(dataplane::dpdk::vdev_eal_args(&devices));
        let eal = Eal::init(&args).unwrap_or_else(|e| panic!("EAL init with {args:?}: {e}"));
        TestEal {
            eal: Some(eal),
            _prefix: prefix,
        }
    }

    /// Cleans EAL up now, keeping the removal of its files for the drop.
    pub fn stop(&mut self) {
        self.eal.take();
    }
}

//! Fulcrum's test kit (dev-only, never published): what the integration tests of every crate
//! share, so that each exists once.
//!
//! - [`Net`]: network namespaces as RAII guards (the health layout built here, the testbed
//!   layout of `scripts/testbed.sh`, the routed layout with a router, and its tunnelled
//!   variant with a tunnel endpoint on every backend),
//!   with backend servers and kernel TCP clients ([`Client`], [`KeepAlive`]);
//! - [`Decap`]: a backend's tunnel endpoint (the kernel's devices, or tests/tools/decap.py
//!   where the kernel has none), counting what it refuses;
//! - [`Balancer`]: `fulcrum run` in a namespace, waited for until it serves, driven with
//!   `ctl`, stopped, and its DPDK runtime files removed (also when the test fails);
//! - [`Scratch`] and [`EalPrefix`]: scratch directories and EAL file prefixes that clean up
//!   after themselves; [`TestEal`]: EAL started in the test process;
//! - [`Bird`]: a real BIRD 2 in a namespace, asked with `birdc`;
//! - [`Ecmp`]: scale-out, scripts/ecmp-testbed.sh's routed tier: a BIRD router with ECMP
//!   over three Fulcrum instances that announce the VIP by BGP, backends behind them,
//!   optionally with instance sync between them ([`EcmpOptions`]);
//! - [`SyncFigures`], [`wait_synced`]: instance sync's figures, and the wait until every
//!   instance's exceptions reached every other;
//! - [`Keepalived`]: a real keepalived in a namespace, speaking VRRP;
//! - [`Nginx`]: a real nginx as a backend that reads the PROXY protocol and logs the client
//!   it names ([`Net::nginx_proxy_protocol`]);
//! - [`fixture`]: config files under `tests/configs/`, templated;
//! - [`Load`]: a request loop and long streams in the background while a test acts;
//!   [`Streams`]: many long streams at once, each of which notices a break;
//! - loss on purpose: nftables rules in a namespace and their counters ([`Net::nft`]), a
//!   node's TCP counters ([`Net::tcp_counters`]);
//! - [`outcome`]: judging what real clients saw; [`spread`]: many connections placed and
//!   checked, long-lived streams; [`traffic`]: test frames and pcaps;
//!   [`pmtu`]: large uploads and the path MTU a client's kernel learnt;
//!   [`readme`]: the commands README shows; [`metrics`]: the Prometheus endpoint scraped.

mod balancer;
mod bird;
mod decap;
mod eal;
mod ecmp;
mod fixture;
mod keepalived;
mod load;
mod loss;
pub mod metrics;
mod net;
mod nginx;
pub mod outcome;
pub mod pmtu;
pub mod readme;
pub mod spread;
mod sync;
pub mod traffic;
mod tunnelled;

use std::path::PathBuf;
use std::process::{Command, Output};

pub use balancer::Balancer;
pub use bird::Bird;
pub use decap::{Decap, DecapStats, GUE_PORT, kernel_has_tunnels};
pub use eal::{
    EalPrefix, Scratch, TestEal, eal_args, eal_args_toml, eal_prefix, runtime_dir_exists,
};
pub use ecmp::{Ecmp, EcmpOptions};
pub use fixture::{Fixture, fixture};
pub use keepalived::Keepalived;
pub use load::{Load, LoadSpec, Streams};
pub use net::{Answer, Client, KeepAlive, LB_ADDR, Net, VIP, routed};
pub use nginx::{LogLine, Nginx};
pub use spread::Stream;
pub use sync::{SyncFigures, wait_synced};
pub use traffic::{gen_flows, read_pcap, test_frame, write_pcap};
pub use tunnelled::{
    LB_ADDR_V6, TUNNEL_VIPS, TUNNEL_VIPS_V6, backend_v6, service_with, tunnel_backends,
    tunnel_service,
};

/// The workspace root (where README.md, scripts/ and tests/ are).
pub fn repo() -> PathBuf {
    let kit = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    kit.parent()
        .expect("testkit/ is in the workspace")
        .to_path_buf()
}

/// The `fulcrum` binary cargo built for the running integration test: it sits in the
/// profile directory above the test executable (`target/debug/deps/TEST-HASH`).
pub fn fulcrum_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/PROFILE/deps/TEST")
        .join("fulcrum");
    assert!(
        bin.exists(),
        "{} missing: only the fulcrum package's integration tests have it built",
        bin.display()
    );
    bin
}

/// A command running the `fulcrum` binary.
pub fn fulcrum() -> Command {
    Command::new(fulcrum_bin())
}

/// Runs a command and fails the test with its output if it does not succeed.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
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

/// Sends signal `sig` ("TERM", "HUP", "STOP", ...) to `pid`; a process already gone is fine.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .output();
}

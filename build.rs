//! Binary-level build facts: the version string `fulcrum --version` prints.
use std::process::Command;

fn main() {
    let git = Command::new("git")
        .args(["describe", "--always", "--dirty", "--tags"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dpdk = Command::new("pkg-config")
        .args(["--modversion", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    // A packager's (or a test's) mark on this build: `fulcrum --version` prints it after the
    // crate version, e.g. FULCRUM_VERSION_SUFFIX=+deb12u1 (scripts/build-upgrade-target.sh
    // builds the "next version" the upgrade test moves to this way).
    let suffix = std::env::var("FULCRUM_VERSION_SUFFIX").unwrap_or_default();
    println!("cargo:rerun-if-env-changed=FULCRUM_VERSION_SUFFIX");
    println!("cargo:rustc-env=FULCRUM_SUFFIX={suffix}");
    println!("cargo:rustc-env=FULCRUM_GIT={git}");
    println!("cargo:rustc-env=FULCRUM_DPDK={dpdk}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}

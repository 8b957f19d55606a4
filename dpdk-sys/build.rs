//! Finds the system DPDK with pkg-config, compiles the C shim for DPDK's static inlines and
//! generates the Rust bindings into `OUT_DIR`.
//!
//! The raw `pkg-config --cflags libdpdk` output is handed to both clang (bindgen) and cc: it
//! carries `-include rte_config.h` and `-march=...`, and without them the struct layouts
//! (`RTE_IOVA_AS_PA`, cache line size) and the inline fast paths would not match the libraries
//! we link against.

use std::env;
use std::path::PathBuf;
use std::process::{Command, exit};

/// Oldest DPDK whose ethdev/mbuf API the safe wrapper is written against.
const MIN_VERSION: &str = "22.11";

fn main() {
    for file in ["build.rs", "wrapper.h", "shim.h", "shim.c"] {
        println!("cargo:rerun-if-changed={file}");
    }

    let lib = match pkg_config::Config::new()
        .atleast_version(MIN_VERSION)
        // Link directives are emitted below, after the shim's, so the shared libraries come
        // after the static shim on the linker command line.
        .cargo_metadata(false)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(_) => fail(&format!(
            "DPDK (libdpdk >= {MIN_VERSION}) not found by pkg-config: run scripts/setup.sh as root"
        )),
    };

    let mut cflags = raw_cflags();
    cflags.push("-DALLOW_EXPERIMENTAL_API".to_owned());

    let mut shim = cc::Build::new();
    shim.file("shim.c").opt_level(3).warnings(true);
    for flag in &cflags {
        shim.flag(flag);
    }
    shim.compile("fulcrum_shim");

    // Shared libraries: the PMDs are plugins that EAL loads from the system's pmds directory,
    // and a static link would need a hand-curated `--whole-archive` driver list.
    for path in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", path.display());
    }
    for name in &lib.libs {
        println!("cargo:rustc-link-lib=dylib={name}");
    }

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_.*|fulcrum_.*")
        .allowlist_type("rte_.*|fulcrum_.*")
        .allowlist_var("rte_.*|RTE_.*|fulcrum_.*|RING_F_.*|SOCKET_ID_ANY|LCORE_ID_ANY")
        // Packed structs holding over-aligned packed members (rte_flow.h pulls these protocol
        // headers in): rustc rejects a `#[repr(packed)]` type containing a `#[repr(align)]`
        // one, and Fulcrum parses packet headers itself.
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        // RTE_ETH_RSS_*, RTE_ETH_{RX,TX}_OFFLOAD_* and RTE_MBUF_F_* are built from RTE_BIT64()
        // and friends, which bindgen's own macro parser cannot evaluate.
        .clang_macro_fallback()
        .clang_macro_fallback_build_dir(&out)
        .prepend_enum_name(false)
        .derive_default(true)
        // DPDK's doc comments contain indented C that rustdoc would try to run as doctests.
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed on DPDK's headers: {e}")));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings.rs: {e}")));
}

/// `pkg-config --cflags libdpdk` split into arguments, exactly as pkg-config prints them.
fn raw_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let output = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {pkg_config}: {e}")));
    if !output.status.success() {
        fail(&format!(
            "`{pkg_config} --cflags libdpdk` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Stops the build with one line: cargo prints `cargo::error` as a top-level `error:` line, and
/// the same text closes the build script's stderr, which cargo shows on failure.
fn fail(message: &str) -> ! {
    println!("cargo::error={message}");
    eprintln!("error: {message}");
    exit(1);
}

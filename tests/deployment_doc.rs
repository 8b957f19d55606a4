//! docs/DEPLOYMENT.md shows only commands that are checked: every line of its `sh` blocks is
//! run by a test (a `fulcrum` command as README's tested commands or tests/package.rs run it;
//! `dpkg`/`cargo deb` as tests/package.rs runs them; `apt-get install` of packages
//! scripts/setup.sh installs) or is the fix `fulcrum doctor` prints (its text is in
//! src/doctor.rs or the device check it shares with `fulcrum run`). The only others are the
//! systemctl/journalctl lines, which need systemd as PID 1: this machine has none, so the unit
//! is checked by `systemd-analyze verify` (tests/package.rs) and the notify protocol by
//! tests/dpdk_systemd_notify.rs. The doc's example PCI address stands for any.

use testkit::readme::{Shown, commands};
use testkit::repo;

/// Need a booted systemd; what checks them instead is said above.
const NEED_SYSTEMD: [&str; 2] = ["systemctl", "journalctl"];
/// The doc's example NIC, and how doctor's source writes any address.
const EXAMPLE_PCI: &str = "0000:03:00.0";

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Rust source text with string continuations (`\` at a line's end) joined, as the program
/// prints it.
fn joined(src: &str) -> String {
    let mut out = String::new();
    let mut lines = src.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(head) = l.strip_suffix('\\') {
            out.push_str(head);
            if let Some(next) = lines.peek_mut() {
                *next = next.trim_start();
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// A `fulcrum` command's words without the values of `-c`/`-s` and paths: what it does.
fn fulcrum_words(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in &argv[1..] {
        if skip {
            skip = false;
        } else if a == "-c" || a == "-s" || a == "--config" || a == "--socket" {
            skip = true;
        } else {
            out.push(a.clone());
        }
    }
    out
}

#[test]
fn every_deployment_command_is_tested_or_a_doctor_fix() {
    let doc = read("docs/DEPLOYMENT.md");
    let shown = commands(
        &doc,
        "Deploying Fulcrum: from a bare Debian 12 server to forwarding traffic",
    );
    assert!(shown.len() >= 15, "only {} commands found", shown.len());
    let package = read("tests/package.rs");
    let fixes = joined(&(read("src/doctor.rs") + &read("dataplane/src/dpdk/device_check.rs")));
    let setup = read("scripts/setup.sh");
    let readme = read("README.md");
    let readme_fulcrum: Vec<Vec<String>> = commands(&readme, "Using it")
        .iter()
        .filter(|s| s.argv[0] == "fulcrum")
        .map(|s| fulcrum_words(&s.argv))
        .collect();
    let quoted = |w: &str| package.contains(&format!("\"{w}\""));

    let mut by_systemd = Vec::new();
    let mut unchecked: Vec<&Shown> = Vec::new();
    for s in &shown {
        let prog = s.argv[0].as_str();
        let ok = match prog {
            "fulcrum" => {
                let words = fulcrum_words(&s.argv);
                readme_fulcrum.contains(&words) || words.iter().all(|w| quoted(w))
            }
            "dpkg" | "cargo" => s.argv[1..]
                .iter()
                .filter(|w| !w.ends_with(".deb"))
                .all(|w| quoted(w)),
            "apt-get" if s.argv.get(1).map(String::as_str) == Some("install") => s.argv[2..]
                .iter()
                .all(|p| setup.split_whitespace().any(|w| w == p)),
            p if NEED_SYSTEMD.contains(&p) => {
                by_systemd.push(s.line.clone());
                true
            }
            _ => fixes.contains(&s.line.replace(EXAMPLE_PCI, "{a}")),
        };
        if !ok {
            unchecked.push(s);
        }
    }
    assert!(
        unchecked.is_empty(),
        "docs/DEPLOYMENT.md shows commands no test runs and doctor does not print: {:#?}",
        unchecked.iter().map(|s| &s.line).collect::<Vec<_>>()
    );
    println!(
        "{} commands checked; {} need a booted systemd: {by_systemd:?}",
        shown.len() - by_systemd.len(),
        by_systemd.len()
    );
}

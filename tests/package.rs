//! The Debian package, built and installed on this machine: `cargo deb` packs the binary the
//! test suite built (so the test does not wait for a release build; `cargo deb` alone makes
//! the release package from the same metadata), `dpkg -i` installs it, the installed
//! `fulcrum` runs (`--version`, `check` on the shipped /etc/fulcrum/fulcrum.toml, `doctor`),
//! `systemd-analyze verify` accepts the installed unit, the man pages are found, and
//! `dpkg -r` / `dpkg -P` remove it (the edited conffile kept until the purge).
//!
//! It refuses to run where a `fulcrum` package is already installed: it would replace it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::*;

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn installed() -> bool {
    run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "fulcrum"]))
        .stdout
        .starts_with(b"install ok installed")
}

/// Purges the package when the test ends, also when it fails half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if installed() {
            let _ = run(Command::new("dpkg").args(["-P", "fulcrum"]));
        }
    }
}

/// `cargo deb` on the binary the suite built (target/PROFILE/fulcrum): the .deb's path.
fn build_deb(out: &Path) -> PathBuf {
    let bin = fulcrum_bin();
    let profile_dir = bin.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        p => p,
    }
    .to_string();
    let o = run(Command::new(env!("CARGO"))
        .current_dir(repo())
        // Stripped and --fast: xz over the 70 MB unstripped debug binary took minutes here,
        // this 8 s. (cargo-deb warns that the dev profile is meant for releases only; it
        // packs it all the same.)
        .args([
            "deb",
            "--no-build",
            "--fast",
            "--profile",
            &profile,
            "--output",
        ])
        .arg(out));
    assert!(
        o.status.success(),
        "cargo deb failed (is cargo-deb installed? scripts/setup.sh installs it):\n{}",
        text(&o)
    );
    let deb = String::from_utf8_lossy(&o.stdout)
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_string();
    PathBuf::from(deb)
}

#[test]
fn package_builds_installs_runs_and_removes() {
    assert!(
        !installed(),
        "a fulcrum package is installed on this machine: this test would replace it"
    );
    let s = Scratch::new("package");
    let deb = build_deb(&s.path);
    let size = std::fs::metadata(&deb).unwrap().len();
    println!("built {} ({} KiB)", deb.display(), size / 1024);

    // What it declares: DPDK's runtime libraries (from dpkg-shlibdeps and the plugins), the
    // config as a conffile.
    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    let depends = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{info}"))
        .to_string();
    println!("Depends: {depends}");
    for lib in [
        "librte-eal23",
        "librte-ethdev23",
        "librte-mbuf23",
        "librte-mempool23",
        "librte-ring23",
        "librte-bus-pci23",
        "librte-mempool-ring23",
        "libc6",
    ] {
        assert!(depends.contains(lib), "Depends lacks {lib}: {depends}");
    }
    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for f in [
        "./usr/bin/fulcrum",
        "./etc/fulcrum/fulcrum.toml",
        "fulcrum.service",
        "./usr/share/fulcrum/grafana/fulcrum.json",
        "./usr/share/man/man1/fulcrum-doctor.1",
        "./usr/share/doc/fulcrum/DEPLOYMENT.md",
    ] {
        assert!(contents.contains(f), "the package lacks {f}:\n{contents}");
    }

    let _guard = Installed;
    let o = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(o.status.success(), "dpkg -i:\n{}", text(&o));
    let conffiles = text(&run(Command::new("dpkg-query").args([
        "-W",
        "-f=${Conffiles}",
        "fulcrum",
    ])));
    assert!(
        conffiles.contains("/etc/fulcrum/fulcrum.toml"),
        "not a conffile: {conffiles}"
    );

    let fulcrum = Path::new("/usr/bin/fulcrum");
    let v = must(Command::new(fulcrum).arg("--version"));
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")) && v.contains("DPDK"),
        "{v}"
    );
    let c = must(Command::new(fulcrum).args(["check", "-c", "/etc/fulcrum/fulcrum.toml"]));
    println!(
        "{}\n{}",
        v.trim(),
        String::from_utf8_lossy(&c.stdout).trim()
    );

    // The shipped example names a NIC (0000:03:00.0) this machine does not have: doctor
    // says it cannot run, and why.
    let d = run(Command::new(fulcrum).args(["doctor", "-c", "/etc/fulcrum/fulcrum.toml"]));
    let dt = text(&d);
    assert_eq!(d.status.code(), Some(1), "{dt}");
    assert!(
        dt.contains("FAIL  port lan0: PCI device 0000:03:00.0"),
        "{dt}"
    );

    let files = text(&run(Command::new("dpkg").args(["-L", "fulcrum"])));
    let unit = files
        .lines()
        .find(|l| l.ends_with("/systemd/system/fulcrum.service"))
        .unwrap_or_else(|| panic!("no unit installed:\n{files}"))
        .to_string();
    let verify = run(Command::new("systemd-analyze").args(["verify", &unit]));
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "systemd-analyze verify {unit}:\n{}",
        text(&verify)
    );
    println!("systemd-analyze verify {unit}: clean");
    let man = must(Command::new("man").args(["-w", "fulcrum-doctor"]));
    assert!(String::from_utf8_lossy(&man.stdout).contains("/usr/share/man/man1/"));

    // An operator's edit to the conffile survives `dpkg -r`; `dpkg -P` removes it.
    let conf = Path::new("/etc/fulcrum/fulcrum.toml");
    let edited = std::fs::read_to_string(conf).unwrap() + "\n# edited by the operator\n";
    std::fs::write(conf, &edited).unwrap();
    must(Command::new("dpkg").args(["-r", "fulcrum"]));
    assert!(!fulcrum.exists(), "/usr/bin/fulcrum left after dpkg -r");
    assert_eq!(std::fs::read_to_string(conf).unwrap(), edited);
    must(Command::new("dpkg").args(["-P", "fulcrum"]));
    assert!(!conf.exists(), "the conffile left after dpkg -P");
    assert!(!installed());
}

//! `fulcrum doctor` on this very machine, against a config on a virtual device: every line it
//! prints about the host agrees with what the kernel says through other files (/proc/meminfo
//! for hugepages, the IOMMU groups, cpufreq), and it says it can run (exit 0) with only a
//! virtual port, no IOMMU being a warning rather than a failure. The findings one by one are
//! unit-tested on fake trees in src/doctor.rs.

use std::path::Path;

use testkit::*;

#[test]
fn doctor_reports_this_host_as_it_is() {
    let s = Scratch::new("doctor");
    let config = fixture("idle_ring.toml")
        .set("eal_args", eal_args_toml("doctor"))
        .set("socket", s.join("ctl.sock").display())
        .set("metrics", "127.0.0.1:0")
        .set("sync", "")
        .render();
    let cfg = s.join("fulcrum.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = fulcrum().args(["doctor", "-c"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    let line = |what: &str| {
        text.lines()
            .find(|l| l[6..].starts_with(&format!("{what}: ")))
            .unwrap_or_else(|| panic!("no {what} line:\n{text}"))
            .to_string()
    };

    // Hugepages: the default size's count as /proc/meminfo has it.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |k: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap()
    };
    let (total, size_kb) = (field("HugePages_Total:"), field("Hugepagesize:"));
    let hp = line("hugepages");
    if total > 0 {
        assert!(hp.starts_with("ok"), "{hp}");
        assert!(
            hp.contains(&format!("{total} x {} MiB", size_kb / 1024)),
            "{hp} vs {total} x {size_kb} kB in /proc/meminfo"
        );
    } else {
        // The config has --no-huge: only a warning.
        assert!(hp.starts_with("warn"), "{hp}");
    }

    // IOMMU: no group here means a warning (the only port is virtual).
    let groups = std::fs::read_dir("/sys/kernel/iommu_groups")
        .map(|d| d.count())
        .unwrap_or(0);
    let iommu = line("iommu");
    if groups == 0 {
        assert!(iommu.starts_with("warn  iommu: no IOMMU group"), "{iommu}");
        assert!(iommu.contains("virtual devices only"), "{iommu}");
    } else {
        assert!(
            iommu.contains(&format!("{groups} IOMMU group(s)")),
            "{iommu}"
        );
    }
    let vfio = line("vfio-pci");
    assert_eq!(
        vfio.starts_with("ok"),
        Path::new("/sys/bus/pci/drivers/vfio-pci").is_dir(),
        "{vfio}"
    );

    assert!(
        line("port p0").starts_with("ok    port p0: virtual device net_ring0"),
        "{text}"
    );
    let governor = line("governor");
    let cpufreq = Path::new("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor").exists();
    assert_eq!(
        governor.contains("no cpufreq scaling"),
        !cpufreq,
        "{governor}"
    );
    assert!(line("control socket").starts_with("ok"), "{text}");
    // The slow path is not pinned in this config: said, as a warning.
    assert!(
        text.contains("warn  cpus: the slow path is not pinned"),
        "{text}"
    );
    assert!(out.status.success(), "{}: {text}", out.status);
    assert!(
        text.lines().last().unwrap().starts_with("can run: "),
        "{text}"
    );

    // A PCI port this host does not have: cannot run, exit 1, with the fix named.
    let pci = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("device = \"net_ring0\"", "device = \"0000:7f:1f.7\"");
    std::fs::write(&cfg, pci).unwrap();
    let out = fulcrum().args(["doctor", "-c"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  port p0: PCI device 0000:7f:1f.7 does not exist"),
        "{text}"
    );
    assert!(text.contains("cannot run: "), "{text}");
}

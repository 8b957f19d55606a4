//! `fulcrum doctor [-c FILE]`: what on this host keeps Fulcrum from running, or from running
//! well, before it is started. Each finding is `ok`, `warn` (runs, but slower or less
//! predictably) or `FAIL` (`fulcrum run` would refuse or the NIC could not be driven), printed
//! with the command that fixes it; the exit status is 1 when any finding fails.
//!
//! Everything is read from `/sys` and `/proc` under a root directory ([`diagnose`]'s `root`,
//! `/` for real), so the tests run each finding against a fake tree. The device and CPU
//! checks are the ones `fulcrum run` makes at start ([`dataplane::dpdk::check_device_in`],
//! [`dataplane::cpus::CpuSets::check`]), so doctor and start-up never disagree.

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use conf::Config;
use dataplane::cpus::{CpuSets, format_list, parse_list, ranges};
use dataplane::dpdk::{check_device_in, device_name, pci_address};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One thing doctor looked at.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What was checked: "hugepages", "iommu", "port lan0", ...
    pub what: String,
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// The command (or edit) that fixes it, when not ok.
    pub fix: Option<String>,
}

impl Finding {
    fn new(what: impl Into<String>, level: Level, detail: impl Into<String>) -> Finding {
        Finding {
            what: what.into(),
            level,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// The kernel command line's edit, as the fix for boot-time settings says it.
const GRUB: &str = "in /etc/default/grub, add to GRUB_CMDLINE_LINUX_DEFAULT";
const GRUB_THEN: &str = "then `update-grub` and reboot";

/// The host under `root` (`/` for real), against `cfg` if given.
pub fn diagnose(root: &Path, cfg: Option<&Config>) -> Vec<Finding> {
    let host = Host { root };
    let mut out = Vec::new();
    let no_huge = cfg.is_some_and(|c| c.dpdk.eal_args.iter().any(|a| a == "--no-huge"));
    out.extend(host.hugepages(no_huge));
    let pci: Vec<String> = cfg
        .map(|c| {
            c.ports
                .iter()
                .filter_map(|p| pci_address(device_name(&p.device)))
                .collect()
        })
        .unwrap_or_default();
    out.extend(host.iommu(!pci.is_empty()));
    if let Some(cfg) = cfg {
        out.extend(host.ports(cfg));
        out.extend(host.exception_path(cfg));
        out.extend(host.cpus(cfg));
        out.push(host.control_socket(&cfg.global.control_socket));
        out.push(host.flow_state_dir(&cfg.global.flow_state_dir()));
    } else {
        out.push(Finding::new(
            "config",
            Level::Warn,
            "no config given (-c FILE): ports, cores and the control socket not checked",
        ));
    }
    out
}

/// Prints the findings; returns whether Fulcrum can run (no finding failed).
pub fn print(findings: &[Finding], out: &mut String) -> bool {
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag}  {}: {}", f.what, f.detail);
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "      fix: {fix}");
        }
    }
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    let (fails, warns) = (count(Level::Fail), count(Level::Warn));
    if fails > 0 {
        let _ = writeln!(out, "cannot run: {fails} failure(s), {warns} warning(s)");
    } else {
        let _ = writeln!(out, "can run: {warns} warning(s)");
    }
    fails == 0
}

/// `/sys` and `/proc` under a root.
struct Host<'a> {
    root: &'a Path,
}

impl Host<'_> {
    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn list(&self, abs: &str) -> Option<Vec<RangeInclusive<usize>>> {
        self.read(abs).and_then(|s| parse_list(&s))
    }

    /// Reserved hugepages of each size and a hugetlbfs mount.
    fn hugepages(&self, no_huge: bool) -> Vec<Finding> {
        let mut sizes = Vec::new();
        if let Ok(dir) = std::fs::read_dir(self.path("/sys/kernel/mm/hugepages")) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(kb) = name
                    .strip_prefix("hugepages-")
                    .and_then(|s| s.strip_suffix("kB"))
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let n = |f: &str| {
                    std::fs::read_to_string(e.path().join(f))
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                sizes.push((kb, n("nr_hugepages"), n("free_hugepages")));
            }
        }
        sizes.sort_unstable();
        let reserved: Vec<String> = sizes
            .iter()
            .filter(|(_, nr, _)| *nr > 0)
            .map(|(kb, nr, free)| format!("{nr} x {} ({free} free)", size_name(*kb)))
            .collect();
        let mounts = self.read("/proc/mounts").unwrap_or_default();
        let mount = mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"hugetlbfs")).then(|| f[1].to_owned())
            })
            .next();
        let reserve = "echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
        let boot = format!(
            "{GRUB} `default_hugepagesz=1G hugepagesz=1G hugepages=4 hugepagesz=2M \
             hugepages=1024`, {GRUB_THEN}"
        );
        let (bad, why) = if no_huge {
            (
                Level::Warn,
                "the config runs without them (--no-huge in dpdk.eal_args): slower memory, no PCI DMA",
            )
        } else {
            (
                Level::Fail,
                "EAL needs them unless dpdk.eal_args has --no-huge",
            )
        };
        let pages = if reserved.is_empty() {
            Finding::new("hugepages", bad, format!("none reserved; {why}"))
                .fix(format!("now: `{reserve}`; at boot: {boot}"))
        } else {
            Finding::new("hugepages", Level::Ok, reserved.join(", "))
        };
        let mounted = match mount {
            Some(at) => Finding::new("hugetlbfs", Level::Ok, format!("mounted at {at}")),
            None => Finding::new("hugetlbfs", bad, format!("not mounted; {why}")).fix(
                "`mount -t hugetlbfs nodev /dev/hugepages` (systemd's dev-hugepages.mount does it at boot)",
            ),
        };
        vec![pages, mounted]
    }

    /// An IOMMU (for vfio-pci) and the vfio-pci driver.
    fn iommu(&self, pci_ports: bool) -> Vec<Finding> {
        let groups = std::fs::read_dir(self.path("/sys/kernel/iommu_groups"))
            .map(|d| d.count())
            .unwrap_or(0);
        // Without a PCI port the host runs virtual devices only: not a failure.
        let bad = if pci_ports { Level::Fail } else { Level::Warn };
        let iommu = if groups > 0 {
            Finding::new("iommu", Level::Ok, format!("{groups} IOMMU group(s)"))
        } else {
            let noiommu = self
                .read("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode")
                .is_some_and(|v| v == "Y");
            Finding::new(
                "iommu",
                bad,
                format!(
                    "no IOMMU group (/sys/kernel/iommu_groups is empty): vfio-pci cannot drive a \
                     NIC{}",
                    if noiommu {
                        " (vfio's unsafe no-IOMMU mode is on: it runs, without DMA isolation)"
                    } else if pci_ports {
                        ""
                    } else {
                        "; this config has virtual devices only"
                    }
                ),
            )
            .fix(format!(
                "enable VT-d/AMD-Vi in the firmware; {GRUB} `intel_iommu=on iommu=pt` (AMD: \
                 `amd_iommu=on iommu=pt`), {GRUB_THEN}"
            ))
        };
        let vfio = if self.path("/sys/bus/pci/drivers/vfio-pci").is_dir() {
            Finding::new("vfio-pci", Level::Ok, "driver loaded")
        } else {
            Finding::new("vfio-pci", bad, "driver not loaded").fix(
                "`modprobe vfio-pci`; at boot: `echo vfio-pci > /etc/modules-load.d/vfio-pci.conf`",
            )
        };
        vec![iommu, vfio]
    }

    /// The NUMA node of CPU `cpu`, if the host has NUMA information.
    fn cpu_node(&self, cpu: usize) -> Option<usize> {
        let dir =
            std::fs::read_dir(self.path(&format!("/sys/devices/system/cpu/cpu{cpu}"))).ok()?;
        dir.flatten().find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("node")
                .and_then(|n| n.parse().ok())
        })
    }

    /// Each port's device: usable by DPDK (as `fulcrum run` checks it), and for a PCI NIC its
    /// NUMA node against the workers'.
    fn ports(&self, cfg: &Config) -> Vec<Finding> {
        let mut out = Vec::new();
        let sys = self.path("/sys");
        for p in &cfg.ports {
            let what = format!("port {}", p.name);
            if let Err(e) = check_device_in(&sys, &p.device, &cfg.dpdk.eal_args) {
                let f = Finding::new(&what, Level::Fail, e.to_string());
                // A device that exists but is on the wrong driver: how to bind it.
                let exists = |a: &String| sys.join("bus/pci/devices").join(a).exists();
                out.push(match pci_address(device_name(&p.device)).filter(exists) {
                    Some(a) => f.fix(format!(
                        "`modprobe vfio-pci && dpdk-devbind.py --bind=vfio-pci {a}` (to keep it \
                         across reboots: `driverctl set-override {a} vfio-pci`)"
                    )),
                    None => f,
                });
                continue;
            }
            let Some(addr) = pci_address(device_name(&p.device)) else {
                out.push(Finding::new(
                    what,
                    Level::Ok,
                    format!("virtual device {}", device_name(&p.device)),
                ));
                continue;
            };
            let driver = std::fs::read_link(sys.join("bus/pci/devices").join(&addr).join("driver"))
                .ok()
                .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let node = self
                .read(&format!("/sys/bus/pci/devices/{addr}/numa_node"))
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .map(|n| n as usize);
            let far: Vec<usize> = match node {
                Some(n) => cfg
                    .dpdk
                    .workers
                    .iter()
                    .copied()
                    .filter(|c| self.cpu_node(*c).is_some_and(|cn| cn != n))
                    .collect(),
                None => Vec::new(),
            };
            let at = node.map_or("no NUMA node".to_owned(), |n| format!("NUMA node {n}"));
            out.push(if far.is_empty() {
                Finding::new(what, Level::Ok, format!("{addr} bound to {driver}, {at}"))
            } else {
                let n = node.unwrap_or_default();
                let local = self
                    .read(&format!("/sys/devices/system/node/node{n}/cpulist"))
                    .unwrap_or_default();
                Finding::new(
                    what,
                    Level::Warn,
                    format!(
                        "{addr} is on NUMA node {n}, worker CPU(s) {far:?} on another: every \
                         packet crosses the interconnect"
                    ),
                )
                .fix(format!(
                    "set dpdk.workers to CPUs of node {n} ({local}) in the config"
                ))
            });
        }
        out
    }

    /// The kernel exception path (`port.kernel_interface`) is a `net_tap` device: it needs
    /// the TUN/TAP driver's `/dev/net/tun`.
    fn exception_path(&self, cfg: &Config) -> Vec<Finding> {
        let ports: Vec<&str> = cfg
            .ports
            .iter()
            .filter(|p| p.kernel_interface.is_some())
            .map(|p| p.name.as_str())
            .collect();
        if ports.is_empty() {
            return Vec::new();
        }
        let what = "exception path";
        vec![if self.path("/dev/net/tun").exists() {
            Finding::new(
                what,
                Level::Ok,
                format!("/dev/net/tun present (ports {ports:?})"),
            )
        } else {
            Finding::new(
                what,
                Level::Fail,
                format!("ports {ports:?} have a kernel_interface, but /dev/net/tun is missing"),
            )
            .fix("`modprobe tun`")
        }]
    }

    /// Worker and slow-path CPUs: present and online, apart, isolated, at full frequency.
    fn cpus(&self, cfg: &Config) -> Vec<Finding> {
        let mut out = Vec::new();
        let (Some(present), Some(online)) = (
            self.list("/sys/devices/system/cpu/present"),
            self.list("/sys/devices/system/cpu/online"),
        ) else {
            out.push(Finding::new(
                "cpus",
                Level::Warn,
                "/sys/devices/system/cpu/{present,online} unreadable: CPUs not checked",
            ));
            return out;
        };
        let allowed = online.iter().flat_map(|r| r.clone()).collect();
        let sets = CpuSets {
            present,
            online,
            allowed,
        };
        let roles: Vec<(String, usize)> = cfg
            .dpdk
            .workers
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("worker {i}"), *c))
            .chain(cfg.dpdk.slowpath_cpu.map(|c| ("slow-path".to_owned(), c)))
            .collect();
        let mut bad = false;
        for (role, cpu) in &roles {
            if let Err(e) = sets.check(role, *cpu) {
                bad = true;
                out.push(
                    Finding::new("cpus", Level::Fail, e.to_string()).fix(format!(
                        "choose online CPUs (`lscpu -e`) for dpdk.workers and dpdk.slowpath_cpu, \
                         or `echo 1 > /sys/devices/system/cpu/cpu{cpu}/online`"
                    )),
                );
            }
        }
        let workers = &cfg.dpdk.workers;
        match cfg.dpdk.slowpath_cpu {
            Some(s) if workers.contains(&s) => out.push(
                Finding::new(
                    "cpus",
                    Level::Fail,
                    format!("the slow path's CPU {s} is also a worker's"),
                )
                .fix("give dpdk.slowpath_cpu a CPU no worker has"),
            ),
            Some(_) => {}
            None => out.push(
                Finding::new(
                    "cpus",
                    Level::Warn,
                    "the slow path is not pinned (dpdk.slowpath_cpu): it may run on a worker's CPU",
                )
                .fix("set dpdk.slowpath_cpu to a CPU that is not a worker's (e.g. a housekeeping CPU)"),
            ),
        }
        if !bad && out.is_empty() {
            out.push(Finding::new(
                "cpus",
                Level::Ok,
                format!(
                    "workers on {}, slow path on {}",
                    format_list(&ranges(workers)),
                    cfg.dpdk.slowpath_cpu.map_or("-".into(), |c| c.to_string())
                ),
            ));
        }
        // Isolation: the kernel schedules nothing else on a worker's CPU, and stops its tick.
        let isolated = self
            .list("/sys/devices/system/cpu/isolated")
            .unwrap_or_default();
        let nohz = self
            .list("/sys/devices/system/cpu/nohz_full")
            .unwrap_or_default();
        let has = |set: &[RangeInclusive<usize>], c: &usize| set.iter().any(|r| r.contains(c));
        let not_isolated: Vec<usize> = workers
            .iter()
            .copied()
            .filter(|c| !has(&isolated, c))
            .collect();
        let ticking: Vec<usize> = workers.iter().copied().filter(|c| !has(&nohz, c)).collect();
        let list = format_list(&ranges(workers));
        out.push(if not_isolated.is_empty() && ticking.is_empty() {
            Finding::new("isolation", Level::Ok, format!("worker CPUs {list} isolated, nohz_full"))
        } else {
            Finding::new(
                "isolation",
                Level::Warn,
                format!(
                    "worker CPU(s) not isolated (isolcpus): {}; with the scheduler tick (nohz_full): {}",
                    format_list(&ranges(&not_isolated)),
                    format_list(&ranges(&ticking))
                ),
            )
            .fix(format!(
                "{GRUB} `isolcpus={list} nohz_full={list} rcu_nocbs={list}`, {GRUB_THEN}"
            ))
        });
        // Frequency: a worker busy-polls; a power-saving governor lowers its clock.
        let mut slow = Vec::new();
        let mut seen = false;
        for (_, cpu) in &roles {
            let g = self.read(&format!(
                "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
            ));
            if let Some(g) = g {
                seen = true;
                if g != "performance" {
                    slow.push(format!("CPU {cpu}: {g}"));
                }
            }
        }
        out.push(if !seen {
            Finding::new(
                "governor",
                Level::Ok,
                "no cpufreq scaling on these CPUs (fixed frequency, or a virtual machine)",
            )
        } else if slow.is_empty() {
            Finding::new("governor", Level::Ok, "performance")
        } else {
            Finding::new("governor", Level::Warn, slow.join(", ")).fix(
                "`for g in /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; do echo \
                 performance > $g; done` (at boot: `cpupower frequency-set -g performance`)",
            )
        });
        out
    }

    /// The control socket: its directory can be made, no other instance serves on it.
    /// The flow tables' directory (`global.flow_state_dir`) on a memory file system.
    fn flow_state_dir(&self, dir: &Path) -> Finding {
        let what = "flow state dir";
        let mounts = self.read("/proc/mounts").unwrap_or_default();
        match flow_state_dir_warning(&mounts, dir) {
            Some(w) => Finding::new(what, Level::Warn, w)
                .fix("set global.flow_state_dir under /run (tmpfs) or a hugetlbfs mount"),
            None => Finding::new(
                what,
                Level::Ok,
                format!(
                    "{}: {}",
                    dir.display(),
                    fs_type_of(&mounts, dir).unwrap_or_else(|| "file system unknown".into())
                ),
            ),
        }
    }

    fn control_socket(&self, socket: &Path) -> Finding {
        let at = self.root.join(socket.strip_prefix("/").unwrap_or(socket));
        let what = "control socket";
        if std::os::unix::net::UnixStream::connect(&at).is_ok() {
            return Finding::new(
                what,
                Level::Fail,
                format!("{}: another balancer serves on it", socket.display()),
            )
            .fix("stop it (`systemctl stop fulcrum`), or give this one another global.control_socket");
        }
        // The directory is made at start when missing: its nearest existing ancestor must be
        // a directory.
        let mut dir = at.parent();
        while let Some(d) = dir {
            if let Ok(m) = std::fs::metadata(d) {
                return if m.is_dir() {
                    let made = if Some(d) == at.parent() {
                        "exists"
                    } else {
                        "is made at start"
                    };
                    Finding::new(
                        what,
                        Level::Ok,
                        format!("{}: directory {made}", socket.display()),
                    )
                } else {
                    Finding::new(
                        what,
                        Level::Fail,
                        format!("{}: {} is not a directory", socket.display(), d.display()),
                    )
                    .fix("choose another global.control_socket")
                };
            }
            dir = d.parent();
        }
        Finding::new(
            what,
            Level::Fail,
            format!("{}: no directory", socket.display()),
        )
        .fix("choose another global.control_socket")
    }
}

/// File systems whose pages live in memory only: flow tables mapped from a file there cost
/// no disk I/O (a disk-backed file's dirty pages are written back every few seconds).
const MEMORY_FS: [&str; 3] = ["tmpfs", "hugetlbfs", "ramfs"];

/// The type of the file system that holds `path` (absolute), from `/proc/mounts`'s text:
/// the mount whose point is the longest prefix of `path` (or of its nearest ancestor: the
/// directory may not exist yet).
pub fn fs_type_of(mounts: &str, path: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            // /proc/mounts escapes spaces as \040: such a mount point is not matched.
            (!dir.contains('\\') && path.starts_with(dir)).then_some((dir.len(), fstype))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t.to_string())
}

/// When the flow tables' directory `dir` is not on a memory file system: the warning's text
/// (also logged by `fulcrum run` at start). `None` when it is, or when unknown.
pub fn flow_state_dir_warning(mounts: &str, dir: &Path) -> Option<String> {
    let t = fs_type_of(mounts, dir)?;
    (!MEMORY_FS.contains(&t.as_str())).then(|| {
        format!(
            "{}: on a {t} file system: the flow tables' dirty pages are written back to disk \
             (I/O every few seconds, and the tables outlive a reboot that should clear them)",
            dir.display()
        )
    })
}

/// `2 MiB`, `1 GiB`.
fn size_name(kb: u64) -> String {
    if kb >= 1 << 20 {
        format!("{} GiB", kb >> 20)
    } else if kb >= 1 << 10 {
        format!("{} MiB", kb >> 10)
    } else {
        format!("{kb} kB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake `/` of a well-prepared 8-CPU, 2-node server: 1 GiB hugepages mounted, an IOMMU,
    /// vfio-pci with the NIC 0000:03:00.0 on node 0, workers 2-3 isolated and nohz_full, every
    /// governor `performance`. Each test breaks one thing.
    struct Fake {
        root: PathBuf,
    }

    impl Fake {
        fn good(name: &str) -> Fake {
            let root =
                std::env::temp_dir().join(format!("fulcrum-doctor-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            let f = Fake { root };
            let hp = "sys/kernel/mm/hugepages/hugepages-1048576kB";
            f.write(&format!("{hp}/nr_hugepages"), "4");
            f.write(&format!("{hp}/free_hugepages"), "4");
            f.write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0");
            f.write(
                "proc/mounts",
                "proc /proc proc rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,pagesize=1024M 0 0\n",
            );
            for g in 0..4 {
                f.mkdir(&format!("sys/kernel/iommu_groups/{g}/devices"));
            }
            f.mkdir("sys/bus/pci/drivers/ixgbe");
            f.bind("0000:03:00.0", "vfio-pci");
            f.write("sys/bus/pci/devices/0000:03:00.0/numa_node", "0");
            let cpu = "sys/devices/system/cpu";
            f.write(&format!("{cpu}/present"), "0-7");
            f.write(&format!("{cpu}/online"), "0-7");
            f.write(&format!("{cpu}/isolated"), "2-3");
            f.write(&format!("{cpu}/nohz_full"), "2-3");
            for c in 0..8 {
                f.mkdir(&format!("{cpu}/cpu{c}/node{}", c / 4));
                f.write(
                    &format!("{cpu}/cpu{c}/cpufreq/scaling_governor"),
                    "performance",
                );
            }
            f.write("sys/devices/system/node/node0/cpulist", "0-3");
            f.write("sys/devices/system/node/node1/cpulist", "4-7");
            f.mkdir("run/fulcrum");
            f
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.root.join(rel)
        }

        fn write(&self, rel: &str, text: &str) {
            let p = self.path(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, format!("{text}\n")).unwrap();
        }

        fn mkdir(&self, rel: &str) {
            fs::create_dir_all(self.path(rel)).unwrap();
        }

        /// Binds PCI device `addr` to `driver` (its `driver` symlink).
        fn bind(&self, addr: &str, driver: &str) {
            let d = self.path(&format!("sys/bus/pci/drivers/{driver}"));
            fs::create_dir_all(&d).unwrap();
            let dev = self.path(&format!("sys/bus/pci/devices/{addr}"));
            fs::create_dir_all(&dev).unwrap();
            let _ = fs::remove_file(dev.join("driver"));
            std::os::unix::fs::symlink(d, dev.join("driver")).unwrap();
        }

        fn remove(&self, rel: &str) {
            let p = self.path(rel);
            if p.is_dir() {
                fs::remove_dir_all(p).unwrap();
            } else {
                fs::remove_file(p).unwrap();
            }
        }

        /// The findings for `cfg` (workers 2-3, slow path 1, the NIC as its port).
        fn diagnose(&self, cfg: &Config) -> Vec<Finding> {
            diagnose(&self.root, Some(cfg))
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    /// conf/examples/dsr.toml (shipped as /etc/fulcrum/fulcrum.toml): workers on CPUs 2-3,
    /// the slow path on 1, port `lan0` on the NIC 0000:03:00.0.
    fn pci() -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/examples/dsr.toml");
        let cfg = conf::load(&path).expect("the example is valid");
        assert_eq!(
            (cfg.dpdk.workers.as_slice(), cfg.dpdk.slowpath_cpu),
            (&[2, 3][..], Some(1))
        );
        assert_eq!(cfg.ports[0].device, "0000:03:00.0");
        cfg
    }

    /// The one finding about `what` that is not ok (panics if there is none or several).
    fn problem<'a>(findings: &'a [Finding], what: &str) -> &'a Finding {
        let bad: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.what == what && f.level != Level::Ok)
            .collect();
        assert_eq!(bad.len(), 1, "{what}: {findings:#?}");
        bad[0]
    }

    /// Every finding but `what`'s is ok.
    fn only(findings: &[Finding], what: &str) {
        for f in findings {
            assert!(f.what == what || f.level == Level::Ok, "{f:?}");
        }
    }

    fn can_run(findings: &[Finding]) -> bool {
        print(findings, &mut String::new())
    }

    #[test]
    fn a_prepared_server_can_run() {
        let f = Fake::good("good");
        let found = f.diagnose(&pci());
        for x in &found {
            assert_eq!(x.level, Level::Ok, "{x:?}");
        }
        let mut text = String::new();
        assert!(print(&found, &mut text));
        assert!(
            text.contains("ok    hugepages: 4 x 1 GiB (4 free)"),
            "{text}"
        );
        assert!(
            text.contains("ok    port lan0: 0000:03:00.0 bound to vfio-pci, NUMA node 0"),
            "{text}"
        );
        assert!(text.ends_with("can run: 0 warning(s)\n"), "{text}");
    }

    #[test]
    fn no_hugepages_fail_unless_the_config_runs_without() {
        let f = Fake::good("nohuge");
        f.write(
            "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
            "0",
        );
        let found = f.diagnose(&pci());
        only(&found, "hugepages");
        let p = problem(&found, "hugepages");
        assert_eq!(p.level, Level::Fail);
        assert!(
            p.fix
                .as_ref()
                .unwrap()
                .contains("hugepages-2048kB/nr_hugepages"),
            "{p:?}"
        );
        assert!(!can_run(&found));
        let mut no_huge = pci();
        no_huge.dpdk.eal_args = vec!["--no-huge".into(), "-m".into(), "1024".into()];
        let found = f.diagnose(&no_huge);
        assert_eq!(problem(&found, "hugepages").level, Level::Warn);
    }

    #[test]
    fn hugetlbfs_not_mounted_fails() {
        let f = Fake::good("nomount");
        f.write("proc/mounts", "proc /proc proc rw 0 0");
        let found = f.diagnose(&pci());
        only(&found, "hugetlbfs");
        let p = problem(&found, "hugetlbfs");
        assert_eq!(p.level, Level::Fail);
        assert!(
            p.fix
                .as_ref()
                .unwrap()
                .contains("mount -t hugetlbfs nodev /dev/hugepages")
        );
    }

    #[test]
    fn no_iommu_fails_for_a_pci_port_and_warns_for_virtual_devices() {
        let f = Fake::good("noiommu");
        f.remove("sys/kernel/iommu_groups");
        let found = f.diagnose(&pci());
        only(&found, "iommu");
        let p = problem(&found, "iommu");
        assert_eq!(p.level, Level::Fail);
        assert!(p.fix.as_ref().unwrap().contains("intel_iommu=on iommu=pt"));
        // The host alone, no PCI port to drive: a warning.
        let host = diagnose(&f.root, None);
        assert_eq!(problem(&host, "iommu").level, Level::Warn);
    }

    #[test]
    fn vfio_pci_not_loaded_fails() {
        let f = Fake::good("novfio");
        f.bind("0000:03:00.0", "ixgbe");
        f.remove("sys/bus/pci/drivers/vfio-pci");
        let found = f.diagnose(&pci());
        let p = problem(&found, "vfio-pci");
        assert_eq!(p.level, Level::Fail);
        assert!(p.fix.as_ref().unwrap().contains("modprobe vfio-pci"));
    }

    #[test]
    fn a_nic_on_its_kernel_driver_fails_with_the_bind_command() {
        let f = Fake::good("kdriver");
        f.bind("0000:03:00.0", "ixgbe");
        let found = f.diagnose(&pci());
        only(&found, "port lan0");
        let p = problem(&found, "port lan0");
        assert_eq!(p.level, Level::Fail);
        assert!(
            p.detail.contains("bound to the kernel driver ixgbe"),
            "{p:?}"
        );
        assert!(
            p.fix
                .as_ref()
                .unwrap()
                .contains("dpdk-devbind.py --bind=vfio-pci 0000:03:00.0"),
            "{p:?}"
        );
        // A device the host does not have: no bind command to offer.
        f.remove("sys/bus/pci/devices/0000:03:00.0");
        let found = f.diagnose(&pci());
        let p = problem(&found, "port lan0");
        assert!(p.detail.contains("does not exist"), "{p:?}");
        assert!(p.fix.is_none());
    }

    #[test]
    fn a_nic_on_another_numa_node_than_its_workers_warns() {
        let f = Fake::good("numa");
        f.write("sys/bus/pci/devices/0000:03:00.0/numa_node", "1");
        let found = f.diagnose(&pci());
        only(&found, "port lan0");
        let p = problem(&found, "port lan0");
        assert_eq!(p.level, Level::Warn);
        assert!(
            p.detail.contains("NUMA node 1, worker CPU(s) [2, 3]"),
            "{p:?}"
        );
        assert!(
            p.fix.as_ref().unwrap().contains("CPUs of node 1 (4-7)"),
            "{p:?}"
        );
        assert!(can_run(&found));
        // No NUMA information (-1, a virtual machine): nothing to compare.
        f.write("sys/bus/pci/devices/0000:03:00.0/numa_node", "-1");
        only(&f.diagnose(&pci()), "none");
    }

    #[test]
    fn an_offline_worker_cpu_fails() {
        let f = Fake::good("offline");
        f.write("sys/devices/system/cpu/online", "0-2,4-7");
        let found = f.diagnose(&pci());
        only(&found, "cpus");
        let p = problem(&found, "cpus");
        assert_eq!(p.level, Level::Fail);
        assert!(p.detail.contains("worker 1 CPU 3 is offline"), "{p:?}");
    }

    #[test]
    fn the_slow_path_on_a_worker_cpu_fails_and_unpinned_warns() {
        let f = Fake::good("shared");
        let mut cfg = pci();
        cfg.dpdk.slowpath_cpu = Some(3);
        let found = f.diagnose(&cfg);
        let p = problem(&found, "cpus");
        assert_eq!(p.level, Level::Fail);
        assert!(
            p.detail.contains("slow path's CPU 3 is also a worker's"),
            "{p:?}"
        );
        cfg.dpdk.slowpath_cpu = None;
        let found = f.diagnose(&cfg);
        assert_eq!(problem(&found, "cpus").level, Level::Warn);
    }

    #[test]
    fn an_exception_path_without_dev_net_tun_fails() {
        let f = Fake::good("tun");
        let mut cfg = pci();
        cfg.ports[0].kernel_interface = Some("fulcrum0".into());
        let found = f.diagnose(&cfg);
        only(&found, "exception path");
        let p = problem(&found, "exception path");
        assert_eq!(p.level, Level::Fail);
        assert_eq!(p.fix.as_deref(), Some("`modprobe tun`"));
        f.write("dev/net/tun", "");
        only(&f.diagnose(&cfg), "none");
    }

    #[test]
    fn worker_cpus_not_isolated_warn() {
        let f = Fake::good("isol");
        f.write("sys/devices/system/cpu/isolated", "");
        f.write("sys/devices/system/cpu/nohz_full", "3");
        let found = f.diagnose(&pci());
        only(&found, "isolation");
        let p = problem(&found, "isolation");
        assert_eq!(p.level, Level::Warn);
        assert!(
            p.detail
                .contains("(isolcpus): 2-3; with the scheduler tick (nohz_full): 2"),
            "{p:?}"
        );
        assert!(
            p.fix
                .as_ref()
                .unwrap()
                .contains("isolcpus=2-3 nohz_full=2-3 rcu_nocbs=2-3")
        );
    }

    #[test]
    fn a_power_saving_governor_warns() {
        let f = Fake::good("gov");
        f.write(
            "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
            "powersave",
        );
        let found = f.diagnose(&pci());
        only(&found, "governor");
        let p = problem(&found, "governor");
        assert_eq!(p.detail, "CPU 3: powersave");
        assert!(p.fix.as_ref().unwrap().contains("echo performance"));
    }

    #[test]
    fn a_flow_state_dir_on_a_disk_warns() {
        let mounts = "/dev/vda1 / ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n\
                      nodev /dev/hugepages hugetlbfs rw 0 0\ntmpfs /run/a\\040b tmpfs rw 0 0\n";
        let at = |d: &str| fs_type_of(mounts, Path::new(d));
        assert_eq!(at("/run/fulcrum/fulcrum.flows").as_deref(), Some("tmpfs"));
        assert_eq!(at("/dev/hugepages/fulcrum").as_deref(), Some("hugetlbfs"));
        assert_eq!(at("/var/lib/fulcrum").as_deref(), Some("ext4"));
        assert_eq!(
            at("/run/a b").as_deref(),
            Some("tmpfs"),
            "the escaped mount is skipped"
        );
        assert_eq!(
            flow_state_dir_warning(mounts, Path::new("/run/fulcrum")),
            None
        );
        let w = flow_state_dir_warning(mounts, Path::new("/var/lib/fulcrum")).expect("a warning");
        assert!(
            w.starts_with("/var/lib/fulcrum: on a ext4 file system"),
            "{w}"
        );
        assert_eq!(fs_type_of("", Path::new("/run")), None);
    }

    #[test]
    fn a_control_socket_in_use_or_under_a_file_fails() {
        let f = Fake::good("sock");
        let _other = std::os::unix::net::UnixListener::bind(f.path("run/fulcrum/fulcrum.sock"))
            .expect("bind");
        let found = f.diagnose(&pci());
        only(&found, "control socket");
        let p = problem(&found, "control socket");
        assert!(p.detail.contains("another balancer serves on it"), "{p:?}");
        drop(_other);
        f.remove("run/fulcrum");
        f.write("run/fulcrum", "a file");
        let p = problem(&f.diagnose(&pci()), "control socket").clone();
        assert!(p.detail.contains("is not a directory"), "{p:?}");
        // A missing directory is made at start.
        f.remove("run/fulcrum");
        only(&f.diagnose(&pci()), "none");
    }
}

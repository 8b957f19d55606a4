//! Start-up fails loudly and truthfully, and a signal during it does no harm: SIGHUP early is
//! survived (and reloads once the balancer runs), SIGTERM early stops cleanly with no file
//! left; a control socket or metrics address that cannot be bound, a worker CPU this host
//! does not have, an EAL file prefix another process holds, and a device that cannot be had
//! each stop the start with a message that names it and why; counter files of dead processes
//! are removed at start; a configured port MAC is programmed into the device.
//!
//! Each balancer runs `fulcrum run` on a `net_ring` device (idle, in memory: no network), with
//! its own file prefix and control socket in the test's scratch directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `conf/examples/minimal.toml` on an in-memory `net_ring` port, with the test's EAL prefix,
/// one idle-sleeping worker on CPU 1, the control socket in the scratch directory and `extra`
/// added to `[global]`.
fn config(s: &Scratch, tag: &str, global_extra: &str) -> String {
    let minimal =
        std::fs::read_to_string(repo().join("conf/examples/minimal.toml")).expect("example");
    let device = r#"device = "net_af_packet0,iface=veth-lb""#;
    assert!(minimal.contains(device), "minimal.toml's port changed");
    format!(
        "[dpdk]\n{eal}\nworkers = [1]\nidle_sleep_us = 1000\nmbufs = 4095\n\n[global]\n\
         flow_table_capacity = 1024\ncontrol_socket = \"{sock}\"\n{global_extra}\n\n{body}",
        eal = eal_args_toml(tag),
        sock = s.join(&format!("{tag}.sock")).display(),
        body = minimal.replace(device, r#"device = "net_ring0""#),
    )
}

/// A `fulcrum run` started by a test; killed on drop if it still runs.
struct Run {
    child: Child,
    started: Instant,
    log: PathBuf,
}

impl Run {
    fn start(s: &Scratch, tag: &str, config: &str) -> Run {
        Run::start_in(s, tag, config, fulcrum())
    }

    /// Starts `fulcrum run` as `cmd` (the binary, or `ip netns exec NS` with it).
    fn start_in(s: &Scratch, tag: &str, config: &str, mut cmd: Command) -> Run {
        let cfg = s.join(&format!("{tag}.toml"));
        std::fs::write(&cfg, config).unwrap();
        let log = s.join(&format!("{tag}.log"));
        let child = cmd
            .args(["run", "-c"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn fulcrum");
        // spawn returns once the program is exec'd: signal times count from there.
        let started = Instant::now();
        Run {
            child,
            started,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` `at` after the start, but not before the program runs its own code: a
    /// signal that lands while the dynamic loader still runs (several ms on a loaded 2-core
    /// machine) kills any program, whatever its `main` does. Rust's runtime installs its
    /// SIGSEGV handler just before `main`, so that handler's appearance in SigCgt marks
    /// `main`'s start; the signal goes at least 1 ms after it. Returns (when sent, when `main`
    /// was seen to start).
    fn signal_at(&self, sig: &str, at: Duration) -> (Duration, Duration) {
        const SIGSEGV_BIT: u64 = 1 << (11 - 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        let main = loop {
            if caught(self.child.id()) & SIGSEGV_BIT != 0 {
                break self.started.elapsed();
            }
            assert!(Instant::now() < deadline, "the program never started");
            std::thread::sleep(Duration::from_micros(200));
        };
        let at = at.max(main + Duration::from_millis(1));
        std::thread::sleep(at.saturating_sub(self.started.elapsed()));
        let sent = self.started.elapsed();
        self.signal(sig);
        (sent, main)
    }

    fn signal(&self, sig: &str) {
        must(Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]));
    }

    /// Waits (bounded) until the log contains `what`; panics if the process exits first.
    fn wait_log(&mut self, what: &str) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.log().contains(what) {
                return self.started.elapsed();
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!(
                    "fulcrum exited ({st}) before logging {what:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "still running after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) {
        self.signal("TERM");
        let st = self.wait_exit();
        assert!(st.success(), "exit {st} on SIGTERM:\n{}", self.log());
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `fulcrum run` to completion (it must fail) and returns its stderr.
fn refused(s: &Scratch, tag: &str, config: &str) -> String {
    let mut r = Run::start(s, tag, config);
    let st = r.wait_exit();
    let log = r.log();
    assert!(!st.success(), "fulcrum started; expected a refusal:\n{log}");
    println!(
        "{tag}: refused in {:?}: {}",
        r.started.elapsed(),
        log.trim()
    );
    log
}

fn ctl_status(sock: &Path) -> bool {
    fulcrum()
        .args(["ctl", "-s"])
        .arg(sock)
        .arg("status")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The signals `pid` catches (`SigCgt` of /proc/PID/status; bit n-1 is signal n), 0 when
/// unreadable.
fn caught(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
            u64::from_str_radix(line.trim(), 16).ok()
        })
        .unwrap_or(0)
}

fn counters_file(pid: u32) -> PathBuf {
    PathBuf::from(format!("/dev/shm/fulcrum-{pid}.counters"))
}

#[test]
fn sighup_during_start_up_is_survived_and_reloads_once_running() {
    let s = Scratch::new("start-hup");
    for ms in [5u64, 30, 80] {
        let tag = format!("hup{ms}");
        let mut r = Run::start(&s, &tag, &config(&s, &tag, ""));
        let (sent, main) = r.signal_at("HUP", Duration::from_millis(ms));
        let ready = r.wait_log("port up");
        r.wait_log("reloaded");
        assert!(r.child.try_wait().unwrap().is_none(), "died:\n{}", r.log());
        assert!(
            ctl_status(&s.join(&format!("{tag}.sock"))),
            "no status:\n{}",
            r.log()
        );
        let prefix = eal_prefix(&tag);
        assert!(
            runtime_dir_exists(&prefix),
            "runtime files of a live balancer went"
        );
        println!(
            "SIGHUP at {} ms (main at {} us, ready at {} ms): survived, serving, reloaded",
            sent.as_millis(),
            main.as_micros(),
            ready.as_millis()
        );
        r.stop();
        assert!(
            !runtime_dir_exists(&prefix),
            "runtime files left after SIGTERM"
        );
    }
}

#[test]
fn sigterm_or_sigint_during_start_up_stops_cleanly_leaving_no_file() {
    let s = Scratch::new("start-term");
    for (sig, ms) in [("TERM", 5u64), ("INT", 30), ("TERM", 80), ("INT", 150)] {
        let tag = format!("{}{ms}", sig.to_lowercase());
        let mut r = Run::start(&s, &tag, &config(&s, &tag, ""));
        let (sent, main) = r.signal_at(sig, Duration::from_millis(ms));
        let st = r.wait_exit();
        assert!(st.success(), "exit {st}:\n{}", r.log());
        assert!(
            !runtime_dir_exists(&eal_prefix(&tag)),
            "runtime directory left"
        );
        assert!(
            !s.join(&format!("{tag}.sock")).exists(),
            "control socket left"
        );
        assert!(!counters_file(r.child.id()).exists(), "counter file left");
        println!(
            "SIG{sig} at {} ms (main at {} us): exit 0 after {} ms, no file left",
            sent.as_millis(),
            main.as_micros(),
            r.started.elapsed().as_millis()
        );
    }
}

#[test]
fn a_taken_control_socket_or_metrics_address_refuses_the_start() {
    let s = Scratch::new("start-sock");
    let first = Run::start(&s, "first", &config(&s, "first", ""));
    let mut first = first;
    first.wait_log("port up");
    let sock = s.join("first.sock");
    // The second instance: its own prefix, the first one's socket.
    let second = config(&s, "second", "").replace(
        &s.join("second.sock").display().to_string(),
        &sock.display().to_string(),
    );
    let log = refused(&s, "second", &second);
    assert!(
        log.contains(&format!(
            "control socket {}: another fulcrum is listening there",
            sock.display()
        )),
        "{log}"
    );
    assert!(
        !runtime_dir_exists(&eal_prefix("second")),
        "refused after starting EAL"
    );
    assert!(ctl_status(&sock), "the first instance lost its socket");

    // Opted in: it runs without one, and says so.
    // (Its flow tables need a directory of their own: by default they sit beside the
    // control socket, and the first instance holds that one's files.)
    let optional = second.replace(
        "[global]\n",
        &format!(
            "[global]\ncontrol_optional = true\nflow_state_dir = \"{}\"\n",
            s.join("second.flows").display()
        ),
    );
    let mut r = Run::start(&s, "second", &optional);
    r.wait_log("port up");
    assert!(
        r.log().contains("running without a control socket"),
        "{}",
        r.log()
    );
    r.stop();
    assert!(ctl_status(&sock), "the first instance lost its socket");

    // A metrics address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let log = refused(
        &s,
        "third",
        &config(&s, "third", &format!("metrics_listen = \"{addr}\"")),
    );
    assert!(
        log.contains(&addr.to_string()) && log.contains("in use"),
        "{log}"
    );
    first.stop();
}

#[test]
fn a_worker_cpu_beyond_this_host_refuses_the_start() {
    let s = Scratch::new("start-cpu");
    let present = std::fs::read_to_string("/sys/devices/system/cpu/present").unwrap();
    let last: usize = present
        .trim()
        .rsplit([',', '-'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let beyond = last + 1;
    let cfg = config(&s, "cpu", "").replace("workers = [1]", &format!("workers = [{beyond}]"));
    let log = refused(&s, "cpu", &cfg);
    assert!(
        log.contains(&format!(
            "worker 0 CPU {beyond} does not exist on this host (CPUs present: {})",
            present.trim()
        )),
        "{log}"
    );
    assert!(!runtime_dir_exists(&eal_prefix("cpu")));
    let cfg = config(&s, "slowcpu", "").replace(
        "workers = [1]",
        &format!("workers = [1]\nslowpath_cpu = {beyond}"),
    );
    let log = refused(&s, "slowcpu", &cfg);
    assert!(
        log.contains(&format!("slow-path CPU {beyond} does not exist")),
        "{log}"
    );

    // A CPU the host has but the process may not use (taskset, as a cgroup cpuset would).
    let mut taskset = Command::new("taskset");
    taskset.args(["-c", "0", env!("CARGO_BIN_EXE_fulcrum")]);
    let mut r = Run::start_in(&s, "cpuset", &config(&s, "cpuset", ""), taskset);
    let st = r.wait_exit();
    let log = r.log();
    assert!(!st.success(), "started outside its CPU set:\n{log}");
    let want = "worker 0 CPU 1 is outside this process's CPU set (taskset or cgroup cpuset; \
                allowed: 0)";
    assert!(log.contains(want), "{log}");
    assert!(!runtime_dir_exists(&eal_prefix("cpuset")));
    println!("cpuset: refused: {}", log.lines().last().unwrap_or(""));
}

#[test]
fn a_file_prefix_in_use_names_the_process_holding_it() {
    let s = Scratch::new("start-prefix");
    let mut first = Run::start(&s, "holder", &config(&s, "holder", ""));
    first.wait_log("port up");
    // Same prefix, its own socket.
    let second = config(&s, "holder", "").replace(
        &s.join("holder.sock").display().to_string(),
        &s.join("other.sock").display().to_string(),
    );
    let log = refused(&s, "other", &second);
    let want = format!(
        "EAL file prefix \"{}\" is in use by pid {} (",
        eal_prefix("holder"),
        first.child.id()
    );
    assert!(log.contains(&want), "want {want:?} in:\n{log}");
    assert!(
        log.contains("fulcrum run -c"),
        "the holder's command line:\n{log}"
    );
    assert!(
        runtime_dir_exists(&eal_prefix("holder")),
        "the holder's files went"
    );
    assert!(ctl_status(&s.join("holder.sock")));
    first.stop();
}

#[test]
fn a_device_that_cannot_be_had_is_named_with_the_reason() {
    let s = Scratch::new("start-dev");
    let with = |tag: &str, device: &str| {
        config(&s, tag, "").replace(r#"device = "net_ring0""#, &format!("device = {device:?}"))
    };
    let log = refused(&s, "nopci", &with("nopci", "0000:7f:1f.7"));
    assert!(
        log.contains("PCI device 0000:7f:1f.7 does not exist on this host"),
        "{log}"
    );
    let iface = format!("fl-nosuch{}", std::process::id() % 10000);
    let log = refused(
        &s,
        "noiface",
        &with("noiface", &format!("net_af_packet0,iface={iface}")),
    );
    assert!(
        log.contains(&format!(
            "network interface {iface:?} (iface=) does not exist"
        )),
        "{log}"
    );
    // A driver EAL does not know: EAL's own refusal, and nothing of it left behind.
    let log = refused(&s, "nodriver", &with("nodriver", "net_nosuchdriver0"));
    assert!(
        log.contains("rte_eal_init failed: No such device")
            && log.contains("EAL could not create one of the ports' devices (net_nosuchdriver0)"),
        "{log}"
    );
    assert!(
        !runtime_dir_exists(&eal_prefix("nodriver")),
        "a failed EAL start left its runtime directory"
    );
    // This host's own PCI devices: each is either bound to a kernel driver or to none.
    let mut seen = 0;
    for e in std::fs::read_dir("/sys/bus/pci/devices").unwrap().flatten() {
        let addr = e.file_name().to_string_lossy().into_owned();
        let driver = std::fs::read_link(e.path().join("driver"))
            .ok()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned());
        let want = match &driver {
            Some(d) if d == "vfio-pci" || d.contains("uio") || d.starts_with("mlx") => continue,
            Some(d) => {
                format!("PCI device {addr} is bound to the kernel driver {d}, not to vfio-pci")
            }
            None => format!("PCI device {addr} is not bound to any driver"),
        };
        let tag = format!("pci{seen}");
        let log = refused(&s, &tag, &with(&tag, &addr));
        assert!(log.contains(&want), "want {want:?} in:\n{log}");
        seen += 1;
        if seen == 2 {
            break;
        }
    }
    println!("{seen} of this host's PCI devices refused with their driver named");
}

#[test]
fn counter_files_of_dead_processes_are_removed_at_start() {
    let s = Scratch::new("start-shm");
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let stale = counters_file(dead.id());
    std::fs::write(&stale, [0u8; 64]).unwrap();
    // Ours: a live process's file is never touched.
    let live = counters_file(std::process::id());
    std::fs::write(&live, [0u8; 64]).unwrap();
    let mut r = Run::start(&s, "shm", &config(&s, "shm", ""));
    r.wait_log("port up");
    let log = r.log();
    r.stop();
    let kept = live.exists();
    let _ = std::fs::remove_file(&live);
    assert!(!stale.exists(), "stale {} kept:\n{log}", stale.display());
    assert!(kept, "a live process's counter file was removed");
    // Balancers of the tests running beside this one clean up the same way at their start,
    // so this one's log names the file only if it came first.
    let by_us = log.contains(&format!(
        "removed the counter file of a process that is gone file={}",
        stale.display()
    ));
    println!(
        "{} removed at start (by this balancer: {by_us})",
        stale.display()
    );
}

/// A network namespace made by the test, removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("fl-{tag}-{}", std::process::id());
        must(Command::new("ip").args(["netns", "add", &name]));
        Netns(name)
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// The `key=value` field of the log's "port up" line.
fn port_up_field(log: &str, key: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("port up"))
        .expect("port up");
    let plain: String = line.chars().filter(|c| !c.is_control()).collect();
    let rest = plain
        .split_once(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .1;
    // Display values are written bare and may hold spaces: up to the next ` word=`.
    let end = rest
        .match_indices(' ')
        .find(|(i, _)| {
            rest[i + 1..]
                .split(' ')
                .next()
                .is_some_and(|w| w.contains('='))
        })
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].trim_matches('"').to_owned()
}

#[test]
fn a_configured_port_mac_is_programmed_into_the_device() {
    let s = Scratch::new("start-mac");
    let ns = Netns::new("mac");
    let iface = format!("fltap{}", std::process::id() % 100000);
    let mac = "02:00:5e:10:20:31";
    let cfg = config(&s, "mac", "").replace(
        r#"device = "net_ring0""#,
        &format!("device = \"net_tap0,iface={iface}\"\nmac = \"{mac}\""),
    );
    let mut r = Run::start_in(&s, "mac", &cfg, ns.cmd(env!("CARGO_BIN_EXE_fulcrum")));
    r.wait_log("port up");
    let log = r.log();
    // The kernel's side of the tap device reports what DPDK programmed into it.
    let link =
        String::from_utf8(must(ns.cmd("ip").args(["-o", "link", "show", &iface])).stdout).unwrap();
    r.stop();
    let filter = port_up_field(&log, "mac_filter");
    let device_mac = port_up_field(&log, "device_mac");
    println!(
        "net_tap: mac_filter = {filter}; device reports {device_mac}; kernel: {}",
        link.trim()
    );
    assert_eq!(filter, "set as the device's default address", "{log}");
    assert_eq!(
        device_mac, mac,
        "rte_eth_macaddr_get after programming:\n{log}"
    );
    assert!(
        link.contains(&format!("link/ether {mac}")),
        "kernel sees {link}"
    );

    // Devices that refuse a new default still get the address, by the next way down: here
    // net_ring takes it as a secondary address, net_memif (a server without a peer) neither
    // as default nor as secondary, so promiscuous mode.
    let memif = format!(
        "net_memif0,role=server,socket-abstract=no,socket={}",
        s.join("memif.sock").display()
    );
    for (tag, device, want) in [
        ("macring", "net_ring0", "added as a secondary address"),
        ("macmemif", memif.as_str(), "promiscuous mode"),
    ] {
        let cfg = config(&s, tag, "").replace(
            r#"device = "net_ring0""#,
            &format!("device = \"{device}\"\nmac = \"{mac}\""),
        );
        let mut r = Run::start(&s, tag, &cfg);
        r.wait_log("port up");
        let log = r.log();
        r.stop();
        let filter = port_up_field(&log, "mac_filter");
        println!(
            "{device}: mac_filter = {filter}; device reports {}",
            port_up_field(&log, "device_mac")
        );
        assert!(filter.starts_with(want), "{log}");
        assert_eq!(
            port_up_field(&log, "mac"),
            mac,
            "the MAC on the wire:\n{log}"
        );
    }
}

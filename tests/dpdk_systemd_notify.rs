//! `fulcrum run` under systemd's notify protocol, with the test as the service manager: it
//! listens on the `NOTIFY_SOCKET` datagram socket and asks for a watchdog with
//! `WATCHDOG_USEC`, as systemd does for a `Type=notify` unit with `WatchdogSec=`. (No systemd
//! can run as a service manager on this test machine: PID 1 is not systemd and there is no
//! container runtime; see docs/DEPLOYMENT.md.)
//!
//! - `READY=1` comes once the port is up (its log line is written) and the balancer answers
//!   on its control socket; STATUS lines before it say what it is doing;
//! - `WATCHDOG=1` ticks at half the asked interval, never a gap as long as the interval;
//! - a process frozen with SIGSTOP sends no tick (so systemd's watchdog fires and restarts
//!   it), and ticks again after SIGCONT;
//! - SIGHUP and `fulcrum ctl reload` (the unit's ExecReload) each give `RELOADING=1` then
//!   `READY=1`, also when the reload is refused (with the reason in STATUS);
//! - SIGTERM gives `STOPPING=1` and a clean exit.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use testkit::*;

/// The watchdog interval the test asks for (`WATCHDOG_USEC`): ticks are due every half.
const WATCHDOG: Duration = Duration::from_millis(400);

/// The service manager's end of the protocol.
struct Manager {
    sock: UnixDatagram,
}

impl Manager {
    /// The next datagram's lines, or `None` after `wait`.
    fn recv(&self, wait: Duration) -> Option<Vec<String>> {
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string)
                    .collect(),
            ),
            Err(_) => None,
        }
    }

    /// Datagrams until one has line `what` (bounded): (the ones before it, that one).
    fn until(&self, what: &str, within: Duration) -> (Vec<Vec<String>>, Vec<String>) {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(m) = self.recv(left) else {
                panic!("no {what} within {within:?}; got {before:?}");
            };
            if m.iter().any(|l| l == what) {
                return (before, m);
            }
            before.push(m);
        }
    }

    /// Everything that arrives within `d`, each with when it arrived.
    fn collect(&self, d: Duration) -> Vec<(Instant, Vec<String>)> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        while let Some(m) = self.recv(end.saturating_duration_since(Instant::now())) {
            out.push((Instant::now(), m));
            if Instant::now() >= end {
                break;
            }
        }
        out
    }
}

fn status(m: &[String]) -> &str {
    m.iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or("")
}

/// Times of the WATCHDOG=1 datagrams of `got`.
fn ticks(got: &[(Instant, Vec<String>)]) -> Vec<Instant> {
    got.iter()
        .filter(|(_, m)| m.iter().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn notify_ready_watchdog_reload_and_stop() {
    let s = Scratch::new("notify");
    let ctl_sock = s.join("ctl.sock");
    let config = fixture("idle_ring.toml")
        .set("eal_args", eal_args_toml("notify"))
        .set("socket", ctl_sock.display())
        .set("metrics", "127.0.0.1:0")
        .set("sync", "")
        .render();
    let cfg = s.join("fulcrum.toml");
    std::fs::write(&cfg, &config).unwrap();
    let notify = s.join("notify.sock");
    let manager = Manager {
        sock: UnixDatagram::bind(&notify).expect("notify socket"),
    };
    let log = s.join("fulcrum.log");
    let started = Instant::now();
    let mut child = Killed(
        fulcrum()
            .args(["run", "-c"])
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &notify)
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn fulcrum"),
    );
    let pid = child.0.id();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // READY only after the port is up, with STATUS lines on the way.
    let (before, ready) = manager.until("READY=1", Duration::from_secs(30));
    let ready_at = started.elapsed();
    let log_at_ready = read_log();
    assert!(
        log_at_ready.contains("port up"),
        "READY before the port was up:\n{log_at_ready}"
    );
    let statuses: Vec<&str> = before.iter().map(|m| status(m)).collect();
    println!("READY after {ready_at:?}; statuses before: {statuses:?}; then {ready:?}");
    assert!(
        statuses.iter().any(|s| s.starts_with("starting DPDK")),
        "{statuses:?}"
    );
    assert!(
        status(&ready).starts_with("forwarding: 1 port(s) up"),
        "{ready:?}"
    );
    // Ready means serving: the control socket answers at once.
    let st = must(
        fulcrum()
            .args(["ctl", "-s"])
            .arg(&ctl_sock)
            .args(["--json", "status"]),
    );
    let st = stdout_json(&st);
    assert_eq!(st["ports"].as_array().map(Vec::len), Some(1), "{st}");

    // The watchdog: ticks every WATCHDOG/2, never a gap of WATCHDOG.
    let window = Duration::from_secs(3);
    let got = manager.collect(window);
    let t = ticks(&got);
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let max_gap = gaps.iter().max().copied().unwrap_or(window);
    println!(
        "watchdog: {} ticks in {window:?} (asked every {:?}), largest gap {max_gap:?}",
        t.len(),
        WATCHDOG / 2
    );
    let expected = (window.as_millis() / (WATCHDOG / 2).as_millis()) as usize;
    assert!(
        t.len() + 2 >= expected,
        "{} ticks, expected ~{expected}",
        t.len()
    );
    assert!(
        max_gap < WATCHDOG,
        "a gap of {max_gap:?} would trip systemd"
    );

    // Frozen: no tick at all, for several watchdog intervals.
    signal(pid, "STOP");
    // What was sent before the stop is still queued: drain it.
    std::thread::sleep(Duration::from_millis(100));
    manager.collect(Duration::from_millis(10));
    let frozen = Duration::from_millis(1500);
    let while_stopped = ticks(&manager.collect(frozen));
    println!(
        "SIGSTOP: {} ticks in {frozen:?} (systemd's watchdog fires after {WATCHDOG:?})",
        while_stopped.len()
    );
    assert!(while_stopped.is_empty(), "a stopped process ticked");
    signal(pid, "CONT");
    let cont = Instant::now();
    let (_, _) = manager.until("WATCHDOG=1", WATCHDOG);
    println!("SIGCONT: ticking again after {:?}", cont.elapsed());

    // Reload by SIGHUP: RELOADING=1, then READY=1 with the outcome.
    signal(pid, "HUP");
    let (_, reloading) = manager.until("RELOADING=1", Duration::from_secs(10));
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let (_, ready) = manager.until("READY=1", Duration::from_secs(10));
    assert!(status(&ready).contains("reloaded"), "{ready:?}");
    println!("SIGHUP: {reloading:?} then {ready:?}");

    // Reload by `fulcrum ctl reload` (ExecReload): the same, and ctl waits for the outcome.
    must(fulcrum().args(["ctl", "-s"]).arg(&ctl_sock).arg("reload"));
    manager.until("RELOADING=1", Duration::from_secs(10));
    let (_, ready) = manager.until("READY=1", Duration::from_secs(10));
    assert!(status(&ready).contains("generation"), "{ready:?}");

    // A broken file: ctl reload fails (so `systemctl reload` does), the service is READY
    // again with the reason, and forwards on with the old config.
    std::fs::write(&cfg, config.replace("port = 80", "port = \"eighty\"")).unwrap();
    let out = fulcrum()
        .args(["ctl", "-s"])
        .arg(&ctl_sock)
        .arg("reload")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken reload succeeded");
    manager.until("RELOADING=1", Duration::from_secs(10));
    let (_, ready) = manager.until("READY=1", Duration::from_secs(10));
    assert!(status(&ready).contains("reload refused"), "{ready:?}");
    println!("broken reload: {:?}", status(&ready));

    // Stop: STOPPING=1 and a clean exit.
    signal(pid, "TERM");
    manager.until("STOPPING=1", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not stop:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code}:\n{}", read_log());
}

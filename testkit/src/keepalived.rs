//! A real keepalived (Debian's) in a test namespace, speaking VRRP: started in the foreground
//! (`-n`) with its own config and pid files (`-f`, `-p`, `-r`; `ip netns exec` does not
//! isolate /run, so no two share them), VRRP only (`-P`), logging to its stderr (`-l -G`,
//! no syslog), and killed when dropped (the namespace's teardown kills it too).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{Net, must, signal};

/// One keepalived daemon (its parent process and its VRRP child).
pub struct Keepalived {
    node: String,
    log: PathBuf,
    vrrp_pid: PathBuf,
    child: Option<Child>,
}

impl Keepalived {
    /// Writes `config`, checks it (`keepalived -t`) and starts keepalived with it in `node`'s
    /// namespace, with `env` in its environment (its notify scripts inherit it); waits until
    /// its VRRP process runs.
    pub fn start(net: &Net, node: &str, config: &str, env: &[(&str, String)]) -> Keepalived {
        let conf = net.dir.join(format!("keepalived-{node}.conf"));
        let pid = net.dir.join(format!("keepalived-{node}.pid"));
        let vrrp_pid = net.dir.join(format!("keepalived-{node}-vrrp.pid"));
        let log = net.dir.join(format!("keepalived-{node}.log"));
        std::fs::write(&conf, config).expect("keepalived config");
        must(net.cmd(node, "keepalived").arg("-t").arg("-f").arg(&conf));
        let mut cmd = net.cmd(node, "keepalived");
        cmd.args(["-n", "-l", "-G", "-P", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(&pid)
            .arg("-r")
            .arg(&vrrp_pid)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("keepalived log"))
            .stderr(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("keepalived log"),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn keepalived");
        let k = Keepalived {
            node: node.to_owned(),
            log,
            vrrp_pid,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while k.vrrp_pid().is_none() {
            assert!(
                Instant::now() < deadline,
                "keepalived in {node} did not start:\n{}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        k
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The pid of its VRRP process (the one that runs the notify scripts), once it runs.
    pub fn vrrp_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.vrrp_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The state its log last entered (`MASTER`, `BACKUP`, `FAULT`), if any.
    pub fn state(&self) -> Option<String> {
        self.log().lines().rev().find_map(|l| {
            let rest = l.split("Entering ").nth(1)?;
            rest.split(" STATE").next().map(str::to_owned)
        })
    }

    /// Waits (bounded by `limit`) until its log says it entered `state`; how long it took.
    pub fn wait_state(&self, state: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            if self.state().as_deref() == Some(state) {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < limit,
                "keepalived in {} not {state} within {limit:?}:\n{}",
                self.node,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of both its processes at once, as a crash: no advert with priority 0, no
    /// notify script; the peer takes over when the adverts stop.
    pub fn kill(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // Both stopped first: a parent that saw its child die would respawn it, a child that
        // saw its parent die would resign politely (an advert with priority 0).
        let pids = [Some(c.id()), self.vrrp_pid()];
        for sig in ["STOP", "KILL"] {
            for pid in pids.into_iter().flatten() {
                signal(pid, sig);
            }
        }
        let _ = c.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.kill();
    }
}

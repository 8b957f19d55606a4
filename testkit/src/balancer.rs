//! `fulcrum run` in a test's balancer namespace, as an RAII guard: started and waited for
//! until it serves, driven with `fulcrum ctl`, stopped with SIGTERM for its final report.
//! Dropping it kills the process if it still runs and removes the DPDK runtime files of its
//! config's `--file-prefix`, so a failed test leaves nothing behind.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{EalPrefix, Net, fulcrum, fulcrum_bin, must, signal};

/// The log line after which the slow path runs (and the control socket is bound next).
const READY: &str = "health checks scheduled";

/// Fulcrum running in a [`Net`]'s balancer namespace.
pub struct Balancer {
    child: Option<Child>,
    /// The config file it runs with.
    pub config: PathBuf,
    socket: Option<PathBuf>,
    out: PathBuf,
    err: PathBuf,
    // Dropped after the process is gone.
    _prefix: Option<EalPrefix>,
}

impl Balancer {
    /// Writes `config` and starts `fulcrum run --json -c FILE` with it; waits until it
    /// serves.
    pub fn start(net: &Net, config: &str) -> Balancer {
        let path = Self::config_path(net);
        let argv: Vec<OsString> = vec!["run".into(), "--json".into(), "-c".into(), path.into()];
        Self::start_argv(net, config, &argv)
    }

    /// Where [`Balancer::start`] writes the config in `net`.
    pub fn config_path(net: &Net) -> PathBuf {
        net.dir.join("fulcrum.toml")
    }

    /// Writes `config` to [`Balancer::config_path`] and runs `fulcrum ARGV...` (which names
    /// that file) in the balancer namespace; waits until the slow path runs and the config's
    /// control socket (if it names one) accepts connections.
    pub fn start_argv(net: &Net, config: &str, argv: &[OsString]) -> Balancer {
        Self::spawn(net, "lb", &Self::config_path(net), config, argv)
    }

    /// Writes `config` to `fulcrum-NODE.toml` in `net`'s scratch directory and starts
    /// `fulcrum run --json -c FILE` in `node`'s namespace (one of several instances, each in
    /// its own namespace, logging to `fulcrum-NODE.out/.err`); waits until it serves.
    pub fn start_on(net: &Net, node: &str, config: &str) -> Balancer {
        let path = net.dir.join(format!("fulcrum-{node}.toml"));
        let argv: Vec<OsString> = vec![
            "run".into(),
            "--json".into(),
            "-c".into(),
            path.clone().into(),
        ];
        Self::spawn(net, node, &path, config, &argv)
    }

    fn spawn(net: &Net, node: &str, path: &Path, config: &str, argv: &[OsString]) -> Balancer {
        std::fs::write(path, config).expect("config");
        let table: Option<toml::Table> = config.parse().ok();
        let stem = if node == "lb" {
            "fulcrum".to_owned()
        } else {
            format!("fulcrum-{node}")
        };
        let out = net.dir.join(format!("{stem}.out"));
        let err = net.dir.join(format!("{stem}.err"));
        let child = net
            .cmd(node, fulcrum_bin())
            .args(argv)
            .stdout(Stdio::from(File::create(&out).expect("out")))
            .stderr(Stdio::from(File::create(&err).expect("err")))
            .spawn()
            .expect("spawn fulcrum");
        let mut b = Balancer {
            child: Some(child),
            config: path.to_path_buf(),
            socket: table.as_ref().and_then(control_socket),
            out,
            err,
            _prefix: table
                .as_ref()
                .and_then(file_prefix)
                .map(|p| EalPrefix::adopt(&p)),
        };
        b.wait_ready();
        b
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            let serving = log.contains(READY)
                && self
                    .socket
                    .as_ref()
                    .is_none_or(|s| UnixStream::connect(s).is_ok());
            if serving {
                return;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("fulcrum exited at start ({st}):\n{log}");
            }
            assert!(Instant::now() < deadline, "fulcrum did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The EAL file prefix [`Net::balancer_config`] gives `net`'s balancer.
    pub fn eal_prefix(net: &Net) -> String {
        net.eal_prefix()
    }

    /// The process id (`ip netns exec` execs fulcrum: it is fulcrum's own).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The balancer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (bounded) until `n` backend health transitions to "up" have been logged: checked
    /// backends start down and take new flows once their first check passes.
    pub fn wait_up(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            let up = log
                .lines()
                .filter(|l| l.contains("backend health") && l.contains("to=\"up\""))
                .count();
            if up >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {up} of {n} backends came up:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `config` over its config file and reloads it (`ctl reload`, which answers once
    /// the new config is applied); panics if the reload is refused.
    pub fn reload(&self, config: &str) -> serde_json::Value {
        std::fs::write(&self.config, config).expect("config");
        self.ctl_json(&["reload"])
    }

    /// `kill -9`, as a crash: no final report, no cleanup (dropping it still removes the
    /// DPDK runtime files).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (e.g. "HUP") to the balancer.
    pub fn signal(&self, sig: &str) {
        must(Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]));
    }

    /// The control socket its config names.
    pub fn socket(&self) -> &Path {
        self.socket
            .as_deref()
            .expect("the config names global.control_socket")
    }

    /// `fulcrum ctl -s SOCKET ARGS...`, whatever its outcome.
    pub fn ctl(&self, args: &[&str]) -> Output {
        fulcrum()
            .args(["ctl", "-s"])
            .arg(self.socket())
            .args(args)
            .output()
            .expect("spawn ctl")
    }

    /// `fulcrum ctl --json ARGS...`, which must succeed: the reply.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ctl(&[&["--json"], args].concat());
        assert!(
            out.status.success(),
            "ctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ctl {args:?}: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// SIGTERM; it must exit 0 within 20 s. What it printed on stdout.
    pub fn stop_stdout(mut self) -> String {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fulcrum did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "fulcrum exited {status}:\n{}", self.log());
        std::fs::read_to_string(&self.out).expect("stdout")
    }

    /// SIGTERM, then the final report (JSON).
    pub fn stop(self) -> serde_json::Value {
        let log = self.log();
        let out = self.stop_stdout();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{log}"))
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // `_prefix` drops next: the runtime directory and hugepage files go.
    }
}

/// `global.control_socket` of a config.
fn control_socket(config: &toml::Table) -> Option<PathBuf> {
    let s = config.get("global")?.get("control_socket")?.as_str()?;
    Some(PathBuf::from(s))
}

/// The `--file-prefix` of a config's `dpdk.eal_args` (`--file-prefix P` or
/// `--file-prefix=P`).
fn file_prefix(config: &toml::Table) -> Option<String> {
    let args = config.get("dpdk")?.get("eal_args")?.as_array()?;
    let args: Vec<&str> = args.iter().filter_map(|a| a.as_str()).collect();
    args.iter().enumerate().find_map(|(i, a)| {
        if *a == "--file-prefix" {
            args.get(i + 1).map(|p| p.to_string())
        } else {
            a.strip_prefix("--file-prefix=").map(str::to_owned)
        }
    })
}

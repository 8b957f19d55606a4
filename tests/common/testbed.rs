//! The network-namespace testbed (scripts/testbed.sh) and a Fulcrum running in it, as RAII
//! guards: whatever happens in a test, the namespaces, veths and processes go away.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Scratch, must, repo};

pub struct Testbed {
    pub name: String,
}

impl Testbed {
    /// Brings up a testbed named `tag` + a per-process number (at most 6 characters).
    pub fn up(tag: &str, backends: usize) -> Testbed {
        assert!(tag.len() <= 2);
        let name = format!("{tag}{}", std::process::id() % 10000);
        let tb = Testbed { name };
        // A leftover of a crashed run with the same name would make `up` fail.
        let _ = Command::new(repo().join("scripts/testbed.sh"))
            .args(["down", &tb.name])
            .output();
        must(Command::new(repo().join("scripts/testbed.sh")).args([
            "up",
            &tb.name,
            &backends.to_string(),
        ]));
        tb
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// A command to run in `node`'s namespace.
    pub fn cmd(&self, node: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(node), program]);
        c
    }

    pub fn script(&self, action: &str, backend: &str) {
        must(Command::new(repo().join("scripts/testbed.sh")).args([action, &self.name, backend]));
    }

    /// Runs tests/tools/client.py in the client namespace and returns its JSON.
    pub fn client(&self, args: &[&str]) -> serde_json::Value {
        let out = must(
            self.cmd("c1", "python3")
                .arg(repo().join("tests/tools/client.py"))
                .args(args),
        );
        serde_json::from_slice(&out.stdout).expect("client JSON")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testbed.sh"))
            .args(["down", &self.name])
            .output();
    }
}

/// `fulcrum run` inside the testbed's balancer namespace. Dropping it kills the process if
/// it still runs and removes the DPDK runtime files of the config's `--file-prefix`.
pub struct Balancer {
    child: Option<Child>,
    prefix: Option<String>,
    pub config: PathBuf,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl Balancer {
    /// Starts Fulcrum with `config` (TOML text) and waits until its ports are up.
    pub fn start(tb: &Testbed, scratch: &Scratch, config: &str) -> Balancer {
        let cfg = scratch.join("fulcrum.toml");
        std::fs::write(&cfg, config).expect("config");
        let stdout = scratch.join("fulcrum.out");
        let stderr = scratch.join("fulcrum.err");
        let child = tb
            .cmd("lb", env!("CARGO_BIN_EXE_fulcrum"))
            .args(["run", "--json", "-c"])
            .arg(&cfg)
            .stdout(Stdio::from(std::fs::File::create(&stdout).expect("out")))
            .stderr(Stdio::from(std::fs::File::create(&stderr).expect("err")))
            .spawn()
            .expect("spawn fulcrum");
        let mut b = Balancer {
            child: Some(child),
            prefix: file_prefix(config),
            config: cfg,
            stderr,
            stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&b.stderr).unwrap_or_default();
            if log.contains("port up") {
                break;
            }
            if let Some(st) = b.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("fulcrum exited at start ({st}):\n{log}");
            }
            assert!(Instant::now() < deadline, "fulcrum did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        b
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

    /// The balancer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal (e.g. "HUP") to the balancer.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        must(Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]));
    }

    /// Stops it with SIGTERM and returns its final counters (JSON).
    pub fn stop(mut self) -> serde_json::Value {
        let mut child = self.child.take().expect("running");
        must(Command::new("kill").args(["-TERM", &child.id().to_string()]));
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
        let out = std::fs::read_to_string(&self.stdout).expect("stdout");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{}", self.log()))
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(p) = &self.prefix {
            dataplane::dpdk::runtime_files::remove_prefix_files(p);
        }
    }
}

/// The `--file-prefix` of a config's `eal_args` (the quoted string after it).
pub fn file_prefix(config: &str) -> Option<String> {
    let (_, rest) = config.split_once(r#""--file-prefix""#)?;
    let rest = rest
        .trim_start()
        .strip_prefix(',')?
        .trim_start()
        .strip_prefix('"')?;
    rest.split_once('"').map(|(p, _)| p.to_owned())
}

/// The testbed example config with a file prefix of its own, and health checks that let a
/// starved backend be slow: these tests do not measure detection (tests/e2e_health.rs does,
/// with its own settings), and on a 2-core CI machine running two balancers with busy
/// workers, a Python backend can take more than the example's 300 ms to answer a check. Two
/// such answers in a row would take it out (as they should in production), rescheduling
/// flows that the tests expect to stay put.
pub fn testbed_config(tag: &str) -> String {
    let text = std::fs::read_to_string(repo().join("conf/examples/testbed.toml")).expect("example");
    let patient = "timeout_ms = 450\nrise = 2\nfall = 5";
    let strict = "timeout_ms = 300\nrise = 2\nfall = 2";
    assert!(
        text.contains(strict),
        "conf/examples/testbed.toml's checks changed: update testbed_config"
    );
    text.replace(strict, patient).replace(
        "fulcrum-testbed",
        &format!("fulcrum-e2e-{tag}-{}", std::process::id()),
    )
}

pub fn _unused(_: Output) {}

//! Load from real kernel TCP clients running in the background while a test does something
//! to the balancer (reloads, a flapping backend, crowds on its endpoints): a request loop of a
//! bounded duration and long streams, by tests/tools/client.py in the client namespace. What
//! the clients saw is judged with [`crate::outcome`]. And many long streams at once
//! ([`Streams`]), each of which notices a break.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{Net, repo};

/// What a [`Load`] runs: a request loop of `secs` seconds (`concurrency` workers, a new
/// connection per request) and `streams` long streams of `stream_secs` seconds, to `vip:80`
/// from `sources` in turn.
#[derive(Debug, Clone)]
pub struct LoadSpec<'a> {
    pub vip: &'a str,
    pub sources: &'a [&'a str],
    pub secs: u32,
    pub concurrency: u32,
    pub streams: u32,
    pub stream_secs: u32,
}

/// A running client.py; [`Load::finish`] waits for it (it stops by itself).
pub struct Load {
    child: Option<Child>,
}

impl Load {
    /// Starts `spec` in `net`'s client namespace.
    pub fn start(net: &Net, spec: &LoadSpec) -> Load {
        let mut cmd = net.cmd("c1", "python3");
        cmd.arg(repo().join("tests/tools/client.py")).args([
            "--host",
            spec.vip,
            "--port",
            "80",
            "--duration",
            &spec.secs.to_string(),
            "--count",
            "1000000",
            "--concurrency",
            &spec.concurrency.to_string(),
            "--timeout",
            "5",
            "--streams",
            &spec.streams.to_string(),
            "--stream-secs",
            &spec.stream_secs.to_string(),
        ]);
        for s in spec.sources {
            cmd.args(["--source", s]);
        }
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client.py");
        Load { child: Some(child) }
    }

    /// Waits for the clients to finish: their JSON (tests/tools/client.py).
    pub fn finish(mut self) -> serde_json::Value {
        let out = self
            .child
            .take()
            .expect("running")
            .wait_with_output()
            .expect("client.py");
        assert!(
            out.status.success(),
            "client.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("client JSON")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// tests/tools/streams.py in the client namespace: `count` long streams of `secs` seconds to
/// each target `VIP:PORT:SOURCE`, each of which notices a break (a missing, repeated or
/// foreign line, a reset, a silence).
pub struct Streams {
    child: Child,
    ready: PathBuf,
}

impl Streams {
    /// Starts them; `tag` names this set's ready file in `net`'s scratch directory.
    pub fn start(net: &Net, targets: &[String], count: usize, secs: u32, tag: &str) -> Streams {
        let ready = net.dir.join(format!("streams-{tag}.ready"));
        let _ = std::fs::remove_file(&ready);
        let mut cmd = net.cmd("c1", "python3");
        cmd.arg(repo().join("tests/tools/streams.py"));
        for t in targets {
            cmd.args(["--target", t]);
        }
        let child = cmd
            .args(["--count", &count.to_string(), "--secs", &secs.to_string()])
            .arg("--ready")
            .arg(&ready)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("streams.py");
        Streams { child, ready }
    }

    /// Waits (bounded) until every stream has its first line.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.ready.exists() {
            assert!(Instant::now() < deadline, "streams did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the end: streams.py's JSON (`streams`, `intact`, `broken_count`, `broken`,
    /// `max_gap_ms`, ...).
    pub fn finish(self) -> serde_json::Value {
        let out = self.child.wait_with_output().expect("streams.py");
        assert!(
            out.status.success(),
            "streams.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("streams.py JSON")
    }
}

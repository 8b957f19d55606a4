//! Load from real kernel TCP clients running in the background while a test does something
//! to the balancer (reloads, a flapping backend, crowds on its endpoints): a request loop of a
//! bounded duration and long streams, by tests/tools/client.py in the client namespace. What
//! the clients saw is judged with [`crate::outcome`].

use std::process::{Child, Stdio};

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

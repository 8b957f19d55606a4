//! Path MTU through the balancer, seen from real kernels: a sink that counts and hashes what
//! it receives, a large upload from a client's kernel TCP (full-size segments, DF set), and
//! the path MTU the client's kernel has learnt for a destination. Layout-independent: any
//! [`Net`] node can serve or send (the DSR test uses the health layout; a tunnel test the
//! routed one).

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::net::Net;
use crate::repo;

/// A running sink (tests/tools/upload.py serve), killed on drop.
pub struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one upload saw.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Bytes the client sent.
    pub sent: u64,
    /// Bytes the sink says it received (`None`: no answer).
    pub received: Option<u64>,
    /// Whether the sink's SHA-256 of what it received is the sender's.
    pub intact: bool,
    /// Milliseconds from connect to the sink's answer.
    pub ms: f64,
    /// The connection's MSS at the end of the upload (lowered by path-MTU discovery).
    pub mss: u64,
    /// The client's error, if the upload failed.
    pub error: Option<String>,
}

impl Net {
    /// Starts tests/tools/upload.py's sink on `port` in `node` and waits (bounded) until it
    /// listens; it runs until the returned guard is dropped.
    pub fn sink(&self, node: &str, port: u16) -> Sink {
        let child = self
            .cmd(node, "python3")
            .arg(repo().join("tests/tools/upload.py"))
            .args(["serve", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("upload.py serve");
        let sink = Sink(child);
        self.wait_listening(node, port, "the sink", String::new);
        sink
    }

    /// Uploads `bytes` from `node` to `to` with the kernel's TCP, bounded by `timeout` per
    /// socket operation.
    pub fn upload(&self, node: &str, to: SocketAddr, bytes: u64, timeout: Duration) -> Upload {
        let out = self
            .cmd(node, "python3")
            .arg(repo().join("tests/tools/upload.py"))
            .args(["send", "--host", &to.ip().to_string()])
            .args(["--port", &to.port().to_string()])
            .args(["--bytes", &bytes.to_string()])
            .args(["--timeout", &timeout.as_secs_f64().to_string()])
            .output()
            .expect("upload.py send");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "upload.py: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let answer = v["answer"].as_str().unwrap_or_default();
        let (count, hash) = answer.split_once(' ').unwrap_or(("", ""));
        Upload {
            sent: v["sent"].as_u64().unwrap_or(0),
            received: count.parse().ok(),
            intact: !hash.is_empty() && v["sha256"].as_str() == Some(hash),
            ms: v["ms"].as_f64().unwrap_or(0.0),
            mss: v["mss"].as_u64().unwrap_or(0),
            error: v["error"].as_str().map(str::to_owned),
        }
    }

    /// The path MTU `node`'s kernel has cached for `dst` (`ip route get`'s "mtu N" once an
    /// ICMP "fragmentation needed" / "packet too big" lowered it), if any.
    pub fn route_mtu(&self, node: &str, dst: &str) -> Option<u32> {
        let out = self.exec(node, &["ip", "route", "get", dst]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "mtu" {
                return words.next().and_then(|m| m.parse().ok());
            }
        }
        None
    }
}

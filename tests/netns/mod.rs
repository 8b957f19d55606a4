//! A small network of namespaces for the health-check end-to-end tests, as RAII guards:
//! whatever happens in a test, its namespaces, veths, processes and DPDK runtime files go.
//!
//! ```text
//!            +--------- <name>-sw (bridge br0) ---------+
//!            |               |                          |
//!  <name>-lb: lb0      <name>-c1: eth0         <name>-b1..bN: eth0
//!  (DPDK af_packet,    10.66.0.50/24           10.66.0.1N/24, VIP 10.66.0.100 on lo
//!   no kernel address; Fulcrum owns 10.66.0.2) (arp_ignore: the VIP is answered by Fulcrum)
//! ```
//!
//! DSR: clients reach the VIP on-link (Fulcrum answers its ARP), backends answer directly.
//! Backends run tests/tools/backend.py (HTTP on :80 answering `backend=NAME`, an agent on
//! :5555 answering the text of a file). Backends have no MAC in the config: Fulcrum learns
//! them by ARP. Clients are real kernel TCP: tests/tools/netns_client.py, run in the client's
//! namespace with `ip netns exec` and driven line by line (a socket stays in the namespace it
//! was made in; the tests themselves never change namespace).
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

pub const VIP: &str = "10.66.0.100";
pub const LB_ADDR: &str = "10.66.0.2";

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    sh(Command::new("ip").args(args));
}

/// The namespaces of one test.
pub struct Net {
    /// Prefix of every namespace and veth of this test.
    pub name: String,
    pub backends: usize,
    pub dir: PathBuf,
    servers: Vec<Option<Child>>,
}

impl Net {
    /// Brings up the switch, the balancer's port, a client and `backends` backends, each
    /// with its server running. `tag` tells tests of one process apart (2 letters).
    pub fn up(tag: &str, backends: usize) -> Net {
        let name = format!("h{tag}{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("fulcrum-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        let mut net = Net {
            name,
            backends,
            dir,
            servers: Vec::new(),
        };
        net.teardown(); // leftovers of a crashed run with the same pid
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        net.exec("sw", &["ip", "link", "set", "lo", "up"]);
        net.exec("sw", &["ip", "link", "add", "br0", "type", "bridge"]);
        net.exec("sw", &["ip", "link", "set", "br0", "up"]);
        net.link("lb", "lb0");
        net.exec("lb", &["sysctl", "-qw", "net.ipv6.conf.lb0.disable_ipv6=1"]);
        net.link("c1", "eth0");
        net.exec("c1", &["ip", "addr", "add", "10.66.0.50/24", "dev", "eth0"]);
        for i in 1..=backends {
            let b = format!("b{i}");
            net.link(&b, "eth0");
            let addr = format!("10.66.0.{}/24", 10 + i);
            net.exec(&b, &["ip", "addr", "add", &addr, "dev", "eth0"]);
            net.exec(
                &b,
                &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
            );
            for k in ["all", "eth0"] {
                net.exec(
                    &b,
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv4.conf.{k}.arp_ignore=1"),
                        &format!("net.ipv4.conf.{k}.arp_announce=2"),
                    ],
                );
            }
            net.agent(i, "up");
            net.servers.push(None);
            net.start(i);
        }
        net
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// Runs a command in `node`'s namespace and waits for it.
    pub fn exec(&self, node: &str, args: &[&str]) -> String {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(args))
    }

    fn link(&self, node: &str, ifname: &str) {
        let ns = self.ns(node);
        if node != "sw" && !Path::new("/var/run/netns").join(&ns).exists() {
            ip(&["netns", "add", &ns]);
            self.exec(node, &["ip", "link", "set", "lo", "up"]);
        }
        let (a, b) = (
            format!("v{}{node}", self.name),
            format!("w{}{node}", self.name),
        );
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &a, "netns", &ns]);
        ip(&["link", "set", &b, "netns", &self.ns("sw")]);
        self.exec(node, &["ip", "link", "set", &a, "name", ifname]);
        self.exec(node, &["ip", "link", "set", ifname, "up"]);
        // Kernel TCP through DPDK's af_packet port needs complete checksums on the wire.
        self.exec(node, &["ethtool", "-K", ifname, "tx", "off"]);
        self.exec("sw", &["ip", "link", "set", &b, "master", "br0"]);
        self.exec("sw", &["ip", "link", "set", &b, "up"]);
    }

    /// Backend `i`'s agent will answer `text` from now on.
    pub fn agent(&self, i: usize, text: &str) {
        std::fs::write(self.dir.join(format!("b{i}.agent")), format!("{text}\n")).expect("agent");
    }

    /// Starts backend `i`'s server and waits (bounded) until it accepts connections.
    pub fn start(&mut self, i: usize) {
        let b = format!("b{i}");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/backend.py");
        let log = File::create(self.dir.join(format!("{b}.log"))).expect("log");
        // `ip netns exec` execs the program: the child's pid is the server's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(&b), "python3"])
            .arg(&script)
            .args([
                "--name",
                &b,
                "--port",
                "80",
                "--agent-port",
                "5555",
                "--agent-file",
            ])
            .arg(self.dir.join(format!("{b}.agent")))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("backend.py");
        self.servers[i - 1] = Some(child);
        let mut client = Client::new(&self.ns(&b));
        let addr: SocketAddr = "127.0.0.1:80".parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if client.connect(addr, Duration::from_millis(200)) {
                return;
            }
            assert!(Instant::now() < deadline, "backend {b} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A namespace `bk` holding `count` backend addresses (10.66.10.1 on, in 10.66.0.0/16,
    /// 200 per /24) served by tests/tools/check_target.py on :80 (and TLS on :443 with a
    /// self-signed certificate when `tls`). Returns the addresses.
    pub fn bulk(&mut self, count: usize, tls: bool) -> Vec<String> {
        self.link("bk", "eth0");
        let addrs: Vec<String> = (0..count)
            .map(|i| format!("10.66.{}.{}", 10 + i / 200, 1 + i % 200))
            .collect();
        let batch: String = addrs
            .iter()
            .map(|a| format!("addr add {a}/16 dev eth0\n"))
            .collect();
        let file = self.dir.join("addrs.batch");
        std::fs::write(&file, batch).expect("batch");
        self.exec("bk", &["ip", "-batch", file.to_str().expect("utf-8 path")]);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/check_target.py");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns("bk"), "python3"])
            .arg(&script)
            .args(["--port", "80"]);
        if tls {
            let (cert, key) = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
            sh(Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ])
                .args(["-nodes", "-subj", "/CN=backend", "-days", "1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert));
            cmd.args(["--tls-port", "443", "--cert"])
                .arg(&cert)
                .arg("--key")
                .arg(&key);
        }
        let log = File::create(self.dir.join("bk.log")).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("check_target.py");
        self.servers.push(Some(child));
        let mut client = Client::new(&self.ns("bk"));
        let first: SocketAddr = format!("{}:80", addrs[0]).parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if client.connect(first, Duration::from_millis(200)) {
                return addrs;
            }
            assert!(Instant::now() < deadline, "check_target.py did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops backend `i`'s server: its port refuses from now on.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i - 1].take() {
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) backend `i`'s server: frozen, its kernel still
    /// completes handshakes but nothing answers a request.
    pub fn freeze(&self, i: usize, frozen: bool) {
        if let Some(c) = &self.servers[i - 1] {
            signal(c.id(), if frozen { "STOP" } else { "CONT" });
        }
    }

    fn teardown(&mut self) {
        for c in self.servers.iter_mut().flatten() {
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
        let list = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for ns in list
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.name)))
        {
            let pids = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-CONT", pid]).output();
                let _ = Command::new("kill").args(["-KILL", pid]).output();
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
        if std::env::var_os("FULCRUM_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .output();
}

/// How one client request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Backend(String),
    Refused,
    Timeout,
    Other(String),
}

impl Answer {
    fn parse(line: &str) -> Answer {
        match line.split_once(' ').unwrap_or((line, "")) {
            ("backend", name) => Answer::Backend(name.to_owned()),
            ("refused", _) => Answer::Refused,
            ("timeout", _) => Answer::Timeout,
            (_, _) => Answer::Other(line.to_owned()),
        }
    }
}

/// Kernel TCP from inside a namespace: tests/tools/netns_client.py under `ip netns exec`,
/// one command line in, one answer line out. Killed on drop.
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    /// Starts a client in namespace `ns`.
    pub fn new(ns: &str) -> Client {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/netns_client.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3"])
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("netns_client.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut client = Client {
            child,
            stdin,
            stdout,
        };
        // Started and in the namespace: requests timed from now on time only themselves.
        assert_eq!(client.read_answer(), "ready", "netns_client.py in {ns}");
        client
    }

    fn read_answer(&mut self) -> String {
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .expect("read from netns_client.py");
        answer.trim_end().to_owned()
    }

    fn call(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write to netns_client.py");
        let answer = self.read_answer();
        assert!(!answer.is_empty(), "netns_client.py exited on {line:?}");
        answer
    }

    fn target(addr: SocketAddr, timeout: Duration) -> String {
        format!("{} {} {}", addr.ip(), addr.port(), timeout.as_millis())
    }

    /// Whether a TCP connection to `addr` opens within `timeout`.
    pub fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> bool {
        self.call(&format!("connect {}", Self::target(addr, timeout))) == "ok"
    }

    /// One request on a new connection: which backend answered, or how it failed.
    pub fn request(&mut self, addr: SocketAddr, timeout: Duration) -> Answer {
        Answer::parse(&self.call(&format!("request {}", Self::target(addr, timeout))))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kept-alive HTTP/1.1 connection: several requests, one flow (its own client process,
/// which holds the socket).
pub struct KeepAlive {
    client: Client,
}

impl KeepAlive {
    pub fn open(ns: &str, addr: SocketAddr) -> KeepAlive {
        let mut client = Client::new(ns);
        let answer = client.call(&format!(
            "open {}",
            Client::target(addr, Duration::from_secs(2))
        ));
        assert_eq!(answer, "ok", "keep-alive connect to {addr}");
        KeepAlive { client }
    }

    /// One request on this connection; the backend that answered.
    pub fn get(&mut self) -> Answer {
        Answer::parse(&self.client.call("get"))
    }
}

/// Fulcrum running in the balancer's namespace.
pub struct Balancer {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    prefix: String,
}

impl Balancer {
    /// Writes `config` and starts `fulcrum run` with it; waits until the slow path runs.
    pub fn start(net: &Net, config: &str) -> Balancer {
        let cfg = net.dir.join("fulcrum.toml");
        std::fs::write(&cfg, config).expect("config");
        let out = net.dir.join("fulcrum.out");
        let err = net.dir.join("fulcrum.err");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.ns("lb"),
                env!("CARGO_BIN_EXE_fulcrum"),
            ])
            .args(["run", "--json", "-c"])
            .arg(&cfg)
            .stdout(Stdio::from(File::create(&out).expect("out")))
            .stderr(Stdio::from(File::create(&err).expect("err")))
            .spawn()
            .expect("fulcrum");
        let b = Balancer {
            child: Some(child),
            out,
            err,
            prefix: net.name.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !b.log().contains("health checks scheduled") {
            assert!(
                Instant::now() < deadline,
                "fulcrum did not start:\n{}",
                b.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// The file prefix of EAL for this test's balancer.
    pub fn eal_prefix(net: &Net) -> String {
        format!("fulcrum-{}", net.name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// SIGTERM, then the final report (JSON).
    pub fn stop(mut self) -> serde_json::Value {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fulcrum did not stop:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "fulcrum exited {status}:\n{}", self.log());
        let text = std::fs::read_to_string(&self.out).expect("stdout");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}\n{}", self.log()))
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Runtime directory and hugepage files, also when fulcrum was killed.
        dataplane::dpdk::runtime_files::remove_prefix_files(&format!("fulcrum-{}", self.prefix));
    }
}

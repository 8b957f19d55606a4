//! Network namespaces of one test, as an RAII guard: whatever happens in the test, its
//! namespaces, veths, processes and scratch files go. Two layouts:
//!
//! The health layout ([`Net::up`]), built here:
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
//! Backends run tests/tools/backend.py (HTTP on :80 answering `backend=NAME` with the peer it
//! saw in `X-Peer`, UDP on :80 answering each datagram, an agent on :5555 answering the text
//! of a file), one server per backend that [`Net::stop`],
//! [`Net::start`] and [`Net::freeze`] control. Backends have no MAC in the config: Fulcrum
//! learns them by ARP.
//!
//! The routed layout ([`Net::routed`]), built here: no L2 shared between the balancer, its
//! clients and its backends; a router namespace (Linux forwarding) between them.
//!
//! ```text
//!  <name>-c1: eth0 10.68.0.50/24 --- eth2 10.68.0.1/24                 (client subnet)
//!             default via .1            |
//!                                  <name>-rt (ip_forward=1; VIP 10.66.0.100 via 10.66.0.2)
//!  <name>-lb: lb0 (DPDK, Fulcrum --- eth0 10.66.0.1/24                 (balancer subnet)
//!             10.66.0.2, routes via .1) |
//!                                       eth1 10.67.0.1/24 -- <name>-sw (bridge br0)
//!                                                             |
//!                         <name>-b1..bN: eth0 10.67.0.1N/24, default via 10.67.0.1,
//!                                        VIP on lo (arp_ignore), the health layout's server
//! ```
//!
//! Backends answer clients straight through the router (DSR, tunnels); [`Net::nat_return`]
//! makes the router send their replies to clients back through the balancer instead (NAT).
//! [`Net::routed_plain`] leaves the VIP off the backends (FullNAT: they answer the
//! balancer's own address, through the router, and need nothing else).
//!
//! The testbed layout ([`Net::testbed`]) is `scripts/testbed.sh`'s (the demo's): DSR and NAT
//! clients in 10.77.0.0/24 and 10.78.0.0/24, backends 10.77.0.1N serving :80 and :8080, for
//! `conf/examples/testbed.toml`; [`Net::script`] runs its backend actions.
//!
//! Clients are real kernel TCP: tests/tools/netns_client.py ([`Client`]) or
//! tests/tools/client.py ([`Net::client`]), run in the client's namespace with `ip netns
//! exec` (a socket stays in the namespace it was made in; the tests never change namespace).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Scratch, fixture, must, repo, signal};

/// The DSR VIP of the health layout.
pub const VIP: &str = "10.66.0.100";
/// The balancer's address in the health layout.
pub const LB_ADDR: &str = "10.66.0.2";

/// The routed layout's addresses ([`Net::routed`]).
pub mod routed {
    /// The router on the balancer's subnet: the balancer's gateway.
    pub const GATEWAY: &str = "10.66.0.1";
    /// The backends' subnet, behind the router.
    pub const BACKENDS: &str = "10.67.0.0/24";
    /// The router on the backends' subnet: their gateway.
    pub const BACKEND_GATEWAY: &str = "10.67.0.1";
    /// The clients' subnet, behind the router.
    pub const CLIENTS: &str = "10.68.0.0/24";
    /// The client c1.
    pub const CLIENT: &str = "10.68.0.50";

    /// Backend `i`'s address (1-based).
    pub fn backend(i: usize) -> String {
        format!("10.67.0.{}", 10 + i)
    }
}

fn sh(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&must(cmd).stdout).into_owned()
}

fn ip(args: &[&str]) {
    sh(Command::new("ip").args(args));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Health,
    Testbed,
    Routed,
    /// scripts/ecmp-testbed.sh's, built by [`crate::Ecmp`].
    Ecmp,
}

/// The namespaces of one test.
pub struct Net {
    /// Prefix of every namespace and veth of this test (at most 6 characters).
    pub name: String,
    pub backends: usize,
    /// Scratch directory: configs, logs, agent files.
    pub dir: PathBuf,
    layout: Layout,
    pub(crate) servers: Vec<Option<Child>>,
    /// Routed layout: each backend's tunnel endpoint.
    pub(crate) decaps: Vec<Option<crate::Decap>>,
    // Dropped after `Drop::drop` has stopped every process.
    _scratch: Scratch,
}

impl Net {
    pub(crate) fn new(tag: &str, backends: usize, layout: Layout) -> Net {
        assert!(tag.len() <= 2, "tag {tag:?}: at most 2 characters");
        let name = format!("{tag}{}", std::process::id() % 10000);
        let scratch = Scratch::new(&format!("net-{name}"));
        let mut net = Net {
            name,
            backends,
            dir: scratch.path.clone(),
            layout,
            servers: Vec::new(),
            decaps: Vec::new(),
            _scratch: scratch,
        };
        net.teardown(); // leftovers of a crashed run with the same name
        net
    }

    /// The health layout: the switch, the balancer's port, a client and `backends`
    /// backends, each with its server running. `tag` tells the tests of one process apart
    /// (at most 2 characters).
    pub fn up(tag: &str, backends: usize) -> Net {
        let mut net = Net::new(tag, backends, Layout::Health);
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
            net.vip_on_lo(&b);
            net.agent(i, "up");
            net.servers.push(None);
            net.start(i);
        }
        net
    }

    /// The routed layout (see the module doc): a client, the balancer's port and `backends`
    /// backends each on its own subnet, a router between them; each backend's server running
    /// (the health layout's, on :80 and the agent on :5555). `tag`: as for [`Net::up`].
    pub fn routed(tag: &str, backends: usize) -> Net {
        Net::routed_layout(tag, backends, true)
    }

    /// The routed layout with backends left as they come (FullNAT's): no VIP on their
    /// loopback, their default route the router's, nothing that leads back through the
    /// balancer. Their servers are the same.
    pub fn routed_plain(tag: &str, backends: usize) -> Net {
        Net::routed_layout(tag, backends, false)
    }

    fn routed_layout(tag: &str, backends: usize, vip_on_lo: bool) -> Net {
        use routed::*;
        let mut net = Net::new(tag, backends, Layout::Routed);
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        net.exec("sw", &["ip", "link", "set", "lo", "up"]);
        net.exec("sw", &["ip", "link", "add", "br0", "type", "bridge"]);
        net.exec("sw", &["ip", "link", "set", "br0", "up"]);
        net.pair(("rt", "eth0"), ("lb", "lb0"));
        net.exec("lb", &["sysctl", "-qw", "net.ipv6.conf.lb0.disable_ipv6=1"]);
        net.pair(("rt", "eth2"), ("c1", "eth0"));
        net.link("rt", "eth1");
        for (ifname, addr) in [
            ("eth0", GATEWAY),
            ("eth1", BACKEND_GATEWAY),
            ("eth2", "10.68.0.1"),
        ] {
            net.exec(
                "rt",
                &["ip", "addr", "add", &format!("{addr}/24"), "dev", ifname],
            );
        }
        net.exec("rt", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        net.exec(
            "rt",
            &["ip", "route", "add", &format!("{VIP}/32"), "via", LB_ADDR],
        );
        net.exec(
            "c1",
            &["ip", "addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"],
        );
        net.exec("c1", &["ip", "route", "add", "default", "via", "10.68.0.1"]);
        for i in 1..=backends {
            let b = format!("b{i}");
            net.link(&b, "eth0");
            let addr = format!("{}/24", backend(i));
            net.exec(&b, &["ip", "addr", "add", &addr, "dev", "eth0"]);
            net.exec(
                &b,
                &["ip", "route", "add", "default", "via", BACKEND_GATEWAY],
            );
            if vip_on_lo {
                net.vip_on_lo(&b);
            }
            net.agent(i, "up");
            net.servers.push(None);
            net.start(i);
        }
        net
    }

    /// Health layout: a second balancer `lb2` on the switch, its port lb0 (DPDK af_packet, no
    /// kernel address), for tests of several instances. With VIPs that no instance answers
    /// ARP for (`announce = "none"`), [`Net::vip_at`] says which instance the client's VIP
    /// traffic reaches: moving it moves every flow at once, as an ECMP change does.
    pub fn second_balancer(&self) {
        assert_eq!(self.layout, Layout::Health, "the health layout's switch");
        self.link("lb2", "lb0");
        self.exec(
            "lb2",
            &["sysctl", "-qw", "net.ipv6.conf.lb0.disable_ipv6=1"],
        );
    }

    /// Health layout: the client sends what it sends to the VIP to `mac` from now on (a
    /// permanent neighbour entry, replaced at once).
    pub fn vip_at(&self, mac: &str) {
        self.exec(
            "c1",
            &[
                "ip",
                "neigh",
                "replace",
                VIP,
                "lladdr",
                mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        );
    }

    /// Routed layout: the router sends what backends send to the clients' subnet through the
    /// balancer (a policy route), as NAT needs; without it they answer clients directly.
    pub fn nat_return(&self) {
        use routed::*;
        self.exec(
            "rt",
            &[
                "ip", "route", "add", CLIENTS, "via", LB_ADDR, "table", "100",
            ],
        );
        self.exec(
            "rt",
            &[
                "ip", "rule", "add", "from", BACKENDS, "to", CLIENTS, "lookup", "100",
            ],
        );
    }

    /// The testbed layout of `scripts/testbed.sh` with `backends` backends.
    pub fn testbed(tag: &str, backends: usize) -> Net {
        // `new` takes down a leftover of a crashed run with the same name (`up` would fail).
        let net = Net::new(tag, backends, Layout::Testbed);
        must(Command::new(repo().join("scripts/testbed.sh")).args([
            "up",
            &net.name,
            &backends.to_string(),
        ]));
        net
    }

    fn testbed_sh(&self, args: &[&str]) {
        let _ = Command::new(repo().join("scripts/testbed.sh"))
            .arg(args[0])
            .arg(&self.name)
            .args(&args[1..])
            .output();
    }

    /// The namespace of `node` ("lb", "c1", "b1", ...).
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// A command to run in `node`'s namespace.
    pub fn cmd(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(node)]).arg(program);
        c
    }

    /// Runs a command in `node`'s namespace and waits for it; its stdout.
    pub fn exec(&self, node: &str, args: &[&str]) -> String {
        sh(self.cmd(node, args[0]).args(&args[1..]))
    }

    /// The MAC address of `node`'s interface `ifname`.
    pub fn mac(&self, node: &str, ifname: &str) -> String {
        let path = format!("/sys/class/net/{ifname}/address");
        self.exec(node, &["cat", &path]).trim().to_owned()
    }

    /// The EAL file prefix of this test's balancer.
    pub fn eal_prefix(&self) -> String {
        format!("fulcrum-{}", self.name)
    }

    /// The `[dpdk]`, `[global]` and `[[port]]` tables of a balancer in the health layout
    /// (`tests/configs/netns_lb.toml`): its EAL prefix, a control socket in the scratch
    /// directory, and the port `lan` on lb0 with `addresses`. Services follow.
    pub fn balancer_config(&self, addresses: &[&str]) -> String {
        let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        fixture("netns_lb.toml")
            .set("eal_args", crate::eal::eal_args_line(&self.eal_prefix()))
            .set("dir", self.dir.display())
            .set("addresses", crate::eal::toml_array(&addresses))
            .render()
    }

    /// Routed layout: the balancer's `[dpdk]`, `[global]` and `[[port]]` (as
    /// [`Net::balancer_config`], with 10.66.0.2/24 and routes to the backends' and clients'
    /// subnets through the router). Services follow.
    pub fn routed_balancer_config(&self) -> String {
        use routed::*;
        let base = self.balancer_config(&[&format!("{LB_ADDR}/24")]);
        format!(
            "{}\nroutes = [{{ prefix = \"{BACKENDS}\", via = \"{GATEWAY}\" }}, \
             {{ prefix = \"{CLIENTS}\", via = \"{GATEWAY}\" }}]\n",
            base.trim_end()
        )
    }

    /// The testbed layout's example config (conf/examples/testbed.toml) with this test's
    /// EAL prefix and control socket, and health checks that let a starved backend be slow:
    /// these tests do not measure detection (the health layout's do, with their own
    /// settings), and on a 2-core CI machine running two balancers with busy workers, a
    /// Python backend can take more than the example's 300 ms to answer a check. Two such
    /// answers in a row would take it out (as they should in production), rescheduling flows
    /// that the tests expect to stay put.
    pub fn testbed_config(&self) -> String {
        let text =
            std::fs::read_to_string(repo().join("conf/examples/testbed.toml")).expect("example");
        let patient = "timeout_ms = 450\nrise = 2\nfall = 5";
        let strict = "timeout_ms = 300\nrise = 2\nfall = 2";
        assert!(
            text.contains(strict),
            "conf/examples/testbed.toml's checks changed: update testbed_config"
        );
        text.replace(strict, patient)
            .replace("fulcrum-testbed", &self.eal_prefix())
    }

    /// [`Net::testbed_config`] with IPv6: the port also owns fd77::2/64 (the backends'
    /// subnet) and fd78::1/64 (the NAT clients' gateway), and the IPv6 twins of the example's
    /// services follow (tests/configs/testbed_v6.toml: DSR VIP fd77::100, NAT VIP fd79::200,
    /// an empty pool on fd77::99).
    pub fn testbed_config_v6(&self) -> String {
        let v4 = r#"addresses = ["10.77.0.2/24", "10.78.0.1/24"]"#;
        let both = r#"addresses = ["10.77.0.2/24", "10.78.0.1/24", "fd77::2/64", "fd78::1/64"]"#;
        let text = self.testbed_config();
        assert!(
            text.contains(v4),
            "conf/examples/testbed.toml's port addresses changed: update testbed_config_v6"
        );
        format!(
            "{}\n{}",
            text.replace(v4, both),
            fixture("testbed_v6.toml").render()
        )
    }

    /// Testbed layout: runs `scripts/testbed.sh ACTION NAME BACKEND` (stop-backend,
    /// start-backend, freeze-backend, thaw-backend).
    pub fn script(&self, action: &str, backend: &str) {
        must(Command::new(repo().join("scripts/testbed.sh")).args([action, &self.name, backend]));
    }

    /// Runs tests/tools/client.py in the client namespace and returns its JSON.
    pub fn client(&self, args: &[&str]) -> serde_json::Value {
        self.client_tool("client.py", args)
    }

    /// Runs tests/tools/udp_client.py (UDP request/response) in the client namespace and
    /// returns its JSON.
    pub fn udp_client(&self, args: &[&str]) -> serde_json::Value {
        self.client_tool("udp_client.py", args)
    }

    fn client_tool(&self, tool: &str, args: &[&str]) -> serde_json::Value {
        let out = must(
            self.cmd("c1", "python3")
                .arg(repo().join("tests/tools").join(tool))
                .args(args),
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{tool} JSON: {e}: {}", String::from_utf8_lossy(&out.stdout))
        })
    }

    /// The VIP on `node`'s loopback, not answered for by ARP on eth0 (Fulcrum answers it).
    fn vip_on_lo(&self, node: &str) {
        self.exec(
            node,
            &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
        );
        for k in ["all", "eth0"] {
            self.exec(
                node,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{k}.arp_ignore=1"),
                    &format!("net.ipv4.conf.{k}.arp_announce=2"),
                ],
            );
        }
    }

    /// Makes `node`'s namespace (with its loopback up) if it does not exist yet.
    fn node(&self, node: &str) {
        let ns = self.ns(node);
        if !Path::new("/var/run/netns").join(&ns).exists() {
            ip(&["netns", "add", &ns]);
            self.exec(node, &["ip", "link", "set", "lo", "up"]);
        }
    }

    /// A veth pair straight between two nodes (no switch): `(node, interface name)` each,
    /// up, with TX checksum offload off at both ends (see [`Net::link`]).
    pub fn pair(&self, a: (&str, &str), b: (&str, &str)) {
        let (va, vb) = (
            format!("v{}{}{}", self.name, a.0, b.0),
            format!("w{}{}{}", self.name, a.0, b.0),
        );
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        for ((node, ifname), veth) in [(a, &va), (b, &vb)] {
            self.node(node);
            ip(&["link", "set", veth, "netns", &self.ns(node)]);
            self.exec(node, &["ip", "link", "set", veth, "name", ifname]);
            self.exec(node, &["ip", "link", "set", ifname, "up"]);
            self.exec(node, &["ethtool", "-K", ifname, "tx", "off"]);
        }
    }

    fn link(&self, node: &str, ifname: &str) {
        let ns = self.ns(node);
        if node != "sw" {
            self.node(node);
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

    /// Health layout: a further balancer port on the switch, as the `lb` node's: `node`'s
    /// interface `lb0`, no kernel address (DPDK's af_packet reads it), IPv6 off. For a
    /// second instance ([`crate::Balancer::start_on`]).
    pub fn balancer_port(&self, node: &str) {
        assert_eq!(
            self.layout,
            Layout::Health,
            "balancers join the health layout's switch"
        );
        self.link(node, "lb0");
        self.exec(node, &["sysctl", "-qw", "net.ipv6.conf.lb0.disable_ipv6=1"]);
    }

    /// Health layout: a further host `node` on the switch, its interface `eth0` with
    /// `address` (CIDR), e.g. a router peering with the balancer.
    pub fn host(&self, node: &str, address: &str) {
        assert_eq!(
            self.layout,
            Layout::Health,
            "hosts join the health layout's switch"
        );
        self.link(node, "eth0");
        self.exec(node, &["ip", "addr", "add", address, "dev", "eth0"]);
    }

    /// Health layout: backend `i`'s agent will answer `text` from now on.
    pub fn agent(&self, i: usize, text: &str) {
        std::fs::write(self.dir.join(format!("b{i}.agent")), format!("{text}\n")).expect("agent");
    }

    /// Waits (bounded: 10 s) until something in `node` accepts connections on
    /// 127.0.0.1:`port`; `what` names it, and `why` says what went wrong when it never does.
    pub fn wait_listening(&self, node: &str, port: u16, what: &str, why: impl Fn() -> String) {
        let mut client = Client::new(&self.ns(node));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client.connect(addr, Duration::from_millis(200)) {
            assert!(
                Instant::now() < deadline,
                "{what} in {node} did not start{}",
                why()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Health layout: starts backend `i`'s server and waits (bounded) until it accepts
    /// connections.
    pub fn start(&mut self, i: usize) {
        let b = format!("b{i}");
        let log = File::create(self.dir.join(format!("{b}.log"))).expect("log");
        // `ip netns exec` execs the program: the child's pid is the server's.
        let child = self
            .cmd(&b, "python3")
            .arg(repo().join("tests/tools/backend.py"))
            .args([
                "--name",
                &b,
                "--port",
                "80",
                "--udp-port",
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
        self.wait_listening(&b, 80, "the backend", String::new);
    }

    /// Health layout: a namespace `bk` holding `count` backend addresses (10.66.10.1 on, in
    /// 10.66.0.0/16, 200 per /24) served by tests/tools/check_target.py on :80 (and TLS on
    /// :443 with a self-signed certificate when `tls`). Returns the addresses.
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
        let mut cmd = self.cmd("bk", "python3");
        cmd.arg(repo().join("tests/tools/check_target.py"))
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

    /// Health layout: stops backend `i`'s server; its port refuses from now on.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i - 1].take() {
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Health layout: freezes (SIGSTOP) or thaws (SIGCONT) backend `i`'s server: frozen, its
    /// kernel still completes handshakes but nothing answers a request.
    pub fn freeze(&self, i: usize, frozen: bool) {
        if let Some(c) = &self.servers[i - 1] {
            signal(c.id(), if frozen { "STOP" } else { "CONT" });
        }
    }

    /// Every process in this test's namespaces killed, every namespace removed.
    fn teardown(&mut self) {
        self.decaps.clear();
        for c in self.servers.iter_mut().flatten() {
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.layout == Layout::Testbed {
            // Also its state directory and any half-made veth in the root namespace.
            self.testbed_sh(&["down"]);
            return;
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
            for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                signal(pid, "CONT");
                signal(pid, "KILL");
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
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
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3"])
            .arg(repo().join("tests/tools/netns_client.py"))
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

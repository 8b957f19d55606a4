//! Running health checks over the stack: one smoltcp TCP socket per check in flight, from
//! the balancer's own address on the port that reaches the backend, with a source port taken
//! in rotation from `[global.health] source_ports`.
//!
//! A check ends when [`probe::judge`] has a verdict, when the connection is refused or
//! closed, or at its timeout; then the socket is aborted (a RST, so the backend keeps no
//! connection in TIME_WAIT or in its accept queue) and removed once the RST is out.
//! Source ports rotate over the whole range rather than being reused at once: the backend
//! may still remember the previous connection from a port and ignore a new SYN from it.
//!
//! A check through the tunnel ([`super::TunnelLeg`]) is a second socket started with the
//! check to the backend's own address, to the VIP from the balancer's own address; the
//! runner remembers its source port until the socket is gone, so that the slow path wraps
//! each packet of it in the backend's tunnel ([`Runner::through_tunnel`]). The round's
//! verdict waits for both legs: the first failure decides at once (the other leg is aborted),
//! otherwise the direct leg's outcome (an agent's words) is the round's.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use dataplane::tunnel::Tunnel;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use super::probe::{self, MAX_REPLY};
use super::{Failure, Outcome, SplitMix, Target};
use crate::stack::{Stack, ip_address};
use dataplane::wire::IPPROTO_TCP;

/// Socket buffer sizes: a request (an HTTP request line, a ClientHello, an agent's `send`)
/// and the start of a reply are all a check ever holds.
const TX_BUFFER: usize = 2048;
const RX_BUFFER: usize = 2048;

#[derive(Debug)]
struct Running {
    target: usize,
    /// The leg through the tunnel (to the VIP), not the one to the backend's address.
    tunnelled: bool,
    /// The other leg of the round passed already: its outcome (the direct leg's is the
    /// round's).
    passed: Option<Outcome>,
    port: u8,
    handle: SocketHandle,
    local_port: u16,
    started: Duration,
    deadline: Duration,
    kind: conf::CheckKind,
    request: Vec<u8>,
    sent: usize,
    reply: Vec<u8>,
}

/// A finished check.
#[derive(Debug, Clone)]
pub struct Finished {
    pub target: usize,
    pub outcome: Outcome,
    pub started: Duration,
    /// From the start to the verdict.
    pub took: Duration,
    /// The failure (if the outcome is one) was the check's through the tunnel.
    pub through_tunnel: bool,
}

/// Counters of the runner.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunnerStats {
    pub started: u64,
    pub finished: u64,
    /// Checks that could not start (every source port busy, no address to send from).
    pub not_started: u64,
    /// The most checks in flight at once.
    pub max_in_flight: u64,
}

/// The checks in flight.
pub struct Runner {
    ports: RangeInclusive<u16>,
    next_port: u16,
    in_use: HashSet<u16>,
    running: Vec<Running>,
    /// Aborted sockets whose RST may not be out yet: (port, handle, local port).
    closing: Vec<(u8, SocketHandle, u16)>,
    /// Source ports of the checks through a tunnel, while their socket exists: the VIP and
    /// the tunnel their packets go in.
    tunnels: HashMap<u16, (IpAddr, Tunnel)>,
    rng: SplitMix,
    /// The earliest deadline of a running check.
    next_deadline: Option<Duration>,
    pub stats: RunnerStats,
}

impl Runner {
    pub fn new(ports: RangeInclusive<u16>, seed: u64) -> Runner {
        let mut rng = SplitMix(seed ^ 0x0070_726f_6265);
        // Start somewhere in the range, so a restarted balancer does not reuse the ports
        // its previous run just used.
        let span = u64::from(*ports.end() - *ports.start()) + 1;
        let next_port = *ports.start() + rng.below(span) as u16;
        Runner {
            ports,
            next_port,
            in_use: HashSet::new(),
            running: Vec::new(),
            closing: Vec::new(),
            tunnels: HashMap::new(),
            rng,
            next_deadline: None,
            stats: RunnerStats::default(),
        }
    }

    /// Checks in flight.
    pub fn in_flight(&self) -> usize {
        self.running.len()
    }

    /// Renumbers the targets of checks in flight after a reload (`map[old] = new`); a check
    /// whose target is gone reports to `usize::MAX`, which the slow path ignores.
    pub fn retarget(&mut self, map: &[Option<usize>]) {
        for r in &mut self.running {
            r.target = map.get(r.target).copied().flatten().unwrap_or(usize::MAX);
        }
    }

    /// The earliest deadline of a check in flight.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.next_deadline
    }

    fn take_port(&mut self) -> Option<u16> {
        let (first, last) = (*self.ports.start(), *self.ports.end());
        for _ in first..=last {
            let p = self.next_port;
            self.next_port = if p >= last { first } else { p + 1 };
            if self.in_use.insert(p) {
                return Some(p);
            }
        }
        None
    }

    /// Starts target `i`'s check (both legs, when it has one through the tunnel); `Err` is
    /// the outcome of a check that could not start.
    pub fn start(
        &mut self,
        stack: &mut Stack,
        i: usize,
        t: &Target,
        now: Duration,
    ) -> Result<(), Outcome> {
        let Some(check) = &t.check else {
            return Err(Outcome::Failure(Failure::NoResources));
        };
        let direct = self.open(stack, t.port_index, (t.source, t.addr), check, now)?;
        let mut legs = vec![direct];
        if let Some(leg) = &t.through_tunnel {
            match self.open(stack, t.port_index, (leg.source, leg.vip), check, now) {
                Ok(mut r) => {
                    r.tunnelled = true;
                    self.tunnels.insert(r.local_port, (leg.vip, leg.tunnel));
                    legs.push(r);
                }
                Err(o) => {
                    let r = legs.pop().expect("the direct leg");
                    stack.ports[usize::from(r.port)]
                        .sockets
                        .get_mut::<tcp::Socket>(r.handle)
                        .abort();
                    self.closing.push((r.port, r.handle, r.local_port));
                    return Err(o);
                }
            }
        }
        for mut r in legs {
            r.target = i;
            self.next_deadline = Some(self.next_deadline.map_or(r.deadline, |d| d.min(r.deadline)));
            self.running.push(r);
        }
        self.stats.started += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.running.len() as u64);
        Ok(())
    }

    /// A socket of `check` connecting `(local, remote)` addresses on port `port`'s interface.
    fn open(
        &mut self,
        stack: &mut Stack,
        port: u8,
        (local, remote): (IpAddr, IpAddr),
        check: &conf::HealthCheck,
        now: Duration,
    ) -> Result<Running, Outcome> {
        let Some(ps) = stack.ports.get_mut(usize::from(port)) else {
            return Err(Outcome::Failure(Failure::NoResources));
        };
        if !ps.addrs.contains(&local) {
            self.stats.not_started += 1;
            return Err(Outcome::Failure(Failure::NoResources));
        }
        let Some(local_port) = self.take_port() else {
            self.stats.not_started += 1;
            return Err(Outcome::Failure(Failure::NoResources));
        };
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; TX_BUFFER]),
        );
        sock.set_nagle_enabled(false);
        let to = (ip_address(remote), check.port);
        let from = (ip_address(local), local_port);
        if sock.connect(ps.iface.context(), to, from).is_err() {
            self.in_use.remove(&local_port);
            self.stats.not_started += 1;
            return Err(Outcome::Failure(Failure::NoResources));
        }
        let handle = ps.sockets.add(sock);
        let mut random = [0u8; 32];
        for chunk in random.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        Ok(Running {
            target: usize::MAX,
            tunnelled: false,
            passed: None,
            port,
            handle,
            local_port,
            started: now,
            deadline: now + Duration::from_millis(u64::from(check.timeout_ms)),
            kind: check.kind.clone(),
            request: probe::request(&check.kind, remote, random),
            sent: 0,
            reply: Vec::new(),
        })
    }
    /// Moves every check along: sends requests, reads replies, judges, times out. Call after
    /// the stack was polled; `full` when some socket may have changed state (otherwise only
    /// deadlines are looked at).
    pub fn progress(
        &mut self,
        stack: &mut Stack,
        now: Duration,
        full: bool,
        done: &mut Vec<Finished>,
    ) {
        if !full && self.next_deadline.is_none_or(|d| now < d) {
            return;
        }
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            let sock = stack.ports[usize::from(r.port)]
                .sockets
                .get_mut::<tcp::Socket>(r.handle);
            match step(r, sock, now) {
                Some(outcome) => {
                    let r = self.end(stack, i);
                    self.judged(stack, r, outcome, now, done);
                }
                None => i += 1,
            }
        }
        self.next_deadline = self.running.iter().map(|r| r.deadline).min();
    }

    /// A leg's verdict: the round's when it failed or the other leg is done, else kept with
    /// the other leg.
    fn judged(
        &mut self,
        stack: &mut Stack,
        r: Running,
        outcome: Outcome,
        now: Duration,
        done: &mut Vec<Finished>,
    ) {
        let other = self
            .running
            .iter()
            .position(|o| o.target == r.target && o.started == r.started);
        let failed = matches!(outcome, Outcome::Failure(_));
        let (outcome, through_tunnel) = match (other, failed) {
            (Some(o), false) => {
                // The direct leg's outcome is the round's: keep it (or keep waiting for it).
                let keep = if r.tunnelled { None } else { Some(outcome) };
                self.running[o].passed = keep.or(self.running[o].passed.take());
                return;
            }
            (Some(o), true) => {
                self.end(stack, o);
                (outcome, r.tunnelled)
            }
            (None, true) => (outcome, r.tunnelled),
            (None, false) if r.tunnelled => (r.passed.clone().unwrap_or(outcome), false),
            (None, false) => (outcome, false),
        };
        self.stats.finished += 1;
        done.push(Finished {
            target: r.target,
            outcome,
            started: r.started,
            took: now.saturating_sub(r.started),
            through_tunnel,
        });
    }

    /// Takes leg `i` out of the running ones, its socket aborted (removed once its RST is
    /// out, see [`Runner::reap`]).
    fn end(&mut self, stack: &mut Stack, i: usize) -> Running {
        let r = self.running.swap_remove(i);
        stack.ports[usize::from(r.port)]
            .sockets
            .get_mut::<tcp::Socket>(r.handle)
            .abort();
        self.closing.push((r.port, r.handle, r.local_port));
        r
    }

    /// A packet the stack sent, as it leaves: a check's through a tunnel inside that tunnel
    /// (`seed`: the config's hash seed, for GUE's source port), any other as it is. `None`:
    /// it could not be encapsulated (never for what smoltcp sends).
    pub fn wrap(&self, packet: Vec<u8>, seed: u64) -> Option<Vec<u8>> {
        match self.through_tunnel(&packet) {
            Some(t) => t.encapsulate(&packet, seed),
            None => Some(packet),
        }
    }

    /// The tunnel a packet the stack sent belongs in: that of the check through a tunnel
    /// whose source port and VIP it has. `None` for any other packet.
    fn through_tunnel(&self, packet: &[u8]) -> Option<&Tunnel> {
        if self.tunnels.is_empty() {
            return None;
        }
        let (dst, l4) = match packet.first()? >> 4 {
            4 if packet.get(9) == Some(&IPPROTO_TCP) => {
                let ihl = usize::from(packet[0] & 0x0f) * 4;
                let d: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
                (IpAddr::from(d), packet.get(ihl..)?)
            }
            // smoltcp sends no extension headers.
            6 if packet.get(6) == Some(&IPPROTO_TCP) => {
                let d: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
                (IpAddr::from(d), packet.get(40..)?)
            }
            _ => return None,
        };
        let sport = u16::from_be_bytes(l4.get(0..2)?.try_into().ok()?);
        let (vip, tunnel) = self.tunnels.get(&sport)?;
        (*vip == dst).then_some(tunnel)
    }

    /// Removes the aborted sockets whose RST went out (call after polling the stack).
    pub fn reap(&mut self, stack: &mut Stack) {
        let (in_use, tunnels) = (&mut self.in_use, &mut self.tunnels);
        self.closing.retain(|&(port, handle, local_port)| {
            let sockets = &mut stack.ports[usize::from(port)].sockets;
            let gone = {
                let s = sockets.get::<tcp::Socket>(handle);
                s.state() == tcp::State::Closed && s.local_endpoint().is_none()
            };
            if gone {
                sockets.remove(handle);
                in_use.remove(&local_port);
                tunnels.remove(&local_port);
            }
            !gone
        });
    }
}

/// One check's progress on its socket; `Some` when it has a verdict.
fn step(r: &mut Running, sock: &mut tcp::Socket<'_>, now: Duration) -> Option<Outcome> {
    use tcp::State::*;
    match sock.state() {
        SynSent | SynReceived => {
            return (now >= r.deadline).then_some(Outcome::Failure(Failure::Timeout));
        }
        // Closed before anything was exchanged: a RST answered the SYN, or reset the
        // connection at once.
        Closed | Listen | TimeWait if r.sent == 0 && r.reply.is_empty() => {
            return Some(Outcome::Failure(Failure::Refused));
        }
        _ => {}
    }
    if matches!(r.kind, conf::CheckKind::Tcp) {
        return Some(Outcome::Success);
    }
    if r.sent < r.request.len()
        && sock.can_send()
        && let Ok(n) = sock.send_slice(&r.request[r.sent..])
    {
        r.sent += n;
    }
    while sock.can_recv() && r.reply.len() < MAX_REPLY {
        let room = MAX_REPLY - r.reply.len();
        let got = sock.recv(|buf| {
            let n = buf.len().min(room);
            (n, buf[..n].to_vec())
        });
        match got {
            Ok(bytes) if !bytes.is_empty() => r.reply.extend_from_slice(&bytes),
            _ => break,
        }
    }
    let closed = !sock.may_recv();
    if let Some(o) = probe::judge(&r.kind, &r.reply, closed) {
        return Some(o);
    }
    if closed {
        return Some(Outcome::Failure(Failure::Closed));
    }
    (now >= r.deadline).then_some(Outcome::Failure(Failure::Timeout))
}

#[cfg(test)]
mod tests {
    use super::super::Monitor;
    use super::*;
    use crate::stack::{QueueDevice, instant};
    use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
    use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Address};
    use std::net::IpAddr;
    use std::path::Path;

    const MS: Duration = Duration::from_millis(1);

    /// A backend host made of smoltcp: 10.0.0.11 with an HTTP server on :80 that answers
    /// `status` and closes; nothing on :81 (a SYN there gets a RST). It holds the VIPs
    /// 10.0.0.100 and .101 too, and with `decap` takes IPIP and GUE (port 6080) packets to
    /// 10.0.0.11 as a tunnel endpoint would (without, they are lost, as on a backend whose
    /// tunnel device is missing).
    struct Server {
        iface: Interface,
        device: QueueDevice,
        sockets: SocketSet<'static>,
        /// Four listeners: checks through a tunnel connect beside the direct ones.
        http: [SocketHandle; 4],
        status: u16,
        decap: bool,
        /// Tunnelled packets taken: IPIP, GUE.
        tunnelled: [u32; 2],
    }

    impl Server {
        fn new(status: u16) -> Server {
            let mut device = QueueDevice::default();
            let mut iface = Interface::new(
                IfaceConfig::new(HardwareAddress::Ip),
                &mut device,
                instant(Duration::ZERO),
            );
            iface.update_ip_addrs(|a| {
                a.push(IpCidr::new(Ipv4Address::new(10, 0, 0, 11).into(), 24))
                    .unwrap();
                for vip in [100, 101] {
                    a.push(IpCidr::new(Ipv4Address::new(10, 0, 0, vip).into(), 32))
                        .unwrap();
                }
            });
            let mut sockets = SocketSet::new(Vec::new());
            let http = [(); 4].map(|_| {
                let mut listener = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; 4096]),
                    tcp::SocketBuffer::new(vec![0; 4096]),
                );
                listener.listen(80).unwrap();
                sockets.add(listener)
            });
            Server {
                iface,
                device,
                sockets,
                http,
                status,
                decap: true,
                tunnelled: [0; 2],
            }
        }

        /// An IPv4 packet to 10.0.0.11 off the wire: its inner packet if it is a tunnel's.
        fn receive(&mut self, p: Vec<u8>) {
            let inner = match p[9] {
                4 => Some((0, 20)),
                17 if p[22..24] == 6080u16.to_be_bytes() => Some((1, 28)),
                _ => None,
            };
            match inner {
                Some((kind, outer)) if self.decap => {
                    assert_eq!(&p[12..16], &[10, 0, 0, 2], "the outer source");
                    self.tunnelled[kind] += 1;
                    self.device.rx.push_back(p[outer..].to_vec());
                }
                Some(_) => {}
                None => self.device.rx.push_back(p),
            }
        }

        fn poll(&mut self, now: Duration) {
            self.iface
                .poll(instant(now), &mut self.device, &mut self.sockets);
            for h in self.http {
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                if !s.is_open() {
                    s.listen(80).unwrap();
                }
                if s.can_recv() {
                    let _ = s.recv(|b| (b.len(), ()));
                    let reply = format!("HTTP/1.0 {} X\r\n\r\n", self.status);
                    let _ = s.send_slice(reply.as_bytes());
                    s.close();
                }
            }
            self.iface
                .poll(instant(now), &mut self.device, &mut self.sockets);
        }
    }

    /// A finished check in a test: the backend's name, the outcome, how long it took, and
    /// whether it failed through the tunnel.
    type Checked = (String, Outcome, Duration, bool);

    /// Runs every check of `cfg` once over a wire where 10.0.0.11 is `server` and other
    /// addresses never answer; returns each backend's outcome, and the runner (to look at
    /// what it kept).
    fn run(cfg_text: &str, server: &mut Server) -> (Vec<Checked>, Runner, Stack) {
        let cfg = conf::parse(cfg_text, Path::new("t.toml")).unwrap();
        let mut next = 0;
        let ids = |_: &str, _: &str| {
            next += 1;
            Some(dataplane::snapshot::BackendId::new(next))
        };
        let monitor = Monitor::new(&cfg, ids, Duration::ZERO);
        let mut stack = Stack::new(&cfg.ports[..1], 1, Duration::ZERO);
        let mut runner = Runner::new(cfg.global.health.source_ports.clone(), 1);
        for (i, t) in monitor.targets.iter().enumerate() {
            runner.start(&mut stack, i, t, Duration::ZERO).unwrap();
        }
        let mut done = Vec::new();
        let mut now = Duration::ZERO;
        while now < MS * 1000 && (runner.in_flight() > 0 || !runner.closing.is_empty()) {
            stack.poll(now);
            runner.progress(&mut stack, now, true, &mut done);
            stack.poll(now);
            runner.reap(&mut stack);
            let mut to_server = Vec::new();
            stack.take_egress(|_, p| {
                let p = runner.wrap(p, cfg.global.hash_seed).unwrap();
                if crate::stack::destination(&p) == Some(IpAddr::from([10, 0, 0, 11])) {
                    to_server.push(p);
                }
            });
            for p in to_server {
                server.receive(p);
            }
            server.poll(now);
            for p in server.device.tx.drain(..) {
                stack.ingress(dataplane::ids::PortIdx::new(0), &p);
            }
            now += MS;
        }
        let out = done
            .into_iter()
            .map(|f| {
                let name = monitor.targets[f.target].backend.clone();
                (name, f.outcome, f.took, f.through_tunnel)
            })
            .collect();
        (out, runner, stack)
    }

    const PORT: &str = "[global.health]\nsource_ports = \"61000-61063\"\n\
                        [[port]]\nname = \"p\"\ndevice = \"d\"\naddresses = [\"10.0.0.2/24\"]\n";

    #[test]
    fn success_refusal_timeout_and_nothing_left_behind() {
        let text = format!(
            "{PORT}[[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\n\
             [service.health]\ntype = \"http\"\ninterval_ms = 1000\ntimeout_ms = 300\n\
             [[service.backend]]\nname = \"ok\"\naddress = \"10.0.0.11\"\n\
             [[service.backend]]\nname = \"silent\"\naddress = \"10.0.0.12\"\n\
             [[service]]\nname = \"raw\"\nvip = \"10.0.0.101\"\nport = 81\n\
             [service.health]\ntype = \"tcp\"\ninterval_ms = 1000\ntimeout_ms = 300\n\
             [[service.backend]]\nname = \"closed\"\naddress = \"10.0.0.11\"\n"
        );
        let mut server = Server::new(200);
        let (out, runner, mut stack) = run(&text, &mut server);
        let of = |name: &str| out.iter().find(|o| o.0 == name).cloned().unwrap();
        assert_eq!(of("ok").1, Outcome::Success);
        assert_eq!(of("closed").1, Outcome::Failure(Failure::Refused));
        let silent = of("silent");
        assert_eq!(silent.1, Outcome::Failure(Failure::Timeout));
        assert_eq!(silent.2, MS * 300, "failed exactly at its timeout");
        // Every socket was removed once its RST was out, and every source port is free.
        assert_eq!(stack.ports[0].sockets.iter().count(), 0);
        assert!(runner.in_use.is_empty());
        assert_eq!(runner.stats.finished, 3);
        assert!(stack.poll_delay(MS * 1000).is_none());
    }

    #[test]
    fn a_wrong_status_fails_and_ports_rotate() {
        let text = format!(
            "{PORT}[[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\n\
             [service.health]\ntype = \"http\"\nexpect_status = \"200-299\"\n\
             [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\n"
        );
        let mut server = Server::new(503);
        let (out, mut runner, mut stack) = run(&text, &mut server);
        assert_eq!(out[0].1, Outcome::Failure(Failure::BadReply));
        // Source ports go round the whole range before one comes back.
        let first = runner.take_port().unwrap();
        let mut seen = vec![first];
        for _ in 1..64 {
            seen.push(runner.take_port().unwrap());
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 64);
        assert_eq!(runner.take_port(), None, "all 64 in use");
        let _ = &mut stack;
    }

    /// `through_tunnel`: the same HTTP check to the VIP inside the backend's tunnel (IPIP and
    /// GUE), besides the one to its address. Both pass while its endpoint decapsulates; with
    /// the endpoint gone the direct check still would, and the round fails at its timeout,
    /// named as the tunnel's failure. Every socket and source port is freed either way.
    #[test]
    fn a_check_through_the_tunnel_fails_when_the_endpoint_is_gone() {
        let text = format!(
            "{PORT}[[service]]\nname = \"ipip\"\nvip = \"10.0.0.100\"\nport = 80\n\
             forwarding = \"ipip\"\n\
             [service.health]\ntype = \"http\"\ninterval_ms = 1000\ntimeout_ms = 300\n\
             through_tunnel = true\n\
             [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\n\
             [[service]]\nname = \"gue\"\nvip = \"10.0.0.101\"\nport = 80\n\
             forwarding = \"gue\"\n\
             [service.health]\ntype = \"http\"\ninterval_ms = 1000\ntimeout_ms = 300\n\
             through_tunnel = true\n\
             [[service.backend]]\nname = \"b\"\naddress = \"10.0.0.11\"\n"
        );
        let mut server = Server::new(200);
        let (out, runner, stack) = run(&text, &mut server);
        assert_eq!(out.len(), 2, "{out:?}");
        for o in &out {
            assert_eq!((&o.1, o.3), (&Outcome::Success, false), "{o:?}");
        }
        let [ipip, gue] = server.tunnelled;
        println!("endpoint up: both pass; took {ipip} IPIP and {gue} GUE packets");
        assert!(
            ipip >= 3 && gue >= 3,
            "the SYN, the request, the RST at least"
        );
        assert_eq!(stack.ports[0].sockets.iter().count(), 0);
        assert!(runner.in_use.is_empty() && runner.tunnels.is_empty());
        assert_eq!(runner.stats.started, 2, "one round per backend");

        let mut server = Server::new(200);
        server.decap = false;
        let (out, runner, stack) = run(&text, &mut server);
        for o in &out {
            assert_eq!(o.1, Outcome::Failure(Failure::Timeout), "{o:?}");
            assert!(o.3, "the tunnel's failure: {o:?}");
            assert_eq!(o.2, MS * 300);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(stack.ports[0].sockets.iter().count(), 0);
        assert!(runner.in_use.is_empty() && runner.tunnels.is_empty());
    }
}

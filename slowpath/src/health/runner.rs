//! Running health checks over the stack: one smoltcp TCP socket per check in flight, from
//! the balancer's own address on the port that reaches the backend, with a source port taken
//! in rotation from `[global.health] source_ports`.
//!
//! A check ends when [`probe::judge`] has a verdict, when the connection is refused or
//! closed, or at its timeout; then the socket is aborted (a RST, so the backend keeps no
//! connection in TIME_WAIT or in its accept queue) and removed once the RST is out.
//! Source ports rotate over the whole range rather than being reused at once: the backend
//! may still remember the previous connection from a port and ignore a new SYN from it.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use super::probe::{self, MAX_REPLY};
use super::{Failure, Outcome, SplitMix, Target};
use crate::stack::{Stack, ip_address};

/// Socket buffer sizes: a request (an HTTP request line, a ClientHello, an agent's `send`)
/// and the start of a reply are all a check ever holds.
const TX_BUFFER: usize = 2048;
const RX_BUFFER: usize = 2048;

#[derive(Debug)]
struct Running {
    target: usize,
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

    /// Starts target `i`'s check; `Err` is the outcome of a check that could not start.
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
        let Some(ps) = stack.ports.get_mut(usize::from(t.port_index)) else {
            return Err(Outcome::Failure(Failure::NoResources));
        };
        if !ps.addrs.contains(&t.source) {
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
        let remote = (ip_address(t.addr), check.port);
        let local = (ip_address(t.source), local_port);
        if sock.connect(ps.iface.context(), remote, local).is_err() {
            self.in_use.remove(&local_port);
            self.stats.not_started += 1;
            return Err(Outcome::Failure(Failure::NoResources));
        }
        let handle = ps.sockets.add(sock);
        let mut random = [0u8; 32];
        for chunk in random.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        let deadline = now + Duration::from_millis(u64::from(check.timeout_ms));
        self.running.push(Running {
            target: i,
            port: t.port_index,
            handle,
            local_port,
            started: now,
            deadline,
            kind: check.kind.clone(),
            request: probe::request(&check.kind, t.addr, random),
            sent: 0,
            reply: Vec::new(),
        });
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        self.stats.started += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.running.len() as u64);
        Ok(())
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
        let mut next_deadline: Option<Duration> = None;
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            let sockets = &mut stack.ports[usize::from(r.port)].sockets;
            let sock = sockets.get_mut::<tcp::Socket>(r.handle);
            let verdict = step(r, sock, now);
            match verdict {
                Some(outcome) => {
                    sock.abort();
                    let r = self.running.swap_remove(i);
                    self.closing.push((r.port, r.handle, r.local_port));
                    self.stats.finished += 1;
                    done.push(Finished {
                        target: r.target,
                        outcome,
                        started: r.started,
                        took: now.saturating_sub(r.started),
                    });
                }
                None => {
                    next_deadline = Some(next_deadline.map_or(r.deadline, |d| d.min(r.deadline)));
                    i += 1;
                }
            }
        }
        self.next_deadline = next_deadline;
    }

    /// Removes the aborted sockets whose RST went out (call after polling the stack).
    pub fn reap(&mut self, stack: &mut Stack) {
        let in_use = &mut self.in_use;
        self.closing.retain(|&(port, handle, local_port)| {
            let sockets = &mut stack.ports[usize::from(port)].sockets;
            let gone = {
                let s = sockets.get::<tcp::Socket>(handle);
                s.state() == tcp::State::Closed && s.local_endpoint().is_none()
            };
            if gone {
                sockets.remove(handle);
                in_use.remove(&local_port);
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
    /// `status` and closes; nothing on :81 (a SYN there gets a RST).
    struct Server {
        iface: Interface,
        device: QueueDevice,
        sockets: SocketSet<'static>,
        http: SocketHandle,
        status: u16,
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
                    .unwrap()
            });
            let mut sockets = SocketSet::new(Vec::new());
            let mut listener = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 4096]),
                tcp::SocketBuffer::new(vec![0; 4096]),
            );
            listener.listen(80).unwrap();
            let http = sockets.add(listener);
            Server {
                iface,
                device,
                sockets,
                http,
                status,
            }
        }

        fn poll(&mut self, now: Duration) {
            self.iface
                .poll(instant(now), &mut self.device, &mut self.sockets);
            let s = self.sockets.get_mut::<tcp::Socket>(self.http);
            if !s.is_open() {
                s.listen(80).unwrap();
            }
            if s.can_recv() {
                let _ = s.recv(|b| (b.len(), ()));
                let reply = format!("HTTP/1.0 {} X\r\n\r\n", self.status);
                let _ = s.send_slice(reply.as_bytes());
                s.close();
            }
            self.iface
                .poll(instant(now), &mut self.device, &mut self.sockets);
        }
    }

    /// Runs every check of `cfg` once over a wire where 10.0.0.11 is `server` and other
    /// addresses never answer; returns each backend's outcome, and the runner (to look at
    /// what it kept).
    fn run(
        cfg_text: &str,
        server: &mut Server,
    ) -> (Vec<(String, Outcome, Duration)>, Runner, Stack) {
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
                if crate::stack::destination(&p) == Some(IpAddr::from([10, 0, 0, 11])) {
                    to_server.push(p);
                }
            });
            server.device.rx.extend(to_server);
            server.poll(now);
            for p in server.device.tx.drain(..) {
                stack.ingress(dataplane::ids::PortIdx::new(0), &p);
            }
            now += MS;
        }
        let out = done
            .into_iter()
            .map(|f| (monitor.targets[f.target].backend.clone(), f.outcome, f.took))
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
}

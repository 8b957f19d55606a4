//! Neighbour resolution: the MAC address of every backend, by ARP (IPv4) or neighbour
//! discovery (IPv6, [`crate::nd`]), kept fresh; and the Ethernet framing of the slow path's
//! own IP packets (the stack speaks IP only).
//!
//! One table serves both the workers (their next hops, through `Dynamic::neighbors`) and the
//! health checks, so a check goes to exactly the MAC the traffic goes to. Static MACs from
//! the config (a backend's `mac`, a port's `neighbors`) override ARP and are never asked for.
//!
//! Life of an entry: created when a backend (or a packet of the stack) needs it; asked for
//! by broadcast (IPv6: a solicitation to the target's solicited-node multicast group) every
//! `retry_ms` until answered; then confirmed by a unicast request every `refresh_ms`. An
//! unanswered confirmation keeps the MAC (forwarding goes on; the health checks decide
//! whether the backend is alive) and falls back to broadcast requests every `retry_ms`, so a
//! backend that moved to another MAC is found again. A reply with a new MAC replaces the old
//! one at once (e.g. an address taken over by a standby; for IPv6, an advertisement with the
//! override flag), and so does a gratuitous ARP request (the workers pass those on: Linux
//! sends one when an interface's MAC changes, with `arp_notify`).
//!
//! Packets of the stack for a neighbour not yet resolved wait in a short queue (like Linux's
//! `unres_qlen`) and leave as soon as the reply comes: dropping them would cost a health
//! check a TCP retransmission timeout (a second or more) every time an entry is created.
//!
//! IPv6 advertisements reach the slow path when they are addressed to one of the balancer's
//! own addresses (the answers to its solicitations are) or to all-nodes (unsolicited ones,
//! which Linux sends when an interface's MAC changes, with `ndisc_notify`): one with the
//! override flag moves a backend to its new MAC at once.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use conf::{Config, IfAddr, NeighborSettings};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Address,
};

/// Packets kept per unresolved neighbour; older ones are dropped first.
const PENDING_MAX: usize = 8;
const BROADCAST: [u8; 6] = [0xff; 6];
/// Ethernet header (no VLAN tag: the slow path's frames go out untagged).
pub const ETH_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never answered: broadcast requests.
    Unresolved,
    /// Answered recently: the next request is a unicast confirmation.
    Fresh,
    /// A confirmation went unanswered: broadcast requests, MAC kept.
    Unconfirmed,
}

#[derive(Debug)]
struct Entry {
    port: u8,
    mac: Option<[u8; 6]>,
    state: State,
    /// When the next request goes out.
    next: Duration,
    pending: VecDeque<Vec<u8>>,
}

/// What a port looks like to ARP and ND.
#[derive(Debug, Clone)]
pub struct PortL2 {
    pub mac: [u8; 6],
    pub addrs: Vec<IfAddr>,
}

/// Counters of the neighbour table.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeighStats {
    pub requests: u64,
    pub learnt: u64,
    /// A known neighbour answered with another MAC.
    pub changed: u64,
    /// Stack packets dropped: queue of an unresolved neighbour full.
    pub dropped: u64,
    /// ND solicitations and advertisements refused (hop limit, checksum, length, options).
    pub nd_invalid: u64,
}

/// The neighbour table of every port.
#[derive(Debug)]
pub struct Neighbors {
    settings: NeighborSettings,
    ports: Vec<PortL2>,
    statics: HashMap<IpAddr, [u8; 6]>,
    entries: HashMap<IpAddr, Entry>,
    /// No entry has a request due before this.
    next_scan: Duration,
    /// The learnt MACs changed since [`Neighbors::take_changed`].
    changed: bool,
    pub stats: NeighStats,
}

impl Neighbors {
    /// The table for `cfg` with every backend without a static MAC to resolve at once.
    pub fn new(cfg: &Config, ports: Vec<PortL2>, now: Duration) -> Neighbors {
        let mut statics = HashMap::new();
        for p in &cfg.ports {
            for (ip, mac) in &p.neighbors {
                statics.insert(*ip, mac.0);
            }
        }
        for s in &cfg.services {
            for b in &s.backends {
                if let Some(mac) = b.mac {
                    statics.insert(b.address, mac.0);
                }
            }
        }
        let mut n = Neighbors {
            settings: cfg.global.neighbors,
            ports,
            statics,
            entries: HashMap::new(),
            next_scan: now,
            changed: false,
            stats: NeighStats::default(),
        };
        for s in &cfg.services {
            for b in &s.backends {
                if let Some((port, _)) = cfg.route(b.address) {
                    n.want(b.address, port as u8, now);
                }
            }
        }
        n
    }

    /// Takes a reloaded config: its static MACs and settings, and resolution of backends it
    /// adds. What was learnt stays (a removed backend's entry just ages in the table).
    pub fn reconfigure(&mut self, cfg: &Config, now: Duration) {
        let fresh = Neighbors::new(cfg, std::mem::take(&mut self.ports), now);
        self.settings = fresh.settings;
        self.statics = fresh.statics;
        self.ports = fresh.ports;
        for (ip, e) in fresh.entries {
            if !self.entries.contains_key(&ip) {
                self.want(ip, e.port, now);
            }
        }
    }

    /// Makes sure `ip` (reached through `port`) gets resolved, starting now.
    pub fn want(&mut self, ip: IpAddr, port: u8, now: Duration) {
        if self.statics.contains_key(&ip) || !resolvable(ip) {
            return;
        }
        self.entries.entry(ip).or_insert_with(|| Entry {
            port,
            mac: None,
            state: State::Unresolved,
            next: now,
            pending: VecDeque::new(),
        });
        self.next_scan = self.next_scan.min(now);
    }

    /// The MAC of `ip`: static first, then learnt.
    pub fn lookup(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.statics
            .get(&ip)
            .copied()
            .or_else(|| self.entries.get(&ip).and_then(|e| e.mac))
    }

    /// Every MAC learnt by ARP or ND (statics are the config's, which the snapshot reads itself).
    pub fn learnt(&self) -> HashMap<IpAddr, [u8; 6]> {
        self.entries
            .iter()
            .filter_map(|(ip, e)| Some((*ip, e.mac?)))
            .collect()
    }

    /// True once after any learnt MAC appeared or changed.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// When a request is due next.
    pub fn next_due(&self) -> Option<Duration> {
        (!self.entries.is_empty()).then_some(self.next_scan)
    }

    /// Sends the requests that are due (`send(port, frame)`).
    pub fn poll(&mut self, now: Duration, send: &mut impl FnMut(u8, &[u8])) {
        if now < self.next_scan {
            return;
        }
        let (refresh, retry) = (
            Duration::from_millis(u64::from(self.settings.refresh_ms)),
            Duration::from_millis(u64::from(self.settings.retry_ms)),
        );
        let mut next_scan = now + refresh;
        for (ip, e) in &mut self.entries {
            if e.next <= now {
                // A confirmation goes to the known MAC; anything else to everyone.
                let unicast = match e.state {
                    State::Fresh => {
                        e.state = State::Unconfirmed;
                        e.mac
                    }
                    State::Unresolved | State::Unconfirmed => None,
                };
                if let Some(port) = self.ports.get(usize::from(e.port))
                    && let Some(frame) = match *ip {
                        IpAddr::V4(t) => arp_request(port, t, unicast.unwrap_or(BROADCAST)),
                        IpAddr::V6(t) => crate::nd::solicitation(port, t, unicast),
                    }
                {
                    send(e.port, &frame);
                    self.stats.requests += 1;
                }
                e.next = now + retry;
            }
            next_scan = next_scan.min(e.next);
        }
        self.next_scan = next_scan;
    }

    /// Takes an ARP frame (reply or announcement) received on `port`; learns the sender if
    /// it is a neighbour of interest, and hands back the packets that waited for it.
    pub fn receive_arp(&mut self, port: u8, arp: &[u8], now: Duration) -> Vec<Vec<u8>> {
        let Ok(pkt) = ArpPacket::new_checked(arp) else {
            return Vec::new();
        };
        let Ok(ArpRepr::EthernetIpv4 {
            source_hardware_addr,
            source_protocol_addr,
            ..
        }) = ArpRepr::parse(&pkt)
        else {
            return Vec::new();
        };
        let ip = IpAddr::V4(Ipv4Addr::from(source_protocol_addr.octets()));
        self.learn(port, ip, source_hardware_addr.0, now)
    }

    /// Takes an IPv6 packet received on `port` (`eth_src`: its frame's Ethernet source).
    /// `None` if it is not an ND solicitation or advertisement (the stack's, then); otherwise
    /// it is consumed: learns from a valid advertisement for an address of interest (its
    /// target) or solicitation from one (its source), and hands back the frames to send: the
    /// packets that waited, and the answer to a solicitation for one of the port's addresses.
    pub fn receive_nd(
        &mut self,
        port: u8,
        eth_src: [u8; 6],
        packet: &[u8],
        now: Duration,
    ) -> Option<Vec<Vec<u8>>> {
        if !crate::nd::is_nd(packet) {
            return None;
        }
        let Some(nd) = crate::nd::parse(eth_src, packet) else {
            self.stats.nd_invalid += 1;
            return Some(Vec::new());
        };
        Some(match nd {
            crate::nd::Nd::Advert { ip, mac, override_ } => {
                let ip = IpAddr::V6(ip);
                // Without the override flag, an advertisement only confirms the MAC we have.
                if !override_ && self.lookup(ip).is_some_and(|m| m != mac) {
                    return Some(Vec::new());
                }
                self.learn(port, ip, mac, now)
            }
            crate::nd::Nd::Solicit { ip, mac, target } => {
                let mut out = match mac {
                    Some(mac) => self.learn(port, IpAddr::V6(ip), mac, now),
                    None => Vec::new(),
                };
                if let Some(p) = self.ports.get(usize::from(port))
                    && let Some(na) =
                        crate::nd::advertisement(p, target, ip, mac.unwrap_or(eth_src))
                {
                    out.push(na);
                }
                out
            }
        })
    }

    /// Records `ip` at `mac` (if it is a neighbour of interest); returns its waiting packets,
    /// framed.
    pub fn learn(&mut self, port: u8, ip: IpAddr, mac: [u8; 6], now: Duration) -> Vec<Vec<u8>> {
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Vec::new();
        }
        let Some(e) = self.entries.get_mut(&ip) else {
            return Vec::new();
        };
        match e.mac {
            None => {
                self.stats.learnt += 1;
                self.changed = true;
            }
            Some(old) if old != mac => {
                self.stats.changed += 1;
                self.changed = true;
            }
            Some(_) => {}
        }
        e.mac = Some(mac);
        e.port = port;
        e.state = State::Fresh;
        e.next = now + Duration::from_millis(u64::from(self.settings.refresh_ms));
        let pending: Vec<Vec<u8>> = e.pending.drain(..).collect();
        let Some(p) = self.ports.get(usize::from(port)) else {
            return Vec::new();
        };
        pending
            .iter()
            .map(|packet| ethernet(p.mac, mac, ethertype(ip), packet))
            .collect()
    }

    /// Frames an IP packet of the stack for `dst` on `port`; `None` when it has to wait for
    /// resolution (it is queued, and a request goes out at the next poll) or cannot be sent.
    pub fn frame(
        &mut self,
        port: u8,
        dst: IpAddr,
        packet: &[u8],
        now: Duration,
    ) -> Option<Vec<u8>> {
        let src = self.ports.get(usize::from(port))?.mac;
        if let Some(mac) = self.lookup(dst) {
            return Some(ethernet(src, mac, ethertype(dst), packet));
        }
        if let IpAddr::V6(group) = dst
            && group.is_multicast()
        {
            return Some(ethernet(
                src,
                crate::nd::multicast_mac(group),
                EthernetProtocol::Ipv6,
                packet,
            ));
        }
        if !resolvable(dst) {
            self.stats.dropped += 1;
            return None;
        }
        self.want(dst, port, now);
        let e = self.entries.get_mut(&dst).expect("just wanted");
        if e.pending.len() == PENDING_MAX {
            e.pending.pop_front();
            self.stats.dropped += 1;
        }
        e.pending.push_back(packet.to_vec());
        None
    }
}

/// Whether `ip` can be asked for: IPv4, or a unicast IPv6 address (not unspecified,
/// loopback nor multicast).
fn resolvable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified() || a == Ipv6Addr::LOCALHOST),
    }
}

fn ethertype(ip: IpAddr) -> EthernetProtocol {
    match ip {
        IpAddr::V4(_) => EthernetProtocol::Ipv4,
        IpAddr::V6(_) => EthernetProtocol::Ipv6,
    }
}

/// An Ethernet frame around `payload`.
pub fn ethernet(src: [u8; 6], dst: [u8; 6], proto: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; ETH_HEADER + payload.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame);
    EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype: proto,
    }
    .emit(&mut eth);
    frame[ETH_HEADER..].copy_from_slice(payload);
    frame
}

/// A who-has request for `target` from `port`'s address in the target's subnet, to `dst`
/// (broadcast, or the known MAC for a confirmation).
fn arp_request(port: &PortL2, target: Ipv4Addr, dst: [u8; 6]) -> Option<Vec<u8>> {
    let source = port
        .addrs
        .iter()
        .find(|a| a.contains(IpAddr::V4(target)))
        .or_else(|| port.addrs.iter().find(|a| a.addr.is_ipv4()))?;
    let IpAddr::V4(source) = source.addr else {
        return None;
    };
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(port.mac),
        source_protocol_addr: Ipv4Address::from(source.octets()),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: Ipv4Address::from(target.octets()),
    };
    let mut arp = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut arp));
    Some(ethernet(port.mac, dst, EthernetProtocol::Arp, &arp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MS: Duration = Duration::from_millis(1);
    const LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];

    fn table() -> Neighbors {
        let text = "[global.neighbors]\nrefresh_ms = 10000\nretry_ms = 500\n\
                    [[port]]\nname = \"p\"\ndevice = \"d\"\naddresses = [\"10.0.0.2/24\"]\n\
                    neighbors = [{ ip = \"10.0.0.1\", mac = \"02:00:00:00:00:fe\" }]\n\
                    [[service]]\nname = \"s\"\nvip = \"10.0.0.100\"\nport = 80\n\
                    [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\n\
                    [[service.backend]]\nname = \"b\"\naddress = \"10.0.0.12\"\nmac = \"02:00:00:00:00:12\"\n";
        let cfg = conf::parse(text, Path::new("t.toml")).unwrap();
        let ports = vec![PortL2 {
            mac: LB,
            addrs: cfg.ports[0].addresses.clone(),
        }];
        Neighbors::new(&cfg, ports, Duration::ZERO)
    }

    fn reply(from_ip: [u8; 4], from_mac: [u8; 6]) -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(from_mac),
            source_protocol_addr: Ipv4Address::from(from_ip),
            target_hardware_addr: EthernetAddress(LB),
            target_protocol_addr: Ipv4Address::new(10, 0, 0, 2),
        };
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut b));
        b
    }

    /// A gratuitous ARP request: `ip` announcing itself at `mac`.
    fn gratuitous(ip: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(mac),
            source_protocol_addr: Ipv4Address::from(ip),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Address::from(ip),
        };
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut b));
        b
    }

    fn sent(n: &mut Neighbors, now: Duration) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        n.poll(now, &mut |p, f| out.push((p, f.to_vec())));
        out
    }

    /// (Ethernet destination, ARP target) of a request frame.
    fn request_of(f: &[u8]) -> ([u8; 6], [u8; 4]) {
        let arp = ArpPacket::new_checked(&f[ETH_HEADER..]).unwrap();
        match ArpRepr::parse(&arp).unwrap() {
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } => {
                assert_eq!(source_protocol_addr.octets(), [10, 0, 0, 2]);
                (f[..6].try_into().unwrap(), target_protocol_addr.octets())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_refreshes_and_follows_a_moved_mac() {
        let mut n = table();
        let a: IpAddr = "10.0.0.11".parse().unwrap();
        // Statics: never asked for. The backend without a MAC: asked at once, by broadcast.
        assert_eq!(
            n.lookup("10.0.0.12".parse().unwrap()),
            Some([2, 0, 0, 0, 0, 0x12])
        );
        assert_eq!(
            n.lookup("10.0.0.1".parse().unwrap()),
            Some([2, 0, 0, 0, 0, 0xfe])
        );
        let out = sent(&mut n, Duration::ZERO);
        assert_eq!(out.len(), 1);
        assert_eq!(request_of(&out[0].1), (BROADCAST, [10, 0, 0, 11]));
        // Unanswered: again after retry_ms, not before.
        assert!(sent(&mut n, MS * 499).is_empty());
        assert_eq!(sent(&mut n, MS * 500).len(), 1);
        // Answered: learnt, and confirmed by unicast after refresh_ms.
        n.receive_arp(0, &reply([10, 0, 0, 11], B1), MS * 600);
        assert!(n.take_changed());
        assert!(!n.take_changed());
        assert_eq!(n.lookup(a), Some(B1));
        assert!(sent(&mut n, MS * 10_599).is_empty());
        let out = sent(&mut n, MS * 10_600);
        assert_eq!(request_of(&out[0].1), (B1, [10, 0, 0, 11]));
        // Unconfirmed: the MAC stays, requests go broadcast every retry_ms.
        let out = sent(&mut n, MS * 11_100);
        assert_eq!(request_of(&out[0].1), (BROADCAST, [10, 0, 0, 11]));
        assert_eq!(n.lookup(a), Some(B1));
        // The address moved to another host: the new MAC replaces the old.
        let b2 = [2, 0, 0, 0, 0, 0x22];
        n.receive_arp(0, &reply([10, 0, 0, 11], b2), MS * 11_200);
        assert!(n.take_changed());
        assert_eq!(n.learnt().get(&a), Some(&b2));
        assert_eq!(n.stats.changed, 1);
        // Replies from hosts nobody asked about are not learnt.
        n.receive_arp(0, &reply([10, 0, 0, 99], B1), MS * 11_300);
        assert_eq!(n.lookup("10.0.0.99".parse().unwrap()), None);
        // A gratuitous request (what Linux sends when an interface's MAC changes) moves it
        // as a reply does; one from a host nobody asked about is not learnt either.
        let b3 = [2, 0, 0, 0, 0, 0x33];
        n.receive_arp(0, &gratuitous([10, 0, 0, 11], b3), MS * 11_400);
        assert!(n.take_changed());
        assert_eq!(n.lookup(a), Some(b3));
        assert_eq!(n.stats.changed, 2);
        n.receive_arp(0, &gratuitous([10, 0, 0, 98], b3), MS * 11_500);
        assert_eq!(n.lookup("10.0.0.98".parse().unwrap()), None);
        assert!(!n.take_changed());
    }

    #[test]
    fn stack_packets_wait_for_resolution() {
        let mut n = table();
        let dst: IpAddr = "10.0.0.33".parse().unwrap();
        // A packet for an unknown neighbour is queued and makes a request due now.
        assert!(n.frame(0, dst, b"SYN", MS * 5).is_none());
        let out = sent(&mut n, MS * 5);
        assert!(out.iter().any(|(_, f)| request_of(f).1 == [10, 0, 0, 33]));
        for i in 0..PENDING_MAX {
            assert!(n.frame(0, dst, &[i as u8], MS * 6).is_none());
        }
        assert_eq!(n.stats.dropped, 1, "the oldest went");
        let released = n.receive_arp(0, &reply([10, 0, 0, 33], B1), MS * 7);
        assert_eq!(released.len(), PENDING_MAX);
        assert_eq!(&released[0][..6], &B1);
        assert_eq!(&released[0][6..12], &LB);
        assert_eq!(&released[0][12..14], &[0x08, 0x00]);
        assert_eq!(&released[0][ETH_HEADER..], &[0]);
        // Resolved: framed at once.
        let f = n.frame(0, dst, b"ACK", MS * 8).unwrap();
        assert_eq!(&f[ETH_HEADER..], b"ACK");
    }

    fn table_v6() -> Neighbors {
        let text = "[global.neighbors]\nrefresh_ms = 10000\nretry_ms = 500\n\
                    [[port]]\nname = \"p\"\ndevice = \"d\"\n\
                    addresses = [\"10.0.0.2/24\", \"2001:db8::2/64\"]\n\
                    [[service]]\nname = \"s\"\nvip = \"2001:db8:ff::100\"\nport = 80\n\
                    [[service.backend]]\nname = \"a\"\naddress = \"2001:db8::11\"\n\
                    [[service.backend]]\nname = \"b\"\naddress = \"2001:db8::12\"\nmac = \"02:00:00:00:00:12\"\n";
        let cfg = conf::parse(text, Path::new("t.toml")).unwrap();
        let ports = vec![PortL2 {
            mac: LB,
            addrs: cfg.ports[0].addresses.clone(),
        }];
        Neighbors::new(&cfg, ports, Duration::ZERO)
    }

    /// (Ethernet destination, IPv6 destination, target) of a solicitation frame, checked.
    fn solicitation_of(f: &[u8]) -> ([u8; 6], Ipv6Addr, Ipv6Addr) {
        use dataplane::wire::{Icmpv6Packet, Ipv6Packet};
        let p = Ipv6Packet::new_checked(&f[ETH_HEADER..]).unwrap();
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.src_ip(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert_eq!(icmp.msg_type(), 135);
        assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));
        let t: [u8; 16] = icmp.payload()[..16].try_into().unwrap();
        (f[..6].try_into().unwrap(), p.dst_ip(), Ipv6Addr::from(t))
    }

    #[test]
    fn resolves_ipv6_by_nd_with_the_arp_policy() {
        use crate::nd::tests::advert;
        let mut n = table_v6();
        let a: Ipv6Addr = "2001:db8::11".parse().unwrap();
        let us: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let group: Ipv6Addr = "ff02::1:ff00:11".parse().unwrap();
        let mcast = [0x33, 0x33, 0xff, 0, 0, 0x11];
        // The static one is never asked for; the other at once, to its solicited-node group.
        let out = sent(&mut n, Duration::ZERO);
        assert_eq!(out.len(), 1);
        assert_eq!(solicitation_of(&out[0].1), (mcast, group, a));
        // Unanswered: again after retry_ms, not before.
        assert!(sent(&mut n, MS * 499).is_empty());
        assert_eq!(sent(&mut n, MS * 500).len(), 1);
        // Advertisements that teach nothing: bad checksum, hop limit, truncated, another
        // target, not ND at all (the stack's).
        let good = advert(a, us, 0x60, Some(B1));
        let mut bad_sum = good.clone();
        bad_sum[40 + 2] ^= 0xff;
        let mut bad_hops = good.clone();
        bad_hops[7] = 64;
        let mut truncated = good[..40 + 20].to_vec();
        truncated[4..6].copy_from_slice(&20u16.to_be_bytes());
        for bad in [&bad_sum, &bad_hops, &truncated] {
            assert_eq!(n.receive_nd(0, B1, bad, MS * 600), Some(Vec::new()));
        }
        assert_eq!(n.stats.nd_invalid, 3);
        let other = advert("2001:db8::99".parse().unwrap(), us, 0x60, Some(B1));
        assert_eq!(n.receive_nd(0, B1, &other, MS * 600), Some(Vec::new()));
        assert_eq!(n.receive_nd(0, B1, &good[..40], MS * 600), None, "not ND");
        assert!(!n.take_changed());
        assert_eq!(n.lookup(IpAddr::V6(a)), None);
        // Answered: learnt, confirmed by unicast after refresh_ms.
        assert_eq!(n.receive_nd(0, B1, &good, MS * 600), Some(Vec::new()));
        assert!(n.take_changed());
        assert_eq!(n.lookup(IpAddr::V6(a)), Some(B1));
        assert!(sent(&mut n, MS * 10_599).is_empty());
        let out = sent(&mut n, MS * 10_600);
        assert_eq!(solicitation_of(&out[0].1), (B1, a, a));
        // Unconfirmed: the MAC stays, solicitations go multicast every retry_ms.
        let out = sent(&mut n, MS * 11_100);
        assert_eq!(solicitation_of(&out[0].1), (mcast, group, a));
        assert_eq!(n.lookup(IpAddr::V6(a)), Some(B1));
        // Another MAC without the override flag does not replace it; with it, it does.
        let b2 = [2, 0, 0, 0, 0, 0x22];
        n.receive_nd(0, b2, &advert(a, us, 0x40, Some(b2)), MS * 11_200);
        assert_eq!(n.lookup(IpAddr::V6(a)), Some(B1));
        n.receive_nd(0, b2, &advert(a, us, 0x60, Some(b2)), MS * 11_200);
        assert!(n.take_changed());
        assert_eq!(n.learnt().get(&IpAddr::V6(a)), Some(&b2));
    }

    #[test]
    fn ipv6_stack_packets_wait_for_nd() {
        use crate::nd::tests::advert;
        let mut n = table_v6();
        let dst: Ipv6Addr = "2001:db8::33".parse().unwrap();
        let us: Ipv6Addr = "2001:db8::2".parse().unwrap();
        assert!(n.frame(0, IpAddr::V6(dst), b"SYN", MS * 5).is_none());
        let out = sent(&mut n, MS * 5);
        assert!(out.iter().any(|(_, f)| solicitation_of(f).2 == dst));
        // Learnt from a solicitation the neighbour sent us (its source option) as well.
        let ns = crate::nd::solicitation(
            &PortL2 {
                mac: B1,
                addrs: vec![crate::nd::tests::ifaddr("2001:db8::33/64")],
            },
            us,
            None,
        )
        .unwrap();
        // It asks for our address: the packet that waited goes, and the answer.
        let released = n.receive_nd(0, B1, &ns[ETH_HEADER..], MS * 7).unwrap();
        assert_eq!(released.len(), 2);
        assert_eq!(&released[0][..6], &B1);
        assert_eq!(&released[0][6..12], &LB);
        assert_eq!(&released[0][12..14], &[0x86, 0xdd]);
        assert_eq!(&released[0][ETH_HEADER..], b"SYN");
        assert_eq!(
            crate::nd::parse(LB, &released[1][ETH_HEADER..]),
            Some(crate::nd::Nd::Advert {
                ip: us,
                mac: LB,
                override_: true
            })
        );
        assert_eq!(&released[1][..6], &B1);
        // A solicitation for another address is not answered (nor one without a source
        // option learnt from).
        let other = crate::nd::solicitation(
            &PortL2 {
                mac: B1,
                addrs: vec![crate::nd::tests::ifaddr("2001:db8::33/64")],
            },
            "2001:db8::77".parse().unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(
            n.receive_nd(0, B1, &other[ETH_HEADER..], MS * 7),
            Some(Vec::new())
        );
        // Known now; and a later advertisement releases nothing more.
        let f = n.frame(0, IpAddr::V6(dst), b"ACK", MS * 8).unwrap();
        assert_eq!(&f[..6], &B1);
        let again = n.receive_nd(0, B1, &advert(dst, us, 0x60, Some(B1)), MS * 9);
        assert_eq!(again, Some(Vec::new()));
        // Multicast destinations (MLD and the like) are framed at once, never asked for.
        let f = n
            .frame(0, "ff02::16".parse().unwrap(), b"MLD", MS * 10)
            .unwrap();
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 0x16]);
    }
}

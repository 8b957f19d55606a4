//! The harness the fuzz targets share: a fixed world (the golden snapshot), an independent
//! reading of frames, a checksum fixer, and the oracle every pipeline verdict must satisfy.
//!
//! The oracle, for each frame the pipeline decides:
//!
//! - no panic, and every packet accounted: `Pipeline::account` then `Counters::balanced()`;
//! - the flow table never holds more than its capacity;
//! - `Forward` only for traffic to a VIP (to one of its service's backends; DSR leaves every
//!   byte after the MACs alone, NAT changes only the destination address, port and checksums)
//!   or for a reply from a NAT backend (only the source address, port and checksums change),
//!   FullNAT: VIP traffic leaves from a local address of the backend's family and a local
//!   port (both addresses, both ports and checksums change), and only a packet to a local
//!   address and port from one of the service's backends goes back, as the VIP's; an ICMP
//!   error about a FullNAT flow, to its VIP or to a local address, is translated to the
//!   backend or to the client (the outer destination, the quoted addresses and ports, and
//!   checksums change),
//!   or for an ICMP error to a VIP quoting one of its flows (to a backend of the quoted
//!   port's service; DSR changes only the MACs, NAT only the destination, the quoted source
//!   address and port, and checksums); the frame keeps its length, except through a tunnel
//!   (IPIP, GUE): then the same VIP traffic (a TCP/UDP packet to a tunnel service, or an ICMP
//!   error quoting one of its flows) is carried byte for byte (without Ethernet padding)
//!   behind the same L2 header in one outer header from an own address to a backend of that
//!   service, with a right outer IPv4 checksum, GUE's port and UDP checksum (IPv6: right;
//!   IPv4: 0), and inner checksums as right as they came; a forwarded ICMP error may instead
//!   have the end of its quote cut ([`cut_error`]: the quote's headers and 8 bytes stay, its
//!   lengths and checksums right), which is how it fits the backend's link;
//! - `Reply` goes back to the sender's MAC from the port's MAC, from a VIP or own address, and
//!   is an ARP reply, TCP RST|ACK, ICMP echo reply / unreachable or ND advertisement, at most
//!   one header longer than what it answers (no amplification);
//! - every emitted frame is well formed: IPv4 header checksum right, and the TCP / UDP / ICMP
//!   checksum right whenever the input's was (a built reply: always);
//! - `SlowPath` and `Handoff` hand over the frame untouched, and a handed-over frame is never
//!   handed over again by its owner.
//!
//! Inputs run twice: as they are, and with their checksums fixed ([`fix_checksums`]), since a
//! random IPv4 header checksum is almost never right and the pipeline drops those first.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use conf::{Config, Forwarding};
use dataplane::flow::Timeouts;
use dataplane::frame::VecFrame;
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::{Addr, PortIdx, Snapshot, WorkerIdx, addr_key};
use dataplane::verdict::Verdict;
use dataplane::wire::{
    self, ArpPacket, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket, tcp,
};
use slowpath::publish::{BackendIds, Dynamic, build};

/// The golden tests' configuration: DSR, NAT (TCP, UDP, IPv6), empty pools that reset or drop.
pub const GOLDEN_TOML: &str = include_str!("../../dataplane/tests/golden/golden.toml");

/// The per-process seed of the flow-table and NAT-owner hashes (fixed, so runs replay).
pub const LOCAL_SEED: u64 = 0x5eed;

/// Flow-table capacity of the single-frame target's pipeline.
pub const FLOWS: usize = 64;

/// One service as the oracle sees it, from the config (not from the snapshot).
#[derive(Debug, Clone)]
struct Svc {
    vip: Addr,
    vip_ip: IpAddr,
    proto: u8,
    port: Option<u16>,
    nat: bool,
    /// FullNAT.
    fullnat: bool,
    /// IPIP or GUE (with its port).
    tunnel: Option<(Forwarding, u16)>,
    /// (address, NAT port, MAC) of each backend.
    backends: Vec<(Addr, Option<u16>, [u8; 6])>,
}

/// The fixed world every input runs against.
pub struct World {
    pub cfg: Config,
    pub snap: Snapshot,
    pub timeouts: Timeouts,
    port_mac: [u8; 6],
    /// Every port's MAC, by port index (the source of frames forwarded out of it).
    port_macs: Vec<[u8; 6]>,
    services: Vec<Svc>,
    /// Addresses with their family (IPv4 10.0.0.1 and IPv6 a00:1:: have the same [`Addr`]).
    vips: HashSet<IpAddr>,
    own: HashSet<IpAddr>,
    /// NAT backend endpoint (address, proto, port) -> index in `services`.
    nat_endpoints: HashMap<(IpAddr, u8, u16), usize>,
    /// FullNAT: every backend's local addresses, and the local ports.
    fullnat_locals: HashSet<IpAddr>,
    local_ports: std::ops::RangeInclusive<u16>,
    /// Frames that open NAT flows, run into every fresh pipeline so that NAT replies have
    /// something to match.
    warm: Vec<Vec<u8>>,
}

/// The world, built once per process.
pub fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(build_world)
}

fn build_world() -> World {
    let cfg = conf::parse(GOLDEN_TOML, Path::new("golden.toml")).expect("golden.toml is valid");
    let snap = build(&cfg, &mut BackendIds::new(), &Dynamic::default(), 1);
    let port_mac = cfg.ports[0].mac.expect("golden.toml sets the port MAC").0;
    let port_macs = cfg
        .ports
        .iter()
        .map(|p| p.mac.expect("golden.toml sets the port MACs").0)
        .collect();
    let mut services = Vec::new();
    let mut nat_endpoints = HashMap::new();
    let mut fullnat_locals = HashSet::new();
    for s in &cfg.services {
        let backends: Vec<_> = s
            .backends
            .iter()
            .map(|b| {
                let mac = b.mac.expect("golden.toml sets backend MACs").0;
                (addr_key(b.address), b.port, mac)
            })
            .collect();
        let nat = s.forwarding == Forwarding::Nat;
        let fullnat = s.forwarding == Forwarding::FullNat;
        if fullnat {
            for b in &s.backends {
                fullnat_locals.extend(cfg.fullnat_locals(s, b.address));
            }
        }
        if nat {
            for b in &s.backends {
                let port = b.port.or(s.port).expect("golden NAT services have ports");
                nat_endpoints.insert((b.address, s.protocol.number(), port), services.len());
            }
        }
        services.push(Svc {
            vip: addr_key(s.vip),
            vip_ip: s.vip,
            proto: s.protocol.number(),
            port: s.port,
            nat,
            fullnat,
            tunnel: s
                .forwarding
                .is_tunnel()
                .then_some((s.forwarding, s.gue_port)),
            backends,
        });
    }
    let vips = services.iter().map(|s| s.vip_ip).collect();
    let own = cfg.own_addresses().collect();
    let client_mac = [2, 0, 0, 0, 0, 0xaa];
    let client4: IpAddr = "10.0.0.50".parse().expect("ip");
    let client6: IpAddr = "fd00::50".parse().expect("ip");
    let nat4: IpAddr = "10.0.0.101".parse().expect("ip");
    let nat6: IpAddr = "fd00::101".parse().expect("ip");
    let fullnat4: IpAddr = "10.0.0.110".parse().expect("ip");
    let local_ports = cfg.global.fullnat.local_ports.clone();
    let warm = vec![
        build_l4(
            port_mac,
            client_mac,
            client4,
            nat4,
            IPPROTO_TCP,
            41000,
            80,
            tcp::SYN,
            b"",
        ),
        build_l4(
            port_mac,
            client_mac,
            client4,
            nat4,
            IPPROTO_UDP,
            42000,
            53,
            0,
            b"query",
        ),
        build_l4(
            port_mac,
            client_mac,
            client6,
            nat6,
            IPPROTO_TCP,
            45002,
            443,
            tcp::SYN,
            b"",
        ),
        build_l4(
            port_mac,
            client_mac,
            client4,
            fullnat4,
            IPPROTO_TCP,
            52000,
            80,
            tcp::SYN,
            b"",
        ),
    ];
    World {
        timeouts: snap.timeouts,
        cfg,
        snap,
        port_mac,
        port_macs,
        services,
        vips,
        own,
        nat_endpoints,
        local_ports,
        fullnat_locals,
        warm,
    }
}

/// A TCP or UDP frame with right checksums (for the warm-up flows and tests).
#[allow(clippy::too_many_arguments)]
pub fn build_l4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let l4_len = if proto == IPPROTO_TCP { 20 } else { 8 } + payload.len();
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let mut ip = [0u8; 20];
            wire::ipv4::Repr {
                src: s.octets(),
                dst: d.octets(),
                protocol: proto,
                payload_len: l4_len as u16,
                ttl: 64,
                ident: 1,
            }
            .emit(&mut ip[..])
            .expect("room");
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let mut ip = [0u8; 40];
            wire::ipv6::Repr {
                src: s.octets(),
                dst: d.octets(),
                next_header: proto,
                payload_len: l4_len as u16,
                hop_limit: 64,
            }
            .emit(&mut ip[..])
            .expect("room");
            f.extend_from_slice(&ip);
        }
        _ => panic!("mixed families"),
    }
    let l4 = f.len();
    f.resize(l4 + l4_len, 0);
    f[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    f[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    if proto == IPPROTO_TCP {
        f[l4 + 4..l4 + 8].copy_from_slice(&1000u32.to_be_bytes());
        f[l4 + 12] = 5 << 4;
        f[l4 + 13] = flags;
        f[l4 + 14..l4 + 16].copy_from_slice(&8192u16.to_be_bytes());
        f[l4 + 20..].copy_from_slice(payload);
    } else {
        f[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        f[l4 + 8..].copy_from_slice(payload);
    }
    fix_checksums(&mut f);
    f
}

/// What an independent reading of a frame finds at L3/L4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip {
    pub v6: bool,
    /// Offset of the IP header.
    pub l3: usize,
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    /// Offset of the upper-layer header (or of fragment data).
    pub l4: usize,
    /// End of the IP packet (Ethernet padding after it is not part of it).
    pub end: usize,
    pub fragment: bool,
    /// Source and destination port of a TCP/UDP packet that is not a later fragment.
    pub ports: Option<(u16, u16)>,
}

/// Reads the IP layer of a frame, or `None` if it has none that parses. Checksums are not
/// looked at.
pub fn parse_ip(frame: &[u8]) -> Option<Ip> {
    let l2 = wire::parse_l2(frame).ok()?;
    let l3 = l2.l3_offset;
    let rest = frame.get(l3..)?;
    let mut ip = match l2.ethertype {
        ETHERTYPE_IPV4 => {
            let p = Ipv4Packet::new_checked(rest).ok()?;
            Ip {
                v6: false,
                l3,
                src: addr_key(IpAddr::V4(p.src_ip())),
                dst: addr_key(IpAddr::V4(p.dst_ip())),
                proto: p.protocol(),
                l4: l3 + p.header_len(),
                end: l3 + usize::from(p.total_len()),
                fragment: p.more_frags() || p.frag_offset() != 0,
                ports: None,
            }
        }
        ETHERTYPE_IPV6 => {
            let p = Ipv6Packet::new_checked(rest).ok()?;
            let ul = p.upper_layer().ok()?;
            Ip {
                v6: true,
                l3,
                src: p.src_addr(),
                dst: p.dst_addr(),
                proto: ul.protocol,
                l4: l3 + ul.offset,
                end: l3 + p.total_len(),
                fragment: ul.fragment.is_some(),
                ports: None,
            }
        }
        _ => return None,
    };
    let later_fragment = ip.fragment && !is_first_fragment(frame, &ip);
    if matches!(ip.proto, IPPROTO_TCP | IPPROTO_UDP) && !later_fragment && ip.end >= ip.l4 + 4 {
        let s = &frame[ip.l4..];
        ip.ports = Some((
            u16::from_be_bytes([s[0], s[1]]),
            u16::from_be_bytes([s[2], s[3]]),
        ));
    }
    Some(ip)
}

fn is_first_fragment(frame: &[u8], ip: &Ip) -> bool {
    if ip.v6 {
        Ipv6Packet::new_checked(&frame[ip.l3..])
            .ok()
            .and_then(|p| p.upper_layer().ok())
            .and_then(|u| u.fragment)
            .is_some_and(|f| f.offset == 0)
    } else {
        Ipv4Packet::new_checked(&frame[ip.l3..]).is_ok_and(|p| p.frag_offset() == 0)
    }
}

fn v4(a: &Addr) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

/// A frame's address with its family, as the world's sets key it.
fn ip_of(a: &Addr, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(*a)
    } else {
        IpAddr::from(v4(a))
    }
}

/// Whether the upper-layer checksum of an IP frame is right: `None` when there is none to
/// check (a fragment, another protocol, a header that does not parse).
pub fn l4_checksum_ok(frame: &[u8]) -> Option<bool> {
    let ip = parse_ip(frame)?;
    if ip.fragment {
        return None;
    }
    let seg = frame.get(ip.l4..ip.end)?;
    let ok = match (ip.proto, ip.v6) {
        (IPPROTO_TCP, false) => TcpPacket::new_checked(seg)
            .ok()?
            .verify_checksum_v4(&v4(&ip.src), &v4(&ip.dst)),
        (IPPROTO_TCP, true) => TcpPacket::new_checked(seg)
            .ok()?
            .verify_checksum_v6(&ip.src, &ip.dst),
        (IPPROTO_UDP, false) => UdpPacket::new_checked(seg)
            .ok()?
            .verify_checksum_v4(&v4(&ip.src), &v4(&ip.dst)),
        (IPPROTO_UDP, true) => UdpPacket::new_checked(seg)
            .ok()?
            .verify_checksum_v6(&ip.src, &ip.dst),
        (IPPROTO_ICMP, false) => Icmpv4Packet::new_checked(seg).ok()?.verify_checksum(),
        (IPPROTO_ICMPV6, true) => Icmpv6Packet::new_checked(seg)
            .ok()?
            .verify_checksum(&ip.src, &ip.dst),
        _ => return None,
    };
    Some(ok)
}

/// `input`, a frame with an ICMP(v6) error, as the pipeline may forward it to fit a link:
/// its IP packet cut to `ip_len` bytes, the IP length, IPv4 header checksum and ICMP checksum
/// made right. `None` when `input` is no ICMP error longer than that, or when `ip_len` would
/// cut into the quoted packet's headers and first 8 bytes.
pub fn cut_error(input: &[u8], ip_len: usize) -> Option<Vec<u8>> {
    let ip = parse_ip(input)?;
    let icmp = if ip.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    if ip.fragment || ip.proto != icmp || ip.l3 + ip_len >= ip.end {
        return None;
    }
    let q = quote(input.get(ip.l4 + 8..ip.end)?, ip.v6)?;
    if ip.l3 + ip_len < ip.l4 + 8 + q.l4 + 8 {
        return None;
    }
    let mut cut = input[..ip.l3 + ip_len].to_vec();
    let (at, len) = if ip.v6 {
        (ip.l3 + 4, ip_len - 40)
    } else {
        (ip.l3 + 2, ip_len)
    };
    cut[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
    fix_checksums(&mut cut);
    Some(cut)
}

/// What the oracle reads of an ICMP error's quote.
struct Quoted {
    proto: u8,
    src: Addr,
    dst: Addr,
    sport: u16,
    dport: u16,
    /// Offset of the TCP/UDP header in the quote.
    l4: usize,
}

/// A quoted TCP/UDP packet's addresses and ports, read independently of the pipeline: the IP
/// header (IPv6: through the extension headers) and 8 bytes of TCP/UDP must be in the quote.
fn quote(q: &[u8], v6: bool) -> Option<Quoted> {
    let (proto, l4, src, dst) = if v6 {
        if q.len() < 40 || q[0] >> 4 != 6 {
            return None;
        }
        let (mut nh, mut off) = (q[6], 40);
        for _ in 0..8 {
            let len = match nh {
                0 | 43 | 60 => (usize::from(*q.get(off + 1)?) + 1) * 8,
                44 => {
                    if u16::from_be_bytes([*q.get(off + 2)?, *q.get(off + 3)?]) & 0xfff8 != 0 {
                        return None;
                    }
                    8
                }
                51 => (usize::from(*q.get(off + 1)?) + 2) * 4,
                _ => break,
            };
            nh = *q.get(off)?;
            off += len;
        }
        let mut src = [0; 16];
        let mut dst = [0; 16];
        src.copy_from_slice(&q[8..24]);
        dst.copy_from_slice(&q[24..40]);
        (nh, off, src, dst)
    } else {
        if q.len() < 20 || q[0] >> 4 != 4 || u16::from_be_bytes([q[6], q[7]]) & 0x1fff != 0 {
            return None;
        }
        let mut src = [0; 16];
        let mut dst = [0; 16];
        src[..4].copy_from_slice(&q[12..16]);
        dst[..4].copy_from_slice(&q[16..20]);
        (q[9], usize::from(q[0] & 15) * 4, src, dst)
    };
    if !matches!(proto, IPPROTO_TCP | IPPROTO_UDP) || q.len() < l4 + 8 {
        return None;
    }
    Some(Quoted {
        proto,
        src,
        dst,
        sport: u16::from_be_bytes([q[l4], q[l4 + 1]]),
        dport: u16::from_be_bytes([q[l4 + 2], q[l4 + 3]]),
        l4,
    })
}

/// Whether the IPv4 header checksum of an IPv4 frame is right (`None` for anything else).
pub fn ipv4_checksum_ok(frame: &[u8]) -> Option<bool> {
    let ip = parse_ip(frame)?;
    if ip.v6 {
        return None;
    }
    Some(
        Ipv4Packet::new_checked(&frame[ip.l3..])
            .ok()?
            .verify_checksum(),
    )
}

/// Rewrites the IPv4 header checksum and the TCP / UDP / ICMP checksum of a frame so they are
/// right (fragments: the IPv4 header only). Leaves anything it cannot parse alone.
pub fn fix_checksums(frame: &mut [u8]) {
    let Some(ip) = parse_ip(frame) else { return };
    if !ip.v6 {
        Ipv4Packet::new_unchecked(&mut frame[ip.l3..]).fill_checksum();
    }
    if ip.fragment {
        return;
    }
    let seg = &mut frame[ip.l4..ip.end];
    match (ip.proto, ip.v6) {
        (IPPROTO_TCP, false) => {
            if let Ok(mut t) = TcpPacket::new_checked(seg) {
                t.fill_checksum_v4(&v4(&ip.src), &v4(&ip.dst));
            }
        }
        (IPPROTO_TCP, true) => {
            if let Ok(mut t) = TcpPacket::new_checked(seg) {
                t.fill_checksum_v6(&ip.src, &ip.dst);
            }
        }
        (IPPROTO_UDP, false) => {
            if let Ok(mut u) = UdpPacket::new_checked(seg) {
                u.fill_checksum_v4(&v4(&ip.src), &v4(&ip.dst));
            }
        }
        (IPPROTO_UDP, true) => {
            if let Ok(mut u) = UdpPacket::new_checked(seg) {
                u.fill_checksum_v6(&ip.src, &ip.dst);
            }
        }
        (IPPROTO_ICMP, false) => {
            if let Ok(mut i) = Icmpv4Packet::new_checked(seg) {
                i.fill_checksum();
            }
        }
        (IPPROTO_ICMPV6, true) => {
            if let Ok(mut i) = Icmpv6Packet::new_checked(seg) {
                i.fill_checksum(&ip.src, &ip.dst);
            }
        }
        _ => {}
    }
}

impl World {
    /// The service for a destination, exact port first (as the config means it).
    fn service(&self, dst: IpAddr, proto: u8, port: u16) -> Option<&Svc> {
        let on = |want: Option<u16>| {
            self.services
                .iter()
                .find(|s| s.vip_ip == dst && s.proto == proto && s.port == want)
        };
        on(Some(port)).or_else(|| on(None))
    }

    /// Fresh pipelines for workers 0..`workers`, with the NAT warm-up flows in them: each
    /// warm-up frame arrives at worker 0 and is handed to its owner.
    pub fn pipelines(&self, workers: u16, capacity: usize) -> Vec<Pipeline> {
        let mut pipes: Vec<Pipeline> = (0..workers)
            .map(|i| {
                let mut p = Pipeline::new(WorkerIdx::new(i), workers, capacity, LOCAL_SEED);
                p.now_ms = 1_000;
                p
            })
            .collect();
        for f in &self.warm {
            let mut fr = VecFrame::new(f);
            pipes[0].counters.rx += 1;
            let mut v = pipes[0].process(&self.snap, PortIdx::new(0), &mut fr);
            pipes[0].account(v);
            if let Verdict::Handoff { worker } = v {
                let owner = &mut pipes[worker.index()];
                owner.counters.handoff_in += 1;
                v = owner.process(&self.snap, PortIdx::new(0), &mut fr);
                owner.account(v);
            }
            assert!(
                matches!(v, Verdict::Forward { .. }),
                "warm-up frame not forwarded: {v:?}"
            );
        }
        pipes
    }

    /// Runs one received frame through `pipe` and checks the oracle. Returns the verdict and
    /// the frame as the pipeline left it.
    pub fn step(&self, pipe: &mut Pipeline, input: &[u8]) -> (Verdict, Vec<u8>) {
        let mut fr = VecFrame::new(input);
        pipe.counters.rx += 1;
        let v = pipe.process(&self.snap, PortIdx::new(0), &mut fr);
        pipe.account(v);
        let out = fr.to_vec();
        self.check(input, v, &out);
        self.check_books(pipe);
        (v, out)
    }

    /// A frame handed over by another worker: processed by its owner, which must not hand it
    /// on again.
    pub fn step_handed_over(&self, owner: &mut Pipeline, input: &[u8]) -> (Verdict, Vec<u8>) {
        let mut fr = VecFrame::new(input);
        owner.counters.handoff_in += 1;
        let v = owner.process(&self.snap, PortIdx::new(0), &mut fr);
        assert!(
            !matches!(v, Verdict::Handoff { .. }),
            "the owner handed a handed-over frame on: {v:?}\n{}",
            hex(input)
        );
        owner.account(v);
        let out = fr.to_vec();
        self.check(input, v, &out);
        self.check_books(owner);
        (v, out)
    }

    /// Books balance and the flow table keeps its bound.
    pub fn check_books(&self, pipe: &Pipeline) {
        assert!(
            pipe.counters.balanced(),
            "books do not balance: {:?}",
            pipe.counters
        );
        assert!(
            pipe.flows.len() <= pipe.flows.capacity(),
            "flow table over its bound: {} > {}",
            pipe.flows.len(),
            pipe.flows.capacity()
        );
        // Eviction scores the copies of ages and states in the buckets' heads: they must be
        // the entries' own.
        assert_eq!(pipe.flows.stale_head(), None, "a flow-table head is stale");
        // Every entry made is live, evicted or expired (backends never change here, so no
        // flow is rescheduled).
        let c = &pipe.counters;
        assert_eq!(
            c.flows_created,
            pipe.flows.len() as u64 + c.flows_evicted + c.flows_expired,
            "flow counters do not add up: {c:?}, {} live",
            pipe.flows.len()
        );
    }

    /// The oracle for one verdict.
    pub fn check(&self, input: &[u8], v: Verdict, out: &[u8]) {
        match v {
            Verdict::Forward { port } => {
                let mac = self
                    .port_macs
                    .get(port.index())
                    .expect("forward to a port that does not exist");
                self.check_forward(input, out, mac);
            }
            Verdict::Reply => self.check_reply(input, out),
            Verdict::SlowPath | Verdict::Handoff { .. } => {
                assert!(
                    out == input,
                    "{v:?} changed the frame\n in  {}\n out {}",
                    hex(input),
                    hex(out)
                );
            }
            Verdict::Drop(_) => {}
        }
    }

    fn check_forward(&self, input: &[u8], out: &[u8], port_mac: &[u8; 6]) {
        let ctx = || format!("\n in  {}\n out {}", hex(input), hex(out));
        if let Some(svc) = self.tunnel_service(input) {
            self.check_tunnel(input, out, svc, port_mac);
            return;
        }
        let cut;
        let input = match parse_ip(out) {
            Some(o) if out.len() < input.len() => {
                cut = cut_error(input, o.end - o.l3)
                    .unwrap_or_else(|| panic!("a forwarded frame shrank{}", ctx()));
                &cut[..]
            }
            _ => input,
        };
        assert_eq!(
            out.len(),
            input.len(),
            "a forwarded frame changed length{}",
            ctx()
        );
        let ip = parse_ip(input).unwrap_or_else(|| panic!("forwarded a non-IP frame{}", ctx()));
        let o = parse_ip(out).unwrap_or_else(|| panic!("forwarded frame does not parse{}", ctx()));
        assert!(!ip.fragment, "forwarded a fragment{}", ctx());
        assert_eq!(
            &out[6..12],
            port_mac,
            "source MAC is not the port's{}",
            ctx()
        );
        assert_eq!(
            ipv4_checksum_ok(input),
            Some(true).filter(|_| !ip.v6),
            "forwarded an IPv4 header with a wrong checksum{}",
            ctx()
        );
        if !ip.v6 {
            assert_eq!(
                ipv4_checksum_ok(out),
                Some(true),
                "IPv4 checksum broken{}",
                ctx()
            );
        }
        if l4_checksum_ok(input) == Some(true) {
            assert_eq!(
                l4_checksum_ok(out),
                Some(true),
                "L4 checksum broken{}",
                ctx()
            );
        }
        if matches!(
            (ip.proto, ip.v6),
            (IPPROTO_ICMP, false) | (IPPROTO_ICMPV6, true)
        ) {
            self.check_icmp_error_forward(input, out, &ip);
            return;
        }
        let (sport, dport) = ip
            .ports
            .unwrap_or_else(|| panic!("forwarded without ports{}", ctx()));
        let (osport, odport) = o.ports.expect("ports");
        // Bytes the rewrite may touch: MACs, IPv4 checksum, one address, one port, L4 checksum.
        let csum_at = if ip.proto == IPPROTO_TCP {
            ip.l4 + 16
        } else {
            ip.l4 + 6
        };
        let same_except = |addr: std::ops::Range<usize>, port: std::ops::Range<usize>| {
            (12..input.len()).all(|i| {
                input[i] == out[i]
                    || addr.contains(&i)
                    || port.contains(&i)
                    || (!ip.v6 && (ip.l3 + 10..ip.l3 + 12).contains(&i))
                    || (csum_at..csum_at + 2).contains(&i)
            })
        };
        let (src, dst) = (ip_of(&ip.src, ip.v6), ip_of(&ip.dst, ip.v6));
        // Both addresses (FullNAT rewrites both).
        let addrs = if ip.v6 {
            ip.l3 + 8..ip.l3 + 40
        } else {
            ip.l3 + 12..ip.l3 + 20
        };
        if self.vips.contains(&dst) {
            let svc = self
                .service(dst, ip.proto, dport)
                .unwrap_or_else(|| panic!("forwarded to a VIP port without service{}", ctx()));
            let dst_mac: [u8; 6] = out[0..6].try_into().expect("mac");
            let b = svc
                .backends
                .iter()
                .find(|b| b.2 == dst_mac)
                .unwrap_or_else(|| panic!("forwarded to a MAC not of this service{}", ctx()));
            if svc.fullnat {
                assert_eq!(
                    o.dst,
                    b.0,
                    "FullNAT destination is not the backend's{}",
                    ctx()
                );
                assert_eq!(odport, b.1.unwrap_or(dport), "FullNAT port{}", ctx());
                self.check_local(o.src, osport, ip.v6, &ctx);
                assert!(
                    same_except(addrs, ip.l4..ip.l4 + 4),
                    "FullNAT changed more than it should{}",
                    ctx()
                );
                return;
            }
            if svc.nat {
                assert_eq!(o.dst, b.0, "NAT destination is not the backend's{}", ctx());
                assert_eq!(odport, b.1.unwrap_or(dport), "NAT port{}", ctx());
                assert_eq!(
                    (o.src, osport),
                    (ip.src, sport),
                    "NAT changed the source{}",
                    ctx()
                );
                let (a, p) = if ip.v6 {
                    (ip.l3 + 24..ip.l3 + 40, ip.l4 + 2..ip.l4 + 4)
                } else {
                    (ip.l3 + 16..ip.l3 + 20, ip.l4 + 2..ip.l4 + 4)
                };
                assert!(
                    same_except(a, p),
                    "NAT changed more than it should{}",
                    ctx()
                );
            } else {
                assert!(
                    out[12..] == input[12..],
                    "DSR changed more than the MACs{}",
                    ctx()
                );
            }
        } else if self.fullnat_locals.contains(&dst) && self.local_ports.contains(&dport) {
            let svc = self
                .services
                .iter()
                .filter(|s| s.fullnat && s.proto == ip.proto)
                .find(|s| {
                    s.vip == o.src
                        && s.port == Some(osport)
                        && s.backends
                            .iter()
                            .any(|b| b.0 == ip.src && b.1.or(s.port) == Some(sport))
                })
                .unwrap_or_else(|| {
                    panic!(
                        "a FullNAT reply leaves as a VIP:port whose service has not this backend{}",
                        ctx()
                    )
                });
            let _ = svc;
            assert!(
                same_except(addrs, ip.l4..ip.l4 + 4),
                "FullNAT's way back changed more than it should{}",
                ctx()
            );
        } else if let Some(&si) = self.nat_endpoints.get(&(src, ip.proto, sport)) {
            let svc = &self.services[si];
            assert_eq!(o.src, svc.vip, "a NAT reply leaves from its VIP{}", ctx());
            assert_eq!(
                Some(osport),
                svc.port,
                "a NAT reply leaves from the VIP's port{}",
                ctx()
            );
            assert_eq!(
                (o.dst, odport),
                (ip.dst, dport),
                "NAT reply changed the client{}",
                ctx()
            );
            let (a, p) = if ip.v6 {
                (ip.l3 + 8..ip.l3 + 24, ip.l4..ip.l4 + 2)
            } else {
                (ip.l3 + 12..ip.l3 + 16, ip.l4..ip.l4 + 2)
            };
            assert!(
                same_except(a, p),
                "un-NAT changed more than it should{}",
                ctx()
            );
        } else {
            panic!(
                "forwarded traffic that is neither for a VIP nor a NAT reply{}",
                ctx()
            );
        }
    }

    /// The tunnel service a frame is VIP traffic of: a TCP/UDP packet to it, or an ICMP(v6)
    /// error to its VIP quoting one of its flows.
    fn tunnel_service(&self, input: &[u8]) -> Option<&Svc> {
        let ip = parse_ip(input)?;
        let dst = ip_of(&ip.dst, ip.v6);
        if !self.vips.contains(&dst) {
            return None;
        }
        let svc = match (ip.proto, ip.v6) {
            (IPPROTO_ICMP, false) | (IPPROTO_ICMPV6, true) => {
                let q = quote(input.get(ip.l4 + 8..ip.end)?, ip.v6)?;
                self.service(dst, q.proto, q.sport)?
            }
            _ => self.service(dst, ip.proto, ip.ports?.1)?,
        };
        svc.tunnel.is_some().then_some(svc)
    }

    /// A frame forwarded through a tunnel: see the module documentation.
    fn check_tunnel(&self, input: &[u8], out: &[u8], svc: &Svc, port_mac: &[u8; 6]) {
        let ctx = || format!("\n in  {}\n out {}", hex(input), hex(out));
        let (mode, gue_port) = svc.tunnel.expect("a tunnel service");
        let ip = parse_ip(input).expect("tunnel_service parsed it");
        assert!(!ip.fragment, "tunnelled a fragment{}", ctx());
        if !ip.v6 {
            assert_eq!(
                ipv4_checksum_ok(input),
                Some(true),
                "tunnelled an IPv4 header with a wrong checksum{}",
                ctx()
            );
        }
        let dst_mac: [u8; 6] = out[0..6].try_into().expect("mac");
        let b = svc
            .backends
            .iter()
            .find(|b| b.2 == dst_mac)
            .unwrap_or_else(|| panic!("tunnelled to a MAC not of this service{}", ctx()));
        assert_eq!(&out[6..12], port_mac, "source MAC{}", ctx());
        assert_eq!(
            &out[12..ip.l3 - 2],
            &input[12..ip.l3 - 2],
            "the VLAN tags changed{}",
            ctx()
        );
        let o = parse_ip(out).unwrap_or_else(|| panic!("the outer header does not parse{}", ctx()));
        assert_eq!(
            o.l3,
            ip.l3,
            "the outer header is not where the inner was{}",
            ctx()
        );
        assert_eq!(
            o.dst,
            b.0,
            "outer destination is not the backend's{}",
            ctx()
        );
        assert!(
            self.own.contains(&ip_of(&o.src, o.v6)),
            "outer source is not an own address{}",
            ctx()
        );
        assert!(!o.fragment, "the outer header is a fragment{}", ctx());
        if !o.v6 {
            assert_eq!(
                ipv4_checksum_ok(out),
                Some(true),
                "outer IPv4 checksum{}",
                ctx()
            );
            assert_eq!(out[o.l3 + 6] & 0x40, 0x40, "outer IPv4 without DF{}", ctx());
        }
        let inner_at = match mode {
            Forwarding::Gue => {
                assert_eq!(o.proto, IPPROTO_UDP, "GUE outer protocol{}", ctx());
                let (sport, dport) = o.ports.expect("UDP ports");
                assert_eq!(dport, gue_port, "GUE port{}", ctx());
                assert!(sport >= 49152, "GUE source port not ephemeral{}", ctx());
                let udp = UdpPacket::new_checked(&out[o.l4..o.end])
                    .unwrap_or_else(|_| panic!("GUE UDP header{}", ctx()));
                assert_eq!(usize::from(udp.len()), o.end - o.l4, "UDP length{}", ctx());
                if o.v6 {
                    assert!(
                        udp.verify_checksum_v6(&o.src, &o.dst),
                        "GUE UDP checksum{}",
                        ctx()
                    );
                } else {
                    assert_eq!(
                        udp.checksum(),
                        0,
                        "GUE over IPv4 sends no UDP checksum{}",
                        ctx()
                    );
                }
                o.l4 + 8
            }
            _ => {
                let want = if ip.v6 { 41 } else { 4 };
                assert_eq!(o.proto, want, "IPIP outer protocol{}", ctx());
                o.l4
            }
        };
        assert_eq!(o.end, out.len(), "bytes after the outer packet{}", ctx());
        let cut;
        let input = if out.len() - inner_at < ip.end - ip.l3 {
            cut = cut_error(input, out.len() - inner_at)
                .unwrap_or_else(|| panic!("the inner packet shrank{}", ctx()));
            &cut[..]
        } else {
            input
        };
        let ip = parse_ip(input).expect("parsed above");
        assert_eq!(
            &out[inner_at..],
            &input[ip.l3..ip.end],
            "the inner packet changed{}",
            ctx()
        );
        // The inner packet's checksums, read again in a frame of its own.
        let mut inner = input[..ip.l3].to_vec();
        inner.extend_from_slice(&out[inner_at..]);
        if !ip.v6 {
            assert_eq!(
                ipv4_checksum_ok(&inner),
                Some(true),
                "inner IPv4 checksum{}",
                ctx()
            );
        }
        if l4_checksum_ok(input) == Some(true) {
            assert_eq!(
                l4_checksum_ok(&inner),
                Some(true),
                "inner L4 checksum{}",
                ctx()
            );
        }
    }

    /// A forwarded ICMP(v6) error: to a VIP, quoting a TCP/UDP packet from that VIP, sent to a
    /// backend of the service of the quoted VIP port; DSR leaves every byte after the MACs
    /// alone, NAT changes only the outer destination, the quoted source address and port,
    /// and the checksums over them (whose validity [`World::check_forward`] checked).
    fn check_icmp_error_forward(&self, input: &[u8], out: &[u8], ip: &Ip) {
        let ctx = || format!("\n in  {}\n out {}", hex(input), hex(out));
        let dst = ip_of(&ip.dst, ip.v6);
        if self.fullnat_locals.contains(&dst) || self.fullnat_vip(dst) {
            self.check_fullnat_error(input, out, ip);
            return;
        }
        assert!(
            self.vips.contains(&dst),
            "forwarded ICMP that is not to a VIP{}",
            ctx()
        );
        let msg = &input[ip.l4..ip.end];
        let errors: &[u8] = if ip.v6 { &[1, 2, 3, 4] } else { &[3, 11, 12] };
        assert!(
            msg.len() >= 8 && errors.contains(&msg[0]),
            "forwarded ICMP that is not an error{}",
            ctx()
        );
        let q = quote(&msg[8..], ip.v6)
            .unwrap_or_else(|| panic!("forwarded an error without a TCP/UDP quote{}", ctx()));
        assert_eq!(q.src, ip.dst, "the quote is not from the VIP{}", ctx());
        let svc = self.service(dst, q.proto, q.sport).unwrap_or_else(|| {
            panic!("forwarded an error for a VIP port without service{}", ctx())
        });
        let dst_mac: [u8; 6] = out[0..6].try_into().expect("mac");
        let b = svc
            .backends
            .iter()
            .find(|b| b.2 == dst_mac)
            .unwrap_or_else(|| panic!("forwarded an error to a MAC not of this service{}", ctx()));
        if !svc.nat {
            assert!(
                out[12..] == input[12..],
                "DSR changed an error beyond the MACs{}",
                ctx()
            );
            return;
        }
        let o = parse_ip(out).expect("checked by the caller");
        assert_eq!(
            o.dst,
            b.0,
            "NAT error's destination is not the backend{}",
            ctx()
        );
        let oq = quote(&out[o.l4 + 8..o.end], o.v6)
            .unwrap_or_else(|| panic!("translated quote does not parse{}", ctx()));
        assert_eq!(oq.src, b.0, "quoted source is not the backend{}", ctx());
        assert_eq!(
            oq.sport,
            b.1.unwrap_or(q.sport),
            "quoted source port{}",
            ctx()
        );
        assert_eq!(
            (oq.dst, oq.dport, oq.proto),
            (q.dst, q.dport, q.proto),
            "quoted client changed{}",
            ctx()
        );
        let alen = if ip.v6 { 16 } else { 4 };
        let (quote_at, l4_at) = (ip.l4 + 8, ip.l4 + 8 + q.l4);
        let qcsum = l4_at + if q.proto == IPPROTO_TCP { 16 } else { 6 };
        let allowed = [
            if ip.v6 {
                ip.l3 + 24..ip.l3 + 40
            } else {
                ip.l3 + 16..ip.l3 + 20
            },
            if ip.v6 { 0..0 } else { ip.l3 + 10..ip.l3 + 12 },
            ip.l4 + 2..ip.l4 + 4,
            if ip.v6 {
                quote_at + 8..quote_at + 8 + alen
            } else {
                quote_at + 12..quote_at + 16
            },
            if ip.v6 {
                0..0
            } else {
                quote_at + 10..quote_at + 12
            },
            l4_at..l4_at + 2,
            qcsum..qcsum + 2,
        ];
        assert!(
            (12..input.len()).all(|i| input[i] == out[i] || allowed.iter().any(|r| r.contains(&i))),
            "NAT changed more of an error than it should{}",
            ctx()
        );
    }

    /// Is `addr` the VIP of a FullNAT service?
    fn fullnat_vip(&self, addr: IpAddr) -> bool {
        self.services.iter().any(|s| s.fullnat && s.vip_ip == addr)
    }

    /// A FullNAT source: a local address of the packet's family and a local port.
    fn check_local(&self, src: Addr, sport: u16, v6: bool, ctx: &dyn Fn() -> String) {
        assert!(
            self.fullnat_locals.contains(&ip_of(&src, v6)),
            "FullNAT source is not a local address{}",
            ctx()
        );
        assert!(
            self.local_ports.contains(&sport),
            "FullNAT source port {sport} is not a local port{}",
            ctx()
        );
    }

    /// A forwarded ICMP(v6) error about a FullNAT flow: to its VIP about a reply (VIP:vport ->
    /// client), sent to a backend of the quoted port's service about backend:bport ->
    /// local:lport; or to a local address about a forwarded packet (local:lport ->
    /// backend:bport), sent to the client about client:cport -> VIP:vport of a service with
    /// that backend. Only the outer destination, the quoted addresses and ports, and the
    /// checksums over them change.
    fn check_fullnat_error(&self, input: &[u8], out: &[u8], ip: &Ip) {
        let ctx = || format!("\n in  {}\n out {}", hex(input), hex(out));
        let msg = &input[ip.l4..ip.end];
        let errors: &[u8] = if ip.v6 { &[1, 2, 3, 4] } else { &[3, 11, 12] };
        assert!(
            msg.len() >= 8 && errors.contains(&msg[0]),
            "forwarded ICMP that is not an error{}",
            ctx()
        );
        let q = quote(&msg[8..], ip.v6)
            .unwrap_or_else(|| panic!("forwarded an error without a TCP/UDP quote{}", ctx()));
        assert_eq!(
            q.src,
            ip.dst,
            "the quote is not from the error's destination{}",
            ctx()
        );
        let o = parse_ip(out).expect("checked by the caller");
        let oq = quote(&out[o.l4 + 8..o.end], o.v6)
            .unwrap_or_else(|| panic!("translated quote does not parse{}", ctx()));
        assert_eq!(oq.proto, q.proto, "quoted protocol{}", ctx());
        let dst = ip_of(&ip.dst, ip.v6);
        if self.fullnat_vip(dst) {
            let svc = self.service(dst, q.proto, q.sport).unwrap_or_else(|| {
                panic!("forwarded an error for a VIP port without service{}", ctx())
            });
            let b = svc
                .backends
                .iter()
                .find(|b| b.0 == o.dst && out[0..6] == b.2)
                .unwrap_or_else(|| panic!("an error sent to no backend of the service{}", ctx()));
            assert_eq!(
                (oq.src, oq.sport),
                (b.0, b.1.unwrap_or(q.sport)),
                "quoted backend{}",
                ctx()
            );
            self.check_local(oq.dst, oq.dport, ip.v6, &ctx);
        } else {
            assert!(
                self.local_ports.contains(&q.sport),
                "quoted local port{}",
                ctx()
            );
            let svc = self
                .services
                .iter()
                .find(|s| {
                    s.fullnat
                        && s.vip == oq.dst
                        && s.port == Some(oq.dport)
                        && s.backends.iter().any(|b| b.0 == q.dst)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "an error sent about no FullNAT service of the quoted backend{}",
                        ctx()
                    )
                });
            let _ = svc;
            assert_eq!(o.dst, oq.src, "sent to the quoted client{}", ctx());
        }
        let alen = if ip.v6 { 16 } else { 4 };
        let (quote_at, l4_at) = (ip.l4 + 8, ip.l4 + 8 + q.l4);
        let qcsum = l4_at + if q.proto == IPPROTO_TCP { 16 } else { 6 };
        let qaddrs = if ip.v6 {
            quote_at + 8..quote_at + 8 + 2 * alen
        } else {
            quote_at + 10..quote_at + 20
        };
        let allowed = [
            if ip.v6 {
                ip.l3 + 24..ip.l3 + 40
            } else {
                ip.l3 + 16..ip.l3 + 20
            },
            if ip.v6 { 0..0 } else { ip.l3 + 10..ip.l3 + 12 },
            ip.l4 + 2..ip.l4 + 4,
            qaddrs,
            l4_at..l4_at + 4,
            qcsum..qcsum + 2,
        ];
        assert!(
            (12..input.len()).all(|i| input[i] == out[i] || allowed.iter().any(|r| r.contains(&i))),
            "FullNAT changed more of an error than it should{}",
            ctx()
        );
    }

    fn check_reply(&self, input: &[u8], out: &[u8]) {
        let ctx = || format!("\n in  {}\n out {}", hex(input), hex(out));
        assert_eq!(
            &out[0..6],
            &input[6..12],
            "a reply goes back to the sender's MAC{}",
            ctx()
        );
        assert_eq!(
            &out[6..12],
            &self.port_mac,
            "a reply comes from the port's MAC{}",
            ctx()
        );
        assert!(
            out.len() <= input.len() + 48,
            "a reply more than one header longer than its request{}",
            ctx()
        );
        let l2 = wire::parse_l2(input).expect("a reply to a frame that parsed");
        let ol2 = wire::parse_l2(out).unwrap_or_else(|_| panic!("reply has no L2{}", ctx()));
        assert_eq!(ol2, l2, "a reply keeps the VLAN tags{}", ctx());
        let l3 = l2.l3_offset;
        if l2.ethertype == ETHERTYPE_ARP {
            let q = ArpPacket::new_checked(&input[l3..]).expect("request parsed");
            let a = ArpPacket::new_checked(&out[l3..])
                .unwrap_or_else(|_| panic!("ARP reply does not parse{}", ctx()));
            assert_eq!(a.operation(), wire::arp::OP_REPLY, "{}", ctx());
            let spa = IpAddr::from(a.sender_proto_addr());
            assert!(
                self.vips.contains(&spa) || self.own.contains(&spa),
                "ARP reply for an address that is not ours{}",
                ctx()
            );
            assert_eq!(a.sender_hw_addr(), self.port_mac, "{}", ctx());
            assert_eq!(a.target_hw_addr(), q.sender_hw_addr(), "{}", ctx());
            assert_eq!(a.target_proto_addr(), q.sender_proto_addr(), "{}", ctx());
            return;
        }
        let ip = parse_ip(input).unwrap_or_else(|| panic!("replied to a non-IP frame{}", ctx()));
        let o = parse_ip(out).unwrap_or_else(|| panic!("reply does not parse{}", ctx()));
        assert!(o.end <= out.len(), "{}", ctx());
        assert!(
            self.vips.contains(&ip_of(&o.src, o.v6)) || self.own.contains(&ip_of(&o.src, o.v6)),
            "a reply from an address that is not ours{}",
            ctx()
        );
        let all_nodes: Addr = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let want_dst = if ip.v6 && ip.src == [0; 16] {
            all_nodes
        } else {
            ip.src
        };
        assert_eq!(o.dst, want_dst, "a reply goes back to the sender{}", ctx());
        if !o.v6 {
            assert_eq!(
                ipv4_checksum_ok(out),
                Some(true),
                "reply IPv4 checksum{}",
                ctx()
            );
        }
        assert_eq!(
            l4_checksum_ok(out),
            Some(true),
            "reply L4 checksum{}",
            ctx()
        );
        let seg = &out[o.l4..o.end];
        match (o.proto, o.v6) {
            (IPPROTO_TCP, _) => {
                let t = TcpPacket::new_checked(seg).expect("checked above");
                assert_eq!(
                    t.flags(),
                    tcp::RST | tcp::ACK,
                    "only RST|ACK is built{}",
                    ctx()
                );
                let q = TcpPacket::new_checked(&input[ip.l4..ip.end]).expect("a TCP request");
                assert_eq!(
                    q.flags() & (tcp::SYN | tcp::ACK | tcp::RST),
                    tcp::SYN,
                    "a RST for something else than a SYN{}",
                    ctx()
                );
                assert_eq!(t.seq_number(), 0, "{}", ctx());
                assert_eq!(
                    t.ack_number(),
                    q.seq_number().wrapping_add(q.segment_len() as u32),
                    "RST ack = SEG.SEQ + SEG.LEN{}",
                    ctx()
                );
            }
            (IPPROTO_ICMP, false) => {
                assert!(matches!(seg[0], 0 | 3), "ICMP type {}{}", seg[0], ctx());
            }
            (IPPROTO_ICMPV6, true) => {
                assert!(
                    matches!(seg[0], 1 | 2 | 129 | 136),
                    "ICMPv6 type {}{}",
                    seg[0],
                    ctx()
                );
            }
            _ => panic!("a reply of an unexpected kind{}", ctx()),
        }
    }
}

/// Runs one frame through fresh pipelines: as it is, and with its checksums fixed.
pub fn run_frame(data: &[u8]) {
    let w = world();
    let mut pipes = w.pipelines(1, FLOWS);
    w.step(&mut pipes[0], data);
    let mut fixed = data.to_vec();
    fix_checksums(&mut fixed);
    if fixed != data {
        let mut pipes = w.pipelines(1, FLOWS);
        w.step(&mut pipes[0], &fixed);
    }
}

/// Flow-table capacity of each worker in the sequence target: small, so floods evict.
pub const SEQ_FLOWS: usize = 8;

/// Splits a sequence input into records: `ctl: u8, len: u16 (big-endian), frame[len]` (a
/// short last record takes what is left). `ctl` bit 0: the receiving worker; bit 1: fix the
/// checksums first; bits 2..8: milliseconds to advance the clock, in units of 500.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&ctl, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (rest.len(), &[][..]),
        };
        let len = len.min(rest.len());
        let (frame, rest) = rest.split_at(len);
        data = rest;
        Some((ctl, frame))
    })
}

/// Encodes frames as a sequence input (for seeds and tests).
pub fn encode_records<'a>(frames: impl IntoIterator<Item = (u8, &'a [u8])>) -> Vec<u8> {
    let mut v = Vec::new();
    for (ctl, f) in frames {
        v.push(ctl);
        v.extend_from_slice(&(f.len() as u16).to_be_bytes());
        v.extend_from_slice(f);
    }
    v
}

/// Runs a sequence of frames through two workers of two, with small flow tables, a clock
/// that moves, the flow table's ageing as the worker runs it, and NAT hand-offs delivered to
/// their owner. Checks the oracle after every frame.
pub fn run_sequence(data: &[u8]) {
    let w = world();
    let mut pipes = w.pipelines(2, SEQ_FLOWS);
    for (ctl, frame) in records(data) {
        let rx = usize::from(ctl & 1);
        let advance = u32::from(ctl >> 2) * 500;
        for p in &mut pipes {
            p.now_ms = p.now_ms.wrapping_add(advance);
        }
        let mut bytes = frame.to_vec();
        if ctl & 2 != 0 {
            fix_checksums(&mut bytes);
        }
        let (v, _) = w.step(&mut pipes[rx], &bytes);
        if let Verdict::Handoff { worker } = v {
            let owner = worker.index();
            assert!(owner < 2 && owner != rx, "handoff to {owner} from {rx}");
            w.step_handed_over(&mut pipes[owner], &bytes);
        }
        for p in &mut pipes {
            let now = p.now_ms;
            p.counters.flows_expired += p.flows.expire_step(now, 4, &w.timeouts) as u64;
            p.counters.flows_active = p.flows.len() as u64;
            w.check_books(p);
        }
    }
    let handed: u64 = pipes.iter().map(|p| p.counters.handoff_out).sum();
    let received: u64 = pipes.iter().map(|p| p.counters.handoff_in).sum();
    assert_eq!(handed, received, "every handed-over frame was received");
}

/// Lower-case hex, for messages.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus/seed")
            .join(target);
        let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (run make_seeds.py)", dir.display()))
            .map(|e| std::fs::read(e.expect("entry").path()).expect("seed"))
            .collect();
        v.sort();
        v
    }

    fn kind(v: Verdict) -> &'static str {
        match v {
            Verdict::Forward { .. } => "forward",
            Verdict::Reply => "reply",
            Verdict::Handoff { .. } => "handoff",
            Verdict::SlowPath => "slowpath",
            Verdict::Drop(r) => r.name(),
        }
    }

    /// The seed corpus passes the oracle, and reaches every kind of verdict (so the oracle
    /// is not vacuous).
    #[test]
    fn seeds_pass_and_reach_every_verdict() {
        let w = world();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for s in seeds("pipeline") {
            run_frame(&s);
            let mut pipes = w.pipelines(2, FLOWS);
            let (v, _) = w.step(&mut pipes[1], &s);
            *seen.entry(kind(v)).or_default() += 1;
        }
        for s in seeds("pipeline_seq") {
            run_sequence(&s);
        }
        println!("verdicts over the seeds: {seen:?}");
        for k in [
            "forward",
            "reply",
            "handoff",
            "slowpath",
            "not_vip",
            "malformed_ipv4",
        ] {
            assert!(seen.contains_key(k), "no seed reaches {k}: {seen:?}");
        }
    }

    fn fails(f: impl FnOnce()) -> bool {
        catch_unwind(AssertUnwindSafe(f)).is_err()
    }

    /// Tunnelled output passes only as what the golden case says it is: VIP traffic in a
    /// right outer header, the inner packet intact.
    #[test]
    fn oracle_takes_tunnels_and_catches_broken_ones() {
        let w = world();
        let client_mac = [2, 0, 0, 0, 0, 0xaa];
        let c4: IpAddr = "10.0.0.50".parse().unwrap();
        let c6: IpAddr = "fd00::50".parse().unwrap();
        let fwd = Verdict::Forward {
            port: PortIdx::new(0),
        };
        for (src, vip, proto, dport) in [
            (c4, "10.0.0.125", IPPROTO_TCP, 80),
            (c4, "10.0.0.126", IPPROTO_TCP, 80),
            (c4, "10.0.0.127", IPPROTO_UDP, 53),
            (c6, "fd00::125", IPPROTO_TCP, 80),
            (c6, "fd00::127", IPPROTO_TCP, 80),
        ] {
            let vip: IpAddr = vip.parse().unwrap();
            let f = build_l4(
                w.port_mac,
                client_mac,
                src,
                vip,
                proto,
                1234,
                dport,
                tcp::SYN,
                b"abc",
            );
            let mut pipes = w.pipelines(1, FLOWS);
            let (v, out) = w.step(&mut pipes[0], &f);
            assert_eq!(v, fwd, "{vip}");
            assert!(out.len() > f.len(), "{vip}: encapsulated");
            // A wrong outer destination, a changed inner byte, a frame left unencapsulated.
            let mut bad = out.clone();
            bad[14
                + if vip.is_ipv6() || vip == "10.0.0.126".parse::<IpAddr>().unwrap() {
                    39
                } else {
                    19
                }] ^= 1;
            assert!(fails(|| w.check(&f, fwd, &bad)), "{vip}: outer destination");
            let mut bad = out.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(fails(|| w.check(&f, fwd, &bad)), "{vip}: inner byte");
            let mut plain = f.clone();
            plain[0..6].copy_from_slice(&out[0..6]);
            plain[6..12].copy_from_slice(&w.port_mac);
            assert!(
                fails(|| w.check(&f, fwd, &plain)),
                "{vip}: not encapsulated"
            );
        }
    }

    /// FullNAT output passes only from a local address and port, to a backend, with nothing
    /// else changed; checksums fixed after each corruption, so that only the rule can fail.
    #[test]
    fn oracle_takes_fullnat_and_catches_broken_output() {
        let w = world();
        let client_mac = [2, 0, 0, 0, 0, 0xaa];
        let fwd = Verdict::Forward {
            port: PortIdx::new(0),
        };
        for (src, vip) in [("10.0.0.50", "10.0.0.110"), ("fd00::50", "fd00::110")] {
            let (src, vip): (IpAddr, IpAddr) = (src.parse().unwrap(), vip.parse().unwrap());
            let f = build_l4(
                w.port_mac,
                client_mac,
                src,
                vip,
                IPPROTO_TCP,
                1234,
                80,
                tcp::SYN,
                b"abc",
            );
            let mut pipes = w.pipelines(1, FLOWS);
            let (v, out) = w.step(&mut pipes[0], &f);
            assert_eq!(v, fwd, "{vip}");
            let ip = parse_ip(&out).unwrap();
            let broken = |at: usize| {
                let mut bad = out.clone();
                bad[at] ^= 1;
                fix_checksums(&mut bad);
                fails(|| w.check(&f, fwd, &bad))
            };
            let (src_at, dst_at) = if ip.v6 {
                (ip.l3 + 8, ip.l3 + 24)
            } else {
                (ip.l3 + 12, ip.l3 + 16)
            };
            assert!(
                broken(src_at + 2),
                "{vip}: a source that is not a local address"
            );
            assert!(broken(ip.l4), "{vip}: a source port outside local_ports");
            assert!(broken(dst_at + 3), "{vip}: not to the backend");
            assert!(broken(ip.l4 + 4), "{vip}: the sequence number changed");
        }
    }

    /// The oracle refuses what it must refuse.
    #[test]
    fn oracle_catches_wrong_verdicts() {
        let w = world();
        let port_mac = w.port_mac;
        let client_mac = [2, 0, 0, 0, 0, 0xaa];
        let c4: IpAddr = "10.0.0.50".parse().unwrap();
        let vip: IpAddr = "10.0.0.100".parse().unwrap();
        let other: IpAddr = "10.0.0.77".parse().unwrap();
        let syn = build_l4(
            port_mac,
            client_mac,
            c4,
            vip,
            IPPROTO_TCP,
            1234,
            80,
            tcp::SYN,
            b"",
        );
        let stray = build_l4(
            port_mac,
            client_mac,
            c4,
            other,
            IPPROTO_TCP,
            1234,
            80,
            tcp::SYN,
            b"",
        );
        let mut dsr = syn.clone();
        dsr[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x11]);
        dsr[6..12].copy_from_slice(&port_mac);
        let fwd = Verdict::Forward {
            port: PortIdx::new(0),
        };
        assert!(
            !fails(|| w.check(&syn, fwd, &dsr)),
            "a right DSR forward passes"
        );
        assert!(
            fails(|| w.check(&stray, fwd, &stray)),
            "forwarding a non-VIP frame"
        );
        let mut bad = dsr.clone();
        bad[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x21]);
        assert!(
            fails(|| w.check(&syn, fwd, &bad)),
            "forwarding to another service's MAC"
        );
        let mut bad = dsr.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(
            fails(|| w.check(&syn, fwd, &bad)),
            "DSR changing the segment"
        );
        assert!(
            fails(|| w.check(&syn, Verdict::SlowPath, &dsr)),
            "slow path changing a frame"
        );
        assert!(
            fails(|| w.check(&syn, Verdict::Reply, &dsr)),
            "a reply to the backend"
        );
        // "Fragmentation needed" from a router to the DSR VIP, quoting its reply to the client.
        let reply = build_l4(
            port_mac,
            client_mac,
            vip,
            c4,
            IPPROTO_TCP,
            80,
            1234,
            tcp::ACK,
            b"",
        );
        let mut err = syn[..14].to_vec();
        err.extend_from_slice(&[0x45, 0, 0, 56, 0, 1, 0, 0, 64, IPPROTO_ICMP, 0, 0]);
        err.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 100]);
        err.extend_from_slice(&[3, 4, 0, 0, 0, 0, 0x05, 0x78]);
        err.extend_from_slice(&reply[14..42]);
        fix_checksums(&mut err);
        let mut fwd_err = err.clone();
        fwd_err[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x11]);
        fwd_err[6..12].copy_from_slice(&port_mac);
        assert!(
            !fails(|| w.check(&err, fwd, &fwd_err)),
            "an ICMP error forwarded to the quoted flow's backend passes"
        );
        let mut bad = fwd_err.clone();
        bad[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x21]);
        assert!(
            fails(|| w.check(&err, fwd, &bad)),
            "an ICMP error to another service's backend"
        );
        let mut bad = fwd_err.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(
            fails(|| w.check(&err, fwd, &bad)),
            "DSR changing an ICMP error's quote"
        );
        let mut pipes = w.pipelines(1, 4);
        pipes[0].counters.rx += 5;
        assert!(fails(|| w.check_books(&pipes[0])), "unbalanced books");
    }

    #[test]
    fn records_round_trip() {
        let frames: [&[u8]; 3] = [b"abc", b"", &[7; 300]];
        let enc = encode_records(frames.iter().enumerate().map(|(i, f)| (i as u8, *f)));
        let dec: Vec<_> = records(&enc).collect();
        assert_eq!(dec.len(), 3);
        for (i, (ctl, f)) in dec.into_iter().enumerate() {
            assert_eq!((ctl, f), (i as u8, frames[i]));
        }
        assert_eq!(records(&[9]).collect::<Vec<_>>(), vec![(9, &[][..])]);
        assert_eq!(
            records(&[9, 0, 5, 1]).collect::<Vec<_>>(),
            vec![(9, &[1][..])]
        );
    }
}

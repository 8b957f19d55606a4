//! The kernel exception path: for each port that has one (`kernel_interface`), a TAP device
//! whose kernel interface carries the port's MAC and own addresses, so that the kernel's own
//! protocols (BGP, BFD, SSH, VRRP, ...) work on a NIC that DPDK owns.
//!
//! ```text
//! worker --own address, not ours--> slow path --dispatch--> stack (health-check replies)
//!                                                       \--> kernel interface (the rest)
//! kernel interface --its own frames--> slow path --(source is an own address)--> worker 0 -> wire
//! ```
//!
//! The split for a frame to an own address ([`dispatch`]): TCP and UDP to the health checks'
//! source ports belong to the slow path's stack (smoltcp), any other TCP/UDP port and every
//! other protocol to the kernel; ARP, neighbour discovery and ICMP go to both (the kernel
//! resolves its own neighbours; ICMP errors may quote either's packets). Nothing but frames
//! for the port's own addresses ever reaches the kernel, and nothing but frames from them
//! leaves it: VIP traffic never crosses, in either direction (each refusal is counted; a
//! frame to or from a VIP under its own name, `to_kernel_vip` / `from_kernel_vip`: the
//! workers never hand VIP traffic to the slow path, so these stay 0 by construction, and a
//! test under load checks they do).
//! The one exception is VRRP (IP protocol 112 to its group, 224.0.0.18 or ff02::12), which is
//! for keepalived on the kernel interface, both ways (counted apart); ARP the kernel sends
//! must be from an own address too, so a kernel holding a VIP (keepalived's
//! `virtual_ipaddress`) never answers for it: whether a VIP is answered is Fulcrum's
//! decision (`announce`, `ctl vrrp`).
//! Both directions go through bounded queues of the TAP device, polled by the slow path's
//! thread; what does not fit is dropped and counted, never waited for.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::process::Command;

use conf::{Config, IfAddr};
use dataplane::dpdk::{Burst, Mbuf, Mempool, RingProducer};
use dataplane::engine::KernelIo;
use dataplane::frame::Frame;
use dataplane::ids::PortIdx;
use dataplane::wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, parse_l2};
use dataplane::wire::{ArpPacket, Ipv4Packet, Ipv6Packet, is_vrrp};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// Frames through the exception path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames given to a kernel interface.
    pub to_kernel: u64,
    /// Frames for the kernel that its queue did not take (or no mbuf for a copy).
    pub to_kernel_dropped: u64,
    /// Frames the kernel sent that left by the data port (handed to worker 0).
    pub from_kernel: u64,
    /// Frames the kernel sent that the ring to worker 0 did not take.
    pub from_kernel_dropped: u64,
    /// Frames for the kernel that were not for an own address of the port nor a VIP:
    /// refused. Stays 0 unless a worker's classification and the slow path's disagree.
    pub to_kernel_refused: u64,
    /// Frames the kernel sent from an address that is not the port's own nor a VIP (another
    /// host's, a forwarded one): refused, so the kernel never forwards traffic.
    pub from_kernel_refused: u64,
    /// Frames to a VIP that reached the exception path: refused. The workers never hand VIP
    /// traffic to the slow path, so this stays 0; counted under its own name so that a
    /// test (and an operator) can see it does.
    pub to_kernel_vip: u64,
    /// Frames the kernel sent from a VIP (it holds none; a misconfigured host might):
    /// refused.
    pub from_kernel_vip: u64,
    /// VRRP adverts given to a kernel interface (included in `to_kernel`).
    pub vrrp_to_kernel: u64,
    /// VRRP adverts the kernel sent that left by the data port (included in `from_kernel`).
    pub vrrp_from_kernel: u64,
}

/// Where a frame to an own address goes (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// The slow path's stack or neighbour table only.
    Stack,
    /// The kernel only.
    Kernel,
    /// Both: each gets it.
    Both,
    /// Neither: not for an own address of the port (counted as refused).
    Refused,
}

/// Where the frame `frame` received on a port with own addresses `own` goes, given the
/// health checks' source ports (frames to those belong to the stack).
pub fn dispatch(frame: &[u8], own: &[IfAddr], health_ports: &RangeInclusive<u16>) -> Dispatch {
    let Ok(l2) = parse_l2(frame) else {
        return Dispatch::Stack;
    };
    let l3 = &frame[l2.l3_offset..];
    match l2.ethertype {
        ETHERTYPE_ARP => Dispatch::Both,
        ETHERTYPE_IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(l3) else {
                return Dispatch::Stack;
            };
            if is_vrrp(ip.protocol(), IpAddr::V4(ip.dst_ip())) {
                return Dispatch::Kernel;
            }
            if !is_own(own, IpAddr::V4(ip.dst_ip())) {
                return Dispatch::Refused;
            }
            by_protocol(ip.protocol(), ip.payload(), IPPROTO_ICMP, health_ports)
        }
        ETHERTYPE_IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(l3) else {
                return Dispatch::Stack;
            };
            let Ok(ul) = ip.upper_layer() else {
                return Dispatch::Stack;
            };
            let dst = ip.dst_ip();
            if is_vrrp(ul.protocol, IpAddr::V6(dst)) {
                return Dispatch::Kernel;
            }
            // Neighbour discovery arrives at multicast groups too (all-nodes, solicited-node).
            let nd = ul.protocol == IPPROTO_ICMPV6 && crate::neigh::nd::is_nd(l3);
            let ours = is_own(own, IpAddr::V6(dst)) || (nd && dst.is_multicast());
            if !ours {
                return Dispatch::Refused;
            }
            let l4 = l3.get(ul.offset..).unwrap_or_default();
            by_protocol(ul.protocol, l4, IPPROTO_ICMPV6, health_ports)
        }
        _ => Dispatch::Stack,
    }
}

fn by_protocol(proto: u8, l4: &[u8], icmp: u8, health_ports: &RangeInclusive<u16>) -> Dispatch {
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => match l4.get(2..4) {
            Some(p) if health_ports.contains(&u16::from_be_bytes([p[0], p[1]])) => Dispatch::Stack,
            _ => Dispatch::Kernel,
        },
        p if p == icmp => Dispatch::Both,
        _ => Dispatch::Kernel,
    }
}

fn is_own(own: &[IfAddr], addr: IpAddr) -> bool {
    own.iter().any(|a| a.addr == addr)
}

/// The source and destination of an IPv4 or IPv6 frame.
fn ip_ends(frame: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let l2 = parse_l2(frame).ok()?;
    let l3 = &frame[l2.l3_offset..];
    match l2.ethertype {
        ETHERTYPE_IPV4 => Ipv4Packet::new_checked(l3)
            .ok()
            .map(|ip| (IpAddr::V4(ip.src_ip()), IpAddr::V4(ip.dst_ip()))),
        ETHERTYPE_IPV6 => Ipv6Packet::new_checked(l3)
            .ok()
            .map(|ip| (IpAddr::V6(ip.src_ip()), IpAddr::V6(ip.dst_ip()))),
        _ => None,
    }
}

/// Whether `frame` is addressed to one of `vips`.
pub fn to_vip(frame: &[u8], vips: &[IpAddr]) -> bool {
    ip_ends(frame).is_some_and(|(_, dst)| vips.contains(&dst))
}

/// Whether `frame` comes from one of `vips`.
pub fn from_vip(frame: &[u8], vips: &[IpAddr]) -> bool {
    ip_ends(frame).is_some_and(|(src, _)| vips.contains(&src))
}

/// Every service's VIP.
fn vips(cfg: &Config) -> Vec<IpAddr> {
    cfg.services.iter().map(|s| s.vip).collect()
}

/// Whether the kernel may send `frame` out of a port with own addresses `own`: ARP from an
/// own address (or 0.0.0.0: a probe), and IP from an own address (IPv6 also from a
/// link-local or the unspecified address: neighbour discovery, MLD, router solicitations,
/// VRRP). Anything else would be the kernel forwarding, or answering for an address that is
/// not its own (a VIP keepalived put on the interface).
pub fn may_leave(frame: &[u8], own: &[IfAddr]) -> bool {
    let Ok(l2) = parse_l2(frame) else {
        return false;
    };
    let l3 = &frame[l2.l3_offset..];
    match l2.ethertype {
        ETHERTYPE_ARP => ArpPacket::new_checked(l3).is_ok_and(|arp| {
            let sender = std::net::Ipv4Addr::from(arp.sender_proto_addr());
            sender.is_unspecified() || is_own(own, IpAddr::V4(sender))
        }),
        ETHERTYPE_IPV4 => {
            Ipv4Packet::new_checked(l3).is_ok_and(|ip| is_own(own, IpAddr::V4(ip.src_ip())))
        }
        ETHERTYPE_IPV6 => Ipv6Packet::new_checked(l3).is_ok_and(|ip| {
            let src = ip.src_ip();
            src.is_unspecified() || src.is_unicast_link_local() || is_own(own, IpAddr::V6(src))
        }),
        _ => false,
    }
}

struct KernelPort {
    io: KernelIo,
    own: Vec<IfAddr>,
    /// Frames for the kernel, sent at the end of the turn.
    out: Burst,
}

/// The exception paths of every port.
pub struct Exception {
    ports: Vec<Option<KernelPort>>,
    health_ports: RangeInclusive<u16>,
    /// Every service's VIP: refusals of frames to or from one are counted apart.
    vips: Vec<IpAddr>,
    /// Instance sync's UDP port: its datagrams are the stack's, not the kernel's.
    sync_port: Option<u16>,
    pub stats: KernelStats,
}

impl Exception {
    /// Takes the engine's TAP queues and gives each kernel interface the port's own
    /// addresses, and brings it up (with `ip`, once at start).
    pub fn new(cfg: &Config, kernel: Vec<Option<KernelIo>>) -> Exception {
        let ports = kernel
            .into_iter()
            .zip(&cfg.ports)
            .map(|(io, p)| {
                let io = io?;
                configure_interface(&io.interface, &p.addresses);
                Some(KernelPort {
                    io,
                    own: p.addresses.clone(),
                    out: Burst::new(),
                })
            })
            .collect();
        Exception {
            ports,
            health_ports: cfg.global.health.source_ports.clone(),
            vips: vips(cfg),
            sync_port: cfg.global.sync.as_ref().map(|s| s.port),
            stats: KernelStats::default(),
        }
    }

    /// A reload: the services' VIPs may have changed (ports and their addresses restart).
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.vips = vips(cfg);
    }

    /// Whether some port has an exception path.
    pub fn any(&self) -> bool {
        self.ports.iter().any(Option::is_some)
    }

    /// Where a frame to an own address of `port` goes; [`Dispatch::Stack`] for a port
    /// without an exception path (what the slow path did before it existed).
    pub fn dispatch(&mut self, port: PortIdx, frame: &[u8]) -> Dispatch {
        let Some(Some(k)) = self.ports.get(port.index()) else {
            return Dispatch::Stack;
        };
        let mut d = dispatch(frame, &k.own, &self.health_ports);
        if d == Dispatch::Kernel
            && let Some(p) = self.sync_port
            && dispatch(frame, &k.own, &(p..=p)) == Dispatch::Stack
        {
            d = Dispatch::Stack;
        }
        match d {
            Dispatch::Refused if to_vip(frame, &self.vips) => self.stats.to_kernel_vip += 1,
            Dispatch::Refused => self.stats.to_kernel_refused += 1,
            Dispatch::Kernel if is_vrrp_frame(frame) => self.stats.vrrp_to_kernel += 1,
            _ => {}
        }
        d
    }

    /// Queues `m` for `port`'s kernel interface (sent by [`Exception::flush`]).
    pub fn to_kernel(&mut self, port: PortIdx, m: Mbuf) {
        let Some(Some(k)) = self.ports.get_mut(port.index()) else {
            return;
        };
        if let Err(m) = k.out.push(m) {
            send(k, &mut self.stats);
            if k.out.push(m).is_err() {
                self.stats.to_kernel_dropped += 1;
            }
        }
    }

    /// Queues a copy of `frame` for `port`'s kernel interface.
    pub fn copy_to_kernel(&mut self, pool: &Mempool, port: PortIdx, frame: &[u8]) {
        match Mbuf::from_slice(pool, frame) {
            Ok(m) => self.to_kernel(port, m),
            Err(_) => self.stats.to_kernel_dropped += 1,
        }
    }

    /// Sends what was queued for the kernel interfaces.
    pub fn flush(&mut self) {
        for k in self.ports.iter_mut().flatten() {
            send(k, &mut self.stats);
        }
    }

    /// Frames the kernel sent: each one allowed to leave is named by its port index and
    /// handed to worker 0 through `tx` (at most a burst per port and turn). Returns how many
    /// arrived.
    pub fn receive(&mut self, tx: &mut RingProducer) -> usize {
        let mut n = 0;
        let mut burst: Burst = Burst::new();
        for (i, k) in self.ports.iter_mut().enumerate() {
            let Some(k) = k else { continue };
            let got = k.io.rx.rx_burst(&mut burst);
            if got == 0 {
                continue;
            }
            n += got;
            let (own, vips, stats) = (&k.own, &self.vips, &mut self.stats);
            burst.retain(|m| {
                let leaves = may_leave(m.data(), own);
                if !leaves && from_vip(m.data(), vips) {
                    stats.from_kernel_vip += 1;
                } else if !leaves {
                    stats.from_kernel_refused += 1;
                }
                leaves
            });
            for m in burst.iter_mut() {
                m.set_port(i as u16);
            }
            let vrrp = burst.iter().filter(|m| is_vrrp_frame(m.data())).count();
            let len = burst.len();
            let sent = tx.enqueue_burst(&mut burst);
            self.stats.from_kernel += sent as u64;
            // A VRRP advert the ring did not take counts among the dropped only.
            self.stats.vrrp_from_kernel += vrrp.min(sent) as u64;
            self.stats.from_kernel_dropped += (len - sent) as u64;
            burst.clear();
        }
        n
    }
}

/// Whether an Ethernet frame is a VRRP advert (see [`is_vrrp`]).
fn is_vrrp_frame(frame: &[u8]) -> bool {
    let Ok(l2) = parse_l2(frame) else {
        return false;
    };
    let l3 = &frame[l2.l3_offset..];
    match l2.ethertype {
        ETHERTYPE_IPV4 => Ipv4Packet::new_checked(l3)
            .is_ok_and(|ip| is_vrrp(ip.protocol(), IpAddr::V4(ip.dst_ip()))),
        ETHERTYPE_IPV6 => Ipv6Packet::new_checked(l3).is_ok_and(|ip| {
            ip.upper_layer()
                .is_ok_and(|ul| is_vrrp(ul.protocol, IpAddr::V6(ip.dst_ip())))
        }),
        _ => false,
    }
}

fn send(k: &mut KernelPort, stats: &mut KernelStats) {
    let len = k.out.len();
    let sent = k.io.tx.tx_burst(&mut k.out);
    stats.to_kernel += sent as u64;
    stats.to_kernel_dropped += (len - sent) as u64;
}

/// Gives the kernel interface `name` the port's addresses and brings it up. A failure is
/// logged, not fatal: the data path does not depend on it.
fn configure_interface(name: &str, addresses: &[IfAddr]) {
    let mut steps: Vec<Vec<String>> = addresses
        .iter()
        .map(|a| {
            let mut args = vec!["addr".into(), "replace".into(), a.to_string()];
            if a.addr.is_ipv6() {
                // The workers answer neighbour solicitations for it; the kernel need not
                // probe it first.
                args.push("nodad".into());
            }
            args.extend(["dev".into(), name.into()]);
            args
        })
        .collect();
    steps.push(vec!["link".into(), "set".into(), name.into(), "up".into()]);
    for args in steps {
        match Command::new("ip").args(&args).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => tracing::warn!(
                interface = name,
                command = %format!("ip {}", args.join(" ")),
                error = %String::from_utf8_lossy(&o.stderr).trim(),
                "exception path: configuring the kernel interface failed"
            ),
            Err(e) => tracing::warn!(
                interface = name,
                error = %e,
                "exception path: cannot run `ip` to configure the kernel interface"
            ),
        }
    }
    tracing::info!(
        interface = name,
        addresses = addresses.len(),
        "exception path: kernel interface up"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Vec<IfAddr> {
        vec![
            IfAddr {
                addr: "10.0.0.2".parse().unwrap(),
                prefix_len: 24,
            },
            IfAddr {
                addr: "2001:db8::2".parse().unwrap(),
                prefix_len: 64,
            },
        ]
    }

    fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip.extend_from_slice(l4);
        let len = ip.len() as u16;
        ip[2..4].copy_from_slice(&len.to_be_bytes());
        eth(ETHERTYPE_IPV4, &ip)
    }

    fn ports(sport: u16, dport: u16) -> Vec<u8> {
        let mut l4 = sport.to_be_bytes().to_vec();
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&[0u8; 16]);
        l4
    }

    const HEALTH: RangeInclusive<u16> = 61000..=65000;

    /// An ARP reply from `sender` (at some MAC) to 10.0.0.1.
    fn arp(sender: [u8; 4]) -> Vec<u8> {
        let repr = dataplane::wire::ArpRepr {
            operation: dataplane::wire::arp::OP_REPLY,
            sender_hw_addr: [2, 0, 0, 0, 0, 2],
            sender_proto_addr: sender,
            target_hw_addr: [2, 0, 0, 0, 0, 1],
            target_proto_addr: [10, 0, 0, 1],
        };
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(&mut b).unwrap();
        eth(ETHERTYPE_ARP, &b)
    }

    /// An IPv6 packet (next header `proto`, 8 bytes of payload) from `src` to `dst`.
    fn ipv6(src: &str, dst: &str, proto: u8) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, proto, 255];
        ip.extend_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&[0u8; 8]);
        eth(ETHERTYPE_IPV6, &ip)
    }

    #[test]
    fn vrrp_adverts_cross_both_ways_and_kernel_arp_for_a_vip_does_not() {
        // keepalived's adverts from the peer, to the VRRP group: to the kernel.
        let v4 = ipv4(
            [10, 0, 0, 3],
            [224, 0, 0, 18],
            112,
            &[0x31, 51, 100, 1, 0, 0, 0, 0],
        );
        assert_eq!(dispatch(&v4, &own(), &HEALTH), Dispatch::Kernel);
        assert!(is_vrrp_frame(&v4));
        let v6 = ipv6("fe80::3", "ff02::12", 112);
        assert_eq!(dispatch(&v6, &own(), &HEALTH), Dispatch::Kernel);
        assert!(is_vrrp_frame(&v6));
        // Protocol 112 to another group, or another protocol to the VRRP group: refused.
        let other_group = ipv4([10, 0, 0, 3], [224, 0, 0, 19], 112, &[0u8; 8]);
        assert_eq!(dispatch(&other_group, &own(), &HEALTH), Dispatch::Refused);
        let udp_to_group = ipv4([10, 0, 0, 3], [224, 0, 0, 18], IPPROTO_UDP, &ports(1, 2));
        assert_eq!(dispatch(&udp_to_group, &own(), &HEALTH), Dispatch::Refused);
        assert!(!is_vrrp_frame(&udp_to_group));
        // This node's adverts leave (from its own address, IPv6 from its link-local).
        let mine = ipv4([10, 0, 0, 2], [224, 0, 0, 18], 112, &[0u8; 8]);
        assert!(may_leave(&mine, &own()));
        assert!(may_leave(&ipv6("fe80::2", "ff02::12", 112), &own()));
        // A kernel that holds the VIP (keepalived's virtual_ipaddress) neither answers ARP
        // for it nor sends from it.
        assert!(!may_leave(&arp([10, 0, 0, 100]), &own()));
        let from_vip = ipv4([10, 0, 0, 100], [224, 0, 0, 18], 112, &[0u8; 8]);
        assert!(!may_leave(&from_vip, &own()));
    }

    #[test]
    fn bgp_goes_to_the_kernel_and_check_replies_to_the_stack() {
        let bgp = ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            IPPROTO_TCP,
            &ports(40000, 179),
        );
        assert_eq!(dispatch(&bgp, &own(), &HEALTH), Dispatch::Kernel);
        let check = ipv4([10, 0, 0, 9], [10, 0, 0, 2], IPPROTO_TCP, &ports(80, 61234));
        assert_eq!(dispatch(&check, &own(), &HEALTH), Dispatch::Stack);
        let bfd = ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            IPPROTO_UDP,
            &ports(49152, 3784),
        );
        assert_eq!(dispatch(&bfd, &own(), &HEALTH), Dispatch::Kernel);
        let vrrp = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 112, &[0u8; 8]);
        assert_eq!(dispatch(&vrrp, &own(), &HEALTH), Dispatch::Kernel);
        let icmp = ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            IPPROTO_ICMP,
            &[3, 3, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(dispatch(&icmp, &own(), &HEALTH), Dispatch::Both);
        assert_eq!(
            dispatch(&eth(ETHERTYPE_ARP, &[0u8; 28]), &own(), &HEALTH),
            Dispatch::Both
        );
    }

    #[test]
    fn a_vip_frame_is_refused_both_ways() {
        let to_vip = ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 100],
            IPPROTO_TCP,
            &ports(40000, 80),
        );
        assert_eq!(dispatch(&to_vip, &own(), &HEALTH), Dispatch::Refused);
        let from_vip = ipv4(
            [10, 0, 0, 100],
            [10, 0, 0, 1],
            IPPROTO_TCP,
            &ports(80, 40000),
        );
        assert!(!may_leave(&from_vip, &own()));
        // Counted apart from other refusals.
        let vips: Vec<IpAddr> = vec!["10.0.0.100".parse().unwrap()];
        assert!(super::to_vip(&to_vip, &vips) && !super::from_vip(&to_vip, &vips));
        assert!(super::from_vip(&from_vip, &vips) && !super::to_vip(&from_vip, &vips));
        let from_own = ipv4(
            [10, 0, 0, 2],
            [10, 0, 0, 1],
            IPPROTO_TCP,
            &ports(179, 40000),
        );
        assert!(may_leave(&from_own, &own()));
        assert!(
            may_leave(&arp([10, 0, 0, 2]), &own()),
            "the kernel's own ARP"
        );
        assert!(may_leave(&arp([0, 0, 0, 0]), &own()), "a probe");
        assert!(
            !may_leave(&eth(ETHERTYPE_ARP, &[0u8; 28]), &own()),
            "not ARP/IPv4"
        );
        assert!(!may_leave(&eth(0x88cc, &[0u8; 28]), &own()), "LLDP");
    }

    #[test]
    fn ipv6_from_link_local_may_leave_but_not_from_others() {
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        let ll: std::net::Ipv6Addr = "fe80::1".parse().unwrap();
        let other: std::net::Ipv6Addr = "2001:db8::99".parse().unwrap();
        let own6: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
        for (src, ok) in [(ll, true), (own6, true), (other, false)] {
            ip.truncate(8);
            ip.extend_from_slice(&src.octets());
            ip.extend_from_slice(&own6.octets());
            ip.extend_from_slice(&[133, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(may_leave(&eth(ETHERTYPE_IPV6, &ip), &own()), ok, "{src}");
        }
    }
}

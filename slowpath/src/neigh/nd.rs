//! IPv6 neighbour discovery (RFC 4861), the part the slow path needs to resolve backends:
//! building Neighbor Solicitations and reading Neighbor Advertisements (and solicitations,
//! whose source link-layer address option names the sender's MAC).
//!
//! Answering solicitations for the balancer's own addresses and VIPs is mostly the workers'
//! job (`neighbor_solicitation` in the pipeline): they see those sent to a solicited-node
//! group. Unicast ones to an own address (a neighbour confirming the balancer's MAC, RFC 4861
//! §7.3.3) reach the slow path and are answered here ([`advertisement`]).
//!
//! Everything here reads received bytes through the length-checked `dataplane::wire` views
//! and never panics, whatever the input.

use std::net::{IpAddr, Ipv6Addr};

use dataplane::wire::ethernet::ETHERTYPE_IPV6;
use dataplane::wire::icmpv6::{NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT};
use dataplane::wire::{IPPROTO_ICMPV6, Icmpv6Packet, Ipv6Packet, Ipv6Repr};

use super::l2::{self, PortL2};

/// ND messages must carry this hop limit (RFC 4861 §7.1): proof they were not routed.
pub const HOP_LIMIT: u8 = 255;
/// Option: source link-layer address.
const OPT_SLLA: u8 = 1;
/// Option: target link-layer address.
const OPT_TLLA: u8 = 2;
/// ICMPv6 header (8) + target address (16): the fixed part of an NS or NA.
const ND_FIXED: usize = 24;
/// NA flags (first byte after the checksum).
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// What an ND message received teaches about a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nd {
    /// A Neighbor Advertisement: `ip` (its target) is at `mac`.
    Advert {
        ip: Ipv6Addr,
        mac: [u8; 6],
        /// The override flag: may replace a different MAC already known.
        override_: bool,
    },
    /// A Neighbor Solicitation from `ip` (its source) for `target`; `mac`: its source
    /// link-layer address option, if any.
    Solicit {
        ip: Ipv6Addr,
        mac: Option<[u8; 6]>,
        target: Ipv6Addr,
    },
}

/// The solicited-node multicast address of `target` (ff02::1:ffXX:XXXX).
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    let mut a = [0u8; 16];
    a[0] = 0xff;
    a[1] = 0x02;
    a[11] = 0x01;
    a[12] = 0xff;
    a[13..].copy_from_slice(&t[13..]);
    Ipv6Addr::from(a)
}

/// The Ethernet address of an IPv6 multicast group (33:33 and its last four bytes).
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let g = group.octets();
    [0x33, 0x33, g[12], g[13], g[14], g[15]]
}

/// A Neighbor Solicitation for `target` from `port`, as an Ethernet frame: to the target's
/// solicited-node group when `unicast` is `None`, else to the known MAC and the target
/// itself (a confirmation, RFC 4861 §7.3.3). `None` if the port has no IPv6 address.
pub fn solicitation(port: &PortL2, target: Ipv6Addr, unicast: Option<[u8; 6]>) -> Option<Vec<u8>> {
    // From the port's address on the target's subnet, else its first IPv6 address.
    let IpAddr::V6(src) = port.source_for(IpAddr::V6(target))? else {
        return None;
    };
    let to = match unicast {
        Some(mac) => (target, mac),
        None => {
            let group = solicited_node(target);
            (group, multicast_mac(group))
        }
    };
    let ns = Message {
        kind: NEIGHBOR_SOLICIT,
        flags: 0,
        target,
        option: OPT_SLLA,
    };
    ns.frame(port, src, to)
}

/// A solicited Neighbor Advertisement of `target` (one of `port`'s addresses) at `port`'s
/// MAC, to `to` at `to_mac`, as an Ethernet frame. `None` if `target` is not `port`'s.
pub fn advertisement(
    port: &PortL2,
    target: Ipv6Addr,
    to: Ipv6Addr,
    to_mac: [u8; 6],
) -> Option<Vec<u8>> {
    if !port.addrs.iter().any(|a| a.addr == IpAddr::V6(target)) {
        return None;
    }
    let na = Message {
        kind: NEIGHBOR_ADVERT,
        flags: FLAG_SOLICITED | FLAG_OVERRIDE,
        target,
        option: OPT_TLLA,
    };
    na.frame(port, target, (to, to_mac))
}

/// ff02::1, the link's all-nodes group.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An unsolicited Neighbor Advertisement of `target` at `port`'s MAC, with the override flag,
/// from `target` to all-nodes (RFC 4861 §7.2.6), as an Ethernet frame: IPv6's gratuitous
/// ARP, which moves every neighbour's cache entry for `target` to this MAC at once.
pub fn unsolicited(port: &PortL2, target: Ipv6Addr) -> Option<Vec<u8>> {
    let na = Message {
        kind: NEIGHBOR_ADVERT,
        flags: FLAG_OVERRIDE,
        target,
        option: OPT_TLLA,
    };
    na.frame(port, target, (ALL_NODES, multicast_mac(ALL_NODES)))
}

/// An NS or NA the slow path sends: about `target`, with `port`'s MAC in a link-layer
/// address option.
struct Message {
    kind: u8,
    /// The first byte after the checksum (NA flags; 0 in an NS).
    flags: u8,
    target: Ipv6Addr,
    /// [`OPT_SLLA`] or [`OPT_TLLA`].
    option: u8,
}

impl Message {
    /// The message from `src` to `to` (address, MAC) as an Ethernet frame from `port`.
    fn frame(&self, port: &PortL2, src: Ipv6Addr, to: (Ipv6Addr, [u8; 6])) -> Option<Vec<u8>> {
        // Type, code, checksum, flags/reserved (4), target (16), the option (8).
        let icmp_len = ND_FIXED + 8;
        let ip = Ipv6Repr {
            src: src.octets(),
            dst: to.0.octets(),
            next_header: IPPROTO_ICMPV6,
            payload_len: icmp_len as u16,
            hop_limit: HOP_LIMIT,
        };
        let mut packet = vec![0u8; ip.buffer_len()];
        ip.emit(&mut packet).ok()?;
        let icmp = &mut packet[ip.header_len()..];
        icmp[0] = self.kind;
        icmp[4] = self.flags;
        icmp[8..24].copy_from_slice(&self.target.octets());
        icmp[24] = self.option;
        icmp[25] = 1;
        icmp[26..32].copy_from_slice(&port.mac);
        Icmpv6Packet::new_checked(icmp)
            .ok()?
            .fill_checksum(&ip.src, &ip.dst);
        Some(l2::frame(port.mac, to.1, ETHERTYPE_IPV6, &packet))
    }
}

/// Whether `packet` (an IPv6 packet) is an ND solicitation or advertisement: such packets are
/// the neighbour table's, never the stack's, valid or not.
pub fn is_nd(packet: &[u8]) -> bool {
    let Ok(ip) = Ipv6Packet::new_checked(packet) else {
        return false;
    };
    let Ok(ul) = ip.upper_layer() else {
        return false;
    };
    ul.protocol == IPPROTO_ICMPV6
        && ul.fragment.is_none()
        && matches!(
            packet.get(ul.offset),
            Some(&NEIGHBOR_SOLICIT | &NEIGHBOR_ADVERT)
        )
}

/// Reads an NS or NA (`packet`: the IPv6 packet; `eth_src`: the frame's Ethernet source).
/// `None` for anything that is not a valid one (RFC 4861 §7.1.1, §7.1.2): hop limit not 255,
/// extension headers or fragments, checksum wrong, code not 0, too short, an option of length
/// zero or past the end, a multicast target, a solicitation from the unspecified address, or
/// an advertisement with no link-layer address to learn.
pub fn parse(eth_src: [u8; 6], packet: &[u8]) -> Option<Nd> {
    let ip = Ipv6Packet::new_checked(packet).ok()?;
    if ip.hop_limit() != HOP_LIMIT || ip.next_header() != IPPROTO_ICMPV6 {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    if icmp.msg_code() != 0 || !icmp.verify_checksum(&src, &dst) {
        return None;
    }
    let body = icmp.payload();
    let target: [u8; 16] = body.get(..16)?.try_into().ok()?;
    let target = Ipv6Addr::from(target);
    if target.is_multicast() {
        return None;
    }
    let mut slla = None;
    let mut tlla = None;
    let mut options = body.get(16..)?;
    while !options.is_empty() {
        let [kind, len, ..] = *options else {
            return None;
        };
        let len = usize::from(len) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        let mac: Option<[u8; 6]> = options.get(2..8).and_then(|m| m.try_into().ok());
        match kind {
            OPT_SLLA => slla = mac,
            OPT_TLLA => tlla = mac,
            _ => {}
        }
        options = &options[len..];
    }
    let rest = icmp.rest_of_header();
    match icmp.msg_type() {
        NEIGHBOR_ADVERT => {
            let flags = rest[0];
            // A solicited advertisement without the option comes from the one we asked.
            let mac = tlla.or_else(|| (flags & FLAG_SOLICITED != 0).then_some(eth_src))?;
            // Multicast destination: must be unsolicited.
            if Ipv6Addr::from(dst).is_multicast() && flags & FLAG_SOLICITED != 0 {
                return None;
            }
            Some(Nd::Advert {
                ip: target,
                mac,
                override_: flags & FLAG_OVERRIDE != 0,
            })
        }
        NEIGHBOR_SOLICIT => {
            let src = Ipv6Addr::from(src);
            if src.is_unspecified() {
                return None;
            }
            Some(Nd::Solicit {
                ip: src,
                mac: slla,
                target,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "nd_tests.rs"]
pub(crate) mod tests;

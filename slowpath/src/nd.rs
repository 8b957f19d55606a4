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

use dataplane::wire::icmpv6::{NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT};
use dataplane::wire::{IPPROTO_ICMPV6, Icmpv6Packet, Ipv6Packet, Ipv6Repr};
use smoltcp::wire::EthernetProtocol;

use crate::neigh::{PortL2, ethernet};

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

/// The address a solicitation for `target` leaves from: `port`'s IPv6 address whose subnet
/// holds the target, else its first IPv6 address.
fn source_for(port: &PortL2, target: Ipv6Addr) -> Option<Ipv6Addr> {
    let a = port
        .addrs
        .iter()
        .find(|a| a.contains(IpAddr::V6(target)))
        .or_else(|| port.addrs.iter().find(|a| a.addr.is_ipv6()))?;
    match a.addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// A Neighbor Solicitation for `target` from `port`, as an Ethernet frame: to the target's
/// solicited-node group when `unicast` is `None`, else to the known MAC and the target
/// itself (a confirmation, RFC 4861 §7.3.3). `None` if the port has no IPv6 address.
pub fn solicitation(port: &PortL2, target: Ipv6Addr, unicast: Option<[u8; 6]>) -> Option<Vec<u8>> {
    let src = source_for(port, target)?;
    let (dst_ip, dst_mac) = match unicast {
        Some(mac) => (target, mac),
        None => {
            let group = solicited_node(target);
            (group, multicast_mac(group))
        }
    };
    // NS: type, code, checksum, reserved (4), target (16), SLLA option (8).
    let icmp_len = ND_FIXED + 8;
    let ip = Ipv6Repr {
        src: src.octets(),
        dst: dst_ip.octets(),
        next_header: IPPROTO_ICMPV6,
        payload_len: icmp_len as u16,
        hop_limit: HOP_LIMIT,
    };
    let mut packet = vec![0u8; ip.buffer_len()];
    ip.emit(&mut packet).ok()?;
    let icmp = &mut packet[ip.header_len()..];
    icmp[0] = NEIGHBOR_SOLICIT;
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = OPT_SLLA;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&port.mac);
    Icmpv6Packet::new_checked(icmp)
        .ok()?
        .fill_checksum(&ip.src, &ip.dst);
    Some(ethernet(port.mac, dst_mac, EthernetProtocol::Ipv6, &packet))
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
    // NA: type, code, checksum, flags (4), target (16), TLLA option (8).
    let icmp_len = ND_FIXED + 8;
    let ip = Ipv6Repr {
        src: target.octets(),
        dst: to.octets(),
        next_header: IPPROTO_ICMPV6,
        payload_len: icmp_len as u16,
        hop_limit: HOP_LIMIT,
    };
    let mut packet = vec![0u8; ip.buffer_len()];
    ip.emit(&mut packet).ok()?;
    let icmp = &mut packet[ip.header_len()..];
    icmp[0] = NEIGHBOR_ADVERT;
    icmp[4] = FLAG_SOLICITED | FLAG_OVERRIDE;
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = OPT_TLLA;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&port.mac);
    Icmpv6Packet::new_checked(icmp)
        .ok()?
        .fill_checksum(&ip.src, &ip.dst);
    Some(ethernet(port.mac, to_mac, EthernetProtocol::Ipv6, &packet))
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
pub(crate) mod tests {
    use super::*;
    use dataplane::wire::ethernet::ETHERTYPE_IPV6;

    pub const LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
    pub const B1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];

    pub fn ifaddr(s: &str) -> conf::IfAddr {
        let (a, len) = s.split_once('/').unwrap();
        conf::IfAddr {
            addr: a.parse().unwrap(),
            prefix_len: len.parse().unwrap(),
        }
    }

    fn port() -> PortL2 {
        PortL2 {
            mac: LB,
            addrs: vec![
                ifaddr("10.0.0.2/24"),
                ifaddr("2001:db8:1::2/64"),
                ifaddr("2001:db8:2::2/64"),
            ],
        }
    }

    /// An advertisement (as an IPv6 packet) of `target` at `mac`, from `target` to `dst`.
    pub fn advert(target: Ipv6Addr, dst: Ipv6Addr, flags: u8, mac: Option<[u8; 6]>) -> Vec<u8> {
        let icmp_len = ND_FIXED + if mac.is_some() { 8 } else { 0 };
        let ip = Ipv6Repr {
            src: target.octets(),
            dst: dst.octets(),
            next_header: IPPROTO_ICMPV6,
            payload_len: icmp_len as u16,
            hop_limit: HOP_LIMIT,
        };
        let mut p = vec![0u8; ip.buffer_len()];
        ip.emit(&mut p).unwrap();
        let icmp = &mut p[40..];
        icmp[0] = NEIGHBOR_ADVERT;
        icmp[4] = flags;
        icmp[8..24].copy_from_slice(&target.octets());
        if let Some(mac) = mac {
            icmp[24] = OPT_TLLA;
            icmp[25] = 1;
            icmp[26..32].copy_from_slice(&mac);
        }
        Icmpv6Packet::new_checked(icmp)
            .unwrap()
            .fill_checksum(&ip.src, &ip.dst);
        p
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn solicitation_is_well_formed() {
        let target = ip("2001:db8:2::1234:5678");
        let f = solicitation(&port(), target, None).unwrap();
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0x34, 0x56, 0x78]);
        assert_eq!(&f[6..12], &LB);
        assert_eq!(u16::from_be_bytes([f[12], f[13]]), ETHERTYPE_IPV6);
        let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(p.total_len(), f.len() - 14);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.next_header(), IPPROTO_ICMPV6);
        assert_eq!(
            p.src_ip(),
            ip("2001:db8:2::2"),
            "the address on the target's subnet"
        );
        assert_eq!(p.dst_ip(), ip("ff02::1:ff34:5678"));
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert_eq!(icmp.msg_type(), NEIGHBOR_SOLICIT);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.rest_of_header(), [0; 4]);
        assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));
        assert_eq!(&icmp.payload()[..16], &target.octets());
        assert_eq!(&icmp.payload()[16..], &[1, 1, 2, 0, 0, 0, 0, 1]);

        // A confirmation: unicast to the known MAC and the target itself.
        let f = solicitation(&port(), target, Some(B1)).unwrap();
        assert_eq!(&f[..6], &B1);
        let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(p.dst_ip(), target);
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));

        // No IPv6 address on the port: nothing to send from.
        let v4only = PortL2 {
            mac: LB,
            addrs: vec![ifaddr("10.0.0.2/24")],
        };
        assert!(solicitation(&v4only, target, None).is_none());
    }

    /// The same solicitation as scapy builds it, byte for byte (skipped without scapy).
    #[test]
    fn solicitation_matches_scapy() {
        let target = ip("2001:db8:1::abcd:ef01");
        let ours = solicitation(&port(), target, None).unwrap();
        let script = "from scapy.all import *\n\
            import sys\n\
            p = Ether(src='02:00:00:00:00:01', dst='33:33:ff:cd:ef:01') / \
            IPv6(src='2001:db8:1::2', dst='ff02::1:ffcd:ef01', hlim=255) / \
            ICMPv6ND_NS(tgt='2001:db8:1::abcd:ef01') / \
            ICMPv6NDOptSrcLLAddr(lladdr='02:00:00:00:00:01')\n\
            sys.stdout.write(bytes(p).hex())\n";
        let out = match std::process::Command::new("python3")
            .args(["-c", script])
            .output()
        {
            Ok(o) if o.status.success() => o,
            _ => {
                eprintln!("scapy not available: skipped");
                return;
            }
        };
        let hex = String::from_utf8(out.stdout).unwrap();
        let ours: String = ours.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ours, hex.trim());
    }

    #[test]
    fn answers_solicitations_for_own_addresses_only() {
        let us = ip("2001:db8:1::2");
        let b = ip("2001:db8:1::11");
        let f = advertisement(&port(), us, b, B1).unwrap();
        assert_eq!(&f[..6], &B1);
        assert_eq!(&f[6..12], &LB);
        let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!((p.src_ip(), p.dst_ip(), p.hop_limit()), (us, b, 255));
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));
        assert_eq!(icmp.rest_of_header(), [0x60, 0, 0, 0]);
        assert_eq!(
            parse(LB, &f[14..]),
            Some(Nd::Advert {
                ip: us,
                mac: LB,
                override_: true
            })
        );
        assert!(advertisement(&port(), b, b, B1).is_none());
    }

    #[test]
    fn reads_advertisements_and_solicitations() {
        let t = ip("2001:db8:1::11");
        let us = ip("2001:db8:1::2");
        let eth = [2, 0, 0, 0, 0, 0x99];
        assert_eq!(
            parse(eth, &advert(t, us, 0x60, Some(B1))),
            Some(Nd::Advert {
                ip: t,
                mac: B1,
                override_: true
            })
        );
        // No option: the Ethernet source, if solicited; nothing otherwise.
        assert_eq!(
            parse(eth, &advert(t, us, 0x40, None)),
            Some(Nd::Advert {
                ip: t,
                mac: eth,
                override_: false
            })
        );
        assert_eq!(parse(eth, &advert(t, us, 0x20, None)), None);
        // Unsolicited to all-nodes: fine; "solicited" to a multicast address: not.
        let all = ip("ff02::1");
        assert!(parse(eth, &advert(t, all, 0x20, Some(B1))).is_some());
        assert_eq!(parse(eth, &advert(t, all, 0x60, Some(B1))), None);

        // A solicitation from the backend (e.g. for our address): its source option.
        let mut ns = solicitation(
            &PortL2 {
                mac: B1,
                addrs: vec![ifaddr("2001:db8:1::11/64")],
            },
            us,
            None,
        )
        .unwrap();
        assert_eq!(
            parse(B1, &ns[14..]),
            Some(Nd::Solicit {
                ip: t,
                mac: Some(B1),
                target: us
            })
        );
        assert!(is_nd(&ns[14..]));
        // From the unspecified address (DAD): nothing to learn.
        ns[14 + 8..14 + 24].fill(0);
        let csum_ok = {
            let (s, d): ([u8; 16], [u8; 16]) = (
                ns[22..38].try_into().unwrap(),
                ns[38..54].try_into().unwrap(),
            );
            let mut icmp = Icmpv6Packet::new_checked(&mut ns[54..]).unwrap();
            icmp.fill_checksum(&s, &d);
            icmp.verify_checksum(&s, &d)
        };
        assert!(csum_ok);
        assert_eq!(parse(B1, &ns[14..]), None);
    }

    #[test]
    fn refuses_bad_advertisements() {
        let t = ip("2001:db8:1::11");
        let us = ip("2001:db8:1::2");
        let good = advert(t, us, 0x60, Some(B1));
        assert!(parse(B1, &good).is_some());
        // Checksum wrong.
        let mut bad = good.clone();
        bad[40 + 3] ^= 1;
        assert_eq!(parse(B1, &bad), None);
        // Hop limit not 255 (routed from elsewhere).
        let mut bad = good.clone();
        bad[7] = 254;
        assert_eq!(parse(B1, &bad), None);
        // Code not 0 (checksum fixed up, so only the code is wrong).
        let mut bad = good.clone();
        bad[41] = 1;
        refill(&mut bad);
        assert_eq!(parse(B1, &bad), None);
        // An option of length zero.
        let mut bad = good.clone();
        bad[40 + 25] = 0;
        refill(&mut bad);
        assert_eq!(parse(B1, &bad), None);
        // An option running past the end.
        let mut bad = good.clone();
        bad[40 + 25] = 2;
        refill(&mut bad);
        assert_eq!(parse(B1, &bad), None);
        // A multicast target.
        let mut bad = advert(ip("ff02::1"), us, 0x60, Some(B1));
        refill(&mut bad);
        assert_eq!(parse(B1, &bad), None);
        // Every truncation, with the payload length fixed up or not: never a panic, and
        // nothing learnt once the fixed part is cut.
        for len in 0..good.len() {
            assert_eq!(parse(B1, &good[..len]), None, "cut at {len}");
            let mut cut = good[..len].to_vec();
            if len >= 40 {
                cut[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
                refill(&mut cut);
                let r = parse(B1, &cut);
                assert!(r.is_none() || len == 40 + ND_FIXED, "cut at {len}: {r:?}");
            }
            let _ = is_nd(&cut);
        }
        // Random bytes after a valid header: no panic.
        let mut x = 0x1234_5678_u32;
        for _ in 0..2000 {
            let mut p = good.clone();
            for b in p.iter_mut().skip(40) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let _ = parse(B1, &p);
            let _ = is_nd(&p);
        }
    }

    /// Recomputes the ICMPv6 checksum of an IPv6 packet (when it has room for a header).
    fn refill(p: &mut [u8]) {
        let (s, d): ([u8; 16], [u8; 16]) =
            (p[8..24].try_into().unwrap(), p[24..40].try_into().unwrap());
        if let Ok(mut icmp) = Icmpv6Packet::new_checked(&mut p[40..]) {
            icmp.fill_checksum(&s, &d);
        }
    }
}

//! Destination NAT: inbound, the VIP and port become the backend's; on the way back the
//! backend's become the VIP's; an ICMP error about a flow is translated as its packets are.
//! Every checksum that covers a changed byte is updated incrementally (RFC 1624).

use crate::flow::v4_of;
use crate::snapshot::{Addr, BackendRt};
use crate::wire::{self, IPPROTO_TCP, IPPROTO_UDP, checksum};

use super::super::parse::IpMeta;

/// Which address and port of a packet a NAT rewrite replaces.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(in crate::pipeline) enum Side {
    /// The source (a backend's reply: backend -> VIP).
    Src,
    /// The destination (a client's packet: VIP -> backend).
    Dst,
}

/// A client's packet to backend `b`: destination := the backend's address and port (the
/// client's `dport` when the backend names none), then the hop to it.
#[inline(always)]
pub(in crate::pipeline) fn to_backend(data: &mut [u8], p: &IpMeta, b: &BackendRt, dport: u16) {
    rewrite(data, p, Side::Dst, &b.addr_key, b.port.unwrap_or(dport));
    super::dsr::to_backend(data, b);
}

/// Replaces `side`'s address with `addr` and its port with `port`, updating the IPv4 header
/// checksum and the TCP/UDP checksum (its pseudo-header holds the address). An IPv4 UDP
/// datagram without checksum stays without one. The IPv4 arithmetic is written out for 4
/// bytes so that the fast path's call, whose offsets are constants, inlines to a few words.
#[inline(always)]
pub(in crate::pipeline) fn rewrite(
    data: &mut [u8],
    p: &IpMeta,
    side: Side,
    addr: &Addr,
    port: u16,
) {
    let (l3, l4) = (p.l3_off, p.l4_off);
    let old = if side == Side::Dst { &p.dst } else { &p.src };
    let udp = p.proto == IPPROTO_UDP;
    let csum_at = l4 + if p.proto == IPPROTO_TCP { 16 } else { 6 };
    let port_at = l4 + if side == Side::Dst { 2 } else { 0 };
    let (Some(&[c0, c1]), Some(&[p0, p1])) = (
        data.get(csum_at..csum_at + 2),
        data.get(port_at..port_at + 2),
    ) else {
        return; // the parse checked the L4 header: never taken
    };
    let (cs, old_port) = (u16::from_be_bytes([c0, c1]), u16::from_be_bytes([p0, p1]));
    let cs = if p.v6 {
        let at = l3 + if side == Side::Dst { 24 } else { 8 };
        data[at..at + 16].copy_from_slice(addr);
        checksum::update_bytes(cs, old, addr)
    } else {
        let (old, new) = (v4_of(old), v4_of(addr));
        let at = l3 + if side == Side::Dst { 16 } else { 12 };
        let ipc = u16::from_be_bytes([data[l3 + 10], data[l3 + 11]]);
        data[l3 + 10..l3 + 12].copy_from_slice(&update_addr4(ipc, old, new).to_be_bytes());
        data[at..at + 4].copy_from_slice(&new);
        update_addr4(cs, old, new)
    };
    data[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    if udp && !p.v6 && u16::from_be_bytes([c0, c1]) == 0 {
        return; // an IPv4 UDP datagram without checksum stays without one
    }
    let mut cs = checksum::update_u16(cs, old_port, port);
    if udp && cs == 0 {
        cs = 0xffff;
    }
    data[csum_at..csum_at + 2].copy_from_slice(&cs.to_be_bytes());
}

/// `checksum::update_bytes` for a 4-byte field, written out.
#[inline(always)]
fn update_addr4(cs: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let sum16 = |a: [u8; 4]| {
        checksum::fold(
            u64::from(u16::from_be_bytes([a[0], a[1]]))
                + u64::from(u16::from_be_bytes([a[2], a[3]])),
        )
    };
    !checksum::fold(u64::from(!cs) + u64::from(!sum16(old)) + u64::from(sum16(new)))
}

/// NAT for an ICMP(v6) error to a VIP: the backend must see the error as one about its own
/// packet, so the outer destination and the quoted packet's source address and port become
/// the backend's. Every checksum that covers a changed byte is updated (RFC 1624): the outer
/// IPv4 header's, the quoted IPv4 header's, the quoted TCP/UDP checksum when the quote holds
/// it (its pseudo-header has the source), and the ICMP checksum over all of these (ICMPv6's
/// pseudo-header also has the outer destination). `q` was parsed from this frame's quote.
pub(in crate::pipeline) fn icmp_error(
    data: &mut [u8],
    p: &IpMeta,
    q: &wire::Quote,
    addr: &Addr,
    port: u16,
) {
    let alen = if p.v6 { 16 } else { 4 };
    let (l3, icmp, end) = (p.l3_off, p.l4_off, p.l4_off + p.l4_len);
    let quote = icmp + 8;
    let ql4 = quote + q.l4;
    let mut ck = u16::from_be_bytes([data[icmp + 2], data[icmp + 3]]);
    // Writes `new` at `at` (an even offset from the ICMP header), updating the ICMP checksum.
    let patch = |data: &mut [u8], ck: &mut u16, at: usize, new: &[u8]| {
        *ck = checksum::update_bytes(*ck, &data[at..at + new.len()], new);
        data[at..at + new.len()].copy_from_slice(new);
    };
    // Outer destination: VIP -> backend.
    if p.v6 {
        ck = checksum::update_bytes(ck, &p.dst, addr);
        data[l3 + 24..l3 + 40].copy_from_slice(addr);
    } else {
        let ipc = u16::from_be_bytes([data[l3 + 10], data[l3 + 11]]);
        let ipc = checksum::update_bytes(ipc, &p.dst[..4], &addr[..4]);
        data[l3 + 10..l3 + 12].copy_from_slice(&ipc.to_be_bytes());
        data[l3 + 16..l3 + 20].copy_from_slice(&addr[..4]);
    }
    // Quoted source: VIP:port -> backend:port, with the quoted checksums.
    let src_at = if p.v6 { quote + 8 } else { quote + 12 };
    if !p.v6 {
        let c = u16::from_be_bytes([data[quote + 10], data[quote + 11]]);
        let c = checksum::update_bytes(c, &q.src[..4], &addr[..4]);
        patch(data, &mut ck, quote + 10, &c.to_be_bytes());
    }
    patch(data, &mut ck, src_at, &addr[..alen]);
    let csum_at = ql4 + if q.proto == IPPROTO_TCP { 16 } else { 6 };
    if csum_at + 2 <= end {
        let c = u16::from_be_bytes([data[csum_at], data[csum_at + 1]]);
        let c = if q.proto == IPPROTO_UDP {
            let c = checksum::update_udp(c, &q.src[..alen], &addr[..alen]);
            checksum::update_udp_u16(c, q.sport, port)
        } else {
            let c = checksum::update_bytes(c, &q.src[..alen], &addr[..alen]);
            checksum::update_u16(c, q.sport, port)
        };
        patch(data, &mut ck, csum_at, &c.to_be_bytes());
    }
    patch(data, &mut ck, ql4, &port.to_be_bytes());
    data[icmp + 2..icmp + 4].copy_from_slice(&ck.to_be_bytes());
}

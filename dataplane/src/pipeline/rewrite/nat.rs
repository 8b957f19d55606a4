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

/// A client's packet to backend `b` (a packet to its service's VIP): destination := the
/// backend's address and port (the client's `dport` when the backend names none), then the
/// hop to it. The checksums take the backend's precomputed [`BackendRt::nat_delta`].
#[inline(always)]
pub(in crate::pipeline) fn to_backend(data: &mut [u8], p: &IpMeta, b: &BackendRt, dport: u16) {
    let port = b.port.unwrap_or(dport);
    rewrite_by(data, p, Side::Dst, &b.addr_key, b.nat_delta, port);
    super::dsr::to_backend(data, b);
}

/// Replaces `side`'s address with `addr` and its port with `port`, updating the IPv4 header
/// checksum and the TCP/UDP checksum (its pseudo-header holds the address). An IPv4 UDP
/// datagram without checksum stays without one.
#[inline(always)]
pub(in crate::pipeline) fn rewrite(
    data: &mut [u8],
    p: &IpMeta,
    side: Side,
    addr: &Addr,
    port: u16,
) {
    let old = if side == Side::Dst { &p.dst } else { &p.src };
    let delta = if p.v6 {
        checksum::fold(u64::from(!sum16(old)) + u64::from(sum16(addr)))
    } else {
        checksum::fold(u64::from(!sum16_4(v4_of(old))) + u64::from(sum16_4(v4_of(addr))))
    };
    rewrite_by(data, p, side, addr, delta, port);
}

/// [`rewrite`] given `delta`, the folded `~sum(old address) + sum(addr)` (RFC 1624's
/// `~m + m'`): each checksum over the address takes it with one addition, and the L4
/// checksum takes the port's change in the same fold. Bit for bit the result of updating by
/// the address and then by the port (ones'-complement addition is associative, and a fold
/// is zero only for a zero sum).
#[inline(always)]
fn rewrite_by(data: &mut [u8], p: &IpMeta, side: Side, addr: &Addr, delta: u16, port: u16) {
    let l3 = p.l3_off;
    let l4 = p.l4_off;
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
    if p.v6 {
        let at = l3 + if side == Side::Dst { 24 } else { 8 };
        data[at..at + 16].copy_from_slice(addr);
    } else {
        let at = l3 + if side == Side::Dst { 16 } else { 12 };
        let ipc = u16::from_be_bytes([data[l3 + 10], data[l3 + 11]]);
        let ipc = !checksum::fold(u64::from(!ipc) + u64::from(delta));
        data[l3 + 10..l3 + 12].copy_from_slice(&ipc.to_be_bytes());
        data[at..at + 4].copy_from_slice(&addr[..4]);
    }
    data[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    if udp && !p.v6 && cs == 0 {
        return; // an IPv4 UDP datagram without checksum stays without one
    }
    let mut cs =
        !checksum::fold(u64::from(!cs) + u64::from(delta) + u64::from(!old_port) + u64::from(port));
    if udp && cs == 0 {
        cs = 0xffff;
    }
    data[csum_at..csum_at + 2].copy_from_slice(&cs.to_be_bytes());
}

/// The folded sum of an IPv4 address, written out for 4 bytes.
#[inline(always)]
fn sum16_4(a: [u8; 4]) -> u16 {
    checksum::fold(
        u64::from(u16::from_be_bytes([a[0], a[1]])) + u64::from(u16::from_be_bytes([a[2], a[3]])),
    )
}

/// The folded sum of an IPv6 address.
#[inline(always)]
fn sum16(a: &Addr) -> u16 {
    checksum::fold(checksum::sum(a, 0))
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

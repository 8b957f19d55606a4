//! Full NAT: a client's packet (client:cport -> VIP:vport) leaves as the balancer's
//! (local:lport -> backend:bport); a backend's reply (backend:bport -> local:lport) leaves as
//! the VIP's (VIP:vport -> client:cport); an ICMP error about a flow, from either side, is
//! translated as the packet it quotes was. Both halves are NAT's rewrite (`nat::rewrite`) once
//! per side, so every checksum is updated incrementally (RFC 1624) by the one function.

use crate::flow::FlowKey;
use crate::snapshot::Addr;
use crate::wire::{self, IPPROTO_TCP, IPPROTO_UDP, checksum};

use super::super::parse::IpMeta;
use super::nat::{self, Side};

/// The source half of a client's packet to its backend: source := `local`:`lport`. The
/// destination half (and the MACs) is NAT's, done by `rewrite::to_backend`; `p` is the packet
/// as it arrived (each half reads its old bytes from it, the checksum from the frame).
#[inline(always)]
pub(in crate::pipeline) fn source(data: &mut [u8], p: &IpMeta, local: &Addr, lport: u16) {
    nat::rewrite(data, p, Side::Src, local, lport);
}

/// A backend's reply of the flow `fkey` (as its client sends it: client -> VIP) on its way
/// back: source := the VIP and its port, destination := the client and its port.
#[inline(always)]
pub(in crate::pipeline) fn to_client(data: &mut [u8], p: &IpMeta, fkey: &FlowKey) {
    nat::rewrite(data, p, Side::Src, &fkey.dst, fkey.dport);
    nat::rewrite(data, p, Side::Dst, &fkey.src, fkey.sport);
}

/// An address and a port.
pub(in crate::pipeline) type Endpoint<'a> = (&'a Addr, u16);

/// An ICMP(v6) error whose quote `q` (parsed from this frame) is a packet of a FullNAT flow,
/// made an error about the packet the receiver sent: outer destination := `to`, quoted
/// source := `src`, quoted destination := `dst`. Updated with them: the outer IPv4 header's
/// checksum, the quoted IPv4 header's, the quoted TCP/UDP checksum when the quote holds it
/// (its pseudo-header has both addresses), and the ICMP checksum over all of these (ICMPv6's
/// pseudo-header also holds the outer destination).
pub(in crate::pipeline) fn icmp_error(
    data: &mut [u8],
    p: &IpMeta,
    q: &wire::Quote,
    to: &Addr,
    src: Endpoint<'_>,
    dst: Endpoint<'_>,
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
    if p.v6 {
        ck = checksum::update_bytes(ck, &p.dst, to);
        data[l3 + 24..l3 + 40].copy_from_slice(to);
    } else {
        let ipc = u16::from_be_bytes([data[l3 + 10], data[l3 + 11]]);
        let ipc = checksum::update_bytes(ipc, &p.dst[..4], &to[..4]);
        data[l3 + 10..l3 + 12].copy_from_slice(&ipc.to_be_bytes());
        data[l3 + 16..l3 + 20].copy_from_slice(&to[..4]);
    }
    let (src_at, dst_at) = if p.v6 {
        (quote + 8, quote + 24)
    } else {
        (quote + 12, quote + 16)
    };
    if !p.v6 {
        let c = u16::from_be_bytes([data[quote + 10], data[quote + 11]]);
        let c = checksum::update_bytes(c, &q.src[..4], &src.0[..4]);
        let c = checksum::update_bytes(c, &q.dst[..4], &dst.0[..4]);
        patch(data, &mut ck, quote + 10, &c.to_be_bytes());
    }
    patch(data, &mut ck, src_at, &src.0[..alen]);
    patch(data, &mut ck, dst_at, &dst.0[..alen]);
    let csum_at = ql4 + if q.proto == IPPROTO_TCP { 16 } else { 6 };
    if csum_at + 2 <= end {
        let c = u16::from_be_bytes([data[csum_at], data[csum_at + 1]]);
        let c = if q.proto == IPPROTO_UDP {
            let c = checksum::update_udp(c, &q.src[..alen], &src.0[..alen]);
            let c = checksum::update_udp(c, &q.dst[..alen], &dst.0[..alen]);
            let c = checksum::update_udp_u16(c, q.sport, src.1);
            checksum::update_udp_u16(c, q.dport, dst.1)
        } else {
            let c = checksum::update_bytes(c, &q.src[..alen], &src.0[..alen]);
            let c = checksum::update_bytes(c, &q.dst[..alen], &dst.0[..alen]);
            let c = checksum::update_u16(c, q.sport, src.1);
            checksum::update_u16(c, q.dport, dst.1)
        };
        patch(data, &mut ck, csum_at, &c.to_be_bytes());
    }
    patch(data, &mut ck, ql4, &src.1.to_be_bytes());
    patch(data, &mut ck, ql4 + 2, &dst.1.to_be_bytes());
    data[icmp + 2..icmp + 4].copy_from_slice(&ck.to_be_bytes());
}

//! Frames the balancer answers in place of a backend or as itself: a TCP RST or an ICMP
//! "unreachable" for an empty pool, an ICMP "fragmentation needed" / ICMPv6 "packet too
//! big" for a packet too big for its egress port, an ICMP echo reply, ARP and neighbour
//! advertisements. Each turns the received frame into its answer, in place, back to where it
//! came from.

pub(super) mod echo;
pub(super) mod neighbor;
pub(super) mod rst;
pub(super) mod too_big;
pub(super) mod unreachable;

use crate::flow::v4_of;
use crate::frame::Frame;
use crate::snapshot::Addr;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{self, IPPROTO_ICMP, IPPROTO_ICMPV6, checksum};

use super::parse::IpMeta;

/// Hop limit of the packets the balancer originates.
pub(super) const OWN_TTL: u8 = 64;

/// A reply goes back where the request came from: dst MAC := its src, src MAC := ours.
#[inline(always)]
pub(super) fn macs_back(data: &mut [u8], our_mac: &[u8; 6]) {
    let peer: [u8; 6] = data[6..12].try_into().expect("an Ethernet header");
    super::rewrite::macs(data, &peer, our_mac);
}

/// A fresh IP header for a packet the balancer originates.
pub(super) fn write_ip_header(
    buf: &mut [u8],
    v6: bool,
    src: &Addr,
    dst: &Addr,
    proto: u8,
    payload_len: u16,
) {
    if v6 {
        wire::ipv6::Repr {
            src: *src,
            dst: *dst,
            next_header: proto,
            payload_len,
            hop_limit: OWN_TTL,
        }
        .emit(&mut buf[..40])
        .expect("40 bytes of room");
    } else {
        wire::ipv4::Repr {
            src: v4_of(src),
            dst: v4_of(dst),
            protocol: proto,
            payload_len,
            ttl: OWN_TTL,
            ident: 0,
        }
        .emit(&mut buf[..20])
        .expect("20 bytes of room");
    }
}

/// The quote RFC 792 asks of an ICMP error: the invoking packet's IP header(s) and the first
/// 8 bytes after them (the ports, and TCP's sequence number, that its sender matches).
pub(super) fn header_and_8(p: &IpMeta) -> usize {
    (p.l4_off - p.l3_off) + 8.min(p.l4_len)
}

/// Cuts the end off the quote of the received ICMP(v6) error `p` describes, so that its IP
/// packet is `ip_len` bytes and fits the link (and tunnel) it is forwarded over: an error's
/// quote is "as much of the invoking packet as fits" (RFC 1812 4.3.2.3, RFC 4443 2.4), and
/// the invoking packet's headers and first 8 bytes (`keep` bytes after the ICMP header)
/// stay, which is all its receiver matches. Its IP length, IPv4 header checksum and ICMP
/// checksum are made right again; `p` follows. `false` (nothing changed) when the headers
/// and `keep` do not fit in `ip_len`. Cold: errors this big are rare.
#[cold]
pub(super) fn shorten_error<F: Frame>(
    frame: &mut F,
    p: &mut IpMeta,
    ip_len: usize,
    keep: usize,
) -> bool {
    let headers = p.l4_off - p.l3_off;
    if ip_len < headers + 8 + keep || ip_len >= p.ip_len() {
        return false;
    }
    p.l4_len = ip_len - headers;
    frame.truncate(p.l4_off + p.l4_len);
    let data = frame.data_mut();
    let l3 = p.l3_off;
    if p.v6 {
        data[l3 + 4..l3 + 6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
    } else {
        data[l3 + 2..l3 + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        let c = checksum::ipv4_header(&data[l3..p.l4_off]);
        data[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let icmp = &mut data[p.l4_off..];
    icmp[2..4].copy_from_slice(&[0; 2]);
    let c = if p.v6 {
        checksum::l4_checksum_v6(&p.src, &p.dst, IPPROTO_ICMPV6, icmp)
    } else {
        !checksum::fold(checksum::sum(icmp, 0))
    };
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    true
}

/// Turns the received packet into an ICMP (IPv4) or ICMPv6 error about it, from `from` (a
/// VIP) back to its source: `kind` (type, code), the 4 bytes after the checksum
/// (`rest`: unused, or the MTU), then the first `quote` bytes of the packet from its IP
/// header on (RFC 792, RFC 4443). In place: the quote moves back over the frame's own bytes
/// (the frame grows only when the answer is longer than the packet was).
pub(super) fn icmp_error<F: Frame>(
    frame: &mut F,
    p: &IpMeta,
    our_mac: [u8; 6],
    from: &Addr,
    kind: (u8, u8),
    rest: [u8; 4],
    quote: usize,
) -> Verdict {
    let l3 = p.l3_off;
    let ip_len = if p.v6 { 40 } else { 20 };
    let total = l3 + ip_len + 8 + quote;
    let have = frame.data().len();
    if have < total && !frame.append(total - have) {
        return Verdict::Drop(DropReason::NoRoom);
    }
    let data = frame.data_mut();
    data.copy_within(l3..l3 + quote, l3 + ip_len + 8);
    frame.truncate(total);
    let data = frame.data_mut();
    macs_back(data, &our_mac);
    let icmp_len = 8 + quote;
    let proto = if p.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    write_ip_header(&mut data[l3..], p.v6, from, &p.src, proto, icmp_len as u16);
    let icmp = &mut data[l3 + ip_len..total];
    icmp[0] = kind.0;
    icmp[1] = kind.1;
    icmp[2..4].copy_from_slice(&[0; 2]);
    icmp[4..8].copy_from_slice(&rest);
    let c = if p.v6 {
        checksum::l4_checksum_v6(from, &p.src, IPPROTO_ICMPV6, icmp)
    } else {
        !checksum::fold(checksum::sum(icmp, 0))
    };
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Verdict::Reply
}

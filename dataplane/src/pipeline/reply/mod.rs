//! Frames the balancer answers in place of a backend or as itself: a TCP RST or an ICMP
//! "unreachable" for an empty pool, an ICMP echo reply, ARP and neighbour advertisements.
//! Each turns the received frame into its answer, in place, back to where it came from.

pub(super) mod echo;
pub(super) mod neighbor;
pub(super) mod rst;
pub(super) mod unreachable;

use crate::flow::v4_of;
use crate::snapshot::Addr;
use crate::wire;

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

//! The one encapsulation every tunnel mode shares: the frame grows at the front by the
//! tunnel's overhead (the mbuf's headroom), its Ethernet header (and VLAN tags) moves to the
//! new front, and the backend's precomputed outer headers ([`Tunnel`]) go between it and the
//! inner packet, which stays untouched. Per packet only the DSCP/ECN byte, the lengths and
//! the IPv4 header checksum are written here; GUE's UDP fields are `gue.rs`'s.

use crate::frame::Frame;
use crate::tunnel::Tunnel;
use crate::wire::{checksum, ethernet};

use super::super::parse::IpMeta;

/// Puts the outer headers of `t` in front of the IP packet `p` describes (any Ethernet
/// padding after it is cut first, so the outer lengths cover exactly the inner packet).
/// Returns the offset of the byte after the outer IP header (GUE's UDP header), or `None`
/// when the frame has no headroom for them (then it may have lost its padding, nothing else).
#[inline(always)]
pub(in crate::pipeline) fn outer<F: Frame>(frame: &mut F, p: &IpMeta, t: &Tunnel) -> Option<usize> {
    let l2 = p.l3_off;
    let inner = p.l4_off + p.l4_len - l2;
    let n = t.overhead();
    frame.truncate(l2 + inner);
    if !frame.prepend(n) {
        return None;
    }
    let data = frame.data_mut();
    data.copy_within(n..n + l2, 0);
    // DSCP and ECN of the inner packet (RFC 2983 uniform model, RFC 6040 normal mode).
    let tos = if p.v6 {
        (data[l2 + n] << 4) | (data[l2 + n + 1] >> 4)
    } else {
        data[l2 + n + 1]
    };
    let h = &mut data[l2..l2 + n];
    h.copy_from_slice(t.header());
    let total = n + inner;
    let ip_len = if t.is_v6() {
        h[0] |= tos >> 4;
        h[1] = tos << 4;
        h[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        data[l2 - 2..l2].copy_from_slice(&ethernet::ETHERTYPE_IPV6.to_be_bytes());
        40
    } else {
        h[1] = tos;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let ck = !checksum::combine(&[t.fixed_sum(), u16::from(tos), total as u16]);
        h[10..12].copy_from_slice(&ck.to_be_bytes());
        data[l2 - 2..l2].copy_from_slice(&ethernet::ETHERTYPE_IPV4.to_be_bytes());
        20
    };
    Some(l2 + ip_len)
}

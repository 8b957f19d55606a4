//! ICMP "port unreachable" for a UDP datagram to an empty pool.

use crate::frame::Frame;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, checksum};

use super::super::parse::IpMeta;

/// Turns a UDP datagram for an empty pool into ICMP port unreachable, quoting its IP header
/// and the first 8 bytes after it (RFC 792; RFC 4443 for IPv6, which quotes the same here).
pub(in crate::pipeline) fn build<F: Frame>(frame: &mut F, p: &IpMeta, our_mac: [u8; 6]) -> Verdict {
    let l3 = p.l3_off;
    let ip_len = if p.v6 { 40 } else { 20 };
    // The quoted invoking packet: its IP header(s) plus 8 bytes of UDP.
    let quote = (p.l4_off - l3) + 8.min(p.l4_len);
    let total = l3 + ip_len + 8 + quote;
    let have = frame.data().len();
    if have < total && !frame.append(total - have) {
        return Verdict::Drop(DropReason::NoRoom);
    }
    let data = frame.data_mut();
    data.copy_within(l3..l3 + quote, l3 + ip_len + 8);
    frame.truncate(total);
    let data = frame.data_mut();
    super::macs_back(data, &our_mac);
    let icmp_len = 8 + quote;
    let (ptype, code) = if p.v6 {
        (IPPROTO_ICMPV6, (1u8, 4u8))
    } else {
        (IPPROTO_ICMP, (3u8, 3u8))
    };
    super::write_ip_header(
        &mut data[l3..],
        p.v6,
        &p.dst,
        &p.src,
        ptype,
        icmp_len as u16,
    );
    let icmp = &mut data[l3 + ip_len..total];
    icmp[0] = code.0;
    icmp[1] = code.1;
    icmp[2..8].copy_from_slice(&[0; 6]);
    let c = if p.v6 {
        checksum::l4_checksum_v6(&p.dst, &p.src, IPPROTO_ICMPV6, icmp)
    } else {
        !checksum::fold(checksum::sum(icmp, 0))
    };
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Verdict::Reply
}

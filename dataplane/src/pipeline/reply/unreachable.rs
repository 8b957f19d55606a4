//! ICMP "port unreachable" for a UDP datagram to an empty pool.

use crate::frame::Frame;
use crate::verdict::Verdict;

use super::super::parse::IpMeta;

/// Turns a UDP datagram for an empty pool into ICMP port unreachable, quoting its IP header
/// and the first 8 bytes after it (RFC 792; RFC 4443 for IPv6, which quotes the same here).
pub(in crate::pipeline) fn build<F: Frame>(frame: &mut F, p: &IpMeta, our_mac: [u8; 6]) -> Verdict {
    // The quoted invoking packet: its IP header(s) plus 8 bytes of UDP.
    let quote = super::header_and_8(p);
    let kind = if p.v6 { (1, 4) } else { (3, 3) };
    super::icmp_error(frame, p, our_mac, &p.dst, kind, [0; 4], quote)
}

//! The answer to a packet too big for the port it would leave by: ICMP "fragmentation
//! needed" (IPv4 with DF, RFC 792 / RFC 1191) or ICMPv6 "packet too big" (RFC 4443 3.2), from
//! the VIP to the sender (a client, or a NAT backend whose reply is too big for the client's
//! port), carrying the MTU the sender may use.
//!
//! From the VIP, not from one of the balancer's addresses: a client's kernel matches the
//! error to its connection by the quoted packet alone (Linux `tcp_v4_err`/`tcp_v6_err` and a
//! stateful firewall's RELATED match both key on the quote), so either source is accepted
//! there; but the VIP is the one address every client can be answered from, through every
//! filter the backends' own replies pass (uRPF, ACLs), while the balancer's address may be
//! private to its link. Katran answers from the VIP too.

use crate::frame::Frame;
use crate::snapshot::Addr;
use crate::verdict::Verdict;

use super::super::parse::IpMeta;

/// ICMPv6's "as much of invoking packet as possible without the ICMPv6 packet exceeding the
/// minimum IPv6 MTU" (RFC 4443 3.2): 1280 - 40 (IPv6) - 8 (ICMPv6).
const V6_QUOTE_MAX: usize = 1280 - 40 - 8;

/// Turns the packet into the error, from `vip`, that tells its sender to send at most `mtu`
/// bytes of IP packet: IPv4 quotes its IP header and 8 bytes (the ports and sequence number the sender's
/// kernel matches), IPv6 as much as fits in 1280 bytes. The caller decides that it is owed
/// one (IPv4: DF set).
pub(in crate::pipeline) fn build<F: Frame>(
    frame: &mut F,
    p: &IpMeta,
    our_mac: [u8; 6],
    vip: &Addr,
    mtu: u16,
) -> Verdict {
    if p.v6 {
        let quote = p.ip_len().min(V6_QUOTE_MAX);
        let rest = u32::from(mtu).to_be_bytes();
        super::icmp_error(frame, p, our_mac, vip, (2, 0), rest, quote)
    } else {
        let quote = super::header_and_8(p);
        let [m0, m1] = mtu.to_be_bytes();
        super::icmp_error(frame, p, our_mac, vip, (3, 4), [0, 0, m0, m1], quote)
    }
}

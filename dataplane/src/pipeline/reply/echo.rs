//! ICMP(v6) echo replies for a VIP or the balancer's own address.

use crate::flow::v4_of;
use crate::frame::Frame;
use crate::ids::PortIdx;
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Verdict};
use crate::wire;

use super::super::parse::IpMeta;
use super::OWN_TTL;

/// ICMP echo to a VIP or our own address: answer it in place. Any other ICMP message is
/// `IcmpUnhandled`.
pub(in crate::pipeline) fn answer<F: Frame>(
    snap: &Snapshot,
    port: PortIdx,
    p: &IpMeta,
    frame: &mut F,
) -> Verdict {
    let mac = snap.ports[port.index()].mac;
    let data = frame.data_mut();
    let end = p.l4_off + p.l4_len;
    let l3 = p.l3_off;
    if p.v6 {
        let Ok(mut icmp) = wire::Icmpv6Packet::new_checked(&mut data[p.l4_off..end]) else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        if icmp.msg_type() != wire::icmpv6::ECHO_REQUEST {
            return Verdict::Drop(DropReason::IcmpUnhandled);
        }
        icmp.set_msg_type(wire::icmpv6::ECHO_REPLY);
        icmp.fill_checksum(&p.dst, &p.src);
        let mut ip = wire::Ipv6Packet::new_unchecked(&mut data[l3..]);
        ip.set_src_addr(p.dst);
        ip.set_dst_addr(p.src);
        ip.set_hop_limit(OWN_TTL);
    } else {
        let Ok(mut icmp) = wire::Icmpv4Packet::new_checked(&mut data[p.l4_off..end]) else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        if icmp.msg_type() != wire::icmpv4::ECHO_REQUEST || icmp.msg_code() != 0 {
            return Verdict::Drop(DropReason::IcmpUnhandled);
        }
        icmp.set_msg_type(wire::icmpv4::ECHO_REPLY);
        icmp.fill_checksum();
        let mut ip = wire::Ipv4Packet::new_unchecked(&mut data[l3..]);
        ip.set_src_addr(v4_of(&p.dst));
        ip.set_dst_addr(v4_of(&p.src));
        ip.set_ttl(OWN_TTL);
        ip.fill_checksum();
    }
    super::macs_back(data, &mac);
    Verdict::Reply
}

//! Answers to neighbour requests for a VIP or the balancer's own address: the ARP reply and
//! the IPv6 neighbour advertisement, each carrying the receiving port's MAC.

use crate::frame::Frame;
use crate::snapshot::Addr;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{self, IPPROTO_ICMPV6, checksum};

use super::super::neighbor::ALL_NODES;
use super::super::parse::IpMeta;

/// Turns the ARP request at `l3` (checked) into the reply: "`target` is at `mac`".
pub(in crate::pipeline) fn arp(data: &mut [u8], l3: usize, mac: [u8; 6]) -> Verdict {
    let mut arp = wire::ArpPacket::new_unchecked(&mut data[l3..]);
    let target = arp.target_proto_addr();
    let (sha, spa) = (arp.sender_hw_addr(), arp.sender_proto_addr());
    arp.set_operation(wire::arp::OP_REPLY);
    arp.set_target_hw_addr(sha);
    arp.set_target_proto_addr(spa);
    arp.set_sender_hw_addr(mac);
    arp.set_sender_proto_addr(target);
    super::macs_back(data, &mac);
    Verdict::Reply
}

/// Turns a neighbour solicitation for `target` into the advertisement carrying `mac`: to
/// the solicitor, or to all-nodes when it came from the unspecified address (DAD).
pub(in crate::pipeline) fn advertisement<F: Frame>(
    frame: &mut F,
    p: &IpMeta,
    target: Addr,
    mac: [u8; 6],
) -> Verdict {
    let src_unspecified = p.src == [0u8; 16];
    let dst = if src_unspecified { ALL_NODES } else { p.src };
    // NA: 24 bytes + target link-layer address option (8 bytes).
    let na_len = 32usize;
    let want = p.l4_off + na_len;
    let have = frame.data().len();
    if have < want && !frame.append(want - have) {
        return Verdict::Drop(DropReason::NoRoom);
    }
    frame.truncate(want);
    let data = frame.data_mut();
    let na = &mut data[p.l4_off..p.l4_off + na_len];
    na[0] = wire::icmpv6::NEIGHBOR_ADVERT;
    na[1] = 0;
    na[2..4].copy_from_slice(&[0, 0]);
    // Solicited (unless answering DAD) and Override.
    na[4] = if src_unspecified { 0x20 } else { 0x60 };
    na[5..8].copy_from_slice(&[0, 0, 0]);
    na[8..24].copy_from_slice(&target);
    na[24] = 2; // target link-layer address
    na[25] = 1; // length in units of 8 bytes
    na[26..32].copy_from_slice(&mac);
    let csum = checksum::l4_checksum_v6(
        &target,
        &dst,
        IPPROTO_ICMPV6,
        &data[p.l4_off..p.l4_off + na_len],
    );
    data[p.l4_off + 2..p.l4_off + 4].copy_from_slice(&csum.to_be_bytes());
    // A fresh IPv6 header: extension headers of the solicitation are not echoed.
    let l3 = p.l3_off;
    if p.l4_off != l3 + 40 {
        return Verdict::Drop(DropReason::MalformedIpv6);
    }
    let mut ip = wire::Ipv6Packet::new_unchecked(&mut data[l3..]);
    ip.set_payload_len(na_len as u16);
    ip.set_next_header(IPPROTO_ICMPV6);
    ip.set_hop_limit(255);
    ip.set_src_addr(target);
    ip.set_dst_addr(dst);
    super::macs_back(data, &mac);
    Verdict::Reply
}

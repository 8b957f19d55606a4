//! ARP and IPv6 neighbour discovery on the data ports: which requests the balancer answers
//! (for a VIP or its own address on that port, [`reply::neighbor`](super::reply::neighbor)
//! builds the answer) and which announcements go to the slow path's neighbour cache.

use crate::frame::Frame;
use crate::ids::PortIdx;
use crate::snapshot::{Addr, IpKey, Snapshot};
use crate::verdict::{DropReason, Verdict};
use crate::wire;

use super::Pipeline;
use super::parse::IpMeta;
use super::reply;

/// ff02::1, the link's all-nodes group.
pub(super) const ALL_NODES: Addr = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// ICMPv6 neighbour solicitation.
const NEIGHBOR_SOLICIT: u8 = 135;

/// Does the balancer answer for `target` on `port`: a VIP announced by ARP/ND, or one of that
/// port's addresses?
#[inline]
fn answers_for(snap: &Snapshot, port: PortIdx, target: IpKey) -> bool {
    snap.answers_neighbor_for(target) || snap.own_addr(target) == Some(port)
}

impl Pipeline {
    /// An ARP packet at `l3`: a request for us is answered, an announcement goes to the slow
    /// path.
    pub(super) fn arp<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        l3: usize,
        frame: &mut F,
    ) -> Verdict {
        let data = frame.data_mut();
        let Ok(arp) = wire::ArpPacket::new_checked(&mut data[l3..]) else {
            return Verdict::Drop(DropReason::MalformedArp);
        };
        if arp.operation() != wire::arp::OP_REQUEST {
            // Replies and announcements feed the slow path's neighbour cache.
            return Verdict::SlowPath;
        }
        let target = arp.target_proto_addr();
        if !answers_for(snap, port, IpKey::v4(target)) {
            // A gratuitous request (sender address = target address) announces its sender's
            // MAC: Linux sends one when an interface's MAC changes (`arp_notify`), a standby
            // taking an address over sends several. The neighbour cache follows it at once,
            // as it does a reply, instead of at its next confirmation.
            if arp.sender_proto_addr() == target {
                return Verdict::SlowPath;
            }
            return Verdict::Drop(DropReason::ArpNotOurs);
        }
        reply::neighbor::arp(data, l3, snap.ports[port.index()].mac)
    }
}

/// ICMPv6 not to a VIP or our address: an unsolicited neighbour advertisement goes to the
/// slow path, a neighbour solicitation for a VIP is answered; `None` for anything else.
pub(super) fn ipv6<F: Frame>(
    snap: &Snapshot,
    port: PortIdx,
    p: &IpMeta,
    frame: &mut F,
) -> Option<Verdict> {
    let data = frame.data();
    // An unsolicited neighbour advertisement to all-nodes announces its sender's MAC
    // (Linux sends one when an interface's MAC changes, with `ndisc_notify`): the
    // slow path's neighbour cache follows it at once, as it does the ARP kind.
    if p.dst == ALL_NODES && data.get(p.l4_off) == Some(&wire::icmpv6::NEIGHBOR_ADVERT) {
        return Some(Verdict::SlowPath);
    }
    // Neighbour solicitations for a VIP arrive at its solicited-node multicast address.
    // type(1) code(1) checksum(2) reserved(4) target(16) [options]
    if p.l4_len < 24 || data.get(p.l4_off) != Some(&NEIGHBOR_SOLICIT) {
        return None;
    }
    let target: Addr = data[p.l4_off + 8..p.l4_off + 24].try_into().ok()?;
    if !answers_for(snap, port, IpKey::v6(target)) {
        return Some(Verdict::Drop(DropReason::ArpNotOurs));
    }
    Some(reply::neighbor::advertisement(
        frame,
        p,
        target,
        snap.ports[port.index()].mac,
    ))
}

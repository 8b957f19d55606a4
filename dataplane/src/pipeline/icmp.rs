//! ICMP(v6) errors to a VIP (a router on the way to a client refusing a packet the VIP
//! sent: "fragmentation needed" / "packet too big" is path-MTU discovery): sent to the
//! backend that owns the quoted flow, as Katran and GLB do, so its stack learns the path MTU.
//! A tunnelled flow's errors go through its tunnel, with the flow's own outer header. An
//! error too big for the backend's link once encapsulated (it may quote up to 1232 bytes,
//! or more over IPv4) is not dropped: its quote is cut to fit ([`reply::shorten_error`]).

use crate::flow::FlowKey;
use crate::flow::v4_of;
use crate::frame::Frame;
use crate::hash;
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Verdict};
use crate::wire;

use super::parse::IpMeta;
use super::{Pipeline, reply, rewrite, service};

/// Is the ICMP(v6) message at `p.l4_off` an error quoting a packet (v4: destination
/// unreachable, time exceeded, parameter problem; v6: those and packet too big)? Messages
/// shorter than an ICMP header are not (the echo path counts them malformed).
#[inline]
pub(super) fn is_error(data: &[u8], p: &IpMeta) -> bool {
    use wire::{icmpv4, icmpv6};
    match data.get(p.l4_off) {
        _ if p.l4_len < icmpv4::HEADER_LEN => false,
        Some(&t) if p.v6 => matches!(
            t,
            icmpv6::DEST_UNREACHABLE
                | icmpv6::PACKET_TOO_BIG
                | icmpv6::TIME_EXCEEDED
                | icmpv6::PARAM_PROBLEM
        ),
        Some(&t) => matches!(
            t,
            icmpv4::DEST_UNREACHABLE | icmpv4::TIME_EXCEEDED | icmpv4::PARAM_PROBLEM
        ),
        None => false,
    }
}

impl Pipeline {
    /// An ICMP(v6) error to a VIP, to the backend a packet of the quoted flow would reach:
    /// its flow-table entry's (on the NAT flow's owner), else Maglev's choice, which every
    /// instance with this config makes alike. The entry is neither made nor refreshed: errors
    /// are easy to forge. DSR forwards the frame as it is (the backend holds the VIP); NAT
    /// translates it as the backend's own packet would have been: outer destination and
    /// quoted source := backend.
    pub(super) fn icmp_error<F: Frame>(
        &mut self,
        snap: &Snapshot,
        mut p: IpMeta,
        frame: &mut F,
    ) -> Verdict {
        let q = {
            let data = frame.data();
            let quote = data
                .get(p.l4_off + 8..p.l4_off + p.l4_len)
                .unwrap_or_default();
            match wire::Quote::parse(quote, p.v6) {
                Ok(q) => q,
                Err(_) => return Verdict::Drop(DropReason::IcmpErrorMalformed),
            }
        };
        if q.src != p.dst {
            return Verdict::Drop(DropReason::IcmpErrorNotVip);
        }
        // The flow as its client sends it: client -> VIP:port.
        let key = if p.v6 {
            FlowKey::v6(q.dst, q.src, q.dport, q.sport, q.proto)
        } else {
            FlowKey::v4(v4_of(&q.dst), v4_of(&q.src), q.dport, q.sport, q.proto)
        };
        let Some(si) = snap.service(p.dst_key(), q.proto, q.sport) else {
            return Verdict::Drop(DropReason::IcmpErrorNoService);
        };
        let svc = &snap.services[si.index()];
        if !svc.acl.admits(&key.src, p.v6) {
            return Verdict::Drop(DropReason::AclDenied);
        }
        if let Some(v) = self.handoff(svc.forwarding, &key.src, key.sport) {
            return v;
        }
        let fhash = hash::table_hash(self.local_seed, &key);
        let found = self.flows.probe(&key, fhash).found;
        if svc.forwarding == conf::Forwarding::FullNat {
            // About a reply the VIP sent (VIP:vport -> client:cport): the backend's packet
            // was backend:bport -> local:lport, which only the flow's pair knows.
            let Some((b, rkey)) = found.and_then(|idx| {
                let b = service::flow_backend(snap, self.flows.get(idx), si)?;
                Some((b, self.local_of(idx)?))
            }) else {
                return Verdict::Drop(DropReason::FullNatNoFlow);
            };
            self.per_backend.count(b.id, false, frame.data().len());
            let data = frame.data_mut();
            rewrite::fullnat::icmp_error(
                data,
                &p,
                &q,
                &rkey.src,
                (&rkey.src, rkey.sport),
                (&rkey.dst, rkey.dport),
            );
            rewrite::dsr::to_backend(data, b);
            return Verdict::Forward { port: b.out_port };
        }
        let b = match found {
            Some(idx) => match service::flow_backend(snap, self.flows.get(idx), si) {
                Some(b) => b,
                None => return Verdict::Drop(DropReason::IcmpErrorBackendDown),
            },
            None => match service::pick_new(snap, si, &key) {
                Some(b) => b,
                None => return Verdict::Drop(DropReason::IcmpErrorNoBackend),
            },
        };
        let room = usize::from(b.max_ip_len);
        if p.ip_len() > room && !reply::shorten_error(frame, &mut p, room, q.l4 + 8) {
            return Verdict::Drop(DropReason::NoRoom);
        }
        self.per_backend.count(b.id, false, frame.data().len());
        if svc.forwarding == conf::Forwarding::Nat {
            let data = frame.data_mut();
            rewrite::nat::icmp_error(data, &p, &q, &b.addr_key, b.port.unwrap_or(q.sport));
            rewrite::dsr::to_backend(data, b);
        } else if !rewrite::to_backend(frame, &p, b, svc.forwarding, &key, snap.seed) {
            // A tunnel's error goes the flow's way: the same outer header (and GUE port).
            return Verdict::Drop(DropReason::NoRoom);
        }
        Verdict::Forward { port: b.out_port }
    }
}

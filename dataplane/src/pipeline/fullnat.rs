//! FullNAT's flows: a new flow's local port (from this worker's pools, `local_ports.rs`), its
//! pair of entries, the way back (a backend's reply to a local address and port, found on the
//! worker that owns the port), ICMP errors from the backends' side, and the ports given back
//! when a pair leaves the table.
//!
//! A pair is a forward entry keyed as the client sends (client:cport -> VIP:vport, with the
//! backend) and a reverse entry keyed as the backend answers (backend:bport -> local:lport,
//! with the client's port and next hop), linked as NAT's twins are. The local address and
//! port live in the reverse entry's key: a client's packet reads them through its entry's
//! twin, and no field of the entry had to grow.

use conf::Forwarding;

use crate::flow::{self, Evicted, Flow, FlowKey, FlowSlot};
use crate::frame::Frame;
use crate::hash;
use crate::ids::{PortIdx, WorkerIdx};
use crate::local_ports::{self, LocalPorts};
use crate::snapshot::{BackendRt, IpKey, Snapshot};
use crate::verdict::{DropReason, Verdict};
use crate::wire::{self, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, tcp};

use super::parse::{self, IpMeta, Ports};
use super::rewrite::proxy_v2;
use super::{Pipeline, icmp, rewrite};

/// A TCP segment's sequence number (`None` when its header is cut off).
#[inline]
fn tcp_seq(data: &[u8], p: &IpMeta) -> Option<u32> {
    let b = data.get(p.l4_off + 4..p.l4_off + 8)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// [`Flow::flags`] bit of both halves of a FullNAT pair (the reverse half also carries
/// [`flow::FLAG_REVERSE`]): its local port goes back to the pool when the pair leaves.
pub(super) const FLAG_FULLNAT: u8 = 0x02;

/// [`Flow::flags`] bit of a FullNAT pair's forward half whose connection starts with a PROXY
/// v2 header (its service's `proxy_protocol`, when the flow was opened by a SYN); the half
/// keeps its client's first data sequence ([`Flow::proxy_first_seq`]).
pub(super) const FLAG_PROXY_V2: u8 = 0x04;

/// Ports a new flow takes from one local address's pool at most before trying the next
/// address: a port whose tuple to this backend is still live is skipped, and comes back when
/// that flow ends. The pools leave out the ports of adopted pairs
/// ([`Pipeline::sync_local_ports`]), so this is a guard that no live tuple is ever opened
/// twice, not the way adopted flows are kept.
const TAKE_TRIES: usize = 4;

/// The local address of a FullNAT pair's reverse half keyed `key` (the backend answers to
/// it; the port is `key.dport`).
#[inline]
fn local_addr(key: &FlowKey) -> IpKey {
    IpKey::new(&key.dst, key.family == flow::FAMILY_V6)
}

/// Gives back the local port of `f` (keyed `key`) if it is a FullNAT pair's reverse half.
#[inline]
pub(super) fn release_into(lp: &mut LocalPorts, now: u32, key: &FlowKey, f: &Flow) {
    const BOTH: u8 = FLAG_FULLNAT | flow::FLAG_REVERSE;
    if f.flags & BOTH == BOTH {
        lp.give(local_addr(key), key.dport, now);
    }
}

impl Pipeline {
    /// Brings this worker's local-port pools up to the snapshot: once per snapshot, so a new
    /// address's pool is made between packets, never for one. A new pool leaves out the
    /// ports that live pairs of the table hold (a table adopted from the previous process:
    /// its pairs' ports were never handed out by these pools), so no port is handed out
    /// twice; they come back when their pairs leave, as any port does.
    #[inline(always)]
    pub(super) fn sync_local_ports(&mut self, snap: &Snapshot) {
        if snap.generation != self.local_ports_gen {
            self.resync_local_ports(snap);
        }
    }

    /// [`sync_local_ports`](Self::sync_local_ports) for a new snapshot. Out of line: the
    /// burst loop it precedes keeps its registers.
    #[cold]
    #[inline(never)]
    fn resync_local_ports(&mut self, snap: &Snapshot) {
        self.local_ports_gen = snap.generation;
        let fx = &snap.fullnat;
        let made = self
            .local_ports
            .sync(&fx.ports, fx.quiet_ms, &fx.locals, self.now_ms);
        if made && !self.flows.is_empty() {
            self.hold_adopted_ports();
        }
    }

    /// Takes the local ports of the table's FullNAT pairs out of the pools: one pass over
    /// the table, when a pool is made (the first snapshot after an adoption; a new address
    /// or range), never for a packet.
    #[cold]
    #[inline(never)]
    fn hold_adopted_ports(&mut self) {
        const BOTH: u8 = FLAG_FULLNAT | flow::FLAG_REVERSE;
        let held = self
            .flows
            .iter()
            .filter(|(_, f)| f.flags & BOTH == BOTH)
            .map(|(k, _)| (local_addr(k), k.dport));
        self.local_ports.hold(held);
    }

    /// The reverse half's key of the FullNAT pair with a half in slot `idx`: its
    /// destination is the balancer's side of the connection as the backend sees it (local
    /// address and port). `None` for any other flow, or a pair whose other half is gone.
    /// For `ctl which`, not the packet path.
    pub fn fullnat_local(&self, idx: FlowSlot) -> Option<FlowKey> {
        let f = self.flows.get(idx);
        if f.flags & FLAG_FULLNAT == 0 {
            return None;
        }
        if f.flags & flow::FLAG_REVERSE != 0 {
            return Some(*self.flows.key(idx));
        }
        self.local_of(idx)
    }

    /// This worker's local ports in use, per local address.
    pub fn local_ports(&self) -> &LocalPorts {
        &self.local_ports
    }

    /// An evicted entry (and its twin) gives back what it held.
    #[inline]
    pub(super) fn forget_evicted(&mut self, e: &Evicted) {
        release_into(&mut self.local_ports, self.now_ms, &e.key, &e.flow);
        if let Some((k, f)) = &e.twin {
            release_into(&mut self.local_ports, self.now_ms, k, f);
        }
    }

    /// Removes the entry at `idx` and its twin, giving back a FullNAT pair's local port;
    /// how many entries it removed.
    pub(super) fn remove_flow(&mut self, idx: FlowSlot) -> u64 {
        let f = *self.flows.get(idx);
        if f.flags & FLAG_FULLNAT != 0 {
            let now = self.now_ms;
            release_into(&mut self.local_ports, now, self.flows.key(idx), &f);
            let tw = f.twin;
            if self.flows.is_live(tw) && self.flows.get(tw).twin == idx {
                let g = *self.flows.get(tw);
                release_into(&mut self.local_ports, now, self.flows.key(tw), &g);
            }
        }
        self.flows.remove(idx)
    }

    /// The local address and port of the FullNAT flow in slot `idx` (its twin's key), if
    /// its pair is whole.
    #[inline]
    pub(super) fn local_of(&self, idx: FlowSlot) -> Option<FlowKey> {
        let tw = self.flows.get(idx).twin;
        (self.flows.is_live(tw)
            && self.flows.get(tw).twin == idx
            && self.flows.get(tw).flags & FLAG_FULLNAT != 0)
            .then(|| *self.flows.key(tw))
    }

    /// A client's packet of the FullNAT flow in slot `idx` to backend `b`: NAT's rewrite and
    /// the source half, from the local address and port of its pair. `None` (nothing done)
    /// when the entry is not a whole FullNAT pair: made in another mode before a reload or a
    /// restart made the service FullNAT (or its other half is gone), it has no local side;
    /// the caller makes the flow again, as for a backend gone.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fullnat_forward<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        idx: FlowSlot,
        b: &BackendRt,
        p: &IpMeta,
        key: &FlowKey,
        frame: &mut F,
    ) -> Option<Verdict> {
        let rkey = self.local_of(idx)?;
        if self.flows.get(idx).flags & FLAG_PROXY_V2 != 0 {
            return Some(self.proxy_v2_forward(snap, port, idx, b, p, key, &rkey, frame));
        }
        Some(self.fullnat_send(snap, port, b, false, p, key, &rkey, frame))
    }

    /// [`fullnat_forward`](Self::fullnat_forward) of a flow with PROXY v2: a SYN (sent
    /// again, or opening the tuple anew) sets where the client's data starts; the first
    /// data segment (or a retransmission of it) gets the header, if it still fits the MTU
    /// toward the backend (else `proxy_v2_too_big`); every later one its sequence number
    /// shifted. Out of line: the other flows keep their registers.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn proxy_v2_forward<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        idx: FlowSlot,
        b: &BackendRt,
        p: &IpMeta,
        key: &FlowKey,
        rkey: &FlowKey,
        frame: &mut F,
    ) -> Verdict {
        let Some(seq) = tcp_seq(frame.data(), p) else {
            return self.fullnat_send(snap, port, b, false, p, key, rkey, frame);
        };
        if frame.data()[p.l4_off + 13] & tcp::SYN != 0 {
            self.flows
                .get_mut(idx)
                .set_proxy_first_seq(seq.wrapping_add(1));
            return self.fullnat_send(snap, port, b, false, p, key, rkey, frame);
        }
        let first = self.flows.get(idx).proxy_first_seq();
        if proxy_v2::grows(frame.data(), p, first)
            && p.ip_len() + proxy_v2::header_len(p.v6) > usize::from(b.max_ip_len)
        {
            return Verdict::Drop(DropReason::ProxyV2TooBig);
        }
        let v = self.fullnat_send(snap, port, b, false, p, key, rkey, frame);
        if let Verdict::Forward { .. } = v
            && proxy_v2::to_backend(frame, p, key, first) == proxy_v2::Inserted::NoRoom
        {
            return Verdict::Drop(DropReason::ProxyV2TooBig);
        }
        v
    }

    /// Forwards a client's packet to `b` with source `rkey.dst:rkey.dport` (the pair's
    /// reverse key), or answers it too big.
    #[allow(clippy::too_many_arguments)]
    fn fullnat_send<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        b: &BackendRt,
        new_flow: bool,
        p: &IpMeta,
        key: &FlowKey,
        rkey: &FlowKey,
        frame: &mut F,
    ) -> Verdict {
        let v = self.forward(snap, port, b, new_flow, p, key, Forwarding::FullNat, frame);
        if let Verdict::Forward { .. } = v {
            rewrite::fullnat::source(frame.data_mut(), p, &rkey.dst, rkey.dport);
        }
        v
    }

    /// A new FullNAT flow of service `si` to backend `b`: a rested local port from the first
    /// of the backend's local addresses that has one, the pair recorded, the packet sent.
    /// No port: refused under `no_local_port`, answered as an empty pool would be.
    /// `probed`: the key's probe, when still fresh (this reads the table only until the
    /// pair is recorded, so it stays fresh).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fullnat_new<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        si: crate::ids::ServiceIdx,
        b: &BackendRt,
        p: &IpMeta,
        ports: Ports,
        key: FlowKey,
        fhash: u64,
        probed: Option<&crate::flow::Probe>,
        frame: &mut F,
    ) -> Verdict {
        if p.proto == IPPROTO_TCP && ports.tcp_flags & tcp::RST != 0 {
            // A RST of no flow has no local port to go out from.
            return Verdict::Drop(DropReason::FullNatNoFlow);
        }
        let now = self.now_ms;
        let bport = b.port.unwrap_or(ports.dport);
        let mut found = None;
        'addrs: for a in b.locals.iter() {
            for _ in 0..TAKE_TRIES {
                let Some(lport) = self.local_ports.take(*a, now) else {
                    continue 'addrs;
                };
                let rkey = FlowKey {
                    src: b.addr_key,
                    dst: *a.addr(),
                    sport: bport,
                    dport: lport,
                    ..key
                };
                let rhash = hash::table_hash(self.local_seed, &rkey);
                if self.flows.lookup(&rkey, rhash).is_none() {
                    found = Some((rkey, rhash));
                    break 'addrs;
                }
            }
        }
        let Some((rkey, rhash)) = found else {
            return self.local_ports_exhausted(snap, port, si, p, ports, frame);
        };
        let mut fl = Flow {
            flags: FLAG_FULLNAT,
            ..self.new_entry(si, b, p, ports, port, frame)
        };
        let rf = Flow {
            flags: FLAG_FULLNAT | flow::FLAG_REVERSE,
            ..fl
        };
        if snap.services[si.index()].proxy_v2
            && ports.tcp_flags & (tcp::SYN | tcp::ACK) == tcp::SYN
            && let Some(isn) = tcp_seq(frame.data(), p)
        {
            fl.flags |= FLAG_PROXY_V2;
            fl.set_proxy_first_seq(isn.wrapping_add(1));
        }
        if !self.record_pair(snap, (key, fhash, fl), (rkey, rhash, rf), probed) {
            self.local_ports.give(
                local_addr(&rkey),
                rkey.dport,
                now.wrapping_sub(snap.fullnat.quiet_ms),
            );
            return Verdict::Drop(DropReason::FullNatNoFlow);
        }
        self.fullnat_send(snap, port, b, true, p, &key, &rkey, frame)
    }

    /// No local port for a new flow: refused (counted) as the service's `on_empty` says.
    /// Out of line: [`Pipeline::empty_pool`] is inlined where it is called.
    #[cold]
    #[inline(never)]
    fn local_ports_exhausted<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        si: crate::ids::ServiceIdx,
        p: &IpMeta,
        ports: Ports,
        frame: &mut F,
    ) -> Verdict {
        self.counters.local_ports_exhausted += 1;
        let on_empty = snap.services[si.index()].on_empty;
        let reason = DropReason::NoLocalPort;
        self.empty_pool(snap, port, on_empty, p, ports, reason, frame)
    }

    /// A packet to one of FullNAT's local addresses that belongs to a flow: a backend's reply
    /// (TCP/UDP to a local port) or an ICMP error quoting a packet a FullNAT flow sent. `None`
    /// for anything else to the balancer's addresses (health checks' replies, echo, ND: the
    /// slow path's), which the caller decides as before.
    pub(super) fn fullnat_inbound<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        p: &IpMeta,
        fragment: bool,
        frame: &mut F,
    ) -> Option<Verdict> {
        let fx = &snap.fullnat;
        if fx.locals.is_empty() || !fx.locals.contains(&p.dst_key()) {
            return None;
        }
        let icmp = if p.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
        match p.proto {
            IPPROTO_TCP | IPPROTO_UDP => {
                let ports = parse::ports(frame.data(), p)?;
                if !fx.ports.contains(&ports.dport) {
                    return None;
                }
                if fragment {
                    return Some(Verdict::Drop(DropReason::Fragment));
                }
                Some(self.fullnat_reply(snap, port, *p, ports, frame))
            }
            x if x == icmp && !fragment && icmp::is_error(frame.data(), p) => {
                let q = {
                    let quote = frame.data().get(p.l4_off + 8..p.l4_off + p.l4_len)?;
                    wire::Quote::parse(quote, p.v6).ok()?
                };
                if q.src != p.dst || !fx.ports.contains(&q.sport) {
                    return None;
                }
                Some(self.fullnat_icmp_from_backend(snap, p, &q, frame))
            }
            _ => None,
        }
    }

    /// The worker that owns local port `lport` (this one when the port is outside the range,
    /// which the callers have ruled out).
    #[inline]
    fn lport_owner(&self, snap: &Snapshot, lport: u16) -> WorkerIdx {
        local_ports::owner(&snap.fullnat.ports, self.workers, lport)
            .map(WorkerIdx::new)
            .unwrap_or(self.worker)
    }

    /// A backend's reply (backend:bport -> local:lport): on the port's owner, its pair
    /// refreshed, sent to the client as the VIP's (VIP:vport -> client:cport).
    fn fullnat_reply<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        p: IpMeta,
        ports: Ports,
        frame: &mut F,
    ) -> Verdict {
        let owner = self.lport_owner(snap, ports.dport);
        if owner != self.worker {
            return Verdict::Handoff { worker: owner };
        }
        let rkey = p.flow_key(ports.sport, ports.dport);
        let Some((fkey, rev)) = self.reverse_hit(&rkey, p.proto == IPPROTO_TCP, ports.tcp_flags)
        else {
            return Verdict::Drop(DropReason::FullNatNoFlow);
        };
        let out = rev.port;
        let Some((out_mac, out_mtu)) = snap.ports.get(out.index()).map(|p| (p.mac, p.mtu)) else {
            return Verdict::Drop(DropReason::FullNatNoFlow);
        };
        if p.ip_len() > usize::from(out_mtu) {
            // Answered from the local address the backend sent to: its kernel lowers its
            // path MTU toward it.
            return self.too_big(snap, port, p, p.dst, out_mtu, 0, frame);
        }
        let fwd = *self.flows.get(rev.twin);
        let data = frame.data_mut();
        rewrite::fullnat::to_client(data, &p, &fkey);
        if fwd.flags & FLAG_PROXY_V2 != 0 {
            proxy_v2::to_client(data, &p, fwd.proxy_first_seq());
        }
        rewrite::macs(data, &rev.peer_mac, &out_mac);
        Verdict::Forward { port: out }
    }

    /// An ICMP(v6) error to a local address quoting local:lport -> backend:bport (a router
    /// toward the backend refusing a flow's packet): on the port's owner, made the client's
    /// error about its own packet (client:cport -> VIP:vport) and sent to it. The pair is
    /// neither made nor refreshed: errors are easy to forge.
    fn fullnat_icmp_from_backend<F: Frame>(
        &mut self,
        snap: &Snapshot,
        p: &IpMeta,
        q: &wire::Quote,
        frame: &mut F,
    ) -> Verdict {
        let owner = self.lport_owner(snap, q.sport);
        if owner != self.worker {
            return Verdict::Handoff { worker: owner };
        }
        let family = if p.v6 {
            flow::FAMILY_V6
        } else {
            flow::FAMILY_V4
        };
        let rkey = FlowKey {
            src: q.dst,
            dst: q.src,
            sport: q.dport,
            dport: q.sport,
            proto: q.proto,
            family,
        };
        let rhash = hash::table_hash(self.local_seed, &rkey);
        let Some(ridx) = self.flows.lookup(&rkey, rhash) else {
            return Verdict::Drop(DropReason::FullNatNoFlow);
        };
        let rev = *self.flows.get(ridx);
        if !self.flows.is_live(rev.twin) || self.flows.get(rev.twin).twin != ridx {
            return Verdict::Drop(DropReason::FullNatNoFlow);
        }
        let fkey = *self.flows.key(rev.twin);
        let Some(out_mac) = snap.ports.get(rev.port.index()).map(|p| p.mac) else {
            return Verdict::Drop(DropReason::FullNatNoFlow);
        };
        let data = frame.data_mut();
        rewrite::fullnat::icmp_error(
            data,
            p,
            q,
            &fkey.src,
            (&fkey.src, fkey.sport),
            (&fkey.dst, fkey.dport),
        );
        rewrite::macs(data, &rev.peer_mac, &out_mac);
        Verdict::Forward { port: rev.port }
    }
}

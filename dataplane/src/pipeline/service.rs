//! A packet to a service: its flow's backend (the flow table's choice, else Maglev's for a
//! new flow, recorded), or a refusal when the pool is empty. The fast path and the general
//! path make the same decisions through the same functions: [`Pipeline::hit`] for a packet
//! of a known flow, [`pick_new`] for a new one, [`Pipeline::forward`] to send it.

use conf::{Forwarding, OnEmpty};

use crate::exceptions::Report;
use crate::flow::{self, Flow, FlowKey, FlowSlot, FlowState, FlowTable};
use crate::frame::Frame;
use crate::hash;
use crate::ids::{BackendId, PortIdx, ServiceIdx};
use crate::snapshot::{BackendRt, IpKey, Snapshot};
use crate::verdict::{DropReason, Verdict};
use crate::wire::{IPPROTO_TCP, IPPROTO_UDP, tcp};

use super::parse::{Fast, IpMeta, Ports};
use super::{Pipeline, evicted_entries, reply, rewrite};

/// The backend that flow entry `f` of service `si` still goes to: `None` when it is down,
/// in maintenance, gone, or now another service's.
#[inline(always)]
pub(super) fn flow_backend<'s>(
    snap: &'s Snapshot,
    f: &Flow,
    si: ServiceIdx,
) -> Option<&'s BackendRt> {
    keeps_flow(snap, f.backend, si)
}

/// Whether a packet (`tcp`, `flags`) that found entry `f` opens a new connection on a closed
/// one's addresses and ports: a SYN (no ACK) where a FIN or RST was seen. A busy client (or
/// a NAT in front of many) reuses its ports within the closing timeout; the new connection
/// is placed as any new one is (Maglev's choice now, so never on a draining backend), with
/// an entry of its own, not on the old connection's backend in a closing entry (IPVS's
/// `conn_reuse_mode`). A SYN on a half-open entry is a retransmission and keeps its backend.
#[inline(always)]
fn reopens(f: &Flow, flags: u8) -> bool {
    // Only TCP entries close, and only TCP packets have flags.
    f.state == FlowState::TcpClosing && flags & (tcp::SYN | tcp::ACK) == tcp::SYN
}

/// Whether entry `f` is the forward half of a NAT pair, which a NAT service's packets need
/// (the reverse half translates the backend's replies). An entry another mode made (DSR or a
/// tunnel: no reverse half; FullNAT: a reverse half to a local address) before a reload
/// made its service NAT, or a half whose pair did not survive a restart, is not: its flow is
/// made again as a pair (counted rescheduled), so the backend answers at once (with a RST,
/// for a connection it never saw) instead of every reply being dropped as `nat_no_flow`
/// while the client waits for its timeout.
#[inline(always)]
fn nat_pair(f: &Flow) -> bool {
    f.twin != flow::NO_TWIN && f.flags & super::fullnat::FLAG_FULLNAT == 0
}

/// Backend `id` if it still takes an existing flow of service `si`: up or draining, and
/// still that service's. The one test for a flow-table entry and a peer's exception alike.
#[inline(always)]
fn keeps_flow(snap: &Snapshot, id: BackendId, si: ServiceIdx) -> Option<&BackendRt> {
    snap.backend(id)
        .filter(|b| b.service == si && b.keeps_flows())
}

/// Whether the entry `f` of `key` is an *exception* (instance sync): a flow whose backend
/// still takes it but is not the one Maglev picks for its key now, so an instance that did
/// not see its start would send it elsewhere. Only what a peer must keep: the forward half
/// of a NAT pair, established TCP (or closing, so peers forget it), confirmed UDP; never a
/// half-open or one-datagram flow (a flood's). Called by the expiry sweep, never per packet.
pub fn exception_of(snap: &Snapshot, key: &FlowKey, f: &Flow) -> Option<Report> {
    if f.flags & flow::FLAG_REVERSE != 0
        || matches!(f.state, FlowState::TcpSynSeen | FlowState::Udp)
    {
        return None;
    }
    let dst = IpKey::new(&key.dst, key.family == flow::FAMILY_V6);
    let si = snap.service(dst, key.proto, key.dport)?;
    keeps_flow(snap, f.backend, si)?;
    if pick_new(snap, si, key).is_some_and(|b| b.id == f.backend) {
        return None;
    }
    Some(Report {
        key: *key,
        backend: f.backend,
        closing: f.state == FlowState::TcpClosing,
    })
}

/// Where a new flow of service `si` goes: Maglev's choice, with the config's seed so that
/// every instance with this config agrees; `None` for an empty pool.
#[inline(always)]
pub(super) fn pick_new<'s>(
    snap: &'s Snapshot,
    si: ServiceIdx,
    key: &FlowKey,
) -> Option<&'s BackendRt> {
    let svc = &snap.services[si.index()];
    snap.backend(svc.pick_new(snap.seed, key)?)
}

/// The next state of a flow that a packet hit, given its TCP flags: a UDP flow's second
/// packet (either way) confirms it ([`FlowState::UdpConfirmed`]), so a full table keeps it
/// as it keeps an established TCP flow.
#[inline]
pub(super) fn next_state(cur: FlowState, tcp: bool, flags: u8) -> FlowState {
    if !tcp {
        return FlowState::UdpConfirmed;
    }
    if flags & (tcp::FIN | tcp::RST) != 0 {
        FlowState::TcpClosing
    } else if cur == FlowState::TcpSynSeen && flags & (tcp::ACK | tcp::SYN) == tcp::ACK {
        FlowState::TcpEstablished
    } else {
        cur
    }
}

/// A NAT flow's reverse half, when a client packet changed the forward half's state: the
/// halves move through the TCP states together. Only then: a pair lives while either half is
/// fresh (`FlowTable`'s pair expiry and eviction age), so refreshing the reverse half's
/// `last_seen` on every client packet would only cost a second, unprefetched cache line.
#[inline(never)]
#[cold]
fn sync_twin(flows: &mut FlowTable, twin: FlowSlot, now: u32, tcp: bool, flags: u8) {
    let state = next_state(flows.get(twin).state, tcp, flags);
    flows.touch(twin, now, state);
}

impl Pipeline {
    /// The fast path's decision: a packet of an established flow whose backend still takes
    /// it, forwarded exactly as [`Pipeline::service`] would (the same [`hit`](Self::hit) and
    /// rewrite) without rebuilding what the parse found. Anything else (a new flow, a
    /// backend gone, a NAT flow another worker may own) goes to [`Pipeline::service_probed`].
    #[inline(always)]
    pub(super) fn fast_service<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        x: &Fast,
        frame: &mut F,
    ) -> Verdict {
        let svc = &snap.services[x.si.index()];
        if !svc.acl.admits(&x.key.src, false) {
            return Verdict::Drop(DropReason::AclDenied);
        }
        let fwd = svc.forwarding;
        if (fwd == Forwarding::Nat && self.workers > 1) || fwd == Forwarding::FullNat {
            // Another worker may own it, and a FullNAT packet's source comes from its pair's
            // other half: decided out of line, as the general path decides.
            return self.owned_service(snap, port, x, fwd, frame);
        }
        let probe = self.flows.probe_home(x.home, &x.key, x.hash);
        if let Some(idx) = probe.found
            && let Some(b) = self.hit(
                snap,
                idx,
                x.si,
                x.key.proto == IPPROTO_TCP,
                x.tcp_flags,
                fwd,
            )
        {
            return self.forward(snap, port, b, false, &x.meta(), &x.key, fwd, frame);
        }
        // A SYN of no flow (a SYN flood's every packet) takes one of two short ways, decided
        // as `service_probed` would decide them, without its new-flow bookkeeping: to an
        // empty pool, the refusal; a DSR one into a full table, Maglev's choice unrecorded
        // (none will be made: a SYN never evicts). Anything else (room in the table, a
        // packet a peer may have placed) is decided there.
        if probe.found.is_none()
            && x.key.proto == IPPROTO_TCP
            && x.tcp_flags & tcp::SYN != 0
            && let Some(v) = self.syn_of_no_flow(snap, port, x, frame)
        {
            return v;
        }
        let (p, ports) = (x.meta(), x.ports());
        self.service_probed(snap, port, x.si, &p, ports, &x.key, x.hash, &probe, frame)
    }

    /// The fast path's packet of a service whose flows have an owner among the workers (NAT
    /// with several workers, FullNAT): handed to the owner, or decided here by
    /// [`Pipeline::service_probed`] as the general path would, with the parse's key, hash
    /// and home slot rather than computed again (the ACL was checked by the caller). Out of
    /// line: the DSR path keeps its registers.
    #[inline(never)]
    fn owned_service<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        x: &Fast,
        fwd: Forwarding,
        frame: &mut F,
    ) -> Verdict {
        if let Some(v) = self.handoff(fwd, &x.key.src, x.key.sport) {
            return v;
        }
        let probe = self.flows.probe_home(x.home, &x.key, x.hash);
        let (p, ports) = (x.meta(), x.ports());
        self.service_probed(snap, port, x.si, &p, ports, &x.key, x.hash, &probe, frame)
    }

    /// The fast path's SYN of no flow (a SYN flood's every packet), when it takes a short
    /// way: to an empty pool, refused (no backend takes new flows, and a SYN never consults
    /// a peer's placements); a DSR SYN into a full table, forwarded to Maglev's choice
    /// unrecorded (none will be made: a SYN never evicts). Both decided and counted as
    /// [`Pipeline::service_probed`] would, without its new-flow bookkeeping; `None` (nothing
    /// done) for any other, which that decides. Out of line: the established path keeps
    /// its registers (callgrind: DSR +9 instructions a packet with these checks inlined).
    #[inline(never)]
    fn syn_of_no_flow<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        x: &Fast,
        frame: &mut F,
    ) -> Option<Verdict> {
        let svc = &snap.services[x.si.index()];
        let unrecorded = self.flows.len() >= self.flows.capacity()
            && svc.forwarding == Forwarding::Dsr
            && x.tcp_flags & (tcp::ACK | tcp::RST) == 0;
        if !unrecorded && !svc.maglev.entries().is_empty() {
            return None; // a SYN with room in the table: recorded there
        }
        let Some(b) = pick_new(snap, x.si, &x.key) else {
            let reason = DropReason::NoBackend;
            let (p, ports) = (x.meta(), x.ports());
            return Some(self.empty_pool(snap, port, svc.on_empty, &p, ports, reason, frame));
        };
        self.counters.syn_unrecorded += 1;
        let p = x.meta();
        Some(self.forward(snap, port, b, false, &p, &x.key, Forwarding::Dsr, frame))
    }

    /// The general path's packet to service `si`: the ACL, the NAT owner, then the flow
    /// table.
    pub(super) fn service<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        si: ServiceIdx,
        p: IpMeta,
        ports: Ports,
        frame: &mut F,
    ) -> Verdict {
        let svc = &snap.services[si.index()];
        // Every packet, not only a flow's first: a reload that denies a source cuts it off.
        if !svc.acl.admits(&p.src, p.v6) {
            return Verdict::Drop(DropReason::AclDenied);
        }
        if let Some(v) = self.handoff(svc.forwarding, &p.src, ports.sport) {
            return v;
        }
        let key = p.flow_key(ports.sport, ports.dport);
        let fhash = hash::table_hash(self.local_seed, &key);
        let probe = self.flows.probe(&key, fhash);
        self.service_probed(snap, port, si, &p, ports, &key, fhash, &probe, frame)
    }

    /// A packet of the flow in slot `idx` of service `si`: its entry refreshed (and its NAT
    /// twin's state with it), and the backend it goes to; `None` (nothing changed) when that
    /// backend no longer takes the flow.
    #[inline(always)]
    fn hit<'s>(
        &mut self,
        snap: &'s Snapshot,
        idx: FlowSlot,
        si: ServiceIdx,
        tcp: bool,
        flags: u8,
        fwd: Forwarding,
    ) -> Option<&'s BackendRt> {
        let b = flow_backend(snap, self.flows.get(idx), si)?;
        let now = self.now_ms;
        let fm = self.flows.get_mut(idx);
        if reopens(fm, flags) || (fwd == Forwarding::Nat && !nat_pair(fm)) {
            return None;
        }
        fm.service = si;
        let (old, new) = (fm.state, next_state(fm.state, tcp, flags));
        let twin = fm.twin;
        self.flows.touch(idx, now, new);
        if matches!(fwd, Forwarding::Nat | Forwarding::FullNat)
            && new != old
            && twin != flow::NO_TWIN
        {
            sync_twin(&mut self.flows, twin, now, tcp, flags);
        }
        Some(b)
    }

    /// Sends a client's packet of the flow `key` (received on `port`) to backend `b`
    /// (`new_flow`: its flow's first), rewritten by the service's forwarding mode and counted
    /// to the backend at the size it arrived with; or, when it would exceed the MTU of the port
    /// toward `b` once rewritten, answers or drops it ([`Pipeline::too_big_to_backend`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        b: &BackendRt,
        new_flow: bool,
        p: &IpMeta,
        key: &FlowKey,
        fwd: Forwarding,
        frame: &mut F,
    ) -> Verdict {
        if p.ip_len() > usize::from(b.max_ip_len) {
            return self.too_big_to_backend(snap, port, p.v6, p.l3_off, b, frame);
        }
        let len = frame.data().len();
        if !rewrite::to_backend(frame, p, b, fwd, key, snap.seed) {
            return Verdict::Drop(DropReason::NoRoom);
        }
        self.per_backend.count(b.id, new_flow, len);
        Verdict::Forward { port: b.out_port }
    }

    /// [`Pipeline::service`] once the owner is known to be this worker and the flow table
    /// has been probed for the packet's key (`fhash` its table hash).
    #[allow(clippy::too_many_arguments)]
    fn service_probed<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        si: ServiceIdx,
        p: &IpMeta,
        ports: Ports,
        key: &FlowKey,
        fhash: u64,
        probe: &flow::Probe,
        frame: &mut F,
    ) -> Verdict {
        let svc = &snap.services[si.index()];
        let fwd = svc.forwarding;
        let tcp = p.proto == IPPROTO_TCP;
        let flags = ports.tcp_flags;

        // Whether `probe` still describes the table (the removal below changes it).
        let mut probe_fresh = true;
        if let Some(idx) = probe.found {
            let sent = match self.hit(snap, idx, si, tcp, flags, fwd) {
                Some(b) if fwd == Forwarding::FullNat => {
                    self.fullnat_forward(snap, port, idx, b, p, key, frame)
                }
                Some(b) => return self.forward(snap, port, b, false, p, key, fwd, frame),
                None => None,
            };
            if let Some(v) = sent {
                return v;
            }
            // A new connection on a closed one's addresses and ports, or its backend is down,
            // in maintenance or gone, or the entry is not what the service's mode needs (NAT:
            // no reverse half; FullNAT: no local side): this packet goes to the new choice
            // (the flow is made again below).
            if reopens(self.flows.get(idx), flags) {
                // The closed connection's entries end here, as their expiry would have
                // ended them: `flows_created = live + evicted + expired` still holds.
                self.counters.flows_reopened += 1;
                self.counters.flows_expired += self.remove_flow(idx);
            } else {
                self.counters.flows_rescheduled += 1;
                self.remove_flow(idx);
            }
            probe_fresh = false;
        }
        // A SYN is a new connection: Maglev's, so a SYN flood never probes the exceptions.
        let b = if tcp && flags & tcp::SYN != 0 {
            pick_new(snap, si, key)
        } else {
            self.peer_or_pick(snap, si, key)
        };
        let Some(b) = b else {
            let reason = DropReason::NoBackend;
            return self.empty_pool(snap, port, svc.on_empty, p, ports, reason, frame);
        };
        if fwd == Forwarding::FullNat {
            let probed = probe_fresh.then_some(probe);
            return self.fullnat_new(snap, port, si, b, p, ports, *key, fhash, probed, frame);
        }
        // A RST makes no entry, though it counts as a new flow of its backend (a miss).
        let is_rst = tcp && flags & tcp::RST != 0;
        let new_flow = is_rst
            || self.record(
                snap,
                port,
                si,
                b,
                p,
                ports,
                *key,
                fhash,
                probe,
                probe_fresh,
                frame,
            );
        self.forward(snap, port, b, new_flow, p, key, fwd, frame)
    }

    /// The backend of a packet that opens nothing (mid-stream TCP, UDP) and found no entry:
    /// the one a peer instance placed the flow on (it moved here), when the peer told and
    /// that backend still takes flows here (counted); else Maglev's. One relaxed load more
    /// than [`pick_new`] while no peer told of any flow.
    #[inline]
    fn peer_or_pick<'s>(
        &mut self,
        snap: &'s Snapshot,
        si: ServiceIdx,
        key: &FlowKey,
    ) -> Option<&'s BackendRt> {
        if let Some(e) = self.exceptions.lookup(key)
            && let Some(b) = keeps_flow(snap, e.backend, si)
        {
            self.counters.exceptions_used += 1;
            return Some(b);
        }
        pick_new(snap, si, key)
    }

    /// Records a new flow to backend `b` (NAT: both directions); whether it was recorded
    /// (a SYN never evicts: into a full table it is forwarded unrecorded).
    #[allow(clippy::too_many_arguments)]
    fn record<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        si: ServiceIdx,
        b: &BackendRt,
        p: &IpMeta,
        ports: Ports,
        key: FlowKey,
        fhash: u64,
        probe: &flow::Probe,
        probe_fresh: bool,
        frame: &F,
    ) -> bool {
        let tcp = p.proto == IPPROTO_TCP;
        let flags = ports.tcp_flags;
        let is_syn = tcp && flags & tcp::SYN != 0 && flags & tcp::ACK == 0;
        let now = self.now_ms;
        let fl = self.new_entry(si, b, p, ports, port, frame);
        if snap.services[si.index()].forwarding == Forwarding::Nat {
            let rkey = FlowKey {
                src: b.addr_key,
                dst: p.src,
                sport: b.port.unwrap_or(ports.dport),
                dport: ports.sport,
                ..key
            };
            let rhash = hash::table_hash(self.local_seed, &rkey);
            // Flagged so the flow census counts the pair once.
            let rf = Flow {
                flags: flow::FLAG_REVERSE,
                ..fl
            };
            let probed = probe_fresh.then_some(probe);
            self.record_pair(snap, (key, fhash, fl), (rkey, rhash, rf), probed);
        } else if probe_fresh && is_syn {
            // A SYN never evicts (it is all a spoofed flood sends): it takes a free slot,
            // or none. Unrecorded, it still goes to Maglev's choice, and the handshake's
            // ACK (picked up as a new flow, to the same backend) records the connection.
            match self.flows.insert_probed_if_room(probe, key, fl, now) {
                Some(_) => self.counters.flows_created += 1,
                None => {
                    self.counters.syn_unrecorded += 1;
                    return false;
                }
            }
        } else if probe_fresh {
            let mut evicted = None;
            let r =
                self.flows
                    .insert_probed_into(probe, key, fl, now, &snap.timeouts, &mut evicted);
            self.count_insert(r.is_ok(), evicted.as_ref());
        } else {
            let r = self.flows.insert(key, fhash, fl, now, &snap.timeouts);
            self.count_insert(r.is_ok(), r.as_ref().ok().and_then(|i| i.evicted.as_ref()));
        }
        true
    }

    /// The entry of a new flow to backend `b` (arrived on `port`), its state from the first
    /// packet's flags.
    pub(super) fn new_entry<F: Frame>(
        &self,
        si: ServiceIdx,
        b: &BackendRt,
        p: &IpMeta,
        ports: Ports,
        port: PortIdx,
        frame: &F,
    ) -> Flow {
        let tcp = p.proto == IPPROTO_TCP;
        let flags = ports.tcp_flags;
        let is_syn = tcp && flags & tcp::SYN != 0 && flags & tcp::ACK == 0;
        let state = if !tcp {
            FlowState::Udp
        } else if is_syn {
            FlowState::TcpSynSeen
        } else {
            // Mid-stream pickup (after a restart or a move between instances): Maglev
            // chose the same backend as before, so keep it. Half-open until a second
            // packet (either way) confirms it: a flood of spoofed ACKs then displaces
            // itself from a full table, as a SYN flood does, not the established flows.
            if flags & (tcp::FIN | tcp::RST) != 0 {
                FlowState::TcpClosing
            } else {
                FlowState::TcpSynSeen
            }
        };
        let peer_mac: [u8; 6] = frame.data()[6..12].try_into().expect("ethernet checked");
        Flow {
            state,
            service: si,
            backend: b.id,
            last_seen: self.now_ms,
            twin: flow::NO_TWIN,
            port,
            peer_mac,
            flags: 0,
        }
    }

    /// Records both halves of a NAT or FullNAT flow at once (room for both is made first, so
    /// neither evicts the other); whether they were recorded. `probed`: the forward key's
    /// probe, when still fresh (its insert then skips the lookup).
    pub(super) fn record_pair(
        &mut self,
        snap: &Snapshot,
        fwd: (FlowKey, u64, Flow),
        rev: (FlowKey, u64, Flow),
        probed: Option<&flow::Probe>,
    ) -> bool {
        let now = self.now_ms;
        let mut evicted = [None, None];
        let t = &snap.timeouts;
        match self
            .flows
            .insert_pair_into(fwd, rev, now, t, &mut evicted, probed)
        {
            Ok(_) => {
                self.counters.flows_created += 2;
                for e in evicted.iter().flatten() {
                    self.counters.flows_evicted += evicted_entries(e);
                    self.forget_evicted(e);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// No backend takes new flows (`reason` `NoBackend`), or none can be reached from a free
    /// local port (`NoLocalPort`): refuse fast so the client moves on. Inlined, so that each
    /// call site's reason is a constant (a SYN flood to an empty pool pays no call).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn empty_pool<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        on_empty: OnEmpty,
        p: &IpMeta,
        ports: Ports,
        reason: DropReason,
        frame: &mut F,
    ) -> Verdict {
        if on_empty == OnEmpty::Drop {
            return Verdict::Drop(reason);
        }
        let mac = snap.ports[port.index()].mac;
        match p.proto {
            IPPROTO_TCP if ports.tcp_flags & (tcp::SYN | tcp::ACK | tcp::RST) == tcp::SYN => {
                let v = reply::rst::build(frame, p, mac);
                if v == Verdict::Reply {
                    self.counters.resets += 1;
                }
                v
            }
            IPPROTO_UDP => reply::unreachable::build(frame, p, mac),
            _ => Verdict::Drop(reason),
        }
    }
}

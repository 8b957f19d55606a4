//! What a worker does with one packet: classify, find or make its flow, decide, rewrite.
//!
//! Pure: no DPDK, no I/O, no allocation, no locks, no logging. It runs over any
//! [`Frame`] (an mbuf in production, a `VecFrame` in tests) against an immutable
//! [`Snapshot`], and returns a [`Verdict`]; the caller does the I/O and the counting of
//! I/O outcomes.
//!
//! ```text
//! Ethernet (VLAN, QinQ) -> ARP for a VIP/own address?  reply
//!                       -> IPv4/IPv6 -> dst is a VIP? -> service? -> flow hit / Maglev
//!                                                          -> rewrite (DSR MACs | NAT dst)
//!                                                       empty pool -> RST / ICMP unreach
//!                                                     -> ICMP error? -> quoted flow's backend
//!                                                            (flow hit / Maglev; NAT: translate)
//!                                                     -> ICMP echo? -> reply
//!                                    -> own address?  -> ICMP echo reply | slow path
//!                                    -> from a NAT backend? -> owner's reverse flow -> un-NAT
//!                                    -> drop(not_vip)
//! ```

use conf::{Forwarding, OnEmpty};

use crate::flow::{self, FlowKey, FlowState, FlowTable};
use crate::frame::Frame;
use crate::hash;
use crate::snapshot::{Addr, BackendRt, IpKey, Snapshot};
use crate::stats::Counters;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{self, checksum, tcp};

use crate::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// Hop limit of the packets the balancer originates.
const OWN_TTL: u8 = 64;

/// One worker's packet-processing state: its flow table and counters.
pub struct Pipeline {
    /// This worker's index.
    pub worker: u16,
    /// How many workers share the traffic (NAT flows have one owner among them).
    pub workers: u16,
    pub flows: FlowTable,
    pub counters: Counters,
    /// Packets, bytes and new flows per backend id (published by the worker every 100 ms).
    pub per_backend: crate::stats::BackendCounters,
    /// Coarse clock in milliseconds, set by the worker once per burst.
    pub now_ms: u32,
    /// Seed of the flow-table and NAT-ownership hashes: the same for every worker of one
    /// process, and independent of the config's `hash_seed` so that a reload that changes the
    /// seed re-indexes no flow and moves no NAT flow to another worker (and hostile traffic
    /// cannot aim at a table whose seed it could read in a config).
    pub local_seed: u64,
    /// [`Pipeline::process_burst`]'s first pass's results, kept here rather than in a stack
    /// array that would be zeroed (or copied) per burst.
    parsed: Box<[Option<Fast>; MAX_BURST]>,
}

/// What the L3 parse found, for both families.
#[derive(Clone, Copy)]
struct L4 {
    v6: bool,
    l2_len: usize,
    /// Offset of the L4 header in the frame.
    l4: usize,
    /// Bytes of L4 header + payload (bounded by the IP length, without Ethernet padding).
    l4_len: usize,
    proto: u8,
    src: Addr,
    dst: Addr,
}

/// What the fast path's parse learned about a frame ([`Pipeline::fast_parse`]).
#[derive(Clone, Copy)]
struct Fast {
    key: FlowKey,
    /// [`hash::table_hash`] of `key`, for the flow table.
    hash: u64,
    /// The key's home slot in the flow table ([`FlowTable::home_slot`]).
    home: u32,
    /// The service (index into the snapshot's).
    si: u16,
    /// Bytes of TCP/UDP header and payload.
    l4_len: u16,
    tcp_flags: u8,
}

impl Fast {
    /// The general path's view of the same packet (untagged IPv4 without options).
    #[inline(always)]
    fn l4(&self) -> L4 {
        L4 {
            v6: false,
            l2_len: 14,
            l4: 34,
            l4_len: usize::from(self.l4_len),
            proto: self.key.proto,
            src: self.key.src,
            dst: self.key.dst,
        }
    }

    #[inline(always)]
    fn ports(&self) -> Ports {
        Ports {
            sport: self.key.sport,
            dport: self.key.dport,
            tcp_flags: self.tcp_flags,
        }
    }
}

/// Frames [`Pipeline::process_burst`] handles per pass (the bursts the worker receives).
const MAX_BURST: usize = 64;

/// ff02::1, the link's all-nodes group.
const ALL_NODES: Addr = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The parts of a TCP/UDP header the decision needs.
#[derive(Clone, Copy)]
struct Ports {
    sport: u16,
    dport: u16,
    tcp_flags: u8,
}

impl Pipeline {
    /// A pipeline for worker `worker` of `workers`, with a flow table of `flow_capacity`;
    /// `local_seed` must be the same for all workers of the process.
    pub fn new(worker: u16, workers: u16, flow_capacity: usize, local_seed: u64) -> Self {
        Pipeline {
            worker,
            workers: workers.max(1),
            flows: FlowTable::with_capacity(flow_capacity),
            counters: Counters::default(),
            per_backend: Default::default(),
            now_ms: 0,
            local_seed,
            parsed: Box::new([None; MAX_BURST]),
        }
    }

    /// Decides one frame received on `port`, rewriting it in place when it is forwarded or
    /// answered.
    #[inline]
    pub fn process<F: Frame>(&mut self, snap: &Snapshot, port: u8, frame: &mut F) -> Verdict {
        let fast = self.fast_parse(snap, port, frame.data());
        self.decide(snap, port, fast, frame)
    }

    /// [`process`](Self::process) for a burst received on `port`: `verdicts[i]` is frame `i`'s.
    /// The same decisions, in two passes: the first parses every frame and starts loading
    /// the flow-table line each will look up; the second decides. A burst's cache misses on
    /// the flow table then overlap instead of stalling one packet after another.
    pub fn process_burst<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: u8,
        frames: &mut [F],
        verdicts: &mut [Verdict],
    ) {
        debug_assert_eq!(frames.len(), verdicts.len());
        for (frames, verdicts) in frames
            .chunks_mut(MAX_BURST)
            .zip(verdicts.chunks_mut(MAX_BURST))
        {
            for (i, f) in frames.iter().enumerate() {
                let x = self.fast_parse(snap, port, f.data());
                if let Some(x) = &x {
                    self.flows.prefetch(x.home);
                }
                self.parsed[i] = x;
            }
            for (i, (f, v)) in frames.iter_mut().zip(verdicts.iter_mut()).enumerate() {
                let x = self.parsed[i];
                *v = self.decide(snap, port, x, f);
            }
        }
    }

    /// The second half of [`process`](Self::process): the fast path's decision when the first
    /// half recognised the frame, else the general path's.
    #[inline(always)]
    fn decide<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: u8,
        fast: Option<Fast>,
        frame: &mut F,
    ) -> Verdict {
        let v = match fast {
            Some(x) => self.fast_service(snap, port, x, frame),
            None => self.classify(snap, port, frame),
        };
        match v {
            Verdict::Forward { .. } => self.counters.forwarded += 1,
            Verdict::Reply => self.counters.replies += 1,
            _ => {}
        }
        v
    }

    /// Counts a verdict as a worker with unlimited queues would: the tests' stand-in for the
    /// worker's I/O accounting.
    pub fn account(&mut self, v: Verdict) {
        match v {
            Verdict::Forward { .. } | Verdict::Reply => self.counters.tx += 1,
            Verdict::Handoff { .. } => self.counters.handoff_out += 1,
            Verdict::SlowPath => self.counters.to_slowpath += 1,
            Verdict::Drop(r) => self.counters.drop(r),
        }
    }

    fn classify<F: Frame>(&mut self, snap: &Snapshot, port: u8, frame: &mut F) -> Verdict {
        let Some(prt) = snap.ports.get(port as usize) else {
            return Verdict::Drop(DropReason::L2NotForUs);
        };
        let l2 = match wire::ethernet::parse_l2(frame.data()) {
            Ok(l2) => l2,
            Err(wire::WireError::TooManyVlans) => return Verdict::Drop(DropReason::TooManyVlans),
            Err(_) => return Verdict::Drop(DropReason::MalformedL2),
        };
        let dst_mac: [u8; 6] = frame.data()[0..6]
            .try_into()
            .expect("parse_l2 checked 14 bytes");
        // Unicast to someone else: not ours to touch (multicast/broadcast pass on: ARP, ND).
        if dst_mac[0] & 1 == 0 && dst_mac != prt.mac {
            return Verdict::Drop(DropReason::L2NotForUs);
        }
        match l2.ethertype {
            wire::ethernet::ETHERTYPE_ARP => self.arp(snap, port, l2.l3_offset, frame),
            wire::ethernet::ETHERTYPE_IPV4 => self.ipv4(snap, port, l2.l3_offset, frame),
            wire::ethernet::ETHERTYPE_IPV6 => self.ipv6(snap, port, l2.l3_offset, frame),
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    /// The fast path's parse, in one read of a frame's first 54 bytes: an untagged IPv4
    /// frame to this port's MAC, no IP options, not a fragment, a valid header checksum, TCP
    /// or UDP to an IPv4 VIP port that has a service. These are exactly the checks the general
    /// path makes before it reaches [`Pipeline::service`] (the same views' `check_len` rules,
    /// and one lookup where it makes two: a service exists only for a VIP); anything else is
    /// `None` and takes the general path. Reads only.
    #[inline(always)]
    fn fast_parse(&self, snap: &Snapshot, port: u8, data: &[u8]) -> Option<Fast> {
        // Ethernet 14 + IPv4 20 + the 8 bytes every TCP and UDP header starts with.
        let h: &[u8; 42] = data.first_chunk()?;
        let prt = snap.ports.get(usize::from(port))?;
        if h[0..6] != prt.mac || h[12..15] != [0x08, 0x00, 0x45] {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([h[16], h[17]]));
        if total < 28 || 14 + total > data.len() || h[20] & 0x3f != 0 || h[21] != 0 {
            return None; // short, truncated, or a fragment (MF or an offset)
        }
        let mut sum = 0u64;
        for w in h[14..34].chunks_exact(4) {
            sum += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
        // A native-order sum folds to the byte-swapped big-endian one (RFC 1071), and 0xffff
        // reads the same both ways.
        if checksum::fold(sum) != 0xffff {
            return None;
        }
        let (proto, l4_len) = (h[23], total - 20);
        let tcp_flags = match proto {
            IPPROTO_TCP => {
                // TcpPacket::check_len over the IP payload: 20 bytes, data offset 5..=len/4.
                let t = data.get(34..54)?;
                let off = usize::from(t[12] >> 4) * 4;
                if l4_len < 20 || off < 20 || off > l4_len {
                    return None;
                }
                t[13]
            }
            IPPROTO_UDP => {
                // UdpPacket::check_len: a length field of 8..=the IP payload.
                let len = usize::from(u16::from_be_bytes([h[38], h[39]]));
                if len < 8 || len > l4_len {
                    return None;
                }
                0
            }
            _ => return None,
        };
        let dst = [h[30], h[31], h[32], h[33]];
        let dport = u16::from_be_bytes([h[36], h[37]]);
        let si = snap.vip4.get(u32::from_be_bytes(dst), proto, dport)?;
        let key = FlowKey::v4(
            [h[26], h[27], h[28], h[29]],
            dst,
            u16::from_be_bytes([h[34], h[35]]),
            dport,
            proto,
        );
        let hash = hash::table_hash(self.local_seed, &key);
        Some(Fast {
            home: self.flows.home_slot(hash),
            hash,
            key,
            si,
            l4_len: l4_len as u16,
            tcp_flags,
        })
    }

    /// The fast path's decision: a packet of an established flow whose backend still takes
    /// it, forwarded exactly as [`Pipeline::service`] would (the same flow update, counters
    /// and rewrite) without rebuilding what the parse found. Anything else (a new flow, a
    /// backend gone, a NAT flow another worker may own) goes to [`Pipeline::service`].
    #[inline(always)]
    fn fast_service<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: u8,
        x: Fast,
        frame: &mut F,
    ) -> Verdict {
        let svc = &snap.services[usize::from(x.si)];
        if !svc.acl.admits(&x.key.src, false) {
            return Verdict::Drop(DropReason::AclDenied);
        }
        let nat = svc.forwarding == Forwarding::Nat;
        if nat && self.workers > 1 {
            // Another worker may own it: the general path decides (and hands it over).
            return self.service(snap, port, x.si, x.l4(), x.ports(), frame);
        }
        let probe = self.flows.probe_home(x.home, &x.key, x.hash);
        if let Some(idx) = probe.found
            && let Some(b) = snap.backend(self.flows.get(idx).backend)
            && b.service == x.si
            && b.keeps_flows()
        {
            let (tcp, flags, now) = (x.key.proto == IPPROTO_TCP, x.tcp_flags, self.now_ms);
            let fm = self.flows.get_mut(idx);
            fm.last_seen = now;
            fm.service = x.si;
            let (old, new) = (fm.state, next_state(fm.state, tcp, flags));
            fm.state = new;
            let twin = fm.twin;
            if nat && new != old && twin != flow::NO_TWIN {
                sync_twin(&mut self.flows, twin, now, tcp, flags);
            }
            self.per_backend.count(b.id, false, frame.data().len());
            let out = b.out_port;
            let out_mac = b.out_mac;
            let data = frame.data_mut();
            if nat {
                let bport = b.port.unwrap_or(x.key.dport);
                rewrite_dst_v4(data, &x, &b.addr_key, bport);
            }
            data[0..6].copy_from_slice(&b.mac);
            data[6..12].copy_from_slice(&out_mac);
            return Verdict::Forward { port: out };
        }
        // A DSR SYN into a full table (a SYN flood's every packet): no entry was found and
        // none will be made (a SYN never evicts), so it is Maglev's choice, forwarded as
        // `service_probed` would, without its new-flow bookkeeping. Anything else (room in
        // the table, an empty pool) is decided there.
        if self.flows.len() >= self.flows.capacity()
            && probe.found.is_none()
            && !nat
            && x.tcp_flags & (tcp::SYN | tcp::ACK | tcp::RST) == tcp::SYN
            && x.key.proto == IPPROTO_TCP
            && let Some(v) = self.unrecorded_syn(snap, &x, frame)
        {
            return v;
        }
        let (p, ports) = (x.l4(), x.ports());
        self.service_probed(snap, port, x.si, p, ports, x.key, x.hash, probe, frame)
    }

    /// The fast path's DSR SYN into a full table (a SYN flood's every packet): no entry was
    /// found and none will be made (a SYN never evicts), so it goes to Maglev's choice,
    /// forwarded and counted as [`Pipeline::service_probed`] would, without its new-flow
    /// bookkeeping; `None` (nothing done) for an empty pool, which that decides. Out of line:
    /// the established path stays as compact as it was.
    #[inline(never)]
    fn unrecorded_syn<F: Frame>(
        &mut self,
        snap: &Snapshot,
        x: &Fast,
        frame: &mut F,
    ) -> Option<Verdict> {
        let svc = &snap.services[usize::from(x.si)];
        let fhash = hash::flow_hash(snap.seed, &x.key);
        let b = snap.backend(svc.pick(svc.pick_hash(snap.seed, &x.key, fhash))?)?;
        self.counters.syn_unrecorded += 1;
        self.per_backend.count(b.id, false, frame.data().len());
        let data = frame.data_mut();
        data[0..6].copy_from_slice(&b.mac);
        data[6..12].copy_from_slice(&b.out_mac);
        Some(Verdict::Forward { port: b.out_port })
    }

    fn arp<F: Frame>(&mut self, snap: &Snapshot, port: u8, l3: usize, frame: &mut F) -> Verdict {
        let data = frame.data_mut();
        let Ok(mut arp) = wire::ArpPacket::new_checked(&mut data[l3..]) else {
            return Verdict::Drop(DropReason::MalformedArp);
        };
        if arp.operation() != wire::arp::OP_REQUEST {
            // Replies and announcements feed the slow path's neighbour cache.
            return Verdict::SlowPath;
        }
        let target = arp.target_proto_addr();
        let key = IpKey::v4(target);
        if !snap.is_vip(key) && snap.own_addr(key) != Some(port) {
            // A gratuitous request (sender address = target address) announces its sender's
            // MAC: Linux sends one when an interface's MAC changes (`arp_notify`), a standby
            // taking an address over sends several. The neighbour cache follows it at once,
            // as it does a reply, instead of at its next confirmation.
            if arp.sender_proto_addr() == target {
                return Verdict::SlowPath;
            }
            return Verdict::Drop(DropReason::ArpNotOurs);
        }
        let mac = snap.ports[port as usize].mac;
        let (sha, spa) = (arp.sender_hw_addr(), arp.sender_proto_addr());
        arp.set_operation(wire::arp::OP_REPLY);
        arp.set_target_hw_addr(sha);
        arp.set_target_proto_addr(spa);
        arp.set_sender_hw_addr(mac);
        arp.set_sender_proto_addr(target);
        set_reply_macs(data, mac);
        Verdict::Reply
    }

    fn ipv4<F: Frame>(&mut self, snap: &Snapshot, port: u8, l3: usize, frame: &mut F) -> Verdict {
        let ip = match wire::Ipv4Packet::new_checked(&frame.data()[l3..]) {
            Ok(ip) if ip.verify_checksum() => ip,
            _ => return Verdict::Drop(DropReason::MalformedIpv4),
        };
        let hl = ip.header_len();
        let l4 = L4 {
            v6: false,
            l2_len: l3,
            l4: l3 + hl,
            l4_len: ip.total_len() as usize - hl,
            proto: ip.protocol(),
            src: v4_key(ip.src_addr()),
            dst: v4_key(ip.dst_addr()),
        };
        let fragment = ip.more_frags() || ip.frag_offset() != 0;
        self.l3(snap, port, l4, fragment, frame)
    }

    fn ipv6<F: Frame>(&mut self, snap: &Snapshot, port: u8, l3: usize, frame: &mut F) -> Verdict {
        let Ok(ip) = wire::Ipv6Packet::new_checked(&frame.data()[l3..]) else {
            return Verdict::Drop(DropReason::MalformedIpv6);
        };
        let Ok(ul) = ip.upper_layer() else {
            return Verdict::Drop(DropReason::MalformedIpv6);
        };
        let end = 40 + ip.payload_len() as usize;
        let l4 = L4 {
            v6: true,
            l2_len: l3,
            l4: l3 + ul.offset,
            l4_len: end - ul.offset,
            proto: ul.protocol,
            src: ip.src_addr(),
            dst: ip.dst_addr(),
        };
        let fragment = ul.fragment.is_some();
        self.l3(snap, port, l4, fragment, frame)
    }

    /// Everything after the IP header, for both families.
    fn l3<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: u8,
        p: L4,
        fragment: bool,
        frame: &mut F,
    ) -> Verdict {
        let icmp = if p.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
        let dst = p.dst_key();
        if snap.is_vip(dst) {
            if fragment {
                return Verdict::Drop(DropReason::Fragment);
            }
            return match p.proto {
                IPPROTO_TCP | IPPROTO_UDP => {
                    let Some(ports) = ports(frame.data(), &p) else {
                        return Verdict::Drop(DropReason::MalformedL4);
                    };
                    match snap.service(dst, p.proto, ports.dport) {
                        Some(s) => self.service(snap, port, s, p, ports, frame),
                        None => Verdict::Drop(DropReason::NoService),
                    }
                }
                x if x == icmp && is_icmp_error(frame.data(), &p) => {
                    self.icmp_error(snap, p, frame)
                }
                x if x == icmp => self.icmp_to_us(snap, port, p, frame),
                _ => Verdict::Drop(DropReason::UnsupportedProtocol),
            };
        }
        if snap.own_addr(dst).is_some() {
            if fragment {
                return Verdict::Drop(DropReason::Fragment);
            }
            if p.proto == icmp {
                // Echo requests are answered here; anything else ICMP (errors quoting a health
                // check, ND for our own address) is the slow path's.
                match self.icmp_to_us(snap, port, p, frame) {
                    Verdict::Drop(DropReason::IcmpUnhandled) => return Verdict::SlowPath,
                    v => return v,
                }
            }
            return Verdict::SlowPath;
        }
        if p.v6 && p.proto == IPPROTO_ICMPV6 && !fragment {
            // An unsolicited neighbour advertisement to all-nodes announces its sender's MAC
            // (Linux sends one when an interface's MAC changes, with `ndisc_notify`): the
            // slow path's neighbour cache follows it at once, as it does the ARP kind.
            if p.dst == ALL_NODES && frame.data().get(p.l4) == Some(&wire::icmpv6::NEIGHBOR_ADVERT)
            {
                return Verdict::SlowPath;
            }
            // Neighbour solicitations for a VIP arrive at its solicited-node multicast address.
            if let Some(v) = self.neighbor_solicitation(snap, port, p, frame) {
                return v;
            }
        }
        if matches!(p.proto, IPPROTO_TCP | IPPROTO_UDP)
            && let Some(ports) = ports(frame.data(), &p)
            && snap.is_nat_backend(p.src_key(), p.proto, ports.sport)
        {
            if fragment {
                return Verdict::Drop(DropReason::Fragment);
            }
            return self.nat_reply(snap, p, ports, frame);
        }
        Verdict::Drop(DropReason::NotVip)
    }

    /// The worker that owns a NAT flow: chosen from what both directions share, the client's
    /// address and port.
    #[inline]
    fn owner(&self, client: &Addr, client_port: u16) -> u16 {
        if self.workers <= 1 {
            return self.worker;
        }
        (hash::owner_hash(self.local_seed, client, client_port) % u64::from(self.workers)) as u16
    }

    fn service<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: u8,
        si: u16,
        p: L4,
        ports: Ports,
        frame: &mut F,
    ) -> Verdict {
        let svc = &snap.services[si as usize];
        // Every packet, not only a flow's first: a reload that denies a source cuts it off.
        if !svc.acl.admits(&p.src, p.v6) {
            return Verdict::Drop(DropReason::AclDenied);
        }
        let nat = svc.forwarding == Forwarding::Nat;
        if nat {
            let owner = self.owner(&p.src, ports.sport);
            if owner != self.worker {
                return Verdict::Handoff { worker: owner };
            }
        }
        let key = flow_key(&p, ports.sport, ports.dport);
        let fhash = hash::table_hash(self.local_seed, &key);
        let probe = self.flows.probe(&key, fhash);
        self.service_probed(snap, port, si, p, ports, key, fhash, probe, frame)
    }

    /// [`Pipeline::service`] once the owner is known to be this worker and the flow table
    /// has been probed for the packet's key (`fhash` its table hash).
    #[allow(clippy::too_many_arguments)]
    fn service_probed<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: u8,
        si: u16,
        p: L4,
        ports: Ports,
        key: FlowKey,
        fhash: u64,
        probe: flow::Probe,
        frame: &mut F,
    ) -> Verdict {
        let svc = &snap.services[si as usize];
        let nat = svc.forwarding == Forwarding::Nat;
        let tcp = p.proto == IPPROTO_TCP;
        let flags = ports.tcp_flags;
        let is_rst = tcp && flags & tcp::RST != 0;
        let is_syn = tcp && flags & tcp::SYN != 0 && flags & tcp::ACK == 0;
        let now = self.now_ms;

        let mut chosen: Option<&BackendRt> = None;
        let mut new_flow = true;
        // Whether `probe` still describes the table (the removal below changes it).
        let mut probe_fresh = true;
        if let Some(idx) = probe.found {
            let f = *self.flows.get(idx);
            match snap
                .backend(f.backend)
                .filter(|b| b.service == si && b.keeps_flows())
            {
                Some(b) => {
                    let fm = self.flows.get_mut(idx);
                    fm.last_seen = now;
                    fm.service = si;
                    fm.state = next_state(f.state, tcp, flags);
                    if nat && fm.state != f.state && f.twin != flow::NO_TWIN {
                        sync_twin(&mut self.flows, f.twin, now, tcp, flags);
                    }
                    chosen = Some(b);
                    new_flow = false;
                }
                None => {
                    // Its backend is down, in maintenance or gone: this packet goes to the new
                    // choice (the flow is made again below).
                    self.flows.remove(idx);
                    self.counters.flows_rescheduled += 1;
                    probe_fresh = false;
                }
            }
        }

        let b = match chosen {
            Some(b) => b,
            // Maglev's hash uses the config's seed: every instance with this config agrees.
            // (An empty pool's table misses whatever the hash: skip computing it.)
            None => match (!svc.maglev.entries().is_empty())
                .then(|| svc.pick(svc.pick_hash(snap.seed, &key, hash::flow_hash(snap.seed, &key))))
                .flatten()
                .and_then(|id| snap.backend(id))
            {
                Some(b) => b,
                None => return self.empty_pool(snap, port, svc.on_empty, p, ports, frame),
            },
        };

        if new_flow && !is_rst {
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
            let fl = flow::Flow {
                state,
                service: si,
                backend: b.id,
                last_seen: now,
                twin: flow::NO_TWIN,
                port,
                peer_mac,
                flags: 0,
            };
            if nat {
                // Both halves at once: room for both is made first, so neither evicts the other.
                let bport = b.port.unwrap_or(ports.dport);
                let rkey = FlowKey {
                    src: b.addr_key,
                    dst: p.src,
                    sport: bport,
                    dport: ports.sport,
                    ..key
                };
                let rhash = hash::table_hash(self.local_seed, &rkey);
                // Flagged so the flow census counts the pair once.
                let rf = flow::Flow {
                    flags: flow::FLAG_REVERSE,
                    ..fl
                };
                if let Ok(ins) =
                    self.flows
                        .insert_pair((key, fhash, fl), (rkey, rhash, rf), now, &snap.timeouts)
                {
                    self.counters.flows_created += 2;
                    for e in ins.evicted.iter().flatten() {
                        self.counters.flows_evicted += evicted_entries(e);
                    }
                }
            } else if probe_fresh && is_syn {
                // A SYN never evicts (it is all a spoofed flood sends): it takes a free slot,
                // or none. Unrecorded, it still goes to Maglev's choice, and the handshake's
                // ACK (picked up as a new flow, to the same backend) records the connection.
                match self.flows.insert_probed_if_room(&probe, key, fl, now) {
                    Some(_) => self.counters.flows_created += 1,
                    None => {
                        self.counters.syn_unrecorded += 1;
                        new_flow = false;
                    }
                }
            } else if probe_fresh {
                let r = self
                    .flows
                    .insert_probed(&probe, key, fl, now, &snap.timeouts);
                self.count_insert(r);
            } else {
                self.insert(&snap.timeouts, key, fhash, fl);
            }
        }

        self.per_backend.count(b.id, new_flow, frame.data().len());
        let out = b.out_port;
        let out_mac = b.out_mac;
        let data = frame.data_mut();
        if nat {
            let bport = b.port.unwrap_or(ports.dport);
            rewrite_dst(data, &p, &b.addr_key, bport);
        }
        data[0..6].copy_from_slice(&b.mac);
        data[6..12].copy_from_slice(&out_mac);
        Verdict::Forward { port: out }
    }

    fn insert(
        &mut self,
        t: &flow::Timeouts,
        key: FlowKey,
        fhash: u64,
        fl: flow::Flow,
    ) -> Option<u32> {
        let r = self.flows.insert(key, fhash, fl, self.now_ms, t);
        self.count_insert(r)
    }

    /// Counts what an insert did.
    #[inline]
    fn count_insert(&mut self, r: Result<flow::Inserted, flow::Full>) -> Option<u32> {
        match r {
            Ok(ins) => {
                self.counters.flows_created += 1;
                if let Some(e) = &ins.evicted {
                    self.counters.flows_evicted += evicted_entries(e);
                }
                Some(ins.idx)
            }
            Err(_) => None,
        }
    }

    fn nat_reply<F: Frame>(
        &mut self,
        snap: &Snapshot,
        p: L4,
        ports: Ports,
        frame: &mut F,
    ) -> Verdict {
        let owner = self.owner(&p.dst, ports.dport);
        if owner != self.worker {
            return Verdict::Handoff { worker: owner };
        }
        let rkey = flow_key(&p, ports.sport, ports.dport);
        let rhash = hash::table_hash(self.local_seed, &rkey);
        let Some(ridx) = self.flows.lookup(&rkey, rhash) else {
            return Verdict::Drop(DropReason::NatNoFlow);
        };
        let rev = *self.flows.get(ridx);
        if rev.twin == flow::NO_TWIN {
            return Verdict::Drop(DropReason::NatNoFlow);
        }
        let fkey = *self.flows.key(rev.twin);
        let tcp = p.proto == IPPROTO_TCP;
        let now = self.now_ms;
        for idx in [ridx, rev.twin] {
            let f = self.flows.get_mut(idx);
            f.last_seen = now;
            f.state = next_state(f.state, tcp, ports.tcp_flags);
        }
        let out = rev.port;
        let Some(out_mac) = snap.ports.get(out as usize).map(|p| p.mac) else {
            return Verdict::Drop(DropReason::NatNoFlow);
        };
        let data = frame.data_mut();
        rewrite_src(data, &p, &fkey.dst, fkey.dport);
        data[0..6].copy_from_slice(&rev.peer_mac);
        data[6..12].copy_from_slice(&out_mac);
        Verdict::Forward { port: out }
    }

    /// No backend takes new flows: refuse fast so the client moves on.
    fn empty_pool<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: u8,
        on_empty: OnEmpty,
        p: L4,
        ports: Ports,
        frame: &mut F,
    ) -> Verdict {
        if on_empty == OnEmpty::Drop {
            return Verdict::Drop(DropReason::NoBackend);
        }
        let mac = snap.ports[port as usize].mac;
        match p.proto {
            IPPROTO_TCP if ports.tcp_flags & (tcp::SYN | tcp::ACK | tcp::RST) == tcp::SYN => {
                let v = if !p.v6 && p.l2_len == 14 && p.l4 == 34 {
                    build_rst_v4(frame, &p, mac)
                } else {
                    build_rst(frame, &p, mac)
                };
                if v == Verdict::Reply {
                    self.counters.resets += 1;
                }
                v
            }
            IPPROTO_UDP => build_unreachable(frame, &p, mac),
            _ => Verdict::Drop(DropReason::NoBackend),
        }
    }

    /// An ICMP(v6) error to a VIP (a router on the way to a client refusing a packet the VIP
    /// sent: "fragmentation needed" / "packet too big" is path-MTU discovery): sent to the
    /// backend that owns the quoted flow, as Katran and GLB do, so its stack learns the path
    /// MTU. The backend is the one a packet of that flow would reach: its flow-table entry's
    /// (on the NAT flow's owner), else Maglev's choice, which every instance with this config
    /// makes alike. The entry is neither made nor refreshed: errors are easy to forge.
    /// DSR forwards the frame as it is (the backend holds the VIP); NAT translates it as the
    /// backend's own packet would have been: outer destination and quoted source := backend.
    fn icmp_error<F: Frame>(&mut self, snap: &Snapshot, p: L4, frame: &mut F) -> Verdict {
        let q = {
            let data = frame.data();
            let quote = data.get(p.l4 + 8..p.l4 + p.l4_len).unwrap_or_default();
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
        let svc = &snap.services[usize::from(si)];
        if !svc.acl.admits(&key.src, p.v6) {
            return Verdict::Drop(DropReason::AclDenied);
        }
        let nat = svc.forwarding == Forwarding::Nat;
        if nat {
            let owner = self.owner(&key.src, key.sport);
            if owner != self.worker {
                return Verdict::Handoff { worker: owner };
            }
        }
        let fhash = hash::table_hash(self.local_seed, &key);
        let probe = self.flows.probe(&key, fhash);
        let b = match probe.found {
            Some(idx) => match snap
                .backend(self.flows.get(idx).backend)
                .filter(|b| b.service == si && b.keeps_flows())
            {
                Some(b) => b,
                None => return Verdict::Drop(DropReason::IcmpErrorBackendDown),
            },
            None => match svc
                .pick(svc.pick_hash(snap.seed, &key, hash::flow_hash(snap.seed, &key)))
                .and_then(|id| snap.backend(id))
            {
                Some(b) => b,
                None => return Verdict::Drop(DropReason::IcmpErrorNoBackend),
            },
        };
        self.per_backend.count(b.id, false, frame.data().len());
        let data = frame.data_mut();
        if nat {
            nat_icmp_error(data, &p, &q, &b.addr_key, b.port.unwrap_or(q.sport));
        }
        data[0..6].copy_from_slice(&b.mac);
        data[6..12].copy_from_slice(&b.out_mac);
        Verdict::Forward { port: b.out_port }
    }

    /// ICMP echo to a VIP or our own address: answer it in place.
    fn icmp_to_us<F: Frame>(&mut self, snap: &Snapshot, port: u8, p: L4, frame: &mut F) -> Verdict {
        let mac = snap.ports[port as usize].mac;
        let data = frame.data_mut();
        let end = p.l4 + p.l4_len;
        if p.v6 {
            let Ok(mut icmp) = wire::Icmpv6Packet::new_checked(&mut data[p.l4..end]) else {
                return Verdict::Drop(DropReason::MalformedL4);
            };
            if icmp.msg_type() != wire::icmpv6::ECHO_REQUEST {
                return Verdict::Drop(DropReason::IcmpUnhandled);
            }
            icmp.set_msg_type(wire::icmpv6::ECHO_REPLY);
            icmp.fill_checksum(&p.dst, &p.src);
            let l3 = p.l2_len;
            let mut ip = wire::Ipv6Packet::new_unchecked(&mut data[l3..]);
            ip.set_src_addr(p.dst);
            ip.set_dst_addr(p.src);
            ip.set_hop_limit(OWN_TTL);
        } else {
            let Ok(mut icmp) = wire::Icmpv4Packet::new_checked(&mut data[p.l4..end]) else {
                return Verdict::Drop(DropReason::MalformedL4);
            };
            if icmp.msg_type() != wire::icmpv4::ECHO_REQUEST || icmp.msg_code() != 0 {
                return Verdict::Drop(DropReason::IcmpUnhandled);
            }
            icmp.set_msg_type(wire::icmpv4::ECHO_REPLY);
            icmp.fill_checksum();
            let l3 = p.l2_len;
            let mut ip = wire::Ipv4Packet::new_unchecked(&mut data[l3..]);
            ip.set_src_addr(v4_of(&p.dst));
            ip.set_dst_addr(v4_of(&p.src));
            ip.set_ttl(OWN_TTL);
            ip.fill_checksum();
        }
        set_reply_macs(data, mac);
        Verdict::Reply
    }

    /// An IPv6 neighbour solicitation for a VIP: answer with an advertisement carrying the
    /// port's MAC. `None` when it is not one.
    fn neighbor_solicitation<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: u8,
        p: L4,
        frame: &mut F,
    ) -> Option<Verdict> {
        const NS: u8 = 135;
        let end = p.l4 + p.l4_len;
        let data = frame.data();
        // type(1) code(1) checksum(2) reserved(4) target(16) [options]
        if p.l4_len < 24 || data.get(p.l4) != Some(&NS) {
            return None;
        }
        let target: Addr = data[p.l4 + 8..p.l4 + 24].try_into().ok()?;
        let key = IpKey::v6(target);
        if !snap.is_vip(key) && snap.own_addr(key) != Some(port) {
            return Some(Verdict::Drop(DropReason::ArpNotOurs));
        }
        let mac = snap.ports[port as usize].mac;
        let requester: [u8; 6] = data[6..12].try_into().ok()?;
        let src_unspecified = p.src == [0u8; 16];
        let dst = if src_unspecified {
            // To all-nodes when the solicitation came from the unspecified address (DAD).
            ALL_NODES
        } else {
            p.src
        };
        // NA: 24 bytes + target link-layer address option (8 bytes).
        let na_len = 32usize;
        let want = p.l4 + na_len;
        let have = frame.data().len();
        if have < want && !frame.append(want - have) {
            return Some(Verdict::Drop(DropReason::NoRoom));
        }
        frame.truncate(want);
        let _ = end;
        let data = frame.data_mut();
        let na = &mut data[p.l4..p.l4 + na_len];
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
        let csum =
            checksum::l4_checksum_v6(&target, &dst, IPPROTO_ICMPV6, &data[p.l4..p.l4 + na_len]);
        data[p.l4 + 2..p.l4 + 4].copy_from_slice(&csum.to_be_bytes());
        // A fresh IPv6 header: extension headers of the solicitation are not echoed.
        let l3 = p.l2_len;
        if p.l4 != l3 + 40 {
            return Some(Verdict::Drop(DropReason::MalformedIpv6));
        }
        let mut ip = wire::Ipv6Packet::new_unchecked(&mut data[l3..]);
        ip.set_payload_len(na_len as u16);
        ip.set_next_header(IPPROTO_ICMPV6);
        ip.set_hop_limit(255);
        ip.set_src_addr(target);
        ip.set_dst_addr(dst);
        data[0..6].copy_from_slice(&requester);
        data[6..12].copy_from_slice(&mac);
        Some(Verdict::Reply)
    }
}

/// Entries an eviction removed: the victim and its twin, if it had one, so that
/// `flows_created = flows_active + flows_evicted + flows_expired` (+ rescheduled removals).
#[inline]
fn evicted_entries(e: &flow::Evicted) -> u64 {
    1 + u64::from(e.twin.is_some())
}

/// A NAT flow's reverse half, when a client packet changed the forward half's state: the
/// halves move through the TCP states together. Only then: a pair lives while either half is
/// fresh (`FlowTable`'s pair expiry and eviction age), so refreshing the reverse half's
/// `last_seen` on every client packet would only cost a second, unprefetched cache line.
#[inline(never)]
#[cold]
fn sync_twin(flows: &mut FlowTable, twin: u32, now: u32, tcp: bool, flags: u8) {
    let tw = flows.get_mut(twin);
    tw.last_seen = now;
    tw.state = next_state(tw.state, tcp, flags);
}

/// The next state of a flow that a packet hit, given its TCP flags: a UDP flow's second
/// packet (either way) confirms it ([`FlowState::UdpConfirmed`]), so a full table keeps it
/// as it keeps an established TCP flow.
#[inline]
fn next_state(cur: FlowState, tcp: bool, flags: u8) -> FlowState {
    if !tcp {
        return FlowState::UdpConfirmed;
    }
    if flags & (tcp::FIN | tcp::RST) != 0 {
        FlowState::TcpClosing
    } else if cur == FlowState::TcpSynSeen && flags & tcp::ACK != 0 && flags & tcp::SYN == 0 {
        FlowState::TcpEstablished
    } else {
        cur
    }
}

#[inline]
fn v4_key(a: [u8; 4]) -> Addr {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&a);
    k
}

#[inline]
fn v4_of(k: &Addr) -> [u8; 4] {
    [k[0], k[1], k[2], k[3]]
}

impl L4 {
    /// The source address as the snapshot's maps key it (with its family).
    #[inline]
    fn src_key(&self) -> IpKey {
        IpKey::new(&self.src, self.v6)
    }

    /// The destination address as the snapshot's maps key it (with its family).
    #[inline]
    fn dst_key(&self) -> IpKey {
        IpKey::new(&self.dst, self.v6)
    }
}

#[inline]
fn flow_key(p: &L4, sport: u16, dport: u16) -> FlowKey {
    if p.v6 {
        FlowKey::v6(p.src, p.dst, sport, dport, p.proto)
    } else {
        FlowKey::v4(v4_of(&p.src), v4_of(&p.dst), sport, dport, p.proto)
    }
}

/// Ports and flags of a TCP/UDP header, length-checked.
#[inline]
fn ports(data: &[u8], p: &L4) -> Option<Ports> {
    let seg = data.get(p.l4..p.l4 + p.l4_len)?;
    if p.proto == IPPROTO_TCP {
        let t = wire::TcpPacket::new_checked(seg).ok()?;
        Some(Ports {
            sport: t.src_port(),
            dport: t.dst_port(),
            tcp_flags: t.flags(),
        })
    } else {
        let u = wire::UdpPacket::new_checked(seg).ok()?;
        Some(Ports {
            sport: u.src_port(),
            dport: u.dst_port(),
            tcp_flags: 0,
        })
    }
}

/// Is the ICMP(v6) message at `p.l4` an error quoting a packet (v4: destination
/// unreachable, time exceeded, parameter problem; v6: those and packet too big)? Messages
/// shorter than an ICMP header are not (the echo path counts them malformed).
#[inline]
fn is_icmp_error(data: &[u8], p: &L4) -> bool {
    use wire::{icmpv4, icmpv6};
    match data.get(p.l4) {
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

/// NAT for an ICMP(v6) error to a VIP: the backend must see the error as one about its own
/// packet, so the outer destination and the quoted packet's source address and port become
/// the backend's. Every checksum that covers a changed byte is updated (RFC 1624): the outer
/// IPv4 header's, the quoted IPv4 header's, the quoted TCP/UDP checksum when the quote holds
/// it (its pseudo-header has the source), and the ICMP checksum over all of these (ICMPv6's
/// pseudo-header also has the outer destination). `q` was parsed from this frame's quote.
fn nat_icmp_error(data: &mut [u8], p: &L4, q: &wire::Quote, addr: &Addr, port: u16) {
    let alen = if p.v6 { 16 } else { 4 };
    let (l3, icmp, end) = (p.l2_len, p.l4, p.l4 + p.l4_len);
    let quote = icmp + 8;
    let ql4 = quote + q.l4;
    let mut ck = u16::from_be_bytes([data[icmp + 2], data[icmp + 3]]);
    // Writes `new` at `at` (an even offset from the ICMP header), updating the ICMP checksum.
    let patch = |data: &mut [u8], ck: &mut u16, at: usize, new: &[u8]| {
        *ck = checksum::update_bytes(*ck, &data[at..at + new.len()], new);
        data[at..at + new.len()].copy_from_slice(new);
    };
    // Outer destination: VIP -> backend.
    if p.v6 {
        ck = checksum::update_bytes(ck, &p.dst, addr);
        data[l3 + 24..l3 + 40].copy_from_slice(addr);
    } else {
        let ipc = u16::from_be_bytes([data[l3 + 10], data[l3 + 11]]);
        let ipc = checksum::update_bytes(ipc, &p.dst[..4], &addr[..4]);
        data[l3 + 10..l3 + 12].copy_from_slice(&ipc.to_be_bytes());
        data[l3 + 16..l3 + 20].copy_from_slice(&addr[..4]);
    }
    // Quoted source: VIP:port -> backend:port, with the quoted checksums.
    let src_at = if p.v6 { quote + 8 } else { quote + 12 };
    if !p.v6 {
        let c = u16::from_be_bytes([data[quote + 10], data[quote + 11]]);
        let c = checksum::update_bytes(c, &q.src[..4], &addr[..4]);
        patch(data, &mut ck, quote + 10, &c.to_be_bytes());
    }
    patch(data, &mut ck, src_at, &addr[..alen]);
    let csum_at = ql4 + if q.proto == IPPROTO_TCP { 16 } else { 6 };
    if csum_at + 2 <= end {
        let c = u16::from_be_bytes([data[csum_at], data[csum_at + 1]]);
        let c = if q.proto == IPPROTO_UDP {
            let c = checksum::update_udp(c, &q.src[..alen], &addr[..alen]);
            checksum::update_udp_u16(c, q.sport, port)
        } else {
            let c = checksum::update_bytes(c, &q.src[..alen], &addr[..alen]);
            checksum::update_u16(c, q.sport, port)
        };
        patch(data, &mut ck, csum_at, &c.to_be_bytes());
    }
    patch(data, &mut ck, ql4, &port.to_be_bytes());
    data[icmp + 2..icmp + 4].copy_from_slice(&ck.to_be_bytes());
}

/// A reply goes back where the request came from: dst MAC := its src, src MAC := ours.
#[inline]
fn set_reply_macs(data: &mut [u8], our_mac: [u8; 6]) {
    data.copy_within(6..12, 0);
    data[6..12].copy_from_slice(&our_mac);
}

/// NAT inbound: destination address and port := backend's, checksums updated (RFC 1624).
fn rewrite_dst(data: &mut [u8], p: &L4, addr: &Addr, port: u16) {
    let alen = if p.v6 { 16 } else { 4 };
    let l3 = p.l2_len;
    let (old_addr, old_port);
    {
        old_addr = p.dst;
        let seg = &data[p.l4..p.l4 + 4];
        old_port = u16::from_be_bytes([seg[2], seg[3]]);
    }
    if !p.v6 {
        let mut ip = wire::Ipv4Packet::new_unchecked(&mut data[l3..]);
        ip.set_dst_addr(v4_of(addr));
        let c = checksum::update_bytes(ip.checksum(), &old_addr[..4], &addr[..4]);
        ip.set_checksum(c);
    } else {
        let mut ip = wire::Ipv6Packet::new_unchecked(&mut data[l3..]);
        ip.set_dst_addr(*addr);
    }
    rewrite_l4(data, p, &old_addr[..alen], &addr[..alen], 2, old_port, port);
}

/// [`rewrite_dst`] for the fast path's frames (untagged IPv4, no options: the IP header at
/// 14, TCP/UDP at 34), with the same arithmetic (RFC 1624 eqn. 3 over the address's two
/// words, then the port's) written out for 4 bytes so it inlines: byte-identical results.
#[inline(always)]
fn rewrite_dst_v4(data: &mut [u8], x: &Fast, addr: &Addr, port: u16) {
    let Some(h) = data.get_mut(..34 + 8) else {
        return; // the parse checked 42 bytes: never taken
    };
    let old = [x.key.dst[0], x.key.dst[1], x.key.dst[2], x.key.dst[3]];
    let new = [addr[0], addr[1], addr[2], addr[3]];
    let ipc = u16::from_be_bytes([h[24], h[25]]);
    h[24..26].copy_from_slice(&update_addr4(ipc, old, new).to_be_bytes());
    h[30..34].copy_from_slice(&new);
    let old_port = u16::from_be_bytes([h[36], h[37]]);
    h[36..38].copy_from_slice(&port.to_be_bytes());
    let at = if x.key.proto == IPPROTO_TCP {
        34 + 16
    } else {
        34 + 6
    };
    let Some(c) = data.get_mut(at..at + 2) else {
        return; // the parse checked the L4 header: never taken
    };
    let cs = u16::from_be_bytes([c[0], c[1]]);
    if x.key.proto == IPPROTO_UDP && cs == 0 {
        return; // an IPv4 UDP datagram without checksum stays without one
    }
    let mut cs = checksum::update_u16(update_addr4(cs, old, new), old_port, port);
    if x.key.proto == IPPROTO_UDP && cs == 0 {
        cs = 0xffff;
    }
    c.copy_from_slice(&cs.to_be_bytes());
}

/// `checksum::update_bytes` for a 4-byte field, written out.
#[inline(always)]
fn update_addr4(cs: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let sum16 = |a: [u8; 4]| {
        checksum::fold(
            u64::from(u16::from_be_bytes([a[0], a[1]]))
                + u64::from(u16::from_be_bytes([a[2], a[3]])),
        )
    };
    !checksum::fold(u64::from(!cs) + u64::from(!sum16(old)) + u64::from(sum16(new)))
}

/// NAT reply: source address and port := the VIP's, checksums updated (RFC 1624).
fn rewrite_src(data: &mut [u8], p: &L4, addr: &Addr, port: u16) {
    let alen = if p.v6 { 16 } else { 4 };
    let l3 = p.l2_len;
    let old_addr = p.src;
    let seg = &data[p.l4..p.l4 + 2];
    let old_port = u16::from_be_bytes([seg[0], seg[1]]);
    if !p.v6 {
        let mut ip = wire::Ipv4Packet::new_unchecked(&mut data[l3..]);
        ip.set_src_addr(v4_of(addr));
        let c = checksum::update_bytes(ip.checksum(), &old_addr[..4], &addr[..4]);
        ip.set_checksum(c);
    } else {
        let mut ip = wire::Ipv6Packet::new_unchecked(&mut data[l3..]);
        ip.set_src_addr(*addr);
    }
    rewrite_l4(data, p, &old_addr[..alen], &addr[..alen], 0, old_port, port);
}

/// Writes a port at `port_off` (0: source, 2: destination) of the L4 header and updates the
/// L4 checksum for it and for an address change in the pseudo-header.
fn rewrite_l4(
    data: &mut [u8],
    p: &L4,
    old_addr: &[u8],
    new_addr: &[u8],
    port_off: usize,
    old_port: u16,
    new_port: u16,
) {
    let seg = &mut data[p.l4..p.l4 + p.l4_len];
    seg[port_off..port_off + 2].copy_from_slice(&new_port.to_be_bytes());
    let csum_off = if p.proto == IPPROTO_TCP { 16 } else { 6 };
    let old = u16::from_be_bytes([seg[csum_off], seg[csum_off + 1]]);
    if p.proto == IPPROTO_UDP && old == 0 && !p.v6 {
        // An IPv4 UDP datagram without checksum stays without one.
        return;
    }
    let mut c = checksum::update_bytes(old, old_addr, new_addr);
    c = checksum::update_u16(c, old_port, new_port);
    if p.proto == IPPROTO_UDP && c == 0 {
        c = 0xffff;
    }
    seg[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
}

/// Turns a SYN into the RST|ACK that refuses it (RFC 9293 3.10.7.1: seq 0, ack = SEG.SEQ +
/// SEG.LEN), from the VIP, back to the client. Options and payload are dropped.
fn build_rst<F: Frame>(frame: &mut F, p: &L4, our_mac: [u8; 6]) -> Verdict {
    let (sport, dport, seq, seg_len) = {
        let data = frame.data();
        let Ok(t) = wire::TcpPacket::new_checked(&data[p.l4..p.l4 + p.l4_len]) else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        let payload = p.l4_len - t.header_len();
        let fin = u32::from(t.fin());
        (
            t.src_port(),
            t.dst_port(),
            t.seq_number(),
            1 + payload as u32 + fin,
        )
    };
    let l3 = p.l2_len;
    let ip_len = if p.v6 { 40 } else { 20 };
    let total = l3 + ip_len + 20;
    if frame.data().len() < total && !frame.append(total - frame.data().len()) {
        return Verdict::Drop(DropReason::NoRoom);
    }
    frame.truncate(total);
    let data = frame.data_mut();
    set_reply_macs(data, our_mac);
    write_ip_header(&mut data[l3..], p.v6, &p.dst, &p.src, IPPROTO_TCP, 20);
    let seg = &mut data[l3 + ip_len..total];
    let mut t = wire::TcpPacket::new_unchecked(&mut *seg);
    t.set_src_port(dport);
    t.set_dst_port(sport);
    t.set_seq_number(0);
    t.set_ack_number(seq.wrapping_add(seg_len));
    t.set_header_len(20);
    t.set_flags(tcp::RST | tcp::ACK);
    t.set_window_len(0);
    t.set_urgent_at(0);
    t.set_checksum(0);
    let c = if p.v6 {
        checksum::l4_checksum_v6(&p.dst, &p.src, IPPROTO_TCP, seg)
    } else {
        checksum::l4_checksum_v4(&v4_of(&p.dst), &v4_of(&p.src), IPPROTO_TCP, seg)
    };
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    Verdict::Reply
}

/// [`build_rst`] for an untagged IPv4 frame without IP options (the fast path's): the same
/// 54 bytes, written in one go with the checksums summed from words, not through the views.
fn build_rst_v4<F: Frame>(frame: &mut F, p: &L4, our_mac: [u8; 6]) -> Verdict {
    let data = frame.data();
    let (Some(t), true) = (data.get(34..54), p.l4_len >= 20) else {
        return build_rst(frame, p, our_mac); // never: the parse checked both
    };
    let off = usize::from(t[12] >> 4) * 4;
    if off < 20 || off > p.l4_len {
        return build_rst(frame, p, our_mac); // never: the parse checked it
    }
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let seg_len = 1 + (p.l4_len - off) as u32 + u32::from(t[13] & tcp::FIN);
    let ack = seq.wrapping_add(seg_len).to_be_bytes();
    let (sport, dport) = ([t[0], t[1]], [t[2], t[3]]);
    let peer: [u8; 6] = [data[6], data[7], data[8], data[9], data[10], data[11]];
    let (vip, client) = (v4_of(&p.dst), v4_of(&p.src));
    let w = |a: u8, b: u8| u64::from(u16::from_be_bytes([a, b]));
    let addrs =
        w(vip[0], vip[1]) + w(vip[2], vip[3]) + w(client[0], client[1]) + w(client[2], client[3]);
    // IPv4: 45 00 | len 40 | ident 0 | DF | ttl, TCP | checksum | VIP | client (ipv4::Repr::emit).
    let ip_sum = 0x4500 + 40 + 0x4000 + (u64::from(OWN_TTL) << 8 | u64::from(IPPROTO_TCP)) + addrs;
    let ip_ck = (!checksum::fold(ip_sum)).to_be_bytes();
    // TCP: ports swapped, seq 0, ack, offset 5, RST|ACK, window 0, urgent 0; pseudo-header.
    let tcp_sum = addrs
        + u64::from(IPPROTO_TCP)
        + 20
        + w(dport[0], dport[1])
        + w(sport[0], sport[1])
        + w(ack[0], ack[1])
        + w(ack[2], ack[3])
        + (0x50 << 8 | u64::from(tcp::RST | tcp::ACK));
    let tcp_ck = (!checksum::fold(tcp_sum)).to_be_bytes();
    frame.truncate(54);
    let Some(out) = frame.data_mut().first_chunk_mut::<54>() else {
        return Verdict::Drop(DropReason::NoRoom); // never: the frame held 54 bytes
    };
    out[0..6].copy_from_slice(&peer);
    out[6..12].copy_from_slice(&our_mac);
    out[14..34].copy_from_slice(&[
        0x45,
        0,
        0,
        40,
        0,
        0,
        0x40,
        0,
        OWN_TTL,
        IPPROTO_TCP,
        ip_ck[0],
        ip_ck[1],
        vip[0],
        vip[1],
        vip[2],
        vip[3],
        client[0],
        client[1],
        client[2],
        client[3],
    ]);
    out[34..54].copy_from_slice(&[
        dport[0],
        dport[1],
        sport[0],
        sport[1],
        0,
        0,
        0,
        0,
        ack[0],
        ack[1],
        ack[2],
        ack[3],
        0x50,
        tcp::RST | tcp::ACK,
        0,
        0,
        tcp_ck[0],
        tcp_ck[1],
        0,
        0,
    ]);
    Verdict::Reply
}

/// Turns a UDP datagram for an empty pool into ICMP port unreachable, quoting its IP header
/// and the first 8 bytes after it (RFC 792; RFC 4443 for IPv6, which quotes the same here).
fn build_unreachable<F: Frame>(frame: &mut F, p: &L4, our_mac: [u8; 6]) -> Verdict {
    let l3 = p.l2_len;
    let ip_len = if p.v6 { 40 } else { 20 };
    // The quoted invoking packet: its IP header(s) plus 8 bytes of UDP.
    let quote = (p.l4 - l3) + 8.min(p.l4_len);
    let total = l3 + ip_len + 8 + quote;
    let have = frame.data().len();
    if have < total && !frame.append(total - have) {
        return Verdict::Drop(DropReason::NoRoom);
    }
    let data = frame.data_mut();
    data.copy_within(l3..l3 + quote, l3 + ip_len + 8);
    frame.truncate(total);
    let data = frame.data_mut();
    set_reply_macs(data, our_mac);
    let icmp_len = 8 + quote;
    let (ptype, code) = if p.v6 {
        (IPPROTO_ICMPV6, (1u8, 4u8))
    } else {
        (IPPROTO_ICMP, (3u8, 3u8))
    };
    write_ip_header(
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

/// A fresh IP header for a packet the balancer originates.
fn write_ip_header(buf: &mut [u8], v6: bool, src: &Addr, dst: &Addr, proto: u8, payload_len: u16) {
    if v6 {
        wire::ipv6::Repr {
            src: *src,
            dst: *dst,
            next_header: proto,
            payload_len,
            hop_limit: OWN_TTL,
        }
        .emit(&mut buf[..40])
        .expect("40 bytes of room");
    } else {
        wire::ipv4::Repr {
            src: v4_of(src),
            dst: v4_of(dst),
            protocol: proto,
            payload_len,
            ttl: OWN_TTL,
            ident: 0,
        }
        .emit(&mut buf[..20])
        .expect("20 bytes of room");
    }
}

/// The fast path decides exactly as the general path does: the same random traffic (new,
/// established, closing and reset TCP flows with and without options and payload, UDP with
/// and without checksum, DSR, NAT, empty pools with RST and ICMP, frames the fast path must
/// refuse) through [`Pipeline::process`] and through the general path alone gives the same
/// verdicts, the same output bytes, the same counters and the same flow table.
#[cfg(test)]
mod fast_path_tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::snapshot::{BackendIds, Dynamic};
    use crate::wire::{Ipv4Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr};

    const CONFIG: &str = r#"
[global]
flow_table_capacity = 4096
[[port]]
name = "out"
device = "net_null0"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.2/24"]
[[port]]
name = "in"
device = "net_null1"
mac = "02:00:00:00:00:02"
addresses = ["10.1.0.1/16"]
[[service]]
name = "dsr"
vip = "198.51.100.1"
port = 80
[[service.backend]]
name = "a"
address = "10.1.0.11"
mac = "02:00:00:01:00:0b"
[[service.backend]]
name = "b"
address = "10.1.0.12"
mac = "02:00:00:01:00:0c"
[[service]]
name = "nat-udp"
vip = "198.51.100.1"
protocol = "udp"
port = 53
forwarding = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.21"
port = 5353
mac = "02:00:00:01:00:15"
[[service]]
name = "nat-any"
vip = "198.51.100.2"
forwarding = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.31"
mac = "02:00:00:01:00:1f"
[[service.backend]]
name = "b"
address = "10.1.0.32"
mac = "02:00:00:01:00:20"
[[service]]
name = "empty-tcp"
vip = "198.51.100.3"
port = 443
[[service]]
name = "empty-udp"
vip = "198.51.100.3"
protocol = "udp"
port = 53
"#;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn pick<T: Copy>(&mut self, v: &[T]) -> T {
            v[(self.next() % v.len() as u64) as usize]
        }
    }

    /// A client frame: TCP (any flags, 0..12 bytes of options, 0..40 of payload) or UDP (with
    /// or without checksum), sometimes with IP options or a wrong IP checksum.
    fn frame(r: &mut Rng) -> Vec<u8> {
        let client = [203, 0, 113, r.pick(&[1, 2, 3])];
        let vip = [198, 51, 100, r.pick(&[1, 2, 3, 4])];
        let sport = r.pick(&[40000, 40001, 40002]);
        let udp = r.next().is_multiple_of(3);
        let dport = if udp {
            r.pick(&[53, 54])
        } else {
            r.pick(&[80, 443, 8080])
        };
        let payload = (r.next() % 41) as usize;
        let ip_opts = if r.next().is_multiple_of(10) { 4 } else { 0 };
        let tcp_opts = if udp { 0 } else { 4 * (r.next() % 4) as usize };
        let l4_len = if udp {
            8 + payload
        } else {
            20 + tcp_opts + payload
        };
        let mut f = vec![0u8; 14 + 20 + ip_opts + l4_len + (r.next() % 8) as usize];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0xfe]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        Ipv4Repr {
            src: client,
            dst: vip,
            protocol: if udp { IPPROTO_UDP } else { IPPROTO_TCP },
            payload_len: (ip_opts + l4_len) as u16,
            ttl: 64,
            ident: r.next() as u16,
        }
        .emit(&mut f[14..])
        .unwrap();
        if ip_opts > 0 {
            // IHL 6 with a NOP option word; the checksum is refilled below.
            let total = 20 + ip_opts + l4_len;
            f[14] = 0x46;
            f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        }
        let mut ip = wire::Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.fill_checksum();
        if r.next().is_multiple_of(20) {
            f[24] ^= 1; // a bad IP checksum
        }
        let l4 = 14 + 20 + ip_opts;
        for (i, b) in f[l4..].iter_mut().enumerate() {
            *b = i as u8;
        }
        if udp {
            UdpRepr {
                src_port: sport,
                dst_port: dport,
                payload_len: payload as u16,
            }
            .emit(&mut f[l4..])
            .unwrap();
            let mut u = UdpPacket::new_unchecked(&mut f[l4..l4 + l4_len]);
            if r.next().is_multiple_of(4) {
                u.set_checksum(0);
            } else {
                u.fill_checksum_v4(&client, &vip);
            }
        } else {
            let flags = r.pick(&[
                tcp::SYN,
                tcp::ACK,
                tcp::ACK | tcp::PSH,
                tcp::FIN | tcp::ACK,
                tcp::RST,
                tcp::SYN | tcp::ACK,
                tcp::SYN | tcp::FIN,
            ]);
            TcpRepr {
                src_port: sport,
                dst_port: dport,
                seq_number: r.next() as u32,
                ack_number: r.next() as u32,
                flags,
                window_len: 512,
            }
            .emit(&mut f[l4..])
            .unwrap();
            f[l4 + 12] = (((20 + tcp_opts) / 4) as u8) << 4;
            TcpPacket::new_unchecked(&mut f[l4..l4 + l4_len]).fill_checksum_v4(&client, &vip);
        }
        f
    }

    #[test]
    fn fast_path_decides_as_the_general_path() {
        let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
        let snap = Snapshot::build(&cfg, &mut BackendIds::new(), &Dynamic::default(), 1);
        let (mut fast, mut general) = (Pipeline::new(0, 1, 64, 7), Pipeline::new(0, 1, 64, 7));
        let mut r = Rng(11);
        let mut on_fast = 0;
        for i in 0..20_000u32 {
            let bytes = frame(&mut r);
            let (mut a, mut b) = (VecFrame::new(&bytes), VecFrame::new(&bytes));
            for p in [&mut fast, &mut general] {
                p.now_ms = i / 8;
                p.flows.expire_paced(i / 8, 64, &snap.timeouts);
            }
            on_fast += u32::from(fast.fast_parse(&snap, 0, &bytes).is_some());
            let va = fast.process(&snap, 0, &mut a);
            let vb = general.decide(&snap, 0, None, &mut b);
            assert_eq!(va, vb, "frame {i}: {bytes:02x?}");
            assert_eq!(a.to_vec(), b.to_vec(), "frame {i} output");
        }
        assert_eq!(fast.counters, general.counters);
        let table = |p: &Pipeline| {
            let mut v: Vec<_> = p.flows.iter().map(|(k, f)| (k.to_string(), *f)).collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v
        };
        assert_eq!(table(&fast), table(&general));
        assert!(fast.counters.flows_evicted > 0, "the small table filled");
        assert!(
            fast.counters.syn_unrecorded > 0,
            "SYNs found the table full (the fast path's flood case)"
        );
        assert!(on_fast > 5_000, "the fast path was taken: {on_fast}");
    }
}

/// ICMP errors to a VIP go to the backend of the flow they quote: the flow table's choice
/// first (as for the flow's own packets), Maglev's without an entry; never a new entry.
#[cfg(test)]
mod icmp_error_tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::snapshot::{BackendIds, Dynamic};
    use crate::wire::{Icmpv4Packet, Ipv4Repr, TcpPacket, TcpRepr};

    const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const CLIENT: [u8; 4] = [10, 0, 0, 50];
    const VIP: [u8; 4] = [10, 0, 0, 100];
    const NAT_VIP: [u8; 4] = [10, 0, 0, 101];
    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0x12];

    /// The DSR service on 10.0.0.100:80 and the NAT one on 10.0.0.101:80 with the backends
    /// named (a: 10.0.0.11, b: 10.0.0.12).
    fn snapshot(ids: &mut BackendIds, backends: &[&str]) -> Snapshot {
        let mut text = String::from(
            "[[port]]\nname = \"p0\"\ndevice = \"net_null0\"\nmac = \"02:00:00:00:00:01\"\n\
             addresses = [\"10.0.0.2/24\"]\n",
        );
        for (svc, vip, fwd) in [("web", "10.0.0.100", "dsr"), ("nat", "10.0.0.101", "nat")] {
            text += &format!(
                "[[service]]\nname = \"{svc}\"\nvip = \"{vip}\"\nport = 80\nforwarding = \"{fwd}\"\n"
            );
            for b in backends {
                let n = if *b == "a" { 0x11 } else { 0x12 };
                text += &format!(
                    "[[service.backend]]\nname = \"{b}\"\naddress = \"10.0.0.{n}\"\n\
                     mac = \"02:00:00:00:00:{n:02x}\"\n"
                );
            }
        }
        let cfg = conf::parse(&text, std::path::Path::new("test.toml")).unwrap();
        Snapshot::build(&cfg, ids, &Dynamic::default(), 1)
    }

    /// Ethernet + IPv4 + `l4` from `src` to `dst`, checksums filled.
    fn ip_frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 34 + l4.len()];
        f[0..6].copy_from_slice(&PORT_MAC);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xfe]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        Ipv4Repr {
            src,
            dst,
            protocol: proto,
            payload_len: l4.len() as u16,
            ttl: 64,
            ident: 9,
        }
        .emit(&mut f[14..])
        .unwrap();
        wire::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        f[34..].copy_from_slice(l4);
        f
    }

    /// A TCP segment `src:sport -> dst:dport` (as an IP packet, no Ethernet).
    fn tcp_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut seg = [0u8; 20];
        TcpRepr {
            src_port: sport,
            dst_port: dport,
            seq_number: 1,
            ack_number: 0,
            flags,
            window_len: 512,
        }
        .emit(&mut seg[..])
        .unwrap();
        TcpPacket::new_unchecked(&mut seg[..]).fill_checksum_v4(&src, &dst);
        ip_frame(src, dst, IPPROTO_TCP, &seg)[14..].to_vec()
    }

    /// The client's SYN for `client_port -> vip:80`.
    fn syn(vip: [u8; 4], client_port: u16) -> Vec<u8> {
        let mut f = ip_frame(CLIENT, vip, IPPROTO_TCP, &[0; 20]);
        f[34..].copy_from_slice(&tcp_packet(CLIENT, vip, client_port, 80, tcp::SYN)[20..]);
        f
    }

    /// "Fragmentation needed" from a router to `vip`, quoting 28 bytes of the VIP's reply
    /// `vip:80 -> client:client_port`.
    fn frag_needed(vip: [u8; 4], client_port: u16) -> Vec<u8> {
        let quoted = tcp_packet(vip, CLIENT, 80, client_port, tcp::ACK);
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
        icmp.extend_from_slice(&quoted[..28]);
        Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
        ip_frame([10, 0, 0, 1], vip, IPPROTO_ICMP, &icmp)
    }

    fn run(p: &mut Pipeline, snap: &Snapshot, bytes: &[u8]) -> (Verdict, Vec<u8>) {
        let mut f = VecFrame::new(bytes);
        let v = p.process(snap, 0, &mut f);
        (v, f.to_vec())
    }

    /// Client ports whose new flows Maglev sends to `mac` in `snap`.
    fn ports_for(snap: &Snapshot, mac: [u8; 6]) -> impl Iterator<Item = u16> + '_ {
        (40000..41000).filter(move |&cp| {
            let key = FlowKey::v4(CLIENT, VIP, cp, 80, IPPROTO_TCP);
            matches!(snap.choose(&key), crate::snapshot::Choice::Backend { backend, .. }
                if snap.backend(backend).is_some_and(|b| b.mac == mac))
        })
    }

    /// A full table: a DSR SYN goes to Maglev's choice without an entry (and evicts
    /// nothing); the handshake's ACK then records the flow, to the same backend, evicting as
    /// any new flow does. A NAT SYN is always recorded: its replies need the reverse entry.
    #[test]
    fn a_syn_never_evicts_and_the_ack_records_the_flow() {
        let mut ids = BackendIds::new();
        let snap = snapshot(&mut ids, &["a", "b"]);
        let cap = 64;
        let mut p = Pipeline::new(0, 1, cap, 7);
        // Fill the table with established DSR flows (SYN, then ACK).
        let mut cport = 1000u16;
        while p.flows.len() < cap {
            for flags in [tcp::SYN, tcp::ACK] {
                let mut f = ip_frame(CLIENT, VIP, IPPROTO_TCP, &[0; 20]);
                f[34..].copy_from_slice(&tcp_packet(CLIENT, VIP, cport, 80, flags)[20..]);
                assert!(matches!(run(&mut p, &snap, &f).0, Verdict::Forward { .. }));
            }
            cport += 1;
        }
        let filled: Vec<(FlowKey, flow::Flow)> = p.flows.iter().map(|(k, f)| (*k, *f)).collect();
        let c0 = p.counters;
        assert_eq!(c0.flows_evicted, 0);
        assert_eq!(c0.syn_unrecorded, 0);

        // 200 new clients' SYNs: each forwarded to Maglev's choice, none recorded.
        for cp in 50000..50200u16 {
            let key = FlowKey::v4(CLIENT, VIP, cp, 80, IPPROTO_TCP);
            let want = match snap.choose(&key) {
                crate::snapshot::Choice::Backend { backend, .. } => {
                    snap.backend(backend).unwrap().mac
                }
                c => panic!("{c:?}"),
            };
            let (v, out) = run(&mut p, &snap, &syn(VIP, cp));
            assert_eq!((v, &out[0..6]), (Verdict::Forward { port: 0 }, &want[..]));
            assert_eq!(p.flows.lookup(&key, hash::table_hash(7, &key)), None);
        }
        let c1 = p.counters;
        assert_eq!(c1.syn_unrecorded, 200);
        assert_eq!(c1.flows_created, c0.flows_created);
        assert_eq!(c1.flows_evicted, 0);
        let now: Vec<(FlowKey, flow::Flow)> = p.flows.iter().map(|(k, f)| (*k, *f)).collect();
        assert!(now == filled, "an unrecorded SYN changed the table");

        // The first client's ACK: same backend, recorded, one entry evicted for it.
        let cp = 50000u16;
        let key = FlowKey::v4(CLIENT, VIP, cp, 80, IPPROTO_TCP);
        let (_, syn_out) = run(&mut p, &snap, &syn(VIP, cp));
        let mut ack = ip_frame(CLIENT, VIP, IPPROTO_TCP, &[0; 20]);
        ack[34..].copy_from_slice(&tcp_packet(CLIENT, VIP, cp, 80, tcp::ACK)[20..]);
        let (v, out) = run(&mut p, &snap, &ack);
        assert_eq!(
            (v, &out[0..6]),
            (Verdict::Forward { port: 0 }, &syn_out[0..6])
        );
        assert!(p.flows.lookup(&key, hash::table_hash(7, &key)).is_some());
        assert_eq!(p.counters.flows_created, c1.flows_created + 1);
        assert_eq!(p.counters.flows_evicted, 1);
        assert_eq!(p.flows.len(), cap);

        // A NAT SYN into the full table is recorded (a pair), evicting.
        let before = p.counters;
        assert!(matches!(
            run(&mut p, &snap, &syn(NAT_VIP, 60000)).0,
            Verdict::Forward { .. }
        ));
        assert_eq!(p.counters.syn_unrecorded, before.syn_unrecorded);
        assert_eq!(p.counters.flows_created, before.flows_created + 2);
        assert!(p.counters.flows_evicted >= before.flows_evicted + 2);
    }

    #[test]
    fn the_flow_table_wins_over_a_changed_maglev_table() {
        let mut ids = BackendIds::new();
        let only_a = snapshot(&mut ids, &["a"]);
        let a_and_b = snapshot(&mut ids, &["a", "b"]);
        let mut p = Pipeline::new(0, 1, 256, 7);
        // Two flows that Maglev sends to b once b exists; the first made while only a does.
        let mut to_b = ports_for(&a_and_b, MAC_B);
        let (cp, other) = (to_b.next().unwrap(), to_b.next().unwrap());
        let (v, out) = run(&mut p, &only_a, &syn(VIP, cp));
        assert_eq!((v, &out[0..6]), (Verdict::Forward { port: 0 }, &MAC_A[..]));
        assert_eq!(p.flows.len(), 1);

        // Its packets and its ICMP errors stay with a; the error is forwarded untouched
        // but for the MACs.
        let err = frag_needed(VIP, cp);
        let (v, out) = run(&mut p, &a_and_b, &err);
        assert_eq!(v, Verdict::Forward { port: 0 });
        assert_eq!(&out[0..6], &MAC_A);
        assert_eq!(&out[6..12], &PORT_MAC);
        assert_eq!(&out[12..], &err[12..]);

        // Without an entry, Maglev's choice (b), and no entry is made.
        let (v, out) = run(&mut p, &a_and_b, &frag_needed(VIP, other));
        assert_eq!((v, &out[0..6]), (Verdict::Forward { port: 0 }, &MAC_B[..]));
        assert_eq!(p.flows.len(), 1, "an ICMP error makes no flow");

        // a removed: its flow's packets would move to b, which never saw the connection.
        let only_b = snapshot(&mut ids, &["b"]);
        let (v, _) = run(&mut p, &only_b, &err);
        assert_eq!(v, Verdict::Drop(DropReason::IcmpErrorBackendDown));
        assert_eq!(
            p.flows.len(),
            1,
            "the entry is left to the flow's own packets"
        );
    }

    #[test]
    fn a_nat_error_is_handed_to_the_flow_owner_and_translated_there() {
        let mut ids = BackendIds::new();
        let snap = snapshot(&mut ids, &["a"]);
        let mut workers = [Pipeline::new(0, 2, 256, 7), Pipeline::new(1, 2, 256, 7)];
        let cp = 40000;
        let owner = match run(&mut workers[0], &snap, &syn(NAT_VIP, cp)).0 {
            Verdict::Handoff { worker } => usize::from(worker),
            _ => 0,
        };
        let (v, _) = run(&mut workers[owner], &snap, &syn(NAT_VIP, cp));
        assert_eq!(v, Verdict::Forward { port: 0 });
        let err = frag_needed(NAT_VIP, cp);
        let (v, out) = run(&mut workers[1 - owner], &snap, &err);
        assert_eq!(
            v,
            Verdict::Handoff {
                worker: owner as u16
            }
        );
        assert_eq!(out, err, "handed over untouched");
        let (v, out) = run(&mut workers[owner], &snap, &err);
        assert_eq!(v, Verdict::Forward { port: 0 });
        // Outer destination and quoted source are the backend; every checksum verifies.
        let backend = [10, 0, 0, 0x11];
        let ip = wire::Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr(), backend);
        let icmp = Icmpv4Packet::new_checked(&out[34..]).unwrap();
        assert!(icmp.verify_checksum());
        let quoted = &out[42..];
        assert_eq!(&quoted[12..16], &backend);
        assert_eq!(
            checksum::ipv4_header(&quoted[..20]).to_be_bytes(),
            [quoted[10], quoted[11]],
            "quoted IPv4 header checksum"
        );
        assert_eq!(
            &quoted[20..22],
            &80u16.to_be_bytes(),
            "port kept: the backend has none"
        );
    }
}

//! What a worker does with one packet: classify, find or make its flow, decide, rewrite.
//!
//! Pure: no DPDK, no I/O, no allocation, no locks, no logging. It runs over any
//! [`Frame`] (an mbuf in production, a `VecFrame` in tests) against an immutable
//! [`Snapshot`], and returns a [`Verdict`]; the caller does the I/O and the counting of
//! I/O outcomes.
//!
//! ```text
//! Ethernet (VLAN, QinQ) -> ARP for a VIP/own address?  reply                     neighbor.rs
//!                       -> IPv4/IPv6                                                parse.rs
//!                          -> dst is a VIP? -> service? -> flow hit / Maglev      service.rs
//!                                                          -> rewrite (DSR MACs | NAT dst)
//!                                                                                 rewrite/
//!                                                          -> too big for the egress port?
//!                                                             ICMP frag needed / PTB   mtu.rs
//!                                              empty pool -> RST / ICMP unreach     reply/
//!                                           -> ICMP error? -> quoted flow's backend  icmp.rs
//!                                                  (flow hit / Maglev; NAT: translate)
//!                                           -> ICMP echo? -> reply            reply/echo.rs
//!                          -> own address?  -> ICMP echo reply | slow path
//!                          -> to a FullNAT local port? -> owner's pair -> to client fullnat.rs
//!                          -> from a NAT backend? -> owner's reverse flow -> un-NAT   nat.rs
//!                          -> drop(not_vip)
//! ```
//!
//! Two ways in share every decision: the fast path ([`parse::Fast`], untagged IPv4 TCP/UDP
//! to a VIP) parses in one read and decides an established flow's packet without building
//! the general path's view; anything else it hands to the general path. Both call the same
//! functions for the flow hit ([`Pipeline::hit`]), the backend of a new flow
//! ([`Service::pick_new`](crate::snapshot::Service::pick_new)), the rewrite
//! ([`rewrite::to_backend`]) and the replies; a differential test holds them to each other.

mod fullnat;
mod icmp;
mod mtu;
mod nat;
mod neighbor;
mod parse;
mod reply;
mod rewrite;
mod service;
mod sweep;

pub(crate) use rewrite::encapsulate_ip;
pub use service::exception_of;

use conf::Forwarding;

use crate::flow::{self, FlowTable};
use crate::frame::Frame;
use crate::hash;
use crate::ids::{PortIdx, WorkerIdx};
use crate::snapshot::{Addr, Snapshot};
use crate::stats::Counters;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{self, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use parse::{Fast, IpMeta};

use std::sync::Arc;

use crate::exceptions::ExceptionCell;

/// One worker's packet-processing state: its flow table and counters.
pub struct Pipeline {
    /// This worker's index.
    pub worker: WorkerIdx,
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
    /// The rate limit of this worker's ICMP "too big" answers.
    too_big_bucket: mtu::Bucket,
    /// FullNAT: this worker's share of the local ports on each local address.
    local_ports: crate::local_ports::LocalPorts,
    /// The snapshot generation `local_ports` was last brought up to.
    local_ports_gen: u64,
    /// [`Pipeline::process_burst`]'s first pass's results ([`MAX_BURST`] of them), kept here
    /// rather than in a stack array that would be zeroed per burst. Taken out of `self` for
    /// the second pass, which reads each in place (a copy of a `Fast` costs 8 instructions a
    /// packet, and a copy makes every field a stack load anyway).
    parsed: Box<[Option<Fast>]>,
    /// Flows peer instances placed on a backend Maglev would not choose now (instance
    /// sync): a miss consults it before Maglev. Empty unless the worker is given the
    /// engine's cell.
    pub exceptions: Arc<ExceptionCell>,
}

/// Frames [`Pipeline::process_burst`] handles per pass (the bursts the worker receives).
const MAX_BURST: usize = 64;

impl Pipeline {
    /// A pipeline for worker `worker` of `workers`, with a flow table of `flow_capacity`;
    /// `local_seed` must be the same for all workers of the process.
    pub fn new(worker: WorkerIdx, workers: u16, flow_capacity: usize, local_seed: u64) -> Self {
        Self::with_table(
            worker,
            workers,
            FlowTable::with_capacity(flow_capacity),
            local_seed,
        )
    }

    /// [`new`](Self::new) over a table made (or adopted from a file) by the caller;
    /// `local_seed` must be the one the table's entries were placed with.
    pub fn with_table(worker: WorkerIdx, workers: u16, flows: FlowTable, local_seed: u64) -> Self {
        Pipeline {
            worker,
            workers: workers.max(1),
            flows,
            counters: Counters::default(),
            per_backend: Default::default(),
            now_ms: 0,
            local_seed,
            too_big_bucket: mtu::Bucket::default(),
            local_ports: crate::local_ports::LocalPorts::new(worker.get(), workers.max(1)),
            local_ports_gen: u64::MAX,
            parsed: vec![None; MAX_BURST].into_boxed_slice(),
            exceptions: Arc::new(ExceptionCell::default()),
        }
    }

    /// Decides one frame received on `port`, rewriting it in place when it is forwarded or
    /// answered.
    #[inline]
    pub fn process<F: Frame>(&mut self, snap: &Snapshot, port: PortIdx, frame: &mut F) -> Verdict {
        self.sync_local_ports(snap);
        let fast = self.fast_parse(snap, port, frame.data(), frame.rx_ip_checksum());
        self.decide(snap, port, fast.as_ref(), frame)
    }

    /// [`process`](Self::process) for a burst received on `port`: `verdicts[i]` is frame `i`'s.
    /// The same decisions, in two passes: the first parses every frame and starts loading
    /// the flow-table line each will look up; the second decides. A burst's cache misses on
    /// the flow table then overlap instead of stalling one packet after another.
    pub fn process_burst<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        frames: &mut [F],
        verdicts: &mut [Verdict],
    ) {
        debug_assert_eq!(frames.len(), verdicts.len());
        self.sync_local_ports(snap);
        // An empty boxed slice in its place meanwhile: no allocation.
        let mut parsed = std::mem::take(&mut self.parsed);
        for (frames, verdicts) in frames
            .chunks_mut(MAX_BURST)
            .zip(verdicts.chunks_mut(MAX_BURST))
        {
            for (f, slot) in frames.iter().zip(parsed.iter_mut()) {
                let x = self.fast_parse(snap, port, f.data(), f.rx_ip_checksum());
                if let Some(x) = &x {
                    self.flows.prefetch(x.home);
                }
                *slot = x;
            }
            for ((f, v), x) in frames
                .iter_mut()
                .zip(verdicts.iter_mut())
                .zip(parsed.iter())
            {
                *v = self.decide(snap, port, x.as_ref(), f);
            }
        }
        self.parsed = parsed;
    }

    /// The second half of [`process`](Self::process): the fast path's decision when the first
    /// half recognised the frame, else the general path's.
    #[inline(always)]
    fn decide<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        fast: Option<&Fast>,
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

    /// The general path: Ethernet, then ARP or IP.
    fn classify<F: Frame>(&mut self, snap: &Snapshot, port: PortIdx, frame: &mut F) -> Verdict {
        let Some(prt) = snap.ports.get(port.index()) else {
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
        let l3_off = l2.l3_offset;
        let (p, fragment) = match l2.ethertype {
            wire::ethernet::ETHERTYPE_ARP => return self.arp(snap, port, l3_off, frame),
            wire::ethernet::ETHERTYPE_IPV4 => {
                match parse::ipv4(frame.data(), l3_off, frame.rx_ip_checksum()) {
                    Some(x) => x,
                    None => return Verdict::Drop(DropReason::MalformedIpv4),
                }
            }
            wire::ethernet::ETHERTYPE_IPV6 => match parse::ipv6(frame.data(), l3_off) {
                Some(x) => x,
                None => return Verdict::Drop(DropReason::MalformedIpv6),
            },
            _ => return Verdict::Drop(DropReason::UnsupportedEthertype),
        };
        self.l3(snap, port, p, fragment, frame)
    }

    /// Everything after the IP header, for both families. Out of line: inlined (its one
    /// call site invites it), the general path doubles `process_burst` and the fast path
    /// pays for the registers (callgrind: SYN flood +20 instructions a packet).
    #[inline(never)]
    fn l3<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        p: IpMeta,
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
                    let Some(ports) = parse::ports(frame.data(), &p) else {
                        return Verdict::Drop(DropReason::MalformedL4);
                    };
                    match snap.service(dst, p.proto, ports.dport) {
                        Some(s) => self.service(snap, port, s, p, ports, frame),
                        None => Verdict::Drop(DropReason::NoService),
                    }
                }
                x if x == icmp && icmp::is_error(frame.data(), &p) => {
                    self.icmp_error(snap, p, frame)
                }
                x if x == icmp => reply::echo::answer(snap, port, &p, frame),
                _ => Verdict::Drop(DropReason::UnsupportedProtocol),
            };
        }
        // FullNAT's replies come to the balancer's own addresses, on ports of their own.
        if let Some(v) = self.fullnat_inbound(snap, port, &p, fragment, frame) {
            return v;
        }
        if snap.own_addr(dst).is_some() {
            if fragment {
                return Verdict::Drop(DropReason::Fragment);
            }
            if p.proto == icmp {
                // Echo requests are answered here; anything else ICMP (errors quoting a health
                // check, ND for our own address) is the slow path's.
                match reply::echo::answer(snap, port, &p, frame) {
                    Verdict::Drop(DropReason::IcmpUnhandled) => return Verdict::SlowPath,
                    v => return v,
                }
            }
            return Verdict::SlowPath;
        }
        if p.v6
            && p.proto == IPPROTO_ICMPV6
            && !fragment
            && let Some(v) = neighbor::ipv6(snap, port, &p, frame)
        {
            return v;
        }
        if matches!(p.proto, IPPROTO_TCP | IPPROTO_UDP)
            && let Some(ports) = parse::ports(frame.data(), &p)
            && snap.is_nat_backend(p.src_key(), p.proto, ports.sport)
        {
            if fragment {
                return Verdict::Drop(DropReason::Fragment);
            }
            return self.nat_reply(snap, port, p, ports, frame);
        }
        if !fragment && wire::is_vrrp(p.proto, p.dst_ip()) {
            // keepalived's adverts: the slow path hands them to the kernel interface.
            return Verdict::SlowPath;
        }
        Verdict::Drop(DropReason::NotVip)
    }

    /// The worker that owns a NAT flow: chosen from what both directions share, the client's
    /// address and port.
    #[inline]
    fn owner(&self, client: &Addr, client_port: u16) -> WorkerIdx {
        if self.workers <= 1 {
            return self.worker;
        }
        WorkerIdx::new(
            (hash::owner_hash(self.local_seed, client, client_port) % u64::from(self.workers))
                as u16,
        )
    }

    /// Is a service's flow this worker's to decide? Otherwise the worker that owns it: a NAT
    /// or FullNAT flow's two directions must meet one flow table (DSR flows have no owner;
    /// a FullNAT flow's replies come to the owner's local ports).
    #[inline]
    fn handoff(&self, fwd: Forwarding, client: &Addr, client_port: u16) -> Option<Verdict> {
        if matches!(fwd, Forwarding::Nat | Forwarding::FullNat) {
            let owner = self.owner(client, client_port);
            if owner != self.worker {
                return Some(Verdict::Handoff { worker: owner });
            }
        }
        None
    }

    /// Counts what an insert did: whether it `created` an entry, and the entry it evicted.
    #[inline]
    fn count_insert(&mut self, created: bool, evicted: Option<&flow::Evicted>) {
        self.counters.flows_created += u64::from(created);
        if let Some(e) = evicted {
            self.counters.flows_evicted += evicted_entries(e);
            self.forget_evicted(e);
        }
    }
}

/// Entries an eviction removed: the victim and its twin, if it had one, so that
/// `flows_created = flows_active + flows_evicted + flows_expired` (+ rescheduled removals).
#[inline]
fn evicted_entries(e: &flow::Evicted) -> u64 {
    1 + u64::from(e.twin.is_some())
}

#[cfg(test)]
mod exception_tests;
#[cfg(test)]
mod fast_path_tests;
#[cfg(test)]
mod fullnat_tests;
#[cfg(test)]
mod reuse_tests;

//! Per-worker counters.
//!
//! A worker counts into plain integers ([`Counters`]) and publishes them once per burst into
//! its own cache-line-aligned block of [`SharedCounters`] with relaxed atomic stores: readers
//! (the control plane, final reports) never touch the worker's cache lines while it counts,
//! and the worker never executes a locked instruction. The engine keeps the blocks in a
//! shared-memory file ([`create_counter_file`]), which other processes can read
//! ([`read_counter_file`]) without asking anyone.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::{BackendId, WorkerIdx};
use crate::local_ports::InUse;
use crate::mem::SharedWords;
use crate::snapshot::IpKey;

use crate::verdict::DropReason;

/// Declares the scalar counters once: the [`Counters`] fields, their names (metrics,
/// reports, the counter file's order) and the loops over them all come from this list, as
/// `drop_reasons!` gives the drop counters. Append new counters at the end: the counter
/// file's layout ([`LAYOUT`]) follows the order.
macro_rules! scalar_counters {
    ($( $(#[$doc:meta])* $field:ident, )*) => {
        /// A worker's own counters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[$doc])* pub $field: u64, )*
            /// Drops, indexed by `DropReason as usize`.
            pub drops: [u64; DropReason::COUNT],
        }

        impl Default for Counters {
            fn default() -> Self {
                Counters {
                    $( $field: 0, )*
                    drops: [0; DropReason::COUNT],
                }
            }
        }

        impl Counters {
            /// The scalar counters by name, in a stable order.
            pub fn fields(&self) -> [(&'static str, u64); SCALARS] {
                [$( (stringify!($field), self.$field), )*]
            }

            /// The scalar counters, in [`fields`](Self::fields)' order.
            fn scalars_mut(&mut self) -> [&mut u64; SCALARS] {
                [$( &mut self.$field, )*]
            }
        }

        const SCALARS: usize = [$( stringify!($field), )*].len();
    };
}

scalar_counters! {
    /// Frames received from ports.
    rx,
    /// Frames received from other workers (flows this worker owns).
    handoff_in,
    /// Frames transmitted (forwarded or replies).
    tx,
    /// Frames handed to the worker that owns their flow.
    handoff_out,
    /// Frames given to the slow path.
    to_slowpath,
    /// Frames the slow path gave this worker to transmit.
    from_slowpath,
    /// Frames forwarded to a backend.
    forwarded,
    /// Replies built (ARP, ICMP echo, RST, ICMP unreachable).
    replies,
    /// Of the replies: TCP RSTs for an empty pool.
    resets,
    /// Of the replies: ICMP "fragmentation needed" / ICMPv6 "packet too big" for a packet
    /// too big for the port toward its backend.
    mtu_exceeded,
    /// New flows created.
    flows_created,
    /// Flows whose backend became unusable and were sent to a new choice, or whose entry
    /// another forwarding mode made (a reload changed the service's mode) and was made again.
    flows_rescheduled,
    /// TCP SYNs of DSR flows forwarded (by Maglev) without an entry, because recording them
    /// would have evicted one: a SYN never evicts, so a SYN flood displaces nothing. The
    /// connection's next packet records it.
    syn_unrecorded,
    /// Flow-table entries evicted from a full table (a NAT flow's pair counts two, as in
    /// `flows_created` and `flows_expired`).
    flows_evicted,
    /// Flows reaped after their idle timeout, and the entries of a closed flow whose ports
    /// a new connection reused (`flows_reopened`), which it ends at once.
    flows_expired,
    /// Flows currently in the table (a gauge).
    flows_active,
    /// New flows (a flow-table miss mid-stream) sent to the backend a peer instance holds
    /// them on, not to Maglev's choice (instance sync).
    exceptions_used,
    /// Exceptions the expiry sweep reported to the slow path: flows of this table whose
    /// backend is not Maglev's choice now (each live one once per sweep pass).
    exceptions_reported,
    /// Reports of exceptions dropped because the queue to the slow path was full (the flow
    /// is reported again by the next pass).
    exceptions_report_full,
    /// New FullNAT flows refused for want of a rested local port (answered or dropped; see
    /// the `no_local_port` drop reason).
    local_ports_exhausted,
    /// FullNAT local ports held by this worker's flows, over every local address (a gauge;
    /// per address in `ctl status`).
    local_ports_in_use,
    /// TCP SYNs that found the entry of a closed connection (FIN or RST seen) with the same
    /// addresses and ports: a new connection, placed anew (not counted as rescheduled; the
    /// closed one's entries count as expired).
    flows_reopened,
}

impl Counters {
    #[inline(always)]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// `rx + handoff_in + from_slowpath == tx + handoff_out + to_slowpath + drops`: every
    /// packet accounted.
    pub fn balanced(&self) -> bool {
        self.rx + self.handoff_in + self.from_slowpath
            == self.tx + self.handoff_out + self.to_slowpath + self.dropped()
    }

    /// Adds another worker's counters (for totals).
    pub fn add(&mut self, o: &Counters) {
        for (a, (_, b)) in self.scalars_mut().into_iter().zip(o.fields()) {
            *a += b;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }

    fn to_words(self) -> [u64; WORDS] {
        let mut w = [0u64; WORDS];
        for (i, (_, v)) in self.fields().iter().enumerate() {
            w[i] = *v;
        }
        w[SCALARS..].copy_from_slice(&self.drops);
        w
    }

    fn from_words(w: &[u64; WORDS]) -> Counters {
        let mut c = Counters::default();
        for (slot, v) in c.scalars_mut().into_iter().zip(w) {
            *slot = *v;
        }
        c.drops.copy_from_slice(&w[SCALARS..]);
        c
    }
}

const WORDS: usize = SCALARS + DropReason::COUNT;

/// Words of one worker's block in the counter file: its counters rounded up to whole cache
/// lines, so no two workers ever write the same line.
pub const STRIDE: usize = WORDS.next_multiple_of(8);
/// Words of the counter file's header (one cache line): [`MAGIC`], [`LAYOUT`], the number of
/// workers, [`STRIDE`]; the workers' blocks follow, worker 0 first.
pub const HEADER: usize = 8;
pub const MAGIC: u64 = u64::from_le_bytes(*b"FULCRUMC");
/// Changes whenever the order or number of counters does: the scalars of
/// [`Counters::fields`], then one per [`DropReason`], in `DropReason::ALL` order.
pub const LAYOUT: u64 = ((SCALARS as u64) << 32) | DropReason::COUNT as u64;

/// One worker's published counters, read by anyone: a block of words in a shared mapping
/// (the engine's counter file, or private memory).
pub struct SharedCounters {
    shm: Arc<SharedWords>,
    base: usize,
}

impl Default for SharedCounters {
    /// Counters in private memory (no file).
    fn default() -> Self {
        SharedCounters {
            shm: Arc::new(SharedWords::anonymous(WORDS).expect("anonymous mapping")),
            base: 0,
        }
    }
}

/// Creates the counter file for `workers` workers at `path` (zeroed, header written).
pub fn create_counter_file(path: &Path, workers: usize) -> io::Result<Arc<SharedWords>> {
    let shm = SharedWords::create(path, HEADER + workers * STRIDE)?;
    let w = shm.words();
    for (i, v) in [MAGIC, LAYOUT, workers as u64, STRIDE as u64]
        .into_iter()
        .enumerate()
    {
        w[i].store(v, Ordering::Relaxed);
    }
    Ok(Arc::new(shm))
}

/// Reads every worker's counters from a counter file, as another process sees them.
pub fn read_counter_file(path: &Path) -> io::Result<Vec<Counters>> {
    let shm = SharedWords::open(path)?;
    let w = shm.words();
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if w.len() < HEADER || w[0].load(Ordering::Relaxed) != MAGIC {
        return Err(bad("not a fulcrum counter file"));
    }
    if w[1].load(Ordering::Relaxed) != LAYOUT || w[3].load(Ordering::Relaxed) != STRIDE as u64 {
        return Err(bad("counter file of another fulcrum version"));
    }
    let workers = u16::try_from(w[2].load(Ordering::Relaxed))
        .map_err(|_| bad("counter file with more workers than a worker index holds"))?;
    if w.len() < HEADER + usize::from(workers) * STRIDE {
        return Err(bad("counter file truncated"));
    }
    let shm = Arc::new(shm);
    Ok((0..workers)
        .map(|i| SharedCounters::in_file(&shm, WorkerIdx::new(i)).read())
        .collect())
}

impl SharedCounters {
    /// Worker `worker`'s block of a counter file made by [`create_counter_file`].
    pub fn in_file(shm: &Arc<SharedWords>, worker: WorkerIdx) -> SharedCounters {
        SharedCounters {
            shm: shm.clone(),
            base: HEADER + worker.index() * STRIDE,
        }
    }

    #[inline]
    fn words(&self) -> &[AtomicU64] {
        &self.shm.words()[self.base..self.base + WORDS]
    }

    /// Called by the owning worker only (single writer): plain relaxed stores.
    pub fn publish(&self, c: &Counters) {
        for (slot, v) in self.words().iter().zip(c.to_words()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy for reporting (each counter is exact; they may be a burst
    /// apart from each other while the worker runs).
    pub fn read(&self) -> Counters {
        let words = self.words();
        let w: [u64; WORDS] = std::array::from_fn(|i| words[i].load(Ordering::Relaxed));
        Counters::from_words(&w)
    }
}

/// Backend ids a worker counts per backend; ids are dense from 1 (see `BackendIds`), a
/// higher id is forwarded but not counted.
pub const MAX_BACKEND_IDS: usize = 4096;

/// One worker's per-backend counters, indexed by backend id: packets and bytes forwarded
/// to it and new flows given to it. Counted at the pipeline's forward point, published at a
/// low rate (not per burst) into [`SharedBackendCounters`].
pub struct BackendCounters {
    counts: Box<[[u64; 3]]>,
}

impl Default for BackendCounters {
    fn default() -> Self {
        BackendCounters {
            counts: vec![[0u64; 3]; MAX_BACKEND_IDS].into_boxed_slice(),
        }
    }
}

impl BackendCounters {
    #[inline(always)]
    pub fn count(&mut self, id: BackendId, new_flow: bool, bytes: usize) {
        if let Some(c) = self.counts.get_mut(id.index()) {
            c[0] += 1;
            c[1] += bytes as u64;
            c[2] += u64::from(new_flow);
        }
    }

    /// `[packets, bytes, new flows]` of backend `id`.
    pub fn get(&self, id: BackendId) -> [u64; 3] {
        self.counts.get(id.index()).copied().unwrap_or_default()
    }
}

/// Local addresses a worker publishes its FullNAT ports in use for (in the order it met
/// them); further ones are used but not shown.
pub const MAX_LOCAL_ADDRS: usize = 64;

/// One worker's published per-backend counters, and its FullNAT local ports in use per
/// local address (published with them, at the same low rate), read by anyone.
pub struct SharedBackendCounters {
    words: Box<[AtomicU64]>,
    /// Active flows by backend id from the flow table's census: established in the low 32
    /// bits, the others in the high 32, so a reader sees the two of one pass together.
    active: Box<[AtomicU64]>,
    /// Local ports: how many addresses are published, then per address its 16 bytes (two
    /// words) and `in_use | share << 32 | v6 << 63` (one word, so a reader sees a pool's
    /// two figures of one publication together).
    local_ports: Box<[AtomicU64]>,
}

impl Default for SharedBackendCounters {
    fn default() -> Self {
        SharedBackendCounters {
            words: (0..3 * MAX_BACKEND_IDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            active: (0..MAX_BACKEND_IDS).map(|_| AtomicU64::new(0)).collect(),
            local_ports: (0..1 + 3 * MAX_LOCAL_ADDRS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl SharedBackendCounters {
    /// Called by the owning worker only: relaxed stores of the ids below `ids` (the
    /// snapshot's backend table's length: ids are never reused, so it covers every id ever
    /// given). The highest id is not tracked per packet: that cost the forward step a
    /// compare and a store (callgrind).
    pub fn publish(&self, c: &BackendCounters, ids: usize) {
        for (id, v) in c.counts.iter().enumerate().take(ids) {
            for (k, x) in v.iter().enumerate() {
                self.words[3 * id + k].store(*x, Ordering::Relaxed);
            }
        }
    }

    /// Called by the owning worker only: the flow table's last completed census
    /// ([`crate::flow::Census::completed`], `[established, other]` by backend id).
    pub fn publish_active(&self, census: &[[u32; 2]]) {
        for (slot, [est, other]) in self.active.iter().zip(census) {
            slot.store(u64::from(*est) | u64::from(*other) << 32, Ordering::Relaxed);
        }
    }

    /// `[established, other]` active flows of backend `id` as last published.
    pub fn read_active(&self, id: BackendId) -> [u64; 2] {
        let Some(w) = self.active.get(id.index()) else {
            return [0; 2];
        };
        let w = w.load(Ordering::Relaxed);
        [w & 0xffff_ffff, w >> 32]
    }

    /// Called by the owning worker only: its local ports in use per local address
    /// ([`LocalPorts::in_use`](crate::local_ports::LocalPorts::in_use)), the first
    /// [`MAX_LOCAL_ADDRS`] of them.
    pub fn publish_local_ports(&self, pools: impl Iterator<Item = InUse>) {
        let mut n = 0;
        for (i, p) in pools.take(MAX_LOCAL_ADDRS).enumerate() {
            let a = p.addr.addr();
            let w = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
            let slot = &self.local_ports[1 + 3 * i..4 + 3 * i];
            slot[0].store(w(&a[..8]), Ordering::Relaxed);
            slot[1].store(w(&a[8..]), Ordering::Relaxed);
            let figures =
                u64::from(p.in_use) | u64::from(p.share) << 32 | u64::from(p.addr.is_v6()) << 63;
            slot[2].store(figures, Ordering::Relaxed);
            n = i + 1;
        }
        self.local_ports[0].store(n as u64, Ordering::Relaxed);
    }

    /// The local ports in use per local address as last published (each pool's figures
    /// exact; pools may be a publication apart).
    pub fn read_local_ports(&self) -> Vec<InUse> {
        let n = (self.local_ports[0].load(Ordering::Relaxed) as usize).min(MAX_LOCAL_ADDRS);
        (0..n)
            .map(|i| {
                let slot = &self.local_ports[1 + 3 * i..4 + 3 * i];
                let mut a = [0u8; 16];
                a[..8].copy_from_slice(&slot[0].load(Ordering::Relaxed).to_le_bytes());
                a[8..].copy_from_slice(&slot[1].load(Ordering::Relaxed).to_le_bytes());
                let figures = slot[2].load(Ordering::Relaxed);
                InUse {
                    addr: IpKey::new(&a, figures >> 63 == 1),
                    in_use: figures as u32,
                    share: (figures >> 32) as u32 & 0x7fff_ffff,
                }
            })
            .collect()
    }

    /// `[packets, bytes, new flows]` of backend `id` as last published.
    pub fn read(&self, id: BackendId) -> [u64; 3] {
        let i = id.index();
        if i >= MAX_BACKEND_IDS {
            return [0; 3];
        }
        std::array::from_fn(|k| self.words[3 * i + k].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_read_round_trips() {
        let mut c = Counters {
            rx: 10,
            tx: 7,
            to_slowpath: 1,
            flows_active: 3,
            ..Default::default()
        };
        c.drop(DropReason::NotVip);
        c.drop(DropReason::NotVip);
        let s = SharedCounters::default();
        s.publish(&c);
        assert_eq!(s.read(), c);
        assert!(c.balanced());
        c.rx += 1;
        assert!(!c.balanced());
    }

    #[test]
    fn backend_counters_publish_and_ignore_ids_out_of_range() {
        let mut c = BackendCounters::default();
        c.count(BackendId::new(3), true, 100);
        c.count(BackendId::new(3), false, 60);
        c.count(BackendId::new(MAX_BACKEND_IDS as u32), true, 1);
        let s = SharedBackendCounters::default();
        s.publish(&c, 3);
        assert_eq!(
            s.read(BackendId::new(3)),
            [0; 3],
            "beyond the ids published"
        );
        s.publish(&c, 4);
        assert_eq!(s.read(BackendId::new(3)), [2, 160, 1]);
        assert_eq!(s.read(BackendId::new(2)), [0; 3]);
        assert_eq!(s.read(BackendId::new(MAX_BACKEND_IDS as u32)), [0; 3]);
        assert_eq!(c.get(BackendId::new(3)), [2, 160, 1]);
        s.publish_active(&[[0, 0], [7, 1 << 31], [u32::MAX, 0]]);
        assert_eq!(s.read_active(BackendId::new(1)), [7, 1 << 31]);
        assert_eq!(s.read_active(BackendId::new(2)), [u64::from(u32::MAX), 0]);
        assert_eq!(s.read_active(BackendId::new(3)), [0, 0]);
        assert_eq!(
            s.read_active(BackendId::new(MAX_BACKEND_IDS as u32)),
            [0, 0]
        );
    }

    #[test]
    fn local_ports_publish_and_read_per_address() {
        let s = SharedBackendCounters::default();
        assert!(s.read_local_ports().is_empty(), "nothing published yet");
        let v6 = IpKey::from("2001:db8::1".parse::<std::net::IpAddr>().unwrap());
        let pools = [
            InUse {
                addr: IpKey::v4([10, 66, 0, 2]),
                in_use: 12,
                share: 15872,
            },
            InUse {
                addr: v6,
                in_use: 65535,
                share: 65535,
            },
        ];
        s.publish_local_ports(pools.iter().copied());
        assert_eq!(s.read_local_ports(), pools);
        // More addresses than published: the first MAX_LOCAL_ADDRS.
        let many = (0..=MAX_LOCAL_ADDRS as u8).map(|i| InUse {
            addr: IpKey::v4([10, 0, 0, i]),
            in_use: u32::from(i),
            share: 32,
        });
        s.publish_local_ports(many);
        let read = s.read_local_ports();
        assert_eq!(read.len(), MAX_LOCAL_ADDRS);
        assert_eq!(read[63].addr, IpKey::v4([10, 0, 0, 63]));
        assert_eq!(read[63].in_use, 63);
        s.publish_local_ports(std::iter::empty());
        assert!(s.read_local_ports().is_empty());
    }

    #[test]
    fn counter_file_is_read_from_outside() {
        let path = std::env::temp_dir().join(format!("fulcrum-ctr-{}", std::process::id()));
        let shm = create_counter_file(&path, 2).unwrap();
        let (w0, w1) = (
            SharedCounters::in_file(&shm, WorkerIdx::new(0)),
            SharedCounters::in_file(&shm, WorkerIdx::new(1)),
        );
        let mut c = Counters {
            rx: 5,
            tx: 4,
            ..Default::default()
        };
        c.drop(DropReason::NotVip);
        w1.publish(&c);
        let read = read_counter_file(&path).unwrap();
        assert_eq!(read, vec![Counters::default(), c]);
        assert_eq!(w0.read(), Counters::default());
        // Blocks start on cache lines.
        assert_eq!((HEADER * 8) % 64, 0);
        assert_eq!((STRIDE * 8) % 64, 0);
        std::fs::write(&path, b"not counters").unwrap();
        assert!(read_counter_file(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }

    /// The counter file's layout and the metric names follow the list's order: pinned, so
    /// that a reordering is a visible change (and `LAYOUT` with it).
    #[test]
    fn scalar_counters_keep_their_names_and_order() {
        let names = Counters::default().fields().map(|(n, _)| n);
        assert_eq!(
            names,
            [
                "rx",
                "handoff_in",
                "tx",
                "handoff_out",
                "to_slowpath",
                "from_slowpath",
                "forwarded",
                "replies",
                "resets",
                "mtu_exceeded",
                "flows_created",
                "flows_rescheduled",
                "syn_unrecorded",
                "flows_evicted",
                "flows_expired",
                "flows_active",
                "exceptions_used",
                "exceptions_reported",
                "exceptions_report_full",
                "local_ports_exhausted",
                "local_ports_in_use",
                "flows_reopened",
            ]
        );
        assert_eq!(LAYOUT, (22 << 32) | DropReason::COUNT as u64);
    }

    #[test]
    fn add_sums_every_field() {
        let mut a = Counters {
            rx: 1,
            resets: 2,
            ..Default::default()
        };
        a.drop(DropReason::Fragment);
        let b = a;
        a.add(&b);
        assert_eq!(a.rx, 2);
        assert_eq!(a.resets, 4);
        assert_eq!(a.drops[DropReason::Fragment as usize], 2);
    }
}

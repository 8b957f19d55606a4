//! The poll loop of one worker core: receive a burst on each of its queues, run every packet
//! through the [`Pipeline`], send what it forwards, and account for every packet.
//!
//! Per burst: one atomic snapshot load, one clock read, one counter publication. Per packet:
//! no lock, no allocation, no syscall, no log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::dpdk::{Burst, Mbuf, RingConsumer, RingProducer, RxQueue, TxQueue};
use crate::exceptions::{ExceptionCell, Reports};
use crate::flow::FlowKey;
use crate::ids::{BackendId, PortIdx, WorkerIdx};
use crate::pipeline::Pipeline;
use crate::snapshot::{IpKey, SnapshotCell};
use crate::stats::{Counters, SharedBackendCounters, SharedCounters};
use crate::verdict::{DropReason, Verdict};

/// The most flow-table slots expiry visits in one loop turn that moved packets. The clock sets
/// the pace (`FlowTable::expire_paced`: the whole table once per `SWEEP_MS`, whatever the
/// packet rate); this only caps what one turn pays when the worker is behind (after a slow
/// turn), so a burst is never held up by a long sweep. Busy turns come every few
/// microseconds, so 64 keeps up with a 1M-entry table.
const EXPIRE_BUDGET: usize = 64;
/// The cap after a turn that found no packet: an idle worker (which may sleep between
/// turns, `idle_sleep_us`) still sweeps a big table once per `SWEEP_MS`, so expiry and the
/// census of active flows keep up (a 1M-entry table with turns up to 4 ms apart); with no
/// packet waiting the longer step delays nothing.
const IDLE_EXPIRE_BUDGET: usize = 4096;
/// How often a worker publishes its per-backend counters (and its local ports in use).
const BACKEND_PUBLISH_NS: u64 = 100_000_000;

/// What a worker tells the slow path about snapshots, so it can measure how long a
/// publication takes to reach the packets, and that no publication ever stalls a worker.
/// Written only by its worker, and only when a value changes (a new generation, a longer
/// turn): the worker's loop pays a compare per turn, no store.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct WorkerProgress {
    /// The last snapshot generation this worker loaded.
    pub loaded_generation: AtomicU64,
    /// When it first loaded it, in ns since the engine's epoch.
    pub loaded_at_ns: AtomicU64,
    /// The last generation under which this worker processed a packet.
    pub packet_generation: AtomicU64,
    /// When its first packet under that generation came, in ns since the epoch.
    pub packet_at_ns: AtomicU64,
    /// The longest loop turn so far (from one turn's start to the next, turns that ended in
    /// an idle sleep not counted), in ns. A reader may store 0 to measure from then on.
    pub max_turn_ns: AtomicU64,
}

impl WorkerProgress {
    /// `(generation, ns since the epoch)` of the first packet processed under the latest
    /// generation that saw one; the pair is re-read if the worker moved on meanwhile.
    pub fn first_packet(&self) -> (u64, u64) {
        loop {
            let g = self.packet_generation.load(Ordering::Acquire);
            let at = self.packet_at_ns.load(Ordering::Acquire);
            if self.packet_generation.load(Ordering::Acquire) == g {
                return (g, at);
            }
        }
    }

    /// `(generation, ns since the epoch)` of the latest generation loaded.
    pub fn loaded(&self) -> (u64, u64) {
        loop {
            let g = self.loaded_generation.load(Ordering::Acquire);
            let at = self.loaded_at_ns.load(Ordering::Acquire);
            if self.loaded_generation.load(Ordering::Acquire) == g {
                return (g, at);
            }
        }
    }
}

/// A flow-table question from the control plane to one worker (`fulcrum ctl which`): "do
/// you hold this flow, and to which backend?". Lock-free on the worker's side, which pays one
/// relaxed load per loop turn: the asker (one at a time, the slow path) writes the key and
/// bumps `request`; the worker, seeing a new request, looks the key up, writes the answer
/// and sets `answered` to the request's number.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct FlowQuery {
    key: [AtomicU64; 5],
    request: AtomicU64,
    answered: AtomicU64,
    /// Bit 63: found; bit 62: a FullNAT pair, whose reverse half's key the worker wrote
    /// back into `key`; bits 0..32: the backend id.
    answer: AtomicU64,
}

/// What a worker answered a [`FlowQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowAnswer {
    /// Its flow table holds the flow, for this backend id; for a FullNAT flow, with the
    /// balancer's side of the connection as the backend sees it (local address and port).
    Hit {
        backend: BackendId,
        local: Option<std::net::SocketAddr>,
    },
    Miss,
    /// No answer in time (the worker is stopped or stalled).
    NoAnswer,
}

impl FlowQuery {
    fn pack(k: &FlowKey) -> [u64; 5] {
        let w = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        [
            w(&k.src[..8]),
            w(&k.src[8..]),
            w(&k.dst[..8]),
            w(&k.dst[8..]),
            u64::from(k.sport)
                | u64::from(k.dport) << 16
                | u64::from(k.proto) << 32
                | u64::from(k.family) << 40,
        ]
    }

    fn unpack(w: [u64; 5]) -> FlowKey {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..8].copy_from_slice(&w[0].to_le_bytes());
        src[8..].copy_from_slice(&w[1].to_le_bytes());
        dst[..8].copy_from_slice(&w[2].to_le_bytes());
        dst[8..].copy_from_slice(&w[3].to_le_bytes());
        FlowKey {
            src,
            dst,
            sport: w[4] as u16,
            dport: (w[4] >> 16) as u16,
            proto: (w[4] >> 32) as u8,
            family: (w[4] >> 40) as u8,
        }
    }

    /// Asks and waits (polling, at most `timeout`) for the answer. One asker at a time.
    pub fn ask(&self, key: &FlowKey, timeout: Duration) -> FlowAnswer {
        for (slot, v) in self.key.iter().zip(Self::pack(key)) {
            slot.store(v, Ordering::Relaxed);
        }
        let n = self.request.load(Ordering::Relaxed) + 1;
        // Release: the key is written before the worker can see the new request number.
        self.request.store(n, Ordering::Release);
        let until = Instant::now() + timeout;
        loop {
            if self.answered.load(Ordering::Acquire) == n {
                let a = self.answer.load(Ordering::Relaxed);
                if a >> 63 == 0 {
                    return FlowAnswer::Miss;
                }
                let local = (a >> 62 & 1 == 1).then(|| {
                    let k =
                        Self::unpack(std::array::from_fn(|i| self.key[i].load(Ordering::Relaxed)));
                    let addr = IpKey::new(&k.dst, k.family == crate::flow::FAMILY_V6);
                    std::net::SocketAddr::new(addr.into(), k.dport)
                });
                return FlowAnswer::Hit {
                    backend: BackendId::new(a as u32),
                    local,
                };
            }
            if Instant::now() >= until {
                return FlowAnswer::NoAnswer;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// The worker's side: answers a pending request, if any.
    #[inline]
    pub(crate) fn serve(&self, done: &mut u64, pipe: &Pipeline) {
        let n = self.request.load(Ordering::Relaxed);
        if n == *done {
            return;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        let key = Self::unpack(std::array::from_fn(|i| self.key[i].load(Ordering::Relaxed)));
        // The flow table's own hash (as the pipeline's lookups compute it).
        let hash = crate::hash::table_hash(pipe.local_seed, &key);
        let a = match pipe.flows.lookup(&key, hash) {
            Some(idx) => {
                let mut a = 1u64 << 63 | u64::from(pipe.flows.get(idx).backend.get());
                if let Some(rkey) = pipe.fullnat_local(idx) {
                    // Written where the question was: the asker reads it after `answered`.
                    for (slot, v) in self.key.iter().zip(Self::pack(&rkey)) {
                        slot.store(v, Ordering::Relaxed);
                    }
                    a |= 1 << 62;
                }
                a
            }
            None => 0,
        };
        self.answer.store(a, Ordering::Relaxed);
        self.answered.store(n, Ordering::Release);
        *done = n;
    }
}

/// One port as a worker sees it: its own RX and TX queue.
pub struct WorkerPort {
    pub rx: RxQueue,
    pub tx: TxQueue,
}

/// Everything a worker thread owns.
pub struct WorkerSetup {
    pub index: WorkerIdx,
    pub workers: u16,
    /// CPU to pin to (`None`: leave the affinity alone).
    pub cpu: Option<usize>,
    /// By port index (config order).
    pub ports: Vec<WorkerPort>,
    /// DPDK port id -> port index.
    pub port_index: Vec<PortIdx>,
    /// Rings from the other workers (flows this worker owns).
    pub handoff_in: Vec<RingConsumer>,
    /// Rings to the other workers, by worker index (`None` at this worker's own index).
    pub handoff_out: Vec<Option<RingProducer>>,
    /// Frames for the balancer itself (`None`: no slow path listening).
    pub to_slowpath: Option<RingProducer>,
    /// Frames the slow path sends (ARP, health checks), to transmit on the port whose index
    /// the slow path wrote into the mbuf's `port` field. Only one worker drains it.
    pub from_slowpath: Option<RingConsumer>,
    pub snapshots: Arc<SnapshotCell>,
    pub counters: Arc<SharedCounters>,
    /// Per-backend counters, published every [`BACKEND_PUBLISH_NS`].
    pub backend_counters: Arc<SharedBackendCounters>,
    /// The control plane's flow-table questions.
    pub query: Arc<FlowQuery>,
    pub progress: Arc<WorkerProgress>,
    /// Exceptions learnt from peer instances, consulted on a flow-table miss.
    pub exceptions: Arc<ExceptionCell>,
    /// Where the expiry sweep reports this worker's own exceptions (`None`: sync is off,
    /// and the sweep looks for none).
    pub reports: Option<Arc<Reports>>,
    /// The engine's clock origin, shared with the slow path.
    pub epoch: Instant,
    pub stop: Arc<AtomicBool>,
    /// This worker's flow table (new, or adopted from the previous process's file).
    pub flows: crate::flow::FlowTable,
    /// The process-wide seed of flow-table and NAT-ownership hashes (see `Pipeline`).
    pub local_seed: u64,
    /// Packets per RX burst (<= 64).
    pub burst: usize,
    pub idle_sleep: Duration,
}

/// Where packets wait between the pipeline and the I/O of one loop turn.
struct Outboxes {
    tx: Vec<Burst>,
    handoff: Vec<Burst>,
    slowpath: Burst,
}

/// Runs the worker until `stop` is set; returns its final counters.
pub fn run(mut w: WorkerSetup) -> Counters {
    if let Some(cpu) = w.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    // An lcore id gives this thread a mempool cache; without one it still works, slower.
    let registered = crate::dpdk::Eal::register_thread().is_ok();

    // Taken out: `w` is borrowed whole below. The empty table left behind is a header page.
    let flows = std::mem::replace(&mut w.flows, crate::flow::FlowTable::with_capacity(0));
    let mut pipe = Pipeline::with_table(w.index, w.workers, flows, w.local_seed);
    pipe.exceptions = w.exceptions.clone();
    let mut out = Outboxes {
        tx: (0..w.ports.len()).map(|_| Burst::new()).collect(),
        handoff: (0..w.workers).map(|_| Burst::new()).collect(),
        slowpath: Burst::new(),
    };
    let mut rx: Burst = Burst::new();
    let burst = w.burst.clamp(1, 64);
    let (mut loaded_gen, mut packet_gen) = (0u64, 0u64);
    let (mut turn_start, mut slept) = (0u64, true);
    let (mut backends_published, mut queries_done) = (0u64, 0u64);

    while !w.stop.load(Ordering::Relaxed) {
        let snap = w.snapshots.load();
        let now = w.epoch.elapsed();
        let now_ns = now.as_nanos() as u64;
        pipe.now_ms = now.as_millis() as u32;
        // A load of a line only this worker writes: it stays in this core's cache.
        let turn = now_ns - turn_start;
        if !slept && turn > w.progress.max_turn_ns.load(Ordering::Relaxed) {
            w.progress.max_turn_ns.store(turn, Ordering::Relaxed);
        }
        turn_start = now_ns;
        if snap.generation != loaded_gen {
            loaded_gen = snap.generation;
            w.progress.loaded_at_ns.store(now_ns, Ordering::Release);
            w.progress
                .loaded_generation
                .store(loaded_gen, Ordering::Release);
        }
        let mut got = 0usize;

        for p in 0..w.ports.len() {
            let n = w.ports[p].rx.rx_burst_max(&mut rx, burst);
            if n == 0 {
                continue;
            }
            got += n;
            pipe.counters.rx += n as u64;
            // A frame larger than one mbuf (`dpdk.mbuf_data_room`) arrives as a chain, and
            // the pipeline reads one segment: drop chains here, under their own reason.
            if !rx.iter().all(Mbuf::is_contiguous) {
                let chained = rx.retain(Mbuf::is_contiguous);
                pipe.counters.drops[DropReason::MultiSegment as usize] += chained as u64;
            }
            let n = rx.len();
            if n == 0 {
                continue;
            }
            let verdicts = &mut [Verdict::SlowPath; 64][..n];
            let rx_port = PortIdx::new(p as u8);
            pipe.process_burst(&snap, rx_port, rx.as_mut_slice(), verdicts);
            // The common case, a whole burst forwarded out of one port (or answered: a reply
            // leaves by the port it came in on) with nothing queued for that port yet: the
            // received burst is the one to send, as it is.
            let out_port = |v: &Verdict| match *v {
                Verdict::Forward { port } => Some(port),
                Verdict::Reply => Some(rx_port),
                _ => None,
            };
            if let Some(to) = verdicts.first().and_then(out_port)
                && out.tx.get(to.index()).is_some_and(|b| b.is_empty())
                && verdicts.iter().all(|v| out_port(v) == Some(to))
            {
                let sent = w.ports[to.index()].tx.tx_burst(&mut rx);
                pipe.counters.tx += sent as u64;
                pipe.counters.drops[DropReason::TxFull as usize] += (n - sent) as u64;
                continue;
            }
            for (m, &v) in rx.drain().zip(verdicts.iter()) {
                dispatch(&mut w, &mut pipe.counters, &mut out, rx_port, v, m);
            }
        }
        for r in 0..w.handoff_in.len() {
            let n = w.handoff_in[r].dequeue_burst(&mut rx);
            if n == 0 {
                continue;
            }
            got += n;
            pipe.counters.handoff_in += n as u64;
            for mut m in rx.drain() {
                let p = w
                    .port_index
                    .get(usize::from(m.port()))
                    .copied()
                    .unwrap_or_default();
                let v = pipe.process(&snap, p, &mut m);
                dispatch(&mut w, &mut pipe.counters, &mut out, p, v, m);
            }
        }
        if let Some(ring) = w.from_slowpath.as_mut() {
            let n = ring.dequeue_burst(&mut rx);
            if n > 0 {
                got += n;
                pipe.counters.from_slowpath += n as u64;
                for m in rx.drain() {
                    let p = usize::from(m.port()).min(out.tx.len() - 1);
                    if let Err(m) = out.tx[p].push(m) {
                        flush(&mut w, &mut pipe.counters, &mut out);
                        let _ = out.tx[p].push(m);
                    }
                }
            }
        }
        flush(&mut w, &mut pipe.counters, &mut out);
        if got > 0 && snap.generation != packet_gen {
            packet_gen = snap.generation;
            w.progress.packet_at_ns.store(now_ns, Ordering::Release);
            w.progress
                .packet_generation
                .store(packet_gen, Ordering::Release);
        }

        let budget = if got == 0 {
            IDLE_EXPIRE_BUDGET
        } else {
            EXPIRE_BUDGET
        };
        let exceptions = w.reports.as_ref().map(|r| (&**snap, &**r));
        pipe.counters.flows_expired += pipe.expire(budget, &snap.timeouts, exceptions) as u64;
        pipe.counters.flows_active = pipe.flows.len() as u64;
        let ids = snap.backends.len();
        drop(snap);
        w.counters.publish(&pipe.counters);
        if now_ns - backends_published >= BACKEND_PUBLISH_NS {
            backends_published = now_ns;
            w.backend_counters.publish(&pipe.per_backend, ids);
            w.backend_counters
                .publish_active(pipe.flows.census().completed());
            w.backend_counters
                .publish_local_ports(pipe.local_ports().in_use());
        }
        w.query.serve(&mut queries_done, &pipe);

        slept = got == 0 && !w.idle_sleep.is_zero();
        if slept {
            std::thread::sleep(w.idle_sleep);
        }
    }
    // Whatever is still queued for others is dropped and counted, so the books balance.
    flush(&mut w, &mut pipe.counters, &mut out);
    w.counters.publish(&pipe.counters);
    w.backend_counters
        .publish(&pipe.per_backend, crate::stats::MAX_BACKEND_IDS);
    w.backend_counters
        .publish_active(pipe.flows.census().completed());
    w.backend_counters
        .publish_local_ports(pipe.local_ports().in_use());
    if registered {
        crate::dpdk::Eal::unregister_thread();
    }
    pipe.counters
}

#[inline(always)]
fn dispatch(
    w: &mut WorkerSetup,
    c: &mut Counters,
    out: &mut Outboxes,
    rx_port: PortIdx,
    v: Verdict,
    m: Mbuf,
) {
    let queue = match v {
        Verdict::Forward { port } => &mut out.tx[port.index()],
        Verdict::Reply => &mut out.tx[rx_port.index()],
        Verdict::Handoff { worker } => &mut out.handoff[worker.index()],
        Verdict::SlowPath => &mut out.slowpath,
        Verdict::Drop(r) => {
            c.drop(r);
            return; // `m` is freed here
        }
    };
    if let Err(m) = queue.push(m) {
        // A full outbox goes out now, then takes the packet.
        flush(w, c, out);
        let queue = match v {
            Verdict::Forward { port } => &mut out.tx[port.index()],
            Verdict::Reply => &mut out.tx[rx_port.index()],
            Verdict::Handoff { worker } => &mut out.handoff[worker.index()],
            _ => &mut out.slowpath,
        };
        if queue.push(m).is_err() {
            unreachable!("an outbox is empty after a flush");
        }
    }
}

fn flush(w: &mut WorkerSetup, c: &mut Counters, out: &mut Outboxes) {
    for (p, b) in out.tx.iter_mut().enumerate() {
        let n = b.len();
        if n == 0 {
            continue;
        }
        let sent = w.ports[p].tx.tx_burst(b);
        c.tx += sent as u64;
        c.drops[DropReason::TxFull as usize] += (n - sent) as u64;
    }
    for (i, b) in out.handoff.iter_mut().enumerate() {
        let n = b.len();
        if n == 0 {
            continue;
        }
        let sent = match w.handoff_out.get_mut(i).and_then(|r| r.as_mut()) {
            Some(r) => r.enqueue_burst(b),
            None => 0,
        };
        c.handoff_out += sent as u64;
        c.drops[DropReason::HandoffFull as usize] += (n - sent) as u64;
        b.clear();
    }
    let n = out.slowpath.len();
    if n > 0 {
        let sent = match w.to_slowpath.as_mut() {
            Some(r) => r.enqueue_burst(&mut out.slowpath),
            None => 0,
        };
        c.to_slowpath += sent as u64;
        c.drops[DropReason::SlowPathFull as usize] += (n - sent) as u64;
        out.slowpath.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker that sleeps between idle turns (here a turn every millisecond) still
    /// completes a census pass of a default-sized (1M) table once per sweep period; the
    /// busy budget alone would take 16 times longer.
    #[test]
    fn idle_turns_keep_the_sweep_on_time() {
        use crate::flow::{Flow, FlowState, SWEEP_MS, Timeouts};
        let t = Timeouts::default();
        let passes_in = |budget: usize, ms: u32| {
            let mut ft = crate::flow::FlowTable::with_capacity(1 << 20);
            let k = FlowKey::v4([10, 0, 0, 1], [10, 0, 0, 100], 40000, 80, 6);
            ft.insert(
                k,
                1,
                Flow::new(
                    FlowState::TcpEstablished,
                    crate::ids::ServiceIdx::new(0),
                    BackendId::new(3),
                ),
                0,
                &t,
            )
            .unwrap();
            for now in 1..=ms {
                ft.expire_paced(now, budget, &t);
            }
            (ft.census().passes(), ft.census().get(BackendId::new(3)))
        };
        assert_eq!(passes_in(IDLE_EXPIRE_BUDGET, SWEEP_MS + 10), (1, [1, 0]));
        assert_eq!(passes_in(EXPIRE_BUDGET, SWEEP_MS + 10), (0, [0, 0]));
    }

    #[test]
    fn flow_query_packs_keys_losslessly() {
        let k = FlowKey::v4([10, 0, 0, 1], [10, 0, 0, 100], 40000, 80, 6);
        assert!(FlowQuery::unpack(FlowQuery::pack(&k)) == k);
        let k = FlowKey::v6([0xfe; 16], [1; 16], 1, 65535, 17);
        assert!(FlowQuery::unpack(FlowQuery::pack(&k)) == k);
    }

    #[test]
    fn flow_query_is_answered_by_the_serving_side() {
        let q = Arc::new(FlowQuery::default());
        let pipe = Pipeline::new(WorkerIdx::new(0), 1, 1024, 7);
        let k = FlowKey::v4([10, 0, 0, 1], [10, 0, 0, 100], 40000, 80, 6);
        let stop = Arc::new(AtomicBool::new(false));
        let (q2, s2) = (q.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            let mut done = 0;
            while !s2.load(Ordering::Relaxed) {
                q2.serve(&mut done, &pipe);
                std::thread::yield_now();
            }
            pipe.flows.len()
        });
        assert_eq!(q.ask(&k, Duration::from_secs(5)), FlowAnswer::Miss);
        assert_eq!(q.ask(&k, Duration::from_secs(5)), FlowAnswer::Miss);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(t.join().unwrap(), 0);
        assert_eq!(q.ask(&k, Duration::from_millis(10)), FlowAnswer::NoAnswer);
    }
}

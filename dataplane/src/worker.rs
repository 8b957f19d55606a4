//! The poll loop of one worker core: receive a burst on each of its queues, run every packet
//! through the [`Pipeline`], send what it forwards, and account for every packet.
//!
//! Per burst: one atomic snapshot load, one clock read, one counter publication. Per packet:
//! no lock, no allocation, no syscall, no log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::dpdk::{Burst, Mbuf, RingConsumer, RingProducer, RxQueue, TxQueue};
use crate::pipeline::Pipeline;
use crate::snapshot::SnapshotCell;
use crate::stats::{Counters, SharedCounters};
use crate::verdict::{DropReason, Verdict};

/// How many flow-table slots the clock hand ages per loop turn: enough to sweep a 1M-entry
/// table every few seconds at low load, cheap enough to vanish at high load.
const EXPIRE_BUDGET: usize = 64;

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

/// One port as a worker sees it: its own RX and TX queue.
pub struct WorkerPort {
    pub rx: RxQueue,
    pub tx: TxQueue,
}

/// Everything a worker thread owns.
pub struct WorkerSetup {
    pub index: u16,
    pub workers: u16,
    /// CPU to pin to (`None`: leave the affinity alone).
    pub cpu: Option<usize>,
    /// By port index (config order).
    pub ports: Vec<WorkerPort>,
    /// DPDK port id -> port index.
    pub port_index: Vec<u8>,
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
    pub progress: Arc<WorkerProgress>,
    /// The engine's clock origin, shared with the slow path.
    pub epoch: Instant,
    pub stop: Arc<AtomicBool>,
    pub flow_capacity: usize,
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

    let mut pipe = Pipeline::new(w.index, w.workers, w.flow_capacity, w.local_seed);
    let mut out = Outboxes {
        tx: (0..w.ports.len()).map(|_| Burst::new()).collect(),
        handoff: (0..w.workers).map(|_| Burst::new()).collect(),
        slowpath: Burst::new(),
    };
    let mut rx: Burst = Burst::new();
    let burst = w.burst.clamp(1, 64);
    let (mut loaded_gen, mut packet_gen) = (0u64, 0u64);
    let (mut turn_start, mut slept) = (0u64, true);

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
            for mut m in rx.drain() {
                let v = pipe.process(&snap, p as u8, &mut m);
                dispatch(&mut w, &mut pipe.counters, &mut out, p as u8, v, m);
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
                    .unwrap_or(0);
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

        pipe.counters.flows_expired +=
            pipe.flows
                .expire_step(pipe.now_ms, EXPIRE_BUDGET, &snap.timeouts) as u64;
        pipe.counters.flows_active = pipe.flows.len() as u64;
        drop(snap);
        w.counters.publish(&pipe.counters);

        slept = got == 0 && !w.idle_sleep.is_zero();
        if slept {
            std::thread::sleep(w.idle_sleep);
        }
    }
    // Whatever is still queued for others is dropped and counted, so the books balance.
    flush(&mut w, &mut pipe.counters, &mut out);
    w.counters.publish(&pipe.counters);
    if registered {
        crate::dpdk::Eal::unregister_thread();
    }
    pipe.counters
}

#[inline]
fn dispatch(
    w: &mut WorkerSetup,
    c: &mut Counters,
    out: &mut Outboxes,
    rx_port: u8,
    v: Verdict,
    m: Mbuf,
) {
    let queue = match v {
        Verdict::Forward { port } => &mut out.tx[usize::from(port)],
        Verdict::Reply => &mut out.tx[usize::from(rx_port)],
        Verdict::Handoff { worker } => &mut out.handoff[usize::from(worker)],
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
            Verdict::Forward { port } => &mut out.tx[usize::from(port)],
            Verdict::Reply => &mut out.tx[usize::from(rx_port)],
            Verdict::Handoff { worker } => &mut out.handoff[usize::from(worker)],
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

//! Starting and stopping the data plane: EAL, the mbuf pool, the ports with one queue pair
//! per worker, the worker-to-worker rings, and the pinned worker threads; installing the
//! snapshots the control plane builds (the first one before any worker starts).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use conf::Config;

use crate::dpdk::{self, DpdkError, Eal, MbufRing, Mempool, Port, PortSetup, RingProducer};
use crate::exceptions::{ExceptionCell, ExceptionTable, Reports};
use crate::ids::{PortIdx, WorkerIdx};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::stats::{Counters, SharedBackendCounters, SharedCounters};
use crate::worker::{self, FlowQuery, WorkerPort, WorkerProgress, WorkerSetup};

mod report;
mod storage;

pub use report::{PortReport, Report};
pub use storage::{FlowStore, FlowTablesReport, flow_fingerprint};
use storage::{counter_dir, counter_file_path, open_flow_tables, remove_stale_counter_files};

/// Slots in each worker-to-worker ring.
const HANDOFF_RING: u32 = 4096;
/// Exceptions a worker's sweep may have waiting for the slow path (instance sync): the slow
/// path drains them every turn; a sweep pass reports each exception once a second.
const REPORTS_PER_WORKER: usize = 65536;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Dpdk(#[from] DpdkError),
    #[error("port {port} ({device}): {source}")]
    Port {
        port: String,
        device: String,
        #[source]
        source: DpdkError,
    },
    #[error("{0}")]
    Cpu(#[from] crate::cpus::CpuError),
    #[error("{0}")]
    Setup(String),
}

/// The running data plane.
pub struct Engine {
    threads: Vec<JoinHandle<Counters>>,
    stop: Arc<AtomicBool>,
    started: std::time::Instant,
    /// The clock origin the workers' [`WorkerProgress`] times count from.
    epoch: std::time::Instant,
    snapshots: Arc<SnapshotCell>,
    counters: Vec<Arc<SharedCounters>>,
    /// The shared-memory file holding `counters` (see `stats::read_counter_file`); removed
    /// when the engine goes.
    counters_file: Option<std::path::PathBuf>,
    /// Each worker's per-backend counters (published every 100 ms).
    backend_counters: Vec<Arc<SharedBackendCounters>>,
    /// Each worker's flow-table question box (`ctl which`).
    queries: Vec<Arc<FlowQuery>>,
    /// What each worker last loaded, and when it first forwarded by it.
    progress: Vec<Arc<WorkerProgress>>,
    /// The receiving end of each worker's ring to the slow path (until the slow path takes
    /// them).
    slowpath_rings: Vec<dpdk::RingConsumer>,
    /// The slow path's frames to send, drained by worker 0 (until the slow path takes it).
    slowpath_tx: Option<RingProducer>,
    /// Each port's exception path (until the slow path takes them).
    kernel: Vec<Option<KernelIo>>,
    /// Snapshots replaced but maybe still held by a worker: freed here, by the slow path,
    /// once nobody else holds them, so a worker never pays for freeing Maglev tables.
    retired: Vec<Arc<Snapshot>>,
    /// Exceptions learnt from peer instances, as the workers read them (instance sync).
    exceptions: Arc<ExceptionCell>,
    /// Exception tables replaced but maybe still held by a worker (as `retired`).
    retired_exceptions: Vec<Arc<ExceptionTable>>,
    /// Each worker's reports of its own exceptions (empty when sync is off).
    reports: Vec<Arc<Reports>>,
    /// Counter files of dead processes removed at start.
    stale_counter_files: Vec<std::path::PathBuf>,
    /// Where the flow tables came from.
    flow_tables: FlowTablesReport,
    /// DPDK port id -> port index.
    port_index: Vec<PortIdx>,
    ports: Vec<Port>,
    devices: Vec<String>,
    names: Vec<String>,
    /// Per port: why the device refused its configured MTU, if it did.
    mtu_refused: Vec<Option<String>>,
    mempool: Mempool,
    // Dropped last: EAL cleanup runs once every pool, port and ring is gone.
    _eal: Eal,
}

/// EAL arguments for a config: its own, its devices, and the main lcore when none is given.
pub fn eal_args(cfg: &Config, devices: &[String]) -> Vec<String> {
    let mut args = cfg.dpdk.eal_args.clone();
    let has_lcores = args
        .iter()
        .any(|a| a == "-l" || a == "-c" || a.starts_with("--lcores") || a.starts_with("-l"));
    if !has_lcores {
        // EAL pins the main thread to its lcore; the slow path runs there.
        args.push("-l".into());
        args.push(cfg.dpdk.slowpath_cpu.unwrap_or(0).to_string());
    }
    args.extend(dpdk::vdev_eal_args(devices));
    for device in kernel_devices(cfg).into_iter().flatten() {
        args.push("--vdev".into());
        args.push(device);
    }
    args
}

/// The `net_tap` device of each port's exception path (config order; `None` without one).
/// DPDK's TAP driver creates the kernel interface; its name is the configured one.
fn kernel_devices(cfg: &Config) -> Vec<Option<String>> {
    cfg.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.kernel_interface
                .as_ref()
                .map(|iface| format!("{}{i},iface={iface}", KERNEL_DEVICE_PREFIX))
        })
        .collect()
}

/// Name prefix of the exception path's TAP devices (a name DPDK's `net_tap` driver takes,
/// unlikely to be a data port's own).
const KERNEL_DEVICE_PREFIX: &str = "net_tap_fulcrum_x";

/// Descriptors of each exception-path queue: the kernel's own traffic (BGP, BFD, SSH), not
/// VIP traffic.
const KERNEL_DESCRIPTORS: u16 = 256;

/// The exception path of one port: the queues of the TAP device whose kernel interface
/// carries the port's MAC and own addresses. Polled by the slow path only.
pub struct KernelIo {
    /// The kernel interface's name.
    pub interface: String,
    /// Frames the kernel sent on the interface, to leave by the data port.
    pub rx: dpdk::RxQueue,
    /// Frames for the kernel.
    pub tx: dpdk::TxQueue,
}

/// What the slow path takes over from the engine: the frames the workers hand it, and the
/// ring its own frames leave by.
pub struct SlowpathIo {
    /// The receiving end of each worker's ring to the slow path.
    pub rings: Vec<dpdk::RingConsumer>,
    /// Frames to send, drained by worker 0; the mbuf's `port` field names the port index to
    /// send on. `None` once taken.
    pub tx: Option<RingProducer>,
    /// Each port's exception path (config order), if it has one.
    pub kernel: Vec<Option<KernelIo>>,
}

impl Engine {
    /// Starts the data plane for `cfg`. `devices` replaces the device string of each port
    /// (same order as `cfg.ports`); pass the config's own to use them. `first` builds the
    /// snapshot the workers start with, given the MAC each port's device reports (config
    /// order); it runs once the ports are open and before any worker starts.
    pub fn start(
        cfg: &Config,
        devices: Vec<String>,
        first: impl FnOnce(&[[u8; 6]]) -> Snapshot,
    ) -> Result<Engine, EngineError> {
        Self::start_with(cfg, devices, &FlowStore::Memory, |macs, _| first(macs))
    }

    /// [`start`](Self::start) with the flow tables in `store`: adopted from its files when
    /// they are compatible with `cfg`, else new there. `first` is also told what became of
    /// the tables (adopted flows want their backends up from the first packet).
    pub fn start_with(
        cfg: &Config,
        devices: Vec<String>,
        store: &FlowStore,
        first: impl FnOnce(&[[u8; 6]], &FlowTablesReport) -> Snapshot,
    ) -> Result<Engine, EngineError> {
        if devices.len() != cfg.ports.len() {
            return Err(EngineError::Setup(format!(
                "{} device(s) given for {} port(s)",
                devices.len(),
                cfg.ports.len()
            )));
        }
        let workers = cfg.dpdk.workers.len();
        // Before EAL, which pins this thread to one CPU (hiding the process's CPU set) and
        // reports a missing device only as its own failure.
        check_cpus(cfg)?;
        for (p, device) in cfg.ports.iter().zip(&devices) {
            dpdk::check_device(device, &cfg.dpdk.eal_args).map_err(|source| EngineError::Port {
                port: p.name.clone(),
                device: device.clone(),
                source,
            })?;
        }
        // The workers' clock starts here; adopted entries are rebased onto it. Before EAL: a
        // table file another process holds stops the start before any device is touched.
        let epoch = std::time::Instant::now();
        let (tables, local_seed, flow_tables) = open_flow_tables(cfg, store)?;
        let mut tables = tables.into_iter();
        let eal = Eal::init(&eal_args(cfg, &devices)).map_err(|e| match e {
            // What EAL says when it cannot create a device given to it (e.g. a vdev whose
            // driver does not exist): name the candidates.
            DpdkError::Call { errno, .. } if errno == libc::ENODEV => EngineError::Setup(format!(
                "{e}: EAL could not create one of the ports' devices ({}); its log above \
                 names which (an unknown driver in net_<driver>N, a bad device argument)",
                devices.join("; ")
            )),
            e => e.into(),
        })?;
        let mempool = Mempool::new(
            "fulcrum_pkts",
            cfg.dpdk.mbufs,
            cfg.dpdk.mbuf_cache,
            // The configured room is for frame bytes; DPDK's counts the headroom too (the
            // config's range keeps the sum within u16).
            cfg.dpdk.mbuf_data_room + Mempool::HEADROOM,
        )?;

        let mut ports = Vec::with_capacity(cfg.ports.len());
        let mut mtu_refused = Vec::with_capacity(cfg.ports.len());
        for (p, device) in cfg.ports.iter().zip(&devices) {
            let setup = PortSetup {
                name: dpdk::device_name(device).to_string(),
                rx_queues: workers as u16,
                tx_queues: workers as u16,
                rx_descriptors: cfg.dpdk.rx_descriptors,
                tx_descriptors: cfg.dpdk.tx_descriptors,
                mempool: mempool.clone(),
                symmetric_rss: true,
                mac: p.mac.map(|m| m.0),
            };
            let port = Port::open(setup).map_err(|source| EngineError::Port {
                port: p.name.clone(),
                device: device.clone(),
                source,
            })?;
            // The device must take in every frame the link brings: its MTU is raised to the
            // port's when lower (jumbo frames), never lowered. A NIC set below the link's MTU
            // drops bigger frames on receipt, before the pipeline could answer them with
            // "fragmentation needed": a path-MTU black hole. What the balancer sends, the
            // pipeline and the slow path keep within the port's mtu themselves. A device that
            // refuses (a virtual one may) keeps its own; the log says so.
            let refused = match port.mtu() {
                Ok(now) if now >= p.mtu => None,
                _ => port.set_mtu(p.mtu).err().map(|e| e.to_string()),
            };
            mtu_refused.push(refused);
            ports.push(port);
        }
        let mut kernel = Vec::with_capacity(cfg.ports.len());
        for ((p, device), port) in cfg.ports.iter().zip(kernel_devices(cfg)).zip(&ports) {
            let Some(device) = device else {
                kernel.push(None);
                continue;
            };
            let setup = PortSetup {
                name: dpdk::device_name(&device).to_string(),
                rx_queues: 1,
                tx_queues: 1,
                rx_descriptors: KERNEL_DESCRIPTORS,
                tx_descriptors: KERNEL_DESCRIPTORS,
                mempool: mempool.clone(),
                symmetric_rss: false,
                // The kernel interface answers to and sends from the data port's MAC.
                mac: Some(port.mac()),
            };
            let tap = Port::open(setup).map_err(|source| EngineError::Port {
                port: p.name.clone(),
                device: device.clone(),
                source,
            })?;
            kernel.push(Some(KernelIo {
                interface: p.kernel_interface.clone().unwrap_or_default(),
                rx: tap.rx_queue(0)?,
                tx: tap.tx_queue(0)?,
            }));
        }
        let max_id = ports.iter().map(|p| p.port_id()).max().unwrap_or(0);
        let mut port_index = vec![PortIdx::default(); usize::from(max_id) + 1];
        for (i, p) in ports.iter().enumerate() {
            port_index[usize::from(p.port_id())] = PortIdx::new(i as u8);
        }

        let port_macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac()).collect();
        let snapshots = Arc::new(SnapshotCell::new(first(&port_macs, &flow_tables)));
        let stop = Arc::new(AtomicBool::new(false));

        // handoff[i][j]: worker i -> worker j.
        let mut producers: Vec<Vec<Option<RingProducer>>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut consumers: Vec<Vec<dpdk::RingConsumer>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (i, out) in producers.iter_mut().enumerate() {
            for (j, inbox) in consumers.iter_mut().enumerate() {
                if i == j {
                    out.push(None);
                    continue;
                }
                let (tx, rx) = MbufRing::new(&format!("fl_ho_{i}_{j}"), HANDOFF_RING)?.split();
                out.push(Some(tx));
                inbox.push(rx);
            }
        }
        let mut to_slow = Vec::with_capacity(workers);
        let mut slowpath_rings = Vec::with_capacity(workers);
        for i in 0..workers {
            let (tx, rx) = MbufRing::new(&format!("fl_slow_{i}"), 1024)?.split();
            to_slow.push(Some(tx));
            slowpath_rings.push(rx);
        }

        let (slow_tx, slow_tx_rx) = MbufRing::new("fl_slow_tx", 1024)?.split();
        let mut slow_tx_rx = Some(slow_tx_rx);

        let mut counters = Vec::with_capacity(workers);
        // Readable by other processes when a file can be made; private memory otherwise.
        let stale_counter_files = remove_stale_counter_files(&counter_dir());
        let counters_file = counter_file_path();
        let shm = crate::stats::create_counter_file(&counters_file, workers).ok();
        let mut backend_counters = Vec::with_capacity(workers);
        let mut queries = Vec::with_capacity(workers);
        let exceptions = Arc::new(ExceptionCell::default());
        let mut reports = Vec::new();
        let mut progress = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        let mut producers = producers.into_iter();
        let mut consumers = consumers.into_iter();
        for (i, cpu) in cfg.dpdk.workers.iter().enumerate() {
            // Its queue id on every port.
            let index = WorkerIdx::new(i as u16);
            let mut wports = Vec::with_capacity(ports.len());
            for p in &ports {
                wports.push(WorkerPort {
                    rx: p.rx_queue(index.get())?,
                    tx: p.tx_queue(index.get())?,
                });
            }
            let shared = Arc::new(match &shm {
                Some(shm) => SharedCounters::in_file(shm, index),
                None => SharedCounters::default(),
            });
            counters.push(shared.clone());
            let per_backend = Arc::new(SharedBackendCounters::default());
            backend_counters.push(per_backend.clone());
            let query = Arc::new(FlowQuery::default());
            queries.push(query.clone());
            let prog = Arc::new(WorkerProgress::default());
            progress.push(prog.clone());
            let setup = WorkerSetup {
                index,
                workers: workers as u16,
                // Pinned by the thread itself below, where a failure stops the start.
                cpu: None,
                ports: wports,
                port_index: port_index.clone(),
                handoff_in: consumers.next().expect("one per worker"),
                handoff_out: producers.next().expect("one per worker"),
                to_slowpath: to_slow[i].take(),
                from_slowpath: if i == 0 { slow_tx_rx.take() } else { None },
                snapshots: snapshots.clone(),
                counters: shared,
                backend_counters: per_backend,
                query,
                progress: prog,
                exceptions: exceptions.clone(),
                reports: cfg.global.sync.as_ref().map(|_| {
                    let r = Arc::new(Reports::new(REPORTS_PER_WORKER));
                    reports.push(r.clone());
                    r
                }),
                epoch,
                stop: stop.clone(),
                flows: tables.next().expect("one table per worker"),
                local_seed,
                burst: cfg.dpdk.burst,
                idle_sleep: Duration::from_micros(u64::from(cfg.dpdk.idle_sleep_us)),
            };
            let cpu = *cpu;
            let (pinned_tx, pinned) = std::sync::mpsc::sync_channel(1);
            let spawned = std::thread::Builder::new()
                .name(format!("fulcrum-w{i}"))
                .spawn(move || {
                    let ok = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    let _ = pinned_tx.send(ok);
                    if ok {
                        worker::run(setup)
                    } else {
                        Counters::default()
                    }
                });
            let failure = match spawned {
                Err(e) => Some(EngineError::Setup(format!("spawning worker {i}: {e}"))),
                Ok(t) => {
                    threads.push(t);
                    (!pinned.recv().unwrap_or(false)).then(|| {
                        EngineError::Cpu(crate::cpus::CpuError {
                            role: format!("worker {i}"),
                            cpu,
                            why: "cannot be pinned to (sched_setaffinity refused it)".into(),
                        })
                    })
                }
            };
            if let Some(e) = failure {
                // The workers already running give their queues back before the ports close.
                stop.store(true, Ordering::Relaxed);
                for t in threads.drain(..) {
                    let _ = t.join();
                }
                if shm.is_some() {
                    let _ = std::fs::remove_file(&counters_file);
                }
                return Err(e);
            }
        }

        Ok(Engine {
            threads,
            stop,
            started: std::time::Instant::now(),
            epoch,
            snapshots,
            counters,
            counters_file: shm.is_some().then_some(counters_file),
            stale_counter_files,
            flow_tables,
            backend_counters,
            queries,
            progress,
            retired: Vec::new(),
            exceptions,
            retired_exceptions: Vec::new(),
            reports,
            port_index,
            slowpath_rings,
            slowpath_tx: Some(slow_tx),
            kernel,
            names: cfg.ports.iter().map(|p| p.name.clone()).collect(),
            mtu_refused,
            ports,
            devices,
            mempool,
            _eal: eal,
        })
    }

    /// Swaps in a snapshot the control plane built (its generation is the caller's
    /// business). The one it replaces is kept until no worker holds it, then freed here, so
    /// a worker never pays for freeing Maglev tables.
    /// Publishes the exceptions learnt from peers; the table replaced is freed here, on the
    /// slow path, once no worker holds it.
    pub fn install_exceptions(&mut self, t: ExceptionTable) {
        let old = self.exceptions.swap(t);
        self.retired_exceptions.push(old);
        self.retired_exceptions.retain(|t| Arc::strong_count(t) > 1);
    }

    /// The exceptions the workers consult now.
    pub fn exceptions(&self) -> Arc<ExceptionTable> {
        self.exceptions.load_full()
    }

    /// Each worker's queue of its own exceptions (empty when sync is off).
    pub fn reports(&self) -> &[Arc<Reports>] {
        &self.reports
    }

    pub fn install(&mut self, s: Snapshot) {
        let old = self.snapshots.swap(Arc::new(s));
        self.retired.push(old);
        self.retired.retain(|s| Arc::strong_count(s) > 1);
    }

    /// The snapshot in force (a counted reference: hold it as long as needed).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.load_full()
    }

    /// The clock origin of the workers' progress times ([`WorkerProgress`]).
    pub fn epoch(&self) -> std::time::Instant {
        self.epoch
    }

    /// What each worker last loaded, and when it first forwarded by it (worker order).
    pub fn progress(&self) -> &[Arc<WorkerProgress>] {
        &self.progress
    }

    /// Each worker's flow-table question box (`ctl which`), worker order.
    pub fn queries(&self) -> &[Arc<FlowQuery>] {
        &self.queries
    }

    /// The shared-memory file other processes read the workers' counters from (see
    /// `stats::read_counter_file`), if one could be made.
    pub fn counters_file(&self) -> Option<&Path> {
        self.counters_file.as_deref()
    }

    /// Hands the slow path its rings (once: later calls get none; frames still in rings
    /// the engine keeps go back to the pool when it stops).
    pub fn take_slowpath_io(&mut self) -> SlowpathIo {
        SlowpathIo {
            rings: std::mem::take(&mut self.slowpath_rings),
            tx: self.slowpath_tx.take(),
            kernel: std::mem::take(&mut self.kernel),
        }
    }

    /// The index (config order) of the port with this DPDK port id, as received frames
    /// carry it.
    pub fn port_of(&self, port_id: u16) -> Option<PortIdx> {
        let i = *self.port_index.get(usize::from(port_id))?;
        (self.ports.get(i.index())?.port_id() == port_id).then_some(i)
    }

    /// The mbuf pool (for leak checks and the slow path's own frames).
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// What became of the per-worker flow-table files at start: adopted, or started empty and
    /// why.
    pub fn flow_tables(&self) -> &FlowTablesReport {
        &self.flow_tables
    }

    /// Counter files of processes that are gone, removed at start.
    pub fn stale_counter_files_removed(&self) -> &[std::path::PathBuf] {
        &self.stale_counter_files
    }

    /// Stops the workers, waits for them, and reports their final counters.
    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let workers = self
            .threads
            .drain(..)
            .map(|t| t.join().unwrap_or_default())
            .collect();
        // Frames still waiting for the slow path go back to the pool.
        for r in &mut self.slowpath_rings {
            let mut b: dpdk::Burst = dpdk::Burst::new();
            while r.dequeue_burst(&mut b) > 0 {
                b.clear();
            }
        }
        let elapsed = self.started.elapsed();
        let ports = self.port_reports();
        Report {
            workers,
            ports,
            elapsed,
            mempool_in_use: self.mempool.in_use(),
            mempool_capacity: self.mempool.capacity(),
        }
    }
}

/// Whether the worker and slow-path CPUs can be pinned to (see [`crate::cpus`]). Where the
/// kernel does not say, the pinning of each worker is the check.
fn check_cpus(cfg: &Config) -> Result<(), crate::cpus::CpuError> {
    let Some(sets) = crate::cpus::CpuSets::read() else {
        return Ok(());
    };
    for (i, cpu) in cfg.dpdk.workers.iter().enumerate() {
        sets.check(&format!("worker {i}"), *cpu)?;
    }
    if let Some(cpu) = cfg.dpdk.slowpath_cpu {
        sets.check("slow-path", cpu)?;
    }
    Ok(())
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(p) = &self.counters_file {
            let _ = std::fs::remove_file(p);
        }
    }
}

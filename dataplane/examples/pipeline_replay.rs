//! Runs `Pipeline::process_burst` over the frames of a pcap, with no DPDK and no I/O: the pure
//! per-packet cost of the data plane, for `perf/callgrind.sh` (instructions per packet, by
//! stage) and as a quick wall-clock figure.
//!
//! ```text
//! cargo run --release -p dataplane --example pipeline_replay -- \
//!     --config perf.toml --pcap established.pcap [--warmup 1] [--passes 3]
//! ```
//!
//! Every pass copies each burst of 32 frames into reused buffers (as `net_pcap` copies a
//! preloaded frame into a fresh mbuf) and processes it on port 0, as the worker does;
//! `--warmup` passes come first (they fill
//! the flow table), then `--passes` measured passes. Only the measured calls go through
//! `measure_burst`, so `valgrind --tool=callgrind --toggle-collect='*measure_*'` counts
//! exactly them. Prints one JSON line: packets, verdicts, counters, ns per packet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use dataplane::frame::Frame;
use dataplane::ids::{PortIdx, WorkerIdx};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::verdict::Verdict;
use slowpath::publish::{BackendIds, Dynamic, build};

/// An mbuf-like buffer: 128 bytes of headroom, 2048 of data room, reused for every frame.
struct BenchFrame {
    buf: Box<[u8; 2176]>,
    start: usize,
    end: usize,
}

impl BenchFrame {
    const HEADROOM: usize = 128;

    fn new() -> Self {
        BenchFrame {
            buf: Box::new([0; 2176]),
            start: Self::HEADROOM,
            end: Self::HEADROOM,
        }
    }

    /// Replaces the content with `bytes` (what the RX path does).
    #[inline(always)]
    fn load(&mut self, bytes: &[u8]) {
        self.start = Self::HEADROOM;
        self.end = Self::HEADROOM + bytes.len();
        self.buf[self.start..self.end].copy_from_slice(bytes);
    }
}

impl Frame for BenchFrame {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        if len < self.end - self.start {
            self.end = self.start + len;
        }
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    #[inline]
    fn append(&mut self, n: usize) -> bool {
        if self.end + n > self.buf.len() {
            return false;
        }
        self.end += n;
        true
    }
}

/// The warm-up passes' bursts (not collected by callgrind). Its body differs from
/// `measure_burst`'s so the linker cannot fold the two into one symbol.
#[inline(never)]
fn warm_burst(p: &mut Pipeline, s: &Snapshot, b: &mut [BenchFrame], v: &mut [Verdict]) {
    p.process_burst(s, std::hint::black_box(PortIdx::new(0)), b, v)
}

/// The measured passes' bursts: callgrind collects exactly these.
#[inline(never)]
fn measure_burst(p: &mut Pipeline, s: &Snapshot, b: &mut [BenchFrame], v: &mut [Verdict]) {
    p.process_burst(s, PortIdx::new(0), b, v)
}

/// Frames per burst, as the worker's default.
const BURST: usize = 32;

fn read_pcap(path: &PathBuf) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = pcap_file::pcap::PcapReader::new(std::io::BufReader::new(f))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames = Vec::new();
    while let Some(p) = r.next_packet() {
        frames.push(p.expect("pcap packet").data.into_owned());
    }
    frames
}

fn main() {
    let mut config = None;
    let mut pcap = None;
    let (mut warmup, mut passes) = (1usize, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--config" => config = Some(PathBuf::from(val())),
            "--pcap" => pcap = Some(PathBuf::from(val())),
            "--warmup" => warmup = val().parse().expect("--warmup N"),
            "--passes" => passes = val().parse().expect("--passes N"),
            _ => {
                panic!("usage: pipeline_replay --config CFG --pcap FILE [--warmup N] [--passes N]")
            }
        }
    }
    let config = config.expect("--config CFG");
    let cfg = conf::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let dynamic = Dynamic {
        port_macs: vec![[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]],
        ..Default::default()
    };
    let snap = build(&cfg, &mut BackendIds::new(), &dynamic, 1);
    let frames = read_pcap(&pcap.expect("--pcap FILE"));
    let mut pipe = Pipeline::new(
        WorkerIdx::new(0),
        1,
        cfg.global.flow_table_capacity as usize,
        1,
    );
    // One burst of mbuf-like buffers, reused: each frame is copied in (as net_pcap copies a
    // preloaded frame into a fresh mbuf), then the burst is processed,
    // as the worker does.
    let mut burst: Vec<BenchFrame> = (0..BURST).map(|_| BenchFrame::new()).collect();
    let mut verdicts_buf = [Verdict::SlowPath; BURST];

    let mut now = 1_000u32;
    for _ in 0..warmup {
        for chunk in frames.chunks(BURST) {
            now += 1; // the worker's clock moves once per burst; ~32 packets per ms here
            pipe.now_ms = now;
            let b = &mut burst[..chunk.len()];
            for (f, bytes) in b.iter_mut().zip(chunk) {
                f.load(bytes);
            }
            let v = &mut verdicts_buf[..b.len()];
            warm_burst(&mut pipe, &snap, b, v);
            for &v in v.iter() {
                pipe.account(v);
            }
        }
    }
    let before = pipe.counters;
    // A few distinct verdicts: a linear scan, no allocation in the loop.
    let mut verdicts: Vec<(Verdict, u64)> = Vec::new();
    let mut pass_ns = Vec::with_capacity(passes);
    for _ in 0..passes {
        let mut busy = std::time::Duration::ZERO;
        for chunk in frames.chunks(BURST) {
            now += 1;
            pipe.now_ms = now;
            let b = &mut burst[..chunk.len()];
            let t0 = Instant::now();
            for (f, bytes) in b.iter_mut().zip(chunk) {
                f.load(bytes);
            }
            let v = &mut verdicts_buf[..b.len()];
            measure_burst(&mut pipe, &snap, b, v);
            for &v in v.iter() {
                pipe.account(v);
                match verdicts.iter_mut().find(|(w, _)| *w == v) {
                    Some((_, n)) => *n += 1,
                    None => verdicts.push((v, 1)),
                }
            }
            busy += t0.elapsed();
        }
        pass_ns.push(busy.as_nanos() as f64 / frames.len().max(1) as f64);
    }
    let n = (frames.len() * passes) as u64;
    let c = pipe.counters;
    let out = serde_json::json!({
        "frames": frames.len(),
        "measured_packets": n,
        "verdicts": verdicts.iter().map(|&(v, n)| (v.to_string(), n)).collect::<BTreeMap<_, _>>(),
        "flows_created": c.flows_created - before.flows_created,
        "flows_evicted": c.flows_evicted - before.flows_evicted,
        "flows_active": pipe.flows.len(),
        "flow_table_bytes": pipe.flows.memory_bytes(),
        // Wall clock, copies into the buffers included: the best pass is the least disturbed.
        "ns_per_packet_best": pass_ns.iter().copied().fold(f64::INFINITY, f64::min),
        "ns_per_packet_mean": pass_ns.iter().sum::<f64>() / pass_ns.len().max(1) as f64,
    });
    println!("{out}");
}

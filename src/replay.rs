//! `fulcrum replay`: the real DPDK path over a pcap. Each port becomes a `net_pcap` device
//! with one RX file per worker (the input is dealt round-robin, so a flow's packets cross
//! workers as they would with a NIC that cannot steer) and one TX file per worker; the run
//! ends when every input frame is accounted for, and the TX files are merged into OUT.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conf::ConfigError;
use dataplane::engine::{Engine, EngineError};
use pcap_file::PcapError;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use slowpath::publish::{self, BackendIds, Dynamic};

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The input or output file could not be opened or created.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A pcap file (the input, or a TX file of the run) could not be read.
    #[error("{}: {source}", path.display())]
    Pcap { path: PathBuf, source: PcapError },
    /// A file in the scratch directory could not be created.
    #[error("{0}")]
    Scratch(std::io::Error),
    /// A pcap file (one per worker queue, or the output) could not be written.
    #[error("{0}")]
    Write(PcapError),
    #[error("cannot create a scratch directory")]
    NoScratchDir,
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error(
        "replay: input not consumed within {timeout} s ({received} of {total} frames received)"
    )]
    Timeout {
        timeout: u64,
        received: u64,
        total: u64,
    },
}

fn pcap_at(path: &Path) -> impl FnOnce(PcapError) -> ReplayError + '_ {
    move |source| ReplayError::Pcap {
        path: path.to_path_buf(),
        source,
    }
}

pub fn replay(config: &Path, input: &Path, output: &Path, timeout: u64) -> Result<(), ReplayError> {
    let cfg = conf::load(config)?;
    let workers = cfg.dpdk.workers.len();
    let tmp = TempDir::new()?;

    // Deal the input to one file per worker queue.
    let rd = File::open(input).map_err(|source| ReplayError::File {
        path: input.to_path_buf(),
        source,
    })?;
    let mut reader = PcapReader::new(rd).map_err(pcap_at(input))?;
    let header = reader.header();
    let mut writers = Vec::with_capacity(workers);
    for q in 0..workers {
        let f =
            File::create(tmp.path.join(format!("in_0_{q}.pcap"))).map_err(ReplayError::Scratch)?;
        writers.push(PcapWriter::with_header(f, header).map_err(ReplayError::Write)?);
    }
    let mut total = 0u64;
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.map_err(pcap_at(input))?;
        writers[(total as usize) % workers]
            .write_packet(&pkt)
            .map_err(ReplayError::Write)?;
        total += 1;
    }
    drop(writers);
    for i in 1..cfg.ports.len() {
        for q in 0..workers {
            let f = File::create(tmp.path.join(format!("in_{i}_{q}.pcap")))
                .map_err(ReplayError::Scratch)?;
            PcapWriter::with_header(f, header).map_err(ReplayError::Write)?;
        }
    }

    let devices: Vec<String> = (0..cfg.ports.len())
        .map(|i| {
            let mut d = format!("net_pcap{i}");
            for q in 0..workers {
                d += &format!(
                    ",rx_pcap={}",
                    tmp.path.join(format!("in_{i}_{q}.pcap")).display()
                );
            }
            for q in 0..workers {
                d += &format!(
                    ",tx_pcap={}",
                    tmp.path.join(format!("out_{i}_{q}.pcap")).display()
                );
            }
            d
        })
        .collect();

    // Offline: no check runs, so every backend counts as healthy.
    let engine = Engine::start(&cfg, devices, |port_macs| {
        let dynamic = Dynamic {
            port_macs: port_macs.to_vec(),
            ..Dynamic::default()
        };
        publish::build(&cfg, &mut BackendIds::new(), &dynamic, 1)
    })?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let t = engine.totals();
        // Done when every frame was received and every handed-over frame processed.
        if t.rx >= total && t.handoff_in == t.handoff_out && t.balanced() {
            break;
        }
        if Instant::now() > deadline {
            let report = engine.stop();
            crate::report::print(&report, true);
            return Err(ReplayError::Timeout {
                timeout,
                received: t.rx,
                total,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = engine.stop(); // closes the ports: the TX files are complete after this

    let out = File::create(output).map_err(|source| ReplayError::File {
        path: output.to_path_buf(),
        source,
    })?;
    let mut w = PcapWriter::with_header(out, header).map_err(ReplayError::Write)?;
    for i in 0..cfg.ports.len() {
        for q in 0..workers {
            let path = tmp.path.join(format!("out_{i}_{q}.pcap"));
            let Ok(f) = File::open(&path) else { continue };
            let Ok(mut r) = PcapReader::new(f) else {
                continue;
            };
            while let Some(pkt) = r.next_packet() {
                let pkt = pkt.map_err(pcap_at(&path))?;
                let pkt = PcapPacket::new(pkt.timestamp, pkt.orig_len, &pkt.data);
                w.write_packet(&pkt).map_err(ReplayError::Write)?;
            }
        }
    }
    let mut v = crate::report::to_json(&report);
    v.as_object_mut()
        .expect("object")
        .insert("input_frames".into(), serde_json::json!(total));
    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    Ok(())
}

/// A scratch directory removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<TempDir, ReplayError> {
        let base = std::env::temp_dir();
        for n in 0..1000u32 {
            let path = base.join(format!("fulcrum-replay-{}-{n}", std::process::id()));
            if std::fs::create_dir(&path).is_ok() {
                return Ok(TempDir { path });
            }
        }
        Err(ReplayError::NoScratchDir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

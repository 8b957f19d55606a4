//! `fulcrum replay`: the real DPDK path over a pcap. Each port becomes a `net_pcap` device
//! with one RX file per worker (the input is dealt round-robin, so a flow's packets cross
//! workers as they would with a NIC that cannot steer) and one TX file per worker; the run
//! ends when every input frame is accounted for, and the TX files are merged into OUT.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dataplane::engine::Engine;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use slowpath::publish::{self, BackendIds, Dynamic};

pub fn replay(config: &Path, input: &Path, output: &Path, timeout: u64) -> Result<(), String> {
    let cfg = conf::load(config).map_err(|e| e.to_string())?;
    let workers = cfg.dpdk.workers.len();
    let tmp = TempDir::new()?;

    // Deal the input to one file per worker queue.
    let rd = File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut reader = PcapReader::new(rd).map_err(|e| format!("{}: {e}", input.display()))?;
    let header = reader.header();
    let mut writers = Vec::with_capacity(workers);
    for q in 0..workers {
        let f = File::create(tmp.path.join(format!("in_0_{q}.pcap"))).map_err(|e| e.to_string())?;
        writers.push(PcapWriter::with_header(f, header).map_err(|e| e.to_string())?);
    }
    let mut total = 0u64;
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.map_err(|e| format!("{}: {e}", input.display()))?;
        writers[(total as usize) % workers]
            .write_packet(&pkt)
            .map_err(|e| e.to_string())?;
        total += 1;
    }
    drop(writers);
    for i in 1..cfg.ports.len() {
        for q in 0..workers {
            let f = File::create(tmp.path.join(format!("in_{i}_{q}.pcap")))
                .map_err(|e| e.to_string())?;
            PcapWriter::with_header(f, header).map_err(|e| e.to_string())?;
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
    })
    .map_err(|e| e.to_string())?;
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
            return Err(format!(
                "replay: input not consumed within {timeout} s ({} of {total} frames received)",
                t.rx
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = engine.stop(); // closes the ports: the TX files are complete after this

    let out = File::create(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let mut w = PcapWriter::with_header(out, header).map_err(|e| e.to_string())?;
    for i in 0..cfg.ports.len() {
        for q in 0..workers {
            let path = tmp.path.join(format!("out_{i}_{q}.pcap"));
            let Ok(f) = File::open(&path) else { continue };
            let Ok(mut r) = PcapReader::new(f) else {
                continue;
            };
            while let Some(pkt) = r.next_packet() {
                let pkt = pkt.map_err(|e| format!("{}: {e}", path.display()))?;
                let pkt = PcapPacket::new(pkt.timestamp, pkt.orig_len, &pkt.data);
                w.write_packet(&pkt).map_err(|e| e.to_string())?;
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
    fn new() -> Result<TempDir, String> {
        let base = std::env::temp_dir();
        for n in 0..1000u32 {
            let path = base.join(format!("fulcrum-replay-{}-{n}", std::process::id()));
            if std::fs::create_dir(&path).is_ok() {
                return Ok(TempDir { path });
            }
        }
        Err("cannot create a scratch directory".into())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

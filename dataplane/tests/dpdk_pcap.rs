//! Offline replay through `net_pcap`: 100 frames of assorted sizes, written to in.pcap by this
//! test (Ethernet/IPv4/UDP-shaped, see `testkit::traffic::test_frame`), are received on one RX
//! queue, sent back out unchanged, and must appear byte for byte, in order, in out.pcap once
//! the port is closed (the driver flushes its dumper on close).

use std::fs::File;
use std::time::{Duration, Instant};

use dataplane::dpdk::{Burst, Mempool, Port, PortSetup};
use dataplane::frame::Frame;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use testkit::traffic::test_frame;
use testkit::{Scratch, TestEal};

const FRAMES: u32 = 100;

#[test]
fn pcap_replay_comes_back_byte_for_byte() {
    let dir = Scratch::new("pcap");
    let input = dir.join("in.pcap");
    let output = dir.join("out.pcap");

    let sizes = [60usize, 64, 128, 333, 512, 1000, 1514];
    let frames: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| test_frame(i, sizes[i as usize % sizes.len()]))
        .collect();
    let mut writer = PcapWriter::new(File::create(&input).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_micros(1_000_000 + i as u64);
        writer
            .write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
    drop(writer);

    let device = format!(
        "net_pcap0,rx_pcap={},tx_pcap={}",
        input.display(),
        output.display()
    );
    let _eal = TestEal::start("pcap", &[&device]);
    let pool = Mempool::new("pcap_pool", 1023, 0, Mempool::DEFAULT_DATA_ROOM).unwrap();
    let port = Port::open(PortSetup::new(&device, pool.clone())).unwrap();
    assert_eq!(port.name(), "net_pcap0");
    let mut rx = port.rx_queue(0).unwrap();
    let mut tx = port.tx_queue(0).unwrap();

    // The driver reads the file as RX is polled; stop at the expected count or a timeout.
    let mut received: Vec<Vec<u8>> = Vec::new();
    let mut sent = 0;
    let mut burst: Burst<32> = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.len() < FRAMES as usize && Instant::now() < deadline {
        if rx.rx_burst(&mut burst) == 0 {
            std::thread::yield_now();
            continue;
        }
        received.extend(burst.iter().map(|m| m.data().to_vec()));
        assert!(burst.iter().all(|m| m.is_contiguous()));
        let n = burst.len();
        assert_eq!(tx.tx_burst(&mut burst), n, "pcap TX takes everything");
        sent += n;
    }
    assert_eq!(received.len(), FRAMES as usize, "timed out");
    assert_eq!(rx.rx_burst(&mut burst), 0, "the file holds no more");
    assert_eq!(received, frames);

    let stats = port.stats().unwrap();
    assert_eq!(stats.ipackets, u64::from(FRAMES));
    assert_eq!(stats.opackets, u64::from(FRAMES));
    assert_eq!(
        stats.obytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(sent, FRAMES as usize);

    drop((rx, tx, port));
    assert_eq!(pool.in_use(), 0);

    let mut reader = PcapReader::new(File::open(&output).unwrap()).unwrap();
    let mut replayed = Vec::new();
    while let Some(packet) = reader.next_packet() {
        replayed.push(packet.unwrap().data.into_owned());
    }
    assert_eq!(replayed, frames);
}

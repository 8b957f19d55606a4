//! Ports over `net_ring` (a loopback: what one TX queue sends, its RX queue receives) and
//! `net_null` (endless zero-filled RX, TX that drops): bursts both ways, counters, the
//! one-handle-per-queue rule, and every mbuf back in the pool once the ports are closed.

use dataplane::dpdk::{Burst, DpdkError, Mbuf, Mempool, Port, PortSetup};
use dataplane::frame::Frame;
use testkit::TestEal;
use testkit::traffic::test_frame;

#[test]
fn ring_and_null_ports_move_bursts_without_leaking() {
    let _eal = TestEal::start("port", &["net_ring0", "net_null0"]);
    let pool = Mempool::new("port_pool", 4095, 32, Mempool::DEFAULT_DATA_ROOM).unwrap();

    assert!(matches!(
        Port::open(PortSetup::new("net_nosuch0", pool.clone())),
        Err(DpdkError::DeviceNotFound { .. })
    ));

    // --- net_ring: loopback ---
    let ring = Port::open(PortSetup::new("net_ring0", pool.clone())).unwrap();
    assert_eq!(ring.name(), "net_ring0");
    assert_eq!(ring.rss_hf(), 0, "virtual devices do not hash");
    assert!(matches!(
        Port::open(PortSetup::new("net_ring0", pool.clone())),
        Err(DpdkError::PortInUse { .. })
    ));
    let link = ring.link().unwrap();
    assert!(link.up, "{link:?}");
    let mut rx = ring.rx_queue(0).unwrap();
    assert!(matches!(
        ring.rx_queue(0),
        Err(DpdkError::QueueInUse { .. })
    ));
    assert!(matches!(
        ring.rx_queue(1),
        Err(DpdkError::InvalidArgument { .. })
    ));
    let mut tx = ring.tx_queue(0).unwrap();

    let frames: Vec<Vec<u8>> = (0..32)
        .map(|i| test_frame(i, 60 + i as usize * 40))
        .collect();
    let mut out: Burst = Burst::new();
    for f in &frames {
        out.push(Mbuf::from_slice(&pool, f).unwrap()).unwrap();
    }
    assert_eq!(pool.in_use(), 32);
    assert_eq!(tx.tx_burst(&mut out), 32);
    assert!(out.is_empty());

    let mut back: Burst = Burst::new();
    assert_eq!(rx.rx_burst(&mut back), 32);
    for (m, f) in back.iter().zip(&frames) {
        assert_eq!(m.data(), &f[..]);
        assert_eq!(m.pkt_len() as usize, f.len());
        assert!(m.is_contiguous());
    }
    let stats = ring.stats().unwrap();
    assert_eq!(stats.opackets, 32);
    assert_eq!(stats.ipackets, 32);
    assert_eq!(stats.oerrors, 0);
    drop(back);
    assert_eq!(pool.in_use(), 0);

    // --- net_null: endless RX of 64-byte zero frames, TX that frees ---
    let null = Port::open(PortSetup::new("net_null0", pool.clone())).unwrap();
    let mut null_rx = null.rx_queue(0).unwrap();
    let mut null_tx = null.tx_queue(0).unwrap();
    let mut burst: Burst<64> = Burst::new();
    assert_eq!(null_rx.rx_burst(&mut burst), 64);
    assert!(burst.is_full());
    assert_eq!(
        null_rx.rx_burst(&mut burst),
        0,
        "a full burst takes nothing"
    );
    assert!(
        burst
            .iter()
            .all(|m| m.len() == 64 && m.port() == null.port_id())
    );
    assert_eq!(pool.in_use(), 64);
    assert_eq!(null_tx.tx_burst(&mut burst), 64);
    assert_eq!(pool.in_use(), 0, "net_null frees what it sends");
    let stats = null.stats().unwrap();
    assert_eq!(stats.ipackets, 64);
    assert_eq!(stats.opackets, 64);
    let xstats = null.xstats().unwrap();
    let good = xstats.iter().find(|(name, _)| name == "rx_good_packets");
    assert_eq!(good.map(|(_, v)| *v), Some(64), "{xstats:?}");
    null.reset_stats().unwrap();
    assert_eq!(null.stats().unwrap().ipackets, 0);

    // Queue handles keep the port open: with the Port dropped, its queues still work.
    drop(ring);
    let mut one: Burst<4> = Burst::new();
    one.push(Mbuf::from_slice(&pool, &frames[0]).unwrap())
        .unwrap();
    assert_eq!(tx.tx_burst(&mut one), 1);
    assert_eq!(rx.rx_burst(&mut one), 1);
    assert_eq!(one.as_slice()[0].data(), &frames[0][..]);
    drop(one);
    drop((rx, tx));
    drop((null_rx, null_tx, null));
    assert_eq!(pool.in_use(), 0);
    assert_eq!(pool.available(), pool.capacity());
}

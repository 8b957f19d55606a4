//! TX into a queue that is full: the driver takes a prefix of each burst, and `tx_burst` frees
//! exactly the rest, checked against the pool's count. `net_ring` is a loopback whose ring
//! fills up when nothing receives, which makes "full" deterministic.

use dataplane::dpdk::{Burst, Mbuf, Mempool, Port, PortSetup};
use testkit::TestEal;
use testkit::traffic::test_frame;

#[test]
fn tx_frees_exactly_what_the_queue_did_not_take() {
    let _eal = TestEal::start("txoverflow", &["net_ring0"]);
    let pool = Mempool::new("overflow_pool", 8191, 0, Mempool::DEFAULT_DATA_ROOM).unwrap();
    let port = Port::open(PortSetup::new("net_ring0", pool.clone())).unwrap();
    let mut tx = port.tx_queue(0).unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let frame = test_frame(7, 60);

    // Fill the ring until a burst is only partly taken, then push one more full burst.
    let (mut offered, mut sent, mut partial) = (0usize, 0usize, 0);
    let mut burst: Burst<64> = Burst::new();
    while partial < 2 {
        while !burst.is_full() {
            burst
                .push(Mbuf::from_slice(&pool, &frame).unwrap())
                .unwrap();
        }
        offered += burst.len();
        let n = tx.tx_burst(&mut burst);
        assert!(burst.is_empty(), "tx_burst always empties the burst");
        sent += n;
        if n < 64 {
            partial += 1;
        }
        // Everything sent sits in the ring; everything else must be back in the pool.
        assert_eq!(pool.in_use() as usize, sent, "after offering {offered}");
        assert!(offered < 8191, "the ring never filled up");
    }
    let stats = port.stats().unwrap();
    assert_eq!(stats.opackets as usize, sent);
    // net_ring does not count refused packets in oerrors (22.11): the caller's own count of
    // `offered - sent`, which tx_burst's return value gives, is the only record of them.
    assert!(offered > sent);

    // Drain the loopback: exactly what was sent comes back.
    let mut received = 0;
    while rx.rx_burst(&mut burst) > 0 {
        received += burst.len();
        burst.clear();
    }
    assert_eq!(received, sent);
    assert_eq!(pool.in_use(), 0);
}

//! An SPSC mbuf ring between two registered threads: every mbuf arrives once, in order, with
//! its bytes; a full ring leaves the rest in the producer's burst; mbufs still queued when the
//! ring goes are freed.

use std::time::{Duration, Instant};

use dataplane::dpdk::{Burst, Eal, Mbuf, MbufRing, Mempool};
use dataplane::frame::Frame;
use testkit::TestEal;

const PACKETS: u32 = 20_000;

#[test]
fn spsc_ring_hands_mbufs_across_threads() {
    let _eal = TestEal::start("ring", &[]);
    let pool = Mempool::new("ring_pool", 2047, 32, Mempool::DEFAULT_DATA_ROOM).unwrap();

    // Single thread first: exact capacity, and what does not fit stays in the burst.
    let mut ring = MbufRing::new("ring_small", 5).unwrap();
    assert_eq!(ring.capacity(), 5);
    let mut burst: Burst<8> = Burst::new();
    for i in 0..8u8 {
        burst
            .push(Mbuf::from_slice(&pool, &[i; 60]).unwrap())
            .unwrap();
    }
    assert_eq!(ring.enqueue_burst(&mut burst), 5);
    assert_eq!((ring.len(), burst.len()), (5, 3));
    assert_eq!(
        burst.as_slice()[0].data()[0],
        5,
        "the rest moved to the front, in order"
    );
    let mut out: Burst<4> = Burst::new();
    assert_eq!(ring.dequeue_burst(&mut out), 4);
    assert_eq!(
        out.iter().map(|m| m.data()[0]).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    out.clear();
    assert_eq!(ring.enqueue_burst(&mut burst), 3);
    assert_eq!(ring.len(), 4);
    drop(ring); // frees the four still queued
    assert_eq!(pool.in_use(), 0);

    // Two threads, each with its own lcore (and so its own mempool cache).
    let (mut producer, mut consumer) = MbufRing::new("ring_spsc", 128).unwrap().split();
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        let pool_p = pool.clone();
        s.spawn(move || {
            let lcore = Eal::register_thread().unwrap();
            assert_eq!(Eal::lcore_id(), Some(lcore));
            let mut burst: Burst<32> = Burst::new();
            let mut seq = 0u32;
            while seq < PACKETS || !burst.is_empty() {
                while seq < PACKETS && !burst.is_full() {
                    let m = Mbuf::from_slice(&pool_p, &seq.to_be_bytes().repeat(16)).unwrap();
                    burst.push(m).unwrap();
                    seq += 1;
                }
                if producer.enqueue_burst(&mut burst) == 0 {
                    assert!(Instant::now() < deadline, "consumer stalled");
                    std::thread::yield_now();
                }
            }
            Eal::unregister_thread();
            assert_eq!(Eal::lcore_id(), None);
        });
        s.spawn(move || {
            let lcore = Eal::register_thread().unwrap();
            assert_ne!(lcore, 0, "a registered thread gets a fresh lcore");
            let mut burst: Burst<64> = Burst::new();
            let mut expect = 0u32;
            while expect < PACKETS {
                if consumer.dequeue_burst(&mut burst) == 0 {
                    assert!(Instant::now() < deadline, "producer stalled");
                    std::thread::yield_now();
                    continue;
                }
                for m in burst.drain() {
                    assert_eq!(m.data(), &expect.to_be_bytes().repeat(16)[..]);
                    expect += 1;
                }
            }
            assert!(consumer.is_empty());
            Eal::unregister_thread();
        });
    });
    assert_eq!(pool.in_use(), 0);
}

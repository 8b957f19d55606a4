//! Mbufs from a real pool: the `Frame` contract (prepend into headroom, append into tailroom,
//! truncate, both lengths kept in step), `Burst` ownership (push/pop/drain/clear free exactly
//! once), pool exhaustion, and the EAL lifecycle (one init per process, nothing after drop).

use dataplane::dpdk::{Burst, DpdkError, Eal, Mbuf, MbufError, Mempool};
use dataplane::frame::Frame;
use testkit::TestEal;

#[test]
fn mbufs_frames_bursts_and_eal_lifecycle() {
    let mut eal = TestEal::start("mbuf", &[]);
    assert!(Eal::is_running());
    assert!(matches!(
        Eal::init(&[]),
        Err(DpdkError::EalAlreadyInitialized)
    ));
    assert_eq!(
        Eal::lcore_id(),
        Some(0),
        "the initialising thread is the main lcore"
    );
    assert_eq!(Eal::register_thread().unwrap(), 0, "already an lcore");
    assert!(Eal::tsc_hz() > 0);
    let t0 = Eal::rdtsc();
    assert!(Eal::rdtsc() > t0);

    let pool = Mempool::new("mbuf_pool", 255, 0, Mempool::DEFAULT_DATA_ROOM).unwrap();
    assert_eq!(pool.capacity(), 255);
    assert!(matches!(
        Mempool::new("mbuf_pool", 255, 0, Mempool::DEFAULT_DATA_ROOM),
        Err(DpdkError::Call {
            op: "rte_pktmbuf_pool_create",
            ..
        })
    ));

    // --- Frame on a real mbuf ---
    let payload: Vec<u8> = (1..=60).collect();
    let mut m = Mbuf::from_slice(&pool, &payload).unwrap();
    let headroom = usize::from(Mempool::HEADROOM);
    let room = usize::from(Mempool::DEFAULT_DATA_ROOM) - headroom;
    assert_eq!((m.data(), m.len(), m.pkt_len()), (&payload[..], 60, 60));
    assert_eq!((m.headroom(), m.tailroom()), (headroom, room - 60));
    assert_eq!(m.rss_hash(), None);

    assert!(m.prepend(14));
    assert_eq!(
        (m.len(), m.pkt_len(), m.headroom()),
        (74, 74, headroom - 14)
    );
    assert_eq!(&m.data()[14..], &payload[..]);
    m.data_mut()[..14].fill(0xee);
    assert!(!m.prepend(headroom - 13), "more than the headroom");
    assert_eq!(m.len(), 74, "a refused prepend changes nothing");

    let tail = m.tailroom();
    assert!(!m.append(tail + 1), "more than the tailroom");
    assert!(m.append(tail));
    assert_eq!(
        (m.len(), m.pkt_len() as usize, m.tailroom()),
        (74 + tail, 74 + tail, 0)
    );
    assert!(!m.append(1));

    m.truncate(20);
    assert_eq!((m.len(), m.pkt_len()), (20, 20));
    assert_eq!(&m.data()[..14], &[0xee; 14]);
    assert_eq!(&m.data()[14..], &payload[..6]);
    m.truncate(100);
    assert_eq!(m.len(), 20, "truncate never grows");
    assert_eq!(m.as_ref(), m.data());
    drop(m);

    assert_eq!(
        Mbuf::from_slice(&pool, &vec![0; room + 1]).unwrap_err(),
        MbufError::TooLong
    );
    assert_eq!(Mbuf::from_slice(&pool, &vec![0; room]).unwrap().len(), room);
    assert_eq!(pool.in_use(), 0, "a refused from_slice frees its mbuf");

    // --- Burst ownership ---
    let mut burst: Burst<8> = Burst::new();
    for i in 0..8u8 {
        burst
            .push(Mbuf::from_slice(&pool, &[i; 60]).unwrap())
            .unwrap();
    }
    let extra = Mbuf::from_slice(&pool, &[9; 60]).unwrap();
    let extra = burst
        .push(extra)
        .expect_err("a full burst hands the mbuf back");
    assert_eq!(extra.data()[0], 9);
    drop(extra);
    for m in &mut burst {
        m.data_mut()[1] = 0xaa;
    }
    assert_eq!(burst.pop().unwrap().data()[..2], [7, 0xaa]);
    assert_eq!(pool.in_use(), 7);
    let mut drain = burst.drain();
    assert_eq!(drain.len(), 7);
    assert_eq!(drain.next().unwrap().data()[0], 0);
    assert_eq!(drain.next().unwrap().data()[0], 1);
    drop(drain); // frees the five it did not yield
    assert!(burst.is_empty());
    assert_eq!(pool.in_use(), 0);
    for _ in 0..5 {
        burst.push(Mbuf::alloc(&pool).unwrap()).unwrap();
    }
    burst.clear();
    assert_eq!(pool.in_use(), 0);
    // retain keeps the chosen ones in order and frees the rest.
    for i in 0..8u8 {
        burst
            .push(Mbuf::from_slice(&pool, &[i; 60]).unwrap())
            .unwrap();
    }
    assert_eq!(burst.retain(|m| m.data()[0] % 3 != 0), 3);
    let kept: Vec<u8> = burst.iter().map(|m| m.data()[0]).collect();
    assert_eq!(kept, [1, 2, 4, 5, 7]);
    assert_eq!(pool.in_use(), 5);
    assert_eq!(burst.retain(|_| true), 0);
    assert_eq!(burst.len(), 5);
    assert_eq!(burst.retain(|_| false), 5);
    assert!(burst.is_empty());
    assert_eq!(pool.in_use(), 0);
    burst.push(Mbuf::alloc(&pool).unwrap()).unwrap();
    drop(burst);
    assert_eq!(pool.in_use(), 0);

    // --- exhaustion ---
    let all: Vec<Mbuf> = std::iter::from_fn(|| Mbuf::alloc(&pool)).collect();
    assert_eq!(all.len(), 255);
    assert_eq!(
        Mbuf::from_slice(&pool, &[0; 60]).unwrap_err(),
        MbufError::PoolEmpty
    );
    drop(all);
    assert_eq!(pool.available(), 255);

    // --- a pool dropped with an mbuf out is leaked, not freed under it ---
    let small = Mempool::new("leaky_pool", 15, 0, Mempool::DEFAULT_DATA_ROOM).unwrap();
    let mut survivor = Mbuf::from_slice(&small, &[5; 60]).unwrap();
    drop(small);
    survivor.data_mut()[0] = 6;
    assert_eq!(survivor.data()[0], 6);
    drop(survivor);
    drop(pool);

    // --- after EAL: everything refuses ---
    eal.stop();
    assert!(!Eal::is_running());
    assert!(matches!(
        Mempool::new("late_pool", 63, 0, 2176),
        Err(DpdkError::EalNotRunning)
    ));
    assert!(matches!(
        Eal::init(&[]),
        Err(DpdkError::EalAlreadyInitialized)
    ));
}

use super::*;
use crate::hash::flow_hash;

pub(super) const SEED: u64 = 0xf10;

pub(super) const T: Timeouts = Timeouts {
    tcp_syn_ms: 1_000,
    tcp_established_ms: 100_000,
    tcp_closing_ms: 1_000,
    udp_ms: 10_000,
};

pub(super) fn key(i: u32) -> FlowKey {
    let b = i.to_be_bytes();
    FlowKey::v4(
        [10, b[1], b[2], b[3]],
        [192, 0, 2, 1],
        1024 + (i >> 24) as u16,
        80,
        6,
    )
}

pub(super) fn ins(
    ft: &mut FlowTable,
    k: FlowKey,
    state: FlowState,
    backend: u32,
    now: u32,
) -> Inserted {
    ft.insert(
        k,
        flow_hash(SEED, &k),
        Flow::new(state, ServiceIdx::new(0), BackendId::new(backend)),
        now,
        &T,
    )
    .unwrap()
}

pub(super) fn find(ft: &FlowTable, k: &FlowKey) -> Option<FlowSlot> {
    ft.lookup(k, flow_hash(SEED, k))
}

/// Everything that must hold between operations.
pub(super) fn check_invariants(ft: &FlowTable) {
    let live = ft.slots.iter().filter(|s| s.is_live()).count();
    assert_eq!(live, ft.len());
    assert!(ft.len() <= ft.capacity());
    for (i, s) in ft.slots.iter().enumerate() {
        // Its lane in the bucket's head says whether it is taken, and its tag; the head's
        // copy of its age and state is its own.
        let lane = ft.heads[i / WAYS].lanes[i % WAYS];
        assert!(ft.head_matches(i), "slot {i}: its head's copy is stale");
        let want = if s.is_live() {
            TAG_LIVE | s.meta & META_TAG
        } else {
            0
        };
        assert_eq!(lane, want, "slot {i}: lane {lane:#x}, want {want:#x}");
        if s.is_live() {
            assert_eq!(
                find(ft, &s.key),
                Some(FlowSlot::new(i as u32)),
                "slot {i} not found by its key"
            );
            // It sits in one of its two buckets, and its meta says which.
            let (b1, tag) = ft.first_bucket(flow_hash(SEED, &s.key));
            let want = if s.meta & META_SECOND != 0 {
                ft.second_bucket(b1, tag)
            } else {
                b1
            };
            assert_eq!(s.meta & META_TAG, tag, "slot {i}: tag");
            assert_eq!(i / WAYS, want as usize, "slot {i}: bucket");
            if s.flow.twin != NO_TWIN {
                assert_eq!(
                    ft.slots[s.flow.twin.index()].flow.twin,
                    FlowSlot::new(i as u32),
                    "one-sided link at {i}"
                );
            }
        }
    }
}

#[test]
fn slot_is_one_cache_line() {
    assert_eq!(size_of::<Slot>(), 64);
    assert_eq!(align_of::<Slot>(), 64);
    assert_eq!(size_of::<FlowKey>(), 38);
    assert!(size_of::<Flow>() <= 24);
}

#[test]
fn keys() {
    let k = FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 1], 40000, 443, 6);
    assert_eq!(&k.src[..4], &[10, 0, 0, 1]);
    assert!(k.src[4..].iter().all(|&b| b == 0));
    assert_eq!(k.reversed().reversed(), k);
    assert_eq!(k.reversed().sport, 443);
    assert_eq!(k.to_string(), "tcp 10.0.0.1:40000 -> 192.0.2.1:443");
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[15] = 1;
    let k6 = FlowKey::v6(a, a, 1, 2, 17);
    assert_eq!(k6.to_string(), "udp [2001::1]:1 -> [2001::1]:2");
    // Same address bytes, different family: different keys.
    let mut k4as6 = k;
    k4as6.family = FAMILY_V6;
    assert_ne!(k, k4as6);
    assert!(!k.same(&k4as6));
    // `same` is `==`: a difference in any one byte of any field is seen.
    let base = FlowKey::v6([7; 16], [9; 16], 1000, 2000, 6);
    assert!(base.same(&base));
    for i in 0..16 {
        for (mut a, mut b) in [(base, base), (base, base)] {
            a.src[i] ^= 1;
            b.dst[i] ^= 0x80;
            assert!(
                !a.same(&base) && !base.same(&a) && !b.same(&base),
                "byte {i}"
            );
        }
    }
    for d in [
        FlowKey {
            sport: 1001,
            ..base
        },
        FlowKey { dport: 1, ..base },
        FlowKey { proto: 17, ..base },
        FlowKey {
            family: FAMILY_V4,
            ..base
        },
    ] {
        assert_eq!(d.same(&base), d == base);
        assert!(!d.same(&base));
    }
}

#[test]
fn timeouts_from_conf() {
    let t = Timeouts::from(&conf::Timeouts {
        tcp_syn: 10,
        tcp_established: 900,
        tcp_closing: 5,
        udp: 60,
    });
    assert_eq!(
        t,
        Timeouts {
            tcp_syn_ms: 10_000,
            tcp_established_ms: 900_000,
            tcp_closing_ms: 5_000,
            udp_ms: 60_000
        }
    );
    let f = Flow::new(FlowState::TcpClosing, ServiceIdx::new(0), BackendId::new(1));
    assert_eq!(f.timeout(&t), 5_000);
}

#[test]
fn insert_lookup_remove() {
    let mut ft = FlowTable::with_capacity(100);
    let k = key(1);
    assert_eq!(find(&ft, &k), None);
    let a = ins(&mut ft, k, FlowState::TcpSynSeen, 7, 5);
    assert_eq!(a.evicted, None);
    assert!(!a.replaced);
    assert_eq!(find(&ft, &k), Some(a.idx));
    assert_eq!(ft.get(a.idx).backend.get(), 7);
    assert_eq!(ft.get(a.idx).last_seen, 5);
    assert_eq!(ft.key(a.idx), &k);
    assert_eq!(find(&ft, &k.reversed()), None);
    ft.touch(a.idx, ft.get(a.idx).last_seen, FlowState::TcpEstablished);
    assert_eq!(ft.get(a.idx).state, FlowState::TcpEstablished);

    // The same key again: overwritten in place.
    let b = ins(&mut ft, k, FlowState::Udp, 8, 6);
    assert!(b.replaced);
    assert_eq!(b.idx, a.idx);
    assert_eq!(ft.len(), 1);
    assert_eq!(ft.get(a.idx).backend.get(), 8);

    let c = ins(&mut ft, key(2), FlowState::Udp, 9, 6);
    assert_eq!(ft.len(), 2);
    ft.remove(a.idx);
    assert_eq!(find(&ft, &k), None);
    assert!(!ft.is_live(a.idx));
    assert_ne!(
        ft.key(a.idx),
        &k,
        "a freed slot's key never equals a live key"
    );
    assert_eq!(find(&ft, &key(2)), Some(c.idx));
    ft.remove(a.idx); // no-op
    assert_eq!(ft.len(), 1);
    check_invariants(&ft);
    let live: Vec<_> = ft.iter().map(|(k, f)| (*k, f.backend.get())).collect();
    assert_eq!(live, vec![(key(2), 9)]);
    ft.clear();
    assert!(ft.is_empty());
    assert_eq!(find(&ft, &key(2)), None);
    assert_eq!(ft.iter().count(), 0);
    check_invariants(&ft);
}

#[test]
fn zero_capacity_is_full() {
    let mut ft = FlowTable::with_capacity(0);
    let k = key(1);
    assert_eq!(
        ft.insert(
            k,
            1,
            Flow::new(FlowState::Udp, ServiceIdx::new(0), BackendId::new(1)),
            0,
            &T
        ),
        Err(Full)
    );
    assert_eq!(ft.expire_step(0, 10, &T), 0);
    let mut one = FlowTable::with_capacity(1);
    let f = Flow::new(FlowState::Udp, ServiceIdx::new(0), BackendId::new(1));
    assert_eq!(
        one.insert_pair((k, 1, f), (k.reversed(), 2, f), 0, &T),
        Err(Full)
    );
}

/// Filling to the bound and churning 10x through it never exceeds the bound nor allocates.
#[test]
fn bounded_and_no_allocation_under_churn() {
    let cap = 1000;
    let mut ft = FlowTable::with_capacity(cap);
    let bytes = ft.memory_bytes();
    let slab = ft.slots.as_ptr();
    let mut evictions = 0;
    for i in 0..(10 * cap as u32) {
        let state = [
            FlowState::TcpSynSeen,
            FlowState::TcpEstablished,
            FlowState::Udp,
        ][i as usize % 3];
        let r = ins(&mut ft, key(i), state, i, i / 10);
        evictions += r.evicted.is_some() as u32;
        assert!(ft.len() <= cap);
        if i % 7 == 0 {
            ft.remove(r.idx);
        }
        if i % 3 == 0 {
            ft.expire_step(i / 10, 8, &T);
        }
    }
    println!(
        "churn: {evictions} evictions, len {}, {} B/entry",
        ft.len(),
        ft.memory_bytes() / cap
    );
    assert!(evictions > 0);
    assert_eq!(ft.memory_bytes(), bytes);
    assert_eq!(
        ft.memory_bytes(),
        72 * cap,
        "64 bytes per entry and its 8 bytes of its bucket's head, nothing else"
    );
    assert_eq!(ft.slots.as_ptr(), slab);
    check_invariants(&ft);
}

/// The spec'd order with a fake clock: expired, then half-open/UDP (oldest first), then the
/// least recently seen established entry.
#[test]
fn eviction_order() {
    // Capacity below EVICT_SCAN, so every insert examines the whole table.
    let mut ft = FlowTable::with_capacity(8);
    // Established entries seen at t = 100..105, a SYN at 900, a UDP flow at 850.
    for i in 0..6 {
        ins(&mut ft, key(i), FlowState::TcpEstablished, i, 100 + i);
    }
    ins(&mut ft, key(6), FlowState::TcpSynSeen, 6, 900);
    ins(&mut ft, key(7), FlowState::Udp, 7, 850);
    let now: u32 = 1_000;
    // key(4) established but idle for exactly its timeout: expired.
    let i4 = find(&ft, &key(4)).unwrap();
    ft.touch(i4, now.wrapping_sub(T.tcp_established_ms), ft.get(i4).state);
    assert_eq!(ft.len(), 8);

    let e = ins(&mut ft, key(100), FlowState::TcpEstablished, 100, now)
        .evicted
        .unwrap();
    assert_eq!((e.reason, e.key), (EvictReason::Expired, key(4)));
    // Nothing else is expired; the UDP flow seen at 850 is older than the SYN seen at 900.
    let e = ins(&mut ft, key(101), FlowState::TcpEstablished, 101, now)
        .evicted
        .unwrap();
    assert_eq!((e.reason, e.key), (EvictReason::Udp, key(7)));
    let e = ins(&mut ft, key(102), FlowState::TcpEstablished, 102, now)
        .evicted
        .unwrap();
    assert_eq!((e.reason, e.key), (EvictReason::HalfOpen, key(6)));
    // Now only established entries: the least recently seen first.
    for want in [0, 1, 2, 3, 5] {
        let e = ins(&mut ft, key(200 + want), FlowState::TcpEstablished, 0, now)
            .evicted
            .unwrap();
        assert_eq!((e.reason, e.key), (EvictReason::Established, key(want)));
    }
    assert_eq!(ft.len(), 8);
    check_invariants(&ft);
}

/// In a big full table an insert examines only the new key's two buckets (EVICT_SCAN
/// slots) and evicts the least recently seen of their entries.
#[test]
fn eviction_examines_only_the_keys_buckets() {
    let cap = 1024;
    let mut ft = FlowTable::with_capacity(cap);
    let mut i = 0;
    while ft.len() < cap {
        ins(&mut ft, key(i), FlowState::TcpEstablished, i, i);
        i += 1;
    }
    check_invariants(&ft);
    for j in 0..8u32 {
        let k = key(1_000_000 + j);
        let (b1, tag) = ft.first_bucket(flow_hash(SEED, &k));
        let b2 = ft.second_bucket(b1, tag);
        let mut candidates = Vec::new();
        for b in [b1, b2] {
            for s in &ft.slots[b as usize * WAYS..][..WAYS] {
                if s.is_live() {
                    candidates.push((s.flow.last_seen, s.key));
                }
            }
        }
        assert!(candidates.len() <= EVICT_SCAN);
        let oldest = candidates.iter().min_by_key(|c| c.0).unwrap().1;
        let e = ins(&mut ft, k, FlowState::TcpEstablished, 0, 5_000)
            .evicted
            .unwrap();
        assert_eq!((e.reason, e.key), (EvictReason::Established, oldest));
    }
    check_invariants(&ft);
}

/// Filling a table to its bound moves entries to their other bucket rather than evicting
/// early, and a move keeps NAT links intact.
#[test]
fn fills_by_moving_entries_and_keeps_links() {
    let cap = 256;
    let mut ft = FlowTable::with_capacity(cap);
    let mut first_early = None;
    let mut i = 0;
    while ft.len() < cap {
        let f = Flow::new(FlowState::Udp, ServiceIdx::new(0), BackendId::new(i));
        let (kf, kr) = (key(2 * i), key(2 * i + 1));
        let p = ft
            .insert_pair(
                (kf, flow_hash(SEED, &kf), f),
                (kr, flow_hash(SEED, &kr), f),
                i,
                &T,
            )
            .unwrap();
        if p.evicted.iter().any(Option::is_some) && first_early.is_none() {
            first_early = Some(ft.len());
        }
        assert_eq!(ft.key(p.fwd), &kf);
        assert_eq!(ft.key(p.rev), &kr);
        check_invariants(&ft);
        i += 1;
    }
    let first_early = first_early.unwrap_or(cap);
    println!("first early eviction at {first_early} of {cap} entries");
    assert!(
        first_early >= cap * 9 / 10,
        "early eviction at {first_early}"
    );
    // Every pair is whole: each live entry's twin names it back.
    assert!(ft.iter().all(|(_, f)| f.twin != NO_TWIN));
}

/// probe + insert_probed does what insert does, and a stale probe is harmless.
#[test]
fn probe_then_insert() {
    let mut ft = FlowTable::with_capacity(64);
    let mut model = Vec::new();
    for i in 0..200u32 {
        let k = key(i);
        let h = flow_hash(SEED, &k);
        let p = ft.probe(&k, h);
        assert_eq!(p.found, None);
        let r = ft
            .insert_probed(
                &p,
                k,
                Flow::new(FlowState::Udp, ServiceIdx::new(0), BackendId::new(i)),
                i,
                &T,
            )
            .unwrap();
        assert_eq!(ft.key(r.idx), &k);
        assert_eq!(ft.probe(&k, h).found, Some(r.idx));
        model.push((k, r.evicted.is_some()));
        check_invariants(&ft);
    }
    assert_eq!(ft.len(), 64);
    // A probe made before another insert took its free slot: the insert still lands.
    ft.clear();
    let (a, b) = (key(1), key(2));
    let pa = ft.probe(&a, flow_hash(SEED, &a));
    ins(&mut ft, b, FlowState::Udp, 1, 0);
    if pa.free == ft.lookup(&b, flow_hash(SEED, &b)).unwrap() {
        let r = ft
            .insert_probed(
                &pa,
                a,
                Flow::new(FlowState::Udp, ServiceIdx::new(0), BackendId::new(1)),
                0,
                &T,
            )
            .unwrap();
        assert_eq!(ft.key(r.idx), &a);
    }
    check_invariants(&ft);
}

/// `insert_probed_if_room` fills a table exactly as `insert_probed` does while nothing
/// must be evicted (moves included), and from then on changes nothing: every entry
/// stays, slot for slot, and it answers `None`.
#[test]
fn insert_if_room_never_evicts() {
    let cap = 512;
    let (mut a, mut b) = (FlowTable::with_capacity(cap), FlowTable::with_capacity(cap));
    let mut refused = 0;
    for i in 0..4 * cap as u32 {
        let k = key(i);
        let h = flow_hash(SEED, &k);
        let f = Flow::new(FlowState::TcpSynSeen, ServiceIdx::new(0), BackendId::new(i));
        let p = b.probe(&k, h);
        assert_eq!(p.found, None);
        let before: Vec<(FlowKey, Flow)> = b.slots.iter().map(|s| (s.key, s.flow)).collect();
        match b.insert_probed_if_room(&p, k, f, i) {
            Some(idx) => {
                let r = a.insert(k, h, f, i, &T).unwrap();
                assert_eq!(r.evicted, None, "insert {i} evicted where if_room admitted");
                assert_eq!(r.idx, idx, "insert {i}: another slot");
                assert_eq!(b.key(idx), &k);
                assert_eq!(b.get(idx).last_seen, i);
            }
            None => {
                refused += 1;
                let after: Vec<(FlowKey, Flow)> = b.slots.iter().map(|s| (s.key, s.flow)).collect();
                assert!(before == after, "a refusal changed the table at {i}");
                // Refused only when a plain insert would have had to evict.
                let mut c = FlowTable::with_capacity(cap);
                c.slots.copy_from_slice(&b.slots);
                c.heads.copy_from_slice(&b.heads);
                c.len = b.len;
                assert!(
                    c.insert(k, h, f, i, &T).unwrap().evicted.is_some(),
                    "refused {i} with room"
                );
            }
        }
        check_invariants(&b);
    }
    assert_eq!(b.len(), cap, "filled to the capacity");
    assert!(refused >= 3 * cap, "refused {refused}");
    // A stale probe (its free slot taken since) still finds room if there is some.
    let mut t = FlowTable::with_capacity(64);
    let (x, y) = (key(1), key(2));
    let px = t.probe(&x, flow_hash(SEED, &x));
    let py = t.probe(&y, flow_hash(SEED, &y));
    let ix = t.insert_probed_if_room(
        &px,
        x,
        Flow::new(FlowState::TcpSynSeen, ServiceIdx::new(0), BackendId::new(1)),
        0,
    );
    let iy = t.insert_probed_if_room(
        &py,
        y,
        Flow::new(FlowState::TcpSynSeen, ServiceIdx::new(0), BackendId::new(2)),
        0,
    );
    assert!(ix.is_some() && iy.is_some() && ix != iy);
    assert_eq!(find(&t, &x), ix);
    assert_eq!(find(&t, &y), iy);
    check_invariants(&t);
}

/// Into a full table, probe + insert_probed evicts exactly the entry, for the same
/// reason, that a plain insert would: two tables
/// fed the same mixed sequence (half-open, UDP, established, NAT pairs, some expired)
/// stay identical slot for slot.
#[test]
fn full_table_probe_evicts_as_insert_does() {
    let cap = 512;
    let (mut a, mut b) = (FlowTable::with_capacity(cap), FlowTable::with_capacity(cap));
    let states = [
        FlowState::TcpSynSeen,
        FlowState::TcpEstablished,
        FlowState::Udp,
        FlowState::TcpClosing,
    ];
    let mut evictions = 0;
    for i in 0..6 * cap as u32 {
        // The clock moves in steps, so many entries share a `last_seen` (ties).
        let now = (i / 16) * 7;
        let f = Flow::new(
            states[(i % 7 % 4) as usize],
            ServiceIdx::new(0),
            BackendId::new(i),
        );
        if i % 11 == 0 {
            let (kf, kr) = (key(1_000_000 + i), key(2_000_000 + i));
            let (hf, hr) = (flow_hash(SEED, &kf), flow_hash(SEED, &kr));
            let ra = a.insert_pair((kf, hf, f), (kr, hr, f), now, &T).unwrap();
            let rb = b.insert_pair((kf, hf, f), (kr, hr, f), now, &T).unwrap();
            assert_eq!((ra.fwd, ra.rev), (rb.fwd, rb.rev));
            continue;
        }
        let k = key(i);
        let h = flow_hash(SEED, &k);
        let ra = a.insert(k, h, f, now, &T).unwrap();
        let p = b.probe(&k, h);
        assert_eq!(p.found, None);
        let rb = b.insert_probed(&p, k, f, now, &T).unwrap();
        assert_eq!(ra.idx, rb.idx, "insert {i}");
        assert_eq!(
            ra.evicted.map(|e| (e.reason, e.key, e.twin.map(|t| t.0))),
            rb.evicted.map(|e| (e.reason, e.key, e.twin.map(|t| t.0))),
            "insert {i}"
        );
        evictions += usize::from(ra.evicted.is_some());
    }
    assert!(evictions > 2 * cap, "the table was not full: {evictions}");
    let keys = |t: &FlowTable| t.slots.iter().map(|s| (s.key, s.flow)).collect::<Vec<_>>();
    assert!(keys(&a) == keys(&b));
    check_invariants(&b);
}

#[test]
fn twins_live_and_die_together() {
    let mut ft = FlowTable::with_capacity(10);
    let a = ins(&mut ft, key(1), FlowState::Udp, 1, 0).idx;
    let b = ins(&mut ft, key(2), FlowState::Udp, 1, 0).idx;
    let c = ins(&mut ft, key(3), FlowState::Udp, 1, 0).idx;
    ft.link(a, b);
    assert_eq!((ft.get(a).twin, ft.get(b).twin), (b, a));
    // Re-linking a to c unlinks b.
    ft.link(a, c);
    assert_eq!(ft.get(b).twin, NO_TWIN);
    ft.remove(c);
    assert!(!ft.is_live(a) && !ft.is_live(c) && ft.is_live(b));
    assert_eq!(ft.len(), 1);

    // Expiry: a pair expires only when both halves have.
    let a = ins(&mut ft, key(1), FlowState::Udp, 1, 0).idx;
    let c = ins(&mut ft, key(3), FlowState::Udp, 1, 0).idx;
    ft.link(a, c);
    ft.touch(c, 9_000, ft.get(c).state); // the reverse direction is still active
    assert_eq!(ft.expire_step(10_000, 100, &T), 1, "only the unlinked b");
    assert!(ft.is_live(a) && ft.is_live(c));
    assert_eq!(ft.expire_step(19_000, 100, &T), 2);
    assert!(ft.is_empty());

    // Eviction of one half removes both and reports the twin.
    let mut ft = FlowTable::with_capacity(4);
    let a = ins(&mut ft, key(1), FlowState::Udp, 1, 0).idx;
    let b = ins(&mut ft, key(2), FlowState::Udp, 1, 0).idx;
    ins(&mut ft, key(3), FlowState::TcpEstablished, 1, 10);
    ins(&mut ft, key(4), FlowState::TcpEstablished, 1, 10);
    ft.link(a, b);
    let e = ins(&mut ft, key(5), FlowState::TcpSynSeen, 1, 20)
        .evicted
        .unwrap();
    assert_eq!(e.reason, EvictReason::Udp);
    let twin = e.twin.expect("twin reported");
    assert_eq!(
        [e.key, twin.0]
            .iter()
            .filter(|k| **k == key(1) || **k == key(2))
            .count(),
        2
    );
    assert_eq!(ft.len(), 3);
    // Unlink, then remove one half only.
    let x = find(&ft, &key(3)).unwrap();
    let y = find(&ft, &key(4)).unwrap();
    ft.link(x, y);
    ft.unlink(x);
    ft.remove(x);
    assert!(ft.is_live(y));
    check_invariants(&ft);
}

/// Stale indices (held across a removal) cannot corrupt the table.
#[test]
fn stale_indices_are_harmless() {
    let cap = 8;
    let mut ft = FlowTable::with_capacity(cap);
    let a = ins(&mut ft, key(1), FlowState::Udp, 1, 0).idx;
    let b = ins(&mut ft, key(2), FlowState::Udp, 1, 0).idx;
    let c = ins(&mut ft, key(3), FlowState::Udp, 1, 0).idx;
    ft.remove(a);
    ft.remove(b);
    // Writes and link operations through freed indices.
    ft.get_mut(a).twin = c;
    ft.get_mut(b).twin = FlowSlot::new(12345);
    ft.unlink(a);
    assert!(!ft.link(a, c));
    assert!(!ft.link(c, c));
    ft.remove(b);
    assert!(ft.is_live(c));
    assert_eq!(ft.get(c).twin, NO_TWIN);
    // The table still fills to exactly its bound (one bucket: no early eviction).
    for i in 10..10 + cap as u32 - 1 {
        let r = ins(&mut ft, key(i), FlowState::Udp, 1, 0);
        assert!(r.evicted.is_none());
    }
    assert_eq!(ft.len(), cap);
    assert!(
        ins(&mut ft, key(99), FlowState::Udp, 1, 0)
            .evicted
            .is_some()
    );
    check_invariants(&ft);
}

#[test]
fn insert_pair_in_a_full_table_keeps_both() {
    let mut ft = FlowTable::with_capacity(16);
    for i in 0..16 {
        ins(&mut ft, key(i), FlowState::TcpSynSeen, i, 100);
    }
    let f = Flow::new(
        FlowState::TcpSynSeen,
        ServiceIdx::new(0),
        BackendId::new(99),
    );
    let (kf, kr) = (key(1000), key(1001));
    let p = ft
        .insert_pair(
            (kf, flow_hash(SEED, &kf), f),
            (kr, flow_hash(SEED, &kr), f),
            100,
            &T,
        )
        .unwrap();
    assert!(p.evicted[0].is_some() && p.evicted[1].is_some());
    assert_eq!(ft.len(), 16);
    assert_eq!(ft.key(p.fwd), &kf);
    assert_eq!(ft.key(p.rev), &kr);
    assert_eq!((ft.get(p.fwd).twin, ft.get(p.rev).twin), (p.rev, p.fwd));
    check_invariants(&ft);
}

/// The tags' compare (SSE2 on x86-64) answers as a lane-by-lane compare would, for lanes
/// with repeats, zeros (free slots) and every bit pattern.
#[test]
fn lanes_equal_is_the_lane_by_lane_answer() {
    let mut g = crate::hash::SplitMix(7);
    for n in 0..20_000u32 {
        let r = g.next_u64();
        // Few distinct values, so that matches (and several in a bucket) are common.
        let pick = |k: u32| -> u16 {
            match (r >> (k * 3)) & 3 {
                0 => 0,
                1 => TAG_LIVE | (n as u16 & META_TAG),
                2 => 0xffff,
                _ => (r >> 40) as u16,
            }
        };
        let lanes: [u16; WAYS] = std::array::from_fn(|j| pick(j as u32));
        for x in [
            0,
            TAG_LIVE | (n as u16 & META_TAG),
            0xffff,
            (r >> 40) as u16,
            1,
        ] {
            let want = lanes
                .iter()
                .enumerate()
                .fold(0u32, |m, (j, l)| m | u32::from(*l == x) << j);
            assert_eq!(
                crate::mem::lanes_equal(&lanes, x),
                want,
                "{lanes:x?} == {x:#x}"
            );
        }
    }
}

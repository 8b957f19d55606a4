//! The flow table against plain models: the eviction policy computed the plain way, and
//! lookups against a `HashMap` over random operations.

use super::tests::{SEED, T, check_invariants, find, ins, key};
use super::*;
use crate::hash::flow_hash;
use std::collections::HashMap;

/// A xorshift64* generator: the tests' repeatable randomness.
fn xorshift(mut rng: u64) -> impl FnMut() -> u64 {
    move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The victim of a full table's insert is the one the module's policy names, computed
/// here the plain way (pairs, ties, expiry and all), over thousands of random inserts: with
/// NAT-like pairs (buckets with a linked entry are scored a slot at a time, the others by
/// lanes), and without (by lanes only), on a clock that wraps around.
#[test]
fn eviction_matches_the_policy_written_plainly() {
    for (pairs, clock) in [
        (true, 0),
        (false, 0),
        (true, u32::MAX - 20_000),
        (false, 7 << 29),
    ] {
        println!("pairs {pairs}, clock from {clock}:");
        eviction_policy_check(pairs, clock);
    }
}

fn eviction_policy_check(pairs: bool, clock: u32) {
    let mut next = xorshift(0x0ddc_0ffe_e15e_a5e5 ^ u64::from(clock));
    let states = [
        FlowState::TcpSynSeen,
        FlowState::TcpEstablished,
        FlowState::TcpClosing,
        FlowState::Udp,
        FlowState::UdpConfirmed,
    ];
    let cap = 1024;
    let mut ft = FlowTable::with_capacity(cap);
    let mut checked = 0;
    let mut reasons = HashMap::new();
    for i in 0..20_000u32 {
        let r = next();
        // A clock that moves unevenly, so ages tie and entries expire.
        let now = clock.wrapping_add(i * 3 + (r >> 60) as u32 * 500);
        let f = Flow::new(
            states[(r >> 8) as usize % 5],
            ServiceIdx::new(0),
            BackendId::new(i),
        );
        let (k, k2) = (key(i), key(10_000_000 + i));
        let h = flow_hash(SEED, &k);
        // Traffic: one earlier flow (or one half of a pair) seen again now.
        if i > 0 {
            let j = (r >> 20) as u32 % i;
            let back = key(if r & (1 << 50) != 0 {
                10_000_000 + j
            } else {
                j
            });
            if let Some(idx) = find(&ft, &back) {
                // A second UDP packet, on this half only.
                let state = match ft.get(idx).state {
                    FlowState::Udp if r & (1 << 41) != 0 => FlowState::UdpConfirmed,
                    st => st,
                };
                ft.touch(idx, now, state);
            }
        }
        // The expected victim, when the table is full or the key's buckets are (the key's
        // buckets, in order): the insert evicts it, unless it can move an entry instead.
        let (b1, tag) = ft.first_bucket(h);
        let b2 = ft.second_bucket(b1, tag);
        let buckets_full = [b1, b2].iter().all(|&b| {
            (b * WAYS as u32..(b + 1) * WAYS as u32).all(|i| ft.is_live(FlowSlot::new(i)))
        });
        let table_full = ft.len() == cap;
        let expect = (table_full || buckets_full).then(|| {
            let mut best: Option<((bool, bool, u32), FlowSlot)> = None;
            let buckets = if b1 == b2 { vec![b1] } else { vec![b1, b2] };
            for b in buckets {
                for idx in b * WAYS as u32..(b + 1) * WAYS as u32 {
                    let idx = FlowSlot::new(idx);
                    if !ft.is_live(idx) {
                        continue;
                    }
                    let fl = ft.get(idx);
                    let is_cheap = |f: &Flow| {
                        !matches!(f.state, FlowState::TcpEstablished | FlowState::UdpConfirmed)
                    };
                    let mut idle = fl.idle(now);
                    let mut expired = fl.is_expired(now, &T);
                    let mut cheap = is_cheap(fl);
                    if let Some(tw) = ft.twin_of(idx) {
                        let g = ft.get(tw);
                        expired = expired && g.is_expired(now, &T);
                        idle = idle.min(g.idle(now));
                        cheap = cheap && is_cheap(g);
                    }
                    let score = (expired, cheap, idle);
                    if best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, idx));
                    }
                }
            }
            let (score, idx) = best.expect("a candidate");
            let reason = if score.0 {
                EvictReason::Expired
            } else if !score.1 {
                EvictReason::Established
            } else if ft.get(idx).state == FlowState::Udp {
                EvictReason::Udp
            } else {
                EvictReason::HalfOpen
            };
            (*ft.key(idx), reason)
        });
        if pairs && r.is_multiple_of(5) {
            // A NAT-like pair (its second insert may evict too: not checked).
            let p = ft
                .insert_pair((k, h, f), (k2, flow_hash(SEED, &k2), f), now, &T)
                .unwrap();
            if let Some(want) = expect {
                checked += check(p.evicted[0], want, table_full, i, &mut reasons);
            }
        } else {
            let got = ft.insert(k, h, f, now, &T).unwrap();
            if let Some(want) = expect {
                checked += check(got.evicted, want, table_full, i, &mut reasons);
            }
        }
    }
    check_invariants(&ft);
    println!("checked {checked} evictions: {reasons:?}");
    assert!(checked > 2_000, "checked {checked}");
    for r in ["Expired", "HalfOpen", "Udp", "Established"] {
        assert!(
            reasons.get(r).copied().unwrap_or(0) > 10,
            "{r}: {reasons:?}"
        );
    }
}

/// An insert's eviction against the expected victim: one there must be when the table was
/// full; when only the key's buckets were, the insert may have moved an entry instead.
/// Counts (1) an eviction checked.
fn check(
    got: Option<Evicted>,
    want: (FlowKey, EvictReason),
    table_full: bool,
    i: u32,
    reasons: &mut HashMap<String, u32>,
) -> u32 {
    let Some(e) = got else {
        assert!(!table_full, "insert {i}: a full table evicts");
        return 0;
    };
    assert_eq!((e.key, e.reason), want, "insert {i}");
    *reasons.entry(format!("{:?}", e.reason)).or_insert(0) += 1;
    1
}

/// ~100k random operations against a `HashMap` model, under capacity: lookups agree.
#[test]
fn model_check() {
    let mut next = xorshift(0x1234_5678_9abc_def0);
    let cap = 4096;
    let keyspace = 3000; // never full: no eviction, so the model is exact
    let mut ft = FlowTable::with_capacity(cap);
    let mut model: HashMap<FlowKey, u32> = HashMap::new();
    for op in 0..100_000u32 {
        let r = next();
        let k = key((r >> 8) as u32 % keyspace);
        match r % 4 {
            0 | 1 => {
                let v = (r >> 40) as u32;
                let res = ins(&mut ft, k, FlowState::Udp, v, op);
                assert!(res.evicted.is_none());
                assert_eq!(res.replaced, model.insert(k, v).is_some());
            }
            2 => {
                if let Some(i) = find(&ft, &k) {
                    ft.remove(i);
                }
                model.remove(&k);
            }
            _ => {
                let got = find(&ft, &k).map(|i| {
                    assert_eq!(ft.key(i), &k);
                    ft.get(i).backend.get()
                });
                assert_eq!(got, model.get(&k).copied(), "op {op}: {k}");
            }
        }
        assert_eq!(ft.len(), model.len());
        if op % 10_000 == 0 {
            check_invariants(&ft);
        }
    }
    for (k, v) in &model {
        assert_eq!(find(&ft, k).map(|i| ft.get(i).backend.get()), Some(*v));
    }
    assert_eq!(ft.iter().count(), model.len());
    check_invariants(&ft);
}

/// Eviction scores the copies of ages and states in the buckets' heads, not the slots: a
/// packet's `touch` keeps both, and a write that bypasses it is what
/// [`FlowTable::stale_head`] (the fuzzers' check) reports.
#[test]
fn eviction_reads_the_heads_and_a_stale_head_is_reported() {
    // One bucket, full: the least recently seen established entry is the victim.
    let mut ft = FlowTable::with_capacity(WAYS);
    let idx: Vec<FlowSlot> = (0..WAYS as u32)
        .map(|i| ins(&mut ft, key(i), FlowState::TcpEstablished, 1, 100 + i).idx)
        .collect();
    // Key 5 is seen again at 90: now the least recently seen, in both places.
    ft.touch(idx[5], 90, FlowState::TcpEstablished);
    assert_eq!(ft.stale_head(), None);
    let r = ins(&mut ft, key(100), FlowState::TcpEstablished, 1, 200);
    let e = r.evicted.expect("a full table evicts");
    assert_eq!((e.key, e.reason), (key(5), EvictReason::Established));
    assert_eq!(r.idx, idx[5], "the new entry takes the victim's slot");
    // A write past `touch` leaves the head's copy stale, and is reported.
    ft.get_mut(idx[2]).last_seen = 1;
    assert_eq!(ft.stale_head(), Some(idx[2]));
    ft.touch(idx[2], 1, FlowState::TcpEstablished);
    assert_eq!(ft.stale_head(), None);
    ft.get_mut(idx[3]).state = FlowState::TcpClosing;
    assert_eq!(ft.stale_head(), Some(idx[3]));
    println!("victim {:?} ({:?}), stale heads reported", e.key, e.reason);
}

/// A move is looked for only while at least 1 slot in [`MOVE_FREE_SHARE`] is free: below
/// that an insert whose buckets are full evicts at once, even where a move was possible;
/// above it, the same kind of insert moves an entry and evicts nothing.
#[test]
fn a_nearly_full_table_evicts_rather_than_search_for_a_move() {
    let cap = 1024;
    // An insert of a fresh key whose two buckets are full and one of whose 16 entries could
    // move to a free slot of its other bucket: whether it evicted.
    let evicts_where_a_move_was_possible = |ft: &mut FlowTable, from: u32| -> (bool, u32) {
        for n in from.. {
            let k = key(n);
            let (b1, tag) = ft.first_bucket(flow_hash(SEED, &k));
            let b2 = ft.second_bucket(b1, tag);
            let slots = || {
                [b1, b2]
                    .into_iter()
                    .flat_map(|b| b * WAYS as u32..(b + 1) * WAYS as u32)
            };
            if find(ft, &k).is_some() || !slots().all(|i| ft.is_live(FlowSlot::new(i))) {
                continue;
            }
            let movable = slots().any(|i| {
                let s = &ft.slots[i as usize];
                let (b, t) = (i / WAYS as u32, s.meta & META_TAG);
                let other = if s.meta & META_SECOND != 0 {
                    ft.first_of_second(b, t)
                } else {
                    ft.second_bucket(b, t)
                };
                other != b && ft.free_in(other, t).is_some()
            });
            if movable {
                let len = ft.len();
                let r = ins(ft, k, FlowState::TcpEstablished, n, 1);
                check_invariants(ft);
                assert_eq!(ft.len(), len + usize::from(r.evicted.is_none()));
                return (r.evicted.is_some(), n + 1);
            }
        }
        unreachable!()
    };
    for (free, want_evict) in [
        (cap / MOVE_FREE_SHARE - 1, true),
        (4 * cap / MOVE_FREE_SHARE, false),
    ] {
        let mut ft = FlowTable::with_capacity(cap);
        let mut n = 0;
        while ft.len() < cap - free {
            ins(&mut ft, key(n), FlowState::TcpEstablished, n, 1);
            n += 1;
        }
        let mut evicted = 0;
        for _ in 0..20 {
            // Keep the share of free slots where it is (an eviction frees one).
            let (e, next) = evicts_where_a_move_was_possible(&mut ft, n);
            n = next;
            evicted += u32::from(e);
            if ft.len() < cap - free {
                ins(&mut ft, key(n), FlowState::TcpEstablished, n, 1);
                n += 1;
            }
        }
        println!("{free} of {cap} slots free: {evicted} of 20 inserts with full buckets evicted");
        assert_eq!(evicted, if want_evict { 20 } else { 0 }, "{free} free");
    }
}

/// A NAT pair inserted from the forward key's probe (what the pipeline does) lands where
/// one inserted by keys does, with the same evictions: two tables, the same random pairs,
/// one way each, through filling and a full table's churn.
#[test]
fn a_pair_from_a_probe_goes_where_a_pair_by_keys_does() {
    let mut next = xorshift(0x5eed_0f9a_1500);
    let cap = 512;
    let (mut by_probe, mut by_keys) =
        (FlowTable::with_capacity(cap), FlowTable::with_capacity(cap));
    let mut evictions = 0;
    for i in 0..4_000u32 {
        let r = next();
        let now = i * 7;
        let state = if r & 1 == 0 {
            FlowState::TcpSynSeen
        } else {
            FlowState::TcpEstablished
        };
        let f = Flow::new(state, ServiceIdx::new(0), BackendId::new(i));
        let (k, k2) = (key(i), key(10_000_000 + i));
        let (h, h2) = (flow_hash(SEED, &k), flow_hash(SEED, &k2));
        let probe = by_probe.probe(&k, h);
        let (mut e1, mut e2) = ([None, None], [None, None]);
        let a = by_probe.insert_pair_into((k, h, f), (k2, h2, f), now, &T, &mut e1, Some(&probe));
        let b = by_keys.insert_pair_into((k, h, f), (k2, h2, f), now, &T, &mut e2, None);
        assert_eq!(a, b, "pair {i}: slots");
        let keys = |e: &[Option<Evicted>; 2]| e.map(|e| e.map(|e| (e.key, e.reason)));
        assert_eq!(keys(&e1), keys(&e2), "pair {i}: evictions");
        evictions += e1.iter().flatten().count();
        // Traffic on an earlier pair's reverse half, in both.
        let back = key(10_000_000 + (r >> 32) as u32 % (i + 1));
        if let (Some(x), Some(y)) = (find(&by_probe, &back), find(&by_keys, &back)) {
            by_probe.touch(x, now, FlowState::TcpEstablished);
            by_keys.touch(y, now, FlowState::TcpEstablished);
        }
    }
    check_invariants(&by_probe);
    assert_eq!(by_probe.len(), by_keys.len());
    println!(
        "4000 pairs, {evictions} evictions, {} entries each",
        by_probe.len()
    );
    assert!(evictions > 1_000, "{evictions}");
}

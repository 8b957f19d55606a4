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
        // The expected victim, when the table is full (the key's buckets, in order).
        let expect = (ft.len() == cap).then(|| {
            let (b1, tag) = ft.first_bucket(h);
            let b2 = ft.second_bucket(b1, tag);
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
                let e = p.evicted[0].expect("a full table evicts");
                assert_eq!((e.key, e.reason), want, "insert {i}");
                checked += 1;
            }
        } else {
            let got = ft.insert(k, h, f, now, &T).unwrap();
            if let Some(want) = expect {
                let e = got.evicted.expect("a full table evicts");
                assert_eq!((e.key, e.reason), want, "insert {i}");
                *reasons.entry(format!("{:?}", e.reason)).or_insert(0) += 1;
                checked += 1;
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

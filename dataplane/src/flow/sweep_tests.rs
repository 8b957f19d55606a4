//! The flow table's paced expiry and its census of live flows per backend.

use super::tests::{SEED, T, check_invariants, find, ins, key};
use super::*;
use crate::hash::flow_hash;

#[test]
fn expire_step_reaps_exactly_the_expired_within_budget() {
    // Half full, so that no insert evicts: the count of expired entries is exact.
    let cap = 1000;
    let mut ft = FlowTable::with_capacity(2 * cap);
    // Even i: UDP seen at 0 (expired at 10_000); odd i: established seen at 0 (not).
    for i in 0..cap as u32 {
        let state = if i % 2 == 0 {
            FlowState::Udp
        } else {
            FlowState::TcpEstablished
        };
        ins(&mut ft, key(i), state, i, 0);
    }
    assert_eq!(ft.len(), cap);
    let lap = ft.slots.len();
    assert_eq!(ft.expire_step(9_999, lap, &T), 0, "nothing expired yet");
    let now = 10_000;
    let budget = 64;
    let mut total = 0;
    let mut calls = 0;
    while total < cap / 2 {
        let r = ft.expire_step(now, budget, &T);
        assert!(r <= budget, "budget {budget} exceeded: {r}");
        total += r;
        calls += 1;
        assert!(
            calls <= lap.div_ceil(budget),
            "not all reaped after one lap"
        );
    }
    assert_eq!(total, cap / 2);
    assert_eq!(ft.len(), cap / 2);
    assert!(ft.iter().all(|(_, f)| f.state == FlowState::TcpEstablished));
    // More steps reap nothing more.
    assert_eq!(ft.expire_step(now, 10 * lap, &T), 0);
    // A budget of 1 visits exactly one slot.
    let hand = ft.hand;
    ft.expire_step(now, 1, &T);
    assert_eq!(ft.hand as usize, (hand as usize + 1) % ft.slots.len());
    check_invariants(&ft);
}

/// Paced expiry sweeps the table once per SWEEP_MS whatever the call rate, and no more.
#[test]
fn expire_paced_sweeps_once_per_period() {
    let mut ft = FlowTable::with_capacity(8 * 1000);
    let slots = ft.slots.len();
    for i in 0..100u32 {
        ins(&mut ft, key(i), FlowState::Udp, i, 0);
    }
    // Called 1000 times within one millisecond: one millisecond's share at most.
    let visits = |ft: &FlowTable, before: u32| (ft.hand + slots as u32 - before) as usize % slots;
    ft.expire_paced(0, 64, &T);
    let h0 = ft.hand;
    for _ in 0..1000 {
        ft.expire_paced(1, 64, &T);
    }
    assert_eq!(visits(&ft, h0), slots / SWEEP_MS as usize);
    // Over one period, one sweep in all (a call per millisecond, the cap never binding).
    let h1 = ft.hand;
    for ms in 2..=1 + SWEEP_MS {
        ft.expire_paced(ms, 64, &T);
    }
    assert_eq!(visits(&ft, h1), 0, "a whole lap, back where it started");
    // Everything expired (UDP after 10 s): one more period reaps it all.
    let mut reaped = 0;
    for ms in 0..=SWEEP_MS {
        reaped += ft.expire_paced(20_000 + ms, 64, &T);
    }
    assert_eq!(reaped, 100);
    assert!(ft.is_empty());
}

/// Inserts a NAT pair for `backend` the way the pipeline does (the reverse half flagged).
fn ins_pair(ft: &mut FlowTable, i: u32, state: FlowState, backend: u32, now: u32) {
    let f = Flow::new(state, ServiceIdx::new(0), BackendId::new(backend));
    let r = Flow {
        flags: FLAG_REVERSE,
        ..f
    };
    let (kf, kr) = (key(i), key(i).reversed());
    ft.insert_pair(
        (kf, flow_hash(SEED, &kf), f),
        (kr, flow_hash(SEED, &kr), r),
        now,
        &T,
    )
    .unwrap();
}

/// Steps the hand `budget` slots at a time until the census completes a pass; returns
/// what the steps reaped.
fn one_pass(ft: &mut FlowTable, now: u32, budget: usize) -> usize {
    let passes = ft.census().passes();
    let mut reaped = 0;
    for _ in 0..=ft.slots.len().div_ceil(budget) {
        reaped += ft.expire_step(now, budget, &T);
        if ft.census().passes() > passes {
            return reaped;
        }
    }
    panic!("no pass completed in one lap");
}

/// After a whole pass the census is the true count of live flows per backend: a NAT
/// pair once, expired entries (reaped on the way) not at all; a partial pass changes
/// nothing published; an emptied table reads zero at once.
#[test]
fn census_counts_live_flows_per_backend() {
    let mut ft = FlowTable::with_capacity(4096);
    let now = 5_000;
    let mut i = 0;
    let mut next = || {
        i += 1;
        i
    };
    // Backend 1: 10 established DSR flows; 2: 5 half-open and 3 UDP.
    for _ in 0..10 {
        ins(&mut ft, key(next()), FlowState::TcpEstablished, 1, 4_500);
    }
    for _ in 0..5 {
        ins(&mut ft, key(next()), FlowState::TcpSynSeen, 2, 4_500);
    }
    for _ in 0..3 {
        ins(&mut ft, key(next()), FlowState::Udp, 2, 0);
    }
    // Backend 3: 4 established NAT pairs, 2 closing ones.
    for _ in 0..4 {
        ins_pair(&mut ft, next(), FlowState::TcpEstablished, 3, 4_500);
    }
    for _ in 0..2 {
        ins_pair(&mut ft, next(), FlowState::TcpClosing, 3, 4_500);
    }
    // Backend 4: 6 half-open flows and a NAT pair, all expired by `now`.
    for _ in 0..6 {
        ins(&mut ft, key(next()), FlowState::TcpSynSeen, 4, 0);
    }
    ins_pair(&mut ft, next(), FlowState::TcpSynSeen, 4, 0);
    // Backend 5: a NAT pair whose forward half expired, its reverse half not: alive.
    let k = next();
    ins_pair(&mut ft, k, FlowState::TcpSynSeen, 5, 0);
    let rev = find(&ft, &key(k).reversed()).unwrap();
    ft.touch(rev, 4_900, ft.get(rev).state);
    assert_eq!(ft.len(), 10 + 8 + 12 + 6 + 2 + 2);

    // Nothing published before the first pass.
    assert_eq!(ft.census().passes(), 0);
    assert_eq!(ft.census().get(BackendId::new(1)), [0, 0]);
    let reaped = one_pass(&mut ft, now, 100);
    assert_eq!(reaped, 8, "backend 4's flows reaped");
    let c = ft.census();
    assert_eq!(c.get(BackendId::new(1)), [10, 0]);
    assert_eq!(c.get(BackendId::new(2)), [0, 8]);
    assert_eq!(c.get(BackendId::new(3)), [4, 2], "a NAT pair counts once");
    assert_eq!(
        c.get(BackendId::new(4)),
        [0, 0],
        "expired flows are not counted"
    );
    assert_eq!(c.get(BackendId::new(5)), [0, 1]);
    assert_eq!(c.completed().len(), 6);
    assert_eq!(c.get(BackendId::new(9999)), [0, 0]);
    // What the census says is what the table holds, counted independently.
    let truth = |b: u32| {
        ft.iter()
            .filter(|(_, f)| f.backend.get() == b && f.flags & FLAG_REVERSE == 0)
            .count() as u32
    };
    for b in 1..=5 {
        assert_eq!(
            c.get(BackendId::new(b)).iter().sum::<u32>(),
            truth(b),
            "backend {b}"
        );
    }

    // Backend 1 loses 3 flows, one becomes closing: a partial pass publishes nothing...
    for j in 1..=3 {
        let idx = find(&ft, &key(j)).unwrap();
        ft.remove(idx);
    }
    let idx = find(&ft, &key(4)).unwrap();
    ft.touch(idx, ft.get(idx).last_seen, FlowState::TcpClosing);
    ft.expire_step(now, ft.slots.len() / 2, &T);
    assert_eq!(ft.census().get(BackendId::new(1)), [10, 0]);
    // ...the pass that completes does.
    one_pass(&mut ft, now, 64);
    assert_eq!(ft.census().get(BackendId::new(1)), [6, 1]);
    assert_eq!(ft.census().get(BackendId::new(3)), [4, 2]);

    // Everything idle past its timeout: reaped, and the census drops to zero.
    one_pass(&mut ft, 1_000_000, 64);
    assert!(ft.is_empty());
    assert!(ft.census().completed().iter().all(|c| *c == [0, 0]));
    // A table emptied by other means reads zero at the next step, without a pass.
    ins(&mut ft, key(1), FlowState::TcpEstablished, 7, 0);
    one_pass(&mut ft, 0, 64);
    assert_eq!(ft.census().get(BackendId::new(7)), [1, 0]);
    let idx = find(&ft, &key(1)).unwrap();
    ft.remove(idx);
    let passes = ft.census().passes();
    ft.expire_step(0, 1, &T);
    assert_eq!(ft.census().get(BackendId::new(7)), [0, 0]);
    assert_eq!(ft.census().passes(), passes + 1);
    check_invariants(&ft);
}

/// Paced by the clock, the census is refreshed once per SWEEP_MS, whatever the call rate.
#[test]
fn census_follows_the_paced_sweep() {
    let mut ft = FlowTable::with_capacity(8 * 1000);
    for i in 0..50u32 {
        ins(&mut ft, key(i), FlowState::TcpEstablished, 1 + i % 2, 0);
    }
    for i in 50..60u32 {
        ins_pair(&mut ft, 2 * i, FlowState::Udp, 3, 0);
    }
    // One call per millisecond for 2.5 periods: two passes, the figure exact.
    for ms in 0..SWEEP_MS * 5 / 2 {
        ft.expire_paced(ms, 64, &T);
    }
    assert_eq!(ft.census().passes(), 2);
    assert_eq!(ft.census().get(BackendId::new(1)), [25, 0]);
    assert_eq!(ft.census().get(BackendId::new(2)), [25, 0]);
    assert_eq!(ft.census().get(BackendId::new(3)), [0, 10]);
}

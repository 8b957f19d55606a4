//! Instance sync seen from outside: an instance's figures (`ctl status`'s `sync`) and the
//! wait until every instance's exceptions have reached every other. Shared by
//! tests/e2e_sync.rs (two instances on one segment) and testkit's `Ecmp` (three behind a
//! router).
//!
//! The wait must not end early: each worker's sweep finds exceptions over a whole pass
//! (`SWEEP_MS`, the hand paced over the table), and the slow path sends those found so far
//! within a turn and a batch wait. Midway through a pass the peers may have learnt all an
//! instance has found so far (learnt = found) while a third of its exceptions are still
//! unfound: moving flows then breaks those. So the instances' own counts must stay unchanged
//! over a whole pass, and each instance must publish exactly what the others found.

use std::time::{Duration, Instant};

use crate::Balancer;

/// One instance's sync figures (`ctl status`'s `sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncFigures {
    /// Its own exceptions.
    pub local: u64,
    /// Learnt from peers and published to its workers.
    pub published: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
}

impl SyncFigures {
    /// `lb`'s figures now.
    pub fn of(lb: &Balancer) -> SyncFigures {
        let s = lb.ctl_json(&["status"]);
        let n = |k: &str| s["sync"][k].as_u64().unwrap_or(0);
        SyncFigures {
            local: n("local"),
            published: n("published"),
            messages_sent: n("messages_sent"),
            bytes_sent: n("bytes_sent"),
        }
    }
}

/// Waits (bounded by `limit`) until the exceptions of every instance of `lbs` (each the
/// others' peer) have reached every other: each one's own count unchanged over a whole sweep
/// pass and more than 0 in all, each publishing exactly the others' together. Prints the
/// totals (found / learnt) at each look, and returns each instance's figures then.
pub fn wait_synced(lbs: &[&Balancer], limit: Duration) -> Vec<SyncFigures> {
    let t0 = Instant::now();
    let pass = Duration::from_millis(u64::from(dataplane::flow::SWEEP_MS) + 200);
    let mut stable: Option<(Instant, Vec<u64>)> = None;
    let mut looks = Vec::new();
    loop {
        let now: Vec<SyncFigures> = lbs.iter().map(|lb| SyncFigures::of(lb)).collect();
        let locals: Vec<u64> = now.iter().map(|f| f.local).collect();
        let total: u64 = locals.iter().sum();
        looks.push(format!(
            "{total}/{}",
            now.iter().map(|f| f.published).sum::<u64>()
        ));
        let spread = now.iter().all(|f| f.published == total - f.local);
        let since = match &stable {
            Some((at, l)) if *l == locals => *at,
            _ => stable.insert((Instant::now(), locals)).0,
        };
        if total > 0 && spread && since.elapsed() >= pass {
            println!(
                "sync: exceptions found / learnt, all instances together, every 200 ms: {}",
                looks.join(" ")
            );
            return now;
        }
        assert!(
            t0.elapsed() < limit,
            "exceptions not spread after {limit:?}: {now:?}; found / learnt per look: {}",
            looks.join(" ")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

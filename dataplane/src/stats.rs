//! Per-worker counters.
//!
//! A worker counts into plain integers ([`Counters`]) and publishes them once per burst into
//! its own cache-line-aligned [`SharedCounters`] with relaxed atomic stores: readers (the
//! control plane, final reports) never touch the worker's cache lines while it counts, and
//! the worker never executes a locked instruction.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::verdict::DropReason;

/// A worker's own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Frames received from ports.
    pub rx: u64,
    /// Frames received from other workers (flows this worker owns).
    pub handoff_in: u64,
    /// Frames transmitted (forwarded or replies).
    pub tx: u64,
    /// Frames handed to the worker that owns their flow.
    pub handoff_out: u64,
    /// Frames given to the slow path.
    pub to_slowpath: u64,
    /// Frames the slow path gave this worker to transmit.
    pub from_slowpath: u64,
    /// Frames forwarded to a backend.
    pub forwarded: u64,
    /// Replies built (ARP, ICMP echo, RST, ICMP unreachable).
    pub replies: u64,
    /// Of the replies: TCP RSTs for an empty pool.
    pub resets: u64,
    /// New flows created.
    pub flows_created: u64,
    /// Flows whose backend became unusable and were sent to a new choice.
    pub flows_rescheduled: u64,
    /// Flows evicted from a full table.
    pub flows_evicted: u64,
    /// Flows reaped after their idle timeout.
    pub flows_expired: u64,
    /// Flows currently in the table (a gauge).
    pub flows_active: u64,
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            rx: 0,
            handoff_in: 0,
            tx: 0,
            handoff_out: 0,
            to_slowpath: 0,
            from_slowpath: 0,
            forwarded: 0,
            replies: 0,
            resets: 0,
            flows_created: 0,
            flows_rescheduled: 0,
            flows_evicted: 0,
            flows_expired: 0,
            flows_active: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl Counters {
    #[inline(always)]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// `rx + handoff_in + from_slowpath == tx + handoff_out + to_slowpath + drops`: every
    /// packet accounted.
    pub fn balanced(&self) -> bool {
        self.rx + self.handoff_in + self.from_slowpath
            == self.tx + self.handoff_out + self.to_slowpath + self.dropped()
    }

    /// Adds another worker's counters (for totals).
    pub fn add(&mut self, o: &Counters) {
        for (name, v) in o.fields() {
            *self.field_mut(name).expect("field of the same type") += v;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }

    /// The scalar counters by name, in a stable order.
    pub fn fields(&self) -> [(&'static str, u64); SCALARS] {
        [
            ("rx", self.rx),
            ("handoff_in", self.handoff_in),
            ("tx", self.tx),
            ("handoff_out", self.handoff_out),
            ("to_slowpath", self.to_slowpath),
            ("from_slowpath", self.from_slowpath),
            ("forwarded", self.forwarded),
            ("replies", self.replies),
            ("resets", self.resets),
            ("flows_created", self.flows_created),
            ("flows_rescheduled", self.flows_rescheduled),
            ("flows_evicted", self.flows_evicted),
            ("flows_expired", self.flows_expired),
            ("flows_active", self.flows_active),
        ]
    }

    fn field_mut(&mut self, name: &str) -> Option<&mut u64> {
        Some(match name {
            "rx" => &mut self.rx,
            "handoff_in" => &mut self.handoff_in,
            "tx" => &mut self.tx,
            "handoff_out" => &mut self.handoff_out,
            "to_slowpath" => &mut self.to_slowpath,
            "from_slowpath" => &mut self.from_slowpath,
            "forwarded" => &mut self.forwarded,
            "replies" => &mut self.replies,
            "resets" => &mut self.resets,
            "flows_created" => &mut self.flows_created,
            "flows_rescheduled" => &mut self.flows_rescheduled,
            "flows_evicted" => &mut self.flows_evicted,
            "flows_expired" => &mut self.flows_expired,
            "flows_active" => &mut self.flows_active,
            _ => return None,
        })
    }

    fn to_words(self) -> [u64; WORDS] {
        let mut w = [0u64; WORDS];
        for (i, (_, v)) in self.fields().iter().enumerate() {
            w[i] = *v;
        }
        w[SCALARS..].copy_from_slice(&self.drops);
        w
    }

    fn from_words(w: &[u64; WORDS]) -> Counters {
        let mut c = Counters::default();
        let names = c.fields().map(|(n, _)| n);
        for (i, n) in names.iter().enumerate() {
            *c.field_mut(n).expect("own field") = w[i];
        }
        c.drops.copy_from_slice(&w[SCALARS..]);
        c
    }
}

const SCALARS: usize = 14;
const WORDS: usize = SCALARS + DropReason::COUNT;

/// One worker's published counters, read by anyone.
#[repr(align(64))]
pub struct SharedCounters {
    words: [AtomicU64; WORDS],
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters {
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SharedCounters {
    /// Called by the owning worker only (single writer): plain relaxed stores.
    pub fn publish(&self, c: &Counters) {
        for (slot, v) in self.words.iter().zip(c.to_words()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy for reporting (each counter is exact; they may be a burst
    /// apart from each other while the worker runs).
    pub fn read(&self) -> Counters {
        let w: [u64; WORDS] = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
        Counters::from_words(&w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_read_round_trips() {
        let mut c = Counters {
            rx: 10,
            tx: 7,
            to_slowpath: 1,
            flows_active: 3,
            ..Default::default()
        };
        c.drop(DropReason::NotVip);
        c.drop(DropReason::NotVip);
        let s = SharedCounters::default();
        s.publish(&c);
        assert_eq!(s.read(), c);
        assert!(c.balanced());
        c.rx += 1;
        assert!(!c.balanced());
    }

    #[test]
    fn add_sums_every_field() {
        let mut a = Counters {
            rx: 1,
            resets: 2,
            ..Default::default()
        };
        a.drop(DropReason::Fragment);
        let b = a;
        a.add(&b);
        assert_eq!(a.rx, 2);
        assert_eq!(a.resets, 4);
        assert_eq!(a.drops[DropReason::Fragment as usize], 2);
    }
}

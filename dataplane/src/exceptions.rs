//! Flows another instance placed on a backend that Maglev would no longer choose for them
//! (instance sync, `[global.sync]`): the read-only table a worker's flow-table miss consults
//! before Maglev, the cell it is published in, and the bounded queue on which a worker's
//! expiry sweep reports its own such flows to the slow path.
//!
//! - [`ExceptionTable`] is built by the slow path and never changes after: open addressing
//!   with linear probing in one boxed slice (at most half full), so a lookup reads one or
//!   two cache lines, takes no lock, allocates nothing. Its backends are this instance's ids.
//! - [`ExceptionCell`] publishes it as the snapshot is published (one atomic pointer swap;
//!   the slow path keeps the old table until no worker holds it, so freeing never falls on
//!   a worker). A miss pays one relaxed load while the table is empty, and an `arc-swap`
//!   load and a probe otherwise; a flow-table hit pays nothing.
//! - [`Reports`] is a bounded lock-free queue per worker (`crossbeam-queue`'s `ArrayQueue`):
//!   a worker's push never waits and never allocates; when it is full the report is dropped
//!   and counted, and the next sweep pass reports the flow again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::flow::FlowKey;
use crate::hash;
use crate::ids::BackendId;

/// One exception as a worker uses it: the flow, the backend it keeps (this instance's id),
/// and the peer that told of it (its index in `[global.sync] peers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    pub key: FlowKey,
    pub backend: BackendId,
    pub peer: u8,
}

/// `family` of an empty slot (never a valid key's).
const FREE: u8 = 0;

/// The read-only table of exceptions learnt from peers. See the module documentation.
#[derive(Debug)]
pub struct ExceptionTable {
    slots: Box<[Exception]>,
    len: usize,
    seed: u64,
}

impl ExceptionTable {
    /// A table with nothing in it (and no memory beyond the struct).
    pub fn empty() -> ExceptionTable {
        ExceptionTable {
            slots: Box::new([]),
            len: 0,
            seed: 0,
        }
    }

    /// A table of `entries` (a key given twice keeps its last backend), hashed with `seed`.
    pub fn build(entries: &[Exception], seed: u64) -> ExceptionTable {
        if entries.is_empty() {
            return ExceptionTable::empty();
        }
        let n = (entries.len() * 2).next_power_of_two();
        let free = Exception {
            key: FlowKey {
                src: [0; 16],
                dst: [0; 16],
                sport: 0,
                dport: 0,
                proto: 0,
                family: FREE,
            },
            backend: BackendId::NONE,
            peer: 0,
        };
        let mut slots = vec![free; n].into_boxed_slice();
        let mut len = 0;
        for e in entries.iter().filter(|e| e.key.family != FREE) {
            let mut i = hash::table_hash(seed, &e.key) as usize & (n - 1);
            loop {
                let s = &mut slots[i];
                if s.key.family == FREE {
                    *s = *e;
                    len += 1;
                    break;
                }
                if s.key == e.key {
                    *s = *e;
                    break;
                }
                i = (i + 1) & (n - 1);
            }
        }
        ExceptionTable { slots, len, seed }
    }

    /// The exception of `key`, if a peer told of one.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<&Exception> {
        if self.len == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash::table_hash(self.seed, key) as usize & mask;
        // At most half full: an empty slot ends every probe.
        loop {
            let s = &self.slots[i];
            if s.key.family == FREE {
                return None;
            }
            if s.key.same(key) {
                return Some(s);
            }
            i = (i + 1) & mask;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every exception, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Exception> {
        self.slots.iter().filter(|s| s.key.family != FREE)
    }
}

/// The published [`ExceptionTable`]: one atomic pointer, and its size beside it so that a
/// miss with no exceptions anywhere costs one relaxed load.
pub struct ExceptionCell {
    inner: ArcSwap<ExceptionTable>,
    len: AtomicUsize,
}

impl Default for ExceptionCell {
    fn default() -> Self {
        ExceptionCell {
            inner: ArcSwap::from_pointee(ExceptionTable::empty()),
            len: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for ExceptionCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExceptionCell({} held)",
            self.len.load(Ordering::Relaxed)
        )
    }
}

impl ExceptionCell {
    /// The backend a peer placed `key` on, if any (lock-free; for a worker's miss).
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<Exception> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.inner.load().lookup(key).copied()
    }

    /// Publishes `t` and hands back the table it replaces, so the caller frees it (on its
    /// own thread, once no worker holds it: `Arc::strong_count` falls to 1).
    pub fn swap(&self, t: ExceptionTable) -> Arc<ExceptionTable> {
        let len = t.len();
        let old = self.inner.swap(Arc::new(t));
        self.len.store(len, Ordering::Relaxed);
        old
    }

    /// The table in force.
    pub fn load_full(&self) -> Arc<ExceptionTable> {
        self.inner.load_full()
    }
}

/// What a worker's sweep found: a flow of its table whose backend is not the one Maglev
/// would pick for it now (or such a flow closing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub key: FlowKey,
    pub backend: BackendId,
    /// The flow is closing (FIN or RST seen): peers may forget it.
    pub closing: bool,
}

/// One worker's reports to the slow path: bounded, lock-free, never waits.
pub struct Reports {
    queue: crossbeam_queue::ArrayQueue<Report>,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reports({}/{})", self.queue.len(), self.queue.capacity())
    }
}

impl Reports {
    /// A queue of at most `cap` reports (at least 1).
    pub fn new(cap: usize) -> Reports {
        Reports {
            queue: crossbeam_queue::ArrayQueue::new(cap.max(1)),
        }
    }

    /// The worker's side: false (the report is dropped) when the queue is full.
    #[inline]
    pub fn push(&self, r: Report) -> bool {
        self.queue.push(r).is_ok()
    }

    /// The slow path's side.
    pub fn pop(&self) -> Option<Report> {
        self.queue.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: u16, b: u32) -> Exception {
        Exception {
            key: FlowKey::v4([10, 1, 0, 2], [10, 0, 0, 100], n, 80, 6),
            backend: BackendId::new(b),
            peer: (n % 3) as u8,
        }
    }

    #[test]
    fn finds_every_entry_and_nothing_else() {
        let entries: Vec<Exception> = (1..=1000).map(|n| ex(n, u32::from(n))).collect();
        let t = ExceptionTable::build(&entries, 42);
        assert_eq!(t.len(), 1000);
        assert!(t.slots.len() >= 2000, "at most half full");
        for e in &entries {
            assert_eq!(t.lookup(&e.key), Some(e));
        }
        for n in 1001..3000 {
            assert_eq!(t.lookup(&ex(n, 0).key), None);
        }
        let v6 = FlowKey::v6([1; 16], [2; 16], 1, 80, 6);
        assert_eq!(t.lookup(&v6), None);
        assert_eq!(t.iter().count(), 1000);
    }

    #[test]
    fn a_key_given_twice_keeps_the_last() {
        let t = ExceptionTable::build(&[ex(7, 1), ex(7, 2)], 1);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.lookup(&ex(7, 0).key).map(|e| e.backend),
            Some(BackendId::new(2))
        );
    }

    #[test]
    fn the_cell_publishes_and_an_empty_one_answers_none() {
        let c = ExceptionCell::default();
        assert_eq!(c.lookup(&ex(1, 0).key), None);
        let old = c.swap(ExceptionTable::build(&[ex(1, 5)], 3));
        assert!(old.is_empty());
        assert_eq!(
            c.lookup(&ex(1, 0).key).map(|e| e.backend),
            Some(BackendId::new(5))
        );
        c.swap(ExceptionTable::empty());
        assert_eq!(c.lookup(&ex(1, 0).key), None);
    }

    #[test]
    fn reports_are_bounded() {
        let r = Reports::new(2);
        let rep = Report {
            key: ex(1, 0).key,
            backend: BackendId::new(1),
            closing: false,
        };
        assert!(r.push(rep));
        assert!(r.push(rep));
        assert!(!r.push(rep));
        assert_eq!(r.pop(), Some(rep));
    }
}

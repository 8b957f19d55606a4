//! FullNAT's local ports: one worker's share of `[global.fullnat] local_ports` on each local
//! address, handed out and taken back in O(1), without a lock and without allocating per
//! packet.
//!
//! # Ownership
//!
//! The range is cut into one contiguous share per worker ([`share`]); a worker opens flows
//! only from its own share, so the worker that owns a backend's reply is a function of the
//! reply's destination port alone ([`owner`]), and a reply that the NIC delivered elsewhere
//! is handed to it in software, as NAT's are. Two workers never hand out the same local
//! address and port, so no tuple is ever opened twice.
//!
//! # Reuse
//!
//! Each (worker, local address) has a ring of its free ports in the order they were freed,
//! each stamped with the time it was freed. A new flow takes the ring's head only if that
//! port has rested `quiet_ms` since (the head is the longest-rested port: if it has not, none
//! has, and the pool is exhausted for now). A flow's port goes back to the tail when its
//! entry leaves the table (expiry, eviction, rescheduling), so a port is reused only after
//! its flow is closed (the entry outlives the connection by the closing timeout), the quiet
//! time has passed, and every other free port of the ring was reused first.
//!
//! The rings are built when a snapshot names a new local address (once per address and
//! range, by the worker, between packets), never for a packet.

use std::ops::RangeInclusive;

use crate::snapshot::IpKey;

/// Worker `worker`'s share of `range` among `workers`: equal contiguous parts, the last
/// taking the remainder. Empty when there are more workers than ports.
pub fn share(range: &RangeInclusive<u16>, worker: u16, workers: u16) -> RangeInclusive<u16> {
    let (first, count) = (u32::from(*range.start()), range_len(range));
    let workers = u32::from(workers.max(1));
    let each = count / workers;
    let w = u32::from(worker);
    if each == 0 || w >= workers {
        #[allow(clippy::reversed_empty_ranges)] // an empty range, on purpose
        return 1..=0;
    }
    let start = first + w * each;
    let end = if w + 1 == workers {
        first + count - 1
    } else {
        start + each - 1
    };
    start as u16..=end as u16
}

/// The worker whose share of `range` holds `port` (`None`: outside the range).
#[inline]
pub fn owner(range: &RangeInclusive<u16>, workers: u16, port: u16) -> Option<u16> {
    if !range.contains(&port) {
        return None;
    }
    let workers = u32::from(workers.max(1));
    let each = (range_len(range) / workers).max(1);
    let w = (u32::from(port - range.start()) / each).min(workers - 1);
    Some(w as u16)
}

fn range_len(r: &RangeInclusive<u16>) -> u32 {
    (u32::from(*r.end()) + 1).saturating_sub(u32::from(*r.start()))
}

/// The free ports of one local address in this worker's share.
struct Pool {
    addr: IpKey,
    /// `(port, freed at ms)`, a ring of `cap` slots from `head`, `len` of them free.
    ring: Box<[(u16, u32)]>,
    head: u32,
    len: u32,
}

impl Pool {
    fn new(addr: IpKey, share: &RangeInclusive<u16>, now: u32, quiet_ms: u32) -> Pool {
        // Rested from the start.
        let rested = now.wrapping_sub(quiet_ms);
        let ring: Box<[(u16, u32)]> = share.clone().map(|p| (p, rested)).collect();
        let len = ring.len() as u32;
        Pool {
            addr,
            ring,
            head: 0,
            len,
        }
    }

    #[inline]
    fn cap(&self) -> u32 {
        self.ring.len() as u32
    }

    #[inline]
    fn pop(&mut self, now: u32, quiet_ms: u32) -> Option<u16> {
        if self.len == 0 {
            return None;
        }
        let (port, freed) = self.ring[self.head as usize];
        if now.wrapping_sub(freed) < quiet_ms {
            return None;
        }
        self.head = if self.head + 1 == self.cap() {
            0
        } else {
            self.head + 1
        };
        self.len -= 1;
        Some(port)
    }

    /// Takes the ports `held` marks (indexed by port, relative to `base`) out of the free
    /// ring, keeping the others in their order; the ring then starts at slot 0.
    fn drop_held(&mut self, base: u16, held: &[u64]) {
        let is_held = |p: u16| {
            let i = usize::from(p.wrapping_sub(base));
            held.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
        };
        let cap = self.cap();
        let free: Vec<(u16, u32)> = (0..self.len)
            .map(|i| self.ring[((self.head + i) % cap) as usize])
            .filter(|&(p, _)| !is_held(p))
            .collect();
        self.ring[..free.len()].copy_from_slice(&free);
        self.head = 0;
        self.len = free.len() as u32;
    }

    #[inline]
    fn push(&mut self, port: u16, now: u32) {
        if self.len == self.cap() {
            return; // already all free: a port given back twice is kept once
        }
        let mut at = self.head + self.len;
        if at >= self.cap() {
            at -= self.cap();
        }
        self.ring[at as usize] = (port, now);
        self.len += 1;
    }
}

/// One worker's local ports on every local address it has met.
pub struct LocalPorts {
    worker: u16,
    workers: u16,
    range: RangeInclusive<u16>,
    share: RangeInclusive<u16>,
    quiet_ms: u32,
    pools: Vec<Pool>,
}

/// Ports in use on one local address, for `ctl status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InUse {
    pub addr: IpKey,
    pub in_use: u32,
    pub share: u32,
}

impl LocalPorts {
    /// Worker `worker` of `workers`, with the configuration's defaults until [`sync`](Self::sync).
    pub fn new(worker: u16, workers: u16) -> LocalPorts {
        let d = conf::FullNatSettings::default();
        LocalPorts {
            worker,
            workers,
            share: share(&d.local_ports, worker, workers),
            range: d.local_ports,
            quiet_ms: d.port_quiet_ms,
            pools: Vec::new(),
        }
    }

    /// Takes a snapshot's settings and local addresses: a new range rebuilds every ring (a
    /// live flow's port outside the new share is then not taken back), a new address gets
    /// its ring. Called when the snapshot changes, not per packet. Whether a ring was made:
    /// the caller then [`hold`](Self::hold)s the ports its live flows have (a table adopted
    /// from the previous process holds pairs that these new rings count as free).
    pub fn sync(
        &mut self,
        range: &RangeInclusive<u16>,
        quiet_ms: u32,
        locals: &[IpKey],
        now: u32,
    ) -> bool {
        self.quiet_ms = quiet_ms;
        let mut made = false;
        if *range != self.range {
            self.range = range.clone();
            self.share = share(range, self.worker, self.workers);
            self.pools.clear();
        }
        for a in locals {
            if !self.pools.iter().any(|p| p.addr == *a) {
                self.pools.push(Pool::new(*a, &self.share, now, quiet_ms));
                made = true;
            }
        }
        made
    }

    /// Takes out of the free rings every `(local address, port)` in `held`: the ports of live
    /// flows (an adopted table's FullNAT pairs), which come back through
    /// [`give`](Self::give) when their flows leave. Ports outside this worker's share or on
    /// an address it has no ring for are ignored. Between packets: one pass over `held` and
    /// one over each ring.
    pub fn hold(&mut self, held: impl IntoIterator<Item = (IpKey, u16)>) {
        let base = *self.share.start();
        let words = (range_len(&self.share) as usize).div_ceil(64);
        let mut marks: Vec<Vec<u64>> = self.pools.iter().map(|_| vec![0; words]).collect();
        let mut any = false;
        for (addr, port) in held {
            if !self.share.contains(&port) {
                continue;
            }
            if let Some(i) = self.pools.iter().position(|p| p.addr == addr) {
                let bit = usize::from(port - base);
                marks[i][bit / 64] |= 1 << (bit % 64);
                any = true;
            }
        }
        if any {
            for (pool, m) in self.pools.iter_mut().zip(&marks) {
                pool.drop_held(base, m);
            }
        }
    }

    /// The whole range, whose ports replies are recognised by.
    #[inline]
    pub fn range(&self) -> &RangeInclusive<u16> {
        &self.range
    }

    /// The worker that owns a reply to local port `port`.
    #[inline]
    pub fn owner(&self, port: u16) -> Option<u16> {
        owner(&self.range, self.workers, port)
    }

    /// A rested free port on `addr`, taken; `None` when none is (exhausted, or an address
    /// this worker was not told of).
    #[inline]
    pub fn take(&mut self, addr: IpKey, now: u32) -> Option<u16> {
        let quiet = self.quiet_ms;
        self.pools
            .iter_mut()
            .find(|p| p.addr == addr)?
            .pop(now, quiet)
    }

    /// [`take`](Self::take) for a NIC that hashes: a rested free port on `addr` whose reply
    /// `admits` (reaches this worker's queue: [`crate::rss::ReplySteer::queue`]), among at
    /// most `tries` of them; the ports passed over go back to the tail with the time they
    /// were freed (a rested one may then wait behind a resting one: an early "exhausted",
    /// never an early reuse).
    pub fn take_where(
        &mut self,
        addr: IpKey,
        now: u32,
        tries: usize,
        admits: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        let quiet = self.quiet_ms;
        let pool = self.pools.iter_mut().find(|p| p.addr == addr)?;
        for _ in 0..tries.min(pool.len as usize) {
            let freed = pool.ring[pool.head as usize].1;
            let port = pool.pop(now, quiet)?;
            if admits(port) {
                return Some(port);
            }
            pool.push(port, freed);
        }
        None
    }

    /// Gives back `port` on `addr`, freed at `now`. Ports outside this worker's share (a
    /// range changed by a reload) are not kept.
    #[inline]
    pub fn give(&mut self, addr: IpKey, port: u16, now: u32) {
        if !self.share.contains(&port) {
            return;
        }
        if let Some(p) = self.pools.iter_mut().find(|p| p.addr == addr) {
            p.push(port, now);
        }
    }

    /// Ports in use per local address.
    pub fn in_use(&self) -> impl Iterator<Item = InUse> + '_ {
        self.pools.iter().map(|p| InUse {
            addr: p.addr,
            in_use: p.cap() - p.len,
            share: p.cap(),
        })
    }

    /// Ports in use over every local address.
    pub fn total_in_use(&self) -> u64 {
        self.pools.iter().map(|p| u64::from(p.cap() - p.len)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_partition_the_range_and_owner_inverts_them() {
        let range = 1024..=32767u16;
        for workers in [1u16, 2, 3, 7] {
            let mut seen = 0u32;
            for w in 0..workers {
                let s = share(&range, w, workers);
                seen += range_len(&s);
                for p in [*s.start(), *s.end()] {
                    assert_eq!(
                        owner(&range, workers, p),
                        Some(w),
                        "{workers} workers, port {p}"
                    );
                }
            }
            assert_eq!(seen, range_len(&range));
        }
        assert_eq!(owner(&range, 2, 1023), None);
        assert_eq!(owner(&range, 2, 32768), None);
    }

    #[test]
    fn a_freed_port_rests_and_comes_back_last() {
        let a = IpKey::v4([10, 0, 0, 2]);
        let mut lp = LocalPorts::new(0, 1);
        lp.sync(&(2000..=2002), 2000, &[a], 10_000);
        let got: Vec<u16> = (0..3).map(|_| lp.take(a, 10_000).unwrap()).collect();
        assert_eq!(got, [2000, 2001, 2002]);
        assert_eq!(lp.take(a, 10_000), None, "exhausted");
        assert_eq!(lp.total_in_use(), 3);
        lp.give(a, 2001, 10_000);
        lp.give(a, 2000, 10_500);
        assert_eq!(lp.take(a, 11_999), None, "not rested yet");
        assert_eq!(lp.take(a, 12_000), Some(2001));
        assert_eq!(lp.take(a, 12_000), None, "2000 rests until 12500");
        assert_eq!(lp.take(a, 12_500), Some(2000));
        assert_eq!(
            lp.take(IpKey::v4([10, 0, 0, 3]), 20_000),
            None,
            "unknown address"
        );
        lp.give(a, 9, 0); // outside the share: ignored
        assert_eq!(lp.total_in_use(), 3);
    }

    /// A table adopted from the previous process holds FullNAT pairs that new rings count
    /// as free: `hold` takes their ports out, the others keep their order, and a held port
    /// comes back (once) when its flow leaves.
    #[test]
    fn held_ports_of_adopted_flows_are_not_handed_out() {
        let (a, b) = (IpKey::v4([10, 0, 0, 2]), IpKey::v4([10, 0, 0, 3]));
        let mut lp = LocalPorts::new(0, 1);
        assert!(lp.sync(&(2000..=2005), 0, &[a, b], 10_000), "rings made");
        assert!(!lp.sync(&(2000..=2005), 0, &[a, b], 10_000), "nothing new");
        // 2001 and 2004 on a, 2002 on b; one outside the share and one on an unknown address.
        lp.hold([
            (a, 2001),
            (a, 2004),
            (b, 2002),
            (a, 9),
            (IpKey::v4([10, 0, 0, 9]), 2003),
        ]);
        assert_eq!(lp.total_in_use(), 3);
        let got: Vec<u16> = std::iter::from_fn(|| lp.take(a, 10_000)).collect();
        assert_eq!(got, [2000, 2002, 2003, 2005]);
        let got: Vec<u16> = std::iter::from_fn(|| lp.take(b, 10_000)).collect();
        assert_eq!(got, [2000, 2001, 2003, 2004, 2005]);
        lp.give(a, 2004, 10_000);
        assert_eq!(lp.take(a, 10_000), Some(2004));
        assert_eq!(lp.take(a, 10_000), None);
    }

    /// With a NIC that hashes (Fulcrum's symmetric key, a 128-entry RETA over 2 queues),
    /// every port worker 1 takes for a backend has a reply that the reference Toeplitz hash
    /// of the whole reply tuple sends to queue 1, until none is left; the ports passed over
    /// stay free for the other queue's backends.
    #[test]
    fn ports_taken_for_a_queue_hash_to_it() {
        use crate::rss::{ReplySteer, SYMMETRIC_KEY, toeplitz, tuple_input};
        let reta: Box<[u16]> = (0..128u16).map(|i| i % 2).collect();
        let steer = ReplySteer::new(SYMMETRIC_KEY, reta.clone());
        let (local, backend): (std::net::IpAddr, std::net::IpAddr) =
            ("10.1.0.1".parse().unwrap(), "10.1.0.11".parse().unwrap());
        let a = IpKey::from(local);
        let mut lp = LocalPorts::new(0, 1);
        lp.sync(&(20000..=20255), 0, &[a], 0);
        let base = steer.base(backend, 8080, local);
        let mut got = Vec::new();
        while let Some(p) = lp.take_where(a, 0, 8, |p| steer.queue(base, false, p) == 1) {
            let (input, n) = tuple_input(backend, local, 8080, p);
            assert_eq!(
                reta[toeplitz(&SYMMETRIC_KEY, &input[..n]) as usize & 127],
                1,
                "{p}"
            );
            got.push(p);
        }
        assert!(got.len() > 64, "{} ports for queue 1 of 256", got.len());
        assert_eq!(lp.total_in_use(), got.len() as u64);
    }
}

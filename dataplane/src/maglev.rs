//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted as in Katran's MaglevV2.
//!
//! The control plane builds a [`Table`] of `M` (prime) slots, each holding the index of a
//! member; a worker picks a new flow's backend with one [`Table::lookup`]: `hash % M`.
//!
//! # The table is a function of (member keys, weights, M, seed) only
//!
//! Every Fulcrum instance with the same configuration must build a byte-identical table
//! (ECMP may send a flow's packets to any of them), and a reload that changes one backend
//! should move as few flows as possible. So:
//!
//! - A member's permutation comes from its stable `key` (its name), never from its position:
//!   `offset = h1(key) % M`, `skip = h2(key) % (M - 1) + 1`, where `h1`/`h2` are
//!   [`hash_bytes`] under two seeds derived from the configured seed. Since `M` is prime,
//!   every member's sequence `offset + j * skip (mod M)` visits every slot.
//! - Members are filled in the order of their keys (bytewise), whatever order the caller's
//!   slice is in; the table holds indices *into the caller's slice* (translated back).
//! - Weighted fill (MaglevV2): in each round every member adds its weight to a credit, and
//!   takes its next free preferred slot whenever its credit reaches the largest weight (then
//!   pays that weight back); rounds repeat until all `M` slots are taken. Over a fill, member
//!   `i` takes `M * w_i / sum(w)` slots within a slot or two, so shares follow weights; with
//!   equal weights this is the paper's round-robin (every member gets `floor` or `ceil` of
//!   `M / N`). Members of weight 0 take no slot.
//!
//! The golden-table test pins the output: a change to it reshuffles every flow of every
//! service on upgrade and splits ECMP'd instances of mixed versions.
//!
//! # Cost
//!
//! A fill does `M` placements. Walking a member's permutation to its next free slot costs
//! about `M / free` probes, `M ln M` over the fill; probes test a `taken` bitset (8 KiB at
//! M = 65537, 80 KiB at 655373: L1/L2) with `u32` position arithmetic and a conditional
//! subtract instead of a division. A third to a half of those probes fall in the last
//! ~`sqrt(M)` slots, so from there on the fill instead scans the few free slots and takes the one earliest in the
//! member's permutation (same choice, `O(free)` per slot; see `Filler::place_tail`). When
//! weights are very uneven (one 65535 among many 1s), most members idle through most rounds
//! and the round loop would cost `rounds * members`, so the fill switches to a priority queue
//! of (next firing round, rank) that produces the same sequence. Tests check every path
//! against a plain transcription of Katran's loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use conf::is_prime;

use crate::hash::hash_bytes;

/// One candidate backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// Stable identity, e.g. the backend's name. Unique within a table.
    pub key: &'a [u8],
    /// Relative share of slots; 0 takes none.
    pub weight: u32,
}

/// The most members a table can index (slot values are `u16`).
pub const MAX_MEMBERS: usize = u16::MAX as usize;

/// Largest accepted table size: keeps `pos + skip` inside `u32`.
pub const MAX_SIZE: u32 = (1 << 31) - 1;

/// A Maglev lookup table. Immutable once built; shared by all workers through the snapshot.
#[derive(Clone, PartialEq, Eq)]
pub struct Table {
    /// Member index (into the slice given to [`Table::build`]) of every slot; empty when no
    /// member takes flows.
    entries: Box<[u16]>,
    size: u32,
}

/// How the fill walks members; the same sequence either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Rounds,
    Heap,
}

/// Average member visits per slot (`max_w * n / sum_w`) above which the priority queue beats
/// the round loop. Measured (N=100..1000, M=65537..655373): the round loop wins at 5
/// (1.8 vs 4.7 ms), they tie around 50, the heap wins by 100x at ~1000 (one weight 65535 among
/// 999 weights of 1: 727 ms vs 5.8 ms at M=655373).
const HEAP_ABOVE: u64 = 16;

impl Table {
    /// A table whose lookups all miss.
    pub fn empty(size: u32) -> Table {
        Table {
            entries: Box::new([]),
            size: size.max(1),
        }
    }

    /// Builds the table for `members` (any order; keys unique) with `size` slots (prime) and
    /// the configured `seed`.
    ///
    /// Panics if `size` is not a prime in `2..=MAX_SIZE` or there are more than
    /// [`MAX_MEMBERS`] members: configuration validation rules both out, and a non-prime size
    /// would otherwise loop forever.
    pub fn build(members: &[Member], size: u32, seed: u64) -> Table {
        Self::build_with(members, size, seed, None, None)
    }

    /// `force`/`force_tail` pin the fill strategy and tail switch point, for tests showing
    /// they never change the result.
    fn build_with(
        members: &[Member],
        size: u32,
        seed: u64,
        force: Option<Fill>,
        force_tail: Option<u32>,
    ) -> Table {
        assert!(
            (2..=MAX_SIZE).contains(&size) && is_prime(size),
            "Maglev table size {size} is not a prime <= {MAX_SIZE}"
        );
        assert!(
            members.len() <= MAX_MEMBERS,
            "{} Maglev members, at most {MAX_MEMBERS}",
            members.len()
        );

        // Fill order: by key, so the caller's order never matters.
        let mut order: Vec<u16> = (0..members.len() as u16).collect();
        order.sort_unstable_by(|&a, &b| members[a as usize].key.cmp(members[b as usize].key));
        debug_assert!(
            order
                .windows(2)
                .all(|w| members[w[0] as usize].key != members[w[1] as usize].key),
            "duplicate Maglev member key"
        );
        order.retain(|&i| members[i as usize].weight > 0);
        if order.is_empty() {
            return Table::empty(size);
        }

        let m = size;
        let (seed_offset, seed_skip) = derived_seeds(seed);
        let mut offset = Vec::with_capacity(order.len());
        let mut skip = Vec::with_capacity(order.len());
        let mut weight = Vec::with_capacity(order.len());
        for &i in &order {
            let mb = &members[i as usize];
            offset.push((hash_bytes(seed_offset, mb.key) % u64::from(m)) as u32);
            skip.push((hash_bytes(seed_skip, mb.key) % u64::from(m - 1)) as u32 + 1);
            weight.push(u64::from(mb.weight));
        }
        let mut filler = Filler::new(m, offset, skip, order, force_tail);

        let max_w = weight.iter().copied().max().unwrap_or(1);
        let sum_w: u64 = weight.iter().sum();
        let visits_per_slot = max_w * weight.len() as u64 / sum_w;
        let fill = force.unwrap_or(if visits_per_slot > HEAP_ABOVE {
            Fill::Heap
        } else {
            Fill::Rounds
        });
        match fill {
            Fill::Rounds => fill_rounds(&mut filler, &weight, max_w),
            Fill::Heap => fill_heap(&mut filler, &weight, max_w),
        }
        Table {
            entries: filler.entries.into_boxed_slice(),
            size,
        }
    }

    /// The member (index into the slice the table was built from) for a flow hash, or `None`
    /// when no member takes flows.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<u16> {
        // `size` is never 0; an empty table's `get` misses.
        self.entries
            .get((hash % u64::from(self.size)) as usize)
            .copied()
    }

    /// `M`, the number of slots.
    #[inline]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Every slot's member index; empty when no member takes flows.
    #[inline]
    pub fn entries(&self) -> &[u16] {
        &self.entries
    }

    /// Slots per member index (`n` = the members slice's length).
    pub fn counts(&self, n: usize) -> Vec<u32> {
        let mut c = vec![0u32; n];
        for &e in self.entries.iter() {
            c[e as usize] += 1;
        }
        c
    }

    /// How many slots changed owner (by member key) from `self` (built from `members`) to
    /// `new` (built from `new_members`): the "N Maglev entries changed" of a reload. A
    /// different size or a table becoming (non-)empty counts every slot.
    pub fn changed_entries(&self, members: &[Member], new: &Table, new_members: &[Member]) -> u32 {
        if self.size != new.size || self.entries.is_empty() != new.entries.is_empty() {
            return self.size.max(new.size);
        }
        self.entries
            .iter()
            .zip(new.entries.iter())
            .filter(|&(&a, &b)| members[a as usize].key != new_members[b as usize].key)
            .count() as u32
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("size", &self.size)
            .field("empty", &self.entries.is_empty())
            .finish()
    }
}

/// The two seeds of `h1` (offset) and `h2` (skip), from the configured seed. Frozen.
fn derived_seeds(seed: u64) -> (u64, u64) {
    (
        hash_bytes(seed, b"maglev-offset"),
        hash_bytes(seed, b"maglev-skip"),
    )
}

/// The fill's state. Ranks index `pos`, `skip`, `offset`, `inv` and `order` (members sorted
/// by key).
struct Filler {
    m: u32,
    /// Slots still free.
    left: u32,
    /// Switch to the tail search when `left` is at most this.
    tail_at: u32,
    taken: Vec<u64>,
    entries: Vec<u16>,
    /// Next candidate slot of each rank.
    pos: Vec<u32>,
    offset: Vec<u32>,
    skip: Vec<u32>,
    /// `skip^-1 mod m` of each rank, 0 until the tail needs it.
    inv: Vec<u32>,
    /// Rank -> caller's member index.
    order: Vec<u16>,
    /// The free slots, once in the tail.
    free: Vec<u32>,
    barrett: Barrett,
}

impl Filler {
    fn new(
        m: u32,
        offset: Vec<u32>,
        skip: Vec<u32>,
        order: Vec<u16>,
        force_tail: Option<u32>,
    ) -> Filler {
        let n = order.len();
        // Probing for the next free slot costs ~m / left probes; scanning the `left` free slots
        // costs `left` multiply-reduce steps (~3 probes each, measured). The sum over the fill
        // is least when switching at left ~ sqrt(m / 3).
        let tail_at = force_tail.unwrap_or_else(|| (f64::from(m) / 3.0).sqrt() as u32);
        Filler {
            m,
            left: m,
            tail_at,
            taken: vec![0u64; (m as usize).div_ceil(64)],
            entries: vec![0u16; m as usize],
            pos: offset.clone(),
            offset,
            skip,
            inv: vec![0; n],
            order,
            free: Vec::with_capacity(tail_at as usize),
            barrett: Barrett::new(m),
        }
    }

    /// Rank `r` takes the first free slot of its permutation. There must be one.
    #[inline(always)]
    fn place(&mut self, r: usize) {
        if self.left > self.tail_at {
            self.probe(r);
        } else {
            self.place_tail(r);
        }
        self.left -= 1;
    }

    /// The paper's walk: `pos, pos + skip, ...` until a free slot. (Unrolling it two steps
    /// per iteration to halve the loop-carried add-and-wrap measured no gain: the cost is the
    /// loop exit's branch miss, one per placement.)
    #[inline(always)]
    fn probe(&mut self, r: usize) {
        let (m, skip) = (self.m, self.skip[r]);
        let mut p = self.pos[r];
        while self.taken[(p / 64) as usize] & (1 << (p % 64)) != 0 {
            p += skip;
            if p >= m {
                p -= m;
            }
        }
        self.taken[(p / 64) as usize] |= 1 << (p % 64);
        self.entries[p as usize] = self.order[r];
        p += skip;
        if p >= m {
            p -= m;
        }
        self.pos[r] = p;
    }

    /// The same choice once few slots are free: slot `s` is at step
    /// `j = (s - offset) * skip^-1 mod m` of rank `r`'s permutation; every slot at a step the
    /// walk has passed is taken (slots never free up), so the free slot with the least `j` is
    /// the one the walk would reach first.
    #[cold]
    fn place_tail(&mut self, r: usize) {
        if self.free.is_empty() {
            for (w, &bits) in self.taken.iter().enumerate() {
                let mut free = !bits;
                while free != 0 {
                    let p = w as u32 * 64 + free.trailing_zeros();
                    if p < self.m {
                        self.free.push(p);
                    }
                    free &= free - 1;
                }
            }
            debug_assert_eq!(self.free.len(), self.left as usize);
        }
        if self.inv[r] == 0 {
            self.inv[r] = mod_inverse(self.skip[r], self.m);
        }
        let (m, off, inv) = (self.m, self.offset[r], u64::from(self.inv[r]));
        let mut best = (u32::MAX, 0);
        for (k, &s) in self.free.iter().enumerate() {
            let d = if s >= off { s - off } else { s + m - off };
            let j = self.barrett.reduce(u64::from(d) * inv);
            if j < best.0 {
                best = (j, k);
            }
        }
        let p = self.free.swap_remove(best.1);
        self.taken[(p / 64) as usize] |= 1 << (p % 64);
        self.entries[p as usize] = self.order[r];
    }
}

/// `x mod m` for `x < 2^62` without a division (`m` is fixed for a whole build).
#[derive(Clone, Copy)]
struct Barrett {
    m: u64,
    /// floor((2^64 - 1) / m)
    mu: u64,
}

impl Barrett {
    fn new(m: u32) -> Barrett {
        Barrett {
            m: u64::from(m),
            mu: u64::MAX / u64::from(m),
        }
    }

    /// The estimated quotient is short by at most one for `x < 2^62`.
    #[inline(always)]
    fn reduce(&self, x: u64) -> u32 {
        debug_assert!(x < 1 << 62);
        let q = ((u128::from(x) * u128::from(self.mu)) >> 64) as u64;
        let mut r = x - q * self.m;
        if r >= self.m {
            r -= self.m;
        }
        r as u32
    }
}

/// `a^-1 mod m` for prime `m` and `0 < a < m` (extended Euclid).
fn mod_inverse(a: u32, m: u32) -> u32 {
    let (mut r0, mut r1) = (i64::from(m), i64::from(a));
    let (mut t0, mut t1) = (0i64, 1i64);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    debug_assert_eq!(r0, 1, "{a} has no inverse mod {m}");
    t0.rem_euclid(i64::from(m)) as u32
}

/// Katran's loop: rounds over ranks in order; a rank fires when its credit reaches `max_w`.
fn fill_rounds(f: &mut Filler, weight: &[u64], max_w: u64) {
    let mut credit = vec![0u64; weight.len()];
    loop {
        for (r, (c, &w)) in credit.iter_mut().zip(weight).enumerate() {
            *c += w;
            if *c >= max_w {
                *c -= max_w;
                f.place(r);
                if f.left == 0 {
                    return;
                }
            }
        }
    }
}

/// The same firing sequence as [`fill_rounds`], driven by a min-heap of (round, rank). A rank
/// with credit `c` left after a firing fires again `wait = ceil((max_w - c) / w)` rounds later,
/// with `c + wait * w - max_w` left; starting from `c = 0` before round 0.
fn fill_heap(f: &mut Filler, weight: &[u64], max_w: u64) {
    // Credit left after each rank's scheduled firing.
    let mut credit = vec![0u64; weight.len()];
    let mut heap = BinaryHeap::with_capacity(weight.len());
    for (r, &w) in weight.iter().enumerate() {
        let wait = max_w.div_ceil(w);
        credit[r] = wait * w - max_w;
        heap.push(Reverse((wait - 1, r as u32)));
    }
    // Replacing the top in place sifts it down only as far as it must go: a dominant member
    // that fires every round stays on top at O(1) per slot.
    while let Some(mut top) = heap.peek_mut() {
        let Reverse((round, r)) = *top;
        f.place(r as usize);
        if f.left == 0 {
            return;
        }
        let (c, w) = (credit[r as usize], weight[r as usize]);
        let wait = (max_w - c).div_ceil(w);
        credit[r as usize] = c + wait * w - max_w;
        *top = Reverse((round + wait, r));
    }
}

#[cfg(test)]
mod tests;

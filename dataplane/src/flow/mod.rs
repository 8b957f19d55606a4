//! The per-worker flow table: which backend each live flow goes to, bounded, preallocated.
//!
//! # Layout
//!
//! - One array of 64-byte slots, each exactly one cache line holding a key and its [`Flow`],
//!   grouped in buckets of 8 consecutive slots, and beside it one 64-byte *head* a bucket
//!   ([`Head`]): a 2-byte lane a slot (whether it is taken, and its entry's tag), so that a
//!   miss reads a bucket's head, not its 8 slot lines, and a copy of each entry's age,
//!   state, link and bucket, so that eviction scores a bucket, and a move finds an entry's
//!   other bucket, from its head too: **72 bytes per entry** in
//!   all ([`FlowTable::memory_bytes`]), for a table of `ceil(cap / 8)` buckets.
//! - A key may live in two buckets (two-choice, set-associative): its first from the hash's
//!   low 32 bits, its second at an offset given by a 15-bit tag from the high bits. The tag
//!   also names the key's *home* slot: inserts take the first free slot from there (home,
//!   home + 1, ..., wrapping), the first bucket, then the second, so at the loads a balancer
//!   runs at most entries sit in their home slot. A lookup compares the home slot's key
//!   first (one cache line, which the caller can prefetch for a whole burst,
//!   [`FlowTable::prefetch`]); past it, each bucket's lanes (16 bytes of its head) name the
//!   slots whose key is worth comparing, so a miss reads two heads and compares no key.
//! - A flow is named by its slot index ([`FlowSlot`]). It stays put for its whole life unless an
//!   insert moves it to its other bucket to make room (see below); the entry's tag and
//!   which of its buckets it is in are kept in two bytes of its slot that would otherwise
//!   be padding, so a move needs no hash.
//!
//! Nothing allocates after [`FlowTable::with_capacity`].
//!
//! # Hash contract
//!
//! `hash` must be a pure function of the key for the life of the table: the same key always
//! comes with the same hash. (If the hash seed is reloaded live, flows inserted under the old
//! seed are no longer found under the new one: the caller should hash the table with a seed
//! that does not change, or keep using the old hash for the table.)
//!
//! # Admission and eviction (what operators see under a flood)
//!
//! - A new flow goes to a free slot of its first bucket, else of its second. If both are
//!   full while the table is not, one entry of those buckets that has a free slot in *its*
//!   other bucket moves there (the candidates and their other buckets read from the two
//!   heads), and the new flow takes its place. Only if none can move, or the table is so
//!   nearly full that a move is not looked for (fewer than 1 slot in [`MOVE_FREE_SHARE`]
//!   free), is an entry evicted early (counted like any eviction): with the 16 candidate
//!   slots this is rare below ~90% of the capacity (none in a 100k-operation churn test at
//!   73%). Inserting a key that is already present overwrites its entry in place
//!   (`Inserted::replaced`).
//! - When the table is full (`len == capacity`), the insert evicts one victim among the live
//!   entries of the new key's two buckets ([`EVICT_SCAN`] slots, chosen from the two heads,
//!   16 lanes at a time: the slot lines are read only for a linked entry's twin and for the
//!   victim):
//!   1. an **expired** entry (idle at least its state's timeout), if several the half-open
//!      or unconfirmed UDP ones first, then the least recently seen;
//!   2. else the least recently seen **half-open** (`TcpSynSeen`, `TcpClosing`) or
//!      **unconfirmed UDP** (`Udp`: one datagram seen) entry: a SYN or UDP flood displaces
//!      itself before established flows;
//!   3. else the least recently seen established TCP or confirmed UDP (`UdpConfirmed`)
//!      entry.
//!
//!   The victim is reported in [`Inserted::evicted`] with its reason, so the caller counts it.
//! - [`FlowTable::insert_probed_if_room`] admits only what needs no eviction (a free slot, or
//!   a move): the pipeline records a DSR TCP SYN with it, so a SYN flood evicts nothing and
//!   a real connection is recorded by its next packet.
//! - **Linked pairs** (NAT keeps a forward client->VIP entry and a reverse backend->client
//!   entry, [`FlowTable::link`]) live and die together: a pair has expired only when both
//!   halves have, its age is that of its most recently seen half, and removing, evicting or
//!   reaping one half removes the other. A move keeps the link.
//! - Aging is amortised: [`FlowTable::expire_step`] moves a hand over a bounded number of
//!   slots per call (the worker calls it once per burst); there is no full-table scan.
//! - An insert may evict or move any other entry: indices held across it must be rechecked
//!   ([`FlowTable::is_live`] and [`FlowTable::key`]). [`FlowTable::insert_pair`] inserts
//!   the reverse half of a NAT flow without evicting or moving the forward half.
//!
//! # Times
//!
//! `now` and `last_seen` are a coarse millisecond clock from the caller, compared with
//! `wrapping_sub`: it may wrap (every ~49.7 days) as long as no entry stays unexamined that
//! long; the hand passes every slot far more often than that.

//!
//! # Files
//!
//! `key.rs` (the flow key), `entry.rs` (an entry's state and timeouts), `probe.rs` (finding a
//! key: buckets, heads, prefetch), `insert.rs` (admission, moves), `evict.rs` (the victim of a
//! full table), `twins.rs` (NAT pairs and removal), `expiry.rs` (the paced hand and the
//! census); the table's layout and its accessors are here.

mod entry;
mod evict;
mod expiry;
mod insert;
mod key;
pub mod persist;
mod probe;
mod twins;

pub use entry::{Flow, FlowState, Timeouts};
pub use expiry::{Census, SWEEP_MS, SweepVisitor};
pub use key::{FlowKey, v4_addr, v4_of};

pub use crate::ids::{BackendId, FlowSlot, ServiceIdx};

use std::fmt;

use crate::mem::MappedSlots;

/// `Flow::twin` of an entry that is not linked.
pub const NO_TWIN: FlowSlot = FlowSlot::NONE;

/// [`Flow::flags`] bit the pipeline sets on the reverse half (backend -> client) of a NAT
/// pair, so that the [`Census`] counts a pair once, by its forward half.
pub const FLAG_REVERSE: u8 = 0x01;

/// `FlowKey::family` of an IPv4 flow.
pub const FAMILY_V4: u8 = 4;
/// `FlowKey::family` of an IPv6 flow.
pub const FAMILY_V6: u8 = 6;
/// `family` of a free slot (never a valid key).
const FAMILY_FREE: u8 = 0;

/// A move ([`FlowTable::relocate`]) is looked for only while at least 1 slot in this many is
/// free. With a share `f` of the slots free, each candidate's other bucket has a free slot
/// with a chance of about `8f`, so the 16 candidates find one about 9 times in 10 at
/// `f = 1/64` (after ~8 of them), 2 times in 3 at 1/128, 1 time in 8 at 1/1024: past the
/// bound most searches fail, each a read of up to 16 other buckets' heads, and the insert
/// evicts at once instead. Under churn at capacity the table then holds ~98.4% of it;
/// filling a table of 1M evicts as many entries early as with no bound (15,953), and 1/32
/// would evict 25,599 (perf/RESULTS.md §20).
pub(crate) const MOVE_FREE_SHARE: usize = 64;

/// How many slots a full table's insert examines to pick a victim: the new key's two
/// buckets.
pub const EVICT_SCAN: usize = 2 * WAYS;

/// Why an entry was evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictReason {
    /// It had expired (the expiry hand had not reached it yet).
    Expired,
    /// The least recently seen half-open TCP entry examined.
    HalfOpen,
    /// The least recently seen unconfirmed UDP entry examined (one packet seen).
    Udp,
    /// No expired, half-open or unconfirmed UDP entry was examined: the least recently seen
    /// established TCP or confirmed UDP ([`FlowState::UdpConfirmed`]) one.
    Established,
}

/// An entry a full table gave up to admit a new one (with its linked twin, if any), so the
/// caller can count it and release what it held (e.g. a NAT port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub reason: EvictReason,
    pub key: FlowKey,
    pub flow: Flow,
    pub twin: Option<(FlowKey, Flow)>,
}

/// What [`FlowTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// The new entry's slab index.
    pub idx: FlowSlot,
    /// The entry evicted to make room, if the table was full.
    pub evicted: Option<Evicted>,
    /// The key was already present: its entry was overwritten in place (and unlinked).
    pub replaced: bool,
}

/// What [`FlowTable::insert_pair`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertedPair {
    pub fwd: FlowSlot,
    pub rev: FlowSlot,
    /// Up to two entries evicted to make room for both.
    pub evicted: [Option<Evicted>; 2],
}

/// What [`FlowTable::probe`] found: the key's entry, or where a new one would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The key's entry, if present.
    pub found: Option<FlowSlot>,
    /// When absent: the first free slot of the key's buckets, or `NO_TWIN` if both are full
    /// or the table is (whose insert evicts anyway).
    free: FlowSlot,
    hash: u64,
}

/// The table cannot hold even one entry (capacity 0, or 1 for a pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("flow table has no room")
    }
}

impl std::error::Error for Full {}

/// Slots per bucket: one bucket is 8 consecutive cache lines (512 bytes).
const WAYS: usize = 8;

/// A key's home slot in either of its buckets: scans start there (and wrap), so at the
/// loads a balancer runs at most keys sit exactly there, and a hit, like a prefetch, is one
/// cache line.
#[inline(always)]
const fn home(tag: u16) -> usize {
    tag as usize & (WAYS - 1)
}

/// A live entry's lane in its bucket's [`Head`]: this bit and its tag (a free slot's is 0).
const TAG_LIVE: u16 = 0x8000;

/// What a bucket's slots hold, in one cache line beside them, for the scans that would
/// otherwise read all 8 slot lines: a lane a slot for the lookups (`TAG_LIVE | tag`, 0 when
/// free), and a copy of each entry's `last_seen`, state and whether it is linked, for
/// eviction, and of whether it sits in its second bucket, for moves. The copies change with
/// the slot, through [`FlowTable::touch`] (a packet) and the table's own writes
/// ([`FlowTable::mirror`], [`FlowTable::link`]). Not in a table's file: rebuilt from the
/// slots when one is adopted.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Head {
    lanes: [u16; WAYS],
    seen: [u32; WAYS],
    /// `FlowState as u8` a slot.
    states: [u8; WAYS],
    /// Bit `j`: slot `j`'s entry is linked to a twin.
    links: u8,
    /// Bit `j`: slot `j`'s entry sits in its second bucket (its `meta`'s `META_SECOND`), so
    /// that a move finds an entry's other bucket from the head alone.
    seconds: u8,
}

const _: () = assert!(size_of::<Head>() == 64);

impl Head {
    const EMPTY: Head = Head {
        lanes: [0; WAYS],
        seen: [0; WAYS],
        states: [0; WAYS],
        links: 0,
        seconds: 0,
    };
}

/// [`Slot::meta`]: set when the entry sits in its second bucket.
const META_SECOND: u16 = 0x8000;
/// [`Slot::meta`]: the tag (15 hash bits) that gives the entry's other bucket.
const META_TAG: u16 = 0x7fff;

/// One entry: exactly one cache line. Field order keeps `meta` in the two bytes between the
/// 38-byte key and the 4-aligned flow, which would otherwise be padding. Its layout is the
/// flow-table file's ([`persist::LAYOUT_VERSION`]); `crate::mem` reads it back from a file.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    key: FlowKey,
    /// `META_SECOND` | tag: how to find the entry's other bucket when it must move.
    meta: u16,
    flow: Flow,
}

const _: () = assert!(size_of::<Slot>() == 64);

impl Slot {
    /// Where the one byte with invalid bit patterns ([`Flow::state`]) sits.
    pub(crate) const STATE_OFFSET: usize =
        std::mem::offset_of!(Slot, flow) + std::mem::offset_of!(Flow, state);

    const FREE: Slot = Slot {
        key: FlowKey {
            src: [0; 16],
            dst: [0; 16],
            sport: 0,
            dport: 0,
            proto: 0,
            family: FAMILY_FREE,
        },
        meta: 0,
        flow: Flow::new(FlowState::Udp, ServiceIdx::new(0), BackendId::NONE),
    };

    #[inline(always)]
    fn is_live(&self) -> bool {
        self.key.family != FAMILY_FREE
    }
}

/// A bounded flow table for one worker. See the module documentation for the layout and
/// the policy.
pub struct FlowTable {
    /// `nbuckets * WAYS` slots; bucket `b` is `slots[b * WAYS..][..WAYS]`. In anonymous
    /// memory, or in a file that outlives the process ([`persist`]).
    slots: MappedSlots<Slot>,
    /// One [`Head`] a bucket (`heads[b]` for `slots[b * WAYS..][..WAYS]`). A probe past the
    /// home slot, a miss and a search for a free slot read its lanes and compare the key of
    /// a slot whose lane matches only; eviction scores its ages and states.
    heads: Box<[Head]>,
    nbuckets: u32,
    /// The bound on live entries (`<= slots.len()`).
    cap: u32,
    len: u32,
    /// The expiry hand: the next slot [`FlowTable::expire_step`] looks at.
    hand: u32,
    /// [`FlowTable::expire_paced`]'s clock reading at its last call, and the slot visits it
    /// owes (in slot-milliseconds: `SWEEP_MS` of them make one visit).
    sweep_at: u32,
    sweep_due: u64,
    /// Live flows per backend, counted by the hand as it passes.
    census: Census,
}

impl FlowTable {
    /// A table that holds at most `cap` entries, in `ceil(cap / 8)` buckets of 8 slots. All
    /// memory is allocated (and touched) here.
    pub fn with_capacity(cap: usize) -> Self {
        let slots = MappedSlots::anonymous(Self::slots_for(cap), Slot::FREE)
            .unwrap_or_else(|e| panic!("flow table of {cap} entries: {e}"));
        Self::over(slots, cap)
    }

    /// Slots of a table of capacity `cap`: whole buckets.
    pub(crate) fn slots_for(cap: usize) -> usize {
        let n = cap.div_ceil(WAYS) * WAYS;
        assert!(n < NO_TWIN.index(), "flow table capacity {cap} too large");
        n
    }

    /// A table of capacity `cap` over `slots` (`slots_for(cap)` of them, all free).
    pub(crate) fn over(slots: MappedSlots<Slot>, cap: usize) -> Self {
        debug_assert_eq!(slots.len(), Self::slots_for(cap));
        FlowTable {
            nbuckets: (slots.len() / WAYS) as u32,
            heads: Self::new_heads(slots.len() / WAYS),
            slots,
            cap: cap as u32,
            len: 0,
            hand: 0,
            sweep_at: 0,
            sweep_due: 0,
            census: Census::new(),
        }
    }

    /// `n` empty heads, on huge pages where the kernel has them (advised before they are
    /// first touched): lookups read them at random, as they read the slots.
    fn new_heads(n: usize) -> Box<[Head]> {
        let mut heads = Vec::with_capacity(n);
        crate::mem::advise_huge_pages(heads.spare_capacity_mut());
        heads.resize(n, Head::EMPTY);
        heads.into_boxed_slice()
    }

    /// Live entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bound.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Bytes of the slots and their buckets' heads, for sizing: 72 per slot (beside them
    /// only the fixed-size [`Census`], 64 KiB).
    pub fn memory_bytes(&self) -> usize {
        size_of_val(&*self.slots) + size_of_val(&*self.heads)
    }

    /// Whether `idx` names a live entry.
    #[inline]
    pub fn is_live(&self, idx: FlowSlot) -> bool {
        self.slots.get(idx.index()).is_some_and(Slot::is_live)
    }

    /// The flow at `idx` (a live index from [`lookup`](Self::lookup) or an insert).
    #[inline]
    pub fn get(&self, idx: FlowSlot) -> &Flow {
        &self.slots[idx.index()].flow
    }

    /// The flow at `idx`, to update its `service`, `flags`, ... (not `twin`, nor `state`
    /// and `last_seen`, which its bucket's head copies: [`touch`](Self::touch) sets those).
    #[inline]
    pub fn get_mut(&mut self, idx: FlowSlot) -> &mut Flow {
        &mut self.slots[idx.index()].flow
    }

    /// A packet of the live flow at `idx` was seen `now` and leaves it in `state`.
    #[inline(always)]
    pub fn touch(&mut self, idx: FlowSlot, now: u32, state: FlowState) {
        let i = idx.index();
        self.set_head_age(i, now, state);
        let f = &mut self.slots[i].flow;
        f.last_seen = now;
        f.state = state;
    }

    /// The key at `idx`. A freed slot's key has family 0, so it never equals a live key.
    #[inline]
    pub fn key(&self, idx: FlowSlot) -> &FlowKey {
        &self.slots[idx.index()].key
    }

    /// Live entries, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &Flow)> {
        self.slots
            .iter()
            .filter(|s| s.is_live())
            .map(|s| (&s.key, &s.flow))
    }

    /// Removes everything (keeps the memory).
    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            s.key.family = FAMILY_FREE;
            s.flow.twin = NO_TWIN;
        }
        self.heads.fill(Head::EMPTY);
        self.len = 0;
        self.hand = 0;
        self.census.empty();
    }

    // ---- internals ----

    /// Frees slot `i`'s lane in its bucket's head: 0, neither linked nor in a second
    /// bucket. With [`set_head`](Self::set_head), which takes a lane, every change of a
    /// slot's liveness goes through here.
    #[inline(always)]
    fn free_lane(&mut self, i: usize) {
        let (h, j) = (&mut self.heads[i / WAYS], i % WAYS);
        h.lanes[j] = 0;
        h.links &= !(1 << j);
        h.seconds &= !(1 << j);
    }

    /// Writes all of live slot `i`'s lanes in its bucket's head: its lane (`TAG_LIVE | tag`),
    /// age, state, whether it is linked and whether it sits in its second bucket.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn set_head(
        &mut self,
        i: usize,
        tag: u16,
        seen: u32,
        st: FlowState,
        linked: bool,
        second: bool,
    ) {
        self.set_head_age(i, seen, st);
        let (h, j) = (&mut self.heads[i / WAYS], i % WAYS);
        h.lanes[j] = TAG_LIVE | tag;
        h.seconds = h.seconds & !(1 << j) | u8::from(second) << j;
        self.set_link(i, linked);
    }

    /// Whether live slot `i` is linked, in its bucket's head: what [`link`](Self::link) and
    /// [`unlink`](Self::unlink) change of it, after writing the slots' `twin`.
    #[inline(always)]
    fn set_link(&mut self, i: usize, linked: bool) {
        let (h, j) = (&mut self.heads[i / WAYS], i % WAYS);
        h.links = h.links & !(1 << j) | u8::from(linked) << j;
    }

    /// [`set_head`](Self::set_head) from what live slot `i` holds: after every write of the
    /// table's own to a live slot's `last_seen`, `state`, `twin` or `meta` (a packet's
    /// [`touch`](Self::touch) writes both copies itself).
    #[inline(always)]
    fn mirror(&mut self, i: usize) {
        debug_assert!(self.slots[i].is_live(), "mirror of free slot {i}");
        let Slot { meta, flow: f, .. } = self.slots[i];
        let (tag, second) = (meta & META_TAG, meta & META_SECOND != 0);
        self.set_head(i, tag, f.last_seen, f.state, f.twin != NO_TWIN, second);
    }

    /// Slot `i`'s age and state in its bucket's head: what [`touch`](Self::touch) and
    /// [`mirror`](Self::mirror) both write.
    #[inline(always)]
    fn set_head_age(&mut self, i: usize, seen: u32, state: FlowState) {
        let h = &mut self.heads[i / WAYS];
        h.seen[i % WAYS] = seen;
        h.states[i % WAYS] = state as u8;
    }

    /// Bucket `b`'s slots whose lane is `x`, as a bit mask (bit `j` for slot `j`).
    #[inline(always)]
    fn lanes_equal(&self, b: u32, x: u16) -> u32 {
        crate::mem::lanes_equal(&self.heads[b as usize].lanes, x)
    }
}

impl fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod sweep_tests;
#[cfg(test)]
mod tests;

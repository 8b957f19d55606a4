//! The per-worker flow table: which backend each live flow goes to, bounded, preallocated.
//!
//! # Layout
//!
//! - A slab of fixed-capacity slots, one 64-byte cache line each (key + [`Flow`]); a flow
//!   is named by its slab index (`u32`), stable for its whole life.
//! - A `hashbrown::HashTable<u32>` of slab indices, keyed by the caller's hash. The pipeline
//!   computes [`crate::hash::flow_hash`] once per packet and passes it here and to Maglev.
//! - The low 32 bits of each entry's hash in a parallel array, read only to remove an entry
//!   (the slot line has no room left for them, and lookups never need them).
//! - An intrusive free list through the free slots' keys (LIFO, so a new flow reuses a
//!   recently freed, cache-warm line; kept in the key because callers can write a `Flow`
//!   through [`FlowTable::get_mut`] but never a key, so a stray write to a freed index cannot
//!   corrupt it), and a high-water mark below which slots have been used: a table sized for
//!   millions with a few thousand flows only scans those.
//!
//! Nothing allocates after [`FlowTable::with_capacity`]. hashbrown would grow (allocate) when
//! deleted-entry tombstones use up its spare room while it is more than half full, so the
//! index is built for twice the bound: it then only ever rehashes in place, and at under 50%
//! load tombstones (and so those rehashes) are rare and probes are short. Cost: 16-20 bytes
//! per entry for the index (power-of-two buckets) on top of the 64-byte slot and 4-byte hash:
//! 84 bytes per entry in all at 10k entries, 88 at 1M ([`FlowTable::memory_bytes`]).
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
//! - A new flow is always admitted while the table has room. Inserting a key that is already
//!   present overwrites its entry in place (`Inserted::replaced`) rather than adding a second.
//! - When the table is full, the insert evicts one victim, found by a CLOCK hand that
//!   examines up to [`EVICT_SCAN`] live slots from where it last stopped:
//!   1. the first **expired** entry it meets (idle at least its state's timeout);
//!   2. else the least recently seen **half-open** (`TcpSynSeen`, `TcpClosing`) or **UDP**
//!      entry among those examined: a SYN flood displaces itself before established flows;
//!   3. else the least recently seen (established) entry among those examined.
//!
//!   The victim is reported in [`Inserted::evicted`] with its reason, so the caller counts it.
//! - **Linked pairs** (NAT keeps a forward client->VIP entry and a reverse backend->client
//!   entry, [`FlowTable::link`]) live and die together: a pair has expired only when both
//!   halves have, its age is that of its most recently seen half, and removing, evicting or
//!   reaping one half removes the other.
//! - Aging is amortised: [`FlowTable::expire_step`] moves the same hand over a bounded number
//!   of slots per call (the worker calls it once per burst); there is no full-table scan.
//! - An insert may evict any other entry: indices held across it must be rechecked
//!   ([`FlowTable::is_live`] and [`FlowTable::key`]). [`FlowTable::insert_pair`] makes room for
//!   both halves of a NAT flow first, so neither can evict the other.
//!
//! # Times
//!
//! `now` and `last_seen` are a coarse millisecond clock from the caller, compared with
//! `wrapping_sub`: it may wrap (every ~49.7 days) as long as no entry stays unexamined that
//! long; the hand passes every slot far more often than that.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use hashbrown::HashTable;

/// `Flow::twin` of an entry that is not linked.
pub const NO_TWIN: u32 = u32::MAX;

/// `FlowKey::family` of an IPv4 flow.
pub const FAMILY_V4: u8 = 4;
/// `FlowKey::family` of an IPv6 flow.
pub const FAMILY_V6: u8 = 6;
/// `family` of a free slot (never a valid key).
const FAMILY_FREE: u8 = 0;

/// How many live slots a full table's insert examines to pick a victim.
pub const EVICT_SCAN: usize = 16;

/// A flow's identity, as seen on the wire in one direction.
///
/// Addresses are 16 bytes for both families: an IPv4 address sits in the **first 4 bytes,
/// the other 12 are zero** (cheapest to build from a packet: one 4-byte copy), and `family`
/// tells `10.0.0.1` from `a00:1::`. Ports are in host order. Use [`FlowKey::v4`] /
/// [`FlowKey::v6`] so the padding is always zero: equality and hashing see every byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

impl FlowKey {
    /// An IPv4 flow key.
    #[inline]
    pub const fn v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> Self {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            s[i] = src[i];
            d[i] = dst[i];
            i += 1;
        }
        FlowKey {
            src: s,
            dst: d,
            sport,
            dport,
            proto,
            family: FAMILY_V4,
        }
    }

    /// An IPv6 flow key.
    #[inline]
    pub const fn v6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, proto: u8) -> Self {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
            family: FAMILY_V6,
        }
    }

    /// The key of the other direction: addresses and ports swapped.
    #[inline]
    pub const fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            family: self.family,
        }
    }
}

/// Prints `proto src:port -> dst:port` with real address notation (for `ctl` and tests).
impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            p => format!("proto {p}"),
        };
        if self.family == FAMILY_V6 {
            let (s, d) = (Ipv6Addr::from(self.src), Ipv6Addr::from(self.dst));
            write!(f, "{proto} [{s}]:{} -> [{d}]:{}", self.sport, self.dport)
        } else {
            let s = Ipv4Addr::new(self.src[0], self.src[1], self.src[2], self.src[3]);
            let d = Ipv4Addr::new(self.dst[0], self.dst[1], self.dst[2], self.dst[3]);
            write!(f, "{proto} {s}:{} -> {d}:{}", self.sport, self.dport)
        }
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlowKey({self})")
    }
}

/// Where a flow is in its life; picks its idle timeout and its eviction class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowState {
    /// A SYN was seen, no handshake completion yet: half-open, short timeout.
    TcpSynSeen = 0,
    TcpEstablished = 1,
    /// A FIN or RST was seen: short timeout.
    TcpClosing = 2,
    Udp = 3,
}

/// What the table remembers about a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub state: FlowState,
    /// The service's index in the snapshot current when the flow was made or last seen. It can
    /// change on reload; the pipeline revalidates the service by (dst, port, proto) anyway.
    pub service: u16,
    /// Stable backend id from the control plane; 0 = none (as in Katran).
    pub backend: u32,
    /// Coarse time (ms, caller's clock) the flow last saw a packet. Set on insert.
    pub last_seen: u32,
    /// Slab index of the linked entry ([`NO_TWIN`] if none). Owned by the table: set by
    /// [`FlowTable::link`], reset on insert; callers read it, never write it.
    pub twin: u32,
    /// The port the flow arrived on.
    pub port: u8,
    /// The L2 source the flow came from, so NAT replies can go back to it.
    pub peer_mac: [u8; 6],
    /// Free for the pipeline.
    pub flags: u8,
}

impl Flow {
    /// A flow in `state` to `backend`, everything else empty.
    pub const fn new(state: FlowState, service: u16, backend: u32) -> Self {
        Flow {
            state,
            service,
            backend,
            last_seen: 0,
            twin: NO_TWIN,
            port: 0,
            peer_mac: [0; 6],
            flags: 0,
        }
    }

    /// This flow's idle timeout in ms.
    #[inline]
    pub fn timeout(&self, t: &Timeouts) -> u32 {
        t.by_state()[self.state as usize]
    }

    /// Milliseconds since the last packet.
    #[inline]
    pub fn idle(&self, now: u32) -> u32 {
        now.wrapping_sub(self.last_seen)
    }

    /// Idle for at least its timeout (on its own: a linked pair expires only when both do).
    #[inline]
    pub fn is_expired(&self, now: u32, t: &Timeouts) -> bool {
        self.idle(now) >= self.timeout(t)
    }

    /// Half-open or UDP: what a full table gives up first.
    #[inline]
    fn is_cheap(&self) -> bool {
        !matches!(self.state, FlowState::TcpEstablished)
    }
}

/// Idle timeouts in milliseconds, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_ms: u32,
    pub tcp_established_ms: u32,
    pub tcp_closing_ms: u32,
    pub udp_ms: u32,
}

impl Timeouts {
    /// Indexed by `FlowState as usize`.
    #[inline]
    fn by_state(&self) -> [u32; 4] {
        [
            self.tcp_syn_ms,
            self.tcp_established_ms,
            self.tcp_closing_ms,
            self.udp_ms,
        ]
    }
}

impl From<&conf::Timeouts> for Timeouts {
    fn from(t: &conf::Timeouts) -> Self {
        let ms = |s: u32| s.saturating_mul(1000);
        Timeouts {
            tcp_syn_ms: ms(t.tcp_syn),
            tcp_established_ms: ms(t.tcp_established),
            tcp_closing_ms: ms(t.tcp_closing),
            udp_ms: ms(t.udp),
        }
    }
}

/// The configuration's defaults.
impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::from(&conf::Timeouts::default())
    }
}

/// Why an entry was evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictReason {
    /// It had expired (the expiry hand had not reached it yet).
    Expired,
    /// The least recently seen half-open TCP entry examined.
    HalfOpen,
    /// The least recently seen UDP entry examined.
    Udp,
    /// No expired, half-open or UDP entry was examined: the least recently seen established one.
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
    pub idx: u32,
    /// The entry evicted to make room, if the table was full.
    pub evicted: Option<Evicted>,
    /// The key was already present: its entry was overwritten in place (and unlinked).
    pub replaced: bool,
}

/// What [`FlowTable::insert_pair`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertedPair {
    pub fwd: u32,
    pub rev: u32,
    /// Up to two entries evicted to make room for both.
    pub evicted: [Option<Evicted>; 2],
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

/// One slab entry: exactly one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    key: FlowKey,
    flow: Flow,
}

const _: () = assert!(size_of::<Slot>() <= 64);

impl Slot {
    const FREE: Slot = Slot {
        key: FlowKey {
            src: [0; 16],
            dst: [0; 16],
            sport: 0,
            dport: 0,
            proto: 0,
            family: FAMILY_FREE,
        },
        flow: Flow::new(FlowState::Udp, 0, 0),
    };

    #[inline]
    fn is_live(&self) -> bool {
        self.key.family != FAMILY_FREE
    }

    /// A free slot's successor on the free list: kept in its key's first 4 bytes.
    #[inline]
    fn next_free(&self) -> u32 {
        let s = &self.key.src;
        u32::from_le_bytes([s[0], s[1], s[2], s[3]])
    }
}

/// hashbrown needs the same `u64` at insert, lookup and removal, and only the low 32 bits of
/// the caller's hash are kept; multiplying by an odd constant keeps the low bits (the bucket)
/// uniform and fills the top 7 (hashbrown's tag) from all 32.
#[inline(always)]
fn index_hash(h32: u32) -> u64 {
    u64::from(h32).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A bounded flow table for one worker. See the module documentation for the policy.
pub struct FlowTable {
    slots: Box<[Slot]>,
    /// Low 32 bits of each live entry's hash.
    hashes: Box<[u32]>,
    index: HashTable<u32>,
    /// Head of the free list (chained through the free slots' keys), or `NO_TWIN`.
    free_head: u32,
    /// Slots at and above this index have never been used since the last reset.
    high_water: u32,
    len: u32,
    /// The CLOCK hand, shared by eviction and expiry; always < `high_water` (or 0).
    hand: u32,
}

impl FlowTable {
    /// A table that holds at most `cap` entries (`cap` < 2^32 - 1). All memory is allocated
    /// (and touched) here.
    pub fn with_capacity(cap: usize) -> Self {
        assert!(
            cap < NO_TWIN as usize,
            "flow table capacity {cap} too large"
        );
        FlowTable {
            slots: vec![Slot::FREE; cap].into_boxed_slice(),
            hashes: vec![0u32; cap].into_boxed_slice(),
            // Twice the bound: see the module documentation (never grows).
            index: HashTable::with_capacity(cap.saturating_mul(2)),
            free_head: NO_TWIN,
            high_water: 0,
            len: 0,
            hand: 0,
        }
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
        self.slots.len()
    }

    /// Bytes this table holds (slab, hashes, index), for sizing.
    pub fn memory_bytes(&self) -> usize {
        size_of_val(&*self.slots) + size_of_val(&*self.hashes) + self.index.allocation_size()
    }

    /// The entry for `key`, if any. `hash` as in the module's hash contract.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(index_hash(hash as u32), |&i| slots[i as usize].key == *key)
            .copied()
    }

    /// Whether `idx` names a live entry.
    #[inline]
    pub fn is_live(&self, idx: u32) -> bool {
        self.slots.get(idx as usize).is_some_and(Slot::is_live)
    }

    /// The flow at `idx` (a live index from [`lookup`](Self::lookup) or an insert).
    #[inline]
    pub fn get(&self, idx: u32) -> &Flow {
        &self.slots[idx as usize].flow
    }

    /// The flow at `idx`, to update `last_seen`, `state`, ... (not `twin`).
    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> &mut Flow {
        &mut self.slots[idx as usize].flow
    }

    /// The key at `idx`. A freed slot's key has family 0, so it never equals a live key.
    #[inline]
    pub fn key(&self, idx: u32) -> &FlowKey {
        &self.slots[idx as usize].key
    }

    /// Inserts `flow` for `key` with `last_seen = now`, unlinked. If `key` is already present
    /// its entry is overwritten in place (`replaced`); if the table is full, one entry (and its
    /// twin) is evicted first, per the module's policy. `Err(Full)` only for capacity 0.
    /// `key.family` must not be 0.
    #[inline]
    pub fn insert(
        &mut self,
        key: FlowKey,
        hash: u64,
        flow: Flow,
        now: u32,
        t: &Timeouts,
    ) -> Result<Inserted, Full> {
        if let Some(idx) = self.lookup(&key, hash) {
            self.overwrite(idx, flow, now);
            return Ok(Inserted {
                idx,
                evicted: None,
                replaced: true,
            });
        }
        if self.slots.is_empty() {
            return Err(Full);
        }
        let evicted = if self.len() == self.capacity() {
            Some(self.evict(now, t))
        } else {
            None
        };
        let idx = self.put(key, hash, flow, now);
        Ok(Inserted {
            idx,
            evicted,
            replaced: false,
        })
    }

    /// Inserts both halves of a NAT flow and links them; room for both is made first, so
    /// neither insert can evict the other. Present keys are overwritten as in
    /// [`insert`](Self::insert). `Err(Full)` if the capacity is below 2.
    pub fn insert_pair(
        &mut self,
        fwd: (FlowKey, u64, Flow),
        rev: (FlowKey, u64, Flow),
        now: u32,
        t: &Timeouts,
    ) -> Result<InsertedPair, Full> {
        debug_assert!(fwd.0 != rev.0, "a pair needs two keys");
        if self.capacity() < 2 {
            return Err(Full);
        }
        let mut evicted = [None, None];
        for e in &mut evicted {
            if self.capacity() - self.len() >= 2 {
                break;
            }
            *e = Some(self.evict(now, t));
        }
        let f = self.insert(fwd.0, fwd.1, fwd.2, now, t)?;
        let r = self.insert(rev.0, rev.1, rev.2, now, t)?;
        debug_assert!(f.evicted.is_none() && r.evicted.is_none());
        let linked = self.link(f.idx, r.idx);
        debug_assert!(linked);
        Ok(InsertedPair {
            fwd: f.idx,
            rev: r.idx,
            evicted,
        })
    }

    /// Links two live entries as twins (unlinking either from a previous twin). `false`, and
    /// nothing done, unless `a` and `b` are two distinct live entries.
    pub fn link(&mut self, a: u32, b: u32) -> bool {
        if a == b || !self.is_live(a) || !self.is_live(b) {
            return false;
        }
        self.unlink(a);
        self.unlink(b);
        self.slots[a as usize].flow.twin = b;
        self.slots[b as usize].flow.twin = a;
        true
    }

    /// Breaks `idx`'s link, if any, on both sides. No-op on a free slot.
    pub fn unlink(&mut self, idx: u32) {
        if !self.is_live(idx) {
            return;
        }
        if let Some(t) = self.twin_of(idx) {
            self.slots[t as usize].flow.twin = NO_TWIN;
        }
        self.slots[idx as usize].flow.twin = NO_TWIN;
    }

    /// Removes the entry at `idx` **and its twin** (a NAT pair lives and dies together; call
    /// [`unlink`](Self::unlink) first to remove one half only). No-op on a free slot.
    pub fn remove(&mut self, idx: u32) {
        if !self.is_live(idx) {
            return;
        }
        if let Some(t) = self.twin_of(idx) {
            self.free(t);
        }
        self.free(idx);
    }

    /// Moves the hand over `budget` slots, removing expired entries (and pairs whose halves
    /// have both expired). Returns how many entries were removed. The worker calls this once
    /// per burst; a budget of `capacity / (bursts per min timeout)` keeps up.
    pub fn expire_step(&mut self, now: u32, budget: usize, t: &Timeouts) -> usize {
        let mut reaped = 0;
        let steps = budget.min(self.high_water as usize);
        for _ in 0..steps {
            if self.high_water == 0 {
                break; // everything was removed (and the mark reset) during this call
            }
            let i = self.advance_hand();
            if self.slots[i as usize].is_live() && self.pair_expired(i, now, t) {
                reaped += if self.twin_of(i).is_some() { 2 } else { 1 };
                self.remove(i);
            }
        }
        reaped
    }

    /// Live entries, in slab order.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &Flow)> {
        self.slots[..self.high_water as usize]
            .iter()
            .filter(|s| s.is_live())
            .map(|s| (&s.key, &s.flow))
    }

    /// Removes everything (keeps the memory).
    pub fn clear(&mut self) {
        for s in &mut self.slots[..self.high_water as usize] {
            s.key.family = FAMILY_FREE;
        }
        self.index.clear();
        self.reset_marks();
    }

    // ---- internals ----

    /// `idx`'s twin, if it is a live entry that names `idx` back (a stale or corrupted link
    /// is ignored rather than followed into an unrelated flow).
    #[inline]
    fn twin_of(&self, idx: u32) -> Option<u32> {
        let t = self.slots.get(idx as usize)?.flow.twin;
        let ts = self.slots.get(t as usize)?;
        (t != idx && ts.is_live() && ts.flow.twin == idx).then_some(t)
    }

    fn reset_marks(&mut self) {
        self.free_head = NO_TWIN;
        self.high_water = 0;
        self.len = 0;
        self.hand = 0;
    }

    /// The slot under the hand; moves the hand on. `high_water` must be > 0.
    #[inline]
    fn advance_hand(&mut self) -> u32 {
        let i = self.hand;
        self.hand = if i + 1 >= self.high_water { 0 } else { i + 1 };
        i
    }

    fn overwrite(&mut self, idx: u32, flow: Flow, now: u32) {
        self.unlink(idx);
        self.slots[idx as usize].flow = Flow {
            last_seen: now,
            twin: NO_TWIN,
            ..flow
        };
    }

    /// Stores a new entry in a free slot. There must be one.
    #[inline]
    fn put(&mut self, key: FlowKey, hash: u64, flow: Flow, now: u32) -> u32 {
        assert!(key.family != FAMILY_FREE, "flow key with family 0");
        let idx = if self.free_head != NO_TWIN {
            let i = self.free_head;
            self.free_head = self.slots[i as usize].next_free();
            i
        } else {
            let i = self.high_water;
            self.high_water += 1;
            i
        };
        let h32 = hash as u32;
        self.slots[idx as usize] = Slot {
            key,
            flow: Flow {
                last_seen: now,
                twin: NO_TWIN,
                ..flow
            },
        };
        self.hashes[idx as usize] = h32;
        let hashes = &self.hashes;
        self.index
            .insert_unique(index_hash(h32), idx, |&i| index_hash(hashes[i as usize]));
        self.len += 1;
        idx
    }

    /// Removes one live entry (not its twin) and frees its slot.
    fn free(&mut self, idx: u32) {
        let h = index_hash(self.hashes[idx as usize]);
        match self.index.find_entry(h, |&i| i == idx) {
            Ok(e) => {
                e.remove();
            }
            Err(_) => unreachable!("live slot {idx} missing from the index"),
        }
        let s = &mut self.slots[idx as usize];
        s.key.family = FAMILY_FREE;
        s.key.src[..4].copy_from_slice(&self.free_head.to_le_bytes());
        s.flow.twin = NO_TWIN;
        self.free_head = idx;
        self.len -= 1;
        if self.len == 0 {
            // Empty: start again from slot 0 so the hand only covers what is used.
            self.reset_marks();
        }
    }

    #[inline]
    fn pair_expired(&self, idx: u32, now: u32, t: &Timeouts) -> bool {
        self.slots[idx as usize].flow.is_expired(now, t)
            && self
                .twin_of(idx)
                .is_none_or(|tw| self.slots[tw as usize].flow.is_expired(now, t))
    }

    /// Picks and removes a victim (and its twin) from a full table; see the module policy.
    fn evict(&mut self, now: u32, t: &Timeouts) -> Evicted {
        debug_assert!(self.len > 0);
        let mut expired = None;
        let mut oldest: Option<(u32, u32)> = None; // (idle, idx)
        let mut oldest_cheap: Option<(u32, u32)> = None;
        let mut examined = 0;
        let timeout = t.by_state();
        // Bounded by one lap, in case the table is sparse (only full tables evict, but be safe).
        for _ in 0..self.high_water {
            if examined == EVICT_SCAN {
                break;
            }
            let i = self.advance_hand();
            let f = &self.slots[i as usize].flow;
            if !self.slots[i as usize].is_live() {
                continue;
            }
            examined += 1;
            // The pair's age and expiry in one pass (one twin check).
            let mut idle = f.idle(now);
            let mut is_expired = idle >= timeout[f.state as usize];
            if let Some(tw) = self.twin_of(i) {
                let g = &self.slots[tw as usize].flow;
                let gi = g.idle(now);
                is_expired &= gi >= timeout[g.state as usize];
                idle = idle.min(gi);
            }
            if is_expired {
                expired = Some(i);
                break;
            }
            if oldest.is_none_or(|(o, _)| idle > o) {
                oldest = Some((idle, i));
            }
            if f.is_cheap() && oldest_cheap.is_none_or(|(o, _)| idle > o) {
                oldest_cheap = Some((idle, i));
            }
        }
        let (victim, reason) = match (expired, oldest_cheap, oldest) {
            (Some(i), _, _) => (i, EvictReason::Expired),
            (None, Some((_, i)), _) => {
                let r = if self.slots[i as usize].flow.state == FlowState::Udp {
                    EvictReason::Udp
                } else {
                    EvictReason::HalfOpen
                };
                (i, r)
            }
            (None, None, Some((_, i))) => (i, EvictReason::Established),
            (None, None, None) => unreachable!("evict from an empty table"),
        };
        let s = self.slots[victim as usize];
        let twin = self.twin_of(victim).map(|tw| {
            let ts = &self.slots[tw as usize];
            (ts.key, ts.flow)
        });
        self.remove(victim);
        Evicted {
            reason,
            key: s.key,
            flow: s.flow,
            twin,
        }
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
mod tests {
    use super::*;
    use crate::hash::flow_hash;
    use std::collections::HashMap;

    const SEED: u64 = 0xf10;

    const T: Timeouts = Timeouts {
        tcp_syn_ms: 1_000,
        tcp_established_ms: 100_000,
        tcp_closing_ms: 1_000,
        udp_ms: 10_000,
    };

    fn key(i: u32) -> FlowKey {
        let b = i.to_be_bytes();
        FlowKey::v4(
            [10, b[1], b[2], b[3]],
            [192, 0, 2, 1],
            1024 + (i >> 24) as u16,
            80,
            6,
        )
    }

    fn ins(ft: &mut FlowTable, k: FlowKey, state: FlowState, backend: u32, now: u32) -> Inserted {
        ft.insert(
            k,
            flow_hash(SEED, &k),
            Flow::new(state, 0, backend),
            now,
            &T,
        )
        .unwrap()
    }

    fn find(ft: &FlowTable, k: &FlowKey) -> Option<u32> {
        ft.lookup(k, flow_hash(SEED, k))
    }

    /// Everything that must hold between operations.
    fn check_invariants(ft: &FlowTable) {
        let live = ft.slots.iter().filter(|s| s.is_live()).count();
        assert_eq!(live, ft.len());
        assert_eq!(ft.index.len(), ft.len());
        assert!(ft.len() <= ft.capacity());
        for (i, s) in ft.slots.iter().enumerate() {
            if s.is_live() {
                assert!(i < ft.high_water as usize);
                assert_eq!(
                    find(ft, &s.key),
                    Some(i as u32),
                    "slot {i} not found by its key"
                );
                if s.flow.twin != NO_TWIN {
                    assert_eq!(
                        ft.slots[s.flow.twin as usize].flow.twin, i as u32,
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
        let f = Flow::new(FlowState::TcpClosing, 0, 1);
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
        assert_eq!(ft.get(a.idx).backend, 7);
        assert_eq!(ft.get(a.idx).last_seen, 5);
        assert_eq!(ft.key(a.idx), &k);
        assert_eq!(find(&ft, &k.reversed()), None);
        ft.get_mut(a.idx).state = FlowState::TcpEstablished;
        assert_eq!(ft.get(a.idx).state, FlowState::TcpEstablished);

        // The same key again: overwritten in place.
        let b = ins(&mut ft, k, FlowState::Udp, 8, 6);
        assert!(b.replaced);
        assert_eq!(b.idx, a.idx);
        assert_eq!(ft.len(), 1);
        assert_eq!(ft.get(a.idx).backend, 8);

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
        let live: Vec<_> = ft.iter().map(|(k, f)| (*k, f.backend)).collect();
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
            ft.insert(k, 1, Flow::new(FlowState::Udp, 0, 1), 0, &T),
            Err(Full)
        );
        assert_eq!(ft.expire_step(0, 10, &T), 0);
        let mut one = FlowTable::with_capacity(1);
        let f = Flow::new(FlowState::Udp, 0, 1);
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
        let index_bytes = ft.index.allocation_size();
        let buckets = ft.index.capacity();
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
        assert_eq!(
            ft.index.allocation_size(),
            index_bytes,
            "the index reallocated"
        );
        assert!(
            ft.index.capacity() >= cap,
            "index room {} of {buckets}",
            ft.index.capacity()
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
        ft.get_mut(i4).last_seen = now.wrapping_sub(T.tcp_established_ms);
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

    /// In a big full table the hand examines only EVICT_SCAN slots and moves on.
    #[test]
    fn eviction_scan_is_bounded_and_moves_on() {
        let cap = 1024;
        let mut ft = FlowTable::with_capacity(cap);
        for i in 0..cap as u32 {
            ins(&mut ft, key(i), FlowState::TcpEstablished, i, i);
        }
        // Inserting SYNs: no expired or half-open entry among the examined, so each insert
        // evicts the oldest of the 16 slots under the hand, and the hand moves on.
        let mut victims = Vec::new();
        for j in 0..4u32 {
            let e = ins(&mut ft, key(10_000 + j), FlowState::TcpSynSeen, 0, 5_000)
                .evicted
                .unwrap();
            victims.push(e.key);
        }
        // Four scans of 16 consecutive slots, each evicting its oldest: 0, 16, 32, 48.
        assert_eq!(victims, vec![key(0), key(16), key(32), key(48)]);
    }

    #[test]
    fn expire_step_reaps_exactly_the_expired_within_budget() {
        let cap = 1000;
        let mut ft = FlowTable::with_capacity(cap);
        // Even i: UDP seen at 0 (expired at 10_000); odd i: established seen at 0 (not).
        for i in 0..cap as u32 {
            let state = if i % 2 == 0 {
                FlowState::Udp
            } else {
                FlowState::TcpEstablished
            };
            ins(&mut ft, key(i), state, i, 0);
        }
        assert_eq!(ft.expire_step(9_999, cap, &T), 0, "nothing expired yet");
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
                calls <= cap.div_ceil(budget),
                "not all reaped after one lap"
            );
        }
        assert_eq!(total, cap / 2);
        assert_eq!(ft.len(), cap / 2);
        assert!(ft.iter().all(|(_, f)| f.state == FlowState::TcpEstablished));
        // More steps reap nothing more.
        assert_eq!(ft.expire_step(now, 10 * cap, &T), 0);
        // A budget of 1 visits exactly one slot.
        let hand = ft.hand;
        ft.expire_step(now, 1, &T);
        assert_eq!(ft.hand, (hand + 1) % ft.high_water);
        check_invariants(&ft);
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
        ft.get_mut(c).last_seen = 9_000; // the reverse direction is still active
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
        ft.get_mut(b).twin = 12345;
        ft.unlink(a);
        assert!(!ft.link(a, c));
        assert!(!ft.link(c, c));
        ft.remove(b);
        assert!(ft.is_live(c));
        assert_eq!(ft.get(c).twin, NO_TWIN);
        // The free list is intact: the table still fills to exactly its bound.
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
        let f = Flow::new(FlowState::TcpSynSeen, 0, 99);
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

    /// ~100k random operations against a `HashMap` model, under capacity: lookups agree.
    #[test]
    fn model_check() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            // xorshift64*
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
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
                        ft.get(i).backend
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
            assert_eq!(find(&ft, k).map(|i| ft.get(i).backend), Some(*v));
        }
        assert_eq!(ft.iter().count(), model.len());
        check_invariants(&ft);
    }
}

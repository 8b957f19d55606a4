//! The per-worker flow table: which backend each live flow goes to, bounded, preallocated.
//!
//! # Layout
//!
//! - One array of 64-byte slots, each exactly one cache line holding a key and its [`Flow`],
//!   grouped in buckets of 8 consecutive slots. There is no index beside it: **64 bytes per
//!   entry** in all ([`FlowTable::memory_bytes`]), for a table of `ceil(cap / 8)` buckets.
//! - A key may live in two buckets (two-choice, set-associative): its first from the hash's
//!   low 32 bits, its second at an offset given by a 15-bit tag from the high bits. The tag
//!   also names the key's *home* slot: lookups and inserts go through a bucket from there
//!   (home, home + 1, ..., wrapping), the first bucket, then the second; inserts take the
//!   first free slot on that path. So at the loads a balancer runs at, most entries sit in
//!   their home slot or the next: a hit usually costs one or two cache lines, which the
//!   caller can prefetch ([`FlowTable::prefetch`]) for a whole burst before processing it.
//! - A flow is named by its slot index (`u32`). It stays put for its whole life unless an
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
//!   other bucket moves there, and the new flow takes its place. Only if none can move is an
//!   entry evicted early (counted like any eviction): with the 16 candidate slots this is
//!   rare below ~90% of the capacity (none in a 100k-operation churn test at 73%). Inserting
//!   a key that is already present overwrites its entry in place (`Inserted::replaced`).
//! - When the table is full (`len == capacity`), the insert evicts one victim among the live
//!   entries of the new key's two buckets ([`EVICT_SCAN`] slots):
//!   1. an **expired** entry (idle at least its state's timeout), the least recently seen
//!      if several;
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

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// `Flow::twin` of an entry that is not linked.
pub const NO_TWIN: u32 = u32::MAX;

/// [`Flow::flags`] bit the pipeline sets on the reverse half (backend -> client) of a NAT
/// pair, so that the [`Census`] counts a pair once, by its forward half.
pub const FLAG_REVERSE: u8 = 0x01;

/// `FlowKey::family` of an IPv4 flow.
pub const FAMILY_V4: u8 = 4;
/// `FlowKey::family` of an IPv6 flow.
pub const FAMILY_V6: u8 = 6;
/// `family` of a free slot (never a valid key).
const FAMILY_FREE: u8 = 0;

/// How many slots a full table's insert examines to pick a victim: the new key's two
/// buckets.
pub const EVICT_SCAN: usize = 2 * WAYS;

/// An IPv4 address in the flow-key layout ([`FlowKey`]): its 4 bytes, then 12 zeros.
#[inline]
pub const fn v4_addr(a: [u8; 4]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0] = a[0];
    k[1] = a[1];
    k[2] = a[2];
    k[3] = a[3];
    k
}

/// The IPv4 address held in a flow-key address ([`v4_addr`]'s inverse).
#[inline]
pub const fn v4_of(k: &[u8; 16]) -> [u8; 4] {
    [k[0], k[1], k[2], k[3]]
}

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
    /// `self == other`, written for the flow table's scans, where most compared keys differ:
    /// the first 8 bytes (the source address, or for IPv4 all of it) decide most mismatches
    /// with one compare; the rest is compared without branches.
    #[inline(always)]
    pub fn same(&self, other: &FlowKey) -> bool {
        let w = |b: &[u8; 16], i: usize| {
            u64::from_ne_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let tail = |k: &FlowKey| {
            u64::from(k.sport)
                | u64::from(k.dport) << 16
                | u64::from(k.proto) << 32
                | u64::from(k.family) << 40
        };
        w(&self.src, 0) == w(&other.src, 0)
            && (w(&self.src, 8) ^ w(&other.src, 8)
                | w(&self.dst, 0) ^ w(&other.dst, 0)
                | w(&self.dst, 8) ^ w(&other.dst, 8)
                | tail(self) ^ tail(other))
                == 0
    }

    /// An IPv4 flow key.
    #[inline]
    pub const fn v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> Self {
        FlowKey {
            src: v4_addr(src),
            dst: v4_addr(dst),
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
    /// A UDP flow that has seen one datagram.
    Udp = 3,
    /// A UDP flow that has seen a second packet, either way (a NAT reply, or another
    /// datagram from the client): a full table evicts it only after every half-open and
    /// unconfirmed UDP entry, as an established TCP flow, so a UDP flood (one datagram per
    /// spoofed source) cannot push out a live UDP flow. Same timeout as `Udp`.
    UdpConfirmed = 4,
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
    /// Free for the pipeline, except the bit [`FLAG_REVERSE`], which the [`Census`] reads.
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
    /// Indexed by `FlowState as usize` (8 entries, so that `& 7` needs no bounds check;
    /// the last three are unused).
    #[inline]
    fn by_state(&self) -> [u32; 8] {
        [
            self.tcp_syn_ms,
            self.tcp_established_ms,
            self.tcp_closing_ms,
            self.udp_ms,
            self.udp_ms,
            self.udp_ms,
            self.udp_ms,
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

/// What [`FlowTable::probe`] found: the key's entry, or where a new one would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The key's entry, if present.
    pub found: Option<u32>,
    /// When absent: the first free slot of the key's buckets, or `NO_TWIN` if both are full
    /// or the table is (whose insert evicts anyway).
    free: u32,
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

/// Eviction score bits (`FlowTable::evict_among`): above the 32 bits of idle time, "expired"
/// outranks "cheap" (half-open or unconfirmed UDP), which outranks age.
const EXPIRED: u64 = 1 << 33;
const CHEAP: u64 = 1 << 32;

/// By `FlowState as usize & 7`: whether the state is cheap, as its score bit, so that a
/// slot's score is two small table loads and no branch.
const CHEAP_BY_STATE: [u64; 8] = [CHEAP, 0, CHEAP, CHEAP, 0, 0, 0, 0];
const _: () = assert!(
    FlowState::TcpSynSeen as usize == 0
        && FlowState::TcpEstablished as usize == 1
        && FlowState::TcpClosing as usize == 2
        && FlowState::Udp as usize == 3
        && FlowState::UdpConfirmed as usize == 4
);

/// Slots per bucket: one bucket is 8 consecutive cache lines (512 bytes).
const WAYS: usize = 8;

/// A key's home slot in either of its buckets: scans start there (and wrap), so at the
/// loads a balancer runs at most keys sit exactly there, and a hit, like a prefetch, is one
/// cache line.
#[inline(always)]
const fn home(tag: u16) -> usize {
    tag as usize & (WAYS - 1)
}

/// Lines of a bucket [`FlowTable::prefetch`] asks for: a key is usually in the first slots
/// (inserts fill a bucket from the start), and more outstanding prefetches than the core has
/// miss buffers stall it.
const PREFETCH_LINES: usize = 2;

/// [`Slot::meta`]: set when the entry sits in its second bucket.
const META_SECOND: u16 = 0x8000;
/// [`Slot::meta`]: the tag (15 hash bits) that gives the entry's other bucket.
const META_TAG: u16 = 0x7fff;

/// One entry: exactly one cache line. Field order keeps `meta` in the two bytes between the
/// 38-byte key and the 4-aligned flow, which would otherwise be padding.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    key: FlowKey,
    /// `META_SECOND` | tag: how to find the entry's other bucket when it must move.
    meta: u16,
    flow: Flow,
}

const _: () = assert!(size_of::<Slot>() == 64);

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
        meta: 0,
        flow: Flow::new(FlowState::Udp, 0, 0),
    };

    #[inline(always)]
    fn is_live(&self) -> bool {
        self.key.family != FAMILY_FREE
    }
}

/// A bounded flow table for one worker. See the module documentation for the layout and
/// the policy.
pub struct FlowTable {
    /// `nbuckets * WAYS` slots; bucket `b` is `slots[b * WAYS..][..WAYS]`.
    slots: Box<[Slot]>,
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

/// How long [`FlowTable::expire_paced`] takes to pass the hand over the whole table: an
/// expired entry is reaped at most about this long after it expired.
pub const SWEEP_MS: u32 = 1_000;

impl FlowTable {
    /// A table that holds at most `cap` entries, in `ceil(cap / 8)` buckets of 8 slots. All
    /// memory is allocated (and touched) here.
    pub fn with_capacity(cap: usize) -> Self {
        let nbuckets = cap.div_ceil(WAYS);
        assert!(
            nbuckets * WAYS < NO_TWIN as usize,
            "flow table capacity {cap} too large"
        );
        // Huge pages before the first touch: lookups land anywhere in the table.
        let mut slots = Vec::with_capacity(nbuckets * WAYS);
        crate::mem::advise_huge_pages(slots.spare_capacity_mut());
        slots.resize(nbuckets * WAYS, Slot::FREE);
        FlowTable {
            slots: slots.into_boxed_slice(),
            nbuckets: nbuckets as u32,
            cap: cap as u32,
            len: 0,
            hand: 0,
            sweep_at: 0,
            sweep_due: 0,
            census: Census::new(),
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
        self.cap as usize
    }

    /// Bytes of the slots, for sizing: 64 per slot (beside them only the fixed-size
    /// [`Census`], 64 KiB).
    pub fn memory_bytes(&self) -> usize {
        size_of_val(&*self.slots)
    }

    /// The entry for `key`, if any. `hash` as in the module's hash contract.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        if self.nbuckets == 0 {
            return None;
        }
        let (b1, tag) = self.first_bucket(hash);
        if let Some(i) = self.find_in(b1, tag, key) {
            return Some(i);
        }
        let b2 = self.second_bucket(b1, tag);
        if b2 != b1 {
            return self.find_in(b2, tag, key);
        }
        None
    }

    /// [`lookup`](Self::lookup) that also remembers, when the key is absent, where an insert
    /// would put it: a miss followed by [`insert_probed`](Self::insert_probed) scans the
    /// key's buckets once instead of twice (what a new flow costs).
    #[inline(always)]
    pub fn probe(&self, key: &FlowKey, hash: u64) -> Probe {
        self.probe_home(self.home_slot(hash), key, hash)
    }

    /// [`probe`](Self::probe) given the key's [`home_slot`](Self::home_slot) (computed
    /// once per packet, when it was prefetched).
    #[inline(always)]
    pub fn probe_home(&self, home: u32, key: &FlowKey, hash: u64) -> Probe {
        let mut p = Probe {
            found: None,
            free: NO_TWIN,
            hash,
        };
        if self.nbuckets == 0 {
            return p;
        }
        debug_assert_eq!(home, self.home_slot(hash));
        if self.len == 0 {
            // Nothing to find (a table only refusals go through): no scan of cold lines.
            p.free = home;
            return p;
        }
        // The common case, a hit in the first bucket's home slot, computes nothing more.
        if self.slots[home as usize].key.same(key) {
            p.found = Some(home);
            return p;
        }
        let (b1, tag) = self.first_bucket(hash);
        if self.len >= self.cap {
            // A full table's insert evicts whatever free slot the scan could find (there are
            // at most the capacity's rounding), so a miss compares keys only: what a flood
            // into a full table costs.
            return self.probe_scan::<false>(key, b1, tag, p);
        }
        self.probe_scan::<true>(key, b1, tag, p)
    }

    /// [`probe`](Self::probe) past the home slot of the first bucket. A tight loop: a miss
    /// reads 16 lines, and the fewer instructions between their loads, the more of them the
    /// core has in flight at once (scoring eviction candidates here as well measured slower
    /// for a SYN flood than scoring them afterwards, from lines then in L1).
    /// `FREE`: also remember the first free slot (`Probe::free`; else it stays `NO_TWIN`).
    #[inline]
    fn probe_scan<const FREE: bool>(
        &self,
        key: &FlowKey,
        b1: u32,
        tag: u16,
        mut p: Probe,
    ) -> Probe {
        let h = home(tag);
        let b2 = self.second_bucket(b1, tag);
        let pair = [b1, b2];
        for b in &pair[..if b2 == b1 { 1 } else { 2 }] {
            let (base, bucket) = self.bucket(*b);
            if !FREE {
                // Keys only: any order finds the same (one) entry, and slot order needs no
                // offsets computed.
                for (j, s) in bucket.iter().enumerate() {
                    if s.key.same(key) {
                        p.found = Some((base + j) as u32);
                        return p;
                    }
                }
                continue;
            }
            // The home slot first (where a key usually is), then the next ones, wrapping.
            for i in 0..WAYS {
                let j = (h + i) & (WAYS - 1);
                let s = &bucket[j];
                if s.key.same(key) {
                    p.found = Some((base + j) as u32);
                    return p;
                }
                if FREE && p.free == NO_TWIN && !s.is_live() {
                    p.free = (base + j) as u32;
                }
            }
        }
        p
    }

    /// The slot a key of this hash is looked for first (its home slot in its first bucket);
    /// `NO_TWIN` for a table of capacity 0.
    #[inline(always)]
    pub fn home_slot(&self, hash: u64) -> u32 {
        if self.nbuckets == 0 {
            return NO_TWIN;
        }
        let (b1, tag) = self.first_bucket(hash);
        (b1 as usize * WAYS + home(tag)) as u32
    }

    /// [`insert`](Self::insert) of a key that `probe` (made by [`probe`](Self::probe) with
    /// the same key and hash) found absent, with no change to the table since. It skips the
    /// scan for the key; a probe that is not fresh (its free slot was taken since) makes it
    /// fall back to a plain insert.
    #[inline]
    pub fn insert_probed(
        &mut self,
        probe: &Probe,
        key: FlowKey,
        flow: Flow,
        now: u32,
        t: &Timeouts,
    ) -> Result<Inserted, Full> {
        debug_assert!(probe.found.is_none(), "insert_probed after a hit");
        debug_assert!(self.lookup(&key, probe.hash).is_none(), "stale probe");
        let stale = probe.free != NO_TWIN && self.slots[probe.free as usize].is_live();
        if self.cap == 0 || stale || key.family == FAMILY_FREE {
            return self.insert(key, probe.hash, flow, now, t);
        }
        let (b1, tag) = self.first_bucket(probe.hash);
        let b2 = self.second_bucket(b1, tag);
        let slot = (probe.free != NO_TWIN).then_some(probe.free);
        self.place(key, b1, b2, tag, slot, flow, now, t, NO_TWIN)
    }

    /// [`insert_probed`](Self::insert_probed) that never evicts: the new entry takes the
    /// probe's free slot, or one an entry of its buckets leaves for its other bucket. `None`,
    /// and nothing changed, when the table is at its capacity or neither exists. What a TCP
    /// SYN gets (the pipeline's admission): a SYN flood then displaces no entry at all, and a
    /// real client's connection is recorded by its next packet, which may evict.
    #[inline]
    pub fn insert_probed_if_room(
        &mut self,
        probe: &Probe,
        key: FlowKey,
        flow: Flow,
        now: u32,
    ) -> Option<u32> {
        debug_assert!(probe.found.is_none(), "insert_probed_if_room after a hit");
        debug_assert!(self.lookup(&key, probe.hash).is_none(), "stale probe");
        if self.len >= self.cap || key.family == FAMILY_FREE {
            return None;
        }
        let (b1, tag) = self.first_bucket(probe.hash);
        let b2 = self.second_bucket(b1, tag);
        let idx = if probe.free != NO_TWIN && !self.slots[probe.free as usize].is_live() {
            probe.free
        } else {
            // No free slot when probed, or it was taken since: look again, then move one.
            self.free_in(b1, tag)
                .or_else(|| self.free_in(b2, tag))
                .or_else(|| self.relocate(b1, b2, NO_TWIN))?
        };
        self.write_new(idx, key, b1, b2, tag, flow, now);
        Some(idx)
    }

    /// Starts loading the first line(s) of the bucket `hash` maps to ([`PREFETCH_LINES`]),
    /// so that a lookup moments later finds them in cache: call it for every packet of a
    /// burst before processing any.
    /// `home` is the key's [`home_slot`](Self::home_slot).
    #[inline]
    pub fn prefetch(&self, home: u32) {
        if self.len == 0 {
            return;
        }
        let base = home as usize & !(WAYS - 1);
        if let Some(bucket) = self.slots.get(base..base + WAYS) {
            for i in 0..PREFETCH_LINES {
                crate::mem::prefetch(&bucket[(home as usize + i) & (WAYS - 1)]);
            }
        }
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
    /// its entry is overwritten in place (`replaced`); if the table is full, or both of the
    /// key's buckets are and no entry in them can move to its other bucket, one entry (and
    /// its twin) is evicted first, per the module's policy. `Err(Full)` only for capacity 0.
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
        self.insert_keeping(key, hash, flow, now, t, NO_TWIN)
    }

    /// Inserts both halves of a NAT flow and links them. The reverse half's insert neither
    /// evicts nor moves the forward half, so both are in the table afterwards. Present keys
    /// are overwritten as in [`insert`](Self::insert). `Err(Full)` if the capacity is below 2.
    pub fn insert_pair(
        &mut self,
        fwd: (FlowKey, u64, Flow),
        rev: (FlowKey, u64, Flow),
        now: u32,
        t: &Timeouts,
    ) -> Result<InsertedPair, Full> {
        debug_assert!(fwd.0 != rev.0, "a pair needs two keys");
        if self.cap < 2 {
            return Err(Full);
        }
        let f = self.insert_keeping(fwd.0, fwd.1, fwd.2, now, t, NO_TWIN)?;
        let r = self.insert_keeping(rev.0, rev.1, rev.2, now, t, f.idx)?;
        let linked = self.link(f.idx, r.idx);
        debug_assert!(linked);
        Ok(InsertedPair {
            fwd: f.idx,
            rev: r.idx,
            evicted: [f.evicted, r.evicted],
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
    /// per burst; a budget of `slots / (bursts per min timeout)` keeps up.
    ///
    /// Every live entry it passes and keeps is counted in the [`census`](Self::census).
    pub fn expire_step(&mut self, now: u32, budget: usize, t: &Timeouts) -> usize {
        let n = self.slots.len() as u32;
        if self.len == 0 {
            self.census.empty();
            return 0;
        }
        let mut reaped = 0;
        for _ in 0..budget.min(n as usize) {
            let i = self.hand;
            self.hand = if i + 1 >= n { 0 } else { i + 1 };
            if self.slots[i as usize].is_live() {
                if self.pair_expired(i, now, t) {
                    reaped += if self.twin_of(i).is_some() { 2 } else { 1 };
                    self.remove(i);
                } else {
                    self.census.count(&self.slots[i as usize].flow);
                }
            }
            self.census.visited(n);
        }
        reaped
    }

    /// Live flows per backend as the expiry hand counted them over its last whole pass.
    pub fn census(&self) -> &Census {
        &self.census
    }

    /// [`expire_step`](Self::expire_step) paced by the clock: as many slots as sweep the
    /// whole table once per [`SWEEP_MS`], at most `max` per call. The worker calls it once per
    /// burst: at a high packet rate a fixed budget per burst would sweep a big table many
    /// times a second, and each pass over a cold slot is a cache line fetched for nothing but
    /// evicting a hot flow's; this way expiry costs the same few lines per second at any rate.
    pub fn expire_paced(&mut self, now: u32, max: usize, t: &Timeouts) -> usize {
        let slots = self.slots.len() as u64;
        // A gap (idle worker, first call) is worth one sweep at most.
        let dt = u64::from(now.wrapping_sub(self.sweep_at).min(SWEEP_MS));
        self.sweep_at = now;
        let due = (self.sweep_due + dt * slots).min(slots * u64::from(SWEEP_MS));
        let visits = (due / u64::from(SWEEP_MS)).min(max as u64);
        self.sweep_due = due - visits * u64::from(SWEEP_MS);
        if visits == 0 {
            return 0;
        }
        self.expire_step(now, visits as usize, t)
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
        self.len = 0;
        self.hand = 0;
        self.census.empty();
    }

    // ---- internals ----

    /// The key's first bucket (from the hash's low 32 bits, by multiply-shift so any bucket
    /// count works) and its tag (15 of the high bits), which gives the second bucket.
    #[inline(always)]
    fn first_bucket(&self, hash: u64) -> (u32, u16) {
        let b1 = ((hash & 0xffff_ffff) * u64::from(self.nbuckets)) >> 32;
        (b1 as u32, (hash >> 48) as u16 & META_TAG)
    }

    /// The bucket `tag` pairs with `b` (a key's second bucket from its first): `b + off(tag)`
    /// modulo the bucket count, with `off` in `1..nbuckets`, so the two differ whenever
    /// there is more than one bucket.
    #[inline(always)]
    fn second_bucket(&self, b: u32, tag: u16) -> u32 {
        let n = u64::from(self.nbuckets);
        if n < 2 {
            return b;
        }
        let off = 1 + ((u64::from(tag) * (n - 1)) >> 15);
        let x = u64::from(b) + off; // < 2n: one conditional subtract, no division
        (if x >= n { x - n } else { x }) as u32
    }

    /// The inverse of [`second_bucket`](Self::second_bucket): a key's first bucket from its
    /// second.
    #[inline(always)]
    fn first_of_second(&self, b: u32, tag: u16) -> u32 {
        let n = u64::from(self.nbuckets);
        if n < 2 {
            return b;
        }
        let off = 1 + ((u64::from(tag) * (n - 1)) >> 15);
        let x = u64::from(b) + n - off; // in 1..2n
        (if x >= n { x - n } else { x }) as u32
    }

    /// Bucket `b`: its first slot's index and its slots.
    #[inline(always)]
    fn bucket(&self, b: u32) -> (usize, &[Slot; WAYS]) {
        let base = b as usize * WAYS;
        let bucket = self.slots[base..base + WAYS]
            .try_into()
            .expect("a bucket is WAYS slots");
        (base, bucket)
    }

    /// The slot holding `key` (of tag `tag`) in bucket `b`: the home slot first, then the
    /// others in order. Free slots never match (family 0).
    #[inline(always)]
    fn find_in(&self, b: u32, tag: u16, key: &FlowKey) -> Option<u32> {
        let (base, bucket) = self.bucket(b);
        let h = home(tag);
        for i in 0..WAYS {
            let j = (h + i) & (WAYS - 1);
            if bucket[j].key.same(key) {
                return Some((base + j) as u32);
            }
        }
        None
    }

    /// A free slot of bucket `b` for a key of tag `tag`: its home slot if free, else the
    /// first free one.
    #[inline(always)]
    fn free_in(&self, b: u32, tag: u16) -> Option<u32> {
        let (base, bucket) = self.bucket(b);
        let h = home(tag);
        for i in 0..WAYS {
            let j = (h + i) & (WAYS - 1);
            if !bucket[j].is_live() {
                return Some((base + j) as u32);
            }
        }
        None
    }

    /// [`insert`](Self::insert), never evicting or moving the entry at `keep`.
    fn insert_keeping(
        &mut self,
        key: FlowKey,
        hash: u64,
        flow: Flow,
        now: u32,
        t: &Timeouts,
        keep: u32,
    ) -> Result<Inserted, Full> {
        assert!(key.family != FAMILY_FREE, "flow key with family 0");
        if self.cap == 0 {
            return Err(Full);
        }
        let (b1, tag) = self.first_bucket(hash);
        let b2 = self.second_bucket(b1, tag);
        // One pass over both buckets: the key if present, else the first free slot (the
        // first bucket's first).
        let mut slot = None;
        let pair = [b1, b2];
        let h = home(tag);
        for b in &pair[..if b2 == b1 { 1 } else { 2 }] {
            let (base, bucket) = self.bucket(*b);
            for i in 0..WAYS {
                let j = (h + i) & (WAYS - 1);
                let s = &bucket[j];
                if s.key.same(&key) {
                    let idx = (base + j) as u32;
                    self.overwrite(idx, flow, now);
                    return Ok(Inserted {
                        idx,
                        evicted: None,
                        replaced: true,
                    });
                }
                if slot.is_none() && !s.is_live() {
                    slot = Some((base + j) as u32);
                }
            }
        }
        self.place(key, b1, b2, tag, slot, flow, now, t, keep)
    }

    /// Stores a new entry for `key` (absent from its buckets `b1`, `b2`) in `slot`, the first
    /// free slot of those buckets if they have one, else making room per the module's policy
    /// without touching `keep`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn place(
        &mut self,
        key: FlowKey,
        b1: u32,
        b2: u32,
        tag: u16,
        mut slot: Option<u32>,
        flow: Flow,
        now: u32,
        t: &Timeouts,
        keep: u32,
    ) -> Result<Inserted, Full> {
        let mut evicted = None;
        if self.len >= self.cap {
            let e = self.evict_among(b1, b2, now, t, keep);
            // The victim's slot is free now, and earlier in scan order than any other is if
            // the buckets were full.
            slot = slot.or(Some(e.0));
            evicted = Some(e.1);
        }
        if slot.is_none() {
            // Both buckets full while the table is not: make room by moving an entry to its
            // other bucket, and only if none can move, evict early.
            slot = self.relocate(b1, b2, keep);
            if slot.is_none() {
                let e = self.evict_among(b1, b2, now, t, keep);
                slot = Some(e.0);
                evicted = Some(e.1);
            }
        }
        let idx = slot.expect("a free slot in the key's buckets after eviction");
        self.write_new(idx, key, b1, b2, tag, flow, now);
        Ok(Inserted {
            idx,
            evicted,
            replaced: false,
        })
    }

    /// Stores a new entry for `key` (of buckets `b1`, `b2` and tag `tag`) in the free slot
    /// `idx`, unlinked, seen `now`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn write_new(
        &mut self,
        idx: u32,
        key: FlowKey,
        b1: u32,
        b2: u32,
        tag: u16,
        flow: Flow,
        now: u32,
    ) {
        debug_assert!(!self.slots[idx as usize].is_live());
        let second = b2 != b1 && idx as usize / WAYS == b2 as usize;
        self.slots[idx as usize] = Slot {
            key,
            meta: tag | if second { META_SECOND } else { 0 },
            flow: Flow {
                last_seen: now,
                twin: NO_TWIN,
                ..flow
            },
        };
        self.len += 1;
    }

    /// Moves one live entry of `b1` or `b2` (not `keep`) to a free slot of its other bucket;
    /// returns the slot it left. Its twin's link follows it.
    fn relocate(&mut self, b1: u32, b2: u32, keep: u32) -> Option<u32> {
        for b in [b1, b2] {
            for i in b * WAYS as u32..(b + 1) * WAYS as u32 {
                let s = self.slots[i as usize];
                if !s.is_live() || i == keep {
                    continue;
                }
                let tag = s.meta & META_TAG;
                let other = if s.meta & META_SECOND != 0 {
                    self.first_of_second(b, tag)
                } else {
                    self.second_bucket(b, tag)
                };
                if other == b {
                    continue;
                }
                let Some(j) = self.free_in(other, tag) else {
                    continue;
                };
                let twin = self.twin_of(i);
                self.slots[j as usize] = Slot {
                    meta: s.meta ^ META_SECOND,
                    ..s
                };
                if let Some(tw) = twin {
                    self.slots[tw as usize].flow.twin = j;
                }
                let old = &mut self.slots[i as usize];
                old.key.family = FAMILY_FREE;
                old.flow.twin = NO_TWIN;
                return Some(i);
            }
        }
        None
    }

    /// `idx`'s twin, if it is a live entry that names `idx` back (a stale or corrupted link
    /// is ignored rather than followed into an unrelated flow).
    #[inline]
    fn twin_of(&self, idx: u32) -> Option<u32> {
        let t = self.slots.get(idx as usize)?.flow.twin;
        let ts = self.slots.get(t as usize)?;
        (t != idx && ts.is_live() && ts.flow.twin == idx).then_some(t)
    }

    fn overwrite(&mut self, idx: u32, flow: Flow, now: u32) {
        self.unlink(idx);
        self.slots[idx as usize].flow = Flow {
            last_seen: now,
            twin: NO_TWIN,
            ..flow
        };
    }

    /// Removes one live entry (not its twin) and frees its slot.
    fn free(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.key.family = FAMILY_FREE;
        s.flow.twin = NO_TWIN;
        self.len -= 1;
    }

    #[inline]
    fn pair_expired(&self, idx: u32, now: u32, t: &Timeouts) -> bool {
        self.slots[idx as usize].flow.is_expired(now, t)
            && self
                .twin_of(idx)
                .is_none_or(|tw| self.slots[tw as usize].flow.is_expired(now, t))
    }

    /// [`evict_among`](Self::evict_among)'s score of a linked entry whose own score is
    /// `own`: a pair's age and expiry are those of its most recently seen half, and it is
    /// cheap only if both halves are (a UDP pair is confirmed when either half is).
    #[cold]
    #[inline(never)]
    fn pair_score(&self, idx: u32, own: u64, now: u32, timeout: &[u32; 8]) -> u64 {
        let Some(tw) = self.twin_of(idx) else {
            return own;
        };
        let g = &self.slots[tw as usize].flow;
        let gi = g.idle(now);
        let expired = own & EXPIRED != 0 && gi >= timeout[g.state as usize & 7];
        let idle = (own as u32).min(gi);
        let cheap = own & CHEAP != 0 && CHEAP_BY_STATE[g.state as usize & 7] != 0;
        (u64::from(expired) * EXPIRED) | (u64::from(cheap) * CHEAP) | u64::from(idle)
    }

    /// Picks and removes a victim (and its twin) among the live entries of buckets `b1` and
    /// `b2` other than `keep`; see the module policy. Returns the victim's (now free) slot.
    /// There must be a candidate: callers evict only from a full table, whose free slots (at
    /// most `WAYS - 1`, the rounding of the capacity) cannot fill a bucket, or from two full
    /// buckets.
    fn evict_among(
        &mut self,
        b1: u32,
        b2: u32,
        now: u32,
        t: &Timeouts,
        keep: u32,
    ) -> (u32, Evicted) {
        let timeout = t.by_state();
        // The victim has the greatest (expired, cheap, idle): an expired entry first, then a
        // half-open or unconfirmed UDP one before an established TCP or confirmed UDP one,
        // the least recently seen first, the first scanned on a tie. One score per slot, no
        // early exit: branch-light.
        let (mut best, mut victim) = (0u64, NO_TWIN);
        let pair = [b1, b2];
        for b in &pair[..if b2 == b1 { 1 } else { 2 }] {
            let (base, bucket) = self.bucket(*b);
            for (j, s) in bucket.iter().enumerate() {
                let i = (base + j) as u32;
                let f = &s.flow;
                let st = f.state as usize & 7;
                let idle = f.idle(now);
                let mut score = (u64::from(idle >= timeout[st]) * EXPIRED)
                    | CHEAP_BY_STATE[st]
                    | u64::from(idle);
                if f.twin != NO_TWIN {
                    score = self.pair_score(i, score, now, &timeout);
                }
                // + 1: a score of 0 (established, seen just now) must still beat "none";
                // free slots and `keep` score 0.
                let candidate = s.is_live() & (i != keep);
                let score = (score + 1) & 0u64.wrapping_sub(u64::from(candidate));
                if score > best {
                    (best, victim) = (score, i);
                }
            }
        }
        assert!(victim != NO_TWIN, "no entry to evict in buckets {b1}, {b2}");
        let score = best - 1;
        let reason = if score & EXPIRED != 0 {
            EvictReason::Expired
        } else if score & CHEAP == 0 {
            EvictReason::Established
        } else if self.slots[victim as usize].flow.state == FlowState::Udp {
            // (An unconfirmed one: a confirmed UDP flow ranks, and is named, as established.)
            EvictReason::Udp
        } else {
            EvictReason::HalfOpen
        };
        let s = self.slots[victim as usize];
        let twin = self.twin_of(victim).map(|tw| {
            let ts = &self.slots[tw as usize];
            (ts.key, ts.flow)
        });
        self.remove(victim);
        (
            victim,
            Evicted {
                reason,
                key: s.key,
                flow: s.flow,
                twin,
            },
        )
    }
}

/// Live flows per backend, counted by the expiry hand as it passes (no cost per packet): a
/// pass of the hand over every slot counts each live entry it keeps under its
/// [`Flow::backend`], established or not (IPVS's ActiveConn / InActConn), a NAT pair once
/// (its reverse half carries [`FLAG_REVERSE`]). A completed pass becomes the published
/// figure and the next starts from zero, so with [`FlowTable::expire_paced`] a figure is at
/// most about two [`SWEEP_MS`] old and exact for flows that neither started, ended nor moved
/// to their other bucket during the pass. An empty table is counted at once (all zero).
/// Backend ids from [`MAX_BACKEND_IDS`](crate::stats::MAX_BACKEND_IDS) up are not counted.
pub struct Census {
    /// The pass in progress, by backend id: `[established, other]`.
    counting: Box<[[u32; 2]]>,
    /// The last completed pass.
    done: Box<[[u32; 2]]>,
    /// Ids below this may be non-zero in either array (it never shrinks, so a publisher that
    /// copies ids below it overwrites every figure it published before).
    top: usize,
    /// Slots the pass in progress has visited.
    visited: u32,
    /// Passes completed (an empty table counts as one).
    passes: u64,
    /// Both arrays are zero and no pass is in progress.
    zero: bool,
}

impl Census {
    fn new() -> Census {
        let ids = crate::stats::MAX_BACKEND_IDS;
        Census {
            counting: vec![[0; 2]; ids].into_boxed_slice(),
            done: vec![[0; 2]; ids].into_boxed_slice(),
            top: 0,
            visited: 0,
            passes: 0,
            zero: true,
        }
    }

    /// A live entry the hand keeps.
    #[inline]
    fn count(&mut self, f: &Flow) {
        if f.flags & FLAG_REVERSE != 0 {
            return;
        }
        let id = f.backend as usize;
        if let Some(c) = self.counting.get_mut(id) {
            c[usize::from(f.state != FlowState::TcpEstablished)] += 1;
            self.top = self.top.max(id + 1);
            self.zero = false;
        }
    }

    /// One slot passed, of a table of `slots`: a pass ends after `slots` of them.
    #[inline]
    fn visited(&mut self, slots: u32) {
        self.visited += 1;
        self.zero = false;
        if self.visited >= slots {
            std::mem::swap(&mut self.counting, &mut self.done);
            self.counting[..self.top].fill([0; 2]);
            self.visited = 0;
            self.passes += 1;
        }
    }

    /// The table is empty: the figure is zero now, and a new pass starts with the next slot.
    fn empty(&mut self) {
        if !self.zero {
            self.counting[..self.top].fill([0; 2]);
            self.done[..self.top].fill([0; 2]);
            self.visited = 0;
            self.passes += 1;
            self.zero = true;
        }
    }

    /// `[established, other]` flows of backend `id` in the last completed pass.
    pub fn get(&self, id: u32) -> [u32; 2] {
        self.done.get(id as usize).copied().unwrap_or_default()
    }

    /// The last completed pass by backend id (`[established, other]`), every id that was
    /// ever counted included.
    pub fn completed(&self) -> &[[u32; 2]] {
        &self.done[..self.top]
    }

    /// Passes completed so far.
    pub fn passes(&self) -> u64 {
        self.passes
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
        assert!(ft.len() <= ft.capacity());
        for (i, s) in ft.slots.iter().enumerate() {
            if s.is_live() {
                assert_eq!(
                    find(ft, &s.key),
                    Some(i as u32),
                    "slot {i} not found by its key"
                );
                // It sits in one of its two buckets, and its meta says which.
                let (b1, tag) = ft.first_bucket(flow_hash(SEED, &s.key));
                let want = if s.meta & META_SECOND != 0 {
                    ft.second_bucket(b1, tag)
                } else {
                    b1
                };
                assert_eq!(s.meta & META_TAG, tag, "slot {i}: tag");
                assert_eq!(i / WAYS, want as usize, "slot {i}: bucket");
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
        assert!(!k.same(&k4as6));
        // `same` is `==`: a difference in any one byte of any field is seen.
        let base = FlowKey::v6([7; 16], [9; 16], 1000, 2000, 6);
        assert!(base.same(&base));
        for i in 0..16 {
            for (mut a, mut b) in [(base, base), (base, base)] {
                a.src[i] ^= 1;
                b.dst[i] ^= 0x80;
                assert!(
                    !a.same(&base) && !base.same(&a) && !b.same(&base),
                    "byte {i}"
                );
            }
        }
        for d in [
            FlowKey {
                sport: 1001,
                ..base
            },
            FlowKey { dport: 1, ..base },
            FlowKey { proto: 17, ..base },
            FlowKey {
                family: FAMILY_V4,
                ..base
            },
        ] {
            assert_eq!(d.same(&base), d == base);
            assert!(!d.same(&base));
        }
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
        let bytes = ft.memory_bytes();
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
        assert_eq!(ft.memory_bytes(), bytes);
        assert_eq!(
            ft.memory_bytes(),
            64 * cap,
            "64 bytes per entry, nothing else"
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

    /// In a big full table an insert examines only the new key's two buckets (EVICT_SCAN
    /// slots) and evicts the least recently seen of their entries.
    #[test]
    fn eviction_examines_only_the_keys_buckets() {
        let cap = 1024;
        let mut ft = FlowTable::with_capacity(cap);
        let mut i = 0;
        while ft.len() < cap {
            ins(&mut ft, key(i), FlowState::TcpEstablished, i, i);
            i += 1;
        }
        check_invariants(&ft);
        for j in 0..8u32 {
            let k = key(1_000_000 + j);
            let (b1, tag) = ft.first_bucket(flow_hash(SEED, &k));
            let b2 = ft.second_bucket(b1, tag);
            let mut candidates = Vec::new();
            for b in [b1, b2] {
                for s in &ft.slots[b as usize * WAYS..][..WAYS] {
                    if s.is_live() {
                        candidates.push((s.flow.last_seen, s.key));
                    }
                }
            }
            assert!(candidates.len() <= EVICT_SCAN);
            let oldest = candidates.iter().min_by_key(|c| c.0).unwrap().1;
            let e = ins(&mut ft, k, FlowState::TcpEstablished, 0, 5_000)
                .evicted
                .unwrap();
            assert_eq!((e.reason, e.key), (EvictReason::Established, oldest));
        }
        check_invariants(&ft);
    }

    /// Filling a table to its bound moves entries to their other bucket rather than evicting
    /// early, and a move keeps NAT links intact.
    #[test]
    fn fills_by_moving_entries_and_keeps_links() {
        let cap = 256;
        let mut ft = FlowTable::with_capacity(cap);
        let mut first_early = None;
        let mut i = 0;
        while ft.len() < cap {
            let f = Flow::new(FlowState::Udp, 0, i);
            let (kf, kr) = (key(2 * i), key(2 * i + 1));
            let p = ft
                .insert_pair(
                    (kf, flow_hash(SEED, &kf), f),
                    (kr, flow_hash(SEED, &kr), f),
                    i,
                    &T,
                )
                .unwrap();
            if p.evicted.iter().any(Option::is_some) && first_early.is_none() {
                first_early = Some(ft.len());
            }
            assert_eq!(ft.key(p.fwd), &kf);
            assert_eq!(ft.key(p.rev), &kr);
            check_invariants(&ft);
            i += 1;
        }
        let first_early = first_early.unwrap_or(cap);
        println!("first early eviction at {first_early} of {cap} entries");
        assert!(
            first_early >= cap * 9 / 10,
            "early eviction at {first_early}"
        );
        // Every pair is whole: each live entry's twin names it back.
        assert!(ft.iter().all(|(_, f)| f.twin != NO_TWIN));
    }

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

    /// probe + insert_probed does what insert does, and a stale probe is harmless.
    #[test]
    fn probe_then_insert() {
        let mut ft = FlowTable::with_capacity(64);
        let mut model = Vec::new();
        for i in 0..200u32 {
            let k = key(i);
            let h = flow_hash(SEED, &k);
            let p = ft.probe(&k, h);
            assert_eq!(p.found, None);
            let r = ft
                .insert_probed(&p, k, Flow::new(FlowState::Udp, 0, i), i, &T)
                .unwrap();
            assert_eq!(ft.key(r.idx), &k);
            assert_eq!(ft.probe(&k, h).found, Some(r.idx));
            model.push((k, r.evicted.is_some()));
            check_invariants(&ft);
        }
        assert_eq!(ft.len(), 64);
        // A probe made before another insert took its free slot: the insert still lands.
        ft.clear();
        let (a, b) = (key(1), key(2));
        let pa = ft.probe(&a, flow_hash(SEED, &a));
        ins(&mut ft, b, FlowState::Udp, 1, 0);
        if pa.free == ft.lookup(&b, flow_hash(SEED, &b)).unwrap() {
            let r = ft
                .insert_probed(&pa, a, Flow::new(FlowState::Udp, 0, 1), 0, &T)
                .unwrap();
            assert_eq!(ft.key(r.idx), &a);
        }
        check_invariants(&ft);
    }

    /// `insert_probed_if_room` fills a table exactly as `insert_probed` does while nothing
    /// must be evicted (moves included), and from then on changes nothing: every entry
    /// stays, slot for slot, and it answers `None`.
    #[test]
    fn insert_if_room_never_evicts() {
        let cap = 512;
        let (mut a, mut b) = (FlowTable::with_capacity(cap), FlowTable::with_capacity(cap));
        let mut refused = 0;
        for i in 0..4 * cap as u32 {
            let k = key(i);
            let h = flow_hash(SEED, &k);
            let f = Flow::new(FlowState::TcpSynSeen, 0, i);
            let p = b.probe(&k, h);
            assert_eq!(p.found, None);
            let before: Vec<(FlowKey, Flow)> = b.slots.iter().map(|s| (s.key, s.flow)).collect();
            match b.insert_probed_if_room(&p, k, f, i) {
                Some(idx) => {
                    let r = a.insert(k, h, f, i, &T).unwrap();
                    assert_eq!(r.evicted, None, "insert {i} evicted where if_room admitted");
                    assert_eq!(r.idx, idx, "insert {i}: another slot");
                    assert_eq!(b.key(idx), &k);
                    assert_eq!(b.get(idx).last_seen, i);
                }
                None => {
                    refused += 1;
                    let after: Vec<(FlowKey, Flow)> =
                        b.slots.iter().map(|s| (s.key, s.flow)).collect();
                    assert!(before == after, "a refusal changed the table at {i}");
                    // Refused only when a plain insert would have had to evict.
                    let mut c = FlowTable::with_capacity(cap);
                    c.slots.copy_from_slice(&b.slots);
                    c.len = b.len;
                    assert!(
                        c.insert(k, h, f, i, &T).unwrap().evicted.is_some(),
                        "refused {i} with room"
                    );
                }
            }
            check_invariants(&b);
        }
        assert_eq!(b.len(), cap, "filled to the capacity");
        assert!(refused >= 3 * cap, "refused {refused}");
        // A stale probe (its free slot taken since) still finds room if there is some.
        let mut t = FlowTable::with_capacity(64);
        let (x, y) = (key(1), key(2));
        let px = t.probe(&x, flow_hash(SEED, &x));
        let py = t.probe(&y, flow_hash(SEED, &y));
        let ix = t.insert_probed_if_room(&px, x, Flow::new(FlowState::TcpSynSeen, 0, 1), 0);
        let iy = t.insert_probed_if_room(&py, y, Flow::new(FlowState::TcpSynSeen, 0, 2), 0);
        assert!(ix.is_some() && iy.is_some() && ix != iy);
        assert_eq!(find(&t, &x), ix);
        assert_eq!(find(&t, &y), iy);
        check_invariants(&t);
    }

    /// Into a full table, probe + insert_probed evicts exactly the entry, for the same
    /// reason, that a plain insert would: two tables
    /// fed the same mixed sequence (half-open, UDP, established, NAT pairs, some expired)
    /// stay identical slot for slot.
    #[test]
    fn full_table_probe_evicts_as_insert_does() {
        let cap = 512;
        let (mut a, mut b) = (FlowTable::with_capacity(cap), FlowTable::with_capacity(cap));
        let states = [
            FlowState::TcpSynSeen,
            FlowState::TcpEstablished,
            FlowState::Udp,
            FlowState::TcpClosing,
        ];
        let mut evictions = 0;
        for i in 0..6 * cap as u32 {
            // The clock moves in steps, so many entries share a `last_seen` (ties).
            let now = (i / 16) * 7;
            let f = Flow::new(states[(i % 7 % 4) as usize], 0, i);
            if i % 11 == 0 {
                let (kf, kr) = (key(1_000_000 + i), key(2_000_000 + i));
                let (hf, hr) = (flow_hash(SEED, &kf), flow_hash(SEED, &kr));
                let ra = a.insert_pair((kf, hf, f), (kr, hr, f), now, &T).unwrap();
                let rb = b.insert_pair((kf, hf, f), (kr, hr, f), now, &T).unwrap();
                assert_eq!((ra.fwd, ra.rev), (rb.fwd, rb.rev));
                continue;
            }
            let k = key(i);
            let h = flow_hash(SEED, &k);
            let ra = a.insert(k, h, f, now, &T).unwrap();
            let p = b.probe(&k, h);
            assert_eq!(p.found, None);
            let rb = b.insert_probed(&p, k, f, now, &T).unwrap();
            assert_eq!(ra.idx, rb.idx, "insert {i}");
            assert_eq!(
                ra.evicted.map(|e| (e.reason, e.key, e.twin.map(|t| t.0))),
                rb.evicted.map(|e| (e.reason, e.key, e.twin.map(|t| t.0))),
                "insert {i}"
            );
            evictions += usize::from(ra.evicted.is_some());
        }
        assert!(evictions > 2 * cap, "the table was not full: {evictions}");
        let keys = |t: &FlowTable| t.slots.iter().map(|s| (s.key, s.flow)).collect::<Vec<_>>();
        assert!(keys(&a) == keys(&b));
        check_invariants(&b);
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
        let visits =
            |ft: &FlowTable, before: u32| (ft.hand + slots as u32 - before) as usize % slots;
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
        // The table still fills to exactly its bound (one bucket: no early eviction).
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
    /// here the plain way (pairs, ties, expiry and all), over thousands of random inserts.
    #[test]
    fn eviction_matches_the_policy_written_plainly() {
        let mut next = xorshift(0x0ddc_0ffe_e15e_a5e5);
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
            let now = i * 3 + (r >> 60) as u32 * 500;
            let f = Flow::new(states[(r >> 8) as usize % 5], 0, i);
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
                    let f = ft.get_mut(idx);
                    f.last_seen = now;
                    // A second UDP packet, on this half only.
                    if f.state == FlowState::Udp && r & (1 << 41) != 0 {
                        f.state = FlowState::UdpConfirmed;
                    }
                }
            }
            // The expected victim, when the table is full (the key's buckets, in order).
            let expect = (ft.len() == cap).then(|| {
                let (b1, tag) = ft.first_bucket(h);
                let b2 = ft.second_bucket(b1, tag);
                let mut best: Option<((bool, bool, u32), u32)> = None;
                let buckets = if b1 == b2 { vec![b1] } else { vec![b1, b2] };
                for b in buckets {
                    for idx in b * WAYS as u32..(b + 1) * WAYS as u32 {
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
            if r.is_multiple_of(5) {
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

    /// Inserts a NAT pair for `backend` the way the pipeline does (the reverse half flagged).
    fn ins_pair(ft: &mut FlowTable, i: u32, state: FlowState, backend: u32, now: u32) {
        let f = Flow::new(state, 0, backend);
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
        ft.get_mut(rev).last_seen = 4_900;
        assert_eq!(ft.len(), 10 + 8 + 12 + 6 + 2 + 2);

        // Nothing published before the first pass.
        assert_eq!(ft.census().passes(), 0);
        assert_eq!(ft.census().get(1), [0, 0]);
        let reaped = one_pass(&mut ft, now, 100);
        assert_eq!(reaped, 8, "backend 4's flows reaped");
        let c = ft.census();
        assert_eq!(c.get(1), [10, 0]);
        assert_eq!(c.get(2), [0, 8]);
        assert_eq!(c.get(3), [4, 2], "a NAT pair counts once");
        assert_eq!(c.get(4), [0, 0], "expired flows are not counted");
        assert_eq!(c.get(5), [0, 1]);
        assert_eq!(c.completed().len(), 6);
        assert_eq!(c.get(9999), [0, 0]);
        // What the census says is what the table holds, counted independently.
        let truth = |b: u32| {
            ft.iter()
                .filter(|(_, f)| f.backend == b && f.flags & FLAG_REVERSE == 0)
                .count() as u32
        };
        for b in 1..=5 {
            assert_eq!(c.get(b).iter().sum::<u32>(), truth(b), "backend {b}");
        }

        // Backend 1 loses 3 flows, one becomes closing: a partial pass publishes nothing...
        for j in 1..=3 {
            let idx = find(&ft, &key(j)).unwrap();
            ft.remove(idx);
        }
        let idx = find(&ft, &key(4)).unwrap();
        ft.get_mut(idx).state = FlowState::TcpClosing;
        ft.expire_step(now, ft.slots.len() / 2, &T);
        assert_eq!(ft.census().get(1), [10, 0]);
        // ...the pass that completes does.
        one_pass(&mut ft, now, 64);
        assert_eq!(ft.census().get(1), [6, 1]);
        assert_eq!(ft.census().get(3), [4, 2]);

        // Everything idle past its timeout: reaped, and the census drops to zero.
        one_pass(&mut ft, 1_000_000, 64);
        assert!(ft.is_empty());
        assert!(ft.census().completed().iter().all(|c| *c == [0, 0]));
        // A table emptied by other means reads zero at the next step, without a pass.
        ins(&mut ft, key(1), FlowState::TcpEstablished, 7, 0);
        one_pass(&mut ft, 0, 64);
        assert_eq!(ft.census().get(7), [1, 0]);
        let idx = find(&ft, &key(1)).unwrap();
        ft.remove(idx);
        let passes = ft.census().passes();
        ft.expire_step(0, 1, &T);
        assert_eq!(ft.census().get(7), [0, 0]);
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
        assert_eq!(ft.census().get(1), [25, 0]);
        assert_eq!(ft.census().get(2), [25, 0]);
        assert_eq!(ft.census().get(3), [0, 10]);
    }
}

//! Finding a key: its two buckets from the hash, the tag that names its home slot, the
//! scans from there, and the prefetch of a burst's lines.

use super::*;

impl FlowTable {
    /// The entry for `key`, if any. `hash` as in the module's hash contract.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<FlowSlot> {
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
    pub fn probe_home(&self, home: FlowSlot, key: &FlowKey, hash: u64) -> Probe {
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
        if self.slots[home.index()].key.same(key) {
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

    /// [`probe`](Self::probe) past the home slot of the first bucket: each bucket's lanes
    /// first (16 bytes of its head), then the key of a slot whose tag matches (rarely one
    /// that is not the key's: 1 in 32,768 a live slot). A miss reads two heads and no slot.
    /// `FREE`: also remember the first free slot (`Probe::free`; else it stays `NO_TWIN`),
    /// from the home slot on, the first bucket's first.
    #[inline]
    pub(super) fn probe_scan<const FREE: bool>(
        &self,
        key: &FlowKey,
        b1: u32,
        tag: u16,
        mut p: Probe,
    ) -> Probe {
        // The two buckets written out, not looped over: the loop over a slice of one or two
        // cost a SYN into a full table 19 instructions of its own (callgrind).
        if let Some(i) = self.find_in(b1, tag, key) {
            p.found = Some(i);
            return p;
        }
        if FREE {
            p.free = self.free_in(b1, tag).unwrap_or(NO_TWIN);
        }
        let b2 = self.second_bucket(b1, tag);
        if b2 == b1 {
            return p;
        }
        if let Some(i) = self.find_in(b2, tag, key) {
            p.found = Some(i);
            return p;
        }
        if FREE && p.free == NO_TWIN {
            p.free = self.free_in(b2, tag).unwrap_or(NO_TWIN);
        }
        p
    }

    /// The slot a key of this hash is looked for first (its home slot in its first bucket);
    /// `NO_TWIN` for a table of capacity 0.
    #[inline(always)]
    pub fn home_slot(&self, hash: u64) -> FlowSlot {
        if self.nbuckets == 0 {
            return NO_TWIN;
        }
        let (b1, tag) = self.first_bucket(hash);
        FlowSlot::new((b1 as usize * WAYS + home(tag)) as u32)
    }

    /// Starts loading the key's home slot and its first bucket's head (two lines),
    /// so that a lookup moments later finds them in cache: call it for every packet of a
    /// burst before processing any.
    /// `home` is the key's [`home_slot`](Self::home_slot).
    #[inline]
    pub fn prefetch(&self, home: FlowSlot) {
        if self.len == 0 {
            return;
        }
        // The home slot (where a hit usually is), and the first bucket's head (what a hit
        // writes its age to, and what a miss, or a hit elsewhere in the bucket, reads next).
        if let (Some(slot), Some(lanes)) = (
            self.slots.get(home.index()),
            self.heads.get(home.index() / WAYS),
        ) {
            crate::mem::prefetch(slot);
            crate::mem::prefetch(lanes);
        }
    }

    /// The key's first bucket (from the hash's low 32 bits, by multiply-shift so any bucket
    /// count works) and its tag (15 of the high bits), which gives the second bucket.
    #[inline(always)]
    pub(super) fn first_bucket(&self, hash: u64) -> (u32, u16) {
        let b1 = ((hash & 0xffff_ffff) * u64::from(self.nbuckets)) >> 32;
        (b1 as u32, (hash >> 48) as u16 & META_TAG)
    }

    /// The bucket `tag` pairs with `b` (a key's second bucket from its first): `b + off(tag)`
    /// modulo the bucket count, with `off` in `1..nbuckets`, so the two differ whenever
    /// there is more than one bucket.
    #[inline(always)]
    pub(super) fn second_bucket(&self, b: u32, tag: u16) -> u32 {
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
    pub(super) fn first_of_second(&self, b: u32, tag: u16) -> u32 {
        let n = u64::from(self.nbuckets);
        if n < 2 {
            return b;
        }
        let off = 1 + ((u64::from(tag) * (n - 1)) >> 15);
        let x = u64::from(b) + n - off; // in 1..2n
        (if x >= n { x - n } else { x }) as u32
    }

    /// The slot holding `key` (of tag `tag`) in bucket `b`: the keys of the slots whose
    /// lane says a live entry of that tag, in slot order. Free slots never match.
    #[inline(always)]
    pub(super) fn find_in(&self, b: u32, tag: u16, key: &FlowKey) -> Option<FlowSlot> {
        let mut m = self.lanes_equal(b, TAG_LIVE | tag);
        // The slots are reached only for a matching lane: a miss (most lanes differ) pays
        // for the head alone, not for the bucket's slice of slots and its bounds check.
        while m != 0 {
            let i = b as usize * WAYS + m.trailing_zeros() as usize;
            if self.slots[i].key.same(key) {
                return Some(FlowSlot::new(i as u32));
            }
            m &= m - 1;
        }
        None
    }

    /// A free slot of bucket `b` for a key of tag `tag`: its home slot if free, else the
    /// next free one after it (wrapping), from the bucket's lanes alone.
    #[inline(always)]
    pub(super) fn free_in(&self, b: u32, tag: u16) -> Option<FlowSlot> {
        let free = self.lanes_equal(b, 0);
        if free == 0 {
            return None;
        }
        // Bit 0 of the rotated mask is the home slot's, bit 1 the next one's, ...
        let h = home(tag) as u32;
        let rotated = (free >> h | free << (WAYS as u32 - h)) & ((1 << WAYS) - 1);
        let j = (h + rotated.trailing_zeros()) as usize & (WAYS - 1);
        Some(FlowSlot::new((b as usize * WAYS + j) as u32))
    }
}

//! Admission: where a new entry goes (a free slot of either bucket, a move of an entry to
//! its other bucket, else an eviction), NAT pairs inserted together.

use super::*;

impl FlowTable {
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
        let mut evicted = None;
        let idx = self.insert_probed_into(probe, key, flow, now, t, &mut evicted)?;
        Ok(Inserted {
            idx,
            evicted,
            replaced: false,
        })
    }

    /// [`insert_probed`](Self::insert_probed) that writes the entry it evicted, if any, to
    /// `evicted` (untouched otherwise) and returns the new entry's slot: the eviction is
    /// written once, in place, not moved through a result (a 136-byte copy, `memcpy`, that
    /// cost a recorded new flow 29 instructions). What the pipeline records a flow with.
    #[inline]
    pub fn insert_probed_into(
        &mut self,
        probe: &Probe,
        key: FlowKey,
        flow: Flow,
        now: u32,
        t: &Timeouts,
        evicted: &mut Option<Evicted>,
    ) -> Result<FlowSlot, Full> {
        debug_assert!(probe.found.is_none(), "insert_probed after a hit");
        debug_assert!(self.lookup(&key, probe.hash).is_none(), "stale probe");
        let stale = probe.free != NO_TWIN && self.slots[probe.free.index()].is_live();
        if self.cap == 0 || stale || key.family == FAMILY_FREE {
            let r = self.insert(key, probe.hash, flow, now, t)?;
            if r.evicted.is_some() {
                *evicted = r.evicted;
            }
            return Ok(r.idx);
        }
        let (b1, tag) = self.first_bucket(probe.hash);
        let b2 = self.second_bucket(b1, tag);
        let slot = (probe.free != NO_TWIN).then_some(probe.free);
        Ok(self.place(key, b1, b2, tag, slot, flow, now, t, NO_TWIN, evicted))
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
    ) -> Option<FlowSlot> {
        debug_assert!(probe.found.is_none(), "insert_probed_if_room after a hit");
        debug_assert!(self.lookup(&key, probe.hash).is_none(), "stale probe");
        if self.len >= self.cap || key.family == FAMILY_FREE {
            return None;
        }
        let (b1, tag) = self.first_bucket(probe.hash);
        let b2 = self.second_bucket(b1, tag);
        let idx = if probe.free != NO_TWIN && !self.slots[probe.free.index()].is_live() {
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
        let mut evicted = None;
        let (idx, replaced) =
            self.insert_keeping(key, hash, flow, now, t, NO_TWIN, &mut evicted)?;
        Ok(Inserted {
            idx,
            evicted,
            replaced,
        })
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
        let mut evicted = [None, None];
        let (fwd, rev) = self.insert_pair_into(fwd, rev, now, t, &mut evicted, None)?;
        Ok(InsertedPair { fwd, rev, evicted })
    }

    /// [`insert_pair`](Self::insert_pair) that writes what each half's insert evicted to
    /// `evicted` (untouched where nothing was) and returns the two slots: the evictions are
    /// written once, in place, not moved through results (two of 136 bytes, then one of 272
    /// copied by `memcpy`). With `probed`, a probe of the forward key as
    /// [`insert_probed`](Self::insert_probed) takes (absent, no change to the table since),
    /// the forward half is placed from it without looking its key up again. What the
    /// pipeline records a NAT flow with.
    #[inline]
    pub fn insert_pair_into(
        &mut self,
        fwd: (FlowKey, u64, Flow),
        rev: (FlowKey, u64, Flow),
        now: u32,
        t: &Timeouts,
        evicted: &mut [Option<Evicted>; 2],
        probed: Option<&Probe>,
    ) -> Result<(FlowSlot, FlowSlot), Full> {
        debug_assert!(fwd.0 != rev.0, "a pair needs two keys");
        if self.cap < 2 {
            return Err(Full);
        }
        let f = match probed {
            Some(probe) => {
                debug_assert_eq!(probe.hash, fwd.1, "a probe of another key");
                self.insert_probed_into(probe, fwd.0, fwd.2, now, t, &mut evicted[0])?
            }
            None => {
                let keep = NO_TWIN;
                (self.insert_keeping(fwd.0, fwd.1, fwd.2, now, t, keep, &mut evicted[0])?).0
            }
        };
        let (r, _) = self.insert_keeping(rev.0, rev.1, rev.2, now, t, f, &mut evicted[1])?;
        let linked = self.link(f, r);
        debug_assert!(linked);
        Ok((f, r))
    }

    /// [`insert`](Self::insert), never evicting or moving the entry at `keep`, writing what
    /// it evicts to `evicted`: the new (or overwritten) entry's slot, and whether its key
    /// was present.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_keeping(
        &mut self,
        key: FlowKey,
        hash: u64,
        flow: Flow,
        now: u32,
        t: &Timeouts,
        keep: FlowSlot,
        evicted: &mut Option<Evicted>,
    ) -> Result<(FlowSlot, bool), Full> {
        assert!(key.family != FAMILY_FREE, "flow key with family 0");
        if self.cap == 0 {
            return Err(Full);
        }
        let (b1, tag) = self.first_bucket(hash);
        let b2 = self.second_bucket(b1, tag);
        // The key if present (overwritten), else the first free slot (the first bucket's
        // first), both from the buckets' lanes.
        if let Some(idx) = self.lookup(&key, hash) {
            self.overwrite(idx, flow, now);
            return Ok((idx, true));
        }
        let slot = self.free_in(b1, tag).or_else(|| self.free_in(b2, tag));
        Ok((
            self.place(key, b1, b2, tag, slot, flow, now, t, keep, evicted),
            false,
        ))
    }

    /// Stores a new entry for `key` (absent from its buckets `b1`, `b2`) in `slot`, the first
    /// free slot of those buckets if they have one, else making room per the module's policy
    /// without touching `keep` (what it evicts written to `evicted`); returns its slot.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn place(
        &mut self,
        key: FlowKey,
        b1: u32,
        b2: u32,
        tag: u16,
        mut slot: Option<FlowSlot>,
        flow: Flow,
        now: u32,
        t: &Timeouts,
        keep: FlowSlot,
        evicted: &mut Option<Evicted>,
    ) -> FlowSlot {
        if self.len >= self.cap {
            let victim = self.evict_among(b1, b2, now, t, keep, evicted);
            // The victim's slot is free now, and earlier in scan order than any other is if
            // the buckets were full.
            slot = slot.or(Some(victim));
        }
        if slot.is_none() {
            // Both buckets full while the table is not: make room by moving an entry to its
            // other bucket, and only if none can move, evict early.
            slot = self.relocate(b1, b2, keep);
            if slot.is_none() {
                slot = Some(self.evict_among(b1, b2, now, t, keep, evicted));
            }
        }
        let idx = slot.expect("a free slot in the key's buckets after eviction");
        self.write_new(idx, key, b1, b2, tag, flow, now);
        idx
    }

    /// Stores a new entry for `key` (of buckets `b1`, `b2` and tag `tag`) in the free slot
    /// `idx`, unlinked, seen `now`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn write_new(
        &mut self,
        idx: FlowSlot,
        key: FlowKey,
        b1: u32,
        b2: u32,
        tag: u16,
        flow: Flow,
        now: u32,
    ) {
        debug_assert!(!self.slots[idx.index()].is_live());
        let second = b2 != b1 && idx.index() / WAYS == b2 as usize;
        self.slots[idx.index()] = Slot {
            key,
            meta: tag | if second { META_SECOND } else { 0 },
            flow: Flow {
                last_seen: now,
                twin: NO_TWIN,
                ..flow
            },
        };
        self.set_head(idx.index(), tag, now, flow.state, false, second);
        self.len += 1;
    }

    /// Moves one live entry of `b1` or `b2` (not `keep`) to a free slot of its other bucket;
    /// returns the slot it left. Its twin's link follows it. The candidates, in slot order,
    /// and their other buckets come from the two heads (a lane's tag and `seconds` bit);
    /// a slot line is read only for the entry that moves.
    /// `None` at once when fewer than 1 slot in [`MOVE_FREE_SHARE`] is free.
    pub(super) fn relocate(&mut self, b1: u32, b2: u32, keep: FlowSlot) -> Option<FlowSlot> {
        if (self.slots.len() - self.len as usize) * MOVE_FREE_SHARE < self.slots.len() {
            return None;
        }
        for b in [b1, b2] {
            let h = &self.heads[b as usize];
            let mut rest = self.candidates(b, keep);
            while rest != 0 {
                let j = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                let (tag, second) = (h.lanes[j] & META_TAG, h.seconds >> j & 1 != 0);
                let i = FlowSlot::new(b * WAYS as u32 + j as u32);
                let other = if second {
                    self.first_of_second(b, tag)
                } else {
                    self.second_bucket(b, tag)
                };
                if other == b {
                    continue;
                }
                if let Some(to) = self.free_in(other, tag) {
                    self.move_entry(i, to);
                    return Some(i);
                }
            }
        }
        None
    }

    /// Moves the live entry at `from` to the free slot `to` of its other bucket, its twin's
    /// link with it.
    fn move_entry(&mut self, from: FlowSlot, to: FlowSlot) {
        let s = self.slots[from.index()];
        let twin = self.twin_of(from);
        self.slots[to.index()] = Slot {
            meta: s.meta ^ META_SECOND,
            ..s
        };
        if let Some(tw) = twin {
            self.slots[tw.index()].flow.twin = to;
        }
        let old = &mut self.slots[from.index()];
        old.key.family = FAMILY_FREE;
        old.flow.twin = NO_TWIN;
        self.mirror(to.index());
        self.free_lane(from.index());
    }

    pub(super) fn overwrite(&mut self, idx: FlowSlot, flow: Flow, now: u32) {
        self.unlink(idx);
        self.slots[idx.index()].flow = Flow {
            last_seen: now,
            twin: NO_TWIN,
            ..flow
        };
        self.mirror(idx.index());
    }
}

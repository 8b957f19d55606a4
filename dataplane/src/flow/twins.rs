//! NAT pairs (a forward and a reverse entry that live and die together) and removal.

use super::*;

impl FlowTable {
    /// Links two live entries as twins (unlinking either from a previous twin). `false`, and
    /// nothing done, unless `a` and `b` are two distinct live entries.
    pub fn link(&mut self, a: FlowSlot, b: FlowSlot) -> bool {
        if a == b || !self.is_live(a) || !self.is_live(b) {
            return false;
        }
        self.unlink(a);
        self.unlink(b);
        self.slots[a.index()].flow.twin = b;
        self.slots[b.index()].flow.twin = a;
        self.set_link(a.index(), true);
        self.set_link(b.index(), true);
        true
    }

    /// Breaks `idx`'s link, if any, on both sides. No-op on a free slot, or an unlinked one
    /// (a new entry's: the pair's insert links it at once).
    pub fn unlink(&mut self, idx: FlowSlot) {
        if !self.is_live(idx) || self.slots[idx.index()].flow.twin == NO_TWIN {
            return;
        }
        if let Some(t) = self.twin_of(idx) {
            self.slots[t.index()].flow.twin = NO_TWIN;
            self.set_link(t.index(), false);
        }
        self.slots[idx.index()].flow.twin = NO_TWIN;
        self.set_link(idx.index(), false);
    }

    /// Removes the entry at `idx` **and its twin** (a NAT pair lives and dies together; call
    /// [`unlink`](Self::unlink) first to remove one half only). No-op on a free slot.
    /// Returns how many entries it freed (0, 1 or 2).
    pub fn remove(&mut self, idx: FlowSlot) -> u64 {
        if !self.is_live(idx) {
            return 0;
        }
        let twin = self.twin_of(idx);
        if let Some(t) = twin {
            self.free(t);
        }
        self.free(idx);
        1 + u64::from(twin.is_some())
    }

    /// `idx`'s twin, if it is a live entry that names `idx` back (a stale or corrupted link
    /// is ignored rather than followed into an unrelated flow).
    #[inline]
    pub(super) fn twin_of(&self, idx: FlowSlot) -> Option<FlowSlot> {
        let t = self.slots.get(idx.index())?.flow.twin;
        let ts = self.slots.get(t.index())?;
        (t != idx && ts.is_live() && ts.flow.twin == idx).then_some(t)
    }

    /// Removes one live entry (not its twin) and frees its slot.
    pub(super) fn free(&mut self, idx: FlowSlot) {
        let s = &mut self.slots[idx.index()];
        s.key.family = FAMILY_FREE;
        s.flow.twin = NO_TWIN;
        self.free_lane(idx.index());
        self.len -= 1;
    }

    #[inline]
    pub(super) fn pair_expired(&self, idx: FlowSlot, now: u32, t: &Timeouts) -> bool {
        self.slots[idx.index()].flow.is_expired(now, t)
            && self
                .twin_of(idx)
                .is_none_or(|tw| self.slots[tw.index()].flow.is_expired(now, t))
    }
}

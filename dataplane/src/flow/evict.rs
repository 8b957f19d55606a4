//! The victim of a full table: expired first, then half-open or unconfirmed UDP, then the
//! least recently seen, among the new key's two buckets only.

use super::*;

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

impl FlowTable {
    /// Whether slot `i`'s bucket head holds what the slot does (a free slot: a free lane,
    /// not linked):
    /// a write that bypassed [`touch`](Self::touch) or the table's own
    /// [`mirror`](Self::mirror) would make eviction score a stale age or state.
    pub(super) fn head_matches(&self, i: usize) -> bool {
        let (s, h, j) = (&self.slots[i], &self.heads[i / WAYS], i % WAYS);
        if !s.is_live() {
            return h.lanes[j] == 0 && h.links >> j & 1 == 0;
        }
        (h.seen[j], h.states[j], h.links >> j & 1 != 0)
            == (s.flow.last_seen, s.flow.state as u8, s.flow.twin != NO_TWIN)
    }

    /// The first live entry whose bucket head's copy of its age, state or link is not its
    /// own, if any: for tests and fuzzing oracles (it reads the whole table).
    pub fn stale_head(&self) -> Option<FlowSlot> {
        (0..self.slots.len())
            .find(|&i| !self.head_matches(i))
            .map(|i| FlowSlot::new(i as u32))
    }

    /// In debug builds (the unit tests), [`head_matches`](Self::head_matches) for slot `i`.
    #[inline(always)]
    fn debug_check_mirror(&self, i: usize) {
        debug_assert!(
            self.head_matches(i),
            "slot {i}: its head's age and state are not its own"
        );
    }

    /// [`evict_among`](Self::evict_among)'s score of a linked entry whose own score is
    /// `own`: a pair's age and expiry are those of its most recently seen half, and it is
    /// cheap only if both halves are (a UDP pair is confirmed when either half is).
    #[cold]
    #[inline(never)]
    pub(super) fn pair_score(&self, idx: FlowSlot, own: u64, now: u32, timeout: &[u32; 8]) -> u64 {
        let Some(tw) = self.twin_of(idx) else {
            return own;
        };
        let g = &self.slots[tw.index()].flow;
        let gi = g.idle(now);
        let expired = own & EXPIRED != 0 && gi >= timeout[g.state as usize & 7];
        let idle = (own as u32).min(gi);
        let cheap = own & CHEAP != 0 && CHEAP_BY_STATE[g.state as usize & 7] != 0;
        (u64::from(expired) * EXPIRED) | (u64::from(cheap) * CHEAP) | u64::from(idle)
    }

    /// Bucket `b`'s best victim from its head alone (one line; a linked entry's twin aside):
    /// its score + 1 and slot, the first of the bucket's on a tie; a score of 0 when no live
    /// entry but `keep` is there. One score a slot, no early exit: branch-light.
    #[inline(always)]
    fn bucket_victim(
        &self,
        b: u32,
        now: u32,
        timeout: &[u32; 8],
        keep: FlowSlot,
    ) -> (u64, FlowSlot) {
        let base = b as usize * WAYS;
        let h = &self.heads[b as usize];
        // Candidates: the live slots (a non-zero lane), `keep` aside.
        let mut cand = !crate::mem::lanes_equal(&h.lanes, 0) & ((1 << WAYS) - 1);
        if keep.index() / WAYS == b as usize {
            cand &= !(1 << (keep.index() % WAYS));
        }
        let (mut best, mut at) = (0u64, 0usize);
        for j in 0..WAYS {
            self.debug_check_mirror(base + j);
            let st = usize::from(h.states[j]) & 7;
            let idle = now.wrapping_sub(h.seen[j]);
            let mut score =
                (u64::from(idle >= timeout[st]) * EXPIRED) | CHEAP_BY_STATE[st] | u64::from(idle);
            if h.links >> j & 1 != 0 {
                score = self.pair_score(FlowSlot::new((base + j) as u32), score, now, timeout);
            }
            // + 1: a score of 0 (established, seen just now) must still beat "none".
            let score = (score + 1) * u64::from(cand >> j & 1);
            if score > best {
                (best, at) = (score, j);
            }
        }
        (best, FlowSlot::new((base + at) as u32))
    }

    /// Picks and removes a victim (and its twin) among the live entries of buckets `b1` and
    /// `b2` other than `keep`; see the module policy. Returns the victim's (now free) slot,
    /// and writes what it removed to `out` (in place: the caller's result, not a value
    /// moved through each caller, which cost a recorded new flow ~40 instructions).
    /// There must be a candidate: callers evict only from a full table, whose free slots (at
    /// most `WAYS - 1`, the rounding of the capacity) cannot fill a bucket, or from two full
    /// buckets.
    pub(super) fn evict_among(
        &mut self,
        b1: u32,
        b2: u32,
        now: u32,
        t: &Timeouts,
        keep: FlowSlot,
        out: &mut Option<Evicted>,
    ) -> FlowSlot {
        let timeout = t.by_state();
        // The victim has the greatest (expired, cheap, idle): an expired entry first, then a
        // half-open or unconfirmed UDP one before an established TCP or confirmed UDP one,
        // the least recently seen first, the first scanned (the first bucket's first) on a tie.
        let (mut best, mut victim) = self.bucket_victim(b1, now, &timeout, keep);
        if b2 != b1 {
            let (score, at) = self.bucket_victim(b2, now, &timeout, keep);
            if score > best {
                (best, victim) = (score, at);
            }
        }
        assert!(best != 0, "no entry to evict in buckets {b1}, {b2}");
        let score = best - 1;
        let reason = if score & EXPIRED != 0 {
            EvictReason::Expired
        } else if score & CHEAP == 0 {
            EvictReason::Established
        } else if self.slots[victim.index()].flow.state == FlowState::Udp {
            // (An unconfirmed one: a confirmed UDP flow ranks, and is named, as established.)
            EvictReason::Udp
        } else {
            EvictReason::HalfOpen
        };
        let s = &self.slots[victim.index()];
        let twin = self.twin_of(victim).map(|tw| {
            let ts = &self.slots[tw.index()];
            (ts.key, ts.flow)
        });
        *out = Some(Evicted {
            reason,
            key: s.key,
            flow: s.flow,
            twin,
        });
        self.remove(victim);
        victim
    }
}

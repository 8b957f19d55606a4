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

    /// Picks and removes a victim (and its twin) among the live entries of buckets `b1` and
    /// `b2` other than `keep`; see the module policy. Returns the victim's (now free) slot.
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
    ) -> (FlowSlot, Evicted) {
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
                let i = FlowSlot::new((base + j) as u32);
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
        } else if self.slots[victim.index()].flow.state == FlowState::Udp {
            // (An unconfirmed one: a confirmed UDP flow ranks, and is named, as established.)
            EvictReason::Udp
        } else {
            EvictReason::HalfOpen
        };
        let s = self.slots[victim.index()];
        let twin = self.twin_of(victim).map(|tw| {
            let ts = &self.slots[tw.index()];
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

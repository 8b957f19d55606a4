//! The victim of a full table: expired first, then half-open or unconfirmed UDP, then the
//! least recently seen, among the new key's two buckets only.

use super::*;

/// The cheap states (half-open or unconfirmed UDP), as the bytes of a head's `states`,
/// compared 8 at a time.
const CHEAP_STATES: [u8; 3] = [
    FlowState::TcpSynSeen as u8,
    FlowState::TcpClosing as u8,
    FlowState::Udp as u8,
];

/// [`CHEAP_STATES`] by `FlowState as usize & 7`, for a twin's state read from its slot.
const CHEAP_BY_STATE: [bool; 8] = {
    let mut t = [false; 8];
    let mut i = 0;
    while i < CHEAP_STATES.len() {
        t[CHEAP_STATES[i] as usize] = true;
        i += 1;
    }
    t
};

/// A chosen victim: its slot, whether it is expired, whether it is cheap (its score's two
/// top criteria, which name the reason it is evicted).
type Victim = (FlowSlot, bool, bool);
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
            return h.lanes[j] == 0 && h.links >> j & 1 == 0 && h.seconds >> j & 1 == 0;
        }
        let second = s.meta & META_SECOND != 0;
        (
            h.seen[j],
            h.states[j],
            h.links >> j & 1 != 0,
            h.seconds >> j & 1 != 0,
        ) == (
            s.flow.last_seen,
            s.flow.state as u8,
            s.flow.twin != NO_TWIN,
            second,
        )
    }

    /// The first live entry whose bucket head's copy of its age, state, link or bucket is
    /// not its own (or a free slot whose lane is not free), if any: for tests and fuzzing
    /// oracles (it reads the whole table).
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

    /// Bucket `b`'s live slots other than `keep`: the candidates (to evict, or to move), as
    /// a bit mask (bit `j` for slot `j`).
    #[inline(always)]
    pub(super) fn candidates(&self, b: u32, keep: FlowSlot) -> u32 {
        let mut cand = !crate::mem::lanes_equal(&self.heads[b as usize].lanes, 0) & 0xff;
        if keep.index() / WAYS == b as usize {
            cand &= !(1 << (keep.index() % WAYS));
        }
        cand
    }

    /// The victim among the candidates `c[0]` of bucket `b[0]` and `c[1]` of `b[1]`, with
    /// whether it is expired and whether it is cheap: the greatest (expired, cheap, idle),
    /// the first scanned on a tie. Chosen from the two heads a criterion at a time, all 16
    /// slots at once ([`crate::mem`]'s SSE2 lanes): the candidates narrowed to the expired
    /// ones if any, then to the cheap ones if any, then the first of the least recently seen.
    /// A linked candidate counts as its pair ([`with_twins`](Self::with_twins)).
    #[inline(always)]
    fn victim(&self, b: [u32; 2], c: [u32; 2], now: u32, timeout: &[u32; 8]) -> Victim {
        let h = [&self.heads[b[0] as usize], &self.heads[b[1] as usize]];
        if cfg!(debug_assertions) {
            for j in 0..2 * WAYS {
                self.debug_check_mirror(b[j / WAYS] as usize * WAYS + j % WAYS);
            }
        }
        let mut idle: [u32; 2 * WAYS] =
            std::array::from_fn(|j| now.wrapping_sub(h[j / WAYS].seen[j % WAYS]));
        let bound: [u32; 2 * WAYS] =
            std::array::from_fn(|j| timeout[usize::from(h[j / WAYS].states[j % WAYS]) & 7]);
        let mut expired = crate::mem::at_least_16(&idle, &bound);
        let cheap_in = |h: &Head| crate::mem::bytes_among(&h.states, CHEAP_STATES);
        let mut cheap = cheap_in(h[0]) | cheap_in(h[1]) << WAYS;
        let mut m = c[0] | c[1] << WAYS;
        assert!(m != 0, "no entry to evict in buckets {b:?}");
        let linked = (u32::from(h[0].links) | u32::from(h[1].links) << WAYS) & m;
        if linked != 0 {
            self.with_twins(b, linked, now, timeout, &mut idle, &mut expired, &mut cheap);
        }
        if m & expired != 0 {
            m &= expired;
        }
        if m & cheap != 0 {
            m &= cheap;
        }
        let j = crate::mem::first_max_16(&idle, m);
        let victim = FlowSlot::new(b[j / WAYS] * WAYS as u32 + (j % WAYS) as u32);
        (victim, expired >> j & 1 != 0, cheap >> j & 1 != 0)
    }

    /// [`victim`](Self::victim)'s lanes `linked` (candidates with a twin)
    /// made their pair's: a pair's age and expiry are those of its most recently seen half,
    /// and it is cheap only if both halves are (a UDP pair is confirmed when either half
    /// is). Reads each candidate's slot and its twin's: a lane at a time.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn with_twins(
        &self,
        b: [u32; 2],
        linked: u32,
        now: u32,
        timeout: &[u32; 8],
        idle: &mut [u32; 2 * WAYS],
        expired: &mut u32,
        cheap: &mut u32,
    ) {
        for (k, &bk) in b.iter().enumerate() {
            // Bucket k's 8 slots, as a slice: its lanes need no bounds check each.
            let Some(slots) = self.slots.get(bk as usize * WAYS..) else {
                continue;
            };
            let slots = &slots[..WAYS];
            let mut rest = linked >> (k * WAYS) & 0xff;
            while rest != 0 {
                let j = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                // The link is followed without checking it names this entry back
                // (`twin_of`): a stale one (never in a table that passes
                // `check_invariants`) could only change the score, and the removal of the
                // victim's twin does check it.
                let Some(g) = self.slots.get(slots[j].flow.twin.index()) else {
                    continue;
                };
                let (gi, st) = (g.flow.idle(now), g.flow.state as usize & 7);
                let lane = k * WAYS + j;
                idle[lane] = idle[lane].min(gi);
                *expired &= !(u32::from(gi < timeout[st]) << lane);
                *cheap &= !(u32::from(!CHEAP_BY_STATE[st]) << lane);
            }
        }
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
        let c1 = self.candidates(b1, keep);
        let c2 = if b2 == b1 {
            0
        } else {
            self.candidates(b2, keep)
        };
        let (victim, expired, cheap) = self.victim([b1, b2], [c1, c2], now, &timeout);
        let reason = if expired {
            EvictReason::Expired
        } else if !cheap {
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

//! Aging: the hand that reaps expired entries a bounded number of slots at a time, paced
//! to pass the whole table every [`SWEEP_MS`], and the census of live flows per backend it
//! takes on the way.

use super::*;

/// How long [`FlowTable::expire_paced`] takes to pass the hand over the whole table: an
/// expired entry is reaped at most about this long after it expired.
pub const SWEEP_MS: u32 = 1_000;

/// What the expiry hand shows its caller as it passes (no cost per packet): each live entry
/// it keeps, and each entry it removes, before it goes.
pub trait SweepVisitor {
    /// A live entry the hand keeps (instance sync looks for exceptions here).
    #[inline]
    fn kept(&mut self, _key: &FlowKey, _flow: &Flow) {}
    /// An entry the hand removes (both halves of a pair, each once), so the caller can
    /// release what it held (a FullNAT local port).
    #[inline]
    fn reaped(&mut self, _key: &FlowKey, _flow: &Flow) {}
}

/// Nothing to show.
impl SweepVisitor for () {}

impl FlowTable {
    /// Moves the hand over `budget` slots, removing expired entries (and pairs whose halves
    /// have both expired). Returns how many entries were removed. The worker calls this once
    /// per burst; a budget of `slots / (bursts per min timeout)` keeps up.
    ///
    /// Every live entry it passes and keeps is counted in the [`census`](Self::census).
    pub fn expire_step(&mut self, now: u32, budget: usize, t: &Timeouts) -> usize {
        self.expire_step_with(now, budget, t, &mut ())
    }

    /// [`expire_step`](Self::expire_step), showing `v` what it keeps and what it removes.
    pub fn expire_step_with(
        &mut self,
        now: u32,
        budget: usize,
        t: &Timeouts,
        v: &mut impl SweepVisitor,
    ) -> usize {
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
                if self.pair_expired(FlowSlot::new(i), now, t) {
                    let s = &self.slots[i as usize];
                    v.reaped(&s.key, &s.flow);
                    reaped += match self.twin_of(FlowSlot::new(i)) {
                        Some(tw) => {
                            let s = &self.slots[tw.index()];
                            v.reaped(&s.key, &s.flow);
                            2
                        }
                        None => 1,
                    };
                    self.remove(FlowSlot::new(i));
                } else {
                    let s = &self.slots[i as usize];
                    self.census.count(&s.flow);
                    v.kept(&s.key, &s.flow);
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
        self.expire_paced_with(now, max, t, &mut ())
    }

    /// [`expire_paced`](Self::expire_paced), showing `v` what it keeps and what it removes
    /// ([`expire_step_with`](Self::expire_step_with)).
    pub fn expire_paced_with(
        &mut self,
        now: u32,
        max: usize,
        t: &Timeouts,
        v: &mut impl SweepVisitor,
    ) -> usize {
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
        self.expire_step_with(now, visits as usize, t, v)
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
    pub(super) fn new() -> Census {
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
    pub(super) fn count(&mut self, f: &Flow) {
        if f.flags & FLAG_REVERSE != 0 {
            return;
        }
        let id = f.backend.index();
        if let Some(c) = self.counting.get_mut(id) {
            c[usize::from(f.state != FlowState::TcpEstablished)] += 1;
            self.top = self.top.max(id + 1);
            self.zero = false;
        }
    }

    /// One slot passed, of a table of `slots`: a pass ends after `slots` of them.
    #[inline]
    pub(super) fn visited(&mut self, slots: u32) {
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
    pub(super) fn empty(&mut self) {
        if !self.zero {
            self.counting[..self.top].fill([0; 2]);
            self.done[..self.top].fill([0; 2]);
            self.visited = 0;
            self.passes += 1;
            self.zero = true;
        }
    }

    /// `[established, other]` flows of backend `id` in the last completed pass.
    pub fn get(&self, id: BackendId) -> [u32; 2] {
        self.done.get(id.index()).copied().unwrap_or_default()
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

//! A burst: up to `N` owned mbufs in an array on the stack, the unit RX, TX and rings move.
//!
//! The slots are laid out exactly as the `struct rte_mbuf **` arrays DPDK's burst functions
//! take, so RX writes received pointers straight into the spare slots and TX reads the filled
//! ones; nothing is copied or allocated per burst.

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr;

use dpdk_sys as sys;

use super::mbuf::Mbuf;

// The slot array is handed to DPDK as `struct rte_mbuf **`.
const _: () = assert!(size_of::<MaybeUninit<Mbuf>>() == size_of::<*mut sys::rte_mbuf>());

/// Up to `N` owned mbufs (`1 <= N <= u16::MAX`). Dropping or clearing a burst frees what it
/// holds, with one bulk call.
pub struct Burst<const N: usize = 64> {
    /// Slots `0..len` hold owned mbufs; the rest are uninitialised.
    slots: [MaybeUninit<Mbuf>; N],
    len: usize,
}

impl<const N: usize> Burst<N> {
    /// An empty burst.
    #[inline]
    pub fn new() -> Self {
        const {
            assert!(
                N > 0 && N <= u16::MAX as usize,
                "a burst holds 1..=65535 mbufs"
            )
        };
        Burst {
            slots: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Number of mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the burst holds nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the burst is at capacity.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// `N`.
    #[inline]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Adds `m` at the end, or hands it back if the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.slots[self.len].write(m);
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the last mbuf.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot `len` held an owned mbuf, and lowering `len` first means it is no
        // longer counted as held, so it is moved out exactly once.
        Some(unsafe { self.slots[self.len].assume_init_read() })
    }

    /// The mbufs, in order.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: slots 0..len are initialised, and MaybeUninit<Mbuf> has Mbuf's layout.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The mbufs, in order, mutable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in `as_slice`, with `&mut self` for exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Iterates over the mbufs.
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Mbuf> {
        self.as_slice().iter()
    }

    /// Iterates over the mbufs, mutably (to rewrite packets in place).
    #[inline]
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Mbuf> {
        self.as_mut_slice().iter_mut()
    }

    /// Moves every mbuf out, front to back, leaving the burst empty. Mbufs the iterator has
    /// not yielded when it is dropped are freed.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_, N> {
        let end = self.len;
        // From here on the drain owns slots 0..end; if it is leaked, they leak, never double-free.
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            end,
        }
    }

    /// Keeps the mbufs for which `keep` is true, in order, and frees the others (one by one:
    /// for rare refusals). Returns how many were freed.
    pub fn retain(&mut self, mut keep: impl FnMut(&Mbuf) -> bool) -> usize {
        let len = self.len;
        // Slots 0..self.len stay exactly the kept ones: if `keep` panics, those are freed by
        // the burst's drop, the mbuf in hand by the unwinding, and the rest leak (never a
        // double free).
        self.len = 0;
        let mut kept = 0;
        for i in 0..len {
            // SAFETY: slot i held an owned mbuf, and each slot is read once (i only grows;
            // writes go to slots below or at i, all already read).
            let m = unsafe { self.slots[i].assume_init_read() };
            if keep(&m) {
                self.slots[kept].write(m);
                kept += 1;
                self.len = kept;
            }
        }
        len - kept
    }

    /// Frees every mbuf.
    #[inline]
    pub fn clear(&mut self) {
        let len = self.len;
        self.len = 0;
        // SAFETY: slots 0..len held owned mbufs, no longer counted as held.
        unsafe { self.free_slots(0, len) };
    }

    /// Frees the mbufs in slots `start..end` with one call.
    ///
    /// # Safety
    /// Those slots must hold owned mbufs that the burst no longer counts as held.
    #[inline]
    unsafe fn free_slots(&mut self, start: usize, end: usize) {
        if start < end {
            // SAFETY: the caller passes owned mbufs, laid out as `*mut rte_mbuf` (Mbuf is a
            // transparent non-null pointer); end - start <= N fits in u32.
            unsafe { sys::rte_pktmbuf_free_bulk(self.raw_mut().add(start), (end - start) as u32) };
        }
    }

    /// The slot array as DPDK's `struct rte_mbuf **`.
    #[inline]
    fn raw_mut(&mut self) -> *mut *mut sys::rte_mbuf {
        self.slots.as_mut_ptr().cast()
    }

    /// The filled slots, for a call that takes mbufs: (pointer, count).
    #[inline]
    pub(crate) fn filled_raw(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        (self.raw_mut(), self.len)
    }

    /// The spare slots, for a call that fills mbufs in: (pointer, count).
    #[inline]
    pub(crate) fn spare_raw(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        let len = self.len;
        // SAFETY: len <= N, so the pointer is at most one past the end of the array.
        (unsafe { self.raw_mut().add(len) }, N - len)
    }

    /// Counts `n` more slots, just filled through [`Burst::spare_raw`], as held.
    ///
    /// # Safety
    /// The `n` spare slots must now hold valid mbufs this burst owns (`n <= N - len`).
    #[inline]
    pub(crate) unsafe fn commit(&mut self, n: usize) {
        debug_assert!(n <= N - self.len);
        self.len += n;
    }

    /// After a call took the first `n` mbufs: forgets them and frees the rest. Returns `n`.
    ///
    /// # Safety
    /// Ownership of the first `n` mbufs must have passed elsewhere (`n <= len`).
    #[inline]
    pub(crate) unsafe fn taken_free_rest(&mut self, n: usize) -> usize {
        debug_assert!(n <= self.len);
        let len = self.len;
        self.len = 0;
        // SAFETY: slots n..len still hold owned mbufs, no longer counted as held.
        unsafe { self.free_slots(n, len) };
        n
    }

    /// After a call took the first `n` mbufs: forgets them and moves the rest to the front.
    ///
    /// # Safety
    /// Ownership of the first `n` mbufs must have passed elsewhere (`n <= len`).
    #[inline]
    pub(crate) unsafe fn taken_keep_rest(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let rest = self.len - n;
        if n != 0 && rest != 0 {
            let base = self.slots.as_mut_ptr();
            // SAFETY: both ranges lie in the array (n + rest == len <= N); `copy` allows overlap.
            unsafe { ptr::copy(base.add(n), base, rest) };
        }
        self.len = rest;
    }
}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<'a, const N: usize> IntoIterator for &'a mut Burst<N> {
    type Item = &'a mut Mbuf;
    type IntoIter = std::slice::IterMut<'a, Mbuf>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<'a, const N: usize> IntoIterator for &'a Burst<N> {
    type Item = &'a Mbuf;
    type IntoIter = std::slice::Iter<'a, Mbuf>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<const N: usize> fmt::Debug for Burst<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Burst")
            .field("len", &self.len)
            .field("capacity", &N)
            .finish()
    }
}

/// Moves the mbufs out of a [`Burst`], front to back (see [`Burst::drain`]).
pub struct Drain<'a, const N: usize> {
    burst: &'a mut Burst<N>,
    /// Slots `next..end` still hold owned mbufs.
    next: usize,
    end: usize,
}

impl<const N: usize> Iterator for Drain<'_, N> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        // SAFETY: slot i holds an owned mbuf that the drain has not yielded; advancing `next`
        // first means it is moved out exactly once.
        Some(unsafe { self.burst.slots[i].assume_init_read() })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl<const N: usize> ExactSizeIterator for Drain<'_, N> {}

impl<const N: usize> Drop for Drain<'_, N> {
    fn drop(&mut self) {
        // SAFETY: slots next..end hold owned mbufs the burst no longer counts (its len is 0).
        unsafe { self.burst.free_slots(self.next, self.end) };
    }
}

impl<const N: usize> fmt::Debug for Drain<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("remaining", &(self.end - self.next))
            .finish()
    }
}

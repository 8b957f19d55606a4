//! Memory helpers that need `unsafe` and have nothing to do with DPDK: a cache prefetch hint,
//! SSE2 compares over a flow-table bucket's lanes (`lanes.rs`: its tags, and the ages a full
//! table's eviction scores), huge-page advice for big
//! tables, counter words in shared memory, and table slots in a
//! file that outlives the process (`table_file.rs`, the flow tables' storage). With `dpdk`, the
//! crate's only rooms allowed `unsafe`; every block says why it is sound (`// SAFETY:`).

mod lanes;
mod shm;
mod table_file;

pub use lanes::{at_least_16, bytes_among, first_max_16, lanes_equal};
pub use shm::SharedWords;
pub use table_file::{FILE_GRANULE, HEADER_BYTES, MappedSlot, MappedSlots, OpenError, file_bytes};

/// Asks the CPU to start loading the cache line that holds `r` into all cache levels, without
/// waiting for it (what DPDK's `rte_prefetch0` does): a hint that lets the lookups of a whole
/// burst miss the caches at once instead of one after the other.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it neither reads architecturally nor faults, whatever the
    // address (here a live reference anyway), and SSE, which provides it, is part of the
    // x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Asks the kernel to back `mem` with transparent huge pages (2 MiB) where it can, before it
/// is first touched: for big tables read at random (the flow table), so that lookups do not
/// each pay a TLB miss on top of a cache miss. A hint: it does nothing where THP is off, and
/// only whole 2 MiB pages inside `mem` are affected.
pub fn advise_huge_pages<T>(mem: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let start = mem.as_mut_ptr() as usize;
    let end = start + size_of_val(mem);
    let (a, b) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
    if b > a {
        // SAFETY: [a, b) lies inside `mem`, which we borrow mutably, so no one else uses it;
        // MADV_HUGEPAGE only changes how the kernel backs those pages, never their contents
        // or whether they are mapped. A failure (THP unsupported) is harmless and ignored.
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE) };
    }
}

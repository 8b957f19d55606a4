//! Memory helpers that need `unsafe` and have nothing to do with DPDK: a cache prefetch hint,
//! a 16-byte compare of eight 16-bit lanes (the flow table's tags), huge-page advice for big
//! tables, counter words in shared memory, and table slots in a
//! file that outlives the process (`table_file.rs`, the flow tables' storage). With `dpdk`, the
//! crate's only rooms allowed `unsafe`; every block says why it is sound (`// SAFETY:`).

mod shm;
mod table_file;

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

/// The lanes of `v` equal to `x`, as a bit mask (bit `j` for lane `j`). On x86-64, one
/// 16-byte compare, a pack to bytes and a mask extraction (SSE2); the compiler does not
/// vectorize the lane-by-lane loop it falls back to elsewhere (callgrind: 58 instructions a
/// call against 6). Hand-written for that reason.
#[inline(always)]
pub fn lanes_equal(v: &[u16; 8], x: u16) -> u32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics are available on
    // every CPU this code runs on; they only compute on values (the unaligned load reads the
    // 16 bytes of `v`, a live reference).
    unsafe {
        use std::arch::x86_64::{
            _mm_cmpeq_epi16, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16, _mm_set1_epi16,
            _mm_setzero_si128,
        };
        let v = _mm_loadu_si128(v.as_ptr().cast());
        let eq = _mm_cmpeq_epi16(v, _mm_set1_epi16(x as i16));
        // Each lane 0xffff or 0, saturated to a byte 0xff or 0: lane j in byte j.
        _mm_movemask_epi8(_mm_packs_epi16(eq, _mm_setzero_si128())) as u32
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = 0u32;
        for (j, l) in v.iter().enumerate() {
            m |= u32::from(*l == x) << j;
        }
        m
    }
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

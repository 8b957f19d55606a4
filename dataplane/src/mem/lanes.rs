//! Compares across the lanes of a flow-table bucket's head, with SSE2 (part of the x86-64
//! baseline, so no feature detection): its 16-bit tags for the lookups, and, for a full
//! table's eviction, the 16 ages and 8-bit states of the new key's two buckets. Each has a
//! plain lane-by-lane version for other architectures, which the tests compare against.
//! Hand-written because the compiler does not vectorize these loops (it extracts a lane at a
//! time): callgrind counted 58 instructions against 6 for `lanes_equal`, and 330 against
//! ~190 for the eviction's scoring (perf/RESULTS.md §20).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

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

/// The lanes `j` where `v[j] >= t[j]` (unsigned), as a bit mask (bit `j` for lane `j`).
#[inline(always)]
pub fn at_least_16(v: &[u32; 16], t: &[u32; 16]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned loads read 16 bytes at
    // offsets 0, 16, 32 and 48 of `v` and `t`, each 64 bytes and live references.
    unsafe {
        // SSE2 compares signed: flipping the top bit of both sides orders them unsigned.
        let bias = _mm_set1_epi32(i32::MIN);
        let mut below = 0u32;
        for k in 0..4 {
            let a = _mm_xor_si128(_mm_loadu_si128(v.as_ptr().add(4 * k).cast()), bias);
            let b = _mm_xor_si128(_mm_loadu_si128(t.as_ptr().add(4 * k).cast()), bias);
            let lt = _mm_castsi128_ps(_mm_cmpgt_epi32(b, a));
            below |= (_mm_movemask_ps(lt) as u32) << (4 * k);
        }
        !below & 0xffff
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        at_least_16_plain(v, t)
    }
}

/// [`at_least_16`] lane by lane.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn at_least_16_plain(v: &[u32; 16], t: &[u32; 16]) -> u32 {
    (0..16).fold(0, |m, j| m | u32::from(v[j] >= t[j]) << j)
}

/// The lanes of `v` equal to one of `xs`, as a bit mask (bit `j` for lane `j`).
#[inline(always)]
pub fn bytes_among<const N: usize>(v: &[u8; 8], xs: [u8; N]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline; the 8-byte load reads exactly `v`, a live
    // reference.
    unsafe {
        let a = _mm_loadl_epi64(v.as_ptr().cast());
        let mut eq = _mm_setzero_si128();
        for x in xs {
            eq = _mm_or_si128(eq, _mm_cmpeq_epi8(a, _mm_set1_epi8(x as i8)));
        }
        // The upper 8 bytes were loaded as zeros: only the low 8 bits are lanes.
        _mm_movemask_epi8(eq) as u32 & 0xff
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        bytes_among_plain(v, xs)
    }
}

/// [`bytes_among`] lane by lane.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn bytes_among_plain<const N: usize>(v: &[u8; 8], xs: [u8; N]) -> u32 {
    (0..8).fold(0, |m, j| m | u32::from(xs.contains(&v[j])) << j)
}

/// The first lane, among those of mask `m` (bit `j` for lane `j`; not 0), whose value is
/// the greatest (unsigned) of theirs. Lanes outside `m` are ignored.
#[inline(always)]
pub fn first_max_16(v: &[u32; 16], m: u32) -> usize {
    debug_assert!(m & 0xffff != 0, "no lane to choose from");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned loads read 16 bytes at
    // offsets 0, 16, 32 and 48 of `v`, 64 bytes and a live reference. The rest computes on
    // values.
    unsafe {
        let bias = _mm_set1_epi32(i32::MIN);
        let mm = _mm_set1_epi32(m as i32);
        // Lane j of vector k: v[4k + j] with its top bit flipped (so that signed compares
        // order it unsigned), or i32::MIN (below every lane of `m`, or equal to a 0) outside m.
        let x: [__m128i; 4] = std::array::from_fn(|k| {
            let bit = _mm_setr_epi32(1 << (4 * k), 2 << (4 * k), 4 << (4 * k), 8 << (4 * k));
            let inside = _mm_cmpeq_epi32(_mm_and_si128(mm, bit), bit);
            let raw = _mm_loadu_si128(v.as_ptr().add(4 * k).cast());
            _mm_xor_si128(_mm_and_si128(raw, inside), bias)
        });
        let max = |a: __m128i, b: __m128i| {
            let gt = _mm_cmpgt_epi32(a, b);
            _mm_or_si128(_mm_and_si128(gt, a), _mm_andnot_si128(gt, b))
        };
        let mut top = max(max(x[0], x[1]), max(x[2], x[3]));
        top = max(top, _mm_shuffle_epi32::<0b01_00_11_10>(top));
        top = max(top, _mm_shuffle_epi32::<0b10_11_00_01>(top));
        // Every lane of `top` is the maximum now; the lanes equal to it, those of m first.
        let mut eq = 0u32;
        for (k, xk) in x.iter().enumerate() {
            let e = _mm_castsi128_ps(_mm_cmpeq_epi32(*xk, top));
            eq |= (_mm_movemask_ps(e) as u32) << (4 * k);
        }
        (eq & m).trailing_zeros() as usize
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        first_max_16_plain(v, m)
    }
}

/// [`first_max_16`] lane by lane.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn first_max_16_plain(v: &[u32; 16], m: u32) -> usize {
    let mut at = None::<usize>;
    for j in (0..16).filter(|j| m >> j & 1 != 0) {
        if at.is_none_or(|a| v[j] > v[a]) {
            at = Some(j);
        }
    }
    at.expect("a lane in the mask")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that sit on the edges of the unsigned order (the sign bit, wrap-around),
    /// picked at random with many ties.
    fn values(mut r: u64) -> impl FnMut() -> u32 {
        const EDGE: [u32; 8] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0x8000_0001, u32::MAX, 5, 6];
        move || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            if r & 3 == 0 {
                r as u32 >> 5
            } else {
                EDGE[(r >> 8) as usize % 8]
            }
        }
    }

    #[test]
    fn the_sse2_lanes_agree_with_the_plain_loops() {
        let mut next = values(0x9e37_79b9_7f4a_7c15);
        let mut picked = [0u32; 16];
        for _ in 0..20_000 {
            let v: [u32; 16] = std::array::from_fn(|_| next());
            let t: [u32; 16] = std::array::from_fn(|_| next());
            assert_eq!(
                at_least_16(&v, &t),
                at_least_16_plain(&v, &t),
                "{v:x?} {t:x?}"
            );
            let m = next() & 0xffff;
            if m != 0 {
                let j = first_max_16(&v, m);
                assert_eq!(j, first_max_16_plain(&v, m), "{v:x?} mask {m:#x}");
                picked[j] += 1;
            }
            let b: [u8; 8] = std::array::from_fn(|_| next() as u8 % 6);
            for xs in [[0u8, 2, 3], [1, 1, 1], [5, 4, 0]] {
                assert_eq!(
                    bytes_among(&b, xs),
                    bytes_among_plain(&b, xs),
                    "{b:?} {xs:?}"
                );
            }
        }
        assert!(
            picked.iter().all(|&n| n > 100),
            "every lane is picked: {picked:?}"
        );
        println!("lanes picked: {picked:?}");
    }
}

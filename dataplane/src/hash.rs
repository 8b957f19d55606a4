//! The one seeded hash every Fulcrum instance agrees on.
//!
//! Everything that picks a backend or a worker hashes through here: [`flow_hash`] (the
//! 5-tuple, per packet), [`src_hash`] (source-IP affinity), [`owner_hash`] (the worker that
//! owns a NAT flow in both directions) and [`hash_bytes`] (Maglev's per-member offset and
//! skip). Instances behind the same ECMP group only agree on a flow's backend if they compute
//! the same numbers, so these functions are **frozen**: their results must be identical on
//! every machine (they are defined on little-endian reads and `u128` products, never on
//! `usize`, pointer width or the host's byte order) and in every future version. The
//! golden-value tests at the bottom pin them; a change that breaks them moves every live
//! flow on upgrade and must be treated as a wire-format change.
//!
//! # Construction
//!
//! The mixing primitive is the *folded multiply* of wyhash and foldhash: the full 128-bit
//! product of two 64-bit words, with its high half XORed onto its low half. One folded
//! multiply spreads every input bit over most output bits; XORing the halves makes the low
//! bits (which `% M` and `% workers` use) depend on the whole input, not just on the low
//! input bits. Input words are XORed with fixed odd constants (wyhash's secrets) before
//! multiplying, so an all-zero input word does not zero the product.
//!
//! - [`flow_hash`]: two independent folded multiplies of (source, destination) halves, a
//!   third that joins them with the ports/protocol/family word, and a final one: four
//!   multiplies, no loop, no branch, no byte-wise work.
//! - [`src_hash`] / [`owner_hash`]: one multiply over the address, one with the port (or a
//!   domain tag), one to finish.
//! - [`hash_bytes`]: 16 bytes per folded multiply, chained; the tail is zero-padded and the
//!   length folded in at the end so padding cannot collide.
//!
//! This is a hash for load spreading, not a MAC: someone who knows the seed can build
//! colliding inputs. The seed comes from the configuration.

use crate::flow::FlowKey;

// wyhash's default secrets: odd, ~half the bits set, no simple relation between them.
const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

/// Tag that separates [`src_hash`] from [`owner_hash`]: outside the `u16` port range.
const SRC_DOMAIN: u64 = 1 << 16;

/// The folded multiply: low half XOR high half of the 128-bit product.
#[inline(always)]
const fn mum(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Little-endian `u64` from 8 bytes (the host's byte order never matters).
#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// A 16-byte address (the [`FlowKey`] layout) as two little-endian words.
#[inline(always)]
fn addr_words(a: &[u8; 16]) -> (u64, u64) {
    let (lo, hi) = a.split_at(8);
    (le64(lo), le64(hi))
}

/// Last round shared by the fixed-width hashes: one more folded multiply, by a constant so
/// that no input can zero the multiplier and collapse the round.
#[inline(always)]
const fn finish(h: u64) -> u64 {
    mum(h ^ P2, P3)
}

/// Hashes arbitrary bytes (backend names for Maglev). Not on the per-packet path.
///
/// Frozen: see the module documentation.
pub fn hash_bytes(seed: u64, data: &[u8]) -> u64 {
    let len = data.len() as u64;
    let mut acc = seed ^ P0;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        acc = mum(le64(&c[..8]) ^ P1, le64(&c[8..]) ^ acc);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 16];
    tail[..rest.len()].copy_from_slice(rest);
    acc = mum(le64(&tail[..8]) ^ P1, le64(&tail[8..]) ^ acc);
    // The length tells "ab" from "ab\0": the tail was zero-padded.
    mum(acc ^ P3, len ^ P2)
}

/// Hashes a flow's 5-tuple (plus family). Runs once per packet; the result picks the Maglev
/// slot (`% M`) and is reused as the flow table's hash.
///
/// Frozen: see the module documentation.
#[inline]
pub fn flow_hash(seed: u64, key: &FlowKey) -> u64 {
    let (s0, s1) = addr_words(&key.src);
    let (d0, d1) = addr_words(&key.dst);
    let rest = u64::from(key.sport)
        | u64::from(key.dport) << 16
        | u64::from(key.proto) << 32
        | u64::from(key.family) << 40;
    // The two halves are independent, so the CPU runs both multiplies at once.
    let a = mum(s0 ^ seed ^ P0, d0 ^ P1);
    let b = mum(s1 ^ seed ^ P2, d1 ^ P3);
    finish(mum(a ^ rest ^ P1, b ^ P0))
}

/// Hashes a flow key for the flow table's buckets, with a seed private to the instance (kept
/// in its flow-table files). **Not frozen** like the functions above, but a table adopted from
/// a file was placed with it: a change must bump
/// [`flow::persist::LAYOUT_VERSION`](crate::flow::persist::LAYOUT_VERSION) (adoption would
/// otherwise drop every entry as misplaced). An IPv4 key (the common case, whose
/// addresses are 4 bytes of 16) takes two folded multiplies over its 13 significant bytes
/// instead of [`flow_hash`]'s four over 38; other keys go through [`flow_hash`].
#[inline(always)]
pub fn table_hash(seed: u64, key: &FlowKey) -> u64 {
    if key.family != crate::flow::FAMILY_V4 {
        return flow_hash(seed, key);
    }
    let s = u32::from_le_bytes([key.src[0], key.src[1], key.src[2], key.src[3]]);
    let d = u32::from_le_bytes([key.dst[0], key.dst[1], key.dst[2], key.dst[3]]);
    let addrs = u64::from(s) | u64::from(d) << 32;
    let rest = u64::from(key.sport) | u64::from(key.dport) << 16 | u64::from(key.proto) << 32;
    finish(mum(addrs ^ seed ^ P0, rest ^ P1))
}

/// Hashes an address (the 16-byte [`FlowKey`] layout: IPv4 in the first 4 bytes, the rest
/// zero) with a 64-bit tag.
#[inline(always)]
fn addr_tag(seed: u64, addr: &[u8; 16], tag: u64) -> u64 {
    let (w0, w1) = addr_words(addr);
    let a = mum(w0 ^ seed ^ P0, w1 ^ P1);
    finish(mum(a ^ P3, tag ^ seed ^ P2))
}

/// Hashes a source address alone (source-IP affinity: every connection of a client goes to
/// one backend). `addr` is in the [`FlowKey`] layout; the family is not hashed (`10.0.0.1`
/// and `a00:1::` share a value, which only matters for spreading, and not measurably).
///
/// Frozen: see the module documentation.
#[inline]
pub fn src_hash(seed: u64, addr: &[u8; 16]) -> u64 {
    addr_tag(seed, addr, SRC_DOMAIN)
}

/// Hashes what both directions of a NAT flow share, the client's address and port, to pick
/// the worker that owns it (`% workers`). `client_addr` is in the [`FlowKey`] layout.
///
/// Frozen: see the module documentation.
#[inline]
pub fn owner_hash(seed: u64, client_addr: &[u8; 16], client_port: u16) -> u64 {
    addr_tag(seed, client_addr, u64::from(client_port))
}

/// SplitMix64: a small, seedable, deterministic generator (not a hash of the frozen kind
/// above, and no cryptographic quality): the workspace's one for jitter, shuffles and
/// randomized tests, so that a fixed seed reproduces a run.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is 0; the slight modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[cfg(test)]
mod tests;

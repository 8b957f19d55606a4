//! The Internet checksum (RFC 1071): full computation over headers, segments and
//! pseudo-headers, and RFC 1624 incremental updates for rewrites.
//!
//! Vocabulary used throughout:
//! - a *sum* is the ones-complement sum of big-endian 16-bit words, folded to 16 bits and not
//!   complemented ([`sum`], [`combine`], [`pseudo_header_v4`], ...);
//! - a *checksum* is the complement of a sum, the value carried in a header field
//!   ([`ipv4_header`], [`l4_checksum_v4`], [`update_u16`], ...).
//!
//! A buffer verifies when the sum over it, checksum field included (plus the pseudo-header for
//! TCP, UDP and ICMPv6), is `0xffff`.
//!
//! # UDP's zero
//!
//! UDP uses the value 0 to mean "no checksum" (allowed over IPv4 only, RFC 768; RFC 8200
//! forbids it over IPv6). Hence two rules that the plain functions here do *not* apply:
//! - a computed UDP checksum of 0 is sent as `0xffff` ([`udp_fill`]; `udp::Packet`'s
//!   `fill_checksum_*` do it);
//! - when rewriting a UDP datagram whose checksum field is 0, the field must stay 0, and an
//!   updated checksum that comes out 0 must be sent as `0xffff`: use [`update_udp`] (or
//!   [`update_udp_u16`]) instead of [`update_bytes`] for the UDP checksum.
//!
//! Every function here takes plain slices and never panics.

/// Bytes summed before the partial sum is folded, so that the 64-bit accumulator can never
/// overflow, whatever the slice's length: a block adds at most 2^17 words below 2^33 each.
const BLOCK: usize = 1 << 20;

/// Folds a 64-bit ones-complement accumulator to 16 bits (RFC 1071 §2(C)): four steps
/// suffice for any `u64`, so there is no loop.
#[inline]
pub const fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32); // < 2^33
    sum = (sum & 0xffff_ffff) + (sum >> 32); // <= 2^32
    sum = (sum & 0xffff) + (sum >> 16); // <= 0x1fffe, or 0x10000
    sum = (sum & 0xffff) + (sum >> 16); // <= 0xffff
    sum as u16
}

/// Sum of `data` in native byte order, unfolded. Summing in native order and swapping once at
/// the end is RFC 1071 §2(B)'s byte-order independence; summing 32-bit halves of 64-bit loads
/// lets the compiler vectorize the loop.
#[inline]
fn accumulate(data: &[u8]) -> u64 {
    let mut total = 0u64;
    for block in data.chunks(BLOCK) {
        let mut acc = 0u64;
        let mut words = block.chunks_exact(8);
        for word in &mut words {
            let mut w = [0; 8];
            w.copy_from_slice(word);
            let w = u64::from_ne_bytes(w);
            acc += (w & 0xffff_ffff) + (w >> 32);
        }
        let mut rest = words.remainder();
        if let Some((w, r)) = rest.split_first_chunk::<4>() {
            acc += u64::from(u32::from_ne_bytes(*w));
            rest = r;
        }
        if let Some((w, r)) = rest.split_first_chunk::<2>() {
            acc += u64::from(u16::from_ne_bytes(*w));
            rest = r;
        }
        // An odd last byte is the high byte of a word padded with zero (RFC 1071 §4.1); only
        // the last block can be odd, since BLOCK is even.
        if let [b] = rest {
            acc += u64::from(u16::from_ne_bytes([*b, 0]));
        }
        total = u64::from(fold(total + u64::from(fold(acc))));
    }
    total
}

/// Adds the ones-complement sum of `data`, taken as big-endian 16-bit words (an odd last
/// byte is padded with a zero byte), to the accumulator `initial`, and returns the new
/// accumulator, not yet folded: `fold(sum(data, 0))` is the 16-bit sum, zero only for
/// all-zero data. `data` must start at an even offset of the checksummed bytes, and only the
/// last slice chained this way may have an odd length.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    // Folding commutes with the byte swap: fold in native order, then swap the 16-bit result.
    // Folding `initial` first keeps the addition from overflowing whatever it holds.
    u64::from(fold(initial)) + u64::from(u16::from_be(fold(accumulate(data))))
}

/// The folded sum of `data` alone.
#[inline]
fn sum16(data: &[u8]) -> u16 {
    fold(sum(data, 0))
}

/// Ones-complement sum of partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The checksum an IPv4 header should carry. `header` is the whole header (`header_len`
/// bytes, options included); the value currently in its checksum field (bytes 10..12) is
/// ignored, so the field need not be zeroed first. (Exact for any header with a nonzero byte
/// outside the checksum field, which every IPv4 header has in its version nibble.)
#[inline]
pub fn ipv4_header(header: &[u8]) -> u16 {
    let current = match header.get(10..12) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    };
    // Subtracting in ones-complement is adding the complement.
    !combine(&[sum16(header), !current])
}

/// Sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source, destination, zero,
/// protocol, and the TCP/UDP length (header plus data).
#[inline]
pub fn pseudo_header_v4(src: &[u8; 4], dst: &[u8; 4], protocol: u8, len: u16) -> u16 {
    pseudo_v4(src, dst, protocol, u32::from(len))
}

#[inline]
fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], protocol: u8, len: u32) -> u16 {
    let s = u64::from(u32::from_be_bytes(*src));
    let d = u64::from(u32::from_be_bytes(*dst));
    let acc = (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff)
        + u64::from(protocol)
        + u64::from(len >> 16)
        + u64::from(len & 0xffff);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit upper-layer
/// length, three zero bytes, next header.
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, len: u32) -> u16 {
    let acc = u64::from(sum16(src))
        + u64::from(sum16(dst))
        + u64::from(next_header)
        + u64::from(len >> 16)
        + u64::from(len & 0xffff);
    fold(acc)
}

/// The checksum of a TCP, UDP (see the module docs for UDP's zero) or ICMP-over-pseudo-header
/// segment carried by IPv4. `segment` is the whole L4 header plus data (the IPv4 payload),
/// with its checksum field set to zero.
#[inline]
pub fn l4_checksum_v4(src: &[u8; 4], dst: &[u8; 4], protocol: u8, segment: &[u8]) -> u16 {
    !l4_sum_v4(src, dst, protocol, segment)
}

/// The checksum of a TCP, UDP or ICMPv6 segment carried by IPv6. `segment` is the whole
/// upper-layer header plus data, with its checksum field set to zero.
#[inline]
pub fn l4_checksum_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, segment: &[u8]) -> u16 {
    !l4_sum_v6(src, dst, next_header, segment)
}

/// Sum over the IPv4 pseudo-header and `segment`; `0xffff` when the segment's checksum
/// field is right.
#[inline]
pub fn l4_sum_v4(src: &[u8; 4], dst: &[u8; 4], protocol: u8, segment: &[u8]) -> u16 {
    // An IPv4 segment is shorter than 64 KiB; a longer slice still gets a defined result.
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    combine(&[pseudo_v4(src, dst, protocol, len), sum16(segment)])
}

/// Sum over the IPv6 pseudo-header and `segment`; `0xffff` when the segment's checksum
/// field is right.
#[inline]
pub fn l4_sum_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    combine(&[pseudo_header_v6(src, dst, next_header, len), sum16(segment)])
}

/// The value to put in a UDP checksum field for a computed checksum: 0 is sent as `0xffff`,
/// since 0 on the wire means "no checksum" (RFC 768).
#[inline]
pub const fn udp_fill(computed: u16) -> u16 {
    if computed == 0 { 0xffff } else { computed }
}

/// RFC 1624 eqn. 3 for one 16-bit word: `HC' = ~(~HC + ~m + m')`. Works for the IPv4 header
/// checksum and for TCP and ICMP checksums (for UDP see [`update_udp_u16`]); `old` and `new`
/// must sit at an even offset of the checksummed data.
#[inline]
pub const fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(!checksum as u64 + !old as u64 + new as u64)
}

/// RFC 1624 eqn. 3 for one 32-bit word at an even offset (an IPv4 address, a sequence
/// number): both of its 16-bit halves are replaced.
#[inline]
pub const fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let old = !old;
    !fold(
        !checksum as u64
            + (old >> 16) as u64
            + (old & 0xffff) as u64
            + (new >> 16) as u64
            + (new & 0xffff) as u64,
    )
}

/// RFC 1624 eqn. 3 for a run of bytes replaced in place: `old` and `new` are the bytes before
/// and after, of equal length, starting at an even offset of the checksummed data (IPv4 and
/// IPv6 addresses in headers and pseudo-headers, a pair of ports). The sum of the
/// complemented old words is the complement of their sum, so each side is summed once.
#[inline]
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!sum16(old)) + u64::from(sum16(new)))
}

/// [`update_bytes`] for a UDP checksum field: 0 ("no checksum", IPv4) stays 0, and an
/// updated checksum of 0 is sent as `0xffff`.
#[inline]
pub fn update_udp(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    if checksum == 0 {
        0
    } else {
        udp_fill(update_bytes(checksum, old, new))
    }
}

/// [`update_u16`] for a UDP checksum field, with [`update_udp`]'s rule for zero.
#[inline]
pub const fn update_udp_u16(checksum: u16, old: u16, new: u16) -> u16 {
    if checksum == 0 {
        0
    } else {
        udp_fill(update_u16(checksum, old, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_vectors::Rng;

    /// Byte-at-a-time reference straight from RFC 1071's definition.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = match pair {
                [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                [hi] => u16::from_be_bytes([*hi, 0]),
                _ => unreachable!(),
            };
            acc += u32::from(word);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn sum_matches_reference_at_every_length_and_alignment() {
        let mut rng = Rng::new(1);
        let mut buf = [0u8; 300];
        rng.fill(&mut buf);
        for start in 0..8 {
            for len in 0..(buf.len() - start) {
                let data = &buf[start..start + len];
                assert_eq!(sum16(data), reference_sum(data), "start {start} len {len}");
            }
        }
        let ones = [0xffu8; 1001];
        assert_eq!(sum16(&ones), reference_sum(&ones));
    }

    #[test]
    fn sums_chain_without_overflow() {
        let mut rng = Rng::new(5);
        let mut data = [0u8; 64];
        rng.fill(&mut data);
        for split in (0..=40).step_by(2) {
            let chained = sum(&data[split..41], sum(&data[..split], 0));
            assert_eq!(fold(chained), sum16(&data[..41]), "split {split}");
        }
        // Whatever the accumulator holds, adding to it cannot overflow.
        assert_eq!(fold(sum(&[0xff; 64], u64::MAX)), 0xffff);
        assert_eq!(
            fold(sum(&[0x00, 0x01], u64::MAX - 1)),
            fold(u64::MAX - 1) + 1
        );
    }

    #[test]
    fn sum_is_zero_only_for_zero_data() {
        assert_eq!(sum16(&[]), 0);
        assert_eq!(sum16(&[0; 9]), 0);
        // Nonzero data sums to 0xffff, never to the other zero.
        assert_eq!(sum16(&[0xff, 0xff]), 0xffff);
        assert_eq!(sum16(&[0x80, 0x00, 0x7f, 0xff]), 0xffff);
    }

    #[test]
    fn sum_over_several_blocks() {
        let data = vec![0xabu8; 2 * BLOCK + 3];
        assert_eq!(sum16(&data), reference_sum(&data));
    }

    #[test]
    fn fold_extremes() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x1_0000_0000), 1);
        let mut rng = Rng::new(2);
        for _ in 0..10_000 {
            let x = rng.next_u64();
            // x mod 0xffff, in the [1, 0xffff] representation for nonzero x.
            let expect = match x % 0xffff {
                0 if x != 0 => 0xffff,
                r => r as u16,
            };
            assert_eq!(fold(x), expect, "{x:#x}");
        }
    }

    /// RFC 1071 §3's worked example: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum16(&data), 0xddf2);
    }

    /// The IPv4 header from Wikipedia's "IPv4 header checksum" article: checksum 0xb861.
    #[test]
    fn ipv4_header_known_value() {
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, // ..protocol UDP
            0xb8, 0x61, // checksum
            0xc0, 0xa8, 0x00, 0x01, // 192.168.0.1
            0xc0, 0xa8, 0x00, 0xc7, // 192.168.0.199
        ];
        assert_eq!(ipv4_header(&header), 0xb861);
        assert_eq!(sum16(&header), 0xffff);
        header[10..12].fill(0);
        assert_eq!(ipv4_header(&header), 0xb861);
        // Short or empty input does not panic.
        let _ = ipv4_header(&[]);
        assert_eq!(ipv4_header(&header[..10]), !sum16(&header[..10]));
    }

    #[test]
    fn update_u16_u32_and_bytes_agree() {
        let mut rng = Rng::new(3);
        for _ in 0..10_000 {
            let mut data = [0u8; 32];
            rng.fill(&mut data);
            let csum = !sum16(&data);
            let old = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            let new = rng.next_u64() as u32;
            data[8..12].copy_from_slice(&new.to_be_bytes());
            let full = !sum16(&data);
            assert_eq!(update_u32(csum, old, new), full);
            assert_eq!(
                update_bytes(csum, &old.to_be_bytes(), &new.to_be_bytes()),
                full
            );
            let hi = |v: u32| (v >> 16) as u16;
            let lo = |v: u32| v as u16;
            let step = update_u16(csum, hi(old), hi(new));
            assert_eq!(update_u16(step, lo(old), lo(new)), full);
        }
    }

    #[test]
    fn udp_zero_rules() {
        // "No checksum" survives any rewrite.
        assert_eq!(update_udp(0, &[1, 2, 3, 4], &[5, 6, 7, 8]), 0);
        assert_eq!(update_udp_u16(0, 1, 2), 0);
        assert_eq!(udp_fill(0), 0xffff);
        assert_eq!(udp_fill(0x1234), 0x1234);
        // A rewrite whose true checksum is 0 yields 0xffff, not 0.
        // Data 0x1234 0xedcb sums to 0xffff: checksum 0. Start from 0x1234 0x0000.
        let before = [0x12, 0x34, 0x00, 0x00];
        let csum = udp_fill(!sum16(&before));
        assert_eq!(csum, 0xedcb);
        assert_eq!(update_bytes(csum, &[0, 0], &[0xed, 0xcb]), 0);
        assert_eq!(update_udp(csum, &[0, 0], &[0xed, 0xcb]), 0xffff);
        assert_eq!(update_udp_u16(csum, 0, 0xedcb), 0xffff);
        // And back: starting from the 0xffff that stood for 0.
        assert_eq!(update_udp(0xffff, &[0xed, 0xcb], &[0, 0]), 0xedcb);
    }

    #[test]
    fn pseudo_headers_match_their_byte_layout() {
        let mut rng = Rng::new(4);
        for _ in 0..1000 {
            let mut src6 = [0u8; 16];
            let mut dst6 = [0u8; 16];
            rng.fill(&mut src6);
            rng.fill(&mut dst6);
            let len = rng.next_u64() as u32;
            let nh = rng.next_u64() as u8;
            let mut ph = [0u8; 40];
            ph[..16].copy_from_slice(&src6);
            ph[16..32].copy_from_slice(&dst6);
            ph[32..36].copy_from_slice(&len.to_be_bytes());
            ph[39] = nh;
            assert_eq!(pseudo_header_v6(&src6, &dst6, nh, len), sum16(&ph));

            let src4: [u8; 4] = src6[..4].try_into().unwrap();
            let dst4: [u8; 4] = dst6[..4].try_into().unwrap();
            let len4 = len as u16;
            let mut ph4 = [0u8; 12];
            ph4[..4].copy_from_slice(&src4);
            ph4[4..8].copy_from_slice(&dst4);
            ph4[9] = nh;
            ph4[10..].copy_from_slice(&len4.to_be_bytes());
            assert_eq!(pseudo_header_v4(&src4, &dst4, nh, len4), sum16(&ph4));
        }
    }
}

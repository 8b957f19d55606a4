//! Checksums: the functions over plain slices never panic, and RFC 1624's incremental update
//! of a run of bytes at an even offset agrees with a full recomputation.
//!
//! Input: `at: u8, n: u8`, then the buffer; the run replaced is `n % 17` bytes (rounded down
//! to even) at `2 * at`, taken from the end of the buffer.
#![no_main]

use dataplane::wire::checksum;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [at, n, buf @ ..] = data else {
        return;
    };
    let _ = checksum::ipv4_header(buf);
    let full = |b: &[u8]| !checksum::fold(checksum::sum(b, 0));
    // Chaining sums over even-length pieces is the same as one sum.
    let split = (usize::from(*at) * 2).min(buf.len() & !1);
    let chained = checksum::fold(checksum::sum(
        &buf[split..],
        checksum::sum(&buf[..split], 0),
    ));
    assert_eq!(chained, checksum::fold(checksum::sum(buf, 0)));

    let n = usize::from(*n % 17) & !1;
    let at = usize::from(*at) * 2;
    if buf.len() < n || at + n > buf.len() {
        return;
    }
    let old = buf[at..at + n].to_vec();
    let new = buf[buf.len() - n..].to_vec();
    let before = full(buf);
    let mut after = buf.to_vec();
    after[at..at + n].copy_from_slice(&new);
    let updated = checksum::update_bytes(before, &old, &new);
    let recomputed = full(&after);
    // Equal as ones-complement numbers (0x0000 and 0xffff are both zero).
    let norm = |c: u16| if c == 0xffff { 0 } else { c };
    assert_eq!(norm(updated), norm(recomputed), "RFC 1624 update disagrees");
    if n == 2 {
        let o = u16::from_be_bytes([old[0], old[1]]);
        let w = u16::from_be_bytes([new[0], new[1]]);
        assert_eq!(norm(checksum::update_u16(before, o, w)), norm(recomputed));
    }
    if n == 4 {
        let o = u32::from_be_bytes([old[0], old[1], old[2], old[3]]);
        let w = u32::from_be_bytes([new[0], new[1], new[2], new[3]]);
        assert_eq!(norm(checksum::update_u32(before, o, w)), norm(recomputed));
    }
});

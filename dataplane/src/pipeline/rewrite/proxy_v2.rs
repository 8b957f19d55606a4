//! PROXY protocol v2 (HAProxy's `proxy-protocol.txt`, section 2.2) inside a FullNAT TCP
//! flow: the header that tells a backend the client's address and port, put before the
//! client's first byte, and the sequence space it shifts.
//!
//! The header is `N` bytes ([`header_len`]: 28 for IPv4, 52 for IPv6; even, so every later
//! byte keeps its 16-bit alignment and the payload's one's-complement sum is unchanged by the
//! move). With `first` the client's first data sequence number (its ISN + 1, from the SYN):
//!
//! - client -> backend: a segment starting at `first` with payload (the first one, or any
//!   retransmission of it, recognised by its sequence number) gets the header before its
//!   payload and keeps its sequence number; a segment after `first` has its sequence number
//!   `+ N`; anything before (the SYN, the handshake's ACK at `first` without payload) is
//!   left alone ([`seq_to_backend`]).
//! - backend -> client: the acknowledgement number and every SACK block's edges `- N`
//!   once past `first + N`, and `first` when inside the header (never below the first data
//!   sequence: the client never sent those bytes) ([`ack_to_client`]).
//! - backend -> client SYN-ACK: its MSS option `- N` ([`mss_to_client`]), so that a client
//!   whose first segment is full (a TLS ClientHello often is) still fits once the header is
//!   in it; without it that segment, and every retransmission of it, would be too big.
//!
//! Checksums: the sequence, acknowledgement, SACK edges and MSS by RFC 1624 (`update_u32`,
//! or `update_bytes` over the even-aligned bytes around an odd-placed field); the grown segment's
//! IPv4 total length and header checksum the same way, and its TCP checksum with the
//! pseudo-header's new length and the inserted bytes' sum added (RFC 1071's sum is
//! associative; the payload moved by an even count keeps its sum).

use crate::flow::FlowKey;
use crate::frame::Frame;
use crate::wire::{checksum, tcp};

use super::super::parse::IpMeta;

/// The signature every PROXY v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY.
const VERSION_PROXY: u8 = 0x21;
/// AF_INET, STREAM.
const INET_STREAM: u8 = 0x11;
/// AF_INET6, STREAM.
const INET6_STREAM: u8 = 0x21;
/// The longest header this writes (IPv6).
pub const MAX_LEN: usize = 52;

/// Bytes of the header for a client of this family: 16 fixed, then two addresses and two
/// ports.
#[inline(always)]
pub const fn header_len(v6: bool) -> usize {
    if v6 { 16 + 36 } else { 16 + 12 }
}

/// Writes the header for the flow `key` (as its client sends it: client -> VIP) into `out`
/// (at least [`header_len`] bytes): source the client's address and port, destination the
/// VIP's. Returns its length.
pub fn header(out: &mut [u8], key: &FlowKey, v6: bool) -> usize {
    let n = header_len(v6);
    let alen = if v6 { 16 } else { 4 };
    let out = &mut out[..n];
    out[..12].copy_from_slice(&SIGNATURE);
    out[12] = VERSION_PROXY;
    out[13] = if v6 { INET6_STREAM } else { INET_STREAM };
    out[14..16].copy_from_slice(&((n - 16) as u16).to_be_bytes());
    out[16..16 + alen].copy_from_slice(&key.src[..alen]);
    out[16 + alen..16 + 2 * alen].copy_from_slice(&key.dst[..alen]);
    let ports = 16 + 2 * alen;
    out[ports..ports + 2].copy_from_slice(&key.sport.to_be_bytes());
    out[ports + 2..ports + 4].copy_from_slice(&key.dport.to_be_bytes());
    n
}

/// A client segment's sequence number as the backend sees it (`n`: the header's length):
/// shifted when it starts after `first` (RFC 793's modulo-2^32 comparison), as it is otherwise (the first segment itself keeps
/// its number and grows).
#[inline(always)]
pub const fn seq_to_backend(seq: u32, first: u32, n: u32) -> u32 {
    if (seq.wrapping_sub(first) as i32) > 0 {
        seq.wrapping_add(n)
    } else {
        seq
    }
}

/// A backend's acknowledgement number (or SACK edge) as the client sees it: past the
/// header, `n` less; inside it, `first` (never below the first data sequence); before it
/// (the SYN-ACK's), as it is.
#[inline(always)]
pub const fn ack_to_client(ack: u32, first: u32, n: u32) -> u32 {
    let d = ack.wrapping_sub(first) as i32;
    if d >= n as i32 {
        ack.wrapping_sub(n)
    } else if d > 0 {
        first
    } else {
        ack
    }
}

/// What [`to_backend`] did with a client's segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::pipeline) enum Inserted {
    /// Not the first data segment: its sequence number shifted, or left alone.
    No,
    /// The header went in before its payload.
    Yes,
    /// The first data segment, but the frame has no headroom for the header: unchanged.
    NoRoom,
}

/// Offsets of a TCP segment's header length and payload, `None` when its data offset is
/// out of its bounds.
#[inline(always)]
fn tcp_header_len(data: &[u8], p: &IpMeta) -> Option<usize> {
    let hl = usize::from(*data.get(p.l4_off + DATA_OFF)? >> 4) * 4;
    (hl >= tcp::HEADER_LEN && hl <= p.l4_len).then_some(hl)
}

/// Whether a client's TCP segment (`p` as it arrived) is its flow's first data segment, or a
/// retransmission of it: it starts at `first` and carries payload. It then grows by
/// [`header_len`] on its way to the backend.
#[inline]
pub(in crate::pipeline) fn grows(data: &[u8], p: &IpMeta, first: u32) -> bool {
    let Some(hl) = tcp_header_len(data, p) else {
        return false;
    };
    let t = p.l4_off;
    read32(data, t + 4) == first && p.l4_len > hl
}

/// A client's TCP segment of a flow with PROXY v2 (already rewritten to its backend, `p`
/// as it arrived), with `first` its client's first data sequence: the header for `key`
/// inserted when it is the first data segment ([`grows`]: the frame grows by
/// [`header_len`] at its front, the headers moving down into the headroom), else its
/// sequence number shifted. Out of line: only PROXY v2 flows pay for it.
#[inline(never)]
pub(in crate::pipeline) fn to_backend<F: Frame>(
    frame: &mut F,
    p: &IpMeta,
    key: &FlowKey,
    first: u32,
) -> Inserted {
    let n = header_len(p.v6);
    let data = frame.data_mut();
    let Some(hl) = tcp_header_len(data, p) else {
        return Inserted::No;
    };
    let t = p.l4_off;
    if !grows(data, p, first) {
        let seq = read32(data, t + 4);
        let new = seq_to_backend(seq, first, n as u32);
        if new != seq {
            data[t + 4..t + 8].copy_from_slice(&new.to_be_bytes());
            let ck = read16(data, t + 16);
            write16(data, t + 16, checksum::update_u32(ck, seq, new));
        }
        return Inserted::No;
    }
    let head = t + hl;
    if !frame.prepend(n) {
        return Inserted::NoRoom;
    }
    let data = frame.data_mut();
    data.copy_within(n..n + head, 0);
    let mut h = [0u8; MAX_LEN];
    header(&mut h, key, p.v6);
    data[head..head + n].copy_from_slice(&h[..n]);
    // The TCP checksum: its pseudo-header's length and the inserted bytes.
    let l4_old = p.l4_len as u16;
    let l4_new = (p.l4_len + n) as u16;
    let ck = read16(data, t + 16);
    let ck = checksum::update_u16(ck, l4_old, l4_new);
    let ck = checksum::update_bytes(ck, &[0u8; MAX_LEN][..n], &h[..n]);
    write16(data, t + 16, ck);
    // The IP length.
    let l3 = p.l3_off;
    if p.v6 {
        let old = read16(data, l3 + 4);
        write16(data, l3 + 4, old + n as u16);
    } else {
        let old = read16(data, l3 + 2);
        let new = old + n as u16;
        write16(data, l3 + 2, new);
        let ck = read16(data, l3 + 10);
        write16(data, l3 + 10, checksum::update_u16(ck, old, new));
    }
    Inserted::Yes
}

/// A backend's TCP segment of a flow with PROXY v2 (already rewritten to its client, `p`
/// as it arrived), with `first` its client's first data sequence: its acknowledgement
/// number (with ACK set) and the edges of every SACK block shifted back by the header's
/// length ([`ack_to_client`]); in a SYN-ACK, the MSS option lowered by that length
/// ([`mss_to_client`]). Out of line: only PROXY v2 flows pay for it.
#[inline(never)]
pub(in crate::pipeline) fn to_client(data: &mut [u8], p: &IpMeta, first: u32) {
    let n = header_len(p.v6) as u32;
    let Some(hl) = tcp_header_len(data, p) else {
        return;
    };
    let t = p.l4_off;
    let flags = data[t + FLAGS];
    if flags & tcp::ACK == 0 {
        return;
    }
    let syn = flags & tcp::SYN != 0;
    let mut ck = read16(data, t + 16);
    let ack = read32(data, t + 8);
    ck = patch(data, t, 8, ack_to_client(ack, first, n).to_be_bytes(), ck);
    // Options: kind 0 ends them, kind 1 is one byte, every other kind has a length byte.
    let mut o = tcp::HEADER_LEN;
    while o + 1 < hl {
        let (kind, len) = (data[t + o], usize::from(data[t + o + 1]));
        match kind {
            0 => break,
            1 => {
                o += 1;
                continue;
            }
            _ if len < 2 || o + len > hl => break,
            SACK => {
                let mut e = o + 2;
                while e + 4 <= o + len {
                    let edge = ack_to_client(read32(data, t + e), first, n);
                    ck = patch(data, t, e, edge.to_be_bytes(), ck);
                    e += 4;
                }
            }
            MSS if syn && len == 4 => {
                let mss = mss_to_client(read16(data, t + o + 2), n as u16);
                ck = patch(data, t, o + 2, mss.to_be_bytes(), ck);
            }
            _ => {}
        }
        o += len;
    }
    write16(data, t + 16, ck);
}

/// The MSS a backend's SYN-ACK offers, as its client gets it: `n` (the header's length)
/// less (never 0), so that the client's first segment, however full, still fits the
/// backend's MSS, and the MTU that MSS came from, once the header is in it.
#[inline]
pub const fn mss_to_client(mss: u16, n: u16) -> u16 {
    let m = mss.saturating_sub(n);
    if m == 0 { 1 } else { m }
}

/// TCP option kinds: maximum segment size (RFC 9293), SACK blocks (RFC 2018).
const MSS: u8 = 2;
const SACK: u8 = 5;
/// The TCP header's data offset and flags bytes.
const DATA_OFF: usize = 12;
const FLAGS: usize = 13;

/// Writes `new` at `t + at` (TCP header at `t`; `W` <= 4 bytes), returning the TCP checksum
/// `ck` updated by RFC 1624 over the bytes replaced, widened by one byte either side when
/// they start at an odd offset (an option after an odd count of option bytes), so the
/// update is over whole 16-bit words.
#[inline]
fn patch<const W: usize>(data: &mut [u8], t: usize, at: usize, new: [u8; W], ck: u16) -> u16 {
    let (from, to) = if at.is_multiple_of(2) {
        (t + at, t + at + W.next_multiple_of(2))
    } else {
        (t + at - 1, t + at + W + 1)
    };
    if data[t + at..t + at + W] == new {
        return ck;
    }
    let mut before = [0u8; 8];
    let len = to - from;
    before[..len].copy_from_slice(&data[from..to]);
    data[t + at..t + at + W].copy_from_slice(&new);
    checksum::update_bytes(ck, &before[..len], &data[from..to])
}

#[inline(always)]
fn read32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[inline(always)]
fn read16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

#[inline(always)]
fn write16(data: &mut [u8], at: usize, v: u16) {
    data[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;

    /// The spec's layout (proxy-protocol.txt 2.2, "struct proxy_hdr_v2" and the "ipv4_addr"
    /// member of "proxy_addr"), written out byte by byte for 192.0.2.7:40001 -> 10.0.0.100:80.
    #[test]
    fn ipv4_header_bytes_follow_the_spec_layout() {
        let key = FlowKey::v4([192, 0, 2, 7], [10, 0, 0, 100], 40001, 80, 6);
        let mut out = [0xeeu8; 64];
        assert_eq!(header(&mut out, &key, false), 28);
        let want: [u8; 28] = [
            // sig[12]: \x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
            // ver_cmd: version 2 (high nibble), PROXY (low nibble 1)
            0x21, // fam: AF_INET (high nibble 1), STREAM (low nibble 1)
            0x11, // len: 12 bytes of addresses, network order
            0x00, 0x0c, // src_addr 192.0.2.7, dst_addr 10.0.0.100
            192, 0, 2, 7, 10, 0, 0, 100, // src_port 40001, dst_port 80
            0x9c, 0x41, 0x00, 0x50,
        ];
        assert_eq!(out[..28], want);
        assert_eq!(out[28], 0xee, "nothing written past the header");
        println!("PROXY v2 IPv4 header: {:02x?}", &out[..28]);
    }

    /// The same for IPv6 ("ipv6_addr": 16-byte addresses, then the ports), 2001:db8::7
    /// port 40001 -> 2001:db8::100 port 443.
    #[test]
    fn ipv6_header_bytes_follow_the_spec_layout() {
        let src: [u8; 16] = "2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let dst: [u8; 16] = "2001:db8::100"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let key = FlowKey::v6(src, dst, 40001, 443, 6);
        let mut out = [0u8; 64];
        assert_eq!(header(&mut out, &key, true), 52);
        let mut want = vec![
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
            0x21, // v2, PROXY
            0x21, // AF_INET6, STREAM
            0x00, 0x24, // 36 bytes
        ];
        want.extend_from_slice(&src);
        want.extend_from_slice(&dst);
        want.extend_from_slice(&[0x9c, 0x41, 0x01, 0xbb]);
        assert_eq!(out[..52], want[..]);
        println!("PROXY v2 IPv6 header: {:02x?}", &out[..52]);
    }

    /// The first data segment of 10.68.0.50:40001 -> 10.66.0.100:80 (ISN + 1 = 1001, 5 bytes
    /// of payload, no options, right checksums), and its IPv4 metadata.
    fn first_segment() -> (Vec<u8>, IpMeta, FlowKey) {
        let key = FlowKey::v4([10, 68, 0, 50], [10, 66, 0, 100], 40001, 80, 6);
        let mut f = vec![0u8; 14 + 20 + 20 + 5];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&45u16.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 68, 0, 50]);
        f[30..34].copy_from_slice(&[10, 66, 0, 100]);
        f[38..42].copy_from_slice(&1001u32.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = tcp::ACK | tcp::PSH;
        f[54..].copy_from_slice(b"hello");
        let ipc = checksum::ipv4_header(&f[14..34]);
        f[24..26].copy_from_slice(&ipc.to_be_bytes());
        let tc = checksum::l4_checksum_v4(&SRC, &DST, 6, &f[34..]);
        f[50..52].copy_from_slice(&tc.to_be_bytes());
        let p = IpMeta {
            v6: false,
            l3_off: 14,
            l4_off: 34,
            l4_len: 25,
            proto: 6,
            src: key.src,
            dst: key.dst,
        };
        (f, p, key)
    }

    const SRC: [u8; 4] = [10, 68, 0, 50];
    const DST: [u8; 4] = [10, 66, 0, 100];

    #[test]
    fn the_header_goes_into_the_headroom_or_nothing_changes() {
        let (bytes, p, key) = first_segment();
        let mut no_room = VecFrame::with_headroom(&bytes, 27);
        assert_eq!(to_backend(&mut no_room, &p, &key, 1001), Inserted::NoRoom);
        assert_eq!(
            no_room.data(),
            &bytes[..],
            "a frame without room is left as it was"
        );

        let mut room = VecFrame::with_headroom(&bytes, 28);
        assert_eq!(to_backend(&mut room, &p, &key, 1001), Inserted::Yes);
        let d = room.data();
        assert_eq!(d.len(), bytes.len() + 28);
        let mut want = bytes[..54].to_vec();
        want[16..18].copy_from_slice(&73u16.to_be_bytes());
        want[24..26].copy_from_slice(&d[24..26]);
        want[50..52].copy_from_slice(&d[50..52]);
        assert_eq!(
            &d[..54],
            &want[..],
            "headers moved down, IPv4 total length 45 + 28"
        );
        assert_eq!(
            checksum::ipv4_header(&d[14..34]),
            read16(d, 24),
            "IPv4 checksum"
        );
        assert_eq!(
            checksum::l4_sum_v4(&SRC, &DST, 6, &d[34..]),
            0xffff,
            "TCP checksum"
        );
        let mut h = [0u8; MAX_LEN];
        header(&mut h, &key, false);
        assert_eq!(&d[54..82], &h[..28]);
        assert_eq!(&d[82..], b"hello");

        // Not the first data segment: the frame keeps its size, its sequence number + 28.
        let mut later = VecFrame::with_headroom(&bytes, 0);
        assert_eq!(to_backend(&mut later, &p, &key, 1000), Inserted::No);
        let d = later.data();
        assert_eq!(d.len(), bytes.len());
        assert_eq!(read32(d, 38), 1029, "1001 + 28");
        assert_eq!(
            checksum::l4_sum_v4(&SRC, &DST, 6, &d[34..]),
            0xffff,
            "TCP checksum"
        );
    }

    #[test]
    fn sequence_mapping_around_the_header_and_the_wrap() {
        let n = 28;
        for first in [1000u32, u32::MAX - 5] {
            assert_eq!(
                seq_to_backend(first.wrapping_sub(1), first, n),
                first.wrapping_sub(1)
            );
            assert_eq!(seq_to_backend(first, first, n), first);
            let later = first.wrapping_add(100);
            assert_eq!(seq_to_backend(later, first, n), later.wrapping_add(n));
            assert_eq!(ack_to_client(first, first, n), first);
            assert_eq!(ack_to_client(first.wrapping_add(10), first, n), first);
            assert_eq!(ack_to_client(first.wrapping_add(n), first, n), first);
            let a = first.wrapping_add(n + 500);
            assert_eq!(ack_to_client(a, first, n), first.wrapping_add(500));
            assert_eq!(
                ack_to_client(first.wrapping_sub(1), first, n),
                first.wrapping_sub(1)
            );
        }
    }
}

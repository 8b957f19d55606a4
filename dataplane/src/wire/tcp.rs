//! TCP headers (RFC 9293): a view with getters and setters for every field, the flag bits as
//! `u8` constants ([`SYN`], [`ACK`], ...), the checksum over the IPv4 or IPv6 pseudo-header, and a [`Repr`] that emits the bare 20-byte
//! header of a RST|ACK.
//!
//! The view's buffer is the whole segment (the IP payload), since the checksum covers the
//! data too. `check_len` validates the data offset against the buffer;
//! [`Packet::set_header_len`] invalidates it.

use super::error::WireError;
use super::field::Field;
use super::{IPPROTO_TCP, bytes, checksum};

/// Length of the header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use super::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in the high nibble; the low bits are reserved (and the obsolete NS bit).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Flag bit (byte 13): no more data from sender.
pub const FIN: u8 = 0x01;
/// Flag bit: synchronize sequence numbers.
pub const SYN: u8 = 0x02;
/// Flag bit: reset the connection.
pub const RST: u8 = 0x04;
/// Flag bit: push.
pub const PSH: u8 = 0x08;
/// Flag bit: acknowledgment field significant.
pub const ACK: u8 = 0x10;
/// Flag bit: urgent pointer field significant.
pub const URG: u8 = 0x20;
/// Flag bit: ECN echo.
pub const ECE: u8 = 0x40;
/// Flag bit: congestion window reduced.
pub const CWR: u8 = 0x80;

/// A view over a TCP segment: header, options and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and checks it ([`check_len`](Self::check_len)).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks: at least 20 bytes ([`WireError::Truncated`]); data offset at least 5
    /// ([`WireError::BadHeaderLen`]); the header with its options fits the buffer
    /// ([`WireError::Truncated`]).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        let Some(header) = data.first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        let header_len = usize::from(header[field::DATA_OFF] >> 4) * 4;
        if header_len < HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if header_len > data.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte: an OR of [`FIN`], [`SYN`], [`RST`], [`PSH`], [`ACK`], [`URG`],
    /// [`ECE`], [`CWR`].
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// FIN flag.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & FIN != 0
    }

    /// SYN flag.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & SYN != 0
    }

    /// RST flag.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & RST != 0
    }

    /// ACK flag.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & ACK != 0
    }

    /// Window size (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum, as carried.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::URGENT)
    }

    /// The options: bytes 20 to `header_len`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The data: from `header_len` to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Sequence space the segment occupies: data length, plus one each for SYN and FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Whether the checksum over the IPv4 pseudo-header and the segment is right.
    #[inline]
    pub fn verify_checksum_v4(&self, src: &[u8; 4], dst: &[u8; 4]) -> bool {
        checksum::l4_sum_v4(src, dst, IPPROTO_TCP, self.buffer.as_ref()) == 0xffff
    }

    /// Whether the checksum over the IPv6 pseudo-header and the segment is right.
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::l4_sum_v6(src, dst, IPPROTO_TCP, self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// [`payload`](Packet::payload) with the lifetime of the underlying buffer rather than
    /// of the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let start = self.header_len();
        &self.buffer.as_ref()[start..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60), clearing the reserved
    /// bits. Invalidates `check_len`.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the window size.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Computes the checksum over the IPv4 pseudo-header and the whole buffer, and writes it.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: &[u8; 4], dst: &[u8; 4]) {
        self.set_checksum(0);
        let value = checksum::l4_checksum_v4(src, dst, IPPROTO_TCP, self.buffer.as_ref());
        self.set_checksum(value);
    }

    /// Computes the checksum over the IPv6 pseudo-header and the whole buffer, and writes it.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let value = checksum::l4_checksum_v6(src, dst, IPPROTO_TCP, self.buffer.as_ref());
        self.set_checksum(value);
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    /// The data, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AsMut<[u8]> for Packet<T> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// The fields of a bare 20-byte TCP header (no options), as for a RST|ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Flags byte ([`RST`] `|` [`ACK`], ...).
    pub flags: u8,
    /// Window size.
    pub window_len: u16,
}

impl Repr {
    /// Reads a packet that passed `check_len`; options, urgent pointer and data are not kept.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
        }
    }

    /// Length of the header `emit` writes: 20.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header at the start of `buffer` (a byte slice or a [`Packet`]):
    /// data offset 5, urgent pointer 0, checksum 0. The checksum
    /// covers the IP addresses, so it is the caller's next step: `fill_checksum_v4`/`_v6`,
    /// or, with TX checksum offload, the pseudo-header sum the NIC expects
    /// ([`checksum::pseudo_header_v4`]). [`WireError::Truncated`], with nothing written, if
    /// the buffer is shorter than 20 bytes.
    pub fn emit<B: AsMut<[u8]> + ?Sized>(&self, buffer: &mut B) -> Result<(), WireError> {
        let Some(header) = buffer.as_mut().first_chunk_mut::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        header[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        header[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        header[field::SEQ_NUM].copy_from_slice(&self.seq_number.to_be_bytes());
        header[field::ACK_NUM].copy_from_slice(&self.ack_number.to_be_bytes());
        header[field::DATA_OFF] = 5 << 4;
        header[field::FLAGS] = self.flags;
        header[field::WIN_SIZE].copy_from_slice(&self.window_len.to_be_bytes());
        header[field::CHECKSUM.start..].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_vectors::{Rng, TCP4_QINQ, TCP4_SYN, TCP6_SYN};

    const SRC4: [u8; 4] = [192, 168, 1, 10];
    const DST4: [u8; 4] = [10, 0, 0, 80];

    fn v6_addrs() -> ([u8; 16], [u8; 16]) {
        let src: [u8; 16] = TCP6_SYN[22..38].try_into().unwrap();
        let dst: [u8; 16] = TCP6_SYN[38..54].try_into().unwrap();
        (src, dst)
    }

    #[test]
    fn every_getter_on_a_syn() {
        let tcp = Packet::new_checked(&TCP4_SYN[34..]).unwrap();
        assert_eq!(tcp.src_port(), 43210);
        assert_eq!(tcp.dst_port(), 80);
        assert_eq!(tcp.seq_number(), 0x5e2a_1c07);
        assert_eq!(tcp.ack_number(), 0);
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), SYN);
        assert!(tcp.syn() && !tcp.ack() && !tcp.fin() && !tcp.rst());
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.checksum(), 0x7eb3);
        assert_eq!(tcp.urgent_at(), 0);
        assert_eq!(tcp.options(), &TCP4_SYN[54..]);
        assert_eq!(&tcp.options()[..4], &[2, 4, 0x05, 0xb4]); // MSS 1460
        assert_eq!(tcp.payload(), &[] as &[u8]);
        assert_eq!(tcp.segment_len(), 1);
        assert!(tcp.verify_checksum_v4(&SRC4, &DST4));
        assert!(!tcp.verify_checksum_v4(&DST4, &SRC4.map(|b| b ^ 1)));
        assert_eq!(tcp.into_payload().len(), 0);
    }

    #[test]
    fn ack_in_qinq_and_syn_over_v6() {
        let tcp = Packet::new_checked(&TCP4_QINQ[42..]).unwrap();
        assert_eq!((tcp.seq_number(), tcp.ack_number()), (1, 2));
        assert_eq!(tcp.flags(), ACK);
        assert_eq!(tcp.header_len(), 20);
        assert_eq!(tcp.window_len(), 502);
        assert!(tcp.verify_checksum_v4(&SRC4, &DST4));

        let (src, dst) = v6_addrs();
        let tcp = Packet::new_checked(&TCP6_SYN[54..]).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (51000, 443));
        assert_eq!(tcp.seq_number(), 0x0102_0304);
        assert!(tcp.verify_checksum_v6(&src, &dst));
        assert_eq!(tcp.checksum(), 0x21f6);
    }

    #[test]
    fn every_prefix_is_refused_until_header_len() {
        for sample in [&TCP4_SYN[34..], &TCP4_QINQ[42..], &TCP6_SYN[54..]] {
            let header_len = usize::from(sample[12] >> 4) * 4;
            for len in 0..=sample.len() {
                match Packet::new_checked(&sample[..len]) {
                    Ok(tcp) => {
                        assert!(len >= header_len);
                        let _ = (tcp.src_port(), tcp.dst_port(), tcp.seq_number());
                        let _ = (tcp.ack_number(), tcp.flags(), tcp.window_len());
                        let _ = (tcp.checksum(), tcp.urgent_at(), tcp.segment_len());
                        assert_eq!(tcp.options().len(), header_len - 20);
                        assert_eq!(tcp.payload().len(), len - header_len);
                    }
                    Err(e) => {
                        assert!(len < header_len);
                        assert_eq!(e, WireError::Truncated);
                    }
                }
            }
        }
    }

    #[test]
    fn data_offset_below_five_is_refused() {
        for off in 0..5u8 {
            let mut v = TCP4_SYN[34..].to_vec();
            v[12] = off << 4;
            assert_eq!(Packet::new_checked(&v[..]), Err(WireError::BadHeaderLen));
        }
        let mut v = TCP4_QINQ[42..].to_vec();
        v[12] = 0xf0; // 60 bytes in a 20-byte segment
        assert_eq!(Packet::new_checked(&v[..]), Err(WireError::Truncated));
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 28];
        let mut tcp = Packet::new_unchecked(&mut buf[..]);
        tcp.set_header_len(24);
        tcp.set_src_port(1);
        tcp.set_dst_port(2);
        tcp.set_seq_number(0xdead_beef);
        tcp.set_ack_number(0x0102_0304);
        tcp.set_flags(FIN | PSH | ACK | URG | ECE | CWR);
        tcp.set_window_len(0xabcd);
        tcp.set_checksum(0x1111);
        tcp.set_urgent_at(9);
        tcp.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        tcp.payload_mut().copy_from_slice(b"data");
        assert!(tcp.check_len().is_ok());
        assert_eq!((tcp.src_port(), tcp.dst_port()), (1, 2));
        assert_eq!(
            (tcp.seq_number(), tcp.ack_number()),
            (0xdead_beef, 0x0102_0304)
        );
        assert_eq!(tcp.flags(), 0xf9);
        assert!(tcp.fin() && tcp.ack() && !tcp.syn() && !tcp.rst());
        assert_eq!(
            (tcp.window_len(), tcp.checksum(), tcp.urgent_at()),
            (0xabcd, 0x1111, 9)
        );
        assert_eq!(tcp.options(), &[1, 1, 1, 0]);
        assert_eq!(tcp.payload(), b"data");
        assert_eq!(tcp.segment_len(), 5);
        assert_eq!(buf[12], 0x60);
    }

    #[test]
    fn flag_bits_are_rfc_9293s() {
        let all = [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR];
        for (bit, flag) in all.into_iter().enumerate() {
            assert_eq!(flag, 1 << bit);
        }
    }

    /// The RST|ACK a load balancer answers a SYN for an unknown service with (RFC 9293
    /// §3.10.7.1: seq 0, ack = seq + segment length).
    #[test]
    fn emit_rst_ack_for_a_syn() {
        let syn = Packet::new_checked(&TCP4_SYN[34..]).unwrap();
        let repr = Repr {
            src_port: syn.dst_port(),
            dst_port: syn.src_port(),
            seq_number: 0,
            ack_number: syn.seq_number().wrapping_add(syn.segment_len() as u32),
            flags: RST | ACK,
            window_len: 0,
        };
        let mut buf = [0xaau8; 20];
        let mut tcp = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut tcp).unwrap();
        tcp.fill_checksum_v4(&DST4, &SRC4);
        assert!(tcp.verify_checksum_v4(&DST4, &SRC4));
        let tcp = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&tcp), repr);
        assert_eq!(tcp.urgent_at(), 0);
        assert_eq!(repr.header_len(), 20);
        assert_eq!(
            &buf[..16],
            &[
                0, 80, 0xa8, 0xca, 0, 0, 0, 0, 0x5e, 0x2a, 0x1c, 0x08, 0x50, 0x14, 0, 0
            ]
        );
        let mut short = [0u8; 19];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut short[..])),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn fill_checksum_reproduces_captured_values() {
        let mut v4 = TCP4_SYN[34..].to_vec();
        let mut tcp = Packet::new_checked(&mut v4[..]).unwrap();
        tcp.set_checksum(0xffff);
        tcp.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(tcp.checksum(), 0x7eb3);
        let (src, dst) = v6_addrs();
        let mut v6 = TCP6_SYN[54..].to_vec();
        let mut tcp = Packet::new_checked(&mut v6[..]).unwrap();
        tcp.fill_checksum_v6(&src, &dst);
        assert_eq!(tcp.checksum(), 0x21f6);
    }

    /// NAT-style rewrites of an address and a port, updated incrementally, equal a full
    /// recomputation, over IPv4 and IPv6.
    #[test]
    fn incremental_update_equals_recomputation() {
        let mut rng = Rng::new(0x7c9);
        for case in 0..10_000 {
            // v4: rewrite the destination address (pseudo-header) and port (header).
            let mut seg = TCP4_SYN[34..].to_vec();
            let payload_len = rng.below(32);
            seg.extend((0..payload_len).map(|_| rng.next_u64() as u8));
            let mut src = SRC4;
            rng.fill(&mut src);
            let mut tcp = Packet::new_checked(&mut seg[..]).unwrap();
            tcp.set_seq_number(rng.next_u64() as u32);
            tcp.fill_checksum_v4(&src, &DST4);
            let mut new_dst = [0u8; 4];
            rng.fill(&mut new_dst);
            let new_port = rng.next_u64() as u16;
            let mut csum = checksum::update_bytes(tcp.checksum(), &DST4, &new_dst);
            csum = checksum::update_u16(csum, tcp.dst_port(), new_port);
            tcp.set_dst_port(new_port);
            tcp.set_checksum(csum);
            assert!(tcp.verify_checksum_v4(&src, &new_dst), "v4 case {case}");
            tcp.fill_checksum_v4(&src, &new_dst);
            assert_eq!(tcp.checksum(), csum, "v4 case {case}");

            // v6: rewrite the source address and port.
            let (src6, dst6) = v6_addrs();
            let mut seg = TCP6_SYN[54..].to_vec();
            seg.extend((0..payload_len).map(|_| rng.next_u64() as u8));
            let mut tcp = Packet::new_checked(&mut seg[..]).unwrap();
            tcp.fill_checksum_v6(&src6, &dst6);
            let mut new_src = [0u8; 16];
            rng.fill(&mut new_src);
            let new_port = rng.next_u64() as u16;
            let mut csum = checksum::update_bytes(tcp.checksum(), &src6, &new_src);
            csum = checksum::update_u16(csum, tcp.src_port(), new_port);
            tcp.set_src_port(new_port);
            tcp.set_checksum(csum);
            tcp.fill_checksum_v6(&new_src, &dst6);
            assert_eq!(tcp.checksum(), csum, "v6 case {case}");
        }
    }
}

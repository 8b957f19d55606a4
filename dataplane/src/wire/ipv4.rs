//! IPv4 headers (RFC 791): a view with getters and setters, the header checksum, and a
//! [`Repr`] that emits the fresh 20-byte headers of the replies the pipeline builds.
//!
//! `check_len` validates the version, IHL, total length and buffer length, so afterwards
//! `options()` and `payload()` (which ends at the total length, leaving out any Ethernet
//! padding) are in bounds. [`Packet::set_header_len`] and [`Packet::set_total_len`]
//! invalidate it; every other setter keeps it.

use core::net::Ipv4Addr;

use super::error::WireError;
use super::field::Field;
use super::{bytes, checksum};

/// Length of the header without options.
pub const HEADER_LEN: usize = 20;
/// Largest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

/// Flags and fragment offset field: Don't Fragment.
const FLAG_DF: u16 = 0x4000;
/// Flags and fragment offset field: More Fragments.
const FLAG_MF: u16 = 0x2000;
/// Flags and fragment offset field: the offset, in 8-byte units.
const OFFSET_MASK: u16 = 0x1fff;

mod field {
    use super::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// A view over an IPv4 packet: header, options and payload.
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

    /// Checks, in this order: at least 20 bytes ([`WireError::Truncated`]); version 4
    /// ([`WireError::BadVersion`]); IHL at least 5 ([`WireError::BadHeaderLen`]); the header
    /// fits the buffer ([`WireError::Truncated`]); total length at least the header length
    /// ([`WireError::BadTotalLen`]); total length within the buffer
    /// ([`WireError::Truncated`]). Bytes past the total length (Ethernet padding) are allowed.
    /// The checksum is not checked: see [`verify_checksum`](Self::verify_checksum).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        let Some(header) = data.first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        if header[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = usize::from(header[field::VER_IHL] & 0x0f) * 4;
        if header_len < HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if header_len > data.len() {
            return Err(WireError::Truncated);
        }
        let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if total_len < header_len {
            return Err(WireError::BadTotalLen);
        }
        if total_len > data.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (4 once checked).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte (formerly type of service).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Differentiated services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.dscp_ecn() >> 2
    }

    /// Explicit congestion notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.dscp_ecn() & 0x03
    }

    /// Total length: header plus payload, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True for any fragment, first or later (More Fragments set or a nonzero offset): only
    /// the first carries the L4 header.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload (`IPPROTO_TCP`, ...).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum, as carried.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        bytes::array(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        bytes::array(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Source address as an [`Ipv4Addr`].
    #[inline]
    pub fn src_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_addr())
    }

    /// Destination address as an [`Ipv4Addr`].
    #[inline]
    pub fn dst_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_addr())
    }

    /// The options: bytes 20 to `header_len`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload: bytes `header_len` to `total_len`; padding after it is left out.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether the header checksum is right (the sum over the header is `0xffff`).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        checksum::fold(checksum::sum(header, 0)) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// [`payload`](Packet::payload) with the lifetime of the underlying buffer rather than
    /// of the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60). Invalidates
    /// `check_len`.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length. Invalidates `check_len`.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    fn set_flg_off(&mut self, mask: u16, value: u16) {
        let data = self.buffer.as_mut();
        let old = bytes::u16_at(data, field::FLG_OFF);
        bytes::set_u16(data, field::FLG_OFF, (old & !mask) | (value & mask));
    }

    /// Sets the Don't Fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    /// Sets the More Fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset, in bytes (rounded down to a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        self.set_flg_off(OFFSET_MASK, offset >> 3);
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the header checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address. The header checksum (and the L4 checksum, over the
    /// pseudo-header) must then be refilled or updated ([`checksum::update_bytes`]).
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr);
    }

    /// Sets the destination address; see [`set_src_addr`](Self::set_src_addr).
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr);
    }

    /// Computes the header checksum in full and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let header_len = self.header_len();
        let value = checksum::ipv4_header(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(value);
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
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

/// The fields of a fresh IPv4 header with no options, as the pipeline builds for TCP RSTs and
/// ICMP replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Protocol of the payload.
    pub protocol: u8,
    /// Payload length; the total length is 20 more.
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
}

impl Repr {
    /// Reads a packet that passed `check_len`. DSCP/ECN, flags and options are not kept.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            // check_len guarantees total_len >= header_len, and header_len <= 60.
            payload_len: packet
                .total_len()
                .saturating_sub(packet.header_len() as u16),
            ttl: packet.ttl(),
            ident: packet.ident(),
        }
    }

    /// Length of the header `emit` writes: 20.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of the whole packet: 20 plus the payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Writes a 20-byte header at the start of `buffer` (a byte slice or a [`Packet`]),
    /// checksum included: version 4, IHL 5, DSCP/ECN 0, Don't Fragment set (RFC 6864: a small
    /// reply is then an atomic datagram, and its ident need not be unique; call
    /// `set_dont_frag(false)` and `fill_checksum()` afterwards to change it), offset 0. The
    /// payload is the caller's: nothing after the header is read or written.
    ///
    /// Errors, with nothing written: [`WireError::BadTotalLen`] if 20 + `payload_len` does
    /// not fit 16 bits; [`WireError::Truncated`] if `buffer` is shorter than 20 bytes.
    pub fn emit<B: AsMut<[u8]> + ?Sized>(&self, buffer: &mut B) -> Result<(), WireError> {
        let Some(total_len) = self.payload_len.checked_add(HEADER_LEN as u16) else {
            return Err(WireError::BadTotalLen);
        };
        let Some(header) = buffer.as_mut().first_chunk_mut::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        let [t0, t1] = total_len.to_be_bytes();
        let [i0, i1] = self.ident.to_be_bytes();
        let [s0, s1, s2, s3] = self.src;
        let [d0, d1, d2, d3] = self.dst;
        *header = [
            0x45,
            0,
            t0,
            t1,
            i0,
            i1,
            0x40,
            0,
            self.ttl,
            self.protocol,
            0,
            0,
            s0,
            s1,
            s2,
            s3,
            d0,
            d1,
            d2,
            d3,
        ];
        let [c0, c1] = checksum::ipv4_header(header).to_be_bytes();
        header[10] = c0;
        header[11] = c1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

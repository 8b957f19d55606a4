//! IPv6 headers (RFC 8200): a view with getters and setters, a bounded walk over the
//! extension header chain to the upper-layer header ([`Packet::upper_layer`]), and a [`Repr`]
//! that emits a fresh 40-byte header.
//!
//! `check_len` validates the version and that the payload length fits the buffer, so
//! afterwards `payload()` (which ends at the payload length, leaving out any Ethernet padding)
//! is in bounds. [`Packet::set_payload_len`] invalidates it; every other setter keeps it.
//! Jumbograms (payload length 0 with a Jumbo Payload option) are not supported: they cannot
//! arrive over Ethernet.

use core::net::Ipv6Addr;

use super::error::WireError;
use super::field::Field;
use super::{
    IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ROUTING, bytes,
};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Most extension headers [`Packet::upper_layer`] walks through before giving up with
/// [`WireError::TooManyExtHeaders`]. A legitimate packet has at most a handful (RFC 8200
/// §4.1 lists six kinds, each once but Destination Options twice); the bound keeps a crafted
/// chain from costing more than a few cache lines per packet.
pub const MAX_EXT_HEADERS: usize = 8;

mod field {
    use super::Field;

    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// A view over an IPv6 packet: fixed header and payload (extension headers included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The Fragment extension header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in the original payload, in bytes.
    pub offset: u16,
    /// More Fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Where [`Packet::upper_layer`] found the upper-layer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Upper-layer protocol (`IPPROTO_TCP`, `IPPROTO_UDP`, `IPPROTO_ICMPV6`, ...), or
    /// `IPPROTO_ESP` / `IPPROTO_NONE`, whose contents are not headers to walk.
    pub protocol: u8,
    /// Offset of the upper-layer header (or, in a later fragment, of the fragment data) from
    /// the start of the IPv6 header. At most the end of the payload: the upper-layer header
    /// may still be missing or short, which its own `new_checked` catches.
    pub offset: usize,
    /// The Fragment header, if there is one. With a nonzero `offset` the bytes at
    /// [`UpperLayer::offset`] are the middle of the datagram, not an upper-layer header.
    pub fragment: Option<Fragment>,
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

    /// Checks: at least 40 bytes ([`WireError::Truncated`]); version 6
    /// ([`WireError::BadVersion`]); 40 + payload length within the buffer
    /// ([`WireError::Truncated`]). Trailing bytes (Ethernet padding) are allowed.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        let Some(header) = data.first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        if header[0] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        if HEADER_LEN + payload_len > data.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (6 once checked).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// Traffic class (DSCP and ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (bytes::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW) >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length: everything after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// 40 plus the payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header: the first extension header or the upper-layer protocol.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        bytes::array(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        bytes::array(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Source address as an [`Ipv6Addr`].
    #[inline]
    pub fn src_ip(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_addr())
    }

    /// Destination address as an [`Ipv6Addr`].
    #[inline]
    pub fn dst_ip(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_addr())
    }

    /// The payload: bytes 40 to 40 + payload length; padding after it is left out.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// Walks the extension headers (Hop-by-Hop 0, Routing 43, Fragment 44, AH 51,
    /// Destination Options 60) to the upper-layer header, within the payload length and
    /// through at most [`MAX_EXT_HEADERS`] of them. Never panics, even without `check_len`.
    ///
    /// Stops early, returning the Fragment header's next header, at the Fragment header of a
    /// fragment with a nonzero offset: what follows is fragment data. ESP (50) and No Next
    /// Header (59) are returned as the protocol, with their offset.
    ///
    /// Errors: [`WireError::Truncated`] if an extension header runs past the payload
    /// length; [`WireError::TooManyExtHeaders`] past the bound; [`WireError::BadExtHeader`] for
    /// a Hop-by-Hop header anywhere but first or a second Fragment header.
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        let data = self.buffer.as_ref();
        let Some(header) = data.first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let Some(packet) = data.get(..HEADER_LEN + payload_len) else {
            return Err(WireError::Truncated);
        };
        let mut protocol = header[field::NXT_HDR];
        let mut offset = HEADER_LEN;
        let mut fragment = None;
        let mut walked = 0;
        loop {
            if !matches!(
                protocol,
                IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT | IPPROTO_AH
            ) {
                return Ok(UpperLayer {
                    protocol,
                    offset,
                    fragment,
                });
            }
            if walked == MAX_EXT_HEADERS {
                return Err(WireError::TooManyExtHeaders);
            }
            if protocol == IPPROTO_HOPOPTS && walked != 0 {
                return Err(WireError::BadExtHeader);
            }
            // Every extension header is at least 8 bytes long and starts with the next
            // header and a length byte.
            let Some(ext) = packet.get(offset..).and_then(<[u8]>::first_chunk::<8>) else {
                return Err(WireError::Truncated);
            };
            let next = ext[0];
            let ext_len = match protocol {
                IPPROTO_FRAGMENT => 8,
                // RFC 4302: in 4-byte units, minus 2.
                IPPROTO_AH => (usize::from(ext[1]) + 2) * 4,
                // RFC 8200: in 8-byte units, not counting the first 8 bytes.
                _ => (usize::from(ext[1]) + 1) * 8,
            };
            // `offset + 8 <= packet.len()` here, so this cannot underflow.
            if ext_len > packet.len() - offset {
                return Err(WireError::Truncated);
            }
            if protocol == IPPROTO_FRAGMENT {
                if fragment.is_some() {
                    return Err(WireError::BadExtHeader);
                }
                let off_flags = u16::from_be_bytes([ext[2], ext[3]]);
                let this = Fragment {
                    // The 13-bit offset in 8-byte units sits above 2 reserved bits and M.
                    offset: off_flags & 0xfff8,
                    more: off_flags & 1 != 0,
                    ident: u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]),
                };
                fragment = Some(this);
                if this.offset != 0 {
                    return Ok(UpperLayer {
                        protocol: next,
                        offset: offset + 8,
                        fragment,
                    });
                }
            }
            offset += ext_len;
            protocol = next;
            walked += 1;
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// [`payload`](Packet::payload) with the lifetime of the underlying buffer rather than
    /// of the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_ver_tc_flow(&mut self, mask: u32, value: u32) {
        let data = self.buffer.as_mut();
        let old = bytes::u32_at(data, field::VER_TC_FLOW);
        bytes::set_u32(data, field::VER_TC_FLOW, (old & !mask) | (value & mask));
    }

    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        self.set_ver_tc_flow(0xf000_0000, u32::from(version) << 28);
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        self.set_ver_tc_flow(0x0ff0_0000, u32::from(value) << 20);
    }

    /// Sets the flow label (the low 20 bits of `label`).
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        self.set_ver_tc_flow(0x000f_ffff, label);
    }

    /// Sets the payload length. Invalidates `check_len`.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address. IPv6 has no header checksum, but the L4 checksum covers the
    /// address through the pseudo-header: refill or update it ([`super::checksum::update_bytes`]).
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr);
    }

    /// Sets the destination address; see [`set_src_addr`](Self::set_src_addr).
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr);
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
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

/// The fields of a fresh IPv6 header without extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Protocol of the payload.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Repr {
    /// Reads a packet that passed `check_len`; traffic class and flow label are not kept, and
    /// `next_header` is the first one (see [`Packet::upper_layer`] for the protocol).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
        }
    }

    /// Length of the header `emit` writes: 40.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of the whole packet: 40 plus the payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Writes a 40-byte header at the start of `buffer` (a byte slice or a [`Packet`]):
    /// version 6, traffic class 0, flow label 0. The payload is the caller's: nothing after
    /// the header is read or written. [`WireError::Truncated`], with nothing written, if
    /// `buffer` is shorter than 40 bytes.
    pub fn emit<B: AsMut<[u8]> + ?Sized>(&self, buffer: &mut B) -> Result<(), WireError> {
        let Some(header) = buffer.as_mut().first_chunk_mut::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        header[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        header[4..6].copy_from_slice(&self.payload_len.to_be_bytes());
        header[field::NXT_HDR] = self.next_header;
        header[field::HOP_LIMIT] = self.hop_limit;
        header[field::SRC_ADDR].copy_from_slice(&self.src);
        header[field::DST_ADDR].copy_from_slice(&self.dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

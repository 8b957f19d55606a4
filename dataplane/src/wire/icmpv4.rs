//! ICMP for IPv4 (RFC 792): the 8-byte header, echo fields, the next-hop MTU of
//! "fragmentation needed", and the checksum (over the message only, no pseudo-header).
//!
//! ICMP has no length field: the view's buffer is the whole message (the IP payload).
//! `check_len` only needs the 8-byte header; no setter invalidates it.

use super::error::WireError;
use super::field::{Field, Rest};
use super::{bytes, checksum};

/// Length of the header (type, code, checksum, four message-specific bytes).
pub const HEADER_LEN: usize = 8;

/// Message type: echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Type: destination unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Type: echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Type: time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Type: parameter problem.
pub const PARAM_PROBLEM: u8 = 12;

/// Destination unreachable code: network unreachable.
pub const CODE_NET_UNREACHABLE: u8 = 0;
/// Destination unreachable code: host unreachable.
pub const CODE_HOST_UNREACHABLE: u8 = 1;
/// Destination unreachable code: protocol unreachable.
pub const CODE_PROTO_UNREACHABLE: u8 = 2;
/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination unreachable code: fragmentation needed and DF set (RFC 1191: carries the
/// next-hop MTU).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;
/// Time exceeded code: fragment reassembly time exceeded.
pub const CODE_REASSEMBLY_TIME_EXCEEDED: u8 = 1;

mod field {
    use super::{Field, Rest};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Echo request and reply.
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ_NO: Field = 6..8;
    /// Destination unreachable, code 4 (RFC 1191).
    pub const NEXT_HOP_MTU: Field = 6..8;
    /// The four message-specific bytes.
    pub const REST_OF_HEADER: Field = 4..8;
    pub const PAYLOAD: Rest = 8..;
}

/// A view over an ICMPv4 message.
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

    /// [`WireError::Truncated`] below 8 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (`TYPE_*`).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code (`CODE_*`, meaning depends on the type).
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum, as carried.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (echo request and reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request and reply).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_SEQ_NO)
    }

    /// Next-hop MTU (destination unreachable, fragmentation needed).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// The four message-specific header bytes.
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        bytes::array(self.buffer.as_ref(), field::REST_OF_HEADER)
    }

    /// Everything after the 8-byte header: echo data, or the quoted IP header and leading
    /// payload bytes of an error.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// Whether the checksum over the whole message is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref(), 0)) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// [`payload`](Packet::payload) with the lifetime of the underlying buffer rather than
    /// of the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::ECHO_SEQ_NO, value);
    }

    /// Sets the next-hop MTU (bytes 6..8; bytes 4..6 are unused and left as they are).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, value);
    }

    /// Sets the four message-specific header bytes (zero them for port unreachable and
    /// time exceeded).
    #[inline]
    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value);
    }

    /// Computes the checksum over the whole message and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = !checksum::fold(checksum::sum(self.buffer.as_ref(), 0));
        self.set_checksum(value);
    }

    /// Everything after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_vectors::ICMP4_ECHO;

    #[test]
    fn every_getter_on_a_ping() {
        let icmp = Packet::new_checked(&ICMP4_ECHO[34..]).unwrap();
        assert_eq!(icmp.msg_type(), ECHO_REQUEST);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.checksum(), 0x6430);
        assert_eq!(icmp.echo_ident(), 0x0c1d);
        assert_eq!(icmp.echo_seq_no(), 1);
        assert_eq!(icmp.rest_of_header(), [0x0c, 0x1d, 0, 1]);
        assert_eq!(icmp.next_hop_mtu(), 1);
        assert_eq!(icmp.payload().len(), 56);
        assert_eq!(
            &icmp.payload()[16..],
            &(0x10..0x38).collect::<Vec<u8>>()[..]
        );
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.into_payload().len(), 56);
    }

    #[test]
    fn every_truncation_is_refused() {
        let msg = &ICMP4_ECHO[34..];
        for len in 0..=msg.len() {
            match Packet::new_checked(&msg[..len]) {
                Ok(icmp) => {
                    assert!(len >= HEADER_LEN);
                    let _ = (icmp.msg_type(), icmp.msg_code(), icmp.checksum());
                    let _ = (
                        icmp.echo_ident(),
                        icmp.echo_seq_no(),
                        icmp.verify_checksum(),
                    );
                    assert_eq!(icmp.payload().len(), len - HEADER_LEN);
                }
                Err(e) => {
                    assert!(len < HEADER_LEN);
                    assert_eq!(e, WireError::Truncated);
                }
            }
        }
    }

    /// Turning the request into its reply in place: type 8 -> 0, checksum updated both
    /// incrementally and in full.
    #[test]
    fn echo_reply_in_place() {
        let mut msg = ICMP4_ECHO[34..].to_vec();
        let mut icmp = Packet::new_checked(&mut msg[..]).unwrap();
        let old_word = u16::from_be_bytes([icmp.msg_type(), icmp.msg_code()]);
        icmp.set_msg_type(ECHO_REPLY);
        let incremental = checksum::update_u16(icmp.checksum(), old_word, 0);
        icmp.fill_checksum();
        assert_eq!(icmp.checksum(), incremental);
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.echo_ident(), 0x0c1d);
    }

    #[test]
    fn build_port_unreachable_and_frag_needed() {
        let quoted = &ICMP4_ECHO[14..14 + 28]; // IP header + first 8 payload bytes
        let mut buf = vec![0xffu8; HEADER_LEN + quoted.len()];
        let mut icmp = Packet::new_checked(&mut buf[..]).unwrap();
        icmp.set_msg_type(DEST_UNREACHABLE);
        icmp.set_msg_code(CODE_PORT_UNREACHABLE);
        icmp.set_rest_of_header([0; 4]);
        icmp.payload_mut().copy_from_slice(quoted);
        icmp.fill_checksum();
        assert!(icmp.verify_checksum());
        assert_eq!(&buf[..2], &[3, 3]);
        assert_eq!(&buf[4..8], &[0; 4]);

        let mut icmp = Packet::new_checked(&mut buf[..]).unwrap();
        icmp.set_msg_code(CODE_FRAG_NEEDED);
        icmp.set_next_hop_mtu(1400);
        icmp.set_echo_ident(0);
        icmp.set_echo_seq_no(1400);
        icmp.set_checksum(0);
        assert!(!icmp.verify_checksum());
        icmp.fill_checksum();
        assert_eq!(icmp.next_hop_mtu(), 1400);
        assert!(icmp.verify_checksum());
        assert_eq!((TIME_EXCEEDED, CODE_TTL_EXCEEDED), (11, 0));
    }
}

//! ICMP for IPv6 (RFC 4443): the 8-byte header, echo fields, the MTU of "packet too big",
//! and the checksum, which covers the IPv6 pseudo-header (so the addresses are parameters).
//!
//! ICMPv6 has no length field: the view's buffer is the whole message (the upper-layer part
//! of the IPv6 payload). `check_len` only needs the 8-byte header; no setter invalidates it.

use super::error::WireError;
use super::field::{Field, Rest};
use super::{IPPROTO_ICMPV6, bytes, checksum};

/// Length of the header (type, code, checksum, four message-specific bytes).
pub const HEADER_LEN: usize = 8;

/// Type: destination unreachable.
pub const DEST_UNREACHABLE: u8 = 1;
/// Type: packet too big (carries the MTU).
pub const PACKET_TOO_BIG: u8 = 2;
/// Type: time exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Type: parameter problem.
pub const PARAM_PROBLEM: u8 = 4;
/// Type: echo request.
pub const ECHO_REQUEST: u8 = 128;
/// Type: echo reply.
pub const ECHO_REPLY: u8 = 129;
/// Type: router solicitation (NDP).
pub const ROUTER_SOLICIT: u8 = 133;
/// Type: router advertisement (NDP).
pub const ROUTER_ADVERT: u8 = 134;
/// Type: neighbor solicitation (NDP).
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Type: neighbor advertisement (NDP).
pub const NEIGHBOR_ADVERT: u8 = 136;
/// Type: redirect (NDP).
pub const REDIRECT: u8 = 137;

/// Destination unreachable code: no route to destination.
pub const CODE_NO_ROUTE: u8 = 0;
/// Destination unreachable code: administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 1;
/// Destination unreachable code: address unreachable.
pub const CODE_ADDR_UNREACHABLE: u8 = 3;
/// Destination unreachable code: port unreachable (4 in ICMPv6, where ICMPv4 uses 3).
pub const CODE_PORT_UNREACHABLE: u8 = 4;
/// Time exceeded code: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT_EXCEEDED: u8 = 0;
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
    /// Packet too big.
    pub const MTU: Field = 4..8;
    /// The four message-specific bytes.
    pub const REST_OF_HEADER: Field = 4..8;
    pub const PAYLOAD: Rest = 8..;
}

/// A view over an ICMPv6 message.
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

    /// MTU (packet too big).
    #[inline]
    pub fn mtu(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::MTU)
    }

    /// The four message-specific header bytes.
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        bytes::array(self.buffer.as_ref(), field::REST_OF_HEADER)
    }

    /// Everything after the 8-byte header: echo data, NDP target and options, or the quoted
    /// packet of an error.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// Whether the checksum over the IPv6 pseudo-header (with these addresses) and the whole
    /// message is right.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::l4_sum_v6(src, dst, IPPROTO_ICMPV6, self.buffer.as_ref()) == 0xffff
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

    /// Sets the MTU (packet too big).
    #[inline]
    pub fn set_mtu(&mut self, value: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::MTU, value);
    }

    /// Sets the four message-specific header bytes.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value);
    }

    /// Computes the checksum over the IPv6 pseudo-header (with these addresses) and the
    /// whole message, and writes it.
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let value = checksum::l4_checksum_v6(src, dst, IPPROTO_ICMPV6, self.buffer.as_ref());
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
    use crate::wire::test_vectors::ICMP6_ECHO;

    fn addrs() -> ([u8; 16], [u8; 16]) {
        (
            ICMP6_ECHO[22..38].try_into().unwrap(),
            ICMP6_ECHO[38..54].try_into().unwrap(),
        )
    }

    #[test]
    fn every_getter_on_a_ping() {
        let (src, dst) = addrs();
        let icmp = Packet::new_checked(&ICMP6_ECHO[54..]).unwrap();
        assert_eq!(icmp.msg_type(), ECHO_REQUEST);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.checksum(), 0x6869);
        assert_eq!(icmp.echo_ident(), 0x1a2b);
        assert_eq!(icmp.echo_seq_no(), 7);
        assert_eq!(icmp.mtu(), 0x1a2b_0007);
        assert_eq!(icmp.rest_of_header(), [0x1a, 0x2b, 0, 7]);
        assert_eq!(icmp.payload(), b"fulcrum!");
        assert!(icmp.verify_checksum(&src, &dst));
        assert!(!icmp.verify_checksum(&dst, &src.map(|b| b ^ 0x10)));
        assert_eq!(icmp.into_payload(), b"fulcrum!");
    }

    #[test]
    fn every_truncation_is_refused() {
        let msg = &ICMP6_ECHO[54..];
        for len in 0..=msg.len() {
            match Packet::new_checked(&msg[..len]) {
                Ok(icmp) => {
                    assert!(len >= HEADER_LEN);
                    let _ = (
                        icmp.msg_type(),
                        icmp.msg_code(),
                        icmp.checksum(),
                        icmp.mtu(),
                    );
                    let _ = (icmp.echo_ident(), icmp.echo_seq_no());
                    assert_eq!(icmp.payload().len(), len - HEADER_LEN);
                }
                Err(e) => {
                    assert!(len < HEADER_LEN);
                    assert_eq!(e, WireError::Truncated);
                }
            }
        }
    }

    /// Echo reply in place: type and addresses change; incremental and full checksums agree.
    #[test]
    fn echo_reply_in_place() {
        let (src, dst) = addrs();
        let mut msg = ICMP6_ECHO[54..].to_vec();
        let mut icmp = Packet::new_checked(&mut msg[..]).unwrap();
        let old_word = u16::from_be_bytes([icmp.msg_type(), icmp.msg_code()]);
        icmp.set_msg_type(ECHO_REPLY);
        // The pseudo-header's addresses swap places: the sum is unchanged.
        let incremental =
            checksum::update_u16(icmp.checksum(), old_word, u16::from(ECHO_REPLY) << 8);
        icmp.fill_checksum(&dst, &src);
        assert_eq!(icmp.checksum(), incremental);
        assert!(icmp.verify_checksum(&dst, &src));
    }

    #[test]
    fn build_packet_too_big() {
        let (src, dst) = addrs();
        let mut buf = [0u8; HEADER_LEN + 48];
        let mut icmp = Packet::new_checked(&mut buf[..]).unwrap();
        icmp.set_msg_type(PACKET_TOO_BIG);
        icmp.set_msg_code(0);
        icmp.set_mtu(1280);
        icmp.payload_mut().copy_from_slice(&ICMP6_ECHO[14..62]);
        icmp.fill_checksum(&dst, &src);
        assert!(icmp.verify_checksum(&dst, &src));
        assert_eq!(&buf[..2], &[2, 0]);
        assert_eq!(&buf[4..8], &[0, 0, 5, 0]);

        let mut icmp = Packet::new_checked(&mut buf[..]).unwrap();
        icmp.set_msg_type(DEST_UNREACHABLE);
        icmp.set_msg_code(CODE_PORT_UNREACHABLE);
        icmp.set_rest_of_header([0; 4]);
        icmp.set_echo_ident(0);
        icmp.set_echo_seq_no(0);
        icmp.set_checksum(0);
        icmp.fill_checksum(&dst, &src);
        assert_eq!((icmp.msg_type(), icmp.msg_code(), icmp.mtu()), (1, 4, 0));
        assert!(icmp.verify_checksum(&dst, &src));
    }
}

//! ARP for IPv4 over Ethernet (RFC 826), the only kind a load balancer answers.
//!
//! `check_len` refuses any other hardware/protocol pair, so the fixed offsets below are right
//! for every packet it accepts. Setting the hardware or protocol type or length makes the
//! packet one `check_len` would refuse, but cannot make an accessor panic.

use super::bytes;
use super::error::WireError;
use super::ethernet::ETHERTYPE_IPV4;
use super::field::Field;

/// Hardware type of Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;
/// Operation: request.
pub const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub const OP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

mod field {
    use super::Field;

    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// A view over an Ethernet/IPv4 ARP packet.
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

    /// [`WireError::Truncated`] below 28 bytes; [`WireError::BadArpFormat`] unless hardware
    /// type 1 (Ethernet), protocol type 0x0800 (IPv4), lengths 6 and 4. Trailing bytes
    /// (Ethernet padding) are allowed.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let Some(packet) = self.buffer.as_ref().first_chunk::<PACKET_LEN>() else {
            return Err(WireError::Truncated);
        };
        if packet[..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return Err(WireError::BadArpFormat);
        }
        Ok(())
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length (6).
    #[inline]
    pub fn hw_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4).
    #[inline]
    pub fn proto_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation: [`OP_REQUEST`] or [`OP_REPLY`].
    #[inline]
    pub fn operation(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::OPER)
    }

    /// Sender MAC address.
    #[inline]
    pub fn sender_hw_addr(&self) -> [u8; 6] {
        bytes::array(self.buffer.as_ref(), field::SHA)
    }

    /// Sender IPv4 address.
    #[inline]
    pub fn sender_proto_addr(&self) -> [u8; 4] {
        bytes::array(self.buffer.as_ref(), field::SPA)
    }

    /// Target MAC address (zero in a request).
    #[inline]
    pub fn target_hw_addr(&self) -> [u8; 6] {
        bytes::array(self.buffer.as_ref(), field::THA)
    }

    /// Target IPv4 address.
    #[inline]
    pub fn target_proto_addr(&self) -> [u8; 4] {
        bytes::array(self.buffer.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::PTYPE, value);
    }

    /// Sets the hardware address length.
    #[inline]
    pub fn set_hw_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length.
    #[inline]
    pub fn set_proto_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::OPER, value);
    }

    /// Sets the sender MAC address.
    #[inline]
    pub fn set_sender_hw_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr);
    }

    /// Sets the sender IPv4 address.
    #[inline]
    pub fn set_sender_proto_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr);
    }

    /// Sets the target MAC address.
    #[inline]
    pub fn set_target_hw_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr);
    }

    /// Sets the target IPv4 address.
    #[inline]
    pub fn set_target_proto_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr);
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

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// [`OP_REQUEST`] or [`OP_REPLY`].
    pub operation: u16,
    /// Sender MAC address.
    pub sender_hw_addr: [u8; 6],
    /// Sender IPv4 address.
    pub sender_proto_addr: [u8; 4],
    /// Target MAC address.
    pub target_hw_addr: [u8; 6],
    /// Target IPv4 address.
    pub target_proto_addr: [u8; 4],
}

impl Repr {
    /// Reads a packet that passed `check_len`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            operation: packet.operation(),
            sender_hw_addr: packet.sender_hw_addr(),
            sender_proto_addr: packet.sender_proto_addr(),
            target_hw_addr: packet.target_hw_addr(),
            target_proto_addr: packet.target_proto_addr(),
        }
    }

    /// Length of the emitted packet: 28.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes all 28 bytes at the start of `buffer` (a byte slice or a [`Packet`]).
    /// [`WireError::Truncated`], with nothing written, if `buffer` is shorter.
    pub fn emit<B: AsMut<[u8]> + ?Sized>(&self, buffer: &mut B) -> Result<(), WireError> {
        let buffer = buffer.as_mut();
        if buffer.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        let mut packet = Packet::new_unchecked(buffer);
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(ETHERTYPE_IPV4);
        packet.set_hw_len(6);
        packet.set_proto_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_hw_addr(self.sender_hw_addr);
        packet.set_sender_proto_addr(self.sender_proto_addr);
        packet.set_target_hw_addr(self.target_hw_addr);
        packet.set_target_proto_addr(self.target_proto_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_vectors::ARP_REQUEST;

    const ARP: core::ops::RangeFrom<usize> = 14..;

    #[test]
    fn getters_on_a_request() {
        let arp = Packet::new_checked(&ARP_REQUEST[ARP]).unwrap();
        assert_eq!(arp.hardware_type(), HARDWARE_ETHERNET);
        assert_eq!(arp.protocol_type(), 0x0800);
        assert_eq!(arp.hw_len(), 6);
        assert_eq!(arp.proto_len(), 4);
        assert_eq!(arp.operation(), OP_REQUEST);
        assert_eq!(arp.sender_hw_addr(), [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        assert_eq!(arp.sender_proto_addr(), [10, 0, 0, 1]);
        assert_eq!(arp.target_hw_addr(), [0; 6]);
        assert_eq!(arp.target_proto_addr(), [10, 0, 0, 80]);
    }

    #[test]
    fn every_truncation_is_refused() {
        let packet = &ARP_REQUEST[14..14 + PACKET_LEN];
        for len in 0..PACKET_LEN {
            assert_eq!(
                Packet::new_checked(&packet[..len]),
                Err(WireError::Truncated),
                "{len}"
            );
        }
        assert!(Packet::new_checked(packet).is_ok());
    }

    #[test]
    fn other_formats_are_refused() {
        for (at, value) in [(1, 6), (2, 0x86), (3, 0xdd), (4, 8), (5, 16)] {
            let mut buf = ARP_REQUEST;
            buf[14 + at] = value;
            assert_eq!(
                Packet::new_checked(&buf[ARP]),
                Err(WireError::BadArpFormat),
                "{at}"
            );
        }
    }

    #[test]
    fn reply_round_trip() {
        let request = Repr::parse(&Packet::new_checked(&ARP_REQUEST[ARP]).unwrap());
        let vip_mac = [0x02, 0, 0, 0, 0, 0x50];
        let reply = Repr {
            operation: OP_REPLY,
            sender_hw_addr: vip_mac,
            sender_proto_addr: request.target_proto_addr,
            target_hw_addr: request.sender_hw_addr,
            target_proto_addr: request.sender_proto_addr,
        };
        let mut buf = [0xffu8; PACKET_LEN];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        reply.emit(&mut packet).unwrap();
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&packet), reply);
        assert_eq!(&buf[..8], &[0, 1, 8, 0, 6, 4, 0, 2]);

        let mut short = [0u8; PACKET_LEN - 1];
        let r = reply.emit(&mut Packet::new_unchecked(&mut short[..]));
        assert_eq!(r, Err(WireError::Truncated));
        assert_eq!(short, [0; PACKET_LEN - 1]);
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; PACKET_LEN];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_hardware_type(1);
        p.set_protocol_type(0x0800);
        p.set_hw_len(6);
        p.set_proto_len(4);
        p.set_operation(2);
        p.set_sender_hw_addr([1, 2, 3, 4, 5, 6]);
        p.set_sender_proto_addr([7, 8, 9, 10]);
        p.set_target_hw_addr([11, 12, 13, 14, 15, 16]);
        p.set_target_proto_addr([17, 18, 19, 20]);
        assert!(p.check_len().is_ok());
        assert_eq!(
            buf,
            [
                0, 1, 8, 0, 6, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
                18, 19, 20
            ]
        );
    }
}

//! Ethernet II frames, and [`parse_l2`], which finds the L3 header behind up to two VLAN tags
//! (802.1Q, 802.1ad / QinQ).
//!
//! `Frame::check_len` only needs the 14-byte header; no setter invalidates it.

use super::bytes;
use super::error::WireError;
use super::field::{Field, Rest};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType (TPID) of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType (TPID) of an 802.1ad service tag (QinQ outer tag).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// Length of the Ethernet II header (no VLAN tag).
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// Most VLAN tags [`parse_l2`] accepts.
pub const MAX_VLAN_DEPTH: u8 = 2;

mod field {
    use super::{Field, Rest};

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// A view over an Ethernet II frame. The payload starts right after the first EtherType; for
/// tagged frames use [`parse_l2`] to find the L3 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` and checks it ([`check_len`](Self::check_len)).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// [`WireError::Truncated`] if the buffer is shorter than the 14-byte header.
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

    /// Length of the header: 14.
    #[inline]
    pub const fn header_len() -> usize {
        HEADER_LEN
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        bytes::array(self.buffer.as_ref(), field::DESTINATION)
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        bytes::array(self.buffer.as_ref(), field::SOURCE)
    }

    /// The first EtherType (a TPID if the frame is VLAN-tagged).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the 14-byte header, including any VLAN tags and trailing padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// [`payload`](Frame::payload) with the lifetime of the underlying buffer rather than of
    /// the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr);
    }

    /// Sets the first EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype);
    }

    /// Everything after the 14-byte header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AsMut<[u8]> for Frame<T> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// What [`parse_l2`] found in front of the L3 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2 {
    /// EtherType after all VLAN tags.
    pub ethertype: u16,
    /// Offset of the L3 header from the start of the frame (14, 18 or 22).
    pub l3_offset: usize,
    /// VLAN id (12 bits) of the outer tag, if the frame is tagged.
    pub vlan: Option<u16>,
    /// Number of VLAN tags: 0, 1 or 2.
    pub vlan_depth: u8,
}

/// Parses the Ethernet header and up to [`MAX_VLAN_DEPTH`] VLAN tags, each with TPID 0x8100
/// or 0x88a8 in any order. Never panics.
///
/// Errors: [`WireError::Truncated`] if the frame ends inside the header or a tag;
/// [`WireError::TooManyVlans`] for a third tag.
#[inline]
pub fn parse_l2(frame: &[u8]) -> Result<L2, WireError> {
    let Some(header) = frame.first_chunk::<HEADER_LEN>() else {
        return Err(WireError::Truncated);
    };
    let mut ethertype = u16::from_be_bytes([header[12], header[13]]);
    let mut l3_offset = HEADER_LEN;
    let mut vlan = None;
    let mut vlan_depth = 0;
    while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        if vlan_depth == MAX_VLAN_DEPTH {
            return Err(WireError::TooManyVlans);
        }
        let Some(tag) = frame
            .get(l3_offset..)
            .and_then(<[u8]>::first_chunk::<VLAN_TAG_LEN>)
        else {
            return Err(WireError::Truncated);
        };
        if vlan_depth == 0 {
            vlan = Some(u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff);
        }
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3_offset += VLAN_TAG_LEN;
        vlan_depth += 1;
    }
    Ok(L2 {
        ethertype,
        l3_offset,
        vlan,
        vlan_depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_vectors::{ARP_REQUEST, TCP4_QINQ, TCP4_SYN, TCP6_SYN, UDP4_VLAN};

    const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const MAC_B: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];

    #[test]
    fn getters_on_a_known_frame() {
        let frame = Frame::new_checked(&TCP4_SYN[..]).unwrap();
        assert_eq!(frame.dst_addr(), MAC_A);
        assert_eq!(frame.src_addr(), MAC_B);
        assert_eq!(frame.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(frame.payload(), &TCP4_SYN[14..]);
        assert_eq!(frame.into_payload(), &TCP4_SYN[14..]);
        assert_eq!(Frame::<&[u8]>::header_len(), 14);

        let arp = Frame::new_checked(&ARP_REQUEST[..]).unwrap();
        assert_eq!(arp.dst_addr(), [0xff; 6]);
        assert_eq!(arp.ethertype(), ETHERTYPE_ARP);
        assert_eq!(
            Frame::new_checked(&TCP6_SYN[..]).unwrap().ethertype(),
            ETHERTYPE_IPV6
        );
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = TCP4_SYN;
        let mut frame = Frame::new_checked(&mut buf[..]).unwrap();
        frame.set_dst_addr(MAC_B);
        frame.set_src_addr(MAC_A);
        frame.set_ethertype(ETHERTYPE_IPV6);
        frame.payload_mut()[0] = 0x60;
        assert_eq!(frame.dst_addr(), MAC_B);
        assert_eq!(frame.src_addr(), MAC_A);
        assert_eq!(frame.ethertype(), ETHERTYPE_IPV6);
        assert_eq!(frame.payload()[0], 0x60);
        assert_eq!(&buf[..6], &MAC_B);
        assert_eq!(&buf[12..15], &[0x86, 0xdd, 0x60]);
    }

    #[test]
    fn every_truncation_is_refused() {
        for len in 0..=TCP4_SYN.len() {
            let prefix = &TCP4_SYN[..len];
            match Frame::new_checked(prefix) {
                Ok(frame) => {
                    assert!(len >= HEADER_LEN);
                    let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype());
                    assert_eq!(frame.payload().len(), len - HEADER_LEN);
                }
                Err(e) => {
                    assert!(len < HEADER_LEN);
                    assert_eq!(e, WireError::Truncated);
                }
            }
            let l2 = parse_l2(prefix);
            assert_eq!(l2.is_ok(), len >= HEADER_LEN, "len {len}");
        }
    }

    #[test]
    fn untagged() {
        let l2 = parse_l2(&TCP4_SYN).unwrap();
        assert_eq!(
            l2,
            L2 {
                ethertype: ETHERTYPE_IPV4,
                l3_offset: 14,
                vlan: None,
                vlan_depth: 0
            }
        );
        assert_eq!(parse_l2(&TCP6_SYN).unwrap().ethertype, ETHERTYPE_IPV6);
    }

    #[test]
    fn single_802_1q_tag() {
        let l2 = parse_l2(&UDP4_VLAN).unwrap();
        // PCP 5 in the TCI's top bits is not part of the id.
        assert_eq!(
            l2,
            L2 {
                ethertype: ETHERTYPE_IPV4,
                l3_offset: 18,
                vlan: Some(100),
                vlan_depth: 1
            }
        );
        assert_eq!(UDP4_VLAN[18] >> 4, 4);
    }

    #[test]
    fn qinq_reports_the_outer_tag() {
        let l2 = parse_l2(&TCP4_QINQ).unwrap();
        assert_eq!(
            l2,
            L2 {
                ethertype: ETHERTYPE_IPV4,
                l3_offset: 22,
                vlan: Some(300),
                vlan_depth: 2
            }
        );
        assert_eq!(TCP4_QINQ[22], 0x45);
    }

    #[test]
    fn tag_truncation_and_depth() {
        // Every prefix that ends inside a tag is truncated, not misparsed.
        for len in HEADER_LEN..22 {
            assert_eq!(
                parse_l2(&TCP4_QINQ[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
        }
        assert!(parse_l2(&TCP4_QINQ[..22]).is_ok());

        // Three tags: 88a8, 8100, 8100 (insert a TCI and a TPID after the first tag's).
        let mut triple = Vec::from(&TCP4_QINQ[..18]);
        triple.extend_from_slice(&[0x00, 0x07, 0x81, 0x00]);
        triple.extend_from_slice(&TCP4_QINQ[18..]);
        assert_eq!(parse_l2(&triple), Err(WireError::TooManyVlans));
        // Two 802.1Q tags (the pre-802.1ad convention) are accepted.
        let mut double_q = TCP4_QINQ;
        double_q[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(parse_l2(&double_q).unwrap().vlan_depth, 2);
    }
}

//! UDP headers (RFC 768): a view with getters and setters, the checksum with UDP's zero rule,
//! and a [`Repr`] that emits an 8-byte header.
//!
//! `check_len` validates the length field against the buffer, so afterwards `payload()`
//! (which ends at the length field, leaving out any trailing bytes) is in bounds.
//! [`Packet::set_len`] invalidates it.
//!
//! The zero rule: a checksum field of 0 means "no checksum" over IPv4 (and is invalid over
//! IPv6, RFC 8200 §8.1); a computed checksum of 0 is therefore sent as `0xffff`. The
//! `fill_checksum_*` methods apply it; when rewriting, update the field with
//! [`checksum::update_udp`], which also keeps a zero field zero.

use super::error::WireError;
use super::field::Field;
use super::{IPPROTO_UDP, bytes, checksum};

/// Length of the header.
pub const HEADER_LEN: usize = 8;

mod field {
    use super::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// A view over a UDP datagram: header and payload.
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

    /// Checks: at least 8 bytes ([`WireError::Truncated`]); length field at least 8
    /// ([`WireError::BadLength`]); length field within the buffer ([`WireError::Truncated`]).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        let Some(header) = data.first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        if len < HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if len > data.len() {
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

    /// Length field: header plus payload.
    #[inline]
    #[expect(
        clippy::len_without_is_empty,
        reason = "the UDP length field, as RFC 768 names it"
    )]
    pub fn len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum, as carried (0: none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload: bytes 8 to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// The datagram as the length field bounds it: header and payload.
    #[inline]
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// Whether the checksum over the IPv4 pseudo-header and the datagram is right; a zero
    /// checksum ("none") passes.
    #[inline]
    pub fn verify_checksum_v4(&self, src: &[u8; 4], dst: &[u8; 4]) -> bool {
        self.checksum() == 0
            || checksum::l4_sum_v4(src, dst, IPPROTO_UDP, self.datagram()) == 0xffff
    }

    /// Whether the checksum over the IPv6 pseudo-header and the datagram is right; a zero
    /// checksum fails (RFC 8200 §8.1).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        self.checksum() != 0
            && checksum::l4_sum_v6(src, dst, IPPROTO_UDP, self.datagram()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// [`payload`](Packet::payload) with the lifetime of the underlying buffer rather than
    /// of the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = usize::from(self.len());
        &self.buffer.as_ref()[HEADER_LEN..end]
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

    /// Sets the length field. Invalidates `check_len`.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field as is (0 meaning none).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes the checksum over the IPv4 pseudo-header and the datagram, and writes it
    /// (0 written as `0xffff`).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: &[u8; 4], dst: &[u8; 4]) {
        self.set_checksum(0);
        let value = checksum::l4_checksum_v4(src, dst, IPPROTO_UDP, self.datagram());
        self.set_checksum(checksum::udp_fill(value));
    }

    /// Computes the checksum over the IPv6 pseudo-header and the datagram, and writes it
    /// (0 written as `0xffff`).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let value = checksum::l4_checksum_v6(src, dst, IPPROTO_UDP, self.datagram());
        self.set_checksum(checksum::udp_fill(value));
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
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

/// The fields of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length; the length field is 8 more.
    pub payload_len: u16,
}

impl Repr {
    /// Reads a packet that passed `check_len`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            // check_len guarantees len >= 8.
            payload_len: packet.len().saturating_sub(HEADER_LEN as u16),
        }
    }

    /// Length of the whole datagram: 8 plus the payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Writes the 8-byte header at the start of `buffer` (a byte slice or a [`Packet`]), with
    /// checksum 0; the caller then fills it (`fill_checksum_v4`/`_v6`, once the payload is in
    /// place) or leaves it to offload. Errors, with nothing written: [`WireError::BadLength`]
    /// if 8 + `payload_len` does not fit 16 bits; [`WireError::Truncated`] if `buffer` is
    /// shorter than 8 bytes.
    pub fn emit<B: AsMut<[u8]> + ?Sized>(&self, buffer: &mut B) -> Result<(), WireError> {
        let Some(len) = self.payload_len.checked_add(HEADER_LEN as u16) else {
            return Err(WireError::BadLength);
        };
        let Some(header) = buffer.as_mut().first_chunk_mut::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        header[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        header[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        header[field::LENGTH].copy_from_slice(&len.to_be_bytes());
        header[field::CHECKSUM].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_vectors::{
        Rng, UDP4_NO_CSUM, UDP4_OPTIONS, UDP4_PADDED, UDP4_VLAN, UDP6_HBH_FRAG,
    };

    const SRC4: [u8; 4] = [10, 1, 2, 3];
    const DST4: [u8; 4] = [10, 0, 0, 53];
    const SRC6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    const DST6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x53,
    ];

    #[test]
    fn every_getter_on_a_padded_datagram() {
        // The buffer runs on into the Ethernet padding; the length field bounds the payload.
        let udp = Packet::new_checked(&UDP4_PADDED[34..]).unwrap();
        assert_eq!(udp.as_ref().len(), 26);
        assert_eq!(udp.src_port(), 5353);
        assert_eq!(udp.dst_port(), 53);
        assert_eq!(udp.len(), 12);
        assert_eq!(udp.checksum(), 0xf5ae);
        assert_eq!(udp.payload(), b"ping");
        assert!(udp.verify_checksum_v4(&SRC4, &DST4));
        // Swapping the addresses leaves the sum unchanged; changing one does not.
        assert!(udp.verify_checksum_v4(&DST4, &SRC4));
        assert!(!udp.verify_checksum_v4(&SRC4, &[10, 0, 0, 54]));
        assert_eq!(udp.into_payload(), b"ping");
    }

    #[test]
    fn known_checksums() {
        let udp = Packet::new_checked(&UDP4_VLAN[38..]).unwrap();
        assert_eq!(udp.payload(), b"vlan-tagged!");
        assert!(udp.verify_checksum_v4(&SRC4, &DST4));
        let udp = Packet::new_checked(&UDP4_OPTIONS[38..]).unwrap();
        assert!(udp.verify_checksum_v4(&SRC4, &[224, 0, 0, 251]));
        for (frame, at, dst) in [(&UDP4_PADDED[..], 34, DST4), (&UDP4_VLAN[..], 38, DST4)] {
            let mut v = frame[at..].to_vec();
            let mut udp = Packet::new_checked(&mut v[..]).unwrap();
            let want = udp.checksum();
            udp.fill_checksum_v4(&SRC4, &dst);
            assert_eq!(udp.checksum(), want);
        }
    }

    #[test]
    fn zero_checksum_means_none_over_v4_only() {
        let udp = Packet::new_checked(&UDP4_NO_CSUM[34..]).unwrap();
        assert_eq!(udp.checksum(), 0);
        assert_eq!(udp.payload(), b"no checksum here");
        assert!(udp.verify_checksum_v4(&SRC4, &DST4));
        assert!(!udp.verify_checksum_v6(&SRC6, &DST6));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose two payload bytes that make the sum 0xffff, i.e. the checksum 0.
        let mut buf = [0u8; 10];
        let repr = Repr {
            src_port: 1000,
            dst_port: 2000,
            payload_len: 2,
        };
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        let partial = checksum::l4_sum_v4(&SRC4, &DST4, IPPROTO_UDP, &buf);
        buf[8..].copy_from_slice(&(!partial).to_be_bytes());
        assert_eq!(checksum::l4_checksum_v4(&SRC4, &DST4, IPPROTO_UDP, &buf), 0);
        let mut udp = Packet::new_checked(&mut buf[..]).unwrap();
        udp.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum_v4(&SRC4, &DST4));
        // Same over IPv6.
        udp.set_checksum(0);
        udp.payload_mut().fill(0);
        let partial = checksum::l4_sum_v6(&SRC6, &DST6, IPPROTO_UDP, udp.as_ref());
        udp.payload_mut().copy_from_slice(&(!partial).to_be_bytes());
        udp.fill_checksum_v6(&SRC6, &DST6);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum_v6(&SRC6, &DST6));
    }

    #[test]
    fn every_prefix_is_refused_until_len() {
        for sample in [&UDP4_PADDED[34..], &UDP4_VLAN[38..], &UDP4_NO_CSUM[34..]] {
            let len_field = usize::from(u16::from_be_bytes([sample[4], sample[5]]));
            for len in 0..=sample.len() {
                match Packet::new_checked(&sample[..len]) {
                    Ok(udp) => {
                        assert!(len >= len_field);
                        let _ = (udp.src_port(), udp.dst_port(), udp.checksum());
                        let _ = udp.verify_checksum_v4(&SRC4, &DST4);
                        assert_eq!(udp.payload().len(), len_field - 8);
                    }
                    Err(e) => {
                        assert!(len < len_field);
                        assert_eq!(e, WireError::Truncated);
                    }
                }
            }
        }
    }

    #[test]
    fn bad_length_field() {
        for len in 0..8u16 {
            let mut v = UDP4_VLAN[38..].to_vec();
            v[4..6].copy_from_slice(&len.to_be_bytes());
            assert_eq!(Packet::new_checked(&v[..]), Err(WireError::BadLength));
        }
        let mut v = UDP4_VLAN[38..].to_vec();
        v[4..6].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&v[..]), Err(WireError::Truncated));
        v[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&v[..]).unwrap().payload(), &[] as &[u8]);
    }

    #[test]
    fn first_fragment_over_v6() {
        // The UDP length (1200) covers the reassembled datagram, not this fragment: the
        // pipeline must not check it against a fragment.
        let udp = Packet::new_unchecked(&UDP6_HBH_FRAG[70..]);
        assert_eq!(
            (udp.src_port(), udp.dst_port(), udp.len()),
            (40000, 53, 1200)
        );
        assert_eq!(udp.check_len(), Err(WireError::Truncated));
    }

    #[test]
    fn setters_and_repr_round_trip() {
        let repr = Repr {
            src_port: 53,
            dst_port: 5353,
            payload_len: 4,
        };
        assert_eq!(repr.buffer_len(), 12);
        let mut buf = [0xeeu8; 14];
        let mut udp = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut udp).unwrap();
        udp.payload_mut().copy_from_slice(b"pong");
        udp.fill_checksum_v4(&DST4, &SRC4);
        let udp = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&udp), repr);
        assert!(udp.verify_checksum_v4(&DST4, &SRC4));
        assert_eq!(&buf[12..], &[0xee, 0xee]);

        let mut udp = Packet::new_unchecked(&mut buf[..]);
        udp.set_src_port(1);
        udp.set_dst_port(2);
        udp.set_len(14);
        udp.set_checksum(0xbeef);
        assert_eq!(
            (udp.src_port(), udp.dst_port(), udp.len(), udp.checksum()),
            (1, 2, 14, 0xbeef)
        );
        assert_eq!(udp.payload().len(), 6);

        let mut short = [0u8; 7];
        let r = repr.emit(&mut short[..]);
        assert_eq!(r, Err(WireError::Truncated));
        let huge = Repr {
            payload_len: u16::MAX - 7,
            ..repr
        };
        let mut big = vec![0u8; 70_000];
        assert_eq!(
            huge.emit(&mut Packet::new_unchecked(&mut big[..])),
            Err(WireError::BadLength)
        );
    }

    /// Rewriting addresses and ports with `update_udp` equals a full recomputation, over
    /// IPv4 and IPv6, and a zero (no checksum) field stays zero.
    #[test]
    fn incremental_update_equals_recomputation() {
        let mut rng = Rng::new(0x0d9);
        for case in 0..10_000 {
            let payload_len = rng.below(40);
            let mut dgram = vec![0u8; 8 + payload_len];
            rng.fill(&mut dgram[8..]);
            let repr = Repr {
                src_port: rng.next_u64() as u16,
                dst_port: rng.next_u64() as u16,
                payload_len: payload_len as u16,
            };
            repr.emit(&mut Packet::new_unchecked(&mut dgram[..]))
                .unwrap();
            let mut src = [0u8; 4];
            let mut new_dst = [0u8; 4];
            rng.fill(&mut src);
            rng.fill(&mut new_dst);
            let new_port = rng.next_u64() as u16;

            // v4, with a checksum.
            let mut v4 = dgram.clone();
            let mut udp = Packet::new_checked(&mut v4[..]).unwrap();
            udp.fill_checksum_v4(&src, &DST4);
            let mut csum = checksum::update_udp(udp.checksum(), &DST4, &new_dst);
            csum = checksum::update_udp_u16(csum, udp.dst_port(), new_port);
            udp.set_dst_port(new_port);
            udp.set_checksum(csum);
            assert!(udp.verify_checksum_v4(&src, &new_dst), "v4 case {case}");
            udp.fill_checksum_v4(&src, &new_dst);
            assert_eq!(udp.checksum(), csum, "v4 case {case}");

            // v4 without a checksum: stays without.
            let csum = checksum::update_udp(0, &DST4, &new_dst);
            assert_eq!(checksum::update_udp_u16(csum, repr.dst_port, new_port), 0);

            // v6.
            let mut v6 = dgram.clone();
            let mut udp = Packet::new_checked(&mut v6[..]).unwrap();
            udp.fill_checksum_v6(&SRC6, &DST6);
            let mut new_src = [0u8; 16];
            rng.fill(&mut new_src);
            let mut csum = checksum::update_udp(udp.checksum(), &SRC6, &new_src);
            csum = checksum::update_udp_u16(csum, udp.src_port(), new_port);
            udp.set_src_port(new_port);
            udp.set_checksum(csum);
            assert!(udp.verify_checksum_v6(&new_src, &DST6), "v6 case {case}");
            udp.fill_checksum_v6(&new_src, &DST6);
            assert_eq!(udp.checksum(), csum, "v6 case {case}");
        }
    }

    /// Random rewrites rarely hit a checksum of 0; force it, to check that the incremental
    /// path sends 0xffff exactly when the full computation does.
    #[test]
    fn incremental_update_through_zero() {
        let mut buf = [0u8; 10];
        let repr = Repr {
            src_port: 1000,
            dst_port: 2000,
            payload_len: 2,
        };
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        let partial = checksum::l4_sum_v4(&SRC4, &DST4, IPPROTO_UDP, &buf);
        let target = (!partial).to_be_bytes();
        let mut udp = Packet::new_checked(&mut buf[..]).unwrap();
        udp.fill_checksum_v4(&SRC4, &DST4);
        // Rewrite the payload word to the value that makes the checksum 0.
        let csum = checksum::update_udp(udp.checksum(), &[0, 0], &target);
        assert_eq!(csum, 0xffff);
        udp.payload_mut().copy_from_slice(&target);
        udp.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(udp.checksum(), csum);
        // And away from it again.
        let back = checksum::update_udp(csum, &target, &[0, 0]);
        udp.payload_mut().fill(0);
        udp.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(udp.checksum(), back);
    }
}

//! Zero-copy, length-checked views over packet headers, and Internet checksums.
//!
//! Each header is a view `Packet<T: AsRef<[u8]>>` (`Frame<T>` for Ethernet) over a byte buffer:
//! a `&[u8]`, a `Vec<u8>` in tests, the data of a DPDK mbuf in production. Getters need
//! `AsRef<[u8]>`, setters `AsMut<[u8]>`. Nothing here allocates.
//!
//! # The no-panic contract
//!
//! There are three ways in, as in smoltcp's `wire`:
//!
//! - `new_unchecked(buffer)` only wraps the buffer;
//! - `check_len()` validates the buffer against the header: once it has returned `Ok(())`, no
//!   getter, setter, `payload()` or checksum method of that view can panic;
//! - `new_checked(buffer)` is both, and is the only way received bytes may come in.
//!
//! The guarantee holds until a setter changes a field that `check_len` relied on (a length or
//! an offset); each module's docs list those setters. After such a setter, call `check_len`
//! again before reading the payload. Functions that take a plain slice (`parse_l2`,
//! everything in [`checksum`]) never panic, whatever the input.
//!
//! A header is refused with a [`WireError`]: a fieldless `Copy` enum with one variant per
//! reason, so that the pipeline can count drops per reason without allocating.
//!
//! Building a packet: each `Repr` (`ipv4::Repr`, `tcp::Repr`, ...) writes a fresh header at the
//! start of a byte slice or a view with `emit`, which checks the length first and returns
//! [`WireError::Truncated`] instead of panicking when the header does not fit. Checksums are
//! computed in full when a packet is built and updated incrementally (RFC 1624) when one is
//! rewritten: see [`checksum`], which also states UDP's zero-checksum rules.

pub mod arp;
pub mod checksum;
pub mod error;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod quote;
pub mod tcp;
pub mod udp;

#[cfg(test)]
pub(crate) mod test_vectors;
#[cfg(test)]
mod tests;

pub use arp::{Packet as ArpPacket, Repr as ArpRepr};
pub use error::WireError;
pub use ethernet::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN,
    Frame as EthernetFrame, L2, parse_l2,
};
pub use icmpv4::Packet as Icmpv4Packet;
pub use icmpv6::Packet as Icmpv6Packet;
pub use ipv4::{Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use ipv6::{Fragment, Packet as Ipv6Packet, Repr as Ipv6Repr, UpperLayer};
pub use quote::Quote;
pub use tcp::{Packet as TcpPacket, Repr as TcpRepr};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};

/// Shorter name for [`WireError`], as in `wire::Error`.
pub type Error = WireError;

/// IPv6 Hop-by-Hop Options extension header.
pub const IPPROTO_HOPOPTS: u8 = 0;
/// Internet Control Message Protocol (IPv4).
pub const IPPROTO_ICMP: u8 = 1;
/// Transmission Control Protocol.
pub const IPPROTO_TCP: u8 = 6;
/// User Datagram Protocol.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 Routing extension header.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 Fragment extension header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// Encapsulating Security Payload.
pub const IPPROTO_ESP: u8 = 50;
/// Authentication Header.
pub const IPPROTO_AH: u8 = 51;
/// Internet Control Message Protocol for IPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 No Next Header.
pub const IPPROTO_NONE: u8 = 59;
/// IPv6 Destination Options extension header.
pub const IPPROTO_DSTOPTS: u8 = 60;
/// Virtual Router Redundancy Protocol (RFC 5798).
pub const IPPROTO_VRRP: u8 = 112;
/// The group VRRP adverts go to: 224.0.0.18 (IPv4), ff02::12 (IPv6).
pub const VRRP_GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 18);
pub const VRRP_GROUP_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Is a packet of protocol `proto` to `dst` a VRRP advert (to its group)? Such frames are
/// for keepalived on the kernel exception path, never for a VIP.
#[inline]
pub fn is_vrrp(proto: u8, dst: std::net::IpAddr) -> bool {
    proto == IPPROTO_VRRP
        && match dst {
            std::net::IpAddr::V4(a) => a == VRRP_GROUP_V4,
            std::net::IpAddr::V6(a) => a == VRRP_GROUP_V6,
        }
}

/// Byte ranges of header fields, as in smoltcp: each module's `mod field` is built from these.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub type Rest = core::ops::RangeFrom<usize>;
}

/// Big-endian field access shared by the views. Each reads or writes one field through a
/// single slice index, so a view that passed `check_len` pays one predictable compare per
/// access and never panics; the fixed-size copies compile to plain loads and stores.
mod bytes {
    use super::field::Field;

    #[inline]
    pub(crate) fn array<const N: usize>(data: &[u8], field: Field) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&data[field]);
        out
    }

    #[inline]
    pub(crate) fn u16_at(data: &[u8], field: Field) -> u16 {
        u16::from_be_bytes(array(data, field))
    }

    #[inline]
    pub(crate) fn u32_at(data: &[u8], field: Field) -> u32 {
        u32::from_be_bytes(array(data, field))
    }

    #[inline]
    pub(crate) fn set_u16(data: &mut [u8], field: Field, value: u16) {
        data[field].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub(crate) fn set_u32(data: &mut [u8], field: Field, value: u32) {
        data[field].copy_from_slice(&value.to_be_bytes());
    }
}

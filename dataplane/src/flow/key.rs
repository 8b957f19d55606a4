//! A flow's identity: the 5-tuple key in one direction, and its address layout.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use zerocopy::{Immutable, IntoBytes};

use super::{FAMILY_V4, FAMILY_V6};

/// An IPv4 address in the flow-key layout ([`FlowKey`]): its 4 bytes, then 12 zeros.
#[inline]
pub const fn v4_addr(a: [u8; 4]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0] = a[0];
    k[1] = a[1];
    k[2] = a[2];
    k[3] = a[3];
    k
}

/// The IPv4 address held in a flow-key address ([`v4_addr`]'s inverse).
#[inline]
pub const fn v4_of(k: &[u8; 16]) -> [u8; 4] {
    [k[0], k[1], k[2], k[3]]
}

/// A flow's identity, as seen on the wire in one direction.
///
/// Addresses are 16 bytes for both families: an IPv4 address sits in the **first 4 bytes,
/// the other 12 are zero** (cheapest to build from a packet: one 4-byte copy), and `family`
/// tells `10.0.0.1` from `a00:1::`. Ports are in host order. Use [`FlowKey::v4`] /
/// [`FlowKey::v6`] so the padding is always zero: equality and hashing see every byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash, IntoBytes, Immutable)]
#[repr(C)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

impl FlowKey {
    /// `self == other`, written for the flow table's scans, where most compared keys differ:
    /// the first 8 bytes (the source address, or for IPv4 all of it) decide most mismatches
    /// with one compare; the rest is compared without branches, as four more 8-byte words of
    /// the key's 38 bytes (the last one overlaps the destination's end: ports, protocol and
    /// family in one load, not four field loads and their shifts).
    #[inline(always)]
    pub fn same(&self, other: &FlowKey) -> bool {
        let (a, b): (&[u8; 38], &[u8; 38]) = (
            zerocopy::transmute_ref!(self),
            zerocopy::transmute_ref!(other),
        );
        let w =
            |k: &[u8; 38], i: usize| u64::from_ne_bytes(k[i..i + 8].try_into().expect("8 bytes"));
        w(a, 0) == w(b, 0)
            && (w(a, 8) ^ w(b, 8) | w(a, 16) ^ w(b, 16) | w(a, 24) ^ w(b, 24) | w(a, 30) ^ w(b, 30))
                == 0
    }

    /// An IPv4 flow key.
    #[inline]
    pub const fn v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> Self {
        FlowKey {
            src: v4_addr(src),
            dst: v4_addr(dst),
            sport,
            dport,
            proto,
            family: FAMILY_V4,
        }
    }

    /// An IPv6 flow key.
    #[inline]
    pub const fn v6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, proto: u8) -> Self {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
            family: FAMILY_V6,
        }
    }

    /// The key of the other direction: addresses and ports swapped.
    #[inline]
    pub const fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            family: self.family,
        }
    }
}

/// Prints `proto src:port -> dst:port` with real address notation (for `ctl` and tests).
impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            p => format!("proto {p}"),
        };
        if self.family == FAMILY_V6 {
            let (s, d) = (Ipv6Addr::from(self.src), Ipv6Addr::from(self.dst));
            write!(f, "{proto} [{s}]:{} -> [{d}]:{}", self.sport, self.dport)
        } else {
            let s = Ipv4Addr::new(self.src[0], self.src[1], self.src[2], self.src[3]);
            let d = Ipv4Addr::new(self.dst[0], self.dst[1], self.dst[2], self.dst[3]);
            write!(f, "{proto} {s}:{} -> {d}:{}", self.sport, self.dport)
        }
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlowKey({self})")
    }
}

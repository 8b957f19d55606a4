//! Addresses as the snapshot keys and matches them: [`Addr`] (flow-key form), [`IpKey`] (an
//! address with its family, for maps), and a service's source access list ([`Acl`]).

use std::net::IpAddr;

use conf::IfAddr;

use crate::flow::v4_addr;

/// An address in flow-key form: IPv4 in the first 4 bytes, the rest zero.
///
/// The bytes alone do not say the family (IPv4 `10.0.0.1` and IPv6 `a00:1::` are the same
/// bytes), so an `Addr` is never a map key: maps and sets of addresses use [`IpKey`].
pub type Addr = [u8; 16];

/// Converts an address to its flow-key form (see [`Addr`]; for a map key, [`IpKey::from`]).
pub fn addr_key(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(a) => v4_addr(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

/// An address with its family: the key of the snapshot's maps and sets of addresses (VIPs,
/// own addresses, NAT backends). Its lookups take one, so every caller says which family it
/// means, and an IPv4 address never finds an IPv6 one whose bytes start the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey {
    /// Flow-key form: for IPv4 the last 12 bytes are always zero.
    addr: Addr,
    v6: bool,
}

impl IpKey {
    #[inline]
    pub fn v4(a: [u8; 4]) -> IpKey {
        IpKey {
            addr: v4_addr(a),
            v6: false,
        }
    }

    #[inline]
    pub const fn v6(a: [u8; 16]) -> IpKey {
        IpKey { addr: a, v6: true }
    }

    /// The key of an address in flow-key form of the given family (for IPv4 only the first
    /// 4 bytes are read).
    #[inline]
    pub fn new(addr: &Addr, v6: bool) -> IpKey {
        if v6 {
            IpKey::v6(*addr)
        } else {
            IpKey::v4([addr[0], addr[1], addr[2], addr[3]])
        }
    }

    /// The address in flow-key form.
    #[inline]
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    #[inline]
    pub fn is_v6(&self) -> bool {
        self.v6
    }
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(a) => IpKey::v4(a.octets()),
            IpAddr::V6(a) => IpKey::v6(a.octets()),
        }
    }
}

impl From<IpKey> for IpAddr {
    fn from(k: IpKey) -> IpAddr {
        let a = k.addr;
        if k.v6 {
            IpAddr::from(a)
        } else {
            IpAddr::from([a[0], a[1], a[2], a[3]])
        }
    }
}

/// A prefix in flow-key form: the address's bits from the top of a big-endian u128 (IPv4 in
/// the first 4 bytes, as in [`Addr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    bits: u128,
    mask: u128,
    v6: bool,
}

impl Prefix {
    fn new(p: &IfAddr) -> Prefix {
        let v6 = p.addr.is_ipv6();
        let len = u32::from(p.prefix_len).min(if v6 { 128 } else { 32 });
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        Prefix {
            bits: u128::from_be_bytes(addr_key(p.addr)) & mask,
            mask,
            v6,
        }
    }

    #[inline]
    fn contains(&self, a: &Addr, v6: bool) -> bool {
        self.v6 == v6 && u128::from_be_bytes(*a) & self.mask == self.bits
    }
}

/// A service's source access list: `deny` wins, then an empty `allow` admits everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    allow: Box<[Prefix]>,
    deny: Box<[Prefix]>,
}

impl Acl {
    pub fn new(allow: &[IfAddr], deny: &[IfAddr]) -> Acl {
        Acl {
            allow: allow.iter().map(Prefix::new).collect(),
            deny: deny.iter().map(Prefix::new).collect(),
        }
    }

    /// May packets from `src` reach the service? Two empty lists cost two length checks.
    #[inline]
    pub fn admits(&self, src: &Addr, v6: bool) -> bool {
        if self.deny.iter().any(|p| p.contains(src, v6)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|p| p.contains(src, v6))
    }
}

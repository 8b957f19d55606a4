//! The IPv4 VIP lookup of the per-packet fast path: (address, protocol, port) -> service.
//!
//! [`crate::snapshot::Snapshot::service`] answers the same question for both families
//! through two `hashbrown` lookups of a 20-byte key (address, family, protocol, port) with a
//! general-purpose hasher, ~45 instructions each (measured before the family byte was added
//! to the key). A balancer has a few hundred VIP ports at most, so for IPv4 the
//! snapshot also carries this small open-addressing table: the whole key packs into one
//! `u64`, one multiply places it, and a lookup is a few loads and compares (~10
//! instructions when it hits on the first probe, which is the common case at under half
//! load). Built with the snapshot, immutable, never allocates on the per-packet path.

use std::net::IpAddr;

/// A key: the address (32 bits), the port (16; 0 = the VIP's all-ports service), the protocol
/// (8) and a marker bit so that no real key is 0 (0 marks an empty slot).
#[inline(always)]
const fn key(addr: u32, proto: u8, port: u16) -> u64 {
    addr as u64 | (port as u64) << 32 | (proto as u64) << 48 | 1 << 56
}

/// Fibonacci hashing: the product's top bits, well mixed from all of the key's.
#[inline(always)]
const fn slot_of(k: u64, shift: u32) -> usize {
    (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

/// IPv4 (VIP, protocol, port) -> service index.
#[derive(Debug, Clone)]
pub struct VipIndex {
    /// (key, service); a power-of-two count, at most half full.
    slots: Box<[(u64, u16)]>,
    /// 64 - log2(slots.len()).
    shift: u32,
}

impl Default for VipIndex {
    fn default() -> Self {
        VipIndex::build(std::iter::empty())
    }
}

impl VipIndex {
    /// The index of `services`: (VIP, IP protocol number, port or `None` for every port,
    /// service index). IPv6 VIPs are left out (the general path serves them). Keys are
    /// unique (configuration validation guarantees it); a repeated key keeps its first
    /// service, as a map insert into the snapshot's own index would not, so callers pass each
    /// once.
    pub fn build(services: impl Iterator<Item = (IpAddr, u8, Option<u16>, u16)>) -> VipIndex {
        let keys: Vec<(u64, u16)> = services
            .filter_map(|(vip, proto, port, si)| match vip {
                IpAddr::V4(a) => Some((key(u32::from(a), proto, port.unwrap_or(0)), si)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let len = (2 * keys.len()).next_power_of_two().max(16);
        let shift = 64 - len.trailing_zeros();
        let mut slots = vec![(0u64, 0u16); len].into_boxed_slice();
        let mask = len - 1;
        for (k, si) in keys {
            let mut i = slot_of(k, shift);
            while slots[i].0 != 0 && slots[i].0 != k {
                i = (i + 1) & mask;
            }
            if slots[i].0 == 0 {
                slots[i] = (k, si);
            }
        }
        VipIndex { slots, shift }
    }

    /// The service of `addr:port` (the address as a big-endian `u32`) for `proto`: the exact
    /// port's, else the VIP's all-ports service, as `Snapshot::service` answers.
    #[inline(always)]
    pub fn get(&self, addr: u32, proto: u8, port: u16) -> Option<u16> {
        self.find(key(addr, proto, port))
            .or_else(|| self.find(key(addr, proto, 0)))
    }

    #[inline(always)]
    fn find(&self, k: u64) -> Option<u16> {
        let mask = self.slots.len() - 1;
        let mut i = slot_of(k, self.shift);
        loop {
            let (sk, si) = self.slots[i & mask];
            if sk == k {
                return Some(si);
            }
            if sk == 0 {
                return None;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }

    fn a(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn exact_port_first_then_all_ports() {
        let ix = VipIndex::build(
            [
                (v4("10.0.0.1"), 6, Some(80), 0),
                (v4("10.0.0.1"), 6, None, 1),
                (v4("10.0.0.1"), 17, Some(53), 2),
                (v4("10.0.0.2"), 6, Some(443), 3),
                ("2001:db8::1".parse().unwrap(), 6, Some(80), 4),
            ]
            .into_iter(),
        );
        assert_eq!(ix.get(a("10.0.0.1"), 6, 80), Some(0));
        assert_eq!(ix.get(a("10.0.0.1"), 6, 8080), Some(1), "all-ports service");
        assert_eq!(ix.get(a("10.0.0.1"), 17, 53), Some(2));
        assert_eq!(ix.get(a("10.0.0.1"), 17, 54), None);
        assert_eq!(ix.get(a("10.0.0.2"), 6, 443), Some(3));
        assert_eq!(ix.get(a("10.0.0.2"), 6, 80), None);
        assert_eq!(ix.get(a("10.0.0.3"), 6, 80), None);
        assert_eq!(ix.get(0, 0, 0), None);
        assert_eq!(VipIndex::default().get(a("10.0.0.1"), 6, 80), None);
    }

    /// Thousands of VIP ports: every one found, nothing else.
    #[test]
    fn many() {
        let n = 5000u32;
        let ix = VipIndex::build((0..n).map(|i| {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i / 7));
            (addr, 6, Some(1000 + (i % 7) as u16), i as u16)
        }));
        for i in 0..n {
            assert_eq!(
                ix.get(0x0a00_0000 + i / 7, 6, 1000 + (i % 7) as u16),
                Some(i as u16)
            );
            assert_eq!(ix.get(0x0a00_0000 + i / 7, 17, 1000 + (i % 7) as u16), None);
        }
        assert!(ix.slots.len() >= 2 * n as usize);
    }
}

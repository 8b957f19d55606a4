//! A data port: its device, MTU, own addresses, static neighbours and routes, and the
//! address types they are written in.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

#[cfg(doc)]
use super::route;

/// A static route of a port: destinations in `prefix` are reached through the gateway `via`,
/// a neighbour on that port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// The destinations, e.g. `10.2.0.0/16`; `0.0.0.0/0` and `::/0` are default routes.
    pub prefix: IfAddr,
    /// The gateway: on-link in one of the port's subnets.
    pub via: IpAddr,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.prefix, self.via)
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl MacAddr {
    /// The group bit: set for multicast and broadcast addresses, which no port or host owns.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for a MAC a single interface can own: not multicast/broadcast, not all zeros.
    pub fn is_unicast(self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why text is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address; write six hex pairs separated by ':', e.g. \"02:00:00:00:00:01\"")]
pub struct MacParseError;

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, MacParseError> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.len() != 2 {
                return Err(MacParseError);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
            n += 1;
        }
        if n == 6 {
            Ok(MacAddr(out))
        } else {
            Err(MacParseError)
        }
    }
}

/// An address with its prefix length, e.g. `10.0.0.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IfAddr {
    /// True when `ip` lies in this address's subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let bits = u32::from(self.prefix_len.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let bits = u32::from(self.prefix_len.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A data port: one DPDK ethdev.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub name: String,
    /// A PCI address (`0000:03:00.0`) or a virtual device with its arguments
    /// (`net_af_packet0,iface=veth0`). Restart.
    pub device: String,
    /// Overrides the MAC the device reports.
    pub mac: Option<MacAddr>,
    /// IP MTU of the port's link, bytes ([`Port::MTU_RANGE`]; at least [`Port::MTU_MIN_V6`]
    /// when the port has an IPv6 address): a forwarded packet whose IP length, plus the
    /// forwarding mode's encapsulation, exceeds it is answered with ICMP fragmentation needed
    /// / packet too big. Restart.
    pub mtu: u16,
    /// The balancer's own addresses on this port (answers ARP/ICMP, sources health checks).
    pub addresses: Vec<IfAddr>,
    /// Static neighbours (IP -> MAC), e.g. a gateway or backends, until ARP resolves them.
    pub neighbors: Vec<(IpAddr, MacAddr)>,
    /// The kernel interface of this port's exception path (frames for the balancer's own
    /// addresses that the slow path does not handle itself go to the kernel there, and what
    /// the kernel sends there leaves by this port). `None`: no exception path. Restart.
    pub kernel_interface: Option<String>,
    /// Next hops for destinations on no link of any port (longest prefix wins, see
    /// [`route`]).
    pub routes: Vec<Route>,
}

impl Port {
    /// Routes a port may have: a static table for a balancer's few gateways (a default route
    /// and some prefixes), searched linearly by [`route`] for every backend of every
    /// publication; a longer list is better summarised.
    pub const ROUTES_MAX: usize = 32;
}

impl Port {
    pub const MTU_RANGE: RangeInclusive<u16> = 576..=9216;
    /// IPv6's minimum link MTU (RFC 8200 section 5).
    pub const MTU_MIN_V6: u16 = 1280;
    pub const DEFAULT_MTU: u16 = 1500;
}

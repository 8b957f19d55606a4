//! What ARP and ND share: a port as they see it (its MAC and addresses), the address a
//! request to a neighbour leaves from, and the Ethernet framing of what they send.

use std::net::IpAddr;

use conf::IfAddr;
use dataplane::wire::ethernet::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Frame};

/// Ethernet header (no VLAN tag: the slow path's frames go out untagged).
pub const ETH_HEADER: usize = ethernet::HEADER_LEN;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// What a port looks like to ARP and ND.
#[derive(Debug, Clone)]
pub struct PortL2 {
    pub mac: [u8; 6],
    pub addrs: Vec<IfAddr>,
}

impl PortL2 {
    /// The address a request for `target` leaves from: the port's address whose subnet
    /// holds the target, else its first address of the target's family.
    pub fn source_for(&self, target: IpAddr) -> Option<IpAddr> {
        self.addrs
            .iter()
            .find(|a| a.contains(target))
            .or_else(|| {
                self.addrs
                    .iter()
                    .find(|a| a.addr.is_ipv6() == target.is_ipv6())
            })
            .map(|a| a.addr)
    }
}

/// The Ethernet type of an IP packet to `ip`.
pub fn ethertype(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => ETHERTYPE_IPV4,
        IpAddr::V6(_) => ETHERTYPE_IPV6,
    }
}

/// An Ethernet frame around `payload`.
pub fn frame(src: [u8; 6], dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; ETH_HEADER + payload.len()];
    let mut eth = Frame::new_unchecked(&mut bytes[..]);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype);
    eth.payload_mut().copy_from_slice(payload);
    bytes
}

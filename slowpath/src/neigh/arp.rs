//! ARP (RFC 826), the part the slow path needs to resolve IPv4 backends: who-has requests
//! and the sender of a message received (a reply, or a gratuitous request announcing a
//! new MAC). Received bytes are read through the length-checked `dataplane::wire` view.

use std::net::{IpAddr, Ipv4Addr};

use dataplane::wire::arp::{HARDWARE_ETHERNET, OP_REQUEST};
use dataplane::wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4};
use dataplane::wire::{ArpPacket, ArpRepr};

use super::l2::{self, PortL2};

/// A who-has request for `target` from `port`'s address in the target's subnet (else its
/// first IPv4 address), to `dst`: broadcast, or the known MAC for a confirmation. `None` if
/// the port has no IPv4 address.
pub fn request(port: &PortL2, target: Ipv4Addr, dst: [u8; 6]) -> Option<Vec<u8>> {
    let IpAddr::V4(source) = port.source_for(IpAddr::V4(target))? else {
        return None;
    };
    Some(who_has(port.mac, source, target, dst))
}

/// A gratuitous ARP request announcing that `addr` is at `port`'s MAC (sender and target
/// address both `addr`, to broadcast), as Linux and keepalived send on taking an address
/// over: every host on the segment that knows `addr` updates its cache at once.
pub fn gratuitous(port: &PortL2, addr: Ipv4Addr) -> Vec<u8> {
    who_has(port.mac, addr, addr, l2::BROADCAST)
}

/// An ARP request frame from `mac` and `sender` for `target`, to `dst`.
fn who_has(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr, dst: [u8; 6]) -> Vec<u8> {
    let repr = ArpRepr {
        operation: OP_REQUEST,
        sender_hw_addr: mac,
        sender_proto_addr: sender.octets(),
        target_hw_addr: [0; 6],
        target_proto_addr: target.octets(),
    };
    let mut arp = vec![0u8; repr.buffer_len()];
    // `arp` has exactly the length the representation asks for: emitting cannot fail.
    let _ = repr.emit(&mut arp);
    l2::frame(mac, dst, ETHERTYPE_ARP, &arp)
}

/// The sender (address, MAC) of an Ethernet/IPv4 ARP message, request or reply; `None` for
/// anything else or anything too short.
pub fn sender(arp: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    let pkt = ArpPacket::new_checked(arp).ok()?;
    if pkt.hardware_type() != HARDWARE_ETHERNET
        || pkt.protocol_type() != ETHERTYPE_IPV4
        || pkt.hw_len() != 6
        || pkt.proto_len() != 4
    {
        return None;
    }
    let repr = ArpRepr::parse(&pkt);
    Some((Ipv4Addr::from(repr.sender_proto_addr), repr.sender_hw_addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::arp::OP_REPLY;

    fn reply(fields: impl FnOnce(&mut ArpPacket<&mut [u8]>)) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        ArpRepr {
            operation: OP_REPLY,
            sender_hw_addr: [2, 0, 0, 0, 0, 0x11],
            sender_proto_addr: [10, 0, 0, 11],
            target_hw_addr: [2, 0, 0, 0, 0, 1],
            target_proto_addr: [10, 0, 0, 2],
        }
        .emit(&mut b)
        .unwrap();
        fields(&mut ArpPacket::new_unchecked(&mut b[..]));
        b
    }

    #[test]
    fn reads_the_sender_of_ethernet_ipv4_messages_only() {
        let b1 = (Ipv4Addr::new(10, 0, 0, 11), [2, 0, 0, 0, 0, 0x11]);
        assert_eq!(sender(&reply(|_| {})), Some(b1));
        assert_eq!(sender(&reply(|p| p.set_operation(OP_REQUEST))), Some(b1));
        assert_eq!(sender(&reply(|p| p.set_hardware_type(6))), None);
        assert_eq!(sender(&reply(|p| p.set_protocol_type(0x86dd))), None);
        assert_eq!(sender(&reply(|p| p.set_hw_len(8))), None);
        assert_eq!(sender(&reply(|p| p.set_proto_len(16))), None);
        let good = reply(|_| {});
        for len in 0..good.len() {
            assert_eq!(sender(&good[..len]), None, "cut at {len}");
        }
    }

    #[test]
    fn a_gratuitous_request_names_the_address_twice_and_the_ports_mac() {
        let port = PortL2 {
            mac: [2, 0, 0, 0, 0, 1],
            addrs: vec![],
        };
        let f = gratuitous(&port, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(&f[..6], &l2::BROADCAST);
        assert_eq!(&f[6..12], &port.mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap());
        assert_eq!(arp.operation, OP_REQUEST);
        assert_eq!(arp.sender_hw_addr, port.mac);
        assert_eq!(arp.sender_proto_addr, [10, 0, 0, 100]);
        assert_eq!(arp.target_proto_addr, [10, 0, 0, 100]);
        // What the neighbour table of another balancer learns from it.
        assert_eq!(
            sender(&f[14..]),
            Some((Ipv4Addr::new(10, 0, 0, 100), port.mac))
        );
    }

    #[test]
    fn requests_from_the_address_on_the_targets_subnet() {
        let addr = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            conf::IfAddr {
                addr: a.parse().unwrap(),
                prefix_len: l.parse().unwrap(),
            }
        };
        let port = PortL2 {
            mac: [2, 0, 0, 0, 0, 1],
            addrs: vec![
                addr("2001:db8::2/64"),
                addr("10.0.0.2/24"),
                addr("10.1.0.2/24"),
            ],
        };
        let f = request(&port, Ipv4Addr::new(10, 1, 0, 7), l2::BROADCAST).unwrap();
        assert_eq!(&f[..6], &l2::BROADCAST);
        assert_eq!(&f[6..12], &port.mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap());
        assert_eq!(arp.operation, OP_REQUEST);
        assert_eq!(arp.sender_proto_addr, [10, 1, 0, 2]);
        assert_eq!(arp.target_proto_addr, [10, 1, 0, 7]);
        // Off every subnet: the first IPv4 address; no IPv4 address at all: nothing.
        let f = request(&port, Ipv4Addr::new(192, 0, 2, 1), l2::BROADCAST).unwrap();
        assert_eq!(&f[14 + 14..14 + 18], &[10, 0, 0, 2]);
        let v6only = PortL2 {
            mac: port.mac,
            addrs: vec![addr("2001:db8::2/64")],
        };
        assert!(request(&v6only, Ipv4Addr::new(10, 0, 0, 7), l2::BROADCAST).is_none());
    }
}

use super::*;
use dataplane::wire::arp::{OP_REPLY, OP_REQUEST};
use dataplane::wire::{ArpPacket, ArpRepr};
use std::path::Path;

const MS: Duration = Duration::from_millis(1);
/// The table's one port.
const P0: PortIdx = PortIdx::new(0);
const LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];

fn table() -> Neighbors {
    let text = "[global.neighbors]\nrefresh_ms = 10000\nretry_ms = 500\n\
                [[port]]\nname = \"p\"\ndevice = \"d\"\naddresses = [\"10.0.0.2/24\"]\n\
                neighbors = [{ ip = \"10.0.0.1\", mac = \"02:00:00:00:00:fe\" }]\n\
                [[service]]\nname = \"s\"\nvip = \"10.0.0.100\"\nport = 80\n\
                [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\n\
                [[service.backend]]\nname = \"b\"\naddress = \"10.0.0.12\"\nmac = \"02:00:00:00:00:12\"\n";
    let cfg = conf::parse(text, Path::new("t.toml")).unwrap();
    let ports = vec![PortL2 {
        mac: LB,
        addrs: cfg.ports[0].addresses.clone(),
    }];
    Neighbors::new(&cfg, ports, Duration::ZERO)
}

fn reply(from_ip: [u8; 4], from_mac: [u8; 6]) -> Vec<u8> {
    arp_message(OP_REPLY, (from_ip, from_mac), ([10, 0, 0, 2], LB))
}

/// A gratuitous ARP request: `ip` announcing itself at `mac`.
fn gratuitous(ip: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
    arp_message(OP_REQUEST, (ip, mac), (ip, [0; 6]))
}

fn arp_message(operation: u16, from: ([u8; 4], [u8; 6]), to: ([u8; 4], [u8; 6])) -> Vec<u8> {
    let repr = ArpRepr {
        operation,
        sender_hw_addr: from.1,
        sender_proto_addr: from.0,
        target_hw_addr: to.1,
        target_proto_addr: to.0,
    };
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(&mut b).unwrap();
    b
}

fn sent(n: &mut Neighbors, now: Duration) -> Vec<(PortIdx, Vec<u8>)> {
    let mut out = Vec::new();
    n.poll(now, &mut |p, f| out.push((p, f.to_vec())));
    out
}

/// (Ethernet destination, ARP target) of a request frame.
fn request_of(f: &[u8]) -> ([u8; 6], [u8; 4]) {
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&f[ETH_HEADER..]).unwrap());
    assert_eq!(arp.operation, OP_REQUEST);
    assert_eq!(arp.sender_proto_addr, [10, 0, 0, 2]);
    (f[..6].try_into().unwrap(), arp.target_proto_addr)
}

#[test]
fn resolves_refreshes_and_follows_a_moved_mac() {
    let mut n = table();
    let a: IpAddr = "10.0.0.11".parse().unwrap();
    // Statics: never asked for. The backend without a MAC: asked at once, by broadcast.
    assert_eq!(
        n.lookup("10.0.0.12".parse().unwrap()),
        Some([2, 0, 0, 0, 0, 0x12])
    );
    assert_eq!(
        n.lookup("10.0.0.1".parse().unwrap()),
        Some([2, 0, 0, 0, 0, 0xfe])
    );
    let out = sent(&mut n, Duration::ZERO);
    assert_eq!(out.len(), 1);
    assert_eq!(request_of(&out[0].1), (BROADCAST, [10, 0, 0, 11]));
    // Unanswered: again after retry_ms, not before.
    assert!(sent(&mut n, MS * 499).is_empty());
    assert_eq!(sent(&mut n, MS * 500).len(), 1);
    // Answered: learnt, and confirmed by unicast after refresh_ms.
    n.receive_arp(P0, &reply([10, 0, 0, 11], B1), MS * 600);
    assert!(n.take_changed());
    assert!(!n.take_changed());
    assert_eq!(n.lookup(a), Some(B1));
    assert!(sent(&mut n, MS * 10_599).is_empty());
    let out = sent(&mut n, MS * 10_600);
    assert_eq!(request_of(&out[0].1), (B1, [10, 0, 0, 11]));
    // Unconfirmed: the MAC stays, requests go broadcast every retry_ms.
    let out = sent(&mut n, MS * 11_100);
    assert_eq!(request_of(&out[0].1), (BROADCAST, [10, 0, 0, 11]));
    assert_eq!(n.lookup(a), Some(B1));
    // The address moved to another host: the new MAC replaces the old.
    let b2 = [2, 0, 0, 0, 0, 0x22];
    n.receive_arp(P0, &reply([10, 0, 0, 11], b2), MS * 11_200);
    assert!(n.take_changed());
    assert_eq!(n.learnt().get(&a), Some(&b2));
    assert_eq!(n.stats.changed, 1);
    // Replies from hosts nobody asked about are not learnt.
    n.receive_arp(P0, &reply([10, 0, 0, 99], B1), MS * 11_300);
    assert_eq!(n.lookup("10.0.0.99".parse().unwrap()), None);
    // A gratuitous request (what Linux sends when an interface's MAC changes) moves it
    // as a reply does; one from a host nobody asked about is not learnt either.
    let b3 = [2, 0, 0, 0, 0, 0x33];
    n.receive_arp(P0, &gratuitous([10, 0, 0, 11], b3), MS * 11_400);
    assert!(n.take_changed());
    assert_eq!(n.lookup(a), Some(b3));
    assert_eq!(n.stats.changed, 2);
    n.receive_arp(P0, &gratuitous([10, 0, 0, 98], b3), MS * 11_500);
    assert_eq!(n.lookup("10.0.0.98".parse().unwrap()), None);
    assert!(!n.take_changed());
}

#[test]
fn stack_packets_wait_for_resolution() {
    let mut n = table();
    let dst: IpAddr = "10.0.0.33".parse().unwrap();
    // A packet for an unknown neighbour is queued and makes a request due now.
    assert!(n.frame(P0, dst, b"SYN", MS * 5).is_none());
    let out = sent(&mut n, MS * 5);
    assert!(out.iter().any(|(_, f)| request_of(f).1 == [10, 0, 0, 33]));
    for i in 0..PENDING_MAX {
        assert!(n.frame(P0, dst, &[i as u8], MS * 6).is_none());
    }
    assert_eq!(n.stats.dropped, 1, "the oldest went");
    let released = n.receive_arp(P0, &reply([10, 0, 0, 33], B1), MS * 7);
    assert_eq!(released.len(), PENDING_MAX);
    assert_eq!(&released[0][..6], &B1);
    assert_eq!(&released[0][6..12], &LB);
    assert_eq!(&released[0][12..14], &[0x08, 0x00]);
    assert_eq!(&released[0][ETH_HEADER..], &[0]);
    // Resolved: framed at once.
    let f = n.frame(P0, dst, b"ACK", MS * 8).unwrap();
    assert_eq!(&f[ETH_HEADER..], b"ACK");
}

fn table_v6() -> Neighbors {
    let text = "[global.neighbors]\nrefresh_ms = 10000\nretry_ms = 500\n\
                [[port]]\nname = \"p\"\ndevice = \"d\"\n\
                addresses = [\"10.0.0.2/24\", \"2001:db8::2/64\"]\n\
                [[service]]\nname = \"s\"\nvip = \"2001:db8:ff::100\"\nport = 80\n\
                [[service.backend]]\nname = \"a\"\naddress = \"2001:db8::11\"\n\
                [[service.backend]]\nname = \"b\"\naddress = \"2001:db8::12\"\nmac = \"02:00:00:00:00:12\"\n";
    let cfg = conf::parse(text, Path::new("t.toml")).unwrap();
    let ports = vec![PortL2 {
        mac: LB,
        addrs: cfg.ports[0].addresses.clone(),
    }];
    Neighbors::new(&cfg, ports, Duration::ZERO)
}

/// (Ethernet destination, IPv6 destination, target) of a solicitation frame, checked.
fn solicitation_of(f: &[u8]) -> ([u8; 6], Ipv6Addr, Ipv6Addr) {
    use dataplane::wire::{Icmpv6Packet, Ipv6Packet};
    let p = Ipv6Packet::new_checked(&f[ETH_HEADER..]).unwrap();
    assert_eq!(p.hop_limit(), 255);
    assert_eq!(p.src_ip(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
    let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
    assert_eq!(icmp.msg_type(), 135);
    assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));
    let t: [u8; 16] = icmp.payload()[..16].try_into().unwrap();
    (f[..6].try_into().unwrap(), p.dst_ip(), Ipv6Addr::from(t))
}

#[test]
fn resolves_ipv6_by_nd_with_the_arp_policy() {
    use super::nd::tests::advert;
    let mut n = table_v6();
    let a: Ipv6Addr = "2001:db8::11".parse().unwrap();
    let us: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let group: Ipv6Addr = "ff02::1:ff00:11".parse().unwrap();
    let mcast = [0x33, 0x33, 0xff, 0, 0, 0x11];
    // The static one is never asked for; the other at once, to its solicited-node group.
    let out = sent(&mut n, Duration::ZERO);
    assert_eq!(out.len(), 1);
    assert_eq!(solicitation_of(&out[0].1), (mcast, group, a));
    // Unanswered: again after retry_ms, not before.
    assert!(sent(&mut n, MS * 499).is_empty());
    assert_eq!(sent(&mut n, MS * 500).len(), 1);
    // Advertisements that teach nothing: bad checksum, hop limit, truncated, another
    // target, not ND at all (the stack's).
    let good = advert(a, us, 0x60, Some(B1));
    let mut bad_sum = good.clone();
    bad_sum[40 + 2] ^= 0xff;
    let mut bad_hops = good.clone();
    bad_hops[7] = 64;
    let mut truncated = good[..40 + 20].to_vec();
    truncated[4..6].copy_from_slice(&20u16.to_be_bytes());
    for bad in [&bad_sum, &bad_hops, &truncated] {
        assert_eq!(n.receive_nd(P0, B1, bad, MS * 600), Some(Vec::new()));
    }
    assert_eq!(n.stats.nd_invalid, 3);
    let other = advert("2001:db8::99".parse().unwrap(), us, 0x60, Some(B1));
    assert_eq!(n.receive_nd(P0, B1, &other, MS * 600), Some(Vec::new()));
    assert_eq!(n.receive_nd(P0, B1, &good[..40], MS * 600), None, "not ND");
    assert!(!n.take_changed());
    assert_eq!(n.lookup(IpAddr::V6(a)), None);
    // Answered: learnt, confirmed by unicast after refresh_ms.
    assert_eq!(n.receive_nd(P0, B1, &good, MS * 600), Some(Vec::new()));
    assert!(n.take_changed());
    assert_eq!(n.lookup(IpAddr::V6(a)), Some(B1));
    assert!(sent(&mut n, MS * 10_599).is_empty());
    let out = sent(&mut n, MS * 10_600);
    assert_eq!(solicitation_of(&out[0].1), (B1, a, a));
    // Unconfirmed: the MAC stays, solicitations go multicast every retry_ms.
    let out = sent(&mut n, MS * 11_100);
    assert_eq!(solicitation_of(&out[0].1), (mcast, group, a));
    assert_eq!(n.lookup(IpAddr::V6(a)), Some(B1));
    // Another MAC without the override flag does not replace it; with it, it does.
    let b2 = [2, 0, 0, 0, 0, 0x22];
    n.receive_nd(P0, b2, &advert(a, us, 0x40, Some(b2)), MS * 11_200);
    assert_eq!(n.lookup(IpAddr::V6(a)), Some(B1));
    n.receive_nd(P0, b2, &advert(a, us, 0x60, Some(b2)), MS * 11_200);
    assert!(n.take_changed());
    assert_eq!(n.learnt().get(&IpAddr::V6(a)), Some(&b2));
}

#[test]
fn ipv6_stack_packets_wait_for_nd() {
    use super::nd::tests::advert;
    let mut n = table_v6();
    let dst: Ipv6Addr = "2001:db8::33".parse().unwrap();
    let us: Ipv6Addr = "2001:db8::2".parse().unwrap();
    assert!(n.frame(P0, IpAddr::V6(dst), b"SYN", MS * 5).is_none());
    let out = sent(&mut n, MS * 5);
    assert!(out.iter().any(|(_, f)| solicitation_of(f).2 == dst));
    // Learnt from a solicitation the neighbour sent us (its source option) as well.
    let ns = super::nd::solicitation(
        &PortL2 {
            mac: B1,
            addrs: vec![super::nd::tests::ifaddr("2001:db8::33/64")],
        },
        us,
        None,
    )
    .unwrap();
    // It asks for our address: the packet that waited goes, and the answer.
    let released = n.receive_nd(P0, B1, &ns[ETH_HEADER..], MS * 7).unwrap();
    assert_eq!(released.len(), 2);
    assert_eq!(&released[0][..6], &B1);
    assert_eq!(&released[0][6..12], &LB);
    assert_eq!(&released[0][12..14], &[0x86, 0xdd]);
    assert_eq!(&released[0][ETH_HEADER..], b"SYN");
    assert_eq!(
        super::nd::parse(LB, &released[1][ETH_HEADER..]),
        Some(super::nd::Nd::Advert {
            ip: us,
            mac: LB,
            override_: true
        })
    );
    assert_eq!(&released[1][..6], &B1);
    // A solicitation for another address is not answered (nor one without a source
    // option learnt from).
    let other = super::nd::solicitation(
        &PortL2 {
            mac: B1,
            addrs: vec![super::nd::tests::ifaddr("2001:db8::33/64")],
        },
        "2001:db8::77".parse().unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(
        n.receive_nd(P0, B1, &other[ETH_HEADER..], MS * 7),
        Some(Vec::new())
    );
    // Known now; and a later advertisement releases nothing more.
    let f = n.frame(P0, IpAddr::V6(dst), b"ACK", MS * 8).unwrap();
    assert_eq!(&f[..6], &B1);
    let again = n.receive_nd(P0, B1, &advert(dst, us, 0x60, Some(B1)), MS * 9);
    assert_eq!(again, Some(Vec::new()));
    // Multicast destinations (MLD and the like) are framed at once, never asked for.
    let f = n
        .frame(P0, "ff02::16".parse().unwrap(), b"MLD", MS * 10)
        .unwrap();
    assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 0x16]);
}

#[test]
fn an_address_taken_over_is_announced_three_times_half_a_second_apart() {
    let mut n = table();
    let vip: IpAddr = "10.0.0.100".parse().unwrap();
    let v6: IpAddr = "2001:db8::100".parse().unwrap();
    let t0 = Duration::from_secs(5);
    // The port has no IPv6 address: the IPv6 VIP is announced nowhere.
    n.announce(&[vip, v6], t0);
    let mut times = Vec::new();
    for ms in (0..2000).step_by(50) {
        let now = t0 + MS * ms;
        for (port, f) in sent(&mut n, now) {
            if f[12..14] != [0x08, 0x06] || f[..6] != l2::BROADCAST {
                continue;
            }
            let arp = ArpRepr::parse(&ArpPacket::new_checked(&f[ETH_HEADER..]).unwrap());
            if arp.sender_proto_addr == arp.target_proto_addr {
                assert_eq!(port, PortIdx::new(0));
                assert_eq!(arp.sender_proto_addr, [10, 0, 0, 100]);
                assert_eq!(arp.sender_hw_addr, LB);
                times.push(ms);
            }
        }
    }
    assert_eq!(times, [0, 500, 1000]);
    assert_eq!(n.stats.gratuitous, 3);
    // Cancelled (the node lost the master role) before the repeats: nothing more.
    n.announce(&[vip], t0 + MS * 3000);
    sent(&mut n, t0 + MS * 3000);
    n.cancel_announcements();
    sent(&mut n, t0 + MS * 5000);
    assert_eq!(n.stats.gratuitous, 4);
}

//! IPv4 and IPv6 addresses with the same leading bytes, configured together, through the pure
//! pipeline: the IPv6 address `a00:1::` is `0a 00 00 01` followed by zeros, which is also how
//! the flow-key form writes the IPv4 address `10.0.0.1`. Every address the snapshot looks up
//! (VIPs, own addresses, NAT backend endpoints) must still be told apart by its family.
//!
//! Colliding pairs in `CONFIG`:
//! - VIPs 10.0.0.1 and a00:1::, on tcp/80 (IPv4 service first) and udp/53 (IPv6 first);
//! - the IPv6-only VIP a00:9:: and 10.0.0.9, which is nothing of ours;
//! - own addresses 10.0.0.2 (port p0) and a00:2:: (port p1);
//! - the IPv4 NAT backend 10.0.0.21:8080 and a00:15::, which is nothing of ours.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use dataplane::frame::VecFrame;
use dataplane::ids::{PortIdx, WorkerIdx};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::{self, tcp};
use slowpath::publish::{BackendIds, Dynamic, build};

const CONFIG: &str = r#"
[dpdk]
workers = [0]
[global]
hash_seed = 7
maglev_table_size = 251
[[port]]
name = "p0"
device = "net_null0"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.2/24"]
[[port]]
name = "p1"
device = "net_null1"
mac = "02:00:00:00:00:02"
addresses = ["a00:2::/16"]

[[service]]
name = "web4"
vip = "10.0.0.1"
port = 80
[[service.backend]]
name = "b"
address = "10.0.0.11"
mac = "02:00:00:00:04:11"

[[service]]
name = "web6"
vip = "a00:1::"
port = 80
[[service.backend]]
name = "b"
address = "a00:ff::11"
mac = "02:00:00:00:06:11"

[[service]]
name = "dns6"
vip = "a00:1::"
protocol = "udp"
port = 53
[[service.backend]]
name = "b"
address = "a00:ff::53"
mac = "02:00:00:00:06:53"

[[service]]
name = "dns4"
vip = "10.0.0.1"
protocol = "udp"
port = 53
[[service.backend]]
name = "b"
address = "10.0.0.53"
mac = "02:00:00:00:04:53"

[[service]]
name = "only6"
vip = "a00:9::"
port = 443
[[service.backend]]
name = "b"
address = "a00:ff::43"
mac = "02:00:00:00:06:43"

[[service]]
name = "nat4"
vip = "10.0.0.101"
port = 80
forwarding = "nat"
[[service.backend]]
name = "b"
address = "10.0.0.21"
port = 8080
mac = "02:00:00:00:04:21"
"#;

const P0_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const P1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn snapshot() -> Snapshot {
    let cfg = conf::parse(CONFIG, Path::new("addr_family.toml")).unwrap_or_else(|e| panic!("{e}"));
    build(&cfg, &mut BackendIds::new(), &Dynamic::default(), 1)
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("IPv6 address").octets()
}

/// An Ethernet frame to `to_mac` carrying a TCP SYN or a UDP datagram, with right checksums.
fn l4_frame(
    to_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let l4_len = if proto == wire::IPPROTO_TCP { 20 } else { 12 };
    let (ethertype, l3_len) = if src.is_ipv4() {
        (wire::ETHERTYPE_IPV4, 20)
    } else {
        (wire::ETHERTYPE_IPV6, 40)
    };
    let mut f = vec![0u8; 14 + l3_len + l4_len];
    f[0..6].copy_from_slice(&to_mac);
    f[6..12].copy_from_slice(&ROUTER_MAC);
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let (ip, seg) = f[14..].split_at_mut(l3_len);
    seg[0..2].copy_from_slice(&sport.to_be_bytes());
    seg[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == wire::IPPROTO_TCP {
        let mut t = wire::TcpPacket::new_unchecked(&mut *seg);
        t.set_header_len(20);
        t.set_flags(tcp::SYN);
        t.set_seq_number(1000);
        t.set_window_len(512);
    } else {
        let mut u = wire::UdpPacket::new_unchecked(&mut *seg);
        u.set_len(l4_len as u16);
        seg[8..].copy_from_slice(b"ping");
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (s, d) = (s.octets(), d.octets());
            wire::Ipv4Repr {
                src: s,
                dst: d,
                protocol: proto,
                payload_len: l4_len as u16,
                ttl: 64,
                ident: 1,
            }
            .emit(ip)
            .expect("room");
            if proto == wire::IPPROTO_TCP {
                wire::TcpPacket::new_unchecked(seg).fill_checksum_v4(&s, &d);
            } else {
                wire::UdpPacket::new_unchecked(seg).fill_checksum_v4(&s, &d);
            }
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let (s, d) = (s.octets(), d.octets());
            wire::Ipv6Repr {
                src: s,
                dst: d,
                next_header: proto,
                payload_len: l4_len as u16,
                hop_limit: 64,
            }
            .emit(ip)
            .expect("room");
            if proto == wire::IPPROTO_TCP {
                wire::TcpPacket::new_unchecked(seg).fill_checksum_v6(&s, &d);
            } else {
                wire::UdpPacket::new_unchecked(seg).fill_checksum_v6(&s, &d);
            }
        }
        _ => panic!("one family per frame"),
    }
    f
}

/// The same frame with an 802.1Q tag (VLAN 10): the fast path leaves tagged frames to the
/// general path, which is where the snapshot's address maps are read.
fn tagged(f: &[u8]) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&wire::ETHERTYPE_VLAN.to_be_bytes());
    t.extend_from_slice(&10u16.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 28];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&ROUTER_MAC);
    f[12..14].copy_from_slice(&wire::ETHERTYPE_ARP.to_be_bytes());
    wire::ArpRepr {
        operation: wire::arp::OP_REQUEST,
        sender_hw_addr: ROUTER_MAC,
        sender_proto_addr: [10, 0, 0, 254],
        target_hw_addr: [0; 6],
        target_proto_addr: target,
    }
    .emit(&mut f[14..])
    .expect("room");
    f
}

/// A 32-byte neighbour discovery message (type, flags byte, target, one link-layer address
/// option of kind `option`) from `src` at `mac` to `dst` (at `dst_mac`), hop limit 255.
#[allow(clippy::too_many_arguments)]
fn nd_frame(
    dst_mac: [u8; 6],
    mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    kind: u8,
    flags: u8,
    target: [u8; 16],
    option: u8,
) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 32];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&wire::ETHERTYPE_IPV6.to_be_bytes());
    wire::Ipv6Repr {
        src,
        dst,
        next_header: wire::IPPROTO_ICMPV6,
        payload_len: 32,
        hop_limit: 255,
    }
    .emit(&mut f[14..])
    .expect("room");
    let m = &mut f[54..];
    m[0] = kind;
    m[4] = flags;
    m[8..24].copy_from_slice(&target);
    m[24] = option;
    m[25] = 1; // 8 bytes
    m[26..32].copy_from_slice(&mac);
    wire::Icmpv6Packet::new_unchecked(m).fill_checksum(&src, &dst);
    f
}

/// A neighbour solicitation for `target` from `fe80::fe`, to its solicited-node group.
fn neighbor_solicitation(target: [u8; 16]) -> Vec<u8> {
    let mut dst = v6("ff02::1:ff00:0");
    dst[13..].copy_from_slice(&target[13..]);
    let dst_mac = [0x33, 0x33, 0xff, target[13], target[14], target[15]];
    // Option 1: the source's link-layer address.
    let (kind, src) = (wire::icmpv6::NEIGHBOR_SOLICIT, v6("fe80::fe"));
    nd_frame(dst_mac, ROUTER_MAC, src, dst, kind, 0, target, 1)
}

/// An unsolicited neighbour advertisement of `target` at `mac`, to all-nodes, with the
/// override flag (0x20) and option 2, the target's link-layer address.
fn unsolicited_advert(target: [u8; 16], mac: [u8; 6]) -> Vec<u8> {
    let (all_nodes, kind) = ([0x33, 0x33, 0, 0, 0, 1], wire::icmpv6::NEIGHBOR_ADVERT);
    nd_frame(all_nodes, mac, target, v6("ff02::1"), kind, 0x20, target, 2)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

/// Runs one frame received on `port` through a fresh single-worker pipeline.
fn run(snap: &Snapshot, port: u8, bytes: &[u8]) -> (Verdict, Vec<u8>) {
    let mut pipe = Pipeline::new(WorkerIdx::new(0), 1, 64, 7);
    pipe.now_ms = 1_000;
    let mut f = VecFrame::new(bytes);
    let v = pipe.process(snap, PortIdx::new(port), &mut f);
    (v, f.to_vec())
}

/// Asserts a DSR forward: out of `port`, to `backend_mac`, everything after the MACs as sent.
fn assert_dsr(snap: &Snapshot, port: u8, bytes: &[u8], out: u8, backend_mac: [u8; 6], what: &str) {
    let (v, o) = run(snap, port, bytes);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortIdx::new(out)
        },
        "{what}"
    );
    assert_eq!(
        o[0..6],
        backend_mac,
        "{what}: the backend of the right service"
    );
    assert_eq!(o[12..], bytes[12..], "{what}: DSR changes only the MACs");
}

#[test]
fn colliding_vips_each_reach_their_own_service() {
    let snap = snapshot();
    assert_eq!(snap.services.len(), 6, "no service merged or dropped");
    let (c4, c6) = (ip("192.0.2.7"), ip("2001:db8::7"));
    let web4 = l4_frame(P0_MAC, c4, ip("10.0.0.1"), wire::IPPROTO_TCP, 40000, 80);
    let web6 = l4_frame(P1_MAC, c6, ip("a00:1::"), wire::IPPROTO_TCP, 40000, 80);
    let dns4 = l4_frame(P0_MAC, c4, ip("10.0.0.1"), wire::IPPROTO_UDP, 40000, 53);
    let dns6 = l4_frame(P1_MAC, c6, ip("a00:1::"), wire::IPPROTO_UDP, 40000, 53);
    let (b_web4, b_web6) = ([2, 0, 0, 0, 4, 0x11], [2, 0, 0, 0, 6, 0x11]);
    let (b_dns4, b_dns6) = ([2, 0, 0, 0, 4, 0x53], [2, 0, 0, 0, 6, 0x53]);

    // IPv4 through the fast path and, tagged, through the general path.
    assert_dsr(&snap, 0, &web4, 0, b_web4, "tcp to 10.0.0.1:80");
    assert_dsr(
        &snap,
        0,
        &tagged(&web4),
        0,
        b_web4,
        "tagged tcp to 10.0.0.1:80",
    );
    assert_dsr(&snap, 0, &dns4, 0, b_dns4, "udp to 10.0.0.1:53");
    assert_dsr(
        &snap,
        0,
        &tagged(&dns4),
        0,
        b_dns4,
        "tagged udp to 10.0.0.1:53",
    );
    // IPv6 (general path only), untagged and tagged.
    assert_dsr(&snap, 1, &web6, 1, b_web6, "tcp to [a00:1::]:80");
    assert_dsr(
        &snap,
        1,
        &tagged(&web6),
        1,
        b_web6,
        "tagged tcp to [a00:1::]:80",
    );
    assert_dsr(&snap, 1, &dns6, 1, b_dns6, "udp to [a00:1::]:53");
    assert_dsr(
        &snap,
        1,
        &tagged(&dns6),
        1,
        b_dns6,
        "tagged udp to [a00:1::]:53",
    );
}

#[test]
fn an_ipv6_vip_does_not_make_its_ipv4_twin_a_vip() {
    let snap = snapshot();
    // 10.0.0.9 is not ours, although the IPv6 VIP a00:9:: starts with its bytes.
    let to_twin = l4_frame(
        P0_MAC,
        ip("192.0.2.7"),
        ip("10.0.0.9"),
        wire::IPPROTO_TCP,
        40000,
        443,
    );
    assert_eq!(run(&snap, 0, &to_twin).0, Verdict::Drop(DropReason::NotVip));
    assert_eq!(
        run(&snap, 0, &tagged(&to_twin)).0,
        Verdict::Drop(DropReason::NotVip)
    );
    assert_eq!(
        run(&snap, 0, &arp_request([10, 0, 0, 9])).0,
        Verdict::Drop(DropReason::ArpNotOurs),
        "no ARP answer for an address that is not a VIP"
    );
    // A gratuitous request for the same address (its sender announcing its MAC) is not
    // answered either: it goes to the slow path's neighbour cache, unchanged.
    let mut garp = arp_request([10, 0, 0, 9]);
    garp[14 + 14..14 + 18].copy_from_slice(&[10, 0, 0, 9]);
    let (v, out) = run(&snap, 0, &garp);
    assert_eq!(v, Verdict::SlowPath, "gratuitous ARP");
    assert_eq!(out, garp, "passed on as received");
    // The IPv6 VIP itself still works.
    let to_vip = l4_frame(
        P1_MAC,
        ip("2001:db8::7"),
        ip("a00:9::"),
        wire::IPPROTO_TCP,
        40000,
        443,
    );
    assert_dsr(
        &snap,
        1,
        &to_vip,
        1,
        [2, 0, 0, 0, 6, 0x43],
        "tcp to [a00:9::]:443",
    );
}

#[test]
fn colliding_own_addresses_are_answered_on_their_own_ports() {
    let snap = snapshot();
    // 10.0.0.2 is p0's, a00:2:: is p1's.
    let (v, o) = run(&snap, 0, &arp_request([10, 0, 0, 2]));
    assert_eq!(v, Verdict::Reply, "ARP for p0's own IPv4 address");
    let arp = wire::ArpRepr::parse(&wire::ArpPacket::new_checked(&o[14..]).expect("ARP"));
    assert_eq!(arp.operation, wire::arp::OP_REPLY);
    assert_eq!(arp.sender_hw_addr, P0_MAC);
    assert_eq!(arp.sender_proto_addr, [10, 0, 0, 2]);
    assert_eq!(
        run(&snap, 1, &arp_request([10, 0, 0, 2])).0,
        Verdict::Drop(DropReason::ArpNotOurs),
        "p1 does not own 10.0.0.2"
    );

    let ns = neighbor_solicitation(v6("a00:2::"));
    let (v, o) = run(&snap, 1, &ns);
    assert_eq!(v, Verdict::Reply, "NS for p1's own IPv6 address");
    assert_eq!(o[54], wire::icmpv6::NEIGHBOR_ADVERT);
    assert_eq!(o[54 + 8..54 + 24], v6("a00:2::"));
    assert_eq!(o[54 + 26..54 + 32], P1_MAC);
    assert_eq!(
        run(&snap, 0, &neighbor_solicitation(v6("a00:2::"))).0,
        Verdict::Drop(DropReason::ArpNotOurs),
        "p0 does not own a00:2::"
    );
    // A neighbour announcing its (new) MAC to all-nodes: the slow path's, unchanged. Other
    // ICMPv6 to all-nodes (here a router advertisement's type) is not ours.
    let na = unsolicited_advert(v6("a00:1::11"), [2, 0, 0, 0, 0, 0x77]);
    let (v, o) = run(&snap, 0, &na);
    assert_eq!(v, Verdict::SlowPath, "unsolicited advertisement");
    assert_eq!(o, na, "passed on as received");
    let mut other = na.clone();
    other[54] = 134;
    assert_eq!(run(&snap, 0, &other).0, Verdict::Drop(DropReason::NotVip));
}

#[test]
fn an_ipv4_nat_backend_does_not_make_its_ipv6_twin_one() {
    let snap = snapshot();
    // a00:15:: starts with the bytes of the NAT backend 10.0.0.21: not a NAT reply.
    let f = l4_frame(
        P1_MAC,
        ip("a00:15::"),
        ip("2001:db8::7"),
        wire::IPPROTO_TCP,
        8080,
        40000,
    );
    assert_eq!(run(&snap, 1, &f).0, Verdict::Drop(DropReason::NotVip));

    // The IPv4 backend's replies are still translated back to the VIP.
    let mut pipe = Pipeline::new(WorkerIdx::new(0), 1, 64, 7);
    pipe.now_ms = 1_000;
    let client = ip("192.0.2.7");
    let syn = l4_frame(
        P0_MAC,
        client,
        ip("10.0.0.101"),
        wire::IPPROTO_TCP,
        40000,
        80,
    );
    let mut f = VecFrame::new(&syn);
    assert_eq!(
        pipe.process(&snap, PortIdx::new(0), &mut f),
        Verdict::Forward {
            port: PortIdx::new(0)
        }
    );
    let o = f.to_vec();
    assert_eq!(o[30..34], [10, 0, 0, 21], "NAT to the backend");
    assert_eq!(o[36..38], 8080u16.to_be_bytes());
    let reply = l4_frame(
        P0_MAC,
        ip("10.0.0.21"),
        client,
        wire::IPPROTO_TCP,
        8080,
        40000,
    );
    let mut f = VecFrame::new(&reply);
    assert_eq!(
        pipe.process(&snap, PortIdx::new(0), &mut f),
        Verdict::Forward {
            port: PortIdx::new(0)
        }
    );
    let o = f.to_vec();
    assert_eq!(o[26..30], [10, 0, 0, 101], "the reply leaves from the VIP");
    assert_eq!(o[34..36], 80u16.to_be_bytes());
}

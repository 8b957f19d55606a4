//! Tests across the `wire` modules: every test vector parsed both here and by `smoltcp::wire`
//! with the fields compared, mutated packets accepted or refused consistently with smoltcp,
//! and random bytes through every view without a panic.

use core::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::wire as sm;

use super::test_vectors::*;
use super::*;

/// Every full frame among the test vectors.
const FRAMES: [&[u8]; 12] = [
    &TCP4_SYN,
    &UDP4_PADDED,
    &UDP4_OPTIONS,
    &ARP_REQUEST,
    &ICMP4_ECHO,
    &TCP6_SYN,
    &UDP6_HBH_FRAG,
    &UDP6_FRAG_TAIL,
    &ICMP6_ECHO,
    &UDP4_VLAN,
    &TCP4_QINQ,
    &UDP4_NO_CSUM,
];

fn compare_tcp(ours: &TcpPacket<&[u8]>, theirs: &sm::TcpPacket<&[u8]>) {
    assert_eq!(ours.src_port(), theirs.src_port());
    assert_eq!(ours.dst_port(), theirs.dst_port());
    assert_eq!(ours.seq_number(), theirs.seq_number().0 as u32);
    assert_eq!(ours.ack_number(), theirs.ack_number().0 as u32);
    assert_eq!(ours.header_len(), usize::from(theirs.header_len()));
    let f = ours.flags();
    assert_eq!(f & tcp::FIN != 0, theirs.fin());
    assert_eq!(f & tcp::SYN != 0, theirs.syn());
    assert_eq!(f & tcp::RST != 0, theirs.rst());
    assert_eq!(f & tcp::PSH != 0, theirs.psh());
    assert_eq!(f & tcp::ACK != 0, theirs.ack());
    assert_eq!(f & tcp::URG != 0, theirs.urg());
    assert_eq!(f & tcp::ECE != 0, theirs.ece());
    assert_eq!(f & tcp::CWR != 0, theirs.cwr());
    assert_eq!(ours.window_len(), theirs.window_len());
    assert_eq!(ours.checksum(), theirs.checksum());
    assert_eq!(ours.urgent_at(), theirs.urgent_at());
    assert_eq!(ours.options(), theirs.options());
    assert_eq!(ours.payload(), theirs.payload());
    assert_eq!(ours.segment_len(), theirs.segment_len());
}

fn compare_udp(ours: &UdpPacket<&[u8]>, theirs: &sm::UdpPacket<&[u8]>) {
    assert_eq!(ours.src_port(), theirs.src_port());
    assert_eq!(ours.dst_port(), theirs.dst_port());
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours.checksum(), theirs.checksum());
    assert_eq!(ours.payload(), theirs.payload());
}

fn compare_ipv4(ours: &Ipv4Packet<&[u8]>, theirs: &sm::Ipv4Packet<&[u8]>) {
    assert_eq!(ours.version(), theirs.version());
    assert_eq!(ours.header_len(), usize::from(theirs.header_len()));
    assert_eq!(ours.dscp(), theirs.dscp());
    assert_eq!(ours.ecn(), theirs.ecn());
    assert_eq!(ours.total_len(), theirs.total_len());
    assert_eq!(ours.ident(), theirs.ident());
    assert_eq!(ours.dont_frag(), theirs.dont_frag());
    assert_eq!(ours.more_frags(), theirs.more_frags());
    assert_eq!(ours.frag_offset(), theirs.frag_offset());
    assert_eq!(ours.ttl(), theirs.hop_limit());
    assert_eq!(ours.protocol(), u8::from(theirs.next_header()));
    assert_eq!(ours.checksum(), theirs.checksum());
    assert_eq!(ours.src_ip(), theirs.src_addr());
    assert_eq!(ours.dst_ip(), theirs.dst_addr());
    assert_eq!(ours.verify_checksum(), theirs.verify_checksum());
    assert_eq!(ours.payload(), theirs.payload());
}

fn compare_ipv6(ours: &Ipv6Packet<&[u8]>, theirs: &sm::Ipv6Packet<&[u8]>) {
    assert_eq!(ours.version(), theirs.version());
    assert_eq!(ours.traffic_class(), theirs.traffic_class());
    assert_eq!(ours.flow_label(), theirs.flow_label());
    assert_eq!(ours.payload_len(), theirs.payload_len());
    assert_eq!(ours.next_header(), u8::from(theirs.next_header()));
    assert_eq!(ours.hop_limit(), theirs.hop_limit());
    assert_eq!(ours.src_ip(), theirs.src_addr());
    assert_eq!(ours.dst_ip(), theirs.dst_addr());
    assert_eq!(ours.payload(), theirs.payload());
}

/// Parses each frame down to L4 with both implementations and compares every field, plus
/// the checksum verdicts.
#[test]
fn test_vectors_agree_with_smoltcp() {
    let mut seen_l4 = 0;
    for frame in FRAMES {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        let sm_eth = sm::EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.dst_addr(), sm_eth.dst_addr().0);
        assert_eq!(eth.src_addr(), sm_eth.src_addr().0);
        assert_eq!(eth.ethertype(), u16::from(sm_eth.ethertype()));

        let l2 = parse_l2(frame).unwrap();
        let l3 = &frame[l2.l3_offset..];
        match l2.ethertype {
            ETHERTYPE_IPV4 => {
                let ip = Ipv4Packet::new_checked(l3).unwrap();
                let sm_ip = sm::Ipv4Packet::new_checked(l3).unwrap();
                compare_ipv4(&ip, &sm_ip);
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                let sm_src = sm::IpAddress::Ipv4(ip.src_ip());
                let sm_dst = sm::IpAddress::Ipv4(ip.dst_ip());
                match ip.protocol() {
                    IPPROTO_TCP => {
                        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                        let sm_tcp = sm::TcpPacket::new_checked(ip.payload()).unwrap();
                        compare_tcp(&tcp, &sm_tcp);
                        assert!(tcp.verify_checksum_v4(&src, &dst));
                        assert!(sm_tcp.verify_checksum(&sm_src, &sm_dst));
                    }
                    IPPROTO_UDP => {
                        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
                        let sm_udp = sm::UdpPacket::new_checked(ip.payload()).unwrap();
                        compare_udp(&udp, &sm_udp);
                        assert!(udp.verify_checksum_v4(&src, &dst));
                        assert!(sm_udp.verify_checksum(&sm_src, &sm_dst));
                    }
                    IPPROTO_ICMP => {
                        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
                        let sm_icmp = sm::Icmpv4Packet::new_checked(ip.payload()).unwrap();
                        assert_eq!(icmp.msg_type(), u8::from(sm_icmp.msg_type()));
                        assert_eq!(icmp.msg_code(), sm_icmp.msg_code());
                        assert_eq!(icmp.checksum(), sm_icmp.checksum());
                        assert_eq!(icmp.echo_ident(), sm_icmp.echo_ident());
                        assert_eq!(icmp.echo_seq_no(), sm_icmp.echo_seq_no());
                        assert_eq!(icmp.payload(), sm_icmp.data());
                        assert!(icmp.verify_checksum() && sm_icmp.verify_checksum());
                    }
                    other => panic!("unexpected protocol {other}"),
                }
                seen_l4 += 1;
            }
            ETHERTYPE_IPV6 => {
                let ip = Ipv6Packet::new_checked(l3).unwrap();
                let sm_ip = sm::Ipv6Packet::new_checked(l3).unwrap();
                compare_ipv6(&ip, &sm_ip);
                let upper = ip.upper_layer().unwrap();
                let l4 = &l3[upper.offset..ip.total_len()];
                if let Some(ours) = upper.fragment {
                    // Fragments: compare the Fragment header (right before the upper layer in
                    // both vectors) with smoltcp's reading of it, past its first two bytes.
                    let at = upper.offset - 8;
                    let frag = sm::Ipv6FragmentHeader::new_checked(&l3[at + 2..at + 8]).unwrap();
                    assert_eq!(ours.offset, frag.frag_offset() * 8);
                    assert_eq!(ours.more, frag.more_frags());
                    assert_eq!(ours.ident, frag.ident());
                    continue;
                }
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                match upper.protocol {
                    IPPROTO_TCP => {
                        let tcp = TcpPacket::new_checked(l4).unwrap();
                        let sm_tcp = sm::TcpPacket::new_checked(l4).unwrap();
                        compare_tcp(&tcp, &sm_tcp);
                        assert!(tcp.verify_checksum_v6(&src, &dst));
                        let (s, d) = (
                            sm::IpAddress::Ipv6(ip.src_ip()),
                            sm::IpAddress::Ipv6(ip.dst_ip()),
                        );
                        assert!(sm_tcp.verify_checksum(&s, &d));
                    }
                    IPPROTO_ICMPV6 => {
                        let icmp = Icmpv6Packet::new_checked(l4).unwrap();
                        let sm_icmp = sm::Icmpv6Packet::new_checked(l4).unwrap();
                        assert_eq!(icmp.msg_type(), u8::from(sm_icmp.msg_type()));
                        assert_eq!(icmp.msg_code(), sm_icmp.msg_code());
                        assert_eq!(icmp.checksum(), sm_icmp.checksum());
                        assert_eq!(icmp.echo_ident(), sm_icmp.echo_ident());
                        assert_eq!(icmp.echo_seq_no(), sm_icmp.echo_seq_no());
                        assert_eq!(icmp.payload(), sm_icmp.payload());
                        assert!(icmp.verify_checksum(&src, &dst));
                        assert!(sm_icmp.verify_checksum(&ip.src_ip(), &ip.dst_ip()));
                    }
                    other => panic!("unexpected protocol {other}"),
                }
                seen_l4 += 1;
            }
            ETHERTYPE_ARP => {
                let arp = ArpPacket::new_checked(l3).unwrap();
                let sm_arp = sm::ArpPacket::new_checked(l3).unwrap();
                assert_eq!(arp.hardware_type(), u16::from(sm_arp.hardware_type()));
                assert_eq!(arp.protocol_type(), u16::from(sm_arp.protocol_type()));
                assert_eq!(arp.hw_len(), sm_arp.hardware_len());
                assert_eq!(arp.proto_len(), sm_arp.protocol_len());
                assert_eq!(arp.operation(), u16::from(sm_arp.operation()));
                assert_eq!(&arp.sender_hw_addr()[..], sm_arp.source_hardware_addr());
                assert_eq!(&arp.sender_proto_addr()[..], sm_arp.source_protocol_addr());
                assert_eq!(&arp.target_hw_addr()[..], sm_arp.target_hardware_addr());
                assert_eq!(&arp.target_proto_addr()[..], sm_arp.target_protocol_addr());
            }
            other => panic!("unexpected ethertype {other:#x}"),
        }
    }
    assert_eq!(seen_l4, 9);
}

/// Our emitted IPv4 header is byte for byte smoltcp's (both set DF and, here, ident 0), and
/// our emitted RST|ACK and ICMPv6 reply verify under smoltcp.
#[test]
fn emitted_headers_agree_with_smoltcp() {
    let ours = Ipv4Repr {
        src: [10, 0, 0, 80],
        dst: [192, 168, 1, 10],
        protocol: IPPROTO_TCP,
        payload_len: 20,
        ttl: 64,
        ident: 0,
    };
    let theirs = sm::Ipv4Repr {
        src_addr: Ipv4Addr::from(ours.src),
        dst_addr: Ipv4Addr::from(ours.dst),
        next_header: sm::IpProtocol::Tcp,
        payload_len: 20,
        hop_limit: 64,
    };
    let mut a = [0u8; 40];
    let mut b = [0u8; 40];
    let mut ip = Ipv4Packet::new_unchecked(&mut a[..]);
    ours.emit(&mut ip).unwrap();
    let tcp = TcpRepr {
        src_port: 80,
        dst_port: 43210,
        seq_number: 0,
        ack_number: 0x5e2a_1c08,
        flags: tcp::RST | tcp::ACK,
        window_len: 0,
    };
    let mut seg = TcpPacket::new_unchecked(ip.payload_mut());
    tcp.emit(&mut seg).unwrap();
    seg.fill_checksum_v4(&ours.src, &ours.dst);
    theirs.emit(
        &mut sm::Ipv4Packet::new_unchecked(&mut b[..]),
        &smoltcp::phy::ChecksumCapabilities::default(),
    );
    assert_eq!(a[..20], b[..20]);
    let sm_tcp = sm::TcpPacket::new_checked(&a[20..]).unwrap();
    assert!(sm_tcp.rst() && sm_tcp.ack() && !sm_tcp.syn());
    let (s, d) = (theirs.src_addr.into(), theirs.dst_addr.into());
    assert!(sm_tcp.verify_checksum(&s, &d));

    let src6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst6: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let repr6 = Ipv6Repr {
        src: src6.octets(),
        dst: dst6.octets(),
        next_header: IPPROTO_ICMPV6,
        payload_len: 12,
        hop_limit: 255,
    };
    let mut c = [0u8; 52];
    let mut ip6 = Ipv6Packet::new_unchecked(&mut c[..]);
    repr6.emit(&mut ip6).unwrap();
    let mut icmp = Icmpv6Packet::new_unchecked(ip6.payload_mut());
    icmp.set_msg_type(icmpv6::ECHO_REPLY);
    icmp.set_msg_code(0);
    icmp.set_echo_ident(1);
    icmp.set_echo_seq_no(2);
    icmp.payload_mut().copy_from_slice(b"pong");
    icmp.fill_checksum(&src6.octets(), &dst6.octets());
    let sm_ip6 = sm::Ipv6Packet::new_checked(&c[..]).unwrap();
    let sm_repr6 = sm::Ipv6Repr::parse(&sm_ip6).unwrap();
    assert_eq!(
        (sm_repr6.src_addr, sm_repr6.dst_addr, sm_repr6.hop_limit),
        (src6, dst6, 255)
    );
    let sm_icmp = sm::Icmpv6Packet::new_checked(&c[40..]).unwrap();
    assert!(sm_icmp.verify_checksum(&src6, &dst6));
}

/// Random byte flips of real packets: whenever we accept a header, smoltcp does too and
/// reads the same fields (we are stricter only on the IP version and IPv4 IHL < 5, which
/// smoltcp leaves to `Repr::parse`); for TCP and UDP the rules are the same both ways.
#[test]
fn mutated_packets_agree_with_smoltcp() {
    let mut rng = Rng::new(0x5eed);
    for _ in 0..20_000 {
        let frame = FRAMES[rng.below(FRAMES.len())];
        let mut buf = frame.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(buf.len());
            buf[at] = rng.next_u64() as u8;
        }
        let len = if rng.below(4) == 0 {
            rng.below(buf.len() + 1)
        } else {
            buf.len()
        };
        let buf = &buf[..len];
        let Ok(l2) = parse_l2(buf) else { continue };
        let l3 = &buf[l2.l3_offset..];
        match l2.ethertype {
            ETHERTYPE_IPV4 => {
                let ours = Ipv4Packet::new_checked(l3);
                let theirs = sm::Ipv4Packet::new_checked(l3);
                match (&ours, &theirs) {
                    (Ok(ip), Ok(sm_ip)) => {
                        compare_ipv4(ip, sm_ip);
                        let seg = ip.payload();
                        match (TcpPacket::new_checked(seg), sm::TcpPacket::new_checked(seg)) {
                            (Ok(t), Ok(st)) => compare_tcp(&t, &st),
                            (Err(_), Err(_)) => {}
                            (o, t) => panic!("tcp disagrees: {o:?} vs {t:?}"),
                        }
                        match (UdpPacket::new_checked(seg), sm::UdpPacket::new_checked(seg)) {
                            (Ok(u), Ok(su)) => compare_udp(&u, &su),
                            (Err(_), Err(_)) => {}
                            (o, t) => panic!("udp disagrees: {o:?} vs {t:?}"),
                        }
                    }
                    (Err(WireError::BadVersion | WireError::BadHeaderLen), _)
                    | (Err(_), Err(_)) => {}
                    (o, t) => panic!("ipv4 disagrees: {o:?} vs {t:?}"),
                }
            }
            ETHERTYPE_IPV6 => {
                match (Ipv6Packet::new_checked(l3), sm::Ipv6Packet::new_checked(l3)) {
                    (Ok(ip), Ok(sm_ip)) => compare_ipv6(&ip, &sm_ip),
                    (Err(WireError::BadVersion), _) | (Err(_), Err(_)) => {}
                    (o, t) => panic!("ipv6 disagrees: {o:?} vs {t:?}"),
                }
            }
            _ => {}
        }
    }
}

/// Calls every read accessor of every view that accepts `data`.
fn read_everything(data: &[u8]) {
    if let Ok(eth) = EthernetFrame::new_checked(data) {
        let _ = (
            eth.dst_addr(),
            eth.src_addr(),
            eth.ethertype(),
            eth.payload().len(),
        );
    }
    let _ = parse_l2(data);
    if let Ok(arp) = ArpPacket::new_checked(data) {
        let _ = (
            arp.hardware_type(),
            arp.protocol_type(),
            arp.hw_len(),
            arp.proto_len(),
        );
        let _ = (
            arp.operation(),
            arp.sender_hw_addr(),
            arp.sender_proto_addr(),
        );
        let _ = (
            arp.target_hw_addr(),
            arp.target_proto_addr(),
            ArpRepr::parse(&arp),
        );
    }
    if let Ok(ip) = Ipv4Packet::new_checked(data) {
        let _ = (
            ip.version(),
            ip.header_len(),
            ip.dscp_ecn(),
            ip.total_len(),
            ip.ident(),
        );
        let _ = (
            ip.dont_frag(),
            ip.more_frags(),
            ip.frag_offset(),
            ip.is_fragment(),
        );
        let _ = (
            ip.ttl(),
            ip.protocol(),
            ip.checksum(),
            ip.src_ip(),
            ip.dst_ip(),
        );
        let _ = (ip.options().len(), ip.payload().len(), ip.verify_checksum());
        let _ = Ipv4Repr::parse(&ip);
    }
    if let Ok(ip) = Ipv6Packet::new_checked(data) {
        let _ = (
            ip.version(),
            ip.traffic_class(),
            ip.flow_label(),
            ip.payload_len(),
        );
        let _ = (ip.next_header(), ip.hop_limit(), ip.src_ip(), ip.dst_ip());
        let _ = (ip.payload().len(), Ipv6Repr::parse(&ip));
        if let Ok(upper) = ip.upper_layer() {
            assert!(upper.offset <= ip.total_len());
        }
    }
    let _ = Ipv6Packet::new_unchecked(data).upper_layer();
    let a4 = [1, 2, 3, 4];
    let a16 = [7; 16];
    if let Ok(tcp) = TcpPacket::new_checked(data) {
        let _ = (
            tcp.src_port(),
            tcp.dst_port(),
            tcp.seq_number(),
            tcp.ack_number(),
        );
        let _ = (
            tcp.header_len(),
            tcp.flags(),
            tcp.window_len(),
            tcp.checksum(),
        );
        let _ = (
            tcp.urgent_at(),
            tcp.options().len(),
            tcp.payload().len(),
            tcp.segment_len(),
        );
        let _ = (
            tcp.verify_checksum_v4(&a4, &a4),
            tcp.verify_checksum_v6(&a16, &a16),
        );
        let _ = TcpRepr::parse(&tcp);
    }
    if let Ok(udp) = UdpPacket::new_checked(data) {
        let _ = (
            udp.src_port(),
            udp.dst_port(),
            udp.len(),
            udp.checksum(),
            udp.payload().len(),
        );
        let _ = (
            udp.verify_checksum_v4(&a4, &a4),
            udp.verify_checksum_v6(&a16, &a16),
        );
        let _ = UdpRepr::parse(&udp);
    }
    if let Ok(icmp) = Icmpv4Packet::new_checked(data) {
        let _ = (
            icmp.msg_type(),
            icmp.msg_code(),
            icmp.checksum(),
            icmp.echo_ident(),
        );
        let _ = (
            icmp.echo_seq_no(),
            icmp.next_hop_mtu(),
            icmp.rest_of_header(),
        );
        let _ = (icmp.payload().len(), icmp.verify_checksum());
    }
    if let Ok(icmp) = Icmpv6Packet::new_checked(data) {
        let _ = (
            icmp.msg_type(),
            icmp.msg_code(),
            icmp.checksum(),
            icmp.echo_ident(),
        );
        let _ = (icmp.echo_seq_no(), icmp.mtu(), icmp.rest_of_header());
        let _ = (icmp.payload().len(), icmp.verify_checksum(&a16, &a16));
    }
    let _ = checksum::ipv4_header(data);
    let _ = checksum::l4_checksum_v4(&a4, &a4, IPPROTO_UDP, data);
}

/// Random bytes, and random prefixes of real packets with random bytes changed, through
/// every view: `new_checked` either refuses or every accessor works.
#[test]
fn random_input_never_panics() {
    let mut rng = Rng::new(0xfa11);
    let mut buf = [0u8; 128];
    for i in 0..50_000 {
        let len = rng.below(buf.len() + 1);
        if i % 2 == 0 {
            rng.fill(&mut buf[..len]);
            // Make the version and length fields plausible often enough to get past them.
            if len > 0 && rng.below(2) == 0 {
                buf[0] = [0x45, 0x46, 0x4f, 0x60, 0x50][rng.below(5)];
            }
        } else {
            let frame = FRAMES[rng.below(FRAMES.len())];
            let start = [0, 14, 18, 22, 34, 38, 42, 54][rng.below(8)].min(frame.len());
            let src = &frame[start..];
            let len = len.min(src.len());
            buf[..len].copy_from_slice(&src[..len]);
            let at = rng.below(len.max(1));
            if at < len {
                buf[at] = rng.next_u64() as u8;
            }
        }
        read_everything(&buf[..len]);
    }
    for frame in FRAMES {
        for len in 0..=frame.len() {
            read_everything(&frame[..len]);
            for start in [14, 18, 22, 34, 38, 42, 54]
                .into_iter()
                .filter(|&s| s <= len)
            {
                read_everything(&frame[start..len]);
            }
        }
    }
}

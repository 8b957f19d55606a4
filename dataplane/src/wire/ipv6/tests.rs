use super::*;
use crate::wire::test_vectors::{ICMP6_ECHO, Rng, TCP6_SYN, UDP6_FRAG_TAIL, UDP6_HBH_FRAG};
use crate::wire::{IPPROTO_ESP, IPPROTO_ICMPV6, IPPROTO_NONE, IPPROTO_TCP, IPPROTO_UDP};

fn samples() -> [&'static [u8]; 4] {
    [
        &TCP6_SYN[14..],
        &UDP6_HBH_FRAG[14..],
        &UDP6_FRAG_TAIL[14..],
        &ICMP6_ECHO[14..],
    ]
}

const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

#[test]
fn every_getter_on_a_syn() {
    let ip = Packet::new_checked(&TCP6_SYN[14..]).unwrap();
    assert_eq!(ip.version(), 6);
    assert_eq!(ip.traffic_class(), 0);
    assert_eq!(ip.flow_label(), 0x3f2a1);
    assert_eq!(ip.payload_len(), 40);
    assert_eq!(ip.total_len(), 80);
    assert_eq!(ip.next_header(), IPPROTO_TCP);
    assert_eq!(ip.hop_limit(), 64);
    assert_eq!(ip.src_ip(), SRC);
    assert_eq!(
        ip.dst_ip(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x80)
    );
    assert_eq!(ip.src_addr(), SRC.octets());
    assert_eq!(ip.dst_addr()[15], 0x80);
    assert_eq!(ip.payload(), &TCP6_SYN[54..]);
    assert_eq!(
        ip.upper_layer(),
        Ok(UpperLayer {
            protocol: IPPROTO_TCP,
            offset: 40,
            fragment: None
        })
    );
    assert_eq!(ip.into_payload().len(), 40);
}

#[test]
fn hop_by_hop_then_fragment_then_udp() {
    let ip = Packet::new_checked(&UDP6_HBH_FRAG[14..]).unwrap();
    assert_eq!(ip.next_header(), 0);
    assert_eq!(ip.payload_len(), 40);
    let upper = ip.upper_layer().unwrap();
    let fragment = Fragment {
        offset: 0,
        more: true,
        ident: 0xdead_beef,
    };
    assert_eq!(
        upper,
        UpperLayer {
            protocol: IPPROTO_UDP,
            offset: 56,
            fragment: Some(fragment)
        }
    );
    // The UDP header is where the walk says.
    assert_eq!(
        &ip.as_ref()[upper.offset..upper.offset + 4],
        &[0x9c, 0x40, 0x00, 0x35]
    );
}

#[test]
fn later_fragment_stops_at_the_fragment_header() {
    let ip = Packet::new_checked(&UDP6_FRAG_TAIL[14..]).unwrap();
    let fragment = Fragment {
        offset: 16,
        more: false,
        ident: 0xdead_beef,
    };
    assert_eq!(
        ip.upper_layer(),
        Ok(UpperLayer {
            protocol: IPPROTO_UDP,
            offset: 48,
            fragment: Some(fragment)
        })
    );
}

#[test]
fn icmpv6_directly() {
    let ip = Packet::new_checked(&ICMP6_ECHO[14..]).unwrap();
    assert_eq!(
        ip.src_ip(),
        "fe80::5054:ff:feab:cdef".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        ip.upper_layer(),
        Ok(UpperLayer {
            protocol: IPPROTO_ICMPV6,
            offset: 40,
            fragment: None
        })
    );
}

#[test]
fn every_prefix_is_refused_until_payload_len() {
    for sample in samples() {
        let total = 40 + usize::from(u16::from_be_bytes([sample[4], sample[5]]));
        for len in 0..=sample.len() {
            let prefix = &sample[..len];
            // The walk never panics, checked or not.
            let walk = Packet::new_unchecked(prefix).upper_layer();
            match Packet::new_checked(prefix) {
                Ok(ip) => {
                    assert!(len >= total);
                    let _ = (ip.version(), ip.traffic_class(), ip.flow_label());
                    let _ = (
                        ip.next_header(),
                        ip.hop_limit(),
                        ip.src_addr(),
                        ip.dst_addr(),
                    );
                    assert_eq!(ip.payload().len(), total - 40);
                    assert!(walk.is_ok());
                }
                Err(e) => {
                    assert!(len < total);
                    assert_eq!(e, WireError::Truncated);
                    assert_eq!(walk, Err(WireError::Truncated));
                }
            }
        }
    }
}

#[test]
fn bad_version() {
    let mut v = TCP6_SYN[14..].to_vec();
    v[0] = 0x40;
    assert_eq!(Packet::new_checked(&v[..]), Err(WireError::BadVersion));
}

/// An options-style extension header (Hop-by-Hop, Routing, Destination Options) of
/// `len` bytes, a multiple of 8.
fn opts(next: u8, len: usize) -> Vec<u8> {
    let mut h = vec![0u8; len];
    h[0] = next;
    h[1] = (len / 8 - 1) as u8;
    h
}

fn frag(next: u8, offset: u16, more: bool, ident: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&ident.to_be_bytes());
    h
}

/// An Authentication Header of `len` bytes, a multiple of 4.
fn ah(next: u8, len: usize) -> Vec<u8> {
    let mut h = vec![0u8; len];
    h[0] = next;
    h[1] = (len / 4 - 2) as u8;
    h
}

fn packet(first: u8, exts: &[Vec<u8>], tail: &[u8]) -> Vec<u8> {
    let body: Vec<u8> = exts.iter().flatten().chain(tail).copied().collect();
    let mut buf = vec![0u8; 40];
    let repr = Repr {
        src: SRC.octets(),
        dst: Ipv6Addr::LOCALHOST.octets(),
        next_header: first,
        payload_len: body.len() as u16,
        hop_limit: 64,
    };
    buf.extend_from_slice(&body);
    repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
    buf
}

fn walk(buf: &[u8]) -> Result<UpperLayer, WireError> {
    Packet::new_checked(buf)?.upper_layer()
}

#[test]
fn routing_dstopts_and_ah_lengths() {
    let tail = [0u8; 20];
    let buf = packet(
        IPPROTO_HOPOPTS,
        &[
            opts(IPPROTO_ROUTING, 16),
            opts(IPPROTO_DSTOPTS, 24),
            opts(IPPROTO_AH, 8),
            ah(IPPROTO_TCP, 24),
        ],
        &tail,
    );
    assert_eq!(
        walk(&buf),
        Ok(UpperLayer {
            protocol: IPPROTO_TCP,
            offset: 40 + 16 + 24 + 8 + 24,
            fragment: None
        })
    );
}

#[test]
fn esp_and_no_next_header_are_returned_as_is() {
    let buf = packet(
        IPPROTO_DSTOPTS,
        &[opts(IPPROTO_ESP, 8)],
        &[1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert_eq!(
        walk(&buf),
        Ok(UpperLayer {
            protocol: IPPROTO_ESP,
            offset: 48,
            fragment: None
        })
    );
    let buf = packet(IPPROTO_NONE, &[], &[]);
    assert_eq!(
        walk(&buf),
        Ok(UpperLayer {
            protocol: IPPROTO_NONE,
            offset: 40,
            fragment: None
        })
    );
}

#[test]
fn chain_length_is_bounded() {
    let chain = |n: usize| {
        let exts: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                opts(
                    if i + 1 == n {
                        IPPROTO_UDP
                    } else {
                        IPPROTO_DSTOPTS
                    },
                    8,
                )
            })
            .collect();
        packet(IPPROTO_DSTOPTS, &exts, &[0; 8])
    };
    let upper = walk(&chain(MAX_EXT_HEADERS)).unwrap();
    assert_eq!(
        (upper.protocol, upper.offset),
        (IPPROTO_UDP, 40 + 8 * MAX_EXT_HEADERS)
    );
    assert_eq!(
        walk(&chain(MAX_EXT_HEADERS + 1)),
        Err(WireError::TooManyExtHeaders)
    );
    // A long chain that would loop forever without the bound: every header says "another
    // destination options header follows" until the payload ends.
    assert_eq!(walk(&chain(40)), Err(WireError::TooManyExtHeaders));
}

#[test]
fn order_rules() {
    // Hop-by-Hop after another header.
    let buf = packet(
        IPPROTO_DSTOPTS,
        &[opts(IPPROTO_HOPOPTS, 8), opts(IPPROTO_UDP, 8)],
        &[],
    );
    assert_eq!(walk(&buf), Err(WireError::BadExtHeader));
    // Two Fragment headers (both first fragments, so the walk reaches the second).
    let buf = packet(
        IPPROTO_FRAGMENT,
        &[
            frag(IPPROTO_FRAGMENT, 0, true, 1),
            frag(IPPROTO_UDP, 0, true, 2),
        ],
        &[0; 8],
    );
    assert_eq!(walk(&buf), Err(WireError::BadExtHeader));
    // Fragment then Destination Options in a first fragment: walked through.
    let buf = packet(
        IPPROTO_FRAGMENT,
        &[frag(IPPROTO_DSTOPTS, 0, true, 3), opts(IPPROTO_UDP, 8)],
        &[0; 8],
    );
    let upper = walk(&buf).unwrap();
    assert_eq!((upper.protocol, upper.offset), (IPPROTO_UDP, 56));
    assert_eq!(
        upper.fragment,
        Some(Fragment {
            offset: 0,
            more: true,
            ident: 3
        })
    );
}

#[test]
fn extension_header_past_the_payload_is_truncated() {
    // Destination options claiming 16 bytes with 8 in the payload.
    let mut h = opts(IPPROTO_UDP, 8);
    h[1] = 1;
    assert_eq!(
        walk(&packet(IPPROTO_DSTOPTS, &[h], &[])),
        Err(WireError::Truncated)
    );
    // Shorter than the 8 bytes every extension header has.
    assert_eq!(
        walk(&packet(IPPROTO_ROUTING, &[], &[0; 7])),
        Err(WireError::Truncated)
    );
    // Bytes after the payload length (padding) do not count.
    let mut buf = packet(IPPROTO_DSTOPTS, &[], &[]);
    buf.extend_from_slice(&opts(IPPROTO_UDP, 8));
    assert_eq!(walk(&buf), Err(WireError::Truncated));
    // An upper-layer header at the very end is found; its own check is the caller's.
    let buf = packet(IPPROTO_DSTOPTS, &[opts(IPPROTO_TCP, 8)], &[]);
    assert_eq!(
        walk(&buf),
        Ok(UpperLayer {
            protocol: IPPROTO_TCP,
            offset: 48,
            fragment: None
        })
    );
}

#[test]
fn random_chains_never_panic() {
    let mut rng = Rng::new(0x6);
    let kinds = [0, 43, 44, 51, 60, 6, 17, 58, 50, 59];
    let mut buf = [0u8; 160];
    for _ in 0..20_000 {
        rng.fill(&mut buf);
        let len = rng.below(buf.len() + 1);
        buf[0] = 0x60;
        buf[4..6].copy_from_slice(&(rng.below(140) as u16).to_be_bytes());
        buf[6] = kinds[rng.below(kinds.len())];
        for i in (40..buf.len()).step_by(8) {
            if rng.below(2) == 0 {
                buf[i] = kinds[rng.below(kinds.len())];
                buf[i + 1] = (rng.below(3)) as u8;
            }
        }
        let packet = Packet::new_unchecked(&buf[..len]);
        if let Ok(upper) = packet.upper_layer() {
            assert!(upper.offset <= packet.total_len());
            assert!(packet.check_len().is_ok());
        }
    }
}

#[test]
fn setters_round_trip() {
    let mut buf = TCP6_SYN[14..].to_vec();
    let mut ip = Packet::new_checked(&mut buf[..]).unwrap();
    ip.set_traffic_class(0xb9);
    ip.set_flow_label(0xf_edcb);
    ip.set_hop_limit(1);
    ip.set_next_header(IPPROTO_UDP);
    ip.set_src_addr(Ipv6Addr::LOCALHOST.octets());
    ip.set_dst_addr(SRC.octets());
    ip.set_payload_len(8);
    ip.payload_mut()[0] = 0x77;
    assert_eq!(ip.version(), 6);
    assert_eq!(ip.traffic_class(), 0xb9);
    assert_eq!(ip.flow_label(), 0xf_edcb);
    assert_eq!(ip.hop_limit(), 1);
    assert_eq!(ip.next_header(), IPPROTO_UDP);
    assert_eq!(ip.src_ip(), Ipv6Addr::LOCALHOST);
    assert_eq!(ip.dst_ip(), SRC);
    assert_eq!(ip.payload().len(), 8);
    ip.set_version(4);
    assert_eq!(ip.traffic_class(), 0xb9);
    assert_eq!(ip.flow_label(), 0xf_edcb);
    assert_eq!(ip.check_len(), Err(WireError::BadVersion));
    assert_eq!(&buf[..4], &[0x4b, 0x9f, 0xed, 0xcb]);
    assert_eq!(buf[40], 0x77);
}

#[test]
fn repr_emits_the_captured_header() {
    let captured = Packet::new_checked(&ICMP6_ECHO[14..]).unwrap();
    let repr = Repr::parse(&captured);
    assert_eq!(repr.payload_len, 16);
    assert_eq!(repr.header_len(), 40);
    let mut buf = [0xffu8; 56];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
    assert_eq!(&buf[..40], &ICMP6_ECHO[14..54]);
    let mut short = [0u8; 39];
    assert_eq!(repr.emit(&mut short[..]), Err(WireError::Truncated));
    assert_eq!(short, [0; 39]);
}

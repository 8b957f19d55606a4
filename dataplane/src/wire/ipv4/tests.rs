use super::*;
use crate::wire::checksum;
use crate::wire::test_vectors::{
    ICMP4_ECHO, Rng, TCP4_QINQ, TCP4_SYN, UDP4_NO_CSUM, UDP4_OPTIONS, UDP4_PADDED, UDP4_VLAN,
};
use crate::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

/// The IPv4 part of each test frame.
fn samples() -> [&'static [u8]; 7] {
    [
        &TCP4_SYN[14..],
        &UDP4_PADDED[14..],
        &UDP4_OPTIONS[14..],
        &ICMP4_ECHO[14..],
        &UDP4_VLAN[18..],
        &TCP4_QINQ[22..],
        &UDP4_NO_CSUM[14..],
    ]
}

#[test]
fn every_getter_on_a_syn() {
    let ip = Packet::new_checked(&TCP4_SYN[14..]).unwrap();
    assert_eq!(ip.version(), 4);
    assert_eq!(ip.header_len(), 20);
    assert_eq!(ip.dscp_ecn(), 0);
    assert_eq!(ip.dscp(), 0);
    assert_eq!(ip.ecn(), 0);
    assert_eq!(ip.total_len(), 60);
    assert_eq!(ip.ident(), 0x1c46);
    assert!(ip.dont_frag());
    assert!(!ip.more_frags());
    assert_eq!(ip.frag_offset(), 0);
    assert!(!ip.is_fragment());
    assert_eq!(ip.ttl(), 64);
    assert_eq!(ip.protocol(), IPPROTO_TCP);
    assert_eq!(ip.checksum(), 0x5274);
    assert_eq!(ip.src_addr(), [192, 168, 1, 10]);
    assert_eq!(ip.dst_addr(), [10, 0, 0, 80]);
    assert_eq!(ip.src_ip(), Ipv4Addr::new(192, 168, 1, 10));
    assert_eq!(ip.dst_ip(), Ipv4Addr::new(10, 0, 0, 80));
    assert_eq!(ip.options(), &[] as &[u8]);
    assert_eq!(ip.payload(), &TCP4_SYN[34..]);
    assert!(ip.verify_checksum());
    assert_eq!(ip.into_payload().len(), 40);
}

#[test]
fn payload_stops_at_total_len_not_at_padding() {
    let ip = Packet::new_checked(&UDP4_PADDED[14..]).unwrap();
    assert_eq!(ip.as_ref().len(), 46);
    assert_eq!(ip.total_len(), 32);
    assert_eq!(ip.protocol(), IPPROTO_UDP);
    assert_eq!(ip.payload(), &UDP4_PADDED[34..46]);
    assert_eq!(&ip.payload()[8..], b"ping");
}

#[test]
fn options_are_between_20_and_header_len() {
    let ip = Packet::new_checked(&UDP4_OPTIONS[14..]).unwrap();
    assert_eq!(ip.header_len(), 24);
    assert_eq!(ip.options(), &[0x94, 0x04, 0x00, 0x00]);
    assert_eq!(ip.payload().len(), 12);
    assert_eq!(ip.ttl(), 1);
    assert!(ip.verify_checksum());
    let icmp = Packet::new_checked(&ICMP4_ECHO[14..]).unwrap();
    assert_eq!(icmp.protocol(), IPPROTO_ICMP);
    assert_eq!(icmp.payload().len(), 64);
}

#[test]
fn known_checksums_verify_and_refill_identically() {
    for sample in samples() {
        let ip = Packet::new_checked(sample).unwrap();
        assert!(ip.verify_checksum());
        let mut copy = sample.to_vec();
        let mut ip2 = Packet::new_checked(&mut copy[..]).unwrap();
        ip2.set_checksum(0xdead);
        assert!(!ip2.verify_checksum());
        ip2.fill_checksum();
        assert_eq!(ip2.checksum(), ip.checksum());
    }
}

#[test]
fn every_prefix_is_refused_until_total_len() {
    for sample in samples() {
        let total = usize::from(u16::from_be_bytes([sample[2], sample[3]]));
        let header_len = usize::from(sample[0] & 0x0f) * 4;
        for len in 0..=sample.len() {
            let prefix = &sample[..len];
            match Packet::new_checked(prefix) {
                Ok(ip) => {
                    assert!(len >= total, "accepted {len} < {total}");
                    let _ = (ip.version(), ip.dscp_ecn(), ip.ident(), ip.dont_frag());
                    let _ = (ip.more_frags(), ip.frag_offset(), ip.ttl(), ip.protocol());
                    let _ = (ip.checksum(), ip.src_addr(), ip.dst_addr(), ip.options());
                    assert!(ip.verify_checksum());
                    assert_eq!(ip.payload().len(), total - header_len);
                }
                Err(e) => {
                    assert!(len < total, "refused {len} >= {total}");
                    assert_eq!(e, WireError::Truncated);
                }
            }
        }
    }
}

#[test]
fn malformed_headers_are_refused() {
    let base = &TCP4_SYN[14..];
    let with = |at: usize, value: u8| {
        let mut v = base.to_vec();
        v[at] = value;
        v
    };
    assert_eq!(
        Packet::new_checked(&with(0, 0x65)[..]),
        Err(WireError::BadVersion)
    );
    assert_eq!(
        Packet::new_checked(&with(0, 0x05)[..]),
        Err(WireError::BadVersion)
    );
    for ihl in 0..5 {
        let v = with(0, 0x40 | ihl);
        assert_eq!(
            Packet::new_checked(&v[..]),
            Err(WireError::BadHeaderLen),
            "{ihl}"
        );
    }
    // IHL 15 (60 bytes) in a 60-byte buffer is fine as far as the header goes, but then the
    // total length (60) is fine too; in a 40-byte buffer it is truncated.
    assert!(Packet::new_checked(&with(0, 0x4f)[..]).is_ok());
    assert_eq!(
        Packet::new_checked(&with(0, 0x4f)[..40]),
        Err(WireError::Truncated)
    );
    // total_len below the header length.
    let mut short_total = base.to_vec();
    short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(
        Packet::new_checked(&short_total[..]),
        Err(WireError::BadTotalLen)
    );
    short_total[2..4].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(
        Packet::new_checked(&short_total[..]).unwrap().payload(),
        &[] as &[u8]
    );
    // total_len past the buffer.
    let mut long_total = base.to_vec();
    long_total[2..4].copy_from_slice(&61u16.to_be_bytes());
    assert_eq!(
        Packet::new_checked(&long_total[..]),
        Err(WireError::Truncated)
    );
}

#[test]
fn setters_round_trip() {
    let mut buf = TCP4_SYN[14..].to_vec();
    let mut ip = Packet::new_checked(&mut buf[..]).unwrap();
    ip.set_dscp_ecn(0xb8 | 0x01);
    ip.set_ident(0x1234);
    ip.set_dont_frag(false);
    ip.set_more_frags(true);
    ip.set_frag_offset(1480);
    ip.set_ttl(3);
    ip.set_protocol(IPPROTO_UDP);
    ip.set_src_addr([1, 2, 3, 4]);
    ip.set_dst_addr([5, 6, 7, 8]);
    ip.set_total_len(50);
    ip.payload_mut()[0] = 0xaa;
    ip.fill_checksum();
    assert_eq!((ip.dscp(), ip.ecn()), (46, 1));
    assert_eq!(ip.ident(), 0x1234);
    assert!(!ip.dont_frag() && ip.more_frags() && ip.is_fragment());
    assert_eq!(ip.frag_offset(), 1480);
    assert_eq!(ip.ttl(), 3);
    assert_eq!(ip.protocol(), IPPROTO_UDP);
    assert_eq!(ip.src_addr(), [1, 2, 3, 4]);
    assert_eq!(ip.dst_addr(), [5, 6, 7, 8]);
    assert_eq!(ip.payload().len(), 30);
    assert!(ip.verify_checksum());
    assert_eq!(&buf[6..8], &[0x20, 185]);
    assert_eq!(buf[20], 0xaa);

    let mut ip = Packet::new_unchecked(&mut buf[..]);
    ip.set_more_frags(false);
    ip.set_dont_frag(true);
    assert_eq!(ip.frag_offset(), 1480);
    ip.set_frag_offset(0);
    assert!(ip.dont_frag() && !ip.is_fragment());
    ip.set_header_len(24);
    ip.options_mut().copy_from_slice(&[0x94, 4, 0, 0]);
    ip.set_version(6);
    assert_eq!((ip.version(), ip.header_len()), (6, 24));
    assert_eq!(ip.check_len(), Err(WireError::BadVersion));
}

/// Emitting Wikipedia's example header reproduces it byte for byte.
#[test]
fn emit_known_header() {
    let repr = Repr {
        src: [192, 168, 0, 1],
        dst: [192, 168, 0, 199],
        protocol: IPPROTO_UDP,
        payload_len: 0x73 - 20,
        ttl: 64,
        ident: 0,
    };
    let mut buf = vec![0xeeu8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
    assert_eq!(
        &buf[..20],
        &[
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7
        ]
    );
    assert!(buf[20..].iter().all(|&b| b == 0xee));
    let ip = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(Repr::parse(&ip), repr);
    assert_eq!(repr.header_len(), 20);
}

#[test]
fn emit_refuses_short_buffers_and_huge_payloads() {
    let mut repr = Repr {
        src: [10, 0, 0, 80],
        dst: [192, 168, 1, 10],
        protocol: IPPROTO_TCP,
        payload_len: 20,
        ttl: 64,
        ident: 7,
    };
    let mut buf = [0u8; 19];
    assert_eq!(repr.emit(&mut buf[..]), Err(WireError::Truncated));
    assert_eq!(buf, [0; 19]);
    // Only the header has to fit: the payload is the caller's.
    let mut header_only = [0u8; 20];
    repr.emit(&mut header_only[..]).unwrap();
    assert_eq!(&header_only[2..4], &[0, 40]);
    repr.payload_len = u16::MAX - 19;
    let mut big = vec![0u8; 70_000];
    let r = repr.emit(&mut Packet::new_unchecked(&mut big[..]));
    assert_eq!(r, Err(WireError::BadTotalLen));
    repr.payload_len = u16::MAX - 20;
    repr.emit(&mut Packet::new_unchecked(&mut big[..])).unwrap();
    assert!(Packet::new_checked(&big[..]).unwrap().verify_checksum());
}

/// NAT-style rewrites (addresses, TTL, ident) updated incrementally give the same checksum
/// as a full recomputation.
#[test]
fn incremental_update_equals_recomputation() {
    let mut rng = Rng::new(0x1b4);
    let samples = samples();
    for case in 0..10_000 {
        let mut buf = samples[case % samples.len()].to_vec();
        let mut ip = Packet::new_checked(&mut buf[..]).unwrap();
        let mut csum = ip.checksum();

        let new_src = (rng.next_u64() as u32).to_be_bytes();
        csum = checksum::update_bytes(csum, &ip.src_addr(), &new_src);
        ip.set_src_addr(new_src);

        let new_dst = rng.next_u64() as u32;
        let old_dst = u32::from_be_bytes(ip.dst_addr());
        csum = checksum::update_u32(csum, old_dst, new_dst);
        ip.set_dst_addr(new_dst.to_be_bytes());

        // TTL shares a 16-bit word with the protocol.
        let new_ttl = rng.next_u64() as u8;
        let word = |ip: &Packet<&mut [u8]>| u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        let old_word = word(&ip);
        ip.set_ttl(new_ttl);
        csum = checksum::update_u16(csum, old_word, word(&ip));

        let new_ident = rng.next_u64() as u16;
        csum = checksum::update_u16(csum, ip.ident(), new_ident);
        ip.set_ident(new_ident);

        ip.set_checksum(csum);
        assert!(ip.verify_checksum(), "case {case}");
        ip.fill_checksum();
        assert_eq!(ip.checksum(), csum, "case {case}");
    }
}

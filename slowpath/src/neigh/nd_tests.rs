use super::*;
use dataplane::wire::ethernet::ETHERTYPE_IPV6;

pub const LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const B1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];

pub fn ifaddr(s: &str) -> conf::IfAddr {
    let (a, len) = s.split_once('/').unwrap();
    conf::IfAddr {
        addr: a.parse().unwrap(),
        prefix_len: len.parse().unwrap(),
    }
}

fn port() -> PortL2 {
    PortL2 {
        mac: LB,
        addrs: vec![
            ifaddr("10.0.0.2/24"),
            ifaddr("2001:db8:1::2/64"),
            ifaddr("2001:db8:2::2/64"),
        ],
    }
}

/// An advertisement (as an IPv6 packet) of `target` at `mac`, from `target` to `dst`.
pub fn advert(target: Ipv6Addr, dst: Ipv6Addr, flags: u8, mac: Option<[u8; 6]>) -> Vec<u8> {
    let icmp_len = ND_FIXED + if mac.is_some() { 8 } else { 0 };
    let ip = Ipv6Repr {
        src: target.octets(),
        dst: dst.octets(),
        next_header: IPPROTO_ICMPV6,
        payload_len: icmp_len as u16,
        hop_limit: HOP_LIMIT,
    };
    let mut p = vec![0u8; ip.buffer_len()];
    ip.emit(&mut p).unwrap();
    let icmp = &mut p[40..];
    icmp[0] = NEIGHBOR_ADVERT;
    icmp[4] = flags;
    icmp[8..24].copy_from_slice(&target.octets());
    if let Some(mac) = mac {
        icmp[24] = OPT_TLLA;
        icmp[25] = 1;
        icmp[26..32].copy_from_slice(&mac);
    }
    Icmpv6Packet::new_checked(icmp)
        .unwrap()
        .fill_checksum(&ip.src, &ip.dst);
    p
}

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn solicitation_is_well_formed() {
    let target = ip("2001:db8:2::1234:5678");
    let f = solicitation(&port(), target, None).unwrap();
    assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0x34, 0x56, 0x78]);
    assert_eq!(&f[6..12], &LB);
    assert_eq!(u16::from_be_bytes([f[12], f[13]]), ETHERTYPE_IPV6);
    let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!(p.total_len(), f.len() - 14);
    assert_eq!(p.hop_limit(), 255);
    assert_eq!(p.next_header(), IPPROTO_ICMPV6);
    assert_eq!(
        p.src_ip(),
        ip("2001:db8:2::2"),
        "the address on the target's subnet"
    );
    assert_eq!(p.dst_ip(), ip("ff02::1:ff34:5678"));
    let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
    assert_eq!(icmp.msg_type(), NEIGHBOR_SOLICIT);
    assert_eq!(icmp.msg_code(), 0);
    assert_eq!(icmp.rest_of_header(), [0; 4]);
    assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));
    assert_eq!(&icmp.payload()[..16], &target.octets());
    assert_eq!(&icmp.payload()[16..], &[1, 1, 2, 0, 0, 0, 0, 1]);

    // A confirmation: unicast to the known MAC and the target itself.
    let f = solicitation(&port(), target, Some(B1)).unwrap();
    assert_eq!(&f[..6], &B1);
    let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!(p.dst_ip(), target);
    let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
    assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));

    // No IPv6 address on the port: nothing to send from.
    let v4only = PortL2 {
        mac: LB,
        addrs: vec![ifaddr("10.0.0.2/24")],
    };
    assert!(solicitation(&v4only, target, None).is_none());
}

/// The same solicitation as scapy builds it, byte for byte (skipped without scapy).
#[test]
fn solicitation_matches_scapy() {
    let target = ip("2001:db8:1::abcd:ef01");
    let ours = solicitation(&port(), target, None).unwrap();
    let script = "from scapy.all import *\n\
        import sys\n\
        p = Ether(src='02:00:00:00:00:01', dst='33:33:ff:cd:ef:01') / \
        IPv6(src='2001:db8:1::2', dst='ff02::1:ffcd:ef01', hlim=255) / \
        ICMPv6ND_NS(tgt='2001:db8:1::abcd:ef01') / \
        ICMPv6NDOptSrcLLAddr(lladdr='02:00:00:00:00:01')\n\
        sys.stdout.write(bytes(p).hex())\n";
    let out = match std::process::Command::new("python3")
        .args(["-c", script])
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!("scapy not available: skipped");
            return;
        }
    };
    let hex = String::from_utf8(out.stdout).unwrap();
    let ours: String = ours.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(ours, hex.trim());
}

#[test]
fn answers_solicitations_for_own_addresses_only() {
    let us = ip("2001:db8:1::2");
    let b = ip("2001:db8:1::11");
    let f = advertisement(&port(), us, b, B1).unwrap();
    assert_eq!(&f[..6], &B1);
    assert_eq!(&f[6..12], &LB);
    let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!((p.src_ip(), p.dst_ip(), p.hop_limit()), (us, b, 255));
    let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
    assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));
    assert_eq!(icmp.rest_of_header(), [0x60, 0, 0, 0]);
    assert_eq!(
        parse(LB, &f[14..]),
        Some(Nd::Advert {
            ip: us,
            mac: LB,
            override_: true
        })
    );
    assert!(advertisement(&port(), b, b, B1).is_none());
}

#[test]
fn reads_advertisements_and_solicitations() {
    let t = ip("2001:db8:1::11");
    let us = ip("2001:db8:1::2");
    let eth = [2, 0, 0, 0, 0, 0x99];
    assert_eq!(
        parse(eth, &advert(t, us, 0x60, Some(B1))),
        Some(Nd::Advert {
            ip: t,
            mac: B1,
            override_: true
        })
    );
    // No option: the Ethernet source, if solicited; nothing otherwise.
    assert_eq!(
        parse(eth, &advert(t, us, 0x40, None)),
        Some(Nd::Advert {
            ip: t,
            mac: eth,
            override_: false
        })
    );
    assert_eq!(parse(eth, &advert(t, us, 0x20, None)), None);
    // Unsolicited to all-nodes: fine; "solicited" to a multicast address: not.
    let all = ip("ff02::1");
    assert!(parse(eth, &advert(t, all, 0x20, Some(B1))).is_some());
    assert_eq!(parse(eth, &advert(t, all, 0x60, Some(B1))), None);

    // A solicitation from the backend (e.g. for our address): its source option.
    let mut ns = solicitation(
        &PortL2 {
            mac: B1,
            addrs: vec![ifaddr("2001:db8:1::11/64")],
        },
        us,
        None,
    )
    .unwrap();
    assert_eq!(
        parse(B1, &ns[14..]),
        Some(Nd::Solicit {
            ip: t,
            mac: Some(B1),
            target: us
        })
    );
    assert!(is_nd(&ns[14..]));
    // From the unspecified address (DAD): nothing to learn.
    ns[14 + 8..14 + 24].fill(0);
    let csum_ok = {
        let (s, d): ([u8; 16], [u8; 16]) = (
            ns[22..38].try_into().unwrap(),
            ns[38..54].try_into().unwrap(),
        );
        let mut icmp = Icmpv6Packet::new_checked(&mut ns[54..]).unwrap();
        icmp.fill_checksum(&s, &d);
        icmp.verify_checksum(&s, &d)
    };
    assert!(csum_ok);
    assert_eq!(parse(B1, &ns[14..]), None);
}

#[test]
fn refuses_bad_advertisements() {
    let t = ip("2001:db8:1::11");
    let us = ip("2001:db8:1::2");
    let good = advert(t, us, 0x60, Some(B1));
    assert!(parse(B1, &good).is_some());
    // Checksum wrong.
    let mut bad = good.clone();
    bad[40 + 3] ^= 1;
    assert_eq!(parse(B1, &bad), None);
    // Hop limit not 255 (routed from elsewhere).
    let mut bad = good.clone();
    bad[7] = 254;
    assert_eq!(parse(B1, &bad), None);
    // Code not 0 (checksum fixed up, so only the code is wrong).
    let mut bad = good.clone();
    bad[41] = 1;
    refill(&mut bad);
    assert_eq!(parse(B1, &bad), None);
    // An option of length zero.
    let mut bad = good.clone();
    bad[40 + 25] = 0;
    refill(&mut bad);
    assert_eq!(parse(B1, &bad), None);
    // An option running past the end.
    let mut bad = good.clone();
    bad[40 + 25] = 2;
    refill(&mut bad);
    assert_eq!(parse(B1, &bad), None);
    // A multicast target.
    let mut bad = advert(ip("ff02::1"), us, 0x60, Some(B1));
    refill(&mut bad);
    assert_eq!(parse(B1, &bad), None);
    // Every truncation, with the payload length fixed up or not: never a panic, and
    // nothing learnt once the fixed part is cut.
    for len in 0..good.len() {
        assert_eq!(parse(B1, &good[..len]), None, "cut at {len}");
        let mut cut = good[..len].to_vec();
        if len >= 40 {
            cut[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            refill(&mut cut);
            let r = parse(B1, &cut);
            assert!(r.is_none() || len == 40 + ND_FIXED, "cut at {len}: {r:?}");
        }
        let _ = is_nd(&cut);
    }
    // Random bytes after a valid header: no panic.
    let mut x = 0x1234_5678_u32;
    for _ in 0..2000 {
        let mut p = good.clone();
        for b in p.iter_mut().skip(40) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let _ = parse(B1, &p);
        let _ = is_nd(&p);
    }
}

/// Recomputes the ICMPv6 checksum of an IPv6 packet (when it has room for a header).
fn refill(p: &mut [u8]) {
    let (s, d): ([u8; 16], [u8; 16]) =
        (p[8..24].try_into().unwrap(), p[24..40].try_into().unwrap());
    if let Ok(mut icmp) = Icmpv6Packet::new_checked(&mut p[40..]) {
        icmp.fill_checksum(&s, &d);
    }
}

#[test]
fn an_unsolicited_advertisement_goes_to_all_nodes_with_override() {
    let vip = ip("2001:db8:1::100");
    let f = unsolicited(&port(), vip).unwrap();
    assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(&f[6..12], &LB);
    assert_eq!(&f[12..14], &ETHERTYPE_IPV6.to_be_bytes());
    let packet = &f[14..];
    let ipv6 = Ipv6Packet::new_checked(packet).unwrap();
    assert_eq!(ipv6.dst_ip(), ip("ff02::1"));
    assert_eq!(ipv6.src_ip(), vip);
    // Read back as any neighbour reads it (checksum, hop limit and option checked): the VIP
    // at this port's MAC, replacing whatever MAC the neighbour had.
    assert_eq!(
        parse(LB, packet),
        Some(Nd::Advert {
            ip: vip,
            mac: LB,
            override_: true
        })
    );
}

//! IPv4: every getter of a checked header; `fill_checksum` verifies; an incremental address
//! rewrite (RFC 1624, as NAT does it) verifies exactly when a full recomputation does;
//! `Repr` round-trips.
#![no_main]

use dataplane::wire::{Ipv4Packet, Ipv4Repr, checksum};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (p.version(), p.dscp(), p.ecn(), p.dscp_ecn(), p.ident());
    let _ = (
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
    );
    let _ = (p.ttl(), p.protocol(), p.checksum(), p.src_ip(), p.dst_ip());
    assert_eq!(p.version(), 4);
    let hl = p.header_len();
    assert!((20..=60).contains(&hl));
    assert_eq!(p.options().len(), hl - 20);
    assert_eq!(p.payload().len(), usize::from(p.total_len()) - hl);
    let was_ok = p.verify_checksum();

    let mut copy = data.to_vec();
    let mut q = Ipv4Packet::new_checked(&mut copy[..]).expect("same bytes");
    // NAT's rewrite: a new destination, the checksum updated incrementally.
    let new_dst = [data[data.len() - 1], 10, 0, data[0]];
    let c = checksum::update_bytes(q.checksum(), &p.dst_addr(), &new_dst);
    q.set_dst_addr(new_dst);
    q.set_checksum(c);
    assert_eq!(
        q.verify_checksum(),
        was_ok,
        "incremental update changed validity"
    );
    q.set_ttl(q.ttl().wrapping_sub(1));
    q.options_mut();
    q.payload_mut();
    q.fill_checksum();
    assert!(q.verify_checksum(), "fill_checksum then verify");
    assert_eq!(
        checksum::ipv4_header(&copy[..hl]),
        u16::from_be_bytes([copy[10], copy[11]])
    );

    let r = Ipv4Repr::parse(&p);
    let mut buf = [0u8; 20];
    r.emit(&mut buf[..]).expect("20 bytes of room");
    let e = Ipv4Packet::new_unchecked(&buf[..]);
    assert!(e.verify_checksum());
    assert_eq!(
        (e.src_addr(), e.dst_addr(), e.protocol()),
        (r.src, r.dst, r.protocol)
    );
    assert_eq!((e.ttl(), e.ident(), e.header_len()), (r.ttl, r.ident, 20));
    assert_eq!(usize::from(e.total_len()), 20 + usize::from(r.payload_len));
});

//! IPv6: every getter of a checked header; the extension-header walk on anything (it must
//! never panic, even unchecked) stays inside the payload; `Repr` round-trips.
#![no_main]

use dataplane::wire::{Ipv6Packet, Ipv6Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Documented to never panic, even without check_len.
    let _ = Ipv6Packet::new_unchecked(data).upper_layer();
    let Ok(p) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.next_header(),
    );
    let _ = (
        p.hop_limit(),
        p.src_ip(),
        p.dst_ip(),
        p.src_addr(),
        p.dst_addr(),
    );
    assert_eq!(p.total_len(), 40 + usize::from(p.payload_len()));
    assert_eq!(p.payload().len(), usize::from(p.payload_len()));
    if let Ok(ul) = p.upper_layer() {
        assert!(ul.offset >= 40 && ul.offset <= p.total_len(), "{ul:?}");
        if let Some(f) = ul.fragment {
            assert_eq!(f.offset % 8, 0);
        }
    }
    let mut copy = data.to_vec();
    let mut q = Ipv6Packet::new_checked(&mut copy[..]).expect("same bytes");
    q.set_traffic_class(0xff);
    q.set_flow_label(0xfffff);
    q.set_hop_limit(0);
    q.set_src_addr(p.dst_addr());
    q.set_dst_addr(p.src_addr());
    q.payload_mut();
    assert_eq!((q.version(), q.payload_len()), (6, p.payload_len()));
    assert_eq!((q.traffic_class(), q.flow_label()), (0xff, 0xfffff));

    let r = Ipv6Repr::parse(&p);
    let mut buf = [0u8; 40];
    r.emit(&mut buf[..]).expect("40 bytes of room");
    let e = Ipv6Packet::new_unchecked(&buf[..]);
    assert_eq!(
        (e.src_addr(), e.dst_addr(), e.next_header()),
        (r.src, r.dst, r.next_header)
    );
    assert_eq!(
        (e.payload_len(), e.hop_limit()),
        (r.payload_len, r.hop_limit)
    );
});

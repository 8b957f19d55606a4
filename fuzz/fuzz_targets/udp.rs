//! UDP: every getter of a checked datagram; `fill_checksum` verifies and never writes 0;
//! the incremental update keeps a right checksum right and a zero ("none") zero.
#![no_main]

use dataplane::wire::{UdpPacket, UdpRepr, checksum};
use libfuzzer_sys::fuzz_target;

const S4: [u8; 4] = [10, 0, 0, 50];
const D4: [u8; 4] = [10, 0, 0, 101];
const B4: [u8; 4] = [10, 0, 0, 22];
const S6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50];
const D6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];

fuzz_target!(|data: &[u8]| {
    let Ok(u) = UdpPacket::new_checked(data) else {
        return;
    };
    let _ = (u.src_port(), u.dst_port(), u.checksum());
    let _ = (
        u.verify_checksum_v4(&S4, &D4),
        u.verify_checksum_v6(&S6, &D6),
    );
    let len = usize::from(u.len());
    assert!(len >= 8 && len <= data.len());
    assert_eq!(u.payload().len(), len - 8);
    let _ = UdpRepr::parse(&u);
    let was_zero = u.checksum() == 0;

    let mut copy = data.to_vec();
    let mut q = UdpPacket::new_checked(&mut copy[..]).expect("same bytes");
    // A datagram without checksum stays without one through the rewrite.
    if was_zero {
        let c = checksum::update_udp(0, &D4, &B4);
        assert_eq!(c, 0);
    }
    q.payload_mut();
    q.fill_checksum_v6(&S6, &D6);
    assert_ne!(q.checksum(), 0);
    assert!(q.verify_checksum_v6(&S6, &D6));
    q.fill_checksum_v4(&S4, &D4);
    assert_ne!(q.checksum(), 0);
    assert!(q.verify_checksum_v4(&S4, &D4));
    let old_port = q.dst_port();
    let mut c = checksum::update_udp(q.checksum(), &D4, &B4);
    c = checksum::update_udp_u16(c, old_port, 5353);
    assert_ne!(c, 0);
    q.set_dst_port(5353);
    q.set_checksum(c);
    assert!(
        q.verify_checksum_v4(&S4, &B4),
        "incremental NAT update broke the checksum"
    );
});

//! ICMPv6: every getter of a checked message; `fill_checksum` verifies.
#![no_main]

use dataplane::wire::Icmpv6Packet;
use libfuzzer_sys::fuzz_target;

const S6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50];
const D6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Icmpv6Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
    );
    let _ = (p.mtu(), p.rest_of_header(), p.verify_checksum(&S6, &D6));
    assert_eq!(p.payload().len(), data.len() - 8);
    let mut copy = data.to_vec();
    let mut q = Icmpv6Packet::new_checked(&mut copy[..]).expect("same bytes");
    q.set_msg_type(129);
    q.set_msg_code(0);
    q.set_echo_ident(1);
    q.set_echo_seq_no(2);
    q.set_mtu(1280);
    q.set_rest_of_header([1, 2, 3, 4]);
    q.payload_mut();
    q.fill_checksum(&S6, &D6);
    assert!(q.verify_checksum(&S6, &D6));
});

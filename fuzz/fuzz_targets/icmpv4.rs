//! ICMPv4: every getter of a checked message; `fill_checksum` verifies.
#![no_main]

use dataplane::wire::Icmpv4Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
    );
    let _ = (p.next_hop_mtu(), p.rest_of_header(), p.verify_checksum());
    assert_eq!(p.payload().len(), data.len() - 8);
    let mut copy = data.to_vec();
    let mut q = Icmpv4Packet::new_checked(&mut copy[..]).expect("same bytes");
    q.set_msg_type(0);
    q.set_msg_code(0);
    q.set_echo_ident(1);
    q.set_echo_seq_no(2);
    q.set_next_hop_mtu(1500);
    q.set_rest_of_header([1, 2, 3, 4]);
    q.payload_mut();
    q.fill_checksum();
    assert!(q.verify_checksum());
});

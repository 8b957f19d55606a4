//! ARP: every getter of a checked packet; `Repr` parses and emits the same packet back.
#![no_main]

use dataplane::wire::{ArpPacket, ArpRepr, arp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.hardware_type(),
        p.protocol_type(),
        p.hw_len(),
        p.proto_len(),
    );
    let _ = (p.operation(), p.sender_hw_addr(), p.sender_proto_addr());
    let _ = (p.target_hw_addr(), p.target_proto_addr());
    let r = ArpRepr::parse(&p);
    let mut buf = [0u8; arp::PACKET_LEN];
    r.emit(&mut buf[..]).expect("28 bytes of room");
    assert_eq!(&buf[..], &data[..arp::PACKET_LEN], "emit(parse(p)) == p");
    let again = ArpPacket::new_checked(&buf[..]).expect("what emit writes parses");
    assert_eq!(ArpRepr::parse(&again), r);
    assert!(r.emit(&mut [0u8; arp::PACKET_LEN - 1][..]).is_err());
});

//! TCP: every getter of a checked segment; `fill_checksum` verifies (v4 and v6); NAT's
//! incremental rewrite of an address and a port keeps a right checksum right.
#![no_main]

use dataplane::wire::{TcpPacket, TcpRepr, checksum};
use libfuzzer_sys::fuzz_target;

const S4: [u8; 4] = [10, 0, 0, 50];
const D4: [u8; 4] = [10, 0, 0, 101];
const B4: [u8; 4] = [10, 0, 0, 21];
const S6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50];
const D6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];

fuzz_target!(|data: &[u8]| {
    let Ok(t) = TcpPacket::new_checked(data) else {
        return;
    };
    let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number());
    let _ = (
        t.flags(),
        t.fin(),
        t.syn(),
        t.rst(),
        t.ack(),
        t.window_len(),
    );
    let _ = (t.checksum(), t.urgent_at(), t.segment_len());
    let _ = (
        t.verify_checksum_v4(&S4, &D4),
        t.verify_checksum_v6(&S6, &D6),
    );
    let hl = t.header_len();
    assert!((20..=60).contains(&hl) && hl <= data.len());
    assert_eq!(t.options().len(), hl - 20);
    assert_eq!(t.payload().len(), data.len() - hl);
    let _ = TcpRepr::parse(&t);

    let mut copy = data.to_vec();
    let mut q = TcpPacket::new_checked(&mut copy[..]).expect("same bytes");
    q.options_mut();
    q.payload_mut();
    q.fill_checksum_v6(&S6, &D6);
    assert!(q.verify_checksum_v6(&S6, &D6));
    q.fill_checksum_v4(&S4, &D4);
    assert!(q.verify_checksum_v4(&S4, &D4));
    // NAT inbound: destination VIP -> backend, port -> 8080, checksum updated (RFC 1624).
    let old_port = q.dst_port();
    let mut c = checksum::update_bytes(q.checksum(), &D4, &B4);
    c = checksum::update_u16(c, old_port, 8080);
    q.set_dst_port(8080);
    q.set_checksum(c);
    assert!(
        q.verify_checksum_v4(&S4, &B4),
        "incremental NAT update broke the checksum"
    );
});

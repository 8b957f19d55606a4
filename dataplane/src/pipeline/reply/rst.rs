//! The TCP RST that refuses a SYN to an empty pool (Katran's and GLB's answer: the client
//! moves on at once instead of retrying into silence).

use crate::flow::v4_of;
use crate::frame::Frame;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{self, IPPROTO_TCP, checksum, tcp};

use super::super::parse::IpMeta;

/// Turns a SYN into the RST|ACK that refuses it (RFC 9293 3.10.7.1: seq 0, ack = SEG.SEQ +
/// SEG.LEN), from the VIP, back to the client, in a fresh IP header. Options and payload are
/// dropped.
pub(in crate::pipeline) fn build<F: Frame>(frame: &mut F, p: &IpMeta, our_mac: [u8; 6]) -> Verdict {
    let (sport, dport, ack) = {
        let seg = frame
            .data()
            .get(p.l4_off..p.l4_off + p.l4_len)
            .unwrap_or_default();
        let Ok(t) = wire::TcpPacket::new_checked(seg) else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        let seg_len = 1 + (p.l4_len - t.header_len()) as u32 + u32::from(t.fin());
        (
            t.src_port(),
            t.dst_port(),
            t.seq_number().wrapping_add(seg_len),
        )
    };
    let l3 = p.l3_off;
    let ip_len = if p.v6 { 40 } else { 20 };
    let total = l3 + ip_len + 20;
    if frame.data().len() < total && !frame.append(total - frame.data().len()) {
        return Verdict::Drop(DropReason::NoRoom);
    }
    frame.truncate(total);
    let data = frame.data_mut();
    super::macs_back(data, &our_mac);
    super::write_ip_header(&mut data[l3..], p.v6, &p.dst, &p.src, IPPROTO_TCP, 20);
    let seg = &mut data[l3 + ip_len..total];
    wire::TcpRepr {
        src_port: dport,
        dst_port: sport,
        seq_number: 0,
        ack_number: ack,
        flags: tcp::RST | tcp::ACK,
        window_len: 0,
    }
    .emit(&mut *seg)
    .expect("20 bytes of room");
    let c = if p.v6 {
        checksum::l4_checksum_v6(&p.dst, &p.src, IPPROTO_TCP, seg)
    } else {
        checksum::l4_checksum_v4(&v4_of(&p.dst), &v4_of(&p.src), IPPROTO_TCP, seg)
    };
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    Verdict::Reply
}

//! The fast path decides exactly as the general path does: the same random traffic (new,
//! established, closing and reset TCP flows with and without options and payload, UDP with
//! and without checksum, DSR, NAT, empty pools with RST and ICMP, packets too big for the
//! backends' port with and without DF, frames the fast path must refuse, IPIP and GUE tunnels)
//! through [`Pipeline::process`] and through the general path alone gives the same
//! verdicts, the same output bytes, the same counters and the same flow table.

use super::*;
use crate::frame::VecFrame;
use crate::wire::tcp;
use crate::wire::{Ipv4Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr};

pub(super) const CONFIG: &str = r#"
[global]
flow_table_capacity = 4096
[[port]]
name = "out"
device = "net_null0"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.2/24"]
[[port]]
name = "in"
device = "net_null1"
mac = "02:00:00:00:00:02"
mtu = 600
addresses = ["10.1.0.1/16"]
[[service]]
name = "dsr"
vip = "198.51.100.1"
port = 80
[[service.backend]]
name = "a"
address = "10.1.0.11"
mac = "02:00:00:01:00:0b"
[[service.backend]]
name = "b"
address = "10.1.0.12"
mac = "02:00:00:01:00:0c"
[[service]]
name = "nat-udp"
vip = "198.51.100.1"
protocol = "udp"
port = 53
forwarding = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.21"
port = 5353
mac = "02:00:00:01:00:15"
[[service]]
name = "nat-any"
vip = "198.51.100.2"
forwarding = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.31"
mac = "02:00:00:01:00:1f"
[[service.backend]]
name = "b"
address = "10.1.0.32"
mac = "02:00:00:01:00:20"
[[service]]
name = "ipip"
vip = "198.51.100.4"
port = 80
forwarding = "ipip"
[[service.backend]]
name = "a"
address = "10.1.0.41"
mac = "02:00:00:01:00:29"
[[service.backend]]
name = "b"
address = "10.1.0.42"
mac = "02:00:00:01:00:2a"
[[service]]
name = "gue"
vip = "198.51.100.4"
protocol = "udp"
port = 53
forwarding = "gue"
tunnel_source = "10.1.0.1"
[[service.backend]]
name = "a"
address = "10.1.0.51"
mac = "02:00:00:01:00:33"
[[service]]
name = "empty-tcp"
vip = "198.51.100.3"
port = 443
[[service]]
name = "empty-udp"
vip = "198.51.100.3"
protocol = "udp"
port = 53
"#;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut g = crate::hash::SplitMix(self.0);
        let v = g.next_u64();
        self.0 = g.0;
        v
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// An IPv4 TCP segment `src:sport -> dst:dport` with `flags` and `payload` zero bytes, its
/// checksums right, to the MAC of [`CONFIG`]'s port `to` (0 "out", where clients are; 1 "in").
/// The unit tests' one builder of a plain segment.
pub(super) fn tcp4(
    to: u8,
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    flags: u8,
    payload: usize,
) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1 + to]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0xfe]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    Ipv4Repr {
        src,
        dst,
        protocol: IPPROTO_TCP,
        payload_len: (20 + payload) as u16,
        ttl: 64,
        ident: 1,
    }
    .emit(&mut f[14..])
    .unwrap();
    TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq_number: 1,
        ack_number: 1,
        flags,
        window_len: 512,
    }
    .emit(&mut f[34..])
    .unwrap();
    TcpPacket::new_unchecked(&mut f[34..]).fill_checksum_v4(&src, &dst);
    f
}

/// A client frame: TCP (any flags, 0..12 bytes of options, 0..40 of payload) or UDP (with
/// or without checksum), sometimes with IP options or a wrong IP checksum.
fn frame(r: &mut Rng) -> Vec<u8> {
    let client = [203, 0, 113, r.pick(&[1, 2, 3])];
    let vip = [198, 51, 100, r.pick(&[1, 2, 3, 4])];
    let sport = r.pick(&[40000, 40001, 40002]);
    let udp = r.next().is_multiple_of(3);
    let dport = if udp {
        r.pick(&[53, 54])
    } else {
        r.pick(&[80, 443, 8080])
    };
    // One in ten is near or over the backends' port MTU (600).
    let payload = if r.next().is_multiple_of(10) {
        (540 + r.next() % 60) as usize
    } else {
        (r.next() % 41) as usize
    };
    let ip_opts = if r.next().is_multiple_of(10) { 4 } else { 0 };
    let tcp_opts = if udp { 0 } else { 4 * (r.next() % 4) as usize };
    let l4_len = if udp {
        8 + payload
    } else {
        20 + tcp_opts + payload
    };
    let mut f = vec![0u8; 14 + 20 + ip_opts + l4_len + (r.next() % 8) as usize];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0xfe]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    Ipv4Repr {
        src: client,
        dst: vip,
        protocol: if udp { IPPROTO_UDP } else { IPPROTO_TCP },
        payload_len: (ip_opts + l4_len) as u16,
        ttl: 64,
        ident: r.next() as u16,
    }
    .emit(&mut f[14..])
    .unwrap();
    if ip_opts > 0 {
        // IHL 6 with a NOP option word; the checksum is refilled below.
        let total = 20 + ip_opts + l4_len;
        f[14] = 0x46;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
    }
    let mut ip = wire::Ipv4Packet::new_unchecked(&mut f[14..]);
    if r.next().is_multiple_of(4) {
        ip.set_dont_frag(false);
    }
    ip.fill_checksum();
    if r.next().is_multiple_of(20) {
        f[24] ^= 1; // a bad IP checksum
    }
    let l4 = 14 + 20 + ip_opts;
    for (i, b) in f[l4..].iter_mut().enumerate() {
        *b = i as u8;
    }
    if udp {
        UdpRepr {
            src_port: sport,
            dst_port: dport,
            payload_len: payload as u16,
        }
        .emit(&mut f[l4..])
        .unwrap();
        let mut u = UdpPacket::new_unchecked(&mut f[l4..l4 + l4_len]);
        if r.next().is_multiple_of(4) {
            u.set_checksum(0);
        } else {
            u.fill_checksum_v4(&client, &vip);
        }
    } else {
        let flags = r.pick(&[
            tcp::SYN,
            tcp::ACK,
            tcp::ACK | tcp::PSH,
            tcp::FIN | tcp::ACK,
            tcp::RST,
            tcp::SYN | tcp::ACK,
            tcp::SYN | tcp::FIN,
        ]);
        TcpRepr {
            src_port: sport,
            dst_port: dport,
            seq_number: r.next() as u32,
            ack_number: r.next() as u32,
            flags,
            window_len: 512,
        }
        .emit(&mut f[l4..])
        .unwrap();
        f[l4 + 12] = (((20 + tcp_opts) / 4) as u8) << 4;
        TcpPacket::new_unchecked(&mut f[l4..l4 + l4_len]).fill_checksum_v4(&client, &vip);
    }
    f
}

#[test]
fn fast_path_decides_as_the_general_path() {
    let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
    let snap = crate::snapshot::all_up(&cfg);
    let (mut fast, mut general) = (
        Pipeline::new(WorkerIdx::new(0), 1, 64, 7),
        Pipeline::new(WorkerIdx::new(0), 1, 64, 7),
    );
    let mut r = Rng(11);
    let (mut on_fast, mut no_df) = (0, 0);
    for i in 0..20_000u32 {
        let bytes = frame(&mut r);
        let (mut a, mut b) = (VecFrame::new(&bytes), VecFrame::new(&bytes));
        for p in [&mut fast, &mut general] {
            p.now_ms = i / 8;
            p.flows.expire_paced(i / 8, 64, &snap.timeouts);
        }
        on_fast += u32::from(
            fast.fast_parse(
                &snap,
                PortIdx::new(0),
                &bytes,
                crate::frame::RxIpChecksum::Unknown,
            )
            .is_some(),
        );
        let va = fast.process(&snap, PortIdx::new(0), &mut a);
        let vb = general.decide(&snap, PortIdx::new(0), None, &mut b);
        no_df += u32::from(va == Verdict::Drop(DropReason::MtuExceededNoDf));
        assert_eq!(va, vb, "frame {i}: {bytes:02x?}");
        assert_eq!(a.to_vec(), b.to_vec(), "frame {i} output");
    }
    assert_eq!(fast.counters, general.counters);
    let table = |p: &Pipeline| {
        let mut v: Vec<_> = p.flows.iter().map(|(k, f)| (k.to_string(), *f)).collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    assert_eq!(table(&fast), table(&general));
    assert!(fast.counters.flows_evicted > 0, "the small table filled");
    assert!(
        fast.counters.syn_unrecorded > 0,
        "SYNs found the table full (the fast path's flood case)"
    );
    assert!(on_fast > 5_000, "the fast path was taken: {on_fast}");
    assert!(fast.counters.mtu_exceeded > 0, "too-big packets answered");
    assert!(no_df > 0, "too-big packets without DF dropped");
}

//! Per-packet costs of `dataplane::wire`: the Internet checksum over typical sizes, parsing a
//! frame down to its L4 ports, and a NAT rewrite with an incremental versus a full checksum.
//!
//! `cargo bench -p dataplane --bench wire` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::wire::{
    self, ETHERTYPE_IPV4, IPPROTO_TCP, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, checksum, tcp,
};

/// An Ethernet + IPv4 + TCP frame with `payload` data bytes, checksums filled.
fn tcp_frame(payload: usize) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + 20 + payload];
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let (src, dst) = ([192, 168, 1, 10], [10, 0, 0, 80]);
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: IPPROTO_TCP,
        payload_len: (20 + payload) as u16,
        ttl: 64,
        ident: 1,
    };
    ip.emit(&mut frame[14..]).unwrap();
    let seg = &mut frame[34..];
    for (i, b) in seg[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let t = TcpRepr {
        src_port: 43210,
        dst_port: 80,
        seq_number: 7,
        ack_number: 9,
        flags: tcp::ACK,
        window_len: 502,
    };
    t.emit(&mut seg[..]).unwrap();
    TcpPacket::new_unchecked(seg).fill_checksum_v4(&src, &dst);
    frame
}

fn config(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

fn sum(c: &mut Criterion) {
    let data: Vec<u8> = (0..1500u32).map(|i| (i * 7) as u8).collect();
    let mut g = c.benchmark_group("checksum_sum");
    config(&mut g);
    for len in [20usize, 64, 576, 1500] {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(len), &data[..len], |b, d| {
            b.iter(|| checksum::fold(checksum::sum(black_box(d), 0)))
        });
    }
    g.finish();
}

fn parse(c: &mut Criterion) {
    let frame = tcp_frame(0);
    let mut g = c.benchmark_group("parse");
    config(&mut g);
    g.bench_function("l2+ipv4+tcp ports and flags", |b| {
        b.iter(|| {
            let frame = black_box(&frame[..]);
            let l2 = wire::parse_l2(frame).ok()?;
            let ip = Ipv4Packet::new_checked(frame.get(l2.l3_offset..)?).ok()?;
            let t = TcpPacket::new_checked(ip.into_payload()).ok()?;
            Some((
                ip.src_addr(),
                ip.dst_addr(),
                t.src_port(),
                t.dst_port(),
                t.flags(),
            ))
        })
    });
    g.bench_function("ipv4 verify_checksum", |b| {
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        b.iter(|| black_box(&ip).verify_checksum())
    });
    g.finish();
}

/// Rewrites the destination address and port of a 1500-byte frame (DNAT to a backend).
fn rewrite(c: &mut Criterion) {
    let frame = tcp_frame(1500 - 54);
    let backend = [10, 1, 0, 7];
    let mut g = c.benchmark_group("dnat_rewrite_1500B");
    config(&mut g);
    g.bench_function("incremental (RFC 1624)", |b| {
        let mut f = frame.clone();
        b.iter(|| {
            let (l3, l4) = f.split_at_mut(34);
            let mut ip = Ipv4Packet::new_unchecked(&mut l3[14..]);
            let old = ip.dst_addr();
            ip.set_checksum(checksum::update_bytes(ip.checksum(), &old, &backend));
            ip.set_dst_addr(black_box(backend));
            let mut t = TcpPacket::new_unchecked(&mut l4[..]);
            let c = checksum::update_bytes(t.checksum(), &old, &backend);
            t.set_checksum(checksum::update_u16(c, t.dst_port(), 8080));
            t.set_dst_port(8080);
        })
    });
    g.bench_function("full recomputation", |b| {
        let mut f = frame.clone();
        b.iter(|| {
            let (l3, l4) = f.split_at_mut(34);
            let mut ip = Ipv4Packet::new_unchecked(&mut l3[14..]);
            let src = ip.src_addr();
            ip.set_dst_addr(black_box(backend));
            ip.fill_checksum();
            let mut t = TcpPacket::new_unchecked(&mut l4[..]);
            t.set_dst_port(8080);
            t.fill_checksum_v4(&src, &backend);
        })
    });
    g.finish();
}

criterion_group!(benches, sum, parse, rewrite);
criterion_main!(benches);

//! FullNAT through two workers that own their flows in software: a client's packets leave
//! from a local address and port of the owner's share, the backend's replies (delivered to
//! either worker) come back to the client as the VIP's, every checksum as smoltcp computes
//! it from scratch; a pool exhausted on purpose refuses the next flow with a RST and takes
//! new flows again once the old ones are reaped and their ports have rested.

use std::net::IpAddr;

use smoltcp::wire as sm;

use super::*;
use crate::frame::VecFrame;
use crate::ids::{PortIdx, WorkerIdx};
use crate::snapshot::all_up;
use crate::wire::tcp;

const CONFIG: &str = r#"
[global]
flow_table_capacity = 4096
[global.fullnat]
local_ports = "20000-20063"
port_quiet_ms = 1000
[[port]]
name = "out"
device = "net_null0"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.2/24", "2001:db8:2::2/64"]
[[port]]
name = "in"
device = "net_null1"
mac = "02:00:00:00:00:02"
addresses = ["10.1.0.1/16", "fd01::1/64"]
[[service]]
name = "web"
vip = "198.51.100.1"
port = 80
forwarding = "fullnat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
mac = "02:00:00:01:00:0b"
[[service]]
name = "dns6"
vip = "2001:db8:ffff::53"
protocol = "udp"
port = 53
forwarding = "fullnat"
[[service.backend]]
name = "a"
address = "fd01::11"
mac = "02:00:00:01:00:11"
"#;

const OUT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const IN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0xfe];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sm_addr(a: IpAddr) -> sm::IpAddress {
    match a {
        IpAddr::V4(a) => sm::IpAddress::Ipv4(a),
        IpAddr::V6(a) => sm::IpAddress::Ipv6(a),
    }
}

/// A frame to `dst_mac` from the router: TCP with `flags` (or UDP when `flags` is `None`)
/// carrying "hello", checksums filled by smoltcp.
fn frame(
    dst_mac: [u8; 6],
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    flags: Option<u8>,
) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let l4_len = if flags.is_some() { 20 } else { 8 } + 5;
    let l3 = if v6 { 40 } else { 20 };
    let mut f = vec![0u8; 14 + l3 + l4_len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&ROUTER_MAC);
    let proto = if flags.is_some() { 6 } else { 17 };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x45;
            f[16..18].copy_from_slice(&((l3 + l4_len) as u16).to_be_bytes());
            f[20] = 0x40; // DF
            f[22] = 64;
            f[23] = proto;
            f[26..30].copy_from_slice(&s.octets());
            f[30..34].copy_from_slice(&d.octets());
            sm::Ipv4Packet::new_unchecked(&mut f[14..34]).fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            f[14] = 0x60;
            f[18..20].copy_from_slice(&(l4_len as u16).to_be_bytes());
            f[20] = proto;
            f[21] = 64;
            f[22..38].copy_from_slice(&s.octets());
            f[38..54].copy_from_slice(&d.octets());
        }
        _ => unreachable!(),
    }
    let l4 = 14 + l3;
    f[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    f[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    let end = f.len();
    f[end - 5..].copy_from_slice(b"hello");
    let (s, d) = (sm_addr(src), sm_addr(dst));
    match flags {
        Some(fl) => {
            f[l4 + 4..l4 + 8].copy_from_slice(&0x1000u32.to_be_bytes());
            f[l4 + 12] = 5 << 4;
            f[l4 + 13] = fl;
            f[l4 + 14..l4 + 16].copy_from_slice(&64240u16.to_be_bytes());
            sm::TcpPacket::new_unchecked(&mut f[l4..]).fill_checksum(&s, &d);
        }
        None => {
            f[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            sm::UdpPacket::new_unchecked(&mut f[l4..]).fill_checksum(&s, &d);
        }
    }
    f
}

/// An address and a port.
type End = (IpAddr, u16);

/// The frame's MACs, addresses and ports, after checking every checksum with smoltcp.
fn read(f: &[u8]) -> ([u8; 6], [u8; 6], End, End) {
    let macs = (f[0..6].try_into().unwrap(), f[6..12].try_into().unwrap());
    let (src, dst, proto, l4) = if f[12..14] == [0x08, 0x00] {
        let p = sm::Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(p.verify_checksum(), "IPv4 header checksum");
        let l4 = 14 + usize::from(p.header_len());
        (
            IpAddr::V4(p.src_addr()),
            IpAddr::V4(p.dst_addr()),
            p.next_header(),
            l4,
        )
    } else {
        let p = sm::Ipv6Packet::new_checked(&f[14..]).unwrap();
        (
            IpAddr::V6(p.src_addr()),
            IpAddr::V6(p.dst_addr()),
            p.next_header(),
            54,
        )
    };
    let (s, d) = (sm_addr(src), sm_addr(dst));
    let (sport, dport) = match proto {
        sm::IpProtocol::Tcp => {
            let t = sm::TcpPacket::new_checked(&f[l4..]).unwrap();
            assert!(t.verify_checksum(&s, &d), "TCP checksum");
            (t.src_port(), t.dst_port())
        }
        sm::IpProtocol::Udp => {
            let u = sm::UdpPacket::new_checked(&f[l4..]).unwrap();
            assert!(u.verify_checksum(&s, &d), "UDP checksum");
            (u.src_port(), u.dst_port())
        }
        p => panic!("{p}"),
    };
    (macs.0, macs.1, (src, sport), (dst, dport))
}

/// Two workers, as the engine makes them (one seed).
fn workers() -> [Pipeline; 2] {
    [0, 1].map(|w| {
        let mut p = Pipeline::new(WorkerIdx::new(w), 2, 4096, 0x5eed);
        p.now_ms = 5_000;
        p
    })
}

/// `f` received on `port` by worker `first`, handed over as the worker would: the verdict
/// and the worker that decided it.
fn deliver(
    pipes: &mut [Pipeline; 2],
    snap: &Snapshot,
    first: usize,
    port: u8,
    f: &mut VecFrame,
) -> (Verdict, usize) {
    let mut w = first;
    for _ in 0..2 {
        match pipes[w].process(snap, PortIdx::new(port), f) {
            Verdict::Handoff { worker } => w = worker.index(),
            v => return (v, w),
        }
    }
    panic!("handed over twice");
}

#[test]
fn both_directions_on_the_owner_v4_tcp_and_v6_udp() {
    let cfg = conf::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
    let snap = all_up(&cfg);
    let mut pipes = workers();
    let cases = [
        (
            ip("203.0.113.7"),
            ip("198.51.100.1"),
            80,
            Some(tcp::SYN),
            ip("10.1.0.1"),
            ip("10.1.0.11"),
            8080,
        ),
        (
            ip("2001:db8:2::7"),
            ip("2001:db8:ffff::53"),
            53,
            None,
            ip("fd01::1"),
            ip("fd01::11"),
            53,
        ),
    ];
    for (client, vip, vport, flags, local, backend, bport) in cases {
        let mut owners = Vec::new();
        for cport in [40000u16, 40001, 40002, 40003] {
            for first in [0, 1] {
                // The client's packet, delivered to either worker first.
                let mut f = VecFrame::new(&frame(OUT_MAC, (client, cport), (vip, vport), flags));
                let (v, owner) = deliver(&mut pipes, &snap, first, 0, &mut f);
                assert_eq!(
                    v,
                    Verdict::Forward {
                        port: PortIdx::new(1)
                    },
                    "{client}:{cport}"
                );
                let (dmac, smac, (src, lport), (dst, dp)) = read(f.data());
                assert_eq!(
                    (dmac, smac),
                    (
                        snap.backends[1 + usize::from(backend.is_ipv6())]
                            .as_ref()
                            .unwrap()
                            .mac,
                        IN_MAC
                    )
                );
                assert_eq!((src, dst, dp), (local, backend, bport));
                let share = crate::local_ports::share(&(20000..=20063), owner as u16, 2);
                assert!(
                    share.contains(&lport),
                    "port {lport} in worker {owner}'s share {share:?}"
                );
                owners.push(owner);
                // The backend's reply, delivered to either worker first.
                for rfirst in [0, 1] {
                    let rflags = flags.map(|_| tcp::SYN | tcp::ACK);
                    let mut r =
                        VecFrame::new(&frame(IN_MAC, (backend, bport), (local, lport), rflags));
                    let (v, rowner) = deliver(&mut pipes, &snap, rfirst, 1, &mut r);
                    assert_eq!(
                        (v, rowner),
                        (
                            Verdict::Forward {
                                port: PortIdx::new(0)
                            },
                            owner
                        )
                    );
                    let (dmac, smac, from, to) = read(r.data());
                    assert_eq!((dmac, smac), (ROUTER_MAC, OUT_MAC));
                    assert_eq!((from, to), ((vip, vport), (client, cport)));
                }
                // The client's next packet keeps its local port.
                let next = flags.map(|_| tcp::ACK);
                let mut f = VecFrame::new(&frame(OUT_MAC, (client, cport), (vip, vport), next));
                assert_eq!(
                    deliver(&mut pipes, &snap, first, 0, &mut f),
                    (
                        Verdict::Forward {
                            port: PortIdx::new(1)
                        },
                        owner
                    )
                );
                assert_eq!(read(f.data()).2, (local, lport));
            }
        }
        assert!(
            owners.contains(&0) && owners.contains(&1),
            "both workers own flows: {owners:?}"
        );
        // A reply to a local port no flow holds.
        let mut r = VecFrame::new(&frame(IN_MAC, (backend, bport), (local, 20031), flags));
        let (v, _) = deliver(&mut pipes, &snap, 0, 1, &mut r);
        assert_eq!(v, Verdict::Drop(DropReason::FullNatNoFlow));
    }
    // Health checks' replies to the same address still go to the slow path.
    let mut h = VecFrame::new(&frame(
        IN_MAC,
        (ip("10.1.0.11"), 8080),
        (ip("10.1.0.1"), 61000),
        Some(tcp::SYN | tcp::ACK),
    ));
    assert_eq!(
        pipes[0].process(&snap, PortIdx::new(1), &mut h),
        Verdict::SlowPath
    );
}

#[test]
fn exhaustion_refuses_with_a_reset_and_recovers_after_the_quiet_time() {
    let cfg = conf::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
    let snap = all_up(&cfg);
    let mut p = Pipeline::new(WorkerIdx::new(0), 1, 4096, 0x5eed);
    p.now_ms = 5_000;
    let syn = |cport: u16| {
        VecFrame::new(&frame(
            OUT_MAC,
            (ip("203.0.113.7"), cport),
            (ip("198.51.100.1"), 80),
            Some(tcp::SYN),
        ))
    };
    let mut ports = std::collections::HashSet::new();
    for cport in 0..64 {
        let mut f = syn(30000 + cport);
        assert_eq!(
            p.process(&snap, PortIdx::new(0), &mut f),
            Verdict::Forward {
                port: PortIdx::new(1)
            }
        );
        assert!(
            ports.insert(read(f.data()).2.1),
            "a local port handed out twice"
        );
    }
    let mut f = syn(31000);
    assert_eq!(
        p.process(&snap, PortIdx::new(0), &mut f),
        Verdict::Reply,
        "a RST for the 65th"
    );
    let data = f.data();
    assert_eq!(
        data[14 + 20 + 13] & (tcp::RST | tcp::ACK),
        tcp::RST | tcp::ACK
    );
    assert_eq!(
        (p.counters.local_ports_exhausted, p.counters.resets),
        (1, 1)
    );
    p.expire(usize::MAX, &snap.timeouts, None);
    assert_eq!(p.counters.local_ports_in_use, 64);
    // The half-open flows expire (tcp_syn: 10 s); their ports rest 1 s more.
    let t = snap.timeouts;
    p.now_ms += t.tcp_syn_ms;
    for _ in 0..4 {
        p.expire(usize::MAX, &t, None);
        p.now_ms += 1;
    }
    assert_eq!((p.flows.len(), p.counters.local_ports_in_use), (0, 0));
    let mut f = syn(31001);
    assert_eq!(
        p.process(&snap, PortIdx::new(0), &mut f),
        Verdict::Reply,
        "still resting"
    );
    p.now_ms += 1_000;
    let mut f = syn(31002);
    assert_eq!(
        p.process(&snap, PortIdx::new(0), &mut f),
        Verdict::Forward {
            port: PortIdx::new(1)
        }
    );
    assert!((20000..=20063).contains(&read(f.data()).2.1));
}

/// A new process adopts the old one's table: its pools leave out the ports the adopted pairs
/// hold, so every new flow gets a port no live pair has, the rest of the range is used to
/// the last port, and the adopted pairs keep forwarding with theirs.
#[test]
fn adopted_pairs_keep_their_ports_and_new_flows_take_the_others() {
    let cfg = conf::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
    let snap = all_up(&cfg);
    let syn = |cport: u16, flags: u8| {
        VecFrame::new(&frame(
            OUT_MAC,
            (ip("203.0.113.7"), cport),
            (ip("198.51.100.1"), 80),
            Some(flags),
        ))
    };
    let forwarded = Verdict::Forward {
        port: PortIdx::new(1),
    };
    let mut old = Pipeline::new(WorkerIdx::new(0), 1, 4096, 0x5eed);
    old.now_ms = 5_000;
    let mut adopted = std::collections::HashMap::new();
    for cport in 0..16 {
        let mut f = syn(30000 + cport, tcp::SYN);
        assert_eq!(old.process(&snap, PortIdx::new(0), &mut f), forwarded);
        adopted.insert(30000 + cport, read(f.data()).2.1);
    }
    // The next process: the same table (as `flow::persist` adopts it), new pools.
    let mut p = Pipeline::with_table(WorkerIdx::new(0), 1, old.flows, 0x5eed);
    p.now_ms = 6_000;
    let mut taken = std::collections::HashSet::new();
    for cport in 0..48 {
        let mut f = syn(31000 + cport, tcp::SYN);
        assert_eq!(
            p.process(&snap, PortIdx::new(0), &mut f),
            forwarded,
            "new flow {cport}"
        );
        let lport = read(f.data()).2.1;
        assert!(
            !adopted.values().any(|&a| a == lport) && taken.insert(lport),
            "port {lport} handed out while a live pair holds it"
        );
    }
    let mut f = syn(32000, tcp::SYN);
    assert_eq!(
        p.process(&snap, PortIdx::new(0), &mut f),
        Verdict::Reply,
        "64 ports, 64 live pairs: a RST"
    );
    assert_eq!(p.counters.local_ports_exhausted, 1);
    // The adopted flows go on from their own ports.
    for (cport, lport) in adopted {
        let mut f = syn(cport, tcp::ACK);
        assert_eq!(p.process(&snap, PortIdx::new(0), &mut f), forwarded);
        assert_eq!(read(f.data()).2.1, lport, "adopted flow {cport}");
    }
    println!("16 adopted pairs kept their ports; 48 new flows took the other 48");
}

/// `ctl which` of a FullNAT flow asks the worker, which answers with the pair's local side:
/// the local address and port the backend sees, for the client's key and the reverse key.
#[test]
fn a_flow_query_answers_the_local_address_and_port() {
    use crate::flow::FlowKey;
    use crate::worker::{FlowAnswer, FlowQuery};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let cfg = conf::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
    let snap = all_up(&cfg);
    let mut p = Pipeline::new(WorkerIdx::new(0), 1, 4096, 0x5eed);
    p.now_ms = 5_000;
    let (client, vip) = (ip("203.0.113.7"), ip("198.51.100.1"));
    let mut f = VecFrame::new(&frame(OUT_MAC, (client, 40000), (vip, 80), Some(tcp::SYN)));
    assert!(matches!(
        p.process(&snap, PortIdx::new(0), &mut f),
        Verdict::Forward { .. }
    ));
    let (_, _, (local, lport), (backend, bport)) = read(f.data());
    let want = Some(std::net::SocketAddr::new(local, lport));
    let fwd = FlowKey::v4([203, 0, 113, 7], [198, 51, 100, 1], 40000, 80, 6);
    let sm::IpAddress::Ipv4(l) = sm_addr(local) else {
        panic!("v4")
    };
    let sm::IpAddress::Ipv4(b) = sm_addr(backend) else {
        panic!("v4")
    };
    let rev = FlowKey::v4(b.octets(), l.octets(), bport, lport, 6);
    let other = FlowKey::v4([203, 0, 113, 8], [198, 51, 100, 1], 40000, 80, 6);

    let q = Arc::new(FlowQuery::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (q2, s2) = (q.clone(), stop.clone());
    let t = std::thread::spawn(move || {
        let mut done = 0;
        while !s2.load(Ordering::Relaxed) {
            q2.serve(&mut done, &p);
            std::thread::yield_now();
        }
    });
    let b1 = snap.backends[1].as_ref().unwrap().id;
    for key in [fwd, rev] {
        assert_eq!(
            q.ask(&key, Duration::from_secs(5)),
            FlowAnswer::Hit {
                backend: b1,
                local: want
            }
        );
    }
    assert_eq!(q.ask(&other, Duration::from_secs(5)), FlowAnswer::Miss);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    println!(
        "which: {client}:40000 -> {vip}:80 leaves as {}:{lport}",
        local
    );
}

/// A flow made while its service was NAT (or adopted from a table written then) and hit after
/// a reload or restart made the service FullNAT has no local side: it is made again as a
/// FullNAT pair (counted rescheduled), never dropped on every packet while the client
/// retries.
#[test]
fn an_entry_of_another_mode_is_made_again_as_a_fullnat_pair() {
    let fullnat = conf::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
    let nat_text = CONFIG.replacen(r#"forwarding = "fullnat""#, r#"forwarding = "nat""#, 1);
    let nat = conf::parse(&nat_text, std::path::Path::new("t.toml")).unwrap();
    let (snap_nat, mut snap_fullnat) = (all_up(&nat), all_up(&fullnat));
    // The reload's snapshot is a later generation (the pools follow generations).
    snap_fullnat.generation = snap_nat.generation + 1;
    let mut p = Pipeline::new(WorkerIdx::new(0), 1, 4096, 0x5eed);
    p.now_ms = 5_000;
    let (client, vip) = (ip("203.0.113.7"), ip("198.51.100.1"));
    let pkt = |flags| VecFrame::new(&frame(OUT_MAC, (client, 40000), (vip, 80), Some(flags)));
    let forwarded = Verdict::Forward {
        port: PortIdx::new(1),
    };
    let mut f = pkt(tcp::SYN);
    assert_eq!(p.process(&snap_nat, PortIdx::new(0), &mut f), forwarded);
    assert_eq!(read(f.data()).2.0, client, "NAT keeps the client's source");
    assert_eq!(p.flows.len(), 2, "a NAT pair");
    for round in 0..2 {
        let mut f = pkt(tcp::ACK);
        assert_eq!(
            p.process(&snap_fullnat, PortIdx::new(0), &mut f),
            forwarded,
            "round {round}"
        );
        let (_, _, (src, lport), _) = read(f.data());
        assert_eq!(src, ip("10.1.0.1"), "round {round}: from the local address");
        assert!((20000..=20063).contains(&lport), "round {round}: {lport}");
    }
    assert_eq!(p.counters.flows_rescheduled, 1, "made again once");
}

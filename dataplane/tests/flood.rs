//! Floods against a small flow table, through the pure pipeline (no DPDK, so it runs in
//! milliseconds): spoofed SYNs, spoofed ACKs (mid-stream pickups) and spoofed UDP datagrams,
//! half to a DSR VIP and half to a NAT VIP of `tests/golden/golden.toml`, with established
//! NAT flows (TCP and UDP) exchanging packets both ways all along.
//!
//! The table admits every new flow but a DSR SYN that finds no room (a SYN never evicts:
//! it is forwarded unrecorded, `syn_unrecorded`), and when full evicts among the 16
//! candidate slots an expired entry, else the least recently seen half-open (a NAT SYN, or a
//! pickup not yet confirmed by a second packet) or unconfirmed UDP entry, and an established one only
//! when all 16 are established (`dataplane/src/flow/`). So an established TCP flow
//! survives any TCP flood and keeps its NAT replies, and so does a UDP flow that has seen a
//! second packet (`FlowState::UdpConfirmed`), against a flood of one datagram per source.

use std::path::Path;

use dataplane::frame::VecFrame;
use dataplane::ids::{PortIdx, WorkerIdx};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::{self, tcp};
use slowpath::publish::{BackendIds, Dynamic, build};

const CAPACITY: usize = 1024;
const FLOOD: u32 = 50_000;
const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn snapshot() -> Snapshot {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/golden.toml");
    let cfg = conf::load(&path).unwrap_or_else(|e| panic!("{e}"));
    build(&cfg, &mut BackendIds::new(), &Dynamic::default(), 1)
}

/// An Ethernet/IPv4/TCP or UDP frame with right checksums.
fn frame(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let l4_len = if proto == wire::IPPROTO_TCP { 20 } else { 16 };
    let mut f = vec![0u8; 14 + 20 + l4_len];
    f[0..6].copy_from_slice(&PORT_MAC);
    f[6..12].copy_from_slice(&ROUTER_MAC);
    f[12..14].copy_from_slice(&wire::ETHERTYPE_IPV4.to_be_bytes());
    wire::ipv4::Repr {
        src,
        dst,
        protocol: proto,
        payload_len: l4_len as u16,
        ttl: 64,
        ident: 0,
    }
    .emit(&mut f[14..34])
    .expect("room");
    let seg = &mut f[34..];
    seg[0..2].copy_from_slice(&sport.to_be_bytes());
    seg[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == wire::IPPROTO_TCP {
        let mut t = wire::TcpPacket::new_unchecked(&mut *seg);
        t.set_header_len(20);
        t.set_flags(flags);
        t.set_seq_number(u32::from(sport) << 8);
        t.fill_checksum_v4(&src, &dst);
    } else {
        let mut u = wire::UdpPacket::new_unchecked(&mut *seg);
        u.set_len(l4_len as u16);
        u.fill_checksum_v4(&src, &dst);
    }
    f
}

struct Established {
    client: [u8; 4],
    sport: u16,
    udp: bool,
}

/// Runs a flood of `FLOOD` packets of one kind; returns the NAT replies lost, [TCP, UDP].
fn flood(kind: &str) -> [u64; 2] {
    let snap = snapshot();
    let mut pipe = Pipeline::new(WorkerIdx::new(0), 1, CAPACITY, 7);
    pipe.now_ms = 1_000;
    let nat_vip = [10, 0, 0, 101];
    let dsr_vip = [10, 0, 0, 100];
    let flows: Vec<Established> = (0..64)
        .map(|i| Established {
            client: [10, 1, 0, i as u8 + 1],
            sport: 20_000 + i,
            udp: i % 2 == 1,
        })
        .collect();
    let run = |pipe: &mut Pipeline, f: Vec<u8>| -> Verdict {
        let mut fr = VecFrame::new(&f);
        pipe.counters.rx += 1;
        let v = pipe.process(&snap, PortIdx::new(0), &mut fr);
        pipe.account(v);
        v
    };
    // Handshakes (TCP: SYN, SYN-ACK, ACK; UDP: a query and its answer).
    for e in &flows {
        let (proto, dport, bport, backend) = if e.udp {
            (wire::IPPROTO_UDP, 53, 5353, [10, 0, 0, 22])
        } else {
            (wire::IPPROTO_TCP, 80, 8080, [10, 0, 0, 21])
        };
        let v = run(
            &mut pipe,
            frame(e.client, nat_vip, proto, e.sport, dport, tcp::SYN),
        );
        assert_eq!(
            v,
            Verdict::Forward {
                port: PortIdx::new(0)
            }
        );
        let reply = frame(
            backend,
            e.client,
            proto,
            bport,
            e.sport,
            tcp::SYN | tcp::ACK,
        );
        assert_eq!(
            run(&mut pipe, reply),
            Verdict::Forward {
                port: PortIdx::new(0)
            }
        );
        if !e.udp {
            let v = run(
                &mut pipe,
                frame(e.client, nat_vip, proto, e.sport, dport, tcp::ACK),
            );
            assert_eq!(
                v,
                Verdict::Forward {
                    port: PortIdx::new(0)
                }
            );
        }
    }
    // [TCP, UDP]
    let mut lost = [0u64; 2];
    let mut replies = [0u64; 2];
    for i in 0..FLOOD {
        // A coarse clock, as the worker's: 1 ms per 100 packets.
        pipe.now_ms = 1_000 + i / 100;
        let src = [100, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let vip = if i % 2 == 0 || kind == "dsr-syn" {
            dsr_vip
        } else {
            nat_vip
        };
        let f = match kind {
            "syn" | "dsr-syn" => frame(
                src,
                vip,
                wire::IPPROTO_TCP,
                1024 + (i % 60_000) as u16,
                80,
                tcp::SYN,
            ),
            "ack" => frame(
                src,
                vip,
                wire::IPPROTO_TCP,
                1024 + (i % 60_000) as u16,
                80,
                tcp::ACK,
            ),
            _ => frame(
                src,
                nat_vip,
                wire::IPPROTO_UDP,
                1024 + (i % 60_000) as u16,
                53,
                0,
            ),
        };
        let v = run(&mut pipe, f);
        assert!(
            matches!(v, Verdict::Forward { .. }),
            "flood packet {i}: {v:?}"
        );
        // Established flows speak in turn, the client on even rounds and the backend on odd
        // ones (a reply never directly follows its request, so an evicted flow is not made
        // again just in time by the client's packet): a TCP flow every 25 flood packets, so
        // each replies once per 1600, far slower than the table turns over (~700 packets);
        // a UDP flow every 5, so each replies once per 320, faster than that.
        // ("udp-slow": the UDP flows as slow as the TCP ones, so only their confirmation,
        // not recency, keeps them.)
        let udp_every = if kind == "udp-slow" { 25 } else { 5 };
        for (udp, every) in [(false, 25), (true, udp_every)] {
            if i % every != every - 1 {
                continue;
            }
            let of_kind: Vec<&Established> = flows.iter().filter(|e| e.udp == udp).collect();
            let turn = (i / every) as usize;
            let e = of_kind[turn % of_kind.len()];
            let (proto, dport, bport, backend) = if e.udp {
                (wire::IPPROTO_UDP, 53, 5353, [10, 0, 0, 22])
            } else {
                (wire::IPPROTO_TCP, 80, 8080, [10, 0, 0, 21])
            };
            if (turn / of_kind.len()).is_multiple_of(2) {
                let fwd = frame(
                    e.client,
                    nat_vip,
                    proto,
                    e.sport,
                    dport,
                    tcp::ACK | tcp::PSH,
                );
                assert_eq!(
                    run(&mut pipe, fwd),
                    Verdict::Forward {
                        port: PortIdx::new(0)
                    }
                );
            } else {
                let back = frame(
                    backend,
                    e.client,
                    proto,
                    bport,
                    e.sport,
                    tcp::ACK | tcp::PSH,
                );
                replies[usize::from(udp)] += 1;
                match run(&mut pipe, back) {
                    Verdict::Forward { .. } => {}
                    Verdict::Drop(DropReason::NatNoFlow) => lost[usize::from(udp)] += 1,
                    v => panic!("reply: {v:?}"),
                }
            }
        }
        let now = pipe.now_ms;
        pipe.counters.flows_expired += pipe.flows.expire_step(now, 64, &snap.timeouts) as u64;
        assert!(pipe.flows.len() <= CAPACITY);
    }
    let c = pipe.counters;
    println!(
        "{kind} flood of {FLOOD} into {CAPACITY} entries: created {}, SYNs unrecorded {}, \
         evicted {}, expired {}, live {}; NAT replies lost: TCP {} of {}, UDP {} of {}",
        c.flows_created,
        c.syn_unrecorded,
        c.flows_evicted,
        c.flows_expired,
        pipe.flows.len(),
        lost[0],
        replies[0],
        lost[1],
        replies[1],
    );
    assert!(c.balanced(), "{c:?}");
    assert_eq!(
        c.flows_created,
        pipe.flows.len() as u64 + c.flows_evicted + c.flows_expired,
        "every entry made is live, evicted or expired"
    );
    match kind {
        "dsr-syn" => {
            // A SYN never evicts: the SYNs fill the free slots, the rest pass unrecorded.
            assert_eq!(c.flows_evicted, 0, "a DSR SYN evicted");
            assert_eq!(
                c.syn_unrecorded + (c.flows_created - 2 * 64),
                u64::from(FLOOD),
                "every SYN recorded or counted unrecorded"
            );
            assert!(c.syn_unrecorded >= u64::from(FLOOD) - CAPACITY as u64);
        }
        _ => {
            assert!(
                c.flows_evicted > u64::from(FLOOD) / 2,
                "the flood overflowed the table"
            );
            // DSR SYNs are recorded only into slots NAT evictions free (the other half).
            assert_eq!(c.syn_unrecorded > 0, kind == "syn");
        }
    }
    lost
}

#[test]
fn syn_flood_spares_established_flows() {
    assert_eq!(flood("syn"), [0, 0]);
}

#[test]
fn dsr_syn_flood_evicts_nothing() {
    assert_eq!(flood("dsr-syn"), [0, 0]);
}

#[test]
fn ack_flood_spares_established_flows() {
    // Before pickups counted as half-open, every one of these replies was lost.
    assert_eq!(flood("ack"), [0, 0]);
}

#[test]
fn udp_flood_spares_confirmed_udp_flows_that_speak_rarely() {
    // Each UDP flow replies once per 64 * 25 flood packets, far slower than the table turns
    // over: recency would not save it (it did not before confirmed UDP flows), its having
    // seen a second packet does.
    assert_eq!(flood("udp-slow"), [0, 0]);
}

#[test]
fn udp_flood_spares_active_udp_flows() {
    // Recency alone protects UDP flows: one that speaks every 64 * 25 flood packets is seen
    // more recently than most flood entries around it, which each came once.
    assert_eq!(flood("udp"), [0, 0]);
}

//! ICMP errors to a VIP go to the backend of the flow they quote: the flow table's choice
//! first (as for the flow's own packets), Maglev's without an entry; never a new entry.
//! (Pipeline behaviour over snapshots the slow path builds, so it lives here rather than
//! beside the pipeline: ids must stay stable across snapshots as they do in production.)

use dataplane::flow::{self, FlowKey};
use dataplane::frame::VecFrame;
use dataplane::hash;
use dataplane::ids::{PortIdx, WorkerIdx};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::{Choice, Snapshot};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::{
    self, IPPROTO_ICMP, IPPROTO_TCP, Icmpv4Packet, Ipv4Repr, TcpPacket, TcpRepr, checksum, tcp,
};
use slowpath::publish::{BackendIds, Dynamic, build};

const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT: [u8; 4] = [10, 0, 0, 50];
const VIP: [u8; 4] = [10, 0, 0, 100];
const NAT_VIP: [u8; 4] = [10, 0, 0, 101];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0x12];

/// The DSR service on 10.0.0.100:80 and the NAT one on 10.0.0.101:80 with the backends
/// named (a: 10.0.0.11, b: 10.0.0.12).
fn snapshot(ids: &mut BackendIds, backends: &[&str]) -> Snapshot {
    let mut text = String::from(
        "[[port]]\nname = \"p0\"\ndevice = \"net_null0\"\nmac = \"02:00:00:00:00:01\"\n\
         addresses = [\"10.0.0.2/24\"]\n",
    );
    for (svc, vip, fwd) in [("web", "10.0.0.100", "dsr"), ("nat", "10.0.0.101", "nat")] {
        text += &format!(
            "[[service]]\nname = \"{svc}\"\nvip = \"{vip}\"\nport = 80\nforwarding = \"{fwd}\"\n"
        );
        for b in backends {
            let n = if *b == "a" { 0x11 } else { 0x12 };
            text += &format!(
                "[[service.backend]]\nname = \"{b}\"\naddress = \"10.0.0.{n}\"\n\
                 mac = \"02:00:00:00:00:{n:02x}\"\n"
            );
        }
    }
    let cfg = conf::parse(&text, std::path::Path::new("test.toml")).unwrap();
    build(&cfg, ids, &Dynamic::default(), 1)
}

/// Ethernet + IPv4 + `l4` from `src` to `dst`, checksums filled.
fn ip_frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 34 + l4.len()];
    f[0..6].copy_from_slice(&PORT_MAC);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xfe]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    Ipv4Repr {
        src,
        dst,
        protocol: proto,
        payload_len: l4.len() as u16,
        ttl: 64,
        ident: 9,
    }
    .emit(&mut f[14..])
    .unwrap();
    wire::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    f[34..].copy_from_slice(l4);
    f
}

/// A TCP segment `src:sport -> dst:dport` (as an IP packet, no Ethernet).
fn tcp_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut seg = [0u8; 20];
    TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq_number: 1,
        ack_number: 0,
        flags,
        window_len: 512,
    }
    .emit(&mut seg[..])
    .unwrap();
    TcpPacket::new_unchecked(&mut seg[..]).fill_checksum_v4(&src, &dst);
    ip_frame(src, dst, IPPROTO_TCP, &seg)[14..].to_vec()
}

/// The client's SYN for `client_port -> vip:80`.
fn syn(vip: [u8; 4], client_port: u16) -> Vec<u8> {
    let mut f = ip_frame(CLIENT, vip, IPPROTO_TCP, &[0; 20]);
    f[34..].copy_from_slice(&tcp_packet(CLIENT, vip, client_port, 80, tcp::SYN)[20..]);
    f
}

/// "Fragmentation needed" from a router to `vip`, quoting 28 bytes of the VIP's reply
/// `vip:80 -> client:client_port`.
fn frag_needed(vip: [u8; 4], client_port: u16) -> Vec<u8> {
    let quoted = tcp_packet(vip, CLIENT, 80, client_port, tcp::ACK);
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&quoted[..28]);
    Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
    ip_frame([10, 0, 0, 1], vip, IPPROTO_ICMP, &icmp)
}

fn run(p: &mut Pipeline, snap: &Snapshot, bytes: &[u8]) -> (Verdict, Vec<u8>) {
    let mut f = VecFrame::new(bytes);
    let v = p.process(snap, PortIdx::new(0), &mut f);
    (v, f.to_vec())
}

/// Client ports whose new flows Maglev sends to `mac` in `snap`.
fn ports_for(snap: &Snapshot, mac: [u8; 6]) -> impl Iterator<Item = u16> + '_ {
    (40000..41000).filter(move |&cp| {
        let key = FlowKey::v4(CLIENT, VIP, cp, 80, IPPROTO_TCP);
        matches!(snap.choose(&key), Choice::Backend { backend, .. }
            if snap.backend(backend).is_some_and(|b| b.mac == mac))
    })
}

/// A full table: a DSR SYN goes to Maglev's choice without an entry (and evicts
/// nothing); the handshake's ACK then records the flow, to the same backend, evicting as
/// any new flow does. A NAT SYN is always recorded: its replies need the reverse entry.
#[test]
fn a_syn_never_evicts_and_the_ack_records_the_flow() {
    let mut ids = BackendIds::new();
    let snap = snapshot(&mut ids, &["a", "b"]);
    let cap = 64;
    let mut p = Pipeline::new(WorkerIdx::new(0), 1, cap, 7);
    // Fill the table with established DSR flows (SYN, then ACK).
    let mut cport = 1000u16;
    while p.flows.len() < cap {
        for flags in [tcp::SYN, tcp::ACK] {
            let mut f = ip_frame(CLIENT, VIP, IPPROTO_TCP, &[0; 20]);
            f[34..].copy_from_slice(&tcp_packet(CLIENT, VIP, cport, 80, flags)[20..]);
            assert!(matches!(run(&mut p, &snap, &f).0, Verdict::Forward { .. }));
        }
        cport += 1;
    }
    let filled: Vec<(FlowKey, flow::Flow)> = p.flows.iter().map(|(k, f)| (*k, *f)).collect();
    let c0 = p.counters;
    assert_eq!(c0.flows_evicted, 0);
    assert_eq!(c0.syn_unrecorded, 0);

    // 200 new clients' SYNs: each forwarded to Maglev's choice, none recorded.
    for cp in 50000..50200u16 {
        let key = FlowKey::v4(CLIENT, VIP, cp, 80, IPPROTO_TCP);
        let want = match snap.choose(&key) {
            Choice::Backend { backend, .. } => snap.backend(backend).unwrap().mac,
            c => panic!("{c:?}"),
        };
        let (v, out) = run(&mut p, &snap, &syn(VIP, cp));
        assert_eq!(
            (v, &out[0..6]),
            (
                Verdict::Forward {
                    port: PortIdx::new(0)
                },
                &want[..]
            )
        );
        assert_eq!(p.flows.lookup(&key, hash::table_hash(7, &key)), None);
    }
    let c1 = p.counters;
    assert_eq!(c1.syn_unrecorded, 200);
    assert_eq!(c1.flows_created, c0.flows_created);
    assert_eq!(c1.flows_evicted, 0);
    let now: Vec<(FlowKey, flow::Flow)> = p.flows.iter().map(|(k, f)| (*k, *f)).collect();
    assert!(now == filled, "an unrecorded SYN changed the table");

    // The first client's ACK: same backend, recorded, one entry evicted for it.
    let cp = 50000u16;
    let key = FlowKey::v4(CLIENT, VIP, cp, 80, IPPROTO_TCP);
    let (_, syn_out) = run(&mut p, &snap, &syn(VIP, cp));
    let mut ack = ip_frame(CLIENT, VIP, IPPROTO_TCP, &[0; 20]);
    ack[34..].copy_from_slice(&tcp_packet(CLIENT, VIP, cp, 80, tcp::ACK)[20..]);
    let (v, out) = run(&mut p, &snap, &ack);
    assert_eq!(
        (v, &out[0..6]),
        (
            Verdict::Forward {
                port: PortIdx::new(0)
            },
            &syn_out[0..6]
        )
    );
    assert!(p.flows.lookup(&key, hash::table_hash(7, &key)).is_some());
    assert_eq!(p.counters.flows_created, c1.flows_created + 1);
    assert_eq!(p.counters.flows_evicted, 1);
    assert_eq!(p.flows.len(), cap);

    // A NAT SYN into the full table is recorded (a pair), evicting.
    let before = p.counters;
    assert!(matches!(
        run(&mut p, &snap, &syn(NAT_VIP, 60000)).0,
        Verdict::Forward { .. }
    ));
    assert_eq!(p.counters.syn_unrecorded, before.syn_unrecorded);
    assert_eq!(p.counters.flows_created, before.flows_created + 2);
    assert!(p.counters.flows_evicted >= before.flows_evicted + 2);
}

#[test]
fn the_flow_table_wins_over_a_changed_maglev_table() {
    let mut ids = BackendIds::new();
    let only_a = snapshot(&mut ids, &["a"]);
    let a_and_b = snapshot(&mut ids, &["a", "b"]);
    let mut p = Pipeline::new(WorkerIdx::new(0), 1, 256, 7);
    // Two flows that Maglev sends to b once b exists; the first made while only a does.
    let mut to_b = ports_for(&a_and_b, MAC_B);
    let (cp, other) = (to_b.next().unwrap(), to_b.next().unwrap());
    let (v, out) = run(&mut p, &only_a, &syn(VIP, cp));
    assert_eq!(
        (v, &out[0..6]),
        (
            Verdict::Forward {
                port: PortIdx::new(0)
            },
            &MAC_A[..]
        )
    );
    assert_eq!(p.flows.len(), 1);

    // Its packets and its ICMP errors stay with a; the error is forwarded untouched
    // but for the MACs.
    let err = frag_needed(VIP, cp);
    let (v, out) = run(&mut p, &a_and_b, &err);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortIdx::new(0)
        }
    );
    assert_eq!(&out[0..6], &MAC_A);
    assert_eq!(&out[6..12], &PORT_MAC);
    assert_eq!(&out[12..], &err[12..]);

    // Without an entry, Maglev's choice (b), and no entry is made.
    let (v, out) = run(&mut p, &a_and_b, &frag_needed(VIP, other));
    assert_eq!(
        (v, &out[0..6]),
        (
            Verdict::Forward {
                port: PortIdx::new(0)
            },
            &MAC_B[..]
        )
    );
    assert_eq!(p.flows.len(), 1, "an ICMP error makes no flow");

    // a removed: its flow's packets would move to b, which never saw the connection.
    let only_b = snapshot(&mut ids, &["b"]);
    let (v, _) = run(&mut p, &only_b, &err);
    assert_eq!(v, Verdict::Drop(DropReason::IcmpErrorBackendDown));
    assert_eq!(
        p.flows.len(),
        1,
        "the entry is left to the flow's own packets"
    );
}

#[test]
fn a_nat_error_is_handed_to_the_flow_owner_and_translated_there() {
    let mut ids = BackendIds::new();
    let snap = snapshot(&mut ids, &["a"]);
    let mut workers = [
        Pipeline::new(WorkerIdx::new(0), 2, 256, 7),
        Pipeline::new(WorkerIdx::new(1), 2, 256, 7),
    ];
    let cp = 40000;
    let owner = match run(&mut workers[0], &snap, &syn(NAT_VIP, cp)).0 {
        Verdict::Handoff { worker } => worker.index(),
        _ => 0,
    };
    let (v, _) = run(&mut workers[owner], &snap, &syn(NAT_VIP, cp));
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortIdx::new(0)
        }
    );
    let err = frag_needed(NAT_VIP, cp);
    let (v, out) = run(&mut workers[1 - owner], &snap, &err);
    assert_eq!(
        v,
        Verdict::Handoff {
            worker: WorkerIdx::new(owner as u16)
        }
    );
    assert_eq!(out, err, "handed over untouched");
    let (v, out) = run(&mut workers[owner], &snap, &err);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortIdx::new(0)
        }
    );
    // Outer destination and quoted source are the backend; every checksum verifies.
    let backend = [10, 0, 0, 0x11];
    let ip = wire::Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.dst_addr(), backend);
    let icmp = Icmpv4Packet::new_checked(&out[34..]).unwrap();
    assert!(icmp.verify_checksum());
    let quoted = &out[42..];
    assert_eq!(&quoted[12..16], &backend);
    assert_eq!(
        checksum::ipv4_header(&quoted[..20]).to_be_bytes(),
        [quoted[10], quoted[11]],
        "quoted IPv4 header checksum"
    );
    assert_eq!(
        &quoted[20..22],
        &80u16.to_be_bytes(),
        "port kept: the backend has none"
    );
}

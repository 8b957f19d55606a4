//! A client that reuses a closed connection's addresses and ports (a busy client, or many
//! behind one NAT, within the closing timeout) opens a new connection: placed as any new
//! one is, by Maglev's choice now (so never on a draining backend), with an entry (and, for
//! NAT, a reverse half) of its own. A SYN on a half-open entry is a retransmission and keeps
//! its backend, draining or not. And an entry another forwarding mode made (before a
//! reload changed the service's mode) is made again as the service's mode needs.

use super::*;
use crate::flow::{FlowKey, FlowState};
use crate::frame::VecFrame;
use crate::hash;
use crate::ids::{BackendId, PortIdx, WorkerIdx};
use crate::maglev;
use crate::snapshot::{BackendState, all_up};
use crate::wire::tcp;

use super::fast_path_tests::{CONFIG, tcp4};

const CLIENT: [u8; 4] = [203, 0, 113, 9];
/// Service "dsr" (port 80) and service "nat-any" (every port).
const DSR_VIP: [u8; 4] = [198, 51, 100, 1];
const NAT_VIP: [u8; 4] = [198, 51, 100, 2];

/// A TCP segment `src:sport -> dst:dport` with `flags`, to port `to` (0: from clients; 1:
/// from backends).
fn segment(to: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> VecFrame {
    VecFrame::new(&tcp4(to, (src, sport), (dst, dport), flags, 0))
}

/// Service `si`'s snapshot with backend `id` draining: it keeps its flows, and the
/// service's Maglev table has only the others (as the slow path publishes a drain).
fn draining(cfg: &conf::Config, si: usize, id: BackendId) -> Snapshot {
    let mut snap = all_up(cfg);
    snap.backends[id.index()].as_mut().unwrap().state = BackendState::Drain;
    let members: Vec<BackendId> = snap.services[si]
        .members
        .iter()
        .copied()
        .filter(|m| *m != id)
        .collect();
    let table = {
        let mm: Vec<maglev::Member> = members
            .iter()
            .map(|m| {
                let b = snap.backend(*m).unwrap();
                maglev::Member {
                    key: b.name.as_bytes(),
                    weight: b.weight,
                }
            })
            .collect();
        maglev::Table::build(&mm, snap.services[si].maglev.size(), snap.seed)
    };
    let svc = &mut snap.services[si];
    svc.members = members.into();
    svc.maglev = table;
    snap
}

/// A client's segment through the pipeline under `snap`: the backend it was sent to (by
/// destination MAC), or the verdict when it was not forwarded.
fn send(pipe: &mut Pipeline, snap: &Snapshot, mut f: VecFrame) -> Result<BackendId, Verdict> {
    match pipe.process(snap, PortIdx::new(0), &mut f) {
        Verdict::Forward { .. } => {
            let mac: [u8; 6] = f.data()[0..6].try_into().unwrap();
            Ok(snap
                .backends
                .iter()
                .flatten()
                .find(|b| b.mac == mac)
                .map(|b| b.id)
                .expect("a backend's MAC"))
        }
        v => Err(v),
    }
}

/// A client's flow to service `name` at `vip`:`dport`: a port Maglev places on the
/// service's first backend (`old`), the snapshots with that backend up and draining, and
/// a fresh pipeline.
struct Case {
    sport: u16,
    old: BackendId,
    up: Snapshot,
    drained: Snapshot,
    pipe: Pipeline,
}

impl Case {
    fn new(name: &str, vip: [u8; 4], dport: u16) -> Case {
        let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
        let up = all_up(&cfg);
        let si = up.services.iter().position(|s| s.name == name).unwrap();
        let old = up.services[si].members[0];
        let sport = (40000..41000)
            .find(|p| {
                let k = FlowKey::v4(CLIENT, vip, *p, dport, IPPROTO_TCP);
                up.services[si].pick_new(up.seed, &k) == Some(old)
            })
            .expect("a port placed on the first backend");
        Case {
            sport,
            old,
            drained: draining(&cfg, si, old),
            up,
            pipe: Pipeline::new(WorkerIdx::new(0), 1, 1024, 7),
        }
    }
}

#[test]
fn a_syn_on_a_closed_dsr_flow_is_a_new_connection() {
    let mut c = Case::new("dsr", DSR_VIP, 80);
    let seg = |flags| segment(0, CLIENT, DSR_VIP, c.sport, 80, flags);

    // A connection to the first backend, which then drains: its packets, its FIN, still go there.
    assert_eq!(send(&mut c.pipe, &c.up, seg(tcp::SYN)), Ok(c.old));
    assert_eq!(send(&mut c.pipe, &c.up, seg(tcp::ACK)), Ok(c.old));
    assert_eq!(
        send(&mut c.pipe, &c.drained, seg(tcp::ACK | tcp::PSH)),
        Ok(c.old)
    );
    assert_eq!(
        send(&mut c.pipe, &c.drained, seg(tcp::FIN | tcp::ACK)),
        Ok(c.old)
    );
    assert_eq!(
        send(&mut c.pipe, &c.drained, seg(tcp::ACK)),
        Ok(c.old),
        "the last ACK"
    );
    assert_eq!(c.pipe.counters.flows_created, 1);

    // The same ports again, within the closing timeout: a new connection, on the pool.
    let new = send(&mut c.pipe, &c.drained, seg(tcp::SYN)).unwrap();
    assert_ne!(new, c.old, "a new connection to a draining backend");
    assert_eq!(c.pipe.counters.flows_reopened, 1);
    assert_eq!(c.pipe.counters.flows_rescheduled, 0, "not a backend gone");
    assert_eq!(c.pipe.counters.flows_created, 2, "an entry of its own");
    assert_eq!(c.pipe.counters.flows_expired, 1, "the closed one's, ended");
    assert_eq!(send(&mut c.pipe, &c.drained, seg(tcp::ACK)), Ok(new));
    assert_eq!(
        send(&mut c.pipe, &c.drained, seg(tcp::ACK | tcp::PSH)),
        Ok(new)
    );
    // ... established, not closing: its entry lives the established timeout.
    let k = FlowKey::v4(CLIENT, DSR_VIP, c.sport, 80, IPPROTO_TCP);
    let idx = c
        .pipe
        .flows
        .lookup(&k, hash::table_hash(c.pipe.local_seed, &k))
        .expect("recorded");
    assert_eq!(c.pipe.flows.get(idx).state, FlowState::TcpEstablished);
    assert_eq!(c.pipe.flows.len(), 1);
    println!(
        "reused ports: first connection on {:?}, the second on {new:?} (flows_reopened {})",
        c.old, c.pipe.counters.flows_reopened
    );
}

#[test]
fn a_retransmitted_syn_keeps_its_draining_backend() {
    let mut c = Case::new("dsr", DSR_VIP, 80);
    let seg = |flags| segment(0, CLIENT, DSR_VIP, c.sport, 80, flags);

    assert_eq!(send(&mut c.pipe, &c.up, seg(tcp::SYN)), Ok(c.old));
    // The backend drains before the handshake completes: the SYN's retransmission and
    // the handshake stay with it (drain keeps every flow it has).
    assert_eq!(send(&mut c.pipe, &c.drained, seg(tcp::SYN)), Ok(c.old));
    assert_eq!(send(&mut c.pipe, &c.drained, seg(tcp::ACK)), Ok(c.old));
    // A SYN on an established entry is no new connection either (a spoofed one must not
    // move a live connection).
    assert_eq!(send(&mut c.pipe, &c.drained, seg(tcp::SYN)), Ok(c.old));
    assert_eq!(c.pipe.counters.flows_reopened, 0);
    assert_eq!(c.pipe.counters.flows_created, 1);
}

#[test]
fn a_syn_on_a_closed_nat_flow_gets_a_new_pair() {
    let mut c = Case::new("nat-any", NAT_VIP, 8080);
    let seg = |flags| segment(0, CLIENT, NAT_VIP, c.sport, 8080, flags);
    // A backend's reply, as it would be sent to the client.
    let reply = |snap: &Snapshot, b: BackendId, flags| {
        let addr = match snap.backend(b).unwrap().addr {
            std::net::IpAddr::V4(a) => a.octets(),
            a => panic!("{a}"),
        };
        segment(1, addr, CLIENT, 8080, c.sport, flags)
    };

    assert_eq!(send(&mut c.pipe, &c.up, seg(tcp::SYN)), Ok(c.old));
    assert_eq!(
        send(&mut c.pipe, &c.up, seg(tcp::FIN | tcp::ACK)),
        Ok(c.old)
    );
    assert_eq!(c.pipe.flows.len(), 2, "a pair");

    let new = send(&mut c.pipe, &c.drained, seg(tcp::SYN)).unwrap();
    assert_ne!(new, c.old);
    assert_eq!(c.pipe.counters.flows_reopened, 1);
    assert_eq!(c.pipe.flows.len(), 2, "the old pair gone, a new one made");
    assert_eq!(c.pipe.counters.flows_created, 4);
    assert_eq!(c.pipe.counters.flows_expired, 2, "the closed pair, ended");

    // The new backend's reply goes back to the client from the VIP; the old one's is no
    // flow's any more.
    let mut r = reply(&c.drained, new, tcp::SYN | tcp::ACK);
    assert!(matches!(
        c.pipe.process(&c.drained, PortIdx::new(1), &mut r),
        Verdict::Forward { .. }
    ));
    assert_eq!(&r.data()[26..30], &NAT_VIP, "source rewritten to the VIP");
    assert_eq!(&r.data()[30..34], &CLIENT);
    let mut r = reply(&c.drained, c.old, tcp::ACK);
    assert!(
        !matches!(
            c.pipe.process(&c.drained, PortIdx::new(1), &mut r),
            Verdict::Forward { .. }
        ),
        "the closed connection's backend has no flow here"
    );
}

/// A reload that makes a DSR service NAT: an established flow's DSR entry (no reverse half)
/// is made again as a NAT pair at its next packet (counted rescheduled), so the backend's
/// answer (for a connection it never saw: a RST) reaches the client at once; with the DSR
/// entry kept, every reply was dropped as `nat_no_flow` until the client timed out.
#[test]
fn a_dsr_entry_under_a_nat_service_is_made_again_as_a_pair() {
    let mut c = Case::new("nat-any", NAT_VIP, 8080);
    let si =
        c.up.services
            .iter()
            .position(|s| s.name == "nat-any")
            .unwrap();
    let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
    let mut dsr = all_up(&cfg);
    dsr.services[si].forwarding = conf::Forwarding::Dsr;
    let seg = |flags| segment(0, CLIENT, NAT_VIP, c.sport, 8080, flags);

    assert_eq!(send(&mut c.pipe, &dsr, seg(tcp::SYN)), Ok(c.old));
    assert_eq!(send(&mut c.pipe, &dsr, seg(tcp::ACK)), Ok(c.old));
    assert_eq!(c.pipe.flows.len(), 1, "a DSR entry");

    // The service is NAT now: the flow's next packet makes a pair, to Maglev's choice.
    assert_eq!(
        send(&mut c.pipe, &c.up, seg(tcp::ACK | tcp::PSH)),
        Ok(c.old)
    );
    assert_eq!(c.pipe.counters.flows_rescheduled, 1);
    assert_eq!(c.pipe.counters.flows_reopened, 0);
    assert_eq!(c.pipe.flows.len(), 2, "a NAT pair");
    let addr = match c.up.backend(c.old).unwrap().addr {
        std::net::IpAddr::V4(a) => a.octets(),
        a => panic!("{a}"),
    };
    let mut r = segment(1, addr, CLIENT, 8080, c.sport, tcp::RST | tcp::ACK);
    assert!(matches!(
        c.pipe.process(&c.up, PortIdx::new(1), &mut r),
        Verdict::Forward { .. }
    ));
    assert_eq!(
        &r.data()[26..30],
        &NAT_VIP,
        "the backend's RST, from the VIP"
    );
    // And a pair stays a pair: the next packet is a plain hit.
    assert_eq!(send(&mut c.pipe, &c.up, seg(tcp::ACK)), Ok(c.old));
    assert_eq!(c.pipe.counters.flows_rescheduled, 1);
}

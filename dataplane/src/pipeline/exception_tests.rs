//! Instance sync on the worker's side: a flow-table miss of a packet that opens nothing goes
//! to the backend a peer told of (when it still takes flows), a SYN to Maglev's choice; the
//! expiry sweep finds exactly the flows whose backend is not Maglev's choice now.

use std::sync::Arc;

use super::*;
use crate::exceptions::{Exception, ExceptionCell, ExceptionTable};
use crate::flow::{Flow, FlowKey, FlowState};
use crate::frame::VecFrame;
use crate::ids::{BackendId, PortIdx, ServiceIdx, WorkerIdx};
use crate::wire::tcp;

use super::fast_path_tests::{CONFIG, tcp4};

const CLIENT: [u8; 4] = [203, 0, 113, 9];
const VIP: [u8; 4] = [198, 51, 100, 1];

fn tcp_frame(sport: u16, flags: u8) -> Vec<u8> {
    tcp4(0, (CLIENT, sport), (VIP, 80), flags, 0)
}

fn key(sport: u16) -> FlowKey {
    FlowKey::v4(CLIENT, VIP, sport, 80, IPPROTO_TCP)
}

/// The backend a frame was forwarded to, by its destination MAC.
fn sent_to(snap: &Snapshot, f: &VecFrame) -> BackendId {
    let mac: [u8; 6] = f.data()[0..6].try_into().unwrap();
    snap.backends
        .iter()
        .flatten()
        .find(|b| b.mac == mac)
        .map(|b| b.id)
        .expect("a backend's MAC")
}

/// Service "dsr" has backends a and b (ids 1 and 2 in `all_up`): for a flow, the other one
/// is never Maglev's choice.
fn other(snap: &Snapshot, k: &FlowKey) -> BackendId {
    let chosen = snap.services[0].pick_new(snap.seed, k).unwrap();
    if chosen == BackendId::new(1) {
        BackendId::new(2)
    } else {
        BackendId::new(1)
    }
}

#[test]
fn a_miss_mid_stream_takes_the_peers_backend_a_syn_takes_maglevs() {
    let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
    let snap = crate::snapshot::all_up(&cfg);
    let mut pipe = Pipeline::new(WorkerIdx::new(0), 1, 1024, 7);
    let cell = Arc::new(ExceptionCell::default());
    pipe.exceptions = cell.clone();
    let (moved, fresh) = (key(40000), key(40001));
    let peer_choice = other(&snap, &moved);
    cell.swap(ExceptionTable::build(
        &[
            Exception {
                key: moved,
                backend: peer_choice,
                peer: 0,
            },
            Exception {
                key: fresh,
                backend: other(&snap, &fresh),
                peer: 0,
            },
        ],
        3,
    ));

    // The moved connection's next packet (an ACK) misses the flow table: the peer's backend.
    let mut f = VecFrame::new(&tcp_frame(40000, tcp::ACK));
    assert!(matches!(
        pipe.process(&snap, PortIdx::new(0), &mut f),
        Verdict::Forward { .. }
    ));
    assert_eq!(sent_to(&snap, &f), peer_choice);
    assert_eq!(pipe.counters.exceptions_used, 1);
    // ... and it is recorded: the next packet is a hit, to the same backend.
    let mut f = VecFrame::new(&tcp_frame(40000, tcp::ACK | tcp::PSH));
    pipe.process(&snap, PortIdx::new(0), &mut f);
    assert_eq!(sent_to(&snap, &f), peer_choice);
    assert_eq!(pipe.counters.exceptions_used, 1);

    // A SYN of a key a peer told of is a new connection: Maglev's choice.
    let mut f = VecFrame::new(&tcp_frame(40001, tcp::SYN));
    pipe.process(&snap, PortIdx::new(0), &mut f);
    assert_eq!(
        sent_to(&snap, &f),
        snap.services[0].pick_new(snap.seed, &fresh).unwrap()
    );
    assert_eq!(pipe.counters.exceptions_used, 1);

    // A peer's backend that no longer takes flows here is ignored: Maglev's choice.
    let mut down = crate::snapshot::all_up(&cfg);
    down.backends[peer_choice.index()].as_mut().unwrap().state =
        crate::snapshot::BackendState::Down;
    let mut pipe2 = Pipeline::new(WorkerIdx::new(0), 1, 1024, 7);
    pipe2.exceptions = cell;
    let mut f = VecFrame::new(&tcp_frame(40000, tcp::ACK));
    pipe2.process(&down, PortIdx::new(0), &mut f);
    assert_ne!(sent_to(&down, &f), peer_choice);
    assert_eq!(pipe2.counters.exceptions_used, 0);
}

#[test]
fn without_exceptions_a_miss_is_maglevs() {
    let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
    let snap = crate::snapshot::all_up(&cfg);
    let mut pipe = Pipeline::new(WorkerIdx::new(0), 1, 1024, 7);
    let mut f = VecFrame::new(&tcp_frame(40000, tcp::ACK));
    pipe.process(&snap, PortIdx::new(0), &mut f);
    assert_eq!(
        sent_to(&snap, &f),
        snap.services[0].pick_new(snap.seed, &key(40000)).unwrap()
    );
    assert_eq!(pipe.counters.exceptions_used, 0);
}

#[test]
fn the_sweep_finds_exactly_the_exceptions() {
    let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
    let snap = crate::snapshot::all_up(&cfg);
    let k = key(40000);
    let maglev = snap.services[0].pick_new(snap.seed, &k).unwrap();
    let off = other(&snap, &k);
    let flow = |state, backend| Flow::new(state, ServiceIdx::new(0), backend);
    // On Maglev's choice: nothing to tell.
    assert_eq!(
        exception_of(&snap, &k, &flow(FlowState::TcpEstablished, maglev)),
        None
    );
    // Elsewhere, established: an exception; closing: an exception peers may forget.
    let r = exception_of(&snap, &k, &flow(FlowState::TcpEstablished, off)).unwrap();
    assert_eq!((r.key, r.backend, r.closing), (k, off, false));
    assert!(
        exception_of(&snap, &k, &flow(FlowState::TcpClosing, off))
            .unwrap()
            .closing
    );
    // Half-open (a flood's), a NAT pair's reverse half, a backend gone: never.
    assert_eq!(
        exception_of(&snap, &k, &flow(FlowState::TcpSynSeen, off)),
        None
    );
    let mut rev = flow(FlowState::TcpEstablished, off);
    rev.flags = crate::flow::FLAG_REVERSE;
    assert_eq!(exception_of(&snap, &k, &rev), None);
    assert_eq!(
        exception_of(
            &snap,
            &k,
            &flow(FlowState::TcpEstablished, BackendId::new(99))
        ),
        None
    );

    // Through the sweep hook: a table of two flows, one on Maglev's choice, reports one.
    let mut t = crate::flow::FlowTable::with_capacity(1024);
    let timeouts = crate::flow::Timeouts::default();
    let k2 = key(40002);
    let m2 = snap.services[0].pick_new(snap.seed, &k2).unwrap();
    t.insert(k, 1, flow(FlowState::TcpEstablished, off), 0, &timeouts)
        .unwrap();
    t.insert(k2, 2, flow(FlowState::TcpEstablished, m2), 0, &timeouts)
        .unwrap();
    struct Found<'a>(&'a Snapshot, Vec<crate::exceptions::Report>);
    impl crate::flow::SweepVisitor for Found<'_> {
        fn kept(&mut self, key: &FlowKey, f: &Flow) {
            self.1.extend(exception_of(self.0, key, f))
        }
    }
    let mut v = Found(&snap, Vec::new());
    t.expire_step_with(1, 2048, &timeouts, &mut v);
    let found = v.1;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, k);
}

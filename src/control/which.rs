//! `ctl which`: where a flow goes, asked of the workers that may hold it, else computed from
//! the running snapshot as a new flow's; [`new_flow`] is also offline `fulcrum which`'s answer.

use dataplane::engine::Engine;
use dataplane::snapshot::{BackendRt, Choice, Tier};
use dataplane::worker::FlowAnswer;
use fulcrum::api::{Encap, WhichReply, WorkerAnswer};
use fulcrum::flowspec;
use slowpath::SlowPath;
use std::time::Duration;

use super::{ControlError, snapshot};

/// Where a flow goes: to its flow-table entry's backend if a worker holds one that may keep
/// it (each worker is asked through its lock-free question box), else where the running
/// snapshot sends a new flow (real health and admin states).
pub(super) fn which(
    engine: &Engine,
    slow: &SlowPath,
    flow: &str,
) -> Result<WhichReply, ControlError> {
    let cfg = slow.config();
    let flow = flowspec::parse_flow(flow)?;
    // A peer's exception for this flow (instance sync), when its backend is this one.
    let from_peer = |b: &BackendRt| {
        slow.sync_learnt(&flow.key)
            .filter(|(_, addr, port)| *addr == b.addr && *port == b.port)
            .map(|(peer, _, _)| peer.to_string())
    };
    let snap = snapshot(engine);
    let mut workers = Vec::new();
    let mut hit = None;
    for (i, q) in engine.queries().iter().enumerate() {
        let answer = |flow_table: &str| WorkerAnswer {
            worker: i,
            flow_table: flow_table.into(),
            backend: None,
            backend_id: None,
        };
        workers.push(match q.ask(&flow.key, Duration::from_millis(200)) {
            FlowAnswer::Hit { backend: id, local } => {
                let b = snap.backend(id);
                if hit.is_none() && b.is_some_and(|b| b.keeps_flows()) {
                    hit = Some((i, id, local));
                }
                WorkerAnswer {
                    backend: b.map(|b| b.name.clone()),
                    backend_id: Some(id.get()),
                    ..answer("hit")
                }
            }
            FlowAnswer::Miss => answer("miss"),
            FlowAnswer::NoAnswer => answer("no answer"),
        });
    }
    // A hit; else a peer's exception (the workers consult them on a miss before Maglev).
    let held = hit
        .and_then(|(w, id, local)| Some((Some(w), snap.backend(id)?, local)))
        .or_else(|| {
            let id = engine.exceptions().lookup(&flow.key)?.backend;
            Some((None, snap.backend(id).filter(|b| b.keeps_flows())?, None))
        });
    if let Some((worker, b, local)) = held {
        let peer = from_peer(b);
        if worker.is_some() || peer.is_some() {
            let at = worker.map_or("exception (not Maglev's choice)".into(), |w| {
                format!("flow table hit on worker {w}")
            });
            let reason = peer
                .as_ref()
                .map_or(at.clone(), |p| format!("{at}, backend from peer {p}"));
            return Ok(WhichReply {
                reason,
                from_peer: peer,
                flow: flow.text,
                service: snap.services.get(b.service.index()).map(|s| s.name.clone()),
                backend: Some(b.name.clone()),
                slot: None,
                tier: None,
                backend_address: Some(b.addr.to_string()),
                port: out_port(&snap, b),
                next_hop: next_hop(cfg, b),
                worker,
                workers,
                generation: Some(snap.generation),
                assumed: None,
                encap: encap(&snap, b, &flow.key),
                local: local.map(|a| a.to_string()),
            });
        }
    }
    let mut reply = new_flow(&snap, cfg, flow.text, &flow.key);
    reply.workers = workers;
    Ok(reply)
}

/// Where `snap` sends a new flow, and why (also `fulcrum which`'s answer).
pub fn new_flow(
    snap: &dataplane::snapshot::Snapshot,
    cfg: &conf::Config,
    text: String,
    key: &dataplane::flow::FlowKey,
) -> WhichReply {
    let name =
        |s: dataplane::snapshot::ServiceIdx| snap.services.get(s.index()).map(|s| s.name.clone());
    let mut chosen = None;
    let (service, backend, slot, tier, reason) = match snap.choose(key) {
        Choice::NoService => (None, None, None, None, "no service"),
        Choice::Empty { service } => (name(service), None, None, None, "empty pool"),
        Choice::Backend {
            service,
            backend,
            slot,
            tier,
        } => (
            name(service),
            snap.backend(backend).map(|b| {
                chosen = Some(b);
                b.name.clone()
            }),
            Some(slot),
            Some(tier.as_str().to_string()),
            if tier == Tier::Backup {
                "maglev slot, backup tier"
            } else {
                "maglev slot"
            },
        ),
    };
    WhichReply {
        flow: text,
        service,
        backend,
        reason: reason.into(),
        slot,
        tier,
        backend_address: chosen.map(|b| b.addr.to_string()),
        port: chosen.and_then(|b| out_port(snap, b)),
        next_hop: chosen.and_then(|b| next_hop(cfg, b)),
        worker: None,
        workers: Vec::new(),
        generation: Some(snap.generation),
        assumed: None,
        encap: chosen.and_then(|b| encap(snap, b, key)),
        from_peer: None,
        local: chosen.and_then(|b| new_flow_local(snap, b)),
    }
}

/// A FullNAT backend's new flow: the local addresses its port is taken from, and the range
/// (`10.0.0.2 (a port of 1024-32767)`); `None` for any other mode.
fn new_flow_local(snap: &dataplane::snapshot::Snapshot, b: &BackendRt) -> Option<String> {
    if b.locals.is_empty() {
        return None;
    }
    let addrs: Vec<String> = b
        .locals
        .iter()
        .map(|a| std::net::IpAddr::from(*a).to_string())
        .collect();
    let r = &snap.fullnat.ports;
    Some(format!(
        "{} (a port of {}-{})",
        addrs.join(" or "),
        r.start(),
        r.end()
    ))
}

/// The name of the port a backend's frames leave from.
fn out_port(snap: &dataplane::snapshot::Snapshot, b: &BackendRt) -> Option<String> {
    snap.ports.get(b.out_port.index()).map(|p| p.name.clone())
}

/// The neighbour a backend's frames go to ([`conf::Config::route`]).
fn next_hop(cfg: &conf::Config, b: &BackendRt) -> Option<String> {
    cfg.route(b.addr).map(|p| p.next_hop.to_string())
}

/// The outer headers of `key`'s packets to backend `b`, when its service is a tunnel: the
/// worker's own values (GUE's source port from the same function).
fn encap(
    snap: &dataplane::snapshot::Snapshot,
    b: &dataplane::snapshot::BackendRt,
    key: &dataplane::flow::FlowKey,
) -> Option<Encap> {
    let t = b.tunnel.as_ref()?;
    let gue = t.gue_port();
    Some(Encap {
        mode: t.mode().as_str().into(),
        src: t.src().to_string(),
        dst: t.dst().to_string(),
        sport: gue.map(|_| dataplane::tunnel::gue_source_port(snap.seed, key)),
        dport: gue,
    })
}

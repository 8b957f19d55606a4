//! Building a snapshot: what the control plane knows ([`Dynamic`]) and the config decide each
//! backend's state, MAC and weight, and which backends take new flows; the services' Maglev
//! tables are built over those; the dataplane's [`Snapshot::new`] adds its lookup indexes.

use std::collections::HashMap;
use std::net::IpAddr;

use conf::{AdminState, Config};
use dataplane::flow::Timeouts;
use dataplane::snapshot::{
    BackendId, BackendRt, BackendState, PortIdx, PortRt, ServiceIdx, ServiceRt, Snapshot, Tier,
    addr_key,
};
use dataplane::tunnel::Tunnel;

use super::BackendIds;
use super::tables::{Prepared, Tables};
use crate::health::Health;

/// What the control plane knows beyond the config file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dynamic {
    /// The MAC of each data port, as DPDK reports it (index = port index).
    pub port_macs: Vec<[u8; 6]>,
    /// Health of each backend; a backend with no entry counts as up (no check configured).
    pub health: HashMap<BackendId, Health>,
    /// Operator overrides of the config's admin state (`ctl drain|enable|disable`).
    pub admin: HashMap<BackendId, AdminState>,
    /// Neighbours learnt by ARP/ND.
    pub neighbors: HashMap<IpAddr, [u8; 6]>,
    /// Weights set by an agent, in percent of the configured weight (no entry: 100%).
    pub weight_pct: HashMap<BackendId, u32>,
    /// This node is the VRRP master (`ctl vrrp master`): the VIPs of `announce = "vrrp"`
    /// services are answered by ARP/ND. False at start: a node starts as backup.
    pub vrrp_master: bool,
}

/// Builds a complete snapshot from a validated config and the dynamic state; backends new to
/// `ids` get their ids here.
pub fn build(cfg: &Config, ids: &mut BackendIds, dynamic: &Dynamic, generation: u64) -> Snapshot {
    build_with(cfg, ids, dynamic, generation, &Tables::default()).0
}

/// Builds as [`build`] does, taking from `tables` every Maglev table it offers for the same
/// members, size and seed; says how many it took.
pub fn build_with(
    cfg: &Config,
    ids: &mut BackendIds,
    dynamic: &Dynamic,
    generation: u64,
    tables: &Tables,
) -> (Snapshot, usize) {
    let mut reused = 0;
    let seed = cfg.global.hash_seed;
    let ports: Vec<PortRt> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mac = p
                .mac
                .map(|m| m.0)
                .or_else(|| dynamic.port_macs.get(i).copied())
                .unwrap_or([0; 6]);
            PortRt::new(p.name.clone(), mac, p.mtu, p.addresses.clone())
        })
        .collect();

    let mut backends: Vec<Option<BackendRt>> = Vec::new();
    let mut services = Vec::with_capacity(cfg.services.len());
    for (si, s) in cfg.services.iter().enumerate() {
        let mut ids_of = Vec::with_capacity(s.backends.len());
        for b in &s.backends {
            let id = ids.get(&s.name, &b.name);
            // Validation leaves no backend without a route; the fallbacks only keep a bug
            // from panicking.
            let path = cfg.route(b.address);
            let out_port = path.map_or(0, |p| p.port);
            // Frames go to the next hop: the backend on-link, else its gateway.
            let next_hop = path.map_or(b.address, |p| p.next_hop);
            let mac = b
                .mac
                .map(|m| m.0)
                .or_else(|| dynamic.neighbors.get(&next_hop).copied())
                .or_else(|| {
                    cfg.ports
                        .iter()
                        .flat_map(|p| p.neighbors.iter())
                        .find(|(ip, _)| *ip == next_hop)
                        .map(|(_, m)| m.0)
                });
            let admin = dynamic.admin.get(&id).copied().unwrap_or(b.admin);
            let health = dynamic.health.get(&id).copied().unwrap_or(Health::Up);
            // An agent's "0%" takes no new flows, like a drain.
            let pct = dynamic.weight_pct.get(&id).copied().unwrap_or(100);
            let weight = (u64::from(b.weight) * u64::from(pct) / 100)
                .clamp(1, u64::from(*conf::Backend::WEIGHT_RANGE.end()))
                as u32;
            let out_mtu = ports
                .get(out_port)
                .map_or(conf::Port::DEFAULT_MTU, |p| p.mtu);
            let tunnel = Tunnel::of_backend(cfg, s, b);
            if backends.len() <= id.index() {
                backends.resize(id.index() + 1, None);
            }
            backends[id.index()] = Some(BackendRt {
                id,
                service: ServiceIdx::new(si as u16),
                name: b.name.clone(),
                addr: b.address,
                addr_key: addr_key(b.address),
                port: b.port,
                weight,
                backup: b.backup,
                mac: mac.unwrap_or([0; 6]),
                out_port: PortIdx::new(out_port as u8),
                out_mac: ports.get(out_port).map_or([0; 6], |p| p.mac),
                out_mtu,
                max_ip_len: BackendRt::max_ip_len_of(out_mtu, tunnel.as_ref()),
                nat_delta: BackendRt::nat_delta_of(s.vip, b.address),
                state: state(admin, health, mac.is_some(), pct),
                tunnel,
                locals: dataplane::snapshot::fullnat_locals(cfg, s, b),
            });
            ids_of.push(id);
        }
        let (tier, members) = pool(&ids_of, &backends);
        let of_members: Vec<&BackendRt> = members
            .iter()
            .map(|id| backends[id.index()].as_ref().expect("member"))
            .collect();
        let (maglev, taken) =
            tables.table(&s.name, &of_members, cfg.global.maglev_table_size, seed);
        reused += usize::from(taken);
        let mut rt = ServiceRt::new(s, ids_of, members, tier, maglev);
        if s.announce == conf::Announce::Vrrp {
            rt.answers_neighbor = dynamic.vrrp_master;
        }
        services.push(rt);
    }
    let timeouts = Timeouts::from(&cfg.global.timeouts);
    let snap = Snapshot::new(generation, seed, timeouts, ports, services, backends)
        .with_fullnat(&cfg.global.fullnat);
    (snap, reused)
}

/// Builds, on any thread, the Maglev tables `cfg`'s snapshot will need if the state stays as
/// `dynamic` has it (`ids`: a copy of the publisher's). A build that gets them through
/// [`Tables::add_prepared`] computes only the tables whose pools changed since.
pub fn prepare(cfg: &Config, mut ids: BackendIds, dynamic: &Dynamic) -> Prepared {
    Prepared::of(build(cfg, &mut ids, dynamic, 0))
}

/// A backend's state from its admin state (config or operator), its health, whether its MAC
/// is known, and its agent's weight percentage.
fn state(admin: AdminState, health: Health, resolved: bool, pct: u32) -> BackendState {
    match (admin, health, resolved) {
        (AdminState::Disabled, _, _) | (_, Health::Maint, _) => BackendState::Maint,
        (_, Health::Down, _) => BackendState::Down,
        (_, _, false) => BackendState::Unresolved,
        (AdminState::Drain, _, _) | (_, Health::Drain, _) => BackendState::Drain,
        _ if pct == 0 => BackendState::Drain,
        (AdminState::Enabled, Health::Up, true) => BackendState::Up,
    }
}

/// Which backends of a service (`ids`, config order) take new flows: the usable primaries;
/// the usable backups only while no primary is usable.
fn pool(ids: &[BackendId], backends: &[Option<BackendRt>]) -> (Tier, Vec<BackendId>) {
    let usable = |backup: bool| -> Vec<BackendId> {
        ids.iter()
            .copied()
            .filter(|id| {
                let b = backends[id.index()].as_ref().expect("just inserted");
                b.backup == backup && b.state == BackendState::Up
            })
            .collect()
    };
    let primaries = usable(false);
    if !primaries.is_empty() {
        return (Tier::Primary, primaries);
    }
    let backups = usable(true);
    if backups.is_empty() {
        (Tier::Empty, backups)
    } else {
        (Tier::Backup, backups)
    }
}

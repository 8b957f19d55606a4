//! The immutable picture the workers forward by: services, their Maglev tables, backends with
//! their state and next hop, the balancer's own addresses.
//!
//! This is the read side: the control plane (the slow path's `publish`) decides every
//! backend's state, builds the services' Maglev tables and hands the parts to
//! [`Snapshot::new`], which adds the lookup indexes; it publishes the result with one atomic
//! pointer swap ([`SnapshotCell`]); a worker loads it once per burst. Nothing in a snapshot
//! changes after it is built.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hashbrown::{HashMap, HashSet};

use conf::{Forwarding, HashKey, IfAddr, OnEmpty, Protocol};

use crate::flow;
use crate::maglev;
use crate::tunnel::Tunnel;
use crate::vip_index::VipIndex;
use crate::wire::checksum;

pub use crate::ids::{BackendId, PortIdx, ServiceIdx, WorkerIdx};

mod addr;
pub use addr::{Acl, Addr, IpKey, addr_key};

/// A backend's effective state in this snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// Healthy, enabled, next hop known: takes new and existing flows.
    Up,
    /// Operator drain: existing flows stay, no new ones.
    Drain,
    /// Failed its health check: its flows move to a new choice.
    Down,
    /// Operator maintenance: no flows at all.
    Maint,
    /// No MAC address known for it yet.
    Unresolved,
}

impl BackendState {
    /// Every state, for a metric that labels each.
    pub const ALL: [BackendState; 5] = [
        BackendState::Up,
        BackendState::Drain,
        BackendState::Down,
        BackendState::Maint,
        BackendState::Unresolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Drain => "drain",
            BackendState::Down => "down",
            BackendState::Maint => "maint",
            BackendState::Unresolved => "unresolved",
        }
    }
}

/// A backend as the workers see it.
#[derive(Debug, Clone)]
pub struct BackendRt {
    pub id: BackendId,
    /// Index of its service in `Snapshot::services`.
    pub service: ServiceIdx,
    pub name: String,
    pub addr: IpAddr,
    pub addr_key: Addr,
    /// NAT target port (`None`: the client's destination port).
    pub port: Option<u16>,
    pub weight: u32,
    pub backup: bool,
    /// The destination MAC of its frames: its next hop's (its own on-link, else its gateway's,
    /// per `conf::Config::route`).
    pub mac: [u8; 6],
    /// Index of the port it is reached through.
    pub out_port: PortIdx,
    /// That port's MAC (the source of frames sent to it).
    pub out_mac: [u8; 6],
    /// That port's IP MTU (`[[port]] mtu`).
    pub out_mtu: u16,
    /// The largest IP packet of a client that still fits `out_mtu` once the forwarding mode
    /// has added its outer headers ([`BackendRt::max_ip_len_of`]): decided once per snapshot,
    /// beside `out_port`, so that the forward step's size check is one comparison with a line
    /// it already holds.
    pub max_ip_len: u16,
    /// NAT: what replacing its service's VIP with its address adds to a checksum over both
    /// ([`BackendRt::nat_delta_of`]), so that the rewrite of a client's packet (always to the
    /// VIP) updates the IP and L4 checksums without summing either address.
    pub nat_delta: u16,
    pub state: BackendState,
    /// The outer headers of its frames when its service is a tunnel (`ipip`, `gue`).
    pub tunnel: Option<Tunnel>,
    /// FullNAT: the local addresses its flows come from, in the order they are tried
    /// ([`conf::Config::fullnat_locals`]); empty for every other mode.
    pub locals: Box<[IpKey]>,
}

/// A FullNAT service's backend's local addresses: see [`BackendRt::locals`].
pub fn fullnat_locals(cfg: &conf::Config, s: &conf::Service, b: &conf::Backend) -> Box<[IpKey]> {
    if s.forwarding != Forwarding::FullNat {
        return Box::default();
    }
    cfg.fullnat_locals(s, b.address)
        .into_iter()
        .map(IpKey::from)
        .collect()
}

/// What FullNAT's workers share: the local ports (`[global.fullnat]`) and every local
/// address a backend's flows may come from, whose replies the workers take.
#[derive(Debug, Clone)]
pub struct FullNatRt {
    pub ports: std::ops::RangeInclusive<u16>,
    pub quiet_ms: u32,
    /// Every backend's local addresses, once each.
    pub locals: Vec<IpKey>,
}

impl FullNatRt {
    /// Is `addr:port` (as a destination) where a FullNAT backend's reply comes to?
    #[inline]
    pub fn is_reply_to(&self, addr: IpKey, port: u16) -> bool {
        !self.locals.is_empty() && self.ports.contains(&port) && self.locals.contains(&addr)
    }
}

impl BackendRt {
    /// What [`BackendRt::max_ip_len`] holds for a backend reached over a link of `out_mtu`
    /// through `tunnel` (`None`: DSR and NAT add nothing).
    pub fn max_ip_len_of(out_mtu: u16, tunnel: Option<&Tunnel>) -> u16 {
        out_mtu.saturating_sub(tunnel.map_or(0, |t| t.overhead() as u16))
    }

    /// The ones'-complement difference between the sums of `addr` and `vip` (RFC 1624's
    /// `~m + m'`, folded): added to a checksum over `vip`, it gives the checksum over `addr`.
    /// (An IPv4 address's flow-key form ends in zeros, which add nothing.)
    pub fn nat_delta_of(vip: IpAddr, addr: IpAddr) -> u16 {
        let sum = |a: IpAddr| checksum::fold(checksum::sum(&addr_key(a), 0));
        checksum::fold(u64::from(!sum(vip)) + u64::from(sum(addr)))
    }

    /// Bytes the forwarding mode adds in front of a client's packet to this backend: its
    /// tunnel's outer headers; 0 for DSR and NAT (which have no tunnel).
    #[inline(always)]
    pub fn overhead(&self) -> usize {
        self.tunnel.as_ref().map_or(0, Tunnel::overhead)
    }

    /// May an existing flow keep using this backend?
    #[inline]
    pub fn keeps_flows(&self) -> bool {
        matches!(self.state, BackendState::Up | BackendState::Drain)
    }
}

/// Which tier of a pool currently takes new flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Primary,
    Backup,
    Empty,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Primary => "primary",
            Tier::Backup => "backup",
            Tier::Empty => "empty",
        }
    }
}

/// A service as the workers see it.
#[derive(Debug, Clone)]
pub struct ServiceRt {
    pub name: String,
    pub vip: IpAddr,
    pub vip_key: Addr,
    pub protocol: Protocol,
    pub port: Option<u16>,
    pub forwarding: Forwarding,
    pub hash: HashKey,
    pub on_empty: OnEmpty,
    /// FullNAT TCP: connections to its backends start with a PROXY protocol v2 header.
    pub proxy_v2: bool,
    /// Every backend of the service (all tiers, all states), by id.
    pub backends: Vec<BackendId>,
    /// Maglev members: the ids of the backends that take new flows, in the table's index order.
    pub members: Box<[BackendId]>,
    pub maglev: maglev::Table,
    pub tier: Tier,
    /// Which sources may reach the service.
    pub acl: Acl,
    /// How the VIP attracts traffic (the config's `announce`).
    pub announce: conf::Announce,
    /// Whether the workers answer ARP/ND for the VIP: `announce = "arp"`, or `"vrrp"` while
    /// this node is the VRRP master (the slow path sets it when it builds the snapshot).
    pub answers_neighbor: bool,
}

impl ServiceRt {
    /// Service `s` of the config with what the control plane decided: its backends' ids
    /// (config order), the members taking new flows (Maglev's index order), their tier and
    /// their table.
    pub fn new(
        s: &conf::Service,
        backends: Vec<BackendId>,
        members: Vec<BackendId>,
        tier: Tier,
        maglev: maglev::Table,
    ) -> ServiceRt {
        ServiceRt {
            name: s.name.clone(),
            vip: s.vip,
            vip_key: addr_key(s.vip),
            protocol: s.protocol,
            port: s.port,
            forwarding: s.forwarding,
            hash: s.hash,
            on_empty: s.on_empty,
            proxy_v2: s.proxy_protocol == Some(conf::ProxyProtocol::V2),
            backends,
            members: members.into_boxed_slice(),
            maglev,
            tier,
            acl: Acl::new(&s.allow, &s.deny),
            announce: s.announce,
            answers_neighbor: s.announce == conf::Announce::Arp,
        }
    }

    /// The backend Maglev picks for this hash, if the pool is not empty.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<BackendId> {
        self.maglev.lookup(hash).map(|i| self.members[i as usize])
    }

    /// Where a new flow with `key` goes: Maglev's choice, `None` for an empty pool. The one
    /// decision, made by the pipeline's fast and general paths and by [`Snapshot::choose`]
    /// alike; `seed` is the config's, so every instance with this config agrees.
    #[inline(always)]
    pub fn pick_new(&self, seed: u64, key: &flow::FlowKey) -> Option<BackendId> {
        // An empty pool's table misses whatever the hash: skip computing it.
        if self.maglev.entries().is_empty() {
            return None;
        }
        self.pick(self.new_flow_hash(seed, key))
    }

    /// The hash a new flow with `key` indexes this service's Maglev table with: its
    /// 5-tuple's, or its source address's for source-IP affinity.
    #[inline]
    pub fn new_flow_hash(&self, seed: u64, key: &flow::FlowKey) -> u64 {
        // Hashed whatever the key kind: a select, not a branch, on the per-packet path.
        let flow_hash = crate::hash::flow_hash(seed, key);
        match self.hash {
            HashKey::FiveTuple => flow_hash,
            HashKey::SourceIp => crate::hash::src_hash(seed, &key.src),
        }
    }
}

/// Where a new flow would go, and why (for `which` and `ctl which`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// No service for this destination, protocol and port.
    NoService,
    /// The service's pool is empty: the flow is refused.
    Empty { service: ServiceIdx },
    /// Maglev's choice: the backend in `slot` of the service's table, from `tier`.
    Backend {
        service: ServiceIdx,
        backend: BackendId,
        slot: u32,
        tier: Tier,
    },
}

/// A data port as the workers see it.
#[derive(Debug, Clone)]
pub struct PortRt {
    pub name: String,
    pub mac: [u8; 6],
    /// `mac` as the low 48 bits of a little-endian word: what the fast parse compares the
    /// first 8 bytes of a frame with (masked), in one compare instead of a 6-byte one.
    pub mac_word: u64,
    /// IP MTU of the port's link (`[[port]] mtu`).
    pub mtu: u16,
    pub addrs: Vec<IfAddr>,
}

impl PortRt {
    pub fn new(name: String, mac: [u8; 6], mtu: u16, addrs: Vec<IfAddr>) -> PortRt {
        let mut w = [0u8; 8];
        w[..6].copy_from_slice(&mac);
        PortRt {
            name,
            mac,
            mac_word: u64::from_le_bytes(w),
            mtu,
            addrs,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct VipKey {
    addr: IpKey,
    proto: u8,
    /// 0: the all-ports service of this VIP.
    port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Endpoint {
    addr: IpKey,
    proto: u8,
    /// 0: any port (a NAT backend that keeps the client's destination port).
    port: u16,
}

/// Everything a worker needs, immutable.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub seed: u64,
    pub timeouts: flow::Timeouts,
    pub ports: Vec<PortRt>,
    pub services: Vec<ServiceRt>,
    /// Indexed by [`BackendId`]; `None` for ids not in use.
    pub backends: Vec<Option<BackendRt>>,
    vips: HashMap<VipKey, ServiceIdx>,
    vip_addrs: HashSet<IpKey>,
    /// VIPs answered by ARP/ND (see [`Snapshot::answers_neighbor_for`]).
    neighbor_vips: HashSet<IpKey>,
    own_addrs: HashMap<IpKey, PortIdx>,
    nat_endpoints: HashSet<Endpoint>,
    /// IPv4 VIPs again, for the worker's fast path (same answers as [`Snapshot::service`]).
    pub vip4: VipIndex,
    /// FullNAT's local ports and addresses ([`Snapshot::with_fullnat`] sets the ports).
    pub fullnat: FullNatRt,
}

impl Snapshot {
    /// The service for this destination, exact port first, then the VIP's all-ports service.
    #[inline]
    pub fn service(&self, dst: IpKey, proto: u8, port: u16) -> Option<ServiceIdx> {
        if let Some(s) = self.vips.get(&VipKey {
            addr: dst,
            proto,
            port,
        }) {
            return Some(*s);
        }
        self.vips
            .get(&VipKey {
                addr: dst,
                proto,
                port: 0,
            })
            .copied()
    }

    /// Does the balancer answer ARP / neighbour solicitations for this VIP (some service of it
    /// has `announce = "arp"`, or `"vrrp"` on the VRRP master)? Several instances announcing a VIP by BGP on one segment must
    /// not all answer for it.
    #[inline]
    pub fn answers_neighbor_for(&self, addr: IpKey) -> bool {
        self.neighbor_vips.contains(&addr)
    }

    /// Is this address a VIP (any protocol or port)?
    #[inline]
    pub fn is_vip(&self, addr: IpKey) -> bool {
        self.vip_addrs.contains(&addr)
    }

    /// The port owning this balancer address, if it is one.
    #[inline]
    pub fn own_addr(&self, addr: IpKey) -> Option<PortIdx> {
        self.own_addrs.get(&addr).copied()
    }

    /// Is `addr:port` (as a source) a NAT backend, i.e. is this packet a reply to translate?
    #[inline]
    pub fn is_nat_backend(&self, addr: IpKey, proto: u8, port: u16) -> bool {
        !self.nat_endpoints.is_empty()
            && (self.nat_endpoints.contains(&Endpoint { addr, proto, port })
                || self.nat_endpoints.contains(&Endpoint {
                    addr,
                    proto,
                    port: 0,
                }))
    }

    #[inline]
    pub fn backend(&self, id: BackendId) -> Option<&BackendRt> {
        self.backends.get(id.index()).and_then(|b| b.as_ref())
    }

    /// Where a new flow with this 5-tuple would go: the same computation the pipeline makes
    /// on a flow-table miss.
    pub fn choose(&self, key: &flow::FlowKey) -> Choice {
        let dst = IpKey::new(&key.dst, key.family == flow::FAMILY_V6);
        let Some(si) = self.service(dst, key.proto, key.dport) else {
            return Choice::NoService;
        };
        let svc = &self.services[si.index()];
        let h = svc.new_flow_hash(self.seed, key);
        match svc.pick(h) {
            Some(backend) => Choice::Backend {
                service: si,
                backend,
                slot: (h % u64::from(svc.maglev.size())) as u32,
                tier: svc.tier,
            },
            None => Choice::Empty { service: si },
        }
    }

    /// A snapshot of already-decided parts: `backends` indexed by id, each service listing
    /// its backends' ids and holding the Maglev table of its members. Adds the lookup
    /// indexes (VIPs, own addresses, NAT backends, the fast path's IPv4 VIP index).
    pub fn new(
        generation: u64,
        seed: u64,
        timeouts: flow::Timeouts,
        ports: Vec<PortRt>,
        services: Vec<ServiceRt>,
        backends: Vec<Option<BackendRt>>,
    ) -> Snapshot {
        let mut own_addrs = HashMap::new();
        for (i, p) in ports.iter().enumerate() {
            for a in &p.addrs {
                own_addrs.insert(IpKey::from(a.addr), PortIdx::new(i as u8));
            }
        }
        let mut vips = HashMap::new();
        let mut vip_addrs = HashSet::new();
        let mut neighbor_vips = HashSet::new();
        let mut nat_endpoints = HashSet::new();
        for (si, s) in services.iter().enumerate() {
            let proto = s.protocol.number();
            vips.insert(
                VipKey {
                    addr: IpKey::from(s.vip),
                    proto,
                    port: s.port.unwrap_or(0),
                },
                ServiceIdx::new(si as u16),
            );
            vip_addrs.insert(IpKey::from(s.vip));
            if s.answers_neighbor {
                neighbor_vips.insert(IpKey::from(s.vip));
            }
            if s.forwarding != Forwarding::Nat {
                continue;
            }
            for b in s
                .backends
                .iter()
                .filter_map(|id| backends.get(id.index())?.as_ref())
            {
                nat_endpoints.insert(Endpoint {
                    addr: IpKey::from(b.addr),
                    proto,
                    port: b.port.or(s.port).unwrap_or(0),
                });
            }
        }
        let mut locals: Vec<IpKey> = Vec::new();
        for b in backends.iter().flatten() {
            for a in b.locals.iter() {
                if !locals.contains(a) {
                    locals.push(*a);
                }
            }
        }
        let d = conf::FullNatSettings::default();
        let fullnat = FullNatRt {
            ports: d.local_ports,
            quiet_ms: d.port_quiet_ms,
            locals,
        };
        let vip4 = VipIndex::build(
            services
                .iter()
                .enumerate()
                .map(|(si, s)| (s.vip, s.protocol.number(), s.port, si as u16)),
        );
        Snapshot {
            generation,
            seed,
            timeouts,
            ports,
            services,
            backends,
            vips,
            vip_addrs,
            neighbor_vips,
            own_addrs,
            nat_endpoints,
            vip4,
            fullnat,
        }
    }

    /// This snapshot with `[global.fullnat]`'s settings.
    pub fn with_fullnat(mut self, g: &conf::FullNatSettings) -> Snapshot {
        self.fullnat.ports = g.local_ports.clone();
        self.fullnat.quiet_ms = g.port_quiet_ms;
        self
    }

    /// A snapshot that forwards nothing (before the first config is applied).
    pub fn empty() -> Snapshot {
        let timeouts = flow::Timeouts::from(&conf::Timeouts::default());
        Snapshot::new(0, 0, timeouts, Vec::new(), Vec::new(), Vec::new())
    }
}

/// The published snapshot: one atomic pointer, loaded by workers once per burst.
pub struct SnapshotCell {
    inner: ArcSwap<Snapshot>,
}

impl SnapshotCell {
    pub fn new(s: Snapshot) -> Self {
        SnapshotCell {
            inner: ArcSwap::from_pointee(s),
        }
    }

    /// The current snapshot (lock-free; a worker holds it for one burst).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.load()
    }

    /// A counted reference, for readers that keep it longer than a burst.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.inner.load_full()
    }

    /// Publishes a new snapshot; the old one is freed when its last reader lets go.
    pub fn publish(&self, s: Snapshot) {
        self.inner.store(Arc::new(s));
    }

    /// Publishes a new snapshot and hands back the one it replaces, so the caller can choose
    /// the thread that frees it.
    pub fn swap(&self, s: Arc<Snapshot>) -> Arc<Snapshot> {
        self.inner.swap(s)
    }
}

/// Snapshots for the dataplane's own unit tests, which cannot use the slow path's builder: a
/// config's services with every backend up at its configured MAC (required), ids in config
/// order from 1, every primary a Maglev member (no backups, no health, no overrides).
#[cfg(test)]
pub(crate) fn all_up(cfg: &conf::Config) -> Snapshot {
    let seed = cfg.global.hash_seed;
    let ports: Vec<PortRt> = cfg
        .ports
        .iter()
        .map(|p| {
            let mac = p.mac.expect("a port MAC").0;
            PortRt::new(p.name.clone(), mac, p.mtu, p.addresses.clone())
        })
        .collect();
    let mut backends = vec![None];
    let mut services = Vec::new();
    for (si, s) in cfg.services.iter().enumerate() {
        let first = backends.len() as u32;
        for b in &s.backends {
            assert!(!b.backup, "all_up makes no backup tier");
            let out_port = cfg.route(b.address).map_or(0, |r| r.port);
            let tunnel = Tunnel::of_backend(cfg, s, b);
            backends.push(Some(BackendRt {
                id: BackendId::new(backends.len() as u32),
                service: ServiceIdx::new(si as u16),
                name: b.name.clone(),
                addr: b.address,
                addr_key: addr_key(b.address),
                port: b.port,
                weight: b.weight,
                backup: false,
                mac: b.mac.expect("a backend MAC").0,
                out_port: PortIdx::new(out_port as u8),
                out_mac: ports[out_port].mac,
                out_mtu: ports[out_port].mtu,
                max_ip_len: BackendRt::max_ip_len_of(ports[out_port].mtu, tunnel.as_ref()),
                nat_delta: BackendRt::nat_delta_of(s.vip, b.address),
                state: BackendState::Up,
                tunnel,
                locals: fullnat_locals(cfg, s, b),
            }));
        }
        let ids: Vec<BackendId> = (first..backends.len() as u32).map(BackendId::new).collect();
        let members: Vec<maglev::Member> = s
            .backends
            .iter()
            .map(|b| maglev::Member {
                key: b.name.as_bytes(),
                weight: b.weight,
            })
            .collect();
        let tier = if ids.is_empty() {
            Tier::Empty
        } else {
            Tier::Primary
        };
        let table = maglev::Table::build(&members, cfg.global.maglev_table_size, seed);
        services.push(ServiceRt::new(s, ids.clone(), ids, tier, table));
    }
    let timeouts = flow::Timeouts::from(&cfg.global.timeouts);
    Snapshot::new(1, seed, timeouts, ports, services, backends).with_fullnat(&cfg.global.fullnat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pfx(s: &str) -> IfAddr {
        let (a, l) = s.split_once('/').unwrap();
        IfAddr {
            addr: a.parse().unwrap(),
            prefix_len: l.parse().unwrap(),
        }
    }

    #[test]
    fn acl_agrees_with_the_config_model() {
        let allow = [pfx("10.0.0.0/8"), pfx("2001:db8::/32")];
        let deny = [pfx("10.66.0.0/16"), pfx("10.1.2.3/32")];
        let acl = Acl::new(&allow, &deny);
        let svc = conf::Service {
            name: "s".into(),
            vip: "192.0.2.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: None,
            forwarding: Forwarding::Dsr,
            tunnel_source: None,
            gue_port: conf::Service::DEFAULT_GUE_PORT,
            local_addresses: vec![],
            proxy_protocol: None,
            hash: HashKey::FiveTuple,
            on_empty: OnEmpty::Reset,
            backends: vec![],
            on_change: None,
            state_file: None,
            allow: allow.to_vec(),
            deny: deny.to_vec(),
            announce: conf::Announce::Arp,
            disable_file: None,
        };
        for ip in [
            "10.1.1.1",
            "10.66.3.4",
            "10.1.2.3",
            "11.0.0.1",
            "0.0.0.0",
            "2001:db8::1",
            "2001:db9::1",
            "::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                acl.admits(&addr_key(ip), ip.is_ipv6()),
                svc.admits(ip),
                "{ip}"
            );
        }
        assert!(Acl::default().admits(&[0; 16], false));
        // A v4 prefix never matches a v6 source whose first bytes look alike.
        let v4 = Acl::new(&[pfx("10.0.0.0/8")], &[]);
        assert!(!v4.admits(&addr_key("a00::1".parse().unwrap()), true));
    }

    /// IPv4 10.0.0.1 and IPv6 a00:1:: have the same flow-key bytes; as VIPs, own addresses
    /// and NAT backends they stay two addresses.
    #[test]
    fn same_bytes_of_two_families_are_two_keys() {
        const CONFIG: &str = r#"
[[port]]
name = "p0"
device = "net_null0"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.2/24"]
[[port]]
name = "p1"
device = "net_null1"
mac = "02:00:00:00:00:02"
addresses = ["a00:2::/16"]
[[service]]
name = "v4"
vip = "10.0.0.1"
port = 80
forwarding = "nat"
[[service.backend]]
name = "b"
address = "10.0.0.21"
port = 8080
mac = "02:00:00:00:04:21"
[[service]]
name = "v6"
vip = "a00:1::"
port = 80
[[service.backend]]
name = "b"
address = "a00:15::"
mac = "02:00:00:00:06:15"
"#;
        let cfg = conf::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
        let snap = all_up(&cfg);
        let key = |s: &str| IpKey::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            addr_key("10.0.0.1".parse().unwrap()),
            *key("a00:1::").addr()
        );
        assert_ne!(key("10.0.0.1"), key("a00:1::"));

        assert_eq!(snap.services.len(), 2);
        assert_eq!(
            snap.service(key("10.0.0.1"), 6, 80),
            Some(ServiceIdx::new(0))
        );
        assert_eq!(
            snap.service(key("a00:1::"), 6, 80),
            Some(ServiceIdx::new(1))
        );
        assert!(snap.is_vip(key("10.0.0.1")) && snap.is_vip(key("a00:1::")));
        assert!(!snap.is_vip(key("10.0.0.2")) && !snap.is_vip(key("a00:2::")));

        assert_eq!(snap.own_addr(key("10.0.0.2")), Some(PortIdx::new(0)));
        assert_eq!(snap.own_addr(key("a00:2::")), Some(PortIdx::new(1)));
        assert_eq!(snap.own_addr(key("10.0.0.1")), None);

        // Only the IPv4 service is NAT: its backend's IPv6 twin is no NAT backend.
        assert!(snap.is_nat_backend(key("10.0.0.21"), 6, 8080));
        assert!(!snap.is_nat_backend(key("a00:15::"), 6, 8080));

        // The flow-key form of an IPv4 address ignores anything after its 4 bytes.
        let mut v4 = addr_key("10.0.0.1".parse().unwrap());
        v4[15] = 1;
        assert_eq!(IpKey::new(&v4, false), key("10.0.0.1"));
        assert_eq!(IpKey::new(&v4, true).addr(), &v4);

        // `choose` (which, ctl which) asks with the flow key's family.
        let k4 = flow::FlowKey::v4([192, 0, 2, 7], [10, 0, 0, 1], 40000, 80, 6);
        let k6 = flow::FlowKey::v6(
            *key("2001:db8::7").addr(),
            *key("a00:1::").addr(),
            40000,
            80,
            6,
        );
        let service_of = |c| match c {
            Choice::Backend { service, .. } | Choice::Empty { service } => Some(service),
            Choice::NoService => None,
        };
        assert_eq!(service_of(snap.choose(&k4)), Some(ServiceIdx::new(0)));
        assert_eq!(service_of(snap.choose(&k6)), Some(ServiceIdx::new(1)));
    }
}

//! The validated runtime model. Everything here has passed validation: addresses parse,
//! names are unique, sizes are in range. The dataplane and slow path read only this, never
//! the raw TOML schema.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this configuration was read from (for reload and error messages).
    pub path: PathBuf,
    pub dpdk: Dpdk,
    pub global: Global,
    pub ports: Vec<Port>,
    pub services: Vec<Service>,
}

impl Config {
    /// One line for logs and `fulcrum check`: what this configuration sets up.
    pub fn summary(&self) -> String {
        let backends: usize = self.services.iter().map(|s| s.backends.len()).sum();
        format!(
            "{} port(s), {} service(s), {} backend(s), {} worker(s), maglev table {}",
            self.ports.len(),
            self.services.len(),
            backends,
            self.dpdk.workers.len(),
            self.global.maglev_table_size
        )
    }

    /// Every address the balancer owns on any port (answers ARP/ND and ICMP for them).
    pub fn own_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ports
            .iter()
            .flat_map(|p| p.addresses.iter().map(|a| a.addr))
    }

    /// How the balancer reaches `addr`: the port its frames leave from, the balancer's own
    /// address on that port (the source of its own packets to `addr`), and the next hop whose
    /// MAC the frames go to. The one answer for forwarding, health checks, neighbour
    /// resolution, the slow path's own packets and `which`. See [`route`].
    pub fn route(&self, addr: IpAddr) -> Option<Path> {
        route(&self.ports, addr)
    }

    /// The outer source address of service `s`'s tunnel to `backend`: the service's
    /// `tunnel_source`, else the balancer's address on the port that reaches the backend
    /// (of the backend's family, as [`Config::route`] answers). `None` when nothing reaches it.
    pub fn tunnel_source(&self, s: &Service, backend: IpAddr) -> Option<IpAddr> {
        s.tunnel_source
            .or_else(|| self.route(backend).map(|p| p.source))
    }
}

/// How `ports` reach `addr`: on-link first (the first port with an address whose subnet
/// holds `addr`; the next hop is `addr` itself), then the longest route prefix of any port
/// that holds it (the next hop is that route's `via`, the source the port's address on
/// `via`'s subnet). `None`: no port reaches it.
pub fn route(ports: &[Port], addr: IpAddr) -> Option<Path> {
    let on_link = ports.iter().enumerate().find_map(|(port, p)| {
        p.addresses.iter().find(|a| a.contains(addr)).map(|a| Path {
            port,
            source: a.addr,
            next_hop: addr,
        })
    });
    if on_link.is_some() {
        return on_link;
    }
    let (port, r) = ports
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.routes.iter().map(move |r| (i, r)))
        .filter(|(_, r)| r.prefix.contains(addr))
        // Ties are refused by validation (one prefix is listed once over every port).
        .max_by_key(|(_, r)| r.prefix.prefix_len)?;
    // Validation keeps every `via` on-link on its own port.
    let source = ports[port]
        .addresses
        .iter()
        .find(|a| a.contains(r.via))?
        .addr;
    Some(Path {
        port,
        source,
        next_hop: r.via,
    })
}

/// Where frames to an address go: [`Config::route`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// Index of the port (in [`Config::ports`]) the frames leave from.
    pub port: usize,
    /// The balancer's own address on that port, of the destination's family.
    pub source: IpAddr,
    /// The neighbour whose MAC the frames go to: the destination itself when on-link, else
    /// the gateway of the route that reaches it.
    pub next_hop: IpAddr,
}

impl Path {
    /// True when the destination is on a link of the port (no gateway between).
    pub fn on_link(&self, addr: IpAddr) -> bool {
        self.next_hop == addr
    }
}

/// A static route of a port: destinations in `prefix` are reached through the gateway `via`,
/// a neighbour on that port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// The destinations, e.g. `10.2.0.0/16`; `0.0.0.0/0` and `::/0` are default routes.
    pub prefix: IfAddr,
    /// The gateway: on-link in one of the port's subnets.
    pub via: IpAddr,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.prefix, self.via)
    }
}

/// DPDK and threading. Every field here needs a restart to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Dpdk {
    /// Extra EAL arguments (e.g. `--no-huge`, `-m 1024`, `--file-prefix fulcrum`).
    pub eal_args: Vec<String>,
    /// CPU ids of the worker threads, one worker per entry, in worker order.
    pub workers: Vec<usize>,
    /// CPU for the main / slow-path thread (`None`: not pinned).
    pub slowpath_cpu: Option<usize>,
    /// Mbufs in the packet pool.
    pub mbufs: u32,
    /// Per-lcore mempool cache size.
    pub mbuf_cache: u32,
    /// Frame bytes one mbuf holds after its headroom: a larger received frame arrives as a
    /// chain of mbufs, which the workers drop (`multi_segment`).
    pub mbuf_data_room: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// Packets per rx/tx burst (1..=64).
    pub burst: usize,
    /// When a worker found no packet on any queue, sleep this long before polling again
    /// (0: pure busy polling, the production default).
    pub idle_sleep_us: u32,
}

impl Dpdk {
    /// Highest CPU id accepted: glibc's `cpu_set_t` (what affinity calls take) holds 1024 CPUs.
    pub const MAX_CPU: usize = 1023;
    /// DPDK rounds pools up to `2^q - 1` internally; below 1023 a single port's descriptor
    /// rings alone can exhaust the pool.
    pub const MBUFS_MIN: u32 = 1023;
    /// `RTE_MEMPOOL_CACHE_MAX_SIZE`.
    pub const MBUF_CACHE_MAX: u32 = 512;
    /// From a full standard Ethernet frame (1518 bytes with FCS) up to what DPDK's 16-bit
    /// buffer length holds next to the 128-byte headroom, rounded down to 256.
    pub const MBUF_DATA_ROOM_RANGE: RangeInclusive<u16> = 1518..=65280;
    /// Ring sizes most PMDs accept; each must also be a power of two.
    pub const DESCRIPTORS_RANGE: RangeInclusive<u16> = 64..=4096;
    pub const BURST_RANGE: RangeInclusive<usize> = 1..=64;
    /// Longer sleeps would make an idle worker's first packet wait a noticeable fraction of a
    /// TCP retransmission timeout.
    pub const IDLE_SLEEP_MAX_US: u32 = 100_000;
}

impl Default for Dpdk {
    /// The defaults of the `[dpdk]` table (see `conf/examples/reference.toml`).
    fn default() -> Self {
        Dpdk {
            eal_args: Vec::new(),
            workers: vec![1],
            slowpath_cpu: None,
            mbufs: 16383,
            mbuf_cache: 256,
            mbuf_data_room: 2048,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            burst: 32,
            idle_sleep_us: 0,
        }
    }
}

/// Balancer-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Seed of every hash that picks a backend. Instances with the same config and seed make
    /// the same choices. Live.
    pub hash_seed: u64,
    /// Maglev lookup table size, prime. Live.
    pub maglev_table_size: u32,
    /// Flow table capacity per worker. Restart.
    pub flow_table_capacity: u32,
    pub timeouts: Timeouts,
    /// Control socket path. Restart.
    pub control_socket: PathBuf,
    /// Directory of the workers' flow-table files, which a restart adopts (`None`: beside the
    /// control socket, see [`Global::flow_state_dir`]). Restart.
    pub flow_state_dir: Option<PathBuf>,
    /// Prometheus endpoint (`None`: off). Restart.
    pub metrics_listen: Option<SocketAddr>,
    /// A control socket or metrics endpoint that cannot be bound is a warning, not a start-up
    /// error. Restart.
    pub control_optional: bool,
    /// Settings shared by every health check. Live.
    pub health: HealthGlobal,
    /// Neighbour (ARP) resolution of backends. Live.
    pub neighbors: NeighborSettings,
    /// Route announcement through BIRD. Live.
    pub announce: AnnounceSettings,
}

/// `[global.announce]`: how the VIPs of `announce = "bgp"` services reach BIRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceSettings {
    /// The file Fulcrum writes with the VIPs to announce (BIRD `include`s it); `None`: no
    /// service may use `announce = "bgp"`.
    pub bird_file: Option<PathBuf>,
    /// BIRD's control socket, told to reconfigure when the file changes.
    pub bird_socket: PathBuf,
    /// While this file exists, the node announces nothing.
    pub disable_file: PathBuf,
}

impl Default for AnnounceSettings {
    fn default() -> Self {
        AnnounceSettings {
            bird_file: None,
            bird_socket: PathBuf::from("/run/bird/bird.ctl"),
            disable_file: PathBuf::from("/etc/fulcrum/disable"),
        }
    }
}

impl Global {
    /// Maglev needs a prime size; 13 is the smallest useful table, 16777213 (the largest prime
    /// below 2^24) keeps one service's table within 64 MiB at 4 bytes an entry.
    pub const MAGLEV_TABLE_SIZE_RANGE: RangeInclusive<u32> = 13..=16_777_213;
    pub const FLOW_TABLE_CAPACITY_RANGE: RangeInclusive<u32> = 1024..=67_108_864;
    /// `sun_path` is 108 bytes including the terminating NUL.
    pub const CONTROL_SOCKET_MAX_LEN: usize = 107;

    /// Where the workers' flow-table files live: `flow_state_dir`, else the control socket's
    /// path with the extension `flows` (`/run/fulcrum/fulcrum.flows` by default), so that two
    /// instances on one host, which need two sockets, never share tables.
    pub fn flow_state_dir(&self) -> PathBuf {
        self.flow_state_dir
            .clone()
            .unwrap_or_else(|| self.control_socket.with_extension("flows"))
    }
}

impl Default for Global {
    /// The defaults of the `[global]` table (see `conf/examples/reference.toml`).
    fn default() -> Self {
        Global {
            hash_seed: 0,
            maglev_table_size: 65537,
            flow_table_capacity: 1 << 20,
            timeouts: Timeouts::default(),
            control_socket: PathBuf::from("/run/fulcrum/fulcrum.sock"),
            flow_state_dir: None,
            metrics_listen: None,
            control_optional: false,
            health: HealthGlobal::default(),
            neighbors: NeighborSettings::default(),
            announce: AnnounceSettings::default(),
        }
    }
}

/// `[global.health]`: what every health check shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthGlobal {
    /// Source ports of health-check connections, used in rotation: reusing one port at once
    /// would meet the backend's TIME_WAIT entry of the previous check.
    pub source_ports: RangeInclusive<u16>,
    /// Each interval after the first is varied at random by up to this many percent, so
    /// checks that started together drift apart.
    pub spread_pct: u8,
}

impl HealthGlobal {
    /// Below 1024 are the well-known ports; fewer than 64 ports would be reused within
    /// seconds by a few hundred checks.
    pub const SOURCE_PORT_MIN: u16 = 1024;
    pub const SOURCE_PORTS_MIN_COUNT: u32 = 64;
    pub const SPREAD_MAX_PCT: u8 = 50;
}

impl Default for HealthGlobal {
    fn default() -> Self {
        HealthGlobal {
            source_ports: 61000..=65000,
            spread_pct: 0,
        }
    }
}

/// `[global.neighbors]`: how backends' MAC addresses are learnt and kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSettings {
    /// A learnt MAC is confirmed (unicast ARP request) this often, in milliseconds.
    pub refresh_ms: u32,
    /// Unresolved, or a confirmation unanswered: ask again (broadcast) this often.
    pub retry_ms: u32,
}

impl NeighborSettings {
    pub const REFRESH_RANGE_MS: RangeInclusive<u32> = 1_000..=3_600_000;
    pub const RETRY_RANGE_MS: RangeInclusive<u32> = 100..=60_000;
}

impl Default for NeighborSettings {
    fn default() -> Self {
        NeighborSettings {
            refresh_ms: 30_000,
            retry_ms: 1_000,
        }
    }
}

/// Flow idle timeouts in seconds, by state. Live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn: u32,
    pub tcp_established: u32,
    pub tcp_closing: u32,
    pub udp: u32,
}

impl Timeouts {
    /// One second to one day: a shorter timeout expires flows between two packets of a
    /// healthy connection; a longer one only keeps dead flows in the table.
    pub const RANGE: RangeInclusive<u32> = 1..=86_400;
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: 10,
            tcp_established: 900,
            tcp_closing: 10,
            udp: 60,
        }
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl MacAddr {
    /// The group bit: set for multicast and broadcast addresses, which no port or host owns.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for a MAC a single interface can own: not multicast/broadcast, not all zeros.
    pub fn is_unicast(self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why text is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address; write six hex pairs separated by ':', e.g. \"02:00:00:00:00:01\"")]
pub struct MacParseError;

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, MacParseError> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.len() != 2 {
                return Err(MacParseError);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
            n += 1;
        }
        if n == 6 {
            Ok(MacAddr(out))
        } else {
            Err(MacParseError)
        }
    }
}

/// An address with its prefix length, e.g. `10.0.0.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IfAddr {
    /// True when `ip` lies in this address's subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let bits = u32::from(self.prefix_len.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let bits = u32::from(self.prefix_len.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A data port: one DPDK ethdev.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub name: String,
    /// A PCI address (`0000:03:00.0`) or a virtual device with its arguments
    /// (`net_af_packet0,iface=veth0`). Restart.
    pub device: String,
    /// Overrides the MAC the device reports.
    pub mac: Option<MacAddr>,
    /// IP MTU of the port's link, bytes ([`Port::MTU_RANGE`]; at least [`Port::MTU_MIN_V6`]
    /// when the port has an IPv6 address): a forwarded packet whose IP length, plus the
    /// forwarding mode's encapsulation, exceeds it is answered with ICMP fragmentation needed
    /// / packet too big. Restart.
    pub mtu: u16,
    /// The balancer's own addresses on this port (answers ARP/ICMP, sources health checks).
    pub addresses: Vec<IfAddr>,
    /// Static neighbours (IP -> MAC), e.g. a gateway or backends, until ARP resolves them.
    pub neighbors: Vec<(IpAddr, MacAddr)>,
    /// The kernel interface of this port's exception path (frames for the balancer's own
    /// addresses that the slow path does not handle itself go to the kernel there, and what
    /// the kernel sends there leaves by this port). `None`: no exception path. Restart.
    pub kernel_interface: Option<String>,
    /// Next hops for destinations on no link of any port (longest prefix wins, see
    /// [`route`]).
    pub routes: Vec<Route>,
}

impl Port {
    /// Routes a port may have: a static table for a balancer's few gateways (a default route
    /// and some prefixes), searched linearly by [`route`] for every backend of every
    /// publication; a longer list is better summarised.
    pub const ROUTES_MAX: usize = 32;
}

impl Port {
    pub const MTU_RANGE: RangeInclusive<u16> = 576..=9216;
    /// IPv6's minimum link MTU (RFC 8200 section 5).
    pub const MTU_MIN_V6: u16 = 1280;
    pub const DEFAULT_MTU: u16 = 1500;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forwarding {
    /// Direct server return: rewrite MACs only; the backend answers the client directly.
    #[default]
    Dsr,
    /// Destination NAT: VIP:port -> backend:port; replies come back through the balancer.
    Nat,
    /// IP-in-IP: the packet, unchanged, inside an outer IP header to the backend's address
    /// (protocol 4 or 41); the backend decapsulates and answers the client directly.
    Ipip,
    /// Generic UDP encapsulation (GUE variant 1, direct IP): the packet inside outer IP and
    /// UDP to the backend's `gue_port`; the backend answers the client directly.
    Gue,
}

impl Forwarding {
    /// Whether this mode needs its backends on a link of a port. DSR rewrites only the MACs:
    /// the frame must reach the backend itself, whose address is not the packet's destination,
    /// so no router could forward it. NAT rewrites the destination to the backend's address,
    /// so routers carry it, and a backend behind one works as long as its replies come back
    /// through the balancer (its route to the clients points here). A tunnel's outer header
    /// is addressed to the backend: routers carry it.
    pub fn needs_link(self) -> bool {
        match self {
            Forwarding::Dsr => true,
            Forwarding::Nat | Forwarding::Ipip | Forwarding::Gue => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Forwarding::Dsr => "dsr",
            Forwarding::Nat => "nat",
            Forwarding::Ipip => "ipip",
            Forwarding::Gue => "gue",
        }
    }

    /// Does this mode carry the packet inside an outer IP header (so the backend may be
    /// anywhere a route reaches, and may be of the other address family for an IPv4 VIP)?
    pub fn is_tunnel(self) -> bool {
        matches!(self, Forwarding::Ipip | Forwarding::Gue)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashKey {
    /// Source and destination address and port, and protocol.
    #[default]
    FiveTuple,
    /// Source address only: every connection of a client lands on one backend.
    SourceIp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnEmpty {
    /// TCP SYN -> RST|ACK; UDP -> ICMP port unreachable.
    #[default]
    Reset,
    /// Drop silently (counted).
    Drop,
}

/// A virtual service: VIP + protocol + port (or all ports).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub vip: IpAddr,
    pub protocol: Protocol,
    /// `None`: every port of the VIP.
    pub port: Option<u16>,
    pub forwarding: Forwarding,
    /// Tunnel modes: the outer source address (`None`: the balancer's own address on the
    /// port that reaches each backend, of the backend's family). See [`Config::tunnel_source`].
    pub tunnel_source: Option<IpAddr>,
    /// `gue` only: the outer UDP destination port ([`Service::DEFAULT_GUE_PORT`]).
    pub gue_port: u16,
    pub hash: HashKey,
    pub on_empty: OnEmpty,
    pub backends: Vec<Backend>,
    /// Run (with `/bin/sh -c`) when the pool becomes empty or non-empty, e.g. to withdraw or
    /// announce the VIP's route.
    pub on_change: Option<String>,
    /// Rewritten (atomically) with `empty` or `nonempty` when the pool changes.
    pub state_file: Option<PathBuf>,
    /// Source prefixes allowed to reach the service (empty: every source).
    pub allow: Vec<IfAddr>,
    /// Source prefixes refused even when `allow` matches.
    pub deny: Vec<IfAddr>,
    /// How the VIP attracts its traffic.
    pub announce: Announce,
    /// While this file exists, the service is not announced.
    pub disable_file: Option<PathBuf>,
}

/// How a service's VIP attracts its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Announce {
    /// Fulcrum answers ARP / neighbour solicitations for the VIP on its ports (a shared
    /// segment).
    #[default]
    Arp,
    /// Fulcrum lists the VIP for BIRD while it can serve it (`[global.announce]`); it does not
    /// answer ARP/ND for it.
    Bgp,
    /// Neither: routes to the node are configured elsewhere (static routes).
    None,
}

impl Announce {
    pub fn as_str(self) -> &'static str {
        match self {
            Announce::Arp => "arp",
            Announce::Bgp => "bgp",
            Announce::None => "none",
        }
    }
}

impl Service {
    /// The GUE port Katran's and Linux `fou` examples use.
    pub const DEFAULT_GUE_PORT: u16 = 6080;

    /// May packets from `src` reach this service? `deny` wins over `allow`; an empty `allow`
    /// allows every source.
    pub fn admits(&self, src: IpAddr) -> bool {
        if self.deny.iter().any(|p| p.contains(src)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|p| p.contains(src))
    }
}

/// What the operator says about a backend (health is the slow path's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminState {
    /// Takes new flows while healthy.
    #[default]
    Enabled,
    /// No new flows; existing flows stay.
    Drain,
    /// Maintenance: no flows at all.
    Disabled,
}

impl AdminState {
    /// Its name, as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Drain => "drain",
            AdminState::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// Stable identity: Maglev positions derive from it, never from file order.
    pub name: String,
    pub address: IpAddr,
    /// NAT target port (`None`: the client's destination port).
    pub port: Option<u16>,
    /// Relative weight, 1..=10000 ([`Backend::WEIGHT_RANGE`]); the share of new flows is
    /// weight / sum of the usable backends' weights.
    pub weight: u32,
    /// Takes flows only while no primary backend is usable.
    pub backup: bool,
    /// Static MAC (otherwise learnt by ARP or ND).
    pub mac: Option<MacAddr>,
    pub admin: AdminState,
    /// The backend's own check (`None`: no check, or it follows `track`).
    pub health: Option<HealthCheck>,
    /// Follow another backend's health instead of checking this one.
    pub track: Option<TrackRef>,
}

/// Another backend, as `track` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackRef {
    pub service: String,
    pub backend: String,
}

/// A fully resolved health check of one backend: the service's `[service.health]` with the
/// backend's `[service.backend.health]` laid over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    /// Port checked on the backend's address.
    pub port: u16,
    pub interval_ms: u32,
    /// A check not finished within this is a failure. At most `interval_ms`.
    pub timeout_ms: u32,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that bring an up backend down.
    pub fall: u32,
}

impl HealthCheck {
    pub const INTERVAL_RANGE_MS: RangeInclusive<u32> = 100..=3_600_000;
    pub const TIMEOUT_RANGE_MS: RangeInclusive<u32> = 10..=600_000;
    pub const RISE_FALL_RANGE: RangeInclusive<u32> = 1..=100;
    pub const DEFAULT_INTERVAL_MS: u32 = 2_000;
    pub const DEFAULT_TIMEOUT_MS: u32 = 1_000;
    pub const DEFAULT_RISE: u32 = 2;
    pub const DEFAULT_FALL: u32 = 3;
}

/// What a check does once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// The TCP handshake completes.
    Tcp,
    /// An HTTP/1.0 request is answered with a status in the expected range.
    Http(HttpCheck),
    /// A TLS ClientHello is answered with a ServerHello.
    TlsHello {
        /// Server name sent in the ClientHello.
        sni: Option<String>,
    },
    /// The backend's agent answers a line: `up`, `down`, `drain`, `maint`, a weight `N%`...
    Agent {
        /// Sent after connecting, before reading the reply.
        send: Option<String>,
    },
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http(_) => "http",
            CheckKind::TlsHello { .. } => "tls-hello",
            CheckKind::Agent { .. } => "agent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub path: String,
    /// `Host` header (`None`: the backend's address).
    pub host: Option<String>,
    /// Statuses that count as healthy.
    pub expect: RangeInclusive<u16>,
}

impl HttpCheck {
    pub const DEFAULT_EXPECT: RangeInclusive<u16> = 200..=399;
}

impl Backend {
    /// Fine enough for any traffic split (0.01%), small enough that a service's weight sum
    /// stays far from `u32::MAX`.
    pub const WEIGHT_RANGE: RangeInclusive<u32> = 1..=10_000;
    pub const DEFAULT_WEIGHT: u32 = 100;
}

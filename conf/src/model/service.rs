//! A service (VIP, port, protocol, forwarding mode), its backends and their health checks.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

#[cfg(doc)]
use super::Config;
use super::{IfAddr, MacAddr};

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
    /// Full NAT: client:port -> VIP:port becomes local address:local port -> backend:port,
    /// so the backend answers the balancer wherever it is, with no change on it.
    FullNat,
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
            Forwarding::Nat | Forwarding::FullNat | Forwarding::Ipip | Forwarding::Gue => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Forwarding::Dsr => "dsr",
            Forwarding::Nat => "nat",
            Forwarding::Ipip => "ipip",
            Forwarding::Gue => "gue",
            Forwarding::FullNat => "fullnat",
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

/// The PROXY protocol header a FullNAT TCP service inserts before a client's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// Version 2 (binary): signature, PROXY command, family, the client's address and port
    /// as source and the VIP's as destination.
    V2,
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
    /// `fullnat` only: the source addresses of connections to backends, each one of the
    /// balancer's own (empty: the egress port's own addresses of the backend's family). See
    /// [`Config::fullnat_locals`](crate::Config::fullnat_locals).
    pub local_addresses: Vec<IpAddr>,
    /// `fullnat` and TCP only: the header each connection to a backend starts with, giving
    /// the client's address and port (`None`: nothing is added).
    pub proxy_protocol: Option<ProxyProtocol>,
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
    /// Answered by ARP/ND like `Arp`, but only while this node is the VRRP master
    /// (`fulcrum ctl vrrp master`, from keepalived's notify hooks); a backup, a faulty node
    /// and a node that just started answer nothing for it.
    Vrrp,
}

impl Announce {
    pub fn as_str(self) -> &'static str {
        match self {
            Announce::Arp => "arp",
            Announce::Bgp => "bgp",
            Announce::None => "none",
            Announce::Vrrp => "vrrp",
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
    /// A tunnelled service's backend is also checked through its tunnel: the same check to
    /// the VIP, encapsulated as the data path encapsulates a client's packet (`ipip`/`gue`);
    /// the backend answers from the VIP straight to the balancer. Both must pass.
    pub through_tunnel: bool,
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

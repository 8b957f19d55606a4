//! The validated runtime model. Everything here has passed validation: addresses parse,
//! names are unique, sizes are in range. The dataplane and slow path read only this, never
//! the raw TOML schema.

use std::net::IpAddr;
use std::path::PathBuf;

mod port;
mod service;
mod settings;

pub use port::*;
pub use service::*;
pub use settings::*;

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

    /// The local addresses a FullNAT service `s` connects to `backend` from: those of the
    /// service's `local_addresses` of the backend's family, else the own addresses of that
    /// family on the port that reaches the backend. Empty when nothing reaches it.
    pub fn fullnat_locals(&self, s: &Service, backend: IpAddr) -> Vec<IpAddr> {
        let family = |a: &IpAddr| a.is_ipv6() == backend.is_ipv6();
        if !s.local_addresses.is_empty() {
            return s.local_addresses.iter().copied().filter(family).collect();
        }
        let Some(path) = self.route(backend) else {
            return Vec::new();
        };
        self.ports[path.port]
            .addresses
            .iter()
            .map(|a| a.addr)
            .filter(family)
            .collect()
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

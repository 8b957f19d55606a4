//! The raw TOML schema: exactly what the file may contain, before any value is checked.
//!
//! serde here decides only the *shape* of the file: which keys exist (`deny_unknown_fields`
//! everywhere), which are required, and the TOML type of each value. Everything about the
//! *values* (ranges, address syntax, enum spellings, uniqueness) is checked in
//! [`crate::validate`], because serde stops at its first error while validation reports every
//! problem in one pass. That is why integers are read as [`Int`] (any TOML integer) and enum
//! choices as strings.
//!
//! Optional fields are `Option`s here; their defaults are the runtime model's `Default` values,
//! applied in validation, so each default is written exactly once. The defaults are documented
//! on each field below and in `conf/examples/reference.toml`.
//!
//! Every value validation may need to point at is wrapped in [`Spanned`], so a diagnostic can
//! name its line and column.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// `[dpdk]`: EAL and threading; every field needs a restart. Optional.
    #[serde(default)]
    pub dpdk: DpdkTable,
    /// `[global]`: balancer-wide settings. Optional.
    #[serde(default)]
    pub global: GlobalTable,
    /// `[[port]]`: data ports; at least one is required.
    #[serde(default)]
    pub port: Vec<PortTable>,
    /// `[[service]]`: virtual services; none is valid (the balancer then forwards nothing).
    #[serde(default)]
    pub service: Vec<ServiceTable>,
}

/// `[dpdk]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkTable {
    /// Extra EAL arguments. Default `[]`.
    pub eal_args: Option<Vec<String>>,
    /// Worker CPU ids, one worker each. Default `[1]`.
    pub workers: Option<Spanned<Vec<Spanned<Int>>>>,
    /// CPU of the slow-path thread. Default: not pinned.
    pub slowpath_cpu: Option<Spanned<Int>>,
    /// Mbufs in the pool. Default 16383, at least 1023.
    pub mbufs: Option<Spanned<Int>>,
    /// Per-lcore mempool cache. Default 256, at most 512.
    pub mbuf_cache: Option<Spanned<Int>>,
    /// Frame bytes one mbuf holds (after its headroom). Default 2048, 1518..=65280.
    pub mbuf_data_room: Option<Spanned<Int>>,
    /// RX ring size. Default 1024, a power of two in 64..=4096.
    pub rx_descriptors: Option<Spanned<Int>>,
    /// TX ring size. Default 1024, a power of two in 64..=4096.
    pub tx_descriptors: Option<Spanned<Int>>,
    /// Packets per burst. Default 32, 1..=64.
    pub burst: Option<Spanned<Int>>,
    /// Sleep of an idle worker, microseconds. Default 0 (busy polling), at most 100000.
    pub idle_sleep_us: Option<Spanned<Int>>,
}

/// `[global]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalTable {
    /// Seed of the backend-choice hashes. Default 0, any integer >= 0.
    pub hash_seed: Option<Spanned<Int>>,
    /// Maglev table size. Default 65537, a prime in 13..=16777213.
    pub maglev_table_size: Option<Spanned<Int>>,
    /// Flows per worker. Default 1048576, 1024..=67108864.
    pub flow_table_capacity: Option<Spanned<Int>>,
    /// Control socket path. Default `/run/fulcrum/fulcrum.sock`.
    pub control_socket: Option<Spanned<String>>,
    /// Directory of the flow-table files. Default: the control socket's path with the
    /// extension `flows`.
    pub flow_state_dir: Option<Spanned<String>>,
    /// Prometheus listen address (`IP:port`). Default: no metrics endpoint.
    pub metrics_listen: Option<Spanned<String>>,
    /// Run on without a control socket or metrics endpoint that cannot be bound. Default false.
    pub control_optional: Option<Spanned<bool>>,
    /// `[global.timeouts]`. Optional.
    #[serde(default)]
    pub timeouts: TimeoutsTable,
    /// `[global.health]`. Optional.
    #[serde(default)]
    pub health: HealthGlobalTable,
    /// `[global.neighbors]`. Optional.
    #[serde(default)]
    pub neighbors: NeighborsTable,
    /// `[global.announce]`. Optional.
    #[serde(default)]
    pub announce: AnnounceTable,
    /// `[global.sync]`. Optional.
    #[serde(default)]
    pub sync: SyncTable,
    /// `[global.fullnat]`. Optional.
    #[serde(default)]
    pub fullnat: FullNatTable,
}

/// `[global.sync]`: instance sync (exceptions shared with peer instances).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncTable {
    /// Peer instances' addresses. Default none (sync off).
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    /// File holding the shared key (at least 16 bytes). Required with peers.
    pub key_file: Option<Spanned<String>>,
    /// UDP port. Default 7600.
    pub port: Option<Spanned<Int>>,
    /// Own address to send from. Default: the first of the port toward each peer.
    pub source: Option<Spanned<String>>,
    pub max_exceptions: Option<Spanned<Int>>,
    pub max_messages_per_sec: Option<Spanned<Int>>,
    pub refresh_ms: Option<Spanned<Int>>,
    pub expiry_ms: Option<Spanned<Int>>,
    pub startup_wait_ms: Option<Spanned<Int>>,
}

/// `[global.fullnat]`: the local ports of every `forwarding = "fullnat"` service.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullNatTable {
    /// `"FIRST-LAST"`, ports in 1024..=65535, at least 64, disjoint from the health checks'
    /// `source_ports`. Default `"1024-32767"`.
    pub local_ports: Option<Spanned<String>>,
    /// Rest of a freed local port before its reuse, ms, 0..=600000. Default 2000.
    pub port_quiet_ms: Option<Spanned<Int>>,
}

/// `[global.health]`: settings every health check shares.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthGlobalTable {
    /// `"FIRST-LAST"`, ports in 1024..=65535, at least 64 of them. Default `"61000-65000"`.
    pub source_ports: Option<Spanned<String>>,
    /// Random variation of each interval, percent. Default 0, at most 50.
    pub spread_pct: Option<Spanned<Int>>,
}

/// `[global.announce]`: route announcement through BIRD.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceTable {
    pub bird_file: Option<Spanned<String>>,
    pub bird_socket: Option<Spanned<String>>,
    pub disable_file: Option<Spanned<String>>,
}

/// `[global.neighbors]`: ARP resolution of backends.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborsTable {
    /// Confirm a learnt MAC this often, ms. Default 30000, 1000..=3600000.
    pub refresh_ms: Option<Spanned<Int>>,
    /// Ask again while unresolved or unconfirmed, ms. Default 1000, 100..=60000.
    pub retry_ms: Option<Spanned<Int>>,
}

/// `[global.timeouts]`: flow idle timeouts in seconds, each 1..=86400.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsTable {
    /// Default 10.
    pub tcp_syn: Option<Spanned<Int>>,
    /// Default 900.
    pub tcp_established: Option<Spanned<Int>>,
    /// Default 10.
    pub tcp_closing: Option<Spanned<Int>>,
    /// Default 60.
    pub udp: Option<Spanned<Int>>,
}

/// One `[[port]]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortTable {
    /// Required, unique.
    pub name: Spanned<String>,
    /// Required, unique: a PCI address or a vdev string.
    pub device: Spanned<String>,
    /// MAC override. Default: the device's own MAC.
    pub mac: Option<Spanned<String>>,
    /// IP MTU of the port's link, 576..=9216 (>= 1280 with an IPv6 address). Default 1500.
    pub mtu: Option<Spanned<Int>>,
    /// The balancer's own addresses in CIDR form. Default `[]`.
    pub addresses: Option<Vec<Spanned<String>>>,
    /// Static neighbours. Default `[]`.
    pub neighbors: Option<Vec<NeighborTable>>,
    /// Name of the kernel interface of the exception path. Default: none (no exception path).
    pub kernel_interface: Option<Spanned<String>>,
    /// Static routes: next hops for destinations on no link. Default `[]`.
    pub routes: Option<Vec<RouteTable>>,
}

/// One `{ prefix = "...", via = "..." }` of `routes`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// `addr/len`, no host bits set (a bare address is one host).
    pub prefix: Spanned<String>,
    /// The gateway: an address on-link on this port.
    pub via: Spanned<String>,
}

/// One `{ ip = "...", mac = "..." }` of `neighbors`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborTable {
    pub ip: Spanned<String>,
    pub mac: Spanned<String>,
}

/// One `[[service]]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTable {
    /// Required, unique.
    pub name: Spanned<String>,
    /// Required.
    pub vip: Spanned<String>,
    /// `"tcp"` | `"udp"`. Default `"tcp"`.
    pub protocol: Option<Spanned<String>>,
    /// 1..=65535. Default: every port of the VIP.
    pub port: Option<Spanned<Int>>,
    /// `"dsr"` | `"nat"` | `"fullnat"` | `"ipip"` | `"gue"`. Default `"dsr"`.
    pub forwarding: Option<Spanned<String>>,
    /// Tunnel modes: outer source address, one of the balancer's own. Default: the egress
    /// port's address of the backend's family.
    pub tunnel_source: Option<Spanned<String>>,
    /// `gue` only: outer UDP destination port, 1..=65535. Default 6080.
    pub gue_port: Option<Spanned<Int>>,
    /// `fullnat` only: source addresses toward backends, each one of the balancer's own.
    /// Default: the egress port's own addresses of the backend's family.
    #[serde(default)]
    pub local_addresses: Vec<Spanned<String>>,
    /// `fullnat` and `tcp` only: `"v2"` sends each backend the PROXY protocol v2 header
    /// (the client's address and port). Default: unset (none).
    pub proxy_protocol: Option<Spanned<String>>,
    /// `"5-tuple"` | `"source-ip"`. Default `"5-tuple"`.
    pub hash: Option<Spanned<String>>,
    /// `"reset"` | `"drop"`. Default `"reset"`.
    pub on_empty: Option<Spanned<String>>,
    /// `[[service.backend]]`. Default: none (every new flow gets `on_empty`).
    #[serde(default)]
    pub backend: Vec<BackendTable>,
    /// Command run when the pool becomes empty or non-empty. Default: none.
    pub on_change: Option<Spanned<String>>,
    /// File rewritten with the pool's state. Default: none.
    pub state_file: Option<Spanned<String>>,
    /// Source prefixes allowed to open flows (`[]`: every source). Default: `[]`.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Source prefixes always refused (wins over `allow`). Default: `[]`.
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// `[service.health]`: the check of every backend. Default: no check (always up).
    pub health: Option<Spanned<HealthTable>>,
    /// How the VIP attracts traffic: "arp", "bgp", "none", "vrrp". Default "arp".
    pub announce: Option<Spanned<String>>,
    /// While this file exists, the service is not announced. Default: none.
    pub disable_file: Option<Spanned<String>>,
}

/// `[service.health]` and `[service.backend.health]`; a backend's table overrides the
/// service's key by key.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthTable {
    /// `"tcp"` | `"http"` | `"tls-hello"` | `"agent"` | `"none"`. Default `"tcp"`.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Port checked. Default: the backend's NAT port, else the service's port.
    pub port: Option<Spanned<Int>>,
    /// Default 2000, 100..=3600000.
    pub interval_ms: Option<Spanned<Int>>,
    /// Default 1000, 10..=600000 and at most `interval_ms`.
    pub timeout_ms: Option<Spanned<Int>>,
    /// Default 2, 1..=100.
    pub rise: Option<Spanned<Int>>,
    /// Default 3, 1..=100.
    pub fall: Option<Spanned<Int>>,
    /// http: request method. Default `"GET"`.
    pub method: Option<Spanned<String>>,
    /// http: request path. Default `"/"`.
    pub path: Option<Spanned<String>>,
    /// http: `Host` header. Default: the backend's address.
    pub host: Option<Spanned<String>>,
    /// http: `"200"` or `"200-399"`. Default `"200-399"`.
    pub expect_status: Option<Spanned<String>>,
    /// tls-hello: server name. Default: none.
    pub sni: Option<Spanned<String>>,
    /// agent: text sent before reading the reply. Default: none.
    pub send: Option<Spanned<String>>,
    /// ipip/gue services: also check the VIP through the backend's tunnel. Default false.
    pub through_tunnel: Option<Spanned<bool>>,
}

/// One `[[service.backend]]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTable {
    /// Required, unique within the service.
    pub name: Spanned<String>,
    /// Required: an on-link IP address.
    pub address: Spanned<String>,
    /// NAT target port, 1..=65535. Default: the client's destination port.
    pub port: Option<Spanned<Int>>,
    /// 1..=10000. Default 100.
    pub weight: Option<Spanned<Int>>,
    /// Default false.
    pub backup: Option<Spanned<bool>>,
    /// Static MAC. Default: resolved by ARP/ND.
    pub mac: Option<Spanned<String>>,
    /// `"enabled"` | `"drain"` | `"disabled"`. Default `"enabled"`.
    pub admin: Option<Spanned<String>>,
    /// `"service/backend"` or `"backend"` (same service): follow its health. Default: none.
    pub track: Option<Spanned<String>>,
    /// Overrides of the service's `[service.health]`. Default: none.
    pub health: Option<Spanned<HealthTable>>,
}

/// Any TOML integer. Its own type (rather than a plain `i64`) so that a value of the wrong
/// type is reported as "expected an integer" instead of serde's "expected i64".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;

        impl Visitor<'_> for IntVisitor {
            type Value = Int;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                self.visit_i128(i128::from(v))
            }

            // `toml` hands over integers beyond i64 (which TOML does not allow) as i128.
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| {
                    E::custom(format!(
                        "integer {v} is too large for TOML (at most {})",
                        i64::MAX
                    ))
                })
            }

            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Int, E> {
                match i128::try_from(v) {
                    Ok(v) => self.visit_i128(v),
                    Err(_) => Err(E::custom(format!("integer {v} is too large for TOML"))),
                }
            }
        }

        deserializer.deserialize_i64(IntVisitor)
    }
}

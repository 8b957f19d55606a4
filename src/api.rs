//! The control API: every request the control socket takes and every reply it gives, as
//! `serde` types shared by the server ([`control`](../fulcrum/control/index.html)), the `ctl`
//! printer and the Prometheus renderer. One request per connection, one line of JSON each
//! way: a [`Request`] in, a [`Response`] out (`{"ok":true,"data":...}` or
//! `{"ok":false,"error":"..."}`).
//!
//! Nothing here touches a running balancer: decoding a request is pure, so the fuzz crate
//! runs it on arbitrary bytes ([`decode_request`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod fullnat;
mod sync;
pub use fullnat::{LocalPortsInUse, local_ports_in_use};
pub use sync::{SyncPeer, SyncStatus};

/// A request longer than this is refused (a request is a short line).
pub const MAX_REQUEST: usize = 4096;

/// One request: a line of JSON such as `{"cmd":"status"}`. Every variant is a struct so that
/// an unknown field is refused alike for every command (`{"cmd":"status","x":1}` as well as
/// `{"cmd":"which","flow":"...","x":1}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Version, uptime, ports, workers, snapshot generation.
    Status {},
    /// Services and their backends: state, weight, checks.
    Backends {},
    /// Every counter now (per worker, totals, per port); `ctl stats --watch` makes rates.
    Stats {},
    /// Where a flow `"SRC:PORT DST:PORT [tcp|udp]"` goes now, and why.
    Which { flow: String },
    /// An operator's override of a backend's configured admin state.
    Admin {
        service: String,
        backend: String,
        state: AdminCmd,
    },
    /// Drops the operator's overrides: of one backend, or of every backend of a service
    /// (`backend` absent); the config's admin state applies again.
    ClearAdmin {
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend: Option<String>,
    },
    /// Re-read the config file.
    Reload {},
    /// The node's VRRP role, from keepalived's notify hooks: only the master answers ARP/ND
    /// for the VIPs of `announce = "vrrp"` services. `holder`: the keepalived process that
    /// made it master; when it dies, the node falls back to backup.
    Vrrp {
        state: VrrpCmd,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<u32>,
    },
}

/// The VRRP role keepalived's notify hooks set with `ctl vrrp master|backup|fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpCmd {
    Master,
    Backup,
    Fault,
}

/// The admin state an operator sets with `ctl drain|enable|disable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminCmd {
    Drain,
    #[serde(alias = "enabled")]
    Enable,
    #[serde(alias = "disabled")]
    Disable,
}

impl AdminCmd {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminCmd::Drain => "drain",
            AdminCmd::Enable => "enable",
            AdminCmd::Disable => "disable",
        }
    }

    /// The admin state it sets.
    pub fn state(self) -> conf::AdminState {
        match self {
            AdminCmd::Drain => conf::AdminState::Drain,
            AdminCmd::Enable => conf::AdminState::Enabled,
            AdminCmd::Disable => conf::AdminState::Disabled,
        }
    }
}

/// A request that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("bad request: longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("bad request: not UTF-8")]
    NotUtf8,
    #[error("bad request: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses one request: the first line of `bytes` (what a client sent before its newline, or
/// before it closed its side).
pub fn decode_request(bytes: &[u8]) -> Result<Request, RequestError> {
    if bytes.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| RequestError::NotUtf8)?;
    Ok(serde_json::from_str(line.trim())?)
}

/// The wire form of a request or response: its JSON on one line, newline-terminated.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // The API's types have string keys only: serialising them cannot fail.
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.push(b'\n');
    s
}

/// One response: `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<T> {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

impl<T> Response<T> {
    pub fn from_result<E: std::fmt::Display>(r: Result<T, E>) -> Response<T> {
        match r {
            Ok(data) => Response {
                ok: true,
                error: None,
                data: Some(data),
            },
            Err(e) => Response {
                ok: false,
                error: Some(e.to_string()),
                data: None,
            },
        }
    }
}

/// What the server answers, one variant per request (serialised as the inner reply).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Status(StatusReply),
    Backends(BackendsReply),
    Stats(StatsReply),
    Which(WhichReply),
    Admin(AdminReply),
    Reload(ReloadReply),
    Vrrp(VrrpReply),
}

/// `vrrp`: the role set, the one before, and the snapshot that answers accordingly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpReply {
    pub state: String,
    pub previous: String,
    /// The VIPs of `announce = "vrrp"` services: answered by ARP/ND while master.
    pub vips: Vec<String>,
    pub generation: u64,
}

/// The node's VRRP role in `status` (present when a service has `announce = "vrrp"` or a
/// role was set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VrrpStatus {
    /// `master`, `backup` (also at start) or `fault`.
    pub state: String,
    /// Seconds since the role last changed (since start while it never has).
    pub since_s: f64,
    /// The keepalived process holding the master role, if it said.
    pub holder: Option<u32>,
    /// The VIPs of `announce = "vrrp"` services, and whether ARP/ND answers them now.
    pub vips: Vec<String>,
    pub answered: bool,
    /// Role changes since start.
    pub transitions: u64,
    /// Master roles dropped because their keepalived died.
    pub holder_lost: u64,
    /// Gratuitous ARP requests and unsolicited neighbour advertisements sent.
    pub gratuitous_sent: u64,
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    pub version: String,
    pub pid: u32,
    pub uptime_s: f64,
    pub generation: u64,
    /// The workers' shared-memory counter file (`ctl stats --file`).
    pub counters_file: Option<String>,
    pub services: usize,
    pub backends: usize,
    pub ports: Vec<PortStatus>,
    pub workers: Vec<WorkerStatus>,
    /// The services announced by BGP (`announce = "bgp"`): whether BIRD is told to announce
    /// each one's VIP now, and why (not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announcements: Vec<Announcement>,
    /// The kernel exception path's counters, summed over the ports that have one; absent
    /// when none has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelCounters>,
    /// Instance sync (`[global.sync]`); absent when it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// The node's VRRP role, when a service has `announce = "vrrp"` (or a role was set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp: Option<VrrpStatus>,
    /// Where the flow tables came from at start.
    #[serde(default)]
    pub flow_tables: FlowTablesStatus,
    /// Mbufs out of the packet pool now (in rings, queues, caches and flight), and the pool's
    /// size: flat under steady load, or something leaks.
    #[serde(default)]
    pub mbufs_in_use: u32,
    #[serde(default)]
    pub mbufs: u32,
    /// Every next hop of the config (each route's gateway, each on-link backend) and whether
    /// its MAC is known.
    #[serde(default)]
    pub next_hops: Vec<NextHopStatus>,
    /// FullNAT's local ports in use per worker and local address (absent without FullNAT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_ports: Vec<LocalPortsInUse>,
}

/// A service's route announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub service: String,
    pub vip: String,
    pub announced: bool,
    /// `serving`, `pool empty`, `node disabled (disable file)`, ...
    pub reason: String,
}

/// A next hop: a route's gateway or an on-link backend, as the neighbour table knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHopStatus {
    pub address: String,
    /// The port it is on.
    pub port: String,
    /// The route prefixes through it (empty: an on-link backend).
    #[serde(default)]
    pub routes: Vec<String>,
    /// Backends whose frames go to it.
    pub backends: usize,
    /// `static` (the config's MAC), `resolved`, `unconfirmed` (a confirmation outstanding or
    /// unanswered; the MAC is still used), `unresolved` (no MAC: its backends take no flows),
    /// or `unknown`.
    pub state: String,
    /// The MAC frames to it go to.
    pub mac: Option<String>,
}

/// Frames through the kernel exception path (`[[port]] kernel_interface`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCounters {
    /// Frames for the balancer's own addresses given to the kernel.
    pub to_kernel: u64,
    /// ... that the kernel interface's queue did not take.
    pub to_kernel_dropped: u64,
    /// Frames that were not for an own address (never given to the kernel; stays 0).
    pub to_kernel_refused: u64,
    /// Frames the kernel sent that left by the data port.
    pub from_kernel: u64,
    /// ... that the ring to the data port did not take.
    pub from_kernel_dropped: u64,
    /// Frames the kernel sent from an address not the port's own (never sent).
    pub from_kernel_refused: u64,
    /// Frames to a VIP that reached the exception path (never given to the kernel; the
    /// workers never hand VIP traffic to it: stays 0).
    pub to_kernel_vip: u64,
    /// Frames the kernel sent from a VIP (never sent).
    pub from_kernel_vip: u64,
    /// VRRP adverts given to the kernel (among `to_kernel`).
    #[serde(default)]
    pub vrrp_to_kernel: u64,
    /// VRRP adverts the kernel sent out of the data port (among `from_kernel`).
    #[serde(default)]
    pub vrrp_from_kernel: u64,
}

impl From<&slowpath::exception::KernelStats> for KernelCounters {
    fn from(k: &slowpath::exception::KernelStats) -> KernelCounters {
        KernelCounters {
            to_kernel: k.to_kernel,
            to_kernel_dropped: k.to_kernel_dropped,
            to_kernel_refused: k.to_kernel_refused,
            from_kernel: k.from_kernel,
            from_kernel_dropped: k.from_kernel_dropped,
            from_kernel_refused: k.from_kernel_refused,
            to_kernel_vip: k.to_kernel_vip,
            from_kernel_vip: k.from_kernel_vip,
            vrrp_to_kernel: k.vrrp_to_kernel,
            vrrp_from_kernel: k.vrrp_from_kernel,
        }
    }
}

/// The flow tables at start: adopted from the previous process's files, or empty and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowTablesStatus {
    /// The directory of the files (absent: in memory, nothing kept).
    pub dir: Option<String>,
    /// Entries adopted (a NAT flow counts two).
    pub adopted: usize,
    /// Entries found but dropped as inconsistent (torn by a kill).
    pub dropped: usize,
    /// Why the tables started empty, in one line (absent: adopted).
    pub empty: Option<String>,
}

/// A data port: its names, the MAC it puts on the wire, its link and DPDK's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortStatus {
    pub name: String,
    pub device: String,
    /// The source MAC of every frame the balancer sends on this port (the config's `mac`,
    /// else the device's).
    pub mac: String,
    /// The MAC the device reports.
    #[serde(default)]
    pub device_mac: String,
    /// `up`, `down`, or absent when the device does not say.
    pub link: Option<String>,
    pub speed_mbps: Option<u32>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<PortCounters>,
}

/// DPDK's counters of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

/// A worker in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub worker: usize,
    pub rx: u64,
    pub tx: u64,
    pub dropped: u64,
    /// Entries in its flow table.
    pub flows_active: u64,
    /// The snapshot generation it forwards by.
    pub generation: u64,
}

/// One worker's counters (or their totals): every scalar counter by name, the drops by
/// reason and their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterSet {
    #[serde(flatten)]
    pub counters: BTreeMap<String, u64>,
    pub dropped: u64,
    pub drops: BTreeMap<String, u64>,
}

impl CounterSet {
    pub fn new(c: &dataplane::stats::Counters) -> CounterSet {
        CounterSet {
            counters: c
                .fields()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            dropped: c.dropped(),
            drops: dataplane::verdict::DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), c.drops[*r as usize]))
                .collect(),
        }
    }

    /// A counter by name (0 if absent).
    pub fn get(&self, name: &str) -> u64 {
        if name == "dropped" {
            return self.dropped;
        }
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// `stats` (and `ctl stats --file`, which has only the workers and their totals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    pub workers: Vec<CounterSet>,
    pub totals: CounterSet,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendTraffic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelCounters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// The node's VRRP role (as in `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp: Option<VrrpStatus>,
    /// FullNAT's local ports in use per worker and local address (as in `status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_ports: Vec<LocalPortsInUse>,
}

/// Traffic counters of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendTraffic {
    pub service: String,
    pub backend: String,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub flows_established: u64,
    pub flows_other: u64,
}

/// `backends` (and `ctl services`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendsReply {
    pub generation: u64,
    pub services: Vec<ServiceInfo>,
}

/// A service as the running snapshot has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub service: String,
    pub vip: String,
    /// `None`: every port of the VIP.
    pub port: Option<u16>,
    pub protocol: String,
    pub forwarding: String,
    /// The tier taking new flows: `primary`, `backup` or `empty`.
    pub tier: String,
    /// Backends taking new flows (the Maglev members).
    pub members: usize,
    /// Flows of its backends in the flow tables: established plus other.
    pub flows_active: u64,
    /// TCP established (IPVS's ActiveConn).
    pub flows_established: u64,
    /// Half-open, closing or UDP (IPVS's InActConn).
    pub flows_other: u64,
    /// How the VIP attracts traffic: `arp`, `bgp` or `none`.
    #[serde(default)]
    pub announce: String,
    /// `bgp` only: whether BIRD is told to announce the VIP now.
    #[serde(default)]
    pub announced: bool,
    /// `bgp` only: why (not): `serving`, `pool empty`, `node disabled (disable file)`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce_reason: Option<String>,
    pub backends: Vec<BackendInfo>,
}

/// A backend: its effective state and what it is made of, its traffic and its checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub backend: String,
    pub id: u32,
    pub address: String,
    pub port: Option<u16>,
    /// The effective state: `up`, `drain`, `down`, `maint` or `unresolved`.
    pub state: String,
    /// What its checks say: `up`, `down`, `drain` or `maint` (`up` when unchecked).
    #[serde(default)]
    pub health: String,
    /// The admin state in force: the operator's override if any, else the config's.
    #[serde(default)]
    pub admin: String,
    /// The operator's override (`ctl drain|enable|disable`), if any.
    pub admin_override: Option<String>,
    pub weight: u32,
    pub backup: bool,
    /// Takes new flows (a Maglev member).
    pub member: bool,
    /// Has a health check of its own.
    pub checked: bool,
    pub checks: Option<u64>,
    pub check_failures: Option<u64>,
    /// `ok` or `failed`.
    pub last_check: Option<String>,
    pub last_check_failure: Option<String>,
    pub last_check_ms: Option<f64>,
    pub flows_active: u64,
    pub flows_established: u64,
    pub flows_other: u64,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// `which`: where a flow goes, and why. Offline (`fulcrum which`) fills the same reply with
/// `assumed` set and no workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhichReply {
    pub flow: String,
    /// `None`: no service for this destination.
    pub service: Option<String>,
    /// `None`: no service, or an empty pool (the flow is refused).
    pub backend: Option<String>,
    /// `flow table hit on worker N`, `maglev slot`, `maglev slot, backup tier`, `empty pool`
    /// or `no service`.
    pub reason: String,
    /// The Maglev slot of a new flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    /// The tier of a new flow's backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The backend's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_address: Option<String>,
    /// The port the backend's frames leave from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The neighbour they go to: the backend itself on-link, else the gateway of the route
    /// that reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// The worker whose flow table holds the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
    /// Each worker's flow-table answer (online only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// What an offline answer takes for granted (`every backend healthy and resolved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed: Option<String>,
    /// How the flow's packets reach the backend when its service is a tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encap: Option<Encap>,
    /// The peer instance whose exception placed the flow on this backend (instance sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_peer: Option<String>,
    /// FullNAT: the balancer's side of the connection as the backend sees it: `addr:port`
    /// for a flow a worker holds, else the local addresses and port range a new flow's
    /// source is taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
}

/// A tunnelled flow's outer headers, as `which` names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encap {
    /// `ipip` or `gue`.
    pub mode: String,
    /// Outer source address (the balancer's).
    pub src: String,
    /// Outer destination address (the backend's).
    pub dst: String,
    /// GUE: the flow's outer UDP source port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// GUE: the outer UDP destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
}

impl std::fmt::Display for Encap {
    /// `ipip 10.0.0.2 -> 10.2.0.5`, `gue 10.0.0.2:51234 -> 10.2.0.5:6080`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |a: &str, p: Option<u16>| match (p, a.contains(':')) {
            (None, _) => a.to_string(),
            (Some(p), false) => format!("{a}:{p}"),
            (Some(p), true) => format!("[{a}]:{p}"),
        };
        write!(
            f,
            "{} {} -> {}",
            self.mode,
            at(&self.src, self.sport),
            at(&self.dst, self.dport)
        )
    }
}

/// One worker's flow table on a `which`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerAnswer {
    pub worker: usize,
    /// `hit`, `miss` or `no answer`.
    pub flow_table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<u32>,
}

/// `admin` and `clear_admin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    pub service: String,
    /// `None`: every backend of the service (`clear_admin` without a backend).
    pub backend: Option<String>,
    /// The override set (`drain`, `enable`, `disable`), or `cleared`.
    pub admin: String,
    /// Overrides dropped (`clear_admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared: Option<usize>,
    pub generation: u64,
}

/// `reload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub config: String,
    pub generation: u64,
    pub summary: String,
    pub services: Vec<ServiceChange>,
}

/// What a reload did to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub service: String,
    pub change: Change,
    /// Entries of the Maglev table that now name another backend (the whole table for an
    /// added or removed service).
    pub maglev_entries_changed: u64,
    /// The new table's size, for a service that stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev_size: Option<u64>,
    /// Backends the reload added to a service that stays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends_added: Vec<String>,
    /// Backends the reload removed from a service that stays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends_removed: Vec<String>,
    /// Added backends that take no new flow yet, with their state (`b3 down`: a checked
    /// backend starts down and takes flows once its check passes): why an addition can
    /// change no Maglev entry at first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_yet_up: Vec<String>,
}

/// What a reload did to one service: `added`, `removed`, `changed` or `unchanged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
            Change::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_one_line_each() {
        let reqs = [
            Request::Status {},
            Request::Backends {},
            Request::Stats {},
            Request::Reload {},
            Request::Which {
                flow: "10.0.0.1:1234 10.0.0.100:80 tcp".into(),
            },
            Request::Admin {
                service: "web".into(),
                backend: "b1".into(),
                state: AdminCmd::Drain,
            },
            Request::ClearAdmin {
                service: "web".into(),
                backend: None,
            },
            Request::ClearAdmin {
                service: "web".into(),
                backend: Some("b1".into()),
            },
            Request::Vrrp {
                state: VrrpCmd::Master,
                holder: Some(4242),
            },
            Request::Vrrp {
                state: VrrpCmd::Fault,
                holder: None,
            },
        ];
        for r in reqs {
            let line = encode(&r);
            assert!(line.ends_with(b"\n"));
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(decode_request(&line).unwrap(), r);
        }
        assert_eq!(
            decode_request(br#"{"cmd":"status"}"#).unwrap(),
            Request::Status {}
        );
        assert_eq!(
            decode_request(br#"{"cmd":"admin","service":"s","backend":"b","state":"enabled"}"#)
                .unwrap(),
            Request::Admin {
                service: "s".into(),
                backend: "b".into(),
                state: AdminCmd::Enable
            }
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        for bad in [
            &b""[..],
            b"status",
            br#"{"cmd":"nope"}"#,
            br#"{"cmd":"which"}"#,
            // Unknown fields: refused for every command alike.
            br#"{"cmd":"which","flow":"x","extra":1}"#,
            br#"{"cmd":"status","extra":1}"#,
            br#"{"cmd":"reload","force":true}"#,
            br#"{"cmd":"admin","service":"s","backend":"b","state":"pause"}"#,
            br#"{"cmd":"vrrp","state":"primary"}"#,
            br#"{"cmd":"vrrp","state":"master","holder":-1}"#,
            br#"{"cmd":"vrrp"}"#,
            b"\xff\xfe",
        ] {
            let e = decode_request(bad).unwrap_err();
            assert!(e.to_string().starts_with("bad request"), "{bad:?}: {e}");
        }
        let long = vec![b' '; MAX_REQUEST + 1];
        assert!(matches!(decode_request(&long), Err(RequestError::TooLong)));
    }

    #[test]
    fn responses_keep_their_wire_form() {
        let ok = Response::<AdminReply>::from_result(Ok::<_, String>(AdminReply {
            service: "web".into(),
            backend: Some("b1".into()),
            admin: "drain".into(),
            cleared: None,
            generation: 3,
        }));
        let line = encode(&ok);
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"ok\":true,\"data\":{\"service\":\"web\",\"backend\":\"b1\",\"admin\":\"drain\",\"generation\":3}}\n"
        );
        let back: Response<AdminReply> = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, ok);
        let err = Response::<AdminReply>::from_result(Err("t.toml:3:5: bad"));
        let line = encode(&err);
        assert_eq!(line, b"{\"ok\":false,\"error\":\"t.toml:3:5: bad\"}\n");
        let back: Response<AdminReply> = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, err);
    }

    #[test]
    fn counter_sets_flatten_their_counters() {
        let mut c = dataplane::stats::Counters {
            rx: 7,
            ..Default::default()
        };
        c.drops[0] = 2;
        let set = CounterSet::new(&c);
        let v = serde_json::to_value(&set).unwrap();
        assert_eq!(v["rx"], 7);
        assert_eq!(v["dropped"], 2);
        assert!(v["drops"].as_object().unwrap().len() > 1);
        let back: CounterSet = serde_json::from_value(v).unwrap();
        assert_eq!(back, set);
        assert_eq!(back.get("rx"), 7);
    }
}

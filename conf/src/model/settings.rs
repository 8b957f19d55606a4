//! The `[dpdk]` and `[global]` tables: threads, pools, queues, and the balancer-wide settings.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

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
    /// Instance sync with peers (`None`: off). Restart.
    pub sync: Option<SyncSettings>,
    /// FullNAT's local ports. Live.
    pub fullnat: FullNatSettings,
}

/// `[global.sync]`: which peers this instance shares its exceptions with (flows whose backend
/// is not the one Maglev picks now), and the bounds of that traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    pub peers: Vec<IpAddr>,
    pub key_file: PathBuf,
    /// The key read from `key_file` at validation (never printed).
    pub key: SyncKey,
    pub port: u16,
    /// Own address to send from (`None`: the first own address of the port toward the peer).
    pub source: Option<IpAddr>,
    /// Exceptions learnt from peers held at most.
    pub max_exceptions: u32,
    /// Messages sent per second at most (all peers), and accepted per second per peer.
    pub max_messages_per_sec: u32,
    /// A held exception is sent again this often.
    pub refresh_ms: u32,
    /// A learnt exception not refreshed for this long is forgotten.
    pub expiry_ms: u32,
    /// How long a starting instance waits for its peers' exceptions before it announces.
    pub startup_wait_ms: u32,
}

impl SyncSettings {
    pub const PORT: u16 = 7600;
    pub const MAX_EXCEPTIONS: u32 = 65536;
    pub const MAX_EXCEPTIONS_RANGE: RangeInclusive<u32> = 1..=16_777_216;
    pub const MAX_MESSAGES_PER_SEC: u32 = 1000;
    pub const MAX_MESSAGES_PER_SEC_RANGE: RangeInclusive<u32> = 1..=100_000;
    pub const REFRESH_MS: u32 = 5000;
    pub const REFRESH_MS_RANGE: RangeInclusive<u32> = 500..=600_000;
    pub const EXPIRY_MS: u32 = 15000;
    pub const EXPIRY_MS_RANGE: RangeInclusive<u32> = 1000..=3_600_000;
    pub const STARTUP_WAIT_MS: u32 = 2000;
    pub const STARTUP_WAIT_MS_RANGE: RangeInclusive<u32> = 0..=60_000;
    /// The shortest key accepted.
    pub const MIN_KEY_LEN: usize = 16;
}

/// The shared key of instance sync: its bytes, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SyncKey(pub Vec<u8>);

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncKey({} bytes)", self.0.len())
    }
}

/// `[global.fullnat]`: the local ports every `forwarding = "fullnat"` service shares (on
/// each local address, each worker takes its own share of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullNatSettings {
    /// The source ports of connections to backends. Disjoint from the health checks'
    /// `source_ports` (the slow path owns those on the same addresses) and, by default,
    /// below Linux's ephemeral range (32768-60999), which the kernel exception path's own
    /// connections use.
    pub local_ports: RangeInclusive<u16>,
    /// How long a local port rests, after its flow's entry is gone, before it opens a new
    /// flow. See reference.toml for the default's reasoning.
    pub port_quiet_ms: u32,
}

impl FullNatSettings {
    /// Below 1024 are the well-known ports; fewer than 64 would leave a worker a handful.
    pub const LOCAL_PORT_MIN: u16 = 1024;
    pub const LOCAL_PORTS_MIN_COUNT: u32 = 64;
    pub const QUIET_RANGE_MS: RangeInclusive<u32> = 0..=600_000;
}

impl Default for FullNatSettings {
    fn default() -> Self {
        FullNatSettings {
            local_ports: 1024..=32767,
            port_quiet_ms: 2_000,
        }
    }
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
            sync: None,
            fullnat: FullNatSettings::default(),
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

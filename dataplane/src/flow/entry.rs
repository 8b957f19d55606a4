//! What an entry holds: its flow's state (the TCP/UDP state machine's states), backend,
//! age and NAT twin, and the idle timeout of each state.

use super::*;
use crate::ids::PortIdx;

/// Where a flow is in its life; picks its idle timeout and its eviction class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowState {
    /// A SYN was seen, no handshake completion yet: half-open, short timeout.
    TcpSynSeen = 0,
    TcpEstablished = 1,
    /// A FIN or RST was seen: short timeout.
    TcpClosing = 2,
    /// A UDP flow that has seen one datagram.
    Udp = 3,
    /// A UDP flow that has seen a second packet, either way (a NAT reply, or another
    /// datagram from the client): a full table evicts it only after every half-open and
    /// unconfirmed UDP entry, as an established TCP flow, so a UDP flood (one datagram per
    /// spoofed source) cannot push out a live UDP flow. Same timeout as `Udp`.
    UdpConfirmed = 4,
}

impl FlowState {
    /// The greatest discriminant: a state byte above it is not a state (a table adopted from
    /// a file is checked against it).
    pub const MAX: u8 = FlowState::UdpConfirmed as u8;
}

/// What the table remembers about a flow. `#[repr(C)]`: its layout is part of the flow-table
/// file's ([`persist::LAYOUT_VERSION`](super::persist::LAYOUT_VERSION)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Flow {
    pub state: FlowState,
    /// The service's index in the snapshot current when the flow was made or last seen. It can
    /// change on reload; the pipeline revalidates the service by (dst, port, proto) anyway.
    pub service: ServiceIdx,
    /// Stable backend id from the control plane; 0 = none (as in Katran).
    pub backend: BackendId,
    /// Coarse time (ms, caller's clock) the flow last saw a packet. Set on insert.
    pub last_seen: u32,
    /// Slab index of the linked entry ([`NO_TWIN`] if none). Owned by the table: set by
    /// [`FlowTable::link`], reset on insert; callers read it, never write it.
    pub twin: FlowSlot,
    /// The port the flow arrived on.
    pub port: PortIdx,
    /// The L2 source the flow came from, so NAT replies can go back to it (a FullNAT
    /// forward half with PROXY v2: its first data sequence, [`Flow::proxy_first_seq`]).
    pub peer_mac: [u8; 6],
    /// Free for the pipeline, except the bit [`FLAG_REVERSE`], which the [`Census`] reads.
    pub flags: u8,
}

impl Flow {
    /// A flow in `state` to `backend`, everything else empty.
    pub const fn new(state: FlowState, service: ServiceIdx, backend: BackendId) -> Self {
        Flow {
            state,
            service,
            backend,
            last_seen: 0,
            twin: NO_TWIN,
            port: PortIdx::new(0),
            peer_mac: [0; 6],
            flags: 0,
        }
    }

    /// A FullNAT pair's forward half with PROXY v2 keeps its client's first data sequence
    /// number (ISN + 1) in the first 4 bytes of `peer_mac`, which that half never reads (the
    /// reverse half holds the client's next hop). Meaningful only where the pipeline's flag
    /// says so.
    #[inline]
    pub fn proxy_first_seq(&self) -> u32 {
        let m = &self.peer_mac;
        u32::from_be_bytes([m[0], m[1], m[2], m[3]])
    }

    /// Sets what [`proxy_first_seq`](Self::proxy_first_seq) reads.
    #[inline]
    pub fn set_proxy_first_seq(&mut self, seq: u32) {
        self.peer_mac[..4].copy_from_slice(&seq.to_be_bytes());
    }

    /// This flow's idle timeout in ms.
    #[inline]
    pub fn timeout(&self, t: &Timeouts) -> u32 {
        t.by_state()[self.state as usize]
    }

    /// Milliseconds since the last packet.
    #[inline]
    pub fn idle(&self, now: u32) -> u32 {
        now.wrapping_sub(self.last_seen)
    }

    /// Idle for at least its timeout (on its own: a linked pair expires only when both do).
    #[inline]
    pub fn is_expired(&self, now: u32, t: &Timeouts) -> bool {
        self.idle(now) >= self.timeout(t)
    }
}

/// Idle timeouts in milliseconds, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_ms: u32,
    pub tcp_established_ms: u32,
    pub tcp_closing_ms: u32,
    pub udp_ms: u32,
}

impl Timeouts {
    /// Indexed by `FlowState as usize` (8 entries, so that `& 7` needs no bounds check;
    /// the last three are unused).
    #[inline]
    pub(super) fn by_state(&self) -> [u32; 8] {
        [
            self.tcp_syn_ms,
            self.tcp_established_ms,
            self.tcp_closing_ms,
            self.udp_ms,
            self.udp_ms,
            self.udp_ms,
            self.udp_ms,
            self.udp_ms,
        ]
    }
}

impl From<&conf::Timeouts> for Timeouts {
    fn from(t: &conf::Timeouts) -> Self {
        let ms = |s: u32| s.saturating_mul(1000);
        Timeouts {
            tcp_syn_ms: ms(t.tcp_syn),
            tcp_established_ms: ms(t.tcp_established),
            tcp_closing_ms: ms(t.tcp_closing),
            udp_ms: ms(t.udp),
        }
    }
}

/// The configuration's defaults.
impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::from(&conf::Timeouts::default())
    }
}

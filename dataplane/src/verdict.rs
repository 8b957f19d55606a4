//! What the pipeline decides for one packet, and every reason it can refuse one.
//!
//! Each [`DropReason`] has its own per-worker counter; the worker checks
//! `rx + handoff_in + from_slowpath = tx + handoff_out + to_slowpath + sum(drops)`.

use crate::ids::{PortIdx, WorkerIdx};

/// The fate of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) frame out of this port.
    Forward { port: PortIdx },
    /// The frame was turned into a reply (ARP, ICMP echo, RST, ICMP unreachable): send it out
    /// of the port it came in on.
    Reply,
    /// Another worker owns this flow (NAT): hand the untouched frame over.
    Handoff { worker: WorkerIdx },
    /// For the balancer itself (health-check replies, ARP replies): give it to the slow path.
    SlowPath,
    /// Refused; counted under the reason.
    Drop(DropReason),
}

/// `forward:1`, `reply`, `handoff:0`, `slowpath`, `drop:<reason>`: how the golden table and
/// the replay tool name a verdict.
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Forward { port } => write!(f, "forward:{port}"),
            Verdict::Reply => f.write_str("reply"),
            Verdict::Handoff { worker } => write!(f, "handoff:{worker}"),
            Verdict::SlowPath => f.write_str("slowpath"),
            Verdict::Drop(r) => write!(f, "drop:{}", r.name()),
        }
    }
}

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// Why a packet was dropped. One counter each, per worker.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// How many reasons there are (the size of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// The reason's stable name (metrics label, JSON key).
            pub const fn name(self) -> &'static str {
                match self {
                    $( DropReason::$variant => $name, )*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header, or a VLAN tag cut off.
    MalformedL2 = "malformed_l2",
    /// Received as a chain of mbufs: a frame larger than `dpdk.mbuf_data_room`. Dropped by
    /// the worker before the pipeline, which reads one contiguous segment.
    MultiSegment = "multi_segment",
    /// More VLAN tags than we parse (two).
    TooManyVlans = "too_many_vlans",
    /// Unicast to another MAC address than the port's.
    L2NotForUs = "l2_not_for_us",
    /// Neither IPv4, IPv6 nor ARP.
    UnsupportedEthertype = "unsupported_ethertype",
    /// ARP we cannot parse, or that is not Ethernet/IPv4.
    MalformedArp = "malformed_arp",
    /// ARP request for an address that is neither a VIP nor ours.
    ArpNotOurs = "arp_not_ours",
    /// IPv4 header refused: version, IHL, total length or checksum.
    MalformedIpv4 = "malformed_ipv4",
    /// IPv6 header or extension-header chain refused.
    MalformedIpv6 = "malformed_ipv6",
    /// TCP/UDP/ICMP header truncated or inconsistent.
    MalformedL4 = "malformed_l4",
    /// An IP fragment: a fragment carries no complete 5-tuple, so it cannot be placed.
    Fragment = "fragment",
    /// Destination is neither a VIP nor one of the balancer's addresses.
    NotVip = "not_vip",
    /// A VIP, but no service for this protocol and port.
    NoService = "no_service",
    /// The service's access list refuses this source.
    AclDenied = "acl_denied",
    /// ICMP to a VIP or own address that we neither answer (an echo request) nor forward (an
    /// error quoting a VIP's flow).
    IcmpUnhandled = "icmp_unhandled",
    /// An ICMP(v6) error to a VIP whose quote is cut short or malformed (no IP header and 8
    /// bytes of TCP/UDP in it, another family, another protocol, a later fragment).
    IcmpErrorMalformed = "icmp_error_malformed",
    /// An ICMP(v6) error to a VIP quoting a packet that did not come from that VIP.
    IcmpErrorNotVip = "icmp_error_not_vip",
    /// An ICMP(v6) error quoting a packet from a VIP port/protocol that has no service.
    IcmpErrorNoService = "icmp_error_no_service",
    /// An ICMP(v6) error for a flow with no flow-table entry, to a service whose pool is empty.
    IcmpErrorNoBackend = "icmp_error_no_backend",
    /// An ICMP(v6) error for a flow whose backend no longer keeps flows (down, maintenance,
    /// removed): its packets would move to a new backend, which never saw the flow.
    IcmpErrorBackendDown = "icmp_error_backend_down",
    /// An IPv4 packet without DF too big for the port toward its backend (its IP length plus
    /// the forwarding mode's encapsulation exceeds the port's `mtu`): the balancer does not
    /// fragment, and a sender that does not set DF expects no "fragmentation needed".
    MtuExceededNoDf = "mtu_exceeded_no_df",
    /// A packet too big for the port toward its backend that was owed an ICMP "fragmentation
    /// needed" / "packet too big", over the worker's rate of such answers.
    MtuExceededRateLimited = "mtu_exceeded_rate_limited",
    /// Protocol other than TCP/UDP/ICMP to a VIP.
    UnsupportedProtocol = "unsupported_protocol",
    /// The pool is empty and the service drops (or the packet is not a SYN/UDP datagram
    /// that could be answered).
    NoBackend = "no_backend",
    /// A reply from a NAT backend that matches no flow (e.g. after a restart).
    NatNoFlow = "nat_no_flow",
    /// A new FullNAT flow found no rested free local port on any of its backend's local
    /// addresses (answered per the service's `on_empty` when it can be: RST for a SYN, ICMP
    /// unreachable for UDP, counted under `resets`/`replies`; otherwise dropped here). A live
    /// tuple is never reused.
    NoLocalPort = "no_local_port",
    /// A packet to a FullNAT local address and port that matches no flow (a backend's reply
    /// after its flow ended, a restart), or a client's RST that opens no FullNAT flow.
    FullNatNoFlow = "fullnat_no_flow",
    /// A client's first data segment of a FullNAT flow with `proxy_protocol = "v2"` that
    /// would exceed the MTU toward its backend with the PROXY v2 header (28 bytes for IPv4,
    /// 52 for IPv6) inserted, or whose buffer has no headroom for it. The backend's SYN-ACK
    /// offers the client an MSS lowered by the header's length, so only a client that
    /// ignores it, or a backend whose MSS exceeds the balancer's MTU toward it, sees this.
    ProxyV2TooBig = "proxy_v2_too_big",
    /// A reply could not be built, or a tunnel's outer header not put in front: no headroom
    /// or tailroom in the buffer. Also an ICMP error to forward whose headers alone (with
    /// its quote's headers and 8 bytes) exceed the backend's link MTU.
    NoRoom = "no_room",
    /// The port's TX queue did not take the packet.
    TxFull = "tx_full",
    /// The ring to the owning worker was full.
    HandoffFull = "handoff_full",
    /// The ring to the slow path was full, or there is no slow path.
    SlowPathFull = "slowpath_full",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.name()), "duplicate {}", r.name());
            assert!(
                r.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            );
            assert_eq!(DropReason::ALL[*r as usize], *r);
        }
    }
}

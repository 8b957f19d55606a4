//! A tunnelled backend's outer headers (`forwarding = "ipip" | "gue"`): built once per backend
//! when a snapshot is made, so that encapsulating a packet costs a copy, two lengths and a
//! checksum (the pipeline's `rewrite/encap.rs` writes them).
//!
//! - IPIP: IPv4 in IPv4 (protocol 4), IPv6 in IPv6 (next header 41), IPv4 in IPv6 (next
//!   header 4), as Linux `ipip`/`ip6tnl` decapsulate.
//! - GUE variant 1 (direct IP encapsulation, as Linux `fou ... gue` and Katran's decap take
//!   it): outer IP, UDP to the service's `gue_port`, then the inner IP packet. The UDP source
//!   port comes from the flow ([`gue_source_port`]); the UDP checksum is computed over IPv6
//!   (mandatory there) and left 0 over IPv4 (RFC 768 allows it and every decapsulator takes
//!   it; the inner packet keeps its own checksums).
//!
//! The outer header: TTL / hop limit 64, DSCP and ECN copied from the inner packet, IPv4 DF
//! set (the path MTU is learnt, never fragmented) and ID 0 (RFC 6864: atomic datagrams),
//! IPv6 flow label 0.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use conf::Forwarding;

use crate::flow::FlowKey;
use crate::wire::{IPPROTO_UDP, checksum};

/// IPv4 inside IP.
pub const IPPROTO_IPIP: u8 = 4;
/// IPv6 inside IP.
pub const IPPROTO_IPV6: u8 = 41;
/// The outer header's TTL / hop limit.
pub const TTL: u8 = 64;
/// GUE source ports: the IANA ephemeral range, 14 bits of the flow's hash.
pub const GUE_SOURCE_PORTS: RangeInclusive<u16> = 49152..=65535;
/// The largest overhead: IPv6 + UDP.
pub const MAX_OVERHEAD: usize = 48;

/// The outer headers of one backend's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    mode: Forwarding,
    src: IpAddr,
    dst: IpAddr,
    gue_port: Option<u16>,
    /// The outer IP header (and GUE's UDP header) with every field that is the same for all
    /// packets set, and the per-packet ones (DSCP/ECN, lengths, checksums, source port) zero.
    header: [u8; MAX_OVERHEAD],
    len: u8,
    /// Ones'-complement sum of the fixed words a per-packet checksum covers: IPv4, the outer
    /// header's; IPv6 GUE, the UDP pseudo-header's addresses and next header and the
    /// destination port. Zero otherwise.
    fixed_sum: u16,
}

impl Tunnel {
    /// The tunnel of a backend at `dst` of a service in `mode` (whose VIP is IPv6 when
    /// `inner_v6`), from the outer source `src`. `None` for a mode that is no tunnel, for
    /// addresses of two families, and for IPv6 inside IPv4 (which the config refuses).
    pub fn new(
        mode: Forwarding,
        src: IpAddr,
        dst: IpAddr,
        inner_v6: bool,
        gue_port: u16,
    ) -> Option<Tunnel> {
        let gue_port = match mode {
            Forwarding::Ipip => None,
            Forwarding::Gue => Some(gue_port),
            Forwarding::Dsr | Forwarding::Nat | Forwarding::FullNat => return None,
        };
        let proto = match (gue_port, inner_v6) {
            (Some(_), _) => IPPROTO_UDP,
            (None, false) => IPPROTO_IPIP,
            (None, true) => IPPROTO_IPV6,
        };
        let mut header = [0u8; MAX_OVERHEAD];
        let (ip_len, fixed_sum) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) if !inner_v6 => {
                let h = &mut header[..20];
                h[0] = 0x45;
                h[6] = 0x40; // DF
                h[8] = TTL;
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                (20, checksum::fold(checksum::sum(h, 0)))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = &mut header[..40];
                h[0] = 0x60;
                h[6] = proto;
                h[7] = TTL;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                let sum = match gue_port {
                    Some(p) => checksum::combine(&[
                        checksum::pseudo_header_v6(&s.octets(), &d.octets(), IPPROTO_UDP, 0),
                        p,
                    ]),
                    None => 0,
                };
                (40, sum)
            }
            _ => return None,
        };
        let mut len = ip_len;
        if let Some(p) = gue_port {
            header[ip_len + 2..ip_len + 4].copy_from_slice(&p.to_be_bytes());
            len += 8;
        }
        Some(Tunnel {
            mode,
            src,
            dst,
            gue_port,
            header,
            len: len as u8,
            fixed_sum,
        })
    }

    /// Bytes the encapsulation adds: 20 (IPv4) or 40 (IPv6), and 8 more for GUE.
    #[inline(always)]
    pub fn overhead(&self) -> usize {
        usize::from(self.len)
    }

    /// `ipip` or `gue`.
    pub fn mode(&self) -> Forwarding {
        self.mode
    }

    /// The outer source address.
    pub fn src(&self) -> IpAddr {
        self.src
    }

    /// The outer destination address (the backend's).
    pub fn dst(&self) -> IpAddr {
        self.dst
    }

    /// GUE's outer UDP destination port; `None` for IPIP.
    pub fn gue_port(&self) -> Option<u16> {
        self.gue_port
    }

    /// Is the outer header IPv6?
    #[inline(always)]
    pub fn is_v6(&self) -> bool {
        self.header[0] == 0x60
    }

    /// The template of the outer headers (see the field's doc).
    #[inline(always)]
    pub(crate) fn header(&self) -> &[u8] {
        &self.header[..usize::from(self.len)]
    }

    /// The sum of the template's fixed words (see the field's doc).
    #[inline(always)]
    pub(crate) fn fixed_sum(&self) -> u16 {
        self.fixed_sum
    }

    /// The tunnel of backend `b` of service `s` in `cfg`, from the outer source
    /// [`conf::Config::tunnel_source`] gives. `None` unless the service is a tunnel, or when
    /// no source is known (the config's validation makes sure one is).
    pub fn of_backend(cfg: &conf::Config, s: &conf::Service, b: &conf::Backend) -> Option<Tunnel> {
        let src = cfg.tunnel_source(s, b.address)?;
        Tunnel::new(s.forwarding, src, b.address, s.vip.is_ipv6(), s.gue_port)
    }

    /// The IP packet `packet` (no link header; TCP or UDP, of the inner family) inside this
    /// tunnel's outer headers, as the data path encapsulates a client's packet of the same
    /// flow (GUE: that flow's source port from `seed`, the config's `hash_seed`). For the
    /// slow path, which checks a backend through its tunnel; it allocates. `None` for a
    /// packet that is not well-formed TCP or UDP.
    pub fn encapsulate(&self, packet: &[u8], seed: u64) -> Option<Vec<u8>> {
        crate::pipeline::encapsulate_ip(self, packet, seed)
    }
}

/// The GUE source port of the flow with `key` (as its client sends it): the same for every
/// packet of the flow, and for ICMP errors about it, on every instance with this config
/// (`seed` is its `hash_seed`), so that the backend's NIC keeps a flow on one queue and
/// spreads flows across its queues. The top 14 bits of the flow's hash, so that the port
/// says nothing about the Maglev slot (its low bits modulo the table size).
#[inline(always)]
pub fn gue_source_port(seed: u64, key: &FlowKey) -> u16 {
    *GUE_SOURCE_PORTS.start() | (crate::hash::flow_hash(seed, key) >> 50) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overhead_and_family_by_mode() {
        let t = |m, s, d, v6| Tunnel::new(m, ip(s), ip(d), v6, 6080).map(|t| t.overhead());
        assert_eq!(t(Forwarding::Ipip, "10.0.0.2", "10.2.0.5", false), Some(20));
        assert_eq!(t(Forwarding::Ipip, "fd00::2", "fd02::5", true), Some(40));
        assert_eq!(t(Forwarding::Ipip, "fd00::2", "fd02::5", false), Some(40));
        assert_eq!(t(Forwarding::Gue, "10.0.0.2", "10.2.0.5", false), Some(28));
        assert_eq!(t(Forwarding::Gue, "fd00::2", "fd02::5", true), Some(48));
        // No IPv6 in IPv4, no mixed outer families, no tunnel for DSR and NAT.
        assert_eq!(t(Forwarding::Ipip, "10.0.0.2", "10.2.0.5", true), None);
        assert_eq!(t(Forwarding::Gue, "10.0.0.2", "fd02::5", false), None);
        assert_eq!(t(Forwarding::Dsr, "10.0.0.2", "10.2.0.5", false), None);
        assert_eq!(t(Forwarding::Nat, "10.0.0.2", "10.2.0.5", false), None);
    }

    #[test]
    fn gue_source_port_is_ephemeral_and_per_flow() {
        let mut seen = std::collections::HashSet::new();
        for sport in 0..2000u16 {
            let k = FlowKey::v4([192, 0, 2, 1], [10, 0, 0, 100], sport, 80, 6);
            let p = gue_source_port(7, &k);
            assert!(GUE_SOURCE_PORTS.contains(&p));
            assert_eq!(p, gue_source_port(7, &k));
            seen.insert(p);
        }
        // 2000 flows over 16384 ports: nearly all distinct (about 115 collisions expected).
        assert!(seen.len() > 1800, "{} distinct ports", seen.len());
    }

    /// The slow path's packets through a tunnel get the data path's encapsulation: the inner
    /// packet byte for byte behind the template, a valid outer checksum, GUE's source port of
    /// the packet's flow; anything but TCP/UDP is refused.
    #[test]
    fn encapsulate_an_ip_packet_as_the_data_path_does() {
        use crate::wire::{checksum, test_vectors};
        let inner = &test_vectors::TCP4_SYN[14..];
        let t = Tunnel::new(Forwarding::Ipip, ip("10.0.0.2"), ip("10.2.0.5"), false, 0).unwrap();
        let out = t.encapsulate(inner, 7).unwrap();
        assert_eq!(out.len(), 20 + inner.len());
        assert_eq!(&out[20..], inner);
        assert_eq!(
            (out[9], &out[12..16], &out[16..20]),
            (4, &[10, 0, 0, 2][..], &[10, 2, 0, 5][..])
        );
        assert_eq!(
            checksum::ipv4_header(&out[..20]),
            u16::from_be_bytes([out[10], out[11]])
        );

        let t = Tunnel::new(Forwarding::Gue, ip("10.0.0.2"), ip("10.2.0.5"), false, 6080).unwrap();
        let out = t.encapsulate(inner, 7).unwrap();
        assert_eq!(&out[28..], inner);
        let sport = u16::from_be_bytes([inner[20], inner[21]]);
        let dport = u16::from_be_bytes([inner[22], inner[23]]);
        let key = FlowKey::v4(
            inner[12..16].try_into().unwrap(),
            inner[16..20].try_into().unwrap(),
            sport,
            dport,
            6,
        );
        assert_eq!(out[20..22], gue_source_port(7, &key).to_be_bytes());
        assert_eq!(out[22..24], 6080u16.to_be_bytes());

        let mut icmp = inner.to_vec();
        icmp[9] = 1;
        let ck = checksum::ipv4_header(&icmp[..20]);
        icmp[10..12].copy_from_slice(&ck.to_be_bytes());
        assert_eq!(t.encapsulate(&icmp, 7), None);
        assert_eq!(t.encapsulate(&[0x45, 0], 7), None);
    }
}

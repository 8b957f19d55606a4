//! Rewrites of a forwarded packet: what each forwarding mode changes on its way to a backend
//! (one file per mode, and `encap.rs` shared by the tunnels), and the one MAC rewrite every
//! forwarded or answered frame gets.

pub(super) mod dsr;
mod encap;
pub(super) mod fullnat;
mod gue;
mod ipip;
pub(super) mod nat;
pub(super) mod proxy_v2;

use conf::Forwarding;

use crate::flow::FlowKey;
use crate::frame::{Frame, RxIpChecksum, VecFrame};
use crate::snapshot::BackendRt;
use crate::tunnel::Tunnel;
use crate::wire::{IPPROTO_TCP, IPPROTO_UDP, ethernet};

use super::parse::{self, IpMeta};

/// The Ethernet header's addresses: destination `dst`, source `src` (one length check for
/// both; a frame shorter than an Ethernet header never gets here).
#[inline(always)]
pub(super) fn macs(data: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) {
    if let Some(h) = data.first_chunk_mut::<12>() {
        h[..6].copy_from_slice(dst);
        h[6..].copy_from_slice(src);
    }
}

/// The rewrite of a client's packet to backend `b` by the service's forwarding mode
/// (`key`: the flow as its client sends it; `seed`: the config's hash seed). `false` when
/// the frame has no headroom for a tunnel's outer header (nothing is sent then).
#[inline(always)]
pub(super) fn to_backend<F: Frame>(
    frame: &mut F,
    p: &IpMeta,
    b: &BackendRt,
    fwd: Forwarding,
    key: &FlowKey,
    seed: u64,
) -> bool {
    match fwd {
        Forwarding::Dsr => dsr::to_backend(frame.data_mut(), b),
        // FullNAT: NAT's half here; the source half needs the flow's local port
        // (`fullnat::source`, after the MTU check).
        Forwarding::Nat | Forwarding::FullNat => nat::to_backend(frame.data_mut(), p, b, key.dport),
        // Which tunnel, the tunnel says (its mode is the service's): a four-way match on
        // `fwd` compiles to a jump table that DSR, the cheapest mode, would pay for too.
        Forwarding::Ipip | Forwarding::Gue => {
            let Some(t) = &b.tunnel else {
                return false; // a backend of a tunnel service always has one
            };
            return match t.gue_port() {
                Some(_) => gue::to_backend(frame, p, b, t, key, seed),
                None => ipip::to_backend(frame, p, b, t),
            };
        }
    }
    true
}

/// An IP packet (no link header) that the balancer itself sends to a VIP, inside `t`'s outer
/// headers exactly as a client's packet of the same flow would be (the same encapsulation
/// code, and GUE's source port of that flow; `seed`: the config's hash seed). For the slow
/// path's health checks through a tunnel, off the per-packet path. `None` unless `packet`
/// is a well-formed TCP or UDP packet of the tunnel's inner family.
pub(crate) fn encapsulate_ip(t: &Tunnel, packet: &[u8], seed: u64) -> Option<Vec<u8>> {
    let l2 = ethernet::HEADER_LEN;
    let mut bytes = vec![0u8; l2 + packet.len()];
    bytes[l2..].copy_from_slice(packet);
    let (p, fragment) = match packet.first()? >> 4 {
        4 => parse::ipv4(&bytes, l2, RxIpChecksum::Unknown)?,
        6 => parse::ipv6(&bytes, l2)?,
        _ => return None,
    };
    if fragment || !matches!(p.proto, IPPROTO_TCP | IPPROTO_UDP) {
        return None;
    }
    let ports = parse::ports(&bytes, &p)?;
    let key = p.flow_key(ports.sport, ports.dport);
    let mut frame = VecFrame::new(&bytes);
    let done = match t.mode() {
        Forwarding::Gue => gue::encapsulate(&mut frame, &p, t, &key, seed),
        _ => encap::outer(&mut frame, &p, t).is_some(),
    };
    done.then(|| frame.data()[l2..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::snapshot::all_up;
    use crate::wire::{self, checksum};

    /// Every tunnel arm grows the frame by exactly `overhead`, leaves the inner packet as it
    /// was, and writes a valid outer IPv4 header checksum (GUE over IPv6: a valid UDP sum).
    #[test]
    fn tunnels_grow_by_their_overhead_and_keep_the_inner_packet() {
        const CONFIG: &str = r#"
[[port]]
name = "p0"
device = "net_null0"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.2/24", "fd00::2/64"]
[[service]]
name = "ipip"
vip = "10.0.0.100"
forwarding = "ipip"
[[service.backend]]
name = "a"
address = "10.0.0.11"
mac = "02:00:00:00:00:11"
[[service.backend]]
name = "b"
address = "fd00::11"
mac = "02:00:00:00:00:12"
[[service]]
name = "gue"
vip = "fd00::100"
forwarding = "gue"
[[service.backend]]
name = "c"
address = "fd00::13"
mac = "02:00:00:00:00:13"
"#;
        let cfg = conf::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
        let snap = all_up(&cfg);
        let v4 = &wire::test_vectors::TCP4_SYN[..];
        let v6 = &wire::test_vectors::TCP6_SYN[..];
        for (id, frame, want) in [(1u32, v4, 20), (2, v4, 40), (3, v6, 48)] {
            let b = snap.backend(crate::ids::BackendId::new(id)).unwrap();
            let fwd = snap.services[b.service.index()].forwarding;
            assert_eq!(b.overhead(), want);
            assert_eq!(usize::from(b.max_ip_len), usize::from(b.out_mtu) - want);
            let p = if id == 3 {
                super::super::parse::ipv6(frame, 14).unwrap().0
            } else {
                super::super::parse::ipv4(frame, 14, crate::frame::RxIpChecksum::Unknown)
                    .unwrap()
                    .0
            };
            let key = p.flow_key(1, 2);
            let mut f = VecFrame::new(frame);
            assert!(to_backend(&mut f, &p, b, fwd, &key, 7));
            let out = f.data();
            assert_eq!(out.len(), frame.len() + want, "backend {id}");
            assert_eq!(&out[14 + want..], &frame[14..], "inner packet untouched");
            assert_eq!(&out[0..6], &b.mac);
            if want == 20 {
                assert_eq!(
                    checksum::ipv4_header(&out[14..34]),
                    u16::from_be_bytes([out[24], out[25]])
                );
            }
            if id == 3 {
                let (src, dst) = (
                    out[22..38].try_into().unwrap(),
                    out[38..54].try_into().unwrap(),
                );
                assert_eq!(checksum::l4_sum_v6(&src, &dst, 17, &out[54..]), 0xffff);
            }
        }
    }
}

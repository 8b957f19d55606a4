//! Rewrites of a forwarded packet: what each forwarding mode changes on its way to a backend
//! (one file per mode), and the one MAC rewrite every forwarded or answered frame gets.

pub(super) mod dsr;
pub(super) mod nat;

use conf::Forwarding;

use crate::snapshot::BackendRt;

use super::parse::IpMeta;

/// The Ethernet header's addresses: destination `dst`, source `src`.
#[inline(always)]
pub(super) fn macs(data: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) {
    data[0..6].copy_from_slice(dst);
    data[6..12].copy_from_slice(src);
}

/// Bytes that forwarding mode `fwd` puts in front of a client's packet on its way to backend
/// `b` (an outer header): what the egress port's MTU must hold beyond the packet's own IP
/// length. DSR and NAT add nothing.
#[inline(always)]
pub(super) fn overhead(fwd: Forwarding, _b: &BackendRt) -> usize {
    match fwd {
        Forwarding::Dsr | Forwarding::Nat => 0,
    }
}

/// The rewrite of a client's packet to backend `b` by the service's forwarding mode
/// (`dport`: the client's destination port).
#[inline(always)]
pub(super) fn to_backend(data: &mut [u8], p: &IpMeta, b: &BackendRt, fwd: Forwarding, dport: u16) {
    match fwd {
        Forwarding::Dsr => dsr::to_backend(data, b),
        Forwarding::Nat => nat::to_backend(data, p, b, dport),
    }
}

//! GUE (variant 1, direct IP encapsulation): the client's packet, unchanged, inside outer IP
//! and UDP from the balancer to the backend's `gue_port`; the UDP source port comes from the
//! flow ([`gue_source_port`]), so the backend's NIC spreads flows across its queues and keeps
//! each on one.

use crate::flow::FlowKey;
use crate::frame::Frame;
use crate::snapshot::BackendRt;
use crate::tunnel::{Tunnel, gue_source_port};
use crate::wire::checksum;

use super::super::parse::IpMeta;

/// The packet `p` describes (of the flow `key`, as its client sends it; `seed` the config's
/// hash seed), encapsulated in `t` to backend `b` (its tunnel), and the hop to it; `false`
/// when the frame has no headroom for the outer headers. The UDP checksum: over IPv6 computed (RFC 8200 requires
/// it), over IPv4 left 0 (see [`crate::tunnel`]).
#[inline(always)]
pub(in crate::pipeline) fn to_backend<F: Frame>(
    frame: &mut F,
    p: &IpMeta,
    b: &BackendRt,
    t: &Tunnel,
    key: &FlowKey,
    seed: u64,
) -> bool {
    if !encapsulate(frame, p, t, key, seed) {
        return false;
    }
    super::dsr::to_backend(frame.data_mut(), b);
    true
}

/// The packet `p` describes inside `t`'s outer IP and UDP headers, the UDP source port and
/// checksum those of the flow `key`; `false` without headroom.
#[inline(always)]
pub(super) fn encapsulate<F: Frame>(
    frame: &mut F,
    p: &IpMeta,
    t: &Tunnel,
    key: &FlowKey,
    seed: u64,
) -> bool {
    let Some(udp) = super::encap::outer(frame, p, t) else {
        return false;
    };
    let data = frame.data_mut();
    let sport = gue_source_port(seed, key);
    let len = (data.len() - udp) as u16;
    data[udp..udp + 2].copy_from_slice(&sport.to_be_bytes());
    data[udp + 4..udp + 6].copy_from_slice(&len.to_be_bytes());
    if t.is_v6() {
        // The pseudo-header's length and the header's are the same number: counted twice.
        let fixed = checksum::combine(&[t.fixed_sum(), sport, len, len]);
        let sum = checksum::fold(checksum::sum(&data[udp + 8..], u64::from(fixed)));
        data[udp + 6..udp + 8].copy_from_slice(&checksum::udp_fill(!sum).to_be_bytes());
    }
    true
}

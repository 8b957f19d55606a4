//! IP-in-IP: the client's packet, unchanged, inside an outer IP header from the balancer to
//! the backend (IPv4 in IPv4, IPv6 in IPv6, IPv4 in IPv6); the backend decapsulates, holds
//! the VIP and answers the client directly.

use crate::frame::Frame;
use crate::snapshot::BackendRt;
use crate::tunnel::Tunnel;

use super::super::parse::IpMeta;

/// The packet `p` describes, encapsulated in `t` to backend `b` (its tunnel), and the hop to
/// it (the MACs); `false` when the frame has no headroom for the outer header.
#[inline(always)]
pub(in crate::pipeline) fn to_backend<F: Frame>(
    frame: &mut F,
    p: &IpMeta,
    b: &BackendRt,
    t: &Tunnel,
) -> bool {
    if super::encap::outer(frame, p, t).is_none() {
        return false;
    }
    super::dsr::to_backend(frame.data_mut(), b);
    true
}

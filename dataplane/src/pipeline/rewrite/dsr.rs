//! Direct server return: the packet goes to the backend unchanged but for its MACs (the
//! backend holds the VIP and answers the client directly).

use crate::snapshot::BackendRt;

/// The hop to backend `b`: its MAC, from the MAC of the port that reaches it.
#[inline(always)]
pub(in crate::pipeline) fn to_backend(data: &mut [u8], b: &BackendRt) {
    super::macs(data, &b.mac, &b.out_mac);
}

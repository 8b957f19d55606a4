//! `ctl vrrp` and the VRRP part of `ctl status`: the control API's side of the node's VRRP
//! role (slowpath's `vrrp` module keeps it; keepalived's notify hooks set it).

use std::time::Instant;

use dataplane::engine::Engine;
use fulcrum::api::{VrrpCmd, VrrpReply, VrrpStatus};
use slowpath::SlowPath;
use slowpath::vrrp::Role;

/// Sets the role (`{"cmd":"vrrp",...}`) and says what it was.
pub fn set(
    engine: &mut Engine,
    slow: &mut SlowPath,
    state: VrrpCmd,
    holder: Option<u32>,
) -> VrrpReply {
    let role = match state {
        VrrpCmd::Master => Role::Master,
        VrrpCmd::Backup => Role::Backup,
        VrrpCmd::Fault => Role::Fault,
    };
    let (previous, generation) = slow.set_vrrp(engine, role, holder);
    VrrpReply {
        state: role.as_str().into(),
        previous: previous.as_str().into(),
        vips: slow.vrrp_vips().iter().map(ToString::to_string).collect(),
        generation,
    }
}

/// The node's VRRP role, when some service follows it or a role was set.
pub fn status(engine: &Engine, slow: &SlowPath, started: Instant) -> Option<VrrpStatus> {
    let v = slow.vrrp();
    let vips = slow.vrrp_vips();
    if vips.is_empty() && v.transitions == 0 {
        return None;
    }
    let snap = engine.snapshot();
    let answered = vips
        .first()
        .is_some_and(|vip| snap.answers_neighbor_for(dataplane::snapshot::IpKey::from(*vip)));
    let since = if v.transitions == 0 {
        started.elapsed()
    } else {
        engine.epoch().elapsed().saturating_sub(v.since())
    };
    Some(VrrpStatus {
        state: v.role().as_str().into(),
        since_s: since.as_secs_f64(),
        holder: v.holder(),
        vips: vips.iter().map(ToString::to_string).collect(),
        answered,
        transitions: v.transitions,
        holder_lost: v.holder_lost,
        gratuitous_sent: slow.neighbor_stats().gratuitous,
    })
}

//! NAT's way back: a backend's reply (backend:port -> client) finds its flow's reverse
//! entry on the flow's owner and leaves as the VIP's (VIP:port -> client).

use crate::flow::{Flow, FlowKey};
use crate::frame::Frame;
use crate::hash;
use crate::ids::PortIdx;
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Verdict};
use crate::wire::IPPROTO_TCP;

use super::parse::{IpMeta, Ports};
use super::rewrite::{self, nat::Side};
use super::{Pipeline, service};

impl Pipeline {
    /// A packet from a NAT backend, received on `port`: un-NAT it to the client, both halves
    /// of the flow refreshed; `NatNoFlow` when no flow of this worker expects it. Too big for
    /// the client's port, it is answered as a client's packet too big for a backend's port is
    /// ([`Pipeline::too_big`]), from the VIP: the backend's kernel lowers its path MTU.
    pub(super) fn nat_reply<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        p: IpMeta,
        ports: Ports,
        frame: &mut F,
    ) -> Verdict {
        let owner = self.owner(&p.dst, ports.dport);
        if owner != self.worker {
            return Verdict::Handoff { worker: owner };
        }
        let rkey = p.flow_key(ports.sport, ports.dport);
        let Some((fkey, rev)) = self.reverse_hit(&rkey, p.proto == IPPROTO_TCP, ports.tcp_flags)
        else {
            return Verdict::Drop(DropReason::NatNoFlow);
        };
        let out = rev.port;
        let Some((out_mac, out_mtu)) = snap.ports.get(out.index()).map(|p| (p.mac, p.mtu)) else {
            return Verdict::Drop(DropReason::NatNoFlow);
        };
        if p.ip_len() > usize::from(out_mtu) {
            return self.too_big(snap, port, p, fkey.dst, out_mtu, 0, frame);
        }
        let data = frame.data_mut();
        rewrite::nat::rewrite(data, &p, Side::Src, &fkey.dst, fkey.dport);
        rewrite::macs(data, &rev.peer_mac, &out_mac);
        Verdict::Forward { port: out }
    }

    /// A reply's pair, NAT's or FullNAT's: the reverse entry keyed `rkey` and the forward
    /// half's key (the flow as its client sends it), both halves refreshed; `None` when no
    /// whole pair has that reverse key.
    pub(super) fn reverse_hit(
        &mut self,
        rkey: &FlowKey,
        tcp: bool,
        flags: u8,
    ) -> Option<(FlowKey, Flow)> {
        let rhash = hash::table_hash(self.local_seed, rkey);
        let ridx = self.flows.lookup(rkey, rhash)?;
        let rev = *self.flows.get(ridx);
        if rev.twin == crate::flow::NO_TWIN {
            return None;
        }
        let fkey = *self.flows.key(rev.twin);
        let now = self.now_ms;
        for idx in [ridx, rev.twin] {
            let state = service::next_state(self.flows.get(idx).state, tcp, flags);
            self.flows.touch(idx, now, state);
        }
        Some((fkey, rev))
    }
}

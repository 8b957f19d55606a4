//! Path MTU: a client's packet that would exceed the MTU of the port toward its backend (its
//! IP length plus the forwarding mode's encapsulation), or a NAT backend's reply that would
//! exceed the MTU of the port toward its client, is not sent. IPv4 with DF and IPv6 are
//! answered with ICMP "fragmentation needed" / ICMPv6 "packet too big" carrying the MTU left
//! after the encapsulation ([`reply::too_big`]), so the client's kernel lowers its path MTU
//! and sends smaller segments; IPv4 without DF is dropped (`mtu_exceeded_no_df`): the
//! balancer never fragments (a fragment could not be placed on a flow by the next balancer or
//! by this one, which drops fragments to a VIP, and a fragmenting sender is rare: Linux sets
//! DF on TCP and on UDP with path-MTU discovery).
//!
//! The answers are rate-limited per worker by a token bucket on the worker's millisecond
//! clock ([`Pipeline::now_ms`], set once per burst: no clock read per packet), so a flood of
//! big packets becomes at most [`RATE_PER_S`] small answers a second, not a flood of ICMP;
//! the rest are dropped and counted (`mtu_exceeded_rate_limited`).

use crate::frame::Frame;
use crate::ids::PortIdx;
use crate::snapshot::{Addr, BackendRt, Snapshot};
use crate::verdict::{DropReason, Verdict};
use crate::wire;

use super::parse::{self, IpMeta};
use super::{Pipeline, reply};

/// Answers a worker may send per second, in the long run.
pub const RATE_PER_S: u32 = 1_000;
/// Answers a worker may send at once after a quiet spell.
pub const BURST: u32 = 100;

/// A token bucket for one worker's too-big answers: [`BURST`] tokens, one more every
/// `1000 / RATE_PER_S` ms.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: u32,
    /// When the tokens were last topped up (the worker's ms clock).
    at_ms: u32,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            tokens: BURST,
            at_ms: 0,
        }
    }
}

impl Bucket {
    /// Takes a token at `now_ms` if there is one.
    pub fn take(&mut self, now_ms: u32) -> bool {
        let per_token_ms = 1_000 / RATE_PER_S;
        let earned = now_ms.wrapping_sub(self.at_ms) / per_token_ms;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(BURST);
            self.at_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Pipeline {
    /// A packet received on `port` that, with `overhead` bytes more, is too big for a link
    /// of `mtu`: answered from `vip` (IPv4 with DF, IPv6) with the MTU left for it, or
    /// dropped. Out of line: the forward step pays one comparison.
    #[inline(never)]
    #[cold]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn too_big<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        p: IpMeta,
        vip: Addr,
        mtu: u16,
        overhead: usize,
        frame: &mut F,
    ) -> Verdict {
        // The parse checked the header: its flags are there.
        let df = p.v6 || wire::Ipv4Packet::new_unchecked(&frame.data()[p.l3_off..]).dont_frag();
        if !df {
            return Verdict::Drop(DropReason::MtuExceededNoDf);
        }
        if !self.too_big_bucket.take(self.now_ms) {
            return Verdict::Drop(DropReason::MtuExceededRateLimited);
        }
        let Some(prt) = snap.ports.get(port.index()) else {
            return Verdict::Drop(DropReason::L2NotForUs); // never: the packet came in on it
        };
        let left = usize::from(mtu).saturating_sub(overhead) as u16;
        let v = reply::too_big::build(frame, &p, prt.mac, &vip, left);
        if v == Verdict::Reply {
            self.counters.mtu_exceeded += 1;
        }
        v
    }

    /// [`Pipeline::too_big`] for a client's packet to backend `b`, its IP header at `l3_off`
    /// (IPv6 when `v6`): the packet's `IpMeta` is read again from the frame (which nothing
    /// has changed since the parse that checked it), so that the forward step hands over two
    /// scalars. Handed an `IpMeta`, the forward step built one in memory for every packet
    /// (callgrind: 5 instructions a packet on the fast path).
    #[inline(never)]
    #[cold]
    pub(super) fn too_big_to_backend<F: Frame>(
        &mut self,
        snap: &Snapshot,
        port: PortIdx,
        v6: bool,
        l3_off: usize,
        b: &BackendRt,
        frame: &mut F,
    ) -> Verdict {
        let parsed = if v6 {
            parse::ipv6(frame.data(), l3_off)
        } else {
            parse::ipv4(frame.data(), l3_off, frame.rx_ip_checksum())
        };
        let Some((p, _)) = parsed else {
            // Never: this header was parsed before.
            return Verdict::Drop(if v6 {
                DropReason::MalformedIpv6
            } else {
                DropReason::MalformedIpv4
            });
        };
        self.too_big(snap, port, p, p.dst, b.out_mtu, b.overhead(), frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::ids::WorkerIdx;
    use crate::wire::tcp;

    /// The differential test's world: the DSR VIP 198.51.100.1:80 on port 0, its backends
    /// behind port 1 ("in", mtu 600).
    use super::super::fast_path_tests::{CONFIG, tcp4};

    /// A 1500-byte IPv4 TCP segment with DF from 203.0.113.1:`sport` to the VIP.
    fn big(sport: u16) -> Vec<u8> {
        let (src, dst) = ([203, 0, 113, 1], [198, 51, 100, 1]);
        let f = tcp4(0, (src, sport), (dst, 80), tcp::ACK, 1460);
        assert!(wire::Ipv4Packet::new_unchecked(&f[14..]).dont_frag());
        f
    }

    /// A flood of packets too big for their backend's port is answered at the bucket's rate,
    /// not packet for packet; every packet is accounted, the rest under their own reason.
    #[test]
    fn a_flood_of_big_packets_gets_a_trickle_of_icmp() {
        let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
        let snap = crate::snapshot::all_up(&cfg);
        let mut pipe = Pipeline::new(WorkerIdx::new(0), 1, 1024, 7);
        let mut replies = Vec::new();
        // 10 000 packets over 100 ms: 100 answered at once, then one a millisecond.
        for i in 0..10_000u32 {
            pipe.now_ms = 1_000 + i / 100;
            let mut f = VecFrame::new(&big(40_000 + (i % 500) as u16));
            pipe.counters.rx += 1;
            let v = pipe.process(&snap, PortIdx::new(0), &mut f);
            pipe.account(v);
            if v == Verdict::Reply {
                replies.push(f.to_vec());
            }
        }
        let c = &pipe.counters;
        let limited = c.drops[DropReason::MtuExceededRateLimited as usize];
        println!(
            "10000 too-big packets in 100 ms: {} answered, {limited} rate-limited",
            c.mtu_exceeded
        );
        assert_eq!(c.mtu_exceeded, u64::from(BURST) + 99);
        assert_eq!(c.mtu_exceeded + limited, 10_000);
        assert_eq!(c.forwarded, 0);
        assert!(c.balanced(), "{c:?}");
        // Each answer: ICMP 3/4 with next-hop MTU 600, 14 + 20 + 8 + 28 bytes.
        let r = &replies[0];
        assert_eq!(r.len(), 14 + 20 + 8 + 28);
        let ip = wire::Ipv4Packet::new_checked(&r[14..]).unwrap();
        assert!(ip.verify_checksum());
        let icmp = wire::Icmpv4Packet::new_checked(&r[34..]).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code(), icmp.next_hop_mtu()),
            (3, 4, 600)
        );
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::default();
        let sent = (0..1_000).filter(|_| b.take(5)).count();
        assert_eq!(sent, BURST as usize, "a burst at one instant");
        // One more every ms afterwards.
        let sent: usize = (6..1_006)
            .map(|t| (0..10).filter(|_| b.take(t)).count())
            .sum();
        assert_eq!(sent, 1_000);
        // A long quiet spell refills only up to the burst.
        let sent = (0..1_000).filter(|_| b.take(100_000)).count();
        assert_eq!(sent, BURST as usize);
        // The worker's clock wraps after 49 days.
        let mut b = Bucket {
            tokens: 0,
            at_ms: u32::MAX - 1,
        };
        assert!(b.take(3));
    }
}

//! Parsing: what the pipeline learns from a frame's headers before it decides.
//!
//! The general path parses through the wire views ([`ipv4`], [`ipv6`], [`ports`]) into an
//! [`IpMeta`]; the fast path reads an untagged IPv4 TCP/UDP frame's first 54 bytes in one go
//! ([`Pipeline::fast_parse`]) into a [`Fast`], with exactly the checks the views make.

use crate::flow::{FlowKey, FlowSlot};
use crate::flow::{v4_addr, v4_of};
use crate::frame::RxIpChecksum;
use crate::hash;
use crate::ids::{PortIdx, ServiceIdx};
use crate::snapshot::{Addr, IpKey, Snapshot};
use crate::wire::{self, IPPROTO_TCP, IPPROTO_UDP, checksum};

use super::Pipeline;

/// What the IP parse found, for both families: where the headers are and the facts of the
/// IP header the decisions need.
#[derive(Clone, Copy)]
pub(super) struct IpMeta {
    pub v6: bool,
    /// Offset of the IP header in the frame (after Ethernet and any VLAN tags).
    pub l3_off: usize,
    /// Offset of the L4 header in the frame (after any IPv4 options or IPv6 extension headers).
    pub l4_off: usize,
    /// Bytes of L4 header + payload (bounded by the IP length, without Ethernet padding).
    pub l4_len: usize,
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
}

impl IpMeta {
    /// The source address as the snapshot's maps key it (with its family).
    #[inline]
    pub fn src_key(&self) -> IpKey {
        IpKey::new(&self.src, self.v6)
    }

    /// The destination address (off the per-packet path: it builds an `IpAddr`).
    pub fn dst_ip(&self) -> std::net::IpAddr {
        self.dst_key().into()
    }

    /// The destination address as the snapshot's maps key it (with its family).
    #[inline]
    pub fn dst_key(&self) -> IpKey {
        IpKey::new(&self.dst, self.v6)
    }

    /// The packet's IP length: its IP header(s) and L4 bytes (Ethernet padding excluded).
    #[inline(always)]
    pub fn ip_len(&self) -> usize {
        self.l4_off - self.l3_off + self.l4_len
    }

    /// The flow key of a TCP/UDP packet with these ports.
    #[inline]
    pub fn flow_key(&self, sport: u16, dport: u16) -> FlowKey {
        if self.v6 {
            FlowKey::v6(self.src, self.dst, sport, dport, self.proto)
        } else {
            FlowKey::v4(v4_of(&self.src), v4_of(&self.dst), sport, dport, self.proto)
        }
    }
}

/// The parts of a TCP/UDP header the decision needs.
#[derive(Clone, Copy)]
pub(super) struct Ports {
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
}

/// What the fast path's parse learned about a frame ([`Pipeline::fast_parse`]).
#[derive(Clone, Copy)]
pub(super) struct Fast {
    pub key: FlowKey,
    /// [`hash::table_hash`] of `key`, for the flow table.
    pub hash: u64,
    /// The key's home slot in the flow table ([`FlowTable::home_slot`](crate::flow::FlowTable::home_slot)).
    pub home: FlowSlot,
    /// The service (index into the snapshot's).
    pub si: ServiceIdx,
    /// Bytes of TCP/UDP header and payload.
    pub l4_len: u16,
    pub tcp_flags: u8,
}

impl Fast {
    /// The general path's view of the same packet (untagged IPv4 without options).
    #[inline(always)]
    pub fn meta(&self) -> IpMeta {
        IpMeta {
            v6: false,
            l3_off: 14,
            l4_off: 34,
            l4_len: usize::from(self.l4_len),
            proto: self.key.proto,
            src: self.key.src,
            dst: self.key.dst,
        }
    }

    #[inline(always)]
    pub fn ports(&self) -> Ports {
        Ports {
            sport: self.key.sport,
            dport: self.key.dport,
            tcp_flags: self.tcp_flags,
        }
    }
}

impl Pipeline {
    /// The fast path's parse, in one read of a frame's first 54 bytes: an untagged IPv4
    /// frame to this port's MAC, no IP options, not a fragment, a valid header checksum, TCP
    /// or UDP to an IPv4 VIP port that has a service. These are exactly the checks the general
    /// path makes before it reaches [`Pipeline::service`] (the same views' `check_len` rules,
    /// and one lookup where it makes two: a service exists only for a VIP); anything else is
    /// `None` and takes the general path. Reads only. The header checksum is summed unless
    /// the NIC checked it (`ck`, [`RxIpChecksum`]); one it found wrong takes the general
    /// path, which drops it.
    #[inline(always)]
    pub(super) fn fast_parse(
        &self,
        snap: &Snapshot,
        port: PortIdx,
        data: &[u8],
        ck: RxIpChecksum,
    ) -> Option<Fast> {
        // Ethernet 14 + IPv4 20 + the 8 bytes every TCP and UDP header starts with.
        let h: &[u8; 42] = data.first_chunk()?;
        let prt = snap.ports.get(port.index())?;
        // The destination MAC (bytes 0..6) is the port's, the ethertype (12..14) IPv4, the
        // version and header length (14) 0x45: two masked words, two compares.
        let w0 = u64::from_le_bytes(*h.first_chunk::<8>()?);
        let w1 = u64::from_le_bytes(h[8..16].try_into().ok()?);
        if w0 & 0xffff_ffff_ffff != prt.mac_word
            || w1 & 0x00ff_ffff_0000_0000 != 0x0045_0008_0000_0000
        {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([h[16], h[17]]));
        if total < 28 || 14 + total > data.len() || h[20] & 0x3f != 0 || h[21] != 0 {
            return None; // short, truncated, or a fragment (MF or an offset)
        }
        match ck {
            RxIpChecksum::Good => {}
            RxIpChecksum::Bad => return None,
            RxIpChecksum::Unknown => {
                let mut sum = 0u64;
                for w in h[14..34].chunks_exact(4) {
                    sum += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
                }
                // A native-order sum folds to the byte-swapped big-endian one (RFC 1071), and
                // 0xffff reads the same both ways.
                if checksum::fold(sum) != 0xffff {
                    return None;
                }
            }
        }
        let (proto, l4_len) = (h[23], total - 20);
        let tcp_flags = match proto {
            IPPROTO_TCP => {
                // TcpPacket::check_len over the IP payload: 20 bytes, data offset 5..=len/4.
                let t = data.get(34..54)?;
                let off = usize::from(t[12] >> 4) * 4;
                if l4_len < 20 || off < 20 || off > l4_len {
                    return None;
                }
                t[13]
            }
            IPPROTO_UDP => {
                // UdpPacket::check_len: a length field of 8..=the IP payload.
                let len = usize::from(u16::from_be_bytes([h[38], h[39]]));
                if len < 8 || len > l4_len {
                    return None;
                }
                0
            }
            _ => return None,
        };
        let dst = [h[30], h[31], h[32], h[33]];
        let dport = u16::from_be_bytes([h[36], h[37]]);
        let si = snap.vip4.get(u32::from_be_bytes(dst), proto, dport)?;
        let key = FlowKey::v4(
            [h[26], h[27], h[28], h[29]],
            dst,
            u16::from_be_bytes([h[34], h[35]]),
            dport,
            proto,
        );
        let hash = hash::table_hash(self.local_seed, &key);
        Some(Fast {
            home: self.flows.home_slot(hash),
            hash,
            key,
            si: ServiceIdx::new(si),
            l4_len: l4_len as u16,
            tcp_flags,
        })
    }
}

/// The IPv4 header at `l3_off`, and whether the packet is a fragment; `None` when it is
/// malformed or its header checksum is wrong (as the NIC says, `ck`, or else as its sum
/// says).
pub(super) fn ipv4(data: &[u8], l3_off: usize, ck: RxIpChecksum) -> Option<(IpMeta, bool)> {
    let ip = wire::Ipv4Packet::new_checked(&data[l3_off..]).ok()?;
    let good = match ck {
        RxIpChecksum::Good => true,
        RxIpChecksum::Bad => false,
        RxIpChecksum::Unknown => ip.verify_checksum(),
    };
    if !good {
        return None;
    }
    let hl = ip.header_len();
    let p = IpMeta {
        v6: false,
        l3_off,
        l4_off: l3_off + hl,
        l4_len: ip.total_len() as usize - hl,
        proto: ip.protocol(),
        src: v4_addr(ip.src_addr()),
        dst: v4_addr(ip.dst_addr()),
    };
    Some((p, ip.more_frags() || ip.frag_offset() != 0))
}

/// The IPv6 header at `l3_off` and its extension headers, and whether the packet is a
/// fragment; `None` when it is malformed.
pub(super) fn ipv6(data: &[u8], l3_off: usize) -> Option<(IpMeta, bool)> {
    let ip = wire::Ipv6Packet::new_checked(&data[l3_off..]).ok()?;
    let ul = ip.upper_layer().ok()?;
    let end = 40 + ip.payload_len() as usize;
    let p = IpMeta {
        v6: true,
        l3_off,
        l4_off: l3_off + ul.offset,
        l4_len: end - ul.offset,
        proto: ul.protocol,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
    };
    Some((p, ul.fragment.is_some()))
}

/// Ports and flags of a TCP/UDP header, length-checked.
#[inline]
pub(super) fn ports(data: &[u8], p: &IpMeta) -> Option<Ports> {
    let seg = data.get(p.l4_off..p.l4_off + p.l4_len)?;
    if p.proto == IPPROTO_TCP {
        let t = wire::TcpPacket::new_checked(seg).ok()?;
        Some(Ports {
            sport: t.src_port(),
            dport: t.dst_port(),
            tcp_flags: t.flags(),
        })
    } else {
        let u = wire::UdpPacket::new_checked(seg).ok()?;
        Some(Ports {
            sport: u.src_port(),
            dport: u.dst_port(),
            tcp_flags: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Pipeline;
    use super::super::fast_path_tests::{CONFIG, tcp4};
    use crate::frame::{RxIpChecksum, VecFrame};
    use crate::ids::{PortIdx, WorkerIdx};
    use crate::verdict::{DropReason, Verdict};
    use crate::wire::tcp;

    /// A SYN from 203.0.113.9:40000 to the DSR VIP 198.51.100.1:80, its IPv4 header checksum
    /// right, or wrong when `corrupt`.
    fn syn(corrupt: bool) -> Vec<u8> {
        let (src, dst) = ([203, 0, 113, 9], [198, 51, 100, 1]);
        let mut f = tcp4(0, (src, 40_000), (dst, 80), tcp::SYN, 0);
        if corrupt {
            f[14 + 10] ^= 0x5a;
        }
        f
    }

    /// The NIC's word on the IPv4 header checksum, through the fast path (`process`) and
    /// the general path (`classify`) alike: GOOD is taken without summing (a header whose
    /// sum is wrong passes), BAD is dropped as a malformed header whatever its sum, and
    /// without a word (UNKNOWN, NONE) the sum decides.
    #[test]
    fn the_nics_checksum_verdict_is_taken_and_unknown_is_summed() {
        let cfg = conf::parse(CONFIG, std::path::Path::new("test.toml")).unwrap();
        let snap = crate::snapshot::all_up(&cfg);
        let forward = |v: Verdict| matches!(v, Verdict::Forward { .. });
        let malformed = Verdict::Drop(DropReason::MalformedIpv4);
        let cases = [
            (RxIpChecksum::Unknown, false, true),
            (RxIpChecksum::Unknown, true, false),
            (RxIpChecksum::Good, false, true),
            (RxIpChecksum::Good, true, true),
            (RxIpChecksum::Bad, false, false),
            (RxIpChecksum::Bad, true, false),
        ];
        for (ck, corrupt, forwarded) in cases {
            for general in [false, true] {
                let mut pipe = Pipeline::new(WorkerIdx::new(0), 1, 1024, 7);
                let mut f = VecFrame::new(&syn(corrupt)).with_rx_ip_checksum(ck);
                let v = if general {
                    pipe.classify(&snap, PortIdx::new(0), &mut f)
                } else {
                    pipe.process(&snap, PortIdx::new(0), &mut f)
                };
                println!("{ck:?}, header sum wrong: {corrupt}, general path: {general}: {v:?}");
                if forwarded {
                    assert!(forward(v), "{ck:?} {corrupt} {general}: {v:?}");
                } else {
                    assert_eq!(v, malformed, "{ck:?} {corrupt} {general}");
                }
            }
        }
    }
}

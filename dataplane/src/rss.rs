//! Receive-side scaling as a NIC computes it: the Toeplitz hash of a packet's addresses and
//! ports under a key, and the redirection table (RETA) that maps its low bits to a queue. For
//! FullNAT: which queue a backend's reply to a local port will reach, so that a worker can
//! take local ports whose replies the NIC itself delivers to it ([`ReplySteer`]).
//!
//! The Toeplitz hash is linear over GF(2) in its input (each set input bit XORs in the 32
//! key bits starting at its position), so the hash of a reply `backend:bport ->
//! local:lport` is the hash of the same tuple with `lport = 0` XOR the hash of `lport` alone
//! in the destination-port position. [`ReplySteer`] tabulates the second term once (64 Ki
//! words), and a candidate port then costs one XOR and one RETA load. Off the per-packet
//! path: a new flow's port choice.

use std::net::IpAddr;

/// Fulcrum's key (`dpdk/port.rs` sets it when a device hashes): 0x6d5a repeated, which makes
/// the hash symmetric (a flow's two directions reach one queue).
pub const SYMMETRIC_KEY: [u8; 40] = {
    let mut k = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// The Toeplitz hash of `input` under `key` (which must be at least 4 bytes longer than
/// `input`): for each set bit of the input, from the most significant bit of its first byte,
/// the 32 key bits starting at that bit's position are XORed in.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, &byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    hash
}

/// The bytes a NIC hashes for a TCP/UDP packet (Microsoft's order, DPDK's `RTE_ETH_RSS_*TCP`
/// / `*UDP`): source address, destination address, source port, destination port. 36 bytes
/// used for IPv6, 12 for IPv4.
pub fn tuple_input(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> ([u8; 36], usize) {
    let mut b = [0u8; 36];
    let n = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b[0..4].copy_from_slice(&s.octets());
            b[4..8].copy_from_slice(&d.octets());
            8
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b[0..16].copy_from_slice(&s.octets());
            b[16..32].copy_from_slice(&d.octets());
            32
        }
        _ => 0,
    };
    b[n..n + 2].copy_from_slice(&sport.to_be_bytes());
    b[n + 2..n + 4].copy_from_slice(&dport.to_be_bytes());
    (b, n + 4)
}

/// The queue a packet with this hash reaches: the RETA entry its low bits index (the RETA's
/// size is a power of two on every NIC DPDK drives).
#[inline]
pub fn queue_of(reta: &[u16], hash: u32) -> u16 {
    reta[hash as usize & (reta.len() - 1)]
}

/// Which local ports' replies a NIC delivers to a queue, for one key and RETA.
pub struct ReplySteer {
    key: [u8; 40],
    reta: Box<[u16]>,
    /// Per family (v4, v6): the hash of each port alone in the destination-port position.
    dport_term: [Box<[u32]>; 2],
}

impl ReplySteer {
    /// `reta`'s length must be a power of two (as the NIC's is).
    pub fn new(key: [u8; 40], reta: Box<[u16]>) -> ReplySteer {
        assert!(reta.len().is_power_of_two(), "RETA size {}", reta.len());
        let term = |at: usize, len: usize| -> Box<[u32]> {
            (0..=u16::MAX)
                .map(|p| {
                    let mut input = [0u8; 36];
                    input[at..at + 2].copy_from_slice(&p.to_be_bytes());
                    toeplitz(&key, &input[..len])
                })
                .collect()
        };
        ReplySteer {
            dport_term: [term(10, 12), term(34, 36)],
            key,
            reta,
        }
    }

    /// The hash of the reply `backend:bport -> local:0`, to which a local port's own term
    /// is XORed ([`queue`](Self::queue)).
    pub fn base(&self, backend: IpAddr, bport: u16, local: IpAddr) -> u32 {
        let (input, n) = tuple_input(backend, local, bport, 0);
        toeplitz(&self.key, &input[..n])
    }

    /// The queue the reply to local port `lport` reaches, given its [`base`](Self::base).
    #[inline]
    pub fn queue(&self, base: u32, v6: bool, lport: u16) -> u16 {
        queue_of(
            &self.reta,
            base ^ self.dport_term[usize::from(v6)][usize::from(lport)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of Microsoft's "Verifying the RSS Hash Calculation".
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The specification's vectors: (source, destination) as (address, port), the hash of
    /// the addresses alone (IPv4 only) and with the ports (TCP).
    #[test]
    fn microsoft_rss_verification_vectors() {
        let v4 = [
            (
                ("66.9.149.187", 2794),
                ("161.142.100.80", 1766),
                0x323e8fc2,
                0x51ccc178,
            ),
            (
                ("199.92.111.2", 14230),
                ("65.69.140.83", 4739),
                0xd718262a,
                0xc626b0ea,
            ),
            (
                ("24.19.198.95", 12898),
                ("12.22.207.184", 38024),
                0xd2d0a5de,
                0x5c2b394a,
            ),
            (
                ("38.27.205.30", 48228),
                ("209.142.163.6", 2217),
                0x82989176,
                0xafc7327f,
            ),
            (
                ("153.39.163.191", 44251),
                ("202.188.127.2", 1303),
                0x5d1809c5,
                0x10e828a2,
            ),
        ];
        for ((s, sp), (d, dp), l3, l4) in v4 {
            let (input, n) = tuple_input(ip(s), ip(d), sp, dp);
            assert_eq!(toeplitz(&MS_KEY, &input[..8]), l3, "{s} -> {d}");
            assert_eq!(toeplitz(&MS_KEY, &input[..n]), l4, "{s}:{sp} -> {d}:{dp}");
        }
        let v6 = [
            (
                ("3ffe:2501:200:1fff::7", 2794),
                ("3ffe:2501:200:3::1", 1766),
                0x40207d3d,
            ),
            (
                ("3ffe:501:8::260:97ff:fe40:efab", 14230),
                ("ff02::1", 4739),
                0xdde51bbf,
            ),
        ];
        for ((s, sp), (d, dp), l4) in v6 {
            let (input, n) = tuple_input(ip(s), ip(d), sp, dp);
            assert_eq!(n, 36);
            assert_eq!(toeplitz(&MS_KEY, &input[..n]), l4, "{s}:{sp} -> {d}:{dp}");
        }
    }

    #[test]
    fn the_symmetric_key_gives_both_directions_one_hash() {
        let (a, b) = (ip("203.0.113.7"), ip("10.1.0.11"));
        let (f, n) = tuple_input(a, b, 40000, 8080);
        let (r, _) = tuple_input(b, a, 8080, 40000);
        assert_eq!(
            toeplitz(&SYMMETRIC_KEY, &f[..n]),
            toeplitz(&SYMMETRIC_KEY, &r[..n])
        );
    }

    /// For every port of a range, the queue [`ReplySteer`] predicts for the reply is the one
    /// the reference hash of the whole reply tuple and the RETA give (Fulcrum's key and the
    /// specification's, IPv4 and IPv6, a 128-entry RETA over 2 and 3 queues); so the ports a
    /// worker keeps for queue `q` are exactly those whose replies the NIC sends to `q`.
    #[test]
    fn the_ports_kept_for_a_queue_hash_to_it() {
        for key in [SYMMETRIC_KEY, MS_KEY] {
            for queues in [2u16, 3] {
                let reta: Box<[u16]> = (0..128u16).map(|i| i % queues).collect();
                let steer = ReplySteer::new(key, reta.clone());
                for (backend, local) in [
                    (ip("10.1.0.11"), ip("10.1.0.1")),
                    (ip("fd01::11"), ip("fd01::1")),
                ] {
                    let base = steer.base(backend, 8080, local);
                    let mut per_queue = vec![0u32; usize::from(queues)];
                    for lport in 20000..=20999u16 {
                        let q = steer.queue(base, backend.is_ipv6(), lport);
                        let (input, n) = tuple_input(backend, local, 8080, lport);
                        let want = reta[toeplitz(&key, &input[..n]) as usize & 127];
                        assert_eq!(q, want, "{backend} -> {local}:{lport}");
                        per_queue[usize::from(q)] += 1;
                    }
                    // Every queue gets a fair share of the ports.
                    for n in per_queue {
                        assert!(n > 1000 / u32::from(queues) / 2, "{n}");
                    }
                }
            }
        }
    }
}

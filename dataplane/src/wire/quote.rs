//! The packet an ICMP(v6) error quotes (RFC 792, RFC 4443 2.4): its IP header and at least
//! the first 8 bytes after it, which for TCP and UDP hold both ports.
//!
//! A quote is usually cut short: its IP length fields describe the packet as it was sent,
//! not the bytes quoted, so the IPv4/IPv6 views' `check_len` (which want the whole packet)
//! do not apply. [`Quote::parse`] checks what an error's receiver needs instead: the header
//! and 8 bytes of TCP/UDP within the quote. It never panics, whatever the bytes.

use super::{
    IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP,
    IPPROTO_UDP, WireError, ipv6,
};

/// What a quoted TCP/UDP packet says about its flow. Addresses as in a flow key (IPv4 in the
/// first 4 bytes, the rest zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub v6: bool,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// Offset of the TCP/UDP header from the start of the quote (an even number).
    pub l4: usize,
}

impl Quote {
    /// Reads the quote at the start of `quote` (an ICMP error's payload), an IPv6 packet when
    /// `v6`, else IPv4. Errors: [`WireError::Truncated`] when the IP header (with its options
    /// or extension headers) and 8 bytes of L4 are not all there; [`WireError::BadVersion`],
    /// [`WireError::BadHeaderLen`], [`WireError::BadTotalLen`] (IPv4: a length that cannot
    /// hold 8 bytes of L4), [`WireError::TooManyExtHeaders`] / [`WireError::BadExtHeader`]
    /// as the IPv6 view says them; [`WireError::BadLength`] for a protocol other than TCP
    /// and UDP or a later fragment (no ports in it).
    pub fn parse(quote: &[u8], v6: bool) -> Result<Quote, WireError> {
        let (proto, l4, src, dst) = if v6 {
            let Some(h) = quote.first_chunk::<{ ipv6::HEADER_LEN }>() else {
                return Err(WireError::Truncated);
            };
            if h[0] >> 4 != 6 {
                return Err(WireError::BadVersion);
            }
            let (proto, l4) = walk_v6(quote, h[6])?;
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&h[8..24]);
            dst.copy_from_slice(&h[24..40]);
            (proto, l4, src, dst)
        } else {
            let Some(h) = quote.first_chunk::<20>() else {
                return Err(WireError::Truncated);
            };
            if h[0] >> 4 != 4 {
                return Err(WireError::BadVersion);
            }
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if ihl < 20 {
                return Err(WireError::BadHeaderLen);
            }
            if usize::from(u16::from_be_bytes([h[2], h[3]])) < ihl + 8 {
                return Err(WireError::BadTotalLen);
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
                return Err(WireError::BadLength); // a later fragment: no ports
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..4].copy_from_slice(&h[12..16]);
            dst[..4].copy_from_slice(&h[16..20]);
            (h[9], ihl, src, dst)
        };
        if !matches!(proto, IPPROTO_TCP | IPPROTO_UDP) {
            return Err(WireError::BadLength);
        }
        let Some(ports) = quote.get(l4..).and_then(<[u8]>::first_chunk::<8>) else {
            return Err(WireError::Truncated);
        };
        Ok(Quote {
            v6,
            proto,
            src,
            dst,
            sport: u16::from_be_bytes([ports[0], ports[1]]),
            dport: u16::from_be_bytes([ports[2], ports[3]]),
            l4,
        })
    }
}

/// [`ipv6::Packet::upper_layer`]'s walk, bounded by the quote instead of the payload length:
/// the upper-layer protocol and its offset.
fn walk_v6(quote: &[u8], first: u8) -> Result<(u8, usize), WireError> {
    let mut protocol = first;
    let mut offset = ipv6::HEADER_LEN;
    let mut fragment = false;
    for walked in 0..=ipv6::MAX_EXT_HEADERS {
        if !matches!(
            protocol,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT | IPPROTO_AH
        ) {
            return Ok((protocol, offset));
        }
        if walked == ipv6::MAX_EXT_HEADERS {
            break;
        }
        if protocol == IPPROTO_HOPOPTS && walked != 0 {
            return Err(WireError::BadExtHeader);
        }
        let Some(ext) = quote.get(offset..).and_then(<[u8]>::first_chunk::<8>) else {
            return Err(WireError::Truncated);
        };
        let len = match protocol {
            IPPROTO_FRAGMENT => {
                if fragment {
                    return Err(WireError::BadExtHeader);
                }
                fragment = true;
                if u16::from_be_bytes([ext[2], ext[3]]) & 0xfff8 != 0 {
                    return Err(WireError::BadLength); // a later fragment: no ports
                }
                8
            }
            IPPROTO_AH => (usize::from(ext[1]) + 2) * 4,
            _ => (usize::from(ext[1]) + 1) * 8,
        };
        protocol = ext[0];
        offset += len;
    }
    Err(WireError::TooManyExtHeaders)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 (20 bytes, total length 40, TCP) 10.0.0.100 -> 10.0.0.50, then ports 80 -> 40000.
    const Q4: [u8; 28] = [
        0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0,
        0, // ver/ihl, tos, len, id, frag, ttl, proto, csum
        10, 0, 0, 100, 10, 0, 0, 50, // src, dst
        0, 80, 0x9c, 0x40, 0, 0, 0, 1, // sport, dport, seq
    ];

    #[test]
    fn v4_quote_with_eight_bytes_of_tcp() {
        let q = Quote::parse(&Q4, false).unwrap();
        assert_eq!(
            (q.proto, q.sport, q.dport, q.l4),
            (IPPROTO_TCP, 80, 40000, 20)
        );
        assert_eq!(&q.src[..4], &[10, 0, 0, 100]);
        assert_eq!(&q.dst[..4], &[10, 0, 0, 50]);
        assert_eq!(&q.src[4..], &[0; 12]);
    }

    #[test]
    fn every_cut_of_a_v4_quote_is_refused() {
        for n in 0..Q4.len() {
            assert!(Quote::parse(&Q4[..n], false).is_err(), "{n} bytes");
        }
        let mut b = Q4;
        b[0] = 0x44;
        assert_eq!(Quote::parse(&b, false), Err(WireError::BadHeaderLen));
        let mut b = Q4;
        b[0] = 0x46; // 4 bytes of options: the ports are no longer in the quote
        assert_eq!(Quote::parse(&b, false), Err(WireError::Truncated));
        let mut b = Q4;
        b[9] = 1;
        assert_eq!(Quote::parse(&b, false), Err(WireError::BadLength));
        let mut b = Q4;
        b[7] = 1; // fragment offset 8
        assert_eq!(Quote::parse(&b, false), Err(WireError::BadLength));
        let mut b = Q4;
        b[3] = 27;
        assert_eq!(Quote::parse(&b, false), Err(WireError::BadTotalLen));
        assert_eq!(Quote::parse(&Q4, true), Err(WireError::Truncated));
    }

    #[test]
    fn v6_quote_through_extension_headers() {
        let mut b = vec![0u8; 40 + 8 + 8];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&100u16.to_be_bytes()); // longer than the quote: fine
        b[6] = IPPROTO_DSTOPTS;
        b[8] = 0xfd;
        b[24] = 0xfe;
        b[40] = IPPROTO_UDP; // destination options, 8 bytes
        b[48..52].copy_from_slice(&[0x01, 0xbb, 0xb0, 0x00]);
        let q = Quote::parse(&b, true).unwrap();
        assert_eq!(
            (q.proto, q.sport, q.dport, q.l4),
            (IPPROTO_UDP, 443, 45056, 48)
        );
        assert_eq!((q.src[0], q.dst[0]), (0xfd, 0xfe));
        for n in 0..b.len() {
            assert!(Quote::parse(&b[..n], true).is_err(), "{n} bytes");
        }
        b[6] = IPPROTO_FRAGMENT;
        b[42..44].copy_from_slice(&[0, 8]); // offset 8: a later fragment
        assert_eq!(Quote::parse(&b, true), Err(WireError::BadLength));
        b[6] = IPPROTO_DSTOPTS;
        b[40] = IPPROTO_HOPOPTS;
        assert_eq!(Quote::parse(&b, true), Err(WireError::BadExtHeader));
    }
}

//! Why a header was refused: one fieldless variant per reason, cheap enough to return per
//! packet and to index a drop counter with.

use core::fmt;

/// A header that a view refused. `Copy`, no payload, no allocation.
///
/// The split between [`Truncated`](Self::Truncated) and the `Bad*` variants follows Linux's
/// `ip_rcv_core`: a buffer shorter than what a (sane) header says is *truncated*; a header whose
/// own fields contradict each other is *bad*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer ends before the header does, or before the length a header field claims
    /// (IPv4 total length, IPv6 payload length, UDP length, an extension header's length).
    Truncated,
    /// The IP version nibble is not the one the view parses (4 or 6).
    BadVersion,
    /// IPv4 IHL or TCP data offset below 5 (a header shorter than its fixed part).
    BadHeaderLen,
    /// IPv4 total length smaller than the IPv4 header length; or, when emitting, a payload
    /// too long for the 16-bit total length.
    BadTotalLen,
    /// UDP length field smaller than the 8-byte UDP header; or, when emitting, a payload too
    /// long for a 16-bit length field.
    BadLength,
    /// More than two stacked VLAN tags (802.1Q / 802.1ad).
    TooManyVlans,
    /// An IPv6 extension header chain longer than [`ipv6::MAX_EXT_HEADERS`](super::ipv6::MAX_EXT_HEADERS).
    TooManyExtHeaders,
    /// An IPv6 extension header chain in an order RFC 8200 forbids: Hop-by-Hop Options not
    /// directly after the IPv6 header, or a second Fragment header.
    BadExtHeader,
    /// An ARP packet that is not Ethernet (1) / IPv4 (0x0800) with lengths 6 and 4.
    BadArpFormat,
}

impl WireError {
    /// Every variant, in declaration order: `ALL[e.index()] == e`.
    pub const ALL: [WireError; 9] = [
        WireError::Truncated,
        WireError::BadVersion,
        WireError::BadHeaderLen,
        WireError::BadTotalLen,
        WireError::BadLength,
        WireError::TooManyVlans,
        WireError::TooManyExtHeaders,
        WireError::BadExtHeader,
        WireError::BadArpFormat,
    ];

    /// Dense index in `0..ALL.len()`, to index an array of per-reason drop counters.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A stable snake_case name, for counter and metric names.
    pub const fn name(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::BadVersion => "bad_version",
            WireError::BadHeaderLen => "bad_header_len",
            WireError::BadTotalLen => "bad_total_len",
            WireError::BadLength => "bad_length",
            WireError::TooManyVlans => "too_many_vlans",
            WireError::TooManyExtHeaders => "too_many_ext_headers",
            WireError::BadExtHeader => "bad_ext_header",
            WireError::BadArpFormat => "bad_arp_format",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_indexed_in_order_and_names_are_unique() {
        for (i, e) in WireError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            for other in &WireError::ALL[i + 1..] {
                assert_ne!(e.name(), other.name());
            }
        }
    }
}

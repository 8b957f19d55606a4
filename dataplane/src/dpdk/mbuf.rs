//! The owned packet buffer: one `rte_mbuf`, freed on drop, with its bytes reachable from plain
//! Rust (no C call per packet).
//!
//! Everything here assumes the invariants DPDK keeps for a direct mbuf that one owner holds:
//! `buf_addr` points at `buf_len` bytes, `data_off + data_len <= buf_len`, and for a single
//! segment `pkt_len == data_len`. The mutators below keep them.

use std::fmt;
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::error::MbufError;
use super::mempool::Mempool;
use crate::frame::{Frame, RxIpChecksum};

/// One owned `rte_mbuf`. Same layout as `*mut rte_mbuf` (never null), so arrays of them are
/// what `rte_eth_rx_burst` and friends read and write.
///
/// Data access covers the first segment: the ports are configured without scatter RX, so a
/// chain only appears when a driver gets a frame larger than one mbuf (some do, e.g.
/// `net_pcap`); check [`Mbuf::is_contiguous`] and drop those, as the worker does
/// (`multi_segment`).
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: a Mbuf is the only reference to its mbuf, and DPDK allows freeing an mbuf from any
// thread (the pools use multi-producer ops), so ownership can move between threads.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// A fresh, empty mbuf from `pool` (headroom reserved, length 0), or `None` if the pool
    /// is exhausted.
    #[inline]
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: the pool is alive while `pool` is; the shim returns a reset mbuf or null.
        NonNull::new(unsafe { sys::fulcrum_pktmbuf_alloc(pool.as_ptr()) }).map(Mbuf)
    }

    /// An mbuf from `pool` holding a copy of `bytes`.
    pub fn from_slice(pool: &Mempool, bytes: &[u8]) -> Result<Mbuf, MbufError> {
        let mut m = Mbuf::alloc(pool).ok_or(MbufError::PoolEmpty)?;
        if !m.append(bytes.len()) {
            return Err(MbufError::TooLong);
        }
        m.data_mut().copy_from_slice(bytes);
        Ok(m)
    }

    #[inline]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf (type invariant) and nothing else touches it.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut sys::rte_mbuf {
        // SAFETY: as in `raw`, and `&mut self` makes this the only reference.
        unsafe { self.0.as_mut() }
    }

    /// Bytes in the first segment (`data_len`), i.e. `self.data().len()`.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// Whether the first segment holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw().data_len == 0
    }

    /// Bytes of the whole packet, all segments (`pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// Number of segments.
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Whether the whole packet is in this one segment (what [`Frame`] sees).
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        // nb_segs sits in the first cache line, `next` in the second.
        self.raw().nb_segs == 1
    }

    /// Free bytes in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Free bytes after the data, in this segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    /// The port the mbuf was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Sets the `port` field. The slow path's frames name the port INDEX (config order) to
    /// send them on here; the worker that drains them reads it back with [`Mbuf::port`].
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        self.raw_mut().port = port;
    }

    /// The offload flags (`RTE_MBUF_F_*`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }

    /// The NIC's RSS hash, if the driver filled it in (`RTE_MBUF_F_RX_RSS_HASH`). None of the
    /// virtual devices do.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.raw();
        if m.ol_flags & u64::from(sys::RTE_MBUF_F_RX_RSS_HASH) == 0 {
            return None;
        }
        // SAFETY: with RTE_MBUF_F_RX_RSS_HASH set, the driver wrote the `rss` member; every
        // member of the union is plain integers anyway.
        Some(unsafe { m.__bindgen_anon_2.hash.rss })
    }

    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        let m = self.raw();
        // SAFETY: data_off <= buf_len, so the result stays inside the buffer.
        unsafe { m.buf_addr.cast::<u8>().add(usize::from(m.data_off)) }
    }

    /// Frees the segments after the first, making this a single-segment mbuf.
    fn drop_tail_segments(&mut self) {
        let m = self.raw_mut();
        let tail = std::mem::replace(&mut m.next, std::ptr::null_mut());
        if tail.is_null() {
            return;
        }
        m.nb_segs = 1;
        m.pkt_len = u32::from(m.data_len);
        // SAFETY: `tail` is the rest of the chain we own, now unlinked from the head; freeing
        // it as a packet frees each of its segments once.
        unsafe { sys::fulcrum_pktmbuf_free(tail) };
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (and its chain) and nothing uses it after this.
        unsafe { sys::fulcrum_pktmbuf_free(self.0.as_ptr()) };
    }
}

impl Frame for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: data_off + data_len <= buf_len (mbuf invariant), so the range lies inside
        // the buffer, which we own and which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len()) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes this the only access to the bytes.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.len()) }
    }

    /// Shrinks the first segment to `len` bytes and frees any further segments.
    #[inline]
    fn truncate(&mut self, len: usize) {
        if !self.is_contiguous() {
            self.drop_tail_segments();
        }
        let m = self.raw_mut();
        if len < usize::from(m.data_len) {
            // Lossless: len < data_len <= u16::MAX.
            m.data_len = len as u16;
            m.pkt_len = len as u32;
        }
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let m = self.raw_mut();
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        if n16 > m.data_off || m.data_len.checked_add(n16).is_none() {
            return false;
        }
        m.data_off -= n16;
        m.data_len += n16;
        m.pkt_len += u32::from(n16);
        true
    }

    /// Grows the frame into the tailroom; refused (`false`) on a multi-segment mbuf, whose
    /// end is not in this segment.
    #[inline]
    fn append(&mut self, n: usize) -> bool {
        if !self.is_contiguous() || n > self.tailroom() {
            return false;
        }
        let m = self.raw_mut();
        // Lossless: n <= tailroom < buf_len <= u16::MAX.
        m.data_len += n as u16;
        m.pkt_len += n as u32;
        true
    }

    /// From `ol_flags`: GOOD and BAD as the NIC says; UNKNOWN, and NONE (a header the NIC
    /// found whole whose checksum field is not filled in), are checked in software.
    #[inline]
    fn rx_ip_checksum(&self) -> RxIpChecksum {
        let f = self.raw().ol_flags & u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_MASK);
        if f == u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD) {
            RxIpChecksum::Good
        } else if f == u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_BAD) {
            RxIpChecksum::Bad
        } else {
            RxIpChecksum::Unknown
        }
    }
}

impl AsRef<[u8]> for Mbuf {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl AsMut<[u8]> for Mbuf {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("ptr", &self.0)
            .field("len", &self.len())
            .field("pkt_len", &self.pkt_len())
            .field("nb_segs", &self.nb_segs())
            .field("headroom", &self.headroom())
            .field("port", &self.port())
            .finish()
    }
}

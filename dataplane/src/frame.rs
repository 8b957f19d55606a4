//! The one abstraction the pipeline needs from a packet buffer: its bytes, room to grow or
//! shrink it in place, and what the NIC already checked of it. Implemented by the DPDK mbuf
//! and by [`VecFrame`] for tests.

/// What the NIC found of a received frame's IPv4 header checksum (RX checksum offload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxIpChecksum {
    /// Not checked (no offload, not IPv4, or the NIC could not tell): the pipeline checks it.
    Unknown,
    /// Checked and right: the pipeline does not sum the header again.
    Good,
    /// Checked and wrong: the frame is dropped as a malformed IPv4 header is.
    Bad,
}

/// A single-segment packet buffer that can be resized in place.
pub trait Frame {
    /// The frame's bytes, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The frame's bytes, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Shrinks the frame to `len` bytes (no-op if it is already shorter or equal).
    fn truncate(&mut self, len: usize);
    /// Grows the frame by `n` bytes at the front (headroom). `false` if there is no room;
    /// the frame is then unchanged.
    fn prepend(&mut self, n: usize) -> bool;
    /// Grows the frame by `n` bytes at the end (tailroom); the new bytes are unspecified.
    /// `false` if there is no room; the frame is then unchanged.
    fn append(&mut self, n: usize) -> bool;
    /// What the NIC said of the frame's IPv4 header checksum: [`RxIpChecksum::Unknown`]
    /// unless the frame came from a port with the offload.
    #[inline(always)]
    fn rx_ip_checksum(&self) -> RxIpChecksum {
        RxIpChecksum::Unknown
    }
}

/// A heap frame with fixed headroom and capacity, standing in for an mbuf in tests.
#[derive(Clone, Debug)]
pub struct VecFrame {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    rx_ip_checksum: RxIpChecksum,
}

impl VecFrame {
    /// Headroom an mbuf has by default (`RTE_PKTMBUF_HEADROOM`).
    pub const HEADROOM: usize = 128;
    /// Data room of a default mbuf (2048 bytes after the headroom).
    pub const ROOM: usize = 2048;

    /// A frame holding `bytes`, with mbuf-like headroom and tailroom.
    pub fn new(bytes: &[u8]) -> Self {
        let cap = Self::HEADROOM + Self::ROOM.max(bytes.len());
        let mut buf = vec![0u8; cap];
        buf[Self::HEADROOM..Self::HEADROOM + bytes.len()].copy_from_slice(bytes);
        VecFrame {
            buf,
            start: Self::HEADROOM,
            end: Self::HEADROOM + bytes.len(),
            rx_ip_checksum: RxIpChecksum::Unknown,
        }
    }

    /// A frame holding `bytes` with only `headroom` bytes before them (a buffer another
    /// header already grew into).
    pub fn with_headroom(bytes: &[u8], headroom: usize) -> Self {
        let mut f = Self::new(bytes);
        f.buf.drain(..Self::HEADROOM - headroom.min(Self::HEADROOM));
        f.start = headroom.min(Self::HEADROOM);
        f.end = f.start + bytes.len();
        f
    }

    /// The frame as a port with RX checksum offload would hand it over, with the NIC's word
    /// `c` on its IPv4 header checksum.
    pub fn with_rx_ip_checksum(mut self, c: RxIpChecksum) -> Self {
        self.rx_ip_checksum = c;
        self
    }

    /// The frame's bytes as an owned vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl Frame for VecFrame {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn truncate(&mut self, len: usize) {
        if len < self.end - self.start {
            self.end = self.start + len;
        }
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        if self.end + n > self.buf.len() {
            return false;
        }
        self.end += n;
        true
    }
    fn rx_ip_checksum(&self) -> RxIpChecksum {
        self.rx_ip_checksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_within_room_only() {
        let mut f = VecFrame::new(&[1, 2, 3, 4]);
        assert!(f.prepend(2));
        assert_eq!(f.data().len(), 6);
        assert_eq!(&f.data()[2..], &[1, 2, 3, 4]);
        f.truncate(3);
        assert_eq!(f.data().len(), 3);
        assert!(!f.prepend(VecFrame::HEADROOM));
        assert!(f.append(10));
        assert_eq!(f.data().len(), 13);
        assert!(!f.append(1 << 20));
    }
}

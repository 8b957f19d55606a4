//! The balancer's own TCP/IP stack: one smoltcp interface per data port, holding the port's
//! own addresses, fed with the IP packets the workers handed to the slow path and emitting IP
//! packets that [`crate::neigh`] frames and a worker transmits.
//!
//! The interfaces use smoltcp's IP medium: Ethernet and ARP are the slow path's own business
//! (one neighbour table for the stack and the workers, packets queued rather than dropped
//! while a neighbour resolves, no fixed-size cache to outgrow with a thousand backends). So is
//! routing: with the IP medium smoltcp consults no route to send, and each packet it emits
//! leaves by the port and next hop `conf::Config::route` names, as the workers' frames do.
//!
//! Checksums: computed on transmit, not verified on receive (`Checksum::Tx`). Frames reach
//! the slow path from virtual and real NICs that may leave offloaded checksums partial; the
//! worker already verified the IPv4 header, and TCP's own sequence checks catch strays.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address};

use dataplane::ids::PortIdx;

/// The IP MTU of a device made without a port's (standard Ethernet).
pub const IP_MTU: usize = conf::Port::DEFAULT_MTU as usize;
/// Received packets waiting for the stack, per port; more in one turn are dropped.
const RX_QUEUE: usize = 4096;

/// smoltcp's clock from the slow path's.
pub fn instant(now: Duration) -> Instant {
    Instant::from_micros(now.as_micros() as i64)
}

/// A device made of two queues: packets in (from the workers), packets out (to the wire).
#[derive(Debug)]
pub struct QueueDevice {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: Vec<Vec<u8>>,
    /// The IP MTU smoltcp sends within: its port's `mtu`.
    mtu: usize,
}

impl Default for QueueDevice {
    fn default() -> Self {
        QueueDevice::with_mtu(IP_MTU)
    }
}

impl QueueDevice {
    /// A device whose packets are at most `mtu` bytes of IP.
    pub fn with_mtu(mtu: usize) -> Self {
        QueueDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu,
        }
    }
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxToken(p), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        let mut sum = ChecksumCapabilities::default();
        sum.ipv4 = Checksum::Tx;
        sum.tcp = Checksum::Tx;
        sum.udp = Checksum::Tx;
        sum.icmpv4 = Checksum::Tx;
        sum.icmpv6 = Checksum::Tx;
        caps.checksum = sum;
        caps
    }
}

/// One data port's interface and sockets.
pub struct PortStack {
    pub iface: Interface,
    pub device: QueueDevice,
    pub sockets: SocketSet<'static>,
    /// The addresses the interface holds.
    pub addrs: Vec<IpAddr>,
}

/// Every port's stack.
pub struct Stack {
    pub ports: Vec<PortStack>,
    /// Packets dropped because a port's input queue was full.
    pub rx_dropped: u64,
}

impl Stack {
    /// One interface per port with its own addresses (up to smoltcp's configured maximum;
    /// the rest are left out, with a warning) and its MTU.
    pub fn new(ports: &[conf::Port], seed: u64, now: Duration) -> Stack {
        let ports = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let addrs = &port.addresses;
                let mut device = QueueDevice::with_mtu(usize::from(port.mtu));
                let mut cfg = IfaceConfig::new(HardwareAddress::Ip);
                cfg.random_seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut iface = Interface::new(cfg, &mut device, instant(now));
                let mut held = Vec::new();
                iface.update_ip_addrs(|list| {
                    for a in addrs {
                        let cidr = IpCidr::new(ip_address(a.addr), a.prefix_len);
                        if list.push(cidr).is_ok() {
                            held.push(a.addr);
                        } else {
                            tracing::warn!(
                                port = i,
                                address = %a,
                                "too many addresses on one port for the slow path's stack; \
                                 health checks cannot leave from this one"
                            );
                        }
                    }
                });
                PortStack {
                    iface,
                    device,
                    sockets: SocketSet::new(Vec::new()),
                    addrs: held,
                }
            })
            .collect();
        Stack {
            ports,
            rx_dropped: 0,
        }
    }

    /// Queues an IP packet received on `port` for the stack.
    pub fn ingress(&mut self, port: PortIdx, packet: &[u8]) {
        let Some(p) = self.ports.get_mut(port.index()) else {
            return;
        };
        if p.device.rx.len() >= RX_QUEUE {
            self.rx_dropped += 1;
            return;
        }
        p.device.rx.push_back(packet.to_vec());
    }

    /// Runs every interface: takes in what was received, lets the sockets send. True when
    /// some socket may have changed state.
    pub fn poll(&mut self, now: Duration) -> bool {
        let mut changed = false;
        for p in &mut self.ports {
            if p.iface.poll(instant(now), &mut p.device, &mut p.sockets)
                == PollResult::SocketStateChanged
            {
                changed = true;
            }
        }
        changed
    }

    /// When the stack wants to be polled again at the latest (retransmissions, delayed ACKs).
    pub fn poll_delay(&mut self, now: Duration) -> Option<Duration> {
        self.ports
            .iter_mut()
            .filter_map(|p| p.iface.poll_delay(instant(now), &p.sockets))
            .map(|d| Duration::from_micros(d.total_micros()))
            .min()
    }

    /// Takes the IP packets the stack sent on each port: `(port, packet)`.
    pub fn take_egress(&mut self, mut out: impl FnMut(PortIdx, Vec<u8>)) {
        for (i, p) in self.ports.iter_mut().enumerate() {
            for packet in p.device.tx.drain(..) {
                out(PortIdx::new(i as u8), packet);
            }
        }
    }
}

pub fn ip_address(ip: IpAddr) -> IpAddress {
    match ip {
        IpAddr::V4(a) => IpAddress::Ipv4(Ipv4Address::from(a.octets())),
        IpAddr::V6(a) => IpAddress::Ipv6(Ipv6Address::from(a.octets())),
    }
}

/// The destination address of an IP packet the stack emitted.
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// An IP packet trimmed to the length its header states (Ethernet pads short frames).
pub fn trim_ip(packet: &[u8]) -> Option<&[u8]> {
    let len = match packet.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?)),
        6 => 40 + usize::from(u16::from_be_bytes(packet.get(4..6)?.try_into().ok()?)),
        _ => return None,
    };
    packet.get(..len)
}

//! Ethdev ports: open (configure, set up queues, start), inspect, and hand out per-queue
//! RX/TX handles that a worker takes to its core.
//!
//! A port is stopped and closed when the [`Port`] and every queue handle taken from it are
//! gone, so no burst can ever run on a closed device. Each queue id has at most one handle at
//! a time, and each device at most one open [`Port`] per process: DPDK's burst functions are
//! not thread-safe per queue, and reconfiguring a running device is not safe at all.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk_sys as sys;

use super::eal::{EalUser, warn};
use super::error::DpdkError;
use super::mempool::Mempool;

mod queue;

pub use queue::{RxQueue, TxQueue};

/// Makes a type `Send` but not `Sync`.
type NotSync = PhantomData<Cell<()>>;

/// How to open a port. [`PortSetup::new`] fills in one queue pair of 1024 descriptors.
#[derive(Clone, Debug)]
pub struct PortSetup {
    /// The ethdev name: a vdev's name (`net_pcap0`), or a PCI address (`0000:01:00.0`). A full
    /// device string with arguments is accepted too (the part before the first comma is used).
    pub name: String,
    /// Number of RX queues (at least 1).
    pub rx_queues: u16,
    /// Number of TX queues (at least 1).
    pub tx_queues: u16,
    /// RX descriptors per queue (the driver may round this to its limits).
    pub rx_descriptors: u16,
    /// TX descriptors per queue (the driver may round this to its limits).
    pub tx_descriptors: u16,
    /// The pool RX queues take their mbufs from. The port keeps it alive until it closes.
    pub mempool: Mempool,
    /// Use the symmetric Toeplitz key (0x6d5a repeated) when the device hashes, so both
    /// directions of a flow land on the same queue. Otherwise the driver's default key.
    pub symmetric_rss: bool,
    /// The MAC address the port answers to and sends from, when not the device's own: it is
    /// programmed into the device (see [`MacFilter`]), or a NIC's unicast filter would drop
    /// every frame sent to it.
    pub mac: Option<[u8; 6]>,
}

/// How a configured MAC address reached the device's receive filter, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacFilter {
    /// None was configured: the device's own address.
    DeviceAddress,
    /// Set as the device's default address (`rte_eth_dev_default_mac_addr_set`).
    Default,
    /// The device refused a new default; added as a secondary unicast address
    /// (`rte_eth_dev_mac_addr_add`).
    Secondary,
    /// The device took neither: promiscuous mode, so frames to it are received anyway (with
    /// everyone else's).
    Promiscuous,
}

impl std::fmt::Display for MacFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MacFilter::DeviceAddress => "the device's own address",
            MacFilter::Default => "set as the device's default address",
            MacFilter::Secondary => {
                "added as a secondary address (the device refused a new default)"
            }
            MacFilter::Promiscuous => {
                "promiscuous mode (the device took it neither as default nor as secondary address)"
            }
        })
    }
}

impl PortSetup {
    /// One RX and one TX queue of 1024 descriptors, driver-default RSS key.
    pub fn new(name: impl Into<String>, mempool: Mempool) -> PortSetup {
        PortSetup {
            name: name.into(),
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mempool,
            symmetric_rss: false,
            mac: None,
        }
    }
}

/// Link state, as last seen by the driver (not waited for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s; 0 when none or unknown.
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// The basic counters of `rte_eth_stats_get`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the hardware dropped because RX queues were full.
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// Ports open in this process, by port id.
static OPEN: [AtomicBool; sys::RTE_MAX_ETHPORTS as usize] =
    [const { AtomicBool::new(false) }; sys::RTE_MAX_ETHPORTS as usize];

/// Marks a port id open; released on drop.
#[derive(Debug)]
struct Claim(u16);

impl Claim {
    fn take(id: u16, name: &str) -> Result<Claim, DpdkError> {
        let slot = OPEN.get(usize::from(id)).ok_or_else(|| {
            DpdkError::invalid(
                "rte_eth_dev_get_port_by_name",
                format!("port id {id} out of range"),
            )
        })?;
        if slot.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::PortInUse {
                name: name.to_owned(),
            });
        }
        Ok(Claim(id))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        OPEN[usize::from(self.0)].store(false, Ordering::Release);
    }
}

/// An open, started port. `Send`, not `Sync`: control calls come from one thread at a time.
#[derive(Debug)]
pub struct Port {
    inner: Arc<Inner>,
    _not_sync: NotSync,
}

/// Shared by the `Port` and its queue handles; stops and closes the device when the last goes.
#[derive(Debug)]
struct Inner {
    id: u16,
    name: String,
    mac: [u8; 6],
    mac_filter: MacFilter,
    rss_hf: u64,
    rx_ip_checksum: bool,
    rx_taken: Box<[AtomicBool]>,
    tx_taken: Box<[AtomicBool]>,
    // Dropped after the device is closed (fields drop after `Drop::drop`, in this order): the
    // pool outlives the RX rings filled from it, the claim the device, EAL everything.
    _mempool: Mempool,
    _claim: Claim,
    _eal: EalUser,
}

impl Port {
    /// Finds the device, configures it (RSS over IP/TCP/UDP when the device supports it,
    /// masked with what it supports; the IPv4 header checksum checked on RX when it can;
    /// no other offloads), sets up the queues and starts it.
    pub fn open(setup: PortSetup) -> Result<Port, DpdkError> {
        let eal = EalUser::acquire()?;
        let name = super::device_name(&setup.name).to_owned();
        if setup.rx_queues == 0 || setup.tx_queues == 0 {
            return Err(DpdkError::invalid(
                "rte_eth_dev_configure",
                format!("port {name}: need at least one RX and one TX queue"),
            ));
        }
        let id = lookup(&name)?;
        let claim = Claim::take(id, &name)?;

        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: `id` is a valid port; `info` is a writable rte_eth_dev_info.
        let ret = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_info_get", ret));
        }
        if setup.rx_queues > info.max_rx_queues || setup.tx_queues > info.max_tx_queues {
            return Err(DpdkError::invalid(
                "rte_eth_dev_configure",
                format!(
                    "port {name} supports at most {} RX and {} TX queues, {} and {} requested",
                    info.max_rx_queues, info.max_tx_queues, setup.rx_queues, setup.tx_queues
                ),
            ));
        }

        let mut conf = sys::rte_eth_conf::default();
        // Drivers reject an RSS configure that asks for hash types they lack (all the virtual
        // devices support none), so ask only for the intersection, and for RSS only if it is
        // not empty.
        let wanted = u64::from(sys::RTE_ETH_RSS_IP | sys::RTE_ETH_RSS_TCP | sys::RTE_ETH_RSS_UDP);
        let rss_hf = wanted & info.flow_type_rss_offloads;
        // Read by rte_eth_dev_configure, which copies it; must outlive that call.
        let mut key = [0u8; u8::MAX as usize];
        if rss_hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            let key_len = info.hash_key_size;
            if setup.symmetric_rss && key_len > 0 {
                for pair in key[..usize::from(key_len)].chunks_mut(2) {
                    pair.copy_from_slice(&[0x6d, 0x5a][..pair.len()]);
                }
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = key_len;
            }
            let rss_hash = u64::from(sys::RTE_ETH_RX_OFFLOAD_RSS_HASH);
            if info.rx_offload_capa & rss_hash != 0 {
                // So the hash reaches mbuf.hash.rss (Mbuf::rss_hash).
                conf.rxmode.offloads |= rss_hash;
            }
        }
        // The NIC's word on each IPv4 header checksum (mbuf ol_flags, `Frame::rx_ip_checksum`)
        // spares the pipeline summing it; none of the virtual devices here offers it.
        let ip_cksum = u64::from(sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM);
        let rx_ip_checksum = info.rx_offload_capa & ip_cksum != 0;
        if rx_ip_checksum {
            conf.rxmode.offloads |= ip_cksum;
        }
        // SAFETY: valid port, claimed by us and not started; `conf` (and the key it may point
        // to) lives across the call.
        let ret =
            unsafe { sys::rte_eth_dev_configure(id, setup.rx_queues, setup.tx_queues, &conf) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_configure", ret));
        }

        let (mut nb_rxd, mut nb_txd) = (setup.rx_descriptors, setup.tx_descriptors);
        // SAFETY: valid, configured port; both pointers are to live u16s.
        let ret = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nb_rxd, &mut nb_txd) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_adjust_nb_rx_tx_desc", ret));
        }
        // SAFETY: valid port id.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        // SOCKET_ID_ANY (-1) stays SOCKET_ID_ANY through the cast, which queue setup accepts.
        let socket = socket as u32;
        for q in 0..setup.rx_queues {
            // SAFETY: configured port, q below the configured count; default rxconf (null);
            // the pool is alive and stays so while the port is (Inner::_mempool).
            let ret = unsafe {
                sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    nb_rxd,
                    socket,
                    std::ptr::null(),
                    setup.mempool.as_ptr(),
                )
            };
            if ret != 0 {
                return Err(DpdkError::from_ret("rte_eth_rx_queue_setup", ret));
            }
        }
        for q in 0..setup.tx_queues {
            // SAFETY: configured port, q below the configured count; default txconf (null).
            let ret =
                unsafe { sys::rte_eth_tx_queue_setup(id, q, nb_txd, socket, std::ptr::null()) };
            if ret != 0 {
                return Err(DpdkError::from_ret("rte_eth_tx_queue_setup", ret));
            }
        }
        // Before the start, so that a device that takes none of the ways is left unstarted.
        let mac_filter = match setup.mac {
            Some(mac) => program_mac(id, mac)?,
            None => MacFilter::DeviceAddress,
        };
        // SAFETY: configured port with all queues set up.
        let ret = unsafe { sys::rte_eth_dev_start(id) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_start", ret));
        }

        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: valid port; `mac` is a writable rte_ether_addr.
        let ret = unsafe { sys::rte_eth_macaddr_get(id, &mut mac) };
        if ret != 0 {
            warn(&format!(
                "port {name}: no MAC address ({}), using 00:00:00:00:00:00",
                DpdkError::from_ret("rte_eth_macaddr_get", ret)
            ));
        }

        let flags = |n: u16| (0..n).map(|_| AtomicBool::new(false)).collect();
        Ok(Port {
            inner: Arc::new(Inner {
                id,
                name,
                mac: mac.addr_bytes,
                mac_filter,
                rss_hf,
                rx_ip_checksum,
                rx_taken: flags(setup.rx_queues),
                tx_taken: flags(setup.tx_queues),
                _mempool: setup.mempool,
                _claim: claim,
                _eal: eal,
            }),
            _not_sync: PhantomData,
        })
    }

    /// DPDK's port id.
    pub fn port_id(&self) -> u16 {
        self.inner.id
    }

    /// The ethdev name the port was opened by.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The port's MAC address, as the device reports it (`rte_eth_macaddr_get`) once the
    /// configured one, if any, was programmed: with [`MacFilter::Default`] that one.
    pub fn mac(&self) -> [u8; 6] {
        self.inner.mac
    }

    /// How the configured MAC reached the device's receive filter.
    pub fn mac_filter(&self) -> MacFilter {
        self.inner.mac_filter
    }

    /// The RSS hash types configured (`RTE_ETH_RSS_*`); 0 when the device does not hash and
    /// traffic must be spread in software.
    pub fn rss_hf(&self) -> u64 {
        self.inner.rss_hf
    }

    /// Whether the device checks received IPv4 header checksums (`RTE_ETH_RX_OFFLOAD_IPV4_CKSUM`,
    /// enabled when it advertises it), so that the pipeline reads its verdict instead.
    pub fn rx_ip_checksum(&self) -> bool {
        self.inner.rx_ip_checksum
    }

    /// Number of RX queues.
    pub fn rx_queue_count(&self) -> u16 {
        self.inner.rx_taken.len() as u16
    }

    /// Number of TX queues.
    pub fn tx_queue_count(&self) -> u16 {
        self.inner.tx_taken.len() as u16
    }

    /// Link state, without waiting for autonegotiation.
    pub fn link(&self) -> Result<Link, DpdkError> {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: open port; `link` is a writable rte_eth_link.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.inner.id, &mut link) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_link_get_nowait", ret));
        }
        let speed = link.link_speed;
        Ok(Link {
            up: link.link_status() != 0,
            speed_mbps: if speed == sys::RTE_ETH_SPEED_NUM_UNKNOWN {
                0
            } else {
                speed
            },
            full_duplex: u32::from(link.link_duplex()) == sys::RTE_ETH_LINK_FULL_DUPLEX,
        })
    }

    /// The basic counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: open port; `s` is a writable rte_eth_stats.
        let ret = unsafe { sys::rte_eth_stats_get(self.inner.id, &mut s) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_stats_get", ret));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Zeroes the basic counters.
    pub fn reset_stats(&self) -> Result<(), DpdkError> {
        // SAFETY: open port.
        let ret = unsafe { sys::rte_eth_stats_reset(self.inner.id) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_stats_reset", ret));
        }
        Ok(())
    }

    /// The driver's extended counters, by name.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        let id = self.inner.id;
        // SAFETY: open port; a null array with size 0 asks for the count only.
        let n = unsafe { sys::rte_eth_xstats_get_names(id, std::ptr::null_mut(), 0) };
        let n = u32::try_from(n).map_err(|_| DpdkError::from_ret("rte_eth_xstats_get_names", n))?;
        let mut names = vec![sys::rte_eth_xstat_name::default(); n as usize];
        // SAFETY: `names` has room for n entries.
        let got = unsafe { sys::rte_eth_xstats_get_names(id, names.as_mut_ptr(), n) };
        let got =
            u32::try_from(got).map_err(|_| DpdkError::from_ret("rte_eth_xstats_get_names", got))?;
        names.truncate(got.min(n) as usize);
        let mut values = vec![sys::rte_eth_xstat::default(); n as usize];
        // SAFETY: `values` has room for n entries.
        let got = unsafe { sys::rte_eth_xstats_get(id, values.as_mut_ptr(), n) };
        let got = u32::try_from(got).map_err(|_| DpdkError::from_ret("rte_eth_xstats_get", got))?;
        // A larger count means the set changed between the calls: report what both agree on.
        values.truncate(got.min(n) as usize);
        Ok(values
            .iter()
            .filter_map(|x| {
                let name = names.get(usize::try_from(x.id).ok()?)?;
                let bytes = name.name.map(|c| c as u8);
                let name = CStr::from_bytes_until_nul(&bytes)
                    .ok()?
                    .to_string_lossy()
                    .into_owned();
                Some((name, x.value))
            })
            .collect())
    }

    /// Turns promiscuous mode on or off.
    pub fn set_promiscuous(&self, on: bool) -> Result<(), DpdkError> {
        promiscuous(self.inner.id, on)
    }

    /// Sets the MTU (L3 bytes, without the Ethernet header).
    pub fn set_mtu(&self, mtu: u16) -> Result<(), DpdkError> {
        // SAFETY: open port.
        let ret = unsafe { sys::rte_eth_dev_set_mtu(self.inner.id, mtu) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_set_mtu", ret));
        }
        Ok(())
    }

    /// The device's MTU now (L3 bytes).
    pub fn mtu(&self) -> Result<u16, DpdkError> {
        let mut mtu = 0u16;
        // SAFETY: open port; `mtu` is a valid place for the answer for the call's duration.
        let ret = unsafe { sys::rte_eth_dev_get_mtu(self.inner.id, &mut mtu) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_get_mtu", ret));
        }
        Ok(mtu)
    }
}

/// Makes configured port `id` receive frames sent to `mac`: as its default address, else as a
/// secondary one, else by promiscuous mode. Fails only when the device takes none of them;
/// the error then names all three refusals.
fn program_mac(id: u16, mac: [u8; 6]) -> Result<MacFilter, DpdkError> {
    let mut addr = sys::rte_ether_addr { addr_bytes: mac };
    // SAFETY: valid, configured port; `addr` is a valid rte_ether_addr that outlives the call.
    let ret = unsafe { sys::rte_eth_dev_default_mac_addr_set(id, &mut addr) };
    if ret == 0 {
        return Ok(MacFilter::Default);
    }
    let default = DpdkError::from_ret("rte_eth_dev_default_mac_addr_set", ret);
    // SAFETY: as above; pool 0 is the default VMDq pool every device has.
    let ret = unsafe { sys::rte_eth_dev_mac_addr_add(id, &mut addr, 0) };
    if ret == 0 {
        return Ok(MacFilter::Secondary);
    }
    let secondary = DpdkError::from_ret("rte_eth_dev_mac_addr_add", ret);
    let promiscuous = match promiscuous(id, true) {
        Ok(()) => return Ok(MacFilter::Promiscuous),
        Err(e) => e,
    };
    Err(DpdkError::invalid(
        "program MAC",
        format!(
            "the device takes the configured MAC neither as default ({default}), nor as secondary \
             address ({secondary}), nor by promiscuous mode ({promiscuous})"
        ),
    ))
}

/// Turns promiscuous mode of port `id` (configured or started, and ours) on or off.
fn promiscuous(id: u16, on: bool) -> Result<(), DpdkError> {
    // SAFETY: `id` is a port this process opened (a configured or started `Port` of ours).
    let ret = unsafe {
        if on {
            sys::rte_eth_promiscuous_enable(id)
        } else {
            sys::rte_eth_promiscuous_disable(id)
        }
    };
    if ret != 0 {
        return Err(DpdkError::from_ret(
            if on {
                "rte_eth_promiscuous_enable"
            } else {
                "rte_eth_promiscuous_disable"
            },
            ret,
        ));
    }
    Ok(())
}

/// The port id of `name`; a short PCI address (`01:00.0`) is also tried with domain 0000.
fn lookup(name: &str) -> Result<u16, DpdkError> {
    let not_found = || DpdkError::DeviceNotFound {
        name: name.to_owned(),
    };
    let by_name = |name: &str| -> Option<u16> {
        let c_name = CString::new(name).ok()?;
        let mut id = 0u16;
        // SAFETY: EAL is running; valid C string; `id` is a writable u16.
        let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
        (ret == 0).then_some(id)
    };
    if let Some(id) = by_name(name) {
        return Ok(id);
    }
    let b = name.as_bytes();
    if b.len() == 7 && b[2] == b':' && b[5] == b'.' {
        return by_name(&format!("0000:{name}")).ok_or_else(not_found);
    }
    Err(not_found())
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The Port and every queue handle are gone, so no burst can be running.
        // SAFETY: the port is open and started, and nothing else uses it any more.
        let ret = unsafe { sys::rte_eth_dev_stop(self.id) };
        if ret != 0 {
            warn(&format!(
                "port {}: {}",
                self.name,
                DpdkError::from_ret("rte_eth_dev_stop", ret)
            ));
        }
        // SAFETY: stopped port, not used after this.
        let ret = unsafe { sys::rte_eth_dev_close(self.id) };
        if ret != 0 {
            warn(&format!(
                "port {}: {}",
                self.name,
                DpdkError::from_ret("rte_eth_dev_close", ret)
            ));
        }
    }
}

//! The safe face of DPDK: EAL, mbuf pools, RAII mbufs, stack-array bursts, ethdev ports and
//! their queues, and SPSC mbuf rings. DPDK only: with `mem` (memory helpers that are not
//! DPDK), one of the two places in the crate that hold `unsafe`; everything it exports can be
//! used from safe code without undefined behaviour.
//!
//! Ownership model, in short:
//! - [`Eal`] is the process-wide runtime. Every pool, port and ring counts as a live user of
//!   it, and `rte_eal_cleanup` runs on drop only when none is left (otherwise it is skipped:
//!   the process exit reclaims the memory, and no pointer is left dangling).
//! - A [`Mbuf`] is owned exactly once and freed on drop. A [`Burst`] is a fixed array of them
//!   on the stack; RX fills it, TX and rings drain it. No allocation per burst or per packet.
//! - A [`Port`] hands out one [`RxQueue`] / [`TxQueue`] per queue id; these are `Send` (a
//!   worker takes them to its core) but not `Sync`, and keep the device open until the last
//!   of them is gone.
//! - A [`Mempool`] outlives every port configured with it and is freed only once all of its
//!   mbufs are back.

mod burst;
mod device_check;
mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;
mod ring;
pub mod runtime_files;

pub use burst::{Burst, Drain};
pub use device_check::{check_device, check_device_in, pci_address};
pub use eal::Eal;
pub use error::{DpdkError, MbufError};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{Link, MacFilter, Port, PortSetup, PortStats, RxQueue, TxQueue};
pub use ring::{MbufRing, RingConsumer, RingProducer};

/// Turns the configured device strings into EAL arguments: `net_*` strings are virtual devices
/// with their arguments (`--vdev net_pcap0,rx_pcap=in.pcap`), anything else is a PCI address
/// with optional devargs (`-a 0000:01:00.0`).
pub fn vdev_eal_args(devices: &[String]) -> Vec<String> {
    let mut args = Vec::with_capacity(devices.len() * 2);
    for device in devices {
        let flag = if device.starts_with("net_") {
            "--vdev"
        } else {
            "-a"
        };
        args.push(flag.to_owned());
        args.push(device.clone());
    }
    args
}

/// The ethdev name a device string creates: the part before the first comma
/// (`net_pcap0,rx_pcap=in.pcap` is `net_pcap0`, `0000:01:00.0,x=1` is `0000:01:00.0`).
pub fn device_name(device: &str) -> &str {
    device.split_once(',').map_or(device, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdevs_and_pci_addresses_become_eal_args() {
        let devices = vec![
            "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap".to_owned(),
            "0000:01:00.0".to_owned(),
            "net_null0".to_owned(),
        ];
        assert_eq!(
            vdev_eal_args(&devices),
            [
                "--vdev",
                "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap",
                "-a",
                "0000:01:00.0",
                "--vdev",
                "net_null0"
            ]
        );
        assert!(vdev_eal_args(&[]).is_empty());
    }

    #[test]
    fn device_name_is_the_part_before_the_first_comma() {
        assert_eq!(
            device_name("net_pcap0,rx_pcap=a.pcap,tx_pcap=b.pcap"),
            "net_pcap0"
        );
        assert_eq!(device_name("net_null0"), "net_null0");
        assert_eq!(
            device_name("0000:01:00.0,rxq_cqe_comp_en=0"),
            "0000:01:00.0"
        );
        assert_eq!(device_name(""), "");
    }

    #[test]
    fn handles_cross_threads_as_documented() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<Mbuf>();
        send::<Burst>();
        send::<Port>();
        send::<RxQueue>();
        send::<TxQueue>();
        send_sync::<Mempool>();
        send_sync::<MbufRing>();
        send_sync::<RingProducer>();
        send_sync::<RingConsumer>();
    }

    #[test]
    fn nothing_runs_before_eal_init() {
        // This test binary never initialises EAL: constructors must refuse, not crash.
        assert!(matches!(
            Mempool::new("nopool", 64, 0, 2176),
            Err(DpdkError::EalNotRunning)
        ));
        assert!(matches!(
            MbufRing::new("noring", 64),
            Err(DpdkError::EalNotRunning)
        ));
        assert!(matches!(
            Eal::register_thread(),
            Err(DpdkError::EalNotRunning)
        ));
    }
}

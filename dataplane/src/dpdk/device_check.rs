//! Whether a configured device can be had, checked before EAL starts: a PCI address this host
//! does not have, a NIC still bound to its kernel driver, or a virtual device reading an
//! interface that does not exist is named as such, instead of surfacing as an EAL failure or
//! as "no DPDK port" once EAL has run (Fulcrum gives EAL the devices itself, so the operator
//! has no EAL argument to fix).

use std::path::Path;

use super::error::DpdkError;

/// Kernel drivers through which DPDK's PCI drivers reach a NIC.
const USERSPACE_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];
/// Bifurcated NICs: DPDK's driver works beside the kernel's own.
const BIFURCATED_DRIVERS: [&str; 2] = ["mlx5_core", "mlx4_core"];
/// Virtual devices that create the interface they are given rather than read an existing one.
const CREATES_IFACE: [&str; 2] = ["net_tap", "net_tun"];
/// Virtual-device arguments that name an existing kernel interface.
const IFACE_KEYS: [&str; 4] = ["iface", "rx_iface", "rx_iface_in", "tx_iface"];

/// Checks `device` (a port's device string) against this host's `/sys`.
pub fn check_device(device: &str, eal_args: &[String]) -> Result<(), DpdkError> {
    check_device_in(Path::new("/sys"), device, eal_args)
}

/// [`check_device`] against a `/sys` tree at `sys` (`fulcrum doctor` reads a fake one in its
/// tests); interfaces are still asked of the kernel.
pub fn check_device_in(sys: &Path, device: &str, eal_args: &[String]) -> Result<(), DpdkError> {
    check_in(sys, &iface_exists, device, eal_args)
}

/// Whether this network namespace has an interface `name` (asked of the kernel, not of /sys,
/// which may show another namespace's).
fn iface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated string that outlives the call; if_nametoindex only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

fn check_in(
    sys: &Path,
    iface_exists: &dyn Fn(&str) -> bool,
    device: &str,
    eal_args: &[String],
) -> Result<(), DpdkError> {
    let unavailable = |reason: String| DpdkError::DeviceUnavailable {
        device: device.to_owned(),
        reason,
    };
    let name = super::device_name(device);
    if name.starts_with("net_") {
        if CREATES_IFACE.iter().any(|d| name.starts_with(d)) {
            return Ok(());
        }
        for (key, iface) in device
            .split(',')
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
        {
            if IFACE_KEYS.contains(&key) && !iface_exists(iface) {
                return Err(unavailable(format!(
                    "{name}: network interface {iface:?} ({key}=) does not exist on this host"
                )));
            }
        }
        return Ok(());
    }
    let Some(addr) = pci_address(name) else {
        return Err(unavailable(format!(
            "{name:?} is neither a virtual device (net_...) nor a PCI address (0000:03:00.0)"
        )));
    };
    let dev = sys.join("bus/pci/devices").join(&addr);
    if !dev.exists() {
        return Err(unavailable(format!(
            "PCI device {addr} does not exist on this host (not in /sys/bus/pci/devices; \
             `lspci -D` lists the ones there are)"
        )));
    }
    let driver = std::fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let bind = format!("bind it with `dpdk-devbind.py --bind=vfio-pci {addr}`");
    match driver {
        None => {
            return Err(unavailable(format!(
                "PCI device {addr} is not bound to any driver: {bind}"
            )));
        }
        Some(d)
            if !USERSPACE_DRIVERS.contains(&d.as_str())
                && !BIFURCATED_DRIVERS.contains(&d.as_str()) =>
        {
            return Err(unavailable(format!(
                "PCI device {addr} is bound to the kernel driver {d}, not to vfio-pci or uio: {bind}"
            )));
        }
        Some(_) => {}
    }
    if eal_args.iter().any(|a| a == "--no-pci") {
        return Err(unavailable(format!(
            "PCI device {addr} is a port, but dpdk.eal_args has --no-pci, which keeps EAL from \
             probing it"
        )));
    }
    Ok(())
}

/// `DDDD:BB:DD.F` for a PCI address with or without its domain; `None` for anything else.
pub fn pci_address(name: &str) -> Option<String> {
    let full = match name.len() {
        7 => format!("0000:{name}"),
        12 => name.to_owned(),
        _ => return None,
    };
    let b = full.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    (b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&b[11]))
    .then(|| full.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/sys` with two PCI devices and one interface.
    fn sys() -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("fulcrum-devcheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pci = root.join("bus/pci/devices");
        let drivers = root.join("bus/pci/drivers");
        for (addr, driver) in [
            ("0000:01:00.0", Some("vfio-pci")),
            ("0000:02:00.0", Some("ixgbe")),
            ("0000:03:00.0", None),
        ] {
            std::fs::create_dir_all(pci.join(addr)).unwrap();
            if let Some(d) = driver {
                std::fs::create_dir_all(drivers.join(d)).unwrap();
                std::os::unix::fs::symlink(drivers.join(d), pci.join(addr).join("driver")).unwrap();
            }
        }
        root
    }

    fn reason(sys: &Path, device: &str, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        match check_in(sys, &|i| i == "veth-a", device, &args) {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn each_unusable_device_is_named_with_its_reason() {
        let s = sys();
        assert_eq!(reason(&s, "0000:01:00.0", &[]), "ok");
        assert_eq!(reason(&s, "01:00.0,rxq_cqe_comp_en=0", &[]), "ok");
        assert_eq!(reason(&s, "net_af_packet0,iface=veth-a", &[]), "ok");
        assert_eq!(reason(&s, "net_tap0,iface=made-by-tap", &[]), "ok");
        assert_eq!(reason(&s, "net_null0", &[]), "ok");
        assert!(reason(&s, "0000:09:00.0", &[]).contains("PCI device 0000:09:00.0 does not exist"));
        assert!(reason(&s, "0000:02:00.0", &[]).contains("bound to the kernel driver ixgbe"));
        assert!(reason(&s, "03:00.0", &[]).contains("0000:03:00.0 is not bound to any driver"));
        assert!(
            reason(&s, "net_af_packet0,iface=nosuch", &[])
                .contains("network interface \"nosuch\" (iface=) does not exist")
        );
        assert!(reason(&s, "eth0", &[]).contains("neither a virtual device"));
        assert!(reason(&s, "0000:01:00.0", &["--no-pci"]).contains("--no-pci"));
        std::fs::remove_dir_all(&s).unwrap();
    }
}

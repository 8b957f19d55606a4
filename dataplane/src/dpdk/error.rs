//! Errors of the DPDK wrapper: [`DpdkError`] for the control path (rich, allocates, carries
//! `rte_strerror` text) and [`MbufError`] for per-packet failures (a `Copy` enum, no allocation).

use std::ffi::CStr;

use dpdk_sys as sys;

/// A control-path failure: EAL, pools, ports, rings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpdkError {
    /// A DPDK call failed; `errno` is `rte_errno` or the negated return code.
    #[error("{op} failed: {text} (errno {errno})")]
    Call {
        /// The DPDK function that failed.
        op: &'static str,
        /// Positive errno value (DPDK's own codes start at 1000).
        errno: i32,
        /// `rte_strerror(errno)`.
        text: String,
    },
    /// `Eal::init` was already called in this process (DPDK cannot initialise twice, not even
    /// after `rte_eal_cleanup`).
    #[error("EAL was already initialised in this process; DPDK cannot initialise it twice")]
    EalAlreadyInitialized,
    /// A DPDK object was requested before `Eal::init` succeeded or after `Eal` was dropped.
    #[error("EAL is not running: call Eal::init first (and keep the Eal alive)")]
    EalNotRunning,
    /// No ethdev has this name.
    #[error(
        "no DPDK port named {name:?}: EAL did not probe such a device (its log above says why)"
    )]
    DeviceNotFound {
        /// The name that was looked up.
        name: String,
    },
    /// A configured device cannot be had: missing, not bound to a DPDK-capable driver, or a
    /// virtual device reading an interface that does not exist.
    #[error("{reason}")]
    DeviceUnavailable {
        /// The device string.
        device: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Another process is the primary of this EAL file prefix.
    #[error(
        "EAL file prefix {prefix:?} is in use by pid {pid} ({cmdline}): give each instance its \
         own --file-prefix in dpdk.eal_args"
    )]
    PrefixInUse {
        /// The `--file-prefix`.
        prefix: String,
        /// The process holding the prefix's lock.
        pid: i32,
        /// Its command line (`?` when unreadable).
        cmdline: String,
    },
    /// The port is already open in this process.
    #[error("DPDK port {name:?} is already open")]
    PortInUse {
        /// The port's name.
        name: String,
    },
    /// A queue handle for this queue already exists.
    #[error("{kind} queue {queue} of port {port:?} is already taken")]
    QueueInUse {
        /// The port's name.
        port: String,
        /// "rx" or "tx".
        kind: &'static str,
        /// The queue id.
        queue: u16,
    },
    /// An argument DPDK would reject or misread (bad name, count out of range, ...).
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation the argument was for.
        op: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl DpdkError {
    /// The error of a call that reported failure through `rte_errno`.
    pub(crate) fn from_rte_errno(op: &'static str) -> Self {
        // SAFETY: reads the calling thread's rte_errno through the shim; no preconditions.
        let errno = unsafe { sys::fulcrum_errno() };
        Self::from_errno(op, errno)
    }

    /// The error of a call that returned `-errno`.
    pub(crate) fn from_ret(op: &'static str, ret: i32) -> Self {
        Self::from_errno(op, ret.saturating_neg())
    }

    pub(crate) fn from_errno(op: &'static str, errno: i32) -> Self {
        // SAFETY: rte_strerror accepts any value and returns a pointer to a NUL-terminated
        // string that is static or in a thread-local buffer; it is copied out at once.
        let text = unsafe { CStr::from_ptr(sys::rte_strerror(errno)) }
            .to_string_lossy()
            .into_owned();
        DpdkError::Call { op, errno, text }
    }

    pub(crate) fn invalid(op: &'static str, reason: impl Into<String>) -> Self {
        DpdkError::InvalidArgument {
            op,
            reason: reason.into(),
        }
    }
}

/// Why a single mbuf could not be produced: cheap enough to return per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MbufError {
    /// The mempool has no free mbuf.
    #[error("mempool exhausted")]
    PoolEmpty,
    /// The bytes do not fit in one mbuf's data room after the headroom.
    #[error("frame larger than one mbuf's data room")]
    TooLong,
}

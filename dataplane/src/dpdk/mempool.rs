//! Packet mbuf pools (`rte_pktmbuf_pool_create`), shared by handle and freed only when every
//! mbuf has come back.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys as sys;

use super::eal::{EalUser, warn};
use super::error::DpdkError;

/// A pool of packet mbufs on the caller's NUMA socket. Cloning is cheap and shares the pool.
///
/// The pool is freed when the last handle goes away, and only if all of its mbufs are back
/// (ports configured with it hold a handle until they close). If some are still out, for
/// instance in a ring or on another thread, the pool is leaked instead, with a warning: an
/// outstanding mbuf must never point into freed memory.
///
/// That check reads DPDK's counters, which are exact only while no other thread is freeing
/// mbufs of the pool at the same instant (a per-lcore cache flush counts some twice for a
/// moment). Drop the last handle after the threads that used the pool are joined, as a
/// shutdown does anyway.
#[derive(Clone, Debug)]
pub struct Mempool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ptr: NonNull<sys::rte_mempool>,
    name: String,
    data_room: u16,
    eal: EalUser,
}

// SAFETY: the pool is created with DPDK's default multi-producer/multi-consumer ops, so get
// and put are safe from any thread; per-lcore caches are only used by the thread holding that
// lcore id, which EAL makes unique. The other fields are plain data.
unsafe impl Send for Inner {}
// SAFETY: as above; the handle exposes only thread-safe calls through `&self`.
unsafe impl Sync for Inner {}

impl Mempool {
    /// `RTE_PKTMBUF_HEADROOM`: room reserved in front of received data, for encapsulation.
    pub const HEADROOM: u16 = sys::RTE_PKTMBUF_HEADROOM as u16;
    /// `RTE_MBUF_DEFAULT_BUF_SIZE`: 2048 bytes of data after the headroom.
    pub const DEFAULT_DATA_ROOM: u16 = sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

    /// Creates a pool of `n_mbufs` mbufs with a per-lcore cache of `cache` mbufs (0 for none;
    /// DPDK wants `cache <= 512` and `cache * 1.5 <= n_mbufs`) and `data_room` bytes of buffer
    /// per mbuf, headroom included (see [`Mempool::DEFAULT_DATA_ROOM`]). Names are unique per
    /// process and shorter than `RTE_MEMPOOL_NAMESIZE` (26) bytes.
    pub fn new(name: &str, n_mbufs: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        let eal = EalUser::acquire()?;
        let c_name = CString::new(name).map_err(|_| {
            DpdkError::invalid("rte_pktmbuf_pool_create", "name contains a NUL byte")
        })?;
        if data_room <= Self::HEADROOM {
            return Err(DpdkError::invalid(
                "rte_pktmbuf_pool_create",
                format!(
                    "data room {data_room} leaves no room after the {}-byte headroom",
                    Self::HEADROOM
                ),
            ));
        }
        // SAFETY: EAL is running (held by `eal`); rte_socket_id only reads the calling thread's
        // socket (SOCKET_ID_ANY, i.e. -1 as unsigned, for a non-EAL thread, which the cast keeps).
        let socket = unsafe { sys::rte_socket_id() } as i32;
        // SAFETY: EAL is running; the name is a valid C string, copied by DPDK.
        let ptr = unsafe {
            sys::rte_pktmbuf_pool_create(c_name.as_ptr(), n_mbufs, cache, 0, data_room, socket)
        };
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| DpdkError::from_rte_errno("rte_pktmbuf_pool_create"))?;
        Ok(Mempool {
            inner: Arc::new(Inner {
                ptr,
                name: name.to_owned(),
                data_room,
                eal,
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Buffer bytes per mbuf, headroom included.
    pub fn data_room(&self) -> u16 {
        self.inner.data_room
    }

    /// Total number of mbufs.
    pub fn capacity(&self) -> u32 {
        // SAFETY: the pool is alive while `self` is; `size` is set at creation and never changes.
        unsafe { self.inner.ptr.as_ref() }.size
    }

    /// Free mbufs, per-lcore caches included.
    ///
    /// Exact only when no other thread is allocating or freeing from the pool at the time:
    /// meant for leak checks and stats, not for flow control.
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive while `self` is; the call only reads counters.
        unsafe { sys::rte_mempool_avail_count(self.inner.ptr.as_ptr()) }
    }

    /// Mbufs currently handed out (`capacity - available`), with the same caveat as
    /// [`Mempool::available`].
    pub fn in_use(&self) -> u32 {
        // SAFETY: as in `available`.
        unsafe { sys::rte_mempool_in_use_count(self.inner.ptr.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.inner.ptr.as_ptr()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Last handle: nobody can allocate from the pool any more, only give mbufs back.
        // SAFETY: the pool is alive until freed below.
        let in_use = unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) };
        if in_use != 0 {
            warn(&format!(
                "mempool {} dropped with {in_use} mbuf(s) still out: leaked, not freed",
                self.name
            ));
            self.eal.keep_forever();
            return;
        }
        // SAFETY: no mbuf of the pool is outstanding and no handle is left, so nothing
        // references the pool any more.
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}

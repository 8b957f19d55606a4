//! Single-producer single-consumer rings of mbufs (`rte_ring` with `RING_F_SP_ENQ |
//! RING_F_SC_DEQ`), for handing packets between workers and between a worker and the slow
//! path.
//!
//! The SPSC contract is enforced by types: [`MbufRing::split`] yields exactly one
//! [`RingProducer`] and one [`RingConsumer`], neither `Clone`, each enqueuing or dequeuing
//! through `&mut self`. Each half may live on its own thread.

use std::ffi::{CString, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys as sys;

use super::burst::Burst;
use super::eal::EalUser;
use super::error::DpdkError;

/// An SPSC ring of mbufs, not yet split. Used whole, it is a FIFO for one thread.
#[derive(Debug)]
pub struct MbufRing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ptr: NonNull<sys::rte_ring>,
    capacity: u32,
    _eal: EalUser,
}

// SAFETY: the ring lives in DPDK shared memory usable from any thread; the single-producer /
// single-consumer rule is upheld by the handle types (one producer, one consumer, `&mut self`),
// and the rest of the API (count, capacity) is safe to call concurrently.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl MbufRing {
    /// Creates a ring holding up to `capacity` mbufs (exactly; not rounded to a power of two),
    /// on the caller's NUMA socket. Names are unique per process and shorter than
    /// `RTE_RING_NAMESIZE` (29) bytes.
    pub fn new(name: &str, capacity: u32) -> Result<MbufRing, DpdkError> {
        let eal = EalUser::acquire()?;
        let c_name = CString::new(name)
            .map_err(|_| DpdkError::invalid("rte_ring_create", "name contains a NUL byte"))?;
        if capacity == 0 {
            return Err(DpdkError::invalid(
                "rte_ring_create",
                "capacity must be at least 1",
            ));
        }
        // SAFETY: EAL is running (held by `eal`); rte_socket_id only reads the calling thread's
        // socket (SOCKET_ID_ANY as unsigned for non-EAL threads, which the cast keeps).
        let socket = unsafe { sys::rte_socket_id() } as i32;
        let flags = sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ | sys::RING_F_EXACT_SZ;
        // SAFETY: EAL is running; the name is a valid C string, copied by DPDK.
        let ptr = unsafe { sys::rte_ring_create(c_name.as_ptr(), capacity, socket, flags) };
        let ptr = NonNull::new(ptr).ok_or_else(|| DpdkError::from_rte_errno("rte_ring_create"))?;
        Ok(MbufRing {
            inner: Arc::new(Inner {
                ptr,
                capacity,
                _eal: eal,
            }),
        })
    }

    /// Splits into the producer and the consumer half.
    pub fn split(self) -> (RingProducer, RingConsumer) {
        (
            RingProducer {
                inner: Arc::clone(&self.inner),
            },
            RingConsumer { inner: self.inner },
        )
    }

    /// See [`RingProducer::enqueue_burst`].
    pub fn enqueue_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        self.inner.enqueue(burst)
    }

    /// See [`RingConsumer::dequeue_burst`].
    pub fn dequeue_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        self.inner.dequeue(burst)
    }

    /// Mbufs in the ring now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// How many mbufs the ring holds when full.
    pub fn capacity(&self) -> usize {
        self.inner.capacity as usize
    }
}

/// The enqueuing half of an [`MbufRing`].
#[derive(Debug)]
pub struct RingProducer {
    inner: Arc<Inner>,
}

impl RingProducer {
    /// Moves as many mbufs from the front of `burst` into the ring as fit, and returns how
    /// many. Unlike [`TxQueue::tx_burst`](super::TxQueue::tx_burst), what did not fit STAYS in
    /// `burst` (in order, at the front): retry it later, or `clear()` it and count drops.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        self.inner.enqueue(burst)
    }

    /// Free slots now. Only grows until this producer enqueues again, so a burst no larger
    /// than this is sure to fit.
    pub fn free_space(&self) -> usize {
        self.inner.capacity as usize - self.inner.len()
    }

    /// Mbufs in the ring now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }
}

/// The dequeuing half of an [`MbufRing`].
#[derive(Debug)]
pub struct RingConsumer {
    inner: Arc<Inner>,
}

impl RingConsumer {
    /// Moves up to the spare capacity of `burst` mbufs out of the ring into it, in FIFO
    /// order, and returns how many.
    #[inline]
    pub fn dequeue_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        self.inner.dequeue(burst)
    }

    /// Mbufs in the ring now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }
}

impl Inner {
    /// Callers hold the unique producer side (`&mut` to the only `RingProducer`, or to the
    /// unsplit `MbufRing`).
    #[inline]
    fn enqueue<const N: usize>(&self, burst: &mut Burst<N>) -> usize {
        let (slots, len) = burst.filled_raw();
        if len == 0 {
            return 0;
        }
        // SAFETY: the ring is alive; only one producer exists (see above); `slots` holds `len`
        // owned mbuf pointers, which the ring stores as `void *`.
        let n = unsafe {
            sys::fulcrum_ring_enqueue_burst(
                self.ptr.as_ptr(),
                slots.cast::<*mut c_void>(),
                len as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        // SAFETY: the ring now owns the first `n` mbufs; the consumer will take them back.
        unsafe { burst.taken_keep_rest(n) };
        n
    }

    /// Callers hold the unique consumer side.
    #[inline]
    fn dequeue<const N: usize>(&self, burst: &mut Burst<N>) -> usize {
        let (slots, spare) = burst.spare_raw();
        if spare == 0 {
            return 0;
        }
        // SAFETY: the ring is alive; only one consumer exists; `slots` has room for `spare`
        // pointers.
        let n = unsafe {
            sys::fulcrum_ring_dequeue_burst(
                self.ptr.as_ptr(),
                slots.cast::<*mut c_void>(),
                spare as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        // SAFETY: only owned, non-null mbufs are ever enqueued (see `enqueue`), and dequeuing
        // hands their ownership to the burst.
        unsafe { burst.commit(n) };
        n
    }

    fn len(&self) -> usize {
        // SAFETY: the ring is alive; counting reads the head/tail indices atomically enough
        // for an estimate, which is all callers get.
        unsafe { sys::fulcrum_ring_count(self.ptr.as_ptr()) as usize }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Both halves are gone: free what is still queued, then the ring.
        let mut burst: Burst<64> = Burst::new();
        while self.dequeue(&mut burst) != 0 {
            burst.clear();
        }
        // SAFETY: the ring is empty and nothing references it any more.
        unsafe { sys::rte_ring_free(self.ptr.as_ptr()) };
    }
}

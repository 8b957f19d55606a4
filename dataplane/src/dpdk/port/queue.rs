//! The per-queue handles a worker takes to its core: taken from a [`Port`] one at a time per
//! queue id, given back on drop, and keeping the device open while they live.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk_sys as sys;

use super::{Inner, NotSync, Port};
use crate::dpdk::burst::Burst;
use crate::dpdk::error::DpdkError;

impl Port {
    /// The handle for RX queue `queue`; one at a time per queue (dropping it gives it back).
    pub fn rx_queue(&self, queue: u16) -> Result<RxQueue, DpdkError> {
        self.take(&self.inner.rx_taken, "rx", queue)?;
        Ok(RxQueue {
            port_id: self.inner.id,
            queue,
            port: Arc::clone(&self.inner),
            _not_sync: PhantomData,
        })
    }

    /// The handle for TX queue `queue`; one at a time per queue (dropping it gives it back).
    pub fn tx_queue(&self, queue: u16) -> Result<TxQueue, DpdkError> {
        self.take(&self.inner.tx_taken, "tx", queue)?;
        Ok(TxQueue {
            port_id: self.inner.id,
            queue,
            port: Arc::clone(&self.inner),
            _not_sync: PhantomData,
        })
    }

    fn take(&self, taken: &[AtomicBool], kind: &'static str, queue: u16) -> Result<(), DpdkError> {
        let flag = taken.get(usize::from(queue)).ok_or_else(|| {
            DpdkError::invalid(
                "queue",
                format!(
                    "port {} has {} {kind} queue(s), no queue {queue}",
                    self.inner.name,
                    taken.len()
                ),
            )
        })?;
        if flag.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::QueueInUse {
                port: self.inner.name.clone(),
                kind,
                queue,
            });
        }
        Ok(())
    }
}

/// One RX queue of a port, owned by one worker. Keeps the port open while it lives.
#[derive(Debug)]
pub struct RxQueue {
    port_id: u16,
    queue: u16,
    port: Arc<Inner>,
    _not_sync: NotSync,
}

impl RxQueue {
    /// Receives into the spare slots of `burst` (up to its free capacity) and returns how many
    /// mbufs arrived. Each arrives owned by the burst.
    ///
    /// Vector RX paths (ixgbe, i40e, ...) deliver in multiples of 4 and may return nothing
    /// when fewer than 4 slots are free: receive into an empty burst.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        self.rx_burst_max(burst, N)
    }

    /// Like [`RxQueue::rx_burst`], but receives at most `max` mbufs (a configured burst size
    /// smaller than the array).
    #[inline]
    pub fn rx_burst_max<const N: usize>(&mut self, burst: &mut Burst<N>, max: usize) -> usize {
        let (slots, spare) = burst.spare_raw();
        let spare = spare.min(max);
        if spare == 0 {
            return 0;
        }
        // SAFETY: the port is started and stays open while `self` lives; this handle is the
        // only one for the queue and `&mut self` keeps the call single-threaded; `slots` has
        // room for `spare` (<= u16::MAX) pointers.
        let n = unsafe { sys::fulcrum_rx_burst(self.port_id, self.queue, slots, spare as u16) };
        // SAFETY: the driver wrote `n` valid mbufs into the spare slots and handed them over.
        unsafe { burst.commit(usize::from(n)) };
        usize::from(n)
    }

    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// The queue id.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        self.port.rx_taken[usize::from(self.queue)].store(false, Ordering::Release);
    }
}

/// One TX queue of a port, owned by one worker. Keeps the port open while it lives.
#[derive(Debug)]
pub struct TxQueue {
    port_id: u16,
    queue: u16,
    port: Arc<Inner>,
    _not_sync: NotSync,
}

impl TxQueue {
    /// Sends `burst`. The driver takes a prefix of it; the rest is freed here, so the burst is
    /// always empty afterwards. Returns how many were taken: the caller counts
    /// `len - sent` as dropped.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let (slots, len) = burst.filled_raw();
        if len == 0 {
            return 0;
        }
        // SAFETY: as in RxQueue::rx_burst; `slots` holds `len` (<= u16::MAX) owned mbufs.
        let sent = unsafe { sys::fulcrum_tx_burst(self.port_id, self.queue, slots, len as u16) };
        // SAFETY: the driver now owns the first `sent` mbufs; the rest are still ours.
        unsafe { burst.taken_free_rest(usize::from(sent)) }
    }

    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// The queue id.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        self.port.tx_taken[usize::from(self.queue)].store(false, Ordering::Release);
    }
}

//! Everything a worker core does with a packet, and the DPDK plumbing under it.
//!
//! `pipeline` is pure (no DPDK, no I/O) so it runs over `Vec<u8>` frames in tests and over
//! mbufs in production; `dpdk` (DPDK) and `mem` (prefetch, huge-page advice, shared-memory
//! counter words) are the only modules allowed to use `unsafe`.
#![deny(unsafe_code)]

pub mod cpus;
pub mod engine;
pub mod exceptions;
pub mod flow;
pub mod frame;
pub mod hash;
pub mod ids;
pub mod local_ports;
pub mod maglev;
pub mod pipeline;
pub mod rss;
pub mod snapshot;
pub mod stats;
pub mod tunnel;
pub mod verdict;
pub mod vip_index;
pub mod wire;
pub mod worker;

#[allow(unsafe_code)]
pub mod dpdk;
#[allow(unsafe_code)]
pub mod mem;

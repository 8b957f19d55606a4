//! `[dpdk]`: worker CPUs, the slow-path CPU, mempool and ring sizes, burst and idle sleep.

use std::collections::HashMap;

use toml::Spanned;

use super::{Checker, range_i64};
use crate::model::*;
use crate::schema::{self, Int};

impl Checker<'_> {
    pub(super) fn dpdk(&mut self, t: &schema::DpdkTable) -> Dpdk {
        let d = Dpdk::default();
        let mut workers = Vec::new();
        if let Some(list) = &t.workers {
            if list.get_ref().is_empty() {
                self.error(
                    list.span(),
                    "dpdk.workers",
                    "workers is empty; at least one worker CPU is needed",
                );
            }
            let mut seen: HashMap<usize, usize> = HashMap::new();
            for (i, cpu) in list.get_ref().iter().enumerate() {
                let field = format!("dpdk.workers[{i}]");
                let Some(id) =
                    self.int::<usize>(cpu, &field, "worker CPU", 0..=Dpdk::MAX_CPU as i64)
                else {
                    continue;
                };
                let first = *seen.entry(id).or_insert(i);
                if first != i {
                    self.error(
                        cpu.span(),
                        field,
                        format!(
                            "CPU {id} is already worker {first}; each worker needs a CPU of its own"
                        ),
                    );
                } else {
                    workers.push(id);
                }
            }
        } else {
            workers = d.workers.clone();
        }
        let slowpath_cpu = t.slowpath_cpu.as_ref().and_then(|v| {
            let id = self.int::<usize>(v, "dpdk.slowpath_cpu", "slowpath_cpu", 0..=Dpdk::MAX_CPU as i64)?;
            if let Some(w) = workers.iter().position(|&w| w == id) {
                self.error(
                    v.span(),
                    "dpdk.slowpath_cpu",
                    format!(
                        "slowpath_cpu {id} is also worker {w}'s CPU; a busy-polling worker would starve \
                         the slow path, give it a CPU that is not in workers"
                    ),
                );
            }
            Some(id)
        });
        let mbufs = self.opt_int(
            &t.mbufs,
            "dpdk.mbufs",
            "mbufs",
            Dpdk::MBUFS_MIN as i64..=u32::MAX as i64,
            d.mbufs,
        );
        let mbuf_cache = self.opt_int(
            &t.mbuf_cache,
            "dpdk.mbuf_cache",
            "mbuf_cache",
            0..=Dpdk::MBUF_CACHE_MAX as i64,
            d.mbuf_cache,
        );
        let mbuf_data_room = self.opt_int(
            &t.mbuf_data_room,
            "dpdk.mbuf_data_room",
            "mbuf_data_room",
            range_i64(&Dpdk::MBUF_DATA_ROOM_RANGE),
            d.mbuf_data_room,
        );
        let rx_descriptors =
            self.descriptors(&t.rx_descriptors, "rx_descriptors", d.rx_descriptors);
        let tx_descriptors =
            self.descriptors(&t.tx_descriptors, "tx_descriptors", d.tx_descriptors);
        let burst = self.opt_int(
            &t.burst,
            "dpdk.burst",
            "burst",
            range_i64(&Dpdk::BURST_RANGE),
            d.burst,
        );
        let idle_sleep_us = self.opt_int(
            &t.idle_sleep_us,
            "dpdk.idle_sleep_us",
            "idle_sleep_us",
            0..=Dpdk::IDLE_SLEEP_MAX_US as i64,
            d.idle_sleep_us,
        );
        Dpdk {
            eal_args: t.eal_args.clone().unwrap_or(d.eal_args),
            workers,
            slowpath_cpu,
            mbufs,
            mbuf_cache,
            mbuf_data_room,
            rx_descriptors,
            tx_descriptors,
            burst,
            idle_sleep_us,
        }
    }

    pub(super) fn descriptors(&mut self, v: &Option<Spanned<Int>>, key: &str, default: u16) -> u16 {
        let Some(v) = v else { return default };
        let field = format!("dpdk.{key}");
        let Some(n) = self.int::<u16>(v, &field, key, range_i64(&Dpdk::DESCRIPTORS_RANGE)) else {
            return default;
        };
        if !n.is_power_of_two() {
            let lower = 1u16 << (15 - n.leading_zeros());
            self.error(
                v.span(),
                field,
                format!(
                    "{key} {n} is not a power of two; use {lower} or {}",
                    u32::from(lower) * 2
                ),
            );
        }
        n
    }
}

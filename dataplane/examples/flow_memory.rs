//! Memory of a full flow table: bytes per entry as the table accounts for them, and the
//! process's resident set (VmRSS) before and after filling it.
//!
//! ```text
//! cargo run --release -p dataplane --example flow_memory -- 10000000        # IPv4 flows
//! cargo run --release -p dataplane --example flow_memory -- 10000000 v6     # IPv6 flows
//! ```
//!
//! Fills the table to its capacity with distinct TCP flows of one family (established, one
//! backend), then reads `/proc/self/status`. Prints one JSON line, with the family.

use std::time::Instant;

use dataplane::flow::{BackendId, Flow, FlowKey, FlowState, FlowTable, ServiceIdx, Timeouts};
use dataplane::hash::flow_hash;

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.replace('_', "").parse().expect("entries"))
        .unwrap_or(10_000_000);
    let v6 = match std::env::args().nth(2).as_deref() {
        None | Some("v4") => false,
        Some("v6") => true,
        Some(other) => panic!("family {other:?}: v4 or v6"),
    };
    let rss0 = vm_rss_kib();
    let t0 = Instant::now();
    let mut ft = FlowTable::with_capacity(n);
    let alloc_s = t0.elapsed().as_secs_f64();
    let rss_empty = vm_rss_kib();
    let t = Timeouts::default();
    let t1 = Instant::now();
    let mut evicted = 0u64;
    for i in 0..n as u64 {
        // Distinct 5-tuples: 2^32 client addresses x ports, one VIP.
        let a = (i as u32).to_be_bytes();
        let sport = 1024 + (i >> 32) as u16;
        let k = if v6 {
            let mut src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            src[12..].copy_from_slice(&a);
            let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            FlowKey::v6(src, dst, sport, 443, 6)
        } else {
            FlowKey::v4(a, [198, 51, 100, 1], sport, 443, 6)
        };
        let r = ft
            .insert(
                k,
                flow_hash(1, &k),
                Flow::new(
                    FlowState::TcpEstablished,
                    ServiceIdx::new(0),
                    BackendId::new(1),
                ),
                0,
                &t,
            )
            .expect("room");
        evicted += u64::from(r.evicted.is_some());
    }
    let fill_s = t1.elapsed().as_secs_f64();
    let rss_full = vm_rss_kib();
    let out = serde_json::json!({
        "family": if v6 { "v6" } else { "v4" },
        "capacity": ft.capacity(),
        "entries": ft.len(),
        "evicted_while_filling": evicted,
        "table_bytes": ft.memory_bytes(),
        "table_bytes_per_entry": ft.memory_bytes() as f64 / n.max(1) as f64,
        "vm_rss_kib_start": rss0,
        "vm_rss_kib_allocated": rss_empty,
        "vm_rss_kib_full": rss_full,
        "rss_bytes_per_entry": (rss_full.saturating_sub(rss0) * 1024) as f64 / n.max(1) as f64,
        "allocate_s": alloc_s,
        "fill_s": fill_s,
    });
    println!("{out}");
}

//! Flow table operations at 10k and 1M entries (10M with `FULCRUM_BENCH_10M=1`: ~0.7 GB and
//! a minute), and the per-packet hashes.
//!
//! `cargo bench -p dataplane --bench flow` (add `-- --quick` for a fast pass). Kept short:
//! 10 samples, ~1 s of measurement per case. Each iteration is a batch of 4096 operations,
//! reported as elements per second. Keys are looked up in a scattered order, so a table
//! bigger than the caches misses them as live traffic does.
//!
//! - `lookup_hit` / `lookup_miss`: a table at 90% of its capacity (what a balancer runs at).
//! - `new_flow`: `probe` + `insert_probed` of fresh keys into that table (the new-flow path),
//!   each removed again so the load stays put.
//! - `insert_evict`: a full table; every insert evicts (the SYN-flood path).
//! - `expire_step_4096`: the aging hand over 4096 slots where nothing has expired.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::flow::{BackendId, Flow, FlowKey, FlowState, FlowTable, ServiceIdx, Timeouts};
use dataplane::hash::{flow_hash, table_hash};

const SEED: u64 = 0x5eed;
const BATCH: usize = 4096;

fn key(i: u32) -> FlowKey {
    let b = i.to_be_bytes();
    FlowKey::v4(
        [10, b[1], b[2], b[3]],
        [192, 0, 2, 1],
        1024 + (i >> 24) as u16 + (i as u16 & 0x3ff),
        443,
        6,
    )
}

fn hashed(i: u32) -> (FlowKey, u64) {
    let k = key(i);
    (k, table_hash(SEED, &k))
}

/// A permutation step so batches touch the table at random places, not in insertion order.
fn scatter(i: u32, n: u32) -> u32 {
    ((u64::from(i) * 2_654_435_761) % u64::from(n)) as u32
}

fn sizes() -> Vec<u32> {
    let mut s = vec![10_000, 1_000_000];
    if std::env::var_os("FULCRUM_BENCH_10M").is_some() {
        s.push(10_000_000);
    }
    s
}

fn config(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

fn hash(c: &mut Criterion) {
    let keys: Vec<FlowKey> = (0..BATCH as u32).map(key).collect();
    let mut g = c.benchmark_group("hash");
    config(&mut g);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("flow_hash (frozen: Maglev)", |b| {
        b.iter(|| {
            black_box(&keys)
                .iter()
                .fold(0u64, |a, k| a ^ flow_hash(SEED, k))
        })
    });
    g.bench_function("table_hash (flow table, IPv4)", |b| {
        b.iter(|| {
            black_box(&keys)
                .iter()
                .fold(0u64, |a, k| a ^ table_hash(SEED, k))
        })
    });
    g.finish();
}

fn flow(c: &mut Criterion) {
    let t = Timeouts::default();
    let est = Flow::new(
        FlowState::TcpEstablished,
        ServiceIdx::new(0),
        BackendId::new(1),
    );
    let mut g = c.benchmark_group("flow");
    config(&mut g);
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in sizes() {
        let mut ft = FlowTable::with_capacity(n as usize);
        let live = n / 10 * 9;
        let keys: Vec<(FlowKey, u64)> = (0..live).map(hashed).collect();
        let mut evicted = 0;
        for (k, h) in &keys {
            evicted += u32::from(ft.insert(*k, *h, est, 0, &t).unwrap().evicted.is_some());
        }
        println!(
            "flow table {n}: {} bytes/entry, filled to 90% with {evicted} early evictions",
            ft.memory_bytes() / n as usize
        );
        let sample: Vec<(FlowKey, u64)> = (0..BATCH as u32)
            .map(|i| keys[scatter(i, live) as usize])
            .collect();
        let misses: Vec<(FlowKey, u64)> = (0..BATCH as u32).map(|i| hashed(n + i)).collect();

        g.bench_function(BenchmarkId::new("lookup_hit", n), |b| {
            b.iter(|| {
                let mut found = 0u32;
                for (k, h) in black_box(&sample) {
                    found += u32::from(ft.lookup(k, *h).is_some());
                }
                found
            })
        });
        g.bench_function(BenchmarkId::new("lookup_miss", n), |b| {
            b.iter(|| {
                let mut found = 0u32;
                for (k, h) in black_box(&misses) {
                    found += u32::from(ft.lookup(k, *h).is_some());
                }
                found
            })
        });
        g.bench_function(BenchmarkId::new("new_flow", n), |b| {
            b.iter(|| {
                for (k, h) in black_box(&misses) {
                    let p = ft.probe(k, *h);
                    let r = ft.insert_probed(&p, *k, est, 1, &t).unwrap();
                    ft.remove(r.idx);
                }
            })
        });
        g.bench_function(BenchmarkId::new("expire_step_4096", n), |b| {
            b.iter(|| ft.expire_step(2, BATCH, &t))
        });
        // Full: every insert evicts (the oldest half-open or UDP entry of the key's two
        // buckets). Fresh keys each batch.
        let mut next = 2 * n;
        while ft.len() < ft.capacity() {
            let (k, h) = hashed(next);
            ft.insert(k, h, est, 0, &t).unwrap();
            next += 1;
        }
        g.bench_function(BenchmarkId::new("insert_evict", n), |b| {
            b.iter(|| {
                let mut evicted = 0u32;
                for _ in 0..BATCH {
                    let (k, h) = hashed(next);
                    next = next.wrapping_add(1);
                    let f = Flow::new(FlowState::TcpSynSeen, ServiceIdx::new(0), BackendId::new(1));
                    evicted += u32::from(ft.insert(k, h, f, 1, &t).unwrap().evicted.is_some());
                }
                evicted
            })
        });
    }
    g.finish();
}

criterion_group!(benches, hash, flow);
criterion_main!(benches);

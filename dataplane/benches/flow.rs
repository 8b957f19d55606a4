//! Flow table operations at 10k and 1M entries (10M with `FULCRUM_BENCH_10M=1`: ~1 GB),
//! and the per-packet hash.
//!
//! `cargo bench -p dataplane --bench flow` (add `-- --quick` for a fast pass). Kept short:
//! 10 samples, ~1 s of measurement per case. Each iteration is a batch of 4096 operations,
//! reported as elements per second.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::flow::{Flow, FlowKey, FlowState, FlowTable, Timeouts};
use dataplane::hash::flow_hash;

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

fn full_table(n: u32) -> (FlowTable, Vec<(FlowKey, u64)>) {
    let mut ft = FlowTable::with_capacity(n as usize);
    let t = Timeouts::default();
    let keys: Vec<(FlowKey, u64)> = (0..n).map(|i| (key(i), flow_hash(SEED, &key(i)))).collect();
    for (k, h) in &keys {
        ft.insert(*k, *h, Flow::new(FlowState::TcpEstablished, 0, 1), 0, &t)
            .unwrap();
    }
    (ft, keys)
}

fn hash(c: &mut Criterion) {
    let keys: Vec<FlowKey> = (0..BATCH as u32).map(key).collect();
    let mut g = c.benchmark_group("hash");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("flow_hash", |b| {
        b.iter(|| {
            black_box(&keys)
                .iter()
                .fold(0u64, |a, k| a ^ flow_hash(SEED, k))
        })
    });
    g.finish();
}

fn flow(c: &mut Criterion) {
    let t = Timeouts::default();
    let mut g = c.benchmark_group("flow");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in sizes() {
        let (mut ft, keys) = full_table(n);
        println!(
            "flow table {n}: {} bytes/entry",
            ft.memory_bytes() / n as usize
        );
        let sample: Vec<(FlowKey, u64)> = (0..BATCH as u32)
            .map(|i| keys[scatter(i, n) as usize])
            .collect();
        let misses: Vec<(FlowKey, u64)> = (0..BATCH as u32)
            .map(|i| (key(n + i), flow_hash(SEED, &key(n + i))))
            .collect();

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
        // Full table: every insert evicts (LRU among 16 under the hand). Fresh keys each batch.
        let mut next = 2 * n;
        g.bench_function(BenchmarkId::new("insert_evict", n), |b| {
            b.iter(|| {
                let mut evicted = 0u32;
                for _ in 0..BATCH {
                    let k = key(next);
                    next = next.wrapping_add(1);
                    let r = ft
                        .insert(
                            k,
                            flow_hash(SEED, &k),
                            Flow::new(FlowState::TcpSynSeen, 0, 1),
                            1,
                            &t,
                        )
                        .unwrap();
                    evicted += u32::from(r.evicted.is_some());
                }
                evicted
            })
        });
        // Below the bound: insert then remove (a short flow's whole life in the table).
        ft.clear();
        for (k, h) in &keys[..n as usize / 2] {
            ft.insert(*k, *h, Flow::new(FlowState::TcpEstablished, 0, 1), 0, &t)
                .unwrap();
        }
        g.bench_function(BenchmarkId::new("insert_remove", n), |b| {
            b.iter(|| {
                for (k, h) in black_box(&misses) {
                    let r = ft
                        .insert(*k, *h, Flow::new(FlowState::Udp, 0, 1), 1, &t)
                        .unwrap();
                    ft.remove(r.idx);
                }
            })
        });
        // The per-burst aging step over a half-full table where nothing has expired.
        g.bench_function(BenchmarkId::new("expire_step_4096", n), |b| {
            b.iter(|| ft.expire_step(2, BATCH, &t))
        });
    }
    g.finish();
}

criterion_group!(benches, hash, flow);
criterion_main!(benches);

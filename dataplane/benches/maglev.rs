//! Maglev table builds (what a reload costs per service) and lookups (what a new flow costs).
//!
//! `cargo bench -p dataplane --bench maglev` (add `-- --quick` for a fast pass). Kept short:
//! 10 samples, ~1 s of measurement per case.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::maglev::{Member, Table};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("backend-{i}")).collect()
}

fn build(c: &mut Criterion) {
    let nm = names(1000);
    let mut g = c.benchmark_group("maglev_build");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for m in [65537u32, 655373] {
        for n in [10usize, 100, 1000] {
            let mm: Vec<Member> = nm[..n]
                .iter()
                .map(|k| Member {
                    key: k.as_bytes(),
                    weight: 1,
                })
                .collect();
            g.bench_with_input(BenchmarkId::new(format!("M={m}"), n), &mm, |b, mm| {
                b.iter(|| Table::build(black_box(mm), m, 1))
            });
        }
        // Assorted weights, and one dominant member (the priority-queue fill).
        let mixed: Vec<Member> = nm
            .iter()
            .enumerate()
            .map(|(i, k)| Member {
                key: k.as_bytes(),
                weight: 1 + (i as u32 * 37) % 100,
            })
            .collect();
        g.bench_with_input(
            BenchmarkId::new(format!("M={m} weights 1..100"), 1000),
            &mixed,
            |b, mm| b.iter(|| Table::build(black_box(mm), m, 1)),
        );
        let skewed: Vec<Member> = nm
            .iter()
            .enumerate()
            .map(|(i, k)| Member {
                key: k.as_bytes(),
                weight: if i == 0 { 65535 } else { 1 },
            })
            .collect();
        g.bench_with_input(
            BenchmarkId::new(format!("M={m} one weight 65535"), 1000),
            &skewed,
            |b, mm| b.iter(|| Table::build(black_box(mm), m, 1)),
        );
    }
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let nm = names(100);
    let mm: Vec<Member> = nm
        .iter()
        .map(|k| Member {
            key: k.as_bytes(),
            weight: 1,
        })
        .collect();
    // Hash-like inputs (SplitMix64's sequence).
    let mut g = dataplane::hash::SplitMix(0);
    let hashes: Vec<u64> = (0..4096).map(|_| g.next_u64()).collect();
    let mut g = c.benchmark_group("maglev_lookup");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(hashes.len() as u64));
    for m in [65537u32, 655373] {
        let t = Table::build(&mm, m, 1);
        g.bench_function(BenchmarkId::new("N=100", m), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for &h in black_box(&hashes) {
                    acc = acc.wrapping_add(u32::from(t.lookup(h).unwrap_or(0)));
                }
                acc
            })
        });
    }
    g.finish();
}

criterion_group!(benches, build, lookup);
criterion_main!(benches);

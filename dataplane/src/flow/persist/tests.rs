//! Adoption of flow-table files: a compatible one is adopted with its ages continued; each
//! incompatibility, and a truncated, zeroed or random file, starts empty with its reason.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::hash::table_hash;
use crate::ids::{BackendId, ServiceIdx};

const SEED: u64 = 0x5eed;
const FP: u64 = 0xf1f1;
const CAP: usize = 64;

// The flow tests' timeouts.
use crate::flow::tests::T;

/// A directory of its own under the temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "fulcrum-persist-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec(dir: &Dir, workers: u16, cap: usize, origin: u64) -> Spec {
    Spec {
        dir: Some(dir.0.clone()),
        capacity: cap,
        workers,
        fingerprint: FP,
        seed: SEED,
        clock_origin_ms: origin,
        fresh: false,
    }
}

fn key(i: u32) -> FlowKey {
    let b = i.to_be_bytes();
    FlowKey::v4([10, b[1], b[2], b[3]], [192, 0, 2, 1], 1024, 80, 6)
}

/// Worker 0's table gets a DSR flow (seen at 1000) and a NAT pair (seen at 2000), in a
/// process whose clock origin is 1_000_000 ms; the tables are then dropped (a clean stop).
fn write_tables(dir: &Dir, workers: u16) -> (FlowKey, FlowKey, FlowKey) {
    let o = open(&spec(dir, workers, CAP, 1_000_000)).unwrap();
    assert_eq!(
        o.empty,
        Some(Empty::Missing(table_path(&dir.0, 0).display().to_string()))
    );
    let mut t = o.tables.into_iter().next().unwrap();
    assert!(t.is_persistent());
    let (dsr, fwd) = (key(1), key(2));
    let rev = FlowKey::v4([10, 9, 9, 9], [10, 0, 0, 2], 80, 1024, 6);
    let s = o.seed;
    t.insert(
        dsr,
        table_hash(s, &dsr),
        Flow::new(
            FlowState::TcpEstablished,
            ServiceIdx::new(0),
            BackendId::new(7),
        ),
        1000,
        &T,
    )
    .unwrap();
    let mut r = Flow::new(
        FlowState::TcpEstablished,
        ServiceIdx::new(1),
        BackendId::new(8),
    );
    r.flags = FLAG_REVERSE;
    t.insert_pair(
        (
            fwd,
            table_hash(s, &fwd),
            Flow::new(
                FlowState::TcpEstablished,
                ServiceIdx::new(1),
                BackendId::new(8),
            ),
        ),
        (rev, table_hash(s, &rev), r),
        2000,
        &T,
    )
    .unwrap();
    (dsr, fwd, rev)
}

#[test]
fn a_compatible_table_is_adopted_and_its_ages_continue() {
    let dir = Dir::new();
    let (dsr, fwd, rev) = write_tables(&dir, 2);
    // The new process's clock starts 5 s (wall) after the old one's.
    let mut s = spec(&dir, 2, CAP, 1_005_000);
    s.seed = 0x0dd; // a new random seed: the file's wins
    let o = open(&s).unwrap();
    assert_eq!(o.empty, None);
    assert_eq!(o.seed, SEED);
    assert_eq!(o.adopted, 3);
    assert_eq!(o.dropped, 0);
    let t = &o.tables[0];
    let i = t
        .lookup(&dsr, table_hash(o.seed, &dsr))
        .expect("DSR flow adopted");
    assert_eq!(t.get(i).backend, BackendId::new(7));
    // Seen at 1000 on the old clock = -4000 on the new one: idle 4100 ms at new time 100.
    assert_eq!(t.get(i).idle(100), 4100);
    let f = t
        .lookup(&fwd, table_hash(o.seed, &fwd))
        .expect("NAT forward half");
    let r = t
        .lookup(&rev, table_hash(o.seed, &rev))
        .expect("NAT reverse half");
    assert_eq!(t.get(f).twin, r, "the pair is still linked");
    assert_eq!(t.get(r).twin, f);
    assert_eq!(t.get(f).idle(0), 3000);
    println!(
        "adopted {} entries; DSR flow idle {} ms after a 5 s gap",
        o.adopted, 4100
    );
}

#[test]
fn each_incompatibility_starts_empty_with_its_reason() {
    type Case = (&'static str, fn(&mut Spec), &'static str);
    let cases: [Case; 4] = [
        (
            "capacity",
            |s| s.capacity = 2 * CAP,
            "holds 64 entries, flow_table_capacity is 128",
        ),
        (
            "workers",
            |s| s.workers = 3,
            "was written by 2 workers, this config has 3",
        ),
        (
            "ports",
            |s| s.fingerprint ^= 1,
            "was written for other ports",
        ),
        (
            "age",
            |s| s.clock_origin_ms += 30 * 86_400_000,
            "is 30 days old",
        ),
    ];
    for (what, change, why) in cases {
        let dir = Dir::new();
        write_tables(&dir, 2);
        let mut s = spec(&dir, 2, CAP, 1_005_000);
        change(&mut s);
        let o = open(&s).unwrap();
        let e = o.empty.expect(what).to_string();
        println!("{what}: {e}");
        assert!(e.contains(why), "{what}: {e}");
        assert!(o.tables.iter().all(FlowTable::is_empty));
        assert_eq!(o.seed, s.seed, "{what}: a new table takes the new seed");
        drop(o.tables);
        // The files were replaced: the next start adopts the new (empty) tables.
        let again = open(&s).unwrap();
        assert_eq!(again.empty, None, "{what}");
    }
}

#[test]
fn another_layout_version_starts_empty() {
    let dir = Dir::new();
    write_tables(&dir, 1);
    let file = table_path(&dir.0, 0);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8..12].copy_from_slice(&(LAYOUT_VERSION + 1).to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let e = open(&spec(&dir, 1, CAP, 1_000_000)).unwrap().empty.unwrap();
    println!("{e}");
    assert!(e.to_string().contains(&format!(
        "has layout version {} (64-byte slots), this build writes {LAYOUT_VERSION}",
        LAYOUT_VERSION + 1
    )));
}

#[test]
fn fresh_discards_the_files() {
    let dir = Dir::new();
    write_tables(&dir, 1);
    let mut s = spec(&dir, 1, CAP, 1_000_000);
    s.fresh = true;
    let o = open(&s).unwrap();
    assert_eq!(o.empty, Some(Empty::Fresh));
    assert!(o.tables[0].is_empty());
}

#[test]
fn truncated_zeroed_and_random_files_start_empty() {
    let mut rng = crate::hash::SplitMix(42);
    let good_len = crate::mem::file_bytes::<Slot>(FlowTable::slots_for(CAP));
    let random: Vec<u8> = (0..good_len).map(|_| rng.next_u64() as u8).collect();
    type Spoil = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: [(&str, Spoil, &str); 6] = [
        ("empty", Box::new(|b| b.clear()), "not a flow table"),
        (
            "truncated header",
            Box::new(|b| b.truncate(40)),
            "not a flow table",
        ),
        (
            "truncated slots",
            Box::new(|b| b.truncate(4096 + 100)),
            "bytes long",
        ),
        ("zeroed", Box::new(|b| b.fill(0)), "not a flow table"),
        (
            "random",
            Box::new(move |b| b.copy_from_slice(&random)),
            "not a flow table",
        ),
        (
            "a bad state byte",
            Box::new(|b| b[4096 + 64 * 3 + Slot::STATE_OFFSET] = 9),
            "slot 3 holds an invalid bit pattern",
        ),
    ];
    for (what, spoil, why) in cases {
        let dir = Dir::new();
        write_tables(&dir, 1);
        let file = table_path(&dir.0, 0);
        let mut bytes = std::fs::read(&file).unwrap();
        spoil(&mut bytes);
        std::fs::write(&file, &bytes).unwrap();
        let o = open(&spec(&dir, 1, CAP, 1_000_000)).unwrap();
        let e = o.empty.expect(what).to_string();
        println!("{what}: {e}");
        assert!(e.contains(why), "{what}: {e}");
        assert!(o.tables[0].is_empty());
    }
}

#[test]
fn random_slots_behind_a_good_header_are_repaired_not_trusted() {
    let dir = Dir::new();
    let (dsr, ..) = write_tables(&dir, 1);
    let file = table_path(&dir.0, 0);
    let mut bytes = std::fs::read(&file).unwrap();
    let mut rng = crate::hash::SplitMix(7);
    // Every slot but the DSR flow's random, with a valid state byte.
    let keep = {
        let o = open(&spec(&dir, 1, CAP, 1_000_000)).unwrap();
        o.tables[0]
            .lookup(&dsr, table_hash(SEED, &dsr))
            .unwrap()
            .index()
    };
    for i in 0..FlowTable::slots_for(CAP) {
        if i == keep {
            continue;
        }
        let s = &mut bytes[4096 + 64 * i..][..64];
        s.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        s[Slot::STATE_OFFSET] %= FlowState::MAX + 1;
        s[37] = [0, 4, 6][i % 3]; // family: free, v4, v6
    }
    std::fs::write(&file, &bytes).unwrap();
    let o = open(&spec(&dir, 1, CAP, 1_000_000)).unwrap();
    assert_eq!(o.empty, None);
    let t = &o.tables[0];
    assert_eq!(
        t.len(),
        1,
        "only the intact entry is live ({} dropped)",
        o.dropped
    );
    assert!(t.lookup(&dsr, table_hash(SEED, &dsr)).is_some());
    for (_, f) in t.iter() {
        assert_eq!(f.twin, NO_TWIN);
    }
}

#[test]
fn a_file_in_use_is_not_replaced() {
    let dir = Dir::new();
    let o = open(&spec(&dir, 1, CAP, 1)).unwrap();
    let again = open(&spec(&dir, 1, CAP, 1));
    assert!(matches!(
        again,
        Err(PersistError::File {
            source: OpenError::Locked,
            ..
        })
    ));
    drop(o);
    assert!(open(&spec(&dir, 1, CAP, 1)).is_ok());
}

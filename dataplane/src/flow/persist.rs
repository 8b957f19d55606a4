//! Flow tables that survive a restart: each worker's table lives in a file of its own
//! (`flows-<worker>.tbl` in the state directory, mapped shared through [`crate::mem`]), behind
//! a header that says what the slots mean. A new process adopts the files when the header
//! matches what it would build; otherwise it starts empty and says why ([`Empty`]).
//!
//! # Header (little-endian, first page of the file)
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..8  | magic `FULCRUMF` |
//! | 8..12 | layout version ([`LAYOUT_VERSION`]) |
//! | 12..16 | slot size (64) |
//! | 16..24 | capacity (entries) |
//! | 24..32 | slots |
//! | 32..40 | key seed (the table hash's and NAT owner's seed, shared by the workers) |
//! | 40..44 | worker count |
//! | 44..48 | this file's worker |
//! | 48..56 | config fingerprint ([`Header::fingerprint`]'s inputs: what entries index into) |
//! | 56..64 | clock origin: Unix time (ms) at which the entries' clock read 0 |
//!
//! # Times
//!
//! Entries keep `last_seen` on the worker's clock, milliseconds since the engine started. The
//! header records when that clock read 0 (wall clock); adoption shifts every entry by the
//! difference between the old origin and the new one, so a flow's age continues across the
//! restart (the down time counts as idle). Tables older than [`MAX_AGE_MS`] are not adopted
//! (the 32-bit clock could not tell their ages).
//!
//! # What adoption checks
//!
//! The header (each incompatibility is a reason of its own), the file's size, every slot's
//! state byte (the one field with invalid bit patterns, checked before the bytes are viewed
//! as slots), and then each live entry: a known family, in one of its two buckets under its
//! tag (rehashed with the file's seed), its twin live and naming it back. An entry that fails
//! these (a slot torn by a kill in the middle of a write) is dropped or unlinked, not
//! trusted; the rest are adopted.

use std::path::{Path, PathBuf};

use super::*;
use crate::mem::{MappedSlots, OpenError};

/// The version of the slot layout and of the table hash. Bump it when `Slot`, `FlowKey`,
/// `Flow`, `FlowState`'s values, the meaning of a field or [`crate::hash::table_hash`] change.
/// 2: a FullNAT forward half with PROXY v2 keeps its first data sequence in `peer_mac`.
pub const LAYOUT_VERSION: u32 = 2;

/// The header's first bytes.
pub const MAGIC: [u8; 8] = *b"FULCRUMF";

/// Tables whose clock origin is further than this from now are not adopted: `last_seen` is
/// a 32-bit millisecond clock (49.7 days around), so ages beyond half of it are ambiguous.
pub const MAX_AGE_MS: u64 = 24 * 24 * 3600 * 1000;

/// A table file's header. See the module documentation for the byte layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub layout: u32,
    pub slot_bytes: u32,
    pub capacity: u64,
    pub slots: u64,
    pub seed: u64,
    pub workers: u32,
    pub worker: u32,
    pub fingerprint: u64,
    pub clock_origin_ms: u64,
}

impl Header {
    /// The header a table of `capacity` for worker `worker` of `workers` has in this build.
    pub fn new(capacity: usize, workers: u16, worker: u16, seed: u64, fingerprint: u64) -> Self {
        Header {
            layout: LAYOUT_VERSION,
            slot_bytes: size_of::<Slot>() as u32,
            capacity: capacity as u64,
            slots: FlowTable::slots_for(capacity) as u64,
            seed,
            workers: u32::from(workers),
            worker: u32::from(worker),
            fingerprint,
            clock_origin_ms: 0,
        }
    }

    /// The fingerprint of the configuration an entry depends on: the ports, by name in
    /// config order (an entry keeps the index of the port a flow came in on and of the one
    /// its replies leave by). Backend ids are kept stable by name beside the tables, and the
    /// service of an entry is checked again on every packet, so neither is part of it.
    pub fn fingerprint<'a>(ports: impl IntoIterator<Item = &'a str>) -> u64 {
        let mut bytes = Vec::new();
        for p in ports {
            bytes.extend_from_slice(p.as_bytes());
            bytes.push(0);
        }
        crate::hash::hash_bytes(0x666c_6f77_7461_626c, &bytes)
    }

    /// Reads a header; `None` unless it starts with [`MAGIC`].
    pub fn parse(b: &[u8]) -> Option<Header> {
        let b = b.get(..64)?;
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        (b[..8] == MAGIC).then(|| Header {
            layout: u32_at(8),
            slot_bytes: u32_at(12),
            capacity: u64_at(16),
            slots: u64_at(24),
            seed: u64_at(32),
            workers: u32_at(40),
            worker: u32_at(44),
            fingerprint: u64_at(48),
            clock_origin_ms: u64_at(56),
        })
    }

    /// Writes the header into the first 64 bytes of `b`.
    pub fn write(&self, b: &mut [u8]) {
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.layout.to_le_bytes());
        b[12..16].copy_from_slice(&self.slot_bytes.to_le_bytes());
        b[16..24].copy_from_slice(&self.capacity.to_le_bytes());
        b[24..32].copy_from_slice(&self.slots.to_le_bytes());
        b[32..40].copy_from_slice(&self.seed.to_le_bytes());
        b[40..44].copy_from_slice(&self.workers.to_le_bytes());
        b[44..48].copy_from_slice(&self.worker.to_le_bytes());
        b[48..56].copy_from_slice(&self.fingerprint.to_le_bytes());
        b[56..64].copy_from_slice(&self.clock_origin_ms.to_le_bytes());
    }

    /// Why a table with header `self` cannot be adopted where `want` is expected (`seed` and
    /// the clock origin are the file's to give, not compared); `None` if it can.
    pub fn incompatibility(&self, want: &Header, now_ms: u64) -> Option<Empty> {
        let e = if self.layout != want.layout || self.slot_bytes != want.slot_bytes {
            Empty::Layout {
                found: self.layout,
                slot_bytes: self.slot_bytes,
                want: want.layout,
            }
        } else if self.capacity != want.capacity || self.slots != want.slots {
            Empty::Capacity {
                found: self.capacity,
                want: want.capacity,
            }
        } else if self.workers != want.workers {
            Empty::Workers {
                found: self.workers,
                want: want.workers,
            }
        } else if self.worker != want.worker {
            Empty::Worker {
                found: self.worker,
                want: want.worker,
            }
        } else if self.fingerprint != want.fingerprint {
            Empty::Fingerprint
        } else if now_ms.abs_diff(self.clock_origin_ms) > MAX_AGE_MS {
            Empty::TooOld {
                days: now_ms.abs_diff(self.clock_origin_ms) / 86_400_000,
            }
        } else {
            return None;
        };
        Some(e)
    }
}

/// Why the flow tables start empty: one line for the log and `ctl status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Empty {
    #[error("started with --fresh")]
    Fresh,
    #[error("no flow table file to adopt ({0})")]
    Missing(String),
    #[error("{file}: {why}")]
    File { file: String, why: Box<Empty> },
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error("is not a flow table (no header magic: zeroed, truncated or foreign)")]
    NotATable,
    #[error("has layout version {found} ({slot_bytes}-byte slots), this build writes {want}")]
    Layout {
        found: u32,
        slot_bytes: u32,
        want: u32,
    },
    #[error("holds {found} entries, flow_table_capacity is {want}")]
    Capacity { found: u64, want: u64 },
    #[error("was written by {found} workers, this config has {want}")]
    Workers { found: u32, want: u32 },
    #[error("belongs to worker {found}, not {want}")]
    Worker { found: u32, want: u32 },
    #[error("was written for other ports (the config's port list changed)")]
    Fingerprint,
    #[error("is {days} days old")]
    TooOld { days: u64 },
    #[error("{0}")]
    Size(String),
    #[error("{0}")]
    InvalidSlot(String),
    #[error("the workers' files disagree on the key seed")]
    SeedsDiffer,
}

/// Where a worker's table lives in `dir`.
pub fn table_path(dir: &Path, worker: u16) -> PathBuf {
    dir.join(format!("flows-{worker}.tbl"))
}

/// What the engine asks for: every worker's table, adopted or new.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Where the files live; `None`: in anonymous memory, nothing kept.
    pub dir: Option<PathBuf>,
    pub capacity: usize,
    pub workers: u16,
    /// [`Header::fingerprint`] of the config.
    pub fingerprint: u64,
    /// The seed of new tables (a random one); adopted tables keep theirs.
    pub seed: u64,
    /// Unix time (ms) at which the workers' clock reads 0.
    pub clock_origin_ms: u64,
    /// Discard any files (`fulcrum run --fresh`).
    pub fresh: bool,
}

/// What [`open`] made.
pub struct Opened {
    /// One per worker.
    pub tables: Vec<FlowTable>,
    /// The seed the tables were placed with: every worker's pipeline must use it.
    pub seed: u64,
    /// Entries adopted (live ones, both halves of a NAT pair counted), summed.
    pub adopted: usize,
    /// Entries found in the files but dropped as inconsistent (torn by a kill).
    pub dropped: usize,
    /// Why the tables are empty, if they are; `None` when adopted or kept in memory.
    pub empty: Option<Empty>,
}

/// Why the tables could not be set up at all (the start fails).
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("flow table directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("flow table file {file} {source}")]
    File { file: PathBuf, source: OpenError },
}

/// Every worker's table per `spec`: adopted from the files in `spec.dir` when all of them
/// are compatible, else new (and the files replaced). Errors only when a file cannot be
/// created or is locked by another process.
pub fn open(spec: &Spec) -> Result<Opened, PersistError> {
    let Some(dir) = &spec.dir else {
        return Ok(Opened {
            tables: (0..spec.workers)
                .map(|_| FlowTable::with_capacity(spec.capacity))
                .collect(),
            seed: spec.seed,
            adopted: 0,
            dropped: 0,
            empty: None,
        });
    };
    std::fs::create_dir_all(dir).map_err(|source| PersistError::Dir {
        dir: dir.clone(),
        source,
    })?;
    let why = if spec.fresh {
        Empty::Fresh
    } else {
        match adopt_all(dir, spec) {
            Ok(opened) => return Ok(opened),
            Err(Err(locked)) => return Err(locked),
            Err(Ok(why)) => why,
        }
    };
    let mut tables = Vec::with_capacity(usize::from(spec.workers));
    for w in 0..spec.workers {
        let file = table_path(dir, w);
        let mut slots = MappedSlots::create(&file, FlowTable::slots_for(spec.capacity), Slot::FREE)
            .map_err(|source| PersistError::File { file, source })?;
        let mut h = Header::new(spec.capacity, spec.workers, w, spec.seed, spec.fingerprint);
        h.clock_origin_ms = spec.clock_origin_ms;
        h.write(slots.header_mut());
        tables.push(FlowTable::over(slots, spec.capacity));
    }
    // Files of workers this config no longer has would only mislead a later start.
    for w in spec.workers..u16::MAX {
        if std::fs::remove_file(table_path(dir, w)).is_err() {
            break;
        }
    }
    Ok(Opened {
        tables,
        seed: spec.seed,
        adopted: 0,
        dropped: 0,
        empty: Some(why),
    })
}

/// Adopts every worker's file, or says why not (`Err(Ok(why))`), or fails (`Err(Err(e))`:
/// a file another process holds).
fn adopt_all(dir: &Path, spec: &Spec) -> Result<Opened, Result<Empty, PersistError>> {
    let mut tables = Vec::with_capacity(usize::from(spec.workers));
    let (mut seed, mut adopted, mut dropped) = (None, 0, 0);
    for w in 0..spec.workers {
        let file = table_path(dir, w);
        let named = |why: Empty| {
            Ok(Empty::File {
                file: file.display().to_string(),
                why: Box::new(why),
            })
        };
        if !file.exists() {
            return Err(Ok(Empty::Missing(file.display().to_string())));
        }
        let want = Header::new(spec.capacity, spec.workers, w, 0, spec.fingerprint);
        let (t, h, d) = match adopt_one(&file, &want, spec.clock_origin_ms) {
            Ok(x) => x,
            Err(Refused::Locked) => {
                return Err(Err(PersistError::File {
                    file,
                    source: OpenError::Locked,
                }));
            }
            Err(Refused::Why(why)) => return Err(named(why)),
        };
        if seed.is_some_and(|s| s != h.seed) {
            return Err(Ok(Empty::SeedsDiffer));
        }
        seed = Some(h.seed);
        adopted += t.len();
        dropped += d;
        tables.push(t);
    }
    Ok(Opened {
        tables,
        seed: seed.unwrap_or(spec.seed),
        adopted,
        dropped,
        empty: None,
    })
}

/// Why [`adopt_one`] did not adopt a file.
#[derive(Debug)]
pub enum Refused {
    /// Another process holds it: not ours to replace either.
    Locked,
    /// It is not a compatible table.
    Why(Empty),
}

impl From<OpenError> for Refused {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Locked => Refused::Locked,
            OpenError::Io(e) => Refused::Why(Empty::Unreadable(e.to_string())),
            e @ OpenError::Size { .. } => Refused::Why(Empty::Size(e.to_string())),
            e @ OpenError::InvalidSlot(_) => Refused::Why(Empty::InvalidSlot(e.to_string())),
        }
    }
}

impl From<std::io::Error> for Refused {
    fn from(e: std::io::Error) -> Self {
        Refused::Why(Empty::Unreadable(e.to_string()))
    }
}

/// One file: its header checked against `want`, its slots mapped, checked and rebased to the
/// new clock; the header then records the new origin. Returns the table, the file's header
/// and how many entries were dropped as inconsistent.
pub fn adopt_one(
    file: &Path,
    want: &Header,
    clock_origin_ms: u64,
) -> Result<(FlowTable, Header, usize), Refused> {
    // The header first, read without mapping: a file too short for one is not a table.
    let mut head = [0u8; 64];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(file)?;
        let n = f.read(&mut head)?;
        if n < head.len() {
            return Err(Refused::Why(Empty::NotATable));
        }
    }
    let h = Header::parse(&head).ok_or(Refused::Why(Empty::NotATable))?;
    if let Some(why) = h.incompatibility(want, clock_origin_ms) {
        return Err(Refused::Why(why));
    }
    let mut slots = MappedSlots::<Slot>::open(file, h.slots as usize)?;
    // The mapped header is the one read above unless the file changed in between (it is
    // locked now): read it again from the mapping and insist.
    if Header::parse(slots.header()) != Some(h) {
        return Err(Refused::Why(Empty::NotATable));
    }
    // new clock = old clock - (new origin - old origin), modulo 2^32.
    let shift = clock_origin_ms.wrapping_sub(h.clock_origin_ms) as u32;
    let mut nh = h;
    nh.clock_origin_ms = clock_origin_ms;
    let seed = h.seed;
    let cap = h.capacity as usize;
    for s in slots.iter_mut() {
        s.flow.last_seen = s.flow.last_seen.wrapping_sub(shift);
    }
    nh.write(slots.header_mut());
    let mut t = FlowTable::over(slots, cap);
    let dropped = t.repair(seed);
    Ok((t, h, dropped))
}

impl FlowTable {
    /// Makes an adopted table consistent: frees entries of no known family or not where
    /// their hash puts them (under `seed`), and more than the capacity; unlinks twins that do
    /// not name each other back; recounts. Returns how many entries it freed.
    fn repair(&mut self, seed: u64) -> usize {
        let mut dropped = 0;
        self.len = 0;
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s.key.family == FAMILY_FREE {
                self.slots[i].flow.twin = NO_TWIN;
                continue;
            }
            let (b1, tag) = self.first_bucket(crate::hash::table_hash(seed, &s.key));
            let b2 = self.second_bucket(b1, tag);
            let b = (i / WAYS) as u32;
            let second = s.meta & META_SECOND != 0;
            let placed =
                s.meta & META_TAG == tag && if second { b == b2 && b2 != b1 } else { b == b1 };
            let family_ok = s.key.family == FAMILY_V4 || s.key.family == FAMILY_V6;
            if !placed || !family_ok || self.len >= self.cap {
                let x = &mut self.slots[i];
                x.key.family = FAMILY_FREE;
                x.flow.twin = NO_TWIN;
                dropped += 1;
                continue;
            }
            self.len += 1;
        }
        for i in 0..self.slots.len() {
            let idx = FlowSlot::new(i as u32);
            if self.slots[i].is_live()
                && self.slots[i].flow.twin != NO_TWIN
                && self.twin_of(idx).is_none()
            {
                self.slots[i].flow.twin = NO_TWIN;
            }
        }
        self.heads.fill(Head::EMPTY);
        for i in 0..self.slots.len() {
            if self.slots[i].is_live() {
                self.mirror(i);
            }
        }
        dropped
    }

    /// Whether this table lives in a file (and so survives the process).
    pub fn is_persistent(&self) -> bool {
        self.slots.is_file()
    }
}

#[cfg(test)]
mod tests;

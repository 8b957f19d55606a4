//! Counter words in shared memory: a file mapping (memmap2) viewed as `[AtomicU64]`, so that
//! the workers publish their counters with plain relaxed stores and any reader, in this
//! process or another one (`fulcrum ctl`, a metrics scraper), loads them without touching the
//! workers or the slow path. Viewing the mapping as atomics is the one `unsafe` it needs.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicU64;

use memmap2::{Mmap, MmapMut, MmapOptions};

const _: () = assert!(size_of::<AtomicU64>() == 8 && align_of::<AtomicU64>() <= 4096);

enum Map {
    Rw(MmapMut),
    Ro(Mmap),
}

/// `len` 64-bit words, shared, accessed only atomically.
pub struct SharedWords {
    map: Map,
    len: usize,
}

impl SharedWords {
    /// A new file at `path` (created, or truncated) holding `len` zeroed words, mode 0644.
    pub fn create(path: &Path, len: usize) -> io::Result<SharedWords> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        f.set_len((len.max(1) * 8) as u64)?;
        // SAFETY: (memmap2's contract) the file is ours, just sized; another process may write
        // it, but every access through this mapping is an atomic one (see `words`).
        let map = unsafe { MmapOptions::new().len(len.max(1) * 8).map_mut(&f)? };
        Ok(SharedWords {
            map: Map::Rw(map),
            len,
        })
    }

    /// Private, anonymous words (no file): for counters nobody outside reads.
    pub fn anonymous(len: usize) -> io::Result<SharedWords> {
        let map = MmapOptions::new().len(len.max(1) * 8).map_anon()?;
        Ok(SharedWords {
            map: Map::Rw(map),
            len,
        })
    }

    /// An existing file, read-only (another process's counters).
    pub fn open(path: &Path) -> io::Result<SharedWords> {
        let f = std::fs::File::open(path)?;
        // SAFETY: (memmap2's contract) the writer changes the file while it is mapped, but
        // only through atomic stores, and we only ever load it atomically (see `words`).
        let map = unsafe { Mmap::map(&f)? };
        let len = map.len() / 8;
        Ok(SharedWords {
            map: Map::Ro(map),
            len,
        })
    }

    /// The words.
    pub fn words(&self) -> &[AtomicU64] {
        let ptr = match &self.map {
            Map::Rw(m) => m.as_ptr(),
            Map::Ro(m) => m.as_ptr(),
        };
        // SAFETY: the mapping starts page-aligned (mmap), so aligned for AtomicU64, which has
        // the size of u64 (checked above), and holds at least `len * 8` bytes. It lives as long
        // as `self`, which the slice borrows. No `&mut [u8]` to it is ever made: every access
        // in this process goes through these atomics, and other processes sharing the file
        // access it atomically too. A read-only mapping is only ever loaded from (the API
        // that writes, `SharedCounters::publish`, is given writable words by its owner).
        unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU64>(), self.len) }
    }
}

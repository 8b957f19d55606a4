//! Table slots in memory that can outlive the process: an array of plain-old-data slots
//! behind a one-page header, either in a file mapped shared (memmap2; a tmpfs or hugetlbfs
//! file keeps its contents when the process stops or is killed, so the next one can adopt
//! them) or in anonymous memory (nothing kept).
//!
//! # Invariants the `SAFETY:` lines argue from
//!
//! 1. The mapping is page-aligned and at least `HEADER_BYTES + len * size_of::<T>()` long;
//!    `HEADER_BYTES` is a multiple of `align_of::<T>()` (checked at compile time per `T`).
//! 2. Every slot's bytes have been checked by [`MappedSlot::bits_valid`] (an adopted file), or
//!    written as a `T` (a new one) before any `&[T]` over them is made.
//! 3. No other process maps the file while this one does: an exclusive `flock` is held on it
//!    for as long as the mapping lives (a second opener gets `WouldBlock`). A reader that is
//!    not a writer (a debugging `cat`) can see torn slots but cannot make this process's view
//!    invalid.
//! 4. The header bytes and the slots are disjoint ranges of the mapping; `&mut` to either is
//!    only handed out through `&mut self`.

use std::fs::{File, OpenOptions};
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

use memmap2::{MmapMut, MmapOptions};

/// Bytes before the first slot: one page, for the header.
pub const HEADER_BYTES: usize = 4096;

/// Files are sized in multiples of this (a 2 MiB huge page), so that the same file can live on
/// hugetlbfs, whose files must be.
pub const FILE_GRANULE: usize = 2 << 20;

/// A slot type that may be read back from a file another process wrote.
///
/// # Safety
///
/// `Self` must hold no pointer or reference and have no interior mutability, its alignment
/// must divide [`HEADER_BYTES`], and every `size_of::<Self>()` bytes for which
/// [`bits_valid`](Self::bits_valid) returns true must be a valid `Self` (every field's bit
/// pattern valid; padding may hold anything).
pub unsafe trait MappedSlot: Copy + 'static {
    /// Whether these bytes (exactly one slot's) are a valid `Self`.
    fn bits_valid(bytes: &[u8]) -> bool;
}

/// Why an existing file was not mapped.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("is in use by another process (it holds the file's lock)")]
    Locked,
    #[error("is {actual} bytes long, {expected} expected")]
    Size { actual: u64, expected: u64 },
    #[error("slot {0} holds an invalid bit pattern")]
    InvalidSlot(usize),
}

/// The file size that holds `len` slots of `T` behind the header.
pub fn file_bytes<T>(len: usize) -> usize {
    (HEADER_BYTES + len * size_of::<T>()).next_multiple_of(FILE_GRANULE)
}

/// `len` slots of `T` behind a header page, in a shared file mapping or anonymous memory.
pub struct MappedSlots<T: MappedSlot> {
    slots: NonNull<T>,
    len: usize,
    map: MmapMut,
    /// The locked file (none for anonymous memory); closing it releases the lock.
    _file: Option<File>,
    _t: PhantomData<T>,
}

// SAFETY: the slots are plain data owned by this value (invariant 3: no other process writes
// them), so moving it to another thread moves their sole owner, as with a `Box<[T]>`.
unsafe impl<T: MappedSlot + Send> Send for MappedSlots<T> {}
// SAFETY: shared access only reads (`&self` hands out `&[T]`), as with a `Box<[T]>`.
unsafe impl<T: MappedSlot + Sync> Sync for MappedSlots<T> {}

impl<T: MappedSlot> MappedSlots<T> {
    const ALIGNED: () = assert!(HEADER_BYTES.is_multiple_of(align_of::<T>()) && size_of::<T>() > 0);

    /// `len` slots, each `fill`, in private anonymous memory (a zero header).
    pub fn anonymous(len: usize, fill: T) -> io::Result<Self> {
        let mut map = MmapOptions::new()
            .len(HEADER_BYTES + len * size_of::<T>())
            .map_anon()?;
        // Huge pages before the first touch: lookups land anywhere in a table.
        super::advise_huge_pages(&mut map[..]);
        Ok(Self::filled(map, None, len, fill))
    }

    /// A new file at `path` (replacing any), locked, sized for `len` slots, each `fill`, with a
    /// zero header (the caller writes it).
    pub fn create(path: &Path, len: usize, fill: T) -> Result<Self, OpenError> {
        // Lock before truncating: a file another process still maps must not shrink under it.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        lock(&f)?;
        f.set_len(0)?;
        f.set_len(file_bytes::<T>(len) as u64)?;
        // SAFETY: (memmap2's contract) the file is ours and locked (invariant 3), just sized.
        let map = unsafe { MmapOptions::new().map_mut(&f)? };
        Ok(Self::filled(map, Some(f), len, fill))
    }

    fn filled(mut map: MmapMut, file: Option<File>, len: usize, fill: T) -> Self {
        let () = Self::ALIGNED;
        let slots = NonNull::new(map.as_mut_ptr().wrapping_add(HEADER_BYTES))
            .expect("a mapping is not at address 0")
            .cast::<T>();
        for i in 0..len {
            // SAFETY: slot `i` lies inside the mapping and is aligned (invariant 1); it is
            // written whole, as a `T`, before any reference to it exists (invariant 2).
            unsafe { slots.as_ptr().add(i).write(fill) };
        }
        MappedSlots {
            slots,
            len,
            map,
            _file: file,
            _t: PhantomData,
        }
    }

    /// An existing file at `path`, locked and mapped, holding exactly `len` slots of `T`, each
    /// checked with [`MappedSlot::bits_valid`]. The header is the caller's to check.
    pub fn open(path: &Path, len: usize) -> Result<Self, OpenError> {
        let () = Self::ALIGNED;
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        lock(&f)?;
        let actual = f.metadata()?.len();
        let expected = file_bytes::<T>(len) as u64;
        if actual != expected {
            return Err(OpenError::Size { actual, expected });
        }
        // SAFETY: (memmap2's contract) the file is locked (invariant 3) and its size checked.
        let mut map = unsafe { MmapOptions::new().map_mut(&f)? };
        let bytes = &map[HEADER_BYTES..HEADER_BYTES + len * size_of::<T>()];
        if let Some(bad) = bytes
            .chunks_exact(size_of::<T>())
            .position(|b| !T::bits_valid(b))
        {
            return Err(OpenError::InvalidSlot(bad));
        }
        let slots = NonNull::new(map.as_mut_ptr().wrapping_add(HEADER_BYTES))
            .expect("a mapping is not at address 0")
            .cast::<T>();
        Ok(MappedSlots {
            slots,
            len,
            map,
            _file: Some(f),
            _t: PhantomData,
        })
    }

    /// The header page.
    pub fn header(&self) -> &[u8] {
        &self.map[..HEADER_BYTES]
    }

    /// The header page, to write.
    pub fn header_mut(&mut self) -> &mut [u8] {
        &mut self.map[..HEADER_BYTES]
    }

    /// Whether the slots live in a file (and so outlive the process).
    pub fn is_file(&self) -> bool {
        self._file.is_some()
    }
}

impl<T: MappedSlot> std::ops::Deref for MappedSlots<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` aligned slots inside the mapping (invariant 1), each a valid `T`
        // (invariant 2), disjoint from the header (4); the borrow of `self` keeps the mapping.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr(), self.len) }
    }
}

impl<T: MappedSlot> std::ops::DerefMut for MappedSlots<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference to the slots, and
        // no other process writes them (invariant 3).
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_ptr(), self.len) }
    }
}

/// Takes `f`'s exclusive lock without waiting.
fn lock(f: &File) -> Result<(), OpenError> {
    // SAFETY: flock on a descriptor we own; it neither reads nor writes our memory.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Err(OpenError::Locked)
    } else {
        Err(e.into())
    }
}

/// The flow table's slots may be adopted from a file: every field is an integer or an array
/// of them except `Flow::state`, a `#[repr(u8)]` enum, whose byte is checked.
// SAFETY: `Slot` is `#[repr(C, align(64))]` over `FlowKey` (`#[repr(C)]`, integers and byte
// arrays), a `u16` and `Flow` (`#[repr(C)]`: integers, byte arrays, the `#[repr(transparent)]`
// integer newtypes `FlowSlot`, `BackendId` (`u32`), `ServiceIdx` (`u16`) and `PortIdx` (`u8`), and `FlowState`, `#[repr(u8)]` with the values
// `0..=FlowState::MAX`): no pointer, no interior mutability, align 64 divides 4096, and the
// only field with invalid bit patterns is the state byte, which `bits_valid` checks.
unsafe impl MappedSlot for crate::flow::Slot {
    fn bits_valid(bytes: &[u8]) -> bool {
        bytes.len() == size_of::<Self>()
            && bytes[crate::flow::Slot::STATE_OFFSET] <= crate::flow::FlowState::MAX
    }
}

//! Names for the indexes the data path passes around, so a flow slot is not confused with a
//! backend id or a bucket number. Each is a `#[repr(transparent)]` wrapper over the integer
//! it replaces: same size, same layout, no cost per packet.

use std::fmt;

/// A flow's slot in its worker's [`FlowTable`](crate::flow::FlowTable): where its key and
/// [`Flow`](crate::flow::Flow) live for the flow's whole life (unless an insert moves it to
/// its other bucket).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct FlowSlot(u32);

impl FlowSlot {
    /// No slot: a flow without a twin, or no free slot found.
    pub const NONE: FlowSlot = FlowSlot(u32::MAX);

    #[inline]
    pub const fn new(i: u32) -> Self {
        FlowSlot(i)
    }

    /// The slot number.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The slot number as an array index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for FlowSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A backend's identity across snapshots, given by the control plane
/// (`slowpath::publish::BackendIds`) and kept in each [`Flow`](crate::flow::Flow); it indexes
/// [`Snapshot::backends`](crate::snapshot::Snapshot::backends). 0 is "none" (as in Katran).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct BackendId(u32);

impl BackendId {
    /// No backend.
    pub const NONE: BackendId = BackendId(0);

    #[inline]
    pub const fn new(id: u32) -> Self {
        BackendId(id)
    }

    /// The id as a number (for the control API, metrics labels and logs).
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The id as an index into the snapshot's backends.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A service's index in its [`Snapshot::services`](crate::snapshot::Snapshot::services),
/// kept in each [`Flow`](crate::flow::Flow) and [`BackendRt`](crate::snapshot::BackendRt).
/// It names a service in one snapshot only: a reload can renumber the services.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct ServiceIdx(u16);

impl ServiceIdx {
    #[inline]
    pub const fn new(i: u16) -> Self {
        ServiceIdx(i)
    }

    /// The index as a number.
    #[inline]
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The index into the snapshot's services.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ServiceIdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

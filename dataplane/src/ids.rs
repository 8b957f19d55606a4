//! Names for the indexes the data path passes around, so a flow slot is not confused with a
//! backend id, a port index with a worker index, or any of them with a bucket number. Each is a
//! `#[repr(transparent)]` wrapper over the integer it replaces: same size, same layout, no cost
//! per packet. One macro declares them all, so they read and convert alike.

use std::fmt;

/// Declares an index newtype: `#[repr(transparent)]` over `$int`, with `new`, `get` (the
/// number, where it leaves for the control API, a metrics label or a log), `index` (the
/// number as an array index) and `Display` (the number).
macro_rules! index_newtype {
    ($(#[$doc:meta])* $name:ident($int:ty) $(, $derive:ident)*) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug $(, $derive)*)]
        pub struct $name($int);

        impl $name {
            #[inline]
            pub const fn new(i: $int) -> Self {
                $name(i)
            }

            /// The number (control API, metrics labels, logs).
            #[inline]
            pub const fn get(self) -> $int {
                self.0
            }

            /// The number as an array index.
            #[inline]
            pub const fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

index_newtype!(
    /// A flow's slot in its worker's [`FlowTable`](crate::flow::FlowTable): where its key and
    /// [`Flow`](crate::flow::Flow) live for the flow's whole life (unless an insert moves it to
    /// its other bucket).
    FlowSlot(u32)
);

impl FlowSlot {
    /// No slot: a flow without a twin, or no free slot found.
    pub const NONE: FlowSlot = FlowSlot(u32::MAX);
}

index_newtype!(
    /// A backend's identity across snapshots, given by the control plane
    /// (`slowpath::publish::BackendIds`) and kept in each [`Flow`](crate::flow::Flow); it
    /// indexes [`Snapshot::backends`](crate::snapshot::Snapshot::backends). 0 is "none" (as in
    /// Katran).
    BackendId(u32),
    Default
);

impl BackendId {
    /// No backend.
    pub const NONE: BackendId = BackendId(0);
}

index_newtype!(
    /// A service's index in its [`Snapshot::services`](crate::snapshot::Snapshot::services),
    /// kept in each [`Flow`](crate::flow::Flow) and [`BackendRt`](crate::snapshot::BackendRt).
    /// It names a service in one snapshot only: a reload can renumber the services.
    ServiceIdx(u16),
    Default
);

index_newtype!(
    /// A port's index in config order (`conf::Config::ports`,
    /// [`Snapshot::ports`](crate::snapshot::Snapshot::ports), the engine's ports, each worker's
    /// queues), as opposed to the DPDK port id a received mbuf carries. Kept in each
    /// [`Flow`](crate::flow::Flow) (the port the flow arrived on: a `u8` in the flow-table
    /// file's layout) and [`BackendRt`](crate::snapshot::BackendRt) (the port toward the
    /// backend); named by [`Verdict::Forward`](crate::verdict::Verdict::Forward).
    PortIdx(u8),
    Default
);

index_newtype!(
    /// A worker's index among the engine's workers (`[dpdk] workers` order): its queue id on
    /// every port, its block of counters, the owner of a NAT flow
    /// ([`Verdict::Handoff`](crate::verdict::Verdict::Handoff)).
    WorkerIdx(u16),
    Default
);

//! Everything that is not per packet: health checks, neighbour resolution, control,
//! and publication of new snapshots to the workers.
#![deny(unsafe_code)]

//! What the expiry hand does for the pipeline as it passes (once per burst, no cost per
//! packet): a FullNAT pair that leaves gives back its local port, and, with instance sync,
//! each flow it keeps is looked at for an exception (a backend Maglev would not choose now)
//! to report to the slow path.

use crate::exceptions::Reports;
use crate::flow::{self, Flow, FlowKey, SweepVisitor};
use crate::local_ports::LocalPorts;
use crate::snapshot::Snapshot;
use crate::stats::Counters;

use super::Pipeline;
use super::fullnat::release_into;
use super::service::exception_of;

/// The pipeline's [`SweepVisitor`].
struct Sweep<'a> {
    local_ports: &'a mut LocalPorts,
    now: u32,
    counters: &'a mut Counters,
    /// Instance sync: where exceptions go (`None`: sync is off).
    exceptions: Option<(&'a Snapshot, &'a Reports)>,
}

impl SweepVisitor for Sweep<'_> {
    #[inline]
    fn kept(&mut self, k: &FlowKey, f: &Flow) {
        let Some((snap, reports)) = self.exceptions else {
            return;
        };
        if let Some(r) = exception_of(snap, k, f) {
            if reports.push(r) {
                self.counters.exceptions_reported += 1;
            } else {
                self.counters.exceptions_report_full += 1;
            }
        }
    }

    #[inline]
    fn reaped(&mut self, k: &FlowKey, f: &Flow) {
        release_into(self.local_ports, self.now, k, f);
    }
}

impl Pipeline {
    /// The expiry hand's step ([`flow::FlowTable::expire_paced_with`]): reaped FullNAT pairs
    /// give back their local ports, and with `exceptions` (instance sync: the current
    /// snapshot and this worker's queue to the slow path) every kept flow is checked for an
    /// exception. The number of entries reaped. The worker calls it once per burst.
    pub fn expire(
        &mut self,
        max: usize,
        t: &flow::Timeouts,
        exceptions: Option<(&Snapshot, &Reports)>,
    ) -> usize {
        let mut v = Sweep {
            local_ports: &mut self.local_ports,
            now: self.now_ms,
            counters: &mut self.counters,
            exceptions,
        };
        let n = self.flows.expire_paced_with(self.now_ms, max, t, &mut v);
        self.counters.local_ports_in_use = self.local_ports.total_in_use();
        n
    }
}

//! The node's VRRP role, for services with `announce = "vrrp"`: keepalived speaks VRRP (over
//! the kernel exception path) and tells Fulcrum the outcome through its notify hooks
//! (`fulcrum ctl vrrp master|backup|fault`). Only the master answers ARP/ND for those VIPs;
//! on becoming master it announces them at once (gratuitous ARP, unsolicited NA: the
//! neighbour table sends them), so the clients' caches move to it without waiting for a
//! request.
//!
//! A node starts as backup, also after a restart: it answers for nothing until keepalived
//! says master again (a reload keeps the role). A master role may name its holder, the
//! keepalived process that gave it (`--holder PID`): if that process dies, nothing would ever
//! take the role back, while the peer's keepalived stops hearing this node's adverts and
//! becomes master too; so the role falls back to backup as soon as the holder is seen gone
//! (looked at every [`LOOK_EVERY`]).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use dataplane::engine::Engine;

use crate::SlowPath;
use crate::neigh::NeighStats;

/// How often a master's holder process is looked for.
pub const LOOK_EVERY: Duration = Duration::from_millis(200);

/// What keepalived's notify hooks say of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Answers ARP/ND for the VRRP VIPs.
    Master,
    /// Answers nothing for them (also the role at start).
    #[default]
    Backup,
    /// keepalived's fault state (an interface or a tracked script down): answers nothing.
    Fault,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
            Role::Fault => "fault",
        }
    }
}

/// The role and how it came to be.
#[derive(Debug, Clone, Default)]
pub struct Vrrp {
    role: Role,
    /// When the role was last set (slow-path epoch time).
    since: Duration,
    /// The process that holds the master role, if it said so.
    holder: Option<u32>,
    next_look: Duration,
    /// Changes of role (a command repeating the current role is not one).
    pub transitions: u64,
    /// Master roles dropped because their holder died.
    pub holder_lost: u64,
}

impl Vrrp {
    pub fn role(&self) -> Role {
        self.role
    }

    pub fn since(&self) -> Duration {
        self.since
    }

    pub fn holder(&self) -> Option<u32> {
        self.holder
    }

    /// Sets the role at `now`; returns the previous one.
    pub fn set(&mut self, role: Role, holder: Option<u32>, now: Duration) -> Role {
        let previous = self.role;
        if previous != role {
            self.transitions += 1;
            self.since = now;
        }
        self.role = role;
        self.holder = if role == Role::Master { holder } else { None };
        self.next_look = now + LOOK_EVERY;
        previous
    }

    /// True when the master role's holder has died (looked at when due): the caller sets
    /// the role to backup.
    pub fn holder_gone(&mut self, now: Duration) -> bool {
        let Some(pid) = self.holder else {
            return false;
        };
        if self.role != Role::Master || now < self.next_look {
            return false;
        }
        self.next_look = now + LOOK_EVERY;
        let gone = !alive(pid);
        if gone {
            self.holder_lost += 1;
        }
        gone
    }

    /// When [`Vrrp::holder_gone`] next looks, if it will.
    pub fn next_due(&self) -> Option<Duration> {
        (self.role == Role::Master && self.holder.is_some()).then_some(self.next_look)
    }
}

impl SlowPath {
    /// Sets the node's VRRP role (keepalived's notify hooks, through `ctl vrrp`; `holder`:
    /// the keepalived process, whose death drops a master role) and publishes at once. On
    /// becoming master, the VIPs of `announce = "vrrp"` services are announced by gratuitous
    /// ARP / unsolicited NA. Returns the previous role and the generation published.
    pub fn set_vrrp(
        &mut self,
        engine: &mut Engine,
        role: Role,
        holder: Option<u32>,
    ) -> (Role, u64) {
        let now = engine.epoch().elapsed();
        let previous = self.vrrp.set(role, holder, now);
        let master = role == Role::Master;
        self.publisher.set_vrrp_master(master);
        let generation = self.publish_now(engine);
        if master && previous != Role::Master {
            self.neigh.announce(&self.vrrp_vips(), now);
        } else if !master {
            self.neigh.cancel_announcements();
        }
        if previous != role {
            tracing::info!(
                from = previous.as_str(),
                to = role.as_str(),
                vips = self.vrrp_vips().len(),
                generation,
                "vrrp: role changed"
            );
        }
        (previous, generation)
    }

    /// The neighbour table's counters.
    pub fn neighbor_stats(&self) -> NeighStats {
        self.neigh.stats
    }

    /// The node's VRRP role and how it came to be.
    pub fn vrrp(&self) -> &Vrrp {
        &self.vrrp
    }

    /// The VIPs of the `announce = "vrrp"` services, sorted, each once.
    pub fn vrrp_vips(&self) -> Vec<IpAddr> {
        let mut vips: Vec<IpAddr> = self
            .cfg
            .services
            .iter()
            .filter(|s| s.announce == conf::Announce::Vrrp)
            .map(|s| s.vip)
            .collect();
        vips.sort();
        vips.dedup();
        vips
    }
}

/// Whether process `pid` exists (and is not a zombie: a killed keepalived that nobody has
/// reaped yet no longer speaks VRRP).
fn alive(pid: u32) -> bool {
    let stat = Path::new("/proc").join(pid.to_string()).join("stat");
    match std::fs::read_to_string(stat) {
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses; STATE follows the
        // last ')'.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_node_starts_as_backup_and_counts_changes_only() {
        let mut v = Vrrp::default();
        assert_eq!(v.role(), Role::Backup);
        assert_eq!(v.set(Role::Backup, None, MS), Role::Backup);
        assert_eq!(v.transitions, 0);
        assert_eq!(v.set(Role::Master, Some(1), MS * 5), Role::Backup);
        assert_eq!((v.transitions, v.since(), v.holder()), (1, MS * 5, Some(1)));
        assert_eq!(v.set(Role::Fault, Some(1), MS * 9), Role::Master);
        assert_eq!(v.holder(), None, "only a master has a holder");
    }

    #[test]
    fn a_master_whose_holder_died_is_seen_when_due() {
        let mut v = Vrrp::default();
        // This process is alive; a child that exited and was reaped is not.
        v.set(Role::Master, Some(std::process::id()), Duration::ZERO);
        assert!(!v.holder_gone(LOOK_EVERY));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        v.set(Role::Master, Some(pid), Duration::ZERO);
        assert!(!v.holder_gone(LOOK_EVERY - MS), "not due yet");
        assert_eq!(v.next_due(), Some(LOOK_EVERY));
        assert!(v.holder_gone(LOOK_EVERY));
        assert_eq!(v.holder_lost, 1);
        // Without a holder nothing is looked at.
        v.set(Role::Master, None, Duration::ZERO);
        assert!(!v.holder_gone(LOOK_EVERY * 10));
        assert_eq!(v.next_due(), None);
    }
}

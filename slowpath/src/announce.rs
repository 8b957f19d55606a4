//! Route announcement through BIRD: Fulcrum decides which VIPs this node announces, BIRD
//! speaks BGP. A service with `announce = "bgp"` has its VIP announced while the node can
//! serve it: its pool is not empty, and neither the node's disable file
//! (`[global.announce] disable_file`) nor the service's own (`disable_file`) exists. A VIP
//! is announced while one of its services is.
//!
//! Fulcrum writes the VIPs into `bird_file` (two static protocols, `fulcrum_vips4` and
//! `fulcrum_vips6`, which `bird.conf` includes at the top level and exports by BGP) and
//! tells BIRD to reconfigure (`birdc -s bird_socket configure`, in the background: the slow
//! path never waits for it). Disable files are looked at every [`LOOK_EVERY`]; a pool that
//! empties is seen at the publication that empties it. So a withdrawal reaches BIRD within
//! about 100 ms plus BIRD's reconfiguration, and the router a few ms later.
//!
//! A pool that comes back from empty (or the first one at start) is announced only after it
//! settled ([`settle_time`]): its first backend up is seen one check before the others, and
//! announcing then would send this node, besides new flows, the established flows the router
//! moves to it, which its Maglev table (one backend) would place apart from every other
//! instance's (all backends): measured in tests/e2e_ecmp.rs, two connections reset when an
//! instance's link to its backends came back.
//!
//! A clean stop withdraws everything first ([`Announcer::withdraw_all`]). A killed process
//! cannot: that bound is the BGP session's. With the kernel exception path, BIRD's session
//! runs over Fulcrum's TAP interface, which vanishes with the process, so the router stops
//! hearing from this node at once and withdraws its routes after BFD's detection time (or
//! the hold time without BFD). The file is written to a temporary name and renamed, so BIRD
//! never reads half of it.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conf::{Announce, Config};
use dataplane::snapshot::{Snapshot, Tier};

/// How often the disable files are looked at.
pub const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Why a service's VIP is or is not announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Announced: the pool has usable backends.
    Serving,
    /// Not by BGP: `announce = "arp"` or `"none"`.
    NotBgp,
    /// No usable backend.
    PoolEmpty,
    /// Usable again after it was empty; announced once every backend had time for its
    /// checks ([`settle_time`]).
    Settling,
    /// The node's disable file exists.
    NodeDisabled,
    /// The service's disable file exists.
    ServiceDisabled,
    /// The process is stopping.
    Stopping,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Serving => "serving",
            Reason::NotBgp => "not announced by bgp",
            Reason::PoolEmpty => "pool empty",
            Reason::Settling => "pool settling (usable again, backends still being checked)",
            Reason::NodeDisabled => "node disabled (disable file)",
            Reason::ServiceDisabled => "service disabled (its disable file)",
            Reason::Stopping => "stopping",
        }
    }
}

/// A service's announcement now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAnnouncement {
    pub service: String,
    pub vip: IpAddr,
    pub announce: Announce,
    pub announced: bool,
    pub reason: Reason,
}

/// Counters of the announcer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnounceStats {
    /// Times the file was written (the announced set changed).
    pub writes: u64,
    /// `birdc configure` runs that BIRD acknowledged.
    pub reconfigures: u64,
    /// Runs that failed (BIRD not running, a config error...): logged with BIRD's words.
    pub failed_reconfigures: u64,
}

#[derive(Debug)]
struct Svc {
    name: String,
    vip: IpAddr,
    announce: Announce,
    disable_file: Option<PathBuf>,
    disabled: bool,
    usable: bool,
    /// Since when the pool is usable (`None` while empty).
    usable_since: Option<Instant>,
    /// How long a pool that became usable waits before it is announced.
    settle: Duration,
}

/// The longest a pool that came back from empty waits to be announced.
pub const SETTLE_MAX: Duration = Duration::from_secs(5);

/// How long a service's pool, usable again, waits before it is announced: until every
/// checked backend had time for `rise` checks (interval x rise + timeout, the longest over
/// its backends), at most [`SETTLE_MAX`]; 0 without checks.
pub fn settle_time(s: &conf::Service) -> Duration {
    let longest = s
        .backends
        .iter()
        .filter_map(|b| b.health.as_ref())
        .map(|h| u64::from(h.interval_ms) * u64::from(h.rise) + u64::from(h.timeout_ms))
        .max()
        .unwrap_or(0);
    Duration::from_millis(longest).min(SETTLE_MAX)
}

/// The node's announcements.
#[derive(Debug)]
pub struct Announcer {
    bird_file: Option<PathBuf>,
    bird_socket: PathBuf,
    node_disable: PathBuf,
    node_disabled: bool,
    stopping: bool,
    services: Vec<Svc>,
    next_look: Option<Instant>,
    /// The VIPs last written, sorted; `None` before the first write.
    written: Option<Vec<IpAddr>>,
    child: Option<Child>,
    /// The file changed while `child` ran: run again when it ends.
    pending: bool,
    pub stats: AnnounceStats,
}

impl Announcer {
    pub fn new(cfg: &Config) -> Announcer {
        let a = &cfg.global.announce;
        let mut me = Announcer {
            bird_file: a.bird_file.clone(),
            bird_socket: a.bird_socket.clone(),
            node_disable: a.disable_file.clone(),
            node_disabled: false,
            stopping: false,
            services: Vec::new(),
            next_look: None,
            written: None,
            child: None,
            pending: false,
            stats: AnnounceStats::default(),
        };
        me.reconfigure(cfg);
        me
    }

    /// Takes a reloaded config's services and files (what was announced stays until the
    /// next [`Announcer::poll`] decides anew).
    pub fn reconfigure(&mut self, cfg: &Config) {
        let a = &cfg.global.announce;
        self.bird_file = a.bird_file.clone();
        self.bird_socket = a.bird_socket.clone();
        self.node_disable = a.disable_file.clone();
        // A service kept by a reload keeps its pool's state: a reload does not make it settle
        // again (the next publication says whether it is usable).
        let old = std::mem::take(&mut self.services);
        self.services = cfg
            .services
            .iter()
            .map(|s| {
                let kept = old.iter().find(|o| o.name == s.name && o.vip == s.vip);
                Svc {
                    name: s.name.clone(),
                    vip: s.vip,
                    announce: s.announce,
                    disable_file: s.disable_file.clone(),
                    disabled: false,
                    usable: kept.is_some_and(|o| o.usable),
                    usable_since: kept.and_then(|o| o.usable_since),
                    settle: settle_time(s),
                }
            })
            .collect();
        self.next_look = None;
    }

    /// Whether some service is announced by BGP.
    fn active(&self) -> bool {
        self.bird_file.is_some() && self.services.iter().any(|s| s.announce == Announce::Bgp)
    }

    /// Takes the pools of a snapshot just published (services in config order).
    pub fn update(&mut self, snap: &Snapshot) {
        let now = Instant::now();
        for (a, s) in self.services.iter_mut().zip(&snap.services) {
            a.usable = s.tier != Tier::Empty;
            a.usable_since = match (a.usable, a.usable_since) {
                (true, None) => Some(now),
                (true, since) => since,
                (false, _) => None,
            };
        }
    }

    fn reason(&self, s: &Svc) -> Reason {
        if s.announce != Announce::Bgp {
            Reason::NotBgp
        } else if self.stopping {
            Reason::Stopping
        } else if self.node_disabled {
            Reason::NodeDisabled
        } else if s.disabled {
            Reason::ServiceDisabled
        } else if !s.usable {
            Reason::PoolEmpty
        } else if s.usable_since.is_none_or(|t| t.elapsed() < s.settle) {
            Reason::Settling
        } else {
            Reason::Serving
        }
    }

    /// Every service's announcement now.
    pub fn status(&self) -> Vec<ServiceAnnouncement> {
        self.services
            .iter()
            .map(|s| {
                let reason = self.reason(s);
                ServiceAnnouncement {
                    service: s.name.clone(),
                    vip: s.vip,
                    announce: s.announce,
                    announced: reason == Reason::Serving
                        && self.written.as_ref().is_some_and(|w| w.contains(&s.vip)),
                    reason,
                }
            })
            .collect()
    }

    /// The VIPs to announce now, sorted.
    fn wanted(&self) -> Vec<IpAddr> {
        let mut vips: Vec<IpAddr> = self
            .services
            .iter()
            .filter(|s| self.reason(s) == Reason::Serving)
            .map(|s| s.vip)
            .collect();
        vips.sort();
        vips.dedup();
        vips
    }

    /// Looks at the disable files when due, writes the file and tells BIRD when the set
    /// changed, reaps a finished `birdc`. Call every turn; never blocks.
    pub fn poll(&mut self) {
        if !self.active() {
            return;
        }
        let now = Instant::now();
        if self.next_look.is_none_or(|t| now >= t) {
            self.next_look = Some(now + LOOK_EVERY);
            self.node_disabled = self.node_disable.exists();
            for s in &mut self.services {
                s.disabled = s.disable_file.as_deref().is_some_and(Path::exists);
            }
        }
        self.reap();
        let wanted = self.wanted();
        if self.written.as_ref() != Some(&wanted) {
            self.write(wanted);
        }
        if self.pending && self.child.is_none() {
            self.start_birdc();
        }
    }

    fn write(&mut self, vips: Vec<IpAddr>) {
        let Some(file) = &self.bird_file else { return };
        let text = bird_file_text(&vips);
        let tmp = file.with_extension("tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, file));
        match written {
            Ok(()) => {
                tracing::info!(
                    file = %file.display(),
                    vips = %vips.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "),
                    "announce: VIPs for BIRD"
                );
                self.stats.writes += 1;
                self.written = Some(vips);
                self.pending = true;
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "announce: cannot write the BIRD file");
                // Tried again at the next poll.
            }
        }
    }

    fn start_birdc(&mut self) {
        self.pending = false;
        match Command::new("birdc")
            .arg("-s")
            .arg(&self.bird_socket)
            .arg("configure")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => self.child = Some(c),
            Err(e) => {
                self.stats.failed_reconfigures += 1;
                tracing::warn!(error = %e, "announce: cannot run birdc");
            }
        }
    }

    fn reap(&mut self) {
        let Some(c) = &mut self.child else { return };
        if !matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        let mut c = self.child.take().expect("child");
        let mut out = String::new();
        if let Some(o) = c.stdout.as_mut() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(e) = c.stderr.as_mut() {
            let _ = e.read_to_string(&mut out);
        }
        // Already exited (try_wait above): this only collects the status.
        let _ = c.wait();
        if reconfigured(&out) {
            self.stats.reconfigures += 1;
        } else {
            self.stats.failed_reconfigures += 1;
            tracing::warn!(socket = %self.bird_socket.display(), answer = %out.trim(), "announce: BIRD did not reconfigure");
        }
    }

    /// A clean stop: withdraws every VIP and waits (at most `limit`) for BIRD to take it.
    pub fn withdraw_all(&mut self, limit: Duration) {
        if !self.active() {
            return;
        }
        self.stopping = true;
        let deadline = Instant::now() + limit;
        while let Some(c) = &mut self.child {
            if Instant::now() >= deadline {
                let _ = c.kill();
            }
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        self.write(Vec::new());
        self.start_birdc();
        while self.child.is_some() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What `birdc configure` says when BIRD took the new config (now or queued).
fn reconfigured(answer: &str) -> bool {
    answer.contains("Reconfigured")
        || answer.contains("Reconfiguration in progress")
        || answer.contains("queueing")
}

/// The file BIRD includes: one static protocol per family, a blackhole route per VIP.
pub fn bird_file_text(vips: &[IpAddr]) -> String {
    let mut t = String::from(
        "# Written by Fulcrum: the VIPs this node serves now (announce = \"bgp\"). Do not edit.\n\
         # bird.conf includes it at the top level and exports these protocols by BGP.\n",
    );
    for (name, family, v6) in [
        ("fulcrum_vips4", "ipv4", false),
        ("fulcrum_vips6", "ipv6", true),
    ] {
        t += &format!("protocol static {name} {{\n    {family};\n");
        for vip in vips.iter().filter(|v| v.is_ipv6() == v6) {
            let len = if v6 { 128 } else { 32 };
            t += &format!("    route {vip}/{len} blackhole;\n");
        }
        t += "}\n";
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_lists_each_family_in_its_own_protocol() {
        let vips: Vec<IpAddr> = vec![
            "10.0.0.100".parse().unwrap(),
            "2001:db8::100".parse().unwrap(),
        ];
        let t = bird_file_text(&vips);
        assert!(t.contains("protocol static fulcrum_vips4 {\n    ipv4;\n    route 10.0.0.100/32 blackhole;\n}\n"), "{t}");
        assert!(t.contains("protocol static fulcrum_vips6 {\n    ipv6;\n    route 2001:db8::100/128 blackhole;\n}\n"), "{t}");
        let empty = bird_file_text(&[]);
        assert!(
            empty.contains("protocol static fulcrum_vips4 {\n    ipv4;\n}\n"),
            "{empty}"
        );
    }

    #[test]
    fn birdc_answers_are_read() {
        assert!(reconfigured(
            "Reading configuration from /etc/bird.conf\nReconfigured\n"
        ));
        assert!(!reconfigured(
            "Unable to connect to server control socket (/run/bird/bird.ctl): No such file or directory\n"
        ));
        assert!(!reconfigured(
            "Reading configuration from x\n/x:3:1 syntax error\n"
        ));
    }
}

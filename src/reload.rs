//! Live reload: read the config file again, refuse it if invalid (keeping the running one)
//! or if it changes a field that needs a restart, otherwise hand it to the slow path and
//! report what moved (services added and removed, Maglev entries changed per service).
//!
//! Reading, validating and building the new config's Maglev tables happen on a thread of
//! their own ([`Reloads`]): the slow-path loop keeps running checks, ARP/ND and the control
//! socket meanwhile, and applies the result when it is ready, taking the tables prepared for
//! it (only a pool that changed in between, e.g. a backend whose health flipped, is computed
//! on the loop). A request made while a read is in flight is answered by the next read,
//! started when that one ends (so it sees the file as it was when asked); requests that
//! wait together share it.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::engine::Engine;
use dataplane::maglev;
use dataplane::snapshot::{BackendRt, BackendState, Snapshot};
use fulcrum::api::{Change, ReloadReply, ServiceChange};
use slowpath::publish::Prepared;
use slowpath::{Preparer, SlowPath};

use conf::{Config, ConfigError};

use crate::control::{Response, answer};

/// The fields `new` changes that only a restart can apply (`conf/examples/reference.toml`
/// marks them "Restart"), named as in the file.
pub fn restart_fields(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let (a, b) = (&old.dpdk, &new.dpdk);
    let dpdk = [
        ("dpdk.eal_args", a.eal_args != b.eal_args),
        ("dpdk.workers", a.workers != b.workers),
        ("dpdk.slowpath_cpu", a.slowpath_cpu != b.slowpath_cpu),
        ("dpdk.mbufs", a.mbufs != b.mbufs),
        ("dpdk.mbuf_cache", a.mbuf_cache != b.mbuf_cache),
        ("dpdk.mbuf_data_room", a.mbuf_data_room != b.mbuf_data_room),
        ("dpdk.rx_descriptors", a.rx_descriptors != b.rx_descriptors),
        ("dpdk.tx_descriptors", a.tx_descriptors != b.tx_descriptors),
        ("dpdk.burst", a.burst != b.burst),
        ("dpdk.idle_sleep_us", a.idle_sleep_us != b.idle_sleep_us),
    ];
    v.extend(dpdk.iter().filter(|(_, c)| *c).map(|(n, _)| n.to_string()));
    let (a, b) = (&old.global, &new.global);
    let global = [
        (
            "global.flow_table_capacity",
            a.flow_table_capacity != b.flow_table_capacity,
        ),
        (
            "global.control_socket",
            a.control_socket != b.control_socket,
        ),
        (
            "global.flow_state_dir",
            a.flow_state_dir != b.flow_state_dir,
        ),
        (
            "global.metrics_listen",
            a.metrics_listen != b.metrics_listen,
        ),
        (
            "global.control_optional",
            a.control_optional != b.control_optional,
        ),
    ];
    v.extend(
        global
            .iter()
            .filter(|(_, c)| *c)
            .map(|(n, _)| n.to_string()),
    );
    if old.ports.len() != new.ports.len() {
        v.push(format!(
            "port (count {} -> {})",
            old.ports.len(),
            new.ports.len()
        ));
    } else {
        for (i, (a, b)) in old.ports.iter().zip(&new.ports).enumerate() {
            let fields = [
                ("name", a.name != b.name),
                ("device", a.device != b.device),
                ("mac", a.mac != b.mac),
                ("mtu", a.mtu != b.mtu),
                ("addresses", a.addresses != b.addresses),
                ("neighbors", a.neighbors != b.neighbors),
                ("routes", a.routes != b.routes),
            ];
            for (f, _) in fields.iter().filter(|(_, c)| *c) {
                v.push(format!("port[{i}] ({}).{f}", a.name));
            }
        }
    }
    v
}

/// Why a reload changed nothing; the running config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "reload refused, the running config stays in force: {}: invalid:\n{source}",
        path.display()
    )]
    Invalid { path: PathBuf, source: ConfigError },
    #[error(
        "reload refused, the running config stays in force: {} changes field(s) that need a \
         restart: {}",
        path.display(),
        fields.join(", ")
    )]
    Restart { path: PathBuf, fields: Vec<String> },
    #[error("reload failed, the running config stays in force: the reading thread {0}")]
    Thread(&'static str),
}

/// The members of `service` as its Maglev table hashes them.
fn maglev_members(snap: &Snapshot, service: usize) -> Vec<maglev::Member<'_>> {
    let s = &snap.services[service];
    s.members
        .iter()
        .map(|id| {
            let b = snap.backend(*id).expect("member");
            maglev::Member {
                key: b.name.as_bytes(),
                weight: b.weight,
            }
        })
        .collect()
}

/// The backends of `service`, in config order.
fn backends_of(snap: &Snapshot, service: usize) -> Vec<&BackendRt> {
    snap.services[service]
        .backends
        .iter()
        .filter_map(|id| snap.backend(*id))
        .collect()
}

/// Per-service differences between two snapshots.
pub fn service_changes(old: &Snapshot, new: &Snapshot) -> Vec<ServiceChange> {
    let mut out = Vec::new();
    for (ni, ns) in new.services.iter().enumerate() {
        match old.services.iter().position(|o| o.name == ns.name) {
            None => out.push(ServiceChange {
                service: ns.name.clone(),
                change: Change::Added,
                maglev_entries_changed: ns.maglev.size().into(),
                maglev_size: None,
                backends_added: Vec::new(),
                backends_removed: Vec::new(),
                not_yet_up: Vec::new(),
            }),
            Some(oi) => {
                let om = maglev_members(old, oi);
                let nm = maglev_members(new, ni);
                let changed = old.services[oi]
                    .maglev
                    .changed_entries(&om, &ns.maglev, &nm);
                let (was, now) = (backends_of(old, oi), backends_of(new, ni));
                let added: Vec<&BackendRt> = now
                    .iter()
                    .filter(|b| !was.iter().any(|o| o.name == b.name))
                    .copied()
                    .collect();
                let removed: Vec<String> = was
                    .iter()
                    .filter(|o| !now.iter().any(|b| b.name == o.name))
                    .map(|o| o.name.clone())
                    .collect();
                out.push(ServiceChange {
                    service: ns.name.clone(),
                    change: if changed > 0 || !added.is_empty() || !removed.is_empty() {
                        Change::Changed
                    } else {
                        Change::Unchanged
                    },
                    maglev_entries_changed: changed.into(),
                    maglev_size: Some(ns.maglev.size().into()),
                    backends_added: added.iter().map(|b| b.name.clone()).collect(),
                    backends_removed: removed,
                    not_yet_up: added
                        .iter()
                        .filter(|b| b.state != BackendState::Up)
                        .map(|b| format!("{} {}", b.name, b.state.as_str()))
                        .collect(),
                });
            }
        }
    }
    for os in &old.services {
        if !new.services.iter().any(|n| n.name == os.name) {
            out.push(ServiceChange {
                service: os.name.clone(),
                change: Change::Removed,
                maglev_entries_changed: os.maglev.size().into(),
                maglev_size: None,
                backends_added: Vec::new(),
                backends_removed: Vec::new(),
                not_yet_up: Vec::new(),
            });
        }
    }
    out
}

/// Applies a config read from `path` with the Maglev tables prepared for it (or refuses it)
/// on the slow-path loop.
pub fn apply(
    engine: &mut Engine,
    slow: &mut SlowPath,
    path: PathBuf,
    loaded: Result<(Config, Prepared), ConfigError>,
) -> Result<ReloadReply, ReloadError> {
    let (new, prepared) = loaded.map_err(|source| ReloadError::Invalid {
        path: path.clone(),
        source,
    })?;
    let fields = restart_fields(slow.config(), &new);
    if !fields.is_empty() {
        return Err(ReloadError::Restart { path, fields });
    }
    let before = engine.snapshot();
    let generation = slow.reconfigure_prepared(&new, prepared, engine);
    let after = engine.snapshot();
    let services = service_changes(&before, &after);
    for s in &services {
        tracing::info!(
            service = s.service,
            change = s.change.as_str(),
            maglev_entries_changed = s.maglev_entries_changed,
            "reload"
        );
    }
    Ok(ReloadReply {
        config: path.display().to_string(),
        generation,
        summary: new.summary(),
        services,
    })
}

/// Who asked for a reload: a control-socket client waiting for the outcome, or a signal.
pub enum Asker {
    Control(UnixStream),
    Signal,
}

/// A read of the config file, and who waits for it.
struct Read {
    path: PathBuf,
    work: Work,
    askers: Vec<Asker>,
    started: Instant,
}

/// Askers held for the next read at most.
pub const MAX_WAITING: usize = 64;

/// Reloads in flight: at most one read at a time, and the askers of the next one.
#[derive(Default)]
pub struct Reloads {
    reading: Option<Read>,
    /// Asked while a read was in flight: served by the next read.
    next: Vec<Asker>,
    /// A read started since [`Reloads::take_started`] was last asked (for systemd's
    /// RELOADING=1: a read may start and end within one turn of the loop).
    started: bool,
    /// The last read's outcome in a line, for systemd's STATUS (see [`Reloads::take_outcome`]).
    outcome: Option<String>,
}

impl Reloads {
    /// Asks for a reload of the running config's file; never blocks.
    /// Signals coalesce into one place in the next read; clients past [`MAX_WAITING`] are
    /// told to ask again rather than held (each holds a connection).
    pub fn request(&mut self, asker: Asker, slow: &SlowPath) {
        if self.reading.is_none() {
            self.reading = Some(start(slow, vec![asker]));
            self.started = true;
            return;
        }
        match asker {
            Asker::Signal if self.next.iter().any(|a| matches!(a, Asker::Signal)) => {}
            Asker::Control(stream) if self.next.len() >= MAX_WAITING => {
                tracing::warn!("reload asked by too many clients at once: one refused");
                answer(
                    stream,
                    &Response::from_result(Err(format!(
                        "reload in progress with {MAX_WAITING} clients waiting for the next \
                         one; ask again later"
                    ))),
                );
            }
            asker => {
                tracing::info!("reload asked while one is in flight: it follows that one");
                self.next.push(asker);
            }
        }
    }

    /// Whether a read started since the last call (clears it).
    pub fn take_started(&mut self) -> bool {
        std::mem::take(&mut self.started)
    }

    /// The outcome of the last finished read, in a line, once.
    pub fn take_outcome(&mut self) -> Option<String> {
        self.outcome.take()
    }

    /// Whether a read is in flight.
    pub fn busy(&self) -> bool {
        self.reading.is_some()
    }

    /// Applies a finished read and answers its askers; never waits for one that is still
    /// running. Returns how many askers were answered.
    pub fn poll(&mut self, engine: &mut Engine, slow: &mut SlowPath) -> usize {
        if !self.reading.as_ref().is_some_and(|r| r.work.finished()) {
            return 0;
        }
        let read = self.reading.take().expect("checked");
        let took = read.started.elapsed();
        let loaded = match read.work {
            Work::Thread(thread) => thread.join().map_err(|_| ReloadError::Thread("panicked")),
            Work::Done(loaded) => Ok(*loaded),
        };
        let (read_ms, prepare_ms) = match &loaded {
            Ok(l) => (l.read.as_millis() as u64, l.prepare.as_millis() as u64),
            Err(_) => (took.as_millis() as u64, 0),
        };
        let applying = Instant::now();
        let outcome = loaded.and_then(|l| apply(engine, slow, read.path, l.config));
        match &outcome {
            // Read and prepare ran on the reload thread; the apply is the part on the loop.
            Ok(r) => tracing::info!(
                generation = r.generation,
                read_ms,
                prepare_ms,
                apply_ms = applying.elapsed().as_millis() as u64,
                "reloaded"
            ),
            Err(e) => tracing::error!(read_ms, "{e}"),
        }
        self.outcome = Some(match &outcome {
            Ok(r) => format!("reloaded {}: generation {}", r.config, r.generation),
            // The refusal and its first reason (the journal has them all).
            Err(e) => e.to_string().lines().take(2).collect::<Vec<_>>().join(" "),
        });
        let answered = read.askers.len();
        let response = Response::from_result(
            outcome
                .map(|r| serde_json::to_value(r).expect("serialisable"))
                .map_err(|e| e.to_string()),
        );
        for asker in read.askers {
            if let Asker::Control(stream) = asker {
                answer(stream, &response);
            }
        }
        if !self.next.is_empty() {
            let askers = std::mem::take(&mut self.next);
            self.reading = Some(start(slow, askers));
            self.started = true;
        }
        answered
    }
}

/// What the reading thread hands the loop: the config with its Maglev tables prepared (or why
/// it is invalid), and how long reading and preparing took.
struct Loaded {
    config: Result<(Config, Prepared), ConfigError>,
    read: Duration,
    prepare: Duration,
}

/// Reads and validates the config at `path` and, if it is valid, builds its Maglev tables:
/// the work of a reload that need not happen on the slow-path loop.
fn read_and_prepare(path: &Path, preparer: Preparer) -> Loaded {
    let t0 = Instant::now();
    let config = conf::load(path);
    let read = t0.elapsed();
    let t1 = Instant::now();
    let config = config.map(|cfg| {
        let prepared = preparer.prepare(&cfg);
        (cfg, prepared)
    });
    Loaded {
        config,
        read,
        prepare: t1.elapsed(),
    }
}

/// The reading thread, or its result when no thread could be had.
enum Work {
    Thread(JoinHandle<Loaded>),
    Done(Box<Loaded>),
}

impl Work {
    fn finished(&self) -> bool {
        match self {
            Work::Thread(t) => t.is_finished(),
            Work::Done(_) => true,
        }
    }
}

/// Starts a read of the running config's file, its tables prepared from the slow path's
/// state as it is now.
fn start(slow: &SlowPath, askers: Vec<Asker>) -> Read {
    let path = slow.config().path.clone();
    let file = path.clone();
    let preparer = slow.preparer();
    let thread = std::thread::Builder::new()
        .name("fulcrum-reload".into())
        .spawn(move || read_and_prepare(&file, preparer));
    let work = match thread {
        Ok(t) => Work::Thread(t),
        // No thread to be had: read here rather than refuse (the loop waits, as it used to).
        Err(e) => {
            tracing::warn!("reload thread: {e}; reading on the slow-path loop");
            Work::Done(Box::new(read_and_prepare(&path, slow.preparer())))
        }
    };
    Read {
        path,
        work,
        askers,
        started: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[dpdk]
eal_args = ["--no-huge"]
workers = [1]

[global]
flow_table_capacity = 65536

[[port]]
name = "lan"
device = "net_null0"
addresses = ["10.0.0.2/24"]

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80

[[service.backend]]
name = "b1"
address = "10.0.0.11"
mac = "02:00:00:00:00:11"
"#;

    fn parse(text: &str) -> Config {
        conf::parse(text, Path::new("t.toml")).expect("valid")
    }

    #[test]
    fn live_fields_need_no_restart() {
        let old = parse(BASE);
        let new = parse(&BASE.replace("name = \"b1\"", "name = \"b9\"").replace(
            "flow_table_capacity = 65536",
            "flow_table_capacity = 65536\nhash_seed = 7",
        ));
        assert_eq!(restart_fields(&old, &new), Vec::<String>::new());
    }

    #[test]
    fn restart_fields_are_named() {
        let old = parse(BASE);
        let new = parse(
            &BASE
                .replace("workers = [1]", "workers = [1]\nmbufs = 4095")
                .replace("net_null0", "net_null1")
                .replace(
                    "flow_table_capacity = 65536",
                    "flow_table_capacity = 131072\nmetrics_listen = \"127.0.0.1:9999\"\ncontrol_socket = \"/tmp/x.sock\"",
                ),
        );
        assert_eq!(
            restart_fields(&old, &new),
            vec![
                "dpdk.mbufs",
                "global.flow_table_capacity",
                "global.control_socket",
                "global.metrics_listen",
                "port[0] (lan).device",
            ]
        );
    }

    #[test]
    fn changed_entries_per_service() {
        let ids = &mut slowpath::publish::BackendIds::new();
        let d = slowpath::publish::Dynamic::default();
        let two = BASE.to_string()
            + "[[service.backend]]\nname = \"b2\"\naddress = \"10.0.0.12\"\nmac = \"02:00:00:00:00:12\"\n";
        let a = slowpath::publish::build(&parse(&two), ids, &d, 1);
        let b = slowpath::publish::build(&parse(&two), ids, &d, 2);
        let c = slowpath::publish::build(&parse(BASE), ids, &d, 3);
        let same = service_changes(&a, &b);
        assert_eq!(same[0].change, Change::Unchanged);
        assert_eq!(same[0].maglev_entries_changed, 0);
        let removed = service_changes(&a, &c);
        let n = removed[0].maglev_entries_changed;
        // Only b2's slots move: about half the table.
        assert!(n > 0 && n < 65537, "{n}");
        assert_eq!(removed[0].change, Change::Changed);
        // The reply's JSON keeps the names `ctl reload` prints.
        let v = serde_json::to_value(&removed[0]).unwrap();
        assert_eq!(v["change"], "changed");
        assert_eq!(v["service"], "web");
        assert_eq!(v["maglev_size"], 65537);
        assert_eq!(removed[0].backends_removed, ["b2"]);
        assert!(removed[0].backends_added.is_empty() && removed[0].not_yet_up.is_empty());
        // b2 back, down (its check has not run): changed, though no Maglev entry moved.
        let mut down = slowpath::publish::Dynamic::default();
        let e = slowpath::publish::build(&parse(&two), ids, &d, 4);
        let b2 = e
            .backends
            .iter()
            .flatten()
            .find(|b| b.name == "b2")
            .unwrap();
        down.health.insert(b2.id, slowpath::health::Health::Down);
        let f = slowpath::publish::build(&parse(&two), ids, &down, 5);
        let back = service_changes(&c, &f);
        assert_eq!(back[0].change, Change::Changed);
        assert_eq!(back[0].maglev_entries_changed, 0);
        assert_eq!(back[0].backends_added, ["b2"]);
        assert_eq!(back[0].not_yet_up, ["b2 down"]);
        let line = crate::ctl::backend_changes(&back[0]);
        assert_eq!(
            line,
            "; backends added: b2 (not yet up: b2 down; new flows once up)"
        );
    }
}

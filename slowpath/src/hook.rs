//! The per-service state-change hook: when a service's pool goes from empty to non-empty or
//! back (and once at start), run its `on_change` command and rewrite its `state_file`, so an
//! external route announcer (bird, exabgp, a script) announces or withdraws the VIP.
//!
//! The command runs in the background with `/bin/sh -c`; the slow path never waits for it.
//! At most one run per service at a time: a change while it runs is reported by one more run
//! when it ends, with the state of that moment (announcers want the latest state, not every
//! step). Its output goes to Fulcrum's stderr, never into `--json` output on stdout.
//!
//! The state file is written to a temporary name beside it and renamed, so a reader never
//! sees it half-written.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use conf::Config;
use dataplane::snapshot::{Snapshot, Tier};

#[derive(Debug)]
struct ServiceHook {
    name: String,
    vip: String,
    port: String,
    protocol: &'static str,
    on_change: Option<String>,
    state_file: Option<PathBuf>,
    /// The state last written to the file, and last given to the command (`true`: empty).
    written: Option<bool>,
    announced: Option<bool>,
    /// The state now, with how many backends take new flows.
    current: Option<(bool, usize)>,
    child: Option<Child>,
}

/// Counters of the hooks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HookStats {
    pub runs: u64,
    pub failed_runs: u64,
    pub state_writes: u64,
}

/// Every service's hook.
#[derive(Debug)]
pub struct Hooks {
    services: Vec<ServiceHook>,
    pub stats: HookStats,
}

impl Hooks {
    pub fn new(cfg: &Config) -> Hooks {
        Hooks {
            services: cfg
                .services
                .iter()
                .map(|s| ServiceHook {
                    name: s.name.clone(),
                    vip: s.vip.to_string(),
                    port: s.port.map(|p| p.to_string()).unwrap_or_default(),
                    protocol: match s.protocol {
                        conf::Protocol::Tcp => "tcp",
                        conf::Protocol::Udp => "udp",
                    },
                    on_change: s.on_change.clone(),
                    state_file: s.state_file.clone(),
                    written: None,
                    announced: None,
                    current: None,
                    child: None,
                })
                .collect(),
            stats: HookStats::default(),
        }
    }

    /// Takes the pools of a snapshot just published (services in config order); reports the
    /// services whose pool emptiness changed since the last report.
    pub fn update(&mut self, snap: &Snapshot) {
        for (h, s) in self.services.iter_mut().zip(&snap.services) {
            let empty = s.tier == Tier::Empty;
            if h.current.map(|c| c.0) != Some(empty) {
                tracing::info!(
                    service = %h.name,
                    state = if empty { "empty" } else { "nonempty" },
                    usable = s.members.len(),
                    "pool state"
                );
            }
            h.current = Some((empty, s.members.len()));
        }
        self.poll();
    }

    /// The hooks of a reloaded `cfg`: a service kept under its name with the same VIP, port,
    /// protocol, command and state file keeps what it last announced (no spurious run); the
    /// others start afresh. Call [`Hooks::update`] with the new snapshot afterwards.
    pub fn reconfigure(&mut self, cfg: &Config) {
        let mut old: Vec<ServiceHook> = std::mem::take(&mut self.services);
        let fresh = Hooks::new(cfg).services;
        for h in fresh {
            let same = old.iter().position(|o| {
                o.name == h.name
                    && o.vip == h.vip
                    && o.port == h.port
                    && o.protocol == h.protocol
                    && o.on_change == h.on_change
                    && o.state_file == h.state_file
            });
            self.services.push(match same {
                Some(i) => old.swap_remove(i),
                None => h,
            });
        }
        // Commands of removed services run on; nobody waits for them.
    }

    /// Reaps finished commands and starts the runs that are due. Call every turn.
    pub fn poll(&mut self) {
        for h in &mut self.services {
            if let Some(c) = &mut h.child {
                match c.try_wait() {
                    Ok(None) => {}
                    Ok(Some(status)) => {
                        if !status.success() {
                            self.stats.failed_runs += 1;
                            tracing::warn!(service = %h.name, %status, "on_change command failed");
                        }
                        h.child = None;
                    }
                    Err(e) => {
                        tracing::warn!(service = %h.name, error = %e, "on_change command lost");
                        h.child = None;
                    }
                }
            }
            let Some((empty, usable)) = h.current else {
                continue;
            };
            let state = if empty { "empty" } else { "nonempty" };
            if let (Some(path), false) = (&h.state_file, h.written == Some(empty)) {
                h.written = Some(empty);
                match write_atomically(path, state) {
                    Ok(()) => self.stats.state_writes += 1,
                    Err(e) => tracing::warn!(
                        service = %h.name,
                        path = %path.display(),
                        error = %e,
                        "cannot write state_file"
                    ),
                }
            }
            if let (Some(cmd), None, false) = (&h.on_change, &h.child, h.announced == Some(empty)) {
                h.announced = Some(empty);
                self.stats.runs += 1;
                match spawn(cmd, h, state, usable) {
                    Ok(child) => h.child = Some(child),
                    Err(e) => {
                        self.stats.failed_runs += 1;
                        tracing::warn!(service = %h.name, error = %e, "cannot run on_change");
                    }
                }
            }
        }
    }
}

fn spawn(cmd: &str, h: &ServiceHook, state: &str, usable: usize) -> std::io::Result<Child> {
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    let stdout = std::io::stderr().as_fd().try_clone_to_owned()?;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("FULCRUM_SERVICE", &h.name)
        .env("FULCRUM_STATE", state)
        .env("FULCRUM_VIP", &h.vip)
        .env("FULCRUM_PORT", &h.port)
        .env("FULCRUM_PROTOCOL", h.protocol)
        .env("FULCRUM_BACKENDS", usable.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .spawn()
}

fn write_atomically(path: &Path, state: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{state}\n"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;
    use crate::publish::{BackendIds, Dynamic, build};
    use std::time::{Duration, Instant};

    #[test]
    fn runs_the_command_and_writes_the_file_on_every_change() {
        let dir = std::env::temp_dir().join(format!("fulcrum-hook-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let state = dir.join("state");
        let text = format!(
            "[[port]]\nname = \"p\"\ndevice = \"d\"\naddresses = [\"10.0.0.2/24\"]\n\
             [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\n\
             on_change = \"echo $FULCRUM_SERVICE $FULCRUM_STATE $FULCRUM_VIP $FULCRUM_PORT $FULCRUM_BACKENDS >> {}\"\n\
             state_file = \"{}\"\n\
             [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
            log.display(),
            state.display()
        );
        let cfg = conf::parse(&text, Path::new("t.toml")).unwrap();
        let mut ids = BackendIds::new();
        let mut dynamic = Dynamic::default();
        let mut hooks = Hooks::new(&cfg);
        // Polls the hooks (a run deferred while another ran starts there) until the log has
        // `n` lines.
        let wait_lines = |hooks: &mut Hooks, n: usize| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                hooks.poll();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.lines().count() >= n || Instant::now() > deadline {
                    return text;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };

        hooks.update(&build(&cfg, &mut ids, &dynamic, 1));
        assert_eq!(wait_lines(&mut hooks, 1), "web nonempty 10.0.0.100 80 1\n");
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "nonempty\n");

        // The same state again: nothing runs.
        hooks.update(&build(&cfg, &mut ids, &dynamic, 2));
        let id = ids.find("web", "a").unwrap();
        dynamic.health.insert(id, Health::Down);
        hooks.update(&build(&cfg, &mut ids, &dynamic, 3));
        assert_eq!(
            wait_lines(&mut hooks, 2).lines().nth(1),
            Some("web empty 10.0.0.100 80 0")
        );
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "empty\n");
        dynamic.health.insert(id, Health::Up);
        hooks.update(&build(&cfg, &mut ids, &dynamic, 4));
        assert_eq!(wait_lines(&mut hooks, 3).lines().count(), 3);
        assert_eq!(hooks.stats.runs, 3);
        assert_eq!(hooks.stats.state_writes, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

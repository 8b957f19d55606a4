//! The control socket: a Unix stream socket (mode 0600) served from the slow-path loop, one
//! request per connection, one line of JSON each way (the types of [`fulcrum::api`]).
//! `fulcrum ctl` is its client; the Prometheus endpoint ([`crate::metrics`]) reads the same
//! replies.
//!
//! Never blocking the loop: [`crate::requests::Server`] serves connections as they become
//! ready, within bounds no client can push past.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dataplane::engine::Engine;
use fulcrum::api::{
    self, AdminReply, Announcement, BackendInfo, BackendTraffic, BackendsReply, CounterSet,
    KernelCounters, NextHopStatus, PortCounters, PortStatus, Reply, Request, ServiceInfo,
    StatsReply, StatusReply, SyncStatus, WorkerStatus,
};
use fulcrum::flowspec::FlowError;
use serde::de::DeserializeOwned;
use slowpath::SlowPath;

use crate::reload::{Asker, Reloads};
use crate::requests::{BindError, EndpointStats, Limits, Server};

mod which;
pub use which::new_flow;

/// Bounds on the control socket's connections (every client of a Unix socket counts as one).
const LIMITS: Limits = Limits {
    max_conns: 256,
    max_per_client: 256,
    max_len: api::MAX_REQUEST,
    idle: Duration::from_secs(2),
    deadline: Duration::from_secs(5),
};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Request(#[from] api::RequestError),
    #[error("flow: {0}")]
    Flow(#[from] FlowError),
    /// An operator command named a service or backend the config does not have.
    #[error(transparent)]
    Admin(#[from] slowpath::AdminError),
    /// What the slow path or a reload said (no such backend, an invalid config...).
    #[error("{0}")]
    Refused(String),
}

/// Why `ctl` could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("control socket {}: {source} (is fulcrum running?)", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {}: bad response ({source}): {text:?}", path.display())]
    BadResponse {
        path: PathBuf,
        source: serde_json::Error,
        text: String,
    },
    /// The balancer refused the request; its reason.
    #[error("{0}")]
    Refused(String),
}

/// Sends one request to the socket at `path` and waits (at most `timeout`) for its reply.
pub fn call<T: DeserializeOwned>(
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<T, CallError> {
    let io = |source| CallError::Io {
        path: path.to_owned(),
        source,
    };
    let mut s = UnixStream::connect(path).map_err(|source| CallError::Connect {
        path: path.to_owned(),
        source,
    })?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    s.write_all(&api::encode(req)).map_err(io)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(io)?;
    let resp: api::Response<T> =
        serde_json::from_slice(&out).map_err(|source| CallError::BadResponse {
            path: path.to_owned(),
            source,
            text: String::from_utf8_lossy(&out).into_owned(),
        })?;
    match (resp.ok, resp.data) {
        (true, Some(data)) => Ok(data),
        _ => Err(CallError::Refused(
            resp.error.unwrap_or_else(|| "refused".into()),
        )),
    }
}

/// A reply as the deferred `reload` answers it (`reload.rs` builds its data as JSON).
pub type Response = api::Response<serde_json::Value>;

/// Writes `resp` to a client whose request was answered later (a `reload`): the answer is
/// small, so a blocking write with a bound; a client that went away loses it.
pub fn answer(mut stream: UnixStream, resp: &Response) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(&api::encode(resp));
}

/// The listening socket and the connections being served.
pub struct ControlServer {
    server: Server<mio::net::UnixListener>,
    path: PathBuf,
    started: Instant,
    /// Requests refused (malformed, or refused by the slow path).
    refused: u64,
}

impl ControlServer {
    /// Binds `path` (its directory made if missing, a stale socket removed), mode 0600.
    pub fn bind(path: &Path, started: Instant) -> Result<ControlServer, BindError> {
        let what = |source| BindError::Control {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(what)?;
        }
        if path.exists() {
            // A live balancer answers; a stale socket refuses and is removed.
            if UnixStream::connect(path).is_ok() {
                return Err(BindError::ControlInUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(what)?;
        }
        let listener = mio::net::UnixListener::bind(path).map_err(what)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(what)?;
        let server = Server::new("control socket", listener, LIMITS, |b| b.contains(&b'\n'))
            .map_err(what)?;
        tracing::info!(path = %path.display(), "control socket listening");
        Ok(ControlServer {
            server,
            path: path.to_owned(),
            started,
            refused: 0,
        })
    }

    /// Accepts, reads and answers what is ready; never blocks. Returns how many requests
    /// were answered. A `reload` is handed to `reloads` (with a duplicate of its connection)
    /// and answered when the new config has been read (`Reloads::poll`), without holding up
    /// the requests behind it.
    pub fn poll(
        &mut self,
        engine: &mut Engine,
        slow: &mut SlowPath,
        reloads: &mut Reloads,
    ) -> usize {
        let started = self.started;
        let refused = &mut self.refused;
        self.server.serve(|bytes, stream| {
            let req = api::decode_request(bytes);
            if let Ok(Request::Reload {}) = req {
                match stream.as_fd().try_clone_to_owned() {
                    Ok(fd) => {
                        reloads.request(Asker::Control(UnixStream::from(fd)), slow);
                        return None;
                    }
                    Err(e) => {
                        *refused += 1;
                        let e = ControlError::Refused(format!("reload: {e}"));
                        return Some(api::encode(&Response::from_result(Err(e))));
                    }
                }
            }
            let reply = req
                .map_err(ControlError::from)
                .and_then(|req| handle(&req, engine, slow, started));
            if let Err(e) = &reply {
                *refused += 1;
                tracing::debug!(error = %e, "control request refused");
            }
            Some(api::encode(&api::Response::from_result(reply)))
        })
    }

    /// What the socket has served, for the metrics.
    pub fn endpoint(&self) -> EndpointStats {
        EndpointStats {
            endpoint: "control",
            server: self.server.stats,
            refused: self.refused,
            open: self.server.open(),
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn handle(
    req: &Request,
    engine: &mut Engine,
    slow: &mut SlowPath,
    started: Instant,
) -> Result<Reply, ControlError> {
    Ok(match req {
        Request::Status {} => Reply::Status(status(engine, slow, started)),
        Request::Backends {} => Reply::Backends(backends(engine, slow)),
        Request::Stats {} => Reply::Stats(stats(engine, slow, started)),
        Request::Which { flow } => Reply::Which(which::which(engine, slow, flow)?),
        Request::Admin {
            service,
            backend,
            state,
        } => {
            let generation = slow.set_admin(engine, service, backend, state.state())?;
            tracing::info!(
                service,
                backend,
                state = state.as_str(),
                generation,
                "admin state set by operator"
            );
            Reply::Admin(AdminReply {
                service: service.clone(),
                backend: Some(backend.clone()),
                admin: state.as_str().into(),
                cleared: None,
                generation,
            })
        }
        Request::ClearAdmin { service, backend } => {
            let (cleared, generation) = slow.clear_admin(engine, service, backend.as_deref())?;
            tracing::info!(
                service,
                backend = backend.as_deref().unwrap_or("*"),
                cleared,
                generation,
                "admin overrides cleared by operator"
            );
            Reply::Admin(AdminReply {
                service: service.clone(),
                backend: backend.clone(),
                admin: "cleared".into(),
                cleared: Some(cleared),
                generation,
            })
        }
        Request::Vrrp { state, holder } => {
            Reply::Vrrp(crate::vrrp::set(engine, slow, *state, *holder))
        }
        // Answered by `Reloads` once the file is read; never reaches here.
        Request::Reload {} => {
            return Err(ControlError::Refused(
                "reload is answered when the new config is read".into(),
            ));
        }
    })
}

/// The snapshot the workers forward by now.
fn snapshot(engine: &Engine) -> std::sync::Arc<dataplane::snapshot::Snapshot> {
    engine.snapshot()
}

/// What a backend's checks say (up when it has none), and the operator's override of its
/// admin state, if any.
fn dynamic_state(
    slow: &SlowPath,
    id: dataplane::snapshot::BackendId,
) -> (slowpath::health::Health, Option<conf::AdminState>) {
    (slow.health(id), slow.admin_override(id))
}

fn ports(engine: &Engine) -> Vec<PortStatus> {
    let snap = snapshot(engine);
    engine
        .port_reports()
        .into_iter()
        .zip(engine.links())
        .enumerate()
        .map(|(i, (p, link))| PortStatus {
            // The snapshot's MAC is the one the workers write as the source.
            mac: conf::MacAddr(snap.ports.get(i).map_or(p.mac, |r| r.mac)).to_string(),
            device_mac: conf::MacAddr(p.mac).to_string(),
            name: p.name,
            device: p.device,
            link: link.map(|l| if l.up { "up" } else { "down" }.to_string()),
            speed_mbps: link.map(|l| l.speed_mbps),
            stats: p.stats.map(|s| PortCounters {
                rx_packets: s.ipackets,
                tx_packets: s.opackets,
                rx_bytes: s.ibytes,
                tx_bytes: s.obytes,
                rx_missed: s.imissed,
                rx_errors: s.ierrors,
                tx_errors: s.oerrors,
                rx_nombuf: s.rx_nombuf,
            }),
        })
        .collect()
}

/// The next hops of the config in force, and their resolution.
fn next_hops(slow: &SlowPath) -> Vec<NextHopStatus> {
    let ports = &slow.config().ports;
    slow.next_hops()
        .into_iter()
        .map(|h| NextHopStatus {
            address: h.address.to_string(),
            port: ports
                .get(h.port)
                .map_or_else(|| h.port.to_string(), |p| p.name.clone()),
            routes: h.routes.iter().map(ToString::to_string).collect(),
            backends: h.backends,
            state: h.resolution.map_or("unknown", |r| r.as_str()).into(),
            mac: h
                .resolution
                .and_then(|r| r.mac())
                .map(|m| conf::MacAddr(m).to_string()),
        })
        .collect()
}

fn status(engine: &Engine, slow: &SlowPath, started: Instant) -> StatusReply {
    let snap = snapshot(engine);
    StatusReply {
        version: crate::VERSION.into(),
        pid: std::process::id(),
        uptime_s: started.elapsed().as_secs_f64(),
        generation: snap.generation,
        counters_file: engine.counters_file().map(|p| p.display().to_string()),
        services: snap.services.len(),
        backends: snap.backends.iter().flatten().count(),
        ports: ports(engine),
        next_hops: next_hops(slow),
        local_ports: fulcrum::api::local_ports_in_use(&engine.local_ports_in_use()),
        workers: engine
            .worker_counters()
            .iter()
            .enumerate()
            .map(|(i, c)| WorkerStatus {
                worker: i,
                rx: c.rx,
                tx: c.tx,
                dropped: c.dropped(),
                flows_active: c.flows_active,
                generation: engine.progress()[i]
                    .loaded_generation
                    .load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect(),
        announcements: slow
            .announcements()
            .into_iter()
            .filter(|a| a.announce == conf::Announce::Bgp)
            .map(|a| Announcement {
                service: a.service,
                vip: a.vip.to_string(),
                announced: a.announced,
                reason: a.reason.as_str().into(),
            })
            .collect(),
        kernel: slow.kernel_stats().as_ref().map(KernelCounters::from),
        sync: slow.sync_report().as_ref().map(SyncStatus::from),
        vrrp: crate::vrrp::status(engine, slow, started),
        mbufs_in_use: engine.mempool().in_use(),
        mbufs: engine.mempool().capacity(),
        flow_tables: {
            let t = engine.flow_tables();
            fulcrum::api::FlowTablesStatus {
                dir: t.dir.as_ref().map(|d| d.display().to_string()),
                adopted: t.adopted,
                dropped: t.dropped,
                empty: t.empty.clone(),
            }
        },
    }
}

/// Every counter now: what `ctl stats` prints and the metrics endpoint exports.
pub fn stats(engine: &Engine, slow: &SlowPath, started: Instant) -> StatsReply {
    let workers = engine.worker_counters();
    let mut totals = dataplane::stats::Counters::default();
    for w in &workers {
        totals.add(w);
    }
    StatsReply {
        uptime_s: Some(started.elapsed().as_secs_f64()),
        generation: Some(snapshot(engine).generation),
        workers: workers.iter().map(CounterSet::new).collect(),
        totals: CounterSet::new(&totals),
        ports: ports(engine),
        backends: backend_counters(engine),
        kernel: slow.kernel_stats().as_ref().map(KernelCounters::from),
        sync: slow.sync_report().as_ref().map(SyncStatus::from),
        vrrp: crate::vrrp::status(engine, slow, started),
        local_ports: fulcrum::api::local_ports_in_use(&engine.local_ports_in_use()),
    }
}

/// Per-backend traffic counters.
fn backend_counters(engine: &Engine) -> Vec<BackendTraffic> {
    let snap = snapshot(engine);
    snap.services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |id| (s, *id)))
        .filter_map(|(s, id)| {
            let b = snap.backend(id)?;
            let [packets, bytes, new_flows] = engine.backend_totals(id);
            let [flows_established, flows_other] = engine.backend_active(id);
            Some(BackendTraffic {
                service: s.name.clone(),
                backend: b.name.clone(),
                packets,
                bytes,
                new_flows,
                flows_established,
                flows_other,
            })
        })
        .collect()
}

/// Services and backends as the running snapshot has them, with the slow path's checks.
pub fn backends(engine: &Engine, slow: &SlowPath) -> BackendsReply {
    let snap = snapshot(engine);
    let checks = slow.checks();
    let announcements = slow.announcements();
    let configured = |service: &str, backend: &str| {
        slow.config()
            .services
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| s.backends.iter().find(|b| b.name == backend))
            .map_or(conf::AdminState::Enabled, |b| b.admin)
    };
    let services = snap
        .services
        .iter()
        .map(|s| {
            let backends: Vec<BackendInfo> = s
                .backends
                .iter()
                .filter_map(|id| snap.backend(*id))
                .map(|b| {
                    let c = checks.get(&b.id);
                    let last = c.and_then(|c| c.last);
                    let [packets, bytes, new_flows] = engine.backend_totals(b.id);
                    let [established, other] = engine.backend_active(b.id);
                    let (health, over) = dynamic_state(slow, b.id);
                    BackendInfo {
                        backend: b.name.clone(),
                        id: b.id.get(),
                        address: b.addr.to_string(),
                        port: b.port,
                        state: b.state.as_str().into(),
                        health: health.as_str().into(),
                        admin: over
                            .unwrap_or_else(|| configured(&s.name, &b.name))
                            .as_str()
                            .into(),
                        admin_override: over.map(|a| a.as_str().into()),
                        weight: b.weight,
                        backup: b.backup,
                        member: s.members.contains(&b.id),
                        checked: c.is_some(),
                        checks: c.map(|c| c.checks),
                        check_failures: c.map(|c| c.failures),
                        last_check: last
                            .map(|l| if l.failure.is_none() { "ok" } else { "failed" }.into()),
                        last_check_failure: last.and_then(|l| l.failure).map(Into::into),
                        last_check_ms: last.map(|l| l.took.as_secs_f64() * 1000.0),
                        flows_active: established + other,
                        flows_established: established,
                        flows_other: other,
                        packets,
                        bytes,
                        new_flows,
                    }
                })
                .collect();
            let sum = |f: fn(&BackendInfo) -> u64| backends.iter().map(f).sum::<u64>();
            let ann = announcements.iter().find(|a| a.service == s.name);
            ServiceInfo {
                service: s.name.clone(),
                vip: s.vip.to_string(),
                port: s.port,
                protocol: s.protocol.as_str().into(),
                forwarding: s.forwarding.as_str().into(),
                tier: s.tier.as_str().into(),
                members: s.members.len(),
                flows_active: sum(|b| b.flows_active),
                flows_established: sum(|b| b.flows_established),
                flows_other: sum(|b| b.flows_other),
                announce: s.announce.as_str().into(),
                announced: ann.is_some_and(|a| a.announced),
                announce_reason: ann
                    .filter(|a| a.announce == conf::Announce::Bgp)
                    .map(|a| a.reason.as_str().into()),
                backends,
            }
        })
        .collect();
    BackendsReply {
        generation: snap.generation,
        services,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_answers_over_a_real_socket() {
        // Without an engine: the socket is 0600, refused while live, removed on drop.
        let dir = std::env::temp_dir().join(format!("fulcrum-ctl-unit-{}", std::process::id()));
        let path = dir.join("sub/ctl.sock");
        let _ = std::fs::remove_dir_all(&dir);
        let server = ControlServer::bind(&path, Instant::now()).expect("bind");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second bind sees a live socket and refuses.
        assert!(matches!(
            ControlServer::bind(&path, Instant::now()),
            Err(BindError::ControlInUse { .. })
        ));
        drop(server);
        assert!(!path.exists());
        // A stale socket file is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        let server = ControlServer::bind(&path, Instant::now()).expect("rebind over stale");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

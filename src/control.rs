//! The control socket: a Unix stream socket (mode 0600) served from the slow-path loop, one
//! request per connection, one line of JSON each way ([`Request`] in, [`Response`] out).
//! `fulcrum ctl` is its client; the Prometheus endpoint ([`crate::metrics`]) reads the same
//! figures.
//!
//! Never blocking the loop: the listener is non-blocking and accepted connections are read
//! without blocking, a little each turn, until their line is complete (or they time out).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conf::AdminState;
use dataplane::engine::Engine;
use dataplane::snapshot::{Choice, Tier};
use dataplane::worker::FlowAnswer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use slowpath::SlowPath;

use crate::reload::{Asker, Reloads};
use crate::requests::Requests;

/// A request longer than this is refused (a request is a short line).
const MAX_REQUEST: usize = 4096;
/// A client that has not sent its line by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more wait in the listen backlog.
const MAX_PENDING: usize = 16;

/// One request: a line of JSON such as `{"cmd":"status"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Version, uptime, ports, workers, snapshot generation.
    Status,
    /// Services and their backends: state, weight, checks.
    Backends,
    /// Every counter now (per worker, totals, per port); `ctl stats --watch` makes rates.
    Stats,
    /// Where a flow `"SRC:PORT DST:PORT [tcp|udp]"` goes now, and why.
    Which { flow: String },
    /// An operator's admin state: `drain`, `enable` or `disable`.
    Admin {
        service: String,
        backend: String,
        state: String,
    },
    /// Re-read the config file.
    Reload,
}

/// One response: `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl Response {
    pub fn from_result(r: Result<Value, String>) -> Response {
        match r {
            Ok(data) => Response {
                ok: true,
                error: None,
                data,
            },
            Err(e) => Response {
                ok: false,
                error: Some(e),
                data: Value::Null,
            },
        }
    }
}

/// The wire form of a request or response: its JSON on one line, newline-terminated.
pub fn encode<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).expect("serialisable");
    s.push('\n');
    s
}

/// Writes `resp` to a client: the answer is small, so a blocking write with a bound; a client
/// that went away loses it.
pub fn answer(mut stream: UnixStream, resp: &Response) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(encode(resp).as_bytes());
}

/// Parses one request line.
pub fn decode_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim()).map_err(|e| format!("bad request: {e}"))
}

/// The admin state named by `ctl drain|enable|disable`.
pub fn admin_state(word: &str) -> Result<AdminState, String> {
    match word {
        "drain" => Ok(AdminState::Drain),
        "enable" | "enabled" => Ok(AdminState::Enabled),
        "disable" | "disabled" => Ok(AdminState::Disabled),
        w => Err(format!(
            "admin state {w:?}: expected drain, enable or disable"
        )),
    }
}

/// Sends one request to the socket at `path` and waits for its response.
pub fn call(path: &Path, req: &Request, timeout: Duration) -> Result<Response, String> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        format!(
            "control socket {}: {e} (is fulcrum running?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    s.write_all(encode(req).as_bytes())
        .map_err(|e| format!("control socket {}: {e}", path.display()))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("control socket {}: {e}", path.display()))?;
    serde_json::from_str(out.trim()).map_err(|e| format!("bad response ({e}): {out:?}"))
}

/// The listening socket and the connections being read.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    requests: Requests<UnixStream>,
    started: Instant,
}

impl ControlServer {
    /// Binds `path` (its directory made if missing, a stale socket removed), mode 0600.
    pub fn bind(path: &Path, started: Instant) -> Result<ControlServer, String> {
        let what = |e: std::io::Error| format!("control socket {}: {e}", path.display());
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(what)?;
        }
        if path.exists() {
            // A live balancer answers; a stale socket refuses and is removed.
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "control socket {}: another fulcrum is listening there",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(what)?;
        }
        let listener = UnixListener::bind(path).map_err(what)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(what)?;
        listener.set_nonblocking(true).map_err(what)?;
        tracing::info!(path = %path.display(), "control socket listening");
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            requests: Requests::new("control socket", MAX_PENDING, MAX_REQUEST, REQUEST_TIMEOUT),
            started,
        })
    }

    /// Accepts, reads and answers what is ready; never blocks. Returns how many requests
    /// were answered.
    /// A `reload` is handed to `reloads` and answered when the new config has been read
    /// (`Reloads::poll`), without holding up the requests behind it.
    pub fn poll(
        &mut self,
        engine: &mut Engine,
        slow: &mut SlowPath,
        reloads: &mut Reloads,
    ) -> usize {
        let ready = self
            .requests
            .poll(&self.listener, |buf| buf.contains(&b'\n'));
        let done = ready.len();
        for (s, buf) in ready {
            let line = String::from_utf8_lossy(&buf).into_owned();
            let resp = match decode_request(line.lines().next().unwrap_or("")) {
                Ok(Request::Reload) => {
                    reloads.request(Asker::Control(s), slow);
                    continue;
                }
                Ok(req) => Response::from_result(self.handle(&req, engine, slow)),
                Err(e) => Response::from_result(Err(e)),
            };
            answer(s, &resp);
        }
        done
    }

    fn handle(
        &self,
        req: &Request,
        engine: &mut Engine,
        slow: &mut SlowPath,
    ) -> Result<Value, String> {
        match req {
            Request::Status => Ok(status(engine, self.started)),
            Request::Backends => Ok(backends(engine, slow)),
            Request::Stats => Ok(stats(engine, self.started)),
            Request::Which { flow } => which(engine, flow),
            Request::Admin {
                service,
                backend,
                state,
            } => {
                let st = admin_state(state)?;
                let generation = slow
                    .set_admin(engine, service, backend, st)
                    .map_err(|e| e.to_string())?;
                tracing::info!(
                    service,
                    backend,
                    state,
                    generation,
                    "admin state set by operator"
                );
                Ok(
                    json!({ "service": service, "backend": backend, "admin": state, "generation": generation }),
                )
            }
            // Answered by `Reloads` once the file is read; never reaches here.
            Request::Reload => Err("reload is answered when the new config is read".into()),
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn counters_map(c: &dataplane::stats::Counters) -> Value {
    let mut m = Map::new();
    for (k, v) in c.fields() {
        m.insert(k.into(), json!(v));
    }
    let mut drops = Map::new();
    for r in dataplane::verdict::DropReason::ALL {
        drops.insert(r.name().into(), json!(c.drops[*r as usize]));
    }
    m.insert("dropped".into(), json!(c.dropped()));
    m.insert("drops".into(), Value::Object(drops));
    Value::Object(m)
}

fn ports(engine: &Engine) -> Vec<Value> {
    let links = engine.links();
    engine
        .port_reports()
        .iter()
        .zip(links)
        .map(|(p, link)| {
            let mut v = json!({
                "name": p.name, "device": p.device, "mac": conf::MacAddr(p.mac).to_string(),
                "link": link.map(|l| if l.up { "up" } else { "down" }),
                "speed_mbps": link.map(|l| l.speed_mbps),
            });
            if let Some(s) = &p.stats {
                let o = v.as_object_mut().expect("object");
                o.insert("rx_packets".into(), json!(s.ipackets));
                o.insert("tx_packets".into(), json!(s.opackets));
                o.insert("rx_bytes".into(), json!(s.ibytes));
                o.insert("tx_bytes".into(), json!(s.obytes));
                o.insert("rx_missed".into(), json!(s.imissed));
                o.insert("rx_errors".into(), json!(s.ierrors));
                o.insert("tx_errors".into(), json!(s.oerrors));
                o.insert("rx_nombuf".into(), json!(s.rx_nombuf));
            }
            v
        })
        .collect()
}

fn status(engine: &Engine, started: Instant) -> Value {
    let workers = engine.worker_counters();
    let snap = engine.snapshot();
    json!({
        "version": crate::VERSION,
        "pid": std::process::id(),
        "uptime_s": started.elapsed().as_secs_f64(),
        "generation": snap.generation,
        "counters_file": engine.counters_file().map(|p| p.display().to_string()),
        "services": snap.services.len(),
        "backends": snap.backends.iter().flatten().count(),
        "ports": ports(engine),
        "workers": workers.iter().enumerate().map(|(i, c)| json!({
            "worker": i, "rx": c.rx, "tx": c.tx, "dropped": c.dropped(),
            "flows_active": c.flows_active,
            "generation": engine.progress()[i].loaded_generation.load(std::sync::atomic::Ordering::Relaxed),
        })).collect::<Vec<_>>(),
    })
}

/// Every counter now: what `ctl stats` prints and the metrics endpoint exports.
pub fn stats(engine: &Engine, started: Instant) -> Value {
    let workers = engine.worker_counters();
    let mut totals = dataplane::stats::Counters::default();
    for w in &workers {
        totals.add(w);
    }
    json!({
        "uptime_s": started.elapsed().as_secs_f64(),
        "generation": engine.snapshot().generation,
        "workers": workers.iter().map(counters_map).collect::<Vec<_>>(),
        "totals": counters_map(&totals),
        "ports": ports(engine),
        "backends": backend_counters(engine),
    })
}

/// Per-backend traffic counters: `[{service, backend, packets, bytes, new_flows,
/// flows_established, flows_other}]`.
fn backend_counters(engine: &Engine) -> Vec<Value> {
    let snap = engine.snapshot();
    snap.services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |id| (s, *id)))
        .filter_map(|(s, id)| {
            let b = snap.backend(id)?;
            let [packets, bytes, new_flows] = engine.backend_totals(id);
            let [established, other] = engine.backend_active(id);
            Some(json!({
                "service": s.name, "backend": b.name,
                "packets": packets, "bytes": bytes, "new_flows": new_flows,
                "flows_established": established, "flows_other": other,
            }))
        })
        .collect()
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Primary => "primary",
        Tier::Backup => "backup",
        Tier::Empty => "empty",
    }
}

/// Services and backends as the running snapshot has them, with the slow path's checks.
pub fn backends(engine: &Engine, slow: &SlowPath) -> Value {
    let snap = engine.snapshot();
    let checks = slow.checks();
    let services: Vec<Value> = snap
        .services
        .iter()
        .map(|s| {
            let backends: Vec<Value> = s
                .backends
                .iter()
                .filter_map(|id| snap.backend(*id))
                .map(|b| {
                    let c = checks.get(&b.id);
                    let last = c.and_then(|c| c.last);
                    let [packets, bytes, new_flows] = engine.backend_totals(b.id);
                    let [established, other] = engine.backend_active(b.id);
                    json!({
                        "flows_active": established + other,
                        "flows_established": established,
                        "flows_other": other,
                        "packets": packets,
                        "bytes": bytes,
                        "new_flows": new_flows,
                        "backend": b.name,
                        "id": b.id,
                        "address": b.addr.to_string(),
                        "port": b.port,
                        "state": b.state.name(),
                        "admin_override": slow.admin_override(b.id).map(|a| format!("{a:?}").to_lowercase()),
                        "weight": b.weight,
                        "backup": b.backup,
                        "member": s.members.contains(&b.id),
                        "checked": c.is_some(),
                        "checks": c.map(|c| c.checks),
                        "check_failures": c.map(|c| c.failures),
                        "last_check": last.map(|l| if l.failure.is_none() { "ok" } else { "failed" }),
                        "last_check_failure": last.and_then(|l| l.failure),
                        "last_check_ms": last.map(|l| l.took.as_secs_f64() * 1000.0),
                    })
                })
                .collect();
            let active = |k: &str| backends.iter().map(|b| b[k].as_u64().unwrap_or(0)).sum::<u64>();
            json!({
                "flows_active": active("flows_active"),
                "flows_established": active("flows_established"),
                "flows_other": active("flows_other"),
                "service": s.name,
                "vip": s.vip.to_string(),
                "port": s.port,
                "protocol": format!("{:?}", s.protocol).to_lowercase(),
                "forwarding": format!("{:?}", s.forwarding).to_lowercase(),
                "tier": tier_name(s.tier),
                "members": s.members.len(),
                "backends": backends,
            })
        })
        .collect();
    json!({ "generation": snap.generation, "services": services })
}

/// Where a flow goes: to its flow-table entry's backend if a worker holds one that may keep
/// it (each worker is asked through its lock-free question box), else where the running
/// snapshot sends a new flow (real health and admin states).
fn which(engine: &Engine, flow: &str) -> Result<Value, String> {
    let key = crate::which::parse_flow(flow)?;
    let snap = engine.snapshot();
    let mut answers = Vec::new();
    let mut hit = None;
    for (i, q) in engine.queries().iter().enumerate() {
        let a = q.ask(&key, Duration::from_millis(200));
        answers.push(match a {
            FlowAnswer::Hit(id) => {
                let b = snap.backend(id);
                if hit.is_none() && b.is_some_and(|b| b.keeps_flows()) {
                    hit = Some((i, id));
                }
                json!({ "worker": i, "flow_table": "hit", "backend": b.map(|b| b.name.clone()), "backend_id": id })
            }
            FlowAnswer::Miss => json!({ "worker": i, "flow_table": "miss" }),
            FlowAnswer::NoAnswer => json!({ "worker": i, "flow_table": "no answer" }),
        });
    }
    if let Some((worker, id)) = hit {
        let b = snap.backend(id).expect("checked");
        return Ok(json!({
            "flow": flow,
            "service": snap.services.get(b.service as usize).map(|s| s.name.clone()),
            "backend": b.name,
            "reason": format!("flow table hit on worker {worker}"),
            "worker": worker,
            "workers": answers,
            "generation": snap.generation,
        }));
    }
    let mut v = match snap.choose(&key) {
        Choice::NoService => json!({ "flow": flow, "service": null, "reason": "no service" }),
        Choice::Empty { service } => json!({
            "flow": flow, "service": snap.services[service as usize].name,
            "backend": null, "reason": "empty pool",
        }),
        Choice::Backend {
            service,
            backend,
            slot,
            tier,
        } => json!({
            "flow": flow,
            "service": snap.services[service as usize].name,
            "backend": snap.backend(backend).map(|b| b.name.clone()),
            "slot": slot,
            "tier": tier_name(tier),
            "reason": if tier == Tier::Backup { "maglev slot, backup tier" } else { "maglev slot" },
            "generation": snap.generation,
        }),
    };
    v.as_object_mut()
        .expect("object")
        .insert("workers".into(), Value::Array(answers));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_one_line_each() {
        let reqs = [
            Request::Status,
            Request::Backends,
            Request::Stats,
            Request::Reload,
            Request::Which {
                flow: "10.0.0.1:1234 10.0.0.100:80 tcp".into(),
            },
            Request::Admin {
                service: "web".into(),
                backend: "b1".into(),
                state: "drain".into(),
            },
        ];
        for r in reqs {
            let line = encode(&r);
            assert!(line.ends_with('\n'));
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert_eq!(decode_request(&line).unwrap(), r);
        }
        assert_eq!(
            decode_request(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        for bad in [
            "",
            "status",
            r#"{"cmd":"nope"}"#,
            r#"{"cmd":"which"}"#,
            r#"{"cmd":"which","flow":"x","extra":1}"#,
        ] {
            let e = decode_request(bad).unwrap_err();
            assert!(e.starts_with("bad request"), "{bad}: {e}");
        }
        assert!(admin_state("pause").is_err());
        assert_eq!(admin_state("drain").unwrap(), AdminState::Drain);
    }

    #[test]
    fn responses_round_trip() {
        let ok = Response::from_result(Ok(json!({"generation": 3})));
        let back: Response = serde_json::from_str(encode(&ok).trim()).unwrap();
        assert_eq!(back, ok);
        assert_eq!(encode(&ok), "{\"ok\":true,\"data\":{\"generation\":3}}\n");
        let err = Response::from_result(Err("t.toml:3:5: bad".into()));
        let line = encode(&err);
        assert_eq!(line, "{\"ok\":false,\"error\":\"t.toml:3:5: bad\"}\n");
        let back: Response = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(back, err);
    }

    #[test]
    fn server_answers_over_a_real_socket() {
        // Without an engine: a malformed request is answered, the socket is 0600 and removed.
        let dir = std::env::temp_dir().join(format!("fulcrum-ctl-unit-{}", std::process::id()));
        let path = dir.join("sub/ctl.sock");
        let _ = std::fs::remove_dir_all(&dir);
        let server = ControlServer::bind(&path, Instant::now()).expect("bind");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second bind sees a live socket and refuses.
        assert!(ControlServer::bind(&path, Instant::now()).is_err());
        drop(server);
        assert!(!path.exists());
        // A stale socket file is replaced.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        let server = ControlServer::bind(&path, Instant::now()).expect("rebind over stale");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

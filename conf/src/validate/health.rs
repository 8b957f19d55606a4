//! Validation of what the slow path needs: `[global.health]`, `[global.neighbors]`, the
//! health checks of `[service.health]` with each backend's `[service.backend.health]` laid
//! over them key by key, `track` references, and the pool-change hook.
//!
//! Each value is checked once, in the table that holds it, so a bad key of a service's table
//! is reported once rather than once per backend. Checks across keys (timeout within
//! interval, keys that do not apply to the check's type, a port to check) run on the merged
//! result and point at the key that has to change.

use std::collections::HashMap;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;

use toml::Spanned;

use super::{Checker, range_i64};
use crate::model::*;
use crate::schema::{self, Int};

/// The check types as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    None,
    Tcp,
    Http,
    TlsHello,
    Agent,
}

impl Kind {
    const NAMES: &'static [(&'static str, Kind)] = &[
        ("tcp", Kind::Tcp),
        ("http", Kind::Http),
        ("tls-hello", Kind::TlsHello),
        ("agent", Kind::Agent),
        ("none", Kind::None),
    ];

    fn name(self) -> &'static str {
        Kind::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

/// A checked value and where it is written.
#[derive(Debug, Clone)]
pub(super) struct At<T> {
    v: T,
    span: Range<usize>,
    field: String,
}

/// One health table after each value was checked on its own. Absent or invalid keys are
/// `None` (invalid ones are already reported).
#[derive(Debug, Clone, Default)]
pub(super) struct Partial {
    /// The table's header, for problems of the table as a whole.
    header: Option<At<()>>,
    kind: Option<At<Kind>>,
    port: Option<At<u16>>,
    interval: Option<At<u32>>,
    timeout: Option<At<u32>>,
    rise: Option<At<u32>>,
    fall: Option<At<u32>>,
    method: Option<At<String>>,
    path: Option<At<String>>,
    host: Option<At<String>>,
    expect: Option<At<RangeInclusive<u16>>>,
    sni: Option<At<String>>,
    send: Option<At<String>>,
    through_tunnel: Option<At<bool>>,
}

impl Partial {
    /// `over`'s keys replace `self`'s.
    pub(super) fn overlay(&self, over: &Partial) -> Partial {
        fn pick<T: Clone>(a: &Option<At<T>>, b: &Option<At<T>>) -> Option<At<T>> {
            b.clone().or_else(|| a.clone())
        }
        Partial {
            header: pick(&self.header, &over.header),
            kind: pick(&self.kind, &over.kind),
            port: pick(&self.port, &over.port),
            interval: pick(&self.interval, &over.interval),
            timeout: pick(&self.timeout, &over.timeout),
            rise: pick(&self.rise, &over.rise),
            fall: pick(&self.fall, &over.fall),
            method: pick(&self.method, &over.method),
            path: pick(&self.path, &over.path),
            host: pick(&self.host, &over.host),
            expect: pick(&self.expect, &over.expect),
            sni: pick(&self.sni, &over.sni),
            send: pick(&self.send, &over.send),
            through_tunnel: pick(&self.through_tunnel, &over.through_tunnel),
        }
    }

    /// The check type this table means (a table without `type` is a tcp check).
    pub(super) fn kind(&self) -> Kind {
        self.kind.as_ref().map_or(Kind::Tcp, |k| k.v)
    }

    /// The keys that only some check types use, with the types they belong to.
    fn specific(&self) -> [(Option<KeyAt<'_>>, &'static str, Kind); 6] {
        fn at<T>(a: &Option<At<T>>) -> Option<KeyAt<'_>> {
            a.as_ref().map(|a| (&a.span, a.field.as_str()))
        }
        [
            (at(&self.method), "method", Kind::Http),
            (at(&self.path), "path", Kind::Http),
            (at(&self.host), "host", Kind::Http),
            (at(&self.expect), "expect_status", Kind::Http),
            (at(&self.sni), "sni", Kind::TlsHello),
            (at(&self.send), "send", Kind::Agent),
        ]
    }
}

/// Where a key is: its span and field path.
type KeyAt<'a> = (&'a Range<usize>, &'a str);

/// A `track` as written, resolved after every service is known.
pub(super) struct PendingTrack {
    service: usize,
    backend: usize,
    target: At<String>,
}

impl Checker<'_> {
    // ---- [global.health], [global.neighbors] ---------------------------------------------

    pub(super) fn health_global(&mut self, t: &schema::HealthGlobalTable) -> HealthGlobal {
        let d = HealthGlobal::default();
        let source_ports = match &t.source_ports {
            None => d.source_ports.clone(),
            Some(v) => self
                .source_ports(v)
                .unwrap_or_else(|| d.source_ports.clone()),
        };
        let spread_pct = self.opt_int(
            &t.spread_pct,
            "global.health.spread_pct",
            "spread_pct",
            0..=i64::from(HealthGlobal::SPREAD_MAX_PCT),
            d.spread_pct,
        );
        HealthGlobal {
            source_ports,
            spread_pct,
        }
    }

    fn source_ports(&mut self, v: &Spanned<String>) -> Option<RangeInclusive<u16>> {
        self.port_range(
            v,
            "global.health.source_ports",
            "source_ports",
            "61000-65000",
            HealthGlobal::SOURCE_PORT_MIN,
            HealthGlobal::SOURCE_PORTS_MIN_COUNT,
        )
    }

    /// A `"FIRST-LAST"` range of ports from `min` up, with at least `min_count` ports (a
    /// pool the balancer rotates through, so that a port is not reused while a backend still
    /// remembers its last connection).
    pub(super) fn port_range(
        &mut self,
        v: &Spanned<String>,
        field: &str,
        key: &str,
        example: &str,
        min: u16,
        min_count: u32,
    ) -> Option<RangeInclusive<u16>> {
        let s = v.get_ref();
        let parsed = s.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
        });
        let Some((first, last)) = parsed else {
            self.error(
                v.span(),
                field,
                format!("{key} {s:?} is not a port range; write it as \"FIRST-LAST\", e.g. \"{example}\""),
            );
            return None;
        };
        let count = u32::from(last) + 1 - u32::from(first.min(last));
        let problem = if first < min {
            Some(format!(
                "starts at {first}, among the well-known ports; start at {min} or above"
            ))
        } else if first > last {
            Some(format!("starts at {first}, after its end {last}"))
        } else if count < min_count {
            Some(format!(
                "holds {count} port(s); at least {min_count} are needed so a port is not reused \
                 while the backend still remembers its last connection"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(v.span(), field, format!("{key} {s:?} {problem}"));
            return None;
        }
        Some(first..=last)
    }

    pub(super) fn neighbor_settings(&mut self, t: &schema::NeighborsTable) -> NeighborSettings {
        let d = NeighborSettings::default();
        NeighborSettings {
            refresh_ms: self.opt_int(
                &t.refresh_ms,
                "global.neighbors.refresh_ms",
                "refresh_ms",
                range_i64(&NeighborSettings::REFRESH_RANGE_MS),
                d.refresh_ms,
            ),
            retry_ms: self.opt_int(
                &t.retry_ms,
                "global.neighbors.retry_ms",
                "retry_ms",
                range_i64(&NeighborSettings::RETRY_RANGE_MS),
                d.retry_ms,
            ),
        }
    }

    // ---- the pool-change hook -------------------------------------------------------------

    /// `on_change` and `state_file` of service `si`.
    pub(super) fn hook(
        &mut self,
        t: &schema::ServiceTable,
        si: usize,
    ) -> (Option<String>, Option<PathBuf>) {
        let mut text = |v: &Option<Spanned<String>>, key: &str, example: &str| {
            self.text(v, &format!("service[{si}].{key}"), key, example)
        };
        let on_change = text(
            &t.on_change,
            "on_change",
            "a command like \"/usr/local/bin/announce-vip\"",
        );
        let state_file = text(
            &t.state_file,
            "state_file",
            "a path like \"/run/fulcrum/web.state\"",
        )
        .map(PathBuf::from);
        (on_change, state_file)
    }

    // ---- health tables --------------------------------------------------------------------

    /// Checks each value of one health table; `prefix` is its field path
    /// (`service[0].health`).
    pub(super) fn health_table(
        &mut self,
        t: &Spanned<schema::HealthTable>,
        prefix: &str,
    ) -> Partial {
        let span = t.span();
        let t = t.get_ref();
        let at = |key: &str, span: Range<usize>| (format!("{prefix}.{key}"), span);
        let mut p = Partial {
            header: Some(At {
                v: (),
                span,
                field: prefix.to_owned(),
            }),
            ..Default::default()
        };
        if let Some(v) = &t.kind {
            let (field, span) = at("type", v.span());
            match Kind::NAMES.iter().find(|(n, _)| n == v.get_ref()) {
                Some((_, k)) => p.kind = Some(At { v: *k, span, field }),
                None => self.error(
                    span,
                    field,
                    format!(
                        "type {:?} is not known; use \"tcp\", \"http\", \"tls-hello\", \"agent\" or \"none\"",
                        v.get_ref()
                    ),
                ),
            }
        }
        let mut num = |v: &Option<Spanned<Int>>, key: &str, range: RangeInclusive<i64>| {
            let v = v.as_ref()?;
            let (field, span) = at(key, v.span());
            let n = self.int::<u32>(v, &field, key, range)?;
            Some(At { v: n, span, field })
        };
        p.port = num(&t.port, "port", 1..=65535).map(|a| At {
            v: a.v as u16,
            span: a.span,
            field: a.field,
        });
        p.interval = num(
            &t.interval_ms,
            "interval_ms",
            range_i64(&HealthCheck::INTERVAL_RANGE_MS),
        );
        p.timeout = num(
            &t.timeout_ms,
            "timeout_ms",
            range_i64(&HealthCheck::TIMEOUT_RANGE_MS),
        );
        p.rise = num(&t.rise, "rise", range_i64(&HealthCheck::RISE_FALL_RANGE));
        p.fall = num(&t.fall, "fall", range_i64(&HealthCheck::RISE_FALL_RANGE));

        p.method = self.text_value(&t.method, prefix, "method", |s| {
            (s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_uppercase()))
                .then(|| "must be 1 to 16 upper-case letters, like \"GET\" or \"HEAD\"".to_owned())
        });
        p.path = self.text_value(&t.path, prefix, "path", |s| {
            if !s.starts_with('/') {
                Some("must start with '/'".to_owned())
            } else if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
                Some("contains a space or a control character; percent-encode it".to_owned())
            } else {
                None
            }
        });
        p.host = self.text_value(&t.host, prefix, "host", header_value_problem);
        p.sni = self.text_value(&t.sni, prefix, "sni", |s| {
            (s.is_empty()
                || s.len() > 253
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')))
            .then(|| {
                "must be a DNS name: letters, digits, '-' and '.', at most 253 bytes".to_owned()
            })
        });
        p.send = self.text_value(&t.send, prefix, "send", |s| {
            (s.is_empty() || s.len() > 1024).then(|| "must hold 1 to 1024 bytes".to_owned())
        });
        p.through_tunnel = t.through_tunnel.as_ref().map(|v| At {
            v: *v.get_ref(),
            span: v.span(),
            field: format!("{prefix}.through_tunnel"),
        });
        if let Some(v) = &t.expect_status {
            let (field, span) = at("expect_status", v.span());
            match parse_status_range(v.get_ref()) {
                Ok(r) => p.expect = Some(At { v: r, span, field }),
                Err(problem) => self.error(
                    span,
                    field,
                    format!("expect_status {:?} {problem}", v.get_ref()),
                ),
            }
        }
        p
    }

    fn text_value(
        &mut self,
        v: &Option<Spanned<String>>,
        prefix: &str,
        key: &str,
        problem: impl Fn(&str) -> Option<String>,
    ) -> Option<At<String>> {
        let v = v.as_ref()?;
        let field = format!("{prefix}.{key}");
        if let Some(p) = problem(v.get_ref()) {
            self.error(v.span(), field, format!("{key} {:?} {p}", v.get_ref()));
            return None;
        }
        Some(At {
            v: v.get_ref().clone(),
            span: v.span(),
            field,
        })
    }

    /// Reports the keys of `table` that a check of type `kind` does not use.
    pub(super) fn health_keys_apply(&mut self, table: &Partial, kind: Kind) {
        for (at, key, owner) in table.specific() {
            let Some((span, field)) = at else { continue };
            if kind != owner {
                self.error(
                    span.clone(),
                    field,
                    format!(
                        "{key} applies to {} checks only, and this check is of type {:?}",
                        owner.name(),
                        kind.name()
                    ),
                );
            }
        }
    }

    /// Reports `through_tunnel = true` in `table` when the service's forwarding is no tunnel.
    pub(super) fn health_tunnel_applies(&mut self, table: &Partial, forwarding: Forwarding) {
        let Some(at) = &table.through_tunnel else {
            return;
        };
        if at.v && !forwarding.is_tunnel() {
            self.error(
                at.span.clone(),
                at.field.clone(),
                format!(
                    "through_tunnel needs forwarding = \"ipip\" or \"gue\" (this service's is \"{}\"): \
                     without a tunnel there is nothing to check through",
                    forwarding.as_str()
                ),
            );
        }
    }

    /// The complete check of one backend from its merged table; `None` for type "none".
    /// `default_port` is the backend's NAT port or the service's port.
    pub(super) fn health_check(
        &mut self,
        p: &Partial,
        default_port: Option<u16>,
    ) -> Option<HealthCheck> {
        let kind = p.kind();
        if kind == Kind::None {
            return None;
        }
        let interval_ms = p
            .interval
            .as_ref()
            .map_or(HealthCheck::DEFAULT_INTERVAL_MS, |a| a.v);
        let timeout_ms = p
            .timeout
            .as_ref()
            .map_or(HealthCheck::DEFAULT_TIMEOUT_MS.min(interval_ms), |a| a.v);
        if timeout_ms > interval_ms {
            // Point at whichever of the two the file sets (the timeout when both are).
            let at = match (&p.timeout, &p.interval) {
                (Some(t), _) => t,
                (None, Some(i)) => i,
                (None, None) => unreachable!("the defaults are consistent"),
            };
            self.error(
                at.span.clone(),
                at.field.clone(),
                format!(
                    "timeout_ms {timeout_ms} is longer than interval_ms {interval_ms}; a backend \
                     has at most one check in flight, so the timeout must fit in the interval"
                ),
            );
        }
        // The service's port serves clients, not an agent: an agent check names its port.
        let default_port = if kind == Kind::Agent {
            None
        } else {
            default_port
        };
        let port = match (&p.port, default_port) {
            (Some(a), _) => a.v,
            (None, Some(port)) => port,
            (None, None) => {
                let (span, field, why) = match (&p.kind, &p.header) {
                    (Some(k), _) if kind == Kind::Agent => (
                        k.span.clone(),
                        k.field.clone(),
                        "an agent listens on a port of its own: give `port`",
                    ),
                    (_, Some(h)) => (
                        h.span.clone(),
                        h.field.clone(),
                        "the service takes every port and the backend has no NAT port, so give \
                         the port to check with `port`",
                    ),
                    (Some(k), None) => (
                        k.span.clone(),
                        k.field.clone(),
                        "give the port to check with `port`",
                    ),
                    (None, None) => unreachable!("a check comes from a table"),
                };
                self.error(
                    span,
                    field,
                    format!("this health check needs a port: {why}"),
                );
                0
            }
        };
        let text = |a: &Option<At<String>>| a.as_ref().map(|a| a.v.clone());
        let kind = match kind {
            Kind::Tcp => CheckKind::Tcp,
            Kind::Http => CheckKind::Http(HttpCheck {
                method: text(&p.method).unwrap_or_else(|| "GET".to_owned()),
                path: text(&p.path).unwrap_or_else(|| "/".to_owned()),
                host: text(&p.host),
                expect: p
                    .expect
                    .as_ref()
                    .map_or(HttpCheck::DEFAULT_EXPECT, |a| a.v.clone()),
            }),
            Kind::TlsHello => CheckKind::TlsHello { sni: text(&p.sni) },
            Kind::Agent => CheckKind::Agent {
                send: text(&p.send),
            },
            Kind::None => unreachable!("handled above"),
        };
        Some(HealthCheck {
            kind,
            port,
            interval_ms,
            timeout_ms,
            rise: p.rise.as_ref().map_or(HealthCheck::DEFAULT_RISE, |a| a.v),
            fall: p.fall.as_ref().map_or(HealthCheck::DEFAULT_FALL, |a| a.v),
            through_tunnel: p.through_tunnel.as_ref().is_some_and(|a| a.v),
        })
    }

    // ---- track ----------------------------------------------------------------------------

    /// Records backend `bi` of service `si` as following `v`, to resolve once every service
    /// is known. A backend that tracks another has no check of its own.
    pub(super) fn track(
        &mut self,
        v: &Spanned<String>,
        own_health: Option<&Spanned<schema::HealthTable>>,
        si: usize,
        bi: usize,
        pending: &mut Vec<PendingTrack>,
    ) {
        let field = format!("service[{si}].backend[{bi}].track");
        if let Some(h) = own_health {
            self.error(
                h.span(),
                format!("service[{si}].backend[{bi}].health"),
                "a backend with `track` follows another backend's health and has no check of \
                 its own; remove [service.backend.health] or `track`",
            );
        }
        pending.push(PendingTrack {
            service: si,
            backend: bi,
            target: At {
                v: v.get_ref().clone(),
                span: v.span(),
                field,
            },
        });
    }

    /// Resolves every `track` against the final services and rejects loops.
    pub(super) fn resolve_tracks(&mut self, services: &mut [Service], pending: &[PendingTrack]) {
        let index: HashMap<(&str, &str), (usize, usize)> = services
            .iter()
            .enumerate()
            .flat_map(|(si, s)| {
                s.backends
                    .iter()
                    .enumerate()
                    .map(move |(bi, b)| ((s.name.as_str(), b.name.as_str()), (si, bi)))
            })
            .collect();
        let mut edges: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
        let mut resolved = Vec::new();
        for p in pending {
            let own_service = services[p.service].name.as_str();
            let text = p.target.v.as_str();
            let (svc, backend) = match text.split_once('/') {
                Some((s, b)) => (s, b),
                None => (own_service, text),
            };
            let target = if svc.is_empty() || backend.is_empty() || backend.contains('/') {
                self.error(
                    p.target.span.clone(),
                    p.target.field.clone(),
                    format!(
                        "track {text:?} is not \"service/backend\" or \"backend\" (a backend of the \
                         same service)"
                    ),
                );
                continue;
            } else {
                index.get(&(svc, backend)).copied()
            };
            let Some(target) = target else {
                let message = if services.iter().any(|s| s.name == svc) {
                    format!("track {text:?}: service {svc:?} has no backend {backend:?}")
                } else {
                    format!("track {text:?}: there is no service {svc:?}")
                };
                self.error(p.target.span.clone(), p.target.field.clone(), message);
                continue;
            };
            if target == (p.service, p.backend) {
                self.error(
                    p.target.span.clone(),
                    p.target.field.clone(),
                    format!("track {text:?} names this backend itself"),
                );
                continue;
            }
            edges.insert((p.service, p.backend), target);
            resolved.push((p, target));
        }
        for (p, target) in resolved {
            // Follow the chain; coming back to the start is a loop nothing could ever check.
            let start = (p.service, p.backend);
            let mut at = target;
            let mut path = vec![start, target];
            let mut looped = false;
            while let Some(&next) = edges.get(&at) {
                if next == start {
                    looped = true;
                    path.push(next);
                    break;
                }
                if path.contains(&next) {
                    break; // a loop further down the chain, reported from its own members
                }
                path.push(next);
                at = next;
            }
            if looped {
                let names: Vec<String> = path
                    .iter()
                    .map(|&(s, b)| format!("{}/{}", services[s].name, services[s].backends[b].name))
                    .collect();
                self.error(
                    p.target.span.clone(),
                    p.target.field.clone(),
                    format!(
                        "track makes a loop ({}); one backend of a loop must have a check of its own",
                        names.join(" -> ")
                    ),
                );
                continue;
            }
            let track = TrackRef {
                service: services[target.0].name.clone(),
                backend: services[target.0].backends[target.1].name.clone(),
            };
            let b = &mut services[p.service].backends[p.backend];
            b.track = Some(track);
            b.health = None;
        }
    }
}

/// A `Host` header value: visible ASCII without spaces.
fn header_value_problem(s: &str) -> Option<String> {
    (s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| "must be visible ASCII without spaces, like \"www.example.com\"".to_owned())
}

/// Why an `expect_status` is not a status range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum StatusRangeError {
    #[error("is not a status or a range; write \"200\" or \"200-399\"")]
    Syntax,
    #[error("is outside the HTTP statuses 100..=599")]
    OutOfRange,
    #[error("starts at {0}, after its end {1}")]
    Reversed(u16, u16),
}

/// `"200"` or `"200-399"`, statuses 100..=599.
fn parse_status_range(s: &str) -> Result<RangeInclusive<u16>, StatusRangeError> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (Ok(lo), Ok(hi)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) else {
        return Err(StatusRangeError::Syntax);
    };
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) {
        return Err(StatusRangeError::OutOfRange);
    }
    if lo > hi {
        return Err(StatusRangeError::Reversed(lo, hi));
    }
    Ok(lo..=hi)
}

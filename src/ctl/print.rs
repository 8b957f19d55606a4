//! How `fulcrum ctl` prints each reply for people: aligned columns, one table per reply.

use std::io::{self, Write};

use fulcrum::api::{BackendsReply, CounterSet, StatsReply, StatusReply, WhichReply};

use super::rates::Rates;

pub(super) fn table(
    out: &mut dyn Write,
    indent: &str,
    header: &[&str],
    right: &[bool],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from(indent);
        for (i, c) in cells.enumerate() {
            let w = width.get(i).copied().unwrap_or(0);
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&format!("{c:>w$}"));
            } else {
                s.push_str(&format!("{c:<w$}"));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for r in rows {
        line(out, &mut r.iter().map(String::as_str))?;
    }
    Ok(())
}

pub(super) fn print_status(out: &mut dyn Write, v: &StatusReply) -> io::Result<()> {
    writeln!(out, "fulcrum {}", v.version)?;
    writeln!(
        out,
        "pid {}, up {:.1} s, snapshot generation {}, {} service(s), {} backend(s), mbufs in \
         use {} of {}",
        v.pid, v.uptime_s, v.generation, v.services, v.backends, v.mbufs_in_use, v.mbufs
    )?;
    let t = &v.flow_tables;
    match (&t.dir, &t.empty) {
        (None, _) => writeln!(out, "flow tables: in memory (not kept across a restart)")?,
        (Some(d), None) => writeln!(
            out,
            "flow tables: {d}, adopted {} entries ({} dropped as inconsistent)",
            t.adopted, t.dropped
        )?,
        (Some(d), Some(why)) => writeln!(out, "flow tables: {d}, started empty: {why}")?,
    }
    let ports: Vec<Vec<String>> = v
        .ports
        .iter()
        .map(|p| {
            let s = p.stats.unwrap_or_default();
            let mac = if p.device_mac.is_empty() || p.device_mac == p.mac {
                p.mac.clone()
            } else {
                format!("{} (device {})", p.mac, p.device_mac)
            };
            vec![
                p.name.clone(),
                p.device.clone(),
                mac,
                p.link.clone().unwrap_or_else(|| "?".into()),
                s.rx_packets.to_string(),
                s.tx_packets.to_string(),
                s.rx_missed.to_string(),
                s.rx_errors.to_string(),
                s.tx_errors.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "",
        &[
            "port",
            "device",
            "mac on the wire",
            "link",
            "rx pkts",
            "tx pkts",
            "missed",
            "rx errors",
            "tx errors",
        ],
        &[false, false, false, false, true, true, true, true, true],
        &ports,
    )?;
    for a in &v.announcements {
        let state = if a.announced {
            "announced"
        } else {
            "withdrawn"
        };
        writeln!(
            out,
            "BGP: service {} VIP {}: {state} ({})",
            a.service, a.vip, a.reason
        )?;
    }
    if let Some(s) = &v.sync {
        print_sync(out, s)?;
    }
    if let Some(k) = &v.kernel {
        writeln!(
            out,
            "exception path: to kernel {} (dropped {}, refused {}, VIP {}, vrrp {}), from kernel {} \
             (dropped {}, refused {}, VIP {}, vrrp {})",
            k.to_kernel,
            k.to_kernel_dropped,
            k.to_kernel_refused,
            k.to_kernel_vip,
            k.vrrp_to_kernel,
            k.from_kernel,
            k.from_kernel_dropped,
            k.from_kernel_refused,
            k.from_kernel_vip,
            k.vrrp_from_kernel
        )?;
    }
    if let Some(r) = &v.vrrp {
        let vips = if r.vips.is_empty() {
            "no VIP with announce = \"vrrp\"".to_string()
        } else {
            let answered = if r.answered {
                "answered"
            } else {
                "not answered"
            };
            format!("VIPs {} {answered} by ARP/ND", r.vips.join(", "))
        };
        let holder = r
            .holder
            .map(|p| format!(", held by keepalived pid {p}"))
            .unwrap_or_default();
        writeln!(
            out,
            "VRRP: {} for {:.1} s{holder}: {vips}; {} transitions, {} gratuitous ARP/NA sent",
            r.state, r.since_s, r.transitions, r.gratuitous_sent
        )?;
    }
    let workers: Vec<Vec<String>> = v
        .workers
        .iter()
        .map(|w| {
            vec![
                w.worker.to_string(),
                w.rx.to_string(),
                w.tx.to_string(),
                w.dropped.to_string(),
                w.flows_active.to_string(),
                w.generation.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "",
        &["worker", "rx", "tx", "dropped", "flows", "generation"],
        &[true; 6],
        &workers,
    )?;
    if !v.local_ports.is_empty() {
        let rows: Vec<Vec<String>> = v
            .local_ports
            .iter()
            .map(|p| {
                vec![
                    p.worker.to_string(),
                    p.address.clone(),
                    p.in_use.to_string(),
                    p.share.to_string(),
                ]
            })
            .collect();
        table(
            out,
            "",
            &["worker", "local address", "ports in use", "of"],
            &[true, false, true, true],
            &rows,
        )?;
    }
    if v.next_hops.is_empty() {
        return Ok(());
    }
    let hops: Vec<Vec<String>> = v
        .next_hops
        .iter()
        .map(|h| {
            vec![
                h.address.clone(),
                h.port.clone(),
                h.state.clone(),
                h.mac.clone().unwrap_or_else(|| "-".into()),
                h.backends.to_string(),
                if h.routes.is_empty() {
                    "on-link".into()
                } else {
                    h.routes.join(", ")
                },
            ]
        })
        .collect();
    table(
        out,
        "",
        &["next hop", "port", "state", "mac", "backends", "routes"],
        &[false, false, false, false, true, false],
        &hops,
    )
}

fn port_text(p: Option<u16>) -> String {
    p.map_or_else(|| "*".into(), |p| p.to_string())
}

pub(super) fn print_services(out: &mut dyn Write, v: &BackendsReply) -> io::Result<()> {
    let rows: Vec<Vec<String>> = v
        .services
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                format!("{}:{}", s.vip, port_text(s.port)),
                s.protocol.clone(),
                s.forwarding.clone(),
                s.tier.clone(),
                format!("{}/{}", s.members, s.backends.len()),
                s.flows_established.to_string(),
                s.flows_other.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "",
        &[
            "service", "vip", "proto", "mode", "tier", "usable", "active", "inact",
        ],
        &[false, false, false, false, false, true, true, true],
        &rows,
    )
}

pub(super) fn print_backends(out: &mut dyn Write, v: &BackendsReply) -> io::Result<()> {
    for s in &v.services {
        writeln!(
            out,
            "service {} {}:{} {} {}: {} tier, {} of {} usable, {} active, {} inact",
            s.service,
            s.vip,
            port_text(s.port),
            s.protocol,
            s.forwarding,
            s.tier,
            s.members,
            s.backends.len(),
            s.flows_established,
            s.flows_other
        )?;
        if let Some(why) = &s.announce_reason {
            let state = if s.announced {
                "announced"
            } else {
                "withdrawn"
            };
            writeln!(out, "  BGP: {state} ({why})")?;
        }
        let rows: Vec<Vec<String>> = s
            .backends
            .iter()
            .map(|b| {
                let last = match (b.last_check.as_deref(), b.last_check_ms) {
                    (Some("ok"), Some(ms)) => format!("ok in {ms:.1} ms"),
                    (Some(_), Some(ms)) => format!(
                        "failed ({}) after {ms:.1} ms",
                        b.last_check_failure.as_deref().unwrap_or("?")
                    ),
                    _ if !b.checked => "not checked".into(),
                    _ => "none yet".into(),
                };
                // The admin state when it matters; `*`: an operator's override.
                let mark = if b.admin_override.is_some() { "*" } else { "" };
                let state = if b.admin == "enabled" && b.admin_override.is_none() {
                    b.state.clone()
                } else {
                    format!("{} ({}{mark})", b.state, b.admin)
                };
                vec![
                    b.backend.clone(),
                    b.address.clone(),
                    state,
                    b.weight.to_string(),
                    b.flows_established.to_string(),
                    b.flows_other.to_string(),
                    b.packets.to_string(),
                    b.bytes.to_string(),
                    b.new_flows.to_string(),
                    b.checks.unwrap_or(0).to_string(),
                    b.check_failures.unwrap_or(0).to_string(),
                    last,
                ]
            })
            .collect();
        table(
            out,
            "  ",
            &[
                "backend",
                "address",
                "state",
                "weight",
                "active",
                "inact",
                "packets",
                "bytes",
                "new flows",
                "checks",
                "failures",
                "last check",
            ],
            &[
                false, false, false, true, true, true, true, true, true, true, true, false,
            ],
            &rows,
        )?;
    }
    Ok(())
}

/// One line per `which` answer (online and offline alike).
pub fn print_which(out: &mut dyn Write, v: &WhichReply) -> io::Result<()> {
    // "via gateway 10.0.0.1 on port lan" / "on-link on port lan".
    let path = match (&v.next_hop, &v.port) {
        (Some(hop), Some(port)) if Some(hop) == v.backend_address.as_ref() => {
            format!(", on-link on port {port}")
        }
        (Some(hop), Some(port)) => format!(", via gateway {hop} on port {port}"),
        _ => String::new(),
    };
    match (&v.service, &v.backend, v.slot) {
        (None, _, _) => writeln!(out, "{}: no service", v.flow),
        (Some(s), None, _) => writeln!(out, "{}: service {s}: empty pool (refused)", v.flow),
        (Some(s), Some(b), None) => {
            writeln!(
                out,
                "{}: service {s}: backend {b}{path} ({}){}",
                v.flow,
                v.reason,
                encap_text(v)
            )
        }
        (Some(s), Some(b), Some(slot)) => {
            let mut why = format!(
                "new flow: Maglev slot {slot}, {} tier",
                v.tier.as_deref().unwrap_or("?")
            );
            if let Some(g) = v.generation {
                why += &format!(", generation {g}");
            }
            if let Some(a) = &v.assumed {
                why += &format!("; assuming {a}");
            }
            writeln!(
                out,
                "{}: service {s}: backend {b}{path} ({why}){}",
                v.flow,
                encap_text(v)
            )
        }
    }
}

/// `, via ipip 10.0.0.2 -> 10.2.0.5` for a tunnelled flow, `, from local 10.0.0.2:20345` for
/// a FullNAT one, else nothing.
fn encap_text(v: &WhichReply) -> String {
    let via = v
        .encap
        .as_ref()
        .map_or_else(String::new, |e| format!(", via {e}"));
    let local = v
        .local
        .as_ref()
        .map_or_else(String::new, |l| format!(", from local {l}"));
    via + &local
}

/// `; backends added: b3 (not yet up: b3 down, takes new flows once up); removed: b1` for a
/// service whose backends a reload changed, else nothing.
pub fn backend_changes(s: &fulcrum::api::ServiceChange) -> String {
    let mut t = String::new();
    if !s.backends_added.is_empty() {
        t += &format!("; backends added: {}", s.backends_added.join(", "));
        if !s.not_yet_up.is_empty() {
            t += &format!(
                " (not yet up: {}; new flows once up)",
                s.not_yet_up.join(", ")
            );
        }
    }
    if !s.backends_removed.is_empty() {
        t += &format!("; backends removed: {}", s.backends_removed.join(", "));
    }
    t
}

/// Instance sync in a few lines: what is held, sent, and what each peer sent.
fn print_sync(out: &mut dyn Write, s: &fulcrum::api::SyncStatus) -> io::Result<()> {
    writeln!(
        out,
        "sync (udp {}): {} local, {} learnt ({} in use), sent {} messages / {} bytes, backlog {}{}",
        s.port,
        s.local,
        s.learnt,
        s.published,
        s.messages_sent,
        s.bytes_sent,
        s.backlog,
        if s.waiting {
            ", waiting for peers before announcing"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "sync dropped: no room {}, expired {}, unknown source {}, rate limited {}, unknown backend {}, send failed {}",
        s.dropped_no_room,
        s.expired,
        s.unknown_source,
        s.rate_limited,
        s.unknown_backend,
        s.send_failed
    )?;
    for p in &s.peers {
        writeln!(
            out,
            "sync peer {}: holds {}, accepted {} ({} entries, {} requests), refused: unauthenticated {}, replayed {}, stale {}, malformed {}",
            p.address,
            p.held,
            p.messages,
            p.entries,
            p.requests,
            p.unauthenticated,
            p.replayed,
            p.stale,
            p.malformed
        )?;
    }
    Ok(())
}

pub(super) fn print_stats(out: &mut dyn Write, v: &StatsReply) -> io::Result<()> {
    let t = &v.totals;
    let mut header = vec!["counter".to_string()];
    header.extend((0..v.workers.len()).map(|i| format!("worker{i}")));
    header.push("total".into());
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |name: String, f: &dyn Fn(&CounterSet) -> u64| {
        let mut r = vec![name];
        r.extend(v.workers.iter().map(|w| f(w).to_string()));
        r.push(f(t).to_string());
        rows.push(r);
    };
    for k in t.counters.keys() {
        row(k.clone(), &|c| c.get(k));
    }
    row("dropped".into(), &|c| c.dropped);
    for (r, n) in &t.drops {
        if *n > 0 {
            row(format!("drop:{r}"), &|c| {
                c.drops.get(r).copied().unwrap_or(0)
            });
        }
    }
    let mut right = vec![true; header.len()];
    right[0] = false;
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(out, "", &header, &right, &rows)?;
    for p in &v.ports {
        let s = p.stats.unwrap_or_default();
        writeln!(
            out,
            "port {}: rx {} pkts {} bytes, tx {} pkts {} bytes, missed {}",
            p.name, s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes, s.rx_missed
        )?;
    }
    Ok(())
}

pub(super) fn print_rates(out: &mut dyn Write, v: &Rates) -> io::Result<()> {
    let mut line = format!("t={:>8.1}s", v.uptime_s);
    for p in &v.ports {
        line += &format!(
            "  {}: rx {:.0}/s tx {:.0}/s ({:.2}/{:.2} Mbit/s)",
            p.port,
            p.rx_pps,
            p.tx_pps,
            p.rx_bps / 1e6,
            p.tx_bps / 1e6,
        );
    }
    for w in &v.workers {
        line += &format!(
            "  w{}: rx {:.0}/s drop {:.0}/s new flows {:.0}/s flows {}",
            w.worker, w.rx_pps, w.drop_pps, w.new_flows_per_s, w.flows_active
        );
    }
    writeln!(out, "{line}")?;
    for s in v.services.iter().chain(&v.backends) {
        if s.pps > 0.0 || s.new_flows_per_s > 0.0 {
            let (indent, name) = match &s.backend {
                None => ("  service ", s.service.clone()),
                Some(b) => ("    ", format!("{}/{b}", s.service)),
            };
            writeln!(
                out,
                "{indent}{name}: {:.0} pkt/s, {:.2} Mbit/s, {:.0} new flows/s",
                s.pps,
                s.bps / 1e6,
                s.new_flows_per_s,
            )?;
        }
    }
    Ok(())
}

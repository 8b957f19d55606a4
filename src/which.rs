//! `fulcrum which`: where a config sends a flow, computed offline exactly as a worker does on
//! a flow-table miss (Maglev over the usable backends), assuming every backend is healthy and
//! its MAC known. Operators use it to predict placement; the tests use it to check that every
//! live connection landed where the config says.

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use dataplane::flow::FlowKey;
use dataplane::snapshot::{Choice, Tier};
use slowpath::publish::{BackendIds, Dynamic, build};

pub(crate) fn parse_flow(line: &str) -> Result<FlowKey, String> {
    let mut it = line.split_whitespace();
    let src: SocketAddr = it
        .next()
        .ok_or("missing SRC:PORT")?
        .parse()
        .map_err(|e| format!("SRC:PORT: {e}"))?;
    let dst: SocketAddr = it
        .next()
        .ok_or("missing DST:PORT")?
        .parse()
        .map_err(|e| format!("DST:PORT: {e}"))?;
    let proto = match it.next().unwrap_or("tcp") {
        "tcp" => 6,
        "udp" => 17,
        p => return Err(format!("protocol {p:?}: expected tcp or udp")),
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ok(FlowKey::v4(
            s.octets(),
            d.octets(),
            src.port(),
            dst.port(),
            proto,
        )),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ok(FlowKey::v6(
            s.octets(),
            d.octets(),
            src.port(),
            dst.port(),
            proto,
        )),
        _ => Err("source and destination must be of one address family".into()),
    }
}

/// Prints one line per flow (from `flows`, or stdin when empty).
pub fn which(config: &Path, flows: &[String], json: bool) -> Result<(), String> {
    let cfg = conf::load(config).map_err(|e| e.to_string())?;
    // Healthy and resolved: the placement the config asks for.
    let mut dynamic = Dynamic::default();
    for s in &cfg.services {
        for b in &s.backends {
            dynamic.neighbors.insert(b.address, [2, 0, 0, 0, 0, 1]);
        }
    }
    let snap = build(&cfg, &mut BackendIds::new(), &dynamic, 1);
    let lines: Vec<String> = if flows.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .collect()
    } else {
        flows.to_vec()
    };
    for line in lines {
        let key = parse_flow(&line).map_err(|e| format!("{line:?}: {e}"))?;
        let choice = snap.choose(&key);
        let (service, backend, slot, tier) = match choice {
            Choice::NoService => (None, None, None, None),
            Choice::Empty { service } => (Some(service), None, None, None),
            Choice::Backend {
                service,
                backend,
                slot,
                tier,
            } => (Some(service), Some(backend), Some(slot), Some(tier)),
        };
        let service = service.map(|s| snap.services[s as usize].name.clone());
        let backend = backend
            .and_then(|b| snap.backend(b))
            .map(|b| b.name.clone());
        let tier = tier.map(|t| match t {
            Tier::Primary => "primary",
            Tier::Backup => "backup",
            Tier::Empty => "empty",
        });
        if json {
            println!(
                "{}",
                serde_json::json!({ "flow": line.trim(), "service": service, "backend": backend, "slot": slot, "tier": tier })
            );
        } else {
            match (&service, &backend) {
                (None, _) => println!("{}: no service", line.trim()),
                (Some(s), None) => println!("{}: service {s}: empty pool (refused)", line.trim()),
                (Some(s), Some(b)) => println!(
                    "{}: service {s}: backend {b} (Maglev slot {}, {} tier)",
                    line.trim(),
                    slot.unwrap_or(0),
                    tier.unwrap_or("?")
                ),
            }
        }
    }
    Ok(())
}

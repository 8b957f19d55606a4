//! Live reload: read the config file again, refuse it if invalid (keeping the running one)
//! or if it changes a field that needs a restart, otherwise hand it to the slow path and
//! report what moved (services added and removed, Maglev entries changed per service).

use dataplane::engine::Engine;
use dataplane::maglev;
use dataplane::snapshot::Snapshot;
use serde_json::{Value, json};
use slowpath::SlowPath;

use conf::Config;

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
                ("addresses", a.addresses != b.addresses),
                ("neighbors", a.neighbors != b.neighbors),
            ];
            for (f, _) in fields.iter().filter(|(_, c)| *c) {
                v.push(format!("port[{i}] ({}).{f}", a.name));
            }
        }
    }
    v
}

/// What a reload did, per service: added, removed, changed (with its Maglev entries moved)
/// or unchanged.
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

/// Per-service differences between two snapshots: `[{service, change, maglev_entries_changed}]`.
pub fn service_changes(old: &Snapshot, new: &Snapshot) -> Vec<Value> {
    let mut out = Vec::new();
    for (ni, ns) in new.services.iter().enumerate() {
        match old.services.iter().position(|o| o.name == ns.name) {
            None => out.push(json!({
                "service": ns.name, "change": "added",
                "maglev_entries_changed": ns.maglev.size(),
            })),
            Some(oi) => {
                let om = maglev_members(old, oi);
                let nm = maglev_members(new, ni);
                let changed = old.services[oi]
                    .maglev
                    .changed_entries(&om, &ns.maglev, &nm);
                out.push(json!({
                    "service": ns.name,
                    "change": if changed > 0 { "changed" } else { "unchanged" },
                    "maglev_entries_changed": changed,
                    "maglev_size": ns.maglev.size(),
                }));
            }
        }
    }
    for os in &old.services {
        if !new.services.iter().any(|n| n.name == os.name) {
            out.push(json!({
                "service": os.name, "change": "removed",
                "maglev_entries_changed": os.maglev.size(),
            }));
        }
    }
    out
}

/// Re-reads the running config's file and applies it live. `Err` says why nothing changed:
/// the file's errors (file:line:col each) or the fields that need a restart.
pub fn reload(engine: &mut Engine, slow: &mut SlowPath) -> Result<Value, String> {
    let path = slow.config().path.clone();
    let new = conf::load(&path).map_err(|e| {
        format!(
            "reload refused, the running config stays in force: {}: invalid:\n{e}",
            path.display()
        )
    })?;
    let restart = restart_fields(slow.config(), &new);
    if !restart.is_empty() {
        return Err(format!(
            "reload refused, the running config stays in force: {} changes field(s) that \
             need a restart: {}",
            path.display(),
            restart.join(", ")
        ));
    }
    let before = engine.snapshots.load_full();
    let generation = slow.reconfigure(&new, engine);
    let after = engine.snapshots.load_full();
    let services = service_changes(&before, &after);
    for s in &services {
        tracing::info!(
            service = s["service"].as_str().unwrap_or(""),
            change = s["change"].as_str().unwrap_or(""),
            maglev_entries_changed = s["maglev_entries_changed"].as_u64().unwrap_or(0),
            "reload"
        );
    }
    Ok(json!({
        "config": path.display().to_string(),
        "generation": generation,
        "summary": new.summary(),
        "services": services,
    }))
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
        let ids = &mut dataplane::snapshot::BackendIds::new();
        let d = dataplane::snapshot::Dynamic::default();
        let two = BASE.to_string()
            + "[[service.backend]]\nname = \"b2\"\naddress = \"10.0.0.12\"\nmac = \"02:00:00:00:00:12\"\n";
        let a = Snapshot::build(&parse(&two), ids, &d, 1);
        let b = Snapshot::build(&parse(&two), ids, &d, 2);
        let c = Snapshot::build(&parse(BASE), ids, &d, 3);
        let same = service_changes(&a, &b);
        assert_eq!(same[0]["change"], "unchanged");
        assert_eq!(same[0]["maglev_entries_changed"], 0);
        let removed = service_changes(&a, &c);
        let n = removed[0]["maglev_entries_changed"].as_u64().unwrap();
        // Only b2's slots move: about half the table.
        assert!(n > 0 && n < 65537, "{n}");
        assert_eq!(removed[0]["change"], "changed");
    }
}

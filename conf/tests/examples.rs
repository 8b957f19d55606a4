//! Every example configuration in `conf/examples/` must load, and means what its comments say.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use conf::{AdminState, Config, Forwarding, HashKey, OnEmpty, Protocol, ProxyProtocol};

fn example(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    conf::load(&path).unwrap_or_else(|e| panic!("{name}:\n{e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn every_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let c = conf::load(&file).unwrap_or_else(|e| panic!("{}:\n{e}", file.display()));
        assert_eq!(c.path, file);
    }
}

#[test]
fn minimal_takes_every_default() {
    let c = example("minimal.toml");
    assert_eq!(c.dpdk, conf::Dpdk::default());
    assert_eq!(c.global, conf::Global::default());
    assert_eq!(c.global.maglev_table_size, 65537);
    assert_eq!(c.ports[0].mtu, conf::Port::DEFAULT_MTU);
    let s = &c.services[0];
    assert_eq!(
        (s.protocol, s.forwarding, s.hash, s.on_empty),
        (
            Protocol::Tcp,
            Forwarding::Dsr,
            HashKey::FiveTuple,
            OnEmpty::Reset
        )
    );
    assert_eq!(s.port, Some(80));
    let b = &s.backends[0];
    assert_eq!(
        (b.weight, b.backup, b.admin, b.port, b.mac),
        (100, false, AdminState::Enabled, None, None)
    );
}

#[test]
fn dsr_has_weighted_backends_and_a_backup() {
    let c = example("dsr.toml");
    assert_eq!(c.dpdk.workers, vec![2, 3]);
    assert_eq!(c.dpdk.slowpath_cpu, Some(1));
    assert_eq!(c.global.hash_seed, 7);
    assert_eq!(
        c.global.metrics_listen,
        Some("127.0.0.1:9180".parse().unwrap())
    );
    assert_eq!(c.ports.len(), 1);
    assert_eq!(
        c.ports[0].neighbors,
        vec![(ip("10.0.0.1"), "02:00:00:00:00:fe".parse().unwrap())]
    );
    assert_eq!(c.services.len(), 2);
    let http = &c.services[0];
    assert_eq!(
        (http.name.as_str(), http.vip, http.port),
        ("web-http", ip("10.0.0.100"), Some(80))
    );
    assert!(c.services.iter().all(|s| s.forwarding == Forwarding::Dsr));
    let weights: Vec<u32> = http.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, vec![200, 100, 100, 100]);
    assert_eq!(http.backends.iter().filter(|b| b.backup).count(), 1);
    assert_eq!(http.backends[2].admin, AdminState::Drain);
    assert_eq!(c.services[1].hash, HashKey::SourceIp);
}

#[test]
fn nat_backends_have_ports() {
    let c = example("nat.toml");
    let api = &c.services[0];
    assert_eq!(api.forwarding, Forwarding::Nat);
    assert_eq!(
        api.backends.iter().map(|b| b.port).collect::<Vec<_>>(),
        vec![Some(8443), Some(8443), Some(9443)]
    );
    let dns = &c.services[1];
    assert_eq!((dns.protocol, dns.port), (Protocol::Udp, Some(53)));
    assert!(dns.backends.iter().all(|b| b.port.is_none()));
    assert_eq!(c.global.timeouts.udp, 30);
    assert_eq!(c.global.timeouts.tcp_established, 900);
    assert_eq!(c.global.flow_table_capacity, 4_194_304);
    assert!(c.services[2].vip.is_ipv6() && c.services[2].backends[0].address.is_ipv6());
}

/// FullNAT's local addresses: the listed ones, of each backend's family; else the own
/// addresses of that family on the port that reaches the backend (through a route too).
#[test]
fn fullnat_locals_are_listed_or_the_egress_ports() {
    let c = example("fullnat.toml");
    assert_eq!(c.global.fullnat.local_ports, 1024..=32767);
    assert_eq!(c.global.fullnat.port_quiet_ms, 2000);
    let web = &c.services[0];
    assert_eq!(web.forwarding, Forwarding::FullNat);
    assert_eq!(
        c.fullnat_locals(web, web.backends[0].address),
        vec![ip("10.1.0.1"), ip("10.1.0.2")]
    );
    let dns = &c.services[1];
    assert_eq!(
        c.fullnat_locals(dns, dns.backends[0].address),
        vec![ip("10.1.0.1"), ip("10.1.0.2")],
        "the inside port's IPv4 addresses"
    );
    let v6 = &c.services[2];
    assert_eq!(
        c.fullnat_locals(v6, v6.backends[0].address),
        vec![ip("2001:db8:1::1")]
    );
    let pp = &c.services[3];
    assert_eq!(
        (pp.name.as_str(), pp.proxy_protocol),
        ("web-proxy", Some(ProxyProtocol::V2))
    );
    assert!(c.services[..3].iter().all(|s| s.proxy_protocol.is_none()));
}

#[test]
fn reference_sets_every_key() {
    let c = example("reference.toml");
    assert_eq!(
        c.dpdk.eal_args,
        ["--file-prefix", "fulcrum", "--socket-mem", "1024"]
    );
    assert_eq!(c.dpdk.slowpath_cpu, Some(0));
    assert_eq!(c.global.hash_seed, 1);
    assert_eq!(c.ports[0].mac, Some("02:00:00:00:00:01".parse().unwrap()));
    assert_eq!(c.ports[0].addresses.len(), 2);
    let b = &c.services[0].backends[0];
    assert_eq!(b.mac, Some("02:00:00:00:00:11".parse().unwrap()));
    let s = c.global.sync.as_ref().expect("[global.sync] with peers");
    assert_eq!(s.peers, [ip("10.0.0.3")]);
    assert_eq!((s.port, s.refresh_ms, s.expiry_ms), (7600, 5000, 15000));
    assert!(s.key_file.ends_with("examples/sync.key.example"));
    assert!(s.key.0.len() >= conf::SyncSettings::MIN_KEY_LEN);
}

/// reference.toml documents every key the schema accepts. The key lists come from the schema
/// itself: an unknown key in each table makes the shape check list the keys it expected.
#[test]
fn reference_mentions_every_key() {
    let reference = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reference.toml"),
    )
    .unwrap();
    let port = "[[port]]\nname = \"p\"\ndevice = \"d\"\n";
    let service = "[[service]]\nname = \"s\"\nvip = \"10.0.0.100\"\n";
    let probes = [
        "zz_unknown = 1\n".to_owned(),
        "[dpdk]\nzz_unknown = 1\n".to_owned(),
        "[global]\nzz_unknown = 1\n".to_owned(),
        "[global.timeouts]\nzz_unknown = 1\n".to_owned(),
        "[global.health]\nzz_unknown = 1\n".to_owned(),
        "[global.neighbors]\nzz_unknown = 1\n".to_owned(),
        format!("{service}[service.health]\nzz_unknown = 1\n"),
        format!(
            "{service}[[service.backend]]\nname = \"b\"\naddress = \"10.0.0.11\"\n[service.backend.health]\nzz_unknown = 1\n"
        ),
        format!("{port}zz_unknown = 1\n"),
        format!(
            "{port}neighbors = [{{ ip = \"10.0.0.1\", mac = \"02:00:00:00:00:01\", zz_unknown = 1 }}]\n"
        ),
        format!("{service}zz_unknown = 1\n"),
        format!(
            "{service}[[service.backend]]\nname = \"b\"\naddress = \"10.0.0.11\"\nzz_unknown = 1\n"
        ),
    ];
    let mut checked = 0;
    for probe in probes {
        let err = conf::parse(&probe, Path::new("probe.toml")).unwrap_err();
        // Every error of the probe is reported (e.g. no [[port]] too): take the unknown key's.
        let message = &err
            .diagnostics()
            .iter()
            .find(|d| d.message.starts_with("unknown key `zz_unknown`"))
            .unwrap_or_else(|| panic!("{err}"))
            .message;
        let (_, expected) = message
            .split_once("expected")
            .unwrap_or_else(|| panic!("{message}"));
        for key in expected.split('`').skip(1).step_by(2) {
            checked += 1;
            assert!(
                reference.contains(&format!("{key} = "))
                    || reference.contains(&format!("[{key}]"))
                    || reference.contains(&format!(".{key}]"))
                    || reference.contains(&format!("[[{key}]]"))
                    || reference.contains(&format!("[[service.{key}]]")),
                "reference.toml does not document `{key}`"
            );
        }
    }
    assert!(checked >= 30, "only {checked} keys found");
}

/// A backend's `[service.backend.health]` overrides its service's table key by key; `track`
/// replaces the check; the global health and neighbour tables are read.
#[test]
fn reference_health_checks_resolve() {
    use conf::{CheckKind, HealthCheck, HttpCheck, TrackRef};
    let c = example("reference.toml");
    assert_eq!(c.global.health.source_ports, 61000..=65000);
    assert_eq!(c.global.neighbors.refresh_ms, 30000);
    assert_eq!(c.global.neighbors.retry_ms, 1000);
    let web = &c.services[0];
    assert_eq!(
        web.on_change.as_deref(),
        Some("/usr/local/bin/announce-vip")
    );
    assert_eq!(
        web.state_file.as_deref(),
        Some(Path::new("/run/fulcrum/web.state"))
    );
    // web-1: the agent on 5555, with the service's interval, timeout, rise and fall.
    assert_eq!(
        web.backends[0].health,
        Some(HealthCheck {
            kind: CheckKind::Agent {
                send: Some("status\n".into())
            },
            port: 5555,
            interval_ms: 2000,
            timeout_ms: 1000,
            rise: 2,
            fall: 3,
            through_tunnel: false,
        })
    );
    // web-2 follows tls-1 and has no check of its own.
    assert_eq!(web.backends[1].health, None);
    assert_eq!(
        web.backends[1].track,
        Some(TrackRef {
            service: "web-tls".into(),
            backend: "tls-1".into()
        })
    );
    let tls = &c.services[1].backends[0];
    assert_eq!(
        tls.health
            .as_ref()
            .map(|h| (&h.kind, h.port, h.interval_ms)),
        Some((
            &CheckKind::TlsHello {
                sni: Some("www.example.com".into())
            },
            443,
            1000
        ))
    );
    // An http check with every default: GET / with the backend's address as Host, 200-399.
    let text = "[[port]]\nname = \"p\"\ndevice = \"d\"\naddresses = [\"10.0.0.2/24\"]\n\
                [[service]]\nname = \"s\"\nvip = \"10.0.0.100\"\nport = 80\n\
                [service.health]\ntype = \"http\"\n\
                [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\n\
                [[service.backend]]\nname = \"b\"\naddress = \"10.0.0.12\"\n\
                [service.backend.health]\ntype = \"none\"\n";
    let c = conf::parse(text, Path::new("t.toml")).unwrap();
    assert_eq!(
        c.services[0].backends[0].health,
        Some(HealthCheck {
            kind: CheckKind::Http(HttpCheck {
                method: "GET".into(),
                path: "/".into(),
                host: None,
                expect: 200..=399,
            }),
            port: 80,
            interval_ms: 2000,
            timeout_ms: 1000,
            rise: 2,
            fall: 3,
            through_tunnel: false,
        })
    );
    assert_eq!(c.services[0].backends[1].health, None);
}

#[test]
fn tunnel_is_an_l4_tier_in_front_of_l7_nodes() {
    let c = example("tunnel.toml");
    let by_name = |n: &str| c.services.iter().find(|s| s.name == n).unwrap();
    let https = by_name("www-https");
    assert_eq!(https.forwarding, Forwarding::Ipip);
    assert_eq!(https.tunnel_source, Some(ip("10.20.0.2")));
    let http = by_name("www-http");
    assert_eq!((http.forwarding, http.gue_port), (Forwarding::Gue, 6080));
    assert_eq!(http.tunnel_source, None);
    // Without tunnel_source, each backend's outer source is the L7-facing port's address of
    // its family.
    assert_eq!(
        c.tunnel_source(http, http.backends[0].address),
        Some(ip("10.20.0.2"))
    );
    let v6 = by_name("www6-https");
    assert_eq!(v6.forwarding, Forwarding::Ipip);
    assert_eq!(
        c.tunnel_source(v6, v6.backends[0].address),
        Some(ip("2001:db8:20::2"))
    );
    assert_eq!(
        c.services.iter().map(|s| s.backends.len()).sum::<usize>(),
        7
    );
}

#[test]
fn vrrp_follows_keepalived_over_the_kernel_interface() {
    let c = example("vrrp.toml");
    assert_eq!(c.ports[0].kernel_interface.as_deref(), Some("fulcrum0"));
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.services[0].announce, conf::Announce::Vrrp);
    assert_eq!(c.services[0].forwarding, Forwarding::Dsr);
    // packaging/keepalived.conf speaks VRRP on that interface, for that VIP.
    let keepalived = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/keepalived.conf"),
    )
    .unwrap();
    assert!(keepalived.contains("interface fulcrum0"));
    assert!(keepalived.contains(&format!("{}/32 dev fulcrum0", c.services[0].vip)));
}

//! Validation across tables: every error of a file in one pass, each at its value.

use super::*;
use crate::{ConfigError, parse};
use std::path::Path;

const PORT: &str =
    "[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\naddresses = [\"10.0.0.2/24\"]\n";

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text, Path::new("t.toml")) {
        Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics,
        other => panic!("expected diagnostics, got {other:?}"),
    }
}

fn has(diags: &[Diagnostic], line: usize, field: &str, needle: &str) {
    assert!(
        diags
            .iter()
            .any(|d| d.line == line && d.field == field && d.message.contains(needle)),
        "no diagnostic at line {line} for {field} containing {needle:?} in:\n{}",
        diags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn is_prime_matches_trial_division() {
    let slow = |n: u32| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
    for n in 0..20_000 {
        assert_eq!(is_prime(n), slow(n), "{n}");
    }
    for n in [65537, 655_373, 16_777_213, 4_294_967_291] {
        assert!(is_prime(n), "{n}");
    }
    // Strong pseudoprimes to some of the bases, and the largest u32.
    for n in [
        3_215_031_751,
        2_152_302_898_747u64 as u32,
        65536,
        16_777_215,
        u32::MAX,
    ] {
        assert_eq!(is_prime(n), slow(n), "{n}");
    }
}

#[test]
fn reports_every_error_at_once() {
    let text = format!(
        "[dpdk]\nworkers = [1, 2, 1]\nslowpath_cpu = 2\nburst = 0\nrx_descriptors = 1000\n\
         [global]\nmaglev_table_size = 65536\n[global.timeouts]\nudp = 0\n{PORT}\
         [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"sctp\"\n\
         [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\nweight = 0\n\
         [[service.backend]]\nname = \"a\"\naddress = \"10.0.0.11\"\n\
         [[service]]\nname = \"web\"\nvip = \"10.0.0.2\"\n"
    );
    let d = errors(&text);
    has(&d, 2, "dpdk.workers[2]", "CPU 1 is already worker 0");
    has(
        &d,
        3,
        "dpdk.slowpath_cpu",
        "slowpath_cpu 2 is also worker 1's CPU",
    );
    has(&d, 4, "dpdk.burst", "burst 0 is out of range 1..=64");
    has(
        &d,
        5,
        "dpdk.rx_descriptors",
        "not a power of two; use 512 or 1024",
    );
    has(
        &d,
        7,
        "global.maglev_table_size",
        "nearest primes are 65521 and 65537",
    );
    has(
        &d,
        9,
        "global.timeouts.udp",
        "udp 0 is out of range 1..=86400",
    );
    has(&d, 18, "service[0].protocol", "use \"tcp\" or \"udp\"");
    has(
        &d,
        22,
        "service[0].backend[0].weight",
        "weight 0 is out of range 1..=10000",
    );
    has(
        &d,
        24,
        "service[0].backend[1].name",
        "backend name \"a\" is already used by backend[0] (line 20)",
    );
    has(
        &d,
        25,
        "service[0].backend[1].address",
        "backend 10.0.0.11 is already backend[0]",
    );
    has(
        &d,
        27,
        "service[1].name",
        "service name \"web\" is already used by service[0] (line 15)",
    );
    has(
        &d,
        28,
        "service[1].vip",
        "the balancer's own address on port \"lan0\"",
    );
    assert_eq!(d.len(), 12, "{d:#?}");
}

#[test]
fn vip_overlaps() {
    let text = format!(
        "{PORT}\
         [[service]]\nname = \"a\"\nvip = \"10.0.0.100\"\nport = 80\n\
         [[service]]\nname = \"b\"\nvip = \"10.0.0.100\"\nport = 80\n\
         [[service]]\nname = \"c\"\nvip = \"10.0.0.100\"\n\
         [[service]]\nname = \"d\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"udp\"\n\
         [[service]]\nname = \"e\"\nvip = \"10.0.0.101\"\n\
         [[service]]\nname = \"f\"\nvip = \"10.0.0.101\"\nport = 443\n"
    );
    let d = errors(&text);
    has(
        &d,
        12,
        "service[1].port",
        "listens on tcp 10.0.0.100:80 like service \"a\" (line 7)",
    );
    has(
        &d,
        15,
        "service[2].vip",
        "takes every tcp port of 10.0.0.100, which overlaps service \"a\"",
    );
    has(
        &d,
        27,
        "service[5].port",
        "tcp port 443 of 10.0.0.101 is already served by service \"e\"",
    );
    // udp/80 on the same VIP is a different service key: no error for "d".
    assert_eq!(d.len(), 3, "{d:#?}");
}

#[test]
fn backend_addressing() {
    let text = format!(
        "{PORT}\
         [[service]]\nname = \"n\"\nvip = \"10.0.0.100\"\nforwarding = \"nat\"\n\
         [[service.backend]]\nname = \"v6\"\naddress = \"2001:db8::1\"\n\
         [[service.backend]]\nname = \"far\"\naddress = \"192.0.2.1\"\n\
         [[service.backend]]\nname = \"zero\"\naddress = \"10.0.0.12\"\nport = 0\n\
         [[service.backend]]\nname = \"self\"\naddress = \"10.0.0.2\"\n\
         [[service]]\nname = \"d\"\nvip = \"10.0.0.101\"\n\
         [[service.backend]]\nname = \"p\"\naddress = \"10.0.0.13\"\nport = 8080\n\
         [[service.backend]]\nname = \"loop\"\naddress = \"10.0.0.100\"\n"
    );
    let d = errors(&text);
    has(
        &d,
        11,
        "service[0].backend[0].address",
        "is IPv6 but the VIP 10.0.0.100 is IPv4",
    );
    has(
        &d,
        14,
        "service[0].backend[1].address",
        "no route reaches backend address 192.0.2.1: it is in no IPv4 subnet of any [[port]] \
         (10.0.0.2/24)",
    );
    has(
        &d,
        18,
        "service[0].backend[2].port",
        "port 0 is not a valid NAT target",
    );
    has(
        &d,
        21,
        "service[0].backend[3].address",
        "the balancer's own address",
    );
    has(
        &d,
        28,
        "service[1].backend[0].port",
        "needs forwarding = \"nat\"",
    );
    has(
        &d,
        31,
        "service[1].backend[1].address",
        "is the VIP of service \"n\"",
    );
    assert_eq!(d.len(), 6, "{d:#?}");
}

#[test]
fn port_errors() {
    let text = "[[port]]\nname = \"a b\"\ndevice = \"x\"\nmac = \"01:00:5e:00:00:01\"\n\
                addresses = [\"10.0.0.0/24\", \"10.0.1.1\", \"10.0.2.1/33\"]\n\
                neighbors = [{ ip = \"10.9.9.9\", mac = \"02:00:00:00:00:09\" }]\n\
                [[port]]\nname = \"b\"\ndevice = \"x\"\n";
    let d = errors(text);
    has(&d, 2, "port[0].name", "may contain only");
    has(&d, 4, "port[0].mac", "multicast");
    has(&d, 5, "port[0].addresses[0]", "network address");
    has(
        &d,
        5,
        "port[0].addresses[1]",
        "needs a prefix length, e.g. \"10.0.1.1/24\"",
    );
    has(
        &d,
        5,
        "port[0].addresses[2]",
        "prefix length \"33\" must be a number in 0..=32",
    );
    has(
        &d,
        9,
        "port[1].device",
        "device \"x\" is already used by port[0] (line 3)",
    );
    // Port addresses were invalid, so the on-link check of the neighbour is skipped.
    assert_eq!(d.len(), 6, "{d:#?}");
}

/// IPv4 10.0.0.x and IPv6 a00:x:: share their leading bytes; they are still different
/// addresses: no "already served", "own address" or "is the VIP" error between them.
#[test]
fn same_bytes_in_two_families_do_not_collide() {
    let text = "[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\n\
                addresses = [\"10.0.0.2/24\", \"a00:1:0:1::2/16\"]\n\
                [[service]]\nname = \"web4\"\nvip = \"10.0.0.1\"\nport = 80\n\
                [[service.backend]]\nname = \"b\"\naddress = \"10.0.0.21\"\n\
                [[service]]\nname = \"web6\"\nvip = \"a00:1::\"\nport = 80\n\
                [[service.backend]]\nname = \"b\"\naddress = \"a00:15::\"\n\
                [[service]]\nname = \"all4\"\nvip = \"10.0.0.3\"\n\
                [[service]]\nname = \"all6\"\nvip = \"a00:3::\"\n\
                [[service]]\nname = \"own-twin\"\nvip = \"a00:2::\"\n\
                [[service.backend]]\nname = \"vip-twin\"\naddress = \"a00:4::\"\n\
                [[service]]\nname = \"v4\"\nvip = \"10.0.0.4\"\n";
    let c = parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let vips: Vec<String> = c.services.iter().map(|s| s.vip.to_string()).collect();
    assert_eq!(
        vips,
        [
            "10.0.0.1", "a00:1::", "10.0.0.3", "a00:3::", "a00:2::", "10.0.0.4"
        ]
    );
    // The same check still refuses a real duplicate of either family.
    for dup in ["10.0.0.1", "a00:1::"] {
        let text = format!("{text}[[service]]\nname = \"dup\"\nvip = \"{dup}\"\nport = 80\n");
        let d = errors(&text);
        has(
            &d,
            37,
            "service[6].port",
            &format!(
                "like service \"web{}\"",
                if dup.contains(':') { 6 } else { 4 }
            ),
        );
        assert_eq!(d.len(), 1, "{d:#?}");
    }
}

#[test]
fn defaults_fill_a_minimal_file() {
    let c = parse(PORT, Path::new("m.toml")).expect("valid");
    assert_eq!(c.dpdk, Dpdk::default());
    assert_eq!(c.global, Global::default());
    assert!(c.services.is_empty());
    assert_eq!(c.ports[0].addresses[0].to_string(), "10.0.0.2/24");
}

/// Two ports: `a` on 10.0.0.0/24 and 2001:db8:a::/64 with a default route and a /16, `b` on
/// 10.1.0.0/24 with a more specific /24 inside `a`'s /16.
const ROUTED: &str = "[[port]]\nname = \"a\"\ndevice = \"net_null0\"\n\
    addresses = [\"10.0.0.2/24\", \"2001:db8:a::2/64\"]\n\
    routes = [{ prefix = \"0.0.0.0/0\", via = \"10.0.0.1\" }, \
              { prefix = \"10.2.0.0/16\", via = \"10.0.0.9\" }, \
              { prefix = \"::/0\", via = \"2001:db8:a::1\" }]\n\
    [[port]]\nname = \"b\"\ndevice = \"net_null1\"\naddresses = [\"10.1.0.2/24\"]\n\
    routes = [{ prefix = \"10.2.3.0/24\", via = \"10.1.0.1\" }, \
              { prefix = \"10.0.0.0/16\", via = \"10.1.0.1\" }]\n";

/// On-link first, then the longest prefix over every port; the source is the port's own
/// address on the gateway's subnet.
#[test]
fn route_is_on_link_first_then_longest_prefix() {
    let c = parse(ROUTED, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let path = |a: &str| {
        c.route(a.parse().unwrap())
            .map(|p| (p.port, p.source.to_string(), p.next_hop.to_string()))
    };
    let p = |port, src: &str, hop: &str| Some((port, src.to_owned(), hop.to_owned()));
    // On-link on `a`, although `b`'s 10.0.0.0/16 also covers it.
    assert_eq!(path("10.0.0.7"), p(0, "10.0.0.2", "10.0.0.7"));
    assert_eq!(path("10.1.0.7"), p(1, "10.1.0.2", "10.1.0.7"));
    // `b`'s /24 beats `a`'s /16, which beats the default route.
    assert_eq!(path("10.2.3.4"), p(1, "10.1.0.2", "10.1.0.1"));
    assert_eq!(path("10.2.4.4"), p(0, "10.0.0.2", "10.0.0.9"));
    // `b`'s /16 beats `a`'s default route.
    assert_eq!(path("10.0.9.9"), p(1, "10.1.0.2", "10.1.0.1"));
    assert_eq!(path("192.0.2.1"), p(0, "10.0.0.2", "10.0.0.1"));
    // The IPv6 default route: the source is the port's IPv6 address.
    assert_eq!(
        path("2001:db8:b::1"),
        p(0, "2001:db8:a::2", "2001:db8:a::1")
    );
    assert_eq!(c.ports[0].routes[1].to_string(), "10.2.0.0/16 via 10.0.0.9");

    // Without the default routes nothing else is reached.
    let bare = ROUTED
        .replace("{ prefix = \"0.0.0.0/0\", via = \"10.0.0.1\" }, ", "")
        .replace(", { prefix = \"::/0\", via = \"2001:db8:a::1\" }", "");
    let c = parse(&bare, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.route("192.0.2.1".parse().unwrap()), None);
    assert_eq!(c.route("2001:db8:b::1".parse().unwrap()), None);
    assert!(c.route("10.2.4.4".parse().unwrap()).is_some());
}

/// A NAT backend may be routed; a DSR one must be on-link; one no route reaches, or a routed
/// one with its own MAC, is refused at its value. Every mistake of a route at once.
#[test]
fn routes_and_routed_backends() {
    let backends = "[[service]]\nname = \"n\"\nvip = \"10.0.0.100\"\nforwarding = \"nat\"\n\
         [[service.backend]]\nname = \"far\"\naddress = \"10.2.3.4\"\n\
         [[service]]\nname = \"n6\"\nvip = \"2001:db8:a::100\"\nforwarding = \"nat\"\n\
         [[service.backend]]\nname = \"v6\"\naddress = \"2001:db8:b::1\"\n";
    let c = parse(&format!("{ROUTED}{backends}"), Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.services[0].backends[0].address.to_string(), "10.2.3.4");

    let only_16 = "[[port]]\nname = \"a\"\ndevice = \"net_null0\"\naddresses = [\"10.0.0.2/24\"]\n\
        routes = [{ prefix = \"10.2.0.0/16\", via = \"10.0.0.1\" }]\n";
    let text = format!(
        "{only_16}\
         [[service]]\nname = \"n\"\nvip = \"10.0.0.100\"\nforwarding = \"nat\"\n\
         [[service.backend]]\nname = \"routed\"\naddress = \"10.2.0.5\"\n\
         [[service.backend]]\nname = \"nowhere\"\naddress = \"10.3.0.5\"\n\
         [[service.backend]]\nname = \"mac\"\naddress = \"10.2.0.6\"\nmac = \"02:00:00:00:00:06\"\n\
         [[service]]\nname = \"d\"\nvip = \"10.0.0.101\"\n\
         [[service.backend]]\nname = \"routed\"\naddress = \"10.2.0.5\"\n"
    );
    let d = errors(&text);
    has(
        &d,
        15,
        "service[0].backend[1].address",
        "no route reaches backend address 10.3.0.5",
    );
    has(
        &d,
        19,
        "service[0].backend[2].mac",
        "reached through the gateway 10.0.0.1",
    );
    has(
        &d,
        25,
        "service[1].backend[0].address",
        "forwarding = \"dsr\" reaches backends directly",
    );
    assert_eq!(d.len(), 3, "{d:#?}");

    // Every route mistake in one run; an invalid route silences "no route reaches".
    let text = "[[port]]\nname = \"a\"\ndevice = \"net_null0\"\n\
        addresses = [\"10.0.0.2/24\"]\n\
        routes = [\n\
          { prefix = \"10.2.0.0/33\", via = \"10.0.0.1\" },\n\
          { prefix = \"10.3.0.0/16\", via = \"10.0.0.2\" },\n\
          { prefix = \"10.4.0.0/16\", via = \"224.0.0.1\" },\n\
          { prefix = \"10.5.0.0/16\", via = \"gateway\" },\n\
          { prefix = \"10.6.0.0/16\", via = \"10.0.0.1\" },\n\
          { prefix = \"10.6.0.0/16\", via = \"10.0.0.3\" },\n\
        ]\n\
        [[service]]\nname = \"n\"\nvip = \"10.0.0.100\"\nforwarding = \"nat\"\n\
        [[service.backend]]\nname = \"b\"\naddress = \"10.9.0.5\"\n";
    let d = errors(text);
    has(
        &d,
        6,
        "port[0].routes[0].prefix",
        "length \"33\" must be a number in 0..=32",
    );
    has(&d, 7, "port[0].routes[1].via", "this port's own address");
    has(&d, 8, "port[0].routes[2].via", "a multicast address");
    has(
        &d,
        9,
        "port[0].routes[3].via",
        "host names are not resolved",
    );
    has(
        &d,
        11,
        "port[0].routes[5].prefix",
        "already has a route (port[0], line 10)",
    );
    assert_eq!(d.len(), 5, "{d:#?}");
}

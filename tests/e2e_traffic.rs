//! Real kernel TCP clients reach real HTTP servers through Fulcrum on DPDK (net_af_packet),
//! in network namespaces (scripts/testbed.sh), with the example config
//! conf/examples/testbed.toml: DSR and NAT, thousands of connections from several client
//! addresses and ports, every one answered by the backend the config sends it to
//! (`fulcrum which`), shares following the weights; an empty pool refuses at once. The same
//! with IPv6 clients to IPv6 VIPs (the testbed's fd77::/64 and fd78::/64 twins).

use testkit::outcome::*;
use testkit::spread::{self, client_args, client_sources as sources};
use testkit::{Balancer, Net};

const CONNECTIONS: usize = 1000;

fn place(tb: &Net, lb: &Balancer, what: &str, net: &str, vip: &str, w: &[(&str, f64)]) -> usize {
    spread::place(tb, lb, what, net, vip, CONNECTIONS, w)
}

/// The final report of a balancer that served `dsr_flows` DSR and `nat_flows` NAT client
/// flows: every packet accounted for, one flow entry per DSR flow and two per NAT flow
/// (forward and reverse; a port the client reused within `tcp_closing` is a new connection,
/// its entries made again), no reset, every NAT reply matched.
fn check_totals(v: &serde_json::Value, dsr_flows: usize, nat_flows: usize) {
    let t = &v["totals"];
    assert_eq!(
        t["balanced"].as_bool(),
        Some(true),
        "every packet accounted: {t}"
    );
    spread::check_flows_created(t, dsr_flows + 2 * nat_flows, 1..=2);
    assert_eq!(t["resets"].as_u64(), Some(0), "{t}");
    assert_eq!(
        t["drops"]["nat_no_flow"].as_u64(),
        Some(0),
        "every NAT reply matched its flow: {t}"
    );
}

#[test]
fn e2e_dsr_and_nat_place_every_connection() {
    let tb = Net::testbed("tr", 3);
    let lb = Balancer::start(&tb, &tb.testbed_config());
    // Three backends in each of two checked services, MACs learnt by ARP.
    lb.wait_up(6);
    // DSR: VIP 10.77.0.100 on-link; weights b1:b2:b3 = 100:100:200.
    let dsr_weights = [("b1", 100.0), ("b2", 100.0), ("b3", 200.0)];
    let dsr_flows = place(&tb, &lb, "DSR", "10.77.0", "10.77.0.100", &dsr_weights);
    // NAT: VIP 10.79.0.200:80 -> backends :8080, from the 10.78.0.0/24 clients.
    let nat_weights = [("b1", 1.0), ("b2", 1.0), ("b3", 1.0)];
    let nat_flows = place(&tb, &lb, "NAT", "10.78.0", "10.79.0.200", &nat_weights);
    check_totals(&lb.stop(), dsr_flows, nat_flows);
}

/// IPv6 clients to IPv6 VIPs, kernel TCP end to end: DSR (fd77::100 on-link, Fulcrum
/// answers its neighbour solicitations, backends hold it on lo and answer directly) and NAT
/// ([fd79::200]:80 -> [backend]:8080, replies back through Fulcrum's fd77::2), backends'
/// MACs found by neighbour discovery, the IPv4 services running beside them.
#[test]
fn e2e_ipv6_dsr_and_nat_place_every_connection() {
    let tb = Net::testbed("t6", 3);
    let lb = Balancer::start(&tb, &tb.testbed_config_v6());
    // Three backends in each of four checked services (two IPv4, two IPv6).
    lb.wait_up(12);
    let dsr_weights = [("b1", 100.0), ("b2", 100.0), ("b3", 200.0)];
    let dsr_flows = place(&tb, &lb, "DSR IPv6", "fd77", "fd77::100", &dsr_weights);
    let nat_weights = [("b1", 1.0), ("b2", 1.0), ("b3", 1.0)];
    let nat_flows = place(&tb, &lb, "NAT IPv6", "fd78", "fd79::200", &nat_weights);
    let v = lb.stop();
    check_totals(&v, dsr_flows, nat_flows);
    println!("IPv6 totals: {}", v["totals"]);
}

#[test]
fn e2e_empty_pool_refuses_at_once() {
    let tb = Net::testbed("em", 1);
    // With the IPv6 twins: both families' empty pools refuse.
    let lb = Balancer::start(&tb, &tb.testbed_config_v6());
    for (net, vip) in [("10.77.0", "10.77.0.99"), ("fd77", "fd77::99")] {
        let srcs = sources(net);
        let out = tb.client(&client_args(vip, &srcs, "50"));
        let recs = records(&out);
        check_refused(&recs, 1000.0).unwrap_or_else(|e| panic!("{vip}: {e}"));
        println!(
            "empty pool {vip}: 50 connections refused, slowest after {} ms",
            out["ms_max"]
        );
    }
    let v = lb.stop();
    let t = &v["totals"];
    assert!(
        t["resets"].as_u64().unwrap() >= 100,
        "every SYN answered with a RST, counted: {t}"
    );
    assert_eq!(t["balanced"].as_bool(), Some(true));
}

#[test]
fn e2e_a_backend_whose_mac_changes_is_followed_at_once() {
    let tb = Net::testbed("mc", 3);
    let lb = Balancer::start(&tb, &tb.testbed_config());
    lb.wait_up(6);
    let srcs = sources("10.77.0");
    let check = |what: &str| {
        let out = tb.client(&client_args("10.77.0.100", &srcs, "200"));
        let recs = records(&out);
        let expected = expected_backends(&lb.config, &recs, "10.77.0.100:80");
        check_placement(&recs, &expected).unwrap_or_else(|e| panic!("{what}: {e}"));
        let to_b1 = recs
            .iter()
            .filter(|r| r.backend.as_deref() == Some("b1"))
            .count();
        assert!(to_b1 > 0, "{what}: b1 answered none of {}", recs.len());
        println!("{what}: {} connections, {to_b1} to b1", recs.len());
    };
    check("before");

    // b1's interface takes a new MAC, and (with arp_notify, as operators set it for this)
    // its kernel announces it with a gratuitous ARP request. The old MAC now reaches
    // nobody: without the announcement, b1's flows would go to it until the neighbour
    // cache's next confirmation (refresh_ms, 30 s here), and its health checks with them.
    for args in [
        &["-w", "net.ipv4.conf.eth0.arp_notify=1"][..],
        &["link", "set", "dev", "eth0", "address", "02:fc:00:00:00:91"][..],
    ] {
        let program = if args[0] == "-w" { "sysctl" } else { "ip" };
        let out = tb.cmd("b1", program).args(args).output().expect(program);
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    check("after b1's MAC changed");

    let v = lb.stop();
    let s = &v["slowpath"];
    assert!(
        s["neighbors_changed"].as_u64().unwrap_or(0) >= 1,
        "the slow path learnt the new MAC: {s}"
    );
    assert_eq!(v["totals"]["balanced"].as_bool(), Some(true));
}

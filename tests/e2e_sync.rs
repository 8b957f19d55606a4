//! Instance sync end to end: two Fulcrum instances on DPDK (net_af_packet) in testkit's
//! health layout, `lb` (10.66.0.2) and `lb2` (10.66.0.3, `Net::second_balancer`), on one
//! segment with the client and three backends; the client's neighbour entry for the VIP
//! names one instance's MAC (moving it is what an ECMP change does to a flow; DSR backends
//! must be on-link, so this is the layout, not a router's). Real kernel TCP: 300 long-lived
//! DSR streams (tests/tools/streams.py) through `lb`; then a backend is added on both
//! instances by live reload, which makes the flows Maglev now sends to it *exceptions*
//! (their backend is not Maglev's choice any more); then the VIP moves to `lb2`.
//!
//! - With `[global.sync]`: `lb` tells `lb2` of its exceptions, and `lb2` sends every moved
//!   stream to the backend it had: 0 broken.
//! - Without (the same run again, sync off): `lb2` re-hashes them; those Maglev sends to the
//!   new backend are reset by it. The test prints how many, and fails if none: the scenario
//!   would then show nothing.
//!
//! It prints the sync traffic (messages and bytes per second, both ways) over the scenario.
//! On a routed ECMP testbed (BIRD) the same steps apply, with a withdrawal or a route change
//! in place of the neighbour entry.

use std::time::{Duration, Instant};

use testkit::{
    Balancer, LB_ADDR, Net, Streams, SyncFigures, VIP, eal_args_toml, fixture, wait_synced,
};

/// The second instance's address and both ports' MACs.
const LB2_ADDR: &str = "10.66.0.3";
const MAC_A: &str = "02:00:00:00:5a:01";
const MAC_B: &str = "02:00:00:00:5a:02";
/// The client (testkit's health layout).
const CLIENT: &str = "10.66.0.50";

const STREAMS: usize = 300;
const SECS: u32 = 30;

/// One instance's config: the first `backends` backends of the health layout, and `[global.sync]`
/// naming `peer` when given.
fn config(
    net: &Net,
    name: &str,
    (address, mac): (&str, &str),
    peer: Option<&str>,
    backends: usize,
) -> String {
    let list: String = (1..=backends)
        .map(|i| {
            format!(
                "[[service.backend]]\nname = \"b{i}\"\naddress = \"10.66.0.{}\"\n",
                10 + i
            )
        })
        .collect();
    let sync = match peer {
        Some(p) => format!(
            "[global.sync]\npeers = [\"{p}\"]\nkey_file = \"{}\"\nrefresh_ms = 2000\nexpiry_ms = 6000\n",
            net.dir.join("sync.key").display()
        ),
        None => String::new(),
    };
    fixture("sync_instance.toml")
        .set("eal_args", eal_args_toml(&format!("sync-{name}")))
        .set("dir", net.dir.display())
        .set("name", name)
        .set("sync", sync)
        .set("address", address)
        .set("mac", mac)
        .set("backends", list)
        .render()
}

/// `(messages, bytes)` an instance sent, from `ctl status`.
fn sent(lb: &Balancer) -> (u64, u64) {
    let f = SyncFigures::of(lb);
    (f.messages_sent, f.bytes_sent)
}

/// What one run saw.
struct Run {
    intact: u64,
    broken: u64,
    /// Exceptions `lb` had found, and `lb2` had learnt, when the route moved.
    local: u64,
    learnt: u64,
    /// New flows `lb2` sent to a peer's backend.
    used: u64,
    /// Sync messages and bytes per second, both instances together, reload to end.
    msgs_per_s: f64,
    bytes_per_s: f64,
}

fn run(net: &Net, sync: bool) -> Run {
    let tag = if sync { "sync" } else { "nosync" };
    let (na, nb) = (format!("a-{tag}"), format!("b-{tag}"));
    let peer = |p: &'static str| sync.then_some(p);
    net.vip_at(MAC_A);
    let cfg_a = |n| config(net, &na, (LB_ADDR, MAC_A), peer(LB2_ADDR), n);
    let cfg_b = |n| config(net, &nb, (LB2_ADDR, MAC_B), peer(LB_ADDR), n);
    let a = Balancer::start_on(net, "lb", &cfg_a(2));
    let b = Balancer::start_on(net, "lb2", &cfg_b(2));
    a.wait_up(2);
    b.wait_up(2);

    let streams = Streams::start(net, &[format!("{VIP}:80:{CLIENT}")], STREAMS, SECS, tag);
    streams.wait_ready();
    let t0 = Instant::now();
    let before = (sent(&a), sent(&b));
    // A backend joins the pool on both instances: Maglev now sends about a third of the
    // streams' flows to it, so those are exceptions on `lb`.
    a.reload(&cfg_a(3));
    b.reload(&cfg_b(3));
    a.wait_up(3);
    b.wait_up(3);
    // The sweep finds them over a pass (1 s); with sync, wait (bounded) until `lb2` holds
    // every one `lb` found, the counts unchanged over a whole pass (testkit's wait_synced:
    // `learnt >= found` alone is true midway through a pass). Without, nothing counts them:
    // about as long.
    let (local, learnt) = if sync {
        let f = wait_synced(&[&a, &b], Duration::from_secs(15));
        (f[0].local, f[1].published)
    } else {
        std::thread::sleep(Duration::from_secs(3));
        (0, 0)
    };
    net.vip_at(MAC_B);
    let v = streams.finish();
    let secs = t0.elapsed().as_secs_f64();
    let after = (sent(&a), sent(&b));
    let msgs = (after.0.0 + after.1.0) - (before.0.0 + before.1.0);
    let bytes = (after.0.1 + after.1.1) - (before.0.1 + before.1.1);
    let stats = b.ctl_json(&["stats"]);
    let t = &stats["totals"];
    let used = t["exceptions_used"].as_u64().unwrap_or(0);
    println!(
        "{tag}: lb2 created {} flows, rescheduled {}, used {used} exceptions, dropped {}; \
         broken streams (first 20): {}",
        t["flows_created"], t["flows_rescheduled"], t["dropped"], v["broken"]
    );
    if sync {
        let s = b.ctl_json(&["status"]);
        let p = &s["sync"]["peers"][0];
        assert_eq!(p["unauthenticated"], 0, "{s:#}");
        assert_eq!(p["replayed"], 0, "{s:#}");
    }
    a.stop();
    b.stop();
    Run {
        intact: v["intact"].as_u64().unwrap_or(0),
        broken: v["broken_count"].as_u64().unwrap_or(u64::MAX),
        local,
        learnt,
        used,
        msgs_per_s: msgs as f64 / secs,
        bytes_per_s: bytes as f64 / secs,
    }
}

#[test]
fn moved_flows_keep_their_backend_with_sync() {
    let net = Net::up("sy", 3);
    net.second_balancer();
    std::fs::write(
        net.dir.join("sync.key"),
        b"e2e sync key: 32 bytes, test-only",
    )
    .unwrap();

    let with = run(&net, true);
    println!(
        "with sync: {} of {STREAMS} streams intact, {} broken; lb had {} exceptions, lb2 \
         learnt {} and sent {} moved flows to a peer's backend; sync traffic {:.1} messages/s, \
         {:.0} bytes/s (both instances, reload to end)",
        with.intact,
        with.broken,
        with.local,
        with.learnt,
        with.used,
        with.msgs_per_s,
        with.bytes_per_s
    );
    let without = run(&net, false);
    println!(
        "without sync: {} of {STREAMS} streams intact, {} broken",
        without.intact, without.broken
    );
    assert_eq!(with.broken, 0, "with sync no moved stream may break");
    assert!(with.used > 0, "lb2 used the exceptions");
    assert!(
        without.broken > 0,
        "without sync some moved streams must break, or the scenario shows nothing"
    );
}

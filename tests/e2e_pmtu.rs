//! Path MTU end to end: a client's kernel TCP uploads through Fulcrum (DSR, the health
//! layout) whose port toward the backend has `mtu = 1400` while the client's link carries
//! 1500. The client's full-size segments (1500 bytes, DF) are too big: Fulcrum answers each
//! with ICMP "fragmentation needed" (next-hop MTU 1400) from the VIP, the client's kernel
//! lowers its path MTU for the VIP (its route cache shows `mtu 1400`), resends smaller
//! segments, and the upload completes, every byte checked by the backend. Without the answer
//! the upload would stall: the client's segments would never reach the backend.

use std::time::Duration;

use testkit::{Balancer, Net, VIP};

const PORT_MTU: u32 = 1400;
const UPLOAD: u64 = 8 << 20;
const SINK_PORT: u16 = 9000;

fn config(net: &Net) -> String {
    // The [[port]] table is the header's last: its `mtu` follows it.
    let header = net.balancer_config(&["10.66.0.2/24"]);
    format!(
        r#"{header}
mtu = {PORT_MTU}

[[service]]
name = "upload"
vip = "{VIP}"
port = {SINK_PORT}

[service.health]
type = "tcp"
interval_ms = 500

[[service.backend]]
name = "b1"
address = "10.66.0.11"
"#
    )
}

#[test]
fn e2e_pmtu_client_learns_the_port_mtu_and_a_large_upload_completes() {
    let net = Net::up("pm", 1);
    let _sink = net.sink("b1", SINK_PORT);
    let lb = Balancer::start(&net, &config(&net));
    lb.wait_up(1);
    assert_eq!(
        net.route_mtu("c1", VIP),
        None,
        "the client starts without a learnt path MTU"
    );

    let to = format!("{VIP}:{SINK_PORT}").parse().expect("addr");
    let up = net.upload("c1", to, UPLOAD, Duration::from_secs(20));
    let learnt = net.route_mtu("c1", VIP);
    let v = lb.stop();
    let t = &v["totals"];
    println!(
        "upload of {} bytes through a port of mtu {PORT_MTU}: {:?} bytes received intact={} in \
         {} ms, final MSS {}; client's path MTU for the VIP {learnt:?}; balancer sent {} \
         fragmentation-needed answers",
        up.sent, up.received, up.intact, up.ms, up.mss, t["mtu_exceeded"]
    );
    assert_eq!(up.error, None, "the upload failed: {up:?}");
    assert_eq!(up.received, Some(UPLOAD), "{up:?}");
    assert!(up.intact, "the backend's hash is the client's: {up:?}");
    assert_eq!(
        learnt,
        Some(PORT_MTU),
        "the client's kernel took the balancer's MTU for the VIP"
    );
    assert!(
        up.mss <= u64::from(PORT_MTU) - 40,
        "the connection's segments shrank to fit: MSS {}",
        up.mss
    );
    assert!(
        t["mtu_exceeded"].as_u64().unwrap_or(0) >= 1,
        "the balancer answered: {t}"
    );
    assert_eq!(t["drops"]["mtu_exceeded_no_df"].as_u64(), Some(0), "{t}");
    assert_eq!(
        t["balanced"].as_bool(),
        Some(true),
        "every packet accounted: {t}"
    );
}

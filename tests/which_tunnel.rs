//! `fulcrum which` names a tunnelled flow's encapsulation: mode, outer source and destination,
//! and for GUE the flow's own outer source port (the same every time) and the service's port;
//! and a FullNAT flow's local side: the addresses and port range its source is taken from.

use std::process::Command;

fn which(flow: &str, json: bool) -> String {
    which_in("tunnel.toml", flow, json)
}

fn which_in(example: &str, flow: &str, json: bool) -> String {
    let cfg = format!("{}/conf/examples/{example}", env!("CARGO_MANIFEST_DIR"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_fulcrum"));
    c.args(["which", "-c", &cfg]);
    if json {
        c.arg("--json");
    }
    let out = c.arg(flow).output().expect("fulcrum runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn which_says_the_encapsulation() {
    let text = which("198.51.100.7:40000 192.0.2.10:443 tcp", false);
    println!("{text}");
    assert!(
        text.contains("service www-https: backend haproxy-"),
        "{text}"
    );
    assert!(text.contains(", via ipip 10.20.0.2 -> 10.20.0.1"), "{text}");

    let gue = which("198.51.100.7:40000 192.0.2.10:80 tcp", true);
    println!("{gue}");
    let v: serde_json::Value = serde_json::from_str(&gue).expect("json");
    let e = &v["encap"];
    assert_eq!(e["mode"], "gue");
    assert_eq!(e["src"], "10.20.0.2");
    assert!(
        ["10.20.0.21", "10.20.0.22"].contains(&e["dst"].as_str().unwrap()),
        "{e}"
    );
    assert_eq!(e["dport"], 6080);
    let sport = e["sport"].as_u64().expect("a GUE source port");
    assert!((49152..=65535).contains(&sport), "{sport}");
    // The same flow, the same port; another flow, (almost surely) another.
    let again: serde_json::Value =
        serde_json::from_str(&which("198.51.100.7:40000 192.0.2.10:80 tcp", true)).unwrap();
    assert_eq!(again["encap"]["sport"], e["sport"]);
    let other: serde_json::Value =
        serde_json::from_str(&which("198.51.100.7:40001 192.0.2.10:80 tcp", true)).unwrap();
    assert_ne!(other["encap"]["sport"], e["sport"]);

    let v6 = which("[2001:db8::7]:40000 [2001:db8:100::10]:443 tcp", false);
    println!("{v6}");
    assert!(
        v6.contains(", via ipip 2001:db8:20::2 -> 2001:db8:20::1"),
        "{v6}"
    );
}

#[test]
fn which_says_a_fullnat_flows_local_side() {
    let text = which_in(
        "fullnat.toml",
        "198.51.100.7:40000 192.0.2.10:443 tcp",
        false,
    );
    println!("{text}");
    assert!(text.contains("service web: backend web-"), "{text}");
    assert!(
        text.contains(", from local 10.1.0.1 or 10.1.0.2 (a port of 1024-32767)"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&which_in(
        "fullnat.toml",
        "[2001:db8::7]:40000 [2001:db8:ffff::10]:443 tcp",
        true,
    ))
    .expect("json");
    println!("{v}");
    let local = v["local"].as_str().expect("a local side");
    assert!(local.ends_with("(a port of 1024-32767)"), "{local}");
    assert!(!local.contains('.'), "an IPv6 local address: {local}");
    // Not FullNAT: no local side.
    let dsr = which("198.51.100.7:40000 192.0.2.10:443 tcp", true);
    assert!(!dsr.contains("\"local\""), "{dsr}");
}

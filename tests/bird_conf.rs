//! The bird.conf the package ships (`packaging/bird.conf`) is one BIRD 2 accepts, with the
//! file Fulcrum writes for it in place (`slowpath::announce::bird_file_text`): checked by
//! `bird -p` (parse only; nothing is started).

use std::net::IpAddr;
use std::process::Command;

use testkit::{Scratch, repo};

#[test]
fn the_shipped_bird_conf_parses_with_the_file_fulcrum_writes() {
    let scratch = Scratch::new("bird-conf");
    let vips: Vec<IpAddr> = vec![
        "192.0.2.100".parse().unwrap(),
        "2001:db8::100".parse().unwrap(),
    ];
    let vips_file = scratch.path.join("bird-vips.conf");
    std::fs::write(&vips_file, slowpath::announce::bird_file_text(&vips)).expect("vips file");
    let shipped = std::fs::read_to_string(repo().join("packaging/bird.conf")).expect("bird.conf");
    let include = "include \"/run/fulcrum/bird-vips.conf\";";
    assert!(
        shipped.contains(include),
        "bird.conf includes Fulcrum's file"
    );
    let conf = scratch.path.join("bird.conf");
    std::fs::write(
        &conf,
        shipped.replace(include, &format!("include \"{}\";", vips_file.display())),
    )
    .expect("conf");
    let out = Command::new("bird")
        .args(["-p", "-c"])
        .arg(&conf)
        .output()
        .expect("bird (scripts/setup.sh installs bird2)");
    assert!(
        out.status.success(),
        "bird -p refused packaging/bird.conf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("packaging/bird.conf parses with 2 VIPs announced");
}

//! An active/backup pair by VRRP end to end: two Fulcrum instances with the same service
//! (`announce = "vrrp"`, tests/configs/vrrp_pair.toml) on one client segment, each with a
//! real keepalived (Debian's) in its namespace speaking VRRP over the instance's kernel
//! interface (the exception path), configured by the shipped packaging/keepalived.conf and
//! telling Fulcrum its role through the shipped packaging/vrrp-notify (`fulcrum ctl vrrp`).
//!
//! ```text
//!  <n>-lb:  lb0 (DPDK) + vrrp0 (net_tap, 10.66.0.2), keepalived priority 150: master
//!  <n>-lb2: lb0 (DPDK) + vrrp0 (net_tap, 10.66.0.3), keepalived priority 100: backup
//!  <n>-c1: client 10.66.0.50 (long-lived DSR streams to 10.66.0.100:80)
//!  <n>-b1, <n>-b2: DSR backends (VIP on lo), shared by both instances
//! ```
//!
//! Before keepalived runs, both instances are backups and nobody answers ARP for the VIP.
//! Then the master is killed two ways (one test each): its Fulcrum (`kill -9`: its TAP
//! interface vanishes, its keepalived goes to FAULT and its adverts stop), or its keepalived
//! (`kill -9` of both its processes: no goodbye advert; Fulcrum sees its holder gone and
//! stops answering). Measured from the kill: when the backup's Fulcrum is master, when the
//! client's ARP entry for the VIP names the backup's MAC (its gratuitous ARP, seen on the
//! client's wire), and when a new connection succeeds; asserted within 3 s. The established
//! DSR streams continue through the backup (same Maglev choice, same backend): 0 broken.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use testkit::{
    Answer, Balancer, Client, Keepalived, Net, Stream, VIP, eal_args_toml, fixture, fulcrum_bin,
    repo,
};

const MASTER_ADDR: &str = "10.66.0.2";
const BACKUP_ADDR: &str = "10.66.0.3";
const CLIENT: &str = "10.66.0.50";
/// Long-lived DSR connections held through the failover.
const STREAMS: u16 = 20;
const STREAM_SECS: u32 = 20;
/// The issue's bound: the backup answers within this after the master dies.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(3);

/// One node's config: the fixture with its EAL prefix, socket and address.
fn node_config(net: &Net, node: &str, address: &str) -> String {
    fixture("vrrp_pair.toml")
        .set("eal_args", eal_args_toml(node))
        .set("dir", net.dir.display())
        .set("node", node)
        .set("address", address)
        .render()
}

/// The shipped packaging/keepalived.conf for `node`: only what the test's namespaces name
/// differently is replaced (each replacement must apply, so the file cannot drift from what
/// is tested).
fn keepalived_config(node: &str, priority: u8, fulcrum_config: &std::path::Path) -> String {
    let mut text =
        std::fs::read_to_string(repo().join("packaging/keepalived.conf")).expect("keepalived.conf");
    let notify = repo().join("packaging/vrrp-notify");
    for (from, to) in [
        ("router_id fulcrum-a", format!("router_id fulcrum-{node}")),
        ("interface fulcrum0", "interface vrrp0".to_string()),
        ("priority 150", format!("priority {priority}")),
        ("10.0.0.100/32 dev fulcrum0", format!("{VIP}/32 dev vrrp0")),
        (
            "/usr/share/fulcrum/vrrp-notify /etc/fulcrum/fulcrum.toml",
            format!("{} {}", notify.display(), fulcrum_config.display()),
        ),
    ] {
        assert!(
            text.contains(from),
            "packaging/keepalived.conf no longer has {from:?}"
        );
        text = text.replace(from, &to);
    }
    text
}

/// The `vrrp` section of a node's `ctl status`.
fn vrrp(lb: &Balancer) -> serde_json::Value {
    lb.ctl_json(&["status"])["vrrp"].clone()
}

fn kernel(lb: &Balancer) -> serde_json::Value {
    lb.ctl_json(&["status"])["kernel"].clone()
}

/// Waits (bounded) until a node's Fulcrum has taken role `state`; how long it took.
fn wait_role(lb: &Balancer, state: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let v = vrrp(lb);
        if v["state"] == state {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "not {state} within {limit:?}: {v}\n{}",
            lb.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The MAC the client's kernel has for the VIP, if any.
fn client_arp(net: &Net) -> Option<String> {
    let out = net.exec("c1", &["ip", "neigh", "show", VIP, "dev", "eth0"]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_owned)
}

/// Seconds since the epoch now: the clock tcpdump stamps frames by (`-tt`).
fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// ARP on the client's wire, as tcpdump prints it (`-e`: with the Ethernet source), each
/// line with the time tcpdump took the frame (not when the test read it: a loaded machine
/// may deliver lines late).
struct ArpWatch {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<(f64, String)>>>,
}

impl ArpWatch {
    fn start(net: &Net) -> ArpWatch {
        let mut child = net
            .cmd("c1", "tcpdump")
            .args(["-i", "eth0", "-nn", "-e", "-tt", "-l", "arp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((t, rest)) = l.split_once(' ')
                    && let Ok(t) = t.parse::<f64>()
                {
                    sink.lock().unwrap().push((t, rest.to_owned()));
                }
            }
        });
        // Capturing once it says "listening on".
        let mut err = BufReader::new(err);
        let mut said = String::new();
        while !said.contains("listening on") {
            let mut line = String::new();
            let n = err.read_line(&mut line).expect("tcpdump's stderr");
            assert!(n > 0, "tcpdump ended: {said}");
            said.push_str(&line);
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        ArpWatch { child, lines }
    }

    /// The first gratuitous ARP for the VIP from `mac` after `after` (epoch seconds), and
    /// when it was seen.
    fn gratuitous(&self, mac: &str, after: f64) -> Option<(f64, String)> {
        let who = format!("who-has {VIP} tell {VIP}");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(t, l)| *t >= after && l.starts_with(mac) && l.contains(&who))
            .cloned()
    }

    /// Every line seen, for a failure's message.
    fn all(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    /// ARP replies for the VIP from `mac` seen after `after` (epoch seconds).
    fn replies(&self, mac: &str, after: f64) -> Vec<String> {
        let is_at = format!("Reply {VIP} is-at");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, l)| *t >= after && l.starts_with(mac) && l.contains(&is_at))
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl Drop for ArpWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What kills the master.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kill {
    Fulcrum,
    Keepalived,
}

fn failover(tag: &str, kill: Kill) {
    let net = Net::up(tag, 2);
    net.balancer_port("lb2");
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let conf_a = node_config(&net, "lb", MASTER_ADDR);
    let conf_b = node_config(&net, "lb2", BACKUP_ADDR);
    let mut a = Balancer::start_on(&net, "lb", &conf_a);
    let b = Balancer::start_on(&net, "lb2", &conf_b);
    a.wait_up(2);
    b.wait_up(2);
    let (mac_a, mac_b) = (net.mac("lb", "lb0"), net.mac("lb2", "lb0"));
    // The veth DPDK reads (af_packet) is also the kernel's, which would answer ARP on it for
    // the VIP keepalived gives the kernel interface (and a killed keepalived leaves behind).
    // On a NIC that DPDK owns the kernel sees nothing; here it is told not to answer.
    for node in ["lb", "lb2"] {
        net.exec(node, &["sysctl", "-qw", "net.ipv4.conf.lb0.arp_ignore=8"]);
    }

    // Both start as backups: nobody answers ARP for the VIP, no connection gets through.
    for lb in [&a, &b] {
        let v = vrrp(lb);
        assert_eq!(v["state"], "backup", "{v}");
        assert_eq!(v["answered"], false, "{v}");
    }
    let mut client = Client::new(&net.ns("c1"));
    assert!(
        !client.connect(vip, Duration::from_millis(1500)),
        "a VIP that no master answers for was reached"
    );
    assert_eq!(client_arp(&net), None, "nobody answered ARP for the VIP");

    let env = [("FULCRUM", fulcrum_bin().display().to_string())];
    let mut ka = Keepalived::start(&net, "lb", &keepalived_config("a", 150, &a.config), &env);
    let kb = Keepalived::start(&net, "lb2", &keepalived_config("b", 100, &b.config), &env);
    let elected = ka.wait_state("MASTER", Duration::from_secs(15));
    wait_role(&a, "master", Duration::from_secs(5));
    let v = vrrp(&a);
    assert_eq!(v["answered"], true, "{v}");
    assert_eq!(v["holder"], ka.vrrp_pid().expect("vrrp pid"), "{v}");
    assert_eq!(kb.state().as_deref(), Some("BACKUP"), "{}", kb.log());
    assert_eq!(vrrp(&b)["state"], "backup");
    println!(
        "keepalived elected the master in {:.2} s; master {MASTER_ADDR} ({mac_a}), backup \
         {BACKUP_ADDR} ({mac_b})",
        elected.as_secs_f64()
    );
    // The adverts cross the exception path both ways: the master's kernel sends them, the
    // backup's kernel hears them.
    std::thread::sleep(Duration::from_secs(1));
    let (ka_k, kb_k) = (kernel(&a), kernel(&b));
    assert!(ka_k["vrrp_from_kernel"].as_u64() > Some(0), "{ka_k}");
    assert!(kb_k["vrrp_to_kernel"].as_u64() > Some(0), "{kb_k}");
    assert_eq!(kb_k["from_kernel_refused"], 0, "{kb_k}");
    println!("exception path: master {ka_k}\nexception path: backup {kb_k}");

    // Long-lived DSR connections through the master.
    let streams: Vec<Stream> = (0..STREAMS)
        .map(|i| Stream::start(&net, VIP, CLIENT, 41000 + i, STREAM_SECS))
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(client_arp(&net).as_deref(), Some(mac_a.as_str()));
    let watch = ArpWatch::start(&net);

    let t0 = Instant::now();
    let t0_epoch = epoch();
    match kill {
        Kill::Fulcrum => a.kill(),
        Kill::Keepalived => ka.kill(),
    }
    let (mut t_master, mut t_arp, mut t_new) = (None, None, None);
    let mut probe = Client::new(&net.ns("c1"));
    while t_new.is_none() || t_arp.is_none() || t_master.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no takeover: master {t_master:?}, ARP {t_arp:?}, new connection {t_new:?}\n{}",
            kb.log()
        );
        if t_master.is_none() && vrrp(&b)["state"] == "master" {
            t_master = Some(t0.elapsed());
        }
        if t_arp.is_none() && client_arp(&net).as_deref() == Some(mac_b.as_str()) {
            t_arp = Some(t0.elapsed());
        }
        if t_new.is_none()
            && matches!(
                probe.request(vip, Duration::from_millis(300)),
                Answer::Backend(_)
            )
        {
            t_new = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (t_master, t_arp, t_new) = (t_master.unwrap(), t_arp.unwrap(), t_new.unwrap());
    // tcpdump's line may come a moment after the frame (the ARP entry can move first).
    let seen_by = Instant::now() + Duration::from_secs(2);
    let mut garp = watch.gratuitous(&mac_b, t0_epoch);
    while garp.is_none() && Instant::now() < seen_by {
        std::thread::sleep(Duration::from_millis(50));
        garp = watch.gratuitous(&mac_b, t0_epoch);
    }
    println!(
        "kill -9 of the master's {}: backup's Fulcrum master after {:.0} ms, client's ARP \
         entry on the backup after {:.0} ms, first new connection after {:.0} ms; gratuitous \
         ARP seen {}",
        match kill {
            Kill::Fulcrum => "Fulcrum",
            Kill::Keepalived => "keepalived",
        },
        t_master.as_secs_f64() * 1000.0,
        t_arp.as_secs_f64() * 1000.0,
        t_new.as_secs_f64() * 1000.0,
        garp.as_ref().map_or("never".to_string(), |(t, _)| format!(
            "after {:.0} ms",
            (t - t0_epoch) * 1000.0
        )),
    );
    assert!(
        garp.is_some(),
        "no gratuitous ARP from the backup's MAC; ARP seen on the client's wire:\n{}",
        watch.all()
    );
    assert!(t_arp <= TAKEOVER_LIMIT, "ARP moved after {t_arp:?}");
    assert!(t_new <= TAKEOVER_LIMIT, "served after {t_new:?}");

    if kill == Kill::Keepalived {
        // The master's Fulcrum runs on, but its keepalived is gone: it answers for nothing.
        let v = vrrp(&a);
        assert_eq!(v["state"], "backup", "{v}");
        assert_eq!(v["answered"], false, "{v}");
        assert_eq!(v["holder_lost"], 1, "{v}");
        let after = epoch();
        // The client asks again (its entry expired or not): only the new master answers.
        net.exec("c1", &["ip", "neigh", "flush", "dev", "eth0"]);
        assert!(matches!(
            probe.request(vip, Duration::from_secs(2)),
            Answer::Backend(_)
        ));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(client_arp(&net).as_deref(), Some(mac_b.as_str()));
        let stale = watch.replies(&mac_a, after);
        assert!(stale.is_empty(), "the old master answered ARP: {stale:?}");
        println!("old master (keepalived gone): {v}");
    }

    // New connections succeed through the backup.
    let mut ok = 0;
    for _ in 0..20 {
        if matches!(
            probe.request(vip, Duration::from_secs(2)),
            Answer::Backend(_)
        ) {
            ok += 1;
        }
    }
    println!("new connections after the takeover: {ok} of 20 answered");
    assert_eq!(ok, 20);

    let mut broken = Vec::new();
    for s in streams {
        if let Err(e) = s.outcome() {
            broken.push(e);
        }
    }
    println!(
        "established DSR streams through the failover: {} of {STREAMS} broken",
        broken.len()
    );
    assert!(broken.is_empty(), "broken streams: {broken:#?}");
    let v = vrrp(&b);
    println!("new master: {v}");
    assert!(v["gratuitous_sent"].as_u64() >= Some(1), "{v}");
    drop(kb);
    drop(ka);
}

#[test]
fn e2e_vrrp_backup_answers_when_the_masters_fulcrum_is_killed() {
    failover("vf", Kill::Fulcrum);
}

#[test]
fn e2e_vrrp_backup_answers_when_the_masters_keepalived_is_killed() {
    failover("vk", Kill::Keepalived);
}

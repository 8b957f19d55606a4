//! No client can stall the control socket or the metrics endpoint: a real `fulcrum run`
//! (DPDK, a `net_null` port: the data path is not the subject) with 100 idle and 32 slow
//! connections (a byte every 50 ms, never a whole request) held on each of the control socket
//! and `/metrics`, while `fulcrum ctl status` and a scrape must each answer within 100 ms.
//! Also: `fulcrum ctl ... | head -1` exits 0, `/metrics` only (404, 405), and the metrics
//! tell drain from maint.
//!
//! The balancer runs in the test's own namespace: the control socket is a Unix socket and the
//! metrics endpoint listens on loopback, so no network namespace is needed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Scratch, eal_args_toml, fulcrum};

const IDLE: usize = 100;
const SLOW: usize = 32;
const BOUND: Duration = Duration::from_millis(100);

/// `fulcrum run` in the background, killed on drop.
struct Running {
    child: Child,
    err: PathBuf,
}

impl Running {
    fn start(scratch: &Scratch, config: &str) -> Running {
        let cfg = scratch.join("fulcrum.toml");
        std::fs::write(&cfg, config).expect("config");
        let err = scratch.join("fulcrum.err");
        let child = fulcrum()
            .args(["run", "-c"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&err).expect("err")))
            .spawn()
            .expect("fulcrum run");
        let r = Running { child, err };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Serving: both endpoints bound and the slow-path loop (which serves them) running.
        while !(r.log().contains("control socket listening")
            && r.log().contains("metrics endpoint listening")
            && r.log().contains("health checks scheduled"))
        {
            assert!(
                Instant::now() < deadline,
                "fulcrum did not start:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn config(tag: &str, sock: &Path, metrics: SocketAddr) -> String {
    format!(
        r#"
[dpdk]
{eal}
workers = [1]
slowpath_cpu = 0
mbufs = 4095

[global]
flow_table_capacity = 4096
control_socket = "{sock}"
metrics_listen = "{metrics}"

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

[[service.backend]]
name = "b2"
address = "10.0.0.12"
mac = "02:00:00:00:00:12"

[[service.backend]]
name = "b3"
address = "10.0.0.13"
mac = "02:00:00:00:00:13"
admin = "disabled"
"#,
        eal = eal_args_toml(tag),
        sock = sock.display(),
    )
}

/// `fulcrum ctl -s SOCK ARGS`: (exit success, stdout, time to answer).
fn ctl(sock: &Path, args: &[&str]) -> (bool, String, Duration) {
    let t = Instant::now();
    let out = fulcrum()
        .args(["ctl", "-s"])
        .arg(sock)
        .args(args)
        .output()
        .expect("ctl");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "ctl {args:?} failed after {}: {}",
        ms(took),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        true,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        took,
    )
}

/// One HTTP request on a new connection: (status line, body, time to the whole answer).
fn http(addr: SocketAddr, request: &str) -> (String, String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    if let Err(e) = s.read_to_string(&mut answer) {
        panic!("{request:?}: no answer after {}: {e}", ms(t.elapsed()));
    }
    let took = t.elapsed();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string(), took)
}

fn scrape(addr: SocketAddr) -> (String, Duration) {
    let (status, body, took) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    (body, took)
}

/// Connections that never finish a request: `IDLE` silent ones and `SLOW` that send a byte
/// every 50 ms until stopped (a write to one the server closed is ignored: being closed is
/// what a server under attack may do to them).
struct Crowd {
    stop: Arc<AtomicBool>,
    trickler: Option<std::thread::JoinHandle<()>>,
    _idle: Vec<Box<dyn Write + Send>>,
}

impl Crowd {
    fn gather(
        connect: impl Fn() -> Box<dyn Write + Send>,
        first: &'static [u8],
        byte: u8,
    ) -> Crowd {
        let idle: Vec<_> = (0..IDLE).map(|_| connect()).collect();
        let mut slow: Vec<_> = (0..SLOW).map(|_| connect()).collect();
        for s in &mut slow {
            let _ = s.write_all(first);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let trickler = std::thread::spawn(move || {
            // Bounded: at most 60 s of trickling.
            for _ in 0..1200 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                for s in &mut slow {
                    let _ = s.write_all(&[byte]);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Crowd {
            stop,
            trickler: Some(trickler),
            _idle: idle,
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.trickler.take() {
            let _ = t.join();
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn e2e_idle_and_slow_clients_do_not_stall_ctl_or_metrics() {
    let scratch = Scratch::new("stall");
    let sock = scratch.join("ctl.sock");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let fl = Running::start(&scratch, &config("stall", &sock, metrics));

    let (_, _, quiet_ctl) = ctl(&sock, &["status"]);
    let (_, quiet_scrape) = scrape(metrics);
    println!(
        "quiet: ctl status {}, scrape {}",
        ms(quiet_ctl),
        ms(quiet_scrape)
    );

    let unix_sock = sock.clone();
    let _control_crowd = Crowd::gather(
        move || Box::new(UnixStream::connect(&unix_sock).expect("connect control")),
        b"{\"cmd\":",
        b' ',
    );
    let _metrics_crowd = Crowd::gather(
        move || {
            Box::new(
                TcpStream::connect_timeout(&metrics, Duration::from_secs(5))
                    .expect("connect metrics"),
            )
        },
        b"GET /metrics HTTP/1.1\r\nX-Slow: ",
        b'a',
    );
    // Let the balancer take every connection in and the slow ones send a few bytes.
    std::thread::sleep(Duration::from_millis(300));

    let mut worst_ctl = Duration::ZERO;
    let mut worst_scrape = Duration::ZERO;
    for i in 0..5 {
        let (_, text, took_ctl) = ctl(&sock, &["status"]);
        assert!(text.starts_with("fulcrum "), "{text}");
        let (body, took_scrape) = scrape(metrics);
        assert!(body.contains("fulcrum_uptime_seconds "), "{body}");
        println!(
            "with {IDLE} idle + {SLOW} slow connections on each: ctl status {}, scrape {} (round {i})",
            ms(took_ctl),
            ms(took_scrape)
        );
        worst_ctl = worst_ctl.max(took_ctl);
        worst_scrape = worst_scrape.max(took_scrape);
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "worst: ctl status {} (including starting the ctl process), scrape {}",
        ms(worst_ctl),
        ms(worst_scrape)
    );
    // What the endpoints did with the crowd: the control socket holds all of it (one client,
    // under its bound of 256), the metrics endpoint at most 64 of one address (the rest
    // closed for newcomers).
    let (body, _) = scrape(metrics);
    let sample = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} in\n{body}"))
    };
    for l in body.lines().filter(|l| l.starts_with("fulcrum_endpoint_")) {
        println!("{l}");
    }
    let control_open = sample("fulcrum_endpoint_connections_open{endpoint=\"control\"}");
    assert!(control_open >= (IDLE + SLOW) as f64, "{control_open}");
    let metrics_open = sample("fulcrum_endpoint_connections_open{endpoint=\"metrics\"}");
    assert!(metrics_open <= 64.0, "{metrics_open}");
    let evicted =
        sample("fulcrum_endpoint_connections_total{endpoint=\"metrics\",outcome=\"evicted\"}");
    assert!(evicted >= (IDLE + SLOW - 64) as f64, "{evicted}");
    assert!(worst_ctl < BOUND, "ctl status took {}", ms(worst_ctl));
    assert!(worst_scrape < BOUND, "a scrape took {}", ms(worst_scrape));
    drop(fl);
}

#[test]
fn e2e_ctl_pipe_metrics_paths_and_admin_states() {
    let scratch = Scratch::new("ctlpipe");
    let sock = scratch.join("ctl.sock");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _fl = Running::start(&scratch, &config("ctlpipe", &sock, metrics));

    // A reader that stops after one line: ctl ends quietly, exit 0 (it aborted with a panic).
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "{} ctl -s {} stats --watch --count 20 --interval 0.05 | head -1",
            env!("CARGO_BIN_EXE_fulcrum"),
            sock.display()
        ))
        .output()
        .expect("bash");
    println!(
        "ctl stats --watch | head -1: {}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `ctl -c` needs only the socket's path: the rest of the file may be half-edited.
    let half = scratch.join("half-edited.toml");
    std::fs::write(
        &half,
        format!(
            "[global]\ncontrol_socket = \"{}\"\nnot_a_key = 1\n[[service]]\nvip = \n",
            sock.display()
        ),
    )
    .unwrap();
    let out = fulcrum()
        .args(["ctl", "-c"])
        .arg(&half)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Status names the MAC each port puts on the wire.
    let (_, text, _) = ctl(&sock, &["status"]);
    println!("{text}");
    assert!(text.contains("mac on the wire"), "{text}");

    // Only GET/HEAD /metrics.
    let (status, _, _) = http(metrics, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http(
        metrics,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    let (status, _, _) = http(metrics, &long);
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");

    // Drain (an operator's override) and maint (the config's disabled) read apart.
    ctl(&sock, &["drain", "web", "b1"]);
    let (body, _) = scrape(metrics);
    for line in [
        "fulcrum_backend_up{service=\"web\",backend=\"b1\"} 0",
        "fulcrum_backend_up{service=\"web\",backend=\"b3\"} 0",
        "fulcrum_backend_state{service=\"web\",backend=\"b1\",state=\"drain\"} 1",
        "fulcrum_backend_state{service=\"web\",backend=\"b3\",state=\"maint\"} 1",
        "fulcrum_backend_admin_state{service=\"web\",backend=\"b1\",state=\"drain\"} 1",
        "fulcrum_backend_admin_state{service=\"web\",backend=\"b3\",state=\"disabled\"} 1",
        "fulcrum_backend_admin_override{service=\"web\",backend=\"b1\"} 1",
        "fulcrum_backend_state{service=\"web\",backend=\"b2\",state=\"up\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} missing:\n{body}");
    }
    // `clear` drops the override: b1 is the config's again.
    let (_, text, _) = ctl(&sock, &["clear", "web"]);
    assert!(text.contains("1 override(s) cleared"), "{text}");
    let (body, _) = scrape(metrics);
    assert!(body.contains("fulcrum_backend_state{service=\"web\",backend=\"b1\",state=\"up\"} 1"));

    // An unknown field is refused for every command alike.
    for req in [
        "{\"cmd\":\"status\",\"x\":1}\n",
        "{\"cmd\":\"which\",\"flow\":\"10.0.0.1:1 10.0.0.100:80\",\"x\":1}\n",
    ] {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("{\"ok\":false,\"error\":\"bad request: unknown field"),
            "{req}: {answer}"
        );
    }
    // One flow syntax: a word per argument or the flow in one.
    let (_, a, _) = ctl(
        &sock,
        &["--json", "which", "10.0.0.1:1234", "10.0.0.100:80", "tcp"],
    );
    let (_, b, _) = ctl(&sock, &["--json", "which", "10.0.0.1:1234 10.0.0.100:80"]);
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&a).unwrap(),
        serde_json::from_str(&b).unwrap(),
    );
    assert_eq!(a["backend"], b["backend"]);
    assert_eq!(a["flow"], "10.0.0.1:1234 10.0.0.100:80 tcp");
}

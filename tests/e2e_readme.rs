//! README's "Using it" section (with "Operating a running balancer" under it) walked through:
//! every command of its `sh` blocks, read from README.md itself, runs against a balancer in
//! network namespaces (testkit's health layout: DPDK af_packet, two real HTTP backends), and
//! must exit 0 and print what its comment says. FILE (and README's sample config path) is
//! this test's config, `*.pcap` files are made here, PID is the running balancer's, and
//! README's example VIP is this network's; nothing else is changed. A command README adds
//! later runs too: without an expectation of its own it must exit 0 (a pipeline runs under
//! `bash -o pipefail`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use testkit::readme::{Shown, commands};
use testkit::traffic::{gen_flows, read_pcap};
use testkit::{Balancer, EalPrefix, Net, VIP, fulcrum_bin, repo};

/// README's example VIP (the flows of its `which` lines), replaced by this network's.
const README_VIP: &str = "10.0.0.100";

/// The rest of the port (its MAC, lb0's own, which the offline `replay` takes as its port's)
/// and the services: README's examples name service `web` and backend `b2`. The backends'
/// MACs are given too, so that `replay` has somewhere to send.
const SERVICES: &str = r#"mac = "{lbmac}"
[[service]]
name = "web"
vip = "10.66.0.100"
port = 80

[service.health]
type = "http"
interval_ms = 300
timeout_ms = 200

[[service.backend]]
name = "b1"
address = "10.66.0.11"
mac = "{mac1}"
weight = 100
[[service.backend]]
name = "b2"
address = "10.66.0.12"
mac = "{mac2}"
"#;

struct Walk<'a> {
    net: &'a Net,
    config: String,
    config_path: PathBuf,
    /// The balancer the `ctl` commands talk to.
    lb: Option<Balancer>,
    /// How README starts a balancer that runs until stopped.
    serve: Option<Vec<OsString>>,
}

impl Walk<'_> {
    /// README's words with this test's files and addresses.
    fn args(&self, shown: &Shown) -> Vec<OsString> {
        let pid = self.lb.as_ref().map(|b| b.pid().to_string());
        shown.argv[1..]
            .iter()
            .map(|a| {
                if a == "FILE" || (a.ends_with(".toml") && !repo().join(a).exists()) {
                    self.config_path.clone().into()
                } else if a.ends_with(".pcap") {
                    self.net.dir.join(a).into()
                } else if a.contains("PID") {
                    let pid = pid.as_deref().expect("PID: a balancer runs");
                    a.replace("PID", pid).into()
                } else {
                    a.replace(README_VIP, VIP).into()
                }
            })
            .collect()
    }

    /// Runs `fulcrum ARGS` in the balancer's namespace, from the repository's root.
    fn run(&self, args: &[OsString]) -> Output {
        self.net
            .cmd("lb", fulcrum_bin())
            .args(args)
            .current_dir(repo())
            .output()
            .expect("spawn fulcrum")
    }

    fn stop(&mut self) {
        if let Some(lb) = self.lb.take() {
            lb.stop_stdout();
        }
    }

    /// The balancer for `ctl`: started as README starts one, all backends up.
    fn serving(&mut self) {
        if self.lb.is_none() {
            let argv = self.serve.clone().unwrap_or_else(|| {
                vec!["run".into(), "-c".into(), self.config_path.clone().into()]
            });
            let lb = Balancer::start_argv(self.net, &self.config, &argv);
            lb.wait_up(2);
            self.lb = Some(lb);
        }
    }
}

fn ok(shown: &Shown, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{}` ({}) failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        shown.line,
        shown.comment,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A shell operator between commands.
fn is_operator(word: &str) -> bool {
    ["|", "||", "&&", ";", ">", ">>", "<"].contains(&word)
}

/// `word` quoted for bash.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

fn flag<'a>(args: &'a [OsString], name: &str) -> Option<&'a OsString> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
}

fn has(stdout: &str, words: &[&str], shown: &Shown) {
    for w in words {
        assert!(
            stdout.contains(w),
            "`{}` ({}) does not print {w:?}:\n{stdout}",
            shown.line,
            shown.comment
        );
    }
}

#[test]
fn e2e_readme_using_it_runs_as_shown() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let shown = commands(&readme, "Using it");
    let net = Net::up("rm", 2);
    let _prefix = EalPrefix::adopt(&net.eal_prefix());
    let lb_mac = net.mac("lb", "lb0");
    let services = SERVICES
        .replace("{lbmac}", &lb_mac)
        .replace("{mac1}", &net.mac("b1", "eth0"))
        .replace("{mac2}", &net.mac("b2", "eth0"));
    let config = net.balancer_config(&["10.66.0.2/24"]) + &services;
    let config_path = Balancer::config_path(&net);
    std::fs::write(&config_path, &config).expect("config");
    let mut walk = Walk {
        net: &net,
        config,
        config_path,
        lb: None,
        serve: None,
    };
    let mut verbs = Vec::new();
    for s in &shown {
        assert_eq!(
            s.argv[0], "fulcrum",
            "README shows `{}`: this test runs fulcrum commands only",
            s.line
        );
        let args = walk.args(s);
        let verb = s.argv[1].as_str();
        if s.argv.iter().any(|a| is_operator(a)) {
            // A pipeline (`fulcrum ctl ... | head -1`): run by bash, which must exit 0.
            if verb == "ctl" {
                walk.serving();
            }
            let words = walk.args(s);
            let mut line = vec![quote(&fulcrum_bin().display().to_string())];
            for (word, shown_as) in words.iter().zip(&s.argv[1..]) {
                line.push(if is_operator(shown_as) {
                    shown_as.clone()
                } else {
                    quote(&word.to_string_lossy())
                });
            }
            let out = walk
                .net
                .cmd("lb", "bash")
                .args(["-o", "pipefail", "-c", &line.join(" ")])
                .current_dir(repo())
                .output()
                .expect("bash");
            ok(s, &out);
            verbs.push(format!("{verb} (pipeline)"));
            println!("ok: {}", s.line);
            continue;
        }
        // `ctl -c FILE status`: the command is the first word after the options.
        let ctl_cmd = (verb == "ctl").then(|| {
            let mut rest = s.argv[2..].iter();
            loop {
                match rest.next().map(String::as_str) {
                    Some("-c" | "-s") => {
                        rest.next();
                    }
                    Some(w) if w.starts_with('-') => {}
                    Some(w) => break w.to_owned(),
                    None => panic!("`{}`: no ctl command", s.line),
                }
            }
        });
        verbs.push(match &ctl_cmd {
            Some(c) => format!("ctl {c}"),
            None => verb.to_owned(),
        });
        let t0 = Instant::now();
        match (verb, ctl_cmd.as_deref()) {
            ("check", _) => {
                let out = ok(s, &walk.run(&args));
                assert_eq!(out.lines().count(), 1, "one line: {out}");
                has(&out, &[": ok"], s);
            }
            ("run", _) if flag(&args, "--duration").is_some() => {
                walk.stop();
                let secs: f64 = flag(&args, "--duration")
                    .and_then(|d| d.to_str())
                    .and_then(|d| d.parse().ok())
                    .expect("--duration SECONDS");
                let out = ok(s, &walk.run(&args));
                let took = t0.elapsed().as_secs_f64();
                assert!(
                    took >= secs && took < secs + 30.0,
                    "`{}` took {took:.1} s",
                    s.line
                );
                if args.iter().any(|a| a == "--json") {
                    let v: serde_json::Value = serde_json::from_str(&out)
                        .unwrap_or_else(|e| panic!("`{}`: {e}:\n{out}", s.line));
                    assert!(v["totals"]["rx"].is_u64(), "counters: {v}");
                }
            }
            ("run", _) => {
                walk.stop();
                let lb = Balancer::start_argv(&net, &walk.config, &args);
                lb.wait_up(2);
                let out = lb.stop_stdout();
                assert!(
                    out.lines()
                        .any(|l| l.split_whitespace().next() == Some("rx")),
                    "`{}` prints counters after SIGTERM:\n{out}",
                    s.line
                );
                walk.serve = Some(args.clone());
            }
            ("replay", _) => {
                walk.stop();
                let input = PathBuf::from(flag(&args, "--input").expect("--input"));
                let output = PathBuf::from(flag(&args, "--output").expect("--output"));
                gen_flows(
                    &input,
                    &["--flows", "50", "--vip", VIP, "--dst-mac", &lb_mac],
                );
                let out = ok(s, &walk.run(&args));
                let (sent, got) = (read_pcap(&input).len(), read_pcap(&output).len());
                assert!(
                    sent > 0 && got == sent,
                    "{sent} frames in, {got} out:\n{out}"
                );
            }
            ("which", _) => {
                let out = ok(s, &walk.run(&args));
                assert!(out.contains("b1") || out.contains("b2"), "a backend: {out}");
            }
            ("ctl", Some(cmd)) => {
                walk.serving();
                let args = walk.args(s); // PID is known now
                let lb = walk.lb.as_ref().expect("running");
                let gen_before = lb.ctl_json(&["status"])["generation"].as_u64();
                if cmd == "reload" {
                    // Re-read: the file's new weight for b1 shows.
                    let changed = walk.config.replace("weight = 100", "weight = 150");
                    assert_ne!(changed, walk.config);
                    std::fs::write(&walk.config_path, changed).expect("config");
                }
                let out = ok(s, &walk.run(&args));
                let lb = walk.lb.as_ref().expect("running");
                match cmd {
                    "status" => has(
                        &out,
                        &[
                            env!("CARGO_PKG_VERSION"),
                            "lan",
                            "link",
                            "rx",
                            "tx",
                            "worker",
                            "generation",
                        ],
                        s,
                    ),
                    "backends" => has(&out, &["b1", "b2", "up"], s),
                    "services" => has(&out, &["web", VIP, "usable", "active"], s),
                    "which" => {
                        assert!(out.contains("b1") || out.contains("b2"), "a backend: {out}");
                        let why = out.to_lowercase();
                        assert!(
                            ["flow table hit", "maglev", "tier", "empty pool"]
                                .iter()
                                .any(|w| why.contains(w)),
                            "and why: {out}"
                        );
                    }
                    "drain" | "enable" | "disable" => {
                        let n = s.argv.len();
                        let (svc, backend) = (&s.argv[n - 2], &s.argv[n - 1]);
                        let v = lb.ctl_json(&["backends"]);
                        let state = v["services"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|x| x["service"] == svc.as_str())
                            .flat_map(|x| x["backends"].as_array().into_iter().flatten())
                            .find(|b| b["backend"] == backend.as_str())
                            .map(|b| b["state"].clone());
                        // The effective state; a disabled backend's is `maint` (its
                        // admin state, `admin`, says `disabled`).
                        let want = match cmd {
                            "drain" => "drain",
                            "enable" => "up",
                            _ => "maint",
                        };
                        assert_eq!(state, Some(want.into()), "{svc}/{backend}: {v}");
                    }
                    "reload" => {
                        std::fs::write(&walk.config_path, &walk.config).expect("config");
                        let v = lb.ctl_json(&["backends"]);
                        let b1 = v["services"][0]["backends"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|b| b["backend"] == "b1")
                            .map(|b| b["weight"].clone());
                        assert_eq!(b1, Some(150.into()), "the file was re-read: {v}");
                        let gen_after = lb.ctl_json(&["status"])["generation"].as_u64();
                        assert!(gen_after > gen_before, "{gen_before:?} -> {gen_after:?}");
                    }
                    "stats" if args.iter().any(|a| a == "--watch") => {
                        let count: usize = flag(&args, "--count")
                            .and_then(|c| c.to_str())
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(1);
                        let samples = out.lines().filter(|l| l.starts_with("t=")).count();
                        assert_eq!(samples, count, "one line of rates per sample:\n{out}");
                        let took = t0.elapsed();
                        assert!(
                            took >= Duration::from_secs(count as u64 - 1),
                            "{count} samples a second apart in {took:?}"
                        );
                    }
                    "stats" => has(&out, &["rx", "tx", "worker"], s),
                    _ => println!("(no expectation of its own for `ctl {cmd}`):\n{out}"),
                }
            }
            _ => {
                let out = ok(s, &walk.run(&args));
                println!("(no expectation of its own for `fulcrum {verb}`):\n{out}");
            }
        }
        println!("ok in {:>6.2} s: {}", t0.elapsed().as_secs_f64(), s.line);
    }
    walk.stop();
    for want in [
        "check",
        "run",
        "replay",
        "which",
        "ctl status",
        "ctl backends",
        "ctl reload",
    ] {
        assert!(
            verbs.iter().any(|v| v == want),
            "README's commands no longer include `{want}` (found {verbs:?}): update this test"
        );
    }
    println!("{} README commands ran: {}", shown.len(), verbs.join(", "));
}

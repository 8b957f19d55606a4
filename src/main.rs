//! `fulcrum`: the command line. `run` starts the balancer, `check` validates a config,
//! `replay` pushes a pcap through the real DPDK path and writes what comes out, `ctl` talks
//! to a running balancer over its control socket.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod control;
mod ctl;
mod doctor;
mod metrics;
mod reload;
mod replay;
mod report;
mod requests;
mod run;
mod signals;
mod systemd;
mod vrrp;
mod which;

pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    env!("FULCRUM_SUFFIX"),
    " (",
    env!("FULCRUM_GIT"),
    ", DPDK ",
    env!("FULCRUM_DPDK"),
    ")"
);

/// Fulcrum: an L4 load balancer on DPDK (Maglev hashing, per-flow state, DSR and NAT).
#[derive(Parser)]
#[command(name = "fulcrum", version = VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the balancer: open the ports, start the workers, forward until SIGINT/SIGTERM,
    /// then print the final per-worker and per-port counters. SIGHUP reloads the config.
    /// Logging: FULCRUM_LOG (default "info"), e.g. FULCRUM_LOG=debug.
    Run {
        /// The configuration file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Print the final counters as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Stop by itself after this many seconds (benchmarks, bounded tests).
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        /// Discard the flow tables (and backend ids) a previous process left in
        /// `global.flow_state_dir` instead of adopting them: every flow starts again.
        #[arg(long)]
        fresh: bool,
    },
    /// Validate a configuration file: exit 0 with a one-line summary, or exit 1 with every
    /// error as FILE:LINE:COL: FIELD: MESSAGE.
    Check {
        /// The configuration file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the real DPDK path over a pcap (net_pcap devices replace the config's ports), exit
    /// when the input is consumed, write every transmitted frame to OUT and print the
    /// counters as JSON.
    Replay {
        /// The configuration file (TOML); its ports become net_pcap devices.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Frames received on the first port.
        #[arg(short, long, value_name = "IN.pcap")]
        input: PathBuf,
        /// Every frame the balancer transmitted, on any port.
        #[arg(short, long, value_name = "OUT.pcap")]
        output: PathBuf,
        /// Give up if the input is not consumed within this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
    },
    /// Which backend the config sends a new flow to, as a worker computes it, assuming every
    /// backend healthy and resolved (offline: no check runs; `fulcrum ctl which` asks the
    /// running balancer).
    ///
    /// Flows as `SRC:PORT DST:PORT [tcp|udp]` (IPv6 as `[ADDR]:PORT`, protocol tcp by
    /// default), one per argument or as separate words (as `ctl which` takes them), or one
    /// per line on stdin when no flow is given.
    Which {
        /// The configuration file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// One JSON object per flow and line.
        #[arg(long)]
        json: bool,
        /// Flows; none: read them from stdin, one per line.
        #[arg(value_name = "FLOW")]
        flows: Vec<String>,
    },
    /// Check this host before running: hugepages, IOMMU and vfio-pci, each port's driver
    /// binding and NUMA node, worker CPUs (online, apart from the slow path, isolated,
    /// frequency governor), the kernel exception path's /dev/net/tun, the control socket's
    /// directory, the flow tables' directory on a memory file system. Each finding is ok, warn or FAIL, with the command that fixes it; exit 0
    /// when Fulcrum can run, 1 when a finding fails.
    Doctor {
        /// The configuration to check the host against (without it: the host alone).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Read /sys and /proc under this directory instead of / (tests).
        #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Talk to a running balancer over its control socket: status, services, backends,
    /// which, drain, enable, disable, clear, reload, stats.
    Ctl {
        /// The control socket (default: `-c`'s `global.control_socket`, else
        /// /run/fulcrum/fulcrum.sock).
        #[arg(short, long, value_name = "SOCKET")]
        socket: Option<PathBuf>,
        /// Take the socket's path from this config file: only `global.control_socket` is
        /// read, so a config being edited (invalid elsewhere) still works.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The reply as JSON (the response's `data`).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: ctl::CtlCmd,
    },
}

fn main() -> ExitCode {
    // First, so that no signal finds the process without its handlers (see signals.rs).
    let signals = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fulcrum: installing signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Run { .. }) {
        signals.exit_on_signal();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FULCRUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.cmd {
        Cmd::Check { config } => check(&config),
        Cmd::Run {
            config,
            json,
            duration,
            fresh,
        } => report(run::run(&config, json, duration, fresh, &signals)),
        Cmd::Which {
            config,
            json,
            flows,
        } => report(which::which(&config, &flows, json)),
        Cmd::Replay {
            config,
            input,
            output,
            timeout,
        } => report(replay::replay(&config, &input, &output, timeout)),
        Cmd::Doctor { config, root } => doctor(config.as_deref(), &root),
        Cmd::Ctl {
            socket,
            config,
            json,
            cmd,
        } => report(ctl::socket_path(socket, config).and_then(|p| ctl::ctl(&p, cmd, json))),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match conf::load(path) {
        Ok(cfg) => {
            let backends: usize = cfg.services.iter().map(|s| s.backends.len()).sum();
            println!(
                "{}: ok: {} port(s), {} worker(s), {} service(s), {} backend(s)",
                path.display(),
                cfg.ports.len(),
                cfg.dpdk.workers.len(),
                cfg.services.len(),
                backends
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn doctor(config: Option<&std::path::Path>, root: &std::path::Path) -> ExitCode {
    let cfg = match config.map(conf::load).transpose() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            println!("FAIL  config: invalid (errors above)\ncannot run");
            return ExitCode::FAILURE;
        }
    };
    let findings = doctor::diagnose(root, cfg.as_ref());
    let mut text = String::new();
    let can_run = doctor::print(&findings, &mut text);
    print!("{text}");
    if can_run {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn report<E: std::fmt::Display>(r: Result<(), E>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod man {
    //! The man pages the Debian package ships (packaging/man/), rendered from this CLI by
    //! clap_mangen: `fulcrum.1` and one `fulcrum-COMMAND.1` per command. The test fails when
    //! they differ from the CLI; `FULCRUM_BLESS=1` writes them anew.
    use clap::CommandFactory;

    fn render(cmd: clap::Command) -> String {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn man_pages_match_the_cli() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man");
        // The package's version, not the build's git commit: the pages change with the CLI only.
        let top = super::Cli::command().version(env!("CARGO_PKG_VERSION"));
        let mut pages = vec![("fulcrum.1".to_string(), render(top.clone()))];
        for sub in top.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("fulcrum-{}", sub.get_name());
            // clap names are &'static str without its `string` feature; a test may leak.
            let name: &'static str = Box::leak(name.into_boxed_str());
            pages.push((format!("{name}.1"), render(sub.clone().name(name))));
        }
        let bless = std::env::var_os("FULCRUM_BLESS").is_some();
        for (file, text) in &pages {
            let path = dir.join(file);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, text).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == *text,
                "{} differs from the CLI: run FULCRUM_BLESS=1 cargo test --bin fulcrum man",
                path.display()
            );
        }
        let names: Vec<&str> = pages.iter().map(|(f, _)| f.as_str()).collect();
        assert!(names.contains(&"fulcrum-doctor.1"), "{names:?}");
    }
}

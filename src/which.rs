//! `fulcrum which`: where a config sends a flow, computed offline exactly as a worker does on
//! a flow-table miss (Maglev over the usable backends), assuming every backend is healthy and
//! its MAC known: the answer says so. Operators use it to predict placement; the tests use it
//! to check that every live connection landed where the config says. Flows are written as
//! for `fulcrum ctl which` ([`fulcrum::flowspec`]).

use std::io::{BufRead, Write};
use std::path::Path;

use fulcrum::flowspec::{self, FlowError};
use slowpath::publish::{BackendIds, Dynamic, build};

/// What offline answers take for granted.
pub const ASSUMED: &str = "every backend healthy and resolved (offline: no checks run)";

/// Why `fulcrum which` failed.
#[derive(Debug, thiserror::Error)]
pub enum WhichError {
    #[error("{0}")]
    Config(#[from] conf::ConfigError),
    #[error("{line:?}: {source}")]
    Flow { line: String, source: FlowError },
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

/// Prints one line per flow (from `flows`, or stdin when empty). A closed output pipe ends
/// it quietly.
pub fn which(config: &Path, flows: &[String], json: bool) -> Result<(), WhichError> {
    match run(config, flows, json) {
        Err(WhichError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

fn run(config: &Path, flows: &[String], json: bool) -> Result<(), WhichError> {
    let cfg = conf::load(config)?;
    // Healthy and resolved: the placement the config asks for.
    let mut dynamic = Dynamic::default();
    for s in &cfg.services {
        for b in &s.backends {
            if let Some(path) = cfg.route(b.address) {
                dynamic.neighbors.insert(path.next_hop, [2, 0, 0, 0, 0, 1]);
            }
        }
    }
    let snap = build(&cfg, &mut BackendIds::new(), &dynamic, 1);
    let lines: Vec<String> = if flows.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .collect()
    } else {
        // The arguments are one stream of words: a flow per argument or a word per argument.
        vec![flows.join(" ")]
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in lines {
        let parsed = flowspec::parse_flows(&[&line]).map_err(|source| WhichError::Flow {
            line: line.trim().to_string(),
            source,
        })?;
        for flow in parsed {
            let mut reply = crate::control::new_flow(&snap, &cfg, flow.text, &flow.key);
            reply.generation = None;
            reply.assumed = Some(ASSUMED.into());
            if json {
                serde_json::to_writer(&mut out, &reply).map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                crate::ctl::print_which(&mut out, &reply)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

//! Where the engine keeps state outside its own memory: the workers' flow tables (anonymous
//! memory or files a restart adopts) and the shared-memory counter files other processes read.

use conf::Config;

use crate::flow;

use super::EngineError;

/// Where the workers' flow tables live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowStore {
    /// Anonymous memory: a new process starts empty (tests, `fulcrum replay`).
    Memory,
    /// One file per worker in `dir`, adopted by the next process when compatible
    /// ([`flow::persist`]); `fresh` discards what is there.
    Files {
        dir: std::path::PathBuf,
        fresh: bool,
    },
}

/// What the engine did with the flow tables at start, for the log and `ctl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowTablesReport {
    /// The directory of the files (`None`: in memory).
    pub dir: Option<std::path::PathBuf>,
    /// Entries adopted from the files (a NAT pair counts two).
    pub adopted: usize,
    /// Entries found but dropped as inconsistent.
    pub dropped: usize,
    /// Why the tables started empty, in one line (`None`: adopted, or in memory).
    pub empty: Option<String>,
}

/// The [`flow::persist::Header::fingerprint`] of `cfg`: what an adopted entry refers to.
pub fn flow_fingerprint(cfg: &Config) -> u64 {
    flow::persist::Header::fingerprint(cfg.ports.iter().map(|p| p.name.as_str()))
}

/// Every worker's flow table per `store`, the seed their entries are placed with, and what
/// was done. A new table's seed is random per process (unknown outside); an adopted one keeps
/// the seed of the process that wrote it.
pub(super) fn open_flow_tables(
    cfg: &Config,
    store: &FlowStore,
) -> Result<(Vec<flow::FlowTable>, u64, FlowTablesReport), EngineError> {
    let seed =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u64);
    let (dir, fresh) = match store {
        FlowStore::Memory => (None, false),
        FlowStore::Files { dir, fresh } => (Some(dir.clone()), *fresh),
    };
    let spec = flow::persist::Spec {
        dir: dir.clone(),
        capacity: cfg.global.flow_table_capacity as usize,
        workers: cfg.dpdk.workers.len() as u16,
        fingerprint: flow_fingerprint(cfg),
        seed,
        clock_origin_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        fresh,
    };
    let o = flow::persist::open(&spec).map_err(|e| EngineError::Setup(e.to_string()))?;
    let report = FlowTablesReport {
        dir,
        adopted: o.adopted,
        dropped: o.dropped,
        empty: o.empty.map(|e| e.to_string()),
    };
    Ok((o.tables, o.seed, report))
}

/// Where counter files go: `/dev/shm` (memory only) where it exists.
pub(super) fn counter_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new("/dev/shm");
    if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// This process's counter file.
pub(super) fn counter_file_path() -> std::path::PathBuf {
    counter_dir().join(counter_file_name(std::process::id()))
}

fn counter_file_name(pid: u32) -> String {
    format!("fulcrum-{pid}.counters")
}

/// Removes the counter files in `dir` of processes that no longer run (a crash or a kill
/// leaves them behind); returns them. A file whose pid is alive is left alone, whoever it is.
pub(super) fn remove_stale_counter_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("fulcrum-")?.strip_suffix(".counters"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if name.to_str() != Some(counter_file_name(pid).as_str())
            || std::path::Path::new("/proc").join(pid.to_string()).exists()
        {
            continue;
        }
        if std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

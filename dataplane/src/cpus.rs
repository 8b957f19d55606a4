//! Whether the configured worker and slow-path CPUs can be had, checked before EAL starts:
//! a CPU this host does not have, one that is offline, or one outside this process's CPU set
//! (taskset, a cgroup cpuset) would otherwise leave a worker unpinned, sharing a core with
//! another without a word.
//!
//! The check runs on the thread that will initialise EAL, before EAL pins it to one CPU: the
//! affinity it reads then is the process's.

use std::ops::RangeInclusive;
use std::path::Path;

/// Why a configured CPU cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{role} CPU {cpu} {why}")]
pub struct CpuError {
    /// "worker 0", "slow-path".
    pub role: String,
    pub cpu: usize,
    /// What is wrong, with what the host has.
    pub why: String,
}

/// The CPUs of this host as sysfs lists them, and the ones this process may run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSets {
    /// `/sys/devices/system/cpu/present`.
    pub present: Vec<RangeInclusive<usize>>,
    /// `/sys/devices/system/cpu/online`.
    pub online: Vec<RangeInclusive<usize>>,
    /// The calling thread's affinity mask (`sched_getaffinity`).
    pub allowed: Vec<usize>,
}

impl CpuSets {
    /// This host's sets, seen from the calling thread; `None` where the kernel does not say.
    pub fn read() -> Option<CpuSets> {
        let sys = Path::new("/sys/devices/system/cpu");
        let list = |f: &str| {
            std::fs::read_to_string(sys.join(f))
                .ok()
                .and_then(|s| parse_list(&s))
        };
        let allowed = core_affinity::get_core_ids()?
            .into_iter()
            .map(|c| c.id)
            .collect();
        Some(CpuSets {
            present: list("present")?,
            online: list("online")?,
            allowed,
        })
    }

    /// `Ok` when `cpu` can be pinned to; otherwise what is wrong, for the operator.
    pub fn check(&self, role: &str, cpu: usize) -> Result<(), CpuError> {
        let has = |set: &[RangeInclusive<usize>]| set.iter().any(|r| r.contains(&cpu));
        let why = if !has(&self.present) {
            format!(
                "does not exist on this host (CPUs present: {})",
                format_list(&self.present)
            )
        } else if !has(&self.online) {
            format!("is offline (CPUs online: {})", format_list(&self.online))
        } else if !self.allowed.contains(&cpu) {
            format!(
                "is outside this process's CPU set (taskset or cgroup cpuset; allowed: {})",
                format_list(&ranges(&self.allowed))
            )
        } else {
            return Ok(());
        };
        Err(CpuError {
            role: role.to_owned(),
            cpu,
            why,
        })
    }
}

/// A kernel CPU list (`0-3,8,10-11`); `None` if malformed.
pub fn parse_list(s: &str) -> Option<Vec<RangeInclusive<usize>>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse().ok()?, b.parse().ok()?);
                (a <= b).then_some(a..=b)
            }
            None => part.parse().ok().map(|a| a..=a),
        })
        .collect()
}

/// The kernel's notation for a list of ranges.
pub fn format_list(set: &[RangeInclusive<usize>]) -> String {
    if set.is_empty() {
        return "none".to_owned();
    }
    let parts: Vec<String> = set
        .iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        })
        .collect();
    parts.join(",")
}

/// Sorted CPU ids as ranges.
pub fn ranges(cpus: &[usize]) -> Vec<RangeInclusive<usize>> {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<RangeInclusive<usize>> = Vec::new();
    for c in v {
        match out.last_mut() {
            Some(r) if *r.end() + 1 == c => *r = *r.start()..=c,
            _ => out.push(c..=c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets() -> CpuSets {
        CpuSets {
            present: parse_list("0-7\n").unwrap(),
            online: parse_list("0-3,6-7").unwrap(),
            allowed: vec![0, 1, 2, 6],
        }
    }

    #[test]
    fn lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_list("0\n"), Some(vec![0..=0]));
        assert_eq!(parse_list("0-1,4,6-9"), Some(vec![0..=1, 4..=4, 6..=9]));
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("a"), None);
        assert_eq!(format_list(&ranges(&[6, 0, 1, 2, 9])), "0-2,6,9");
    }

    #[test]
    fn each_reason_is_named_with_what_the_host_has() {
        let s = sets();
        assert_eq!(s.check("worker 0", 1), Ok(()));
        assert_eq!(
            s.check("worker 0", 8).unwrap_err().to_string(),
            "worker 0 CPU 8 does not exist on this host (CPUs present: 0-7)"
        );
        assert_eq!(
            s.check("worker 1", 4).unwrap_err().to_string(),
            "worker 1 CPU 4 is offline (CPUs online: 0-3,6-7)"
        );
        assert_eq!(
            s.check("slow-path", 7).unwrap_err().to_string(),
            "slow-path CPU 7 is outside this process's CPU set (taskset or cgroup cpuset; \
             allowed: 0-2,6)"
        );
    }
}

//! The files a DPDK primary process leaves behind under its `--file-prefix`: the runtime
//! directory (`/var/run/dpdk/<prefix>/`: config, fbarrays, mp socket) and, with hugepages,
//! the hugepage files `<prefix>map_<N>` in each hugetlbfs mount. EAL keeps all of them after
//! `rte_eal_cleanup`, and a killed process cannot remove them at all: [`Eal`](super::Eal)
//! removes its own on drop, and test and benchmark harnesses call [`remove_prefix_files`]
//! for the prefix they gave a process they started, once that process is gone.
//!
//! Only names that the prefix makes exactly are touched: `fulcrum-a` never removes
//! `fulcrum-a1`'s files, nor anything outside the runtime base and the hugetlbfs mounts.

use std::path::{Path, PathBuf};

/// Where DPDK puts runtime directories for root (EAL uses `$XDG_RUNTIME_DIR/dpdk` or
/// `/tmp/dpdk` for other users; `Eal` asks EAL for the real one).
pub const RUNTIME_BASE: &str = "/var/run/dpdk";

/// EAL's file prefix when none is given.
pub const DEFAULT_PREFIX: &str = "rte";

/// What [`remove_prefix_files`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The runtime directory, if there was one.
    pub runtime_dir: Option<PathBuf>,
    /// Hugepage files.
    pub hugepage_files: Vec<PathBuf>,
}

/// The `--file-prefix` in EAL arguments (the last one wins, as in EAL's getopt), or `rte`.
pub fn file_prefix(args: &[String]) -> String {
    let mut prefix = DEFAULT_PREFIX.to_owned();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--file-prefix" {
            if let Some(p) = it.next() {
                prefix = p.clone();
            }
        } else if let Some(p) = arg.strip_prefix("--file-prefix=") {
            prefix = p.to_owned();
        }
    }
    prefix
}

/// Whether `prefix` can only name files of its own: not empty, no path separator, not a
/// dot-name (which would make the runtime directory the base itself or its parent).
pub fn is_safe_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && !prefix.contains('/') && prefix != "." && prefix != ".."
}

/// Removes `prefix`'s runtime directory under [`RUNTIME_BASE`] and its hugepage files in
/// every hugetlbfs mount. Call it only for a prefix whose process has exited (or is exiting
/// after `rte_eal_cleanup`): a live process's files are its own. Missing files are fine; an
/// unsafe prefix removes nothing.
pub fn remove_prefix_files(prefix: &str) -> Removed {
    remove_in(Path::new(RUNTIME_BASE), prefix, &hugetlbfs_mounts())
}

/// [`remove_prefix_files`] with the runtime base and hugepage directories given.
pub(crate) fn remove_in(base: &Path, prefix: &str, huge_dirs: &[PathBuf]) -> Removed {
    let mut removed = Removed::default();
    if !is_safe_prefix(prefix) {
        return removed;
    }
    let dir = base.join(prefix);
    if dir.is_dir() && std::fs::remove_dir_all(&dir).is_ok() {
        removed.runtime_dir = Some(dir);
    }
    for huge in huge_dirs {
        let Ok(entries) = std::fs::read_dir(huge) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_hugepage_file(name, prefix) && std::fs::remove_file(entry.path()).is_ok() {
                removed.hugepage_files.push(entry.path());
            }
        }
    }
    removed
}

/// `<prefix>map_<digits>`: how EAL names its hugepage files (`eal_get_hugefile_path`).
fn is_hugepage_file(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("map_"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Mount points of hugetlbfs file systems, from `/proc/mounts`.
pub(crate) fn hugetlbfs_mounts() -> Vec<PathBuf> {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            // /proc/mounts escapes spaces as \040; such mounts are not ours to guess at.
            (fstype == "hugetlbfs" && !dir.contains('\\')).then(|| PathBuf::from(dir))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn prefix_comes_from_the_last_file_prefix_argument() {
        assert_eq!(file_prefix(&s(&["--no-huge", "-m", "512"])), "rte");
        assert_eq!(
            file_prefix(&s(&["--file-prefix", "fl-1", "-m", "1"])),
            "fl-1"
        );
        assert_eq!(
            file_prefix(&s(&["--file-prefix=a", "--file-prefix", "b"])),
            "b"
        );
        assert_eq!(file_prefix(&s(&["--file-prefix=c"])), "c");
    }

    #[test]
    fn removes_exactly_what_the_prefix_names() {
        let root = std::env::temp_dir().join(format!("fulcrum-rtfiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (base, huge) = (root.join("run"), root.join("huge"));
        for d in ["fl-a", "fl-a1", "other"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
            std::fs::write(base.join(d).join("config"), b"x").unwrap();
        }
        std::fs::create_dir_all(&huge).unwrap();
        for f in [
            "fl-amap_0",
            "fl-amap_17",
            "fl-a1map_0",
            "fl-amap_",
            "fl-amap_x",
            "rtemap_0",
        ] {
            std::fs::write(huge.join(f), b"x").unwrap();
        }

        let removed = remove_in(&base, "fl-a", std::slice::from_ref(&huge));
        assert_eq!(removed.runtime_dir, Some(base.join("fl-a")));
        let mut files = removed.hugepage_files.clone();
        files.sort();
        assert_eq!(files, [huge.join("fl-amap_0"), huge.join("fl-amap_17")]);
        assert!(!base.join("fl-a").exists());
        assert!(base.join("fl-a1/config").exists() && base.join("other").exists());
        for f in ["fl-a1map_0", "fl-amap_", "fl-amap_x", "rtemap_0"] {
            assert!(huge.join(f).exists(), "{f} kept");
        }

        // Unsafe prefixes remove nothing, not even the base.
        for p in ["", ".", "..", "a/b"] {
            assert_eq!(
                remove_in(&base, p, std::slice::from_ref(&huge)),
                Removed::default()
            );
        }
        assert!(base.join("other").exists());
        // Gone already: nothing to do, no error.
        assert_eq!(
            remove_in(&base, "fl-a", std::slice::from_ref(&huge)),
            Removed::default()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

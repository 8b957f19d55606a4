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

/// The base of the runtime directories EAL makes for this user (`eal_create_runtime_dir`):
/// [`RUNTIME_BASE`] for root, `$XDG_RUNTIME_DIR/dpdk` or `/tmp/dpdk` for others.
pub fn runtime_base() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    if unsafe { libc::getuid() } == 0 {
        return PathBuf::from(RUNTIME_BASE);
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
        .join("dpdk")
}

/// The live process that holds a file prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    /// Its command line, arguments joined by spaces (`?` when unreadable).
    pub cmdline: String,
}

/// Who is the primary process of `prefix`: EAL's primary holds a write lock on
/// `<runtime dir>/config` for its lifetime (a crashed one's lock is gone with it). `None` when
/// no process holds it.
pub fn prefix_holder(prefix: &str) -> Option<Holder> {
    if !is_safe_prefix(prefix) {
        return None;
    }
    lock_holder(&runtime_base().join(prefix).join("config"))
}

/// The pid holding a POSIX lock that conflicts with a write lock on all of `path`.
fn lock_holder(path: &Path) -> Option<Holder> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: flock is plain data; all-zero is a valid value, completed below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = 0, l_len = 0: the whole file.
    // SAFETY: the descriptor is open (owned by `file`, alive across the call); F_GETLK only
    // writes the `flock` it is given, which is ours and writable.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    if ret != 0 || lock.l_type == libc::F_UNLCK as libc::c_short || lock.l_pid <= 0 {
        return None;
    }
    let pid = lock.l_pid;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| {
            let words: Vec<String> = b
                .split(|&c| c == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            words.join(" ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "?".to_owned());
    Some(Holder { pid, cmdline })
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
    fn a_lock_names_its_holder_and_a_free_file_names_nobody() {
        let dir = std::env::temp_dir().join(format!("fulcrum-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(&path, [0u8; 64]).unwrap();
        assert_eq!(lock_holder(&path), None);
        assert_eq!(lock_holder(&dir.join("missing")), None);
        // A POSIX write lock held by another process, as EAL's primary holds its config's.
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import fcntl, sys, time\n\
                 f = open(sys.argv[1], 'r+')\n\
                 fcntl.lockf(f, fcntl.LOCK_EX)\n\
                 print('locked', flush=True)\n\
                 time.sleep(30)",
            )
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        let holder = lock_holder(&path);
        let _ = child.kill();
        let _ = child.wait();
        let holder = holder.expect("the lock is seen");
        assert_eq!(holder.pid, child.id() as i32);
        assert!(
            holder.cmdline.contains("python3") && holder.cmdline.contains("fcntl.lockf"),
            "{}",
            holder.cmdline
        );
        assert_eq!(lock_holder(&path), None, "a dead holder's lock is gone");
        std::fs::remove_dir_all(&dir).unwrap();
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

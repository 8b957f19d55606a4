//! The EAL runtime: one initialisation per process, thread registration, the TSC, and the
//! count of live DPDK objects that decides whether `rte_eal_cleanup` may run.
//!
//! `rte_eal_cleanup` unmaps DPDK's memory, so every pool, port and ring pointer dies with it.
//! Each of those objects therefore holds an [`EalUser`]; dropping [`Eal`] cleans up only when
//! no user is left, and otherwise skips the cleanup (the process exit reclaims everything).
//! A pool dropped while some of its mbufs are still out keeps its user forever, so an mbuf
//! can never outlive the memory it points into.
//!
//! EAL keeps its runtime directory (and hugepage files) after `rte_eal_cleanup`; once the
//! cleanup has run, `Eal` removes the ones its own `--file-prefix` names (see
//! [`runtime_files`](super::runtime_files)).

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use dpdk_sys as sys;

use super::error::DpdkError;
use super::runtime_files;

const UNINIT: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
/// Terminal: EAL failed to initialise, or was dropped. DPDK cannot initialise twice.
const DONE: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// Live pools, ports and rings (plus one per pool leaked on purpose).
static USERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread got its lcore id from [`Eal::register_thread`] (and may give it back).
    static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The initialised EAL. At most one exists per process, ever.
///
/// Dropping it runs `rte_eal_cleanup` if no pool, port or ring is alive any more.
#[derive(Debug)]
pub struct Eal {
    /// `--file-prefix`: names the runtime directory and hugepage files removed on drop.
    prefix: String,
    /// The runtime directory EAL made (`/var/run/dpdk/<prefix>` for root).
    runtime_dir: Option<PathBuf>,
    /// `--huge-dir`, when given, searched for hugepage files besides the hugetlbfs mounts.
    huge_dir: Option<PathBuf>,
}

impl Eal {
    /// Initialises EAL with `args` (`argv[0]` is supplied as `fulcrum`).
    ///
    /// Succeeds at most once per process: any later call, also after a failed one or after
    /// the `Eal` was dropped, returns [`DpdkError::EalAlreadyInitialized`].
    ///
    /// EAL pins the calling thread to the main lcore's CPU (the first of `-l`/`--lcores`, by
    /// default CPU 0), and threads spawned from it afterwards inherit that affinity: pin worker
    /// threads explicitly.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        // Check the arguments first, so that a bad one does not use up the one initialisation.
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::from(c"fulcrum"));
        for arg in args {
            let arg = CString::new(arg.as_str()).map_err(|_| {
                DpdkError::invalid(
                    "rte_eal_init",
                    format!("argument {arg:?} contains a NUL byte"),
                )
            })?;
            owned.push(arg);
        }
        let argc = c_int::try_from(owned.len())
            .map_err(|_| DpdkError::invalid("rte_eal_init", "too many arguments"))?;
        // EAL itself reports a prefix in use as a failure with rte_errno 0 ("Success").
        let prefix = runtime_files::file_prefix(args);
        if shares_config(args)
            && let Some(h) = runtime_files::prefix_holder(&prefix)
        {
            return Err(DpdkError::PrefixInUse {
                prefix,
                pid: h.pid,
                cmdline: h.cmdline,
            });
        }
        if STATE
            .compare_exchange(UNINIT, STARTING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(DpdkError::EalAlreadyInitialized);
        }

        // Leaked on purpose, once per process: getopt permutes argv and keeps pointers into
        // it in its static state, and EAL may keep some of the strings.
        let argv: &'static mut [*mut c_char] =
            Vec::leak(owned.into_iter().map(CString::into_raw).collect());
        // SAFETY: argv holds argc valid NUL-terminated strings that live for the rest of the
        // process; STATE guarantees this is the only call in the process.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let err = match DpdkError::from_rte_errno("rte_eal_init") {
                // Some of EAL's failures set no rte_errno: "Success" would be a lie.
                DpdkError::Call { errno: 0, .. } => DpdkError::invalid(
                    "rte_eal_init",
                    "EAL failed without saying why here (rte_errno 0); its log above does",
                ),
                e => e,
            };
            STATE.store(DONE, Ordering::SeqCst);
            // EAL may have made the runtime directory (and hugepage files) before failing, and
            // no cleanup call exists for a failed init: remove them, unless a live process
            // holds the prefix (then they are its own).
            if shares_config(args) && runtime_files::prefix_holder(&prefix).is_none() {
                remove_prefix(&runtime_files::runtime_base(), &prefix, huge_dir(args));
            }
            return Err(err);
        }
        STATE.store(RUNNING, Ordering::SeqCst);
        // SAFETY: EAL is initialised; it returns its static runtime-dir buffer.
        let dir = unsafe { sys::rte_eal_get_runtime_dir() };
        let runtime_dir = if dir.is_null() {
            None
        } else {
            // SAFETY: non-null and NUL-terminated, a static buffer alive for the process;
            // copied out at once.
            let dir = unsafe { CStr::from_ptr(dir) };
            dir.to_str()
                .ok()
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        };
        Ok(Eal {
            prefix,
            runtime_dir,
            huge_dir: huge_dir(args),
        })
    }

    /// Whether EAL is initialised and not yet dropped.
    pub fn is_running() -> bool {
        STATE.load(Ordering::SeqCst) == RUNNING
    }

    /// Gives the calling (non-EAL) thread an lcore id, so that mempool per-lcore caches and
    /// other per-lcore state work on it. Returns the lcore id; a thread that already has one
    /// (an EAL lcore, or registered before) just gets it back.
    ///
    /// The lcore slot stays taken until [`Eal::unregister_thread`] runs on this thread: call
    /// it before the thread exits.
    pub fn register_thread() -> Result<u32, DpdkError> {
        let _user = EalUser::acquire()?;
        if let Some(id) = Self::lcore_id() {
            return Ok(id);
        }
        // SAFETY: EAL is running (held by `_user`); rte_thread_register only touches the
        // calling thread's own lcore state and the lcore table under EAL's lock.
        if unsafe { sys::rte_thread_register() } < 0 {
            return Err(DpdkError::from_rte_errno("rte_thread_register"));
        }
        REGISTERED.with(|r| r.set(true));
        Self::lcore_id()
            .ok_or_else(|| DpdkError::invalid("rte_thread_register", "no lcore id was assigned"))
    }

    /// Releases the lcore id [`Eal::register_thread`] gave this thread. A no-op on threads
    /// that did not register (EAL's own lcores keep their ids).
    pub fn unregister_thread() {
        if !REGISTERED.with(|r| r.replace(false)) {
            return;
        }
        let Ok(_user) = EalUser::acquire() else {
            // EAL is gone, and with it the lcore table the slot lived in.
            return;
        };
        // SAFETY: EAL is running and this thread registered itself, so the lcore it releases
        // is its own non-EAL lcore.
        unsafe { sys::rte_thread_unregister() };
    }

    /// The calling thread's lcore id, `None` for a thread that is neither an EAL lcore nor
    /// registered.
    pub fn lcore_id() -> Option<u32> {
        // SAFETY: reads the calling thread's lcore id (a C thread-local); always valid.
        let id = unsafe { sys::fulcrum_lcore_id() };
        (id != sys::LCORE_ID_ANY).then_some(id)
    }

    /// TSC ticks per second (0 before EAL has calibrated it in `init`).
    pub fn tsc_hz() -> u64 {
        // SAFETY: returns a value EAL stored at init; no preconditions.
        unsafe { sys::rte_get_tsc_hz() }
    }

    /// The CPU's timestamp counter.
    #[inline]
    pub fn rdtsc() -> u64 {
        // SAFETY: reads the timestamp counter; no preconditions.
        unsafe { sys::fulcrum_rdtsc() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // Order matters (see EalUser::acquire): publish DONE first, then count users.
        STATE.store(DONE, Ordering::SeqCst);
        let users = USERS.load(Ordering::SeqCst);
        if users != 0 {
            warn(&format!(
                "skipping rte_eal_cleanup: {users} pool(s)/port(s)/ring(s) still alive or leaked"
            ));
            return;
        }
        // SAFETY: EAL is initialised, and no DPDK object that could point into its memory is
        // alive (USERS is 0 and, with STATE at DONE, no new one can be created).
        if unsafe { sys::rte_eal_cleanup() } < 0 {
            warn(&DpdkError::from_rte_errno("rte_eal_cleanup").to_string());
        }
        self.remove_runtime_files();
    }
}

impl Eal {
    /// Removes this process's runtime directory and hugepage files, which EAL keeps after
    /// its cleanup. Only the directory EAL reported, and only when its name is our prefix:
    /// never a directory another prefix names.
    fn remove_runtime_files(&self) {
        let Some(dir) = &self.runtime_dir else { return };
        let Some(base) = dir.parent() else { return };
        if dir.file_name().and_then(|n| n.to_str()) != Some(self.prefix.as_str()) {
            warn(&format!(
                "not removing runtime directory {}: it is not named by prefix {:?}",
                dir.display(),
                self.prefix
            ));
            return;
        }
        remove_prefix(base, &self.prefix, self.huge_dir.clone());
    }
}

/// Removes `prefix`'s runtime directory under `base` and its hugepage files in every hugetlbfs
/// mount and in `huge_dir`.
fn remove_prefix(base: &std::path::Path, prefix: &str, huge_dir: Option<PathBuf>) {
    let mut huge_dirs = runtime_files::hugetlbfs_mounts();
    huge_dirs.extend(huge_dir);
    runtime_files::remove_in(base, prefix, &huge_dirs);
}

/// Whether EAL will take this prefix's shared config as its primary (and so conflict with
/// another process using it): not as a secondary process, not with a private, in-memory one.
fn shares_config(args: &[String]) -> bool {
    let secondary = args
        .windows(2)
        .any(|w| w[0] == "--proc-type" && (w[1] == "secondary" || w[1] == "auto"))
        || args
            .iter()
            .any(|a| a == "--proc-type=secondary" || a == "--proc-type=auto");
    !secondary
        && !args
            .iter()
            .any(|a| a == "--in-memory" || a == "--no-shconf")
}

/// The `--huge-dir` in EAL arguments, if any.
fn huge_dir(args: &[String]) -> Option<PathBuf> {
    let mut dir = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--huge-dir" {
            dir = it.next().map(PathBuf::from);
        } else if let Some(d) = arg.strip_prefix("--huge-dir=") {
            dir = Some(PathBuf::from(d));
        }
    }
    dir
}

/// Proof that EAL is running, held by every object that points into DPDK memory; keeps
/// `rte_eal_cleanup` from running while it lives.
#[derive(Debug)]
pub(crate) struct EalUser {
    _private: (),
}

impl EalUser {
    /// Registers a new user, or fails if EAL is not running.
    pub(crate) fn acquire() -> Result<EalUser, DpdkError> {
        // Count first, check second: Eal::drop stores DONE first and counts second, so with
        // SeqCst either this sees DONE or Eal::drop sees this user.
        USERS.fetch_add(1, Ordering::SeqCst);
        if STATE.load(Ordering::SeqCst) != RUNNING {
            USERS.fetch_sub(1, Ordering::SeqCst);
            return Err(DpdkError::EalNotRunning);
        }
        Ok(EalUser { _private: () })
    }

    /// Keeps EAL from ever being cleaned up, for an object deliberately leaked because
    /// something may still point into it (a pool with mbufs out).
    pub(crate) fn keep_forever(&self) {
        USERS.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for EalUser {
    fn drop(&mut self) {
        USERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Logs a warning through DPDK's logger (so `--log-level` applies). Control path only.
pub(crate) fn warn(message: &str) {
    let Ok(text) = CString::new(message.replace('\0', " ")) else {
        return;
    };
    // SAFETY: the format string takes exactly one `%s`, matched by a NUL-terminated string;
    // rte_log works before EAL init and after cleanup (it falls back to stderr).
    unsafe {
        sys::rte_log(
            sys::RTE_LOG_WARNING,
            sys::RTE_LOGTYPE_USER1,
            c"FULCRUM: %s\n".as_ptr(),
            text.as_ptr(),
        );
    }
}

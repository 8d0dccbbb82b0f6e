//! The Environment Abstraction Layer: initialised exactly once per process.
//!
//! `rte_eal_init` may run once per process; a second call fails with EALREADY and
//! nothing may be called after `rte_eal_cleanup`. [`Eal::init`] enforces that with a
//! process-wide `OnceLock`: the first caller's arguments win, later callers get the
//! same handle (or the same error). Threads that are not EAL lcores must call
//! [`register_thread`] before touching mempools, or the per-core cache is bypassed.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use crate::ffi;

/// Why the EAL could not start.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EalError {
    /// rte_eal_init failed; the message is DPDK's own strerror for rte_errno.
    #[error("DPDK EAL initialisation failed: {0} (arguments: {1}). On a machine without hugepages pass --no-huge -m 1024; give each DPDK process its own --file-prefix")]
    InitFailed(String, String),
    /// An argument held a NUL byte.
    #[error("EAL argument {0:?} contains a NUL byte")]
    BadArgument(String),
}

/// Proof that the EAL is initialised in this process.
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
}

static EAL: OnceLock<Result<Eal, EalError>> = OnceLock::new();

impl Eal {
    /// Initialises the EAL with `args` (argv[0] first is added for you) the first time it
    /// is called in this process; later calls return the first result.
    pub fn init(args: &[String]) -> Result<&'static Eal, EalError> {
        EAL.get_or_init(|| Self::do_init(args))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The EAL handle if [`Eal::init`] succeeded earlier.
    pub fn get() -> Option<&'static Eal> {
        EAL.get().and_then(|r| r.as_ref().ok())
    }

    fn do_init(args: &[String]) -> Result<Eal, EalError> {
        let mut all = vec!["vswitch".to_string()];
        all.extend(args.iter().cloned());
        let cstrs: Vec<CString> = all
            .iter()
            .map(|a| CString::new(a.as_str()).map_err(|_| EalError::BadArgument(a.clone())))
            .collect::<Result<_, _>>()?;
        // rte_eal_init may permute argv; give it a private array of pointers that live
        // as long as `cstrs` (EAL copies what it keeps).
        let mut argv: Vec<*mut std::os::raw::c_char> =
            cstrs.iter().map(|c| c.as_ptr() as *mut _).collect();
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the call; the
        // OnceLock guarantees this runs at most once per process.
        let rc = unsafe { ffi::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(EalError::InitFailed(last_error(), args.join(" ")));
        }
        Ok(Eal {
            args: args.to_vec(),
        })
    }

    /// The arguments the EAL was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// TSC ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: plain getter, valid after EAL init (which `self` proves).
        unsafe { ffi::rte_get_tsc_hz() }
    }
}

/// Releases the EAL's resources. Nothing DPDK may be called afterwards in this process.
pub fn cleanup(_eal: &'static Eal) {
    // SAFETY: the EAL was initialised (the handle proves it); callers stop all DPDK use
    // before calling this, as documented.
    unsafe {
        ffi::rte_eal_cleanup();
    }
}

/// Registers the calling (non-EAL) thread with DPDK so it gets an lcore id and the
/// mempool per-core cache. Idempotent for a thread.
pub fn register_thread() -> Result<u32, String> {
    if let Some(id) = lcore_id() {
        return Ok(id);
    }
    // SAFETY: callable from any thread after EAL init; registers only the caller.
    let rc = unsafe { ffi::rte_thread_register() };
    if rc < 0 {
        return Err(last_error());
    }
    lcore_id().ok_or_else(|| "rte_thread_register succeeded but no lcore id".to_string())
}

/// The calling thread's lcore id, `None` for unregistered threads.
pub fn lcore_id() -> Option<u32> {
    // SAFETY: reads a thread-local; valid on any thread.
    let id = unsafe { ffi::rte_lcore_id() };
    (id != u32::MAX).then_some(id)
}

/// The TSC counter (cycles).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the CPU's time-stamp counter; no memory is touched.
    unsafe { ffi::rte_rdtsc() }
}

/// DPDK's message for the calling thread's `rte_errno`.
pub fn last_error() -> String {
    // SAFETY: vs_errno reads the thread-local rte_errno; rte_strerror returns a pointer to
    // a static or thread-local string valid until the next call on this thread.
    unsafe {
        let e = ffi::vs_errno();
        let p = ffi::rte_strerror(e);
        if p.is_null() {
            return format!("errno {e}");
        }
        format!("{} (errno {e})", CStr::from_ptr(p).to_string_lossy())
    }
}

/// Message for a negative return code that carries an errno value.
pub fn errno_str(rc: i32) -> String {
    let e = rc.unsigned_abs() as i32;
    // SAFETY: rte_strerror accepts any int and returns a valid C string.
    let s = unsafe { CStr::from_ptr(ffi::rte_strerror(e)) };
    format!("{} (errno {e})", s.to_string_lossy())
}

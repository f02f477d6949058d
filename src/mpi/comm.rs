//! The MPI layer: the process's MPI thread (which initializes and finalizes MPI), sends that
//! never block, probes that never spin, and the idle backoff. Every call into the MPI
//! library and every `unsafe` of the MPI backend is in this file.
//!
//! # One MPI thread per process
//!
//! MPI is initialized once per process and must be finalized before it exits, by the thread
//! that initialized it. So the first `MpiPoolExecutor::start` starts a thread, `cf-mpi`,
//! that calls `MPI_Init_thread` and lives until the process exits: an `atexit` handler asks
//! it to call `MPI_Finalize` (or `MPI_Abort`, when a rank was lost and finalizing would wait
//! for it forever). It also runs the calls that set a session up or take it down (spawn,
//! handshake, disconnect). With `MPI_THREAD_FUNNELED` only, it runs the client's dispatcher
//! too, one session at a time. When the library grants `MPI_THREAD_SERIALIZED` (Open MPI
//! and MPICH do), each session of the client runs on a thread of its own, so several pools
//! (and the spawn of another) go on at once; and two hand-offs per task are saved: on the
//! client, a user thread blocked on a future drives the dispatcher itself; on a worker, the
//! thread that runs the tasks probes and sends between them.
//!
//! # One MPI lock per process
//!
//! Every MPI call after `MPI_Init` is made under one lock ([`serial`], or a [`Serial`]
//! that guards a session's state with it), whichever thread makes it: that is what keeps
//! the calls of several sessions, and of the MPI thread's jobs, from overlapping, as
//! `MPI_THREAD_SERIALIZED` requires. A call that blocks in MPI (a spawn) holds it, so the
//! other sessions pause meanwhile.
//!
//! # No burnt cores
//!
//! A blocking `MPI_Recv` busy-polls (it keeps a core at ~90% while it waits), so nothing here
//! blocks in MPI: receives are `MPI_Improbe` + `MPI_Mrecv` of a message already there, sends
//! are `MPI_Isend` tested later, and an idle loop waits with [`Backoff`].

use super::error::MpiError;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, mpsc};
use std::time::{Duration, Instant};

use ::mpi::ffi;

/// What the process knows of its MPI job.
pub(crate) struct Env {
    pub(crate) rank: i32,
    pub(crate) size: i32,
    /// `MPI_THREAD_SERIALIZED` or better was granted: any thread may call MPI, one at a time.
    pub(crate) serialized: bool,
    /// `MPI_Get_processor_name`.
    pub(crate) host: String,
    /// The MPI thread.
    pub(crate) thread: std::thread::ThreadId,
    jobs: Mutex<mpsc::Sender<Job>>,
}

enum Job {
    Run(Box<dyn FnOnce() + Send>),
    Finalize(mpsc::Sender<()>),
}

static ENV: OnceLock<Result<Env, MpiError>> = OnceLock::new();

/// The process's MPI lock. Every MPI call after `MPI_Init` is made under it, so calls from
/// several threads never overlap (`MPI_THREAD_SERIALIZED`), whatever they serve: the
/// sessions of several pools alive at once, a spawn or a handshake for a new one, a
/// worker's task thread and its helper.
static MPI: Mutex<()> = Mutex::new(());

/// Takes the process's MPI lock, for MPI calls made on state that one thread owns (a
/// handshake's `Port`, a spawn). Never taken while a [`Serial`] is locked on this thread.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    MPI.lock().unwrap_or_else(|p| p.into_inner())
}

/// State that makes MPI calls and is shared between threads (a session's dispatcher, a
/// worker's link): reached only under the process's MPI lock, so that locking it is what
/// serializes its MPI calls with every other MPI call of the process, at the cost of one
/// lock (a `Mutex` of its own would take two).
pub(crate) struct Serial<T> {
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a `SerialGuard`, which holds the process's MPI
// lock for as long as it lives; the lock is held by one guard at a time, so at most one
// thread reaches any `Serial`'s value at a time, as with a `Mutex<T>` (hence `T: Send`).
unsafe impl<T: Send> Sync for Serial<T> {}

impl<T> Serial<T> {
    pub(crate) fn new(value: T) -> Self {
        Serial {
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the process's MPI lock and reaches the value (not reentrant: a thread that
    /// holds the lock must not take it again).
    pub(crate) fn lock(&self) -> SerialGuard<'_, T> {
        SerialGuard {
            _mpi: serial(),
            value: &self.value,
        }
    }
}

/// A [`Serial`]'s value, reached under the process's MPI lock.
pub(crate) struct SerialGuard<'a, T> {
    _mpi: MutexGuard<'static, ()>,
    value: &'a UnsafeCell<T>,
}

impl<T> std::ops::Deref for SerialGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the MPI lock, so no other guard, of this `Serial` or any
        // other, exists now (see `Serial`); the reference cannot outlive the guard.
        unsafe { &*self.value.get() }
    }
}

impl<T> std::ops::DerefMut for SerialGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through this
        // guard.
        unsafe { &mut *self.value.get() }
    }
}
/// A rank stopped answering: finalizing would wait for it forever, so the job is aborted.
static LOST: AtomicBool = AtomicBool::new(false);
/// The process is exiting: a session still running ends now.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Sessions running in this process (a worker rank serving, or rank 0's dispatcher).
static SESSIONS: AtomicUsize = AtomicUsize::new(0);
/// How long `exit` waits for the MPI thread to finalize before it aborts the job.
const FINALIZE_WAIT: Duration = Duration::from_secs(30);

/// The MPI environment, initialized on first use (on the MPI thread). `MPI_Init` returns
/// only once every rank has called it; if that takes longer than `timeout`, this fails (and
/// the MPI thread is left waiting in `MPI_Init`, so the process can still exit).
pub(crate) fn env(timeout: Duration) -> Result<&'static Env, MpiError> {
    ENV.get_or_init(|| start_mpi_thread(timeout))
        .as_ref()
        .map_err(Clone::clone)
}

/// True once the process has begun to exit.
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// Records that a rank is lost: at exit the job is aborted instead of finalized.
pub(crate) fn mark_lost() {
    LOST.store(true, Ordering::Release);
}

/// A session in progress on this rank. A process that exits during one (a task called
/// `std::process::exit`, or rank 0 leaked its pool) cannot finalize MPI, since the other
/// ranks are not finalizing: it aborts the job instead, with a message.
pub(crate) struct Session(());

impl Session {
    pub(crate) fn begin() -> Session {
        SESSIONS.fetch_add(1, Ordering::AcqRel);
        Session(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        SESSIONS.fetch_sub(1, Ordering::AcqRel);
    }
}

fn start_mpi_thread(timeout: Duration) -> Result<Env, MpiError> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let (ready, started) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("cf-mpi".into())
        .spawn(move || {
            let Some((universe, threading)) =
                ::mpi::initialize_with_threading(::mpi::Threading::Serialized)
            else {
                let _ = ready.send(Err(MpiError::Start(
                    "MPI was already initialized outside concurrent_futures".to_string(),
                )));
                return;
            };
            if threading < ::mpi::Threading::Funneled {
                let _ = ready.send(Err(MpiError::Start(format!(
                    "the MPI library grants only {threading:?} threading; at least Funneled is needed"
                ))));
                drop(universe);
                return;
            }
            idle_yield::take_over();
            use ::mpi::topology::Communicator;
            let world = universe.world();
            let info = (
                world.rank(),
                world.size(),
                threading >= ::mpi::Threading::Serialized,
                ::mpi::environment::processor_name().unwrap_or_else(|_| "?".into()),
            );
            drop(world);
            if ready.send(Ok(info)).is_err() {
                return;
            }
            let mut finalized = None;
            while let Ok(job) = queue.recv() {
                match job {
                    Job::Run(f) => f(),
                    Job::Finalize(done) => {
                        finalized = Some(done);
                        break;
                    }
                }
            }
            idle_yield::give_back();
            let mpi = serial();
            drop(universe); // MPI_Finalize
            drop(mpi);
            if let Some(done) = finalized {
                let _ = done.send(());
            }
        })
        .map_err(|e| MpiError::Start(format!("cannot start the MPI thread: {e}")))?
        .thread()
        .id();
    let (rank, size, serialized, host) = match started.recv_timeout(timeout) {
        Ok(info) => info?,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(MpiError::Start(format!(
                "MPI_Init did not return within {timeout:?}: it waits for every rank of the \
                 job, so some rank did not call MpiPoolExecutor::start"
            )));
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(MpiError::Start(
                "the MPI thread ended during MPI_Init".into(),
            ));
        }
    };
    // SAFETY: `atexit` takes a plain `extern "C" fn()`; `finalize_at_exit` does not unwind.
    unsafe {
        libc::atexit(finalize_at_exit);
    }
    Ok(Env {
        rank,
        size,
        serialized,
        host,
        thread,
        jobs: Mutex::new(jobs),
    })
}

impl Env {
    /// Runs `f` on the MPI thread, after the jobs before it.
    pub(crate) fn run(&self, f: impl FnOnce() + Send + 'static) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        // The MPI thread lives until exit; a send can only fail after finalization.
        let _ = jobs.send(Job::Run(Box::new(f)));
    }

    /// Runs `f` on the MPI thread and waits for its value, for at most `limit`.
    pub(crate) fn call_timeout<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
        limit: Duration,
    ) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.run(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit).ok()
    }

    /// Runs `f` on the MPI thread and waits for its value.
    pub(crate) fn call<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.run(move || {
            let _ = tx.send(f());
        });
        rx.recv()
            .expect("[internal] the MPI thread ended while running a job")
    }
}

/// Work to do on the MPI thread at exit, before `MPI_Finalize`, registered by the code that
/// uses this binding (`spawned` lets its idle workers go), so that this file calls nothing
/// above it.
static BEFORE_FINALIZE: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Runs `hook` on the MPI thread at exit, after the wait for live pools and before
/// `MPI_Finalize` (in the order of registration). Not at an abort.
pub(crate) fn before_finalize(hook: fn()) {
    if let Ok(mut hooks) = BEFORE_FINALIZE.lock() {
        hooks.push(hook);
    }
}

extern "C" fn finalize_at_exit() {
    // Pools still alive end their sessions first (the wait of program end, which may have
    // been registered before this handler, and so would run after it).
    crate::exit::wait_now();
    EXITING.store(true, Ordering::Release);
    let Some(Ok(env)) = ENV.get() else { return };
    if LOST.load(Ordering::Acquire) {
        eprintln!(
            "concurrent_futures: rank {} lost a worker rank; aborting the MPI job (MPI cannot \
             finalize with a rank gone)",
            env.rank
        );
        abort(1);
    }
    if SESSIONS.load(Ordering::Acquire) > 0 {
        eprintln!(
            "concurrent_futures: rank {} is exiting in the middle of a pool session (did a task \
             call std::process::exit, or did the wait for a live pool time out?); aborting the MPI job",
            env.rank
        );
        abort(1);
    }
    // The registered hooks run first (idle spawned workers quit and disconnect), each a
    // job queued before `Finalize`.
    let hooks = BEFORE_FINALIZE
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    for hook in hooks {
        env.run(hook);
    }
    let (done, finalized) = mpsc::channel();
    if let Ok(jobs) = env.jobs.lock() {
        let _ = jobs.send(Job::Finalize(done));
    }
    if finalized.recv_timeout(FINALIZE_WAIT).is_err() {
        eprintln!(
            "concurrent_futures: rank {} could not finalize MPI within {FINALIZE_WAIT:?}; \
             aborting the MPI job",
            env.rank
        );
        abort(1);
    }
}

/// Ends the whole MPI job (`MPI_Abort` on the world communicator). A process that is the
/// whole job (a singleton, or `mpirun -n 1`, with spawned workers) just exits: its spawned
/// workers end with it, and `MPI_Abort` there can wait long for a worker already dead.
pub(crate) fn abort(code: i32) -> ! {
    if matches!(ENV.get(), Some(Ok(env)) if env.size == 1) {
        // SAFETY: `_exit` ends the process at once; nothing is left to run or to finalize.
        unsafe { libc::_exit(code) }
    }
    // SAFETY: MPI is initialized (an `Env` exists) and `MPI_Abort` may be called from any
    // thread in an emergency; it does not return when it succeeds.
    unsafe {
        ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code);
    }
    std::process::abort()
}

/// Open MPI's yield in empty polls.
///
/// On a node with more processes than cores, Open MPI turns on `mpi_yield_when_idle`: every
/// MPI call that progresses nothing (an `MPI_Improbe` that finds no message) then calls
/// `sched_yield`. Nothing here waits inside MPI: the pool's loops poll, and wait with
/// [`Backoff`], which spins, yields and sleeps on its own; a system call in every empty poll
/// only delays noticing the next message (a task's round trip, with 3 ranks on 2 cores, went
/// from 3.0 to 2.2 µs without it). So once MPI is initialized the pool turns it off, unless
/// `OMPI_MCA_mpi_yield_when_idle` was set (by the user or `mpirun --mca`), and turns it back
/// on around the calls that do block in MPI (spawn, disconnect, finalize), where yielding
/// lets the processes being waited for run. With another MPI library, nothing changes.
mod idle_yield {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Open MPI yielded when idle, and the pool turned it off.
    static TAKEN: AtomicBool = AtomicBool::new(false);

    /// Open MPI's setter, exported by libopen-pal since Open MPI 1.x
    /// (`opal/runtime/opal_progress.h`): `bool opal_progress_set_yield_when_idle(bool)`,
    /// which returns the previous setting.
    fn setter() -> Option<extern "C" fn(bool) -> bool> {
        // SAFETY: `dlsym` with `RTLD_DEFAULT` looks a name up in the loaded libraries and
        // returns null when it is absent. The name is Open MPI's own, with the type above (a
        // C `bool` is a Rust `bool`), so the pointer has exactly this type; the library stays
        // loaded (libmpi links it) until the process exits.
        unsafe {
            let set = libc::dlsym(
                libc::RTLD_DEFAULT,
                c"opal_progress_set_yield_when_idle".as_ptr(),
            );
            (!set.is_null())
                .then(|| std::mem::transmute::<*mut libc::c_void, extern "C" fn(bool) -> bool>(set))
        }
    }

    /// Right after `MPI_Init`, on the MPI thread (no other MPI call can run yet).
    pub(super) fn take_over() {
        if std::env::var_os("OMPI_MCA_mpi_yield_when_idle").is_some() {
            return;
        }
        if let Some(set) = setter()
            && set(false)
        {
            TAKEN.store(true, Ordering::Release);
        }
    }

    /// Before `MPI_Finalize`, which blocks: Open MPI yields when idle again, as it chose
    /// (nothing of the library is called after it).
    pub(super) fn give_back() {
        if TAKEN.swap(false, Ordering::AcqRel)
            && let Some(set) = setter()
        {
            set(true);
        }
    }

    /// Runs `f`, a call that blocks in MPI, with Open MPI yielding when idle as it would
    /// have (if the pool turned it off).
    pub(super) fn while_blocked<T>(f: impl FnOnce() -> T) -> T {
        let taken = TAKEN.load(Ordering::Acquire);
        let set = if taken { setter() } else { None };
        if let Some(set) = set {
            set(true);
        }
        let out = f();
        if let Some(set) = set {
            set(false);
        }
        out
    }
}

/// The communicator of a session: the world (the workers are the job's other ranks), or an
/// intercommunicator to workers this process spawned (dynamic mode), or, in a spawned
/// worker, the one to its parent. Rank 0 of the other side is the client in every case.
#[derive(Clone, Copy)]
pub(crate) struct Comm {
    raw: ffi::MPI_Comm,
    /// An intercommunicator made by `MPI_Comm_spawn` (or its other side): disconnected
    /// when its workers quit (see `spawned`).
    spawned: bool,
}

// SAFETY: an `MPI_Comm` is a handle (a pointer in Open MPI) that MPI lets any thread use,
// one call at a time under `MPI_THREAD_SERIALIZED`; calls through it are made under the
// process's MPI lock, by the MPI thread or, when the library granted SERIALIZED, by another
// thread. The handle itself is never written after it is made.
unsafe impl Send for Comm {}
// SAFETY: as above: shared references only copy the handle.
unsafe impl Sync for Comm {}

/// The first argument of a worker started by `MPI_Comm_spawn`: it serves its parent before
/// `main` (see `spawned`), so the program's own `main` never runs there.
pub(crate) const SPAWNED_WORKER_ARG: &str = "--concurrent-futures-mpi-worker";

impl Comm {
    /// `MPI_COMM_WORLD`.
    pub(crate) fn world() -> Comm {
        // SAFETY: reads a constant handle the MPI library exports.
        let raw = unsafe { ffi::RSMPI_COMM_WORLD };
        Comm {
            raw,
            spawned: false,
        }
    }

    /// The communicator to the process that spawned this one, if it was spawned
    /// (`MPI_Comm_get_parent`). MPI must be initialized.
    pub(crate) fn parent() -> Option<Comm> {
        let mut raw = std::mem::MaybeUninit::<ffi::MPI_Comm>::uninit();
        let _mpi = serial();
        // SAFETY: MPI is initialized (the caller holds an `Env`); `raw` is written by
        // `MPI_Comm_get_parent` before it is read, and compared with the null handle.
        unsafe {
            ffi::MPI_Comm_get_parent(raw.as_mut_ptr());
            let raw = raw.assume_init();
            (raw != ffi::RSMPI_COMM_NULL).then_some(Comm { raw, spawned: true })
        }
    }

    /// Starts `n` copies of this executable as workers, from this process alone
    /// (`MPI_Comm_spawn` over `MPI_COMM_SELF`), with `info`'s keys (placement hints: `host`,
    /// `map_by`, ...). Their `main` never runs: each serves the session before it (see
    /// `SPAWNED_WORKER_ARG`). Must be called on the MPI thread; takes the MPI lock (so the
    /// sessions of other pools of this process pause while it runs).
    pub(crate) fn spawn(n: usize, info: &[(String, String)]) -> Result<Comm, MpiError> {
        use std::ffi::CString;
        let fail = |what: String| MpiError::Start(format!("cannot spawn {n} MPI workers: {what}"));
        let count = i32::try_from(n).map_err(|_| fail("too many".into()))?;
        let exe = std::env::current_exe()
            .map_err(|e| fail(format!("this program's path is unknown ({e})")))?;
        let exe = CString::new(exe.into_os_string().into_encoded_bytes())
            .map_err(|_| fail("this program's path contains a NUL byte".into()))?;
        let arg = CString::new(SPAWNED_WORKER_ARG).expect("no NUL in a constant");
        let pairs = info
            .iter()
            .map(|(k, v)| Ok((CString::new(k.as_str())?, CString::new(v.as_str())?)))
            .collect::<Result<Vec<_>, std::ffi::NulError>>()
            .map_err(|_| fail("an info key or value contains a NUL byte".into()))?;
        let mut argv = [arg.as_ptr() as *mut std::ffi::c_char, std::ptr::null_mut()];
        let mut codes = vec![0i32; n];
        let mut raw = std::mem::MaybeUninit::<ffi::MPI_Comm>::uninit();
        let _mpi = serial();
        // SAFETY: MPI is initialized and this is the MPI thread (the caller's contract).
        // Every pointer handed to MPI outlives the calls: `exe`, `argv` (NUL-terminated, its
        // strings in `arg`), the info strings in `pairs`, and `codes` with room for `n`
        // error codes. The info object is created, read by `MPI_Comm_spawn`, and freed
        // here. Errors on `MPI_COMM_SELF` are made to return (rather than abort the
        // process) so that a refused spawn is an error for the caller; `raw` is read only
        // when the spawn succeeded, which is when MPI wrote it.
        unsafe {
            ffi::MPI_Comm_set_errhandler(ffi::RSMPI_COMM_SELF, ffi::RSMPI_ERRORS_RETURN);
            let mut handle = ffi::RSMPI_INFO_NULL;
            if !pairs.is_empty() {
                ffi::MPI_Info_create(&mut handle);
                for (k, v) in &pairs {
                    ffi::MPI_Info_set(handle, k.as_ptr(), v.as_ptr());
                }
            }
            let rc = idle_yield::while_blocked(|| {
                ffi::MPI_Comm_spawn(
                    exe.as_ptr(),
                    argv.as_mut_ptr(),
                    count,
                    handle,
                    0,
                    ffi::RSMPI_COMM_SELF,
                    raw.as_mut_ptr(),
                    codes.as_mut_ptr(),
                )
            });
            if !pairs.is_empty() {
                ffi::MPI_Info_free(&mut handle);
            }
            if rc != 0 {
                return Err(fail(error_string(rc)));
            }
            if let Some(code) = codes.iter().find(|c| **c != 0) {
                return Err(fail(error_string(*code)));
            }
            Ok(Comm {
                raw: raw.assume_init(),
                spawned: true,
            })
        }
    }

    /// Ends a spawned session's connection (`MPI_Comm_disconnect`, which waits for the
    /// other side to disconnect too); nothing for the world. Takes the MPI lock.
    pub(crate) fn disconnect(mut self) {
        if self.spawned {
            let _mpi = serial();
            // SAFETY: `raw` is a live intercommunicator from `MPI_Comm_spawn` or
            // `MPI_Comm_get_parent`. It is disconnected once and not used after: the two
            // callers (`spawned::release_idle` on the client, `spawned::serve_parent` on a
            // worker) call this on the last copy in use, after every `Port` over it was
            // dropped (which waits for its sends), and it is an MPI call made on the MPI
            // thread.
            idle_yield::while_blocked(|| unsafe {
                ffi::MPI_Comm_disconnect(&mut self.raw);
            });
        }
    }
}

/// The text of an MPI error code.
fn error_string(code: i32) -> String {
    let mut buf = vec![0u8; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len = 0;
    // SAFETY: `buf` has room for `MPI_MAX_ERROR_STRING` characters and the NUL, as
    // `MPI_Error_string` requires; it writes `len` of them.
    unsafe {
        ffi::MPI_Error_string(code, buf.as_mut_ptr() as *mut std::ffi::c_char, &mut len);
    }
    buf.truncate(usize::try_from(len).unwrap_or(0));
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    if text.is_empty() {
        format!("MPI error {code}")
    } else {
        text
    }
}

/// A send in flight: the buffer must stay where it is, untouched, until MPI is done with it.
struct InFlight {
    request: ffi::MPI_Request,
    /// Owned here so that it lives as long as the request; never read or written meanwhile.
    _buf: Vec<u8>,
}

/// One rank's sends in flight and its probes. Used by one thread at a time, under the
/// process's MPI lock (held with [`serial`], or by owning it inside a [`Serial`]).
pub(crate) struct Port {
    comm: Comm,
    sends: Vec<InFlight>,
}

// SAFETY: a `Port` holds MPI request handles and the buffers they read. It is only used
// through `&mut`, under the process's MPI lock (so its calls never overlap another MPI call),
// and it only moves off the MPI thread (to a session's thread, a worker's task thread) where
// the library granted `MPI_THREAD_SERIALIZED` (`Env::serialized`), which allows any thread
// to call MPI as long as calls do not overlap. The buffers are plain bytes.
unsafe impl Send for Port {}

/// The largest message MPI can count in one send (`int` elements of one byte).
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

impl Port {
    pub(crate) fn new(comm: Comm) -> Self {
        Port {
            comm,
            sends: Vec::new(),
        }
    }

    /// The session's communicator.
    pub(crate) fn comm(&self) -> Comm {
        self.comm
    }

    /// Starts sending `buf` to `rank` with `tag`; the buffer is kept until the send is done.
    /// The caller checks the size first (at most [`MAX_MESSAGE`]).
    pub(crate) fn send(&mut self, rank: i32, tag: i32, buf: Vec<u8>) {
        assert!(
            buf.len() <= MAX_MESSAGE,
            "[internal] message too large for MPI"
        );
        let mut request = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: (1) `buf` points to `buf.len()` initialized bytes, sent as MPI_UINT8_T
        // with the matching count; (2) the heap buffer does not move when the `Vec` is
        // moved into `self.sends`, and it is neither read, written nor freed until
        // `MPI_Test` reports the request complete (see `test_sends` and `Drop`);
        // (3) `request` is written by `MPI_Isend` before it is read.
        unsafe {
            ffi::MPI_Isend(
                buf.as_ptr() as *const std::ffi::c_void,
                buf.len() as i32,
                ffi::RSMPI_UINT8_T,
                rank,
                tag,
                self.comm.raw,
                request.as_mut_ptr(),
            );
            self.sends.push(InFlight {
                request: request.assume_init(),
                _buf: buf,
            });
        }
        self.test_sends();
    }

    /// Lets MPI progress the sends in flight and frees the finished ones; true if some
    /// are still in flight.
    pub(crate) fn test_sends(&mut self) -> bool {
        self.sends.retain_mut(|s| {
            let mut flag = 0;
            // SAFETY: `s.request` is a live request from `MPI_Isend` (completed requests are
            // removed right here, so none is tested twice); the status is ignored.
            unsafe {
                ffi::MPI_Test(&mut s.request, &mut flag, ffi::RSMPI_STATUS_IGNORE);
            }
            flag == 0
        });
        !self.sends.is_empty()
    }

    /// True if sends are in flight.
    pub(crate) fn sending(&self) -> bool {
        !self.sends.is_empty()
    }

    /// Receives a message with `tag` from any rank if one has arrived: its source and bytes.
    /// Never waits for one.
    pub(crate) fn probe(&mut self, tag: i32) -> Option<(i32, Vec<u8>)> {
        let mut flag = 0;
        let mut message = std::mem::MaybeUninit::<ffi::MPI_Message>::uninit();
        let mut status = std::mem::MaybeUninit::<ffi::MPI_Status>::uninit();
        // SAFETY: the out-pointers are valid for writes; `message` and `status` are read
        // only when `flag` says a message was matched, in which case MPI wrote both.
        unsafe {
            ffi::MPI_Improbe(
                ffi::RSMPI_ANY_SOURCE,
                tag,
                self.comm.raw,
                &mut flag,
                message.as_mut_ptr(),
                status.as_mut_ptr(),
            );
            if flag == 0 {
                return None;
            }
            let mut message = message.assume_init();
            let mut status = status.assume_init();
            let mut count = 0;
            ffi::MPI_Get_count(&status, ffi::RSMPI_UINT8_T, &mut count);
            let len = usize::try_from(count).unwrap_or(0);
            let mut buf = Vec::<u8>::with_capacity(len);
            // SAFETY (cont.): `buf` has room for `len` bytes, the size of the matched
            // message, which `MPI_Mrecv` writes in full before `set_len` exposes them; the
            // matched message is received exactly once.
            ffi::MPI_Mrecv(
                buf.as_mut_ptr() as *mut std::ffi::c_void,
                len as i32,
                ffi::RSMPI_UINT8_T,
                &mut message,
                &mut status,
            );
            buf.set_len(len);
            Some((status.MPI_SOURCE, buf))
        }
    }

    /// Waits (yielding) until every send in flight is done.
    pub(crate) fn flush(&mut self) {
        while self.test_sends() {
            std::thread::yield_now();
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // The buffers must outlive their sends. (A port dropped with sends in flight takes
        // the MPI lock: it is never dropped under it.)
        if self.sending() {
            let _mpi = serial();
            self.flush();
        }
    }
}

/// How an idle loop waits between two polls: it spins at first (a reply is often only
/// microseconds away), then yields, then sleeps for a time that doubles up to `cap`. Any
/// progress resets it. So a busy rank answers within microseconds, and an idle one wakes
/// about once per `cap` (a cap of 1 ms costs about 1% of a core).
pub(crate) struct Backoff {
    last_progress: Instant,
    sleep: Duration,
    cap: Duration,
    /// Pauses since the clock was last read (it is read once per `CLOCK_EVERY` while
    /// spinning: a read costs about as much as a poll).
    unclocked: u32,
    /// Still in the spinning phase, as of the last reading of the clock.
    spinning: bool,
}

const SPIN_FOR: Duration = Duration::from_micros(20);
const YIELD_FOR: Duration = Duration::from_micros(300);
const FIRST_SLEEP: Duration = Duration::from_micros(20);
/// While spinning, the clock is read once per this many pauses.
const CLOCK_EVERY: u32 = 16;

impl Backoff {
    pub(crate) fn new(cap: Duration) -> Self {
        Backoff {
            last_progress: Instant::now(),
            sleep: FIRST_SLEEP,
            cap,
            unclocked: 0,
            spinning: true,
        }
    }

    /// Something happened: poll eagerly again.
    pub(crate) fn reset(&mut self) {
        self.last_progress = Instant::now();
        self.sleep = FIRST_SLEEP;
        self.unclocked = 0;
        self.spinning = true;
    }

    /// Spins or yields inline, or returns how long to sleep (the caller sleeps the way it
    /// can be woken early).
    pub(crate) fn pause(&mut self) -> Option<Duration> {
        if self.spinning && self.unclocked < CLOCK_EVERY {
            // One `pause` only (it takes up to ~140 cycles on recent x86): the poll that
            // follows is what notices a message. Four of them cost ~0.1 µs a round trip.
            self.unclocked += 1;
            std::hint::spin_loop();
            return None;
        }
        self.unclocked = 0;
        let idle = self.last_progress.elapsed();
        self.spinning = idle < SPIN_FOR;
        if self.spinning {
            std::hint::spin_loop();
            None
        } else if idle < YIELD_FOR {
            std::thread::yield_now();
            None
        } else {
            let d = self.sleep.min(self.cap);
            self.sleep = (self.sleep * 2).min(self.cap);
            Some(d)
        }
    }

    /// [`pause`](Self::pause), sleeping with `thread::sleep`.
    pub(crate) fn wait(&mut self) {
        if let Some(d) = self.pause() {
            std::thread::sleep(d);
        }
    }
}

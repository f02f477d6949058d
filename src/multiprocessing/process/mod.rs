//! [`Process`]: run a `fn(A)` in a new process, Python's `multiprocessing.Process`.
//!
//! A child is a re-execution of the current program (as a process pool's worker is): the
//! constructor that runs before `main` sees `ENV_CHILD`, connects to the parent, receives
//! the target (named by its offset in the executable) and the channel its argument arrives
//! on, runs it and exits. The argument crosses in an ipc-channel message, so shared
//! primitives (locks, queues, values, pipe ends) inside it arrive as mapped memory and
//! file descriptors, not copies.

mod current;
mod start;

pub use current::{CurrentProcess, cpu_count, current_process};
pub(crate) use start::child_main;

use std::os::fd::OwnedFd;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use ipc_channel::ipc::OpaqueIpcReceiver;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ProcessError;
use super::shm::pidfd;
use crate::error::SubmitError;
use crate::os;
use crate::remote::{FnRef, naming};
use current::me;
use start::{Args, SendArgs, Start, launch};

/// Every started child of this process that is still running (finished ones are reaped
/// on the way). Python's `multiprocessing.active_children()`.
///
/// ```
/// use concurrent_futures::multiprocessing::{active_children, Event, Process};
/// fn wait_for(e: Event) { e.wait() }
/// let e = Event::new();
/// let p = Process::new(wait_for, e.clone());
/// p.start().unwrap();
/// assert!(active_children().iter().any(|c| c.pid() == p.pid()));
/// e.set();
/// p.join().unwrap();
/// assert!(!active_children().iter().any(|c| c.pid() == p.pid()));
/// ```
pub fn active_children() -> Vec<Process> {
    let mut children = registry().lock();
    children.retain(|w| w.strong_count() > 0);
    children
        .iter()
        .filter_map(Weak::upgrade)
        .map(|inner| Process { inner })
        .filter(Process::is_alive)
        .collect()
}

fn registry() -> &'static Mutex<Vec<Weak<Inner>>> {
    static CHILDREN: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());
    &CHILDREN
}

/// Python's `multiprocessing.Process`: a function run in a new process.
///
/// The target is a `fn(A)` (a function item, or a closure that captures nothing) and `A`
/// is its argument (several as a tuple), encoded with serde; shared primitives inside it
/// ([`Lock`](super::Lock), [`Queue`](super::Queue), [`Value`](super::Value),
/// [`Connection`](super::Connection), …) are shared with the child, not copied. Everything
/// else is copied: the child changing its copy changes nothing here (processes do not share
/// memory).
///
/// Python's attributes are methods: `pid()`, `name()`, `daemon()`, `exitcode()`,
/// `is_alive()`, and `start`, `join`, `join_timeout`, `terminate` (SIGTERM), `kill`
/// (SIGKILL). `exitcode()` is `None` while the child runs, its exit status when it exited
/// (0 when the target returned, 1 when it panicked, `n` after `std::process::exit(n)`), and
/// `-N` when signal `N` killed it.
///
/// # No zombies, no orphans
///
/// A finished child is reaped as soon as anything looks at it (`join`, `is_alive`,
/// `exitcode`, [`active_children`]) and at the latest when the last handle drops. Dropping
/// the last handle of a running child waits for it (Python joins non-daemonic children at
/// exit); a daemonic child is left running and reaped in the background. Every child (and
/// so every descendant) is killed by the kernel if its parent dies, even by SIGKILL, so a
/// child never outlives the program that started it.
///
/// Linux only, like [`ProcessPoolExecutor`](crate::ProcessPoolExecutor).
///
/// ```
/// use concurrent_futures::multiprocessing::Process;
///
/// fn task(name: u32) {
///     println!("Child process{name}: starting......");
/// }
///
/// let children: Vec<_> = (0..3).map(|i| Process::new(task, i)).collect();
/// for p in &children {
///     p.start().unwrap();
/// }
/// for p in &children {
///     assert_eq!(p.join(), Ok(0));
///     assert_eq!(p.exitcode(), Some(0));
/// }
/// ```
#[derive(Clone)]
pub struct Process {
    inner: Arc<Inner>,
}

struct Inner {
    target: Result<FnRef, SubmitError>,
    args: Mutex<Option<Box<dyn SendArgs>>>,
    name: Mutex<String>,
    identity: Vec<u32>,
    daemon: AtomicBool,
    pid: OnceLock<u32>,
    state: Mutex<State>,
}

enum State {
    New,
    Running {
        child: Child,
        /// Readable when the child exits (absent on kernels older than 5.3).
        exited: Option<Arc<OwnedFd>>,
    },
    Exited(i32),
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Process {
    /// A process that will run `target(args)` once started. Python's
    /// `Process(target=target, args=args)`. Its name is `Process-N` (N counts the processes
    /// this one created), as in Python.
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::Process;
    /// fn worker(interval: u64) { std::thread::sleep(std::time::Duration::from_millis(interval)) }
    /// let p = Process::new(worker, 1);
    /// assert!(p.name().starts_with("Process-"));
    /// assert_eq!(p.pid(), None); // not started
    /// ```
    pub fn new<A>(target: fn(A), args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        let mut identity = me().identity.clone();
        identity.push(n);
        let name = format!(
            "Process-{}",
            identity
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(":")
        );
        Process {
            inner: Arc::new(Inner {
                target: naming::process_target_of(target),
                args: Mutex::new(Some(Box::new(Args(args)))),
                name: Mutex::new(name),
                identity,
                daemon: AtomicBool::new(me().daemon),
                pid: OnceLock::new(),
                state: Mutex::new(State::New),
            }),
        }
    }

    /// Sets the name (Python's `name=` argument or `p.name = ...`).
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// # fn noop(_: ()) {}
    /// let p = Process::new(noop, ()).with_name("block");
    /// assert_eq!(p.name(), "block");
    /// ```
    pub fn with_name(self, name: impl Into<String>) -> Process {
        self.set_name(name);
        self
    }

    /// Sets the daemon flag before start (Python's `daemon=` argument): a daemonic child is
    /// not waited for when its handle drops. Children of a daemon are daemons by default.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// # fn noop(_: ()) {}
    /// let p = Process::new(noop, ()).with_daemon(true);
    /// assert!(p.daemon());
    /// ```
    pub fn with_daemon(self, daemon: bool) -> Process {
        self.inner.daemon.store(daemon, Ordering::Relaxed);
        self
    }

    /// Renames the process (also after start, as in Python; the child keeps the name it
    /// started with).
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// # fn noop(_: ()) {}
    /// let p = Process::new(noop, ());
    /// p.set_name("renamed");
    /// assert_eq!(p.name(), "renamed");
    /// ```
    pub fn set_name(&self, name: impl Into<String>) {
        *self.inner.name.lock() = name.into();
    }

    /// Sets the daemon flag (`p.daemon = True`); an error once started, as in Python.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// # fn noop(_: ()) {}
    /// let p = Process::new(noop, ());
    /// assert!(p.set_daemon(true).is_ok());
    /// p.start().unwrap();
    /// assert!(p.set_daemon(false).is_err());
    /// # p.join().unwrap();
    /// ```
    pub fn set_daemon(&self, daemon: bool) -> Result<(), ProcessError> {
        let state = self.inner.state.lock();
        if !matches!(*state, State::New) {
            return Err(ProcessError::AlreadyStarted);
        }
        self.inner.daemon.store(daemon, Ordering::Relaxed);
        Ok(())
    }

    /// The name.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// # fn noop(_: ()) {}
    /// assert!(Process::new(noop, ()).name().starts_with("Process-"));
    /// ```
    pub fn name(&self) -> String {
        self.inner.name.lock().clone()
    }

    /// The daemon flag.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// # fn noop(_: ()) {}
    /// assert!(!Process::new(noop, ()).daemon());
    /// ```
    pub fn daemon(&self) -> bool {
        self.inner.daemon.load(Ordering::Relaxed)
    }

    /// The child's pid, once started.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// # fn noop(_: ()) {}
    /// let p = Process::new(noop, ());
    /// p.start().unwrap();
    /// assert!(p.pid().is_some());
    /// # p.join().unwrap();
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid.get().copied()
    }

    /// Starts the child. Returns once the child runs this program and has received its
    /// target and argument (a few milliseconds). Python's `start()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{Process, ProcessError};
    /// # fn noop(_: ()) {}
    /// let p = Process::new(noop, ());
    /// p.start().unwrap();
    /// assert_eq!(p.start(), Err(ProcessError::AlreadyStarted));
    /// # p.join().unwrap();
    /// ```
    pub fn start(&self) -> Result<(), ProcessError> {
        let mut state = self.inner.state.lock();
        if !matches!(*state, State::New) {
            return Err(ProcessError::AlreadyStarted);
        }
        let target = self
            .inner
            .target
            .clone()
            .map_err(|e| ProcessError::Unsendable(e.to_string()))?;
        let args = self
            .inner
            .args
            .lock()
            .take()
            .ok_or(ProcessError::AlreadyStarted)?;
        let start = |args: OpaqueIpcReceiver| Start {
            target,
            args,
            name: self.name(),
            identity: self.inner.identity.clone(),
            daemon: self.daemon(),
        };
        let (child, exited) = launch(args, start)?;
        let _ = self.inner.pid.set(child.id());
        *state = State::Running { child, exited };
        drop(state);
        registry().lock().push(Arc::downgrade(&self.inner));
        Ok(())
    }

    /// Waits for the child to exit; returns its exit code (see [`exitcode`](Self::exitcode)).
    /// Python's `join()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// fn fail(_: ()) { std::process::exit(3) }
    /// let p = Process::new(fail, ());
    /// p.start().unwrap();
    /// assert_eq!(p.join(), Ok(3));
    /// ```
    pub fn join(&self) -> Result<i32, ProcessError> {
        self.join_until(None)
            .map(|code| code.expect("[internal] an untimed join gave up"))
    }

    /// Waits at most `timeout`; returns the exit code, or `None` if the child still runs.
    /// Python's `join(timeout)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{Event, Process};
    /// # use std::time::Duration;
    /// fn wait_for(e: Event) { e.wait() }
    /// let e = Event::new();
    /// let p = Process::new(wait_for, e.clone());
    /// p.start().unwrap();
    /// assert_eq!(p.join_timeout(Duration::from_millis(20)), Ok(None));
    /// e.set();
    /// assert_eq!(p.join_timeout(Duration::from_secs(30)), Ok(Some(0)));
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        self.join_until(Some(Instant::now() + timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<Option<i32>, ProcessError> {
        let mut backoff = Duration::from_millis(1);
        loop {
            let exited = {
                let mut state = self.inner.state.lock();
                match poll(&mut state) {
                    Poll::NotStarted => return Err(ProcessError::NotStarted),
                    Poll::Exited(code) => return Ok(Some(code)),
                    Poll::Running(exited) => exited,
                }
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            match exited {
                Some(fd) => {
                    pidfd::wait(&fd, deadline);
                }
                None => {
                    // No pidfd (old kernel): sleep with a growing period, never spin.
                    let left =
                        deadline.map_or(backoff, |d| d.saturating_duration_since(Instant::now()));
                    std::thread::sleep(backoff.min(left));
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Whether the child was started and has not exited (a finished child is reaped here).
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// # fn noop(_: ()) {}
    /// let p = Process::new(noop, ());
    /// assert!(!p.is_alive());
    /// p.start().unwrap();
    /// p.join().unwrap();
    /// assert!(!p.is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        matches!(poll(&mut self.inner.state.lock()), Poll::Running(_))
    }

    /// `None` until the child exits; then its exit code, or `-N` if signal `N` killed it.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    /// let p = Process::new(forever, ());
    /// p.start().unwrap();
    /// assert_eq!(p.exitcode(), None);
    /// p.kill().unwrap();
    /// p.join().unwrap();
    /// assert_eq!(p.exitcode(), Some(-9));
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        match poll(&mut self.inner.state.lock()) {
            Poll::Exited(code) => Some(code),
            _ => None,
        }
    }

    /// Sends SIGTERM to the child (nothing if it already exited). Python's `terminate()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    /// let p = Process::new(forever, ());
    /// p.start().unwrap();
    /// p.terminate().unwrap();
    /// assert_eq!(p.join(), Ok(-15));
    /// ```
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL to the child (nothing if it already exited). Python's `kill()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Process;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    /// let p = Process::new(forever, ());
    /// p.start().unwrap();
    /// p.kill().unwrap();
    /// assert_eq!(p.join(), Ok(-9));
    /// ```
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&self, signal: libc::c_int) -> Result<(), ProcessError> {
        // The child is not reaped while we hold the state lock (we are its only reaper), so
        // its pid cannot have been reused by another process.
        let mut state = self.inner.state.lock();
        match poll(&mut state) {
            Poll::NotStarted => Err(ProcessError::NotStarted),
            Poll::Exited(_) => Ok(()),
            Poll::Running(_) => {
                if let State::Running { child, .. } = &*state {
                    os::signal(child.id(), signal);
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name())
            .field("pid", &self.pid())
            .field("daemon", &self.daemon())
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

enum Poll {
    NotStarted,
    Running(Option<Arc<OwnedFd>>),
    Exited(i32),
}

/// Reaps the child if it exited.
fn poll(state: &mut State) -> Poll {
    match state {
        State::New => Poll::NotStarted,
        State::Exited(code) => Poll::Exited(*code),
        State::Running { child, exited } => match child.try_wait() {
            Ok(Some(status)) => {
                let code = exit_code(status);
                *state = State::Exited(code);
                Poll::Exited(code)
            }
            Ok(None) => Poll::Running(exited.clone()),
            // ECHILD: someone else reaped it (a SIGCHLD handler set to ignore); report it as
            // gone rather than alive forever.
            Err(_) => {
                *state = State::Exited(-libc::SIGKILL);
                Poll::Exited(-libc::SIGKILL)
            }
        },
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| -s))
        .unwrap_or(-1)
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = std::mem::replace(self.state.get_mut(), State::New);
        if let State::Running { mut child, .. } = state {
            if self.daemon.load(Ordering::Relaxed) {
                // Keep running; reap it in the background when it ends.
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
            } else {
                let _ = child.wait();
            }
        }
    }
}

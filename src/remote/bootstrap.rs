//! How a process of the program becomes a worker or a `multiprocessing` child: the
//! environment that marks it (read and removed before `main` by the crate's one pre-main
//! hook, `src/entry.rs`, which picks the role), and the parent's side of a start (spawn,
//! handshake, and on any failure: kill, reap, close).
//!
//! A pool worker inherits one end of a socket pair as its standard input: no name to connect
//! to, so no other process can race the worker to the parent. A `multiprocessing`
//! child connects to a one-shot ipc-channel server and proves itself with a secret token.

use std::ffi::OsString;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcOneShotServer;

use crate::error::ExitStatus;
use crate::os;

/// Set (to `stdin`: where its socket is) in a pool worker.
pub(crate) const ENV_WORKER: &str = "__CONCURRENT_FUTURES_WORKER";
/// The secret a `multiprocessing` child proves itself with.
pub(crate) const ENV_TOKEN: &str = "__CONCURRENT_FUTURES_TOKEN";
/// The parent's pid: a child whose parent is already another process exits at once.
pub(crate) const ENV_PARENT: &str = "__CONCURRENT_FUTURES_PARENT";
/// Set (to the parent's server name) in a child started by `multiprocessing::Process`.
pub(crate) const ENV_CHILD: &str = "__CONCURRENT_FUTURES_CHILD";

/// The soft `RLIMIT_NOFILE` the parent had before it raised it (see
/// `os::raise_nofile_limit`): a worker or child sets it back before running user code.
pub(crate) const ENV_NOFILE: &str = "__CONCURRENT_FUTURES_NOFILE";

/// How long a new worker or child may take to connect before its start fails.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether this process was started as a pool worker (its environment says so). Read by
/// the crate's one pre-main hook (`src/entry.rs`) to pick the process's role.
pub(crate) fn started_as_worker() -> bool {
    std::env::var_os(ENV_WORKER).is_some()
}

/// Whether this process was started as a `multiprocessing` child (and not as a pool
/// worker, which is looked for first).
pub(crate) fn started_as_child() -> bool {
    std::env::var_os(ENV_CHILD).is_some()
}

/// What the environment of a started worker or child said, once read and removed.
#[derive(Debug)]
pub(crate) struct Started {
    /// `ENV_WORKER`: where a pool worker's socket is.
    pub(crate) worker: Option<OsString>,
    /// `ENV_CHILD`: the parent's server name, for a `multiprocessing` child.
    pub(crate) child: Option<OsString>,
    /// `ENV_TOKEN`: the secret a child proves itself with.
    pub(crate) token: Option<OsString>,
    /// `ENV_PARENT`: the pid the process should have as its parent.
    pub(crate) expected_parent: Option<u32>,
}

/// Reads the variables that mark a started worker or child, removes them all, and sets the
/// soft descriptor limit back to the one the program was started with (`ENV_NOFILE`).
///
/// Call it only while the process has a single thread: from the pre-main hook, or from
/// `init()`, which documents that it must be called first in `main`, before any thread is
/// started.
pub(crate) fn take_start_environment() -> Started {
    let worker = std::env::var_os(ENV_WORKER);
    let child = std::env::var_os(ENV_CHILD);
    let token = std::env::var_os(ENV_TOKEN);
    let parent = std::env::var_os(ENV_PARENT);
    let nofile = std::env::var_os(ENV_NOFILE);
    // SAFETY: by this function's contract the process has a single thread (the pre-main
    // hook, or `init()` called first in `main`), so no other thread reads the environment
    // while it changes. Removing the variables keeps processes started by tasks from
    // mistaking themselves for workers.
    unsafe { os::remove_env(&[ENV_WORKER, ENV_TOKEN, ENV_PARENT, ENV_CHILD, ENV_NOFILE]) };
    // The descriptor limit the program had before its parent raised its own: user code
    // (a task, a `Process` target) runs under the limit the program was started with, as
    // Go gives it back to the processes it starts.
    if let Some(soft) = nofile.and_then(|n| n.to_str()?.parse::<u64>().ok()) {
        os::restore_nofile_limit(soft);
    }
    Started {
        worker,
        child,
        token,
        expected_parent: parent.and_then(|p| p.to_str()?.parse::<u32>().ok()),
    }
}

/// The program to start as a worker or child: this very executable. `/proc/self/exe`,
/// opened by the child while exec-ing, is the parent's own image even if the file was
/// replaced on disk since.
pub(crate) fn worker_executable() -> Command {
    let mut command = Command::new("/proc/self/exe");
    command
        .env(ENV_PARENT, std::process::id().to_string())
        .stdin(Stdio::null());
    give_back_nofile(&mut command);
    command
}

/// Tells a worker or child to set its soft descriptor limit back to the one this process
/// had before raising it (`os::raise_nofile_limit`), if it was raised.
pub(crate) fn give_back_nofile(command: &mut Command) {
    if let Some(soft) = os::original_nofile_limit() {
        command.env(ENV_NOFILE, soft.to_string());
    }
}

/// 128 random bits from the OS.
pub(crate) fn random_token() -> [u8; 16] {
    use std::io::Read;
    let mut token = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom")
        && f.read_exact(&mut token).is_ok()
    {
        return token;
    }
    // Fallback: std's randomly keyed hasher.
    use std::hash::{BuildHasher, Hasher};
    let s = std::collections::hash_map::RandomState::new();
    for chunk in token.chunks_mut(8) {
        let mut h = s.build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
    token
}

/// Formats a token for the environment.
pub(crate) fn format_token(token: &[u8; 16]) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_token(s: Option<&OsString>) -> Option<[u8; 16]> {
    let s = s?.to_str()?;
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Why a worker or child could not be started.
/// Users see it as [`StartFailure`](crate::StartFailure), whose `source()` is the
/// operating system's error where there is one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The operating system refused (`doing` says to what, `": "`-terminated, or is empty).
    #[error("cannot start a process: {doing}{error}")]
    Spawn {
        doing: &'static str,
        #[source]
        error: std::io::Error,
    },
    /// This process was short of descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`): a
    /// transient condition, worth trying again later.
    #[error("cannot start a process now: {doing}{error}")]
    Shortage {
        doing: &'static str,
        #[source]
        error: std::io::Error,
    },
    #[error("a {0} process exited before connecting ({1})")]
    Exited(&'static str, ExitStatus),
    #[error("a {0} did not connect within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("a {0} failed to connect: {1}")]
    Connect(&'static str, String),
    #[error(
        "a {0} runs a different executable than its parent (was the program replaced on disk?)"
    )]
    Fingerprint(&'static str),
    #[error("a {0} broke the start-up protocol: {1}")]
    Protocol(&'static str, String),
    /// Seen from a child: its parent did not complete the start-up.
    #[error("the parent did not complete the start-up: {0}")]
    Parent(String),
}

impl StartError {
    /// The operating system refused `doing` (`": "`-terminated, or empty).
    pub(crate) fn spawn(doing: &'static str, error: std::io::Error) -> StartError {
        StartError::Spawn { doing, error }
    }

    /// As [`spawn`](Self::spawn), but a shortage of descriptors or memory is
    /// [`Shortage`](Self::Shortage).
    pub(crate) fn spawn_or_shortage(doing: &'static str, error: std::io::Error) -> StartError {
        if os::is_shortage(&error) {
            StartError::Shortage { doing, error }
        } else {
            StartError::spawn(doing, error)
        }
    }
}

/// A copy of an operating-system error (`std::io::Error` is not `Clone`): the same code, or
/// the same kind and message.
fn copy_io(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

impl Clone for StartError {
    fn clone(&self) -> StartError {
        match self {
            StartError::Spawn { doing, error } => StartError::Spawn {
                doing,
                error: copy_io(error),
            },
            StartError::Shortage { doing, error } => StartError::Shortage {
                doing,
                error: copy_io(error),
            },
            StartError::Exited(what, status) => StartError::Exited(what, *status),
            StartError::Timeout(what, limit) => StartError::Timeout(what, *limit),
            StartError::Connect(what, why) => StartError::Connect(what, why.clone()),
            StartError::Fingerprint(what) => StartError::Fingerprint(what),
            StartError::Protocol(what, why) => StartError::Protocol(what, why.clone()),
            StartError::Parent(why) => StartError::Parent(why.clone()),
        }
    }
}

/// Waits for the first message of a child process on `server` (accepting on a helper
/// thread, so that a child that dies first is noticed instead of waited for forever, and the
/// wait is bounded by `CONNECT_TIMEOUT`). On an error the helper thread may still be blocked
/// in `accept`: the caller kills the child and connects to the server itself to release it.
pub(crate) fn accept_child<T>(
    server: IpcOneShotServer<T>,
    child: &mut Child,
    what: &'static str,
) -> Result<T, StartError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.accept().map(|(_, hello)| hello));
    });
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Ok(hello)) => return Ok(hello),
            Ok(Err(e)) => return Err(StartError::Connect(what, e.to_string())),
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(StartError::Exited(what, exit_status(status)));
                }
                if Instant::now() > deadline {
                    return Err(StartError::Timeout(what, CONNECT_TIMEOUT));
                }
            }
        }
    }
}

/// How a process ended, as the crate reports it.
pub(crate) fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        _ => ExitStatus::Unknown,
    }
}

/// Kills and reaps a child whose start failed (no zombie is left behind).
pub(crate) fn abandon(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A child process that is killed and reaped when dropped, unless it was reaped already:
/// whatever path drops it (a failed start, an error half-way), no zombie and no orphan.
#[derive(Debug)]
pub(crate) struct ChildGuard(pub(crate) Child);

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            abandon(&mut self.0);
        }
    }
}

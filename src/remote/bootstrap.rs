//! How a process of the program becomes a worker or a `multiprocessing` child: the
//! environment that marks it, the hook that runs before `main`, and the parent's side of a
//! start (spawn, handshake, and on any failure: kill, reap, close).
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

os::before_main!(BEFORE_MAIN = before_main);

/// Makes sure the hook above is linked into any program that starts processes.
pub(crate) fn ensure_linked() {
    std::hint::black_box(&BEFORE_MAIN);
}

/// Runs before `main` in every process of the program. In a worker or a child (its
/// environment says so) it runs the worker loop or the child's target and exits, so that the
/// program's own `main` (or test harness) never runs there: no fork bomb, no stray output.
/// Elsewhere it returns at once.
pub(crate) extern "C" fn before_main() {
    become_worker_if_asked();
}

/// If this process was started as a worker or a child, runs it and exits.
pub(crate) fn become_worker_if_asked() {
    let worker = std::env::var_os(ENV_WORKER);
    let child = std::env::var_os(ENV_CHILD);
    if worker.is_none() && child.is_none() {
        return;
    }
    let token = std::env::var_os(ENV_TOKEN);
    let parent = std::env::var_os(ENV_PARENT);
    let nofile = std::env::var_os(ENV_NOFILE);
    // SAFETY: this runs either in the pre-main hook, when the process has a single thread,
    // or from `init()`, which documents that it must be called first in `main`, before any
    // thread is started. Removing the variables keeps processes started by tasks from
    // mistaking themselves for workers.
    unsafe { os::remove_env(&[ENV_WORKER, ENV_TOKEN, ENV_PARENT, ENV_CHILD, ENV_NOFILE]) };
    // The descriptor limit the program had before its parent raised its own: user code
    // (a task, a `Process` target) runs under the limit the program was started with, as
    // Go gives it back to the processes it starts.
    if let Some(soft) = nofile.and_then(|n| n.to_str()?.parse::<u64>().ok()) {
        os::restore_nofile_limit(soft);
    }
    let expected_parent = parent.and_then(|p| p.to_str()?.parse::<u32>().ok());
    let code = std::panic::catch_unwind(|| match (worker, child) {
        (Some(socket), _) => crate::process::worker::run(socket, expected_parent),
        (None, Some(server)) => {
            crate::multiprocessing::process::child_main(server, token, expected_parent)
        }
        (None, None) => 0,
    })
    .unwrap_or(101);
    std::process::exit(code);
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
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot start a process: {0}")]
    Spawn(String),
    /// This process was short of descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`): a
    /// transient condition, worth trying again later.
    #[error("cannot start a process now: {0}")]
    Shortage(String),
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

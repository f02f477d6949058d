//! How a child is started: the parent spawns the program again (from one long-lived
//! thread), accepts the child's hello, checks its token and fingerprint and sends it the
//! target and the channel of its argument ([`launch`]); the child connects, receives them and
//! runs the target ([`child_main`]).

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use ipc_channel::ipc::{self, IpcOneShotServer, IpcSender, OpaqueIpcReceiver};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::current::{CURRENT, CurrentProcess};
use crate::error::StartFailure;
use crate::multiprocessing::error::ProcessError;
use crate::multiprocessing::shm::{pidfd, sharing};
use crate::os;
use crate::remote::bootstrap::{self, ENV_CHILD, ENV_PARENT, ENV_TOKEN, StartError};
use crate::remote::{FnRef, naming};

/// Sent by a new child to the parent's one-shot server.
#[derive(Serialize, Deserialize)]
struct ChildHello {
    token: [u8; 16],
    fingerprint: u64,
    start: IpcSender<Start>,
}

/// Parent → child: what to run.
#[derive(Serialize, Deserialize)]
pub(super) struct Start {
    pub(super) target: FnRef,
    /// The channel the argument comes on (typed `IpcReceiver<A>` in the trampoline).
    pub(super) args: OpaqueIpcReceiver,
    pub(super) name: String,
    pub(super) identity: Vec<u32>,
    pub(super) daemon: bool,
}

/// Sends a `Process`'s argument, whatever its type: creates the typed channel, lets
/// `announce` send its receiving end to the child, then sends the value on it.
pub(super) trait SendArgs: Send {
    fn send(
        self: Box<Self>,
        announce: &mut dyn FnMut(OpaqueIpcReceiver) -> Result<(), StartError>,
    ) -> Result<(), ProcessError>;
}

pub(super) struct Args<A>(pub(super) A);

impl<A: Serialize + DeserializeOwned + Send> SendArgs for Args<A> {
    fn send(
        self: Box<Self>,
        announce: &mut dyn FnMut(OpaqueIpcReceiver) -> Result<(), StartError>,
    ) -> Result<(), ProcessError> {
        let (tx, rx) = ipc::channel::<A>().map_err(|e| spawn_error(StartError::spawn("", e)))?;
        announce(rx.to_opaque()).map_err(spawn_error)?;
        sharing(|| tx.send(self.0)).map_err(|e| match e {
            ipc_channel::IpcError::Io(io) => spawn_error(StartError::spawn("", io)),
            other => ProcessError::Codec(other.to_string()),
        })
    }
}

/// A start that failed, its cause kept (`source()` reaches the operating system's error).
fn spawn_error(e: StartError) -> ProcessError {
    ProcessError::Spawn(StartFailure::new(e))
}

/// Spawns a child and hands it its target and argument.
pub(super) fn launch(
    args: Box<dyn SendArgs>,
    start: impl Fn(OpaqueIpcReceiver) -> Start,
) -> Result<(Child, Option<Arc<OwnedFd>>), ProcessError> {
    let (server, name) =
        IpcOneShotServer::<ChildHello>::new().map_err(|e| spawn_error(StartError::spawn("", e)))?;
    let token = bootstrap::random_token();
    let mut command = Command::new("/proc/self/exe");
    command
        .env(ENV_CHILD, &name)
        .env(ENV_TOKEN, bootstrap::format_token(&token))
        .env(ENV_PARENT, std::process::id().to_string())
        .stdin(Stdio::null());
    bootstrap::give_back_nofile(&mut command);
    let mut child = spawner_run(command).map_err(spawn_error)?;
    let exited = pidfd::open(child.id()).map(Arc::new);
    let hello = match accept(server, &name, &mut child) {
        Ok(hello) => hello,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_error(e));
        }
    };
    let checked = if hello.token != token {
        Err(StartError::Protocol(
            "child",
            "a process connected with the wrong token".into(),
        ))
    } else if hello.fingerprint != naming::fingerprint() {
        Err(StartError::Fingerprint("child"))
    } else {
        Ok(())
    };
    let sent = checked.map_err(spawn_error).and_then(|()| {
        args.send(&mut |rx| {
            hello
                .start
                .send(start(rx))
                .map_err(|e| StartError::Connect("child", e.to_string()))
        })
    });
    if let Err(e) = sent {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok((child, exited))
}

/// Waits for the child's hello; on failure, releases the helper thread still blocked in
/// `accept` with a hello of our own (then dropped).
fn accept(
    server: IpcOneShotServer<ChildHello>,
    name: &str,
    child: &mut Child,
) -> Result<ChildHello, StartError> {
    let failure = match bootstrap::accept_child(server, child, "child") {
        Ok(hello) => return Ok(hello),
        Err(e) => e,
    };
    if let (Ok(sender), Ok((start, _))) = (
        IpcSender::<ChildHello>::connect(name.to_string()),
        ipc::channel::<Start>(),
    ) {
        let _ = sender.send(ChildHello {
            token: [0; 16],
            fingerprint: 0,
            start,
        });
    }
    Err(failure)
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from one long-lived thread: a child is killed when the *thread* that
/// forked it exits (PR_SET_PDEATHSIG follows the parent thread), so children must not be
/// forked from short-lived threads of the program.
fn spawner_run(command: Command) -> Result<Child, StartError> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("multiprocessing-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    });
    let gone = || StartError::spawn("", std::io::Error::other("the spawner thread is gone"));
    let (reply, result) = mpsc::channel();
    spawner.lock().send((command, reply)).map_err(|_| gone())?;
    result
        .recv()
        .map_err(|_| gone())?
        .map_err(|e| StartError::spawn("", e))
}

/// The child's side: connect, receive the target, run it. Returns the exit code.
pub(crate) fn child_main(
    server: OsString,
    token: Option<OsString>,
    expected_parent: Option<u32>,
) -> i32 {
    os::become_child(false);
    if expected_parent != Some(os::parent_pid()) {
        return 1; // the parent died before the death signal was armed
    }
    match receive(server, token) {
        Ok(start) => {
            let _ = CURRENT.set(CurrentProcess {
                name: start.name,
                identity: start.identity,
                daemon: start.daemon,
            });
            match naming::invoke_process(start.target, start.args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("process {}: {e}", std::process::id());
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("process {}: {e}", std::process::id());
            1
        }
    }
}

fn receive(server: OsString, token: Option<OsString>) -> Result<Start, StartError> {
    let bad = |what: &str| StartError::Protocol("child", what.to_string());
    let server = server
        .into_string()
        .map_err(|_| bad("its parent's server name is not Unicode"))?;
    let token = bootstrap::parse_token(token.as_ref())
        .ok_or_else(|| bad("no valid token in the environment"))?;
    let (start_tx, start_rx) = ipc::channel::<Start>().map_err(|e| StartError::spawn("", e))?;
    IpcSender::<ChildHello>::connect(server)
        .and_then(|hello| {
            hello
                .send(ChildHello {
                    token,
                    fingerprint: naming::fingerprint(),
                    start: start_tx,
                })
                .map_err(std::io::Error::other)
        })
        .map_err(|e| StartError::Connect("child", e.to_string()))?;
    start_rx
        .recv()
        .map_err(|e| StartError::Parent(format!("it sent no target: {e}")))
}

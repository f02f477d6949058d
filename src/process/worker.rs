//! The worker process: connect to the parent, then run calls until told to exit or the
//! parent goes away.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender, IpcSharedMemory};

use super::image;
use super::protocol::{Call, Done, FromWorker, Hello, Revoke, ToWorker};
use crate::sync::{self, Mutex};

/// Results are sent together while they come quickly: the worker sends what is ready when
/// it has nothing left to run, or after a task once the oldest unsent result is this old.
/// (A result finished just before a long task therefore waits for that task; the calls of
/// one batch are meant to be short, which is what makes batching them pay.)
const FLUSH_AFTER: Duration = Duration::from_micros(200);

/// The worker's main function; returns the process exit code.
pub(crate) fn run(server: OsString, token: Option<OsString>, parent: Option<OsString>) -> i32 {
    image::tie_to_parent();
    image::keep_large_allocations();
    crate::unwind::install_hook();
    // The parent may have died before the death signal was armed.
    let expected_parent = parent.and_then(|p| p.to_str()?.parse::<u32>().ok());
    if expected_parent != Some(image::parent_pid()) {
        return 0;
    }
    match serve(server, token) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("concurrent_futures worker {}: {e}", std::process::id());
            3
        }
    }
}

/// Calls read from the parent and not started yet, shared by the worker's main thread
/// (which runs them) and its revoke thread (which gives them back to the parent).
#[derive(Default)]
struct Local {
    queue: VecDeque<Job>,
    /// The last batch read from the calls channel.
    read: u64,
    /// Batches up to this one were given back before they were read: drop them.
    skip_through: u64,
}

struct Job {
    call: Call,
    shared: Option<IpcSharedMemory>,
}

type Shared = Arc<(Mutex<Local>, Mutex<IpcSender<FromWorker>>)>;

fn serve(server: OsString, token: Option<OsString>) -> Result<(), String> {
    let server = server.into_string().map_err(|_| "bad server name")?;
    let token = parse_token(token.as_ref().and_then(|t| t.to_str()))
        .ok_or("no valid token in the environment")?;
    let (calls_tx, calls) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    let (results, results_rx) = ipc::channel::<FromWorker>().map_err(|e| e.to_string())?;
    let (bulk_tx, bulk) = ipc::channel::<IpcSharedMemory>().map_err(|e| e.to_string())?;
    let (revoke_tx, revoke) = ipc::channel::<Revoke>().map_err(|e| e.to_string())?;
    let mut progress = image::new_block(8);
    let hello = IpcSender::<Hello>::connect(server).map_err(|e| e.to_string())?;
    hello
        .send(Hello {
            token,
            fingerprint: image::fingerprint(),
            pid: std::process::id(),
            calls: calls_tx,
            bulk: bulk_tx,
            results: results_rx,
            revoke: revoke_tx,
            progress: progress.clone(),
        })
        .map_err(|e| e.to_string())?;
    drop(hello);
    let shared: Shared = Arc::new((Mutex::new(Local::default()), Mutex::new(results)));
    let helper = shared.clone();
    std::thread::Builder::new()
        .name("cf-worker-revoke".into())
        .spawn(move || serve_revokes(&revoke, &helper))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    let (local, results) = &*shared;
    // Results not sent yet, and since when the oldest of them waits.
    let mut ready = Vec::new();
    let mut since = Instant::now();
    loop {
        // The lock also orders this against a revoke being answered: once the queue is seen
        // empty, the answer (if any) is on its way, ahead of anything sent after.
        let job = sync::lock(local).queue.pop_front();
        if job.is_none() && !ready.is_empty() {
            // About to wait for the parent: send what is ready first.
            send(results, FromWorker::Done(std::mem::take(&mut ready)))?;
        }
        if let Some(job) = job {
            // The parent reads this only after this process is dead.
            image::fill_block(&mut progress, |p| {
                p[..8].copy_from_slice(&job.call.id.to_le_bytes())
            });
            let payload = match &job.shared {
                Some(shm) => image::invoke(job.call.target, &shm[..job.call.bulk as usize])?,
                None => image::invoke(job.call.target, &job.call.payload)?,
            };
            if ready.is_empty() {
                since = Instant::now();
            }
            ready.push(Done::new(job.call.id, payload));
            drop(job);
            if since.elapsed() >= FLUSH_AFTER {
                send(results, FromWorker::Done(std::mem::take(&mut ready)))?;
            }
            continue;
        }
        let bytes = match calls.recv() {
            Ok(b) => b,
            // The parent closed the channel (it shut down or died): nothing left to do.
            Err(ipc::IpcError::Disconnected) => return Ok(()),
            Err(e) => return Err(format!("cannot read from the parent: {e}")),
        };
        let msg = super::protocol::decode::<ToWorker>(&bytes)
            .map_err(|e| format!("malformed message from the parent: {e}"))?;
        match msg {
            // Everything sent before has run (or was given back): done.
            ToWorker::Exit => return Ok(()),
            ToWorker::Init(target) => {
                let bytes = image::invoke(target, &[])?;
                let outcome = super::protocol::decode_outcome::<()>(&bytes);
                send(results, FromWorker::Initialized(outcome))?;
            }
            ToWorker::Calls(seq, batch) => {
                // Large payloads follow on the bulk channel, in order: take them now, so that
                // the channel stays in step even if the batch is given back.
                let mut jobs = Vec::with_capacity(batch.len());
                for call in batch {
                    let shared = if call.bulk > 0 {
                        let shm = bulk
                            .recv()
                            .map_err(|e| format!("cannot read a payload from the parent: {e}"))?;
                        let len = usize::try_from(call.bulk)
                            .ok()
                            .filter(|&len| len <= shm.len())
                            .ok_or("malformed message from the parent: payload out of bounds")?;
                        image::prefault(&shm[..len]);
                        Some(shm)
                    } else {
                        None
                    };
                    jobs.push(Job { call, shared });
                }
                let mut l = sync::lock(local);
                l.read = seq;
                if seq > l.skip_through {
                    l.queue.extend(jobs);
                }
            }
        }
    }
}

/// The revoke thread: gives back the calls not started yet, when the parent asks.
fn serve_revokes(revoke: &IpcReceiver<Revoke>, shared: &Shared) {
    let (local, results) = &**shared;
    while let Ok(Revoke { through }) = revoke.recv() {
        let mut l = sync::lock(local);
        let ids: Vec<u64> = l.queue.drain(..).map(|job| job.call.id).collect();
        // Batches sent but not read yet come back too; they are dropped when they arrive.
        l.skip_through = l.skip_through.max(through);
        let unread_from = l.read + 1;
        // Answered under the lock: the main thread cannot finish (and exit) in between.
        if send(results, FromWorker::Revoked { ids, unread_from }).is_err() {
            return;
        }
        drop(l);
    }
}

fn send(results: &Mutex<IpcSender<FromWorker>>, msg: FromWorker) -> Result<(), String> {
    sync::lock(results)
        .send(msg)
        .map_err(|e| format!("cannot reach the parent: {e}"))
}

/// Formats a token for the environment.
pub(crate) fn format_token(token: &[u8; 16]) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_token(s: Option<&str>) -> Option<[u8; 16]> {
    let s = s?;
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

//! The worker process: connect to the parent, then run calls until told to exit or the
//! parent goes away.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcSender, IpcSharedMemory};

use super::image;
use super::protocol::{Done, FromWorker, Hello, ToWorker};

/// Results of a batch are sent together while they come faster than this; a slower task
/// flushes what is ready first, so callbacks and `as_completed` hear of results promptly.
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

fn serve(server: OsString, token: Option<OsString>) -> Result<(), String> {
    let server = server.into_string().map_err(|_| "bad server name")?;
    let token = parse_token(token.as_ref().and_then(|t| t.to_str()))
        .ok_or("no valid token in the environment")?;
    let (calls_tx, calls) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    let (results, results_rx) = ipc::channel::<FromWorker>().map_err(|e| e.to_string())?;
    let (bulk_tx, bulk) = ipc::channel::<IpcSharedMemory>().map_err(|e| e.to_string())?;
    let hello = IpcSender::<Hello>::connect(server).map_err(|e| e.to_string())?;
    hello
        .send(Hello {
            token,
            fingerprint: image::fingerprint(),
            pid: std::process::id(),
            calls: calls_tx,
            bulk: bulk_tx,
            results: results_rx,
        })
        .map_err(|e| e.to_string())?;
    drop(hello);
    loop {
        let bytes = match calls.recv() {
            Ok(b) => b,
            // The parent closed the channel (it shut down or died): nothing left to do.
            Err(ipc::IpcError::Disconnected) => return Ok(()),
            Err(e) => return Err(format!("cannot read from the parent: {e}")),
        };
        let msg = super::protocol::decode::<ToWorker>(&bytes)
            .map_err(|e| format!("malformed message from the parent: {e}"))?;
        match msg {
            ToWorker::Exit => return Ok(()),
            ToWorker::Init(target) => {
                let bytes = image::invoke(target, &[])?;
                let outcome = super::protocol::decode_outcome::<()>(&bytes);
                send(&results, FromWorker::Initialized(outcome))?;
            }
            ToWorker::Calls(batch) => {
                let mut ready = Vec::new();
                let mut since = Instant::now();
                let n = batch.len();
                for (i, call) in batch.into_iter().enumerate() {
                    let payload = if call.bulk {
                        let shm = bulk
                            .recv()
                            .map_err(|e| format!("cannot read a payload from the parent: {e}"))?;
                        image::prefault(&shm);
                        image::invoke(call.target, &shm)?
                    } else {
                        image::invoke(call.target, &call.payload)?
                    };
                    ready.push(Done::new(call.id, payload));
                    if i + 1 == n || since.elapsed() >= FLUSH_AFTER {
                        send(&results, FromWorker::Done(std::mem::take(&mut ready)))?;
                        since = Instant::now();
                    }
                }
            }
        }
    }
}

fn send(results: &IpcSender<FromWorker>, msg: FromWorker) -> Result<(), String> {
    results
        .send(msg)
        .map_err(|e| format!("cannot reach the parent: {e}"))
}

/// Formats a token for the environment.
pub(crate) fn format_token(token: &[u8; 16]) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_token(s: Option<&str>) -> Option<[u8; 16]> {
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

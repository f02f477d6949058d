//! What crosses the process boundary: the handshake, calls, results, and how values are
//! encoded. **API boundary**: parent and worker are always the same executable (checked by the
//! fingerprint in [`Hello`]), so the format needs no versioning, but it must reject malformed
//! input with an error, never undefined behaviour.
//!
//! Messages travel over ipc-channel typed channels (bincode 1 inside ipc-channel); payloads
//! (arguments and results) are bytes encoded with bincode 2, carried as `serde_bytes` so that
//! they are copied as whole buffers, not element by element.

use ipc_channel::ipc::{IpcBytesSender, IpcReceiver, IpcSender, IpcSharedMemory};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::TaskError;
use crate::future::Future;
use crate::sync::{self, Mutex};

/// Environment variables that turn a re-executed binary into a worker.
pub(crate) const ENV_SERVER: &str = "__CONCURRENT_FUTURES_WORKER";
pub(crate) const ENV_TOKEN: &str = "__CONCURRENT_FUTURES_TOKEN";
pub(crate) const ENV_PARENT: &str = "__CONCURRENT_FUTURES_PARENT";
/// Set (to the parent's server name) in a child started by `multiprocessing::Process`.
pub(crate) const ENV_CHILD: &str = "__CONCURRENT_FUTURES_CHILD";

/// Sent once by a new worker to its parent's one-shot server.
#[derive(Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The secret the parent put in the worker's environment: only the parent's own child
    /// knows it.
    pub(crate) token: [u8; 16],
    /// Identity of the executable image (see `image::fingerprint`).
    pub(crate) fingerprint: u64,
    pub(crate) pid: u32,
    /// Where the parent sends calls (encoded `ToWorker` messages).
    pub(crate) calls: IpcBytesSender,
    /// Where the parent sends large payloads, as shared memory, in the order of the calls
    /// marked `bulk`.
    pub(crate) bulk: IpcSender<IpcSharedMemory>,
    /// Where the parent reads results.
    pub(crate) results: IpcReceiver<FromWorker>,
    /// Where the parent asks for unstarted calls back (see [`Revoke`]).
    pub(crate) revoke: IpcSender<Revoke>,
    /// Eight bytes where the worker writes (little-endian) the id of each call as it starts
    /// it. The parent reads them only once the worker is dead, to tell the call it died in
    /// from those it finished (whose results may have died with it) and those it never
    /// started.
    pub(crate) progress: IpcSharedMemory,
}

/// Parent → worker, on its own channel (served by a helper thread of the worker, since the
/// worker's main thread may be busy with a long call): give back every call of batches up
/// to `through` that has not started, so that an idle worker can run them. The worker
/// answers with [`FromWorker::Revoked`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Revoke {
    pub(crate) through: u64,
}

/// A function to run, named by its position in the executable image.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct FnRef {
    /// Offset of the user's `fn(A) -> R` from the anchor.
    pub(crate) func: i64,
    /// Offset of the monomorphized trampoline that decodes, calls and encodes.
    pub(crate) tramp: i64,
}

/// Payloads at least this large travel as shared memory instead of through the socket
/// (one copy into a memory file, mapped by the other side).
pub(crate) const BULK: usize = 1 << 20;

/// One task for a worker.
#[derive(Serialize, Deserialize)]
pub(crate) struct Call {
    pub(crate) id: u64,
    pub(crate) target: FnRef,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
    /// If not 0, the payload is not here but the first `bulk` bytes of the next block on
    /// the bulk channel.
    pub(crate) bulk: u64,
}

/// `Call` as the parent sends it: the payload is borrowed, because the parent keeps it until
/// the result arrives (to resend it if the worker dies before starting it). Encodes exactly
/// as `Call`.
#[derive(Serialize)]
pub(crate) struct CallRef<'a> {
    pub(crate) id: u64,
    pub(crate) target: FnRef,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: &'a [u8],
    pub(crate) bulk: u64,
}

/// `ToWorker` as the parent sends it. Encodes exactly as `ToWorker`: same variants, in the
/// same order.
#[derive(Serialize)]
pub(crate) enum ToWorkerRef<'a> {
    Init(FnRef),
    Calls(u64, Vec<CallRef<'a>>),
    Exit,
}

/// Parent → worker.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run the pool's initializer before anything else.
    Init(FnRef),
    /// Batch number (1, 2, … per worker) and its calls: run them in order and send each
    /// result back.
    Calls(u64, Vec<Call>),
    /// Finish what was sent, then exit.
    Exit,
}

/// The outcome of one call: an encoded `Result<R, TaskError>` (or `Chunk<R>` for a chunk),
/// inline or, when large, in shared memory.
#[derive(Serialize, Deserialize)]
pub(crate) struct Done {
    pub(crate) id: u64,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
    pub(crate) shared: Option<IpcSharedMemory>,
}

impl Done {
    pub(crate) fn new(id: u64, payload: Vec<u8>) -> Done {
        if payload.len() >= BULK {
            Done {
                id,
                payload: Vec::new(),
                shared: Some(IpcSharedMemory::from_bytes(&payload)),
            }
        } else {
            Done {
                id,
                payload,
                shared: None,
            }
        }
    }
}

/// Worker → parent.
#[derive(Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The initializer ran (or failed, with why).
    Initialized(Result<(), TaskError>),
    /// Results, in completion order.
    Done(Vec<Done>),
    /// The answer to a [`Revoke`]: these calls were not started and never will be here,
    /// and neither will any call of the batches from `unread_from` on (not read yet).
    Revoked { ids: Vec<u64>, unread_from: u64 },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// An encoded argument: inline, or (when large) already in shared memory, so that it is
/// copied once on its way to the worker.
pub(crate) enum Payload {
    Inline(Vec<u8>),
    /// The first `len` bytes of a block.
    Shared {
        block: IpcSharedMemory,
        len: usize,
    },
}

impl Payload {
    /// The length of a payload in shared memory, 0 for one inline.
    pub(crate) fn bulk_len(&self) -> u64 {
        match self {
            Payload::Inline(_) => 0,
            Payload::Shared { len, .. } => *len as u64,
        }
    }

    pub(crate) fn inline(&self) -> &[u8] {
        match self {
            Payload::Inline(v) => v,
            Payload::Shared { .. } => &[],
        }
    }
}

/// Shared memory blocks of finished tasks, kept by a pool for its next large payloads:
/// writing into memory already mapped is about three times faster than a new block (whose
/// every page must be found, zeroed and mapped first). At most `KEEP` blocks and
/// `KEEP_BYTES` bytes are kept; the pool frees them when it goes.
#[derive(Default)]
pub(crate) struct Blocks(Mutex<Vec<IpcSharedMemory>>);

impl Blocks {
    const KEEP: usize = 4;
    const KEEP_BYTES: usize = 1 << 30;

    /// The smallest kept block that holds `len` bytes without wasting more than as much.
    fn take(&self, len: usize) -> Option<IpcSharedMemory> {
        let mut kept = sync::lock(&self.0);
        let best = kept
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len && b.len() <= 2 * len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i)?;
        Some(kept.swap_remove(best))
    }

    /// Keeps the block of a payload whose task is over (see `image::fill_block`).
    pub(crate) fn put(&self, payload: Payload) {
        let Payload::Shared { block, .. } = payload else {
            return;
        };
        let mut kept = sync::lock(&self.0);
        let bytes: usize = kept.iter().map(|b| b.len()).sum();
        if kept.len() < Self::KEEP && bytes + block.len() <= Self::KEEP_BYTES {
            kept.push(block);
        }
    }
}

/// Counts the bytes an encoding would write.
struct Counter(usize);

impl bincode::enc::write::Writer for Counter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Encodes an argument, straight into shared memory when it is large (into a block kept in
/// `blocks` if one fits).
pub(crate) fn encode_payload<T: Serialize>(value: &T, blocks: &Blocks) -> Result<Payload, String> {
    let mut counter = Counter(0);
    bincode::serde::encode_into_writer(value, &mut counter, config()).map_err(|e| e.to_string())?;
    if counter.0 < BULK {
        let mut out = Vec::with_capacity(counter.0);
        bincode::serde::encode_into_std_write(value, &mut out, config())
            .map_err(|e| e.to_string())?;
        return Ok(Payload::Inline(out));
    }
    let len = counter.0;
    let mut block = blocks
        .take(len)
        .unwrap_or_else(|| super::image::new_block(len.next_multiple_of(BULK)));
    super::image::fill_block(&mut block, |buf| {
        bincode::serde::encode_into_slice(value, &mut buf[..len], config())
    })
    .map_err(|e| e.to_string())?;
    Ok(Payload::Shared { block, len })
}

/// Encodes a value for the other process.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Decodes a value from the other process; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bincode::serde::decode_from_slice(bytes, config()) {
        Ok((v, n)) if n == bytes.len() => Ok(v),
        Ok((_, n)) => Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - n
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Encodes the outcome of a task; if the value itself cannot be encoded, the task fails
/// with `TaskError::Codec` instead (that outcome always encodes).
pub(crate) fn encode_outcome<R: Serialize>(outcome: &Result<R, TaskError>) -> Vec<u8> {
    encode(outcome).unwrap_or_else(|e| {
        let failed: Result<(), TaskError> = Err(TaskError::Codec(
            format!("the task's result could not be encoded: {e}").into(),
        ));
        encode(&failed).unwrap_or_default()
    })
}

/// Decodes the outcome of a task.
pub(crate) fn decode_outcome<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, TaskError> {
    decode::<Result<R, TaskError>>(bytes).unwrap_or_else(|e| {
        Err(TaskError::Codec(
            format!("the task's result could not be decoded: {e}").into(),
        ))
    })
}

/// A task's future, seen without its result type: claim it, cancel it, or complete it from
/// the bytes a worker sent. Every process transport (worker processes, MPI ranks) completes
/// futures through it.
pub(crate) trait Completion: Send {
    /// PENDING → RUNNING; false if it was cancelled (it must not be sent).
    fn claim(&self) -> bool;
    fn cancel(self: Box<Self>);
    fn complete(self: Box<Self>, outcome: Result<&[u8], TaskError>);
}

/// The `Completion` of a `Future<T>` whose worker sends an encoded `Result<T, TaskError>`.
pub(crate) struct Slot<T>(pub(crate) Future<T>);

impl<T: DeserializeOwned + Send + Sync + 'static> Completion for Slot<T> {
    fn claim(&self) -> bool {
        self.0.core().claim()
    }
    fn cancel(self: Box<Self>) {
        self.0.cancel();
    }
    fn complete(self: Box<Self>, outcome: Result<&[u8], TaskError>) {
        let value = outcome.and_then(decode_outcome::<T>);
        self.0.finish_claimed(value);
    }
}

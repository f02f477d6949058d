//! What crosses between the process pool and its workers. **API boundary**: parent and
//! worker are always the same executable (checked by the fingerprint in [`Hello`]), so the
//! format needs no versioning; but the parent trusts nothing a worker sends: every message
//! is at most [`MAX_FRAME`] bytes (the socket reports a longer one, which is never
//! allocated for), every record is bounds-checked, and a result in shared memory is copied
//! with `pread`, so a worker that shrinks it cannot make the parent fault.
//!
//! Each worker has two sockets (`SOCK_SEQPACKET`, one message per `send`): the main one
//! (calls down, results up), and a control one that the worker's helper thread serves even
//! while a call runs (revokes). Messages start with a tag byte:
//!
//! ```text
//! parent → worker (main)   W (welcome; fds: control socket, result log)
//!                          T ToWorker (codec; fds: the shared payloads of the calls, in order;
//!                            for Init, the initializer's shared argument if it has one; for
//!                            Tables, the sealed files of the shared tables, in order)
//! worker → parent (main)   H Hello (codec)
//!                          D records: [id u64][flags u8][len u32]([ran 2 × u64])[len bytes]
//!                            ... (fds: one per record flagged SHARED, in order; its bytes are
//!                            then empty; `ran` only if flagged TIMED)
//!                          I the initializer's encoded outcome
//!                          R Revoked (codec)
//!                          C CancelAck (codec)
//! parent → worker (ctl)    Control (codec): Revoke, or Cancel
//! ```
//!
//! # The result log
//!
//! A result that was computed is never lost with its worker. Before it starts the next call,
//! a worker has either sent the result or appended it to its *result log*: a shared memory
//! file the parent created (sealed against shrinking) and keeps. The log is
//! `[started u64][committed u64][started_at u64][records]`: `started` is the id of the call
//! the worker started last and `started_at` when (the monotonic clock, in nanoseconds: the
//! watchdog of time limits reads both while the worker runs), `committed` the length of the
//! complete records (stored after them, with release ordering). A flush sends the records straight from the log, then empties it. The
//! parent reads the log only once the worker is dead: the records complete their tasks (a
//! record whose task was already completed by the same record sent before the death is
//! ignored), `started` names the call it died in, and the calls after it never started.
//!
//! # Run times
//!
//! A worker's records are flagged `TIMED`: after the header come the call's start and end on
//! the worker's `CLOCK_MONOTONIC` (nanoseconds), the clock every process of the machine
//! shares, so the parent places them on its timeline without any conversion but its own
//! epoch. The worker reads that clock at the start of every call anyway (for `started_at`)
//! and at its end (for the flush of results), so the times cost 16 bytes per record and no
//! clock read more. A record without them (the format allows it) is simply not drawn.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::os::{Mapping, Memfd};
use crate::remote::FnRef;
use crate::remote::codec::{self, CodecError};
use crate::sync::{self, Mutex};

/// The largest message either way. Below what a `SOCK_SEQPACKET` socket accepts in one
/// message with default buffer sizes (about 208 KiB).
pub(crate) const MAX_FRAME: usize = 128 << 10;
/// Payloads (arguments and results) larger than this travel in a shared memory file.
pub(crate) const INLINE_MAX: usize = 32 << 10;
/// The size of a worker's result log: its records fit in one message.
pub(crate) const LOG_SIZE: usize = MAX_FRAME;
/// The log's header: `started`, `committed`, `started_at`.
pub(crate) const LOG_HEADER: usize = 24;
/// Bytes of a record before its payload (and its run times, if it has them).
pub(crate) const RECORD_HEADER: usize = 13;
/// Bytes of a record's run times: start and end, `CLOCK_MONOTONIC` nanoseconds.
pub(crate) const RAN_LEN: usize = 16;
/// The largest result the parent accepts (a larger one fails its task with `Codec`).
pub(crate) const MAX_RESULT: usize = 4 << 30;

pub(crate) const TAG_WELCOME: u8 = b'W';
pub(crate) const TAG_TO_WORKER: u8 = b'T';
pub(crate) const TAG_HELLO: u8 = b'H';
pub(crate) const TAG_DONE: u8 = b'D';
pub(crate) const TAG_INIT: u8 = b'I';
pub(crate) const TAG_REVOKED: u8 = b'R';
pub(crate) const TAG_CANCELLED: u8 = b'C';

/// A record's flag: its payload is in the shared memory file attached to the message.
pub(crate) const SHARED: u8 = 1;
/// A record's flag: its header is followed by the call's run times (`RAN_LEN` bytes).
pub(crate) const TIMED: u8 = 2;

/// Sent once by a new worker, first.
#[derive(Serialize, Deserialize)]
pub(crate) struct Hello {
    /// Identity of the executable image (see `naming::fingerprint`).
    pub(crate) fingerprint: u64,
    pub(crate) pid: u32,
}

/// Parent → worker, on the control socket (served by a helper thread of the worker, since
/// the worker's main thread may be busy with a long call): give back every call of batches
/// up to `through` that has not started, so that an idle worker can run them. The worker
/// answers with [`Revoked`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Revoke {
    pub(crate) through: u64,
}

/// What the parent sends on the control socket.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Control {
    Revoke(Revoke),
    /// `Future::cancel_running` on call `id` (sent in batch `batch`): the worker drops it if
    /// it has not started it, kills itself (SIGKILL) if it runs it now, and otherwise (it
    /// finished it) leaves it; it answers with [`CancelAck`], or with its death.
    Cancel {
        id: u64,
        batch: u64,
    },
}

/// The answer to [`Control::Cancel`]: call `id` is no longer the worker's (`dropped`: it
/// never ran and never will there) or it had finished (its result comes as any other).
#[derive(Serialize, Deserialize)]
pub(crate) struct CancelAck {
    pub(crate) id: u64,
    pub(crate) dropped: bool,
}

/// The answer to a [`Revoke`]: these calls were not started and never will be here, and
/// neither will any call of the batches from `unread_from` on (not read yet).
#[derive(Serialize, Deserialize)]
pub(crate) struct Revoked {
    pub(crate) ids: Vec<u64>,
    pub(crate) unread_from: u64,
}

/// One task for a worker.
#[derive(Serialize, Deserialize)]
pub(crate) struct Call {
    pub(crate) id: u64,
    pub(crate) target: FnRef,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
    /// If not 0, the payload is not here but the first `bulk` bytes of the next shared
    /// memory file attached to the message.
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
    Init(FnRef, #[serde(with = "serde_bytes")] &'a [u8], u64),
    Calls(u64, Vec<CallRef<'a>>),
    Exit,
    Tables(&'a [(u64, u64)]),
    Release(&'a [u64]),
}

/// Parent → worker.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run the pool's initializer before anything else, with this encoded argument (as a
    /// `Call`'s payload: if the number is not 0, the argument is the first that many bytes
    /// of the shared memory file attached instead).
    Init(FnRef, #[serde(with = "serde_bytes")] Vec<u8>, u64),
    /// Batch number (1, 2, … per worker) and its calls: run them in order and send each
    /// result back.
    Calls(u64, Vec<Call>),
    /// Finish what was sent, then exit.
    Exit,
    /// Shared tables (`Shared`) that the calls sent next need: (id, length in bytes), each
    /// in a sealed memory file attached to the message, in order. Keep them by id.
    Tables(Vec<(u64, u64)>),
    /// The parent dropped these tables: let them go.
    Release(Vec<u64>),
}

/// A pool's initializer as each of its workers gets it: its argument inline, or (when
/// large) in a shared memory file written once, when the pool is built, which every worker,
/// replacements included, maps read-only. The parent never writes it again.
pub(crate) struct Init {
    target: FnRef,
    inline: Vec<u8>,
    shared: Option<(Memfd, u64)>,
}

impl Init {
    pub(crate) fn new(call: crate::remote::InitCall) -> std::io::Result<Init> {
        let crate::remote::InitCall { target, arg } = call;
        if arg.len() <= INLINE_MAX {
            return Ok(Init {
                target,
                inline: arg,
                shared: None,
            });
        }
        let file = Memfd::new(arg.len())?;
        file.write_at(0, &arg)?;
        Ok(Init {
            target,
            inline: Vec::new(),
            shared: Some((file, arg.len() as u64)),
        })
    }

    /// The message that tells a worker to run it.
    pub(crate) fn message(&self) -> ToWorkerRef<'_> {
        let bulk = self.shared.as_ref().map_or(0, |(_, len)| *len);
        ToWorkerRef::Init(self.target, &self.inline, bulk)
    }

    /// The file to attach to the message, if the argument is shared.
    pub(crate) fn file(&self) -> Option<&Memfd> {
        self.shared.as_ref().map(|(file, _)| file)
    }
}

/// One record of a `D` message or of the result log, as read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) id: u64,
    pub(crate) shared: bool,
    /// The payload, or empty if `shared`.
    pub(crate) payload: &'a [u8],
    /// The payload's length (in the shared file if `shared`).
    pub(crate) len: usize,
    /// When the worker started and ended the call (its `CLOCK_MONOTONIC`, nanoseconds), if
    /// the record says.
    pub(crate) ran: Option<[u64; 2]>,
}

/// A record that does not fit its message: the worker broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a malformed result record")]
pub(crate) struct Malformed;

/// Reads the records of `bytes`, checking every length against what is there.
pub(crate) fn records(mut bytes: &[u8]) -> impl Iterator<Item = Result<Record<'_>, Malformed>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        if bytes.len() < RECORD_HEADER {
            bytes = &[];
            return Some(Err(Malformed));
        }
        let id = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let flags = bytes[8];
        let len = u32::from_le_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
        let shared = flags & SHARED != 0;
        let timed = if flags & TIMED != 0 { RAN_LEN } else { 0 };
        let head = RECORD_HEADER + timed;
        let body = if shared { 0 } else { len };
        if flags & !(SHARED | TIMED) != 0 || bytes.len() < head || bytes.len() - head < body {
            bytes = &[];
            return Some(Err(Malformed));
        }
        let ran = (timed > 0).then(|| {
            let at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
            [at(RECORD_HEADER), at(RECORD_HEADER + 8)]
        });
        let payload = &bytes[head..head + body];
        bytes = &bytes[head + body..];
        Some(Ok(Record {
            id,
            shared,
            payload,
            len,
            ran,
        }))
    })
}

/// A record's header, with the call's run times (`[start, end]`, `CLOCK_MONOTONIC`
/// nanoseconds).
pub(crate) fn record_header(
    id: u64,
    shared: bool,
    len: u32,
    ran: [u64; 2],
) -> [u8; RECORD_HEADER + RAN_LEN] {
    let mut h = [0u8; RECORD_HEADER + RAN_LEN];
    h[..8].copy_from_slice(&id.to_le_bytes());
    h[8] = TIMED | if shared { SHARED } else { 0 };
    h[9..13].copy_from_slice(&len.to_le_bytes());
    h[13..21].copy_from_slice(&ran[0].to_le_bytes());
    h[21..].copy_from_slice(&ran[1].to_le_bytes());
    h
}

/// What a dead worker's result log holds, read with `pread` and checked.
#[derive(Debug, Default)]
pub(crate) struct PostMortem {
    /// The call it started last (0: none).
    pub(crate) started: u64,
    /// When it started it (`CLOCK_MONOTONIC` nanoseconds).
    pub(crate) started_at: u64,
    /// Finished calls whose results were not sent: (id, encoded outcome, run times).
    pub(crate) results: Vec<(u64, Vec<u8>, Option<[u64; 2]>)>,
}

impl PostMortem {
    /// Reads the log. Whatever does not parse is left out: a log a task scribbled over
    /// costs only that worker's own tasks.
    pub(crate) fn read(log: &Memfd) -> PostMortem {
        let mut header = [0u8; LOG_HEADER];
        if log.len() < LOG_SIZE || log.read_at(0, &mut header).is_err() {
            return PostMortem::default();
        }
        let started = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let committed = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let started_at = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        let committed = usize::try_from(committed)
            .unwrap_or(usize::MAX)
            .min(LOG_SIZE - LOG_HEADER);
        let mut body = vec![0u8; committed];
        if log.read_at(LOG_HEADER, &mut body).is_err() {
            return PostMortem {
                started,
                started_at,
                results: Vec::new(),
            };
        }
        let results = records(&body)
            .map_while(Result::ok)
            .filter(|r| !r.shared)
            .map(|r| (r.id, r.payload.to_vec(), r.ran))
            .collect();
        PostMortem {
            started,
            started_at,
            results,
        }
    }
}

/// The call a worker runs now and since when (monotonic nanoseconds), read from a
/// read-only mapping of its log while it runs (the file is sealed against shrinking, so the
/// mapping cannot fault). The worker stores the time, then the call (release); loading the
/// call first (acquire) makes the time the one of that call, never of the one before. A
/// worker could write anything there, which costs only its own tasks (the caller checks
/// that it holds the call; a time in the future counts as now).
pub(crate) fn running(log: &Mapping) -> Option<(u64, u64)> {
    if log.len() < LOG_HEADER {
        return None;
    }
    let started = log.load_u64(0);
    let at = log.load_u64(16);
    Some((started, at))
}

/// The worker's side of its result log (a mapping of the file the parent created).
pub(crate) struct Log {
    map: Mapping,
    committed: usize,
}

impl Log {
    pub(crate) fn new(map: Mapping) -> Option<Log> {
        (map.len() >= LOG_SIZE).then_some(Log { map, committed: 0 })
    }

    /// Records that the call `id` starts now; returns that time (`CLOCK_MONOTONIC`).
    pub(crate) fn started(&self, id: u64) -> u64 {
        let now = crate::os::monotonic_nanos();
        self.map.store_u64(16, now);
        self.map.store_u64(0, id);
        now
    }

    /// Bytes of records not sent yet.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.map.bytes()[LOG_HEADER..LOG_HEADER + self.committed]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.committed == 0
    }

    /// Appends a record (with the call's run times) if there is room; false if there is not
    /// (flush first).
    pub(crate) fn append(&mut self, id: u64, payload: &[u8], ran: [u64; 2]) -> bool {
        const HEAD: usize = RECORD_HEADER + RAN_LEN;
        let need = HEAD + payload.len();
        let at = LOG_HEADER + self.committed;
        if payload.len() > INLINE_MAX || at + need > LOG_SIZE {
            return false;
        }
        let bytes = self.map.bytes_mut();
        bytes[at..at + HEAD].copy_from_slice(&record_header(id, false, payload.len() as u32, ran));
        bytes[at + HEAD..at + need].copy_from_slice(payload);
        self.committed += need;
        self.map.store_u64(8, self.committed as u64);
        true
    }

    /// Empties the log (its records were sent).
    pub(crate) fn clear(&mut self) {
        self.committed = 0;
        self.map.store_u64(8, 0);
    }
}

/// An encoded argument: inline, or (when large) already in a shared memory file, so that it
/// is copied once on its way to the worker.
pub(crate) enum Payload {
    Inline(Vec<u8>),
    /// The first `len` bytes of a file (kept mapped, for reuse).
    Shared {
        payload_file: PayloadFile,
        len: usize,
    },
}

/// A shared memory file for large arguments, and the parent's mapping of it.
pub(crate) struct PayloadFile {
    pub(crate) file: Memfd,
    map: Mapping,
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

    pub(crate) fn file(&self) -> Option<&Memfd> {
        match self {
            Payload::Inline(_) => None,
            Payload::Shared { payload_file, .. } => Some(&payload_file.file),
        }
    }
}

/// Shared memory files of finished tasks, kept by a pool for its next large payloads:
/// writing into memory already mapped is about three times faster than into a new file
/// (whose every page must be found, zeroed and mapped first). At most `KEEP` files and
/// `KEEP_BYTES` bytes are kept; the pool frees them when it goes.
#[derive(Default)]
pub(crate) struct PayloadFileCache(Mutex<Vec<PayloadFile>>);

impl PayloadFileCache {
    const KEEP: usize = 4;
    const KEEP_BYTES: usize = 1 << 30;

    /// The smallest kept block that holds `len` bytes without wasting more than as much.
    fn take(&self, len: usize) -> Option<PayloadFile> {
        let mut kept = sync::lock(&self.0);
        let best = kept
            .iter()
            .enumerate()
            .filter(|(_, b)| b.file.len() >= len && b.file.len() <= 2 * len)
            .min_by_key(|(_, b)| b.file.len())
            .map(|(i, _)| i)?;
        Some(kept.swap_remove(best))
    }

    /// Keeps the block of a payload whose task is over: the worker that read it sent its
    /// result (after unmapping it), or died, or gave the task back unread.
    pub(crate) fn put(&self, payload: Payload) {
        let Payload::Shared { payload_file, .. } = payload else {
            return;
        };
        let mut kept = sync::lock(&self.0);
        let bytes: usize = kept.iter().map(|b| b.file.len()).sum();
        if kept.len() < Self::KEEP && bytes + payload_file.file.len() <= Self::KEEP_BYTES {
            kept.push(payload_file);
        }
    }
}

/// Why an argument could not be prepared for a worker.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("cannot create shared memory for a large argument: {0}")]
    Memory(#[from] std::io::Error),
}

impl From<codec::EncodeToError> for EncodeError {
    fn from(e: codec::EncodeToError) -> Self {
        match e {
            codec::EncodeToError::Codec(e) => EncodeError::Codec(e),
            codec::EncodeToError::Write(e) => EncodeError::Memory(e),
        }
    }
}

/// Encodes an argument (with a task's captures: `codec::TaskArg`), straight into shared
/// memory when it is large (into a file kept in `payload_files` if one fits).
pub(crate) fn encode_payload<T: Serialize + 'static>(
    value: &codec::TaskArg<'_, T>,
    payload_files: &PayloadFileCache,
) -> Result<Payload, EncodeError> {
    let len = codec::encoded_len(value)?;
    if len <= INLINE_MAX {
        return Ok(Payload::Inline(codec::encode(value)?));
    }
    if let Some(mut payload_file) = payload_files.take(len) {
        // Nobody else maps this file now: its last task is over (see `put`).
        codec::encode_into(value, &mut payload_file.map.bytes_mut()[..len])?;
        return Ok(Payload::Shared { payload_file, len });
    }
    // A new file is written with `pwrite`, through a small buffer (or straight from a byte
    // buffer): its pages are allocated as they are written, without being zeroed first or
    // mapped in this process, which costs less than mapping them and writing them there.
    let file = Memfd::new(len.next_multiple_of(1 << 16))?;
    codec::encode_to(value, len, &mut |offset, bytes| {
        file.write_at(offset, bytes)
    })?;
    // Mapped for the block's next uses (kept blocks are written through the mapping): the
    // pages exist now, so mapping them all in one call is cheap.
    let mut map = file.map(true)?;
    map.prefault_write();
    Ok(Payload::Shared {
        payload_file: PayloadFile { file, map },
        len,
    })
}

/// Why a result a worker put in shared memory is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedResultError {
    #[error("unusable shared result: {0}")]
    Unusable(std::io::Error),
    #[error("a result of {len} bytes announced in a shared block of {file}")]
    Overrun { len: usize, file: usize },
    #[error("a result of {0} bytes, more than the {MAX_RESULT} a process pool accepts")]
    TooLarge(usize),
    #[error("no memory for a result of {0} bytes")]
    NoMemory(usize),
    #[error("cannot read a shared result: {0}")]
    Read(std::io::Error),
}

/// Reads a result a worker put in a shared memory file, with every length checked.
pub(crate) fn read_shared(fd: OwnedFd, len: usize) -> Result<Vec<u8>, SharedResultError> {
    let file = Memfd::from_received(fd, false).map_err(SharedResultError::Unusable)?;
    if len > file.len() {
        return Err(SharedResultError::Overrun {
            len,
            file: file.len(),
        });
    }
    if len > MAX_RESULT {
        return Err(SharedResultError::TooLarge(len));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| SharedResultError::NoMemory(len))?;
    out.resize(len, 0);
    file.read_at(0, &mut out).map_err(SharedResultError::Read)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = record_header(id, false, payload.len() as u32, [id, id + 1]).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn records_round_trip() {
        let mut bytes = record(7, b"abc");
        bytes.extend(record(9, b""));
        bytes.extend(record_header(11, true, 1 << 20, [5, 6]));
        // A record without run times (flags 0): still a record.
        bytes.extend(12u64.to_le_bytes());
        bytes.push(0);
        bytes.extend(2u32.to_le_bytes());
        bytes.extend(b"xy");
        let got: Vec<_> = records(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].id, got[0].payload), (7, &b"abc"[..]));
        assert_eq!(got[0].ran, Some([7, 8]));
        assert_eq!((got[1].id, got[1].payload.len()), (9, 0));
        assert!(got[2].shared && got[2].len == 1 << 20 && got[2].payload.is_empty());
        assert_eq!(got[2].ran, Some([5, 6]));
        assert_eq!(
            (got[3].id, got[3].payload, got[3].ran),
            (12, &b"xy"[..], None)
        );
    }

    #[test]
    fn a_length_past_the_end_is_malformed_not_allocated() {
        let mut bytes = record_header(1, false, u32::MAX, [0, 0]).to_vec();
        bytes.extend_from_slice(b"short");
        assert_eq!(records(&bytes).next(), Some(Err(Malformed)));
        assert_eq!(records(&bytes[..5]).next(), Some(Err(Malformed)));
        // Flagged TIMED but cut inside its run times.
        assert_eq!(records(&bytes[..20]).next(), Some(Err(Malformed)));
        let mut bad_flags = record(1, b"x");
        bad_flags[8] = 7;
        assert_eq!(records(&bad_flags).next(), Some(Err(Malformed)));
    }

    #[test]
    fn the_log_keeps_what_was_committed() {
        let file = Memfd::new(LOG_SIZE).unwrap();
        let mut log = Log::new(file.map(true).unwrap()).unwrap();
        let at = log.started(3);
        assert!(log.append(3, b"three", [at, at + 10]));
        let at4 = log.started(4);
        assert!(at4 >= at);
        let pm = PostMortem::read(&file);
        assert_eq!((pm.started, pm.started_at), (4, at4));
        assert_eq!(
            pm.results,
            vec![(3, b"three".to_vec(), Some([at, at + 10]))]
        );
        log.clear();
        assert!(PostMortem::read(&file).results.is_empty());
        // Full: the record is refused, to be flushed first.
        let big = vec![0u8; INLINE_MAX];
        while log.append(5, &big, [0, 0]) {}
        assert!(!log.append(6, &big, [0, 0]));
    }

    #[test]
    fn a_scribbled_log_is_read_within_bounds() {
        let file = Memfd::new(LOG_SIZE).unwrap();
        file.write_at(0, &[0xff; 64]).unwrap();
        let pm = PostMortem::read(&file);
        assert_eq!(pm.started, u64::MAX);
        assert!(pm.results.is_empty());
    }

    #[test]
    fn a_shared_result_longer_than_its_file_is_refused() {
        let file = Memfd::new(4096).unwrap();
        let fd: OwnedFd = std::os::fd::AsFd::as_fd(&file)
            .try_clone_to_owned()
            .unwrap();
        assert!(read_shared(fd, 1 << 40).is_err());
        let fd: OwnedFd = std::os::fd::AsFd::as_fd(&file)
            .try_clone_to_owned()
            .unwrap();
        assert_eq!(read_shared(fd, 10).unwrap(), vec![0u8; 10]);
    }
}

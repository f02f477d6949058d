//! Naming a function across processes, and every `unsafe` that calling it by that name
//! takes:
//!
//! * a function is named by its offset from an anchor function (ASLR shifts the whole image
//!   by one amount, so offsets are the same in the parent and in a re-executed child, or in
//!   another rank running the same build);
//! * the monomorphized trampolines that decode an argument, call, and encode the outcome;
//! * the check that a function lives in the main executable (not in a `dlopen`ed library,
//!   whose position is not fixed relative to the anchor);
//! * the fingerprints that prove a worker runs the same executable as its parent.
//!
//! # Trust
//!
//! A worker calls whatever offsets it receives, so it only takes calls from the parent that
//! started it (over a socket it inherited, which nobody else holds), and only after both
//! sides agree on the fingerprint. Offsets are range-checked against the executable segments
//! of the image, and every payload is decoded with checks. An offset that is in range but
//! does not come from this module's own `target_of` is the one thing the checks cannot
//! catch; only the parent can send one, and it never does. The parent, for its part, never
//! calls anything a worker names.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use ipc_channel::ipc::OpaqueIpcReceiver;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec::{self, FromWire};
use crate::chunk::{Chunk, run_chunk};
use crate::error::{SubmitError, TaskError};
use crate::os;

/// A function to run, named by its position in the executable image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FnRef {
    /// Offset of the user's `fn(A) -> R` from the anchor.
    pub(crate) func: i64,
    /// Offset of the monomorphized trampoline that decodes, calls and encodes.
    pub(crate) tramp: i64,
}

/// The point every offset is measured from. Never called.
#[inline(never)]
fn anchor() {}

fn base() -> usize {
    anchor as fn() as usize
}

/// Decodes the argument at `payload`, calls the function at `func`, encodes the outcome.
type Trampoline = fn(usize, &[u8]) -> Vec<u8>;

/// Executable segments of the main program (not of shared libraries).
fn image_ranges() -> &'static [os::Segment] {
    static RANGES: OnceLock<Vec<os::Segment>> = OnceLock::new();
    RANGES.get_or_init(os::executable_segments)
}

fn in_image(addr: usize) -> bool {
    image_ranges()
        .iter()
        .any(|seg| (seg.start..seg.end).contains(&addr))
}

/// Identifies the program by its machine code: a hash of the bytes of its executable
/// segments as loaded (position-independent code is the same at any load address) and of
/// the offsets of a few functions. Unlike [`fingerprint`], it does not depend on which file
/// the program was loaded from, so two copies of one build on two machines (the ranks of an
/// MPI job) agree, and two different builds do not. Computed once per process (a few
/// milliseconds for a large test binary).
#[cfg(feature = "mpi")]
pub(crate) fn code_fingerprint() -> u64 {
    static CODE: OnceLock<u64> = OnceLock::new();
    *CODE.get_or_init(|| {
        // FNV-1a over 8-byte words: fast, and plenty to tell builds apart (this is a check
        // against mistakes, not against an adversary, who could not join the job anyway).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |word: u64| h = (h ^ word).wrapping_mul(0x0000_0100_0000_01b3);
        for seg in image_ranges() {
            mix(seg.file_len as u64);
            let mut words = seg.code().chunks_exact(8);
            for w in &mut words {
                mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
            }
            for &b in words.remainder() {
                mix(u64::from(b));
            }
        }
        mix((call_init as Trampoline as usize).wrapping_sub(base()) as u64);
        mix(
            (super::bootstrap::started_as_worker as fn() -> bool as usize).wrapping_sub(base())
                as u64,
        );
        h
    })
}

fn offset_of(addr: usize) -> Result<i64, SubmitError> {
    if !in_image(addr) {
        return Err(SubmitError::Unsendable(
            "the function is not part of the program's executable (is it from a \
             dynamically loaded library?), so a worker process cannot find it"
                .into(),
        ));
    }
    Ok(addr as i64 - base() as i64)
}

/// How a worker finds `f` and the trampoline that calls it for one argument.
pub(crate) fn target_of<A, R>(f: fn(A) -> R) -> Result<FnRef, SubmitError>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    Ok(FnRef {
        func: offset_of(f as usize)?,
        tramp: offset_of(call_one::<A, R> as Trampoline as usize)?,
    })
}

/// How a worker finds `f` and the trampoline that runs it over a chunk of arguments.
pub(crate) fn chunk_target_of<A, R>(f: fn(A) -> R) -> Result<FnRef, SubmitError>
where
    A: DeserializeOwned,
    R: Serialize + 'static,
{
    Ok(FnRef {
        func: offset_of(f as usize)?,
        tramp: offset_of(call_chunk::<A, R> as Trampoline as usize)?,
    })
}

/// How a worker finds the function of a [`Captured`](crate::Captured) task and the
/// trampoline that decodes its captures and its argument and calls it.
pub(crate) fn captured_target_of<C, A, R>(f: fn(&C, A) -> R) -> Result<FnRef, SubmitError>
where
    C: DeserializeOwned + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    captured(f, call_one_captured::<C, A, R>)
}

/// [`captured_target_of`] for a chunk of a `map`: the trampoline decodes the captures once
/// and runs the chunk's items.
pub(crate) fn captured_chunk_target_of<C, A, R>(f: fn(&C, A) -> R) -> Result<FnRef, SubmitError>
where
    C: DeserializeOwned + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    captured(f, call_chunk_captured::<C, A, R>)
}

fn captured<C, A, R>(f: fn(&C, A) -> R, tramp: Trampoline) -> Result<FnRef, SubmitError> {
    Ok(FnRef {
        func: offset_of(f as usize)?,
        tramp: offset_of(tramp as usize)?,
    })
}

/// How a worker finds a pool's initializer (`fn()`).
pub(crate) fn init_target_of(f: fn()) -> Result<FnRef, SubmitError> {
    Ok(FnRef {
        func: offset_of(f as usize)?,
        tramp: offset_of(call_init as Trampoline as usize)?,
    })
}

/// How a child started by [`Process`](crate::multiprocessing::Process) finds its target
/// `fn(A)` and the trampoline that receives the argument and calls it.
pub(crate) fn process_target_of<A>(f: fn(A)) -> Result<FnRef, SubmitError>
where
    A: Serialize + DeserializeOwned,
{
    Ok(FnRef {
        func: offset_of(f as usize)?,
        tramp: offset_of(call_process::<A> as ProcessTrampoline as usize)?,
    })
}

/// Receives a [`Process`](crate::multiprocessing::Process)'s argument on the channel, calls
/// the target, returns the exit code.
type ProcessTrampoline = fn(usize, OpaqueIpcReceiver) -> i32;

/// Runs the target of a `Process` (in the child); returns the process's exit code.
pub(crate) fn invoke_process(target: FnRef, args: OpaqueIpcReceiver) -> Result<i32, BadTarget> {
    let func = (base() as i64).wrapping_add(target.func) as usize;
    let tramp = (base() as i64).wrapping_add(target.tramp) as usize;
    if !in_image(func) || !in_image(tramp) {
        return Err(BadTarget(target));
    }
    // SAFETY: as in `invoke`: same executable (fingerprint checked by the parent, whose
    // secret token authenticated this child's connection), offsets computed together by
    // `process_target_of`, and every process trampoline has exactly this type.
    let tramp = unsafe { std::mem::transmute::<usize, ProcessTrampoline>(tramp) };
    Ok(tramp(func, args))
}

/// The trampoline of a `Process`: exit code 0 when the target returns, 1 when it panics (the
/// panic message is printed on stderr first, as Python prints the traceback).
fn call_process<A: Serialize + DeserializeOwned>(func: usize, args: OpaqueIpcReceiver) -> i32 {
    // SAFETY: `func` is the address, in this process, of the `fn(A)` whose offset
    // `process_target_of::<A>` computed together with this trampoline's.
    let f = unsafe { std::mem::transmute::<usize, fn(A)>(func) };
    let args: ipc_channel::ipc::IpcReceiver<A> = args.to();
    match args.recv() {
        Ok(arg) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(arg))) {
            Ok(()) => 0,
            Err(_) => 1,
        },
        Err(e) => {
            eprintln!(
                "the arguments of process {} could not be received: {e}",
                std::process::id()
            );
            1
        }
    }
}

/// Runs a call received from the parent (in a worker).
pub(crate) fn invoke(target: FnRef, payload: &[u8]) -> Result<Vec<u8>, BadTarget> {
    let func = (base() as i64).wrapping_add(target.func) as usize;
    let tramp = (base() as i64).wrapping_add(target.tramp) as usize;
    if !in_image(func) || !in_image(tramp) {
        return Err(BadTarget(target));
    }
    // SAFETY: (1) the worker runs the same executable as its parent (the fingerprint was
    // checked in the handshake), and ASLR shifts the whole image, so `tramp` is the
    // address in this process of the trampoline whose offset the parent computed in
    // `target_of`/`chunk_target_of`/`init_target_of`; (2) the parent is authenticated by the
    // token, and it only sends offsets produced by those functions; (3) every trampoline has
    // exactly the type `Trampoline`.
    let tramp = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
    Ok(tramp(func, payload))
}

/// The trampoline for one call of `fn(A) -> R`.
fn call_one<A: DeserializeOwned + 'static, R: Serialize + 'static>(
    func: usize,
    payload: &[u8],
) -> Vec<u8> {
    // SAFETY: `func` is the address, in this process, of the `fn(A) -> R` whose offset
    // `target_of::<A, R>` computed together with this trampoline's (see `invoke`), so the
    // pointer has exactly this type.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    // A `Deserialize` that panics fails this task with its message, like the task's own.
    let outcome = match crate::unwind::catch(|| codec::decode::<FromWire<A>>(payload)) {
        Ok(Ok(FromWire(arg))) => crate::unwind::catch(|| f(arg)),
        Ok(Err(e)) => Err(TaskError::Codec(
            format!("the argument could not be decoded: {e}").into(),
        )),
        Err(panicked) => Err(panicked),
    };
    codec::encode_outcome(&outcome)
}

/// The trampoline for a chunk of calls of `fn(A) -> R`.
fn call_chunk<A: DeserializeOwned, R: Serialize + 'static>(func: usize, payload: &[u8]) -> Vec<u8> {
    // SAFETY: as in `call_one`, paired by `chunk_target_of::<A, R>`.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let outcome: Result<Chunk<R>, TaskError> =
        match crate::unwind::catch(|| codec::decode::<Vec<A>>(payload)) {
            Ok(Ok(items)) => Ok(run_chunk(f, items)),
            Ok(Err(e)) => Err(TaskError::Codec(
                format!("the chunk's arguments could not be decoded: {e}").into(),
            )),
            Err(panicked) => Err(panicked),
        };
    codec::encode_outcome(&outcome)
}

/// The trampoline for one call of a captured task's `fn(&C, A) -> R`: the payload is the
/// captures' encoding, then the argument's (`codec::TaskArg`).
fn call_one_captured<C, A, R>(func: usize, payload: &[u8]) -> Vec<u8>
where
    C: DeserializeOwned + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    // SAFETY: `func` is the address, in this process, of the `fn(&C, A) -> R` whose offset
    // `captured_target_of::<C, A, R>` computed together with this trampoline's (see
    // `invoke`), so the pointer has exactly this type.
    let f = unsafe { std::mem::transmute::<usize, fn(&C, A) -> R>(func) };
    let outcome = match crate::unwind::catch(|| codec::decode_captured::<C, FromWire<A>>(payload)) {
        Ok(Ok((captures, FromWire(arg)))) => crate::unwind::catch(|| f(&captures, arg)),
        Ok(Err(e)) => Err(TaskError::Codec(
            format!("the task's captures or argument could not be decoded: {e}").into(),
        )),
        Err(panicked) => Err(panicked),
    };
    codec::encode_outcome(&outcome)
}

/// The trampoline for a chunk of calls of a captured task: the captures are decoded once
/// for the whole chunk.
fn call_chunk_captured<C, A, R>(func: usize, payload: &[u8]) -> Vec<u8>
where
    C: DeserializeOwned + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    // SAFETY: as in `call_one_captured`, paired by `captured_target_of::<C, A, R>`.
    let f = unsafe { std::mem::transmute::<usize, fn(&C, A) -> R>(func) };
    let outcome: Result<Chunk<R>, TaskError> =
        match crate::unwind::catch(|| codec::decode_captured::<C, Vec<A>>(payload)) {
            Ok(Ok((captures, items))) => Ok(run_chunk(|arg| f(&captures, arg), items)),
            Ok(Err(e)) => Err(TaskError::Codec(
                format!("the chunk's captures or arguments could not be decoded: {e}").into(),
            )),
            Err(panicked) => Err(panicked),
        };
    codec::encode_outcome(&outcome)
}

/// The trampoline for the pool's initializer.
fn call_init(func: usize, _payload: &[u8]) -> Vec<u8> {
    // SAFETY: as in `call_one`, paired by `init_target_of` with a `fn()`.
    let f = unsafe { std::mem::transmute::<usize, fn()>(func) };
    codec::encode_outcome(&crate::unwind::catch(f))
}

/// Identifies the executable: the file it was loaded from and the layout of its code. A
/// worker re-executes `/proc/self/exe`, the very file its parent runs, so the two agree
/// unless something is badly wrong.
pub(crate) fn fingerprint() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(m) = std::fs::metadata("/proc/self/exe") {
        (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    }
    // Code layout: the same offsets in both processes.
    (call_init as Trampoline as usize)
        .wrapping_sub(base())
        .hash(&mut h);
    (super::bootstrap::started_as_worker as fn() -> bool as usize)
        .wrapping_sub(base())
        .hash(&mut h);
    h.finish()
}

/// The parent named a function outside the executable: the worker refuses to call it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the parent named a function outside the executable ({0:?})")]
pub(crate) struct BadTarget(pub(crate) FnRef);

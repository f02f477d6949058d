//! Everything that depends on the executable image, and every `unsafe` of the process
//! backend:
//!
//! * how a function is named across processes: its offset from an anchor function (ASLR
//!   shifts the whole image by one amount, so offsets are the same in parent and worker);
//! * the monomorphized trampolines that decode an argument, call, and encode the outcome;
//! * the check that a function lives in the main executable (not in a `dlopen`ed library,
//!   whose position is not fixed relative to the anchor);
//! * the fingerprint that proves a worker runs the same executable as its parent;
//! * the constructor that turns a re-executed binary into a worker before `main` runs.
//!
//! # Trust
//!
//! A worker calls whatever offsets it receives, so it only accepts a connection to the
//! parent that spawned it (secret token in its environment) and only after both sides agree
//! on the fingerprint. Offsets are range-checked against the executable segments of the
//! image, and every payload is decoded with checks; a malformed message ends the worker with
//! an error. An offset that is in range but does not come from this module's own
//! `target_of` is the one thing the checks cannot catch; only the authenticated parent can
//! send one, and it never does.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use ipc_channel::ipc::{IpcSharedMemory, OpaqueIpcReceiver};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::{self, FnRef};
use crate::error::{SubmitError, TaskError};
use crate::executor::{Chunk, run_chunk};

/// The point every offset is measured from. Never called.
#[inline(never)]
fn anchor() {}

fn base() -> usize {
    anchor as fn() as usize
}

/// Decodes the argument at `payload`, calls the function at `func`, encodes the outcome.
type Trampoline = fn(usize, &[u8]) -> Vec<u8>;

/// An executable segment of the main program: its address range in memory, and how many of
/// its first bytes come from the file (the rest, if any, is zero-filled).
struct Segment {
    start: usize,
    end: usize,
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    file_len: usize,
}

/// Executable segments of the main program (not of shared libraries).
fn image_ranges() -> &'static [Segment] {
    static RANGES: OnceLock<Vec<Segment>> = OnceLock::new();
    RANGES.get_or_init(|| {
        let mut ranges: Vec<Segment> = Vec::new();
        unsafe extern "C" fn collect(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: (1) `dl_iterate_phdr` passes a valid `info` for the duration of the
            // call, whose `dlpi_phdr` points to `dlpi_phnum` program headers; (2) `data` is
            // the `&mut Vec` passed below, alive and not otherwise borrowed during the call.
            unsafe {
                let info = &*info;
                let ranges = &mut *(data as *mut Vec<Segment>);
                let headers = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
                for h in headers {
                    if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 {
                        let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                        ranges.push(Segment {
                            start,
                            end: start + h.p_memsz as usize,
                            file_len: h.p_filesz.min(h.p_memsz) as usize,
                        });
                    }
                }
            }
            1 // the first object is the main program: stop there
        }
        // SAFETY: `collect` matches the callback type and only touches `ranges` through
        // `data`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(collect), &mut ranges as *mut _ as *mut libc::c_void);
        }
        ranges
    })
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
            // SAFETY: `dl_iterate_phdr` reported this range as a loaded, executable `PT_LOAD`
            // segment of the main program, and its first `file_len` bytes are mapped from the
            // file (readable: x86-64 and AArch64 Linux map code readable and executable). The
            // main program is never unmapped while the process runs, and code is not written
            // to, so the bytes are valid and unchanging for the lifetime of the slice.
            let code = unsafe { std::slice::from_raw_parts(seg.start as *const u8, seg.file_len) };
            let mut words = code.chunks_exact(8);
            for w in &mut words {
                mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
            }
            for &b in words.remainder() {
                mix(u64::from(b));
            }
        }
        mix((call_init as Trampoline as usize).wrapping_sub(base()) as u64);
        mix((worker_entry as extern "C" fn() as usize).wrapping_sub(base()) as u64);
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
    A: DeserializeOwned,
    R: Serialize,
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
    R: Serialize,
{
    Ok(FnRef {
        func: offset_of(f as usize)?,
        tramp: offset_of(call_chunk::<A, R> as Trampoline as usize)?,
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
pub(crate) fn invoke_process(target: FnRef, args: OpaqueIpcReceiver) -> Result<i32, String> {
    let func = (base() as i64).wrapping_add(target.func) as usize;
    let tramp = (base() as i64).wrapping_add(target.tramp) as usize;
    if !in_image(func) || !in_image(tramp) {
        return Err(format!(
            "the parent named a function outside the executable ({target:?})"
        ));
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
pub(crate) fn invoke(target: FnRef, payload: &[u8]) -> Result<Vec<u8>, String> {
    let func = (base() as i64).wrapping_add(target.func) as usize;
    let tramp = (base() as i64).wrapping_add(target.tramp) as usize;
    if !in_image(func) || !in_image(tramp) {
        return Err(format!(
            "the parent named a function outside the executable ({target:?})"
        ));
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
fn call_one<A: DeserializeOwned, R: Serialize>(func: usize, payload: &[u8]) -> Vec<u8> {
    // SAFETY: `func` is the address, in this process, of the `fn(A) -> R` whose offset
    // `target_of::<A, R>` computed together with this trampoline's (see `invoke`), so the
    // pointer has exactly this type.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let outcome = match protocol::decode::<A>(payload) {
        Ok(arg) => crate::unwind::catch(|| f(arg)),
        Err(e) => Err(TaskError::Codec(
            format!("the argument could not be decoded: {e}").into(),
        )),
    };
    protocol::encode_outcome(&outcome)
}

/// The trampoline for a chunk of calls of `fn(A) -> R`.
fn call_chunk<A: DeserializeOwned, R: Serialize>(func: usize, payload: &[u8]) -> Vec<u8> {
    // SAFETY: as in `call_one`, paired by `chunk_target_of::<A, R>`.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let outcome: Result<Chunk<R>, TaskError> = match protocol::decode::<Vec<A>>(payload) {
        Ok(items) => Ok(run_chunk(f, items)),
        Err(e) => Err(TaskError::Codec(
            format!("the chunk's arguments could not be decoded: {e}").into(),
        )),
    };
    protocol::encode_outcome(&outcome)
}

/// The trampoline for the pool's initializer.
fn call_init(func: usize, _payload: &[u8]) -> Vec<u8> {
    // SAFETY: as in `call_one`, paired by `init_target_of` with a `fn()`.
    let f = unsafe { std::mem::transmute::<usize, fn()>(func) };
    protocol::encode_outcome(&crate::unwind::catch(f))
}

/// A new shared memory block of `len` bytes (zeroed).
pub(crate) fn new_block(len: usize) -> IpcSharedMemory {
    IpcSharedMemory::from_byte(0, len)
}

/// Writes into a shared memory block.
///
/// The caller guarantees that no other process reads `block` meanwhile: it is either new
/// (created by [`new_block`] and not sent yet), or it carried the payload of a task that
/// is over (the worker that read it sent its result, which it does after unmapping the
/// block, or died, or drops it unread because the task was taken back), which is what
/// `Blocks` keeps; or it is a worker's progress word, which the parent reads only after the
/// worker died.
pub(crate) fn fill_block<T>(block: &mut IpcSharedMemory, fill: impl FnOnce(&mut [u8]) -> T) -> T {
    // SAFETY: `deref_mut` is unsafe because another process may map the same memory and
    // read or write it at the same time. By this function's contract nobody reads it now,
    // and workers never write to a block they receive (they map it read-only in effect:
    // the worker only ever takes `&[u8]` of it). The mutable borrow ends with `fill`.
    fill(unsafe { block.deref_mut() })
}

/// Maps in all pages of a block received from the other process in one system call
/// (Linux 5.14+; a no-op elsewhere), instead of one page fault per page while decoding.
pub(crate) fn prefault(block: &[u8]) {
    const MADV_POPULATE_READ: libc::c_int = 22;
    if block.is_empty() {
        return;
    }
    // SAFETY: `madvise` only changes how the kernel backs this range, which is a live
    // mapping (the block is borrowed for the duration of the call) starting at a page
    // boundary (it comes from `mmap`); an unsupported advice just returns an error.
    unsafe {
        libc::madvise(
            block.as_ptr() as *mut libc::c_void,
            block.len(),
            MADV_POPULATE_READ,
        );
    }
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
    (worker_entry as extern "C" fn() as usize)
        .wrapping_sub(base())
        .hash(&mut h);
    h.finish()
}

/// Runs before `main` in every process of a program that uses the process pool. In a worker
/// (its environment names the parent's server) it runs the worker loop and exits, so that
/// the program's own `main` (or test harness) never runs there: no fork bomb, no stray
/// output. Elsewhere it returns at once.
#[used]
#[unsafe(link_section = ".init_array")]
// SAFETY: an `.init_array` entry must be an `extern "C" fn()` that the loader may call once,
// single-threaded, before `main`; `worker_entry` has that type, does not unwind (it catches
// panics), and outside a worker only reads one environment variable.
static WORKER_CONSTRUCTOR: extern "C" fn() = worker_entry;

/// Makes sure the constructor above is linked into any program that builds a process pool.
pub(crate) fn ensure_linked() {
    std::hint::black_box(&WORKER_CONSTRUCTOR);
}

extern "C" fn worker_entry() {
    become_worker_if_asked();
}

/// If this process was started as a worker, runs the worker loop and exits; if it was
/// started as a [`Process`](crate::multiprocessing::Process), runs its target and exits.
pub(crate) fn become_worker_if_asked() {
    let child = std::env::var_os(protocol::ENV_CHILD);
    let Some(server) = std::env::var_os(protocol::ENV_SERVER).or_else(|| child.clone()) else {
        return;
    };
    let token = std::env::var_os(protocol::ENV_TOKEN);
    let parent = std::env::var_os(protocol::ENV_PARENT);
    // SAFETY: removing environment variables is only unsound while another thread reads
    // the environment. This runs either in the `.init_array` constructor, before `main`,
    // when the process has a single thread, or from `init()`, which documents that it must
    // be called first in `main`, before any thread is started. Removing them keeps
    // processes started by tasks from mistaking themselves for workers.
    unsafe {
        std::env::remove_var(protocol::ENV_SERVER);
        std::env::remove_var(protocol::ENV_TOKEN);
        std::env::remove_var(protocol::ENV_PARENT);
        std::env::remove_var(protocol::ENV_CHILD);
    }
    let code = std::panic::catch_unwind(|| {
        if child.is_some() {
            crate::multiprocessing::process::child_main(server, token, parent)
        } else {
            super::worker::run(server, token, parent)
        }
    })
    .unwrap_or(101);
    std::process::exit(code);
}

/// Asks the kernel to kill this process with SIGKILL when its parent thread dies, and
/// makes it ignore SIGINT (the parent decides what Ctrl-C means for its workers).
pub(crate) fn tie_to_parent() {
    // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` and `signal(SIGINT, SIG_IGN)` take plain
    // integers and change only this process's own signal disposition.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// Asks the kernel to kill this process (a `Process` child) with SIGKILL when its parent
/// thread dies: no orphans. Ctrl-C keeps its default effect (the terminal sends it to the
/// whole foreground process group, children included).
pub(crate) fn die_with_parent() {
    // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` takes plain integers and changes only this
    // process's own state.
    // `signal(SIGPIPE, SIG_IGN)` likewise: a write to a closed pipe then fails with an error
    // instead of killing the child (Rust's runtime does the same before `main`, which a
    // child never reaches).
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Keeps large allocations of this (worker) process in its heap, so that a buffer freed by
/// one task is reused by the next instead of being unmapped and faulted in again page by
/// page: large arguments are decoded into fresh buffers every time. A worker's memory
/// therefore does not shrink after a large task; it is reused.
pub(crate) fn keep_large_allocations() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only tunes glibc's allocator; it is called at worker start-up,
    // before the worker allocates for any task.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// The parent's pid as the kernel sees it now.
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: `getppid` has no preconditions.
    unsafe { libc::getppid() as u32 }
}

/// Sends `signal` to process `pid`.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: `kill` takes plain integers; at worst it fails with an error we ignore (the
    // process is gone).
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

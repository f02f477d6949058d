//! The worker process: take the sockets from the parent, then run calls until told to exit
//! or the parent goes away.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;

use super::wire::{
    self, Call, CancelAck, Control, Hello, INLINE_MAX, Log, MAX_FRAME, Revoke, Revoked,
    TAG_CANCELLED, TAG_DONE, TAG_HELLO, TAG_INIT, TAG_REVOKED, TAG_TO_WORKER, TAG_WELCOME,
    ToWorker,
};
use crate::os::{self, Mapping, Memfd, Poller, Recv, Socket};
use crate::remote::scheduler::FLUSH_AFTER;
use crate::remote::{codec, naming};
use crate::sync::{self, Mutex};

/// Why a worker stops before its parent told it to.
#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error("no valid socket in the environment")]
    NoSocket,
    #[error("cannot reach the parent: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed message from the parent: {0}")]
    Malformed(&'static str),
    #[error("malformed message from the parent: {0}")]
    Codec(#[from] codec::CodecError),
    #[error(transparent)]
    Target(#[from] naming::BadTarget),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// The worker's main function; returns the process exit code.
pub(crate) fn run(socket: OsString, expected_parent: Option<u32>) -> i32 {
    os::become_child(true);
    os::keep_large_allocations();
    crate::unwind::install_hook();
    // The parent may have died before the death signal was armed.
    if expected_parent != Some(os::parent_pid()) {
        return 0;
    }
    match serve(socket) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("concurrent_futures worker {}: {e}", std::process::id());
            3
        }
    }
}

/// How long a result may wait in the log while the main thread runs a call that started
/// after it: past this, the helper thread sends it (`FLUSH_AFTER` decides between calls,
/// but a call that runs long would otherwise hold back the results of the quick ones that
/// ran before it in its batch until it ends).
const BACKSTOP: std::time::Duration = std::time::Duration::from_millis(1);

/// What the worker's main thread (which runs the calls) and its helper thread (which gives
/// them back to the parent, cancels one, and sends the results a long call would hold
/// back) share, under one lock: the calls read from the parent and not started yet, and
/// the result log.
struct Local {
    queue: VecDeque<Job>,
    /// Results not sent yet (see `wire::Log`).
    log: Log,
    /// Since when the oldest result in the log waits (`CLOCK_MONOTONIC` nanoseconds).
    unsent_since: u64,
    /// The helper is timing the log: woken when a call starts with results waiting, it
    /// looks every `BACKSTOP` until the main thread is idle (so that a stream of calls wakes
    /// it once, not once per batch of results).
    armed: bool,
    /// The last batch read from the parent.
    read: u64,
    /// Batches up to this one were given back before they were read: drop them.
    skip_through: u64,
    /// Calls of batches not read yet that were cancelled (`Control::Cancel`): they are
    /// not queued when their batch is read.
    dropped: Vec<u64>,
}

struct Job {
    call: Call,
    shared: Option<Mapping>,
}

fn serve(socket: OsString) -> Result<(), WorkerError> {
    if socket.to_str() != Some("stdin") {
        return Err(WorkerError::NoSocket);
    }
    let main = Arc::new(Socket::from_stdin()?);
    // The welcome: the control socket and the result log.
    let mut buf = Vec::with_capacity(MAX_FRAME);
    let mut fds = Vec::new();
    if main.recv(&mut buf, &mut fds, false)? != Recv::Message(1) || buf[0] != TAG_WELCOME {
        return Err(WorkerError::Malformed("no welcome"));
    }
    let (Some(log), Some(ctl), None) = (fds.pop(), fds.pop(), fds.pop()) else {
        return Err(WorkerError::Malformed("a welcome without its descriptors"));
    };
    let ctl = Socket::from_received(ctl)?;
    let log = Memfd::from_received(log, true)?.map(true)?;
    let log = Log::new(log).ok_or(WorkerError::Malformed("a result log too small"))?;
    let hello = codec::encode(&Hello {
        fingerprint: naming::fingerprint(),
        pid: std::process::id(),
    })?;
    main.send(&[&[TAG_HELLO], &hello], &[])?;

    let local = Arc::new(Mutex::new(Local {
        queue: VecDeque::new(),
        log,
        unsent_since: 0,
        armed: false,
        read: 0,
        skip_through: 0,
        dropped: Vec::new(),
    }));
    // The helper waits on the control socket, and on this to be told to time the log.
    let helper = Arc::new(Poller::new()?);
    helper.add(ctl.as_fd(), CTL_KEY)?;
    // The call running now (0: none); set under the queue lock as the call is taken.
    let running = Arc::new(AtomicU64::new(0));
    {
        let (local, main, running, helper) =
            (local.clone(), main.clone(), running.clone(), helper.clone());
        std::thread::Builder::new()
            .name("cf-worker-revoke".into())
            .spawn(move || serve_revokes(&ctl, &main, &local, &running, &helper))
            .map_err(WorkerError::Thread)?;
    }
    // The lock taken to log a call's result, kept to take the next call (one lock per call).
    let mut held = None;
    loop {
        // The lock also orders this against a revoke being answered: once the queue is seen
        // empty, the answer (if any) is on its way, ahead of anything sent after.
        // The call taken is published under the lock, for `cancel`, and so is its start
        // (the parent reads this only after this process is dead).
        let (job, start, arm) = {
            let mut l = held.take().unwrap_or_else(|| sync::lock(&local));
            let job = l.queue.pop_front();
            running.store(job.as_ref().map_or(0, |j| j.call.id), SeqCst);
            let start = job.as_ref().map_or(0, |j| l.log.started(j.call.id));
            // A call starts with results waiting: the helper sends them if it runs long.
            let arm = job.is_some() && !l.log.is_empty() && !l.armed;
            l.armed |= arm;
            (job, start, arm)
        };
        if arm {
            helper.wake();
        }
        let Some(job) = job else {
            // About to wait for the parent: send what is ready first.
            flush(&main, &mut sync::lock(&local).log)?;
            match receive(&main, &mut buf, &mut fds, &local)? {
                Some(ToWorker::Exit) | None => return Ok(()),
                Some(ToWorker::Init(target, arg, bulk)) => {
                    let bytes = match bulk {
                        0 => naming::invoke(target, &arg)?,
                        len => {
                            let fd = fds
                                .pop()
                                .ok_or(WorkerError::Malformed("an initializer without its file"))?;
                            let map = Memfd::from_received(fd, true)?.map(false)?;
                            let arg = usize::try_from(len)
                                .ok()
                                .and_then(|len| map.bytes().get(..len))
                                .ok_or(WorkerError::Malformed("an initializer out of bounds"))?;
                            naming::invoke(target, arg)?
                        }
                    };
                    main.send(&[&[TAG_INIT], &bytes], &[])?;
                }
                Some(ToWorker::Tables(tables)) => {
                    if fds.len() != tables.len() {
                        return Err(WorkerError::Malformed("tables without their files"));
                    }
                    // A table that cannot be mapped here fails the tasks that read it, with
                    // the reason; the worker goes on.
                    for ((id, len), fd) in tables.into_iter().zip(fds.drain(..)) {
                        crate::shared::install(id, len, Memfd::from_received(fd, true));
                    }
                }
                Some(ToWorker::Release(ids)) => crate::shared::uninstall(&ids),
                Some(ToWorker::Calls(..)) => {}
            }
            continue;
        };
        let outcome = match &job.shared {
            Some(map) => naming::invoke(job.call.target, &map.bytes()[..job.call.bulk as usize])?,
            None => naming::invoke(job.call.target, &job.call.payload)?,
        };
        running.store(0, SeqCst);
        // One clock read: the call's end (sent with its result, for timelines) and the
        // time that decides the flush.
        let end = os::monotonic_nanos();
        let ran = [start, end];
        let id = job.call.id;
        // Unmapped before the result goes: the parent reuses the file once it has it.
        drop(job);
        let mut guard = sync::lock(&local);
        let l = &mut *guard;
        if l.log.is_empty() {
            l.unsent_since = end;
        }
        if !l.log.append(id, &outcome, ran) {
            flush(&main, &mut l.log)?;
            l.unsent_since = end;
            if !l.log.append(id, &outcome, ran) {
                send_shared(&main, id, &outcome, ran)?;
            }
        }
        if end.saturating_sub(l.unsent_since) >= FLUSH_AFTER.as_nanos() as u64 {
            flush(&main, &mut l.log)?;
        }
        held = Some(guard);
    }
}

/// The helper's key for the control socket in its poller.
const CTL_KEY: u64 = 0;

/// Reads one message from the parent; calls go to the local queue. `None`: the parent
/// closed the socket (it shut down or died).
fn receive(
    main: &Socket,
    buf: &mut Vec<u8>,
    fds: &mut Vec<OwnedFd>,
    local: &Mutex<Local>,
) -> Result<Option<ToWorker>, WorkerError> {
    fds.clear();
    match main.recv(buf, fds, false)? {
        Recv::Closed => return Ok(None),
        Recv::Empty => return Err(WorkerError::Malformed("an empty message")),
        // The payloads of the calls could not be received (this worker has no descriptor
        // left: a task opened too many). Ending is what it can do; the parent gives the
        // calls it never started to another worker.
        Recv::LostFds(_, errno) => return Err(std::io::Error::from_raw_os_error(errno).into()),
        Recv::Message(_) => {}
    }
    if buf.first() != Some(&TAG_TO_WORKER) {
        return Err(WorkerError::Malformed("an unknown message"));
    }
    let msg = codec::decode::<ToWorker>(&buf[1..])?;
    let ToWorker::Calls(seq, batch) = msg else {
        return Ok(Some(msg));
    };
    // Large payloads come attached, in order: map them now, so that the files stay in step
    // with the calls even if the batch is given back.
    let mut files = fds.drain(..);
    let mut jobs = Vec::with_capacity(batch.len());
    for call in batch {
        let shared = if call.bulk > 0 {
            let fd = files
                .next()
                .ok_or(WorkerError::Malformed("a payload without its file"))?;
            let map = Memfd::from_received(fd, true)?.map(false)?;
            if usize::try_from(call.bulk).map_or(true, |len| len > map.len()) {
                return Err(WorkerError::Malformed("payload out of bounds"));
            }
            map.prefault();
            Some(map)
        } else {
            None
        };
        jobs.push(Job { call, shared });
    }
    let mut l = sync::lock(local);
    l.read = seq;
    let keep = seq > l.skip_through;
    if l.dropped.is_empty() {
        if keep {
            l.queue.extend(jobs);
        }
    } else {
        // Calls cancelled before their batch was read are answered already: never queued.
        let Local { queue, dropped, .. } = &mut *l;
        for job in jobs {
            if let Some(i) = dropped.iter().position(|&id| id == job.call.id) {
                dropped.swap_remove(i);
            } else if keep {
                queue.push_back(job);
            }
        }
    }
    Ok(Some(ToWorker::Calls(seq, Vec::new())))
}

/// Sends the results in the log, straight from it, and empties it.
fn flush(main: &Socket, log: &mut Log) -> Result<(), WorkerError> {
    if !log.is_empty() {
        main.send(&[&[TAG_DONE], log.pending()], &[])?;
        log.clear();
    }
    Ok(())
}

/// Sends one large result in a shared memory file of its own.
fn send_shared(main: &Socket, id: u64, outcome: &[u8], ran: [u64; 2]) -> Result<(), WorkerError> {
    debug_assert!(outcome.len() > INLINE_MAX || outcome.len() + wire::RECORD_HEADER > MAX_FRAME);
    let Ok(len) = u32::try_from(outcome.len()) else {
        // Too large to announce: report it as the task's failure instead.
        let failed = codec::encode_outcome::<()>(&Err(crate::TaskError::Codec(
            "the task's result is larger than 4 GiB".into(),
        )));
        let header = wire::record_header(id, false, failed.len() as u32, ran);
        main.send(&[&[TAG_DONE], &header, &failed], &[])?;
        return Ok(());
    };
    let file = Memfd::new(outcome.len())?;
    file.write_at(0, outcome)?;
    let header = wire::record_header(id, true, len, ran);
    main.send(&[&[TAG_DONE], &header], &[file.as_fd()])?;
    Ok(())
}

/// The helper thread: gives back the calls not started yet, when the parent asks, cancels
/// one (`Control::Cancel`), and sends the results that wait in the log while the main
/// thread runs a long call (`BACKSTOP` after the oldest, once woken to time them). It
/// returns when the parent closes the control socket.
fn serve_revokes(
    ctl: &Socket,
    main: &Socket,
    local: &Mutex<Local>,
    running: &AtomicU64,
    helper: &Poller,
) {
    let mut buf = Vec::with_capacity(256);
    let mut fds = Vec::new();
    let mut keys = Vec::new();
    let backstop = BACKSTOP.as_nanos() as u64;
    loop {
        // Sleeps until told something, or, while armed, until the oldest waiting result is
        // due (with none waiting, for `BACKSTOP`).
        let timeout = {
            let l = sync::lock(local);
            l.armed.then(|| match l.log.is_empty() {
                true => BACKSTOP,
                false => std::time::Duration::from_nanos(
                    (l.unsent_since + backstop).saturating_sub(os::monotonic_nanos()),
                ),
            })
        };
        if helper.wait(&mut keys, timeout).is_err() {
            return;
        }
        loop {
            match ctl.recv(&mut buf, &mut fds, true) {
                Ok(Recv::Message(_)) => {}
                Ok(Recv::Empty) => break,
                _ => return,
            }
            fds.clear();
            let served = match codec::decode::<Control>(&buf) {
                Ok(Control::Revoke(Revoke { through })) => give_back(local, main, through),
                Ok(Control::Cancel { id, batch }) => cancel(local, running, main, id, batch),
                Err(e) => Err(e.into()),
            };
            if served.is_err() {
                return;
            }
        }
        let mut l = sync::lock(local);
        let l = &mut *l;
        if l.armed {
            let now = os::monotonic_nanos();
            if !l.log.is_empty()
                && now.saturating_sub(l.unsent_since) >= backstop
                && flush(main, &mut l.log).is_err()
            {
                return;
            }
            // Timed while the main thread runs calls; once it is idle (nothing waits, no
            // call runs or is queued), it arms this again when a call starts with results
            // waiting.
            let idle = running.load(SeqCst) == 0 && l.queue.is_empty();
            l.armed = !(idle && l.log.is_empty());
        }
    }
}

/// Gives back the calls not started yet and the batches up to `through` not read yet.
/// Answered under the lock: the main thread cannot finish (and exit) in between.
fn give_back(local: &Mutex<Local>, main: &Socket, through: u64) -> Result<(), WorkerError> {
    let mut l = sync::lock(local);
    let ids: Vec<u64> = l.queue.drain(..).map(|job| job.call.id).collect();
    // Batches sent but not read yet come back too; they are dropped when they arrive.
    l.skip_through = l.skip_through.max(through);
    let unread_from = l.read + 1;
    let answer = codec::encode(&Revoked { ids, unread_from })?;
    main.send(&[&[TAG_REVOKED], &answer], &[])?;
    Ok(())
}

/// Cancels call `id` of batch `batch`, under the queue lock (so the main thread neither takes
/// a call nor starts one meanwhile), and answers the parent at once (`CancelAck`): a call
/// not started (queued, or in a batch not read yet) is dropped; the call running now is
/// stopped by killing this process with SIGKILL, the lock held until the signal lands, so
/// that no other call starts here (its death is the answer: the parent gives the calls
/// queued behind it to another worker, as after any death); a call already finished is
/// left (its result is on its way, or in the log).
fn cancel(
    local: &Mutex<Local>,
    running: &AtomicU64,
    main: &Socket,
    id: u64,
    batch: u64,
) -> Result<(), WorkerError> {
    let mut l = sync::lock(local);
    let dropped = if let Some(i) = l.queue.iter().position(|job| job.call.id == id) {
        drop(l.queue.remove(i));
        true
    } else if batch > l.read {
        l.dropped.push(id);
        true
    } else if running.load(SeqCst) == id {
        os::signal(std::process::id(), libc::SIGKILL);
        // The signal ends every thread of the process; until then this one keeps the lock.
        loop {
            std::thread::park();
        }
    } else {
        false
    };
    let ack = codec::encode(&CancelAck { id, dropped })?;
    main.send(&[&[TAG_CANCELLED], &ack], &[])?;
    Ok(())
}

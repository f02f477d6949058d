//! What a worker's messages and its death do: results complete the tasks it holds (and
//! nothing else: everything it sends is checked), answers to revokes put work back in the
//! queue, and a death completes what its result log holds, fails the task it died in and
//! queues again what it never started. The bookkeeping is the dispatch core's
//! (`remote::scheduler`); what is this pool's own is the checking of every record, the
//! result log, and `cancel_running`'s answers.

use std::os::fd::{AsFd, OwnedFd};

use super::start::reap;
use super::{Finished, Manager, Phase};
use crate::error::{Shortage, TaskError};
use crate::process::wire::{
    self, CancelAck, PostMortem, Revoked, TAG_CANCELLED, TAG_DONE, TAG_INIT, TAG_REVOKED,
};
use crate::remote::codec;
use crate::remote::scheduler::{Work, bury};
use crate::stats::RemoteCounters;
use crate::sync;
use crate::trace::{self, Pool};

impl Manager {
    /// Handles one message of worker `id`. An error means the worker broke the protocol.
    pub(super) fn on_message(
        &self,
        id: u64,
        msg: &[u8],
        fds: &mut Vec<OwnedFd>,
        lost: Option<Shortage>,
        finished: &mut Finished,
    ) -> Result<(), &'static str> {
        let (&tag, body) = msg.split_first().ok_or("an empty message")?;
        if lost.is_some() && tag != TAG_DONE {
            return Err("descriptors with a message that carries none");
        }
        match tag {
            TAG_DONE => self.on_done(id, body, fds, lost, finished),
            TAG_INIT => {
                if !fds.is_empty() {
                    return Err("descriptors with its initializer's outcome");
                }
                match crate::remote::codec::decode_outcome::<()>(body) {
                    Ok(()) => {
                        let mut st = sync::lock(&self.state);
                        if let Some(w) = st.workers.get_mut(id) {
                            if w.ready {
                                return Err("a second initializer outcome");
                            }
                            w.ready = true;
                        }
                        if st.queue.phase == Phase::Starting
                            && st.workers.iter().all(|(_, w)| w.ready)
                        {
                            st.queue.phase = Phase::Running;
                            self.changed.notify_all();
                        }
                        st.dispatch();
                    }
                    Err(e) => finished
                        .extend(self.break_pool(format!("a worker's initializer failed: {e}"))),
                }
                Ok(())
            }
            TAG_CANCELLED => {
                let CancelAck { id: task, dropped } =
                    codec::decode(body).map_err(|_| "a malformed answer to a cancellation")?;
                let mut st = sync::lock(&self.state);
                let (_, workers, mut wire) = st.parts();
                if !workers.get(id).is_some_and(|w| w.window.holds(task)) {
                    // Its result came first (and completed it as cancelled), or the worker
                    // is gone.
                    return Ok(());
                }
                match workers.inflight.get(&task) {
                    Some(w) if !w.cancelled => {
                        return Err("an answer to a cancellation never asked");
                    }
                    Some(_) => {
                        if let Some(w) = workers.inflight.remove(&task) {
                            finished.push((w.completion, Err(TaskError::Cancelled)));
                        }
                    }
                    None => {}
                }
                if dropped {
                    // It never ran there: it counts again in the worker's budget.
                    if let Some(w) = workers.get_mut(id) {
                        w.refund(1);
                    }
                    let _ = workers.finished(id, task, &mut wire);
                    st.dispatch();
                }
                // (Else it had finished: the worker holds it until its result comes.)
                Ok(())
            }
            TAG_REVOKED => {
                let Revoked { ids, unread_from } =
                    codec::decode(body).map_err(|_| "a malformed answer to a revoke")?;
                let mut st = sync::lock(&self.state);
                let (queue, workers, wire) = st.parts();
                let Some(pid) = workers.get(id).map(|w| w.link.pid) else {
                    return Ok(());
                };
                let back = workers
                    .given_back(id, &ids, unread_from, &wire)
                    .map_err(|_| "an answer to a revoke never asked")?;
                trace::stolen(Pool::Process, None, pid.into(), back.len() as u64);
                // Back to the front of the queue, in their order.
                for w in queue.requeue(back) {
                    finished.push((w.completion, Err(TaskError::Cancelled)));
                }
                st.dispatch();
                Ok(())
            }
            _ => Err("an unknown message"),
        }
    }

    /// Results: each must be of a task this worker holds (a worker cannot complete another
    /// worker's task, or one twice); a result in shared memory is read with its length
    /// checked. A result that cannot be read fails its own task only, as does one whose file
    /// this process could not receive (`lost`: it was short of descriptors, and the kernel
    /// dropped the files from the first it could not take on).
    pub(super) fn on_done(
        &self,
        id: u64,
        body: &[u8],
        fds: &mut Vec<OwnedFd>,
        lost: Option<Shortage>,
        finished: &mut Finished,
    ) -> Result<(), &'static str> {
        let mut st = sync::lock(&self.state);
        // Once `terminate` was called, no task of the pool completes with a value: a
        // worker that finishes its task anyway (it handles or ignores SIGTERM) is too late.
        let terminated = st.queue.phase == Phase::Terminated;
        let (_, workers, mut wire) = st.parts();
        let Some(w) = workers.get(id) else {
            return Ok(());
        };
        let (window, row) = (&w.window, w.link.row);
        // The whole message is checked before any of it is used: a message with one bad
        // record completes nothing.
        let mut shared = 0;
        let mut ids = Vec::new();
        for record in wire::records(body) {
            let record = record.map_err(|_| "a malformed result record")?;
            // (At most one result per task held, so these checks stay small.)
            if ids.len() >= window.len() || !window.holds(record.id) || ids.contains(&record.id) {
                return Err("a result for a task it does not hold");
            }
            ids.push(record.id);
            shared += usize::from(record.shared);
        }
        // With files lost, fewer arrived than announced (the kernel keeps those before the
        // first it could not install).
        let matching = match lost {
            None => shared == fds.len(),
            Some(_) => shared > fds.len(),
        };
        if !matching {
            return Err("results whose files do not match the descriptors sent");
        }
        let mut files = fds.drain(..);
        for record in wire::records(body).map_while(Result::ok) {
            let bytes = if terminated {
                Err(TaskError::Broken("the pool was terminated".into()))
            } else if record.shared {
                match (files.next(), lost) {
                    (Some(fd), _) => wire::read_shared(fd, record.len)
                        .map_err(|e| TaskError::Codec(format!("the task's result: {e}").into())),
                    (None, Some(shortage)) => Err(TaskError::Shortage(shortage)),
                    (None, None) => unreachable!("[internal] counted above"),
                }
            } else {
                Ok(record.payload.to_vec())
            };
            // (Held: checked above.)
            if let Ok(Some(w)) = workers.finished(id, record.id, &mut wire) {
                // Cancelled meanwhile: the value is discarded.
                let bytes = if w.cancelled {
                    Err(TaskError::Cancelled)
                } else {
                    bytes
                };
                self.task_ended(row, w.kind.name(), record.ran, bytes.as_deref());
                finished.push((w.completion, bytes));
                self.payload_files.put(w.payload);
            }
        }
        st.dispatch();
        Ok(())
    }

    /// A worker exited or died (after its last message was read). The results in its log
    /// complete their tasks; the task it was running fails; those it had not started go
    /// back to the front of the queue, so no task runs twice and none is lost. While the
    /// pool is running, the manager thread starts a replacement.
    pub(super) fn on_closed(&self, id: u64, finished: &mut Finished) {
        let gone = sync::lock(&self.state).workers.remove(id);
        let Some((worker, held)) = gone else { return };
        let retiring = worker.retiring;
        let mut link = worker.link;
        self.poller.remove(link.main.as_fd());
        self.poller.remove(link.pidfd.as_fd());
        let status = reap(&mut link.child);
        // When the death is seen (the end of the call it died in, for the statistics and the
        // timeline): read before its row is given to a replacement, so the row's next bar
        // starts after it.
        let seen_dead = crate::os::monotonic_nanos();
        let terminated = sync::lock(&self.state).queue.phase == Phase::Terminated;
        // Not an exit it was asked for: it died (or was killed for a time limit).
        let died = !terminated && (!retiring || status != crate::ExitStatus::Code(0));
        if died {
            RemoteCounters::add(&self.counters.deaths, 1);
            if self.recording() {
                self.record_worker_died(link.row, link.pid, seen_dead);
            }
        }
        trace::worker_ended(Pool::Process, link.pid.into(), died, &status);
        // The worker is dead: its log no longer changes (a process it started could still
        // write to it, which costs only this worker's own tasks: everything read is checked).
        let log = PostMortem::read(&link.log);
        let failed = {
            let mut st = sync::lock(&self.state);
            let terminated = st.queue.phase == Phase::Terminated;
            // Calls run in the order sent: those up to the last it started have run, those
            // after it never started. (If it started none of them, none has run.)
            let started = (held.iter())
                .position(|&task| task == log.started)
                .map_or(0, |p| p + 1);
            // The log holds the results of the calls it finished since it last sent, in
            // the order it ran them: a prefix of what it holds, ending at (or just before)
            // the call it started last. A record is accepted only there, so a worker that
            // wrote records for calls it never started (a task scribbling over the log)
            // cannot complete them: they run elsewhere.
            // (Records of calls it no longer holds were sent before it died, and delivered.)
            let mut records = log
                .results
                .into_iter()
                .filter(|(id, ..)| held.contains(id))
                .peekable();
            // Still open, in the order sent; how many of them it started.
            let mut open: Vec<Work<_>> = Vec::new();
            let mut open_started = 0;
            // Killed for `cancel_running` (or dead while asked): they end as cancelled.
            let mut cancelled: Vec<Work<_>> = Vec::new();
            for (i, task) in held.iter().copied().enumerate() {
                let record = records
                    .next_if(|(id, ..)| i < started && *id == task)
                    .map(|(_, bytes, ran)| (bytes, ran));
                let Some(w) = st.workers.inflight.remove(&task) else {
                    continue;
                };
                if w.cancelled {
                    cancelled.push(w);
                } else if let Some((bytes, ran)) = record.filter(|_| !terminated) {
                    // Finished, its result committed to the log: delivered.
                    self.task_ended(link.row, w.kind.name(), ran, Ok(&bytes));
                    finished.push((w.completion, Ok(bytes)));
                    self.payload_files.put(w.payload);
                } else {
                    open_started += usize::from(i < started);
                    open.push(w);
                }
            }
            let died = TaskError::WorkerDied {
                pid: link.pid,
                status,
            };
            // What the death costs (`remote::scheduler::bury`): the tasks it started fail,
            // those it never started go back to the queue (unless the pool is terminated:
            // then they fail too).
            let requeue = (!terminated).then_some(&mut st.queue);
            let lost = bury(open, open_started, requeue);
            let failed: Vec<(Work<_>, TaskError)> = if terminated {
                let error = TaskError::Broken("the pool was terminated".into());
                lost.into_iter().map(|w| (w, error.clone())).collect()
            } else {
                let running = lost.len().checked_sub(1);
                (lost.into_iter().enumerate())
                    .map(|(i, w)| {
                        let error = match link.timed_out {
                            Some((task, limit)) if Some(i) == running && task == w.id => {
                                TaskError::TimeLimit(limit)
                            }
                            _ => died.clone(),
                        };
                        (w, error)
                    })
                    .collect()
            };
            // Replace it while work may still come or is still queued (this includes a
            // worker retired by `max_tasks_per_child`).
            if matches!(st.queue.phase, Phase::Running | Phase::Starting)
                || (st.queue.phase == Phase::ShuttingDown && !st.queue.pending.is_empty())
            {
                st.respawn += 1;
                self.changed.notify_all();
            }
            st.free_rows.push(link.row);
            st.dispatch();
            failed
                .into_iter()
                .chain(cancelled.into_iter().map(|w| (w, TaskError::Cancelled)))
                .collect::<Vec<_>>()
        };
        // The call it died in (of a crash, a time limit, `cancel_running`) ran from its start
        // (the log says when) until the death was seen.
        if let Some((w, error)) = failed.iter().find(|(w, _)| w.id == log.started) {
            let ran = Some([log.started_at, seen_dead]);
            self.task_ended(link.row, w.kind.name(), ran, Err(error));
        }
        for (w, error) in failed {
            finished.push((w.completion, Err(error)));
        }
    }
}

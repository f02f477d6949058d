//! What a worker's messages and its death do: results complete the tasks it holds (and
//! nothing else: everything it sends is checked), answers to revokes put work back in the
//! queue, and a death completes what its result log holds, fails the task it died in and
//! queues again what it never started.

use std::os::fd::{AsFd, OwnedFd};

use super::link::dispatch;
use super::start::reap;
use super::{Finished, Manager, Phase, State, Work};
use crate::error::{Shortage, TaskError};
use crate::process::wire::{
    self, CancelAck, PostMortem, Revoked, TAG_CANCELLED, TAG_DONE, TAG_INIT, TAG_REVOKED,
};
use crate::remote::codec;
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
                        if let Some(link) = st.workers.get_mut(&id) {
                            if link.ready {
                                return Err("a second initializer outcome");
                            }
                            link.ready = true;
                        }
                        if st.phase == Phase::Starting && st.workers.values().all(|l| l.ready) {
                            st.phase = Phase::Running;
                            self.changed.notify_all();
                        }
                        dispatch(&mut st);
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
                let State {
                    workers, inflight, ..
                } = &mut *st;
                let Some(link) = workers.get_mut(&id) else {
                    return Ok(());
                };
                if !link.window.holds(task) {
                    // Its result came first (and completed it as cancelled).
                    return Ok(());
                }
                match inflight.get(&task) {
                    Some(w) if !w.cancelled => {
                        return Err("an answer to a cancellation never asked");
                    }
                    Some(_) => {
                        if let Some(w) = inflight.remove(&task) {
                            finished.push((w.completion, Err(TaskError::Cancelled)));
                        }
                    }
                    None => {}
                }
                if dropped {
                    // It never ran there: it counts again in the worker's budget.
                    link.given_back(1);
                    link.finished(task);
                    dispatch(&mut st);
                }
                // (Else it had finished: the worker holds it until its result comes.)
                Ok(())
            }
            TAG_REVOKED => {
                let Revoked { ids, unread_from } =
                    codec::decode(body).map_err(|_| "a malformed answer to a revoke")?;
                let mut st = sync::lock(&self.state);
                let State {
                    workers,
                    inflight,
                    pending,
                    ..
                } = &mut *st;
                let Some(link) = workers.get_mut(&id) else {
                    return Ok(());
                };
                if !link.window.revoking {
                    return Err("an answer to a revoke never asked");
                }
                let mut back = link.window.given_back(&ids, unread_from);
                trace::stolen(Pool::Process, None, link.pid.into(), back.len() as u64);
                link.given_back(back.len());
                // Back to the front of the queue, in their order.
                back.reverse();
                for task in back {
                    if let Some(mut w) = inflight.remove(&task) {
                        if w.cancelled {
                            finished.push((w.completion, Err(TaskError::Cancelled)));
                            continue;
                        }
                        w.claimed = true;
                        pending.push_front(w);
                    }
                }
                dispatch(&mut st);
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
        let terminated = st.phase == Phase::Terminated;
        let State {
            workers, inflight, ..
        } = &mut *st;
        let Some(link) = workers.get_mut(&id) else {
            return Ok(());
        };
        // The whole message is checked before any of it is used: a message with one bad
        // record completes nothing.
        let mut shared = 0;
        let mut ids = Vec::new();
        for record in wire::records(body) {
            let record = record.map_err(|_| "a malformed result record")?;
            // (At most one result per task held, so these checks stay small.)
            if ids.len() >= link.window.len()
                || !link.window.holds(record.id)
                || ids.contains(&record.id)
            {
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
            link.finished(record.id);
            if let Some(w) = inflight.remove(&record.id) {
                // Cancelled meanwhile: the value is discarded.
                let bytes = if w.cancelled {
                    Err(TaskError::Cancelled)
                } else {
                    bytes
                };
                if self.recording() {
                    self.record_task_ended(link.row, w.name, record.ran, bytes.as_deref());
                }
                finished.push((w.completion, bytes));
                self.payload_files.put(w.payload);
            }
        }
        dispatch(&mut st);
        Ok(())
    }

    /// A worker exited or died (after its last message was read). The results in its log
    /// complete their tasks; the task it was running fails; those it had not started go
    /// back to the front of the queue, so no task runs twice and none is lost. While the
    /// pool is running, the manager thread starts a replacement.
    pub(super) fn on_closed(&self, id: u64, finished: &mut Finished) {
        let link = sync::lock(&self.state).workers.remove(&id);
        let Some(mut link) = link else { return };
        self.poller.remove(link.main.as_fd());
        self.poller.remove(link.pidfd.as_fd());
        let status = reap(&mut link.child);
        // When the death is seen, for the timeline: read before its row is given to a
        // replacement, so the row's next bar starts after it.
        let seen_dead = self.recording().then(crate::os::monotonic_nanos);
        let terminated = sync::lock(&self.state).phase == Phase::Terminated;
        // Not an exit it was asked for: it died (or was killed for a time limit).
        let died = !terminated && (!link.retiring || status != crate::ExitStatus::Code(0));
        if died {
            RemoteCounters::add(&self.counters.deaths, 1);
            self.record_worker_died(link.row, link.pid, seen_dead);
        }
        trace::worker_ended(Pool::Process, link.pid.into(), died, &status);
        // The worker is dead: its log no longer changes (a process it started could still
        // write to it, which costs only this worker's own tasks: everything read is checked).
        let log = PostMortem::read(&link.log);
        let failed = {
            let mut st = sync::lock(&self.state);
            let terminated = st.phase == Phase::Terminated;
            // Calls run in the order sent: those up to the last it started have run, those
            // after it never started. (If it started none of them, none has run.)
            let started = link
                .window
                .tasks()
                .position(|task| task == log.started)
                .map_or(0, |p| p + 1);
            // The log holds the results of the calls it finished since it last sent, in
            // the order it ran them: a prefix of what it holds, ending at (or just before)
            // the call it started last. A record is accepted only there, so a worker that
            // wrote records for calls it never started (a task scribbling over the log)
            // cannot complete them: they run elsewhere.
            // (Records of calls it no longer holds were sent before it died, and delivered.)
            let tasks = link.window.clear();
            let mut records = log
                .results
                .into_iter()
                .filter(|(id, ..)| tasks.contains(id))
                .peekable();
            let mut held: Vec<Work> = Vec::new();
            let mut unstarted: Vec<Work> = Vec::new();
            // Killed for `cancel_running` (or dead while asked): they end as cancelled.
            let mut cancelled: Vec<Work> = Vec::new();
            for (i, task) in tasks.iter().copied().enumerate() {
                let record = records
                    .next_if(|(id, ..)| i < started && *id == task)
                    .map(|(_, bytes, ran)| (bytes, ran));
                let Some(w) = st.inflight.remove(&task) else {
                    continue;
                };
                if w.cancelled {
                    cancelled.push(w);
                } else if let Some((bytes, ran)) = record.filter(|_| !terminated) {
                    // Finished, its result committed to the log: delivered.
                    if self.recording() {
                        self.record_task_ended(link.row, w.name, ran, Ok(&bytes));
                    }
                    finished.push((w.completion, Ok(bytes)));
                    self.payload_files.put(w.payload);
                } else if i < started {
                    held.push(w);
                } else {
                    unstarted.push(w);
                }
            }
            let died = TaskError::WorkerDied {
                pid: link.pid,
                status,
            };
            let failed: Vec<(Work, TaskError)> = if terminated {
                let error = TaskError::Broken("the pool was terminated".into());
                held.into_iter()
                    .chain(unstarted)
                    .map(|w| (w, error.clone()))
                    .collect()
            } else {
                for mut w in unstarted.into_iter().rev() {
                    w.claimed = true;
                    st.pending.push_front(w);
                }
                let running = held.pop();
                let mut failed: Vec<(Work, TaskError)> =
                    held.into_iter().map(|w| (w, died.clone())).collect();
                if let Some(w) = running {
                    let error = match link.timed_out {
                        Some((task, limit)) if task == w.id => TaskError::TimeLimit(limit),
                        _ => died.clone(),
                    };
                    failed.push((w, error));
                }
                failed
            };
            // Replace it while work may still come or is still queued (this includes a
            // worker retired by `max_tasks_per_child`).
            if matches!(st.phase, Phase::Running | Phase::Starting)
                || (st.phase == Phase::ShuttingDown && !st.pending.is_empty())
            {
                st.respawn += 1;
                self.changed.notify_all();
            }
            st.free_rows.push(link.row);
            dispatch(&mut st);
            failed
                .into_iter()
                .chain(cancelled.into_iter().map(|w| (w, TaskError::Cancelled)))
                .collect::<Vec<_>>()
        };
        if let Some(dead) = seen_dead {
            // The call it died in ran from its start (the log says when) until the death was
            // seen.
            if let Some((w, error)) = failed.iter().find(|(w, _)| w.id == log.started) {
                let ran = Some([log.started_at, dead]);
                self.record_task_ended(link.row, w.name, ran, Err(error));
            }
        }
        for (w, error) in failed {
            finished.push((w.completion, Err(error)));
        }
    }
}

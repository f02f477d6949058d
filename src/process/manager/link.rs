//! One worker as the parent sees it, and the dispatch of pending work to the workers'
//! windows, with work stealing (the policies are `remote::window`'s).

use std::os::fd::{AsFd, BorrowedFd};

use super::{Link, Phase, State, Work};
use crate::os;
use crate::process::wire::{CallRef, Control, MAX_FRAME, Revoke, TAG_TO_WORKER, ToWorkerRef};
use crate::remote::codec;
use crate::remote::window;
use crate::stats::RemoteCounters;

impl Link {
    /// Its task `task` is done. A worker whose budget of tasks is spent is retired once it
    /// holds nothing more.
    pub(super) fn finished(&mut self, task: u64) {
        self.window.release(task);
        if self.budget == Some(0) && self.window.is_empty() {
            self.retire();
        }
    }

    /// May be sent work.
    pub(super) fn open(&self) -> bool {
        self.serving() && self.budget != Some(0)
    }

    /// Initialized and not told to exit: it runs what it holds, and may be asked to give
    /// back what it has not started.
    fn serving(&self) -> bool {
        self.ready && !self.retiring
    }

    /// Tasks `n` were given back unstarted: they never ran there, so they count again.
    pub(super) fn given_back(&mut self, n: usize) {
        if let Some(b) = &mut self.budget {
            *b += n;
        }
    }

    /// Ready for work and holding none.
    pub(super) fn idle(&self) -> bool {
        self.open() && self.window.has_room() && self.window.is_empty()
    }

    /// Asks the worker to exit once it has finished what it was sent.
    pub(super) fn retire(&mut self) {
        if !self.retiring {
            self.retiring = true;
            let _ = self.send(&ToWorkerRef::Exit, &[]);
        }
    }

    /// Sends a message, with the shared payload files of its calls attached; the bytes
    /// of the message.
    pub(super) fn send(
        &self,
        msg: &ToWorkerRef<'_>,
        files: &[BorrowedFd<'_>],
    ) -> std::io::Result<usize> {
        let bytes = codec::encode(msg).map_err(std::io::Error::other)?;
        self.main.send(&[&[TAG_TO_WORKER], &bytes], files)?;
        Ok(1 + bytes.len())
    }
}

/// Sends pending work to workers with room, in batches when much is pending (the policies
/// are `remote::window`'s).
pub(super) fn dispatch(st: &mut State) {
    let n = st.workers.len();
    while !st.pending.is_empty() {
        let open = st.workers.iter().map(|(&k, l)| (k, &l.window, l.open()));
        let Some(wid) = window::pick(open) else {
            return;
        };
        let Some(link) = st.workers.get(&wid) else {
            return;
        };
        // `max_tasks_per_child`: a worker is never sent more than it may still run.
        let size = window::batch_size(st.pending.len(), n).min(link.budget.unwrap_or(usize::MAX));
        let mut batch: Vec<Work> = Vec::with_capacity(size);
        // A batch is one message: its inline payloads fit in `MAX_FRAME` with room for the
        // rest, and its shared payloads in one message's descriptors.
        let (mut bytes, mut files) = (0, 0);
        while batch.len() < size {
            let Some(work) = st.pending.front() else {
                break;
            };
            let (b, f) = (
                work.payload.inline().len() + 64,
                usize::from(work.payload.file().is_some()),
            );
            if !batch.is_empty() && (bytes + b > MAX_FRAME - 1024 || files + f > os::MAX_FDS) {
                break;
            }
            let Some(work) = st.pending.pop_front() else {
                break;
            };
            if work.claimed || work.completion.claim() {
                bytes += b;
                files += f;
                batch.push(work);
            } else {
                // Cancelled while pending, never sent.
                RemoteCounters::add(&st.counters.cancelled, 1);
                work.completion.trace().cancelled();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let Some(link) = st.workers.get_mut(&wid) else {
            return;
        };
        let seq = link.window.seq() + 1;
        let msg = ToWorkerRef::Calls(
            seq,
            batch
                .iter()
                .map(|w| CallRef {
                    id: w.id,
                    target: w.target,
                    payload: w.payload.inline(),
                    bulk: w.payload.bulk_len(),
                })
                .collect(),
        );
        let files: Vec<BorrowedFd<'_>> = batch
            .iter()
            .filter_map(|w| w.payload.file().map(AsFd::as_fd))
            .collect();
        let sent = link.send(&msg, &files);
        drop(files);
        drop(msg);
        let Ok(sent) = sent else {
            // The worker is gone (it died while idle): it never got these. Put them back and
            // stop sending to it; its closed channel reports the death.
            link.retiring = true;
            for mut w in batch.into_iter().rev() {
                w.claimed = true;
                st.pending.push_front(w);
            }
            continue;
        };
        let bulk: u64 = batch.iter().map(|w| w.payload.bulk_len()).sum();
        RemoteCounters::add(&st.counters.bytes_sent, sent as u64 + bulk);
        link.window.send(batch.iter().map(|w| w.id));
        (batch.iter()).for_each(|w| w.completion.trace().started(link.pid.into()));
        if let Some(b) = &mut link.budget {
            *b -= batch.len();
        }
        for w in batch {
            st.inflight.insert(w.id, w);
        }
    }
    steal(st);
}

/// Work stealing between the workers' windows: with nothing pending, an idle worker must
/// not wait while another holds tasks queued behind a long one. Such a worker is asked to
/// give back what it has not started (it answers from a helper thread even while its task
/// runs); what comes back is dispatched again, to the idle worker.
fn steal(st: &mut State) {
    if !st.pending.is_empty() || st.phase == Phase::Terminated {
        return;
    }
    let idle = st.workers.values().filter(|l| l.idle()).count();
    if idle == 0 {
        return;
    }
    let candidates = st.workers.iter().map(|(&k, l)| (k, &l.window, l.serving()));
    for key in window::victims(candidates, idle) {
        let Some(link) = st.workers.get_mut(&key) else {
            continue;
        };
        let revoke = codec::encode(&Control::Revoke(Revoke {
            through: link.window.seq(),
        }));
        if revoke.is_ok_and(|bytes| link.ctl.send(&[&bytes], &[]).is_ok()) {
            link.window.revoking = true;
        }
    }
}

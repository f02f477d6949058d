//! One worker process as the parent reaches it ([`WorkerProcess`]: its sockets, pidfd and
//! result log), and the process pool's side of the dispatch core ([`Sockets`], the
//! `remote::scheduler::Transport` over them): a batch is one `Calls` message on the main
//! socket (inline payloads, sealed memfds attached), preceded by the shared tables it names
//! that the worker was not sent yet; a revoke goes on the control socket, which the worker's
//! helper thread serves while a task runs.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::TablesSent;
use crate::os::{self, Mapping, Memfd, Pidfd, Socket};
use crate::process::wire::{
    CallRef, Control, MAX_FRAME, Payload, Revoke, TAG_TO_WORKER, ToWorkerRef,
};
use crate::remote::bootstrap::ChildGuard;
use crate::remote::codec;
use crate::remote::recording::Recording;
use crate::remote::scheduler::{Batch, Gone, Transport, Work};
use crate::shared::TableRef;
use crate::stats::RemoteCounters;
use crate::sync;

/// One live worker process, as the parent reaches it (its place in the schedule is the
/// core's `Worker`).
pub(super) struct WorkerProcess {
    pub(super) pid: u32,
    pub(super) child: ChildGuard,
    /// Calls down, results up (see `wire`).
    pub(super) main: Arc<Socket>,
    /// Revokes down, served by the worker's helper thread.
    pub(super) ctl: Socket,
    /// Readable once the worker has exited (even if a process it started still holds its
    /// socket open).
    pub(super) pidfd: Pidfd,
    /// The worker's result log (see `wire`), read once it is dead.
    pub(super) log: Memfd,
    /// A read-only view of the log's header, for the watchdog (see `wire::running`).
    pub(super) log_view: Mapping,
    /// Killed for running this task over this time limit.
    pub(super) timed_out: Option<(u64, Duration)>,
    /// Asked to stop a task (`cancel_running`): if it still holds a cancelled task then
    /// (it could not answer: stopped, or too slow), the watchdog kills it.
    pub(super) cancel_by: Option<Instant>,
    /// Its row on the timeline: the slot it holds among the pool's `workers`.
    pub(super) row: usize,
}

impl WorkerProcess {
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

/// The process pool's wire as the dispatch core uses it: the workers' sockets, the record of
/// which worker holds which shared table, and the byte counters.
pub(super) struct Sockets<'a> {
    pub(super) tables_sent: &'a TablesSent,
    pub(super) counters: &'a RemoteCounters,
    pub(super) timeline: &'a Recording,
}

impl Transport for Sockets<'_> {
    type Payload = Payload;
    type Link = WorkerProcess;
    // A batch is one message: its inline payloads fit in `MAX_FRAME` with room for the
    // rest (each call's header counts 64 bytes), and its shared payloads in one message's
    // descriptors.
    const MAX_BATCH_BYTES: usize = MAX_FRAME - 1024;
    const MAX_BATCH_FILES: usize = os::MAX_FDS;

    fn weight(payload: &Payload) -> (usize, usize) {
        (
            payload.inline().len() + 64,
            usize::from(payload.file().is_some()),
        )
    }

    fn label(link: &WorkerProcess) -> u64 {
        link.pid.into()
    }

    fn row(link: &WorkerProcess) -> usize {
        link.row
    }

    fn counters(&self) -> &RemoteCounters {
        self.counters
    }

    fn send(&mut self, link: &mut WorkerProcess, batch: &mut Batch<Payload>) -> Result<(), Gone> {
        let works = &batch.works;
        let msg = ToWorkerRef::Calls(
            batch.seq,
            works
                .iter()
                .map(|w| CallRef {
                    id: w.id,
                    target: w.target,
                    payload: w.payload.inline(),
                    bulk: w.payload.bulk_len(),
                })
                .collect(),
        );
        let files: Vec<BorrowedFd<'_>> = works
            .iter()
            .filter_map(|w| w.payload.file().map(AsFd::as_fd))
            .collect();
        // The shared tables the batch names go first, to a worker that was not sent them.
        let sent = send_tables(self.tables_sent, batch.key, link, works)
            .and_then(|tables| Ok(tables + link.send(&msg, &files)? as u64))
            // The worker is gone (it died while idle): it never got these. Its closed
            // channel reports the death.
            .map_err(|_| Gone)?;
        let bulk: u64 = works.iter().map(|w| w.payload.bulk_len()).sum();
        RemoteCounters::add(&self.counters.bytes_sent, sent + bulk);
        Ok(())
    }

    fn revoke(&mut self, link: &WorkerProcess, through: u64) -> bool {
        let revoke = codec::encode(&Control::Revoke(Revoke { through }));
        revoke.is_ok_and(|bytes| link.ctl.send(&[&bytes], &[]).is_ok())
    }

    fn retire(&mut self, link: &WorkerProcess) {
        let _ = link.send(&ToWorkerRef::Exit, &[]);
    }

    fn stolen(&mut self, thief: &WorkerProcess, victim: usize, tasks: u64) {
        if self.timeline.on() {
            self.timeline.steal(thief.row, victim, tasks);
        }
    }
}

/// Sends `link` (the worker `key`) the shared tables that `batch` names and that it was not
/// sent yet, each in its sealed file; returns the bytes they count for (their messages and
/// the tables).
fn send_tables(
    sent: &TablesSent,
    key: u64,
    link: &WorkerProcess,
    batch: &[Work<Payload>],
) -> std::io::Result<u64> {
    if batch.iter().all(|w| w.tables.is_empty()) {
        return Ok(0);
    }
    let mut sent = sync::lock(sent);
    let mut new: Vec<&TableRef> = Vec::new();
    for table in batch.iter().flat_map(|w| &w.tables) {
        let has = sent
            .get(&table.id())
            .is_some_and(|holders| holders.iter().any(|(k, _)| *k == key));
        if !has && !new.iter().any(|t| t.id() == table.id()) {
            new.push(table);
        }
    }
    let mut bytes = 0;
    for group in new.chunks(os::MAX_FDS) {
        let list: Vec<(u64, u64)> = group.iter().map(|t| (t.id(), t.len())).collect();
        let files: Vec<BorrowedFd<'_>> = group
            .iter()
            .map(|t| {
                t.file()
                    .expect("[internal] a table encoded by id has its file")
                    .as_fd()
            })
            .collect();
        bytes += link.send(&ToWorkerRef::Tables(&list), &files)? as u64;
        for table in group {
            bytes += table.len();
            let holders = sent.entry(table.id()).or_default();
            // (Dead workers' entries go.)
            holders.retain(|(_, socket)| socket.strong_count() > 0);
            holders.push((key, Arc::downgrade(&link.main)));
        }
    }
    Ok(bytes)
}

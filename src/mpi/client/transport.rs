//! The MPI pool's side of the dispatch core (`remote::scheduler`): a worker rank as the
//! dispatcher reaches and watches it ([`Rank`]), and [`Messages`], the core's `Transport`
//! over the session's port: a batch is one `Calls` message (its payloads moved in, its
//! shared tables sent first as `Table` messages), a revoke and an exit are bare messages.

use std::time::Instant;

use super::{Client, RankInfo};
use crate::mpi::comm::Port;
use crate::mpi::wire::{self, CallHead, kind};
use crate::remote::IdMap;
use crate::remote::scheduler::{Batch, Gone, Transport, Work};
use crate::stats::RemoteCounters;

/// One worker rank, as the dispatcher reaches and watches it (its place in the schedule is
/// the core's `Worker`).
pub(super) struct Rank {
    pub(super) info: RankInfo,
    /// Its slot among the session's workers (rank order): its row on the timeline and in
    /// the statistics.
    pub(super) row: usize,
    /// When the worker was last heard from (or given work while idle), as of the last
    /// `watch`: a message only sets `heard`, which `watch` turns into a time, so that no
    /// clock is read per message.
    pub(super) last_heard: Instant,
    pub(super) heard: bool,
    pub(super) pinged: bool,
    /// Its process, when it runs on this host: its death is seen at once (MPI does not end
    /// a client whose spawned worker died).
    pub(super) process: Option<crate::os::Pidfd>,
    /// This rank's clock less the worker's, as well as its messages tell it (timeline).
    pub(super) offset: Option<i64>,
}

/// The MPI pool's wire as the dispatch core uses it: the session's port, the record of which
/// worker holds which shared table, and the client (its counters; its timeline says
/// whether calls go timed).
pub(super) struct Messages<'a> {
    port: &'a mut Port,
    tables: &'a mut IdMap<Vec<u64>>,
    client: &'a Client,
}

impl<'a> Messages<'a> {
    pub(super) fn new(
        port: &'a mut Port,
        tables: &'a mut IdMap<Vec<u64>>,
        client: &'a Client,
    ) -> Self {
        Messages {
            port,
            tables,
            client,
        }
    }

    /// Sends worker `key` the shared tables that `batch` names and that it does not hold
    /// yet, each in a `Table` message (before the calls: MPI keeps them in order).
    fn send_tables(&mut self, key: u64, rank: i32, batch: &[Work<Vec<u8>>]) {
        for table in batch.iter().flat_map(|w| &w.tables) {
            let holders = self.tables.entry(table.id()).or_default();
            if !holders.contains(&key) {
                holders.push(key);
                let msg = wire::table_message(table.id(), table.bytes());
                RemoteCounters::add(&self.client.counters.bytes_sent, msg.len() as u64);
                self.port.send(rank, wire::TO_WORKER, msg);
            }
        }
    }
}

impl Transport for Messages<'_> {
    type Payload = Vec<u8>;
    type Link = Rank;
    /// A large payload goes alone, so that it is sent without a copy.
    const MAX_BATCH_BYTES: usize = 1 << 16;
    const MAX_BATCH_FILES: usize = 0;

    fn weight(payload: &Vec<u8>) -> (usize, usize) {
        (payload.len(), 0)
    }

    fn label(link: &Rank) -> u64 {
        link.info.rank as u64
    }

    fn row(link: &Rank) -> usize {
        link.row
    }

    fn counters(&self) -> &RemoteCounters {
        &self.client.counters
    }

    /// The payloads move into the message (the core keeps the tasks, emptied).
    fn send(&mut self, link: &mut Rank, batch: &mut Batch<Vec<u8>>) -> Result<(), Gone> {
        // (Timed calls when recording: the worker then sends their run times.)
        let calls_kind = if self.client.timeline.on() {
            kind::CALLS_TIMED
        } else {
            kind::CALLS
        };
        if batch.was_idle {
            link.heard = true;
        }
        let rank = link.info.rank;
        self.send_tables(batch.key, rank, &batch.works);
        let msg = if let [w] = batch.works.as_mut_slice() {
            // One call (the common case of a pool that is not flooded): its header goes
            // after its payload, in the room the encoding left.
            let head = CallHead {
                id: w.id,
                target: w.target,
                len: w.payload.len(),
            };
            wire::call_message(calls_kind, head, std::mem::take(&mut w.payload))
        } else {
            let calls = (batch.works.iter_mut())
                .map(|w| {
                    let head = CallHead {
                        id: w.id,
                        target: w.target,
                        len: w.payload.len(),
                    };
                    (head, std::mem::take(&mut w.payload))
                })
                .collect();
            wire::calls_message(calls_kind, calls)
        };
        RemoteCounters::add(&self.client.counters.bytes_sent, msg.len() as u64);
        self.port.send(rank, wire::TO_WORKER, msg);
        Ok(())
    }

    fn revoke(&mut self, link: &Rank, _through: u64) -> bool {
        self.port
            .send(link.info.rank, wire::TO_WORKER, wire::bare(kind::REVOKE));
        true
    }

    fn retire(&mut self, link: &Rank) {
        self.port
            .send(link.info.rank, wire::TO_WORKER, wire::bare(kind::EXIT));
    }

    fn stolen(&mut self, thief: &Rank, victim: usize, tasks: u64) {
        if self.client.timeline.on() {
            self.client.timeline.steal(thief.row, victim, tasks);
        }
    }
}

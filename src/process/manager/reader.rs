//! Reading the workers' sockets: whoever holds the reader reads. Normally the manager
//! thread; a user thread blocked on a task that a worker holds takes it over, so that the
//! result reaches it without a thread wake-up on the way (leader/follower).

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use super::{Finished, Manager, READER_SPIN, Reader};
use crate::error::Shortage;
use crate::os::{Recv, WAKE_KEY};
use crate::sync;

impl Manager {
    /// Reads results on this thread until `done()` holds: a thread blocked on a task that a
    /// worker holds takes the results off the channels itself, instead of being woken by the
    /// manager thread after it did (one thread wake-up fewer on the way of every result).
    /// Gives up at once if the pool is stopping, and at `deadline` if there is one.
    pub(crate) fn read_until(&self, done: &dyn Fn() -> bool, deadline: Option<Instant>) {
        self.wants.fetch_add(1, SeqCst);
        let mut finished = Finished::new();
        while !done() {
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(t) if !t.is_zero() => Some(t),
                    _ => break,
                },
                None => None,
            };
            if self.manager_wants.load(SeqCst) {
                // The manager must add a worker's channel: step aside until it has.
                let mut st = sync::lock(&self.state);
                while self.manager_wants.load(SeqCst) {
                    st = sync::wait(&self.changed, st);
                }
                continue;
            }
            let ok = {
                let mut reader = self.take_reader();
                // Another reader may have completed this very task while this thread waited
                // for the reader (and the wake-up it sent may have been taken by a wait of
                // its own): look before sleeping in `epoll`, or sleep until the timeout.
                if done() {
                    break;
                }
                match reader.as_mut() {
                    Some(r) if !self.should_stop() => self.pump(r, &mut finished, timeout),
                    _ => false,
                }
            };
            self.settle(&mut finished, 1);
            if !ok {
                break;
            }
        }
        if self.wants.fetch_sub(1, SeqCst) == 1 {
            // The manager reads from now on, if anything is left to read.
            // (This includes the close of a worker retired by `max_tasks_per_child` after the
            // result this thread read: the manager must read it to start a replacement.)
            let st = sync::lock(&self.state);
            if st.workers.expecting() || st.queue.stopping() {
                self.changed.notify_all();
            }
        }
    }

    /// Takes the reader, yielding rather than sleeping while the manager thread lets go of
    /// it: sleeping would add one more thread wake-up to the way of the result.
    pub(super) fn take_reader(&self) -> sync::MutexGuard<'_, Option<Reader>> {
        if let Ok(guard) = self.reader.try_lock() {
            return guard;
        }
        // The manager thread is reading: wake it from its wait so it lets go.
        self.poller.wake();
        let backoff = crossbeam_utils::Backoff::new();
        let start = Instant::now();
        loop {
            if let Ok(guard) = self.reader.try_lock() {
                return guard;
            }
            if start.elapsed() > READER_SPIN {
                return sync::lock(&self.reader);
            }
            backoff.snooze();
        }
    }

    /// Completes tasks read under the reader lock, after it was released. A thread that
    /// took the reader meanwhile may be waiting in `epoll` for one of these very tasks (its
    /// result was read by us): wake it, so it looks again.
    /// `mine` counts the caller among the readers (`read_until`), whom it need not wake.
    pub(super) fn settle(&self, finished: &mut Finished, mine: usize) {
        if finished.is_empty() {
            return;
        }
        self.complete_all(finished);
        if self.wants.load(SeqCst) > mine {
            self.poller.wake();
        }
    }

    /// One round of reading: waits for events (at most `timeout`) and handles them; the
    /// tasks they finish go to `finished`. False if the poller is unusable.
    pub(super) fn pump(
        &self,
        r: &mut Reader,
        finished: &mut Finished,
        timeout: Option<Duration>,
    ) -> bool {
        if let Err(e) = self.poller.wait(&mut r.keys, timeout) {
            eprintln!("concurrent_futures: the process pool cannot watch its workers: {e}");
            return false;
        }
        let keys = std::mem::take(&mut r.keys);
        for &key in &keys {
            if key == WAKE_KEY {
                continue;
            }
            let id = key >> 1;
            let exited = key & 1 == 1;
            self.drain(id, r, finished, exited);
        }
        r.keys = keys;
        self.retire_if_done();
        true
    }

    /// Reads every message a worker's socket holds. Once the worker has exited (its pidfd
    /// is readable) or closed its socket, handles its death after its last message.
    pub(super) fn drain(&self, id: u64, r: &mut Reader, finished: &mut Finished, exited: bool) {
        let Some(main) = sync::lock(&self.state)
            .workers
            .get(id)
            .map(|w| w.link.main.clone())
        else {
            return;
        };
        loop {
            r.fds.clear();
            match main.recv(&mut r.buf, &mut r.fds, true) {
                Ok(received @ (Recv::Message(_) | Recv::LostFds(..))) => {
                    // Descriptors the kernel could not give this process (it is short of
                    // them): the results they carried are lost, and their tasks fail with
                    // the shortage; the worker is not at fault.
                    let lost = match received {
                        Recv::LostFds(_, errno) => Some(Shortage::from_errno(errno)),
                        _ => None,
                    };
                    if let Err(why) = self.on_message(id, &r.buf, &mut r.fds, lost, finished) {
                        // It broke the protocol: it is stopped, and its death is handled
                        // as any other.
                        eprintln!("concurrent_futures: a worker sent {why}; stopping it");
                        self.kill_worker(id);
                    }
                }
                Ok(Recv::Empty) if !exited => return,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // A message longer than any the protocol allows (never allocated for).
                    eprintln!("concurrent_futures: a worker sent {e}; stopping it");
                    self.kill_worker(id);
                }
                // This process is short of memory: the message stays in the socket, for the
                // next round (the worker is not at fault, and not dead).
                Err(e) if !exited && crate::os::is_shortage(&e) => return,
                // A worker that died with messages of ours unread resets the socket: the
                // error is reported once, and what it sent before is still there to read.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Ok(Recv::Empty | Recv::Closed) | Err(_) => break,
            }
        }
        self.on_closed(id, finished);
    }
}

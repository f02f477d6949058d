//! Where the pool's done-callbacks run: on threads of their own, never on a thread that
//! moves work. A callback may wait on another future of the same pool (the README promises
//! it, timed or not); run on the manager thread, or on a user thread that reads results, it
//! would stop the reading of results and the sending of queued tasks that its wait needs,
//! and a thread in `result_timeout` would be held past its deadline by someone else's
//! callback. So the thread that reads a result completes the future (the value is stored,
//! blocked threads and wait sets are woken: no user code) and hands the callbacks here.
//! A future without callbacks costs nothing more: the common path has no hand-off.
//!
//! One thread runs the callbacks in the order their futures completed. A callback that
//! blocks does not hold up the others: a callback handed over while every runner is busy
//! starts another runner (so a callback that waits for another callback's effect cannot
//! deadlock); runners beyond the first leave after `IDLE_EXIT` without work. The first is
//! started by the first callback, and all of them leave once the pool is done (`close`).

use std::collections::VecDeque;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::future::Deferred;
use crate::sync::{self, Condvar, Mutex};

/// How long a runner beyond the first waits for work before it leaves.
const IDLE_EXIT: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(super) struct Callbacks {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Deferred>,
    /// Runners alive, and how many of them run a callback now.
    runners: usize,
    busy: usize,
    handles: Vec<JoinHandle<()>>,
    /// The pool is done: runners leave once the queue is empty.
    closed: bool,
}

impl Callbacks {
    /// Queues `job`; starts a runner if none is free to take it.
    pub(super) fn run(self: &std::sync::Arc<Self>, job: Deferred) {
        let mut q = sync::lock(&self.queue);
        q.jobs.push_back(job);
        if q.jobs.len() <= q.runners - q.busy {
            self.ready.notify_one();
            return;
        }
        let me = self.clone();
        match std::thread::Builder::new()
            .name("cf-process-callbacks".into())
            .spawn(move || me.serve())
        {
            Ok(handle) => {
                q.runners += 1;
                // Runners that left after `IDLE_EXIT` need no join: forget their handles, so
                // that a long-lived pool with bursts of callbacks keeps a bounded list.
                q.handles.retain(|h| !h.is_finished());
                q.handles.push(handle);
            }
            Err(e) => {
                // No thread to be had: the callbacks wait for a busy runner (or, with none,
                // run on this thread, as a last resort).
                eprintln!("concurrent_futures: cannot start a thread for callbacks: {e}");
                if q.runners == 0 {
                    let jobs: Vec<Deferred> = q.jobs.drain(..).collect();
                    drop(q);
                    jobs.into_iter().for_each(|job| job());
                } else {
                    self.ready.notify_one();
                }
            }
        }
    }

    fn serve(&self) {
        let mut q = sync::lock(&self.queue);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                q.busy += 1;
                drop(q);
                // (A callback's panic is caught and reported where it is run.)
                job();
                q = sync::lock(&self.queue);
                q.busy -= 1;
                continue;
            }
            if q.closed {
                break;
            }
            if q.runners > 1 {
                let (guard, timed_out) =
                    sync::wait_until(&self.ready, q, std::time::Instant::now() + IDLE_EXIT);
                q = guard;
                if timed_out && q.jobs.is_empty() && q.runners > 1 {
                    break;
                }
            } else {
                q = sync::wait(&self.ready, q);
            }
        }
        q.runners -= 1;
    }

    /// The pool is done: waits for the callbacks handed over so far to have run (but not
    /// for the calling thread itself, if it is a runner: a callback that shuts the pool
    /// down).
    pub(super) fn close(&self) {
        let handles = {
            let mut q = sync::lock(&self.queue);
            q.closed = true;
            self.ready.notify_all();
            std::mem::take(&mut q.handles)
        };
        let me = std::thread::current().id();
        for h in handles {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}

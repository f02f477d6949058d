//! The `tracing` hooks (feature `tracing`): one function per point where a pool moves a
//! task or a worker, called where the statistics count the same thing (`stats.rs`).
//!
//! With the feature off, [`TaskTrace`] is a zero-sized type and every function here is an
//! empty `#[inline(always)]` one: the pools compile to the code they have without the
//! hooks. With it on, a task's span lives in its cell ([`FnCell`](crate::future::FnCell)
//! on the thread pool, the [`Slot`](crate::remote::Slot) of a remote pool) from submission
//! to its end, when it is closed.
//!
//! Every span and event, with its fields, is listed in `docs/OBSERVING.md`.

use crate::error::TaskError;

/// Which kind of pool a span or event comes from (the `pool` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) enum Pool {
    Thread,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Process,
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    Mpi,
}

#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
impl Pool {
    fn name(self) -> &'static str {
        match self {
            Pool::Thread => "thread",
            Pool::Process => "process",
            Pool::Mpi => "mpi",
        }
    }
}

/// How a task ended (the `outcome` field of `finished`).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
fn outcome_name<T>(value: &Result<T, TaskError>) -> &'static str {
    match value {
        Ok(_) => "ok",
        Err(TaskError::Panicked(_)) => "panicked",
        Err(TaskError::Cancelled) => "cancelled",
        Err(TaskError::WorkerDied { .. }) => "worker_died",
        Err(TaskError::TimeLimit(_)) => "time_limit",
        Err(_) => "failed",
    }
}

pub(crate) use imp::*;

#[cfg(feature = "tracing")]
mod imp {
    use std::cell::Cell;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use tracing::{Level, Span, span::EnteredSpan};

    use super::{Pool, outcome_name};
    use crate::error::TaskError;

    /// Target of the task spans and their events.
    const TASK: &str = "concurrent_futures::task";
    /// Target of the worker events (start, death, restart, steals) and the map spans.
    const WORKER: &str = "concurrent_futures::worker";

    /// Task ids for the spans (one counter for every pool of the process: ids are unique
    /// in it). Bumped only when a subscriber wants the span.
    static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

    thread_local! {
        /// The index of the thread-pool worker this thread is (the `worker` field of a
        /// thread-pool task's `started`).
        static THREAD_WORKER: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// A task's span, from its submission until it ends (then it is closed): taken out
    /// when the task starts running (thread pool) or ends. `None` when no subscriber wants
    /// it: then the task's cell grows by one word only, and nothing is locked or emitted.
    pub(crate) struct TaskTrace(Option<Box<Mutex<Option<Span>>>>);

    impl TaskTrace {
        /// A task was submitted to a pool: its span opens, with a `queued` event.
        pub(crate) fn submitted(pool: Pool) -> Self {
            let span = tracing::span!(
                target: TASK,
                Level::TRACE,
                "task",
                pool = pool.name(),
                task = NEXT_TASK.fetch_add(1, Relaxed)
            );
            if span.is_disabled() {
                return TaskTrace(None);
            }
            tracing::event!(name: "queued", target: TASK, parent: &span, Level::TRACE, "queued");
            TaskTrace(Some(Box::new(Mutex::new(Some(span)))))
        }

        fn take(&self) -> Option<Span> {
            self.0.as_ref()?.lock().ok()?.take()
        }

        /// A remote pool sent the task to worker `worker` (its pid, or its MPI rank).
        #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
        pub(crate) fn started(&self, worker: u64) {
            if let Some(span) = &self.0
                && let Ok(span) = span.lock()
                && let Some(span) = &*span
            {
                tracing::event!(name: "started", target: TASK, parent: span, Level::TRACE, worker, "started");
            }
        }

        /// The task starts running on this thread (thread pool): its span is entered until
        /// [`Running::finished`].
        pub(crate) fn running(&self) -> Running {
            let span = self.take().map(Span::entered);
            if span.is_some() {
                let worker = THREAD_WORKER.get();
                tracing::event!(name: "started", target: TASK, Level::TRACE, worker, "started");
            }
            Running(span)
        }

        /// The task ended with `value` without running here (cancelled while queued, failed
        /// by a broken pool) or on a remote worker: `finished`, and the span closes.
        pub(crate) fn finished<T>(&self, value: &Result<T, TaskError>) {
            if let Some(span) = self.take() {
                let outcome = outcome_name(value);
                tracing::event!(name: "finished", target: TASK, parent: &span, Level::TRACE, outcome, "finished");
            }
        }

        /// As [`finished`](Self::finished) with `Err(Cancelled)`.
        pub(crate) fn cancelled(&self) {
            self.finished::<()>(&Err(TaskError::Cancelled));
        }

        /// [`cancelled`](Self::cancelled) if `was_cancelled` says the task was cancelled
        /// before it started (a thread-pool task that could not be claimed); asked only
        /// when the span is recorded.
        pub(crate) fn if_cancelled(&self, was_cancelled: impl FnOnce() -> bool) {
            if self.0.is_some() && was_cancelled() {
                self.cancelled();
            }
        }
    }

    /// A thread-pool task running on this thread, inside its span.
    pub(crate) struct Running(Option<EnteredSpan>);

    impl Running {
        /// The task returned `value`: `finished` (still inside the span), then the span is
        /// exited and closed.
        pub(crate) fn finished<T>(self, value: &Result<T, TaskError>) {
            if self.0.is_some() {
                let outcome = outcome_name(value);
                tracing::event!(name: "finished", target: TASK, Level::TRACE, outcome, "finished");
            }
        }
    }

    /// Thread-pool worker `index` starts (called on its thread).
    pub(crate) fn thread_worker_started(index: usize) {
        THREAD_WORKER.set(Some(index as u64));
        worker_started(Pool::Thread, index as u64);
    }

    /// Thread-pool worker `index` exits (called on its thread).
    pub(crate) fn thread_worker_exited(index: usize) {
        THREAD_WORKER.set(None);
        tracing::event!(
            name: "worker_exited",
            target: WORKER,
            Level::DEBUG,
            pool = Pool::Thread.name(),
            worker = index as u64,
            "worker_exited"
        );
    }

    /// A worker started (a thread's index, a process's pid, an MPI rank).
    pub(crate) fn worker_started(pool: Pool, worker: u64) {
        tracing::event!(name: "worker_started", target: WORKER, Level::DEBUG, pool = pool.name(), worker, "worker_started");
    }

    /// A worker process ended: `died` (it was not asked to exit: a crash, a kill, a time
    /// limit), or retired (`max_tasks_per_child`, shutdown). `cause` says how it ended.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn worker_ended(pool: Pool, worker: u64, died: bool, cause: &dyn std::fmt::Display) {
        if died {
            tracing::event!(
                name: "worker_died",
                target: WORKER,
                Level::WARN,
                pool = pool.name(),
                worker,
                cause = %cause,
                "worker_died"
            );
        } else {
            tracing::event!(
                name: "worker_exited",
                target: WORKER,
                Level::DEBUG,
                pool = pool.name(),
                worker,
                cause = %cause,
                "worker_exited"
            );
        }
    }

    /// `count` workers were started to replace dead or retired ones (each also has its
    /// `worker_started`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn workers_restarted(pool: Pool, count: usize) {
        if count > 0 {
            tracing::event!(
                name: "worker_restarted",
                target: WORKER,
                Level::INFO,
                pool = pool.name(),
                count = count as u64,
                "worker_restarted"
            );
        }
    }

    /// Worker `thief` took `count` queued tasks from worker `victim` (`thief` unknown on
    /// the remote pools: the tasks given back go to whichever worker is free first, and
    /// each task's next `started` names it).
    pub(crate) fn stolen(pool: Pool, thief: Option<u64>, victim: u64, count: u64) {
        tracing::event!(
            name: "steal",
            target: WORKER,
            Level::TRACE,
            pool = pool.name(),
            thief,
            victim,
            count,
            "steal"
        );
    }

    /// A thread-pool worker runs pieces of a `map` block (`items` items in pieces of
    /// `piece`): the span is entered until the value returned is dropped.
    pub(crate) fn map_helper(items: usize, piece: usize) -> MapSpan {
        let span = tracing::span!(
            target: WORKER,
            Level::TRACE,
            "map_block",
            pool = Pool::Thread.name(),
            worker = THREAD_WORKER.get(),
            items = items as u64,
            piece = piece as u64
        );
        MapSpan((!span.is_disabled()).then(|| span.entered()))
    }

    /// A `map_block` span entered on this thread (exited and closed when dropped).
    pub(crate) struct MapSpan(#[allow(dead_code)] Option<EnteredSpan>);
}

#[cfg(not(feature = "tracing"))]
mod imp {
    #![allow(dead_code)]
    use super::Pool;
    use crate::error::TaskError;

    /// Nothing without the feature (zero-sized).
    pub(crate) struct TaskTrace;

    impl TaskTrace {
        #[inline(always)]
        pub(crate) fn submitted(_pool: Pool) -> Self {
            TaskTrace
        }
        #[inline(always)]
        pub(crate) fn started(&self, _worker: u64) {}
        #[inline(always)]
        pub(crate) fn running(&self) -> Running {
            Running
        }
        #[inline(always)]
        pub(crate) fn finished<T>(&self, _value: &Result<T, TaskError>) {}
        #[inline(always)]
        pub(crate) fn cancelled(&self) {}
        #[inline(always)]
        pub(crate) fn if_cancelled(&self, _was_cancelled: impl FnOnce() -> bool) {}
    }

    /// Nothing without the feature (zero-sized).
    pub(crate) struct Running;

    impl Running {
        #[inline(always)]
        pub(crate) fn finished<T>(self, _value: &Result<T, TaskError>) {}
    }

    #[inline(always)]
    pub(crate) fn thread_worker_started(_index: usize) {}
    #[inline(always)]
    pub(crate) fn thread_worker_exited(_index: usize) {}
    #[inline(always)]
    pub(crate) fn worker_started(_pool: Pool, _worker: u64) {}
    #[inline(always)]
    pub(crate) fn worker_ended(
        _pool: Pool,
        _worker: u64,
        _died: bool,
        _cause: &dyn std::fmt::Display,
    ) {
    }
    #[inline(always)]
    pub(crate) fn workers_restarted(_pool: Pool, _count: usize) {}
    #[inline(always)]
    pub(crate) fn stolen(_pool: Pool, _thief: Option<u64>, _victim: u64, _count: u64) {}
    #[inline(always)]
    pub(crate) fn map_helper(_items: usize, _piece: usize) -> MapSpan {
        MapSpan
    }

    /// Nothing without the feature (zero-sized).
    pub(crate) struct MapSpan;
}

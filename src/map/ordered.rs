//! [`Map`]: the iterator of [`Executor::map`], results in input order, in one of two modes:
//! chunks submitted as tasks (`chunked.rs`), or the backend's own ([`OrderedMap`]).

use std::fmt;
use std::iter::Fuse;

use super::backend::{MapInput, OrderedMap};
use super::chunked::Chunked;
use super::in_order::InOrder;
use super::options::MapOptions;
use super::ready_run::ReadyRun;
use crate::error::TaskError;
use crate::executor::Executor;
use crate::task::Payload;
use crate::task::{SharedTask, Task, TaskHandle};

/// Iterator returned by [`Executor::map`]: results in input order.
///
/// A backend may run it its own way ([`Executor::ordered_map`]: the thread pool takes the
/// input in blocks that the workers and the calling thread split among themselves, with
/// results written in place and yielded straight from there); otherwise items travel in
/// chunks, one task each.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn neg(x: i32) -> i32 { -x }
/// let pool = ThreadPoolExecutor::new(2);
/// let mut it = pool.map(neg, 1..4);
/// assert_eq!(it.next(), Some(Ok(-1)));
/// assert_eq!(it.collect::<Result<Vec<_>, _>>(), Ok(vec![-2, -3]));
/// ```
pub struct Map<'a, E, I, A, R> {
    mode: Mode<'a, E, I, A, R>,
}

// One per `map` call, never in a collection: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Mode<'a, E, I, A, R> {
    Chunks(Chunked<'a, E, I, A, R, InOrder<R>>),
    /// The backend's own ordered map ([`Executor::ordered_map`]).
    Own(Own<'a, I, A, R>),
}

/// A backend's own ordered map, its input, and the run of results it lent the consumer.
struct Own<'a, I, A, R> {
    state: Box<dyn OrderedMap<A, R> + 'a>,
    /// Read inline by `next`, one result at a time; the backend is called only past it.
    run: ReadyRun<R>,
    items: Fuse<I>,
}

impl<I, A, R> Drop for Own<'_, I, A, R> {
    fn drop(&mut self) {
        // What is left of the run is the backend's again (it drops those results).
        self.state.stop(&mut self.run);
    }
}

impl<'a, E, I, A, R> Map<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    pub(crate) fn new<T: Task<A, R>>(exec: &'a E, task: T, items: I, opts: MapOptions) -> Self {
        // A backend's own map gets the task itself (shared, called without dynamic
        // dispatch); the chunked path erases it once.
        let task = SharedTask::new(task);
        // Python's `buffersize` counts tasks submitted ahead of the consumer, one more per
        // step: that is the chunked path's window, not a backend's own.
        let own = match opts.buffersize {
            None => exec.ordered_map(task.clone(), opts),
            Some(_) => None,
        };
        let mode = match own {
            Some(mut state) => {
                let mut items = items.fuse();
                state.start(&mut items);
                Mode::Own(Own {
                    state,
                    run: ReadyRun::empty(),
                    items,
                })
            }
            None => Mode::Chunks(Chunked::new(exec, TaskHandle::new(task), items, opts)),
        };
        Map { mode }
    }
}

impl<E, I, A, R> Iterator for Map<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    type Item = Result<R, TaskError>;

    /// Only the commonest case inline (a result ready in the run the backend lent), so
    /// that a consumer's loop (`collect` into a `Result`) inlines this whole and keeps its
    /// per-item work to a few instructions; the rest is `next_slow`.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Mode::Own(own) = &mut self.mode
            && let Some(v) = own.run.next()
        {
            return Some(Ok(v));
        }
        self.next_slow()
    }

    /// Exact when the input's length is known: every item yields one result.
    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.mode {
            Mode::Own(own) => own.state.size_hint(&own.run, own.items.items_left()),
            Mode::Chunks(c) => c.size_hint(),
        }
    }

    fn fold<B, F>(self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        match self.mode {
            Mode::Own(mut own) => {
                let mut acc = init;
                loop {
                    for v in own.run.by_ref() {
                        acc = f(acc, Ok(v));
                    }
                    match own.state.next(&mut own.items, &mut own.run) {
                        Some(r) => acc = f(acc, r),
                        None => return acc,
                    }
                }
            }
            Mode::Chunks(c) => c.fold(init, f),
        }
    }
}

impl<E, I, A, R> Map<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    /// Past the run the backend lent; every step of the chunked path.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, TaskError>> {
        match &mut self.mode {
            Mode::Own(own) => own.state.next(&mut own.items, &mut own.run),
            Mode::Chunks(c) => c.next(),
        }
    }
}

impl<E, I, A, R> fmt::Debug for Map<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Mode::Own(own) => own.state.fmt(f),
            Mode::Chunks(c) => c.fmt(f),
        }
    }
}

//! [`Executor`] for `rayon::ThreadPool` (feature `rayon`), so the same generic code can be
//! measured on rayon.
//!
//! rayon pools cannot be shut down: [`Executor::shutdown_with`] does nothing here (it neither
//! waits nor refuses later submissions; the pool lives until it is dropped, and dropping it
//! does not wait either). Everything else behaves as on the other backends, and a cancelled
//! task never runs.

use crate::chunk::{Chunk, run_chunk};
use crate::error::SubmitError;
use crate::executor::Executor;
use crate::future::Future;
use crate::task::Payload;
use crate::task::Task;

fn spawn_on<R: Send + Sync + 'static>(
    pool: &rayon::ThreadPool,
    f: impl FnOnce() -> R + Send + 'static,
) -> Future<R> {
    let fut = Future::new();
    let handle = fut.handle();
    pool.spawn(move || {
        if handle.core().claim() {
            let value = crate::unwind::catch(f);
            handle.finish_claimed(value);
        }
    });
    fut
}

impl Executor for rayon::ThreadPool {
    fn max_workers(&self) -> usize {
        self.current_num_threads()
    }

    fn try_submit<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        arg: A,
    ) -> Result<Future<R>, SubmitError> {
        crate::unwind::install_hook();
        Ok(spawn_on(self, move || task.call(arg)))
    }

    fn submit_chunk<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        items: Vec<A>,
    ) -> Result<Future<Chunk<R>>, SubmitError> {
        crate::unwind::install_hook();
        Ok(spawn_on(self, move || run_chunk(|a| task.call(a), items)))
    }

    /// Does nothing: rayon pools have no shutdown (see the module docs).
    fn shutdown_with(&self, _wait: bool, _cancel_futures: bool) {}
}

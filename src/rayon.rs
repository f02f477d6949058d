//! [`Executor`] for `rayon::ThreadPool` (feature `rayon`), so the same generic code can be
//! measured on rayon.
//!
//! rayon pools cannot be shut down: [`Executor::shutdown_with`] only waits (if asked) for the
//! tasks submitted through this trait that have not finished, and later submissions are
//! still accepted. Cancellation works as everywhere (a cancelled task never runs).

use crate::error::SubmitError;
use crate::executor::{Chunk, Executor, Payload, run_chunk};
use crate::future::Future;

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

    fn try_submit<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<Future<R>, SubmitError> {
        crate::unwind::install_hook();
        Ok(spawn_on(self, move || f(arg)))
    }

    fn submit_chunk<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
        items: Vec<A>,
    ) -> Result<Future<Chunk<R>>, SubmitError> {
        crate::unwind::install_hook();
        Ok(spawn_on(self, move || run_chunk(f, items)))
    }

    /// rayon pools have no shutdown; with `wait`, this waits until the pool is idle by
    /// running an empty `broadcast` after every queued job (rayon runs spawned jobs FIFO
    /// per worker), which is the closest rayon offers.
    fn shutdown_with(&self, wait: bool, _cancel_futures: bool) {
        if wait {
            self.broadcast(|_| ());
        }
    }
}

//! [`MapOptions`]: how a `map` is chunked, bounded and timed, and the defaults.

use std::time::Duration;

#[cfg(doc)]
use crate::error::TaskError;
#[cfg(doc)]
use crate::executor::Executor;

/// Options of [`Executor::map_with`]: Python's `chunksize`, `timeout` and `buffersize`,
/// and a bound on the bytes of results held ahead of the consumer (`buffer_bytes`).
///
/// ```
/// use concurrent_futures::MapOptions;
/// use std::time::Duration;
/// let opts = MapOptions::new().chunksize(64).timeout(Duration::from_secs(5)).buffersize(8);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MapOptions {
    pub(crate) chunksize: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(super) buffersize: Option<usize>,
    pub(super) buffer_bytes: Option<usize>,
}

impl MapOptions {
    /// Default options: automatic chunk size, no timeout, a window of 64 chunks (16 per
    /// worker on machines with more than four) holding at most 256 MiB of results on the
    /// process and MPI pools.
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new();
    /// # let _ = opts;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Items per task, fixed (0 counts as 1). Without it the size adapts so that a chunk
    /// runs about [`Executor::chunk_target`].
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new().chunksize(100);
    /// # let _ = opts;
    /// ```
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    /// Time limit for the whole iteration, counted from the `map` call. When it passes, the
    /// iterator yields [`TaskError::Timeout`] once, cancels the rest, and ends.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = concurrent_futures::MapOptions::new().timeout(Duration::from_secs(1));
    /// # let _ = opts;
    /// ```
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Python's `buffersize`: at most this many tasks submitted ahead of the consumer (0
    /// counts as 1). A task is one item, or `chunksize` items if that is set, as in Python
    /// (whose `chunksize` is 1 by default); without a `chunksize`, chunks still adapt, within
    /// `buffersize` items. As in Python, `map` takes `buffersize` items from the input at
    /// once, and each step of the iterator submits the next before it yields (so after one
    /// `next`, `buffersize + 1` items were taken). On every pool, the thread pool included,
    /// the items then travel as tasks (futures), not as the thread pool's blocks.
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new().buffersize(2);
    /// # let _ = opts;
    /// ```
    pub fn buffersize(mut self, n: usize) -> Self {
        self.buffersize = Some(n.max(1));
        self
    }

    /// Most bytes of results held ahead of the consumer, on the pools whose results cross
    /// a process boundary (process, MPI): 256 MiB by default. Results that arrived and are
    /// not consumed yet, and those of the chunks in flight, count at the encoded size
    /// measured so far per item; while they reach the bound, `map` submits no more input
    /// (one chunk always stays in flight, so it progresses whatever the bound). With 10,000
    /// results of 1 MiB, the default keeps the parent near 256 MiB of results instead of a
    /// window of 64 chunks of them (1.7 GB). The thread pool's `map` keeps its results in
    /// place and bounds them in items (`buffersize`) only.
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new().buffer_bytes(64 << 20);
    /// # let _ = opts;
    /// ```
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = Some(bytes);
        self
    }
}

/// Bytes of results a remote `map` holds ahead of its consumer by default.
pub(super) const DEFAULT_BUFFER_BYTES: usize = 256 << 20;

/// Chunks in flight by default (at least; 16 per worker on bigger machines). A small window
/// starves the workers: chunks that finish behind a slow head chunk hold their slots until
/// the consumer reaches them.
pub(super) const DEFAULT_WINDOW: usize = 64;

//! [`Chunk`]: the results of one chunk of a `map`, as a backend returns them, and
//! [`run_chunk`], which runs one.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::TaskError;

/// The results of one chunk of a `map`, as a backend returns them.
///
/// Values of the items that succeeded, in order, plus the failures by position (a panic in
/// one item does not lose the others). You only meet this type when implementing
/// [`Executor`](crate::Executor) for a backend of your own; [`run_chunk`] builds it.
///
/// ```
/// use concurrent_futures::{run_chunk, Chunk};
/// let chunk: Chunk<u8> = run_chunk(|x: u8| x * 2, vec![1, 2]);
/// assert_eq!(chunk.len(), 2);
/// ```
#[derive(Debug, Serialize, Deserialize)]
pub struct Chunk<R> {
    pub(crate) values: Vec<R>,
    pub(crate) errors: Vec<(u32, TaskError)>,
    pub(crate) elapsed: Duration,
    /// The size of the chunk's encoding when it crossed a process boundary (0 where it did
    /// not): set in the parent as it is decoded (`codec::decoding_len`), so that `map` can
    /// bound the bytes it holds ahead of its consumer.
    #[serde(skip, default = "decoding_len")]
    pub(crate) bytes: usize,
}

/// The length of the encoding being decoded on this thread: a chunk's size on the wire on
/// the remote pools (Linux), 0 elsewhere.
fn decoding_len() -> usize {
    #[cfg(target_os = "linux")]
    {
        crate::remote::codec::decoding_len()
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Runs `f` over `items` as one chunk: each item under its own panic guard, timed as a whole
/// (the timing drives automatic chunk sizing). Backends call this where the chunk executes,
/// with the [`Task`](crate::Task) of [`Executor::submit_chunk`](crate::Executor::submit_chunk) as `|a| task.call(a)`.
///
/// ```
/// use concurrent_futures::{Task, run_chunk, task};
/// fn half(x: u32) -> u32 { assert!(x % 2 == 0, "odd"); x / 2 }
/// let chunk = run_chunk(half, vec![2, 3, 4]);
/// assert_eq!(chunk.len(), 3);
/// let k = 10u32;
/// let add = task!([k] |x: u32| x + k);
/// assert_eq!(run_chunk(|a| add.call(a), vec![1, 2]).len(), 2);
/// ```
pub fn run_chunk<A, R>(mut f: impl FnMut(A) -> R, items: Vec<A>) -> Chunk<R> {
    let start = Instant::now();
    let mut values = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut rest = items.into_iter().enumerate();
    let _scope = crate::unwind::TaskScope::enter();
    // One unwind guard for the whole chunk; after a panic, the loop resumes with the item
    // that follows the one that panicked.
    loop {
        let mut current = 0;
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (i, item) in &mut rest {
                current = i;
                values.push(f(item));
            }
        }));
        match run {
            Ok(()) => break,
            Err(payload) => errors.push((current as u32, crate::unwind::panic_error(payload))),
        }
    }
    Chunk {
        values,
        errors,
        elapsed: start.elapsed(),
        bytes: 0,
    }
}

impl<R> Chunk<R> {
    /// Number of items in the chunk.
    ///
    /// ```
    /// # use concurrent_futures::run_chunk;
    /// assert_eq!(run_chunk(|x: u8| x, vec![1, 2]).len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.values.len() + self.errors.len()
    }

    /// True if the chunk has no items.
    ///
    /// ```
    /// # use concurrent_futures::run_chunk;
    /// assert!(run_chunk(|x: u8| x, vec![]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

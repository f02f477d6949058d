//! [`JoinableQueue`]: a [`Queue`] that counts unfinished items.

use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Queue;
use crate::multiprocessing::error::TaskDoneTooManyTimes;
use crate::multiprocessing::shm::deadline_of;

/// Python's `multiprocessing.JoinableQueue`: a [`Queue`] (all its methods, through `Deref`)
/// that also counts unfinished items: consumers call [`task_done`](Self::task_done) for each
/// item they processed, and [`join`](Self::join) waits until every item put was.
///
/// ```
/// use concurrent_futures::multiprocessing::{JoinableQueue, Process};
///
/// fn consumer(q: JoinableQueue<u32>) {
///     while let Ok(n) = q.get() {
///         if n == 0 { q.task_done().unwrap(); break; }
///         q.task_done().unwrap();
///     }
/// }
///
/// let q = JoinableQueue::new(0);
/// let p = Process::new(consumer, q.clone());
/// p.start().unwrap();
/// for n in [3, 2, 1, 0] {
///     q.put(n).unwrap();
/// }
/// q.join(); // every item was processed
/// p.join().unwrap();
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("maxsize", &self.maxsize())
            .field("qsize", &self.qsize())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A joinable queue holding at most `maxsize` items (0: unbounded).
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::JoinableQueue::<u8>::new(3);
    /// assert_eq!(q.maxsize(), 3);
    /// ```
    pub fn new(maxsize: usize) -> JoinableQueue<T> {
        JoinableQueue {
            queue: Queue::new(maxsize),
        }
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken with `get` as processed. Python's `task_done()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::JoinableQueue::new(0);
    /// q.put(1u8).unwrap();
    /// q.get().unwrap();
    /// assert!(q.task_done().is_ok());
    /// assert!(q.task_done().is_err()); // one item, two task_done calls
    /// ```
    pub fn task_done(&self) -> Result<(), TaskDoneTooManyTimes> {
        let h = self.queue.header();
        h.m.with(|held| {
            let n = h.unfinished.get(held);
            if n == 0 {
                return Err(TaskDoneTooManyTimes);
            }
            h.unfinished.set(held, n - 1);
            if n == 1 {
                h.all_done.notify_all();
            }
            Ok(())
        })
    }

    /// Waits until every item put was marked done. Python's `join()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::JoinableQueue::<u8>::new(0);
    /// q.join(); // nothing was put: returns at once
    /// ```
    pub fn join(&self) {
        self.join_until(None);
    }

    /// As [`join`](Self::join), for at most `timeout`; false if items are still unfinished.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// let q = concurrent_futures::multiprocessing::JoinableQueue::new(0);
    /// q.put(1u8).unwrap();
    /// assert!(!q.join_timeout(Duration::from_millis(10)));
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Some(deadline_of(timeout)))
    }

    fn join_until(&self, deadline: Option<Instant>) -> bool {
        let ring = &self.queue.core.ring;
        let h = ring.h();
        h.m.with(|held| {
            loop {
                if h.unfinished.get(held) == 0 {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                ring.wait(&h.all_done, deadline);
            }
        })
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue {
            queue: Queue::deserialize(deserializer)?,
        })
    }
}

//! [`Queue`], [`JoinableQueue`] and [`SimpleQueue`]: FIFO queues shared by processes.
//!
//! # How a queue works
//!
//! The queue is a ring of bytes in shared memory. An item is encoded (serde) and written as
//! one or more records (`len: u32, flags: u32, bytes`); a record is published only when it
//! is whole, and an item larger than a quarter of the ring is streamed as several records
//! (`FIRST` … `LAST`). Writers take `wlock` for a whole item and readers `rlock`, so the
//! records of two items never interleave; the ring's indexes and counters are under `m`.
//!
//! As in Python, `put` never waits for room in the ring: when the item does not fit now (or
//! earlier items of this process are still waiting), it goes to this process's backlog,
//! and a feeder thread (started on demand, gone when the backlog is empty) writes it as
//! readers make room. The last handle of a queue in a process waits for its backlog to be
//! written when it drops (Python's `join_thread` at exit), unless
//! [`Queue::cancel_join_thread`] was called. A bounded queue (`maxsize > 0`) counts items,
//! and `put` waits (or fails with `Full`) while `maxsize` items are in the queue.
//!
//! A writer that dies in the middle of an item leaves a partial item. Every item starts with
//! a `FIRST` record, so a reader that meets one while an item is incomplete drops the
//! partial item; and a reader waiting for the rest of an item checks every 100 ms whether
//! its writer is still alive, so it never waits forever. A reader that dies in the middle of
//! an item leaves the rest of it, which the next reader skips (up to the next `FIRST` or the
//! item's `LAST`).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{GetError, PutError};
use super::shm::{Shared, deadline_of};
use crate::remote::codec;

mod feeder;
mod joinable;
mod ring;
mod simple;

pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;

use feeder::Core;
use ring::{MIN_BUFFER, QueueHeader, Ring};

/// The default size of the ring.
const DEFAULT_BUFFER: usize = 1 << 20;

/// Python's `multiprocessing.Queue`: a FIFO queue shared by processes and threads.
///
/// Items are encoded with serde (they must not contain shared primitives; pass those in a
/// [`Process`](super::Process)'s arguments). `maxsize` 0 means unbounded. Any number of
/// producers and consumers, in any processes: each item is received once, and the items of
/// one producer arrive in the order it put them.
///
/// `put` on an unbounded queue never waits (an item that does not fit in the shared buffer
/// now is written by a background thread of this process), and on a bounded queue it waits
/// while `maxsize` items are in the queue. `get` waits for an item. The `_nowait` and
/// `_timeout` variants return [`PutError::Full`] and [`GetError::Empty`] (Python's
/// `queue.Full` and `queue.Empty`). `qsize`, `empty` and `full` are snapshots that may be
/// stale at once, as in Python.
///
/// A process killed while it puts or gets costs the others nothing beyond its own items:
/// the items its `put` accepted and its background thread had not written yet are lost (and
/// stay counted by `qsize`, and against `maxsize`, as they hold CPython's semaphore); an
/// item it was writing is dropped whole by the next reader; an item it had taken out is
/// gone with it. Every other item arrives, and every waiter is woken.
///
/// ```
/// use concurrent_futures::multiprocessing::{Process, Queue};
///
/// fn producer(q: Queue<u32>) {
///     for i in [10, 20, 30] {
///         q.put(i).unwrap();
///     }
/// }
///
/// let q = Queue::new(0);
/// let p = Process::new(producer, q.clone());
/// p.start().unwrap();
/// let got: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
/// assert_eq!(got, vec![10, 20, 30]);
/// p.join().unwrap();
/// ```
pub struct Queue<T> {
    core: Arc<Core>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("maxsize", &self.maxsize())
            .field("qsize", &self.qsize())
            .finish()
    }
}

impl<T> Queue<T> {
    fn header(&self) -> &QueueHeader {
        self.core.ring.h()
    }

    /// The bound given at creation (0: unbounded).
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Queue::<u8>::new(3).maxsize(), 3);
    /// ```
    pub fn maxsize(&self) -> usize {
        let h = self.header();
        h.m.with(|held| h.maxsize.get(held)) as usize
    }

    /// The number of items in the queue (put and not yet taken, including those this or
    /// another process is still writing). Python's `qsize()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(0);
    /// q.put('a').unwrap();
    /// assert_eq!(q.qsize(), 1);
    /// ```
    pub fn qsize(&self) -> usize {
        let h = self.header();
        h.m.with(|held| h.count.get(held)) as usize
    }

    /// Whether the queue holds no items. Python's `empty()`.
    ///
    /// ```
    /// assert!(concurrent_futures::multiprocessing::Queue::<u8>::new(0).empty());
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue holds `maxsize` items. Python's `full()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(1);
    /// q.put(1u8).unwrap();
    /// assert!(q.full());
    /// ```
    pub fn full(&self) -> bool {
        let h = self.header();
        h.m.with(|held| {
            let max = h.maxsize.get(held);
            max > 0 && h.count.get(held) >= max
        })
    }

    /// Closes this process's handles on the queue for putting and getting (other processes
    /// are not affected); items already put are still written. Python's `close()`.
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::{GetError, PutError, Queue};
    /// let q = Queue::new(0);
    /// q.close();
    /// assert!(matches!(q.put(1), Err(PutError::Closed(1))));
    /// assert_eq!(q.get_nowait(), Err(GetError::Closed));
    /// ```
    pub fn close(&self) {
        self.core.feed.state.lock().closed = true;
    }

    /// Waits until every item this process put is written into the shared buffer (where
    /// other processes can get it). Python's `join_thread()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(0);
    /// q.put(1u8).unwrap();
    /// q.join_thread();
    /// ```
    pub fn join_thread(&self) {
        self.core.flush();
    }

    /// Lets this process's last handle drop without waiting for its unwritten items (they
    /// are lost). Python's `cancel_join_thread()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::<u8>::new(0);
    /// q.cancel_join_thread();
    /// ```
    pub fn cancel_join_thread(&self) {
        self.core.feed.state.lock().cancel_join = true;
    }

    fn closed(&self) -> bool {
        self.core.feed.state.lock().closed
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue holding at most `maxsize` items (0: unbounded). Python's `Queue(maxsize)`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::<String>::new(0);
    /// assert!(q.empty());
    /// ```
    pub fn new(maxsize: usize) -> Queue<T> {
        Queue::with_buffer(maxsize, DEFAULT_BUFFER)
    }

    /// As [`new`](Self::new), with a shared buffer of `bytes` bytes (default 1 MiB; at least
    /// 4 KiB). Items larger than a quarter of it are streamed through it in pieces.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::with_buffer(0, 4096);
    /// q.put(vec![7u8; 100_000]).unwrap(); // larger than the buffer: streamed
    /// # let q2 = q.clone();
    /// # let t = std::thread::spawn(move || q2.get().unwrap());
    /// # assert_eq!(t.join().unwrap().len(), 100_000);
    /// ```
    pub fn with_buffer(maxsize: usize, bytes: usize) -> Queue<T> {
        Queue {
            core: Arc::new(Core::new(Ring::new(maxsize, bytes))),
            _t: PhantomData,
        }
    }

    /// Puts an item, waiting while a bounded queue is full. Python's `put(obj)`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(0);
    /// q.put((1, "one".to_string())).unwrap();
    /// assert_eq!(q.get().unwrap(), (1, "one".to_string()));
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, None)
    }

    /// Puts an item if a bounded queue has room now. Python's `put_nowait(obj)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{PutError, Queue};
    /// let q = Queue::new(1);
    /// q.put_nowait(1).unwrap();
    /// assert!(matches!(q.put_nowait(2), Err(PutError::Full(2))));
    /// ```
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, Some(Instant::now()))
    }

    /// Puts an item, waiting at most `timeout` for room. Python's `put(obj, timeout=t)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{PutError, Queue};
    /// # use std::time::Duration;
    /// let q = Queue::new(1);
    /// q.put(1).unwrap();
    /// assert!(matches!(q.put_timeout(2, Duration::from_millis(10)), Err(PutError::Full(2))));
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(item, Some(deadline_of(timeout)))
    }

    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        if self.closed() {
            return Err(PutError::Closed(item));
        }
        let bytes = match codec::encode(&item) {
            Ok(b) => b,
            Err(e) => return Err(PutError::Encode(item, e.to_string())),
        };
        if !self.core.ring.reserve(deadline) {
            return Err(PutError::Full(item));
        }
        self.core.publish(bytes);
        Ok(())
    }

    /// Takes the next item, waiting for one. Python's `get()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(0);
    /// q.put(5u64).unwrap();
    /// assert_eq!(q.get(), Ok(5));
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(None)
    }

    /// Takes the next item if one is there. Python's `get_nowait()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{GetError, Queue};
    /// let q = Queue::<u8>::new(0);
    /// assert_eq!(q.get_nowait(), Err(GetError::Empty));
    /// ```
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.get_until(Some(Instant::now()))
    }

    /// Takes the next item, waiting at most `timeout`. Python's `get(timeout=t)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{GetError, Queue};
    /// # use std::time::Duration;
    /// let q = Queue::<u8>::new(0);
    /// assert_eq!(q.get_timeout(Duration::from_millis(10)), Err(GetError::Empty));
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(Some(deadline_of(timeout)))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        if self.closed() {
            return Err(GetError::Closed);
        }
        // Our own items still in the backlog would never arrive while we wait with the
        // feeder stuck behind a full ring; they are written by the feeder thread meanwhile.
        let bytes = self.core.ring.read(deadline).ok_or(GetError::Empty)?;
        codec::decode(&bytes).map_err(|e| GetError::Decode(e.to_string()))
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.core.ring.shared.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = Shared::<QueueHeader>::deserialize(deserializer)?;
        let cap = shared.tail_len();
        if cap < MIN_BUFFER {
            return Err(serde::de::Error::custom(
                "a shared queue's buffer is too small",
            ));
        }
        Ok(Queue {
            core: Arc::new(Core::new(Ring { shared, cap })),
            _t: PhantomData,
        })
    }
}
